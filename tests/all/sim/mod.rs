//! A deterministic simulation of the dispatcher (issue 28). The real
//! dispatcher code (`StreamProcessor`: stream batches, retry lanes, batch
//! buffers, window cuts, the tick, the retry ledger, output dedup) runs
//! real Wasm receivers against models of SQS and DynamoDB (`backends.rs`)
//! that fail any call before or after it happens, or kill the process
//! there (`faults.rs`), on a simulated clock. One seed decides the
//! stream, the batches, the ticks, time passing and every fault, so a
//! failing seed replays exactly; it is then shrunk (fewer changes, faults
//! left out one by one) to a short trace that a test can pin.
//!
//! After each schedule the faults stop, the stream is read to its end and
//! the tick runs until every lane has drained; then each receiver's
//! queues are checked against the stream (`check.rs`).
//!
//! `PRISM_SIM_SCHEDULES` (default 10,000) sets how many schedules run;
//! `PRISM_SIM_SEED` runs one seed and prints its trace. A long run sets
//! `PRISM_SIM_KEEP_GOING=1` to carry on past a failing seed and report
//! every one it found; it prints its progress every 10,000 schedules.
//! docs/simulation.md: the design, what it covers, what it found.

mod backends;
mod backfill;
mod check;
mod conformance;
mod faults;
mod pinned;
mod redrive;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prism_core::receivers::ReceiverSet;
use prism_e2e::{manifest, read, wasm};
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::failure::FailureKind;
use prism_types::manifest::{Destination, Mode};
use prism_types::registry::{Entry, Snapshot};

use check::Tally;
use faults::FaultPlan;
use world::{Fixture, Options, Reached, World};

/// How a simulated receiver echoes a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Echo {
    /// Key and sequence: every change's output is its own.
    Sequence,
    /// Key and `v`: changes that leave `v` alone give the same output
    /// (output dedup suppresses them).
    Image,
    /// Key, the old image's `v` and the new one's: an output that depends
    /// on where the product came from (a product back at an earlier image
    /// is dedup's ABA).
    Transition,
}

/// One receiver of the simulation.
#[derive(Debug, Clone)]
pub(crate) struct SimReceiver {
    pub(crate) id: &'static str,
    pub(crate) batch: bool,
    pub(crate) fifo: bool,
    pub(crate) echo: Echo,
    /// Output dedup on (the manifest's `dedup`).
    pub(crate) dedup: bool,
    /// Its interest is `/v` alone: changes of `noise` only pass it by.
    pub(crate) only_v: bool,
    /// Why its plugin may have a change parked, and for which product
    /// (`None`: any): a letter for any other reason breaks a guarantee.
    pub(crate) parks: &'static [(FailureKind, Option<&'static str>)],
    config: &'static [(&'static str, &'static str)],
}

