//! Durable batch buffers and retry lanes, locally: `prism run --state` and
//! `prism flush` through the real CLI (a flush killed at every point of its
//! protocol), flushing by age on the tick, oversized windows split, and
//! retry lanes that keep one product waiting while everything else goes on.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use prism_core::dispatch::{
    Dispatcher, Lanes, MAX_LANE_ATTEMPTS, Progress, RunOptions, TickOptions, tick,
};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::{DeadLetter, Envelope, Sink, SinkError};
use prism_core::spool::{LocalSpool, Spool};
use prism_e2e::{engine, register, relaxed, wasm};
use prism_sample::StreamWriter;
use prism_types::change::Change;
use prism_types::manifest::Mode;
use prism_types::registry::LocalRegistry;
use serde_json::{Value, json};

use crate::{prism, text};

fn batch(max_count: usize) -> Mode {
    Mode::Batch {
        max_count,
        max_bytes: 1 << 30,
        max_age_secs: 3600,
    }
}

/// `n` product inserts, continuing `w`'s sequence.
fn inserts(w: &mut StreamWriter, from: usize, n: usize) {
    for i in from..from + n {
        let p = prism_sample::product(i, 7);
        w.push(p["pk"].as_str().unwrap(), None, Some(&p));
    }
}

fn jsonl(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

/// Every CSV data row the price list got (header rows dropped), sorted.
fn rows(outbox: &Path) -> Vec<String> {
    let mut out: Vec<String> = prism_e2e::bodies(outbox, "pricelist")
        .iter()
        .flat_map(|b| b.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    out.sort();
    out
}

fn ok(args: &[&str]) -> String {
    let o = prism(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "prism {args:?}:\n{out}\n{err}");
    out
}

#[test]
fn a_buffer_fills_across_runs_and_flushes_at_its_count_limit() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    register(
        dir.path().join("reg").as_path(),
        "pricelist",
        wasm::PRICELIST,
        batch(5),
        relaxed(),
        &[],
    );
    let mut w = StreamWriter::new();
    inserts(&mut w, 0, 7);
    std::fs::write(p("one.jsonl"), jsonl(&w.records()[..3])).unwrap();
    std::fs::write(p("two.jsonl"), jsonl(&w.records()[3..])).unwrap();
    std::fs::write(p("all.jsonl"), jsonl(w.records())).unwrap();
    let run = |events: &str, outbox: &str| {
        ok(&[
            "run",
            "--registry",
            &p("reg"),
            "--events",
            &p(events),
            "--outbox",
            &p(outbox),
            "--state",
            &p("state"),
        ])
    };

    let out = run("one.jsonl", "out1");
    assert!(out.contains("batch (0, 3 buffered)"), "{out}");
    assert!(out.contains("3 changes waiting"), "{out}");
    assert!(
        rows(&dir.path().join("out1")).is_empty(),
        "below the limit: nothing sent"
    );

    // 3 + 4 = 7 reach the limit of 5: one window of the oldest five.
    let out = run("two.jsonl", "out2");
    assert!(out.contains("2 changes waiting"), "{out}");
    let files = prism_e2e::files(&dir.path().join("out2"), "pricelist", |n| {
        n.ends_with(".csv")
    });
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0]
            .0
            .starts_with("batch-100000000000000000001-100000000000000000005-"),
        "{}",
        files[0].0
    );
    assert_eq!(rows(&dir.path().join("out2")).len(), 5);

    // The tick leaves a buffer below its limits alone; --all flushes it.
    let flush = |all: bool| {
        let (reg, state, out3) = (p("reg"), p("state"), p("out3"));
        let mut args = vec![
            "flush",
            "--registry",
            &reg,
            "--state",
            &state,
            "--outbox",
            &out3,
        ];
        if all {
            args.push("--all");
        }
        ok(&args)
    };
    let out = flush(false);
    assert!(out.contains("2 changes waiting"), "{out}");
    assert!(rows(&dir.path().join("out3")).is_empty());
    let out = flush(true);
    assert!(
        out.contains("pricelist: 1 windows flushed, 1 messages, 0 errors"),
        "{out}"
    );
    assert!(out.contains("0 changes waiting"), "{out}");

    // Across the runs and the flush, exactly the rows one run of everything makes.
    ok(&[
        "run",
        "--registry",
        &p("reg"),
        "--events",
        &p("all.jsonl"),
        "--outbox",
        &p("once"),
    ]);
    let mut got = rows(&dir.path().join("out2"));
    got.extend(rows(&dir.path().join("out3")));
    got.sort();
    assert_eq!(got, rows(&dir.path().join("once")));
}

