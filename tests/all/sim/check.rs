//! The invariants every schedule must keep, checked against what the
//! stream wrote (the reference) once the schedule has drained.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use prism_types::failure::FailureKind;

use super::backends::Queue;
use super::world::Written;
use super::{Echo, SimReceiver};

/// What a schedule ended with, beyond violations: counted, not failed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    /// Messages a standard queue got more than once (at least once).
    pub(crate) standard_duplicates: u64,
    /// FIFO messages sent again after SQS's 5-minute window (SQS could
    /// not drop them).
    pub(crate) fifo_duplicates_outside_window: u64,
    /// FIFO messages SQS dropped as duplicates within the window.
    pub(crate) fifo_dropped_in_window: u64,
    pub(crate) delivered: u64,
    pub(crate) parked: u64,
}

/// Check one receiver's queue and dead-letter queue against the stream.
pub(crate) fn receiver(
    r: &SimReceiver,
    q: Option<&Queue>,
    written: &[Written],
    given_up: &BTreeSet<String>,
    tally: &mut Tally,
) -> Vec<String> {
    let empty = Queue::default();
    let q = q.unwrap_or(&empty);
    let mut bad = Vec::new();
    let parked: BTreeSet<&str> = q.dead.iter().map(|d| d.sequence.as_str()).collect();
    // Parked only for a reason its plugin gives, in the dispatcher's own
    // vocabulary: never for a fault of the backends.
    for d in &q.dead {
        let kind = FailureKind::parse(&d.error_kind);
        // Or a redrive's correction that could not be sent: the one place
        // a backend fault parks (the redrive has no lane of its own).
        let correction =
            kind == Some(FailureKind::Delivery) && d.error.contains("a redrive's correction");
        let expected = correction
            || r.parks
                .iter()
                .any(|&(k, key)| Some(k) == kind && key.is_none_or(|key| key == d.key));
        if !expected {
            bad.push(format!(
                "{}: {} (sequence {}) parked as {:?}: {}",
                r.id, d.key, d.sequence, d.error_kind, d.error
            ));
        }
    }
    tally.parked += q.dead.len() as u64;
    tally.delivered += q.messages.len() as u64;
    tally.fifo_dropped_in_window += q.dropped;
    // Each message read once: which product, which change (the body's
    // sequence for an echo of sequences, since windows hold one message
    // per change; the envelope's for an echo of images or transitions),
    // and what it says of `v`.
    let read: Vec<Read> = q.messages.iter().map(|m| Read::of(r.echo, m)).collect();
    let delivered: Vec<&str> = read.iter().map(|m| m.sequence.as_str()).collect();
    let got: BTreeSet<&str> = delivered.iter().copied().collect();

    // Duplicates.
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &delivered {
        *seen.entry(s).or_default() += 1;
    }
    let dups: u64 = seen.values().map(|n| n - 1).sum();
    if r.fifo {
        tally.fifo_duplicates_outside_window += dups;
    } else {
        tally.standard_duplicates += dups;
    }

    // Nothing lost: every change is delivered or parked (an echo of images
    // or transitions may also be suppressed by dedup: checked below by the
    // end state). A parked change (redriven later) or one Lambda gave up
    // on (replayed later) whose product has moved on may be dropped (the
    // dedup state's guard) or sent brought up to date: allowed once a newer
    // change of the product is delivered or parked.
    let settled = |s: &str| got.contains(s) || parked.contains(s);
    // A change of `noise` alone passes by a receiver interested in `/v`.
    let passed_over = |w: &Written| r.only_v && w.from.is_some() && w.from == w.v;
    for (n, w) in written.iter().enumerate() {
        if r.echo != Echo::Sequence || passed_over(w) {
            continue;
        }
        let superseded = (q.ever_parked.contains(&w.sequence) || given_up.contains(&w.sequence))
            && written[n + 1..]
                .iter()
                .any(|later| later.key == w.key && settled(&later.sequence));
        if !settled(&w.sequence) && !superseded {
            bad.push(format!(
                "{}: change {} of {} (sequence {}) was neither delivered nor parked",
                r.id,
                w.v.map_or("remove".into(), |v| format!("v{v}")),
                w.key,
                w.sequence
            ));
        }
    }

    // Per product, the newest change delivered last (unless it was parked,
    // where it is seen and can be replayed).
    let keys: BTreeSet<&str> = written.iter().map(|w| w.key.as_str()).collect();
    for key in keys {
        let Some(newest) = written
            .iter()
            .rev()
            .find(|w| w.key == key && !passed_over(w))
        else {
            continue;
        };
        // Parked, the newest change (or a backfill's or redrive's message
        // carrying the product's newest image) waits where it can be seen
        // and replayed.
        let newest_parked = parked.contains(newest.sequence.as_str())
            || q.dead.iter().any(|d| {
                let new = &d.change["new"];
                d.key == key
                    && new["v"].as_u64() == newest.v
                    && (r.echo != Echo::Sequence
                        || r.only_v
                        || new["noise"].as_u64() == newest.noise)
            });
        if newest_parked {
            continue;
        }
        // The last message of the product that is not a copy of one
        // delivered before: SQS (standard always, FIFO after its 5-minute
        // window) may carry a copy of an older message after a newer one;
        // consumers tell copies by their `prism-sequence` (tallied above).
        // That first delivery must be the newest change, or the newest must
        // reach the receiver again after it: a retry after a crash re-sends
        // the rest of its batch in order, so a change the crashed attempt
        // suppressed goes out first and the newest (a copy) after it.
        let mut first_seen = BTreeSet::new();
        let ours: Vec<(usize, bool)> = read
            .iter()
            .enumerate()
            .filter(|(_, m)| m.key == key)
            .map(|(i, m)| (i, first_seen.insert(m.sequence.as_str())))
            .collect();
        let last_first = ours.iter().rev().find(|(_, first)| *first).map(|&(i, _)| i);
        // A backfill's message is the newest when it carries the newest
        // image (it is an insert, or a correction from what it sent).
        // So is a redrive's message sent as the product is now. A receiver
        // interested in `/v` alone has the newest when it has its `v`.
        let is_newest = |m: &Read| match (r.echo, m.backfill) {
            (Echo::Sequence, _) if r.only_v => m.image.0 == newest.v,
            (Echo::Sequence, _) => {
                m.sequence == newest.sequence || m.image == (newest.v, newest.noise)
            }
            (Echo::Image, _) | (Echo::Transition, true) => {
                m.transition.map(|t| t.1) == Some(newest.v)
            }
            (Echo::Transition, false) => m.transition == Some((newest.from, newest.v)),
        };
        let ok = last_first.is_some_and(|p| {
            ours.iter()
                .filter(|&&(i, _)| i >= p)
                .any(|&(i, _)| is_newest(&read[i]))
        });
        if !ok {
            let last = last_first.map(|p| &read[p]);
            match r.echo {
                Echo::Sequence => bad.push(format!(
                    "{}: {key}'s last message is sequence {:?}, not its newest change {}",
                    r.id,
                    last.map(|m| &m.sequence),
                    newest.sequence
                )),
                Echo::Image => bad.push(format!(
                    "{}: {key} ends on v {:?}, but its newest change (sequence {}) has v {:?}",
                    r.id,
                    last.and_then(|m| m.transition).map(|t| t.1),
                    newest.sequence,
                    newest.v
                )),
                Echo::Transition => bad.push(format!(
                    "{}: {key} ends on (from, v) {:?}, but its newest change (sequence {}) is {:?}",
                    r.id,
                    last.and_then(|m| m.transition),
                    newest.sequence,
                    (newest.from, newest.v)
                )),
            }
        }
    }
    bad
}

