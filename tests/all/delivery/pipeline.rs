//! The local pipeline end to end: exact messages per receiver, order per
//! key, batch windows, disabled receivers.

use std::sync::Mutex;

use prism_core::dispatch::{Dispatcher, Progress};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::{DeadLetter, Envelope, Sink, SinkError};
use prism_e2e::{bodies, changes, engine, files, register, run, wasm};
use prism_sample::StreamWriter;
use prism_types::manifest::Mode;
use prism_types::registry::LocalRegistry;
use serde_json::{Value, json};

fn drill() -> Value {
    json!({
        "pk": "P-1", "sku": "P-1", "brand": "Voltar", "category": "drills", "status": "active",
        "texts": {"en": {"name": "Drill", "description": "Strong", "bullets": ["Fast"]}, "de": {"name": "Bohrer"}},
        "prices": {"DE": {"currency": "EUR", "amount": 129.99}},
        "logistics": {"ean": "4000000000013", "weight_g": 1800,
                      "dimensions_mm": {"length": 300, "width": 90, "height": 250},
                      "packaging": {"type": "box", "units_per_carton": 4}},
        "images": [{"role": "main", "url": "https://cdn/1.jpg"}]
    })
}

/// insert; weight; price; German name; remove; and a no-op rewrite of P-2.
fn stream() -> String {
    let mut w = StreamWriter::new();
    let v0 = drill();
    let mut v1 = v0.clone();
    v1["logistics"]["weight_g"] = json!(1900);
    let mut v2 = v1.clone();
    v2["prices"]["DE"]["amount"] = serde_json::from_str("119.990").unwrap();
    let mut v3 = v2.clone();
    v3["texts"]["de"]["name"] = json!("Bohrmaschine");
    w.push("P-1", None, Some(&v0));
    w.push("P-1", Some(&v0), Some(&v1));
    w.push("P-1", Some(&v1), Some(&v2));
    w.push("P-1", Some(&v2), Some(&v3));
    w.push("P-1", Some(&v3), None);
    let mut p2 = drill();
    p2["pk"] = json!("P-2");
    w.push("P-2", Some(&p2), Some(&p2));
    w.to_json_lines()
}

fn registry(dir: &std::path::Path) {
    let batch = Mode::Batch {
        max_count: 100,
        max_bytes: 1 << 20,
        max_age_secs: 3600,
    };
    register(
        dir,
        "website-en",
        wasm::WEBSITE,
        Mode::Immediate,
        prism_e2e::relaxed(),
        &[("language", "en")],
    );
    prism_e2e::immediate(dir, "leaflet", wasm::LEAFLET);
    register(
        dir,
        "pricelist",
        wasm::PRICELIST,
        batch,
        prism_e2e::relaxed(),
        &[("market", "DE")],
    );
    prism_e2e::immediate(dir, "logistics", wasm::LOGISTICS);
}