#[test]
fn a_flush_killed_at_any_point_resumes_and_sends_each_change_exactly_once() {
    let mut w = StreamWriter::new();
    inserts(&mut w, 0, 20);
    for point in [
        "flush-claimed:2",
        "flush-sent:2",
        "flush-removed:2",
        "flush-sent:4",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
        register(
            dir.path().join("reg").as_path(),
            "pricelist",
            wasm::PRICELIST,
            batch(5),
            relaxed(),
            &[],
        );
        std::fs::write(p("in.jsonl"), jsonl(w.records())).unwrap();
        // The run buffers 20 changes and flushes four windows of five; it
        // is killed partway through.
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_prism-under-test"))
            .args([
                "run",
                "--registry",
                &p("reg"),
                "--events",
                &p("in.jsonl"),
                "--outbox",
                &p("out"),
                "--state",
                &p("state"),
            ])
            .env(
                "PRISM_CACHE_DIR",
                std::env::temp_dir().join("prism-e2e-cache"),
            )
            .env("PRISM_CRASH_AT", point)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(
            !o.status.success(),
            "{point}: the run must be killed\n{out}\n{err}"
        );
        assert!(err.contains("aborting"), "{point}: {err}");
        let left = LocalSpool::open(&dir.path().join("state"))
            .unwrap()
            .lanes()
            .unwrap();
        assert!(
            !left.is_empty(),
            "{point}: killed before the buffer was empty"
        );

        let out = ok(&[
            "flush",
            "--registry",
            &p("reg"),
            "--state",
            &p("state"),
            "--outbox",
            &p("out"),
        ]);
        assert!(out.contains("0 changes waiting"), "{point}: {out}");
        let got = rows(&dir.path().join("out"));
        let skus: Vec<&str> = got.iter().map(|r| r.split(';').next().unwrap()).collect();
        let mut unique = skus.clone();
        unique.dedup();
        assert_eq!(got.len(), 20, "{point}: every change once: {got:#?}");
        assert_eq!(unique.len(), 20, "{point}: no change twice");
        let windows = prism_e2e::files(&dir.path().join("out"), "pricelist", |n| {
            n.ends_with(".csv")
        });
        assert_eq!(windows.len(), 4, "{point}: the same four windows");
    }
}

/// Records deliveries and dead letters; can be switched down for one
/// (receiver, key), and refuses messages over `max_body` bytes.
#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<(String, String, String, String)>>,
    parked: Mutex<Vec<DeadLetter>>,
    down: Option<(&'static str, &'static str)>,
    up: AtomicBool,
    max_body: Option<usize>,
}

impl Recorder {
    fn down_for(receiver: &'static str, key: &'static str) -> Self {
        Self {
            down: Some((receiver, key)),
            ..Self::default()
        }
    }

    fn bodies(&self, receiver: &str) -> Vec<String> {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.0 == receiver)
            .map(|d| d.3.clone())
            .collect()
    }

    fn sequences(&self, receiver: &str, key: &str) -> Vec<u128> {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.0 == receiver && d.1 == key)
            .map(|d| d.2.parse().unwrap())
            .collect()
    }
}

impl Sink for Recorder {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let e = &envelopes[0];
        if self.down == Some((e.receiver, e.key)) && !self.up.load(Ordering::SeqCst) {
            return Err(SinkError::new(
                e.receiver,
                prism_core::sink::SinkErrorKind::Unavailable,
                "queue unreachable",
            ));
        }
        self.check(envelopes)?;
        let mut v = self.delivered.lock().unwrap();
        for e in envelopes {
            v.push((
                e.receiver.to_owned(),
                e.key.to_owned(),
                e.sequence.to_owned(),
                String::from_utf8_lossy(&e.message.body).into_owned(),
            ));
        }
        Ok(())
    }

    fn park(&self, d: &DeadLetter) -> Result<(), SinkError> {
        self.parked.lock().unwrap().push(d.clone());
        Ok(())
    }

    fn check(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        match (
            self.max_body,
            envelopes.iter().map(|e| e.message.body.len()).max(),
        ) {
            (Some(max), Some(len)) if len > max => Err(SinkError::new(
                envelopes[0].receiver,
                prism_core::sink::SinkErrorKind::TooLarge,
                format!("{len} bytes, over {max}"),
            )),
            _ => Ok(()),
        }
    }
}

