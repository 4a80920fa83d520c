//! Work on the spool: retrying retry lanes, and the tick that does that and
//! flushes batch buffers ([`super::flush`]): the scheduled event on AWS,
//! `prism flush` and the `prism dev` loop locally.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::flush::{Flusher, due, flush};
use super::tick_options::TickOptions;
use super::{Dispatcher, Progress, ReceiverStats, RunOptions};
use crate::receivers::{ActiveReceiver, ReceiverSet};
use crate::sink::Sink;
use crate::spool::{Claim, Lane, Spool, Spooled};
use prism_types::change::Change;

/// How many ticks a change whose plugin keeps asking to retry stays in its
/// retry lane before it is parked as `retry-exhausted`. (A destination that
/// is down is waited for without limit: parking there would fail too.)
pub const MAX_LANE_ATTEMPTS: u32 = 30;

/// What a tick did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// Per receiver: windows flushed (`batches`), messages, errors, …
    pub receivers: BTreeMap<String, ReceiverStats>,
    /// Lanes looked at.
    pub lanes: usize,
    /// Lanes another tick was working on (skipped).
    pub busy: usize,
    /// Entries of lanes whose receiver is not active (kept for when it is).
    pub orphaned: u64,
    /// Entries still waiting after the tick, over all lanes.
    pub waiting: u64,
    /// Spool errors (the spool could not be read or written).
    pub errors: Vec<String>,
    /// Lanes not started because the invocation's deadline was near (the
    /// next tick takes them).
    pub deferred: usize,
}

/// What a tick works with.
#[derive(Clone, Copy)]
pub struct Work<'a> {
    /// The buffers and retry lanes.
    pub spool: &'a dyn Spool,
    /// Where messages go.
    pub sink: &'a dyn Sink,
    /// The output dedup state, updated by every delivery a retry lane makes
    /// (so it is never behind what a receiver got); `None`: no dedup.
    pub outputs: Option<&'a crate::outputs::OutputMemory>,
    /// Writes what [`Self::outputs`] learned to its store: called before a
    /// retry lane marks its entries done, so a process that dies between
    /// the two leaves the lane to be retried rather than a state that has
    /// not heard of what the lane delivered. `None`: saved by the caller
    /// at the end (a local state file).
    pub persist: Option<&'a Persist>,
}

/// See [`Work::persist`].
pub type Persist = dyn Fn(&crate::outputs::OutputMemory) -> Result<(), String> + Sync;

/// Flush due buffers (every buffer with `force`) and retry every retry
/// lane, with no output dedup state (see [`tick_with`]).
pub fn tick(
    dispatcher: &Dispatcher,
    set: &ReceiverSet,
    spool: &dyn Spool,
    sink: &dyn Sink,
    opts: TickOptions,
) -> TickReport {
    let work = Work {
        spool,
        sink,
        outputs: None,
        persist: None,
    };
    tick_with(dispatcher, set, &work, opts)
}

/// Flush due buffers (every buffer with `force`) and retry every retry
/// lane, round-robin across receivers, resuming after the last lane a tick
/// cut short by its deadline reached.
pub fn tick_with(
    dispatcher: &Dispatcher,
    set: &ReceiverSet,
    work: &Work<'_>,
    opts: TickOptions,
) -> TickReport {
    let spool = work.spool;
    let mut report = TickReport::default();
    let lanes = match spool.lanes() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "spool unreadable; nothing flushed or retried");
            report.errors.push(e.to_string());
            return report;
        }
    };
    let cursor = resume_after(dispatcher, spool);
    let mut reached = None;
    for (lane, info) in super::tick_order::fair_order(lanes, cursor.as_deref()) {
        let r = set.active.iter().find(|r| r.id() == lane.receiver());
        // A lane is started only if its receiver's whole call budget fits
        // before the end: a receiver with long limits defers its own lanes,
        // not the others'.
        let budget = r.map_or(std::time::Duration::ZERO, |r| r.call_budget());
        if dispatcher
            .finish_by
            .is_some_and(|t| std::time::Instant::now() + budget > t)
        {
            report.deferred += 1;
            continue;
        }
        reached = Some(lane.to_string());
        report.lanes += 1;
        let Some(r) = r else {
            tracing::warn!(lane = %lane, entries = info.count, "lane of a receiver that is not active; kept until it is");
            report.orphaned += info.count;
            continue;
        };
        match work_lane(dispatcher, r, &lane, &info, work, opts) {
            Worked::Stats(st) => report
                .receivers
                .entry(r.id().to_owned())
                .or_default()
                .merge(*st),
            Worked::Busy => report.busy += 1,
            Worked::NotDue => {}
        }
    }
    // Cut short by the deadline: the next tick starts after the last lane
    // this one reached. A full pass starts the next one from the top.
    let next = if report.deferred > 0 { reached } else { None };
    save_cursor(dispatcher, spool, cursor, next);
    match spool.lanes() {
        Ok(l) => report.waiting = l.iter().map(|(_, i)| i.count).sum(),
        Err(e) => report.errors.push(e.to_string()),
    }
    report
}

