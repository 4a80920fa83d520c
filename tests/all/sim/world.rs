//! One schedule: a stream of product changes, a Lambda that invokes the
//! dispatcher on batches of it (retrying as Lambda does), the scheduled
//! tick, time passing and processes dying, all decided by one seed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use prism_core::breaker::BreakerConfig;
use prism_core::dispatch::{Dispatcher, TickOptions};
use prism_core::outputs::OutputsTable;
use prism_core::receivers::{ReceiverSet, Receivers};
use prism_core::sink::Delivery;
use prism_core::spool::Spool;
use prism_core::stream::{LedgerStore, MemoryLedger, OutputsStore, StreamProcessor};
use prism_engine::PluginEngine;
use prism_sample::StreamWriter;

use prism_core::backfill::{self as bf, Backfill, Backfiller, Limits, Plan, Totals};

use super::backends::{Clock, Queues, SimDelivery, SimLedger, SimOutputs, SimSpool};
use super::backfill::{SimCheckpoints, SimModel, SimTime, TABLE, Table};
use super::faults::{FaultPlan, Faults};
use super::redrive::{SimDeadLetters, SimDocs};
use super::{RECEIVERS, SimReceiver};
use prism_core::redrive::Redrive;
use prism_core::replay::Replay;

/// What one schedule is made of.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) seed: u64,
    /// At most this many changes (shrinking lowers it).
    pub(crate) max_changes: usize,
    pub(crate) plan: FaultPlan,
    /// Stream shards: products are spread over them by their number.
    pub(crate) shards: usize,
    /// Keep the schedule's trace (a bulk run does not; a failing seed is
    /// run again with it).
    pub(crate) trace: bool,
    /// Backfills run beside the stream.
    pub(crate) backfills: bool,
    /// Operators redrive dead letters (the conformance run has no model
    /// of SQS's dead-letter queues to redrive from).
    pub(crate) redrives: bool,
}

/// The receivers every schedule runs, loaded once.
pub(crate) struct Fixture {
    pub(crate) engine: Arc<PluginEngine>,
    pub(crate) set: Arc<ReceiverSet>,
    /// The same receivers with their plugins fixed (a redrive's).
    pub(crate) fixed: Arc<ReceiverSet>,
}

/// One change as the stream wrote it.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub(crate) key: String,
    pub(crate) sequence: String,
    /// The new image's `v` (`None`: a remove).
    pub(crate) v: Option<u64>,
    /// The old image's `v` (`None`: an insert).
    pub(crate) from: Option<u64>,
    /// The new image's `noise` (`None`: a remove).
    pub(crate) noise: Option<u64>,
}

/// The stream's sequence numbers have 21 digits, as DynamoDB's do (and
/// more than a backfill's, which must order before them).
const SEQUENCE_BASE: u128 = 100_000_000_000_000_000_000;

/// Writes a stream of changes and what each was.
#[derive(Default)]
struct Writer {
    stream: StreamWriter,
    written: Vec<Written>,
}

impl Writer {
    fn push(&mut self, key: &str, old: Option<&Value>, new: Option<&Value>) {
        self.stream.push(key, old, new);
        let n = self.stream.records().len() as u128;
        let sequence = (SEQUENCE_BASE + n).to_string();
        let field = |i: Option<&Value>, f: &str| i.and_then(|i| i[f].as_u64());
        self.written.push(Written {
            key: key.to_owned(),
            sequence,
            v: field(new, "v"),
            from: field(old, "v"),
            noise: field(new, "noise"),
        });
    }

    fn done(self) -> (Vec<Value>, Vec<Written>) {
        let mut records = self.stream.records().to_vec();
        for (r, w) in records.iter_mut().zip(&self.written) {
            r["dynamodb"]["SequenceNumber"] = Value::String(w.sequence.clone());
        }
        (records, self.written)
    }
}

/// What a schedule reached, for the coverage table.
#[derive(Debug, Default, Clone)]
pub(crate) struct Reached {
    pub(crate) counts: BTreeMap<String, u64>,
}

impl Reached {
    pub(crate) fn add(&mut self, what: &str, n: u64) {
        if n > 0 {
            *self.counts.entry(what.to_owned()).or_default() += n;
        }
    }
}

