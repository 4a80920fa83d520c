//! Applying a mapper's writes to the model: idempotent, never backwards,
//! and silent when nothing changed.
//!
//! For each write, the current document is read (in batches), then:
//! - if this source already applied this or a later sequence: **stale**,
//!   skipped (a retry, or a late duplicate);
//! - if the document would not change: **unchanged**, nothing is written,
//!   so no empty change flows to the receivers;
//! - otherwise it is written conditioned on the revision read. A concurrent
//!   write (another shadow stream's change to the same product) makes the
//!   condition fail: the writes stop with `WriteError::Conflict`, and the
//!   caller maps the change again, so the plugin builds its documents from
//!   what is there now (re-applying the document it built from the old
//!   state would undo the other write). What this change already wrote is
//!   then stale and skipped.

use serde_json::Value;

use super::store::{ModelStore, Put, Stored};
use prism_engine::ModelWrite;
use prism_types::change::cmp_sequence;

/// How many documents one read fetches.
const READ_CHUNK: usize = 100;
/// Why the writes stopped.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The store failed.
    Store(crate::Error),
    /// A document changed between its read and its write: map again.
    Conflict {
        /// The document.
        key: String,
        /// What was written before it.
        done: WriteTally,
    },
}

impl From<crate::Error> for WriteError {
    fn from(e: crate::Error) -> Self {
        Self::Store(e)
    }
}

/// What the writes of one change did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteTally {
    /// Documents created or replaced.
    pub upserted: usize,
    /// Documents deleted.
    pub deleted: usize,
    /// Writes skipped: the document would not change (or a delete of none).
    pub unchanged: usize,
    /// Writes skipped: this source already applied this or a later change.
    pub stale: usize,
}

impl WriteTally {
    /// Add another tally.
    pub fn add(&mut self, o: &WriteTally) {
        self.upserted += o.upserted;
        self.deleted += o.deleted;
        self.unchanged += o.unchanged;
        self.stale += o.stale;
    }

    /// Documents that changed.
    pub fn written(&self) -> usize {
        self.upserted + self.deleted
    }
}

enum Outcome {
    Upserted,
    Deleted,
    Unchanged,
    Stale,
}

/// Apply `writes` from `source` at `sequence`. `model_key` is the attribute
/// set to each document's key. Of several writes to one key, the last one
/// counts. A store error or a conflict stops the writes: the change is
/// mapped again (or retried as a whole), and what was written is then stale.
pub(crate) fn apply(
    store: &dyn ModelStore,
    model_key: &str,
    writes: Vec<ModelWrite>,
    source: &str,
    sequence: &str,
) -> Result<WriteTally, WriteError> {
    let writes = last_per_key(writes);
    let mut tally = WriteTally::default();
    for chunk in writes.chunks(READ_CHUNK) {
        let keys: Vec<String> = chunk.iter().map(|w| w.key().to_owned()).collect();
        let mut current = store.get_many(&keys)?;
        for (write, stored) in chunk.iter().zip(current.iter_mut()) {
            let Ok(outcome) = decide(store, model_key, write, stored.take(), source, sequence)?
            else {
                return Err(WriteError::Conflict {
                    key: write.key().to_owned(),
                    done: tally,
                });
            };
            match outcome {
                Outcome::Upserted => tally.upserted += 1,
                Outcome::Deleted => tally.deleted += 1,
                Outcome::Unchanged => tally.unchanged += 1,
                Outcome::Stale => tally.stale += 1,
            }
        }
    }
    Ok(tally)
}

/// The last write of each key, in the order of those last writes.
fn last_per_key(writes: Vec<ModelWrite>) -> Vec<ModelWrite> {
    let mut last = std::collections::HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        last.insert(w.key().to_owned(), i);
    }
    writes
        .into_iter()
        .enumerate()
        .filter(|(i, w)| last.get(w.key()) == Some(i))
        .map(|(_, w)| w)
        .collect()
}

/// Decide and do one write; `Err(())` is a conflict.
fn decide(
    store: &dyn ModelStore,
    model_key: &str,
    write: &ModelWrite,
    current: Option<Stored>,
    source: &str,
    sequence: &str,
) -> Result<Result<Outcome, ()>, crate::Error> {
    if let Some(c) = &current
        && let Some(applied) = c.sources.get(source)
        && cmp_sequence(applied, sequence).is_ge()
    {
        return Ok(Ok(Outcome::Stale));
    }
    let put = match (write, current) {
        (ModelWrite::Upsert { key, doc }, current) => {
            let mut doc = doc.clone();
            if let Some(o) = doc.as_object_mut() {
                o.insert(model_key.to_owned(), Value::String(key.clone()));
            }
            let (rev, mut sources, expected) = match &current {
                Some(c) if c.doc == doc => return Ok(Ok(Outcome::Unchanged)),
                Some(c) => (c.rev + 1, c.sources.clone(), Some(c.rev)),
                None => (1, Default::default(), None),
            };
            sources.insert(source.to_owned(), sequence.to_owned());
            let next = Stored { doc, rev, sources };
            (store.put(key, &next, expected)?, Outcome::Upserted)
        }
        (ModelWrite::Delete { .. }, None) => return Ok(Ok(Outcome::Unchanged)),
        (ModelWrite::Delete { key }, Some(c)) => (store.delete(key, c.rev)?, Outcome::Deleted),
    };
    Ok(match put {
        (Put::Done, outcome) => Ok(outcome),
        (Put::Conflict, _) => Err(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalModel;
    use serde_json::json;

    fn upsert(key: &str, v: u64) -> ModelWrite {
        ModelWrite::Upsert {
            key: key.into(),
            doc: json!({ "v": v }),
        }
    }

    #[test]
    fn stale_unchanged_and_the_last_write_per_key() {
        let m = LocalModel::default();
        let t = apply(
            &m,
            "pk",
            vec![upsert("A", 1), upsert("B", 1), upsert("A", 2)],
            "s/1",
            "10",
        )
        .unwrap();
        assert_eq!((t.upserted, t.stale), (2, 0));
        assert_eq!(m.documents()["A"], json!({"pk": "A", "v": 2}));
        // The same source again at the same or an older sequence: stale.
        let t = apply(&m, "pk", vec![upsert("A", 3)], "s/1", "9").unwrap();
        assert_eq!((t.upserted, t.stale), (0, 1));
        // Another source, the same document: unchanged, nothing recorded.
        let before = m.take_changes().len();
        let t = apply(&m, "pk", vec![upsert("A", 2)], "s/2", "1").unwrap();
        assert_eq!((t.unchanged, before, m.take_changes().len()), (1, 2, 0));
        // A delete of nothing is unchanged; of something, a delete.
        let t = apply(
            &m,
            "pk",
            vec![
                ModelWrite::Delete { key: "Z".into() },
                ModelWrite::Delete { key: "B".into() },
            ],
            "s/3",
            "1",
        )
        .unwrap();
        assert_eq!((t.unchanged, t.deleted), (1, 1));
    }
}
