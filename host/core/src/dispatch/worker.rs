//! What one worker does with one unit of work: immediate receivers change by
//! change (batched receivers are in `batch.rs`), and the calls, delivery and
//! parking both share.

use std::sync::atomic::Ordering;
use std::time::Instant;

use prism_contract::{FormatError, Message};

use super::{Progress, ReceiverStats, Settled};
use crate::breaker::{Gate, Outcome, Transition};
use crate::receivers::ActiveReceiver;
use crate::sink::{DeadLetter, Sink};
use crate::spool::Lane;
use prism_engine::{CallError, GuestLog, Session, WitChange};
use prism_types::change::Change;
use prism_types::failure::FailureKind;

/// What the admission gate ([`Context::admit`]) says about a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Run the plugin on it.
    Run,
    /// Settled without the plugin: filtered out by field interest, or
    /// parked while the receiver is quarantined.
    Passed,
    /// Quarantined, and parking it failed: hold it (and what follows it).
    Held,
}

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
    /// Messages an earlier attempt delivered (sequence → message indices).
    pub sent: Option<&'a std::collections::HashMap<String, Vec<usize>>>,
    /// Hold (rather than park) a change still asking to retry.
    pub hold_retry: bool,
    /// Hold (rather than park) a quarantined receiver's change.
    pub hold_quarantined: bool,
    /// When receivers are quarantined.
    pub breaker: &'a crate::breaker::BreakerConfig,
    /// Every plugin call ends by then (see [`super::DispatcherBuilder::finish_by`]).
    pub finish_by: Option<Instant>,
    /// The plugin time each receiver may use in this run before it starts
    /// no more calls (with [`Self::finish_by`] only).
    pub share: Option<std::time::Duration>,
    /// Plugin time each receiver has used in this run (ns), by id.
    pub used: &'a std::collections::BTreeMap<String, std::sync::atomic::AtomicU64>,
    /// Changes handed to the sink together ([`super::DispatcherBuilder::pack`]).
    pub pack: usize,
    /// Message bytes held for packing ([`super::DispatcherBuilder::pack_bytes`]).
    pub pack_bytes: usize,
}

/// A sandbox in hand, with how many changes it served before this one.
pub(super) struct Sandbox {
    pub session: Session,
    pub used: u32,
}

impl Sandbox {
    /// A fresh sandbox for `r`.
    pub fn fresh(r: &ActiveReceiver) -> Result<Self, CallError> {
        Ok(Self {
            session: r.plugin.session(r.config.clone(), r.manifest.limits)?,
            used: 0,
        })
    }

    /// It served one more change cleanly: kept for the unit's next one.
    pub fn served(self) -> Warm {
        Some(Self {
            used: self.used + 1,
            ..self
        })
    }
}

/// A unit's sandbox kept for its next change.
pub(super) type Warm = Option<Sandbox>;

/// Whether a call that failed in a reused sandbox is worth one more try in
/// a fresh one: anything but a timeout (a fresh sandbox does not make a
/// loop shorter, and a retry would double the time a hostile plugin costs).
fn retry_fresh(e: &CallError) -> bool {
    e.kind() != FailureKind::Timeout
}

/// How formatting one change (or window) ended.
pub(super) enum Formatted {
    Messages(Vec<Message>),
    Failed { kind: FailureKind, error: String },
}

/// Formatted changes waiting to be handed to the sink together: (change
/// index, its messages).
pub type Pending = Vec<(usize, Vec<Message>)>;

impl<'a> Context<'a> {
    /// Whether `r` may start no more calls in this run: its next one could
    /// not end by [`Self::finish_by`], or it has used its [`Self::share`].
    pub(super) fn out_of_time(&self, r: &ActiveReceiver) -> bool {
        let Some(end) = self.finish_by else {
            return false;
        };
        if Instant::now() + r.call_budget() > end {
            return true;
        }
        self.share.is_some_and(|share| {
            self.used
                .get(r.id())
                .is_some_and(|u| u.load(Ordering::Relaxed) >= share.as_nanos() as u64)
        })
    }

