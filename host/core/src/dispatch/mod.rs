//! The dispatch core: every change to every enabled receiver.
//!
//! - Receivers run in parallel on all cores. Work is split into units of
//!   (receiver, key shard): each unit handles its changes in input order, so
//!   order per (receiver, product key) is kept while different keys and
//!   receivers run side by side. A batched receiver is one unit.
//! - Each change runs in a fresh sandbox: `accepts`, then `format`.
//! - A failure (reject, trap, timeout, over-limit, malformed output, retries
//!   exhausted) affects only that receiver's handling of that change: it is
//!   parked as a dead letter naming the receiver, plugin digest, key and
//!   sequence, and everything else carries on.
//! - A destination that is down is different: parking there would fail too.
//!   By default (local runs) the change is parked as a `delivery` dead letter
//!   elsewhere if the sink can; with [`DispatcherBuilder::hold_unavailable`] (the
//!   Lambda) the receiver's unit stops instead and reports the change, and
//!   every later one of that unit, as *held*: not handled, to be retried.
//!   Other receivers and other products carry on. With a spool
//!   ([`RunOptions::lanes`]) the held change goes to the receiver's retry
//!   lane for that product instead, later changes of the product wait in
//!   the lane behind it, and [`tick`] retries the lanes in order.
//! - Batched receivers: with a spool, accepted changes are buffered durably
//!   and flushed by limit (here, or by [`tick`]); without one, windows are
//!   formatted within the run and the last one at its end.

mod batch;
mod config;
mod deliver;
mod flush;
mod immediate;
mod lanes;
mod pool;
mod stats;
mod tick_options;
mod tick_order;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use config::{Dispatcher, DispatcherBuilder, IN_FLIGHT_UNITS, PACK, PACK_BYTES};
pub use lanes::{MAX_LANE_ATTEMPTS, Persist, TickReport, Work, tick, tick_with};
pub use tick_options::TickOptions;

/// What became of a change (or a batch window) handed to delivery: the
/// vocabulary the dispatch code settles in, rather than a `bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Not for this receiver: its plugin does not accept it.
    Skipped,
    /// In a pack with the next changes: settled when the pack goes out.
    Packed,
    /// Delivered, or suppressed by dedup as what the receiver has.
    Delivered,
    /// Parked as a dead letter, for this reason.
    Parked(prism_types::failure::FailureKind),
    /// Not handled: to be tried again in order (its destination is down,
    /// it asks for a retry, or its dead letter could not be written).
    Held,
}

impl Settled {
    /// Whether it is done with (or on its way), not held.
    pub(crate) fn handled(self) -> bool {
        !matches!(self, Self::Held)
    }
}
pub use stats::ReceiverStats;
pub use tick_order::{TickCursor, fair_order};
pub use worker::change_json;

use crate::receivers::ReceiverSet;
use crate::sink::Sink;
use prism_engine::{WitChange, WitChangeKind};
use prism_types::change::{Change, ChangeKind};

/// Counts receiver-changes done, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Receiver-changes handled so far.
    pub done: AtomicU64,
    /// Receiver-changes in the run.
    pub total: AtomicU64,
}

/// Which (receiver, change index) pairs an earlier attempt already handled.
pub type AlreadyHandled<'a> = &'a (dyn Fn(&str, usize) -> bool + Sync);

/// What a run may know beyond its changes.
#[derive(Clone, Copy)]
pub struct RunOptions<'a> {
    /// Pairs an earlier attempt handled: not run again (a retried batch).
    pub already: AlreadyHandled<'a>,
    /// The last output delivered per (receiver, key): identical outputs are
    /// not sent again. `None`: no dedup.
    pub outputs: Option<&'a crate::outputs::OutputMemory>,
    /// The spool: batched receivers buffer there (durably) instead of
    /// formatting windows within the run, and held changes go to retry
    /// lanes instead of failing the run. `None`: windows end with the run,
    /// held changes are reported as held.
    pub lanes: Option<&'a Lanes<'a>>,
    /// Hold a change whose plugin is still asking to retry after
    /// `max_retries`, rather than parking it (a retry lane's next try).
    pub hold_retry: bool,
    /// Hold a quarantined receiver's changes rather than parking them (a
    /// retry lane's next try: they stay in the lane).
    pub hold_quarantined: bool,
    /// Messages of the changes being retried that an earlier attempt
    /// delivered (change sequence → message indices): never sent again.
    pub sent: Option<&'a HashMap<String, Vec<usize>>>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        Self {
            already: &|_, _| false,
            outputs: None,
            lanes: None,
            hold_retry: false,
            hold_quarantined: false,
            sent: None,
        }
    }
}

/// The spool as a run uses it.
pub struct Lanes<'a> {
    /// Where buffers and retry lanes live.
    pub spool: &'a dyn crate::spool::Spool,
    /// Retry lanes open when the run started, as (receiver, key): a change
    /// for one of them waits in the lane behind the earlier ones.
    pub open: HashSet<(String, String)>,
    /// Batch buffers that held changes when the run started, by receiver.
    /// With [`Self::cut_windows`], a receiver with none has its windows cut
    /// within the run; the others append to theirs.
    pub buffered: HashMap<String, crate::spool::LaneInfo>,
    /// Cut windows in the run while a receiver's buffer is empty, rather
    /// than appending every accepted change to it first. Right where the
    /// input is durable and retried whole when a run dies (a stream batch):
    /// a run killed mid-window sends that window again on its retry. Off
    /// (the default) every change is in the spool before any window is
    /// sent, so a killed run loses and repeats nothing (`prism run`).
    pub cut_windows: bool,
    /// The time the run spools at (ms since the Unix epoch).
    pub now_ms: u64,
    /// The run replays changes on purpose (`prism dlq redrive`): what it
    /// spools is added even where the lane handled the sequence before
    /// (see [`crate::spool::Spooled::replay`]).
    pub replay: bool,
}

