//! What a worker does for an immediate receiver: each change it accepts is
//! formatted and packed with the next ones, and the packs go to the sink;
//! a change held keeps its product's later changes behind it.

use std::collections::HashSet;
use std::time::Instant;

use super::worker::{Admission, Context, Formatted, Pending, Warm};
use super::{ReceiverStats, Settled};
use crate::receivers::ActiveReceiver;
use prism_contract::Message;
use prism_engine::CallError;
use prism_types::failure::FailureKind;

impl<'a> Context<'a> {
    /// Handle the changes at `indices` (in order) for an immediate receiver.
    /// Once a change of a product is held, the product's later changes are
    /// held behind it (in its retry lane, when there is a spool), so order
    /// per key is kept across the retry; other products carry on.
    ///
    /// The unit's last packed delivery is not made here: it is returned,
    /// ready to [`send`](Self::send) and [`settle`](Self::settle_sent), so
    /// the caller can send it while the next unit formats. No later change
    /// of the unit depends on how it goes: it is the unit's last.
    pub fn immediate_deferred(
        &self,
        r: &ActiveReceiver,
        indices: impl Iterator<Item = usize>,
    ) -> (ReceiverStats, Pending) {
        let mut run = ImmediateRun {
            cx: self,
            r,
            st: ReceiverStats::default(),
            stuck: HashSet::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            warm: None,
        };
        for i in indices {
            run.offer(i);
        }
        let last = self.sendable(r, &mut run.st, run.pending);
        (run.st, last)
    }
}

/// One immediate unit's pass over its changes.
struct ImmediateRun<'c, 'a> {
    cx: &'c Context<'a>,
    r: &'c ActiveReceiver,
    st: ReceiverStats,
    /// Products with a change held: their later changes wait behind it.
    stuck: HashSet<&'a str>,
    /// Formatted changes to be delivered together.
    pending: Pending,
    /// The bodies in `pending`: bounded, so a plugin whose every output is
    /// near the cap cannot make a pack hold hundreds of them.
    pending_bytes: usize,
    warm: Warm,
}

impl<'a> ImmediateRun<'_, 'a> {
    /// Hold change `i`, and its product's later changes behind it.
    fn hold(&mut self, i: usize) {
        let changes: &'a [prism_types::change::Change] = self.cx.changes;
        self.stuck.insert(changes[i].key.as_str());
        self.cx.hold(self.r, &mut self.st, i);
    }

    /// Offer change `i` to the receiver, unless it is handled already, out
    /// of time, or behind a held change of its product.
    fn offer(&mut self, i: usize) {
        let (cx, r) = (self.cx, self.r);
        if !cx.should_run(r, i, &mut self.st) {
            return;
        }
        if cx.out_of_time(r) {
            // Not started: reported for a retry (the ledger keeps what was
            // handled, so the retry starts where this one stopped).
            self.st.deferred += 1;
            self.st.held.push(i);
            return;
        }
        let key = cx.changes[i].key.as_str();
        if self.stuck.contains(key) || cx.lane_open(r, key) {
            return self.hold(i);
        }
        match cx.admit(r, &mut self.st, i) {
            Admission::Run => {}
            Admission::Passed => return,
            Admission::Held => return self.hold(i),
        }
        let outcome = self.call(i);
        if !self.settle(i, outcome).handled() {
            self.hold(i);
        }
    }

    /// `accepts`, then `format` when it accepted (`None` when it declined),
    /// with the time charged to the receiver and told to its breaker.
    fn call(&mut self, i: usize) -> Result<Option<Formatted>, CallError> {
        let (cx, r) = (self.cx, self.r);
        let started = Instant::now();
        let outcome = cx.accepts(r, i, &mut self.warm).map(|(accepted, sandbox)| {
            if !accepted {
                self.warm = sandbox.served();
                return None;
            }
            Some(cx.format(
                r,
                sandbox,
                &mut self.st,
                |s| s.format(&cx.wit[i]),
                &cx.changes[i],
                &mut self.warm,
            ))
        });
        let took = started.elapsed();
        cx.charge(r, &mut self.st, took);
        let failure = match &outcome {
            Ok(Some(Formatted::Failed { kind, .. })) => Some(*kind),
            Err(e) => Some(e.kind()),
            _ => None,
        };
        cx.breaker_outcome(r, failure, took, r.call_budget());
        outcome
    }

    /// What became of change `i`: skipped, packed, held or parked.
    fn settle(&mut self, i: usize, outcome: Result<Option<Formatted>, CallError>) -> Settled {
        let (cx, r) = (self.cx, self.r);
        match outcome {
            Ok(None) => {
                self.st.skipped += 1;
                Settled::Skipped
            }
            Ok(Some(Formatted::Messages(msgs))) => {
                self.st.accepted += 1;
                self.pack(i, msgs)
            }
            Ok(Some(Formatted::Failed { kind, error }))
                if kind == FailureKind::RetryExhausted && (cx.hold_retry || cx.lanes.is_some()) =>
            {
                // Still asking to retry: try again later, in order.
                self.st.accepted += 1;
                self.st.error(kind.as_str(), error);
                Settled::Held
            }
            Ok(Some(Formatted::Failed { kind, error })) => {
                self.st.accepted += 1;
                cx.park(r, &mut self.st, &[i], kind, &error)
            }
            Err(e) => {
                let error = cx.describe(r, i, &e.to_string());
                cx.park(r, &mut self.st, &[i], e.kind(), &error)
            }
        }
    }

    /// Put change `i`'s messages in the pack, delivered with the next
    /// changes' when it is full.
    fn pack(&mut self, i: usize, msgs: Vec<Message>) -> Settled {
        let cx = self.cx;
        let key = cx.changes[i].key.as_str();
        // Output dedup compares a change with the product's last recorded
        // output: an earlier change of the product in this pack must be
        // delivered and recorded first, or the two are never compared (and
        // a failed earlier one must hold this one behind it).
        let repeated = self.r.manifest.dedup
            && cx.outputs.is_some()
            && self.pending.iter().any(|(p, _)| cx.changes[*p].key == key);
        if repeated {
            self.deliver_pending();
        }
        if self.stuck.contains(key) {
            return Settled::Held;
        }
        self.pending_bytes += msgs.iter().map(|m| m.body.len()).sum::<usize>();
        self.pending.push((i, msgs));
        if self.pending.len() >= cx.pack || self.pending_bytes >= cx.pack_bytes {
            self.deliver_pending();
        }
        Settled::Packed
    }

    fn deliver_pending(&mut self) {
        self.cx
            .deliver_pending(self.r, &mut self.st, &mut self.pending, &mut self.stuck);
        self.pending_bytes = 0;
    }
}
