//! One shadow-stream batch through the mapper, as the mapper Lambda and
//! `prism dev --mapper` run it.
//!
//! Records of different items are mapped concurrently (each item's records
//! in order); the mapper reads current state and model writes are
//! conditioned, so this is safe. A change the mapper rejects, or that makes
//! it trap, is parked in the mapper's dead-letter queue with the reason and
//! its raw record; a transient failure (a failed read or write, a timeout)
//! fails its record, and Lambda retries the batch from it. What the retry
//! maps again is then stale or unchanged: nothing is written twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::record::to_shadow_change;
use super::{BuildError, ModelBuilder, WriteTally, change_json};
use crate::sink::{DeadLetter, Sink};
use crate::stream::DynamoDbEventResponse;
use prism_engine::ShadowChange;

/// The name under which the mapper's dead letters are parked.
pub const MAPPER: &str = "prism:mapper";

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MapBatchReport {
    /// Records in the batch.
    pub records: usize,
    /// Shadow changes mapped.
    pub mapped: usize,
    /// Model writes and how they went.
    pub tally: WriteTally,
    /// Changes parked in the dead-letter queue (rejected, plugin failures,
    /// unreadable records).
    pub parked: usize,
    /// Records failed for a retry.
    pub failed: usize,
    /// Items the mapper read.
    pub items_read: usize,
    /// Records not started because the invocation's deadline was near.
    pub deferred: usize,
}

/// The batch's answer to Lambda and what it did.
#[derive(Debug)]
pub struct MapBatchOutcome {
    /// The records to retry.
    pub response: DynamoDbEventResponse,
    /// What happened.
    pub report: MapBatchReport,
}

/// Where the mapper's failures go.
pub struct MapperProcessor {
    /// Physical shadow table names are this prefix + the manifest's names.
    pub prefix: String,
    /// Where rejected and failed changes are parked (`None`: they fail
    /// their record instead, and Lambda's own on-failure destination gets
    /// the batch once its retries are spent).
    pub parking: Option<Arc<dyn Sink>>,
    /// How many items are mapped at once.
    pub concurrency: usize,
}

/// One item's records, in stream order: (index in the batch, the change or why it is unreadable).
type ItemRecords = Vec<(usize, Result<ShadowChange, String>)>;

enum Step {
    Mapped(super::Applied),
    Parked,
    Failed,
    /// Not started: the invocation's deadline was near.
    Deferred,
}

impl MapperProcessor {
    /// Map one stream event (`{"Records": [...]}`) with `builder`.
    pub async fn handle(
        &self,
        builder: Arc<ModelBuilder>,
        event: &Value,
    ) -> Result<MapBatchOutcome, String> {
        self.handle_within(builder, event, None).await
    }

