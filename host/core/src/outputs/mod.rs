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
//! - **The state is only trusted when it is the product's previous version.**
//!   Each entry also keeps the hash of the product image that produced it.
//!   An output is suppressed only when the change's *old* image is that very
//!   image: nothing happened to the product since the state was written. If
//!   a delivery's state write was lost (a failed table write, a crash, a path
//!   that delivered without recording), the next change's old image does not
//!   match, and its output is sent, never suppressed. The state may run
//!   behind what a receiver got; it is then ignored, never believed.
//! - A suppressed change moves the entry on to its own image (the receiver
//!   still has the same output), so a run of identical outputs stays
//!   suppressed.
//! - Only immediate receivers are deduplicated (a batch's output spans many
//!   products), and each can switch it off (`dedup = false`).
//!
//! [`OutputMemory`] is the working copy a run uses; [`local`] keeps it in a
//! file beside the outbox, `prism_aws::outputs` in a DynamoDB table.

pub mod local;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prism_contract::Message;
use sha2::{Digest as _, Sha256};

use prism_types::change::{Change, cmp_sequence};

/// The last output delivered to one (receiver, key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastOutput {
    /// The stream sequence number of the change that produced it.
    pub sequence: String,
    /// [`hash_messages`] of what was delivered.
    pub hash: [u8; 32],
    /// [`image_hash`] of the product image the output was made from (the
    /// change's new image); `None` in state written before it was kept,
    /// which never suppresses.
    pub image: Option<[u8; 32]>,
}

/// (receiver, product key).
pub type OutputKey = (String, String);

/// The working copy of the output state for a run.
#[derive(Debug, Default)]
pub struct OutputMemory {
    entries: Mutex<HashMap<OutputKey, LastOutput>>,
    /// Entries changed by this run, to be written back.
    dirty: Mutex<HashSet<OutputKey>>,
    /// Refuse changes older than the recorded output ([`Self::superseded`]):
    /// only where sequence numbers are the stream's own (not a backfill's,
    /// which sit below every stream's on purpose, nor a replay's, nor a
    /// local file's, which start again at 1).
    stale_guard: bool,
}

impl OutputMemory {
    /// A working copy starting from `entries`.
    pub fn from_entries(entries: impl IntoIterator<Item = (OutputKey, LastOutput)>) -> Self {
        Self {
            entries: Mutex::new(entries.into_iter().collect()),
            dirty: Mutex::default(),
            stale_guard: false,
        }
    }

    /// This memory, refusing changes older than the recorded output
    /// ([`Self::superseded`]).
    pub fn guarding_stale(mut self) -> Self {
        self.stale_guard = true;
        self
    }