fn load(dir: &Path) -> ReceiverSet {
    ReceiverSet::load(&engine(), LocalRegistry::new(dir).load().unwrap())
}

fn hold() -> Dispatcher {
    Dispatcher::builder()
        .threads(2)
        .hold_unavailable(true)
        .build()
}

/// Run `changes` with the spool's lanes at time `now`.
fn run_spooled(
    set: &ReceiverSet,
    changes: &[Change],
    sink: &dyn Sink,
    spool: &dyn Spool,
    now: u64,
) -> prism_core::dispatch::RunReport {
    let lanes = Lanes::open(spool, now).unwrap();
    let opts = RunOptions {
        lanes: Some(&lanes),
        ..RunOptions::default()
    };
    hold().run_with(set, changes, sink, &Progress::default(), opts)
}

#[test]
fn a_buffer_is_flushed_by_age_on_the_tick_and_oversized_windows_are_split() {
    let dir = tempfile::tempdir().unwrap();
    let age = Mode::Batch {
        max_count: 1000,
        max_bytes: 1 << 30,
        max_age_secs: 60,
    };
    register(
        dir.path(),
        "pricelist",
        wasm::PRICELIST,
        age,
        relaxed(),
        &[],
    );
    let set = load(dir.path());
    let mut w = StreamWriter::new();
    inserts(&mut w, 0, 40);
    let changes = prism_e2e::changes(&w.to_json_lines());
    let spool = LocalSpool::memory();
    // Messages over 1500 bytes are refused: a 40-row CSV does not fit.
    let sink = Recorder {
        max_body: Some(1500),
        ..Recorder::default()
    };
    let t0 = 1_000_000;
    let report = run_spooled(&set, &changes, &sink, &spool, t0);
    assert_eq!(report.receivers["pricelist"].buffered, 40);
    assert!(sink.bodies("pricelist").is_empty());

    let early = tick(&hold(), &set, &spool, &sink, TickOptions::at(t0 + 59_999));
    assert_eq!(early.waiting, 40, "not due a millisecond early");
    assert!(sink.bodies("pricelist").is_empty());

    let due = tick(&hold(), &set, &spool, &sink, TickOptions::at(t0 + 60_000));
    assert_eq!(due.waiting, 0);
    let bodies = sink.bodies("pricelist");
    assert!(
        bodies.len() > 1,
        "the window was split: {} messages",
        bodies.len()
    );
    assert!(bodies.iter().all(|b| b.len() <= 1500));
    let rows: Vec<&str> = bodies.iter().flat_map(|b| b.lines().skip(1)).collect();
    assert_eq!(rows.len(), 40, "every change once");
    assert!(sink.parked.lock().unwrap().is_empty());
}

/// `n` keys K0…: inserted with weight 0, then their weight changed to each
/// of `steps` in turn. Returns the writer and the documents as they end.
fn inserted_then_weighed(
    n: usize,
    steps: std::ops::RangeInclusive<u32>,
) -> (StreamWriter, Vec<Value>) {
    let mut w = StreamWriter::new();
    let mut docs: Vec<Value> = (0..n)
        .map(|i| json!({"pk": format!("K{i}"), "logistics": {"weight_g": 0}}))
        .collect();
    for (i, d) in docs.iter().enumerate() {
        w.push(&format!("K{i}"), None, Some(d));
    }
    weights(&mut w, &mut docs, steps);
    (w, docs)
}

/// Keys K0…: their weight changed to each of `steps` in turn.
fn weights(w: &mut StreamWriter, docs: &mut [Value], steps: std::ops::RangeInclusive<u32>) {
    for step in steps {
        for (i, d) in docs.iter_mut().enumerate() {
            let old = d.clone();
            d["logistics"]["weight_g"] = json!(step);
            w.push(&format!("K{i}"), Some(&old), Some(d));
        }
    }
}