/// A schedule's world: the stream, the Lambda's position in it, the
/// backends (which outlive any one process), the current process.
pub(crate) struct World<'f> {
    fixture: &'f Fixture,
    pub(crate) rng: fastrand::Rng,
    pub(crate) records: Vec<Value>,
    pub(crate) written: Vec<Written>,
    /// The model table: the records the stream has written so far.
    table: Table,
    /// Backfills: the model table as they read it, their clock, their
    /// checkpoints (per receiver), their own process, the run going on.
    model: Arc<SimModel>,
    time: Arc<SimTime>,
    checkpoints: BTreeMap<&'static str, Arc<SimCheckpoints>>,
    backfiller: StreamProcessor,
    run: Option<Run>,
    /// Backfills are part of this schedule.
    backfills: bool,
    /// Operators redrive in this schedule.
    redrives_on: bool,
    /// Records Lambda gave up on (the on-failure destination's ranges), as
    /// indices into the stream's, waiting for an operator's replay.
    gave_up: Vec<Vec<usize>>,
    /// The sequences of every record Lambda gave up on.
    pub(crate) given_up_ever: BTreeSet<String>,
    /// Redrives so far (each names its records apart).
    redrives: u64,
    /// Replays so far.
    replays: u64,
    /// The stream's shards (a product's records all in one, as DynamoDB
    /// keeps them), each read by its own Lambda invocations.
    shards: Vec<Shard>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) clock: Arc<Clock>,
    pub(crate) queues: Arc<Queues>,
    backends: Backends,
    processor: StreamProcessor,
    rt: tokio::runtime::Runtime,
    pub(crate) reached: Reached,
}

/// A backfill under way: of which receiver, cut how, which run.
#[derive(Debug, Clone)]
struct Run {
    receiver: &'static SimReceiver,
    spec: Backfill,
    run: u64,
}

/// One shard of the stream.
#[derive(Debug, Clone, Default)]
struct Shard {
    /// Its records, as indices into the stream's.
    records: Vec<usize>,
    /// Lambda's checkpoint: the first of them not yet acknowledged.
    checkpoint: usize,
    /// Tries in a row that did not move the checkpoint.
    stuck: u32,
}

/// Retries of a batch before Lambda gives up on it and moves on (the
/// event source mapping's `maximum_retry_attempts`, the module's
/// `max_retries`, set low so that schedules reach the replay).
const MAX_RETRIES: u32 = 3;

impl Shard {
    /// How many of its records the stream has made visible.
    fn visible(&self, visible: usize) -> usize {
        self.records.partition_point(|&r| r < visible)
    }
}

/// Simulated start: 2026-12-01T00:00:00Z.
const START_MS: u64 = 1_796_083_200_000;

/// The backends every process of a schedule shares: the models, or the
/// AWS adapters against moto (the conformance run).
#[derive(Clone)]
pub(crate) struct Backends {
    pub(crate) delivery: Arc<dyn Delivery>,
    pub(crate) spool: Arc<dyn Spool>,
    pub(crate) ledger: Arc<dyn LedgerStore>,
    pub(crate) outputs: Arc<dyn OutputsTable>,
}

impl Backends {
    /// The models, every call behind `faults`.
    fn models(clock: &Arc<Clock>, queues: &Arc<Queues>, faults: &Arc<Faults>) -> Self {
        Self {
            delivery: Arc::new(SimDelivery {
                queues: queues.clone(),
                faults: faults.clone(),
                clock: clock.clone(),
            }),
            spool: Arc::new(SimSpool::new(faults.clone())),
            ledger: Arc::new(SimLedger {
                inner: MemoryLedger::default(),
                faults: faults.clone(),
            }),
            outputs: Arc::new(SimOutputs {
                items: Mutex::new(HashMap::new()),
                faults: faults.clone(),
            }),
        }
    }
}

/// A new process over the schedule's backends.
fn processor(fixture: &Fixture, clock: &Arc<Clock>, b: &Backends) -> StreamProcessor {
    processor_of(fixture, &fixture.set, clock, b)
}

