//! What a worker does for a batched receiver: collect what it accepts, then
//! buffer it in the spool (flushing what is due) or, without a spool, cut
//! windows within the run and format them through `format-batch`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::worker::{Admission, Context, Formatted, Sandbox, Warm};
use super::{ReceiverStats, Settled};
use crate::breaker::Gate;
use crate::receivers::ActiveReceiver;
use crate::spool::{Lane, LaneInfo, Spooled};
use prism_engine::{CallError, WitChange};
use prism_types::failure::FailureKind;
use prism_types::manifest::WindowLimits;

/// Where a batched receiver's accepted changes go, in a run with a spool.
#[derive(Debug, Clone, Copy)]
enum Buffer {
    /// The buffer was empty: windows are cut in the run, as without a spool,
    /// and only what is left at its end is appended. A flood's stream
    /// batches fill whole windows and never touch the spool.
    Empty,
    /// The buffer holds earlier changes (these totals, as far as known):
    /// accepted changes are appended behind them, and the buffer flushed
    /// when a window is full. If that empties it, windows are cut in the
    /// run again.
    Holding(LaneInfo),
}

impl Context<'_> {
    /// Handle every change, in order, for a batched receiver: collect what it
    /// accepts and cut windows at their limits (count, image bytes, or
    /// stream-time age), formatted through `format-batch`.
    ///
    /// Without a spool the last window is flushed at the end of the run.
    /// With one, what the run cannot finish is appended to the receiver's
    /// buffer (flushed later, by limit or by the tick); and while the buffer
    /// holds earlier changes, new ones go behind them instead of into windows
    /// of their own, so windows stay in stream order.
    pub fn batch(&self, r: &ActiveReceiver) -> ReceiverStats {
        let mut run = BatchRun::new(self, r);
        for i in 0..self.changes.len() {
            run.offer(i);
        }
        run.finish()
    }
}

/// The window being cut in the run: its changes and their image bytes.
#[derive(Debug, Default)]
struct Window {
    changes: Vec<usize>,
    bytes: u64,
}

/// One batched receiver's pass over a run's changes: what it collected,
/// and where it stands.
struct BatchRun<'c, 'a> {
    cx: &'c Context<'a>,
    r: &'c ActiveReceiver,
    limits: WindowLimits,
    st: ReceiverStats,
    window: Window,
    /// Changes bound for the spool buffer, behind what it holds.
    behind: Vec<usize>,
    /// Where accepted changes go, in a run with a spool.
    buffer: Option<Buffer>,
    /// Windows cut here (the buffer empty, at the start or once a flush in
    /// the run emptied it) go out past the buffer's memory of what it
    /// handled: a stream batch retried whole must not send again what a
    /// flush of the buffer, or a window cut in an earlier try, delivered or
    /// parked (an older change after a newer one). Unreadable, every change
    /// goes to the buffer, whose append leaves those out.
    handled: HashSet<String>,
    /// Whether windows may be cut here at all: not without that memory.
    may_cut: bool,
    /// Set when changes could not be delivered or buffered: from then on
    /// every change of this receiver is held (a retry of the record).
    holding: bool,
    /// Set when a flush in the run did not empty the buffer.
    flush_failed: bool,
    warm: Warm,
}

impl<'c, 'a> BatchRun<'c, 'a> {
    fn new(cx: &'c Context<'a>, r: &'c ActiveReceiver) -> Self {
        let limits = r
            .manifest
            .mode
            .batch_limits()
            .expect("batch units are made for batch receivers only");
        let mut run = Self {
            cx,
            r,
            limits,
            st: ReceiverStats::default(),
            window: Window::default(),
            behind: Vec::new(),
            buffer: cx.lanes.map(|l| match l.buffered.get(r.id()) {
                _ if !l.cut_windows => Buffer::Holding(LaneInfo::default()),
                Some(info) if info.count > 0 => Buffer::Holding(*info),
                _ => Buffer::Empty,
            }),
            handled: HashSet::new(),
            may_cut: true,
            holding: false,
            flush_failed: false,
            warm: None,
        };
        if let Some(l) = cx.lanes
            && l.cut_windows
            && !l.replay
        {
            match cx.handled(r, l) {
                Some(h) => run.handled = h,
                None => {
                    run.may_cut = false;
                    run.buffer = Some(Buffer::Holding(LaneInfo::default()));
                }
            }
        }
        run
    }

