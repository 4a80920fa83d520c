//! The delivery path against AWS's failure modes, through the fault proxy
//! (`prism_e2e::fault_proxy`) between the stream processor and moto: SQS entries
//! refused or failed inside a successful `SendMessageBatch`, queues that
//! drop connections, an output dedup table that cannot be written.
//!
//! Each test here failed on the code before the delivery-faults work: a
//! refused entry held its product forever and resent its batch's delivered
//! entries on every retry; exhausted entries resent the delivered ones; and
//! output dedup suppressed a real update after a delivery it had not recorded.

use std::collections::BTreeMap;

use prism_core::dispatch::TickOptions;
use prism_core::spool::now_ms;
use prism_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use prism_e2e::wasm;
use serde_json::{Value, json};

use crate::support::world::{World, failed, products};

/// A world whose dispatcher reaches AWS through a fault proxy.
struct Faulty {
    w: World,
    proxy: FaultProxy,
}

impl Faulty {
    fn new(test: &str, seed: u64) -> Option<Self> {
        let w = World::new(test)?;
        let proxy = FaultProxy::start(&w.ep, seed);
        Some(Self { w, proxy })
    }

    /// The dispatcher as the Lambda builds it, talking to the proxy, with a
    /// spool and (with `dedup`) an output table.
    fn processor(&self, dedup: bool) -> prism_core::stream::StreamProcessor {
        let spool = self.w.spool();
        let outputs = format!("{}-outputs", self.w.table);
        // One thread: one unit per receiver, so which messages share a
        // call (and so which entry a rule hits) does not depend on hashing.
        let mut vars = vec![
            ("AWS_ENDPOINT_URL", self.proxy.url.as_str()),
            ("PRISM_SPOOL_TABLE", spool.as_str()),
            ("PRISM_THREADS", "1"),
        ];
        if dedup {
            vars.push(("PRISM_OUTPUTS_TABLE", outputs.as_str()));
        }
        self.w.processor(&vars)
    }

    /// Register the fan-out plugin (`parts` messages per change) as `receiver`.
    fn register_fanout(&self, receiver: &str, queue: &str, parts: usize) -> (String, String) {
        let parts = format!("parts={parts}");
        self.w.register_to(
            wasm::HOSTILE,
            receiver,
            &["behaviour=fanout", &parts],
            queue,
            true,
        )
    }

    fn tick(&self, p: &prism_core::stream::StreamProcessor) -> prism_core::dispatch::TickReport {
        self.w
            .q
            .rt
            .block_on(p.tick(TickOptions::at(now_ms())))
            .unwrap()
    }
}

/// (key, sequence, part) → how many times the queue got it.
fn tally(bodies: &[String]) -> BTreeMap<(String, String, u64), u32> {
    let mut t = BTreeMap::new();
    for b in bodies {
        let v: Value = serde_json::from_str(b).unwrap();
        let k = (
            v["key"].as_str().unwrap().to_owned(),
            v["sequence"].as_str().unwrap().to_owned(),
            v["part"].as_u64().unwrap(),
        );
        *t.entry(k).or_default() += 1;
    }
    t
}

fn dead_letters(w: &World, dlq: &str) -> Vec<(Value, std::collections::HashMap<String, String>)> {
    w.q.drain(dlq)
        .into_iter()
        .map(|(b, a, _)| (serde_json::from_str(&b).unwrap(), a))
        .collect()
}