    /// Whether a change whose old image hashes to `before` may skip an
    /// output hashing to `hash`: (receiver, key) last got that very output,
    /// made from that very image.
    pub fn unchanged(&self, receiver: &str, key: &str, hash: &[u8; 32], before: &[u8; 32]) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(receiver.to_owned(), key.to_owned()))
            .is_some_and(|e| &e.hash == hash && e.image.as_ref() == Some(before))
    }

    /// Whether (receiver, key) already got the output of this change or of
    /// a newer one (the state is recorded only once an output went out, or
    /// was suppressed as the same): sending it now would put an older
    /// version after a newer one. A retried stream batch gets there when
    /// its ledger could not be written: a change the first attempt
    /// suppressed comes again after the product's newer change went out.
    ///
    /// A backfill's change is never superseded: its numbers sit below every
    /// stream's on purpose, and the backfill orders itself, checking each
    /// send against the table and correcting it. A correction waiting in a
    /// retry lane that this refused would leave the receiver on the
    /// backfill's stale insert (the simulation found it).
    pub fn superseded(&self, receiver: &str, key: &str, sequence: &str) -> bool {
        if !self.stale_guard || prism_types::change::is_backfill(sequence) {
            return false;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(receiver.to_owned(), key.to_owned()))
            .is_some_and(|e| cmp_sequence(&e.sequence, sequence).is_ge())
    }

    /// Remember a delivery (or a suppression: the receiver keeps the same
    /// output of a newer image), unless a later one is already remembered.
    /// Returns whether the state moved.
    ///
    /// A delivery the state cannot take (a backfill's or a redrive's, whose
    /// sequence numbers sit below the stream's) that sent another output
    /// than the one recorded leaves the receiver with something the entry
    /// does not describe: the entry stops being trusted ([`Self::untrust`]).
    pub fn record(
        &self,
        receiver: &str,
        key: &str,
        sequence: &str,
        hash: [u8; 32],
        image: [u8; 32],
    ) -> bool {
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
                    image: Some(image),
                },
            );
        } else {
            let Some(e) = entries.get_mut(&k) else {
                return false;
            };
            if e.hash == hash || e.image.is_none() {
                return false;
            }
            e.image = None;
        }
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k);
        newer
    }

    /// Stop trusting what (receiver, key) last got: part of a change's
    /// output went out and the rest did not, so the receiver holds an output
    /// no entry describes. The entry keeps its sequence (the stale guard
    /// still holds) but suppresses nothing until a delivery records anew.
    pub fn untrust(&self, receiver: &str, key: &str) {
        let k = (receiver.to_owned(), key.to_owned());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get_mut(&k).filter(|e| e.image.is_some()) {
            e.image = None;
            self.dirty
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(k);
        }
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

/// What identifies the image a change started from (`old`) or made
/// (`new`) for output dedup: its text and, when the model builder wrote
/// it, its bookkeeping (revision and source sequences). The text alone
/// repeats when a product changes back (A, B, A): a state that missed B
/// (its record lost after B was sent) then took the second A for the
/// first and suppressed it while the receiver held B (the simulation found
/// it, seed 197962). The bookkeeping never repeats: each write carries the
/// newer source sequence that caused it, even after a delete restarts
/// the revision. Without it (a stream not written by prism's model
/// builder), the text's hash, as before.
pub fn image_identity(c: &Change, side: Side) -> [u8; 32] {
    let (json, books) = match side {
        Side::Old => (c.old_json.as_deref(), c.old_bookkeeping.as_deref()),
        Side::New => (c.new_json.as_deref(), c.new_bookkeeping.as_deref()),
    };
    match books {
        None => image_hash(json),
        Some(books) => {
            let mut h = Sha256::new();
            h.update(image_hash(json));
            h.update(b"\0bookkeeping\0");
            h.update(books.as_bytes());
            h.finalize().into()
        }
    }
}

/// Which image of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The image before the change.
    Old,
    /// The image after it.
    New,
}

/// The hash of a product image as JSON text (`None`: no image, before an
/// insert or after a remove). A change's old image is the previous change's
/// new image byte for byte (both are decoded the same way from the same
/// item), which is what lets the state be checked against it.
pub fn image_hash(json: Option<&str>) -> [u8; 32] {
    let mut h = Sha256::new();
    match json {
        Some(text) => {
            h.update(b"image\0");
            h.update(text.as_bytes());
        }
        None => h.update(b"absent\0"),
    }
    h.finalize().into()
}

/// A durable dedup state, read and written per batch
/// (`prism_aws::outputs::DynamoOutputs` on AWS).
#[async_trait::async_trait]
pub trait OutputsTable: Send + Sync {
    /// The stored state of `pairs` (absent pairs have none yet).
    async fn read(&self, pairs: &[OutputKey])
    -> Result<Vec<(OutputKey, LastOutput)>, crate::Error>;

    /// Write `entries`: every entry of each product the caller changed
    /// (a store may keep a product's entries together). Returns how many
    /// items were written. A write may race another writer's and leave an
    /// older entry behind: safe, since an entry only ever suppresses the
    /// change right after its own image.
    async fn write(&self, entries: &[(OutputKey, LastOutput)]) -> Result<usize, crate::Error>;
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
    fn the_stale_guard_refuses_older_stream_changes_but_never_a_backfills() {
        let (h, i) = (hash_messages(&[msg("1")]), image_hash(Some("a")));
        let stream = |n: u64| (100_000_000_000_000_000_000u128 + u128::from(n)).to_string();
        let m = OutputMemory::default().guarding_stale();
        m.record("r", "k", &stream(7), h, i);
        assert!(m.superseded("r", "k", &stream(5)));
        assert!(m.superseded("r", "k", &stream(7)));
        assert!(!m.superseded("r", "k", &stream(8)));
        // A backfill's correction, below the stream's numbers, goes out:
        // the backfill orders its own sends against the table.
        let backfill = "17960832000000001001";
        assert!(!m.superseded("r", "k", backfill));
        assert!(!OutputMemory::default().superseded("r", "k", &stream(5)));
    }

