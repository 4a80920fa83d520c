//! `prism backfill` against moto: the catalogue through one receiver
//! beside a live stream that keeps changing it (every product ends at the
//! table's version), a stale send overtaking the stream's newer one and
//! being corrected, a run stopped by a failing Scan resuming from its
//! checkpoints, refusals that name the receiver, `plugin register
//! --backfill`, and the segments fanned out over the dispatcher Lambda
//! under the runtime API emulator.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prism_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use prism_e2e::wasm;
use prism_types::change::{Change, ChangeKind};
use serde_json::Value;

use crate::support::world::{World, expected, products};
use crate::text;

/// Write `docs` with `BatchWriteItem` (25 a call): thousands in seconds.
fn write_many(w: &World, docs: &[Value]) {
    let puts = docs
        .iter()
        .map(|d| {
            prism_aws::batch::put(
                d.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), prism_e2e::aws::attr(v)))
                    .collect(),
            )
        })
        .collect();
    w.q.rt
        .block_on(prism_aws::batch::batch_write(&w.ddb, &w.model, puts))
        .unwrap();
}

/// The arguments every backfill here takes, against `endpoint`.
fn args<'a>(w: &'a World, endpoint: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "backfill",
        "--receiver",
        "website",
        "--model-table",
        &w.model,
        "--outputs-table",
        &format!("{}-outputs", w.table),
        "--spool-table",
        &w.spool(),
        "--bucket",
        &w.bucket,
        "--table",
        &w.table,
        "--endpoint-url",
        endpoint,
        "--region",
        "us-east-1",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn spawn(args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_prism-under-test"))
        .args(args)
        .env(
            "PRISM_CACHE_DIR",
            std::env::temp_dir().join("prism-e2e-cache"),
        )
        .env_remove("PRISM_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting prism backfill")
}

/// The summary line of a `--json` backfill.
fn summary(out: &str) -> Value {
    out.lines()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v["items"].is_u64())
        })
        .unwrap_or_else(|| panic!("no JSON summary in:\n{out}"))
}

/// What the receiver holds: the last body per product, in queue order
/// (a delete leaves nothing), plus every body in order.
fn receiver_state(w: &World, queue: &str) -> (BTreeMap<String, String>, Vec<Value>) {
    let bodies = w.q.drain(queue).into_iter().map(|m| m.0).collect();
    state_of(bodies)
}

fn state_of(bodies: Vec<String>) -> (BTreeMap<String, String>, Vec<Value>) {
    let mut last = BTreeMap::new();
    let mut all = Vec::new();
    for body in bodies {
        let v: Value = serde_json::from_str(&body).unwrap();
        let sku = v["sku"].as_str().unwrap().to_owned();
        if v["deleted"] == true {
            last.remove(&sku);
        } else {
            last.insert(sku, body);
        }
        all.push(v);
    }
    (last, all)
}

/// What the website would hold of `docs`: its rendering of each.
fn rendering(docs: &BTreeMap<String, Value>) -> Vec<String> {
    let records: Vec<Value> = docs
        .values()
        .enumerate()
        .map(|(i, d)| {
            prism_types::input::record::from_change(&Change::new(
                d["pk"].as_str().unwrap().to_owned(),
                ChangeKind::Insert,
                None,
                Some(d.clone()),
                (i + 1).to_string(),
                0,
            ))
        })
        .collect();
    expected(&records, "website", wasm::WEBSITE, &[])
}

fn sorted(state: &BTreeMap<String, String>) -> Vec<String> {
    let mut v: Vec<String> = state.values().cloned().collect();
    v.sort();
    v
}

