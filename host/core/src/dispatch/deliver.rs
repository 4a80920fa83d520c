//! Delivering what a worker formatted: to the sink change by change or
//! packed across changes, then settled (counted, recorded in the output
//! dedup state, or held or parked).

use std::collections::HashSet;

use prism_contract::Message;
use prism_types::failure::FailureKind;

use super::worker::{Context, Pending};
use super::{ReceiverStats, Settled};
use crate::receivers::ActiveReceiver;
use crate::sink::{Envelope, SinkError, SinkErrorKind};

/// One change's (or one window's) messages on their way: which changes,
/// what the plugin made of them, and the envelopes handed to the sink.
struct Outgoing<'s, 'e> {
    indices: &'s [usize],
    msgs: &'s [Message],
    envelopes: &'s [Envelope<'e>],
}

impl<'a> Context<'a> {
    /// Deliver the messages of the changes at `indices` (one change, or a
    /// batch window: keyed by its first change, sequenced by its last).
    pub(super) fn deliver(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        indices: &[usize],
        msgs: &[Message],
        dedup: bool,
    ) -> Settled {
        if msgs.is_empty() || (dedup && self.suppress(r, st, indices, msgs)) {
            return Settled::Delivered;
        }
        let envelopes = self.envelopes(r, indices, msgs);
        let result = if envelopes.is_empty() {
            Ok(())
        } else {
            self.sink.deliver(&envelopes)
        };
        self.settle(
            r,
            st,
            Outgoing {
                indices,
                msgs,
                envelopes: &envelopes,
            },
            result,
            dedup,
        )
    }

    /// Deliver the changes collected in `pending` (immediate receivers),
    /// packed across changes by the sink; what could not go out is held
    /// (`stuck` gains its product) or parked, as [`Self::deliver`] does.
    pub(super) fn deliver_pending(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        pending: &mut Vec<(usize, Vec<Message>)>,
        stuck: &mut HashSet<&'a str>,
    ) {
        let sendable = self.sendable(r, st, std::mem::take(pending));
        let outcomes = self.send(r, &sendable);
        self.settle_sent(r, st, &sendable, outcomes, stuck);
    }

    /// What of `pending` is to be sent: not empty, not suppressed by dedup.
    pub(super) fn sendable(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        pending: Pending,
    ) -> Pending {
        let dedup = r.manifest.dedup;
        pending
            .into_iter()
            .filter(|(i, msgs)| !(msgs.is_empty() || (dedup && self.suppress(r, st, &[*i], msgs))))
            .collect()
    }

    /// Hand `sendable` to the sink in one packed call: each change's outcome.
    /// Touches nothing but the sink, so it may run beside the next unit.
    pub(super) fn send(
        &self,
        r: &ActiveReceiver,
        sendable: &Pending,
    ) -> Vec<Result<(), crate::sink::SinkError>> {
        let envelopes: Vec<Vec<Envelope<'_>>> = sendable
            .iter()
            .map(|(i, msgs)| self.envelopes(r, &[*i], msgs))
            .collect();
        self.sink.deliver_many(&envelopes)
    }

    /// Count and record what [`Self::send`] did, holding what could not go.
    pub(super) fn settle_sent(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        sendable: &Pending,
        outcomes: Vec<Result<(), crate::sink::SinkError>>,
        stuck: &mut HashSet<&'a str>,
    ) {
        let dedup = r.manifest.dedup;
        for ((i, msgs), outcome) in sendable.iter().zip(outcomes) {
            let envs = self.envelopes(r, &[*i], msgs);
            let outcome = if envs.is_empty() { Ok(()) } else { outcome };
            if !self
                .settle(
                    r,
                    st,
                    Outgoing {
                        indices: &[*i],
                        msgs,
                        envelopes: &envs,
                    },
                    outcome,
                    dedup,
                )
                .handled()
            {
                stuck.insert(self.changes[*i].key.as_str());
                self.hold(r, st, *i);
            }
        }
    }

    /// Output dedup: is this change's output what (receiver, key) already
    /// has? Counts it as suppressed and moves the state on if so. Per change
    /// only (a window spans products).
    fn suppress(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        indices: &[usize],
        msgs: &[Message],
    ) -> bool {
        let (Some(o), [i]) = (self.outputs, indices) else {
            return false;
        };
        let c = &self.changes[*i];
        if o.superseded(r.id(), &c.key, &c.sequence) {
            // The receiver has a newer change's output already.
            st.suppressed += msgs.len() as u64;
            tracing::info!(receiver = r.id(), key = %c.key, sequence = %c.sequence, "not sent: the receiver already got a newer change of the product");
            return true;
        }
        let hash = crate::outputs::hash_messages(msgs);
        let before = crate::outputs::image_identity(c, crate::outputs::Side::Old);
        if !o.unchanged(r.id(), &c.key, &hash, &before) {
            return false;
        }
        st.suppressed += msgs.len() as u64;
        // The receiver keeps the same output of a newer image.
        let image = crate::outputs::image_identity(c, crate::outputs::Side::New);
        o.record(r.id(), &c.key, &c.sequence, hash, image);
        true
    }

