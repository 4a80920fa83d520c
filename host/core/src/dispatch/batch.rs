//! What a worker does for a batched receiver: collect what it accepts, then
//! buffer it in the spool (flushing what is due) or, without a spool, cut
//! windows within the run and format them through `format-batch`.

use std::time::Instant;

use super::ReceiverStats;
use super::worker::{Context, Formatted, Warm};
use crate::breaker::Gate;
use crate::receivers::ActiveReceiver;
use crate::spool::{Lane, Spooled};
use prism_engine::WitChange;
use prism_types::manifest::Mode;

/// The error kind of changes not run because their receiver is quarantined.
pub(super) const QUARANTINED: &str = "quarantined";

impl Context<'_> {
    /// Handle every change, in order, for a batched receiver: collect what it
    /// accepts. With a spool, append it to the receiver's buffer and flush
    /// whatever is due; without one, flush through `format-batch` when a
    /// window limit is hit (count, image bytes, or stream-time age), and at
    /// the end.
    pub fn batch(&self, r: &ActiveReceiver) -> ReceiverStats {
        let Mode::Batch {
            max_count,
            max_bytes,
            max_age_secs,
        } = r.manifest.mode
        else {
            unreachable!("batch units are made for batch receivers only");
        };
        let mut st = ReceiverStats::default();
        let mut window: Vec<usize> = Vec::new();
        let mut bytes = 0usize;
        // Set when a flush could not be delivered: from then on every change
        // of this receiver is held, the failed window's included.
        let mut holding = false;
        let mut warm: Warm = None;
        for i in 0..self.changes.len() {
            if !self.should_run(r, i, &mut st) {
                continue;
            }
            if holding {
                st.held.push(i);
                continue;
            }
            if self.out_of_time() {
                // Not started: this change, the window so far (without a
                // spool it would be formatted now) and the rest are held.
                st.deferred += 1;
                holding = true;
                st.held.push(i);
                if self.lanes.is_none() {
                    st.held.append(&mut window);
                }
                continue;
            }
            st.seen += 1;
            if !r.interested(&self.changes[i]) {
                st.filtered += 1;
                continue;
            }
            if let Gate::Open { remaining } = r.breaker.admit() {
                // Nothing to ask `accepts`: parked as `quarantined`, to be
                // replayed from the dead letters (held where parking fails).
                st.quarantined += 1;
                if !self.quarantined(r, &mut st, &[i], remaining) {
                    holding = true;
                    st.held.push(i);
                }
                continue;
            }
            let started = Instant::now();
            let accepted = self.accepts(r, i, &mut warm).map(|(a, session, used)| {
                warm = Some((session, used + 1));
                a
            });
            st.plugin_time += started.elapsed();
            self.breaker_outcome(r, accepted.as_ref().err().map(|e| e.kind()));
            match accepted {
                Ok(true) if self.lanes.is_some() => {
                    st.accepted += 1;
                    window.push(i);
                }
                Ok(true) => {
                    st.accepted += 1;
                    let c = &self.changes[i];
                    let too_old = window.first().is_some_and(|&f| {
                        c.time_ms.saturating_sub(self.changes[f].time_ms) >= max_age_secs * 1000
                    });
                    if too_old {
                        holding = !self.flush(r, &mut st, std::mem::take(&mut window));
                        bytes = 0;
                    }
                    window.push(i);
                    bytes += c.image_bytes();
                    if holding {
                        st.held.append(&mut window);
                    } else if window.len() >= max_count || bytes >= max_bytes {
                        holding = !self.flush(r, &mut st, std::mem::take(&mut window));
                        bytes = 0;
                    }
                }
                Ok(false) => st.skipped += 1,
                Err(e) => {
                    let error = self.describe(r, i, &e.to_string());
                    if !self.park(r, &mut st, &[i], e.kind(), &error) {
                        holding = true;
                        st.held.push(i);
                    }
                }
            }
        }
        if let Some(l) = self.lanes {
            self.buffer(r, l, &mut st, window);
        } else if !window.is_empty() {
            self.flush(r, &mut st, window);
        }
        st
    }

    /// Append the accepted changes to the receiver's buffer, then flush it
    /// if a limit is reached. A buffer that cannot be written holds them.
    fn buffer(
        &self,
        r: &ActiveReceiver,
        l: &super::Lanes<'_>,
        st: &mut ReceiverStats,
        accepted: Vec<usize>,
    ) {
        if accepted.is_empty() {
            return;
        }
        let lane = Lane::Buffer {
            receiver: r.id().to_owned(),
        };
        let entries: Vec<Spooled> = accepted
            .iter()
            .map(|&i| Spooled::new(&self.changes[i], l.now_ms))
            .collect();
        match l.spool.append(&lane, &entries) {
            Ok(a) => {
                st.buffered += a.added;
                st.already_handled += accepted.len() as u64 - a.added;
                if super::lanes::due(r, &a.info, l.now_ms) {
                    let flushed = super::lanes::flush(
                        r,
                        l.spool,
                        self.sink,
                        (self.max_retries, self.breaker),
                        super::TickOptions::at(l.now_ms),
                    );
                    // Busy: the flush under way elsewhere, or the tick, takes it.
                    st.merge(flushed.unwrap_or_default());
                }
            }
            Err(e) => {
                tracing::error!(receiver = r.id(), error = %e, "could not buffer changes; held");
                st.error("spool", e.to_string());
                st.held.extend(accepted);
            }
        }
    }

    /// Format and deliver one window; `false` when it is held for a retry
    /// (its indices are then in `st.held`).
    fn flush(&self, r: &ActiveReceiver, st: &mut ReceiverStats, window: Vec<usize>) -> bool {
        let handled = match self.format_window(r, st, &window) {
            Formatted::Messages(msgs) => {
                // A window's output spans many products: never deduplicated.
                self.deliver(r, st, &window, &msgs, false)
            }
            Formatted::Failed { kind, error } => self.park(r, st, &window, kind, &error),
        };
        if !handled {
            st.held.extend(&window);
        }
        handled
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
                kind: QUARANTINED,
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
        let outcome = r
            .plugin
            .session(r.config.clone(), r.manifest.limits)
            .map(|session| {
                // A window gets a fresh sandbox, and does not hand it on.
                self.format(
                    r,
                    session,
                    0,
                    st,
                    |s| s.format_batch(&wits),
                    first,
                    &mut None,
                )
            });
        st.plugin_time += started.elapsed();
        self.breaker_outcome(
            r,
            match &outcome {
                Ok(Formatted::Failed { kind, .. }) => Some(*kind),
                Err(e) => Some(e.kind()),
                Ok(Formatted::Messages(_)) => None,
            },
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