    #[test]
    fn state_never_moves_backwards() {
        let m = OutputMemory::default();
        let (h1, h2) = (hash_messages(&[msg("1")]), hash_messages(&[msg("2")]));
        let (a, b, c) = (
            image_hash(Some("a")),
            image_hash(Some("b")),
            image_hash(Some("c")),
        );
        assert!(m.record("r", "k", "200", h1, a));
        assert!(m.unchanged("r", "k", &h1, &a));
        // A late retry of an older change does not replace the newer state
        // (and, having sent another output, stops it being trusted).
        assert!(!m.record("r", "k", "150", h2, b));
        assert_eq!(m.entries()[0].1.sequence, "200");
        assert!(!m.unchanged("r", "k", &h1, &a));
        assert!(
            m.record("r", "k", "1000", h2, b),
            "sequences compare as numbers"
        );
        assert!(!m.unchanged("r", "k", &h1, &b));
        assert_eq!(m.take_dirty().len(), 1);
        assert!(m.take_dirty().is_empty());
        m.merge([(
            ("r".into(), "k".into()),
            LastOutput {
                sequence: "999".into(),
                hash: h1,
                image: Some(c),
            },
        )]);
        assert!(
            m.unchanged("r", "k", &h2, &b),
            "an older stored entry does not win"
        );
    }

    /// Issue 28 item 10: a delivery the state cannot record (a backfill's,
    /// a redrive's, or part of a change's messages) must not leave an entry
    /// that suppresses the product's next change as the same as what the
    /// receiver holds.
    #[test]
    fn a_delivery_the_state_cannot_record_stops_it_being_trusted() {
        let m = OutputMemory::default();
        let (x, y) = (hash_messages(&[msg("X")]), hash_messages(&[msg("Y")]));
        let a = image_hash(Some("a"));
        assert!(m.record("r", "k", "200", x, a));
        m.take_dirty();
        // The same output from an older sequence: the receiver still has X.
        assert!(!m.record("r", "k", "100", x, a));
        assert!(m.unchanged("r", "k", &x, &a));
        assert!(m.take_dirty().is_empty());
        // Another output from an older sequence (a redrive of an old
        // change): the receiver now has Y, which the entry does not say.
        assert!(!m.record("r", "k", "100", y, a));
        assert!(!m.unchanged("r", "k", &x, &a));
        assert_eq!(m.take_dirty().len(), 1, "the distrust is written back");
        // The next stream delivery records and is trusted again.
        assert!(m.record("r", "k", "300", x, a));
        assert!(m.unchanged("r", "k", &x, &a));
        // Part of a change's output went out.
        m.untrust("r", "k");
        assert!(!m.unchanged("r", "k", &x, &a));
        assert_eq!(m.entries()[0].1.sequence, "300", "the sequence stays");
    }

    #[test]
    fn state_is_trusted_only_as_the_products_previous_version() {
        let m = OutputMemory::default();
        let x = hash_messages(&[msg("X")]);
        let (v1, v2) = (image_hash(Some("{\"v\":1}")), image_hash(Some("{\"v\":2}")));
        m.record("r", "k", "1", x, v1);
        // The change after it (old image v1) may skip an identical output.
        assert!(m.unchanged("r", "k", &x, &v1));
        // A change whose old image is not the recorded one came after a
        // delivery the state missed: it is sent.
        assert!(!m.unchanged("r", "k", &x, &v2));
        // State without an image (written by an older version) never suppresses.
        let old = OutputMemory::from_entries([(
            ("r".into(), "k".into()),
            LastOutput {
                sequence: "1".into(),
                hash: x,
                image: None,
            },
        )]);
        assert!(!old.unchanged("r", "k", &x, &v1));
        assert_ne!(image_hash(None), image_hash(Some("")));
    }

    #[test]
    fn an_image_changed_back_is_a_new_image_when_the_model_builder_wrote_it() {
        let doc = serde_json::json!({"pk": "P-1", "v": 1});
        let mut first = Change::new(
            "P-1".into(),
            prism_types::change::ChangeKind::Insert,
            None,
            Some(doc.clone()),
            "1".into(),
            0,
        );
        let mut back = first.clone();
        // Without bookkeeping, the text is all there is: the same.
        assert_eq!(
            image_identity(&first, Side::New),
            image_identity(&back, Side::New)
        );
        assert_eq!(
            image_identity(&first, Side::New),
            image_hash(first.new_json.as_deref())
        );
        // The model builder wrote them at different revisions and sources.
        first.new_bookkeeping = Some(r#"{"_prism_rev":1,"_prism_sources":{"p":"01"}}"#.into());
        back.new_bookkeeping = Some(r#"{"_prism_rev":3,"_prism_sources":{"p":"05"}}"#.into());
        assert_ne!(
            image_identity(&first, Side::New),
            image_identity(&back, Side::New)
        );
        assert_eq!(image_identity(&first, Side::Old), image_hash(None));
    }
}
