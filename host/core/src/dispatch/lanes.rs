//! Work on the spool: retrying retry lanes, and the tick that does that and
//! flushes batch buffers ([`super::flush`]): the scheduled event on AWS,
//! `prism flush` and the `prism dev` loop locally.

use std::collections::{BTreeMap, HashMap};

use super::flush::{Flusher, due, flush};
use super::tick_options::TickOptions;
use super::{Dispatcher, Progress, ReceiverStats, RunOptions};
use crate::receivers::{ActiveReceiver, ReceiverSet};
use crate::sink::Sink;
use crate::spool::{Lane, Spool};

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
    let (spool, sink) = (work.spool, work.sink);
    let now_ms = opts.now_ms;
    let mut report = TickReport::default();
    let lanes = match spool.lanes() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "spool unreadable; nothing flushed or retried");
            report.errors.push(e.to_string());
            return report;
        }
    };
    // Where the last tick stopped: this instance's memory, else the store's
    // (a tick on a fresh instance resumes after another instance's).
    let cursor = dispatcher.tick_cursor.get().or_else(|| {
        spool.tick_cursor().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "tick cursor unreadable; starting from the first lane");
            None
        })
    });
    let lanes = super::tick_order::fair_order(lanes, cursor.as_deref());
    let mut reached = None;
    for (lane, info) in lanes {
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
        let st = match &lane {
            Lane::Buffer { .. } if opts.force || due(r, &info, now_ms) => {
                match flush(
                    r,
                    spool,
                    sink,
                    (dispatcher.max_retries, &dispatcher.breaker),
                    opts,
                ) {
                    Some(st) => st,
                    None => {
                        report.busy += 1;
                        continue;
                    }
                }
            }
            Lane::Buffer { .. } => continue,
            Lane::Retry { .. } => match retry(dispatcher, r, &lane, work, opts) {
                Some(st) => st,
                None => {
                    report.busy += 1;
                    continue;
                }
            },
        };
        report
            .receivers
            .entry(r.id().to_owned())
            .or_default()
            .merge(st);
    }
    // Cut short by the deadline: the next tick starts after the last lane
    // this one reached. A full pass starts the next one from the top.
    let next = if report.deferred > 0 { reached } else { None };
    if next != cursor
        && let Err(e) = spool.save_tick_cursor(next.as_deref())
    {
        tracing::warn!(error = %e, "could not record where the tick stopped; the next one on another instance starts from the first lane");
    }
    dispatcher.tick_cursor.set(next);
    match spool.lanes() {
        Ok(l) => report.waiting = l.iter().map(|(_, i)| i.count).sum(),
        Err(e) => report.errors.push(e.to_string()),
    }
    report
}

/// Retry one retry lane in order; `None` when another tick holds it.
fn retry(
    dispatcher: &Dispatcher,
    r: &std::sync::Arc<ActiveReceiver>,
    lane: &Lane,
    work: &Work<'_>,
    opts: TickOptions,
) -> Option<ReceiverStats> {
    let Work {
        spool,
        sink,
        outputs,
        persist,
    } = *work;
    let mut st = ReceiverStats::default();
    let mut claim = match spool.claim(lane, opts.now_ms, opts.break_leases) {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            st.error("spool", e.to_string());
            return Some(st);
        }
    };
    let result = (|| {
        let entries = spool.read(lane)?;
        let claim = &mut claim;
        let mut changes = Vec::new();
        let mut done = Vec::new();
        for e in &entries {
            match e.to_change() {
                Ok(c) => changes.push(c),
                Err(error) => {
                    let mut f = Flusher {
                        r,
                        spool,
                        sink,
                        max_retries: dispatcher.max_retries,
                        breaker: &dispatcher.breaker,
                        lane,
                        st: &mut st,
                        left: None,
                    };
                    f.park_unreadable(e, &error)?;
                    done.push(e.sequence.clone());
                }
            }
        }
        let one = ReceiverSet {
            active: vec![r.clone()],
            ..ReceiverSet::default()
        };
        let d = Dispatcher {
            threads: 1,
            hold_unavailable: true,
            ..dispatcher.clone()
        };
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
            outputs,
            ..RunOptions::default()
        };
        let mut report = d.run_with(&one, &changes, sink, &Progress::default(), opts);
        let mut got = report.receivers.remove(r.id()).unwrap_or_default();
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
        st.merge(got);
        claim.partial.retain(|seq, _| !done.contains(seq));
        // The dedup state first: marked done, these entries cannot come
        // back through the lane, and a retried stream batch with a state
        // that never heard of them would send a change the lane
        // suppressed after the product's newer one (found by the
        // simulation).
        if let (Some(persist), Some(o)) = (persist, outputs) {
            persist(o).map_err(|message| crate::spool::SpoolError {
                store: "output dedup state".into(),
                lane: lane.to_string(),
                message: format!(
                    "could not record what the lane delivered, so its entries stay for the next tick: {message}"
                ),
            })?;
        }
        spool.remove(lane, &done)?;
        if held.is_empty() {
            spool.release(lane)?;
        } else {
            claim.attempts = if done.is_empty() {
                claim.attempts + 1
            } else {
                0
            };
            tracing::info!(lane = %lane, waiting = held.len(), attempts = claim.attempts, "retry lane still blocked");
            spool.unlock(lane, claim)?;
        }
        Ok::<_, crate::spool::SpoolError>(())
    })();
    if let Err(e) = result {
        tracing::error!(lane = %lane, error = %e, "retry lane could not be worked; kept for the next tick");
        st.error("spool", e.to_string());
        // Best effort: let the next tick in without waiting for the lease.
        let _ = spool.unlock(lane, &claim);
    }
    Some(st)
}