#[test]
fn each_receiver_gets_exactly_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    registry(&reg);
    let (_, report) = run(&engine(), &reg, &changes(&stream()), &out, 2);

    let names = |r: &str| {
        files(&out, r, |n| !n.ends_with(".meta.json"))
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("website-en"),
        [
            "00000001-000.json",
            "00000003-000.json",
            "00000005-000.json"
        ]
    );
    assert_eq!(
        names("logistics"),
        [
            "00000001-000.json",
            "00000002-000.json",
            "00000005-000.json"
        ]
    );
    assert_eq!(
        names("leaflet"),
        ["00000001-000.xml", "00000004-000.xml", "00000005-000.xml"]
    );
    assert_eq!(names("pricelist"), ["00000001-000.csv"]);

    let web = bodies(&out, "website-en");
    assert_eq!(
        web[0],
        r#"{"@context":"https://schema.org","@type":"Product","brand":{"@type":"Brand","name":"Voltar"},"description":"Strong","gtin13":"4000000000013","image":["https://cdn/1.jpg"],"name":"Drill","offers":{"@type":"Offer","availability":"https://schema.org/InStock","price":129.99,"priceCurrency":"EUR"},"sku":"P-1","url":"https://www.example.com/en/p/P-1"}"#
    );
    assert!(web[1].contains(r#""price":119.99"#), "{}", web[1]);
    assert_eq!(
        web[2],
        r#"{"@context":"https://schema.org","@type":"Product","deleted":true,"sku":"P-1"}"#
    );

    let log = bodies(&out, "logistics");
    assert_eq!(
        log[1],
        r#"{"changed":["/logistics/weight_g"],"dimensions_mm":{"height":250,"length":300,"width":90},"packaging":{"type":"box","units_per_carton":4},"sku":"P-1","weight_g":1900}"#
    );
    assert_eq!(log[2], r#"{"deleted":true,"sku":"P-1"}"#);

    let leaflet = bodies(&out, "leaflet");
    assert_eq!(
        leaflet[1],
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><product sku="P-1" action="upsert"><brand>Voltar</brand><category>drills</category>"#,
            r#"<texts><text lang="de"><name>Bohrmaschine</name></text><text lang="en"><name>Drill</name><description>Strong</description>"#,
            r#"<bullets><bullet>Fast</bullet></bullets></text></texts><image>https://cdn/1.jpg</image></product>"#
        )
    );
    assert_eq!(
        leaflet[2],
        r#"<?xml version="1.0" encoding="UTF-8"?><product sku="P-1" action="delete"></product>"#
    );

    assert_eq!(
        bodies(&out, "pricelist")[0],
        "sku;ean;name;currency;price;status;sequence\r\n\
         P-1;4000000000013;Drill;EUR;129.99;active;100000000000000000001\r\n\
         P-1;4000000000013;Drill;EUR;119.99;active;100000000000000000003\r\n\
         P-1;;;;;deleted;100000000000000000005\r\n"
    );

    let meta: Value =
        serde_json::from_str(&files(&out, "website-en", |n| n.ends_with(".meta.json"))[0].1)
            .unwrap();
    assert_eq!(meta["key"], "P-1");
    assert_eq!(
        meta["group"], "P-1",
        "the ordering group defaults to the product key"
    );
    assert_eq!(meta["content_type"], "application/ld+json");
    assert_eq!(meta["attributes"]["language"], "en");
    assert!(
        meta["plugin_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    for (id, st) in &report.receivers {
        assert_eq!(st.seen, 6, "{id}");
        assert_eq!(st.errors(), 0, "{id}");
    }
    assert_eq!(report.receivers["logistics"].skipped, 3);
}

/// Records deliveries in the order the sink sees them.
/// Eight keys K0…K7, each inserted, then its weight changed `steps` times,
/// round-robin over the keys.
fn weight_stream(steps: u32) -> Vec<prism_types::change::Change> {
    let mut w = StreamWriter::new();
    let mut docs: Vec<Value> = (0..8)
        .map(|i| json!({"pk": format!("K{i}"), "logistics": {"weight_g": 0}}))
        .collect();
    for (i, d) in docs.iter().enumerate() {
        w.push(&format!("K{i}"), None, Some(d));
    }
    for step in 1..=steps {
        for (i, d) in docs.iter_mut().enumerate() {
            let old = d.clone();
            d["logistics"]["weight_g"] = json!(step);
            w.push(&format!("K{i}"), Some(&old), Some(d));
        }
    }
    changes(&w.to_json_lines())
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String, String)>>);

impl Sink for Recorder {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let mut v = self.0.lock().unwrap();
        for e in envelopes {
            v.push((
                e.receiver.to_owned(),
                e.key.to_owned(),
                e.sequence.to_owned(),
            ));
        }
        Ok(())
    }
    fn park(&self, d: &DeadLetter) -> Result<(), SinkError> {
        panic!("nothing should be parked: {d:?}")
    }
}