/// One delivered message, read once.
struct Read {
    /// The product it is about: its body's key (a window's messages each
    /// carry their own), else the envelope's.
    key: String,
    /// The change it is.
    sequence: String,
    /// An image or transition echo's (old `v`, new `v`) (an image echo has
    /// no old `v`).
    transition: Option<(Option<u64>, Option<u64>)>,
    /// A sequence echo's new image (`v`, `noise`).
    image: (Option<u64>, Option<u64>),
    /// A backfill sent it (its sequence is below the stream's 21 digits).
    backfill: bool,
}

impl Read {
    fn of(echo: Echo, m: &super::backends::Accepted) -> Self {
        let body = serde_json::from_str::<Value>(&m.body).ok();
        let field = |name: &str| {
            body.as_ref()
                .and_then(|b| b[name].as_str().map(str::to_owned))
        };
        let sequence = match echo {
            Echo::Sequence => field("sequence").unwrap_or_default(),
            Echo::Image | Echo::Transition => m.sequence.clone(),
        };
        Self {
            key: field("key").unwrap_or_else(|| m.key.clone()),
            backfill: sequence.len() < 21,
            sequence,
            transition: body.as_ref().map(|b| (b["from"].as_u64(), b["v"].as_u64())),
            image: body
                .as_ref()
                .map_or((None, None), |b| (b["v"].as_u64(), b["noise"].as_u64())),
        }
    }
}