    /// [`Self::handle`], starting no change after `stop_at`: the first
    /// record not started (or failed) is reported in `batchItemFailures`,
    /// and Lambda retries from there (model writes are idempotent).
    pub async fn handle_within(
        &self,
        builder: Arc<ModelBuilder>,
        event: &Value,
        stop_at: Option<std::time::Instant>,
    ) -> Result<MapBatchOutcome, String> {
        let records = event
            .get("Records")
            .and_then(Value::as_array)
            .ok_or("\"Records\" must be an array of stream records")?
            .clone();
        let mut report = MapBatchReport {
            records: records.len(),
            ..MapBatchReport::default()
        };
        // Records grouped by item, each group in stream order.
        let mut groups: BTreeMap<String, ItemRecords> = BTreeMap::new();
        for (i, rec) in records.iter().enumerate() {
            let parsed = to_shadow_change(rec, builder.manifest(), &self.prefix);
            let item = match &parsed {
                Ok(c) => format!("{}/{}", c.table, c.key),
                Err(_) => format!("unreadable/{i}"),
            };
            groups.entry(item).or_default().push((i, parsed));
        }
        let records = Arc::new(records);
        let limit = Arc::new(tokio::sync::Semaphore::new(self.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (_, group) in groups {
            let (builder, records, limit, parking) = (
                builder.clone(),
                records.clone(),
                limit.clone(),
                self.parking.clone(),
            );
            tasks.spawn(async move {
                let _permit = limit
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                tokio::task::spawn_blocking(move || {
                    let mut steps = Vec::new();
                    for (i, parsed) in group {
                        if stop_at.is_some_and(|t| std::time::Instant::now() >= t) {
                            steps.push((i, Step::Deferred));
                            break;
                        }
                        let step = map_one(&builder, parking.as_deref(), i, &records[i], parsed);
                        let stop = matches!(step, Step::Failed);
                        steps.push((i, step));
                        if stop {
                            break;
                        }
                    }
                    steps
                })
                .await
                .unwrap_or_default()
            });
        }
        let mut first_failed: Option<usize> = None;
        while let Some(done) = tasks.join_next().await {
            for (i, step) in done.unwrap_or_default() {
                match step {
                    Step::Mapped(a) => {
                        report.mapped += 1;
                        report.tally.add(&a.tally);
                        report.items_read += a.items_read;
                    }
                    Step::Parked => report.parked += 1,
                    Step::Failed => {
                        report.failed += 1;
                        first_failed = Some(first_failed.map_or(i, |f| f.min(i)));
                    }
                    Step::Deferred => {
                        report.deferred += 1;
                        first_failed = Some(first_failed.map_or(i, |f| f.min(i)));
                    }
                }
            }
        }
        let mut response = DynamoDbEventResponse::default();
        if let Some(i) = first_failed {
            let sequence = records[i]
                .pointer("/dynamodb/SequenceNumber")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            response
                .batch_item_failures
                .push(crate::stream::item_failure(sequence));
        }
        Ok(MapBatchOutcome { response, report })
    }
}

fn map_one(
    builder: &ModelBuilder,
    parking: Option<&dyn Sink>,
    i: usize,
    raw: &Value,
    parsed: Result<ShadowChange, String>,
) -> Step {
    let sequence = raw
        .pointer("/dynamodb/SequenceNumber")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (kind, error, key, change) = match parsed {
        Err(e) => {
            tracing::error!(record = i, %sequence, error = %e, "shadow record unreadable");
            (
                "unreadable".to_owned(),
                format!("shadow record {i} (sequence {sequence}): {e}"),
                String::new(),
                raw.clone(),
            )
        }
        Ok(c) => match builder.apply(&c) {
            Ok(applied) => return Step::Mapped(applied),
            Err(e) if e.is_transient() => {
                tracing::warn!(table = %c.table, key = %c.key, %sequence, error = %e, "shadow change failed; retried");
                return Step::Failed;
            }
            Err(e) => {
                tracing::error!(table = %c.table, key = %c.key, %sequence, error = %e, "shadow change parked");
                (
                    e.kind().to_owned(),
                    e.to_string(),
                    format!("{}/{}", c.table, c.key),
                    parked_json(&c, raw, &e),
                )
            }
        },
    };
    let Some(parking) = parking else {
        return Step::Failed;
    };
    let dead = DeadLetter {
        receiver: MAPPER.to_owned(),
        plugin_digest: Some(builder.plugin().digest().to_string()),
        key,
        sequence,
        ordinal: i as u64 + 1,
        error_kind: kind,
        error,
        change,
    };
    match parking.park(&dead) {
        Ok(()) => Step::Parked,
        Err(e) => {
            tracing::error!(error = %e, "could not park a shadow change; retried");
            Step::Failed
        }
    }
}

/// A parked shadow change: the change and the raw record (to replay it).
fn parked_json(c: &ShadowChange, raw: &Value, e: &BuildError) -> Value {
    serde_json::json!({"change": change_json(c), "record": raw, "kind": e.kind()})
}
/// The EMF line for one mapper batch (dimension `Mapper`).
pub fn mapper_line(mapper: &str, r: &MapBatchReport, timestamp_ms: u64) -> Value {
    let metrics = [
        ("ShadowRecords", r.records as f64, "Count"),
        ("ShadowChangesMapped", r.mapped as f64, "Count"),
        ("ModelWrites", r.tally.written() as f64, "Count"),
        ("ModelWritesUnchanged", r.tally.unchanged as f64, "Count"),
        ("ModelWritesStale", r.tally.stale as f64, "Count"),
        ("ShadowChangesParked", r.parked as f64, "Count"),
        ("ShadowRecordsFailed", r.failed as f64, "Count"),
        ("ShadowItemsRead", r.items_read as f64, "Count"),
    ];
    crate::stream::metrics::line(&[("Mapper", mapper)], &metrics, timestamp_ms)
}
