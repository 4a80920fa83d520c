//! All end-to-end tests, in one binary (one link instead of many).

mod aws;
mod cli;
mod delivery;
mod languages;
mod model_builder;
mod project;
mod sandbox;
mod sim;
mod support;
mod terraform;

use std::process::{Command, Output};

/// Run the real `prism` entry point with `args`, with its own compile cache.
pub fn prism(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("prism-e2e-cache");
    Command::new(env!("CARGO_BIN_EXE_prism-under-test"))
        .args(args)
        .env("PRISM_CACHE_DIR", cache)
        .env_remove("PRISM_LOG")
        .output()
        .expect("running prism")
}

/// A `cargo` command for a nested build or query. scripts/test-runner
/// sets `RUSTC_BOOTSTRAP=1` on the test binaries so libtest reports each
/// test's time; it must not reach rustc in a nested build, where it would
/// change what build scripts detect and rebuild the shared target.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env_remove("RUSTC_BOOTSTRAP");
    cmd
}

/// stdout and stderr of a run, for assertions and failure messages.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
