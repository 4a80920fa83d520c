//! Flushing a batch buffer: its windows formatted through `format-batch`
//! and delivered from the spool.
//!
//! A flush is resumable. It first records its window (the buffered
//! sequences it formats) in the lane's claim, then delivers the window's
//! messages in chunks, recording after each which are out, and only then
//! removes the window from the buffer. Killed anywhere, the next flush finds
//! the claim, formats the same window again (plugins see a fixed clock, so
//! the output is the same; its hash is checked) and sends only what was not
//! sent. The one gap is a kill between a send and its record: that chunk is
//! sent again with the same FIFO deduplication ids (SQS drops it) and the
//! same outbox file names.

use std::collections::BTreeSet;

use super::tick_options::TickOptions;
use super::worker::{Context, Formatted};
use super::{Progress, ReceiverStats, to_wit};
use crate::breaker::BreakerConfig;
use crate::receivers::ActiveReceiver;
use crate::sink::{DeadLetter, Envelope, Sink, SinkError, SinkErrorKind};
use crate::spool::{Claim, Lane, LaneInfo, Spool, Spooled, crash_point};
use prism_engine::WitChange;
use prism_types::change::Change;
use prism_types::failure::FailureKind;
use prism_types::manifest::WindowLimits;

/// The key in [`Claim::partial`] under which a buffer's claim keeps the
/// messages of its window that got out beyond the leading [`Claim::sent`].
pub const WINDOW_OUT: &str = "#window";

/// Messages delivered between two progress records of a flush: 32 SQS
/// batches, which a standard queue's sink sends at once. A flush cut short
/// inside a chunk sends the chunk's messages again (on a FIFO queue their
/// deduplication ids drop the copies).
const CHUNK: usize = 320;

/// Is a buffer with these totals due for a flush?
pub fn due(r: &ActiveReceiver, info: &LaneInfo, now_ms: u64) -> bool {
    r.manifest
        .mode
        .batch_limits()
        .is_none_or(|w| w.full(info.count, info.bytes) || w.too_old(info.oldest_ms, now_ms))
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

pub(super) struct Flusher<'a> {
    pub(super) r: &'a ActiveReceiver,
    pub(super) spool: &'a dyn Spool,
    pub(super) sink: &'a dyn Sink,
    pub(super) max_retries: u32,
    pub(super) breaker: &'a BreakerConfig,
    pub(super) lane: &'a Lane,
    pub(super) st: &'a mut ReceiverStats,
    /// The buffer's totals when it was last read, less the window dropped
    /// since; `None` before the first read or after a spool error.
    pub(super) left: Option<LaneInfo>,
}

/// A flush reports no progress, has no earlier attempt and no share of a
/// run's time: a window is formatted whole.
static NO_PROGRESS: Progress = Progress {
    done: std::sync::atomic::AtomicU64::new(0),
    total: std::sync::atomic::AtomicU64::new(0),
};
static NONE_USED: std::collections::BTreeMap<String, std::sync::atomic::AtomicU64> =
    std::collections::BTreeMap::new();
fn never_handled(_: &str, _: usize) -> bool {
    false
}

/// The window a flush is delivering: the context it was formatted in, its
/// changes (all of them, by index) and its id (`<first>-<last>` sequence).
#[derive(Clone, Copy)]
struct Window<'w, 'c> {
    ctx: &'w Context<'c>,
    all: &'w [usize],
    id: &'w str,
}

