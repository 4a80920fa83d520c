//! Output dedup: the hash of the last output delivered to each (receiver,
//! product key), so an identical output is not sent again. A full refresh
//! that changes nothing then sends nothing, and one that changes 3 % of the
//! products sends 3 %.
//!
//! - The hash covers every message of a change: content type, group,
//!   attributes and body.
//! - State only moves forward: an entry is replaced only by a change with a
//!   later stream sequence number, so a late retry or a parallel shard can
//!   never move it backwards.
//! - Only immediate receivers are deduplicated (a batch's output spans many
//!   products), and each can switch it off (`dedup = false`).
//!
//! [`OutputMemory`] is the working copy a run uses; [`local`] keeps it in a
//! file beside the outbox, `prism_aws::outputs` in a DynamoDB table.

pub mod local;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prism_sdk::Message;
use sha2::{Digest as _, Sha256};

use prism_types::change::cmp_sequence;

/// The last output delivered to one (receiver, key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastOutput {
    /// The stream sequence number of the change that produced it.
    pub sequence: String,
    /// [`hash_messages`] of what was delivered.
    pub hash: [u8; 32],
}

/// (receiver, product key).
pub type OutputKey = (String, String);

/// The working copy of the output state for a run.
#[derive(Debug, Default)]
pub struct OutputMemory {
    entries: Mutex<HashMap<OutputKey, LastOutput>>,
    /// Entries changed by this run, to be written back.
    dirty: Mutex<HashSet<OutputKey>>,
}

impl OutputMemory {
    /// A working copy starting from `entries`.
    pub fn from_entries(entries: impl IntoIterator<Item = (OutputKey, LastOutput)>) -> Self {
        Self {
            entries: Mutex::new(entries.into_iter().collect()),
            dirty: Mutex::default(),
        }
    }

    /// Whether `hash` is what was last delivered to (receiver, key).
    pub fn unchanged(&self, receiver: &str, key: &str, hash: &[u8; 32]) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(receiver.to_owned(), key.to_owned()))
            .is_some_and(|e| &e.hash == hash)
    }

    /// Remember a delivery, unless a later one is already remembered.
    /// Returns whether the state moved.
    pub fn record(&self, receiver: &str, key: &str, sequence: &str, hash: [u8; 32]) -> bool {
        let k = (receiver.to_owned(), key.to_owned());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let newer = entries
            .get(&k)
            .is_none_or(|e| cmp_sequence(sequence, &e.sequence).is_gt());
        if newer {
            entries.insert(
                k.clone(),
                LastOutput {
                    sequence: sequence.to_owned(),
                    hash,
                },
            );
            self.dirty
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(k);
        }
        newer
    }

    /// The entries this run changed (and forgets that they changed).
    pub fn take_dirty(&self) -> Vec<(OutputKey, LastOutput)> {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = dirty
            .into_iter()
            .filter_map(|k| entries.get(&k).map(|e| (k, e.clone())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every entry, sorted.
    pub fn entries(&self) -> Vec<(OutputKey, LastOutput)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Add entries read from a store (a store's newer entry wins).
    pub fn merge(&self, entries: impl IntoIterator<Item = (OutputKey, LastOutput)>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in entries {
            let newer = map
                .get(&k)
                .is_none_or(|e| cmp_sequence(&v.sequence, &e.sequence).is_gt());
            if newer {
                map.insert(k, v);
            }
        }
    }
}

/// The hash of a change's messages, in order.
pub fn hash_messages(msgs: &[Message]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for m in msgs {
        part(m.content_type.as_bytes());
        part(m.group.as_deref().unwrap_or("\u{0}").as_bytes());
        part(&(m.attributes.len() as u64).to_le_bytes());
        for (k, v) in &m.attributes {
            part(k.as_bytes());
            part(v.as_bytes());
        }
        part(&m.body);
    }
    h.finalize().into()
}

/// A read or write of a stored dedup state that failed.
#[derive(Debug, thiserror::Error)]
#[error("output state table {table}: {message}")]
pub struct OutputsError {
    /// The table.
    pub table: String,
    /// What failed.
    pub message: String,
}

/// A durable dedup state, read and written per batch
/// (`prism_aws::outputs::DynamoOutputs` on AWS).
#[async_trait::async_trait]
pub trait OutputsTable: Send + Sync {
    /// The stored state of `pairs` (absent pairs have none yet).
    async fn read(&self, pairs: &[OutputKey])
    -> Result<Vec<(OutputKey, LastOutput)>, OutputsError>;

    /// Write `entries`, each only if it is newer than what is stored.
    /// Returns how many were written (the rest lost to a newer state).
    async fn write(&self, entries: &[(OutputKey, LastOutput)]) -> Result<usize, OutputsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> Message {
        Message::new("application/json", body.as_bytes().to_vec())
    }

    #[test]
    fn hashes_cover_everything_delivered() {
        let a = hash_messages(&[msg("x")]);
        assert_eq!(a, hash_messages(&[msg("x")]));
        assert_ne!(a, hash_messages(&[msg("y")]));
        assert_ne!(a, hash_messages(&[msg("x").attribute("a", "1")]));
        assert_ne!(a, hash_messages(&[msg("x"), msg("x")]));
        let mut g = msg("x");
        g.group = Some("g".into());
        assert_ne!(a, hash_messages(&[g]));
        // Boundaries are unambiguous.
        assert_ne!(
            hash_messages(&[msg("ab").attribute("c", "")]),
            hash_messages(&[msg("a").attribute("bc", "")])
        );
    }

    #[test]
    fn state_never_moves_backwards() {
        let m = OutputMemory::default();
        let (h1, h2) = (hash_messages(&[msg("1")]), hash_messages(&[msg("2")]));
        assert!(m.record("r", "k", "200", h1));
        assert!(m.unchanged("r", "k", &h1));
        // A late retry of an older change does not replace the newer state.
        assert!(!m.record("r", "k", "150", h2));
        assert!(m.unchanged("r", "k", &h1));
        assert!(
            m.record("r", "k", "1000", h2),
            "sequences compare as numbers"
        );
        assert!(!m.unchanged("r", "k", &h1));
        assert_eq!(m.take_dirty().len(), 1);
        assert!(m.take_dirty().is_empty());
        m.merge([(
            ("r".into(), "k".into()),
            LastOutput {
                sequence: "999".into(),
                hash: h1,
            },
        )]);
        assert!(
            m.unchanged("r", "k", &h2),
            "an older stored entry does not win"
        );
    }
}