/// A new process running `set`.
fn processor_of(
    fixture: &Fixture,
    set: &Arc<ReceiverSet>,
    clock: &Arc<Clock>,
    b: &Backends,
) -> StreamProcessor {
    // One thread, sends not overlapped with formatting: the order of
    // backend calls, and so every fault, is the seed's alone.
    let dispatcher = Dispatcher::builder()
        .threads(1)
        .overlap_io(false)
        .breaker(BreakerConfig::off())
        .build();
    let clock = clock.clone();
    StreamProcessor::builder(
        fixture.engine.clone(),
        Receivers::Fixed(set.clone()),
        b.delivery.clone(),
    )
    .ledger(b.ledger.clone())
    .dispatcher(dispatcher)
    .outputs(Some(OutputsStore::Table(b.outputs.clone())))
    .spool(Some(b.spool.clone()))
    .clock(Arc::new(move || clock.now()))
    .build()
}

impl<'f> World<'f> {
    pub(crate) fn new(fixture: &'f Fixture, opts: &Options) -> Self {
        let mut rng = fastrand::Rng::with_seed(opts.seed);
        let stream = stream(&mut rng, opts.max_changes);
        Self::with_stream(fixture, opts, rng, stream)
    }

    /// A world over a stream written out by hand: each change is (product,
    /// its new image's `v`, or `None` for a remove). A change that keeps
    /// the product's `v` changes only its noise.
    pub(crate) fn scripted(
        fixture: &'f Fixture,
        plan: FaultPlan,
        changes: &[(usize, Option<u64>)],
    ) -> Self {
        let images: Vec<_> = changes
            .iter()
            .enumerate()
            .map(|(n, &(p, v))| (p, v.map(|v| (v, n as u64))))
            .collect();
        Self::scripted_images(fixture, plan, &images)
    }

    /// [`Self::scripted`] with each new image's (`v`, noise) given: the
    /// same pair twice is the same image byte for byte.
    pub(crate) fn scripted_images(
        fixture: &'f Fixture,
        plan: FaultPlan,
        changes: &[(usize, Option<(u64, u64)>)],
    ) -> Self {
        let mut w = Writer::default();
        let mut current: BTreeMap<usize, Value> = BTreeMap::new();
        for &(p, image) in changes {
            let key = format!("P-{p}");
            let new = image.map(|(v, noise)| json!({"pk": key, "v": v, "noise": noise}));
            w.push(&key, current.get(&p), new.as_ref());
            match new {
                Some(n) => current.insert(p, n),
                None => current.remove(&p),
            };
        }
        let opts = Options {
            seed: 0,
            max_changes: changes.len(),
            plan,
            shards: 1,
            trace: true,
            backfills: false,
            redrives: false,
        };
        let world = Self::with_stream(fixture, &opts, fastrand::Rng::with_seed(0), w.done());
        world.faults.set_on(true);
        world
    }

    /// The schedule of `opts` over AWS's own adapters, made by `aws` on a
    /// runtime they can block on (the conformance run; faults need the
    /// models, so `opts` should have none).
    pub(crate) fn on_aws(
        fixture: &'f Fixture,
        opts: &Options,
        aws: &dyn Fn(&tokio::runtime::Handle) -> Backends,
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(opts.seed);
        let stream = stream(&mut rng, opts.max_changes);
        Self::with_stream_on(fixture, opts, rng, stream, Some(aws))
    }

    fn with_stream(
        fixture: &'f Fixture,
        opts: &Options,
        rng: fastrand::Rng,
        stream: (Vec<Value>, Vec<Written>),
    ) -> Self {
        Self::with_stream_on(fixture, opts, rng, stream, None)
    }

