//! `prism run --mapper`: the whole local chain from a file of shadow-table
//! changes, its state across runs, and where what fails is parked.

use std::path::{Path, PathBuf};

use prism_e2e::{
    bodies, catalog_manifest, hostile_mapper_manifest, immediate, read, wasm, write_mapper,
};
use prism_sample::shadow::{self, RENAMED_BRAND};
use prism_sample::{SampleOptions, StreamWriter};
use prism_types::mapper_manifest::MapperLimits;
use serde_json::{Value, json};

use crate::{prism, text};

fn run(
    mapper: &Path,
    registry: &Path,
    events: &Path,
    outbox: &Path,
    state: &Path,
) -> (bool, String, String) {
    let o = prism(&[
        "run",
        "--mapper",
        mapper.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--outbox",
        outbox.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--clean",
        "--fail-on-error",
    ]);
    let (out, err) = text(&o);
    (o.status.success(), out, err)
}

/// A temporary directory with a registry of the website alone, an empty
/// state directory and where the outbox goes.
fn website_only() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (registry, state, outbox) = (
        tmp.path().join("reg"),
        tmp.path().join("state"),
        tmp.path().join("out"),
    );
    std::fs::create_dir_all(&state).unwrap();
    immediate(&registry, "website", wasm::WEBSITE);
    (tmp, registry, state, outbox)
}

fn files(dir: &Path) -> Vec<Value> {
    let mut paths: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => return vec![],
    };
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

#[test]
fn prism_run_maps_shadow_changes_then_runs_the_receivers_and_keeps_state() {
    let (tmp, registry, state, outbox) = website_only();
    let mapper = write_mapper(
        &tmp.path().join("mapper"),
        &catalog_manifest(&read(wasm::CATALOG)),
        wasm::CATALOG,
    );
    let sample = shadow::stream(
        SampleOptions {
            products: 20,
            seed: 42,
        },
        "",
    );
    let events = tmp.path().join("shadow.jsonl");
    let o = prism(&[
        "sample",
        "--shadow",
        "--products",
        "20",
        "--out",
        events.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let mut stream = std::fs::read_to_string(&events).unwrap();
    assert_eq!(
        stream,
        sample.stream.to_json_lines(),
        "prism sample --shadow writes the sample, byte for byte"
    );
    stream.push_str("{not json\n");
    stream.push_str(&json!({"eventName": "INSERT", "eventSourceARN": "arn:aws:dynamodb:r:1:table/warehouses/stream/x",
                           "dynamodb": {"Keys": {"id": {"S": "W"}}, "NewImage": {"id": {"S": "W"}}, "SequenceNumber": "1"}}).to_string());
    std::fs::write(&events, stream).unwrap();

    let (ok, out, err) = run(&mapper, &registry, &events, &outbox, &state);
    assert!(
        !ok,
        "two unreadable records fail --fail-on-error:\n{out}\n{err}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("mapper catalog: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("{} shadow changes", sample.stream.records().len())),
        "{line}"
    );
    assert!(line.contains("0 failed"), "{line}");
    let errors = files(&outbox.join("_input-errors"));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[1]["error"]
            .as_str()
            .unwrap()
            .contains("not a shadow table of mapper \"catalog\"")
    );
    // Every product was complete when published: no rejected half-products,
    // and the brand rename reached the website.
    assert!(files(&outbox.join("website").join("dead-letters")).is_empty());
    let site = bodies(&outbox, "website");
    assert!(site.iter().any(|b| b.contains(RENAMED_BRAND)), "{site:?}");
    assert_eq!(
        site.iter()
            .filter(|b| b.contains("\"deleted\":true"))
            .count(),
        1,
        "the one product removed"
    );

    // A second run carries on from the state: one price edit, one message.
    let key = json!({"article_no": "P-00001", "market": "DE"});
    let doc = &sample.expected["P-00001"];
    let price = |amount: Value| json!({"article_no": "P-00001", "market": "DE", "currency": "EUR", "amount": amount});
    let mut w = StreamWriter::new();
    w.push_to(
        "prices",
        &key,
        Some(&price(doc["prices"]["DE"]["amount"].clone())),
        Some(&price(json!(1.25))),
    );
    std::fs::write(&events, w.to_json_lines()).unwrap();
    let (ok, out, err) = run(&mapper, &registry, &events, &outbox, &state);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("mapper catalog: 1 shadow changes → 1 model writes (1 upserts, 0 deletes)"),
        "{out}"
    );
    let site = bodies(&outbox, "website");
    assert_eq!(site.len(), 1, "{site:?}");
    assert!(
        site[0].contains("P-00001") && site[0].contains("1.25"),
        "{}",
        site[0]
    );
}