    /// Charge `took` of plugin time to `r` (for its share and its stats).
    pub(super) fn charge(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        took: std::time::Duration,
    ) {
        st.plugin_time += took;
        if let Some(u) = self.used.get(r.id()) {
            u.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// Tell the receiver's breaker how a call went (`failure`: its error
    /// kind; `took` of a `budget`), and log a quarantine or a recovery.
    pub(super) fn breaker_outcome(
        &self,
        r: &ActiveReceiver,
        failure: Option<FailureKind>,
        took: std::time::Duration,
        budget: std::time::Duration,
    ) {
        let outcome = Outcome::of_call(failure, took, budget);
        match r.breaker.record(self.breaker, outcome) {
            Transition::Opened(cool_down) => tracing::error!(
                receiver = r.id(),
                digest = %r.digest(),
                failures = self.breaker.threshold,
                cool_down_secs = cool_down.as_secs(),
                last = failure.map_or("", FailureKind::as_str),
                "receiver quarantined: its plugin keeps failing; its changes wait without running it until a probe succeeds"
            ),
            Transition::Closed => {
                tracing::warn!(receiver = r.id(), digest = %r.digest(), "receiver out of quarantine: a probe succeeded")
            }
            Transition::None => {}
        }
    }

    /// A quarantined receiver's changes at `indices`: `false` to hold them
    /// (in its retry lanes when there is a spool, or in the lane they came
    /// from), else parked as `quarantined` dead letters.
    pub(super) fn quarantined(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        indices: &[usize],
        remaining: std::time::Duration,
    ) -> Settled {
        if self.lanes.is_some() || self.hold_quarantined {
            return Settled::Held;
        }
        let error = self.describe(
            r,
            indices[0],
            &format!(
                "quarantined: its plugin failed {} of its last {} calls (timeouts, traps, limits, retries exhausted, or nine tenths of its budget used); not run for another {} s",
                self.breaker.threshold,
                self.breaker.window(),
                remaining.as_secs()
            ),
        );
        self.park(r, st, indices, FailureKind::Quarantined, &error)
    }

    /// Does this receiver have a retry lane open for `key`?
    pub(super) fn lane_open(&self, r: &ActiveReceiver, key: &str) -> bool {
        self.lanes.is_some_and(|l| {
            !l.open.is_empty() && l.open.contains(&(r.id().to_owned(), key.to_owned()))
        })
    }

    /// Hold change `i` for a retry: in the receiver's retry lane for its
    /// product when there is a spool, else reported as held. A lane that
    /// cannot be written is reported too: nothing is dropped.
    pub(super) fn hold(&self, r: &ActiveReceiver, st: &mut ReceiverStats, i: usize) {
        let c = &self.changes[i];
        // An earlier change of the product that is held outside the lane
        // (its append failed) keeps this one out too: in the lane without
        // it, this one would be retried, and delivered, before it (the
        // simulation found it: a newer version sent by the tick, the
        // older one by the stream batch's retry after it).
        let behind_held = st.held.iter().any(|&h| self.changes[h].key == c.key);
        if let (Some(l), false) = (self.lanes, behind_held) {
            let lane = Lane::Retry {
                receiver: r.id().to_owned(),
                key: c.key.clone(),
            };
            let mut entry = l.entry(c);
            entry.sent = st.partial.get(&i).cloned().unwrap_or_default();
            match l.spool.append(&lane, &[entry]) {
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

    /// Count change `i` and say whether to run it: not when an earlier
    /// attempt handled it.
    /// The one admission gate of both delivery paths (immediate and
    /// batch), after a change is known to be this run's: counted as seen,
    /// then filtered by field interest, then, while the receiver is
    /// quarantined, parked as `quarantined` without asking the plugin (to
    /// be replayed from the dead letters).
    pub(super) fn admit(&self, r: &ActiveReceiver, st: &mut ReceiverStats, i: usize) -> Admission {
        st.seen += 1;
        if !r.interested(&self.changes[i]) {
            st.filtered += 1;
            return Admission::Passed;
        }
        if let Gate::Open { remaining } = r.breaker.admit() {
            st.quarantined += 1;
            return if self.quarantined(r, st, &[i], remaining).handled() {
                Admission::Passed
            } else {
                Admission::Held
            };
        }
        Admission::Run
    }

    pub(super) fn should_run(&self, r: &ActiveReceiver, i: usize, st: &mut ReceiverStats) -> bool {
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        if (self.already)(r.id(), i) {
            st.already_handled += 1;
            return false;
        }
        true
    }

    /// The unit's warm sandbox if it may serve another change (with a
    /// fresh time budget), else a fresh one.
    fn checkout(&self, r: &ActiveReceiver, warm: &mut Warm) -> Result<Sandbox, CallError> {
        if let Some(mut s) = warm.take()
            && s.used < r.manifest.limits.reuse
        {
            s.session.renew();
            return Ok(s);
        }
        Sandbox::fresh(r)
    }

    /// Ask `accepts`; the session goes on to `format` (or back to `warm`).
    /// A reused sandbox that fails is replaced by a fresh one and the change
    /// tried once more, so earlier changes can never make this one fail.
    pub(super) fn accepts(
        &self,
        r: &ActiveReceiver,
        i: usize,
        warm: &mut Warm,
    ) -> Result<(bool, Sandbox), CallError> {
        let mut s = self.checkout(r, warm)?;
        let accepted = s.session.accepts(&self.wit[i]);
        self.emit_logs(r, &self.changes[i], s.session.take_logs());
        match accepted {
            Ok(a) => Ok((a, s)),
            Err(e) if s.used > 0 && retry_fresh(&e) => {
                // At most one sandbox per worker: the failed one goes first.
                drop(s);
                let mut s = Sandbox::fresh(r)?;
                let accepted = s.session.accepts(&self.wit[i]);
                self.emit_logs(r, &self.changes[i], s.session.take_logs());
                Ok((accepted?, s))
            }
            Err(e) => Err(e),
        }
    }

    /// Call `call` (format or format-batch) in `sandbox`, retrying on
    /// `retry` with a fresh one up to `max_retries` times. A sandbox that
    /// served the call cleanly goes back to `warm`.
    pub(super) fn format(
        &self,
        r: &ActiveReceiver,
        mut sandbox: Sandbox,
        st: &mut ReceiverStats,
        call: impl Fn(&mut Session) -> Result<Result<Vec<Message>, FormatError>, CallError>,
        change: &Change,
        warm: &mut Warm,
    ) -> Formatted {
        let mut attempt = 0;
        loop {
            let result = call(&mut sandbox.session);
            self.emit_logs(r, change, sandbox.session.take_logs());
            let failed = |kind, what: &str| Formatted::Failed {
                kind,
                error: self.describe_change(r, change, what),
            };
            match result {
                Ok(Ok(msgs)) => {
                    *warm = sandbox.served();
                    return Formatted::Messages(msgs);
                }
                Ok(Err(FormatError::Reject(reason))) => {
                    *warm = sandbox.served();
                    return failed(FailureKind::Rejected, &format!("rejected: {reason}"));
                }
                Ok(Err(FormatError::Retry(reason))) if attempt < self.max_retries => {
                    attempt += 1;
                    st.retries += 1;
                    tracing::info!(receiver = r.id(), key = %change.key, sequence = %change.sequence, attempt, reason = %reason, "plugin asked to retry");
                    drop(sandbox);
                    sandbox = match Sandbox::fresh(r) {
                        Ok(s) => s,
                        Err(e) => return failed(e.kind(), &e.to_string()),
                    };
                }
                Ok(Err(FormatError::Retry(reason))) => {
                    return failed(
                        FailureKind::RetryExhausted,
                        &format!("still asking to retry after {attempt} retries: {reason}"),
                    );
                }
                Err(e) if sandbox.used > 0 && retry_fresh(&e) => {
                    drop(sandbox);
                    sandbox = match Sandbox::fresh(r) {
                        Ok(s) => s,
                        Err(e) => return failed(e.kind(), &e.to_string()),
                    };
                }
                Err(e) => return failed(e.kind(), &e.to_string()),
            }
        }
    }

    pub(super) fn park(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        indices: &[usize],
        kind: FailureKind,
        error: &str,
    ) -> Settled {
        self.park_as(r, st, indices, kind, kind.as_str(), error)
    }

    /// [`Self::park`] with the dead letter's kind spelled out (`refused:`
    /// and the destination's error code).
    pub(super) fn park_as(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        indices: &[usize],
        kind: FailureKind,
        label: &str,
        error: &str,
    ) -> Settled {
        tracing::warn!(receiver = r.id(), digest = %r.digest(), kind = label, error, "change parked as a dead letter");
        st.error(kind.as_str(), error.to_owned());
        for &i in indices {
            let c = &self.changes[i];
            let dead = DeadLetter {
                receiver: r.id().to_owned(),
                plugin_digest: Some(r.digest().to_string()),
                key: c.key.clone(),
                sequence: c.sequence.clone(),
                ordinal: i as u64 + 1,
                error_kind: label.to_owned(),
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
                    return Settled::Held;
                }
            }
        }
        Settled::Parked(kind)
    }

    pub(super) fn describe(&self, r: &ActiveReceiver, i: usize, what: &str) -> String {
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
            prism_engine::plugin_log!(l.level, receiver, key, sequence, fields; "{message}");
        }
    }
}

/// The change as it is parked: everything needed to replay it.
pub fn change_json(c: &Change) -> serde_json::Value {
    c.to_json()
}