    /// The message indices of a change an earlier attempt delivered.
    fn sent_before(&self, indices: &[usize]) -> &[usize] {
        match (self.sent, indices) {
            (Some(sent), [i]) => sent
                .get(&self.changes[*i].sequence)
                .map_or(&[], Vec::as_slice),
            _ => &[],
        }
    }

    /// The envelopes of the messages not delivered yet.
    fn envelopes<'m>(
        &'m self,
        r: &'m ActiveReceiver,
        indices: &[usize],
        msgs: &'m [Message],
    ) -> Vec<Envelope<'m>> {
        let c = &self.changes[indices[0]];
        let sequence = self.changes[*indices.last().expect("at least one change")]
            .sequence
            .as_str();
        let before = self.sent_before(indices);
        msgs.iter()
            .enumerate()
            .filter(|(index, _)| !before.contains(index))
            .map(|(index, message)| Envelope {
                receiver: r.id(),
                key: &c.key,
                sequence,
                ordinal: indices[0] as u64 + 1,
                index,
                message,
                digest: r.digest(),
                window: None,
            })
            .collect()
    }

    /// Count and record a delivery's outcome: delivered, parked, or to be
    /// held.
    fn settle(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        out: Outgoing<'_, '_>,
        result: Result<(), SinkError>,
        dedup: bool,
    ) -> Settled {
        match result {
            Ok(()) => {
                self.delivered(r, st, &out, dedup);
                Settled::Delivered
            }
            Err(e) => self.not_delivered(r, st, &out, &e, dedup),
        }
    }

    /// All of `out` went out: counted, and recorded for output dedup.
    fn delivered(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        out: &Outgoing<'_, '_>,
        dedup: bool,
    ) {
        st.messages += out.envelopes.len() as u64;
        st.bytes += out
            .envelopes
            .iter()
            .map(|e| e.message.body.len() as u64)
            .sum::<u64>();
        if let (Some(o), true, &[i]) = (self.outputs, dedup, out.indices) {
            let c = &self.changes[i];
            let hash = crate::outputs::hash_messages(out.msgs);
            let image = crate::outputs::image_identity(c, crate::outputs::Side::New);
            o.record(r.id(), &c.key, &c.sequence, hash, image);
        }
    }

    /// Not all of `out` went out (`e`): what did is counted and remembered
    /// for the retry; the change is held when the destination is
    /// unavailable and holding is on, else parked.
    fn not_delivered(
        &self,
        r: &ActiveReceiver,
        st: &mut ReceiverStats,
        out: &Outgoing<'_, '_>,
        e: &SinkError,
        dedup: bool,
    ) -> Settled {
        let i = out.indices[0];
        let c = &self.changes[i];
        let got_out: Vec<usize> = e
            .delivered
            .iter()
            .filter_map(|&p| out.envelopes.get(p).map(|e| e.index))
            .collect();
        st.messages += got_out.len() as u64;
        let mut sent: Vec<usize> = self
            .sent_before(out.indices)
            .iter()
            .copied()
            .chain(got_out)
            .collect();
        sent.sort_unstable();
        sent.dedup();
        if !sent.is_empty() {
            // Held after all (here, or when parking fails): the retry sends
            // only the rest.
            st.partial.insert(i, sent.clone());
            // The receiver holds part of this output: no entry describes
            // that, so none may suppress its next one.
            if let (Some(o), true, [_]) = (self.outputs, dedup, out.indices) {
                o.untrust(r.id(), &c.key);
            }
        }
        if e.kind == SinkErrorKind::Unavailable && self.hold_unavailable {
            let sequence = self.last_sequence(out.indices);
            tracing::warn!(receiver = r.id(), key = %c.key, sequence, error = %e, "destination unavailable; change held for a retry");
            st.error(
                FailureKind::Delivery.as_str(),
                self.describe(r, i, &e.to_string()),
            );
            return Settled::Held;
        }
        let mut error = self.describe(r, i, &e.to_string());
        if !sent.is_empty() {
            error.push_str(&format!(
                " (messages {sent:?} of this change were delivered before)"
            ));
        }
        self.park_as(
            r,
            st,
            out.indices,
            e.kind.failure(),
            &e.dead_letter_kind(),
            &error,
        )
    }

    /// The sequence of the last of `indices`.
    fn last_sequence(&self, indices: &[usize]) -> &str {
        &self.changes[*indices.last().expect("at least one change")].sequence
    }
}
