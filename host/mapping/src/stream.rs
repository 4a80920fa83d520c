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
use super::{Error, ModelBuilder, WriteTally, change_json};
use prism_core::sink::{DeadLetter, Sink};
use prism_core::stream::DynamoDbEventResponse;
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
        let groups = group_by_item(&records, |rec| {
            to_shadow_change(rec, builder.manifest(), &self.prefix)
        });
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
            let f = count_steps(&mut report, done.unwrap_or_default());
            first_failed = first_failed.into_iter().chain(f).min();
        }
        Ok(MapBatchOutcome {
            response: retry_from(&records, first_failed),
            report,
        })
    }
}
/// The records grouped by item (`table/key`; each unreadable record alone),
/// each group in stream order: items map in parallel, one item's changes in
/// order.
fn group_by_item(
    records: &[Value],
    parse: impl Fn(&Value) -> Result<ShadowChange, String>,
) -> BTreeMap<String, ItemRecords> {
    let mut groups: BTreeMap<String, ItemRecords> = BTreeMap::new();
    for (i, rec) in records.iter().enumerate() {
        let parsed = parse(rec);
        let item = match &parsed {
            Ok(c) => format!("{}/{}", c.table, c.key),
            Err(_) => format!("unreadable/{i}"),
        };
        groups.entry(item).or_default().push((i, parsed));
    }
    groups
}

/// Count one group's steps into `report`; the first record that must be
/// retried (failed, or not started before the deadline), if any.
fn count_steps(report: &mut MapBatchReport, steps: Vec<(usize, Step)>) -> Option<usize> {
    let mut first = None;
    for (i, step) in steps {
        match step {
            Step::Mapped(a) => {
                report.mapped += 1;
                report.tally.add(&a.tally);
                report.items_read += a.items_read;
            }
            Step::Parked => report.parked += 1,
            Step::Failed | Step::Deferred => {
                if matches!(step, Step::Failed) {
                    report.failed += 1;
                } else {
                    report.deferred += 1;
                }
                first = Some(first.map_or(i, |f: usize| f.min(i)));
            }
        }
    }
    first
}

/// What Lambda retries: everything from the record at `first_failed`.
fn retry_from(records: &[Value], first_failed: Option<usize>) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    if let Some(i) = first_failed {
        let sequence = records[i]
            .pointer("/dynamodb/SequenceNumber")
            .and_then(Value::as_str)
            .unwrap_or_default();
        response
            .batch_item_failures
            .push(prism_core::stream::item_failure(sequence));
    }
    response
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
                    e.reason().to_owned(),
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
fn parked_json(c: &ShadowChange, raw: &Value, e: &Error) -> Value {
    serde_json::json!({"change": change_json(c), "record": raw, "kind": e.reason()})
}

/// Every metric name [`mapper_line`] writes (dimension `Mapper`).
pub const MAPPER_METRICS: &[&str] = &[
    "ShadowRecords",
    "ShadowChangesMapped",
    "ModelWrites",
    "ModelWritesUnchanged",
    "ModelWritesStale",
    "ShadowChangesParked",
    "ShadowRecordsFailed",
    "ShadowItemsRead",
];

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
    prism_core::stream::metrics::line(&[("Mapper", mapper)], &metrics, timestamp_ms)
}

#[cfg(test)]
mod metric_tests {
    use super::*;

    #[test]
    fn mapper_metrics_is_exactly_what_the_mapper_line_writes() {
        let line = mapper_line("m", &MapBatchReport::default(), 0);
        let names: Vec<&str> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, MAPPER_METRICS);
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_group_by_item_in_stream_order_and_unreadable_ones_alone() {
        let records = vec![json!("a"), json!("b"), json!("a"), json!(null), json!(null)];
        let groups = group_by_item(&records, |r| match r.as_str() {
            Some(k) => Ok(ShadowChange {
                table: "products".into(),
                key: json!({"article_no": k}),
                kind: prism_types::change::ChangeKind::Insert,
                old: None,
                new: Some(json!({})),
                sequence: String::new(),
                time_ms: 0,
            }),
            None => Err("bad".into()),
        });
        let shape: Vec<(String, Vec<usize>)> = groups
            .iter()
            .map(|(k, g)| (k.clone(), g.iter().map(|(i, _)| *i).collect()))
            .collect();
        assert_eq!(shape.len(), 4, "{shape:?}");
        assert_eq!(shape[0].1, [0, 2], "{shape:?}");
        assert_eq!(shape[1].1, [1]);
        assert!(shape[2].0.starts_with("unreadable/") && shape[3].0.starts_with("unreadable/"));
    }

    #[test]
    fn the_retry_starts_at_the_first_failed_or_deferred_record() {
        let mut report = MapBatchReport::default();
        let first = count_steps(
            &mut report,
            vec![(4, Step::Parked), (5, Step::Failed), (2, Step::Deferred)],
        );
        assert_eq!(first, Some(2));
        assert_eq!((report.parked, report.failed, report.deferred), (1, 1, 1));
        assert_eq!(count_steps(&mut report, vec![(0, Step::Parked)]), None);
        let records = vec![
            json!({"dynamodb": {"SequenceNumber": "10"}}),
            json!({"dynamodb": {"SequenceNumber": "11"}}),
        ];
        let r = retry_from(&records, Some(1));
        assert_eq!(
            r.batch_item_failures[0].item_identifier.as_deref(),
            Some("11")
        );
        assert!(retry_from(&records, None).batch_item_failures.is_empty());
    }
}