/// Every receiver kind: immediate and batched, standard and FIFO,
/// plugin-chosen groups spanning products, output dedup on and off, and a
/// receiver that rejects one product (its changes are parked).
pub(crate) const RECEIVERS: &[SimReceiver] = &[
    SimReceiver {
        id: "no-dedup",
        batch: false,
        fifo: false,
        echo: Echo::Sequence,
        dedup: false,
        only_v: false,
        parks: &[],
        config: &[],
    },
    // Output dedup with outputs that depend on the old image too: after
    // lost state writes, a product back at an earlier image must not be
    // suppressed as the same as what the receiver got before.
    SimReceiver {
        id: "imm",
        batch: false,
        fifo: false,
        echo: Echo::Transition,
        dedup: true,
        only_v: false,
        parks: &[],
        config: &[("echo", "transition")],
    },
    SimReceiver {
        id: "imm-fifo",
        batch: false,
        fifo: true,
        echo: Echo::Sequence,
        dedup: true,
        only_v: false,
        parks: &[],
        config: &[],
    },
    SimReceiver {
        id: "bat",
        batch: true,
        fifo: false,
        echo: Echo::Sequence,
        dedup: true,
        only_v: false,
        parks: &[],
        config: &[],
    },
    SimReceiver {
        id: "bat-fifo",
        batch: true,
        fifo: true,
        echo: Echo::Sequence,
        dedup: true,
        only_v: false,
        parks: &[],
        config: &[],
    },
    // Rejects one product too: a FIFO dead-letter queue to redrive.
    SimReceiver {
        id: "groups-fifo",
        batch: false,
        fifo: true,
        echo: Echo::Sequence,
        dedup: true,
        only_v: false,
        parks: &[(FailureKind::Rejected, Some("P-1"))],
        config: &[
            ("group_by", "parity"),
            ("behaviour", "reject"),
            ("only_key", "P-1"),
        ],
    },
    SimReceiver {
        id: "batch-groups-fifo",
        batch: true,
        fifo: true,
        echo: Echo::Sequence,
        dedup: true,
        only_v: false,
        parks: &[],
        config: &[("group_by", "parity")],
    },
    SimReceiver {
        id: "dedup",
        batch: false,
        fifo: false,
        echo: Echo::Image,
        dedup: true,
        only_v: false,
        parks: &[],
        config: &[("echo", "image")],
    },
    SimReceiver {
        id: "picky",
        batch: false,
        fifo: false,
        echo: Echo::Sequence,
        dedup: true,
        only_v: true,
        parks: &[
            (FailureKind::Rejected, Some("P-1")),
            (FailureKind::Trap, Some("P-5")),
        ],
        config: &[
            ("behaviour", "reject"),
            ("only_key", "P-1"),
            ("panic_key", "P-5"),
        ],
    },
    // A plugin that asks for a retry on one product, in batch windows: its
    // window waits in the buffer, tried again until the retries run out.
    SimReceiver {
        id: "retry-bat",
        batch: true,
        fifo: false,
        echo: Echo::Sequence,
        dedup: true,
        only_v: false,
        // A window is parked whole, with whichever products share it.
        parks: &[(FailureKind::RetryExhausted, None)],
        config: &[("behaviour", "retry"), ("only_key", "P-0")],
    },
];

/// A receiver's queue and dead-letter queue.
pub(crate) fn queue_names(r: &SimReceiver) -> (String, String) {
    let suffix = if r.fifo { ".fifo" } else { "" };
    (
        format!("sim-{}{suffix}", r.id),
        format!("sim-{}-dlq{suffix}", r.id),
    )
}

/// The fixture, loaded once for every test of the simulation.
fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(load_fixture)
}

fn load_fixture() -> Fixture {
    let engine = PluginEngine::new(&EngineOptions {
        max_instances: 32,
        ..EngineOptions::default()
    })
    .unwrap();
    let wasm = read(wasm::HOSTILE);
    let set = |fixed: bool| {
        let entries = RECEIVERS
            .iter()
            .map(|r| {
                let mode = if r.batch {
                    Mode::Batch {
                        max_count: 3,
                        max_bytes: 1 << 20,
                        max_age_secs: 60,
                    }
                } else {
                    Mode::Immediate
                };
                // The fixed version (what a redrive runs) behaves.
                let config: Vec<(&str, &str)> = r
                    .config
                    .iter()
                    .copied()
                    .filter(|(k, _)| !fixed || !FAILING.contains(k))
                    .collect();
                let mut m = manifest(r.id, &wasm, mode, prism_e2e::relaxed(), &config);
                m.dedup = r.dedup;
                if r.only_v {
                    m.interest = vec!["/v".to_owned()];
                }
                // Names SQS takes (a FIFO queue's ends in `.fifo`, its
                // dead-letter queue's too): the conformance run makes them.
                let (queue, dlq) = queue_names(r);
                m.destination = Some(Destination {
                    dead_letter_queue: Some(dlq),
                    queue,
                });
                Entry {
                    manifest: m,
                    origin: format!("sim/{}", r.id),
                    wasm: wasm.clone(),
                }
            })
            .collect();
        let set = ReceiverSet::load(
            &engine,
            Snapshot {
                entries,
                ..Snapshot::default()
            },
        );
        assert!(set.unavailable.is_empty(), "{:?}", set.unavailable);
        Arc::new(set)
    };
    Fixture {
        set: set(false),
        fixed: set(true),
        engine: Arc::new(engine),
    }
}