#[test]
fn an_entry_sqs_refuses_is_parked_with_its_code_and_no_entry_is_sent_twice() {
    let Some(f) = Faulty::new("refused", 1) else {
        return;
    };
    let (queue, dlq) = f.register_fanout("fan", "fan", 3);
    let p = f.processor(false);
    f.w.write(&products(0..4));
    let records = f.w.records();
    // The first SendMessageBatch to the queue: its second entry is refused.
    f.proxy.set_rules(vec![
        Rule::always(
            "SendMessageBatch",
            Fault::FailEntry {
                position: 1,
                sender_fault: true,
            },
        )
        .on(&format!("{queue}\""))
        .times(1),
    ]);
    let out = f.w.invoke(&p, &records);
    assert!(
        failed(&out).is_empty(),
        "nothing is held: {:?}",
        out.response
    );
    assert_eq!(f.proxy.injected_total(), 1);
    // Ticks find nothing waiting, so nothing is sent again.
    let t = f.tick(&p);
    assert_eq!(t.waiting, 0, "{t:?}");

    // The first call packs every product's first message; its second
    // entry is refused. That product's change is parked whole: its other
    // messages are not sent after a refusal.
    let st = &out.report.receivers["fan"];
    let got = tally(&f.w.bodies(&queue));
    assert_eq!(
        got.len(),
        9,
        "4 changes × 3 parts, one change refused: {got:?} {st:?}"
    );
    assert!(got.values().all(|&n| n == 1), "no duplicates: {got:?}");
    let dead = dead_letters(&f.w, &dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (letter, attrs) = &dead[0];
    assert_eq!(letter["error_kind"], "refused:InvalidParameterValue");
    assert_eq!(attrs["prism-error-kind"], "refused:InvalidParameterValue");
    let error = letter["error"].as_str().unwrap();
    assert!(error.contains(": InvalidParameterValue"), "{error}");
    let key = letter["key"].as_str().unwrap();
    assert_eq!(letter["change"]["key"], key);
    assert!(
        got.keys().all(|(k, _, _)| k != key),
        "no part of the refused change went out: {got:?}"
    );
}

#[test]
fn entries_that_got_out_are_not_sent_again_when_the_others_keep_failing() {
    let Some(f) = Faulty::new("exhausted", 2) else {
        return;
    };
    let (queue, _) = f.register_fanout("fan", "fan", 3);
    let p = f.processor(false);
    f.w.write(&products(0..3));
    let records = f.w.records();
    // Calls carry one message per product: every product's part 0, then
    // every part 1, then every part 2. The first entry of the part-1 calls
    // (P-00000's) fails on SQS's side five times in a row: more than the
    // sink's tries, so that change is held with part 0 out, and its part 2
    // is not sent after it.
    f.proxy.set_rules(vec![
        Rule::always(
            "SendMessageBatch",
            Fault::FailEntry {
                position: 0,
                sender_fault: false,
            },
        )
        .on(r#"\"part\":1"#)
        .times(5),
    ]);
    let out = f.w.invoke(&p, &records);
    assert!(
        failed(&out).is_empty(),
        "the change waits in its lane: {:?}",
        out.response
    );
    let st = &out.report.receivers["fan"];
    assert_eq!((st.laned, st.messages), (1, 7), "{st:?}");

    // The tick retries the lane: only the two missing messages go out.
    let t = f.tick(&p);
    assert_eq!(t.waiting, 0, "{t:?}");
    assert_eq!(t.receivers["fan"].messages, 2, "{t:?}");
    let got = tally(&f.w.bodies(&queue));
    assert_eq!(got.len(), 9, "{got:?}");
    assert!(got.values().all(|&n| n == 1), "no duplicates: {got:?}");
}

/// Prices (and so the website's output) go X → Y → X; Y reaches the
/// website through a retry lane. The last change must be sent: the website
/// has Y.
#[test]
fn an_update_delivered_through_a_retry_lane_is_never_taken_for_identical() {
    let Some(f) = Faulty::new("dedup-lane", 3) else {
        return;
    };
    let (queue, _) = f.w.register(wasm::WEBSITE, "website", &[], true);
    let p = f.processor(true);
    let mut doc = products(0..1).remove(0);
    f.w.write(std::slice::from_ref(&doc));
    f.w.invoke(&p, &f.w.records());
    let x = f.w.bodies(&queue);
    assert_eq!(x.len(), 1);

    // Y: the queue's connections drop for every try the SDK makes.
    doc["prices"]["DE"]["amount"] = json!(77.5);
    f.w.write(std::slice::from_ref(&doc));
    f.proxy.set_rules(vec![
        Rule::always("SendMessageBatch", Fault::DropBefore)
            .on(&format!("{queue}\""))
            .times(4),
    ]);
    let out = f.w.invoke(&p, &f.w.records());
    assert_eq!(out.report.receivers["website"].laned, 1, "{:?}", out.report);
    let t = f.tick(&p);
    assert_eq!(
        t.receivers["website"].messages, 1,
        "Y through the lane: {t:?}"
    );
    let y = f.w.bodies(&queue);
    assert_ne!(y, x);

    // A change the website does not publish (bullets): still Y, suppressed,
    // because the lane recorded what it delivered.
    doc["texts"]["en"]["bullets"] = json!(["Changed"]);
    f.w.write(std::slice::from_ref(&doc));
    let out = f.w.invoke(&p, &f.w.records());
    assert_eq!(
        out.report.receivers["website"].suppressed, 1,
        "{:?}",
        out.report
    );

    // Back to X's price: the website must get X again.
    doc["prices"]["DE"]["amount"] = products(0..1)[0]["prices"]["DE"]["amount"].clone();
    f.w.write(std::slice::from_ref(&doc));
    let out = f.w.invoke(&p, &f.w.records());
    let st = &out.report.receivers["website"];
    assert_eq!((st.messages, st.suppressed), (1, 0), "{st:?}");
    assert_eq!(f.w.bodies(&queue), x);
}

/// X → Y → X again, Y delivered at once but its dedup state write failing
/// (the outputs table throttles every try). Left behind, the state would
/// lag what the website got; the batch fails whole instead (before its
/// ledger), Lambda's retry sends Y again (a copy) and records it, and the
/// change back to X is sent.
#[test]
fn a_lost_dedup_state_write_never_suppresses_the_next_update() {
    let Some(f) = Faulty::new("dedup-write", 4) else {
        return;
    };
    let (queue, _) = f.w.register(wasm::WEBSITE, "website", &[], true);
    let outputs = format!("{}-outputs", f.w.table);
    let p = f.processor(true);
    let mut doc = products(0..1).remove(0);
    let price_x = doc["prices"]["DE"]["amount"].clone();
    f.w.write(std::slice::from_ref(&doc));
    f.w.invoke(&p, &f.w.records());
    let x = f.w.bodies(&queue);

    doc["prices"]["DE"]["amount"] = json!(77.5);
    f.w.write(std::slice::from_ref(&doc));
    f.proxy.set_rules(vec![
        Rule::always("BatchWriteItem", Fault::Throttle).on(&format!("{outputs}\"")),
    ]);
    let records = f.w.records();
    let failed =
        f.w.q
            .rt
            .block_on(p.handle(&json!({ "Records": records })))
            .expect_err("a batch whose dedup state cannot be written fails whole");
    assert!(
        failed.kind() == prism_core::ErrorKind::OutputsUnwritable,
        "{failed}"
    );
    assert!(f.proxy.injected()["throttle"] >= 1);
    let y = f.w.bodies(&queue);
    assert_ne!(y, x);
    f.proxy.set_rules(Vec::new());
    // Lambda's retry: Y again, a copy, and its state recorded.
    let out = f.w.invoke(&p, &records);
    assert_eq!(out.report.receivers["website"].messages, 1);
    assert_eq!(f.w.bodies(&queue), y);

    doc["prices"]["DE"]["amount"] = price_x;
    f.w.write(std::slice::from_ref(&doc));
    let out = f.w.invoke(&p, &f.w.records());
    let st = &out.report.receivers["website"];
    assert_eq!((st.messages, st.suppressed), (1, 0), "{st:?}");
    assert_eq!(f.w.bodies(&queue), x);
}

/// A window cut in the stream batch whose call SQS fails in part: the
/// messages that got out are recorded with the window in the buffer, and
/// the tick sends only the one that did not.
#[test]
fn a_window_sqs_fails_in_part_waits_in_the_buffer_and_only_its_rest_is_sent() {
    let Some(f) = Faulty::new("window-partial", 5) else {
        return;
    };
    let queue = f.w.q.create("win");
    f.w.prism(&[
        "plugin",
        "register",
        wasm::HOSTILE,
        "--allow-failures",
        "hostile on purpose: the test drives the dispatcher's failure paths",
        "--receiver",
        "win",
        "--bucket",
        &f.w.bucket,
        "--queue",
        &queue,
        "--config",
        "behaviour=fanout",
        "--config",
        "parts=1",
        "--batch-max-count",
        "10",
    ]);
    let p = f.processor(false);
    f.w.write(&products(0..10));
    let records = f.w.records();
    // The window's one call (ten entries): the fourth fails on SQS's side,
    // and so does every retry of it (sent alone).
    let fourth = products(3..4)[0]["pk"].as_str().unwrap().to_owned();
    let fail = |position| {
        Rule::always(
            "SendMessageBatch",
            Fault::FailEntry {
                position,
                sender_fault: false,
            },
        )
    };
    f.proxy.set_rules(vec![
        fail(3).on(&format!("{queue}\"")).times(1),
        fail(0).on(&fourth),
    ]);
    let out = f.w.invoke(&p, &records);
    assert!(failed(&out).is_empty(), "{:?}", out.response);
    let st = &out.report.receivers["win"];
    assert_eq!((st.messages, st.buffered), (9, 10), "{st:?}");
    f.proxy.set_rules(Vec::new());
    let t = f.w.q.rt.block_on(p.tick(TickOptions {
        force: true,
        ..TickOptions::at(now_ms())
    }));
    let t = t.unwrap();
    assert_eq!(t.waiting, 0, "{t:?}");
    assert_eq!(t.receivers["win"].messages, 1, "only the one left: {t:?}");
    let bodies = f.w.bodies(&queue);
    let tally = tally(&bodies);
    assert_eq!(tally.len(), 10, "{tally:?}");
    assert!(tally.values().all(|&n| n == 1), "each once: {tally:?}");
}
