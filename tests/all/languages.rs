//! The contract is language-neutral: the same price-feed receiver written
//! in Python (componentize-py, 0.1 and 0.2) and JavaScript
//! (componentize-js, 0.2, importing no WASI at all) passes the check and
//! runs through the host with exactly the expected output.
//!
//! Needs `componentize-py` and `componentize-js` (at `$PRISM_COMPONENTIZE_PY`
//! and `$PRISM_COMPONENTIZE_JS`; `scripts/test` installs both inside the
//! project). Without them a test says so and passes, unless
//! `PRISM_REQUIRE_ALL=1` (set by `scripts/test` and CI), where a missing tool
//! is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use prism_e2e::{bodies, changes, dead_letters, files, run, wasm};
use prism_engine::{Contract, EngineOptions, PluginEngine};
use prism_sample::StreamWriter;
use prism_types::manifest::Mode;
use prism_types::registry::LocalRegistry;
use serde_json::json;

use crate::{prism, text};

fn root() -> &'static Path {
    Path::new(wasm::ROOT)
}

/// Run a build tool; `None` when it is missing and that is allowed.
fn build(tool_var: &str, default: &str, args: &[&std::ffi::OsStr], out: &Path) -> Option<Vec<u8>> {
    let tool = std::env::var(tool_var).unwrap_or_else(|_| default.into());
    let status = Command::new(&tool).args(args).status();
    match status {
        Err(e) if std::env::var_os("PRISM_REQUIRE_ALL").is_none() => {
            eprintln!(
                "SKIPPED: {tool} is not available ({e}); run scripts/test (it installs it into .tools/)"
            );
            return None;
        }
        Err(e) => panic!("{tool} is required (PRISM_REQUIRE_ALL is set): {e}"),
        Ok(s) => assert!(s.success(), "{tool} failed: {s}"),
    }
    Some(std::fs::read(out).unwrap())
}

/// componentize-py over `app.py` in `dir` against `wit`.
fn python(dir: &Path, wit: &Path, out: &Path) -> Option<Vec<u8>> {
    let args: Vec<&std::ffi::OsStr> = vec![
        "-d".as_ref(),
        wit.as_os_str(),
        "-w".as_ref(),
        "receiver".as_ref(),
        "componentize".as_ref(),
        "--stub-wasi".as_ref(),
        "-p".as_ref(),
        dir.as_os_str(),
        "app".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    build("PRISM_COMPONENTIZE_PY", "componentize-py", &args, out)
}

/// componentize-js over `receiver.js` with every WASI feature disabled.
fn javascript(source: &Path, out: &Path) -> Option<Vec<u8>> {
    let wit = root().join("wit/v0.2");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--wit".as_ref(),
        wit.as_os_str(),
        "--world-name".as_ref(),
        "receiver".as_ref(),
        "-d".as_ref(),
    ];
    for f in ["stdio", "random", "clocks", "http", "fetch-event"] {
        args.push(f.as_ref());
    }
    args.extend(["-o".as_ref(), out.as_os_str(), source.as_os_str()]);
    build("PRISM_COMPONENTIZE_JS", "componentize-js", &args, out)
}

