//! What one worker does with one unit of work: immediate receivers change by
//! change, batched receivers window by window.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use prism_sdk::{FormatError, Message};

use super::{Progress, ReceiverStats};
use crate::change::Change;
use crate::engine::{CallError, GuestLog, Session, WitChange};
use crate::manifest::Mode;
use crate::receivers::ActiveReceiver;
use crate::sink::{DeadLetter, Envelope, Sink, SinkErrorKind};
use crate::spool::{Lane, Spooled};

/// Shared, read-only state of a run.
pub(super) struct Context<'a> {
    pub changes: &'a [Change],
    pub wit: &'a [WitChange],
    pub sink: &'a dyn Sink,
    pub progress: &'a Progress,
    pub max_retries: u32,
    /// Hold (rather than park) what an unavailable destination refused.
    pub hold_unavailable: bool,
    /// Pairs an earlier attempt handled.
    pub already: super::AlreadyHandled<'a>,
    /// Output dedup state.
    pub outputs: Option<&'a crate::outputs::OutputMemory>,
    /// The spool: batch buffers and retry lanes.
    pub lanes: Option<&'a super::Lanes<'a>>,
    /// Hold (rather than park) a change still asking to retry.
    pub hold_retry: bool,
}

/// A unit's sandbox kept for its next change, with how many it served.
type Warm = Option<(Session, u32)>;

/// Whether a call that failed in a reused sandbox is worth one more try in
/// a fresh one: anything but a timeout (a fresh sandbox does not make a
/// loop shorter, and a retry would double the time a hostile plugin costs).
fn retry_fresh(e: &CallError) -> bool {
    e.kind() != "timeout"
}

/// How formatting one change (or window) ended.
pub(super) enum Formatted {
    Messages(Vec<Message>),
    Failed { kind: &'static str, error: String },
}

impl Context<'_> {
    /// Handle the changes at `indices` (in order) for an immediate receiver.
    /// Once a change of a product is held, the product's later changes are
    /// held behind it (in its retry lane, when there is a spool), so order
    /// per key is kept across the retry; other products carry on.
    pub fn immediate(
        &self,
        r: &ActiveReceiver,
        indices: impl Iterator<Item = usize>,
    ) -> ReceiverStats {
        let mut st = ReceiverStats::default();
        let mut stuck: HashSet<&str> = HashSet::new();
        let mut warm: Warm = None;
        for i in indices {
            if !self.should_run(r, i, &mut st) {
                continue;
            }
            let key = self.changes[i].key.as_str();
            if stuck.contains(key) || self.lane_open(r, key) {
                stuck.insert(key);
                self.hold(r, &mut st, i);
                continue;
            }
            st.seen += 1;
            if !r.interested(&self.changes[i]) {
                st.filtered += 1;
                continue;
            }
            let started = Instant::now();
            let outcome = self
                .accepts(r, i, &mut warm)
                .map(|(accepted, session, used)| {
                    if !accepted {
                        warm = Some((session, used + 1));
                        return None;
                    }
                    Some(self.format(
                        r,
                        session,
                        used,
                        &mut st,
                        |s| s.format(&self.wit[i]),
                        &self.changes[i],
                        &mut warm,
                    ))
                });
            st.plugin_time += started.elapsed();
            let handled = match outcome {
                Ok(None) => {
                    st.skipped += 1;
                    true
                }
                Ok(Some(Formatted::Messages(msgs))) => {
                    st.accepted += 1;
                    self.deliver(r, &mut st, &[i], &msgs, r.manifest.dedup)
                }
                Ok(Some(Formatted::Failed { kind, error }))
                    if kind == "retry-exhausted" && (self.hold_retry || self.lanes.is_some()) =>
                {
                    // Still asking to retry: try again later, in order.
                    st.accepted += 1;
                    st.error(kind, error);
                    false
                }
                Ok(Some(Formatted::Failed { kind, error })) => {
                    st.accepted += 1;
                    self.park(r, &mut st, &[i], kind, &error)
                }
                Err(e) => {
                    let error = self.describe(r, i, &e.to_string());
                    self.park(r, &mut st, &[i], e.kind(), &error)
                }
            };
            if !handled {
                stuck.insert(key);
                self.hold(r, &mut st, i);
            }
        }
        st
    }

    /// Does this receiver have a retry lane open for `key`?
    fn lane_open(&self, r: &ActiveReceiver, key: &str) -> bool {
        self.lanes.is_some_and(|l| {
            !l.open.is_empty() && l.open.contains(&(r.id().to_owned(), key.to_owned()))
        })
    }