    fn with_stream_on(
        fixture: &'f Fixture,
        opts: &Options,
        rng: fastrand::Rng,
        (records, written): (Vec<Value>, Vec<Written>),
        aws: Option<&dyn Fn(&tokio::runtime::Handle) -> Backends>,
    ) -> Self {
        let faults = Arc::new(Faults::new(opts.seed, opts.plan.clone()));
        faults.set_tracing(opts.trace);
        let clock = Arc::new(Clock::new(START_MS));
        let queues = Arc::new(Queues::default());
        // The AWS adapters block the dispatcher's threads on the runtime:
        // it must run on threads of its own.
        let rt = match aws {
            Some(_) => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
            None => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
        }
        .unwrap();
        let backends = match aws {
            Some(make) => make(rt.handle()),
            None => Backends::models(&clock, &queues, &faults),
        };
        let backfiller = processor(fixture, &clock, &backends);
        let processor = processor(fixture, &clock, &backends);
        let table = Table {
            records: Arc::new(records.clone()),
            visible: Arc::new(AtomicUsize::new(0)),
        };
        let model = Arc::new(SimModel {
            table: table.clone(),
            faults: faults.clone(),
            rng: Mutex::new(fastrand::Rng::with_seed(opts.seed ^ 0x5ca4)),
            lag: Mutex::new(None),
        });
        let time = Arc::new(SimTime {
            clock: clock.clone(),
            table: table.clone(),
            faults: faults.clone(),
            rng: Mutex::new(fastrand::Rng::with_seed(opts.seed ^ 0x71e5)),
            writes: AtomicBool::new(true),
        });
        let n = opts.shards.max(1);
        let mut shards = vec![Shard::default(); n];
        for (i, w) in written.iter().enumerate() {
            let product: usize = w.key.trim_start_matches("P-").parse().unwrap_or(0);
            shards[product % n].records.push(i);
        }
        Self {
            fixture,
            rng,
            records,
            written,
            table,
            model,
            time,
            checkpoints: BTreeMap::new(),
            backfiller,
            run: None,
            backfills: opts.backfills,
            redrives_on: opts.redrives,
            gave_up: Vec::new(),
            given_up_ever: BTreeSet::new(),
            redrives: 0,
            replays: 0,
            shards,
            faults,
            clock,
            queues,
            backends,
            processor,
            rt,
            reached: Reached::default(),
        }
    }

    /// A new process (a cold start, or the one after a crash): everything
    /// it kept in memory is gone; the backends stay.
    pub(crate) fn cold_start(&mut self, why: &str) {
        self.faults.revive();
        self.faults.note(|| format!("cold start ({why})"));
        self.reached.add("cold start", 1);
        self.processor = processor(self.fixture, &self.clock, &self.backends);
    }

    /// The stream makes up to `n` more records visible.
    pub(crate) fn produce(&mut self, n: usize) {
        self.table.write(n);
    }

