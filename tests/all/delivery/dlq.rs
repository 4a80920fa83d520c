//! `prism dlq list|show|redrive` against moto: dead letters grouped by kind
//! and error, one shown with its change, parked changes redriven through
//! the receiver's current plugin (never an older version over a newer
//! one), consumer failures moved back to the queue, `--dry-run` changing
//! nothing, and what fails again parked again.

use serde_json::Value;

use crate::support::world::{World, products};
use crate::{prism, text};
use prism_e2e::wasm;

fn dlq(w: &World, args: &[&str]) -> (std::process::Output, String) {
    let mut all = vec!["dlq"];
    all.extend(args);
    all.extend([
        "--receiver",
        "picky",
        "--table",
        &w.table,
        "--bucket",
        &w.bucket,
        "--endpoint-url",
        &w.ep,
        "--region",
        "us-east-1",
    ]);
    let o = prism(&all);
    let (out, err) = text(&o);
    (o, format!("{out}\n{err}"))
}

fn list(w: &World) -> Value {
    let (o, out) = dlq(w, &["list", "--json"]);
    assert!(o.status.success(), "{out}");
    serde_json::from_str(out.lines().next().unwrap()).unwrap()
}

fn count(doc: &Value, kind: &str) -> u64 {
    doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["kind"] == kind)
        .map(|g| g["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn redrive_delivers_the_newest_parked_version_moves_consumer_failures_and_reparks_what_fails() {
    let Some(w) = World::new("dlq") else {
        return;
    };
    let (picky_q, picky_dlq) = w.register(
        wasm::HOSTILE,
        "picky",
        &["behaviour=reject", "only_key=P-00001"],
        true,
    );
    let p = w.processor(&[]);
    w.write(&products(0..3));
    w.invoke(&p, &w.records());
    // P-00001 changes again, and is rejected again: two parked versions.
    let mut newer = products(1..2).remove(0);
    newer["name"] = "Drill, second edition".into();
    w.write(std::slice::from_ref(&newer));
    let second = w.records();
    let newest_seq = second[0]["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    w.invoke(&p, &second);

    // The consumer fails on P-00000's message: SQS's redrive policy moves
    // it to the DLQ as it was (body and attributes).
    let delivered = w.q.drain(&picky_q);
    assert_eq!(delivered.len(), 2);
    let (body, attrs, _) = delivered
        .iter()
        .find(|(_, a, _)| a["prism-key"] == "P-00000")
        .unwrap()
        .clone();
    w.q.rt.block_on(async {
        let mut req =
            w.q.client
                .send_message()
                .queue_url(&picky_dlq)
                .message_body(&body);
        for (k, v) in &attrs {
            req = req.message_attributes(
                k,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .unwrap(),
            );
        }
        req.send().await.unwrap();
    });

    // list: grouped by kind and error.
    let doc = list(&w);
    assert_eq!(doc["dead_letters"], 3, "{doc}");
    assert_eq!(count(&doc, "parked"), 2, "{doc}");
    assert_eq!(count(&doc, "consumer"), 1, "{doc}");
    let parked = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kind"] == "parked")
        .unwrap();
    assert_eq!(parked["error_kind"], "rejected");
    assert!(
        parked["error"]
            .as_str()
            .unwrap()
            .contains("P-00001 has no EAN"),
        "{doc}"
    );

    // show: one, with its original change.
    let id = parked["example"].as_str().unwrap();
    let (o, out) = dlq(&w, &["show", id]);
    assert!(o.status.success(), "{out}");
    let shown: Value = serde_json::from_str(
        out.trim_end()
            .trim_end_matches('\n')
            .rsplit_once("\n\n")
            .map_or(out.trim(), |(a, _)| a),
    )
    .unwrap();
    assert_eq!(shown["kind"], "parked");
    assert_eq!(shown["body"]["change"]["key"], "P-00001");
    assert!(shown["body"]["change"]["new"].is_object(), "{shown}");
    let (o, out) = dlq(&w, &["show", "no-such-id"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.contains("no message no-such-id among the 3"), "{out}");

    // The receiver team fixes its plugin.
    w.prism(&[
        "plugin",
        "register",
        wasm::HOSTILE,
        "--allow-failures",
        "hostile on purpose: the test drives the dispatcher's failure paths",
        "--receiver",
        "picky",
        "--bucket",
        &w.bucket,
        "--config",
        "behaviour=fanout",
        "--config",
        "parts=1",
    ]);

    // --dry-run says what would happen and changes nothing.
    let model = ["--model-table", w.model.as_str()];
    let (o, out) = dlq(&w, &[&["redrive", "--dry-run"][..], &model].concat());
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("dry run: 2 parked changes redriven (1 sent as the product is now, it had changed since; 0 parked again), 0 skipped (the product came and went), 0 sent again at a newer version the stream wrote meanwhile, 1 consumer messages moved back, 0 failed"),
        "{out}"
    );
    assert_eq!(
        list(&w)["dead_letters"],
        3,
        "a dry run keeps every dead letter"
    );
    assert!(w.q.drain(&picky_q).is_empty(), "a dry run sends nothing");

    // The redrive: the newer letter as it was, the older one brought up to
    // the product as it is now (a receiver whose interest passed over the
    // newer change still gets the older one's update), never the older
    // version itself; and the consumer's message back.
    let (o, out) = dlq(&w, &[&["redrive"][..], &model].concat());
    assert!(o.status.success(), "{out}");
    assert!(out.contains("2 parked changes redriven (1 sent as the product is now, it had changed since; 0 parked again), 0 skipped (the product came and went), 0 sent again at a newer version the stream wrote meanwhile, 1 consumer messages moved back, 0 failed"), "{out}");
    let got = w.q.drain(&picky_q);
    assert_eq!(got.len(), 3, "{got:?}");
    let fanned: Vec<Value> = got
        .iter()
        .filter_map(|(b, _, _)| serde_json::from_str::<Value>(b).ok())
        .filter(|v| v["part"] == 0)
        .collect();
    assert_eq!(fanned.len(), 2, "{got:?}");
    assert!(fanned.iter().all(|f| f["key"] == "P-00001"), "{got:?}");
    assert_eq!(
        fanned[1]["sequence"],
        newest_seq.as_str(),
        "the newest version last"
    );
    let back = got
        .iter()
        .find(|(_, a, _)| a.get("prism-key").map(String::as_str) == Some("P-00000"))
        .unwrap();
    assert_eq!(back.0, body, "moved back unchanged");
    assert_eq!(list(&w)["dead_letters"], 0);

    // It fails again: parked again, not lost.
    w.prism(&[
        "plugin",
        "register",
        wasm::HOSTILE,
        "--allow-failures",
        "hostile on purpose: the test drives the dispatcher's failure paths",
        "--receiver",
        "picky",
        "--bucket",
        &w.bucket,
        "--config",
        "behaviour=reject",
    ]);
    let mut third = newer.clone();
    third["name"] = "Drill, third edition".into();
    w.write(std::slice::from_ref(&third));
    // A fresh dispatcher (the first one keeps its registry copy for
    // PRISM_RELOAD_SECS) runs the rejecting version and parks it.
    let p2 = w.processor(&[]);
    w.invoke(&p2, &w.records());
    let before = list(&w);
    assert_eq!(before["dead_letters"], 1, "{before}");
    let old_id = before["groups"][0]["example"].as_str().unwrap().to_owned();
    let (o, out) = dlq(&w, &[&["redrive"][..], &model].concat());
    assert!(o.status.success(), "{out}");
    assert!(out.contains("parked again"), "{out}");
    let after = list(&w);
    assert_eq!(after["dead_letters"], 1, "parked again: {after}");
    assert_eq!(count(&after, "parked"), 1, "{after}");
    assert_ne!(
        after["groups"][0]["example"],
        old_id.as_str(),
        "a new dead letter replaced the old one"
    );
    assert!(w.q.drain(&picky_q).is_empty());
}

#[test]
fn dlq_commands_name_what_is_missing() {
    let Some(w) = World::new("dlq-missing") else {
        return;
    };
    let (o, out) = dlq(&w, &["list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.contains("no receiver \"picky\""), "{out}");
}

/// A batched receiver's window that a buffer flush parked is redriven, not
/// lost. The flush remembered the parked changes' sequences as handled, and
/// a redrive keeps them: the redriven changes were filtered out of the
/// buffer, counted as handled, and their dead letters deleted.
#[test]
fn a_window_parked_by_a_flush_is_redriven_through_the_buffer_not_dropped() {
    let Some(w) = World::new("dlq-batch") else {
        return;
    };
    let queue = w.q.create("batchy");
    let dlq = w.q.create("batchy-dlq");
    let register = |behaviour: &str| {
        w.prism(&[
            "plugin",
            "register",
            wasm::HOSTILE,
            "--allow-failures",
            "hostile on purpose: the test drives the dispatcher's failure paths",
            "--receiver",
            "batchy",
            "--bucket",
            &w.bucket,
            "--queue",
            &queue,
            "--dead-letter-queue",
            &dlq,
            "--batch-max-count",
            "100",
            "--config",
            &format!("behaviour={behaviour}"),
        ]);
    };
    register("reject");
    let spool = w.spool();
    let p = w.processor(&[("PRISM_SPOOL_TABLE", &spool)]);
    w.write(&products(0..3));
    w.invoke(&p, &w.records());
    // The window (less than full) waits in the buffer; the flush parks it.
    let (_, out) = w.flush_all();
    assert!(w.q.drain(&queue).is_empty(), "{out}");
    assert_eq!(
        w.dead_letters("batchy"),
        3,
        "the window's three changes are parked"
    );

    // Fixed, and redriven through the spool, as the dispatcher would.
    register("behave");
    let (ok, out) = w.try_prism(&[
        "dlq",
        "redrive",
        "--receiver",
        "batchy",
        "--model-table",
        &w.model,
        "--spool-table",
        &spool,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = w.flush_all();
    assert!(ok, "{out}");
    let keys: std::collections::BTreeSet<String> =
        w.q.drain(&queue)
            .iter()
            .filter_map(|(b, _, _)| serde_json::from_str::<Value>(b).ok())
            .filter_map(|v| v["key"].as_str().map(str::to_owned))
            .collect();
    assert_eq!(
        keys.len(),
        3,
        "the redriven window reached the receiver: {keys:?}\n{out}"
    );
    assert_eq!(
        w.dead_letters("batchy"),
        0,
        "and only then are the letters gone"
    );
}

/// On a FIFO dead-letter queue, a redrive that parks the change again
/// within SQS's 5-minute deduplication window keeps a letter. The new
/// letter used to carry the original's deduplication id: SQS dropped it,
/// and the redrive then deleted the original.
#[test]
fn a_redrive_that_fails_again_keeps_its_letter_on_a_fifo_dlq() {
    let Some(w) = World::new("dlq-fifo") else {
        return;
    };
    let queue = w.q.create("stubborn.fifo");
    let dlq = w.q.create("stubborn-dlq.fifo");
    w.prism(&[
        "plugin",
        "register",
        wasm::HOSTILE,
        "--allow-failures",
        "hostile on purpose: the test drives the dispatcher's failure paths",
        "--receiver",
        "stubborn",
        "--bucket",
        &w.bucket,
        "--queue",
        &queue,
        "--dead-letter-queue",
        &dlq,
        "--config",
        "behaviour=reject",
    ]);
    let p = w.processor(&[]);
    w.write(&products(0..1));
    w.invoke(&p, &w.records());
    assert_eq!(w.dead_letters("stubborn"), 1);
    let (_, out) = w.try_prism(&[
        "dlq",
        "redrive",
        "--receiver",
        "stubborn",
        "--model-table",
        &w.model,
    ]);
    assert!(out.contains("parked again"), "{out}");
    assert_eq!(
        w.dead_letters("stubborn"),
        1,
        "the change is still waiting, with a letter: {out}"
    );
}

/// Issue 28, item 3: a redrive reads the model, then sends. A newer version
/// the stream delivered in between used to be overtaken by the redrive's
/// older one, which ended last. Now the redrive reads each product again
/// after the send and sends what changed again, as a backfill does; on a
/// FIFO queue too, where the correction (same change, same sequence) must
/// not be dropped as a duplicate of the redrive's own send.
///
/// For a batched receiver the redrive's older version waits in the buffer
/// behind the stream's newer one, which a flush already sent: the
/// correction (a replay, under the parked change's sequence) replaces it
/// there.
#[test]
fn a_redrive_overtaken_by_the_stream_ends_on_the_newest_version() {
    for queue_kind in ["standard", "fifo", "batched"] {
        redrive_race(queue_kind);
    }
}

fn redrive_race(queue_kind: &str) {
    use prism_e2e::fault_proxy::{Fault, FaultProxy, Rule};

    let Some(w) = World::new(&format!("dlq-race-{queue_kind}")) else {
        return;
    };
    let receiver = "racy";
    let queue = w.q.create(if queue_kind == "fifo" {
        "racy.fifo"
    } else {
        "racy"
    });
    let dlq = w.q.create(if queue_kind == "fifo" {
        "racy-dlq.fifo"
    } else {
        "racy-dlq"
    });
    let batched = queue_kind == "batched";
    let spool = w.spool();
    let spool_env = [("PRISM_SPOOL_TABLE", spool.as_str())];
    let env: &[(&str, &str)] = if batched { &spool_env } else { &[] };
    let register = |config: &[&str]| {
        let mut args = vec![
            "plugin",
            "register",
            wasm::HOSTILE,
            "--allow-failures",
            "hostile on purpose: the test drives the dispatcher's failure paths",
            "--receiver",
            receiver,
            "--bucket",
            &w.bucket,
            "--queue",
            &queue,
            "--dead-letter-queue",
            &dlq,
            "--config",
            "echo=image",
        ];
        for c in config {
            args.extend(["--config", c]);
        }
        if batched {
            args.extend(["--batch-max-count", "100"]);
        }
        w.prism(&args);
    };
    let version = |v: u64| {
        let mut d = products(1..2).remove(0);
        d["v"] = v.into();
        d
    };
    // Version 1 is rejected and parked; the team fixes its plugin.
    register(&["behaviour=reject", "only_key=P-00001"]);
    let flush = || {
        let t =
            w.q.rt
                .block_on(w.processor(env).tick(prism_core::dispatch::TickOptions {
                    now_ms: prism_core::spool::now_ms(),
                    force: true,
                    break_leases: false,
                }))
                .unwrap();
        assert_eq!(t.waiting, 0, "{t:?}");
    };
    w.write(&[version(1)]);
    w.invoke(&w.processor(env), &w.records());
    if batched {
        // Rejected when its window is formatted.
        flush();
    }
    assert_eq!(w.dead_letters(receiver), 1);
    register(&[]);

    // The redrive's send (a batched receiver: its append to the buffer) is
    // held until the stream has delivered version 2.
    let proxy = FaultProxy::start(&w.ep, 3);
    proxy.set_rules(vec![if batched {
        Rule::always("BatchWriteItem", Fault::Hold).on(&format!("buffer/{receiver}"))
    } else {
        Rule::always("SendMessageBatch", Fault::Hold)
    }]);
    let mut args = vec![
        "dlq",
        "redrive",
        "--receiver",
        receiver,
        "--model-table",
        &w.model,
        "--table",
        &w.table,
        "--bucket",
        &w.bucket,
        "--endpoint-url",
        &proxy.url,
        "--region",
        "us-east-1",
    ];
    if batched {
        args.extend(["--spool-table", spool.as_str()]);
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_prism-under-test"))
        .args(&args)
        .env(
            "PRISM_CACHE_DIR",
            std::env::temp_dir().join("prism-e2e-cache"),
        )
        .env_remove("PRISM_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_held(1, "the redrive's send");
    w.write(&[version(2)]);
    let records = w.records();
    assert_eq!(records.len(), 1);
    // A fresh dispatcher: the fixed plugin.
    w.invoke(&w.processor(env), &records);
    if batched {
        flush();
    }
    proxy.release();
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    if batched {
        flush();
    }
    assert!(
        out.contains("1 sent again at a newer version the stream wrote meanwhile"),
        "{out}"
    );
    let versions: Vec<Value> =
        w.q.drain(&queue)
            .iter()
            .map(|(b, _, _)| serde_json::from_str::<Value>(b).unwrap()["v"].clone())
            .collect();
    let expected = if batched {
        // The stream's, then the buffer's, where the correction replaced
        // the redrive's stale version.
        vec![Value::from(2), Value::from(2)]
    } else {
        // The stream's, the redrive's stale one, then the correction.
        vec![Value::from(2), Value::from(1), Value::from(2)]
    };
    assert_eq!(versions, expected, "{queue_kind}");
    assert_eq!(w.dead_letters(receiver), 0, "the letter is done with");
}