/// Run the price feed (`component`) beside the Rust logistics receiver over
/// five changes and check every message, skip and dead letter.
fn runs_the_price_feed(component: &[u8], lang: &str, contract: Contract) {
    // One compile per component: an interpreter inside (CPython, about
    // 18 MB; StarlingMonkey, about 12 MB) takes Cranelift tens of seconds.
    // The engine shares the compile cache of `prism` in these tests, so a
    // component `prism plugin check` compiled is loaded, not compiled again.
    let engine = PluginEngine::new(&EngineOptions {
        cache_dir: Some(std::env::temp_dir().join("prism-e2e-cache")),
        ..EngineOptions::default()
    })
    .unwrap();
    assert_eq!(engine.load(component).unwrap().contract(), contract);
    let mut w = StreamWriter::new();
    let a = json!({"pk": "A", "prices": {"DE": {"amount": 10.5}}, "texts": {}});
    let mut a2 = a.clone();
    a2["prices"]["DE"]["amount"] = json!(11);
    let mut a3 = a2.clone();
    a3["texts"] = json!({"en": {"name": "x"}});
    let no_price = json!({"pk": "B", "prices": {}});
    w.push("A", None, Some(&a));
    w.push("A", Some(&a), Some(&a2));
    w.push("A", Some(&a2), Some(&a3));
    w.push("B", None, Some(&no_price));
    w.push("A", Some(&a3), None);

    let dir = tempfile::tempdir().unwrap();
    let (reg, outbox) = (dir.path().join("reg"), dir.path().join("out"));
    LocalRegistry::new(&reg)
        .put(
            prism_e2e::manifest(
                "pricefeed",
                component,
                Mode::Immediate,
                prism_e2e::relaxed(),
                &[("market", "DE")],
            ),
            component,
        )
        .unwrap();
    prism_e2e::immediate(&reg, "logistics", wasm::LOGISTICS);

    let (set, report) = run(&engine, &reg, &changes(&w.to_json_lines()), &outbox, 2);
    assert_eq!(set.active.len(), 2, "{:?}", set.unavailable);
    assert_eq!(
        bodies(&outbox, "pricefeed"),
        [
            r#"{"amount":"10.5","market":"DE","sku":"A"}"#,
            r#"{"amount":"11","market":"DE","sku":"A"}"#,
            r#"{"deleted":true,"sku":"A"}"#,
        ]
    );
    let metas = files(&outbox, "pricefeed", |n| n.ends_with(".meta.json"));
    for (name, meta) in &metas {
        let meta: serde_json::Value = serde_json::from_str(meta).unwrap();
        assert_eq!(meta["attributes"], json!({"lang": lang}), "{name}");
        assert_eq!(meta["content_type"], "application/json", "{name}");
    }
    let st = &report.receivers["pricefeed"];
    assert_eq!((st.seen, st.skipped, st.rejected), (5, 1, 1));
    let dead = dead_letters(&outbox, "pricefeed");
    assert_eq!(dead[0]["key"], "B");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .ends_with("rejected: B: no DE price"),
        "{}",
        dead[0]
    );
}

fn out(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn a_python_receiver_on_0_1_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = out(&dir, "py-0.1.wasm");
    let Some(py) = python(&root().join("tests/python"), &root().join("wit"), &path) else {
        return;
    };
    assert!(
        py.len() > 1_000_000,
        "a CPython component is big: {} bytes",
        py.len()
    );
    runs_the_price_feed(&py, "python", Contract::V0_1);
}

#[test]
fn the_python_example_receiver_on_0_2_runs_with_exact_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = out(&dir, "py-0.2.wasm");
    let Some(py) = python(
        &root().join("plugins/pricefeed-py"),
        &root().join("wit/v0.2"),
        &path,
    ) else {
        return;
    };
    runs_the_price_feed(&py, "python", Contract::V0_2);
}

#[test]
fn the_javascript_example_receiver_on_0_2_imports_no_wasi_and_runs_with_exact_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = out(&dir, "js.wasm");
    let Some(js) = javascript(&root().join("plugins/pricefeed-js/receiver.js"), &path) else {
        return;
    };
    let o = prism(&[
        "plugin",
        "check",
        path.to_str().unwrap(),
        "--config",
        "market=DE",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    let imports = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("imports "))
        .unwrap_or_else(|| panic!("no imports line: {stdout}"));
    assert!(!imports.contains("wasi:"), "{imports}");
    assert!(imports.contains("prism:receiver/images@0.2.0"), "{imports}");
    assert!(stdout.contains("determinism  same output"), "{stdout}");
    runs_the_price_feed(&js, "javascript", Contract::V0_2);
}