#[test]
fn a_dead_destination_parks_one_product_in_its_retry_lane_and_everything_else_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    prism_e2e::immediate(dir.path(), "down", wasm::LOGISTICS);
    prism_e2e::immediate(dir.path(), "up", wasm::LOGISTICS);
    let set = load(dir.path());
    let (mut w, mut docs) = inserted_then_weighed(8, 1..=5);
    let first = prism_e2e::changes(&w.to_json_lines());
    let spool = LocalSpool::memory();
    let sink = Recorder::down_for("down", "K3");

    let report = run_spooled(&set, &first, &sink, &spool, 0);
    assert_eq!(
        report.first_held(),
        None,
        "nothing fails the run: K3 waits in its lane"
    );
    let down = &report.receivers["down"];
    assert_eq!(down.laned, 6, "K3's insert and its five changes");
    assert_eq!(down.messages, 42, "the other seven products carry on");
    assert_eq!(report.receivers["up"].messages, 48);
    assert!(sink.sequences("down", "K3").is_empty());

    // The queue is back, but K3's lane is still open: a new K3 change must
    // wait behind the six, while K1's goes straight out.
    sink.up.store(true, Ordering::SeqCst);
    let before = w.records().len();
    for k in [1, 3] {
        let old = docs[k].clone();
        docs[k]["logistics"]["weight_g"] = json!(99);
        w.push(&format!("K{k}"), Some(&old), Some(&docs[k]));
    }
    let second = prism_e2e::changes(&jsonl(&w.records()[before..]));
    let report = run_spooled(&set, &second, &sink, &spool, 0);
    assert_eq!(
        report.receivers["down"].laned, 1,
        "K3's new change waits in the lane"
    );
    assert_eq!(report.receivers["down"].messages, 1, "K1's goes out");
    assert!(sink.sequences("down", "K3").is_empty());

    let t = tick(&hold(), &set, &spool, &sink, TickOptions::at(0));
    assert_eq!(t.waiting, 0);
    let k3 = sink.sequences("down", "K3");
    assert_eq!(k3.len(), 7, "all seven K3 changes, now delivered");
    let mut sorted = k3.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(k3, sorted, "in stream order, once each");
    assert!(spool.lanes().unwrap().is_empty());
}

#[test]
fn a_plugin_that_keeps_asking_to_retry_waits_in_its_lane_then_is_parked() {
    let dir = tempfile::tempdir().unwrap();
    register(
        dir.path(),
        "flaky",
        wasm::HOSTILE,
        Mode::Immediate,
        relaxed(),
        &[("behaviour", "retry"), ("only_key", "K2")],
    );
    let set = load(dir.path());
    let (w, _) = inserted_then_weighed(4, 1..=2);
    let changes = prism_e2e::changes(&w.to_json_lines());
    let spool = LocalSpool::memory();
    let sink = Recorder::default();

    let report = run_spooled(&set, &changes, &sink, &spool, 0);
    let st = &report.receivers["flaky"];
    assert_eq!(st.laned, 3, "K2's three changes wait");
    assert_eq!(st.messages, 9, "K0, K1, K3 carry on");
    assert!(sink.parked.lock().unwrap().is_empty());

    // The lane's own bound, without the breaker (which, by default,
    // quarantines a plugin that keeps asking to retry after 5 such changes:
    // `a_receiver_that_always_asks_to_retry_is_quarantined`).
    let no_breaker = hold()
        .to_builder()
        .breaker(prism_core::breaker::BreakerConfig::off())
        .build();
    let mut by_attempt = BTreeMap::new();
    for attempt in 1..=MAX_LANE_ATTEMPTS {
        let t = tick(&no_breaker, &set, &spool, &sink, TickOptions::at(0));
        by_attempt.insert(attempt, (t.waiting, sink.parked.lock().unwrap().len()));
    }
    assert_eq!(by_attempt[&1], (3, 0));
    assert_eq!(
        by_attempt[&(MAX_LANE_ATTEMPTS - 1)],
        (3, 0),
        "still waiting"
    );
    assert_eq!(
        by_attempt[&MAX_LANE_ATTEMPTS],
        (0, 3),
        "then parked, each with the reason"
    );
    let parked = sink.parked.lock().unwrap();
    assert!(
        parked
            .iter()
            .all(|d| d.error_kind == "retry-exhausted" && d.key == "K2")
    );
    assert!(
        parked[0].error.contains("downstream lookup unavailable"),
        "{}",
        parked[0].error
    );
}

