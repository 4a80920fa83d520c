//! The `prism` command line as a user runs it.

use std::path::Path;

use prism_e2e::{sample, wasm};

use crate::{prism, text};

#[test]
fn help_explains_every_command() {
    let (out, _) = text(&prism(&["--help"]));
    for cmd in ["run", "plugin", "new", "sample", "demo"] {
        assert!(out.contains(cmd), "{out}");
    }
    let (out, _) = text(&prism(&["run", "--help"]));
    assert!(
        out.contains("--registry") && out.contains("dead-letters"),
        "{out}"
    );
    let (out, _) = text(&prism(&["plugin", "check", "--help"]));
    assert!(
        out.contains("import nothing the host does not grant"),
        "{out}"
    );
    let (out, _) = text(&prism(&["plugin", "run", "--help"]));
    assert!(
        out.contains("--changes") && out.contains("--config"),
        "{out}"
    );
}

/// `plugin check` on the hostile plugin set to `behaviour`, with `extra`
/// flags: (exit code, stdout, stderr).
fn check_hostile(behaviour: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let config = format!("behaviour={behaviour}");
    let mut args = vec!["plugin", "check", wasm::HOSTILE, "--config", &config];
    args.extend_from_slice(extra);
    let o = prism(&args);
    let (out, err) = text(&o);
    (o.status.code(), out, err)
}

#[test]
fn plugin_check_refuses_a_plugin_that_fails_on_the_sample_and_says_how() {
    // Each way a plugin breaks on every change it accepts, and what the
    // check says of it; none of them is OK.
    for (behaviour, says) in [
        ("panic", "trapped on "),
        ("reject", "rejected on "),
        ("retry", "asked to retry on "),
        ("malformed", "returned output the host refuses on "),
        ("memory", "hit the memory cap on "),
        ("loop", "timed out on 1 of "),
    ] {
        let (code, out, err) = check_hostile(behaviour, &[]);
        assert_eq!(code, Some(1), "{behaviour}: {out}{err}");
        assert!(
            err.contains(&format!("sample       REJECTED: {says}")),
            "{behaviour}: {err}"
        );
        assert!(!out.contains(": OK"), "{behaviour}: {out}");
        // The first failure names the change and what the plugin said.
        assert!(err.contains("; first P-"), "{behaviour}: {err}");
    }
    // A loop stops the sample at its first timeout instead of running
    // every change into the budget.
    let (_, out, _) = check_hostile("loop", &[]);
    assert!(out.contains("stopped at the first timeout (1 of "), "{out}");
    // The panic's own message is in the report.
    let (_, _, err) = check_hostile("panic", &[]);
    assert!(err.contains("boom: no price for P-"), "{err}");
}