/// Where the last tick stopped: this instance's memory, else the store's
/// (a tick on a fresh instance resumes after another instance's).
fn resume_after(dispatcher: &Dispatcher, spool: &dyn Spool) -> Option<String> {
    dispatcher.tick_cursor.get().or_else(|| {
        spool.tick_cursor().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "tick cursor unreadable; starting from the first lane");
            None
        })
    })
}

/// Record where the next tick starts (`None`: from the first lane), in
/// this instance and, when it moved, in the store.
fn save_cursor(
    dispatcher: &Dispatcher,
    spool: &dyn Spool,
    was: Option<String>,
    next: Option<String>,
) {
    if next != was
        && let Err(e) = spool.save_tick_cursor(next.as_deref())
    {
        tracing::warn!(error = %e, "could not record where the tick stopped; the next one on another instance starts from the first lane");
    }
    dispatcher.tick_cursor.set(next);
}

/// What a tick did with one lane.
enum Worked {
    /// Flushed or retried.
    Stats(Box<ReceiverStats>),
    /// Another tick holds it.
    Busy,
    /// A buffer that is not due.
    NotDue,
}

/// Flush a buffer that is due (any, with `force`), or retry a retry lane.
fn work_lane(
    dispatcher: &Dispatcher,
    r: &Arc<ActiveReceiver>,
    lane: &Lane,
    info: &crate::spool::LaneInfo,
    work: &Work<'_>,
    opts: TickOptions,
) -> Worked {
    let stats = match lane {
        Lane::Buffer { .. } if opts.force || due(r, info, opts.now_ms) => flush(
            r,
            work.spool,
            work.sink,
            (dispatcher.max_retries, &dispatcher.breaker),
            opts,
        ),
        Lane::Buffer { .. } => return Worked::NotDue,
        Lane::Retry { .. } => retry(dispatcher, r, lane, work, opts),
    };
    stats.map_or(Worked::Busy, |st| Worked::Stats(Box::new(st)))
}

/// Retry one retry lane in order; `None` when another tick holds it.
fn retry(
    dispatcher: &Dispatcher,
    r: &Arc<ActiveReceiver>,
    lane: &Lane,
    work: &Work<'_>,
    opts: TickOptions,
) -> Option<ReceiverStats> {
    let mut st = ReceiverStats::default();
    let mut claim = match work.spool.claim(lane, opts.now_ms, opts.break_leases) {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            st.error("spool", e.to_string());
            return Some(st);
        }
    };
    let mut retry = LaneRetry {
        dispatcher,
        r,
        lane,
        work,
        st: &mut st,
    };
    if let Err(e) = retry.run(&mut claim) {
        tracing::error!(lane = %lane, error = %e, "retry lane could not be worked; kept for the next tick");
        st.error("spool", e.to_string());
        // Best effort: let the next tick in without waiting for the lease.
        let _ = work.spool.unlock(lane, &claim);
    }
    Some(st)
}

/// One retry lane's retry, under its claim.
struct LaneRetry<'l, 'w> {
    dispatcher: &'l Dispatcher,
    r: &'l Arc<ActiveReceiver>,
    lane: &'l Lane,
    work: &'l Work<'w>,
    st: &'l mut ReceiverStats,
}

