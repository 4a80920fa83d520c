//! Output dedup in the local pipeline, through `prism run --state`: a full
//! refresh that changes nothing a receiver outputs sends it nothing, one that
//! changes 3 % sends 3 %, and a receiver with dedup off gets every refresh.
//! (The same against DynamoDB is in `stream.rs`.)

use prism_e2e::{bodies, immediate, wasm};
use prism_sample::{StreamWriter, product};
use prism_types::manifest::ReceiverManifest;
use serde_json::{Value, json};

use crate::{prism, text};

fn set_dedup(reg: &std::path::Path, receiver: &str, on: bool) {
    let path = reg.join(format!("{receiver}.toml"));
    let mut m = ReceiverManifest::from_toml(&std::fs::read_to_string(&path).unwrap(), "m").unwrap();
    m.dedup = on;
    std::fs::write(&path, m.to_toml()).unwrap();
}

#[test]
fn a_refresh_sends_only_what_changed_and_dedup_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = d.join("reg");
    immediate(&reg, "website", wasm::WEBSITE);
    immediate(&reg, "website-all", wasm::WEBSITE);
    set_dedup(&reg, "website-all", false);

    let mut docs: Vec<Value> = (0..100).map(|n| product(n, 7)).collect();
    let mut w = StreamWriter::new();
    for d in &docs {
        w.push(d["pk"].as_str().unwrap(), None, Some(d));
    }
    std::fs::write(d.join("inserts.jsonl"), w.to_json_lines()).unwrap();
    // A full refresh: every product rewritten with new bullets (which the
    // website is offered but does not publish); 3 also get a new price.
    let mut w = StreamWriter::new();
    for (i, doc) in docs.iter_mut().enumerate() {
        let old = doc.clone();
        doc["texts"]["en"]["bullets"] = json!(["Refreshed"]);
        if i % 33 == 1 {
            doc["prices"]["DE"]["amount"] = json!(1.25);
        }
        w.push(doc["pk"].as_str().unwrap(), Some(&old), Some(doc));
    }
    std::fs::write(d.join("refresh.jsonl"), w.to_json_lines()).unwrap();
    // A refresh that changes nothing at all.
    let mut w = StreamWriter::new();
    for doc in &docs {
        w.push(doc["pk"].as_str().unwrap(), Some(doc), Some(doc));
    }
    std::fs::write(d.join("noop.jsonl"), w.to_json_lines()).unwrap();

    let state = d.join("state");
    let run = |events: &str, outbox: &str| {
        let o = prism(&[
            "run",
            "--registry",
            reg.to_str().unwrap(),
            "--events",
            d.join(events).to_str().unwrap(),
            "--outbox",
            d.join(outbox).to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        out
    };
    run("inserts.jsonl", "o1");
    assert_eq!(bodies(&d.join("o1"), "website").len(), 100);
    assert!(state.join("outputs.jsonl").exists());

    let out = run("refresh.jsonl", "o2");
    let sent = bodies(&d.join("o2"), "website");
    assert_eq!(sent.len(), 3, "only the three new prices: {out}");
    assert!(sent.iter().all(|b| b.contains("1.25")));
    assert!(out.contains("97 messages not sent"), "{out}");
    assert_eq!(
        bodies(&d.join("o2"), "website-all").len(),
        100,
        "dedup off: every refresh"
    );

    let out = run("noop.jsonl", "o3");
    assert!(bodies(&d.join("o3"), "website").is_empty(), "{out}");

    // The state is what made the difference: without it, all 100 go out.
    let o = prism(&[
        "run",
        "--registry",
        reg.to_str().unwrap(),
        "--events",
        d.join("refresh.jsonl").to_str().unwrap(),
        "--outbox",
        d.join("o4").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(bodies(&d.join("o4"), "website").len(), 100);
}

/// A product's second change in one stream batch, with the same output as
/// its first, is suppressed. Packing handed a whole pack to the dedup check
/// before any of it was recorded, so the second was compared with the state
/// from before the first and always went out (the demo's leaflet went from
/// 31 suppressed to 0).
#[test]
fn a_repeat_with_the_same_output_in_one_batch_is_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = d.join("reg");
    immediate(&reg, "website", wasm::WEBSITE);
    let mut w = StreamWriter::new();
    for n in 0..20 {
        let doc = product(n, 7);
        w.push(doc["pk"].as_str().unwrap(), None, Some(&doc));
        // Then a change the website does not publish (new bullets).
        let mut next = doc.clone();
        next["texts"]["en"]["bullets"] = json!(["Again"]);
        w.push(doc["pk"].as_str().unwrap(), Some(&doc), Some(&next));
    }
    std::fs::write(d.join("events.jsonl"), w.to_json_lines()).unwrap();
    let o = prism(&[
        "run",
        "--registry",
        reg.to_str().unwrap(),
        "--events",
        d.join("events.jsonl").to_str().unwrap(),
        "--outbox",
        d.join("out").to_str().unwrap(),
        "--state",
        d.join("state").to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(
        bodies(&d.join("out"), "website").len(),
        20,
        "one message per product: {out}"
    );
    assert!(out.contains("20 messages not sent"), "{out}");
}
