//! Work on the spool: flushing batch buffers, retrying retry lanes, and the
//! tick that does both (the scheduled event on AWS, `prism flush` and the
//! `prism dev` loop locally).
//!
//! A flush is resumable. It first records its window (the buffered
//! sequences it formats) in the lane's claim, then delivers the window's
//! messages in chunks, recording after each how many are out, and only then
//! removes the window from the buffer. Killed anywhere, the next flush finds
//! the claim, formats the same window again (plugins see a fixed clock, so
//! the output is the same; its hash is checked) and sends only what was not
//! sent. The one gap is a kill between a send and its record: that chunk is
//! sent again with the same FIFO deduplication ids (SQS drops it) and the
//! same outbox file names.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::worker::{Context, Formatted};
use super::{Dispatcher, Progress, ReceiverStats, RunOptions, to_wit};
use crate::breaker::BreakerConfig;
use crate::receivers::{ActiveReceiver, ReceiverSet};
use crate::sink::{DeadLetter, Envelope, Sink, SinkErrorKind};
use crate::spool::{Claim, Lane, LaneInfo, Spool, Spooled, crash_point};
use prism_engine::WitChange;
use prism_types::change::Change;
use prism_types::manifest::Mode;

/// How many ticks a change whose plugin keeps asking to retry stays in its
/// retry lane before it is parked as `retry-exhausted`. (A destination that
/// is down is waited for without limit: parking there would fail too.)
pub const MAX_LANE_ATTEMPTS: u32 = 30;

/// The key in [`Claim::partial`] under which a buffer's claim keeps the
/// messages of its window that got out beyond the leading [`Claim::sent`].
pub const WINDOW_OUT: &str = "#window";

/// Messages delivered between two progress records of a flush: 32 SQS
/// batches, which a standard queue's sink sends at once. A flush cut short
/// inside a chunk sends the chunk's messages again (on a FIFO queue their
/// deduplication ids drop the copies).
const CHUNK: usize = 320;

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

/// When and how a tick runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TickOptions {
    /// The time (ms since the Unix epoch): buffer ages are measured to it.
    pub now_ms: u64,
    /// Flush every buffer, whatever its limits.
    pub force: bool,
    /// Take over lanes whose lease another flush holds (one that died).
    pub break_leases: bool,
}

impl TickOptions {
    /// A plain tick at `now_ms`.
    pub fn at(now_ms: u64) -> Self {
        Self {
            now_ms,
            ..Self::default()
        }
    }
}

/// Is a buffer with these totals due for a flush?
pub fn due(r: &ActiveReceiver, info: &LaneInfo, now_ms: u64) -> bool {
    let Mode::Batch {
        max_count,
        max_bytes,
        max_age_secs,
    } = r.manifest.mode
    else {
        return true;
    };
    info.count >= max_count as u64
        || info.bytes >= max_bytes as u64
        || now_ms.saturating_sub(info.oldest_ms) >= max_age_secs.saturating_mul(1000)
}

