//! Backfills in the simulation: the real `prism_core::backfill` run, in a
//! process of its own (the CLI's, or a backfill invocation), its pages
//! interleaved with the stream's batches and the tick, over models of
//! what it reads and writes:
//!
//! - The model table: what the stream has written so far. Its `Scan` is
//!   eventually consistent, as DynamoDB's is: the seed may answer it with
//!   images a few writes old (so the stream's newer version can reach the
//!   receiver before the backfill's older send). The check after a send
//!   is a strongly consistent read of the current images. While a page
//!   settles, the table may move on (the stream writes more).
//! - The checkpoints, in memory, behind the same faults as every call.
//! - Time: the simulated clock; a settle or a retry's wait advances it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use prism_core::backfill::checkpoint::{Checkpoint, Checkpoints, checkpoint_error};
use prism_core::backfill::{Clock as BackfillClock, ModelScan, PageRequest, ScanPage};

use super::backends::Clock;
use super::faults::{Faults, applies, errs};

/// The model table's name in messages.
pub(crate) const TABLE: &str = "sim-model";

/// The model table: the images the first `visible` records of the stream
/// leave.
#[derive(Clone)]
pub(crate) struct Table {
    pub(crate) records: Arc<Vec<Value>>,
    pub(crate) visible: Arc<AtomicUsize>,
}

impl Table {
    /// Each product's image (DynamoDB JSON) after the first `n` records.
    fn at(&self, n: usize) -> BTreeMap<String, Value> {
        let mut items = BTreeMap::new();
        for r in &self.records[..n.min(self.records.len())] {
            let key = r["dynamodb"]["Keys"]["pk"]["S"]
                .as_str()
                .unwrap()
                .to_owned();
            match r["dynamodb"].get("NewImage") {
                Some(image) => items.insert(key, image.clone()),
                None => items.remove(&key),
            };
        }
        items
    }

    /// A product's item now.
    pub(crate) fn item(&self, key: &str) -> Option<Value> {
        self.at(self.now()).remove(key)
    }

    pub(crate) fn now(&self) -> usize {
        self.visible.load(Ordering::SeqCst)
    }

    /// The stream writes up to `n` more records.
    pub(crate) fn write(&self, n: usize) {
        let end = self.now().saturating_add(n).min(self.records.len());
        self.visible.store(end, Ordering::SeqCst);
    }
}

fn product_number(key: &str) -> u32 {
    key.trim_start_matches("P-").parse().unwrap_or(0)
}

fn model_err(what: &str) -> prism_core::Error {
    prism_core::Error::model(TABLE.to_owned(), format!("{what}: injected fault"))
}

/// The model table as a backfill reads it, behind faults.
pub(crate) struct SimModel {
    pub(crate) table: Table,
    pub(crate) faults: Arc<Faults>,
    /// How stale a scan's answer is (the seed's).
    pub(crate) rng: Mutex<fastrand::Rng>,
    /// A fixed staleness instead (a pinned schedule's).
    pub(crate) lag: Mutex<Option<usize>>,
}

#[async_trait::async_trait]
impl ModelScan for SimModel {
    fn table(&self) -> &str {
        TABLE
    }

    async fn describe(&self) -> Result<(Vec<String>, u64), prism_core::Error> {
        let n = self.table.at(self.table.now()).len() as u64;
        Ok((vec!["pk".to_owned()], n))
    }