    /// Hold change `i`, and from now on every later one.
    fn hold(&mut self, i: usize) {
        self.holding = true;
        self.st.held.push(i);
    }

    /// Offer change `i` to the receiver, unless it is handled already,
    /// held behind an earlier one, or out of time.
    fn offer(&mut self, i: usize) {
        let (cx, r) = (self.cx, self.r);
        if !cx.should_run(r, i, &mut self.st) {
            return;
        }
        if self.handled.contains(&cx.changes[i].sequence) {
            self.st.already_handled += 1;
            return;
        }
        if self.holding {
            self.st.held.push(i);
            return;
        }
        if cx.out_of_time(r) {
            // Not started: this change and the rest are held. Without a
            // spool the window so far would be formatted now: held too.
            self.st.deferred += 1;
            self.hold(i);
            if cx.lanes.is_none() {
                let window = std::mem::take(&mut self.window);
                self.st.held.extend(window.changes);
            }
            return;
        }
        match cx.admit(r, &mut self.st, i) {
            Admission::Run => {}
            Admission::Passed => return,
            Admission::Held => return self.hold(i),
        }
        match self.accepts(i) {
            Ok(true) => self.accepted(i),
            Ok(false) => self.st.skipped += 1,
            Err(e) => {
                let error = cx.describe(r, i, &e.to_string());
                if !cx.park(r, &mut self.st, &[i], e.kind(), &error).handled() {
                    self.hold(i);
                }
            }
        }
    }

    /// `accepts` for change `i` (in the warm sandbox when there is one),
    /// its time charged to the receiver and told to its breaker.
    fn accepts(&mut self, i: usize) -> Result<bool, CallError> {
        let (cx, r) = (self.cx, self.r);
        let started = Instant::now();
        let accepted = cx.accepts(r, i, &mut self.warm).map(|(a, sandbox)| {
            self.warm = sandbox.served();
            a
        });
        let took = started.elapsed();
        cx.charge(r, &mut self.st, took);
        cx.breaker_outcome(
            r,
            accepted.as_ref().err().map(|e| e.kind()),
            took,
            Duration::from_millis(r.manifest.limits.timeout_ms),
        );
        accepted
    }

    /// An accepted change goes behind the buffer while it holds earlier
    /// changes, else into the window (cut when it is full or too old).
    fn accepted(&mut self, i: usize) {
        self.st.accepted += 1;
        if let (Some(l), Some(Buffer::Holding(info))) = (self.cx.lanes, self.buffer) {
            return self.append_behind(l, info, i);
        }
        let changes = self.cx.changes;
        let c = &changes[i];
        let too_old = self
            .window
            .changes
            .first()
            .is_some_and(|&f| self.limits.too_old(changes[f].time_ms, c.time_ms));
        if too_old {
            self.cut();
        }
        if self.holding {
            self.st.held.push(i);
            return;
        }
        if matches!(self.buffer, Some(Buffer::Holding(_))) {
            // The last window went to the buffer: this one goes behind it.
            self.behind.push(i);
            return;
        }
        self.window.changes.push(i);
        self.window.bytes += c.image_bytes() as u64;
        if self
            .limits
            .full(self.window.changes.len() as u64, self.window.bytes)
        {
            self.cut();
        }
    }

    /// Cut the window: format and deliver it (see [`Context::cut`]).
    fn cut(&mut self) {
        let window = std::mem::take(&mut self.window);
        let (cx, r) = (self.cx, self.r);
        cx.cut(
            r,
            &mut self.st,
            window.changes,
            &mut self.buffer,
            &mut self.holding,
        );
    }