/// The configuration that makes a simulated plugin fail: its fixed
/// version (what a redrive runs) has none of it.
const FAILING: &[&str] = &["behaviour", "only_key", "panic_key"];

/// How one schedule ended.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) violations: Vec<String>,
    pub(crate) trace: Vec<String>,
    pub(crate) reached: Reached,
    pub(crate) tally: Tally,
    pub(crate) faults_decided: u64,
    pub(crate) injected: BTreeMap<(String, &'static str), u64>,
    pub(crate) calls: BTreeMap<String, u64>,
}

/// Rounds of the drain (read the stream to its end, let time pass, tick).
const DRAIN_ROUNDS: usize = 12;

/// Run one schedule.
pub(crate) fn run(fixture: &Fixture, opts: &Options) -> Outcome {
    let mut w = World::new(fixture, opts);
    play(&mut w);
    let (violations, tally) = finish(&mut w);
    outcome(w, violations, tally)
}

/// The schedule: the stream grows while the Lambda, the tick, time and
/// process recycling interleave, with the faults on.
pub(crate) fn play(w: &mut World<'_>) {
    w.faults.set_on(true);
    let mut steps = 0;
    while !w.done_reading() && steps < 400 {
        steps += 1;
        match w.rng.u32(0..100) {
            0..40 => {
                let n = w.rng.usize(1..=4);
                w.produce(n);
                let max = w.rng.usize(1..=8);
                w.invoke(max);
            }
            40..58 => {
                let max = w.rng.usize(1..=8);
                w.invoke(max);
            }
            58..72 => w.tick(false),
            72..78 => w.tick(true),
            78..85 => {
                // Past SQS's dedup window, or past a lease.
                let ms = if w.rng.bool() {
                    6 * 60_000
                } else {
                    16 * 60_000
                };
                w.clock.advance(ms);
                w.faults.note(|| format!("{} min pass", ms / 60_000));
            }
            85..88 => w.cold_start("recycled"),
            88..91 => {
                let n = w.rng.usize(1..=6);
                w.produce(n);
            }
            // A page of a backfill (in the schedules that have them).
            91..97 => w.backfill(),
            // An operator redrives a receiver's dead letters, or replays
            // what Lambda gave up on.
            97..99 => w.redrive(),
            _ => w.replay(),
        }
        if !w.pending() && w.rng.u32(0..4) == 0 {
            w.produce(usize::MAX);
        }
    }
}

/// What a played and finished schedule ended with.
fn outcome(mut w: World<'_>, violations: Vec<String>, tally: Tally) -> Outcome {
    for (what, n) in [
        ("standard duplicates", tally.standard_duplicates),
        ("FIFO dropped in window", tally.fifo_dropped_in_window),
        (
            "FIFO duplicates outside window",
            tally.fifo_duplicates_outside_window,
        ),
    ] {
        w.reached.add(what, n);
    }
    Outcome {
        violations,
        trace: w.faults.trace(),
        reached: w.reached.clone(),
        tally,
        faults_decided: w.faults.decided(),
        injected: w.faults.injected(),
        calls: w.faults.calls(),
    }
}