    pub(crate) fn pending(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.checkpoint < s.visible(self.table.now()))
    }

    pub(crate) fn done_reading(&self) -> bool {
        self.shards.iter().all(|s| s.checkpoint == s.records.len())
    }

    /// One Lambda invocation on the next batch (up to `max` records) of a
    /// shard with records waiting (the seed picks which): on a crash or a
    /// whole-batch error the same records come again; with
    /// `batchItemFailures` Lambda resumes at the first failed record.
    pub(crate) fn invoke(&mut self, max: usize) {
        let waiting: Vec<usize> = (0..self.shards.len())
            .filter(|&s| self.shards[s].checkpoint < self.shards[s].visible(self.table.now()))
            .collect();
        let s = match waiting.len() {
            0 => return,
            1 => waiting[0],
            n => waiting[self.rng.usize(0..n)],
        };
        let shard = &self.shards[s];
        let (first, end) = (
            shard.checkpoint,
            (shard.checkpoint + max).min(shard.visible(self.table.now())),
        );
        let batch: Vec<Value> = shard.records[first..end]
            .iter()
            .map(|&r| self.records[r].clone())
            .collect();
        if self.shards.len() > 1 {
            self.reached.add(&format!("stream: shard {s} invoked"), 1);
        }
        let result = self
            .rt
            .block_on(self.processor.handle(&json!({ "Records": batch })));
        if self.faults.dead() {
            self.faults
                .note(|| format!("invoke {first}..{end}: the process died"));
            self.reached.add("crash in an invocation", 1);
            self.cold_start("crash");
            self.retried(s, end);
            return;
        }
        match result {
            Err(e) => {
                self.faults
                    .note(|| format!("invoke {first}..{end}: batch error {e}"));
                self.retried(s, end);
            }
            Ok(out) => {
                for (kind, st) in &out.report.receivers {
                    self.reached
                        .add(&format!("stream: messages ({kind})"), st.messages);
                    self.reached
                        .add(&format!("stream: laned ({kind})"), st.laned);
                    self.reached
                        .add(&format!("stream: buffered ({kind})"), st.buffered);
                    self.reached
                        .add(&format!("stream: window cut ({kind})"), st.batches);
                    self.reached
                        .add(&format!("stream: parked ({kind})"), st.rejected);
                    self.reached
                        .add(&format!("stream: dedup suppressed ({kind})"), st.suppressed);
                    self.reached.add(
                        &format!("stream: ledger skipped ({kind})"),
                        st.already_handled,
                    );
                }
                let failed: BTreeSet<&str> = out
                    .response
                    .batch_item_failures
                    .iter()
                    .filter_map(|f| f.item_identifier.as_deref())
                    .collect();
                let resume = batch.iter().position(|r| {
                    failed.contains(r["dynamodb"]["SequenceNumber"].as_str().unwrap())
                });
                let checkpoint = match resume {
                    None => end,
                    Some(i) => {
                        self.reached.add("stream: batch item failures", 1);
                        first + i
                    }
                };
                self.shards[s].checkpoint = checkpoint;
                if checkpoint == first {
                    self.retried(s, end);
                } else {
                    self.shards[s].stuck = 0;
                }
                self.faults.note(|| {
                    format!(
                        "invoke {first}..{end}: {} failed, next {checkpoint}",
                        failed.len(),
                    )
                });
            }
        }
    }

    /// A batch of shard `s` up to `end` failed again: past
    /// [`MAX_RETRIES`], Lambda gives up on it (its on-failure destination
    /// keeps where it was) and the shard moves on.
    fn retried(&mut self, s: usize, end: usize) {
        if !self.faults.on() {
            return;
        }
        let shard = &mut self.shards[s];
        shard.stuck += 1;
        if shard.stuck <= MAX_RETRIES {
            return;
        }
        let given_up: Vec<usize> = shard.records[shard.checkpoint..end].to_vec();
        shard.checkpoint = end;
        shard.stuck = 0;
        self.faults.note(|| {
            format!(
                "Lambda gives up on records {given_up:?} after {MAX_RETRIES} retries (on-failure destination)"
            )
        });
        self.reached.add("stream: batches given up (on-failure)", 1);
        for &r in &given_up {
            self.given_up_ever.insert(self.written[r].sequence.clone());
        }
        self.gave_up.push(given_up);
    }

    /// An operator replays the oldest range Lambda gave up on, in a
    /// process of its own (`prism replay`).
    pub(crate) fn replay(&mut self) {
        if self.gave_up.is_empty() {
            return;
        }
        let range = self.gave_up[0].clone();
        let records: Vec<Value> = range.iter().map(|&r| self.records[r].clone()).collect();
        self.replays += 1;
        let p = processor(self.fixture, &self.clock, &self.backends);
        let docs = SimDocs {
            table: self.table.clone(),
            faults: self.faults.clone(),
            rng: Mutex::new(fastrand::Rng::with_seed(self.rng.u64(..))),
        };
        let faults = self.faults.clone();
        let say = move |line: String| faults.note(|| format!("  replay: {line}"));
        let result = self.rt.block_on(
            Replay {
                processor: &p,
                model: &docs,
                attempts: 3,
                run_id: format!("sim-{}", self.replays),
                say: &say,
            }
            .run(&records),
        );
        if self.faults.dead() {
            self.faults.revive();
            self.faults.note(|| "replay: the process died".into());
            self.reached.add("crash in a replay", 1);
            return;
        }
        self.faults.note(|| format!("replay {range:?}: {result:?}"));
        match result {
            Ok(t) if t.failing.is_empty() => {
                self.reached.add("replay: ranges replayed", 1);
                self.reached
                    .add("replay: sent as the product is now", t.caught_up as u64);
                self.reached.add("replay: corrected", t.corrected as u64);
                self.gave_up.remove(0);
            }
            Ok(_) => self.reached.add("replay: records still failing", 1),
            Err(_) => self.reached.add("replay: stopped by a fault", 1),
        }
    }

    /// Ranges Lambda gave up on that no replay has got through.
    pub(crate) fn given_up(&self) -> usize {
        self.gave_up.len()
    }

    /// The scheduled tick (with `force`: flush every buffer).
    pub(crate) fn tick(&mut self, force: bool) {
        let opts = TickOptions {
            now_ms: self.clock.now(),
            force,
            break_leases: false,
        };
        let result = self.rt.block_on(self.processor.tick(opts));
        if self.faults.dead() {
            self.faults.note(|| "tick: the process died".into());
            self.reached.add("crash in a tick", 1);
            self.cold_start("crash");
            return;
        }
        match result {
            Err(e) => self.faults.note(|| format!("tick: error {e}")),
            Ok(r) => {
                for (kind, st) in &r.receivers {
                    self.reached
                        .add(&format!("tick: messages ({kind})"), st.messages);
                    self.reached
                        .add(&format!("tick: windows flushed ({kind})"), st.batches);
                    self.reached
                        .add(&format!("tick: parked ({kind})"), st.rejected);
                }
                self.reached.add("tick: lanes worked", r.lanes as u64);
                self.reached.add("tick: lanes busy (leased)", r.busy as u64);
                self.faults.note(|| {
                    format!(
                        "tick{}: {} lanes, {} busy, {} waiting",
                        if force { " (force)" } else { "" },
                        r.lanes,
                        r.busy,
                        r.waiting
                    )
                });
            }
        }
    }

    /// One page of a backfill (starting one, for a receiver the seed
    /// picks, if none is under way), in the backfill's own process.
    pub(crate) fn backfill(&mut self) {
        if !self.backfills {
            return;
        }
        let run = match self.run.clone() {
            Some(run) => run,
            None => match self.start_backfill() {
                Some(run) => run,
                None => return,
            },
        };
        let open: Vec<u32> = (0..run.spec.segments)
            .filter(|&s| !self.segment_done(&run, s))
            .collect();
        if open.is_empty() {
            // Its last checkpoint was saved, but the answer was lost.
            self.run_finished();
            return;
        }
        let segment = open[self.rng.usize(0..open.len())];
        let limits = Limits {
            max_pages: Some(1),
            ..Limits::default()
        };
        let result = self.backfill_segment(&run, segment, limits);
        self.after_backfill(&run, segment, result);
    }

    /// Finish the backfill under way, without faults (the drain).
    pub(crate) fn finish_backfill(&mut self) -> Option<String> {
        self.time.writes.store(false, Ordering::SeqCst);
        let run = self.run.clone()?;
        for _ in 0..20 {
            for segment in 0..run.spec.segments {
                if !self.segment_done(&run, segment) {
                    let result = self.backfill_segment(&run, segment, Limits::default());
                    self.after_backfill(&run, segment, result);
                }
            }
            // Done, though the process may have died before it could say.
            if self.run.is_some() && (0..run.spec.segments).all(|s| self.segment_done(&run, s)) {
                self.run_finished();
            }
            if self.run.is_none() {
                break;
            }
        }
        self.run.as_ref().map(|run| {
            format!(
                "the backfill of {} never finished without faults",
                run.receiver.id
            )
        })
    }

    fn checkpoints_of(&mut self, r: &'static SimReceiver) -> Arc<SimCheckpoints> {
        let faults = self.faults.clone();
        self.checkpoints
            .entry(r.id)
            .or_insert_with(|| Arc::new(SimCheckpoints::new(r.id, faults)))
            .clone()
    }

    fn segment_done(&mut self, run: &Run, segment: u32) -> bool {
        let cps = self.checkpoints_of(run.receiver);
        let saved = cps.saved.lock().unwrap();
        saved.iter().any(|c| {
            c.segment == segment && c.segments == run.spec.segments && c.run == run.run && c.done
        })
    }

    /// A pinned schedule's backfill: of receiver `id`, in `segments`
    /// segments of pages of `page_size`.
    pub(crate) fn script_backfill(&mut self, id: &str, segments: u32, page_size: usize) {
        self.backfills = true;
        let receiver = RECEIVERS.iter().find(|r| r.id == id).expect("a receiver");
        self.plan_backfill(receiver, segments, page_size);
    }

    /// Backfills' scans answer `lag` writes behind from now on.
    pub(crate) fn scan_lag(&mut self, lag: usize) {
        *self.model.lag.lock().unwrap() = Some(lag);
    }

    /// Plan a backfill of a receiver the seed picks.
    fn start_backfill(&mut self) -> Option<Run> {
        let receiver = &RECEIVERS[self.rng.usize(0..RECEIVERS.len())];
        let segments = self.rng.u32(1..=2);
        let page_size = self.rng.usize(1..=3);
        self.plan_backfill(receiver, segments, page_size)
    }

    /// Plan a backfill: a fresh run, or again (`--restart`) for a receiver
    /// backfilled before.
    fn plan_backfill(
        &mut self,
        receiver: &'static SimReceiver,
        segments: u32,
        page_size: usize,
    ) -> Option<Run> {
        let spec = Backfill {
            receiver: receiver.id.to_owned(),
            model_table: TABLE.to_owned(),
            segments,
            page_size,
        };
        let cps = self.checkpoints_of(receiver);
        let planned = self.rt.block_on(async {
            match bf::plan(&*cps, &spec, false, &*self.time).await? {
                Plan::Complete(_) => bf::plan(&*cps, &spec, true, &*self.time).await,
                go => Ok(go),
            }
        });
        self.faults.note(|| {
            format!(
                "backfill {} ({} segments, pages of {}): {planned:?}",
                spec.receiver, spec.segments, spec.page_size
            )
        });
        if self.faults.dead() {
            self.backfill_died("planning");
            return None;
        }
        match planned {
            Ok(Plan::Go { run, .. }) => {
                self.reached.add("backfill: runs started", 1);
                let run = Run {
                    receiver,
                    spec,
                    run,
                };
                self.run = Some(run.clone());
                Some(run)
            }
            Ok(Plan::Complete(_)) | Err(_) => None,
        }
    }

    fn backfill_segment(
        &mut self,
        run: &Run,
        segment: u32,
        limits: Limits,
    ) -> (Result<bool, prism_core::Error>, Totals) {
        let cps = self.checkpoints_of(run.receiver);
        let totals = Totals::default();
        let result = {
            let b = Backfiller {
                model: &*self.model,
                clock: &*self.time,
                processor: &self.backfiller,
                checkpoints: &*cps,
                spec: &run.spec,
                pacer: None,
                totals: &totals,
                key_names: vec!["pk".to_owned()],
                stop: Default::default(),
            };
            self.rt
                .block_on(b.run_segment(segment, run.run, limits))
                .map(|cp| cp.done)
        };
        (result, totals)
    }

    fn after_backfill(
        &mut self,
        run: &Run,
        segment: u32,
        (result, totals): (Result<bool, prism_core::Error>, Totals),
    ) {
        let id = run.receiver.id;
        let s = totals.summary();
        for what in [
            "items",
            "messages",
            "suppressed",
            "parked",
            "held",
            "corrected",
        ] {
            self.reached.add(
                &format!("backfill: {what} ({id})"),
                s[what].as_u64().unwrap_or(0),
            );
        }
        self.reached.add(
            "backfill: deliveries tried again",
            s["retries"].as_u64().unwrap_or(0),
        );
        if self.faults.dead() {
            self.backfill_died(&format!("segment {segment}"));
            return;
        }
        self.faults
            .note(|| format!("backfill {id} segment {segment}: {result:?}, {s}"));
        match result {
            Ok(_) => {}
            Err(e) if e.kind() == prism_core::ErrorKind::Contended => self
                .reached
                .add("backfill: page contended (stops, resumes)", 1),
            Err(_) => self.reached.add("backfill: segment stopped by a fault", 1),
        }
        if (0..run.spec.segments).all(|s| self.segment_done(run, s)) {
            self.run_finished();
        }
    }

    fn run_finished(&mut self) {
        self.reached.add("backfill: runs finished", 1);
        self.run = None;
    }

    /// The backfill's process died: a new one, over the same backends; the
    /// run resumes from its checkpoints.
    fn backfill_died(&mut self, during: &str) {
        self.faults.revive();
        self.faults
            .note(|| format!("backfill {during}: the process died"));
        self.reached.add("crash in a backfill", 1);
        self.backfiller = processor(self.fixture, &self.clock, &self.backends);
    }

    /// An operator redrives the dead letters of a receiver that has some
    /// (the seed picks), with its plugin fixed, in a process of its own.
    pub(crate) fn redrive(&mut self) {
        if !self.redrives_on {
            return;
        }
        let with_letters: Vec<&'static SimReceiver> = {
            let queues = self.queues.0.lock().unwrap();
            RECEIVERS
                .iter()
                .filter(|r| queues.get(r.id).is_some_and(|q| !q.dead.is_empty()))
                .collect()
        };
        if with_letters.is_empty() {
            return;
        }
        let r = with_letters[self.rng.usize(0..with_letters.len())];
        self.redrive_receiver(r.id);
    }

    /// A pinned schedule's redrive of receiver `id`.
    pub(crate) fn redrive_receiver(&mut self, id: &str) {
        self.redrives += 1;
        let p = processor_of(
            self.fixture,
            &self.fixture.fixed,
            &self.clock,
            &self.backends,
        )
        .into_builder()
        .redrive(id)
        .build();
        let letters = SimDeadLetters {
            receiver: id.to_owned(),
            queues: self.queues.clone(),
            faults: self.faults.clone(),
            clock: self.clock.clone(),
        };
        let docs = SimDocs {
            table: self.table.clone(),
            faults: self.faults.clone(),
            rng: Mutex::new(fastrand::Rng::with_seed(self.rng.u64(..))),
        };
        let faults = self.faults.clone();
        let say = move |line: String| faults.note(|| format!("  redrive: {line}"));
        let result = self.rt.block_on(
            Redrive {
                receiver: id,
                letters: &letters,
                model: &docs,
                processor: Some(&p),
                max: 100,
                run_id: format!("sim-{}", self.redrives),
                say: &say,
            }
            .run(),
        );
        if self.faults.dead() {
            self.faults.revive();
            self.faults
                .note(|| format!("redrive {id}: the process died"));
            self.reached.add("crash in a redrive", 1);
            return;
        }
        self.faults.note(|| format!("redrive {id}: {result:?}"));
        match result {
            Ok(t) => {
                self.reached
                    .add(&format!("redrive: redriven ({id})"), t.redriven as u64);
                self.reached
                    .add(&format!("redrive: superseded ({id})"), t.superseded as u64);
                self.reached
                    .add(&format!("redrive: corrected ({id})"), t.corrected as u64);
                self.reached
                    .add(&format!("redrive: parked again ({id})"), t.parked_again);
                self.reached
                    .add(&format!("redrive: letters kept ({id})"), t.failed as u64);
            }
            Err(_) => self.reached.add("redrive: stopped by a fault", 1),
        }
    }

    /// Lanes still in the spool (read past the faults).
    pub(crate) fn lanes_left(&self) -> Vec<String> {
        self.backends
            .spool
            .lanes()
            .unwrap()
            .into_iter()
            .map(|(l, i)| format!("{l} ({} entries)", i.count))
            .collect()
    }
}