impl<'a> Lanes<'a> {
    /// `change` as this run spools it.
    pub(crate) fn entry(&self, change: &Change) -> crate::spool::Spooled {
        crate::spool::Spooled {
            replay: self.replay,
            ..crate::spool::Spooled::new(change, self.now_ms)
        }
    }

    /// Read the open retry lanes of `spool`.
    pub fn open(spool: &'a dyn crate::spool::Spool, now_ms: u64) -> Result<Self, crate::Error> {
        let mut open = HashSet::new();
        let mut buffered = HashMap::new();
        for (lane, info) in spool.lanes()? {
            match lane {
                crate::spool::Lane::Retry { receiver, key } => {
                    open.insert((receiver, key));
                }
                crate::spool::Lane::Buffer { receiver } => {
                    buffered.insert(receiver, info);
                }
            }
        }
        Ok(Self {
            spool,
            open,
            buffered,
            cut_windows: false,
            now_ms,
            replay: false,
        })
    }
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Per receiver, sorted by id.
    pub receivers: BTreeMap<String, ReceiverStats>,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunReport {
    /// Errors over all receivers.
    pub fn errors(&self) -> u64 {
        self.receivers.values().map(ReceiverStats::errors).sum()
    }

    /// The first change index some receiver holds for a retry, if any.
    pub fn first_held(&self) -> Option<usize> {
        self.receivers
            .values()
            .filter_map(|s| s.held.iter().min().copied())
            .min()
    }
}

impl Dispatcher {
    /// Run `changes` (in stream order) through every active receiver of `set`.
    pub fn run(
        &self,
        set: &ReceiverSet,
        changes: &[Change],
        sink: &dyn Sink,
        progress: &Progress,
    ) -> RunReport {
        self.run_with(set, changes, sink, progress, RunOptions::default())
    }

    /// Like [`Self::run`], with what the run may know beyond its changes:
    /// pairs an earlier attempt handled, and the output dedup state.
    pub fn run_with(
        &self,
        set: &ReceiverSet,
        changes: &[Change],
        sink: &dyn Sink,
        progress: &Progress,
        opts: RunOptions<'_>,
    ) -> RunReport {
        let started = Instant::now();
        let threads = self.threads.max(1);
        // One unit per receiver and thread: packing wants each unit to hold
        // as many changes as it can (one receiver's share of the batch per
        // thread), so that their messages share calls.
        let shards = threads;
        let wit: Vec<WitChange> = changes.iter().map(to_wit).collect();
        progress
            .total
            .fetch_add((changes.len() * set.active.len()) as u64, Ordering::Relaxed);

        // Plugin time each receiver has used in this run (ns).
        let used: BTreeMap<String, AtomicU64> = set
            .active
            .iter()
            .map(|r| (r.id().to_owned(), AtomicU64::new(0)))
            .collect();
        let ctx = worker::Context {
            changes,
            wit: &wit,
            sink,
            progress,
            max_retries: self.max_retries,
            hold_unavailable: self.hold_unavailable,
            already: opts.already,
            outputs: opts.outputs,
            lanes: opts.lanes,
            sent: opts.sent,
            hold_retry: opts.hold_retry,
            hold_quarantined: opts.hold_quarantined,
            breaker: &self.breaker,
            finish_by: self.finish_by,
            share: self.finish_by.map(|end| {
                let receivers = set.active.len().max(1) as u32;
                end.saturating_duration_since(started) * threads as u32 / receivers
            }),
            used: &used,
            pack: self.pack.max(1),
            pack_bytes: self.pack_bytes.max(1),
        };
        let pool = pool::Pool::new(&ctx, set, shards, self.overlap_io, self.pack_bytes.max(1));
        std::thread::scope(|s| {
            for _ in 0..threads.min(pool.units.len().max(1)) {
                s.spawn(|| pool.work(s));
            }
        });
        let mut receivers = pool.totals.into_inner().unwrap_or_else(|e| e.into_inner());
        for st in receivers.values_mut() {
            st.held.sort_unstable();
        }
        RunReport {
            receivers,
            elapsed: started.elapsed(),
        }
    }
}

fn shard(key: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// The change as the WIT contract carries it (built once, shared by all receivers).
pub fn to_wit(c: &Change) -> WitChange {
    WitChange {
        key: c.key.clone(),
        kind: match c.kind {
            ChangeKind::Insert => WitChangeKind::Insert,
            ChangeKind::Modify => WitChangeKind::Modify,
            ChangeKind::Remove => WitChangeKind::Remove,
        },
        new_image: c.new_json.clone(),
        old_image: c.old_json.clone(),
        changed_paths: c.changed_paths.clone(),
        sequence: c.sequence.clone(),
        time_ms: c.time_ms,
    }
}