/// A sink where one receiver's queue is down and slow to say so (as a
/// throttled or timing-out queue is), and every other delivery succeeds.
struct SlowlyDown {
    down: &'static str,
    delivered: Mutex<Vec<(String, String)>>,
}

impl Sink for SlowlyDown {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let e = &envelopes[0];
        if e.receiver == self.down {
            std::thread::sleep(std::time::Duration::from_millis(40));
            return Err(SinkError::unavailable(e.receiver, "queue timing out"));
        }
        let mut d = self.delivered.lock().unwrap();
        d.extend(
            envelopes
                .iter()
                .map(|e| (e.receiver.to_owned(), e.key.to_owned())),
        );
        Ok(())
    }
    fn park(&self, d: &DeadLetter) -> Result<(), SinkError> {
        panic!("nothing is parked here: {d:?}")
    }
}

/// 50 retry lanes of a receiver whose queue keeps timing out, and one lane
/// of another receiver. The tick's time budget covers a few lanes only; the
/// other receiver's lane is still delivered in the first tick (it used to
/// wait behind all 50, ticks on end), and the next tick carries on where
/// the last one stopped instead of trying the same first lanes again.
#[test]
fn fifty_failing_lanes_of_one_receiver_do_not_starve_another_receivers_lane() {
    use prism_core::spool::{Lane, Spooled};
    let dir = tempfile::tempdir().unwrap();
    prism_e2e::immediate(dir.path(), "aaa-slow", wasm::HOSTILE);
    prism_e2e::immediate(dir.path(), "zzz-fine", wasm::HOSTILE);
    let set = load(dir.path());
    let spool = LocalSpool::memory();
    let change = |key: &str, seq: u64| {
        Change::new(
            key.into(),
            prism_types::change::ChangeKind::Insert,
            None,
            Some(json!({"pk": key})),
            seq.to_string(),
            0,
        )
    };
    for n in 0..50 {
        let key = format!("P-{n:02}");
        let lane = Lane::Retry {
            receiver: "aaa-slow".into(),
            key: key.clone(),
        };
        spool
            .append(&lane, &[Spooled::new(&change(&key, 100 + n), 0)])
            .unwrap();
    }
    let lane = Lane::Retry {
        receiver: "zzz-fine".into(),
        key: "P-99".into(),
    };
    spool
        .append(&lane, &[Spooled::new(&change("P-99", 999), 0)])
        .unwrap();
    let sink = SlowlyDown {
        down: "aaa-slow",
        delivered: Mutex::default(),
    };
    let mut firsts = Vec::new();
    for n in 0..2 {
        // A budget for a handful of the slow lanes (each costs ~40 ms),
        // beyond the receivers' call budget (`relaxed`: 10 s), which every
        // lane needs left to start. A fresh dispatcher each time, as on a
        // fresh Lambda instance: the cursor comes from the spool.
        let d = hold()
            .to_builder()
            .finish_by(Some(
                std::time::Instant::now()
                    + std::time::Duration::from_millis(prism_e2e::relaxed().timeout_ms + 250),
            ))
            .build();
        let t = tick(&d, &set, &spool, &sink, TickOptions::at(0));
        assert!(t.deferred > 30, "tick {n}: the budget cut it short: {t:?}");
        firsts.push(d.tick_cursor().get());
        if n == 0 {
            assert_eq!(
                *sink.delivered.lock().unwrap(),
                [("zzz-fine".to_owned(), "P-99".to_owned())],
                "the other receiver's lane went out in the first tick"
            );
        }
        assert_eq!(t.waiting, 50, "{t:?}");
    }
    // The cursor moved on: the second tick did not start where the first did.
    assert_ne!(firsts[0], firsts[1], "{firsts:?}");
    assert_eq!(spool.tick_cursor().unwrap(), firsts[1], "kept in the spool");
}
