//! Redrives in the simulation: the real `prism_core::redrive`, in a
//! process of its own (an operator's `prism dlq redrive`) running the
//! receiver's fixed plugin, interleaved with the stream and the tick,
//! over a model of the dead-letter queue (letters held invisible while a
//! redrive works on them, deleted only by their latest receipt, behind
//! faults) and the model table read as documents.

use std::sync::Arc;

use serde_json::Value;

use prism_core::redrive::{DeadLetters, Letter, LetterKind};
use prism_read_api::ModelSource;
use prism_types::change::Change;

use super::backends::{Clock, Queues};
use super::backfill::{TABLE, Table};
use super::faults::{Faults, applies, errs};

/// One receiver's dead-letter queue, behind faults.
pub(crate) struct SimDeadLetters {
    pub(crate) receiver: String,
    pub(crate) queues: Arc<Queues>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) clock: Arc<Clock>,
}

impl SimDeadLetters {
    fn fault(&self, call: &str) -> (bool, Result<(), prism_core::Error>) {
        let f = self.faults.decide(call, &self.receiver);
        let result = if errs(f) {
            Err(prism_core::Error::redrive(
                self.place(),
                format!("{call}: injected fault"),
            ))
        } else {
            Ok(())
        };
        (applies(f), result)
    }
}

fn receipt(l: &Letter) -> (u64, u64) {
    let (id, r) = l.receipt.split_once(':').expect("id:receipt");
    (id.parse().unwrap(), r.parse().unwrap())
}

#[async_trait::async_trait]
impl DeadLetters for SimDeadLetters {
    fn place(&self) -> String {
        format!("sim DLQ of {}", self.receiver)
    }

    async fn hold(&self, max: usize, hold_secs: u32) -> Result<Vec<Letter>, prism_core::Error> {
        let (happens, result) = self.fault("dlq.receive");
        let mut out = Vec::new();
        if happens {
            let now = self.clock.now();
            let mut queues = self.queues.0.lock().unwrap();
            if let Some(q) = queues.get_mut(&self.receiver) {
                for (d, h) in q.dead.iter().zip(q.letters.iter_mut()) {
                    if out.len() >= max || h.until > now {
                        continue;
                    }
                    h.receipt += 1;
                    h.until = now + u64::from(hold_secs) * 1000;
                    out.push(Letter {
                        id: format!("L{}", h.id),
                        receipt: format!("{}:{}", h.id, h.receipt),
                        body: serde_json::to_string(d).unwrap(),
                        attributes: [("prism-error-kind".to_owned(), d.error_kind.clone())].into(),
                        group: None,
                        kind: LetterKind::Parked,
                    });
                }
            }
        }
        result.map(|()| out)
    }

    async fn change(&self, l: &Letter) -> Result<Change, prism_core::Error> {
        let body: Value = serde_json::from_str(&l.body).unwrap();
        Change::from_json(&body["change"]).map_err(|e| prism_core::Error::redrive(&l.id, e))
    }

    async fn delete(&self, l: &Letter) -> Result<(), prism_core::Error> {
        let (happens, result) = self.fault("dlq.delete");
        if happens {
            let (id, r) = receipt(l);
            let mut queues = self.queues.0.lock().unwrap();
            let deleted = queues
                .get_mut(&self.receiver)
                .is_some_and(|q| q.delete(id, r));
            drop(queues);
            if !deleted {
                return Err(prism_core::Error::redrive(
                    self.place(),
                    format!("{}: the receipt is no longer valid", l.id),
                ));
            }
            self.faults
                .note(|| format!("  dlq {}: {} deleted", self.receiver, l.id));
        }
        result
    }

    async fn release(&self, letters: &[&Letter]) -> Result<(), prism_core::Error> {
        let (happens, result) = self.fault("dlq.release");
        if happens {
            let mut queues = self.queues.0.lock().unwrap();
            if let Some(q) = queues.get_mut(&self.receiver) {
                for l in letters {
                    let (id, r) = receipt(l);
                    if let Some(h) = q.letters.iter_mut().find(|h| h.id == id && h.receipt == r) {
                        h.until = 0;
                    }
                }
            }
        }
        result
    }

    async fn send_back(&self, l: &Letter) -> Result<(), prism_core::Error> {
        unreachable!("the simulation's letters are all parked: {}", l.id)
    }
}

/// The model table's documents, as a redrive reads them (strongly
/// consistent), behind faults. The table may move on between reads (the
/// stream writes while the redrive runs: its check then sends a
/// correction).
pub(crate) struct SimDocs {
    pub(crate) table: Table,
    pub(crate) faults: Arc<Faults>,
    pub(crate) rng: std::sync::Mutex<fastrand::Rng>,
}

#[async_trait::async_trait]
impl ModelSource for SimDocs {
    async fn get(&self, key: &str) -> Result<Option<Value>, prism_core::Error> {
        if errs(self.faults.decide("model.get", TABLE)) {
            return Err(prism_core::Error::model(
                TABLE.to_owned(),
                format!("GetItem {key}: injected fault"),
            ));
        }
        let item = self.table.item(key);
        if self.rng.lock().unwrap().u32(0..4) == 0 {
            self.table.write(1);
            self.faults
                .note(|| "the stream writes 1 while a redrive runs".to_owned());
        }
        let Some(Value::Object(item)) = item else {
            return Ok(None);
        };
        let mut doc = prism_types::input::attr::map_to_json(&item, key).unwrap();
        prism_types::bookkeeping::strip_bookkeeping(&mut doc);
        Ok(Some(Value::Object(doc)))
    }
}