#[test]
fn order_per_receiver_and_key_is_kept_with_many_threads() {
    let stream = weight_stream(40);
    let dir = tempfile::tempdir().unwrap();
    prism_e2e::immediate(dir.path(), "logistics", wasm::LOGISTICS);
    prism_e2e::immediate(dir.path(), "logistics-2", wasm::LOGISTICS);
    let set = ReceiverSet::load(&engine(), LocalRegistry::new(dir.path()).load().unwrap());
    let sink = Recorder::default();
    Dispatcher::builder()
        .threads(4)
        .build()
        .run(&set, &stream, &sink, &Progress::default());
    let seen = sink.0.into_inner().unwrap();
    assert_eq!(seen.len(), 2 * stream.len());
    for receiver in ["logistics", "logistics-2"] {
        for i in 0..8 {
            let key = format!("K{i}");
            let seqs: Vec<u128> = seen
                .iter()
                .filter(|(r, k, _)| r == receiver && *k == key)
                .map(|(_, _, s)| s.parse().unwrap())
                .collect();
            assert_eq!(seqs.len(), 41);
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{receiver}/{key} out of order: {seqs:?}"
            );
        }
    }
}

#[test]
fn batch_windows_close_on_count_and_on_stream_age() {
    let stream = changes(&prism_e2e::sample(5));
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    register(
        &reg,
        "by-count",
        wasm::PRICELIST,
        Mode::Batch {
            max_count: 2,
            max_bytes: 1 << 30,
            max_age_secs: 1 << 30,
        },
        prism_e2e::relaxed(),
        &[],
    );
    register(
        &reg,
        "by-age",
        wasm::PRICELIST,
        Mode::Batch {
            max_count: 1000,
            max_bytes: 1 << 30,
            max_age_secs: 3,
        },
        prism_e2e::relaxed(),
        &[],
    );
    let (_, report) = run(&engine(), &reg, &stream, &out, 2);
    let accepted = report.receivers["by-count"].accepted as usize;
    let rows = |r: &str| {
        bodies(&out, r)
            .iter()
            .map(|b| b.lines().count() - 1)
            .collect::<Vec<_>>()
    };
    let by_count = rows("by-count");
    assert_eq!(by_count.iter().sum::<usize>(), accepted);
    assert!(
        by_count[..by_count.len() - 1].iter().all(|&n| n == 2),
        "{by_count:?}"
    );
    // The sample stream's records are one second apart: a 3 s window holds at most 3 seconds of changes.
    let by_age = rows("by-age");
    assert_eq!(by_age.iter().sum::<usize>(), accepted);
    assert!(
        by_age.len() > 1 && by_age.iter().all(|&n| n <= 3),
        "{by_age:?}"
    );
}

#[test]
fn a_disabled_receiver_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    registry(&reg);
    let path = reg.join("leaflet.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("enabled = true", "enabled = false");
    std::fs::write(&path, text).unwrap();
    let (set, report) = run(&engine(), &reg, &changes(&stream()), &out, 2);
    assert_eq!(set.disabled, ["leaflet"]);
    assert!(!report.receivers.contains_key("leaflet"));
    assert!(!out.join("leaflet").exists());
    assert_eq!(bodies(&out, "logistics").len(), 3);
}

/// A sink whose destination for one receiver and key is down.
struct DownFor {
    receiver: &'static str,
    key: &'static str,
    delivered: Recorder,
}

impl Sink for DownFor {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let e = &envelopes[0];
        if e.receiver == self.receiver && e.key == self.key {
            return Err(SinkError::new(
                e.receiver,
                prism_core::sink::SinkErrorKind::Unavailable,
                "queue unreachable",
            ));
        }
        self.delivered.deliver(envelopes)
    }
    fn park(&self, d: &DeadLetter) -> Result<(), SinkError> {
        panic!("an unavailable destination must hold, not park: {d:?}")
    }
}