/// The totals of some buffered entries.
fn totals<'e>(entries: impl Iterator<Item = &'e Spooled>) -> LaneInfo {
    let mut info = LaneInfo::default();
    for e in entries {
        info.count += 1;
        info.bytes += e.bytes;
        info.oldest_ms = if info.count == 1 {
            e.spooled_ms
        } else {
            info.oldest_ms.min(e.spooled_ms)
        };
    }
    info
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
}

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
        if dispatcher
            .stop_at
            .is_some_and(|t| std::time::Instant::now() >= t)
        {
            report.deferred += 1;
            continue;
        }
        reached = Some(lane.to_string());
        report.lanes += 1;
        let Some(r) = set.active.iter().find(|r| r.id() == lane.receiver()) else {
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

/// Flush `r`'s buffer: every window that is due (all of it with `force`).
/// `None` when another flush holds the buffer's lease. `policy`: how often
/// a plugin's retry is tried again, and when a receiver is quarantined (a
/// quarantined receiver's windows stay in the buffer).
pub fn flush(
    r: &ActiveReceiver,
    spool: &dyn Spool,
    sink: &dyn Sink,
    policy: (u32, &BreakerConfig),
    opts: TickOptions,
) -> Option<ReceiverStats> {
    flush_left(r, spool, sink, policy, opts).0
}

/// [`flush`], and what the buffer held when the flush last looked at it
/// (after its last window): `None` when that is not known (busy, or the
/// spool failed).
pub fn flush_left(
    r: &ActiveReceiver,
    spool: &dyn Spool,
    sink: &dyn Sink,
    policy: (u32, &BreakerConfig),
    opts: TickOptions,
) -> (Option<ReceiverStats>, Option<LaneInfo>) {
    let (max_retries, breaker) = policy;
    let lane = Lane::Buffer {
        receiver: r.id().to_owned(),
    };
    let mut st = ReceiverStats::default();
    let mut flusher = Flusher {
        r,
        spool,
        sink,
        max_retries,
        breaker,
        lane: &lane,
        st: &mut st,
        left: None,
    };
    let mut first = true;
    loop {
        let claim = match spool.claim(&lane, opts.now_ms, opts.break_leases) {
            Ok(Some(c)) => c,
            Ok(None) if first => {
                tracing::info!(receiver = r.id(), "buffer is being flushed elsewhere");
                return (None, None);
            }
            Ok(None) => break,
            Err(e) => {
                flusher.spool_error(e);
                break;
            }
        };
        first = false;
        match flusher.window(claim, opts.now_ms, opts.force) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                flusher.left = None;
                flusher.spool_error(e);
                break;
            }
        }
    }
    let left = flusher.left;
    (Some(st), left)
}

/// How delivering a window ended.
enum Step {
    /// Delivered or parked, and dropped from the buffer.
    Done,
    /// Could not be delivered; kept for the next tick.
    Stopped,
    /// Too large: the claim now holds its first half.
    Halved,
}

struct Flusher<'a> {
    r: &'a ActiveReceiver,
    spool: &'a dyn Spool,
    sink: &'a dyn Sink,
    max_retries: u32,
    breaker: &'a BreakerConfig,
    lane: &'a Lane,
    st: &'a mut ReceiverStats,
    /// The buffer's totals when it was last read, less the window dropped
    /// since; `None` before the first read or after a spool error.
    left: Option<LaneInfo>,
}

