//! Bad input and bad registry entries, through `prism run`: each is named
//! with where and what, parked, and the rest still flows.

use prism_e2e::{sample, wasm};

use crate::{prism, text};

fn record(name: &str, ddb: &str) -> String {
    format!(
        r#"{{"eventID":"ev-{name}","eventName":"{name}","eventSource":"aws:dynamodb","dynamodb":{ddb}}}"#
    )
}

fn good(key: &str, seq: u32) -> String {
    record(
        "INSERT",
        &format!(
            r#"{{"Keys":{{"pk":{{"S":"{key}"}}}},"SequenceNumber":"{seq}","NewImage":{{"pk":{{"S":"{key}"}},"logistics":{{"M":{{"weight_g":{{"N":"1800"}}}}}}}}}}"#
        ),
    )
}

#[test]
fn bad_records_are_named_parked_and_skipped() {
    let lines = [
        good("P-1", 1),
        r#"{"eventID": "broken", "eventName": "INSERT", "dynamodb": {"#.to_owned(),
        record(
            "INSERT",
            r#"{"Keys":{"pk":{"S":"P-2"}},"SequenceNumber":"3","NewImage":{"w":{"X":"1"}}}"#,
        ),
        record(
            "INSERT",
            r#"{"Keys":{"pk":{"S":"P-3"}},"SequenceNumber":"4","NewImage":{"pic":{"B":"***not base64***"}}}"#,
        ),
        record(
            "INSERT",
            r#"{"Keys":{"pk":{"S":"P-4"}},"SequenceNumber":"5"}"#,
        ),
        record(
            "MODIFY",
            r#"{"Keys":{"pk":{"S":"P-5"}},"SequenceNumber":"6","NewImage":{"a":{"S":"x"}}}"#,
        ),
        record(
            "INSERT",
            r#"{"Keys":{"pk":{"S":"P-6"}},"SequenceNumber":"7","NewImage":{"n":{"N":"123456789012345678901234567890123456789"}}}"#,
        ),
        good("P-7", 8),
    ];
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines.join("\n")).unwrap();
    let reg = dir.path().join("reg");
    prism_e2e::immediate(&reg, "logistics", wasm::LOGISTICS);
    let out = dir.path().join("out");
    let o = prism(&[
        "run",
        "--registry",
        reg.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--outbox",
        out.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let ev = events.display().to_string();
    for expected in [
        format!("UNREADABLE INPUT {ev} line 2: not valid JSON"),
        format!(
            "UNREADABLE INPUT {ev} line 3 (eventID ev-INSERT): dynamodb.NewImage: attribute at \"/w\": unknown DynamoDB type \"X\""
        ),
        format!(
            "UNREADABLE INPUT {ev} line 4 (eventID ev-INSERT): dynamodb.NewImage: attribute at \"/pic\": B is not valid base64"
        ),
        format!("UNREADABLE INPUT {ev} line 5 (eventID ev-INSERT): INSERT record has no NewImage"),
        format!("UNREADABLE INPUT {ev} line 6 (eventID ev-MODIFY): MODIFY record has no OldImage"),
        format!(
            "UNREADABLE INPUT {ev} line 7 (eventID ev-INSERT): dynamodb.NewImage: attribute at \"/n\": \"123456789012345678901234567890123456789\" has 39 significant digits"
        ),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("2 changes read (6 unreadable)"), "{stdout}");
    let parked: Vec<_> = std::fs::read_dir(out.join("_input-errors"))
        .unwrap()
        .collect();
    assert_eq!(parked.len(), 6);
    let first: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("_input-errors/000001.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(first["raw"], lines[1], "the raw record is kept for replay");
    assert_eq!(
        prism_e2e::bodies(&out, "logistics").len(),
        2,
        "good records still flow"
    );
}

#[test]
fn broken_registry_entries_disable_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    prism_e2e::immediate(&reg, "logistics", wasm::LOGISTICS);
    prism_e2e::immediate(&reg, "leaflet", wasm::LEAFLET);
    prism_e2e::immediate(&reg, "website", wasm::WEBSITE);
    // An unknown field in one manifest, a wasm that does not match its digest in another.
    let leaflet = reg.join("leaflet.toml");
    let t = std::fs::read_to_string(&leaflet)
        .unwrap()
        .replace("enabled = true", "enabled = true\nretries = 3");
    std::fs::write(&leaflet, t).unwrap();
    let website: prism_types::manifest::ReceiverManifest = toml_manifest(&reg.join("website.toml"));
    std::fs::write(
        reg.join(website.plugin.file.as_deref().unwrap()),
        prism_e2e::read(wasm::LOGISTICS),
    )
    .unwrap();

    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, sample(3)).unwrap();
    let out = dir.path().join("out");
    let args = [
        "run",
        "--registry",
        reg.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--outbox",
        out.to_str().unwrap(),
    ];
    let o = prism(&args);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("leaflet.toml: TOML parse error")
            && stdout.contains("unknown field `retries`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("digest mismatch for receiver website"),
        "{stdout}"
    );
    assert!(stdout.contains("1 receivers active"), "{stdout}");
    assert!(!prism_e2e::bodies(&out, "logistics").is_empty());

    // With --fail-on-error the same run exits 2, for scripts.
    let mut strict = args.to_vec();
    strict.extend(["--clean", "--fail-on-error"]);
    assert_eq!(prism(&strict).status.code(), Some(2));
}

fn toml_manifest(path: &std::path::Path) -> prism_types::manifest::ReceiverManifest {
    prism_types::manifest::ReceiverManifest::from_toml(&std::fs::read_to_string(path).unwrap(), "m")
        .unwrap()
}
