//! The invariants every schedule must keep, checked against what the
//! stream wrote (the reference) once the schedule has drained.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

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
    tally: &mut Tally,
) -> Vec<String> {
    let empty = Queue::default();
    let q = q.unwrap_or(&empty);
    let mut bad = Vec::new();
    let parked: BTreeSet<&str> = q.dead.iter().map(|d| d.sequence.as_str()).collect();
    tally.parked += q.dead.len() as u64;
    tally.delivered += q.messages.len() as u64;
    tally.fifo_dropped_in_window += q.dropped;
    // Which change each message is: the body's sequence for an echo of
    // sequences (windows hold one message per change), the envelope's for
    // an echo of images.
    let seq_of = |m: &super::backends::Accepted| -> String {
        match r.echo {
            Echo::Sequence => serde_json::from_str::<Value>(&m.body)
                .ok()
                .and_then(|b| b["sequence"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            Echo::Image => m.sequence.clone(),
        }
    };
    let delivered: Vec<String> = q.messages.iter().map(seq_of).collect();
    let got: BTreeSet<&str> = delivered.iter().map(String::as_str).collect();

    // Duplicates.
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &delivered {
        *seen.entry(s.as_str()).or_default() += 1;
    }
    let dups: u64 = seen.values().map(|n| n - 1).sum();
    if r.fifo {
        tally.fifo_duplicates_outside_window += dups;
    } else {
        tally.standard_duplicates += dups;
    }

    // Nothing lost: every change is delivered or parked (an image echo may
    // also be suppressed by dedup: checked below by the end state).
    for w in written {
        if r.echo == Echo::Image {
            continue;
        }
        if !got.contains(w.sequence.as_str()) && !parked.contains(w.sequence.as_str()) {
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
        let newest = written.iter().rev().find(|w| w.key == key).unwrap();
        if parked.contains(newest.sequence.as_str()) {
            continue;
        }
        // The last message of the product that is not a copy of one
        // delivered before: SQS (standard always, FIFO after its 5-minute
        // window) may carry a copy of an older message after a newer one;
        // consumers tell copies by their `prism-sequence` (tallied above).
        let mut first_seen = BTreeSet::new();
        let firsts: Vec<&super::backends::Accepted> = q
            .messages
            .iter()
            .filter(|m| first_seen.insert(seq_of(m)))
            .collect();
        let last = firsts.into_iter().rev().find(|m| message_key(m) == key);
        match r.echo {
            Echo::Sequence => {
                let last_seq = last.map(seq_of);
                if last_seq.as_deref() != Some(newest.sequence.as_str()) {
                    bad.push(format!(
                        "{}: {key}'s last message is sequence {last_seq:?}, not its newest change {}",
                        r.id, newest.sequence
                    ));
                }
            }
            Echo::Image => {
                // What the newest change's output is: the receiver must end
                // with it, whether sent for it or (dedup) for an earlier one.
                let want = newest.v;
                let have = last.and_then(|m| {
                    serde_json::from_str::<Value>(&m.body)
                        .ok()
                        .map(|b| b["v"].as_u64())
                });
                if have != Some(want) {
                    bad.push(format!(
                        "{}: {key} ends on v {have:?}, but its newest change (sequence {}) has v {want:?}",
                        r.id, newest.sequence
                    ));
                }
            }
        }
    }
    bad
}

/// The product a message is about: its body's key (a window's messages
/// each carry their own), else the envelope's.
fn message_key(m: &super::backends::Accepted) -> String {
    serde_json::from_str::<Value>(&m.body)
        .ok()
        .and_then(|b| b["key"].as_str().map(str::to_owned))
        .unwrap_or_else(|| m.key.clone())
}
