//! A stream batch's output dedup state: read for the batch (the entries of
//! its products, or the long-lived copy), and written back, before the
//! batch is answered, for every product that changed.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{OutputsStore, StreamProcessor};
use crate::outputs::OutputMemory;
use crate::receivers::ReceiverSet;
use crate::spool::Spool;
use prism_types::change::Change;
use prism_types::manifest::Mode;

impl StreamProcessor {
    /// The dedup state for this batch: the long-lived one, or the stored
    /// entries of its (receiver, key) pairs. A store that cannot be read
    /// stops the batch (see `read_outputs`).
    pub(super) async fn batch_outputs(
        &self,
        set: &ReceiverSet,
        changes: &[Change],
        stream_order: bool,
    ) -> Result<Option<Arc<OutputMemory>>, crate::Error> {
        let Some(outputs) = self.outputs.as_ref() else {
            return Ok(None);
        };
        match outputs {
            OutputsStore::Memory(m) => Ok(Some(m.clone())),
            OutputsStore::Table(_) => {
                let keys: BTreeSet<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                let pairs: Vec<(String, String)> = set
                    .active
                    .iter()
                    .filter(|r| r.manifest.dedup && r.manifest.mode == Mode::Immediate)
                    .flat_map(|r| keys.iter().map(|k| (r.id().to_owned(), (*k).to_owned())))
                    .collect();
                self.read_outputs(&pairs, stream_order).await
            }
        }
    }

    /// The dedup state for a tick: the entries of the products that have
    /// retry lanes of dedup receivers (a lane's deliveries update them).
    pub(super) async fn tick_outputs(
        &self,
        set: &ReceiverSet,
        spool: Arc<dyn Spool>,
    ) -> Result<Option<Arc<OutputMemory>>, crate::Error> {
        let Some(outputs) = self.outputs.as_ref() else {
            return Ok(None);
        };
        let pairs: Vec<(String, String)> = match outputs {
            OutputsStore::Memory(m) => return Ok(Some(m.clone())),
            OutputsStore::Table(_) => {
                let dedup: BTreeSet<&str> = set
                    .active
                    .iter()
                    .filter(|r| r.manifest.dedup && r.manifest.mode == Mode::Immediate)
                    .map(|r| r.id())
                    .collect();
                let lanes = tokio::task::spawn_blocking(move || spool.lanes())
                    .await
                    .expect("listing lanes does not panic")
                    .map_err(|e| e.because(crate::ErrorKind::SpoolUnreadable))?;
                lanes
                    .into_iter()
                    .filter_map(|(lane, _)| match lane {
                        crate::spool::Lane::Retry { receiver, key }
                            if dedup.contains(receiver.as_str()) =>
                        {
                            Some((receiver, key))
                        }
                        _ => None,
                    })
                    .collect()
            }
        };
        // A lane holds the stream's changes in sequence order.
        self.read_outputs(&pairs, !self.replay).await
    }

    /// The stored dedup state of `pairs`. A store that cannot be read
    /// stops the batch or tick: turning dedup off instead (as before) sent
    /// a change an earlier attempt had suppressed after the product's newer
    /// change (the simulation found it).
    pub(super) async fn read_outputs(
        &self,
        pairs: &[(String, String)],
        stream_order: bool,
    ) -> Result<Option<Arc<OutputMemory>>, crate::Error> {
        let Some(OutputsStore::Table(store)) = &self.outputs else {
            return Ok(None);
        };
        let entries = if pairs.is_empty() {
            Vec::new()
        } else {
            match store.read(pairs).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::error!(error = %e, "output dedup state unreadable; nothing delivered, tried again");
                    return Err(e.because(crate::ErrorKind::OutputsUnreadable));
                }
            }
        };
        let memory = OutputMemory::from_entries(entries);
        Ok(Some(Arc::new(if stream_order {
            memory.guarding_stale()
        } else {
            memory
        })))
    }

    /// Write what a batch or tick changed in the dedup state
    /// ([`crate::ErrorKind::OutputsUnwritable`] says why a failure fails it).
    pub(super) async fn save_outputs(
        &self,
        memory: Option<&OutputMemory>,
    ) -> Result<(), crate::Error> {
        let (Some(OutputsStore::Table(store)), Some(mem)) = (&self.outputs, memory) else {
            return Ok(());
        };
        let entries = dirty_entries(mem);
        if entries.is_empty() {
            return Ok(());
        }
        store.write(&entries).await.map(|_| ()).inspect_err(|e| {
            tracing::error!(error = %e, "could not write the output dedup state; the batch is tried again");
        })
    }
}

/// What to write back of a dedup state: every entry of each product that
/// changed (a store may keep a product's entries together: DynamoDB does,
/// one item per product). Forgets that they changed.
pub(super) fn dirty_entries(
    mem: &OutputMemory,
) -> Vec<(crate::outputs::OutputKey, crate::outputs::LastOutput)> {
    let dirty: BTreeSet<String> = mem.take_dirty().into_iter().map(|((_, k), _)| k).collect();
    if dirty.is_empty() {
        return Vec::new();
    }
    mem.entries()
        .into_iter()
        .filter(|((_, k), _)| dirty.contains(k))
        .collect()
}
