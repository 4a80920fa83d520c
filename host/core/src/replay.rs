//! Replay: stream records Lambda gave up on (its retries or the records'
//! age ran out; the on-failure destination says which), dispatched again
//! to every receiver, safely beside the stream that has moved on since.
//!
//! The stream delivered the products' newer versions after it gave up on
//! these records, so a record is not sent as it was when its product has
//! changed since: it is sent brought up to the product as it is now
//! ([`crate::redrive::catch_up`]), which also reaches a receiver whose
//! interest passed over the newer versions. A record keeps its id, so the
//! retry ledger still skips the receivers that handled it before Lambda
//! gave up. After the send each product is checked against the model, as
//! a redrive's are, and sent again at what changed.

use serde_json::{Value, json};

use prism_types::change::Change;

use crate::model::ModelSource;
use crate::redrive::{ROUNDS, catch_up, drifted};
use crate::stream::StreamProcessor;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayTally {
    /// Records dispatched (as they were, or as the product is now).
    pub replayed: usize,
    /// Of those, how many were sent as the product is now.
    pub caught_up: usize,
    /// Records of a product that came and went since (nothing to send).
    pub superseded: usize,
    /// Products sent again at a newer version the stream wrote meanwhile.
    pub corrected: usize,
    /// Records still failing after every attempt (replay them again).
    pub failing: Vec<String>,
}

/// One replay of some stream records.
pub struct Replay<'a> {
    /// The dispatcher (every receiver, as the Lambda's).
    pub processor: &'a StreamProcessor,
    /// The model, to bring records up to date and to check each send.
    pub model: &'a dyn ModelSource,
    /// Tries per batch before giving up on its failed records.
    pub attempts: u32,
    /// Names this replay's corrections apart (the retry ledger must not
    /// take one round for another).
    pub run_id: String,
    /// Where progress lines go.
    pub say: &'a (dyn Fn(String) + Send + Sync),
}

impl Replay<'_> {
    /// Replay `records` (in stream order).
    pub async fn run(&self, records: &[Value]) -> Result<ReplayTally, crate::Error> {
        let mut t = ReplayTally::default();
        let mut batch: Vec<(Value, Change)> = Vec::new();
        for r in records {
            let c = prism_types::input::record::to_change(r)
                .map_err(|e| crate::Error::redrive("replay", format!("a record: {e}")))?;
            let now = self.model.get(&c.key).await.map_err(|e| {
                crate::Error::redrive(format!("reading {} from the model", c.key), e.to_string())
            })?;
            if now == c.new {
                batch.push((r.clone(), c));
                continue;
            }
            match catch_up(&c, now) {
                None => t.superseded += 1,
                Some(up) => {
                    // The record's own id and sequence, the product as now.
                    let mut rec = prism_types::input::record::from_change(&up);
                    for field in ["eventSourceARN", "eventID"] {
                        if let Some(v) = r.get(field) {
                            rec[field] = v.clone();
                        }
                    }
                    t.caught_up += 1;
                    batch.push((rec, up));
                }
            }
        }
        let sent = self.send(&batch, &mut t).await?;
        t.replayed = sent.len();
        self.confirm(sent, &mut t).await?;
        Ok(t)
    }

    /// Dispatch `batch`, from its first failed record on again, up to
    /// [`Self::attempts`] times; the changes that went.
    async fn send(
        &self,
        batch: &[(Value, Change)],
        t: &mut ReplayTally,
    ) -> Result<Vec<Change>, crate::Error> {
        let mut from = 0;
        for attempt in 1..=self.attempts.max(1) {
            if from >= batch.len() {
                break;
            }
            let records: Vec<&Value> = batch[from..].iter().map(|(r, _)| r).collect();
            let failed = self.dispatch(&json!({ "Records": records })).await?;
            let first = batch[from..]
                .iter()
                .position(|(_, c)| failed.contains(&c.sequence));
            (self.say)(format!(
                "  {} records: {} reported failed",
                batch.len() - from,
                failed.len()
            ));
            match first {
                None => from = batch.len(),
                Some(i) if attempt == self.attempts.max(1) => {
                    t.failing = batch[from + i..]
                        .iter()
                        .map(|(_, c)| c.sequence.clone())
                        .collect();
                    from += i;
                    (self.say)(format!(
                        "  giving up after {attempt} tries from {}",
                        t.failing[0]
                    ));
                    return Ok(batch[..from].iter().map(|(_, c)| c.clone()).collect());
                }
                Some(i) => from += i,
            }
        }
        Ok(batch[..from].iter().map(|(_, c)| c.clone()).collect())
    }

    /// The dispatcher's answer: the sequences of the failed records.
    async fn dispatch(&self, event: &Value) -> Result<Vec<String>, crate::Error> {
        let out = self
            .processor
            .handle(event)
            .await
            .map_err(|e| crate::Error::redrive("replay", e.to_string()))?;
        Ok(out
            .response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .collect())
    }

    /// Check the sent products against the model; send what changed (as
    /// a redrive does), [`ROUNDS`] times at most.
    async fn confirm(&self, sent: Vec<Change>, t: &mut ReplayTally) -> Result<(), crate::Error> {
        let mut pending = sent;
        for round in 1..=ROUNDS + 1 {
            let again = drifted(self.model, &pending, "replay").await?;
            if again.is_empty() {
                return Ok(());
            }
            if round > ROUNDS {
                let keys: Vec<&str> = again.iter().map(|c| c.key.as_str()).collect();
                return Err(crate::Error::redrive(
                    "replay",
                    format!(
                        "{} still changing after {ROUNDS} corrections: a receiver may hold an older version than the model's; replay again when they are quiet",
                        keys.join(", ")
                    ),
                ));
            }
            let mut records: Vec<Value> = again
                .iter()
                .map(prism_types::input::record::from_change)
                .collect();
            for (i, r) in records.iter_mut().enumerate() {
                r["eventSourceARN"] = json!(format!("prism:replay:{}:{round}", self.run_id));
                r["eventID"] = json!(format!("replay-{}-{round}-{i}", self.run_id));
            }
            let failed = self.dispatch(&json!({ "Records": records })).await?;
            if !failed.is_empty() {
                return Err(crate::Error::redrive(
                    "replay",
                    format!(
                        "corrections of {} could not be sent: a receiver may hold an older version than the model's; replay again",
                        failed.join(", ")
                    ),
                ));
            }
            t.corrected += again.len();
            pending = again;
        }
        Ok(())
    }
}