    /// Hold change `i` for a retry: in the receiver's retry lane for its
    /// product when there is a spool, else reported as held. A lane that
    /// cannot be written is reported too: nothing is dropped.
    fn hold(&self, r: &ActiveReceiver, st: &mut ReceiverStats, i: usize) {
        let c = &self.changes[i];
        if let Some(l) = self.lanes {
            let lane = Lane::Retry {
                receiver: r.id().to_owned(),
                key: c.key.clone(),
            };
            match l.spool.append(&lane, &[Spooled::new(c, l.now_ms)]) {
                Ok(a) if a.added == 0 => {
                    // The lane handled it already (a retried stream batch).
                    st.already_handled += 1;
                    return;
                }
                Ok(_) => {
                    tracing::info!(receiver = r.id(), key = %c.key, sequence = %c.sequence, "change waits in its retry lane");
                    st.laned += 1;
                    return;
                }
                Err(e) => {
                    tracing::error!(receiver = r.id(), key = %c.key, sequence = %c.sequence, error = %e, "could not put a change in its retry lane; held");
                    st.error("spool", e.to_string());
                }
            }
        }
        st.held.push(i);
    }

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
            st.seen += 1;
            if !r.interested(&self.changes[i]) {
                st.filtered += 1;
                continue;
            }
            let started = Instant::now();
            let accepted = self.accepts(r, i, &mut warm).map(|(a, session, used)| {
                warm = Some((session, used + 1));
                a
            });
            st.plugin_time += started.elapsed();
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
                        self.max_retries,
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

    /// Count change `i` and say whether to run it: not when an earlier
    /// attempt handled it.
    fn should_run(&self, r: &ActiveReceiver, i: usize, st: &mut ReceiverStats) -> bool {
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        if (self.already)(r.id(), i) {
            st.already_handled += 1;
            return false;
        }
        true
    }

    /// The unit's warm sandbox if it may serve another change (with a
    /// fresh time budget), else a fresh one.
    fn checkout(&self, r: &ActiveReceiver, warm: &mut Warm) -> Result<(Session, u32), CallError> {
        if let Some((mut s, used)) = warm.take()
            && used < r.manifest.limits.reuse
        {
            s.renew();
            return Ok((s, used));
        }
        Ok((r.plugin.session(r.config.clone(), r.manifest.limits)?, 0))
    }

    /// Ask `accepts`; the session goes on to `format` (or back to `warm`).
    /// A reused sandbox that fails is replaced by a fresh one and the change
    /// tried once more, so earlier changes can never make this one fail.
    fn accepts(
        &self,
        r: &ActiveReceiver,
        i: usize,
        warm: &mut Warm,
    ) -> Result<(bool, Session, u32), CallError> {
        let (mut s, used) = self.checkout(r, warm)?;
        let accepted = s.accepts(&self.wit[i]);
        self.emit_logs(r, &self.changes[i], s.take_logs());
        match accepted {
            Ok(a) => Ok((a, s, used)),
            Err(e) if used > 0 && retry_fresh(&e) => {
                let mut s = r.plugin.session(r.config.clone(), r.manifest.limits)?;
                let accepted = s.accepts(&self.wit[i]);
                self.emit_logs(r, &self.changes[i], s.take_logs());
                Ok((accepted?, s, 0))
            }
            Err(e) => Err(e),
        }
    }

    /// Call `call` (format or format-batch), retrying on `retry` with a fresh
    /// session up to `max_retries` times. A session that served the call
    /// cleanly goes back to `warm` (`used` changes so far).
    #[allow(clippy::too_many_arguments)]
    fn format(
        &self,
        r: &ActiveReceiver,
        mut session: Session,
        mut used: u32,
        st: &mut ReceiverStats,
        call: impl Fn(&mut Session) -> Result<Result<Vec<Message>, FormatError>, CallError>,
        change: &Change,
        warm: &mut Warm,
    ) -> Formatted {
        let mut attempt = 0;
        loop {
            let result = call(&mut session);
            self.emit_logs(r, change, session.take_logs());
            let failed = |kind, what: &str| Formatted::Failed {
                kind,
                error: self.describe_change(r, change, what),
            };
            let fresh = || r.plugin.session(r.config.clone(), r.manifest.limits);
            match result {
                Ok(Ok(msgs)) => {
                    *warm = Some((session, used + 1));
                    return Formatted::Messages(msgs);
                }
                Ok(Err(FormatError::Reject(reason))) => {
                    *warm = Some((session, used + 1));
                    return failed("rejected", &format!("rejected: {reason}"));
                }
                Ok(Err(FormatError::Retry(reason))) if attempt < self.max_retries => {
                    attempt += 1;
                    st.retries += 1;
                    tracing::info!(receiver = r.id(), key = %change.key, sequence = %change.sequence, attempt, reason = %reason, "plugin asked to retry");
                    (session, used) = match fresh() {
                        Ok(s) => (s, 0),
                        Err(e) => return failed(e.kind(), &e.to_string()),
                    };
                }
                Ok(Err(FormatError::Retry(reason))) => {
                    return failed(
                        "retry-exhausted",
                        &format!("still asking to retry after {attempt} retries: {reason}"),
                    );
                }
                Err(e) if used > 0 && retry_fresh(&e) => {
                    (session, used) = match fresh() {
                        Ok(s) => (s, 0),
                        Err(e) => return failed(e.kind(), &e.to_string()),
                    };
                }
                Err(e) => return failed(e.kind(), &e.to_string()),
            }
        }
    }