impl Flusher<'_> {
    fn spool_error(&mut self, e: crate::Error) {
        tracing::error!(receiver = self.r.id(), error = %e, "batch buffer unavailable; the flush stops here and resumes on the next tick");
        self.st.error("spool", e.to_string());
    }

    /// Flush one window under the lease; `Ok(true)` to look for another.
    fn window(&mut self, mut claim: Claim, now_ms: u64, force: bool) -> Result<bool, crate::Error> {
        let Some(limits) = self.r.manifest.mode.batch_limits() else {
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
            self.claim_window(&mut claim, &entries, limits)?;
        }
        loop {
            let changes = self.readable(&mut claim, &entries)?;
            if changes.is_empty() {
                // Removed already (the last flush was stopped just before
                // its end), or nothing of it could be read.
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

    /// Claim the buffer's first window: its oldest entries, up to the
    /// receiver's count and bytes (at least one entry), saved in the claim
    /// before anything is sent.
    fn claim_window(
        &mut self,
        claim: &mut Claim,
        entries: &[Spooled],
        limits: WindowLimits,
    ) -> Result<(), crate::Error> {
        let mut bytes = 0;
        for e in entries {
            let count = claim.members.len() as u64;
            if count > 0 && (count >= limits.max_count || bytes + e.bytes > limits.max_bytes) {
                break;
            }
            bytes += e.bytes;
            claim.members.push(e.sequence.clone());
        }
        claim.sent = 0;
        claim.digest = None;
        claim.partial.remove(WINDOW_OUT);
        self.spool.save_claim(self.lane, claim)?;
        crash_point("flush-claimed");
        Ok(())
    }

    /// The claimed window's changes, in order. An entry that cannot be read
    /// is parked, removed and dropped from the claim.
    fn readable(
        &mut self,
        claim: &mut Claim,
        entries: &[Spooled],
    ) -> Result<Vec<Change>, crate::Error> {
        let window: Vec<&Spooled> = entries
            .iter()
            .filter(|e| claim.members.contains(&e.sequence))
            .collect();
        let mut changes = Vec::with_capacity(window.len());
        for e in window {
            match e.to_change() {
                Ok(c) => changes.push(c),
                Err(error) => {
                    self.park_unreadable(e, &error)?;
                    self.spool
                        .remove(self.lane, std::slice::from_ref(&e.sequence))?;
                    claim.members.retain(|m| *m != e.sequence);
                    self.spool.save_claim(self.lane, claim)?;
                }
            }
        }
        Ok(changes)
    }

    /// Format the claimed window and deliver its messages in chunks,
    /// recording after each chunk what is out.
    fn deliver(&mut self, claim: &mut Claim, changes: &[Change]) -> Result<Step, crate::Error> {
        let wit: Vec<WitChange> = changes.iter().map(to_wit).collect();
        let ctx = context(self.sink, self.max_retries, self.breaker, changes, &wit);
        let all: Vec<usize> = (0..changes.len()).collect();
        let msgs = match ctx.format_window(self.r, self.st, &all) {
            Formatted::Messages(m) => m,
            // Quarantined: the window stays in the buffer for a later tick.
            Formatted::Failed {
                kind: FailureKind::Quarantined,
                ..
            } => {
                self.spool.unlock(self.lane, claim)?;
                return Ok(Step::Stopped);
            }
            Formatted::Failed { kind, error } => {
                let parked = ctx.park(self.r, self.st, &all, kind, &error);
                return self.parked(parked, claim);
            }
        };
        self.check_digest(claim, &msgs);
        let (first, last) = (&changes[0], &changes[changes.len() - 1]);
        let id = format!("{}-{}", first.sequence, last.sequence);
        let envelopes = envelopes(self.r, &msgs, first, last, &id);
        let window = Window {
            ctx: &ctx,
            all: &all,
            id: &id,
        };
        if let Err(e) = self.sink.check(&envelopes)
            && e.kind == SinkErrorKind::TooLarge
        {
            return self.too_large(window, claim, &e);
        }
        self.send(window, claim, &envelopes)
    }

    /// A flush resumed after an interruption must send the messages it
    /// started with: if the window formats differently now (a new plugin
    /// version), all of it is sent again.
    fn check_digest(&self, claim: &mut Claim, msgs: &[prism_contract::Message]) {
        let digest = hex::encode(crate::outputs::hash_messages(msgs));
        if claim.digest.as_ref().is_some_and(|d| *d != digest) {
            tracing::warn!(
                receiver = self.r.id(),
                "the window formats differently than before the flush was interrupted (a new plugin version?); sending all of it"
            );
            claim.sent = 0;
            claim.partial.remove(WINDOW_OUT);
        }
        claim.digest = Some(digest);
    }

    /// The window's output is over the destination's size limit: halve the
    /// window (while nothing of it is out), else park it.
    fn too_large(
        &mut self,
        w: Window<'_, '_>,
        claim: &mut Claim,
        e: &SinkError,
    ) -> Result<Step, crate::Error> {
        if w.all.len() > 1 && claim.sent == 0 {
            claim.members.truncate(claim.members.len() / 2);
            claim.digest = None;
            tracing::info!(
                receiver = self.r.id(),
                changes = w.all.len(),
                "window output over the destination's size limit; halving the window"
            );
            self.spool.save_claim(self.lane, claim)?;
            return Ok(Step::Halved);
        }
        let error = format!("window {}: {e}", w.id);
        let parked = w.ctx.park(self.r, self.st, w.all, e.kind.failure(), &error);
        self.parked(parked, claim)
    }

    /// Send the window's messages not out yet (beyond the leading `sent`,
    /// and not in the claim's record of a partial failure), a chunk at a
    /// time, saving after each chunk what got out.
    fn send(
        &mut self,
        w: Window<'_, '_>,
        claim: &mut Claim,
        envelopes: &[Envelope<'_>],
    ) -> Result<Step, crate::Error> {
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
            self.record_out(claim, &mut out, !got.is_empty(), w.id)?;
            if let Err(e) = result {
                return self.chunk_failed(w, claim, &e);
            }
            crash_point("flush-sent");
        }
        self.finish(&claim.members)?;
        Ok(Step::Done)
    }

    /// Record in the claim which messages are out (`out`, folded into the
    /// leading `sent` where it can be), and save it when anything new got
    /// out, so it is never sent again.
    fn record_out(
        &mut self,
        claim: &mut Claim,
        out: &mut BTreeSet<usize>,
        new: bool,
        id: &str,
    ) -> Result<(), crate::Error> {
        while out.remove(&claim.sent) {
            claim.sent += 1;
        }
        if !out.is_empty() {
            claim
                .partial
                .insert(WINDOW_OUT.to_owned(), out.iter().copied().collect());
        }
        if !new {
            return Ok(());
        }
        self.spool.save_claim(self.lane, claim).inspect_err(|e| {
            // Once more, with the lease given up in the same write, as a
            // retry lane does: after a passing failure the next tick
            // resumes after the chunk instead of waiting out the lease and
            // sending it again past SQS's 5-minute deduplication window.
            if self.spool.unlock(self.lane, claim).is_ok() {
                tracing::warn!(receiver = self.r.id(), window = %id, error = %e, "flush progress saved on a second try; the next tick resumes after it");
            }
        })
    }

    /// A chunk did not all go out: a destination that refused it parks the
    /// window (sending again fails the same way); an unavailable one leaves
    /// it buffered for the next tick.
    fn chunk_failed(
        &mut self,
        w: Window<'_, '_>,
        claim: &mut Claim,
        e: &SinkError,
    ) -> Result<Step, crate::Error> {
        if e.kind != SinkErrorKind::Unavailable {
            let error = format!("window {}: {e}", w.id);
            let parked = w.ctx.park_as(
                self.r,
                self.st,
                w.all,
                e.kind.failure(),
                &e.dead_letter_kind(),
                &error,
            );
            return self.parked(parked, claim);
        }
        tracing::warn!(receiver = self.r.id(), window = %w.id, error = %e, "flush could not deliver; the window stays buffered for the next tick");
        self.st.error(
            "delivery",
            format!("receiver {} window {}: {e}", self.r.id(), w.id),
        );
        self.spool.unlock(self.lane, claim)?;
        Ok(Step::Stopped)
    }

    /// After parking the window: drop it when parked, else keep it for the next tick.
    fn parked(&mut self, parked: super::Settled, claim: &Claim) -> Result<Step, crate::Error> {
        if parked.handled() {
            self.finish(&claim.members)?;
            Ok(Step::Done)
        } else {
            self.spool.unlock(self.lane, claim)?;
            Ok(Step::Stopped)
        }
    }

    /// The window is delivered (or parked): drop it and the claim.
    fn finish(&mut self, members: &[String]) -> Result<(), crate::Error> {
        self.spool.remove(self.lane, members)?;
        // Unknown until the next read: a window may take entries other
        // runs appended meanwhile.
        self.left = None;
        crash_point("flush-removed");
        self.spool.release(self.lane)
    }

    /// An entry that no longer reads as a change: park it as it is stored.
    pub(super) fn park_unreadable(&mut self, e: &Spooled, error: &str) -> Result<(), crate::Error> {
        let dead = DeadLetter {
            receiver: self.r.id().to_owned(),
            plugin_digest: None,
            key: String::new(),
            sequence: e.sequence.clone(),
            ordinal: 0,
            error_kind: FailureKind::Unreadable.as_str().into(),
            error: format!("{} entry {}: {error}", self.lane, e.sequence),
            change: e.change.clone(),
        };
        self.st
            .error(FailureKind::Unreadable.as_str(), dead.error.clone());
        self.sink.park(&dead).map_err(|s| {
            crate::Error::spool(
                "-",
                self.lane.to_string(),
                format!("could not park an unreadable entry: {s}"),
            )
        })
    }
}

/// The context a flush formats a window in: hold what cannot go out,
/// one change per pack, no dedup, no deadline of its own (the tick
/// starts a flush only with the window's budget left, see `tick_with`).
fn context<'c>(
    sink: &'c dyn Sink,
    max_retries: u32,
    breaker: &'c BreakerConfig,
    changes: &'c [Change],
    wit: &'c [WitChange],
) -> Context<'c> {
    Context {
        changes,
        wit,
        sink,
        progress: &NO_PROGRESS,
        max_retries,
        hold_unavailable: true,
        already: &never_handled,
        outputs: None,
        lanes: None,
        sent: None,
        hold_retry: false,
        hold_quarantined: true,
        breaker,
        // The tick started this flush only with the window's budget
        // left (see `tick_with`).
        finish_by: None,
        share: None,
        used: &NONE_USED,
        pack: 1,
        pack_bytes: super::PACK_BYTES,
    }
}

/// The window's messages as the sink takes them: each under the
/// window's last sequence and its id (`<first>-<last>`).
fn envelopes<'m>(
    r: &'m ActiveReceiver,
    msgs: &'m [prism_contract::Message],
    first: &'m Change,
    last: &'m Change,
    id: &'m str,
) -> Vec<Envelope<'m>> {
    msgs.iter()
        .enumerate()
        .map(|(index, message)| Envelope {
            receiver: r.id(),
            key: &first.key,
            sequence: &last.sequence,
            ordinal: 0,
            index,
            message,
            digest: r.digest(),
            window: Some(id),
        })
        .collect()
}
