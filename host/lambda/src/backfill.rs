//! The backfill event: one segment of a backfill, from its checkpoint in
//! the spool table, on the dispatcher's warm state, until the segment is
//! done or the invocation's deadline is near. `prism backfill --function`
//! sends these, one segment per invocation, and invokes a segment again
//! until it replies `"done": true`:
//!
//! ```json
//! {"prism": "backfill", "receiver": "website", "segment": 3, "segments": 64,
//!  "run": 1765000000, "page_size": 100, "max_per_second": 500, "max_pages": null}
//! ```

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};

use prism_aws::backfill::{DynamoModelScan, SpoolCheckpoints};
use prism_core::backfill::pacer::Pacer;
use prism_core::backfill::{
    self as bf, Backfill, Backfiller, Limits, ModelScan, Totals, WallClock,
};
use prism_core::stream::StreamProcessor;

use crate::{Error, ErrorKind};

/// One segment to run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillEvent {
    /// Always `"backfill"`.
    pub prism: String,
    /// The receiver.
    pub receiver: String,
    /// The segment.
    pub segment: u32,
    /// Of how many.
    pub segments: u32,
    /// The run (epoch seconds at its start; the caller's [`bf::plan`]).
    pub run: u64,
    /// Items per page.
    #[serde(default = "default_page")]
    pub page_size: usize,
    /// This invocation's share of the run's rate.
    #[serde(default)]
    pub max_per_second: Option<f64>,
    /// At most this many pages in this invocation.
    #[serde(default)]
    pub max_pages: Option<u64>,
}

fn default_page() -> usize {
    bf::DEFAULT_PAGE
}

/// The tables a backfill needs besides the processor's.
pub struct Tables<'a> {
    /// The model table (`PRISM_MODEL_TABLE`).
    pub model: Option<&'a str>,
    /// The spool table (`PRISM_SPOOL_TABLE`), where checkpoints live.
    pub spool: Option<&'a str>,
}

/// When to stop starting pages: a fifth of what is left of the
/// invocation, at least 5 s, before its deadline.
pub fn stop_at(deadline: SystemTime, now: SystemTime) -> SystemTime {
    let left = deadline.duration_since(now).unwrap_or_default();
    deadline - (left / 5).max(Duration::from_secs(5)).min(left)
}

/// Run the segment; the reply says where it got to.
pub async fn handle(
    processor: &StreamProcessor,
    ddb: &aws_sdk_dynamodb::Client,
    tables: Tables<'_>,
    event: &Value,
    deadline: Option<SystemTime>,
) -> Result<Value, Error> {
    let e: BackfillEvent = serde_json::from_value(event.clone())
        .map_err(|e| Error::malformed(format!("backfill event: {e}")))?;
    let need = |what: &str, var: &str| {
        Error::malformed(format!(
            "a backfill needs {what}: {var} is not set on this function"
        ))
    };
    let model = tables
        .model
        .ok_or_else(|| need("the model table", crate::vars::MODEL_TABLE))?;
    let spool = tables
        .spool
        .ok_or_else(|| need("the spool table (checkpoints)", crate::vars::SPOOL_TABLE))?;
    let spec = Backfill {
        receiver: e.receiver.clone(),
        model_table: model.to_owned(),
        segments: e.segments,
        page_size: e.page_size,
    };
    spec.validate()
        .map_err(|e| Error::malformed(e.to_string()))?;
    let pacer = e.max_per_second.and_then(Pacer::per_second);
    let checkpoints = SpoolCheckpoints::new(ddb.clone(), spool, &e.receiver);
    let scan = DynamoModelScan::new(ddb.clone(), model);
    let (key_names, _) = scan.describe().await.map_err(backfill_error)?;
    let totals = Totals::default();
    let b = Backfiller {
        model: &scan,
        clock: &WallClock,
        processor,
        checkpoints: &checkpoints,
        spec: &spec,
        pacer: pacer.as_ref(),
        totals: &totals,
        key_names,
        stop: Default::default(),
    };
    b.check_receiver().await.map_err(backfill_error)?;
    let limits = Limits {
        stop_at: deadline.map(|d| stop_at(d, SystemTime::now())),
        max_pages: e.max_pages,
    };
    let cp = b
        .run_segment(e.segment, e.run, limits)
        .await
        .map_err(backfill_error)?;
    tracing::info!(
        receiver = %e.receiver,
        segment = e.segment,
        segments = e.segments,
        done = cp.done,
        items = cp.items,
        "backfill segment invocation finished"
    );
    Ok(json!({
        "receiver": e.receiver,
        "segment": cp.segment,
        "segments": cp.segments,
        "run": cp.run,
        "done": cp.done,
        "items": cp.items,
        "pages": cp.pages,
        "corrected": cp.corrected,
        "invocation": totals.summary(),
    }))
}

fn backfill_error(e: prism_core::Error) -> Error {
    Error::new(ErrorKind::Backfill, "", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_stops_a_fifth_of_its_time_before_the_deadline() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let in_secs = |s| now + Duration::from_secs(s);
        assert_eq!(stop_at(in_secs(900), now), in_secs(720));
        assert_eq!(stop_at(in_secs(20), now), in_secs(15), "at least 5 s");
        assert_eq!(stop_at(in_secs(3), now), now, "never before now");
    }

    #[test]
    fn events_are_read_strictly() {
        let ok: BackfillEvent = serde_json::from_value(json!({
            "prism": "backfill", "receiver": "website", "segment": 1, "segments": 4, "run": 7
        }))
        .unwrap();
        assert_eq!((ok.page_size, ok.max_pages), (bf::DEFAULT_PAGE, None));
        let e = serde_json::from_value::<BackfillEvent>(json!({
            "prism": "backfill", "receiver": "website", "segment": 1, "segments": 4, "run": 7, "segmnts": 2
        }))
        .unwrap_err();
        assert!(e.to_string().contains("segmnts"), "{e}");
    }
}
