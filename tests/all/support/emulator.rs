//! cargo lambda's runtime API emulator, and a real Lambda binary under it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use prism_e2e::wasm;

use crate::text;

/// The emulator and the Lambda binaries it serves, killed when dropped,
/// however the test ends.
pub(crate) struct Emulator {
    port: String,
    children: Vec<Child>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cargo_lambda() -> bool {
    let found = crate::cargo()
        .args(["lambda", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("PRISM_REQUIRE_ALL").is_none(),
            "cargo-lambda is not installed; scripts/test installs it into .tools/venv"
        );
        eprintln!("SKIPPED: cargo-lambda not installed; scripts/test installs it");
    }
    found
}

impl Emulator {
    /// Start `cargo lambda watch` (API only) on a free port; `None` (the
    /// test is skipped) when cargo-lambda is not installed.
    pub(crate) fn start() -> Option<Self> {
        if !cargo_lambda() {
            return None;
        }
        let port = free_port().to_string();
        let watch = crate::cargo()
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port,
            ])
            .current_dir(wasm::ROOT)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting cargo lambda watch");
        let emulator = Self {
            port,
            children: vec![watch],
        };
        let up = (0..600).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::net::TcpStream::connect(format!("127.0.0.1:{}", emulator.port)).is_ok()
        });
        assert!(
            up,
            "the runtime API emulator did not start on port {}",
            emulator.port
        );
        Some(emulator)
    }

    /// The emulator's port (its Lambda `Invoke` API is at
    /// `http://127.0.0.1:<port>`, the function named `_`).
    pub(crate) fn port(&self) -> &str {
        &self.port
    }

    /// Run a Lambda binary against the emulator with `env`, its stdout (the
    /// JSON logs) into `log`.
    pub(crate) fn run(&mut self, binary: &str, env: &[(&str, &str)], log: &Path) {
        self.run_with(binary, &[], env, log);
    }

    /// As [`Self::run`], the binary started as `program args…` (an
    /// emulator such as `qemu-aarch64` in front of it).
    pub(crate) fn run_with(
        &mut self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            // Terraform's default (`lambda_memory_mb`): the memory check
            // refuses a default batched receiver (a 100-change window's
            // host-copy cap) on a 512 MB dispatcher.
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769")
            .env_remove("PRISM_LOG")
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.children
            .push(cmd.spawn().expect("starting the Lambda binary"));
    }

    /// Invoke the function with `data`: (succeeded, stdout, stderr).
    pub(crate) fn invoke(&self, data: &str) -> (bool, String, String) {
        let o = crate::cargo()
            .args([
                "lambda",
                "invoke",
                "_",
                "-A",
                "127.0.0.1",
                "-P",
                &self.port,
                "--data-ascii",
                data,
            ])
            .output()
            .unwrap();
        let (out, err) = text(&o);
        (o.status.success(), out, err)
    }
}

/// The JSON lines of a Lambda's log file.
pub(crate) fn log_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
