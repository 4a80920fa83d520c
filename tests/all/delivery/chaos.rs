//! Seeded fault schedules over the whole Lambda path. A model table with a
//! stream, eight receivers (standard and FIFO queues, one and two messages
//! per change), and the dispatcher reaching SQS and DynamoDB through the
//! fault proxy. The stream is handed over in batches as Lambda does it,
//! failed records are retried from the first one reported (as
//! `ReportBatchItemFailures` does), and the scheduled tick runs between
//! batches. Then the faults stop and the tick drains what waits.
//!
//! Asserted for every schedule:
//! - **nothing is lost**: every message of every change is in its queue, or
//!   the change is in the receiver's DLQ with its reason, and nothing is
//!   still waiting;
//! - **FIFO queues get every message exactly once**, in sequence order per
//!   product;
//! - standard queues may hold duplicates only from the documented window (a
//!   call SQS carried out whose answer was lost, `drop-after`); they are
//!   counted and printed.
//!
//! One line per schedule is printed (`cargo test chaos -- --nocapture`);
//! the README's fault table is copied from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use prism_core::dispatch::TickOptions;
use prism_core::spool::now_ms;
use prism_core::stream::StreamProcessor;
use prism_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use prism_e2e::wasm;
use serde_json::{Value, json};

use crate::support::world::{World, failed};

/// Products, and writes per product (the first is the insert). CI runs 20
/// per schedule: these runs are the conformance sample of the AWS adapters
/// under real fault shapes, while the simulation (`sim/`) walks the
/// delivery logic through 10,000 schedules; `PRISM_CHAOS_PRODUCTS=80` is
/// the run the table in docs/aws.md comes from.
fn products() -> usize {
    std::env::var("PRISM_CHAOS_PRODUCTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}
const WRITES: usize = 6;
/// Records per stream batch (the event source mapping's batch size).
const BATCH: usize = 100;

/// A receiver of the run: name, queue (FIFO when it ends in `.fifo`), and
/// messages per change.
const RECEIVERS: &[(&str, &str, usize)] = &[
    ("std-one-a", "std-one-a", 1),
    ("std-one-b", "std-one-b", 1),
    ("std-two", "std-two", 2),
    ("fifo-one-a", "fifo-one-a.fifo", 1),
    ("fifo-one-b", "fifo-one-b.fifo", 1),
    ("fifo-two", "fifo-two.fifo", 2),
];

/// The tables the dispatcher writes, by the text their requests carry.
fn tables(w: &World) -> [String; 3] {
    [
        format!("{}-ledger\"", w.table),
        format!("{}-spool\"", w.table),
        format!("{}-outputs\"", w.table),
    ]
}

fn schedule(name: &str, w: &World) -> Vec<Rule> {
    let sqs = |fault, p| Rule::sometimes("SendMessageBatch", fault, p);
    let ddb = |action: &str, fault: Fault, p: f64| -> Vec<Rule> {
        tables(w)
            .iter()
            .map(|t| Rule::sometimes(action, fault.clone(), p).on(t))
            .collect()
    };
    let mut rules = Vec::new();
    match name {
        "throttling-and-5xx" => {
            rules.push(sqs(Fault::Throttle, 0.05));
            rules.push(sqs(Fault::ServerError, 0.05));
            for a in [
                "PutItem",
                "UpdateItem",
                "BatchWriteItem",
                "BatchGetItem",
                "Query",
                "DeleteItem",
            ] {
                rules.extend(ddb(a, Fault::Throttle, 0.03));
                rules.extend(ddb(a, Fault::ServerError, 0.03));
            }
        }
        "partial-batches" => {
            rules.push(sqs(
                Fault::PartialBatch {
                    retryable: 0.15,
                    sender_fault: 0.005,
                },
                0.5,
            ));
        }
        "dropped-connections" => {
            rules.push(sqs(Fault::DropBefore, 0.04));
            rules.push(sqs(Fault::DropAfter, 0.04));
            rules.push(sqs(
                Fault::Delay(std::time::Duration::from_millis(30)),
                0.05,
            ));
            for a in ["PutItem", "UpdateItem", "BatchWriteItem"] {
                rules.extend(ddb(a, Fault::DropAfter, 0.03));
            }
        }
        "everything" => {
            rules.push(sqs(Fault::Throttle, 0.03));
            rules.push(sqs(Fault::ServerError, 0.03));
            rules.push(sqs(Fault::DropBefore, 0.02));
            rules.push(sqs(Fault::DropAfter, 0.02));
            rules.push(sqs(
                Fault::PartialBatch {
                    retryable: 0.1,
                    sender_fault: 0.005,
                },
                0.2,
            ));
            for a in [
                "PutItem",
                "UpdateItem",
                "BatchWriteItem",
                "BatchGetItem",
                "Query",
            ] {
                rules.extend(ddb(a, Fault::ServerError, 0.03));
                rules.extend(ddb(a, Fault::Throttle, 0.02));
            }
        }
        other => panic!("no schedule {other}"),
    }
    rules
}

/// Every message of a queue, in receive order: (body, group).
fn drain(w: &World, url: &str) -> Vec<(String, Option<String>)> {
    let c = &w.q.client;
    w.q.rt.block_on(async {
        let mut all = Vec::new();
        loop {
            let out = c
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .send()
                .await
                .unwrap();
            let msgs = out.messages();
            if msgs.is_empty() {
                break;
            }
            let mut del = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                let group = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned();
                all.push((m.body().unwrap_or_default().to_owned(), group));
                del.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap())
                        .build()
                        .unwrap(),
                );
            }
            c.delete_message_batch()
                .queue_url(url)
                .set_entries(Some(del))
                .send()
                .await
                .unwrap();
        }
        all
    })
}