impl LaneRetry<'_, '_> {
    /// Run the lane's changes again, in order: what went (delivered or
    /// parked) leaves the lane; the rest waits for the next tick.
    fn run(&mut self, claim: &mut Claim) -> Result<(), crate::Error> {
        let entries = self.work.spool.read(self.lane)?;
        let (changes, mut done) = self.readable(&entries)?;
        let held = self.dispatch(claim, &entries, &changes, &mut done);
        claim.partial.retain(|seq, _| !done.contains(seq));
        self.persist_outputs()?;
        self.work.spool.remove(self.lane, &done)?;
        if held.is_empty() {
            return self.work.spool.release(self.lane);
        }
        claim.attempts = if done.is_empty() {
            claim.attempts + 1
        } else {
            0
        };
        tracing::info!(lane = %self.lane, waiting = held.len(), attempts = claim.attempts, "retry lane still blocked");
        self.work.spool.unlock(self.lane, claim)
    }

    /// The lane's entries as changes, and the sequences of those that are
    /// unreadable (parked as they are, so done).
    fn readable(
        &mut self,
        entries: &[Spooled],
    ) -> Result<(Vec<Change>, Vec<String>), crate::Error> {
        let mut changes = Vec::new();
        let mut done = Vec::new();
        for e in entries {
            match e.to_change() {
                Ok(c) => changes.push(c),
                Err(error) => {
                    let mut f = Flusher {
                        r: self.r,
                        spool: self.work.spool,
                        sink: self.work.sink,
                        max_retries: self.dispatcher.max_retries,
                        breaker: &self.dispatcher.breaker,
                        lane: self.lane,
                        st: self.st,
                        left: None,
                    };
                    f.park_unreadable(e, &error)?;
                    done.push(e.sequence.clone());
                }
            }
        }
        Ok((changes, done))
    }

    /// Run `changes` through the receiver alone, holding what still cannot
    /// go. The sequences it handled join `done`; the held indices come back.
    fn dispatch(
        &mut self,
        claim: &mut Claim,
        entries: &[Spooled],
        changes: &[Change],
        done: &mut Vec<String>,
    ) -> Vec<usize> {
        let one = ReceiverSet {
            active: vec![self.r.clone()],
            ..ReceiverSet::default()
        };
        let d = self
            .dispatcher
            .to_builder()
            .threads(1)
            .hold_unavailable(true)
            .build();
        // What earlier attempts got out: from the first try (stored with
        // the entry) and from earlier retries (kept in the claim).
        let mut sent: HashMap<String, Vec<usize>> = claim.partial.clone().into_iter().collect();
        for e in entries.iter().filter(|e| !e.sent.is_empty()) {
            let v = sent.entry(e.sequence.clone()).or_default();
            v.extend(&e.sent);
            v.sort_unstable();
            v.dedup();
        }
        let opts = RunOptions {
            hold_retry: claim.attempts + 1 < MAX_LANE_ATTEMPTS,
            hold_quarantined: true,
            sent: Some(&sent),
            outputs: self.work.outputs,
            ..RunOptions::default()
        };
        let mut report = d.run_with(&one, changes, self.work.sink, &Progress::default(), opts);
        let mut got = report.receivers.remove(self.r.id()).unwrap_or_default();
        let held = std::mem::take(&mut got.held);
        for (i, out) in std::mem::take(&mut got.partial) {
            claim.partial.insert(changes[i].sequence.clone(), out);
        }
        done.extend(
            changes
                .iter()
                .enumerate()
                .filter(|(i, _)| held.binary_search(i).is_err())
                .map(|(_, c)| c.sequence.clone()),
        );
        self.st.merge(got);
        held
    }

    /// The dedup state first: marked done, the lane's entries cannot come
    /// back through it, and a retried stream batch with a state that never
    /// heard of them would send a change the lane suppressed after the
    /// product's newer one (found by the simulation).
    fn persist_outputs(&self) -> Result<(), crate::Error> {
        let (Some(persist), Some(o)) = (self.work.persist, self.work.outputs) else {
            return Ok(());
        };
        persist(o).map_err(|message| crate::Error::spool("output dedup state", self.lane.to_string(), format!(
                "could not record what the lane delivered, so its entries stay for the next tick: {message}"
            )))
    }
}
