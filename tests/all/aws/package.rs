//! The deployable dispatcher, as Terraform deploys it: the arm64
//! `bootstrap` from `scripts/package`'s zip, under `qemu-aarch64`, against
//! the runtime API emulator and moto, with 20 receivers. Its first cold
//! start compiles them and shares the artifacts (recording their digests);
//! a second cold start on an empty /tmp loads all 20 precompiled from S3.
//! Both answer a stream event. The init times are printed (under
//! emulation: several times what arm64 hardware takes).
//!
//! Needs the zip and qemu (`scripts/package --qemu`); runs when
//! `PRISM_TEST_PACKAGE=1` (`.ci/run` with `CI_FULL=1` sets it), and is
//! skipped, saying so, otherwise.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prism_e2e::wasm;
use serde_json::{Value, json};

use crate::support::emulator::{Emulator, log_lines};
use crate::support::world::{World, products};

const RECEIVERS: usize = 20;

fn root() -> PathBuf {
    Path::new(wasm::ROOT).to_path_buf()
}

#[test]
fn the_arm64_dispatcher_zip_boots_under_qemu_and_answers_a_stream_event() {
    if std::env::var_os("PRISM_TEST_PACKAGE").is_none() {
        eprintln!(
            "SKIPPED: set PRISM_TEST_PACKAGE=1 after scripts/package --qemu (CI_FULL=1 .ci/run does)"
        );
        return;
    }
    let zip = root().join("target/lambda/prism-lambda/bootstrap.zip");
    let qemu = root().join(".tools/qemu/usr/bin/qemu-aarch64-static");
    let sysroot = root().join(".tools/qemu/usr/aarch64-linux-gnu");
    assert!(
        zip.exists(),
        "{} is missing: run scripts/package",
        zip.display()
    );
    assert!(
        qemu.exists(),
        "{} is missing: run scripts/package --qemu",
        qemu.display()
    );
    let unpacked = tempfile::tempdir().unwrap();
    let o = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&zip)
        .arg(unpacked.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let bootstrap = unpacked.path().join("bootstrap");
    std::fs::set_permissions(
        &bootstrap,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let Some(w) = World::new("package") else {
        return;
    };
    // Twenty distinct components (the website plus a custom section each),
    // so that each is compiled and shared on its own.
    let plugins = tempfile::tempdir().unwrap();
    let base = std::fs::read(wasm::WEBSITE).unwrap();
    let queues: Vec<String> = (0..RECEIVERS)
        .map(|i| {
            let name = format!("prism-test-{i:02}");
            let mut bytes = base.clone();
            bytes.push(0); // a custom section: id, size, name, payload
            bytes.push((1 + name.len()) as u8);
            bytes.push(name.len() as u8);
            bytes.extend(name.as_bytes());
            let path = plugins.path().join(format!("{name}.wasm"));
            std::fs::write(&path, bytes).unwrap();
            w.register(path.to_str().unwrap(), &format!("site-{i:02}"), &[], true)
                .0
        })
        .collect();
    w.write(&products(0..3));
    let records = w.records();
    let event = json!({ "Records": records }).to_string();

    // Two cold starts, each on an empty /tmp.
    let mut inits = Vec::new();
    for boot in 0..2 {
        let Some(mut emu) = Emulator::start() else {
            return;
        };
        let cache = tempfile::tempdir().unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let started = Instant::now();
        emu.run_with(
            qemu.to_str().unwrap(),
            &["-L", sysroot.to_str().unwrap(), bootstrap.to_str().unwrap()],
            &[
                ("PRISM_REGISTRY_TABLE", &w.table),
                ("PRISM_PLUGIN_BUCKET", &w.bucket),
                ("PRISM_LEDGER_TABLE", &w.ledger),
                ("PRISM_CACHE_DIR", cache.path().to_str().unwrap()),
                ("AWS_ENDPOINT_URL", &w.ep),
            ],
            log.path(),
        );
        let (ok, out, err) = emu.invoke(&event);
        let first = started.elapsed();
        assert!(
            ok,
            "boot {boot}: invoke failed:\n{out}\n{err}\n{}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        let response: Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(response, json!({"batchItemFailures": []}));
        let warm = Instant::now();
        let (ok, _, _) = emu.invoke(&event);
        assert!(ok);
        let again = warm.elapsed();
        drop(emu);
        for q in &queues {
            assert_eq!(
                w.bodies(q).len(),
                6,
                "boot {boot}: 3 products, twice, to {q}"
            );
        }
        let lines = log_lines(log.path());
        let compiled = lines
            .iter()
            .filter(|l| l["message"] == "plugin compiled at start-up; sharing the artifact")
            .count();
        assert_eq!(
            compiled,
            if boot == 0 { RECEIVERS } else { 0 },
            "boot {boot}: the first start compiles and shares all {RECEIVERS}, the second compiles none"
        );
        eprintln!(
            "boot {boot}: first invocation {:.1}s after the process started, a warm one {:.2}s: init ≈ {:.1}s under qemu ({} compiled here)",
            first.as_secs_f64(),
            again.as_secs_f64(),
            first.saturating_sub(again).as_secs_f64(),
            compiled
        );
        inits.push((first.saturating_sub(again), lines));
    }
    let zip_mib = std::fs::metadata(&zip).unwrap().len() as f64 / 1048576.0;
    eprintln!(
        "prism-lambda bootstrap.zip: {zip_mib:.1} MiB; cold start with {RECEIVERS} receivers: compiling {:.1}s, precompiled from S3 {:.1}s (qemu)",
        inits[0].0.as_secs_f64(),
        inits[1].0.as_secs_f64()
    );
}