/// What one schedule did.
#[derive(Debug, Default)]
struct Summary {
    faults: u64,
    by_kind: BTreeMap<String, u64>,
    changes: usize,
    expected: usize,
    delivered: usize,
    duplicates_standard: usize,
    duplicates_fifo: usize,
    lost: usize,
    held: u64,
    parked: usize,
    invocations: usize,
    ticks: usize,
    laned: u64,
    reported: usize,
}

fn run_schedule(name: &str, seed: u64) -> Option<Summary> {
    let w = World::new(&format!("chaos-{name}"))?;
    let mut queues = Vec::new();
    for (receiver, queue, parts) in RECEIVERS {
        let config = format!("parts={parts}");
        let (q, dlq) = w.register_to(
            wasm::HOSTILE,
            receiver,
            &["behaviour=fanout", &config],
            queue,
            true,
        );
        queues.push((*receiver, q, dlq, *parts, queue.ends_with(".fifo")));
    }
    let proxy = FaultProxy::start(&w.ep, seed);
    let spool = w.spool();
    let outputs = format!("{}-outputs", w.table);
    let p = w.processor(&[
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("PRISM_SPOOL_TABLE", spool.as_str()),
        ("PRISM_OUTPUTS_TABLE", outputs.as_str()),
    ]);

    // The stream: inserts, then rounds of modifies.
    let mut docs: Vec<Value> = (0..products())
        .map(|n| json!({"pk": format!("P-{n:05}"), "round": 0}))
        .collect();
    w.write(&docs);
    for round in 1..WRITES {
        for d in docs.iter_mut() {
            d["round"] = json!(round);
        }
        w.write(&docs);
    }
    let records = w.records();
    assert_eq!(records.len(), products() * WRITES);

    proxy.set_rules(schedule(name, &w));
    let mut s = Summary {
        changes: records.len(),
        ..Summary::default()
    };
    // What each queue and DLQ got, in receive order. Queues are drained as
    // the run goes: moto's SendMessage costs time linear in the queue's
    // length, and a consumer keeps real queues short too.
    let mut got: Vec<Vec<(String, Option<String>)>> = vec![Vec::new(); queues.len()];
    let mut dead: Vec<Vec<(String, Option<String>)>> = vec![Vec::new(); queues.len()];
    let mut collect = |w: &World| {
        for (i, (_, q, dlq, ..)) in queues.iter().enumerate() {
            got[i].extend(drain(w, q));
            dead[i].extend(drain(w, dlq));
        }
    };
    for (n, batch) in records.chunks(BATCH).enumerate() {
        invoke_until_done(&w, &p, batch, &mut s);
        if n % 3 == 2 {
            tick(&w, &p, &mut s);
        }
        collect(&w);
    }
    s.faults = proxy.injected_total();
    s.by_kind = proxy.injected();
    // The faults stop; the tick drains what waits.
    proxy.set_rules(Vec::new());
    for _ in 0..30 {
        if tick(&w, &p, &mut s) == 0 {
            break;
        }
    }
    s.held =
        w.q.rt
            .block_on(p.tick(TickOptions::at(now_ms())))
            .unwrap()
            .waiting;
    collect(&w);

    // Every (receiver, key, sequence, part) the stream asked for.
    let changes: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["dynamodb"]["Keys"]["pk"]["S"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (i, (receiver, _, _, parts, fifo)) in queues.iter().enumerate() {
        let parked: BTreeSet<(String, String)> = dead[i]
            .iter()
            .map(|(b, _)| {
                let v: Value = serde_json::from_str(b).unwrap();
                (
                    v["key"].as_str().unwrap().to_owned(),
                    v["sequence"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        s.parked += parked.len();
        let mut seen: HashMap<(String, String, u64), usize> = HashMap::new();
        let mut last: HashMap<String, (u128, u64)> = HashMap::new();
        for (body, group) in &got[i] {
            let v: Value = serde_json::from_str(body).unwrap();
            let key = v["key"].as_str().unwrap().to_owned();
            let seq = v["sequence"].as_str().unwrap().to_owned();
            let part = v["part"].as_u64().unwrap();
            *seen.entry((key.clone(), seq.clone(), part)).or_default() += 1;
            if *fifo {
                assert_eq!(group.as_deref(), Some(key.as_str()), "{receiver}: group");
                // In order per product: sequence, then part.
                let here = (seq.parse::<u128>().unwrap(), part);
                if let Some(prev) = last.insert(key.clone(), here) {
                    assert!(
                        prev < here,
                        "{receiver} {key}: {prev:?} arrived before {here:?} ({name}, seed {seed})"
                    );
                }
            }
        }
        for (key, seq) in &changes {
            for part in 0..*parts as u64 {
                s.expected += 1;
                match seen.get(&(key.clone(), seq.clone(), part)) {
                    Some(&n) => {
                        s.delivered += 1;
                        if *fifo {
                            s.duplicates_fifo += n - 1;
                        } else {
                            s.duplicates_standard += n - 1;
                        }
                    }
                    None if parked.contains(&(key.clone(), seq.clone())) => {}
                    None => s.lost += 1,
                }
            }
        }
    }
    println!(
        "fault schedule {name:<20} seed {seed}: {} faults injected {:?}, {} changes × {} receivers, {} messages expected, {} delivered, {} parked changes, duplicates: {} standard / {} FIFO, lost {}, still held {}; {} changes put in retry lanes, {} records reported failed, {} invocations, {} ticks",
        s.faults,
        s.by_kind,
        s.changes,
        RECEIVERS.len(),
        s.expected,
        s.delivered,
        s.parked,
        s.duplicates_standard,
        s.duplicates_fifo,
        s.lost,
        s.held,
        s.laned,
        s.reported,
        s.invocations,
        s.ticks,
    );
    Some(s)
}

/// Hand `batch` to the dispatcher as Lambda does: again from the first
/// record it reports failed, until it reports none.
fn invoke_until_done(w: &World, p: &StreamProcessor, batch: &[Value], s: &mut Summary) {
    let mut from = 0;
    for _ in 0..50 {
        s.invocations += 1;
        let out =
            w.q.rt
                .block_on(p.handle(&json!({ "Records": &batch[from..] })))
                .expect("a stream batch is never a whole failure here");
        s.laned += out.report.receivers.values().map(|r| r.laned).sum::<u64>();
        let failed = failed(&out);
        s.reported += failed.len();
        let Some(first) = failed.first() else {
            return;
        };
        from = batch
            .iter()
            .position(|r| r["dynamodb"]["SequenceNumber"].as_str() == Some(first))
            .expect("a failed record is one of the batch");
    }
    panic!("a batch still failing after 50 invocations");
}

/// One scheduled tick; returns what still waits.
fn tick(w: &World, p: &StreamProcessor, s: &mut Summary) -> u64 {
    s.ticks += 1;
    w.q.rt
        .block_on(p.tick(TickOptions::at(now_ms())))
        .unwrap()
        .waiting
}

fn check(name: &str, seed: u64) {
    let Some(s) = run_schedule(name, seed) else {
        return;
    };
    assert!(s.faults > 0, "{name}: the schedule injected nothing");
    assert_eq!(s.lost, 0, "{name}: lost messages: {s:?}");
    assert_eq!(s.held, 0, "{name}: changes still waiting: {s:?}");
    assert_eq!(s.duplicates_fifo, 0, "{name}: FIFO duplicates: {s:?}");
    if !s.by_kind.contains_key("drop-after") {
        assert_eq!(
            s.duplicates_standard, 0,
            "{name}: duplicates outside the documented window: {s:?}"
        );
    }
}

#[test]
fn chaos_throttling_and_5xx() {
    check("throttling-and-5xx", 11);
}

#[test]
fn chaos_partial_batches() {
    check("partial-batches", 13);
}

#[test]
fn chaos_dropped_connections() {
    check("dropped-connections", 14);
}

#[test]
fn chaos_everything() {
    check("everything", 15);
}