/// Deliver what the stream has until `stop` is set and it is drained.
fn follow(w: &World, p: &prism_core::stream::StreamProcessor, stop: &AtomicBool) -> usize {
    let mut delivered = 0;
    loop {
        let done = stop.load(Ordering::SeqCst);
        let records = w.records();
        if !records.is_empty() {
            let out = w.invoke(p, &records);
            assert!(
                out.response.batch_item_failures.is_empty(),
                "the live stream failed: {:?}",
                out.report.receivers
            );
            delivered += records.len();
        } else if done {
            return delivered;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with_price(doc: &Value, cents: u64) -> Value {
    let mut d = doc.clone();
    d["prices"]["DE"]["amount"] =
        serde_json::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap();
    d
}

/// Products in the busy-stream backfill: 1,500 in CI (30 pages of 50, in
/// 4 segments); `PRISM_BACKFILL_PRODUCTS` for a longer run (5,000 were
/// measured, docs/backfill.md).
fn busy_products() -> usize {
    std::env::var("PRISM_BACKFILL_PRODUCTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_500)
        .max(600)
}

#[test]
fn a_backfill_beside_a_busy_stream_leaves_every_product_at_the_tables_version() {
    let Some(w) = World::new("backfill") else {
        return;
    };
    let n = busy_products();
    let mut table: BTreeMap<String, Value> = products(0..n)
        .into_iter()
        .map(|d| (d["pk"].as_str().unwrap().to_owned(), d))
        .collect();
    let docs: Vec<Value> = table.values().cloned().collect();
    write_many(&w, &docs);
    // The stream had all of these before the receiver existed: one insert
    // per product. (A BatchWriteItem the SDK retried after a lost answer
    // writes its items again, and moto then adds a record of the same
    // image: a fresh-clone CI run once saw 5,001 records. Counting records
    // made the test depend on that.)
    let keys: BTreeSet<String> = w
        .records()
        .iter()
        .filter(|r| r["eventName"] == "INSERT")
        .filter_map(|r| r["dynamodb"]["Keys"]["pk"]["S"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), n);
    let (queue, dlq) = w.register(wasm::WEBSITE, "website", &[], true);
    // The receiver's queue is the proxy, which takes every SendMessageBatch
    // and keeps the entries in arrival order: moto's SQS costs time linear
    // in a queue's length, too slow for thousands of messages. DynamoDB (model,
    // stream, outputs, spool, checkpoints) is moto's, through the proxy.
    let proxy = FaultProxy::start(&w.ep, 11);
    proxy.set_rules(vec![Rule::always("SendMessageBatch", Fault::Accept)]);
    let live = w.processor(&[
        ("PRISM_OUTPUTS_TABLE", &format!("{}-outputs", w.table)),
        ("PRISM_SPOOL_TABLE", &w.spool()),
        ("AWS_ENDPOINT_URL", &proxy.url),
    ]);

    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let mut removed = 0;
    let (backfill_out, streamed) = std::thread::scope(|s| {
        let follower = s.spawn(|| follow(&w, &live, &stop));
        let child = spawn(&args(
            &w,
            &proxy.url,
            &[
                "--segments",
                "4",
                "--page-size",
                "50",
                "--max-per-second",
                "1000",
            ],
        ));
        // A tenth of the products change while it runs, some twice, one
        // in 500 removed (500, 40 and 10 of 5,000).
        let keys: Vec<String> = table.keys().cloned().collect();
        for round in 0..2 {
            for (n, key) in keys.iter().step_by(10).enumerate() {
                if round == 1 && n % 10 != 0 {
                    continue;
                }
                if round == 1 && n % 50 == 0 {
                    w.remove(key);
                    table.remove(key);
                    removed += 1;
                    continue;
                }
                let next = with_price(&table[key], 100_000 + (round * 1_000 + n) as u64);
                w.write(std::slice::from_ref(&next));
                table.insert(key.clone(), next);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let out = child.wait_with_output().unwrap();
        stop.store(true, Ordering::SeqCst);
        (out, follower.join().unwrap())
    });
    let (out, err) = text(&backfill_out);
    assert!(backfill_out.status.success(), "{out}\n{err}");
    let s = summary(&out);
    eprintln!(
        "backfill of {n} products beside {streamed} stream records in {:.1}s: {s}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(s["items"], n as u64, "every product was read once: {s}");
    if s["parked"] != 0 {
        // Say why: the dead letters name the error.
        let letters: Vec<String> = proxy
            .accepted()
            .into_iter()
            .filter(|(q, _)| *q == dlq)
            .map(|(_, b)| b.chars().take(400).collect())
            .collect();
        panic!("{s}: parked {letters:#?}\n{err}");
    }

    let bodies: Vec<String> = proxy
        .accepted()
        .into_iter()
        .filter(|(q, _)| *q == queue)
        .map(|(_, b)| b)
        .collect();
    assert!(bodies.len() >= n, "{}", bodies.len());
    let (state, _) = state_of(bodies);
    assert_eq!(table.len(), n - removed);
    assert_eq!(
        state.len(),
        table.len(),
        "every product the table holds, and none it removed, is at the receiver"
    );
    assert_eq!(
        sorted(&state),
        rendering(&table),
        "each product's last message is the website's rendering of the table's version"
    );
}

#[test]
fn a_stale_send_that_overtakes_the_streams_newer_version_is_corrected() {
    let Some(w) = World::new("backfill-race") else {
        return;
    };
    let mut table: BTreeMap<String, Value> = products(0..20)
        .into_iter()
        .map(|d| (d["pk"].as_str().unwrap().to_owned(), d))
        .collect();
    write_many(&w, &table.values().cloned().collect::<Vec<_>>());
    w.records();
    let (queue, _) = w.register(wasm::WEBSITE, "website", &[], true);
    let live = w.processor(&[("PRISM_OUTPUTS_TABLE", &format!("{}-outputs", w.table))]);

    // Every send of the backfill is held on its way to SQS until the
    // stream has changed two products and delivered them. (Holding only the
    // first two let a third call, with the stale version in it, overtake the
    // stream when the page went out in more than two: one run in N.)
    let proxy = FaultProxy::start(&w.ep, 7);
    proxy.set_rules(vec![Rule::always("SendMessageBatch", Fault::Hold)]);
    let child = spawn(&args(&w, &proxy.url, &["--segments", "1"]));
    proxy.wait_held(1, "the backfill's first send");
    let (changed, gone) = ("P-00003".to_owned(), "P-00005".to_owned());
    let next = with_price(&table[&changed], 4_242);
    w.write(std::slice::from_ref(&next));
    table.insert(changed.clone(), next);
    w.remove(&gone);
    table.remove(&gone);
    let records = w.records();
    assert_eq!(records.len(), 2);
    assert!(
        w.invoke(&live, &records)
            .response
            .batch_item_failures
            .is_empty()
    );
    proxy.release();

    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let s = summary(&out);
    assert_eq!(s["corrected"], 2, "{s}");

    let (state, all) = receiver_state(&w, &queue);
    // The race really happened: the stream's new price went out first, and
    // the backfill's old one after it.
    let prices: Vec<String> = all
        .iter()
        .filter(|m| m["sku"] == changed.as_str())
        .map(|m| m["offers"]["price"].to_string())
        .collect();
    assert_eq!(prices.len(), 3, "{prices:?}");
    assert_eq!(prices[0], "42.42", "the stream's version first: {prices:?}");
    assert_ne!(
        prices[1], "42.42",
        "then the backfill's stale one: {prices:?}"
    );
    assert_eq!(prices[2], "42.42", "then the correction: {prices:?}");
    assert!(
        !state.contains_key(&gone),
        "the removed product ends removed"
    );
    assert_eq!(sorted(&state), rendering(&table));
}

/// Issue 28, item 5: the last correction used to go out unchecked. A
/// product the stream changes during every one of its page's five sends
/// (the inserts and four corrections) would end on the fifth send's older
/// version, with a clean exit. Now the run stops naming it, and a rerun
/// (the page numbered afresh, so nothing takes it for the first attempt)
/// ends it on the table's version.
#[test]
fn a_product_changing_through_every_correction_stops_the_run_and_a_rerun_ends_it_newest() {
    let Some(w) = World::new("backfill-contended") else {
        return;
    };
    let mut table: BTreeMap<String, Value> = products(0..5)
        .into_iter()
        .map(|d| (d["pk"].as_str().unwrap().to_owned(), d))
        .collect();
    write_many(&w, &table.values().cloned().collect::<Vec<_>>());
    w.records();
    let (queue, _) = w.register(wasm::WEBSITE, "website", &[], true);
    let live = w.processor(&[("PRISM_OUTPUTS_TABLE", &format!("{}-outputs", w.table))]);

    let busy = "P-00003".to_owned();
    // Only the sends that carry the busy product are held (a page may go
    // out in more than one call).
    let proxy = FaultProxy::start(&w.ep, 7);
    proxy.set_rules(vec![
        Rule::always("SendMessageBatch", Fault::Hold).on(&busy),
    ]);
    let child = spawn(&args(&w, &proxy.url, &["--segments", "1"]));
    let sends = 1 + prism_core::backfill::CORRECTION_ROUNDS;
    for send in 1..=sends {
        proxy.wait_held(send, &format!("the backfill's send {send}"));
        // While send `send` is held, the stream changes the product and
        // delivers it: the held send is older than what went out.
        let next = with_price(&table[&busy], 5_000 + send);
        w.write(std::slice::from_ref(&next));
        table.insert(busy.clone(), next);
        let records = w.records();
        assert_eq!(records.len(), 1);
        assert!(
            w.invoke(&live, &records)
                .response
                .batch_item_failures
                .is_empty()
        );
        proxy.release_one();
    }
    let waited = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if waited.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            let (out, err) = text(&o);
            panic!(
                "the backfill did not end after its last send: {:?}\n{out}\n{err}",
                proxy.calls()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert!(
        !o.status.success(),
        "a possibly stale product passed:\n{out}\n{err}"
    );
    assert!(
        err.contains(&format!("{busy:?} still changing after 4 corrections")),
        "{err}"
    );
    assert_eq!(
        proxy.injected().get("delay").copied(),
        Some(sends),
        "no send after the last check"
    );
    let (_, all) = receiver_state(&w, &queue);
    let last = all
        .iter()
        .rev()
        .find(|m| m["sku"] == busy.as_str())
        .unwrap();
    assert_ne!(
        last["offers"]["price"].to_string(),
        "50.05",
        "the race happened: the receiver's last is older than the table's"
    );

    // Quiet now: the rerun resumes at the open page and confirms it.
    proxy.set_rules(vec![]);
    proxy.release();
    let o = spawn(&args(&w, &proxy.url, &["--segments", "1"]))
        .wait_with_output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(summary(&out)["items"], 5, "{out}");
    let (state, all) = receiver_state(&w, &queue);
    let last = all
        .iter()
        .rev()
        .find(|m| m["sku"] == busy.as_str())
        .unwrap();
    assert_eq!(last["offers"]["price"].to_string(), "50.05");
    assert_eq!(sorted(&state), rendering(&table));
}

#[test]
fn a_stopped_backfill_resumes_from_its_checkpoints_and_refuses_what_it_cannot_run() {
    let Some(w) = World::new("backfill-resume") else {
        return;
    };
    write_many(&w, &products(0..400));
    let (queue, _) = w.register(wasm::WEBSITE, "website", &[], true);
    let state_dir = tempfile::tempdir().unwrap();
    let dir = state_dir.path().to_str().unwrap();
    let local = |endpoint: &str, extra: &[&str]| {
        let mut a = args(&w, endpoint, &["--page-size", "40"]);
        if !extra.contains(&"--segments") {
            a.extend(["--segments".to_owned(), "2".to_owned()]);
        }
        // Checkpoints in a state directory, as from a laptop.
        let at = a.iter().position(|x| x == "--spool-table").unwrap();
        a.drain(at..at + 2);
        a.extend(["--state-dir".to_owned(), dir.to_owned()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        let o = spawn(&a).wait_with_output().unwrap();
        let (out, err) = text(&o);
        (o.status.code(), out, err)
    };

    // The 4th Scan fails (past the SDK's retries): the run stops there.
    let proxy = FaultProxy::start(&w.ep, 3);
    proxy.set_rules(vec![
        Rule::always("Scan", Fault::ServerError)
            .on("\"ExclusiveStartKey\"")
            .times(40),
    ]);
    let (code, out, err) = local(&proxy.url, &[]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("Scan segment"),
        "the error names the call: {err}"
    );
    assert!(err.contains("resume"), "and says how to go on: {err}");
    let first = w.q.drain(&queue).len();
    assert!(
        first > 0 && first < 400,
        "the first run got part way: {first}"
    );

    let (code, out, err) = local(&w.ep, &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("resuming 2 segments"), "{err}");
    let second = w.q.drain(&queue).len();
    assert_eq!(
        first + second,
        400,
        "the rerun sent exactly what the first did not: {first} + {second}"
    );
    assert_eq!(summary(&out)["items"].as_u64().unwrap() as usize, second);

    let (code, out, _) = local(&w.ep, &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("complete (400 items)"), "{out}");
    let (_, _, err) = local(&w.ep, &["--segments", "3"]);
    assert!(err.contains("pass --segments 2"), "{err}");

    // Refusals name the receiver and why.
    let mut a = args(&w, &w.ep, &[]);
    a[2] = "nobody".into();
    let o = spawn(&a).wait_with_output().unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("receiver nobody: is not in the registry"),
        "{err}"
    );
    w.prism(&["plugin", "disable", "website"]);
    // Refused before the complete run's checkpoints are even looked at.
    let o = spawn(&args(&w, &w.ep, &["--restart"]))
        .wait_with_output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(err.contains("is disabled"), "{err}");
    w.prism(&["plugin", "enable", "website"]);
    let (_, out, _) = local(&w.ep, &[]);
    assert!(
        out.contains("complete (400 items)"),
        "--restart cleared nothing: {out}"
    );
}

#[test]
fn register_with_backfill_fills_a_new_receiver() {
    let Some(w) = World::new("backfill-register") else {
        return;
    };
    let docs = products(0..60);
    write_many(&w, &docs);
    let queue = w.q.create("website");
    let dlq = w.q.create("website-dlq");
    let state_dir = tempfile::tempdir().unwrap();
    let register = |extra: &[&str]| {
        let mut a = vec![
            "plugin",
            "register",
            wasm::WEBSITE,
            "--receiver",
            "website",
            "--bucket",
            &w.bucket,
            "--queue",
            &queue,
            "--dead-letter-queue",
            &dlq,
            "--backfill",
            "--model-table",
            &w.model,
            "--state-dir",
            state_dir.path().to_str().unwrap(),
        ];
        a.extend(extra);
        w.prism(&a)
    };
    let out = register(&[]);
    assert!(out.contains("backfilled 60 items"), "{out}");
    let table = docs
        .iter()
        .map(|d| (d["pk"].as_str().unwrap().to_owned(), d.clone()))
        .collect();
    let (state, _) = receiver_state(&w, &queue);
    assert_eq!(sorted(&state), rendering(&table));
    // A later version is not a new receiver: no second backfill.
    let out = register(&["--config", "base_url=https://shop.example.com"]);
    assert!(out.contains("not backfilling"), "{out}");
    assert!(w.q.drain(&queue).is_empty());
}

#[test]
fn a_backfill_fans_its_segments_out_over_the_dispatcher_lambda() {
    let Some(w) = World::new("backfill-lambda") else {
        return;
    };
    let Some(mut emu) = crate::support::emulator::Emulator::start() else {
        return;
    };
    let table: BTreeMap<String, Value> = products(0..120)
        .into_iter()
        .map(|d| (d["pk"].as_str().unwrap().to_owned(), d))
        .collect();
    write_many(&w, &table.values().cloned().collect::<Vec<_>>());
    let (queue, _) = w.register(wasm::WEBSITE, "website", &[], true);
    let log_dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let spool = w.spool();
    let env = [
        ("PRISM_REGISTRY_TABLE", w.table.as_str()),
        ("PRISM_PLUGIN_BUCKET", &w.bucket),
        ("PRISM_LEDGER_TABLE", &w.ledger),
        ("PRISM_SPOOL_TABLE", &spool),
        ("PRISM_MODEL_TABLE", &w.model),
        ("PRISM_CACHE_DIR", cache.path().to_str().unwrap()),
        ("AWS_ENDPOINT_URL", &w.ep),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    // Two warm instances take the invocations.
    for i in 0..2 {
        emu.run(
            env!("CARGO_BIN_EXE_prism-lambda-under-test"),
            &env,
            &log_dir.path().join(format!("lambda-{i}.log")),
        );
    }
    let lambda = format!("http://127.0.0.1:{}", emu.port());
    let mut a = args(
        &w,
        &w.ep,
        &[
            "--function",
            "_",
            "--lambda-endpoint-url",
            &lambda,
            "--segments",
            "3",
            "--page-size",
            "20",
            "--pages-per-invocation",
            "1",
            "--concurrency",
            "2",
        ],
    );
    // The laptop needs no plugin bucket to fan out.
    let at = a.iter().position(|x| x == "--bucket").unwrap();
    a.drain(at..at + 2);
    let o = spawn(&a).wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let s = summary(&out);
    assert_eq!(s["items"], 120, "{s}");

    let (state, all) = receiver_state(&w, &queue);
    assert_eq!(all.len(), 120, "each product once");
    assert_eq!(sorted(&state), rendering(&table));
    // Each segment took several invocations, each resuming from the checkpoint.
    let invocations: usize = (0..2)
        .map(|i| {
            crate::support::emulator::log_lines(&log_dir.path().join(format!("lambda-{i}.log")))
                .iter()
                .filter(|l| l["message"] == "backfill segment invocation finished")
                .count()
        })
        .sum();
    assert!(
        invocations >= 6,
        "3 segments of about 40 items, 20 a call: {invocations}"
    );
    let cps = w.q.rt.block_on(async {
        use prism_aws::backfill::SpoolCheckpoints;
        use prism_core::backfill::checkpoint::Checkpoints;
        SpoolCheckpoints::new(w.ddb.clone(), &spool, "website")
            .all()
            .await
            .unwrap()
    });
    assert_eq!(cps.len(), 3);
    assert!(cps.iter().all(|c| c.done), "{cps:?}");
    assert_eq!(cps.iter().map(|c| c.items).sum::<u64>(), 120);
    // `prism status` shows where it stands.
    let out = w.prism(&["status", "--spool-table", &spool]);
    assert!(out.contains("done (120 items)"), "{out}");
}

/// A batched receiver backfilled in pages gets every product, on a
/// standard and on a FIFO queue. Every page of every segment used to reuse
/// the same sequence numbers; a page that did not fill a window waited in
/// the buffer, keyed by sequence, and the next page overwrote it (or it was
/// dropped as already handled once a flush had marked the number done):
/// 295 products in pages of 40 reached the receiver as about 50, and the
/// summary showed no error.
#[test]
fn a_batched_receiver_backfilled_in_pages_gets_every_product() {
    for fifo in [false, true] {
        let Some(w) = World::new(if fifo {
            "backfill-batch-fifo"
        } else {
            "backfill-batch"
        }) else {
            return;
        };
        let table: BTreeMap<String, Value> = products(0..295)
            .into_iter()
            .map(|d| (d["pk"].as_str().unwrap().to_owned(), d))
            .collect();
        write_many(&w, &table.values().cloned().collect::<Vec<_>>());
        w.records();
        let name = if fifo { "pricelist.fifo" } else { "pricelist" };
        let queue = w.q.create(name);
        w.prism(&[
            "plugin",
            "register",
            wasm::PRICELIST,
            "--receiver",
            "pricelist",
            "--bucket",
            &w.bucket,
            "--queue",
            &queue,
            "--batch-max-count",
            "100",
        ]);
        let mut a = args(&w, &w.ep, &["--segments", "2", "--page-size", "40"]);
        let at = a.iter().position(|x| x == "website").unwrap();
        a[at] = "pricelist".into();
        let o = spawn(&a).wait_with_output().unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        assert_eq!(summary(&out)["items"], 295, "{out}");
        // What is left in the buffer (less than a window) goes out.
        let (ok, out) = w.flush_all();
        assert!(ok, "{out}");
        let mut skus = std::collections::BTreeSet::new();
        let mut rows = 0;
        for (body, _, _) in w.q.drain(&queue) {
            for line in body.lines().skip(1) {
                rows += 1;
                skus.insert(line.split(';').next().unwrap().to_owned());
            }
        }
        assert_eq!(
            skus.len(),
            table.len(),
            "fifo={fifo}: every product reached the batched receiver ({rows} rows)"
        );
    }
}
