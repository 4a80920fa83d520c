//! `prism new` makes a crate that tests natively, builds to a component,
//! passes `prism plugin check` and previews with `prism plugin run`.

use std::path::Path;
use std::process::Command;

use crate::{prism, text};

#[test]
fn a_new_plugin_builds_tests_checks_and_runs_as_generated() {
    let dir = tempfile::tempdir().unwrap();
    let o = prism(&["new", "acme-feed", "--dir", dir.path().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let root = dir.path().join("acme-feed");
    for f in ["Cargo.toml", "src/lib.rs", "README.md", "changes.jsonl"] {
        assert!(root.join(f).exists(), "{f}");
    }
    // A shared target dir keeps the nested builds incremental across runs.
    let target = Path::new(prism_e2e::wasm::ROOT).join("target/scaffold-test");
    let cargo = |args: &[&str]| {
        let o = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "cargo {args:?} failed:\n{out}\n{err}");
        out
    };
    let tests = cargo(&["test"]);
    assert!(tests.contains("test result: ok. 3 passed"), "{tests}");
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target.join("wasm32-wasip2/release/acme_feed.wasm");
    let o = prism(&["plugin", "check", wasm.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = prism(&[
        "plugin",
        "run",
        wasm.to_str().unwrap(),
        "--changes",
        root.join("changes.jsonl").to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains(r#""price":77.5"#), "{out}");
    assert!(out.contains("skipped (accepts = false)"), "{out}");
    assert!(out.contains(r#"{"deleted":true,"sku":"P-00000"}"#), "{out}");

    let o = prism(&["new", "acme-feed", "--dir", dir.path().to_str().unwrap()]);
    assert!(text(&o).1.contains("already exists"));
    let o = prism(&["new", "Bad Name", "--dir", dir.path().to_str().unwrap()]);
    assert!(text(&o).1.contains("must start with a lowercase letter"));
}