#[test]
fn plugin_check_counts_the_sample_and_lets_the_team_allow_rejections() {
    let (code, out, err) = check_hostile("behave", &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("sample       ")
            && out.contains(" 0 rejected, 0 asked to retry)")
            && out.contains(" 0 failed; "),
        "{out}"
    );
    // Rejecting every change is refused by default, and allowed when the
    // team says its receiver may reject them all.
    let (code, _, err) = check_hostile("reject", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("(more than 50 %)"), "{err}");
    let (code, out, err) = check_hostile("reject", &["--max-rejected-percent", "100"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // A failed call is refused whatever the threshold.
    let (code, _, err) = check_hostile("panic", &["--max-rejected-percent", "100"]);
    assert_eq!(code, Some(1), "{err}");
    // A batched receiver's window is checked too.
    let (code, out, err) = check_hostile("behave", &["--batch"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = check_hostile("panic", &["--batch"]);
    assert_eq!(code, Some(1), "{err}");
}

#[test]
fn plugin_check_accepts_receivers_and_explains_rejections() {
    let o = prism(&["plugin", "check", wasm::WEBSITE]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains(": OK") && out.contains("digest   sha256:"),
        "{out}"
    );

    let o = prism(&["plugin", "check", wasm::SOCKET]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("REJECTED") && err.contains("imports `wasi:sockets/"),
        "{err}"
    );

    let o = prism(&["plugin", "check", wasm::WRONG_WORLD]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("does not export `accepts"), "{err}");

    let o = prism(&["plugin", "check", "/nonexistent.wasm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("reading /nonexistent.wasm"));
}

#[test]
fn plugin_run_previews_messages() {
    let dir = tempfile::tempdir().unwrap();
    let changes = dir.path().join("changes.jsonl");
    std::fs::write(&changes, sample(2)).unwrap();
    let c = changes.to_str().unwrap();
    let o = prism(&[
        "plugin",
        "run",
        wasm::WEBSITE,
        "--changes",
        c,
        "--config",
        "language=de",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("# P-00000 Insert seq 100000000000000000001: 1 message(s)"),
        "{out}"
    );
    assert!(
        out.contains("-- message 0: application/ld+json") && out.contains("Akku-Bohrschrauber")
            || out.contains("Handkreissäge")
            || out.contains("Arbeitsleuchte")
            || out.contains("Exzenterschleifer")
            || out.contains("Bit-Set"),
        "{out}"
    );
    assert!(out.contains("skipped (accepts = false)"), "{out}");

    let o = prism(&["plugin", "run", wasm::PRICELIST, "--changes", c, "--batch"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("# batch of ") && out.contains("text/csv") && out.contains("sku;ean;name"),
        "{out}"
    );

    let o = prism(&[
        "plugin",
        "run",
        wasm::LEAFLET,
        "--changes",
        c,
        "--config",
        "oops",
    ]);
    assert_eq!(o.status.code(), Some(2), "clap usage error");
    assert!(text(&o).1.contains("expected KEY=VALUE"));
}

#[test]
fn run_refuses_to_mix_with_an_old_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("old")).unwrap();
    let events = dir.path().join("e.jsonl");
    std::fs::write(&events, sample(1)).unwrap();
    let o = prism(&[
        "run",
        "--registry",
        dir.path().to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--outbox",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("is not empty; pass --clean"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn demo_prints_a_summary_with_every_example_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = Path::new(wasm::WEBSITE).parent().unwrap();
    let o = prism(&[
        "demo",
        "--plugins",
        plugins.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--products",
        "40",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for r in [
        "website-en",
        "website-de",
        "leaflet",
        "pricelist",
        "logistics",
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(r))
            .unwrap_or_else(|| panic!("{r} missing:\n{out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        let messages: u64 = cols[cols.len() - 7]
            .parse()
            .unwrap_or_else(|_| panic!("{line}"));
        assert!(messages > 0, "{line}");
    }
    assert!(out.contains("5 receivers active"), "{out}");
}

#[test]
fn plugin_register_checks_then_writes_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    let r = reg.to_str().unwrap();
    let o = prism(&[
        "plugin",
        "register",
        wasm::PRICELIST,
        "--receiver",
        "resellers",
        "--registry",
        r,
        "--config",
        "market=CH",
        "--batch-max-count",
        "50",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let snap = prism_types::registry::LocalRegistry::new(&reg)
        .load()
        .unwrap();
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    let m = &snap.entries[0].manifest;
    assert_eq!(m.receiver, "resellers");
    assert_eq!(m.config["market"], "CH");
    assert!(matches!(
        m.mode,
        prism_types::manifest::Mode::Batch { max_count: 50, .. }
    ));

    // Updating keeps the settings it is not told to change.
    let o = prism(&[
        "plugin",
        "register",
        wasm::PRICELIST,
        "--receiver",
        "resellers",
        "--registry",
        r,
        "--timeout-ms",
        "500",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let m = prism_types::registry::LocalRegistry::new(&reg)
        .load()
        .unwrap()
        .entries
        .remove(0)
        .manifest;
    assert_eq!(
        (m.config["market"].as_str(), m.limits.timeout_ms),
        ("CH", 500)
    );

    // A component that fails the check is not registered.
    let o = prism(&[
        "plugin",
        "register",
        wasm::SOCKET,
        "--receiver",
        "spy",
        "--registry",
        r,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("REJECTED, not registered"));
    assert!(!reg.join("spy.toml").exists());
    let o = prism(&[
        "plugin",
        "register",
        wasm::LEAFLET,
        "--receiver",
        "Bad_Id",
        "--registry",
        r,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("receiver id \"Bad_Id\" is invalid"),
        "{:?}",
        text(&o)
    );
}
