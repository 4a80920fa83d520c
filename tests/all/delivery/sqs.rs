//! Delivery to SQS against moto, through the real dispatcher: the same
//! messages as the local outbox, prism's attributes, FIFO groups and
//! deduplication, oversized messages and missing queues parked in the
//! receiver's dead-letter queue.

use std::collections::HashMap;

use prism_aws::sqs::SqsSink;
use prism_core::dispatch::{Dispatcher, Progress};
use prism_core::receivers::ReceiverSet;
use prism_e2e::aws::Queues;
use prism_e2e::{bodies, changes, engine, register, sample, wasm};
use prism_types::manifest::{Destination, Mode};
use prism_types::registry::LocalRegistry;

fn destinations(reg: &std::path::Path, dests: &[(&str, &str, &str)]) {
    for (receiver, queue, dlq) in dests {
        let path = reg.join(format!("{receiver}.toml"));
        let mut m = prism_types::manifest::ReceiverManifest::from_toml(
            &std::fs::read_to_string(&path).unwrap(),
            "m",
        )
        .unwrap();
        m.destination = Some(Destination {
            queue: (*queue).to_owned(),
            dead_letter_queue: Some((*dlq).to_owned()),
        });
        std::fs::write(&path, m.to_toml()).unwrap();
    }
}

fn sink_for(set: &ReceiverSet, q: &Queues) -> SqsSink {
    let dests = set
        .active
        .iter()
        .filter_map(|r| Some((r.id().to_owned(), r.manifest.destination.clone()?)))
        .collect();
    SqsSink::new(q.client.clone(), q.rt.handle().clone(), dests)
}

#[test]
fn queues_get_exactly_what_the_outbox_gets_with_attributes_and_fifo_groups() {
    let Some(q) = Queues::new("same") else { return };
    let stream = changes(&sample(5));
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    prism_e2e::immediate(&reg, "website", wasm::WEBSITE);
    prism_e2e::immediate(&reg, "logistics", wasm::LOGISTICS);
    // The local baseline.
    let out = dir.path().join("out");
    prism_e2e::run(&engine(), &reg, &stream, &out, 2);

    let (web, web_dlq) = (q.create("web"), q.create("web-dlq"));
    let (log, log_dlq) = (q.create("log.fifo"), q.create("log-dlq.fifo"));
    destinations(
        &reg,
        &[("website", &web, &web_dlq), ("logistics", &log, &log_dlq)],
    );
    let set = ReceiverSet::load(&engine(), LocalRegistry::new(&reg).load().unwrap());
    let report = Dispatcher::builder().threads(2).build().run(
        &set,
        &stream,
        &sink_for(&set, &q),
        &Progress::default(),
    );
    assert_eq!(report.errors(), 0, "{:?}", report.receivers);

    let mut got: Vec<String> = q.drain(&web).into_iter().map(|(b, _, _)| b).collect();
    let mut want = bodies(&out, "website");
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "the standard queue holds exactly the outbox's messages"
    );

    let fifo = q.drain(&log);
    assert_eq!(fifo.len(), bodies(&out, "logistics").len());
    let digest = prism_types::digest::Digest::of(&prism_e2e::read(wasm::LOGISTICS)).to_string();
    for (body, attrs, group) in &fifo {
        let key = &attrs["prism-key"];
        assert_eq!(attrs["prism-receiver"], "logistics");
        assert_eq!(attrs["prism-digest"], digest);
        assert_eq!(attrs["prism-content-type"], "application/json");
        assert!(!attrs["prism-sequence"].is_empty());
        if !body.contains("\"deleted\":true") {
            assert_eq!(
                attrs["kind"], "logistics",
                "the plugin's own attributes travel too"
            );
        }
        assert_eq!(
            group.as_deref(),
            Some(key.as_str()),
            "the FIFO group is the product key"
        );
        assert!(body.contains(&format!("\"sku\":\"{key}\"")), "{body}");
    }
    // FIFO order per group follows the stream.
    let mut last: HashMap<String, u128> = HashMap::new();
    for (_, attrs, _) in &fifo {
        let seq: u128 = attrs["prism-sequence"].parse().unwrap();
        if let Some(prev) = last.insert(attrs["prism-key"].clone(), seq) {
            assert!(prev < seq, "out of order for {}", attrs["prism-key"]);
        }
    }
    assert!(q.drain(&web_dlq).is_empty() && q.drain(&log_dlq).is_empty());
}

