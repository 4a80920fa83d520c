//! The contract is language-neutral: a receiver written in Python and built
//! with componentize-py passes the check and runs through the host.
//!
//! Needs `componentize-py` (on PATH, or at `$PRISM_COMPONENTIZE_PY`; `scripts/test`
//! installs it). Without it
//! the test says so and passes, unless `PRISM_REQUIRE_ALL=1` (set by
//! `scripts/test` and CI), where a missing tool is a failure.

use std::process::Command;

use prism_core::sample::StreamWriter;
use prism_e2e::{bodies, changes, dead_letters, engine, run, wasm};
use prism_types::manifest::Mode;
use prism_types::registry::LocalRegistry;
use serde_json::json;

#[test]
fn a_python_receiver_passes_check_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out_wasm = dir.path().join("py-receiver.wasm");
    let app_dir = std::path::Path::new(wasm::ROOT).join("tests/python");
    let wit = std::path::Path::new(wasm::ROOT).join("wit");
    let tool = std::env::var("PRISM_COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into());
    let status = Command::new(&tool)
        .args([
            "-d",
            wit.to_str().unwrap(),
            "-w",
            "receiver",
            "componentize",
            "--stub-wasi",
            "-p",
        ])
        .arg(&app_dir)
        .arg("app")
        .arg("-o")
        .arg(&out_wasm)
        .status();
    match status {
        Err(e) if std::env::var_os("PRISM_REQUIRE_ALL").is_none() => {
            eprintln!(
                "SKIPPED: componentize-py is not available ({e}); run scripts/test (it installs componentize-py into .tools/venv)"
            );
            return;
        }
        Err(e) => panic!("componentize-py is required (PRISM_REQUIRE_ALL is set): {e}"),
        Ok(s) => assert!(s.success(), "componentize-py failed: {s}"),
    }
    let py = std::fs::read(&out_wasm).unwrap();
    assert!(
        py.len() > 1_000_000,
        "a CPython component is big: {} bytes",
        py.len()
    );

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

    let dir2 = tempfile::tempdir().unwrap();
    let (reg, outbox) = (dir2.path().join("reg"), dir2.path().join("out"));
    let registry = LocalRegistry::new(&reg);
    registry
        .put(
            prism_e2e::manifest(
                "python",
                &py,
                Mode::Immediate,
                prism_e2e::relaxed(),
                &[("market", "DE")],
            ),
            &py,
        )
        .unwrap();
    prism_e2e::immediate(&reg, "logistics", wasm::LOGISTICS);

    let (set, report) = run(&engine(), &reg, &changes(&w.to_json_lines()), &outbox, 2);
    assert_eq!(set.active.len(), 2, "{:?}", set.unavailable);
    assert_eq!(
        bodies(&outbox, "python"),
        [
            r#"{"amount":"10.5","market":"DE","sku":"A"}"#,
            r#"{"amount":"11","market":"DE","sku":"A"}"#,
            r#"{"deleted":true,"sku":"A"}"#,
        ]
    );
    let st = &report.receivers["python"];
    assert_eq!((st.seen, st.skipped, st.rejected), (5, 1, 1));
    let dead = dead_letters(&outbox, "python");
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
