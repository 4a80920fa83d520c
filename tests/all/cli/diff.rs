//! `prism plugin diff` and `register --diff-changes`: the release gate, as
//! an operator runs it, locally and against the DynamoDB registry.

use prism_e2e::{immediate, wasm};
use prism_types::digest::Digest;

use crate::{prism, text};

fn sample(dir: &std::path::Path) -> String {
    let path = dir.join("changes.jsonl");
    std::fs::write(&path, prism_e2e::sample(5)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn diff_shows_what_a_candidate_changes_and_gates_registration() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    immediate(&reg, "website", wasm::WEBSITE);
    let changes = sample(dir.path());
    let reg_s = reg.to_str().unwrap();
    let diff = |candidate: &str, extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "diff",
            candidate,
            "--receiver",
            "website",
            "--registry",
            reg_s,
            "--changes",
            &changes,
        ];
        args.extend(extra);
        prism(&args)
    };

    // The same plugin: nothing differs.
    let o = diff(wasm::WEBSITE, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let summary = out.lines().last().unwrap();
    assert!(
        summary.ends_with("identical, 0 changed, 0 added, 0 removed"),
        "{out}"
    );

    // A different plugin: each change shown, bodies as a unified diff.
    let o = diff(wasm::LEAFLET, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("== P-00000 (sequence "), "{out}");
    assert!(
        out.contains("--- live      message 0 (application/ld+json)"),
        "{out}"
    );
    assert!(
        out.contains("+++ candidate message 0 (application/xml"),
        "{out}"
    );
    assert!(out.contains("\n@@ -1,"), "{out}");
    assert!(
        out.contains("\n-  \"@context\": \"https://schema.org\","),
        "JSON bodies are diffed pretty-printed: {out}"
    );
    assert!(!out.lines().last().unwrap().contains(" 0 changed"), "{out}");
    assert!(diff(wasm::LEAFLET, &["--allow"]).status.success());

    // register refuses a candidate whose diff is not clean…
    let register = |extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "register",
            wasm::LEAFLET,
            "--receiver",
            "website",
            "--registry",
            reg_s,
            "--diff-changes",
            &changes,
        ];
        args.extend(extra);
        prism(&args)
    };
    let o = register(&[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("website: not registered: its outputs differ from the live version"),
        "{err}"
    );
    let live = std::fs::read_to_string(reg.join("website.toml")).unwrap();
    assert!(
        live.contains(&Digest::of(&prism_e2e::read(wasm::WEBSITE)).to_string()),
        "{live}"
    );
    // …and registers it when the diff is approved.
    let o = register(&["--allow-diff"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let live = std::fs::read_to_string(reg.join("website.toml")).unwrap();
    assert!(
        live.contains(&Digest::of(&prism_e2e::read(wasm::LEAFLET)).to_string()),
        "{live}"
    );

    // Errors name what is wrong.
    let o = prism(&[
        "plugin",
        "diff",
        wasm::WEBSITE,
        "--receiver",
        "nobody",
        "--registry",
        reg_s,
        "--changes",
        &changes,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("no receiver \"nobody\""),
        "{:?}",
        text(&o)
    );
}

#[test]
fn diff_against_the_dynamodb_registry() {
    let Some(ep) = prism_e2e::aws::endpoint() else {
        return;
    };
    let env = prism_e2e::aws::rt().block_on(prism_e2e::aws::setup(&ep, "diff"));
    let dir = tempfile::tempdir().unwrap();
    let changes = sample(dir.path());
    let remote = [
        "--table",
        env.table.as_str(),
        "--bucket",
        env.bucket.as_str(),
        "--endpoint-url",
        ep.as_str(),
        "--region",
        "us-east-1",
    ];
    let o = prism(
        &[
            &[
                "plugin",
                "register",
                wasm::WEBSITE,
                "--receiver",
                "website",
                "--queue",
                "q",
            ][..],
            &remote,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = prism(
        &[
            &[
                "plugin",
                "diff",
                wasm::WEBSITE,
                "--receiver",
                "website",
                "--changes",
                &changes,
            ][..],
            &remote,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = prism(
        &[
            &[
                "plugin",
                "diff",
                wasm::LOGISTICS,
                "--receiver",
                "website",
                "--changes",
                &changes,
            ][..],
            &remote,
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    // The gate on register works against DynamoDB too.
    let o = prism(
        &[
            &[
                "plugin",
                "register",
                wasm::LOGISTICS,
                "--receiver",
                "website",
                "--diff-changes",
                &changes,
            ][..],
            &remote,
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).1.contains("not registered"), "{:?}", text(&o));
}