    /// Deliver the messages of the changes at `indices` (one change, or a
    /// batch window: keyed by its first change, sequenced by its last).
    fn deliver(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        indices: &[usize],
        msgs: &[Message],
        dedup: bool,
    ) -> bool {
        if msgs.is_empty() {
            return true;
        }
        let c = &self.changes[indices[0]];
        let sequence = self.changes[*indices.last().expect("at least one change")]
            .sequence
            .as_str();
        let i = indices[0];
        let outputs = self.outputs.filter(|_| dedup);
        let hash = outputs.map(|_| crate::outputs::hash_messages(msgs));
        if let (Some(o), Some(h)) = (outputs, &hash)
            && o.unchanged(r.id(), &c.key, h)
        {
            st.suppressed += msgs.len() as u64;
            return true;
        }
        let envelopes: Vec<Envelope<'_>> = msgs
            .iter()
            .enumerate()
            .map(|(index, message)| Envelope {
                receiver: r.id(),
                key: &c.key,
                sequence,
                ordinal: i as u64 + 1,
                index,
                message,
                digest: r.digest(),
                window: None,
            })
            .collect();
        match self.sink.deliver(&envelopes) {
            Ok(()) => {
                st.messages += msgs.len() as u64;
                st.bytes += msgs.iter().map(|m| m.body.len() as u64).sum::<u64>();
                if let (Some(o), Some(h)) = (outputs, hash) {
                    o.record(r.id(), &c.key, sequence, h);
                }
                true
            }
            Err(e) if self.hold_unavailable && e.kind == SinkErrorKind::Unavailable => {
                tracing::warn!(receiver = r.id(), key = %c.key, sequence, error = %e, "destination unavailable; change held for a retry");
                st.error("delivery", self.describe(r, i, &e.to_string()));
                false
            }
            Err(e) => {
                let error = self.describe(r, i, &e.to_string());
                self.park(r, st, indices, e.kind.as_str(), &error)
            }
        }
    }

    pub(super) fn park(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        indices: &[usize],
        kind: &str,
        error: &str,
    ) -> bool {
        tracing::warn!(receiver = r.id(), digest = %r.digest(), kind, error, "change parked as a dead letter");
        st.error(kind, error.to_owned());
        for &i in indices {
            let c = &self.changes[i];
            let dead = DeadLetter {
                receiver: r.id().to_owned(),
                plugin_digest: Some(r.digest().to_string()),
                key: c.key.clone(),
                sequence: c.sequence.clone(),
                ordinal: i as u64 + 1,
                error_kind: kind.to_owned(),
                error: error.to_owned(),
                change: change_json(c),
            };
            if let Err(e) = self.sink.park(&dead) {
                // Nowhere left to put it: make it loud, count it, and hold it
                // for a retry where the caller can.
                tracing::error!(receiver = r.id(), key = %c.key, sequence = %c.sequence, error = %e, "could not park a dead letter");
                st.error(
                    "park",
                    format!("could not park {}/{}: {e}", c.key, c.sequence),
                );
                if self.hold_unavailable {
                    return false;
                }
            }
        }
        true
    }

    fn describe(&self, r: &ActiveReceiver, i: usize, what: &str) -> String {
        self.describe_change(r, &self.changes[i], what)
    }

    fn describe_change(&self, r: &ActiveReceiver, c: &Change, what: &str) -> String {
        format!(
            "receiver {} (plugin {}) on key {} sequence {}: {what}",
            r.id(),
            r.digest(),
            c.key,
            c.sequence
        )
    }

    fn emit_logs(&self, r: &ActiveReceiver, c: &Change, logs: Vec<GuestLog>) {
        use crate::engine::Level;
        for l in logs {
            let fields = l
                .fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let (receiver, key, sequence, message) = (
                r.id(),
                c.key.as_str(),
                c.sequence.as_str(),
                l.message.as_str(),
            );
            match l.level {
                Level::Trace => {
                    tracing::trace!(target: "plugin", receiver, key, sequence, fields, "{message}")
                }
                Level::Debug => {
                    tracing::debug!(target: "plugin", receiver, key, sequence, fields, "{message}")
                }
                Level::Info => {
                    tracing::info!(target: "plugin", receiver, key, sequence, fields, "{message}")
                }
                Level::Warn => {
                    tracing::warn!(target: "plugin", receiver, key, sequence, fields, "{message}")
                }
                Level::Error => {
                    tracing::error!(target: "plugin", receiver, key, sequence, fields, "{message}")
                }
            }
        }
    }
}

/// The change as it is parked: everything needed to replay it.
pub fn change_json(c: &Change) -> serde_json::Value {
    c.to_json()
}