    async fn scan(&self, req: PageRequest<'_>) -> Result<ScanPage, prism_core::Error> {
        if errs(self.faults.decide("model.scan", TABLE)) {
            return Err(model_err("Scan"));
        }
        // Eventually consistent: up to three writes behind.
        let now = self.table.now();
        let drawn = self.rng.lock().unwrap().usize(0..=3);
        let lag = self.lag.lock().unwrap().unwrap_or(drawn).min(now);
        if lag > 0 {
            self.faults
                .note(|| format!("scan reads {lag} writes behind"));
        }
        let after = req
            .after
            .map(|a| a["pk"]["S"].as_str().unwrap_or("").to_owned());
        let mut items: Vec<(String, Value)> = self
            .table
            .at(now - lag)
            .into_iter()
            .filter(|(k, _)| product_number(k) % req.segments == req.segment)
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
            .collect();
        let more = items.len() > req.limit;
        items.truncate(req.limit);
        Ok(ScanPage {
            after: more
                .then(|| items.last().map(|(k, _)| json!({"pk": {"S": k}})))
                .flatten(),
            items: items.into_iter().map(|(_, v)| v).collect(),
        })
    }

    async fn read(&self, keys: &[Map<String, Value>]) -> Result<Vec<Value>, prism_core::Error> {
        if errs(self.faults.decide("model.read", TABLE)) {
            return Err(model_err("BatchGetItem"));
        }
        let now = self.table.at(self.table.now());
        Ok(keys
            .iter()
            .filter_map(|k| now.get(k["pk"]["S"].as_str()?).cloned())
            .collect())
    }
}

/// One receiver's checkpoints, behind faults.
pub(crate) struct SimCheckpoints {
    pub(crate) receiver: String,
    pub(crate) saved: Mutex<Vec<Checkpoint>>,
    pub(crate) faults: Arc<Faults>,
}

impl SimCheckpoints {
    pub(crate) fn new(receiver: &str, faults: Arc<Faults>) -> Self {
        Self {
            receiver: receiver.to_owned(),
            saved: Mutex::new(Vec::new()),
            faults,
        }
    }

    fn fault(&self, call: &str) -> (bool, Result<(), prism_core::Error>) {
        let f = self.faults.decide(call, &self.receiver);
        let result = if errs(f) {
            Err(checkpoint_error(
                self.place(),
                format!("{call}: injected fault"),
            ))
        } else {
            Ok(())
        };
        (applies(f), result)
    }
}

#[async_trait::async_trait]
impl Checkpoints for SimCheckpoints {
    async fn all(&self) -> Result<Vec<Checkpoint>, prism_core::Error> {
        self.fault("checkpoints.read").1?;
        Ok(self.saved.lock().unwrap().clone())
    }

    async fn save(&self, cp: &Checkpoint) -> Result<(), prism_core::Error> {
        let (happens, result) = self.fault("checkpoints.save");
        if happens {
            let mut saved = self.saved.lock().unwrap();
            saved.retain(|c| (c.segment, c.segments) != (cp.segment, cp.segments));
            saved.push(cp.clone());
            saved.sort_by_key(|c| (c.segments, c.segment));
        }
        result
    }

    async fn clear(&self) -> Result<(), prism_core::Error> {
        let (happens, result) = self.fault("checkpoints.clear");
        if happens {
            self.saved.lock().unwrap().clear();
        }
        result
    }

    fn place(&self) -> String {
        format!("sim checkpoints of {}", self.receiver)
    }
}

/// The simulated clock as a backfill's: a wait passes simulated time, and
/// the table may move on meanwhile (the seed's).
pub(crate) struct SimTime {
    pub(crate) clock: Arc<Clock>,
    pub(crate) table: Table,
    pub(crate) faults: Arc<Faults>,
    pub(crate) rng: Mutex<fastrand::Rng>,
    /// Writes during waits are off in the drain.
    pub(crate) writes: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl BackfillClock for SimTime {
    fn now_ms(&self) -> u64 {
        self.clock.now()
    }

    async fn sleep(&self, d: Duration) {
        self.clock.advance(d.as_millis() as u64);
        if self.writes.load(Ordering::SeqCst) {
            let n = self.rng.lock().unwrap().usize(0..=1);
            if n > 0 {
                self.table.write(n);
                self.faults
                    .note(|| format!("the stream writes {n} while a backfill waits"));
            }
        }
    }
}