/// [`drain`], then check every receiver's queues against the stream.
pub(crate) fn finish(w: &mut World<'_>) -> (Vec<String>, Tally) {
    let mut violations = drain(w);
    let mut tally = Tally::default();
    {
        let queues = w.queues.0.lock().unwrap();
        for r in RECEIVERS {
            let bad = check::receiver(
                r,
                queues.get(r.id),
                &w.written,
                &w.given_up_ever,
                &mut tally,
            );
            if let (false, Some(q)) = (bad.is_empty(), queues.get(r.id)) {
                // What the receiver got, in the trace of a failing seed.
                for m in &q.messages {
                    w.faults
                        .note(|| format!("{} got {} (sequence {})", r.id, m.body, m.sequence));
                }
                for d in &q.dead {
                    w.faults
                        .note(|| format!("{} parked {} (sequence {})", r.id, d.key, d.sequence));
                }
            }
            violations.extend(bad);
        }
    }
    (violations, tally)
}

/// Stop the faults, read the stream to its end, let time pass and tick
/// until every lane has drained: what did not end so.
pub(crate) fn drain(w: &mut World<'_>) -> Vec<String> {
    // Drain without faults.
    w.faults.set_on(false);
    w.faults.note(|| "faults stop; draining".into());
    w.produce(usize::MAX);
    let mut violations: Vec<String> = w.finish_backfill().into_iter().collect();
    for round in 0..DRAIN_ROUNDS {
        let mut tries = 0;
        while !w.done_reading() && tries < 200 {
            tries += 1;
            w.invoke(8);
        }
        w.clock.advance(16 * 60_000);
        w.tick(true);
        // What Lambda gave up on is replayed (the operator's runbook).
        for _ in 0..w.given_up() {
            w.replay();
        }
        if w.done_reading() && w.lanes_left().is_empty() && w.given_up() == 0 {
            break;
        }
        if round == DRAIN_ROUNDS - 1 {
            if !w.done_reading() {
                violations.push("the stream was never read to its end".to_owned());
            }
            if w.given_up() > 0 {
                violations.push(format!(
                    "{} ranges Lambda gave up on were never replayed",
                    w.given_up()
                ));
            }
            let left = w.lanes_left();
            if !left.is_empty() {
                violations.push(format!(
                    "lanes did not drain in {DRAIN_ROUNDS} ticks without faults: {left:?}"
                ));
            }
        }
    }
    violations
}

/// The smallest schedule that still fails like `opts`: fewer changes
/// first, then each injected fault left out in turn.
pub(crate) fn shrink(fixture: &Fixture, opts: &Options) -> (Options, Outcome) {
    let fails = |o: &Options| {
        let out = run(fixture, o);
        (!out.violations.is_empty()).then_some(out)
    };
    let mut best = opts.clone();
    let mut out = fails(&best).expect("the schedule fails");
    for n in 4..best.max_changes {
        let o = Options {
            max_changes: n,
            ..best.clone()
        };
        if let Some(found) = fails(&o) {
            best = o;
            out = found;
            break;
        }
    }
    for f in 0..out.faults_decided {
        let mut o = best.clone();
        o.plan.suppressed.insert(f);
        if let Some(found) = fails(&o) {
            best = o;
            out = found;
        }
    }
    (best, out)
}