#[test]
fn hold_mode_stops_one_product_at_a_dead_destination_and_the_retry_runs_only_what_it_held() {
    // Eight keys, each inserted then modified 5 times (weight).
    let stream = weight_stream(5);
    let dir = tempfile::tempdir().unwrap();
    prism_e2e::immediate(dir.path(), "down", wasm::LOGISTICS);
    prism_e2e::immediate(dir.path(), "up", wasm::LOGISTICS);
    let set = ReceiverSet::load(&engine(), LocalRegistry::new(dir.path()).load().unwrap());
    let d = Dispatcher::builder()
        .threads(2)
        .hold_unavailable(true)
        .build();
    let sink = DownFor {
        receiver: "down",
        key: "K3",
        delivered: Recorder::default(),
    };
    let first = d.run(&set, &stream, &sink, &Progress::default());

    // `up` got everything; `down` held K3 from its insert on, and only K3:
    // other products carry on.
    let down = &first.receivers["down"];
    let up = &first.receivers["up"];
    assert!(up.held.is_empty());
    assert_eq!(up.messages as usize, stream.len());
    assert_eq!(first.first_held(), Some(3), "K3's insert is change 3");
    let k3: Vec<usize> = (0..stream.len())
        .filter(|&i| stream[i].key == "K3")
        .collect();
    assert_eq!(
        down.held, k3,
        "K3's changes wait behind the first, and only they"
    );
    assert_eq!(
        down.seen as usize,
        stream.len(),
        "each change is run once: formatted, then delivered together with the others, and held when its product's first change could not go"
    );
    let delivered = sink.delivered.0.into_inner().unwrap();
    assert!(!delivered.iter().any(|(r, k, _)| r == "down" && k == "K3"));

    // The retry, with the destination back: only the held pairs run.
    let held = down.held.clone();
    let sink = Recorder::default();
    let already = |receiver: &str, i: usize| receiver == "up" || !held.contains(&i);
    let retry = d.run_with(
        &set,
        &stream,
        &sink,
        &Progress::default(),
        prism_core::dispatch::RunOptions {
            already: &already,
            ..Default::default()
        },
    );
    assert_eq!(retry.receivers["up"].already_handled as usize, stream.len());
    assert_eq!(retry.receivers["up"].messages, 0);
    assert_eq!(retry.receivers["down"].messages as usize, held.len());
    assert_eq!(
        retry.receivers["down"].already_handled as usize,
        stream.len() - held.len()
    );
    let again = sink.0.into_inner().unwrap();
    let mut k3_seqs: Vec<u128> = again
        .iter()
        .filter(|(_, k, _)| k == "K3")
        .map(|(_, _, s)| s.parse().unwrap())
        .collect();
    assert_eq!(
        k3_seqs.len(),
        6,
        "K3's insert and its five changes, now delivered"
    );
    let sorted = {
        let mut s = k3_seqs.clone();
        s.sort();
        s
    };
    assert_eq!(k3_seqs, sorted, "in order");
    k3_seqs.dedup();
    assert_eq!(k3_seqs.len(), 6);
}

/// Website's own `accepts`, written as a field interest.
const WEBSITE_INTEREST: &[&str] = &[
    "/texts/en/**",
    "/prices/DE/**",
    "/images/**",
    "/brand",
    "/status",
    "/category",
    "/logistics/ean",
];

#[test]
fn field_interest_skips_plugin_calls_and_changes_no_output() {
    let stream = changes(&prism_e2e::sample(60));
    let dir = tempfile::tempdir().unwrap();
    let (plain, filtered) = (dir.path().join("plain"), dir.path().join("filtered"));
    prism_e2e::immediate(&plain, "website", wasm::WEBSITE);
    prism_e2e::immediate(&filtered, "website", wasm::WEBSITE);
    let path = filtered.join("website.toml");
    let mut m = prism_types::manifest::ReceiverManifest::from_toml(
        &std::fs::read_to_string(&path).unwrap(),
        "m",
    )
    .unwrap();
    m.interest = WEBSITE_INTEREST.iter().map(|s| (*s).to_owned()).collect();
    std::fs::write(&path, m.to_toml()).unwrap();

    let (out_a, out_b) = (dir.path().join("a"), dir.path().join("b"));
    let (_, a) = run(&engine(), &plain, &stream, &out_a, 2);
    let (_, b) = run(&engine(), &filtered, &stream, &out_b, 2);
    let (a, b) = (&a.receivers["website"], &b.receivers["website"]);
    assert_eq!(bodies(&out_a, "website"), bodies(&out_b, "website"));
    assert_eq!(a.filtered, 0);
    assert!(b.filtered > stream.len() as u64 / 4, "{b:?}");
    assert_eq!(a.seen, b.seen);
    // Every call the host skipped is one `accepts` would have declined.
    assert_eq!(a.skipped, b.skipped + b.filtered);
    assert_eq!(a.accepted, b.accepted);
}