#[test]
fn a_retried_delivery_to_a_fifo_queue_is_not_duplicated() {
    let Some(q) = Queues::new("dedup") else {
        return;
    };
    let stream = changes(&sample(2));
    let dir = tempfile::tempdir().unwrap();
    prism_e2e::immediate(dir.path(), "logistics", wasm::LOGISTICS);
    let (fifo, dlq) = (q.create("dedup.fifo"), q.create("dedup-dlq.fifo"));
    destinations(dir.path(), &[("logistics", &fifo, &dlq)]);
    let set = ReceiverSet::load(&engine(), LocalRegistry::new(dir.path()).load().unwrap());
    let sink = sink_for(&set, &q);
    let d = Dispatcher::builder().threads(2).build();
    let first = d.run(&set, &stream, &sink, &Progress::default());
    // The same changes again, as after a Lambda retry.
    d.run(&set, &stream, &sink, &Progress::default());
    assert_eq!(
        q.drain(&fifo).len() as u64,
        first.receivers["logistics"].messages
    );
}

#[test]
fn oversized_messages_and_missing_queues_are_parked_in_the_dead_letter_queue() {
    let Some(q) = Queues::new("park") else { return };
    let stream = changes(&sample(3));
    let targeted = stream.iter().filter(|c| c.key == "P-00000").count();
    let dir = tempfile::tempdir().unwrap();
    let big = prism_types::limits::Limits {
        max_output_bytes: 8 << 20,
        ..prism_e2e::relaxed()
    };
    register(
        dir.path(),
        "huge",
        wasm::HOSTILE,
        Mode::Immediate,
        big,
        &[("behaviour", "huge-output"), ("only_key", "P-00000")],
    );
    prism_e2e::immediate(dir.path(), "lost", wasm::LOGISTICS);
    let (huge, huge_dlq) = (q.create("huge"), q.create("huge-dlq"));
    let lost_dlq = q.create("lost-dlq");
    destinations(
        dir.path(),
        &[
            ("huge", &huge, &huge_dlq),
            ("lost", &format!("{}-does-not-exist", q.prefix), &lost_dlq),
        ],
    );
    let set = ReceiverSet::load(&engine(), LocalRegistry::new(dir.path()).load().unwrap());
    let report = Dispatcher::builder().threads(2).build().run(
        &set,
        &stream,
        &sink_for(&set, &q),
        &Progress::default(),
    );

    let parked = q.drain(&huge_dlq);
    assert_eq!(
        parked.len(),
        targeted,
        "only P-00000's changes are too large"
    );
    let dead: serde_json::Value = serde_json::from_str(&parked[0].0).unwrap();
    assert_eq!(dead["error_kind"], "too-large");
    assert_eq!(dead["key"], "P-00000");
    assert!(
        dead["error"]
            .as_str()
            .unwrap()
            .contains("over SQS's limit of 262144"),
        "{dead}"
    );
    assert_eq!(parked[0].1["prism-error-kind"], "too-large");
    assert_eq!(
        q.drain(&huge).len(),
        stream.len() - targeted,
        "its other changes were delivered"
    );

    let lost = q.drain(&lost_dlq);
    let accepted = report.receivers["lost"].accepted as usize;
    assert!(accepted > 0);
    assert_eq!(
        lost.len(),
        accepted,
        "every accepted change for the missing queue is parked, none lost"
    );
    let dead: serde_json::Value = serde_json::from_str(&lost[0].0).unwrap();
    assert_eq!(dead["error_kind"], "delivery");
    assert!(
        dead["error"].as_str().unwrap().contains("does-not-exist"),
        "{dead}"
    );
    assert!(
        dead["change"]["new"].is_object(),
        "the original change travels with it"
    );
    assert_eq!(
        report.receivers["lost"].errors_by_kind["delivery"],
        accepted as u64
    );
}