    /// Put change `i` behind what the buffer holds (`info`, before it);
    /// when that makes a full window, append, flush, and look again.
    fn append_behind(&mut self, l: &super::Lanes<'_>, mut info: LaneInfo, i: usize) {
        self.behind.push(i);
        info.count += 1;
        info.bytes += self.cx.changes[i].image_bytes() as u64;
        self.buffer = Some(Buffer::Holding(info));
        if !self.limits.full(info.count, info.bytes) || self.flush_failed || !l.cut_windows {
            return;
        }
        let behind = std::mem::take(&mut self.behind);
        let (cx, r) = (self.cx, self.r);
        match cx.buffer(r, l, &mut self.st, behind) {
            // A replay (a redrive) sends again on purpose what the buffer
            // handled before: its changes carry their old sequences, and
            // reading the buffer's memory of them here dropped a redriven
            // letter's change as handled (the simulation found it).
            Some(left) if left.count == 0 && self.may_cut && l.replay => {
                self.buffer = Some(Buffer::Empty);
            }
            // The flush handled some of this run's changes: read again what
            // to leave out.
            Some(left) if left.count == 0 && self.may_cut => match cx.handled(r, l) {
                Some(h) => {
                    self.handled = h;
                    self.buffer = Some(Buffer::Empty);
                }
                None => {
                    self.may_cut = false;
                    self.buffer = Some(Buffer::Holding(left));
                }
            },
            // Emptied, but what the buffer handled is unknown here: go on
            // appending (its append leaves the handled out).
            Some(left) if left.count == 0 => self.buffer = Some(Buffer::Holding(left)),
            // Not emptied (busy, or the destination failed): the rest waits
            // for the end of the run, so it is not tried per change.
            Some(left) => {
                self.flush_failed = true;
                self.buffer = Some(Buffer::Holding(left));
            }
            None => self.holding = true,
        }
    }

    /// What the run did not finish: with a spool it waits in the buffer (the
    /// window being cut, or what came in behind the buffer: never both);
    /// without one, the last window is flushed now.
    fn finish(mut self) -> ReceiverStats {
        let (cx, r) = (self.cx, self.r);
        let window = std::mem::take(&mut self.window).changes;
        match cx.lanes {
            Some(l) => {
                self.behind.extend(window);
                cx.buffer(r, l, &mut self.st, self.behind);
            }
            None if !window.is_empty() => {
                cx.flush(r, &mut self.st, window);
            }
            None => {}
        }
        self.st
    }
}