/// A seeded stream over a few products: inserts, modifies of `v`,
/// modifies that leave `v` alone (dedup's case), modifies back to an
/// earlier image byte for byte (the ABA dedup must not fall for), removes
/// and re-inserts. Each item carries the bookkeeping prism's model builder
/// writes (`_prism_rev`, restarting after a remove as the builder's does,
/// and `_prism_sources`, the source sequence that caused the write).
fn stream(rng: &mut fastrand::Rng, max_changes: usize) -> (Vec<Value>, Vec<Written>) {
    let products = rng.usize(3..=6);
    let changes = rng.usize(4..=max_changes.max(4));
    let mut w = Writer::default();
    let mut current: Vec<Option<Value>> = vec![None; products];
    let mut earlier: Vec<Vec<Value>> = vec![Vec::new(); products];
    let mut revs = vec![0u64; products];
    let mut v = 0u64;
    for n in 0..changes {
        let p = rng.usize(0..products);
        let key = format!("P-{p}");
        let old = current[p].clone();
        let mut fresh = || {
            v += 1;
            Some(json!({"pk": key, "v": v, "noise": n}))
        };
        let new = match &old {
            None => fresh(),
            Some(o) => match rng.u32(0..100) {
                0..8 => None,
                8..30 => Some(json!({"pk": key, "v": o["v"], "noise": n})),
                30..40 => {
                    let mut plain = o.clone();
                    if let Some(m) = plain.as_object_mut() {
                        prism_types::bookkeeping::strip_bookkeeping(m);
                    }
                    let back: Vec<&Value> = earlier[p].iter().filter(|e| **e != plain).collect();
                    if back.is_empty() {
                        fresh()
                    } else {
                        Some(back[rng.usize(0..back.len())].clone())
                    }
                }
                _ => fresh(),
            },
        };
        if let Some(n) = &new {
            earlier[p].push(n.clone());
        }
        // The model builder's bookkeeping, as it writes it.
        let new = new.map(|mut item| {
            revs[p] += 1;
            item["_prism_rev"] = json!(revs[p]);
            item["_prism_sources"] = json!({ "products": format!("{:08}", n + 1) });
            item
        });
        if new.is_none() {
            revs[p] = 0;
        }
        w.push(&key, old.as_ref(), new.as_ref());
        current[p] = new;
    }
    w.done()
}