#[test]
fn inserts_and_removes_always_pass_the_interest_filter() {
    let stream = changes(&prism_e2e::sample(40));
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    register(
        &reg,
        "echo",
        wasm::HOSTILE,
        Mode::Immediate,
        prism_e2e::relaxed(),
        &[],
    );
    let path = reg.join("echo.toml");
    let mut m = prism_types::manifest::ReceiverManifest::from_toml(
        &std::fs::read_to_string(&path).unwrap(),
        "m",
    )
    .unwrap();
    m.interest = vec!["/logistics/**".into()];
    std::fs::write(&path, m.to_toml()).unwrap();
    let out = dir.path().join("out");
    let (_, report) = run(&engine(), &reg, &stream, &out, 2);
    // The echo plugin answers everything it is offered: what it got is
    // exactly the inserts, the removes and the modifies touching /logistics.
    let offered = stream
        .iter()
        .filter(|c| {
            c.kind != prism_types::change::ChangeKind::Modify
                || c.changed_paths.iter().any(|p| p.starts_with("/logistics"))
        })
        .count();
    let st = &report.receivers["echo"];
    assert_eq!(st.messages as usize, offered);
    assert_eq!((st.filtered as usize) + offered, stream.len());
    assert!(
        stream
            .iter()
            .any(|c| c.kind == prism_types::change::ChangeKind::Remove)
    );
}

/// Records how many changes, and how many message bytes, each packed
/// hand-over carried.
#[derive(Default)]
struct Packs(Mutex<Vec<(usize, usize)>>);

impl Sink for Packs {
    fn deliver(&self, _: &[Envelope<'_>]) -> Result<(), SinkError> {
        Ok(())
    }
    fn deliver_many(&self, changes: &[Vec<Envelope<'_>>]) -> Vec<Result<(), SinkError>> {
        let bytes = changes.iter().flatten().map(|e| e.message.body.len()).sum();
        self.0.lock().unwrap().push((changes.len(), bytes));
        changes.iter().map(|_| Ok(())).collect()
    }
    fn park(&self, d: &DeadLetter) -> Result<(), SinkError> {
        panic!("nothing should be parked: {d:?}")
    }
}

/// A worker hands its packed messages over once they reach `pack_bytes`,
/// however few changes that is: a plugin whose every output is large cannot
/// make a pack hold hundreds of them.
#[test]
fn a_pack_is_handed_over_at_its_byte_limit_before_its_count() {
    let stream = weight_stream(5);
    let dir = tempfile::tempdir().unwrap();
    register(
        dir.path(),
        "fan",
        wasm::HOSTILE,
        Mode::Immediate,
        prism_e2e::relaxed(),
        &[("behaviour", "fanout"), ("parts", "4")],
    );
    let set = ReceiverSet::load(&engine(), LocalRegistry::new(dir.path()).load().unwrap());
    let run = |pack_bytes| {
        let sink = Packs::default();
        Dispatcher::builder()
            .threads(1)
            .pack_bytes(pack_bytes)
            .build()
            .run(&set, &stream, &sink, &Progress::default());
        sink.0.into_inner().unwrap()
    };
    // 48 changes, four messages of ~60 bytes each: one pack by count.
    let whole = run(prism_core::dispatch::PACK_BYTES);
    assert_eq!(whole.len(), 1, "{whole:?}");
    assert_eq!(whole[0].0, stream.len());
    let per_change = whole[0].1 / stream.len();
    // A limit of about three changes' bytes: packs of three (four where
    // the first three are a few bytes short of it), every change once.
    let limited = run(3 * per_change);
    assert_eq!(limited.iter().map(|p| p.0).sum::<usize>(), stream.len());
    assert!(limited.iter().all(|&(n, _)| n <= 4), "{limited:?}");
    assert!(limited.len() >= stream.len() / 4, "{limited:?}");
}
