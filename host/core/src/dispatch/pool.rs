//! The worker threads of one run: each takes units (a batched receiver, or
//! one shard of an immediate receiver's changes) until none is left, and
//! sends each immediate unit's last packed delivery on a thread of its own
//! while it formats the next units.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{Scope, ScopedJoinHandle};

use super::worker::{Context, Pending};
use super::{IN_FLIGHT_UNITS, ReceiverStats, shard};
use crate::receivers::{ActiveReceiver, ReceiverSet};
use crate::sink::SinkError;

/// Work for one thread at a time.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
    /// One shard of an immediate receiver's changes.
    Immediate { receiver: usize, shard: usize },
    /// A batched receiver: all of its changes, in order.
    Batch { receiver: usize },
}

/// The units of a run: batched receivers first (each one long unit), then
/// `shards` per immediate receiver.
fn units(set: &ReceiverSet, shards: usize) -> Vec<Unit> {
    let batched = |i: &usize| set.active[*i].manifest.mode.batch_limits().is_some();
    let all = 0..set.active.len();
    all.clone()
        .filter(batched)
        .map(|receiver| Unit::Batch { receiver })
        .chain(
            all.filter(|i| !batched(i)).flat_map(|receiver| {
                (0..shards).map(move |shard| Unit::Immediate { receiver, shard })
            }),
        )
        .collect()
}

/// What the workers of one run share.
pub(super) struct Pool<'c, 'a> {
    pub ctx: &'c Context<'a>,
    pub set: &'c ReceiverSet,
    pub units: Vec<Unit>,
    /// Each change's shard.
    pub shard_of: Vec<usize>,
    /// The next unit to take.
    pub next: AtomicUsize,
    /// Per receiver.
    pub totals: Mutex<BTreeMap<String, ReceiverStats>>,
    /// See [`super::DispatcherBuilder::overlap_io`].
    pub overlap_io: bool,
    /// See [`super::DispatcherBuilder::pack_bytes`].
    pub pack_bytes: usize,
}

impl<'c, 'a> Pool<'c, 'a> {
    /// The pool of a run with `shards` shards per immediate receiver.
    pub fn new(
        ctx: &'c Context<'a>,
        set: &'c ReceiverSet,
        shards: usize,
        overlap_io: bool,
        pack_bytes: usize,
    ) -> Self {
        Self {
            ctx,
            set,
            units: units(set, shards),
            shard_of: ctx.changes.iter().map(|c| shard(&c.key, shards)).collect(),
            next: AtomicUsize::new(0),
            totals: Mutex::new(
                set.active
                    .iter()
                    .map(|r| (r.id().to_owned(), ReceiverStats::default()))
                    .collect(),
            ),
            overlap_io,
            pack_bytes,
        }
    }

    fn merge(&self, r: &ActiveReceiver, stats: ReceiverStats) {
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        t.entry(r.id().to_owned()).or_default().merge(stats);
    }

    /// One worker: take units until none is left, then wait for its
    /// deliveries still in flight.
    pub fn work<'s>(&'s self, s: &'s Scope<'s, '_>) {
        let mut flights = Flights::default();
        while let Some(&unit) = self.units.get(self.next.fetch_add(1, Ordering::Relaxed)) {
            match unit {
                Unit::Immediate { receiver, shard } => {
                    self.immediate(s, &self.set.active[receiver], shard, &mut flights);
                }
                Unit::Batch { receiver } => {
                    let r = &self.set.active[receiver];
                    self.merge(r, self.ctx.batch(r));
                }
            }
        }
        for f in flights.queue {
            let (r, st) = f.settle(self.ctx);
            self.merge(r, st);
        }
    }

    /// An immediate unit: format its changes (delivering packs as they
    /// fill), then send its last pack beside the next units.
    fn immediate<'s>(
        &'s self,
        s: &'s Scope<'s, '_>,
        r: &'s ActiveReceiver,
        shard: usize,
        flights: &mut Flights<'s>,
    ) {
        let changes = (0..self.shard_of.len()).filter(|&c| self.shard_of[c] == shard);
        let (stats, last) = self.ctx.immediate_deferred(r, changes);
        self.merge(r, stats);
        if last.is_empty() {
            return;
        }
        if !self.overlap_io {
            let outcomes = self.ctx.send(r, &last);
            let mut st = ReceiverStats::default();
            self.ctx
                .settle_sent(r, &mut st, &last, outcomes, &mut HashSet::new());
            return self.merge(r, st);
        }
        let bytes = last
            .iter()
            .flat_map(|(_, m)| m)
            .map(|m| m.body.len())
            .sum::<usize>();
        // Bounded in number and in the message bytes they hold.
        while flights.queue.len() >= IN_FLIGHT_UNITS
            || (flights.bytes + bytes > self.pack_bytes && !flights.queue.is_empty())
        {
            let f = flights.queue.pop_front().expect("not empty");
            flights.bytes -= f.bytes;
            let (r, st) = f.settle(self.ctx);
            self.merge(r, st);
        }
        flights.bytes += bytes;
        let ctx = self.ctx;
        let sending = s.spawn(move || {
            let outcomes = ctx.send(r, &last);
            (last, outcomes)
        });
        flights.queue.push_back(InFlight { r, sending, bytes });
    }
}

/// A worker's deliveries in flight, and the message bytes they hold.
#[derive(Default)]
struct Flights<'s> {
    queue: VecDeque<InFlight<'s>>,
    bytes: usize,
}

/// A unit's last packed delivery, on its way on a thread of its own.
struct InFlight<'s> {
    r: &'s ActiveReceiver,
    /// The message bytes it holds.
    bytes: usize,
    sending: ScopedJoinHandle<'s, (Pending, Vec<Result<(), SinkError>>)>,
}

impl<'s> InFlight<'s> {
    /// Wait for the delivery and settle it: counts, dedup state, holds.
    fn settle(self, ctx: &Context<'_>) -> (&'s ActiveReceiver, ReceiverStats) {
        let (sent, outcomes) = match self.sending.join() {
            Ok(done) => done,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let mut st = ReceiverStats::default();
        ctx.settle_sent(self.r, &mut st, &sent, outcomes, &mut HashSet::new());
        (self.r, st)
    }
}