fn options(seed: u64) -> Options {
    let per_mille = [0, 20, 50, 100][(seed % 4) as usize];
    Options {
        seed,
        max_changes: 12,
        plan: FaultPlan {
            per_mille,
            ..FaultPlan::default()
        },
        // Half the schedules of each fault rate read a stream of two
        // shards, interleaved as the seed says.
        shards: 1 + ((seed / 4) % 2) as usize,
        trace: true,
        // Half of those run backfills beside the stream.
        backfills: (seed / 8) % 2 == 1,
        redrives: true,
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
}

/// What one thread of schedules reached, injected and broke (its first
/// failing seed, or with `PRISM_SIM_KEEP_GOING` every one).
type ThreadResult = (
    Reached,
    Tally,
    BTreeMap<(String, &'static str), u64>,
    Vec<(u64, Vec<String>)>,
);

/// Seeded schedules over every receiver kind; any violation fails the
/// test with the seed, its shrunk form and its trace.
#[test]
fn schedules_keep_every_guarantee() {
    let fixture = fixture();
    if let Some(seed) = env_u64("PRISM_SIM_SEED") {
        let mut opts = options(seed);
        if let Some(n) = env_u64("PRISM_SIM_CHANGES") {
            opts.max_changes = n as usize;
        }
        let out = run(fixture, &opts);
        println!("{}", out.trace.join("\n"));
        assert!(out.violations.is_empty(), "{:#?}", out.violations);
        return;
    }
    let schedules = env_u64("PRISM_SIM_SCHEDULES").unwrap_or(10_000);
    let keep_going = env_u64("PRISM_SIM_KEEP_GOING").is_some_and(|v| v != 0);
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let started = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4) as u64;
    let next = AtomicU64::new(0);
    let results: Vec<ThreadResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (fixture, next, done, failed) = (&fixture, &next, &done, &failed);
                s.spawn(move || {
                    let mut reached = Reached::default();
                    let mut tally = Tally::default();
                    let mut injected = BTreeMap::new();
                    let mut failures = Vec::new();
                    let mut ran = 0u64;
                    loop {
                        // Seeds are taken as threads come free: schedules
                        // with faults run longer, and a fixed split by
                        // seed left one thread idle at the end.
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= schedules {
                            break;
                        }
                        ran += 1;
                        let out = run(
                            fixture,
                            &Options {
                                trace: false,
                                ..options(seed)
                            },
                        );
                        for (k, v) in &out.reached.counts {
                            reached.add(k, *v);
                        }
                        for (k, v) in out.injected {
                            *injected.entry(k).or_default() += v;
                        }
                        for (k, v) in out.calls {
                            reached.add(&format!("backend call: {k}"), v);
                        }
                        tally.delivered += out.tally.delivered;
                        tally.parked += out.tally.parked;
                        let broke = !out.violations.is_empty();
                        if broke {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("seed {seed} broke a guarantee: {}", out.violations[0]);
                            failures.push((seed, out.violations));
                        }
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n % 10_000 == 0 {
                            eprintln!(
                                "{n} of {schedules} schedules, {} failing, {:.0} s",
                                failed.load(Ordering::Relaxed),
                                started.elapsed().as_secs_f64()
                            );
                        }
                        if broke && !keep_going {
                            break;
                        }
                    }
                    reached.add("schedules run", ran);
                    (reached, tally, injected, failures)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut reached = Reached::default();
    let mut injected: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    let (mut delivered, mut parked) = (0, 0);
    let mut failures = Vec::new();
    for (r, t, i, f) in results {
        for (k, v) in r.counts {
            reached.add(&k, v);
        }
        for (k, v) in i {
            *injected.entry(k).or_default() += v;
        }
        delivered += t.delivered;
        parked += t.parked;
        failures.extend(f);
    }
    println!(
        "{} of {schedules} schedules in {:.1} s: {delivered} messages delivered, {parked} changes parked",
        reached.counts.get("schedules run").copied().unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    println!("\n| path reached | count |\n|---|---:|");
    for (k, v) in &reached.counts {
        println!("| {k} | {v} |");
    }
    println!("\n| fault injected | count |\n|---|---:|");
    for ((call, fault), v) in &injected {
        println!("| {fault} on {call} | {v} |");
    }
    failures.sort_by_key(|(seed, _)| *seed);
    if failures.len() > 1 {
        println!("\n{} failing seeds:", failures.len());
        for (seed, violations) in &failures {
            println!("- seed {seed}: {}", violations.join(" / "));
        }
    }
    if let Some((seed, violations)) = failures.into_iter().next() {
        let (small, out) = shrink(fixture, &options(seed));
        panic!(
            "seed {seed} broke a guarantee:\n{}\n\nshrunk to {} changes, faults left out {:?}:\n{}\n\ntrace:\n{}",
            violations.join("\n"),
            small.max_changes,
            small.plan.suppressed,
            out.violations.join("\n"),
            out.trace.join("\n")
        );
    }
}
