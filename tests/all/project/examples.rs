//! `examples/`: each program runs as its docs say, on a real plugin, and
//! prints what the dispatcher really did (compared with a run of the same
//! input through the test helpers).
//!
//! `cargo test --workspace` builds every package's examples before any test
//! runs; they are found next to this test binary. A partial run that did
//! not build them says so and passes, unless `PRISM_REQUIRE_ALL=1` (set by
//! `scripts/test` and CI).

use std::path::PathBuf;
use std::process::{Command, Output};

use prism_e2e::{bodies, changes, dead_letters, engine, register, run, sample, wasm};
use prism_types::limits::Limits;
use prism_types::manifest::Mode;

use crate::text;

/// The built example `name`, or `None` when it was not built and that is allowed.
fn example(name: &str) -> Option<Command> {
    let deps = std::env::current_exe().expect("the test binary's path");
    let path: PathBuf = deps
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps")
        .join("examples")
        .join(name);
    if path.exists() {
        return Some(Command::new(path));
    }
    assert!(
        std::env::var_os("PRISM_REQUIRE_ALL").is_none(),
        "{} was not built (PRISM_REQUIRE_ALL is set): `cargo test --workspace` builds it",
        path.display()
    );
    eprintln!(
        "SKIPPED: {} was not built; `cargo test --workspace` (or `cargo build -p prism-examples --examples`) builds it",
        path.display()
    );
    None
}

fn ok(o: &Output) -> (String, String) {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "{}\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    (out, err)
}

#[test]
fn run_one_plugin_formats_one_change_in_a_sandbox_and_reports_a_trap_as_an_error() {
    let Some(mut cmd) = example("run-one-plugin") else {
        return;
    };
    let (out, _) = ok(&cmd.args([wasm::WEBSITE, "language=de"]).output().unwrap());
    assert!(out.contains("prism:receiver@0.2.0"), "{out}");
    assert!(out.contains("P-00007: 1 message(s)"), "{out}");
    // The website's JSON-LD, in the configured language.
    assert!(
        out.contains("\"url\":\"https://www.example.com/de/p/P-00007\""),
        "{out}"
    );

    // A plugin that panics: the program says which call failed and why.
    let o = example("run-one-plugin")
        .unwrap()
        .args([wasm::HOSTILE, "behaviour=panic"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("calling format"), "{err}");
    assert!(err.contains("boom: no price for P-00007"), "{err}");

    // No plugin: usage, not a panic.
    let o = example("run-one-plugin").unwrap().output().unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("usage: run-one-plugin"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn dispatch_a_file_delivers_what_the_dispatcher_delivers() {
    let Some(mut cmd) = example("dispatch-a-file") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(
        &registry,
        "website",
        wasm::WEBSITE,
        Mode::Immediate,
        Limits::default(),
        &[],
    );
    let batch = Mode::Batch {
        max_count: 7,
        max_bytes: 1 << 20,
        max_age_secs: 3600,
    };
    register(
        &registry,
        "leaflet",
        wasm::LEAFLET,
        batch,
        Limits::default(),
        &[],
    );
    register(
        &registry,
        "rejecting",
        wasm::HOSTILE,
        Mode::Immediate,
        Limits::default(),
        &[("behaviour", "reject")],
    );
    let events = dir.path().join("events.jsonl");
    let text = sample(20);
    std::fs::write(&events, &text).unwrap();
    let outbox = dir.path().join("outbox");
    let (out, _) = ok(&cmd
        .arg(&registry)
        .arg(&events)
        .arg(&outbox)
        .output()
        .unwrap());

    let expected = dir.path().join("expected");
    let (_, report) = run(&engine(), &registry, &changes(&text), &expected, 2);
    for (receiver, s) in &report.receivers {
        let line = format!(
            "{receiver}: {} accepted, {} messages, {} suppressed as unchanged, {} parked",
            s.accepted,
            s.messages,
            s.suppressed,
            s.errors()
        );
        assert!(out.contains(&line), "expected {line:?} in:\n{out}");
        assert_eq!(
            bodies(&outbox, receiver),
            bodies(&expected, receiver),
            "{receiver}"
        );
        assert_eq!(
            dead_letters(&outbox, receiver).len() as u64,
            s.errors(),
            "{receiver}"
        );
    }
    assert!(report.receivers["website"].messages > 0);
    assert!(report.receivers["leaflet"].batches > 0);
    assert!(report.receivers["rejecting"].errors() > 0);
}

#[test]
fn write_a_backend_prints_every_message_and_keeps_what_it_parks() {
    let Some(mut cmd) = example("write-a-backend") else {
        return;
    };
    let (out, err) = ok(&cmd.arg(wasm::WEBSITE).output().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(
        &registry,
        "example",
        wasm::WEBSITE,
        Mode::Immediate,
        Limits::default(),
        &[],
    );
    let changes = changes(&sample(20));
    let (_, report) = run(
        &engine(),
        &registry,
        &changes,
        &dir.path().join("outbox"),
        2,
    );
    let messages = report.receivers["example"].messages;
    assert!(messages > 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines.len() as u64, messages, "{out}");
    assert!(lines.iter().all(|l| l["receiver"] == "example"));
    assert!(
        err.contains(&format!(
            "{} changes: {messages} messages printed, 0 parked",
            changes.len()
        )),
        "{err}"
    );

    // What the plugin rejects is parked in the backend, with the reason.
    let o = example("write-a-backend")
        .unwrap()
        .args([wasm::HOSTILE, "behaviour=reject"])
        .output();
    let (out, err) = ok(&o.unwrap());
    assert_eq!(out, "");
    assert!(err.contains(" 0 messages printed, "), "{err}");
    assert!(
        err.contains("parked P-00000 at ")
            && err.contains(": rejected (")
            && err.contains("has no EAN"),
        "{err}"
    );
}