impl Context<'_> {
    /// Which of the run's changes the receiver's buffer handled (see
    /// [`crate::spool::Spool::handled`]); `None` when that cannot be read.
    fn handled(
        &self,
        r: &ActiveReceiver,
        l: &super::Lanes<'_>,
    ) -> Option<std::collections::HashSet<String>> {
        let lane = Lane::Buffer {
            receiver: r.id().to_owned(),
        };
        let sequences: Vec<String> = self.changes.iter().map(|c| c.sequence.clone()).collect();
        l.spool
            .handled(&lane, &sequences)
            .inspect_err(|e| {
                tracing::warn!(receiver = r.id(), error = %e, "could not read what the buffer handled; this run appends to it");
            })
            .ok()
    }

    /// A full window cut in the run: format and deliver it. With a spool, a
    /// window that cannot be delivered goes to the buffer (with what got
    /// out, so the flush sends only the rest), and later changes go behind
    /// it; without one, or when the buffer cannot take it, it is held.
    fn cut(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        window: Vec<usize>,
        buffer: &mut Option<Buffer>,
        holding: &mut bool,
    ) {
        if window.is_empty() {
            return;
        }
        let Some(l) = self.lanes else {
            *holding = !self.flush(r, st, window).handled();
            return;
        };
        let (handled, msgs) = self.flush_window(r, st, &window);
        if handled.handled() {
            // Remembered as the buffer's flushes are: a retry of this batch
            // (cut differently, its ledger lost) leaves them out instead of
            // sending an older change after a newer one. Without that
            // memory the run stops here for this receiver: a retry may send
            // the window again (copies), but nothing after it may go out
            // first. Going on appended the product's newer change to the
            // buffer, a flush sent it, and the retry then sent the window's
            // older change last (the simulation found it, seed 79278).
            let lane = Lane::Buffer {
                receiver: r.id().to_owned(),
            };
            let sequences: Vec<String> = window
                .iter()
                .map(|&i| self.changes[i].sequence.clone())
                .collect();
            if let Err(e) = l.spool.mark_handled(&lane, &sequences) {
                tracing::warn!(receiver = r.id(), error = %e, "could not remember a window cut in the run as handled; the rest of the run is held, and a retry may send the window again");
                *holding = true;
            }
            return;
        }
        // Held by `flush_window`: buffer it instead.
        st.held.retain(|h| !window.contains(h));
        let out = st.partial.remove(&window[0]).unwrap_or_default();
        match self.buffer_window(r, l, st, &window, msgs.as_deref(), &out) {
            Some(info) => *buffer = Some(Buffer::Holding(info)),
            None => {
                if !out.is_empty() {
                    st.partial.insert(window[0], out);
                }
                st.held.extend(&window);
                *holding = true;
            }
        }
    }

    /// Append a window that could not be delivered to the buffer, and claim
    /// it as the buffer's next window with the messages that got out (a
    /// leading run of `out`), so the flush resumes it. `None` when the buffer
    /// cannot be written.
    fn buffer_window(
        &self,
        r: &ActiveReceiver,
        l: &super::Lanes<'_>,
        st: &mut ReceiverStats,
        window: &[usize],
        msgs: Option<&[prism_contract::Message]>,
        out: &[usize],
    ) -> Option<LaneInfo> {
        let lane = Lane::Buffer {
            receiver: r.id().to_owned(),
        };
        let entries: Vec<Spooled> = window.iter().map(|&i| l.entry(&self.changes[i])).collect();
        let appended = match l.spool.append(&lane, &entries) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(receiver = r.id(), error = %e, "could not buffer a window that was not delivered; held");
                st.error("spool", e.to_string());
                return None;
            }
        };
        st.buffered += appended.added;
        if let Some(msgs) = msgs.filter(|_| !out.is_empty()) {
            // Best effort: without it the flush sends the window whole
            // (FIFO queues drop the copies by deduplication id).
            match l.spool.claim(&lane, l.now_ms, false) {
                Ok(Some(mut claim)) if claim.members.is_empty() => {
                    claim.members = entries.iter().map(|e| e.sequence.clone()).collect();
                    claim.sent = (0..).take_while(|p| out.contains(p)).count();
                    let rest: Vec<usize> =
                        out.iter().copied().filter(|&p| p >= claim.sent).collect();
                    if !rest.is_empty() {
                        claim
                            .partial
                            .insert(super::flush::WINDOW_OUT.to_owned(), rest);
                    }
                    claim.digest = Some(hex::encode(crate::outputs::hash_messages(msgs)));
                    if let Err(e) = l.spool.unlock(&lane, &claim) {
                        tracing::warn!(receiver = r.id(), error = %e, "could not record which messages of the window got out; the flush sends all of it");
                    }
                }
                Ok(Some(claim)) => {
                    if let Err(e) = l.spool.unlock(&lane, &claim) {
                        tracing::warn!(receiver = r.id(), error = %e, "could not unlock the buffer");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(receiver = r.id(), error = %e, "could not record which messages of the window got out; the flush sends all of it");
                }
            }
        }
        Some(appended.info)
    }

    /// Append the accepted changes to the receiver's buffer, then flush it
    /// if a limit is reached. The buffer's totals afterwards (`count` 0 when
    /// the flush emptied it), or `None` when it could not be written (the
    /// changes are then held).
    fn buffer(
        &self,
        r: &ActiveReceiver,
        l: &super::Lanes<'_>,
        st: &mut ReceiverStats,
        accepted: Vec<usize>,
    ) -> Option<LaneInfo> {
        if accepted.is_empty() {
            return Some(l.buffered.get(r.id()).copied().unwrap_or_default());
        }
        let lane = Lane::Buffer {
            receiver: r.id().to_owned(),
        };
        let entries: Vec<Spooled> = accepted
            .iter()
            .map(|&i| l.entry(&self.changes[i]))
            .collect();
        match l.spool.append(&lane, &entries) {
            Ok(a) => {
                st.buffered += a.added;
                st.already_handled += accepted.len() as u64 - a.added;
                if !super::flush::due(r, &a.info, l.now_ms) {
                    return Some(a.info);
                }
                let (flushed, left) = super::flush::flush_left(
                    r,
                    l.spool,
                    self.sink,
                    (self.max_retries, self.breaker),
                    super::TickOptions::at(l.now_ms),
                );
                // Busy: the flush under way elsewhere, or the tick, takes it.
                st.merge(flushed.unwrap_or_default());
                // Unknown: taken as still holding what was there.
                Some(left.unwrap_or(a.info))
            }
            Err(e) => {
                tracing::error!(receiver = r.id(), error = %e, "could not buffer changes; held");
                st.error("spool", e.to_string());
                st.held.extend(accepted);
                None
            }
        }
    }

    /// Format and deliver one window; `false` when it is held for a retry
    /// (its indices are then in `st.held`).
    fn flush(&self, r: &ActiveReceiver, st: &mut ReceiverStats, window: Vec<usize>) -> Settled {
        self.flush_window(r, st, &window).0
    }

    /// [`Self::flush`], and the window's messages when it was formatted.
    fn flush_window(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        window: &[usize],
    ) -> (Settled, Option<Vec<prism_contract::Message>>) {
        let (handled, msgs) = match self.format_window(r, st, window) {
            Formatted::Messages(msgs) => {
                // A window's output spans many products: never deduplicated.
                (self.deliver(r, st, window, &msgs, false), Some(msgs))
            }
            Formatted::Failed { kind, error } => (self.park(r, st, window, kind, &error), None),
        };
        if !handled.handled() {
            st.held.extend(window);
        }
        (handled, msgs)
    }

    /// Run `format-batch` over the changes at `window` in a fresh sandbox.
    pub(super) fn format_window(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        window: &[usize],
    ) -> Formatted {
        if let Gate::Open { remaining } = r.breaker.admit() {
            st.quarantined += window.len() as u64;
            return Formatted::Failed {
                kind: FailureKind::Quarantined,
                error: self.describe(
                    r,
                    window[0],
                    &format!(
                        "batch of {}: quarantined: its plugin kept failing; not run for another {} s",
                        window.len(),
                        remaining.as_secs()
                    ),
                ),
            };
        }
        st.batches += 1;
        let started = Instant::now();
        let wits: Vec<WitChange> = window.iter().map(|&i| self.wit[i].clone()).collect();
        let first = &self.changes[window[0]];
        let last = &self.changes[*window.last().expect("non-empty window")];
        // A window gets a fresh sandbox, and does not hand it on.
        let outcome = Sandbox::fresh(r).map(|sandbox| {
            self.format(r, sandbox, st, |s| s.format_batch(&wits), first, &mut None)
        });
        let took = started.elapsed();
        self.charge(r, st, took);
        self.breaker_outcome(
            r,
            match &outcome {
                Ok(Formatted::Failed { kind, .. }) => Some(*kind),
                Err(e) => Some(e.kind()),
                Ok(Formatted::Messages(_)) => None,
            },
            took,
            // The window's budget, as the engine sets it.
            Duration::from_millis(r.manifest.limits.timeout_ms)
                .saturating_mul(window.len() as u32)
                .min(Duration::from_millis(prism_types::limits::MAX_TIMEOUT_MS)),
        );
        match outcome {
            Ok(Formatted::Failed { kind, error }) => Formatted::Failed {
                kind,
                error: format!(
                    "batch of {} changes (sequences {}..{}): {error}",
                    window.len(),
                    first.sequence,
                    last.sequence
                ),
            },
            Ok(done) => done,
            Err(e) => Formatted::Failed {
                kind: e.kind(),
                error: self.describe(r, window[0], &format!("batch of {}: {e}", window.len())),
            },
        }
    }
}