#[test]
fn a_change_the_mapper_rejects_is_parked_with_its_record_for_replay() {
    let (tmp, registry, state, outbox) = website_only();
    let manifest = hostile_mapper_manifest(&read(wasm::HOSTILE_MAPPER), MapperLimits::default());
    let mapper = write_mapper(&tmp.path().join("mapper"), &manifest, wasm::HOSTILE_MAPPER);
    let mut w = StreamWriter::new();
    w.push_to(
        "orders",
        &json!({"id": "o1"}),
        None,
        Some(&json!({"id": "o1", "do": "reject"})),
    );
    w.push_to(
        "orders",
        &json!({"id": "o2"}),
        None,
        Some(&json!({"id": "o2", "do": "trap"})),
    );
    let events = tmp.path().join("shadow.jsonl");
    std::fs::write(&events, w.to_json_lines()).unwrap();
    let (ok, out, err) = run(&mapper, &registry, &events, &outbox, &state);
    assert!(!ok, "{out}\n{err}");
    assert!(out.contains("2 failed"), "{out}");
    let dead = files(&outbox.join("_mapper").join("dead-letters"));
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0]["kind"].as_str(), dead[1]["kind"].as_str()),
        (Some("rejected"), Some("trap"))
    );
    assert!(
        dead[1]["error"]
            .as_str()
            .unwrap()
            .contains("panicked on purpose"),
        "{}",
        dead[1]
    );
    // The raw stream record is there, exactly, to replay it.
    assert_eq!(dead[0]["record"], w.records()[0]);
}

#[test]
fn prism_mapper_check_accepts_a_mapper_and_names_what_is_wrong_with_others() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write_mapper(
        &tmp.path().join("good"),
        &catalog_manifest(&read(wasm::CATALOG)),
        wasm::CATALOG,
    );
    let o = prism(&["mapper", "check", "--manifest", good.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("mapper catalog fits prism:receiver/mapper@0.1.0; 5 shadow tables: brands, logistics, products, prices, texts"),
        "{out}"
    );
    // A receiver's component under a mapper manifest: refused, saying why.
    let wrong = write_mapper(
        &tmp.path().join("wrong"),
        &catalog_manifest(&read(wasm::WEBSITE)),
        wasm::WEBSITE,
    );
    let o = prism(&["mapper", "check", "--manifest", wrong.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("does not export `map-change"), "{err}");
    // A component that is not the one the manifest names.
    std::fs::write(
        tmp.path().join("good").join("mapper.wasm"),
        read(wasm::HOSTILE_MAPPER),
    )
    .unwrap();
    let o = prism(&["mapper", "check", "--manifest", good.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(err.contains("but the manifest says sha256:"), "{err}");
    // Publishing needs the bucket.
    let fine = write_mapper(
        &tmp.path().join("fine"),
        &catalog_manifest(&read(wasm::CATALOG)),
        wasm::CATALOG,
    );
    let o = prism(&["mapper", "publish", "--manifest", fine.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(err.contains("publishing needs the plugin bucket"), "{err}");
}
