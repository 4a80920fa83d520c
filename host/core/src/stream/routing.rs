//! Where each receiver's changes go in a batch: its queues, or, for a
//! receiver whose plugin does not load, its dead-letter queue.

use std::collections::HashMap;

use prism_types::change::Change;
use prism_types::manifest::Destination;

use super::UNREADABLE;
use super::records::Record;
use crate::receivers::ReceiverSet;
use crate::sink::{DeadLetter, Sink};
use prism_types::failure::FailureKind;

/// Where each receiver's messages go (receivers without a queue are
/// logged and left out), and the receivers whose plugin does not load
/// but whose changes can be parked in their dead-letter queue.
pub(crate) fn destinations(
    set: &ReceiverSet,
    unreadable_queue: Option<&str>,
) -> (HashMap<String, Destination>, Vec<Broken>) {
    let mut destinations: HashMap<String, Destination> = HashMap::new();
    for r in &set.active {
        match &r.manifest.destination {
            Some(d) => {
                destinations.insert(r.id().to_owned(), d.clone());
            }
            None => tracing::error!(
                receiver = r.id(),
                "receiver has no destination queue in its registry entry; it gets nothing"
            ),
        }
    }
    if let Some(q) = unreadable_queue {
        destinations.insert(
            UNREADABLE.to_owned(),
            Destination {
                queue: q.to_owned(),
                dead_letter_queue: Some(q.to_owned()),
            },
        );
    }
    // Enabled receivers whose plugin does not load: their changes are
    // parked in their dead-letter queue, to be replayed once it is fixed.
    let broken: Vec<Broken> = set
        .unavailable
        .iter()
        .filter_map(|u| {
            let d = u.destination.clone()?;
            d.dead_letter_queue.as_ref()?;
            let receiver = u.receiver.clone()?;
            destinations.insert(receiver.clone(), d);
            Some(Broken {
                receiver,
                digest: u.digest.map(|d| d.to_string()),
                reason: u.reason.clone(),
            })
        })
        .collect();
    (destinations, broken)
}

/// The active receivers that have somewhere to deliver.
pub(crate) fn deliverable(
    set: &ReceiverSet,
    destinations: &HashMap<String, Destination>,
) -> ReceiverSet {
    ReceiverSet {
        active: set
            .active
            .iter()
            .filter(|r| destinations.contains_key(r.id()))
            .cloned()
            .collect(),
        ..ReceiverSet::default()
    }
}

/// A receiver whose plugin failed to load, with a dead-letter queue.
pub(crate) struct Broken {
    pub(crate) receiver: String,
    pub(crate) digest: Option<String>,
    pub(crate) reason: String,
}

/// Park every change for a receiver that cannot run; stop (and hold the
/// rest) at the first that cannot be parked.
pub(crate) fn park_all(
    sink: &dyn Sink,
    b: &Broken,
    changes: &[Change],
    already: crate::dispatch::AlreadyHandled<'_>,
) -> crate::dispatch::ReceiverStats {
    let mut st = crate::dispatch::ReceiverStats::default();
    for (c, change) in changes.iter().enumerate() {
        if already(&b.receiver, c) {
            st.already_handled += 1;
            continue;
        }
        if !st.held.is_empty() {
            st.held.push(c);
            continue;
        }
        st.seen += 1;
        let error = format!(
            "receiver {} (plugin {}) on key {} sequence {}: plugin unavailable: {}",
            b.receiver,
            b.digest.as_deref().unwrap_or("?"),
            change.key,
            change.sequence,
            b.reason
        );
        st.error(FailureKind::Unavailable.as_str(), error.clone());
        let dead = DeadLetter {
            receiver: b.receiver.clone(),
            plugin_digest: b.digest.clone(),
            key: change.key.clone(),
            sequence: change.sequence.clone(),
            ordinal: c as u64 + 1,
            error_kind: FailureKind::Unavailable.as_str().into(),
            error,
            change: crate::dispatch::change_json(change),
        };
        if let Err(e) = sink.park(&dead) {
            tracing::error!(receiver = %b.receiver, key = %change.key, error = %e, "could not park a change for an unavailable receiver; held");
            st.held.push(c);
        }
    }
    st
}

/// Park an unreadable record in the dispatcher's dead-letter queue.
pub(crate) fn park_unreadable(sink: &dyn Sink, i: usize, r: &Record, error: &str) -> bool {
    let dead = DeadLetter {
        receiver: UNREADABLE.to_owned(),
        plugin_digest: None,
        key: String::new(),
        sequence: r.sequence.clone(),
        ordinal: i as u64 + 1,
        error_kind: FailureKind::Unreadable.as_str().into(),
        error: format!("stream record {i} (sequence {}): {error}", r.sequence),
        change: r.raw.clone(),
    };
    match sink.park(&dead) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(sequence = %r.sequence, error = %e, "could not park an unreadable record");
            false
        }
    }
}