impl Flusher<'_> {
    fn spool_error(&mut self, e: crate::spool::SpoolError) {
        tracing::error!(receiver = self.r.id(), error = %e, "batch buffer unavailable; the flush stops here and resumes on the next tick");
        self.st.error("spool", e.to_string());
    }

    /// Flush one window under the lease; `Ok(true)` to look for another.
    fn window(
        &mut self,
        mut claim: Claim,
        now_ms: u64,
        force: bool,
    ) -> Result<bool, crate::spool::SpoolError> {
        let Mode::Batch {
            max_count,
            max_bytes,
            ..
        } = self.r.manifest.mode
        else {
            self.spool.release(self.lane)?;
            return Ok(false);
        };
        let entries = self.spool.read(self.lane)?;
        let info = totals(entries.iter());
        // Until the window below is dropped, all of it is still there.
        self.left = Some(info);
        if claim.members.is_empty() {
            if entries.is_empty() || !(force || due(self.r, &info, now_ms)) {
                self.spool.release(self.lane)?;
                return Ok(false);
            }
            let mut bytes = 0;
            for e in &entries {
                let full = claim.members.len() >= max_count || bytes + e.bytes > max_bytes as u64;
                if !claim.members.is_empty() && full {
                    break;
                }
                bytes += e.bytes;
                claim.members.push(e.sequence.clone());
            }
            claim.sent = 0;
            claim.digest = None;
            claim.partial.remove(WINDOW_OUT);
            self.spool.save_claim(self.lane, &claim)?;
            crash_point("flush-claimed");
        }
        loop {
            let window: Vec<&Spooled> = entries
                .iter()
                .filter(|e| claim.members.contains(&e.sequence))
                .collect();
            if window.is_empty() {
                // Removed already: the last flush was stopped just before its end.
                self.spool.release(self.lane)?;
                return Ok(true);
            }
            let mut changes = Vec::with_capacity(window.len());
            for e in &window {
                match e.to_change() {
                    Ok(c) => changes.push(c),
                    Err(error) => {
                        self.park_unreadable(e, &error)?;
                        self.spool
                            .remove(self.lane, std::slice::from_ref(&e.sequence))?;
                        claim.members.retain(|m| *m != e.sequence);
                        self.spool.save_claim(self.lane, &claim)?;
                    }
                }
            }
            if changes.is_empty() {
                self.spool.release(self.lane)?;
                return Ok(true);
            }
            match self.deliver(&mut claim, &changes)? {
                Step::Done => return Ok(true),
                Step::Stopped => return Ok(false),
                // The window was halved: go on with its first half.
                Step::Halved => {}
            }
        }
    }

    /// Format the window's changes and deliver what is not out yet.
    fn deliver(
        &mut self,
        claim: &mut Claim,
        changes: &[Change],
    ) -> Result<Step, crate::spool::SpoolError> {
        let wit: Vec<WitChange> = changes.iter().map(to_wit).collect();
        let ctx = Context {
            changes,
            wit: &wit,
            sink: self.sink,
            progress: &Progress::default(),
            max_retries: self.max_retries,
            hold_unavailable: true,
            already: &|_, _| false,
            outputs: None,
            lanes: None,
            sent: None,
            hold_retry: false,
            hold_quarantined: true,
            breaker: self.breaker,
            stop_at: None,
            pack: 1,
            pack_bytes: super::PACK_BYTES,
        };
        let all: Vec<usize> = (0..changes.len()).collect();
        let msgs = match ctx.format_window(self.r, self.st, &all) {
            Formatted::Messages(m) => m,
            // Quarantined: the window stays in the buffer for a later tick.
            Formatted::Failed { kind, .. } if kind == super::batch::QUARANTINED => {
                self.spool.unlock(self.lane, claim)?;
                return Ok(Step::Stopped);
            }
            Formatted::Failed { kind, error } => {
                let parked = ctx.park(self.r, self.st, &all, kind, &error);
                return self.parked(parked, claim);
            }
        };
        let digest = hex::encode(crate::outputs::hash_messages(&msgs));
        if claim.digest.as_ref().is_some_and(|d| *d != digest) {
            tracing::warn!(
                receiver = self.r.id(),
                "the window formats differently than before the flush was interrupted (a new plugin version?); sending all of it"
            );
            claim.sent = 0;
            claim.partial.remove(WINDOW_OUT);
        }
        claim.digest = Some(digest);
        let first = &changes[0];
        let last = changes.last().expect("a window has changes");
        let id = format!("{}-{}", first.sequence, last.sequence);
        let envelopes: Vec<Envelope<'_>> = msgs
            .iter()
            .enumerate()
            .map(|(index, message)| Envelope {
                receiver: self.r.id(),
                key: &first.key,
                sequence: &last.sequence,
                ordinal: 0,
                index,
                message,
                digest: self.r.digest(),
                window: Some(&id),
            })
            .collect();
        if let Err(e) = self.sink.check(&envelopes)
            && e.kind == SinkErrorKind::TooLarge
        {
            if changes.len() > 1 && claim.sent == 0 {
                // Split the window until its output fits.
                claim.members.truncate(claim.members.len() / 2);
                claim.digest = None;
                tracing::info!(
                    receiver = self.r.id(),
                    changes = changes.len(),
                    "window output over the destination's size limit; halving the window"
                );
                self.spool.save_claim(self.lane, claim)?;
                return Ok(Step::Halved);
            }
            let error = format!("window {id}: {e}");
            let parked = ctx.park(self.r, self.st, &all, e.kind.as_str(), &error);
            return self.parked(parked, claim);
        }
        // Messages out beyond the leading `sent` (a partial failure, or a
        // window cut in a run that could not deliver all of it).
        let mut out: BTreeSet<usize> = claim
            .partial
            .remove(WINDOW_OUT)
            .unwrap_or_default()
            .into_iter()
            .collect();
        loop {
            let todo: Vec<usize> = (claim.sent..envelopes.len())
                .filter(|p| !out.contains(p))
                .take(CHUNK)
                .collect();
            if todo.is_empty() {
                break;
            }
            let chunk: Vec<Envelope<'_>> = todo.iter().map(|&p| envelopes[p].clone()).collect();
            let result = self.sink.deliver(&chunk);
            let got: Vec<usize> = match &result {
                Ok(()) => todo.clone(),
                Err(e) => e
                    .delivered
                    .iter()
                    .filter_map(|&k| todo.get(k).copied())
                    .collect(),
            };
            self.st.messages += got.len() as u64;
            self.st.bytes += got
                .iter()
                .map(|&p| envelopes[p].message.body.len() as u64)
                .sum::<u64>();
            out.extend(&got);
            while out.remove(&claim.sent) {
                claim.sent += 1;
            }
            if !out.is_empty() {
                claim
                    .partial
                    .insert(WINDOW_OUT.to_owned(), out.iter().copied().collect());
            }
            if !got.is_empty() {
                // What got out is recorded as out: never sent again.
                self.spool.save_claim(self.lane, claim)?;
            }
            if let Err(e) = result {
                if e.kind != SinkErrorKind::Unavailable {
                    // Refused by the destination: sending it again fails the same way.
                    let error = format!("window {id}: {e}");
                    let parked = ctx.park(self.r, self.st, &all, &e.dead_letter_kind(), &error);
                    return self.parked(parked, claim);
                }
                tracing::warn!(receiver = self.r.id(), window = %id, error = %e, "flush could not deliver; the window stays buffered for the next tick");
                self.st.error(
                    "delivery",
                    format!("receiver {} window {id}: {e}", self.r.id()),
                );
                self.spool.unlock(self.lane, claim)?;
                return Ok(Step::Stopped);
            }
            crash_point("flush-sent");
        }
        self.finish(&claim.members)?;
        Ok(Step::Done)
    }

    /// After parking the window: drop it when parked, else keep it for the next tick.
    fn parked(&mut self, parked: bool, claim: &Claim) -> Result<Step, crate::spool::SpoolError> {
        if parked {
            self.finish(&claim.members)?;
            Ok(Step::Done)
        } else {
            self.spool.unlock(self.lane, claim)?;
            Ok(Step::Stopped)
        }
    }

    /// The window is delivered (or parked): drop it and the claim.
    fn finish(&mut self, members: &[String]) -> Result<(), crate::spool::SpoolError> {
        self.spool.remove(self.lane, members)?;
        // Unknown until the next read: a window may take entries other
        // runs appended meanwhile.
        self.left = None;
        crash_point("flush-removed");
        self.spool.release(self.lane)
    }

    /// An entry that no longer reads as a change: park it as it is stored.
    fn park_unreadable(
        &mut self,
        e: &Spooled,
        error: &str,
    ) -> Result<(), crate::spool::SpoolError> {
        let dead = DeadLetter {
            receiver: self.r.id().to_owned(),
            plugin_digest: None,
            key: String::new(),
            sequence: e.sequence.clone(),
            ordinal: 0,
            error_kind: "unreadable".into(),
            error: format!("{} entry {}: {error}", self.lane, e.sequence),
            change: e.change.clone(),
        };
        self.st.error("unreadable", dead.error.clone());
        self.sink.park(&dead).map_err(|s| crate::spool::SpoolError {
            store: "-".into(),
            lane: self.lane.to_string(),
            message: format!("could not park an unreadable entry: {s}"),
        })
    }
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
