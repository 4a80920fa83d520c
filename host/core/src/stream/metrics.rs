//! Metrics in CloudWatch Embedded Metric Format: one JSON line per receiver
//! and one for the batch, written to stdout, which Lambda ships to
//! CloudWatch Logs, where they become metrics without any API call.
//!
//! Namespace `prism` unless [`NAMESPACE_VAR`] names another (Terraform sets
//! it to `<prefix>-<env>`, so two environments in one account do not add up
//! in one alarm); per-receiver metrics have the dimension `Receiver`.

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::dispatch::ReceiverStats;

/// The CloudWatch namespace when [`NAMESPACE_VAR`] is not set.
pub const NAMESPACE: &str = "prism";

/// The environment variable that names the namespace.
pub const NAMESPACE_VAR: &str = "PRISM_METRICS_NAMESPACE";

/// Every metric name the code writes under the `Receiver` dimension.
pub const RECEIVER_METRICS: &[&str] = &[
    "ChangesSeen",
    "ChangesAccepted",
    "ChangesSkipped",
    "CallsSkipped",
    "Messages",
    "MessageBytes",
    "MessagesSuppressed",
    "Errors",
    "ChangesHeld",
    "ChangesBuffered",
    "ChangesLaned",
    "AlreadyHandled",
    "ChangesQuarantined",
    "ChangesDeferred",
    "PluginTime",
];

/// Every metric name the code writes without dimensions (batches and ticks).
pub const FUNCTION_METRICS: &[&str] = &[
    "Records",
    "UnreadableRecords",
    "FailedRecords",
    "UnavailableReceivers",
    "IteratorAge",
    "SpoolLanes",
    "SpoolWaiting",
    "SpoolOrphaned",
    "SpoolErrors",
];

/// The namespace metrics go to: [`NAMESPACE_VAR`] if set and not empty,
/// else [`NAMESPACE`]. Read once per process.
pub fn namespace() -> &'static str {
    static NS: OnceLock<String> = OnceLock::new();
    NS.get_or_init(|| {
        std::env::var(NAMESPACE_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| NAMESPACE.to_owned())
    })
}

/// The EMF line for one receiver's share of a batch.
pub fn receiver_line(receiver: &str, st: &ReceiverStats, timestamp_ms: u64) -> Value {
    let metrics = [
        ("ChangesSeen", st.seen as f64, "Count"),
        ("ChangesAccepted", st.accepted as f64, "Count"),
        ("ChangesSkipped", st.skipped as f64, "Count"),
        ("CallsSkipped", st.filtered as f64, "Count"),
        ("Messages", st.messages as f64, "Count"),
        ("MessageBytes", st.bytes as f64, "Bytes"),
        ("MessagesSuppressed", st.suppressed as f64, "Count"),
        ("Errors", st.errors() as f64, "Count"),
        ("ChangesHeld", st.held.len() as f64, "Count"),
        ("ChangesBuffered", st.buffered as f64, "Count"),
        ("ChangesLaned", st.laned as f64, "Count"),
        ("AlreadyHandled", st.already_handled as f64, "Count"),
        ("ChangesQuarantined", st.quarantined as f64, "Count"),
        ("ChangesDeferred", st.deferred as f64, "Count"),
        (
            "PluginTime",
            st.plugin_time.as_secs_f64() * 1000.0,
            "Milliseconds",
        ),
    ];
    line(&[("Receiver", receiver)], &metrics, timestamp_ms)
}

/// What a batch as a whole did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchNumbers {
    /// Stream records in the batch.
    pub records: usize,
    /// Records that could not be read.
    pub unreadable: usize,
    /// Records reported back as failed (to be retried).
    pub failed: usize,
    /// Receivers registered and enabled but not runnable.
    pub unavailable_receivers: usize,
    /// Age of the newest record when the batch was handled (ms).
    pub iterator_age_ms: u64,
}

/// The EMF line for the batch.
pub fn batch_line(n: &BatchNumbers, timestamp_ms: u64) -> Value {
    let metrics = [
        ("Records", n.records as f64, "Count"),
        ("UnreadableRecords", n.unreadable as f64, "Count"),
        ("FailedRecords", n.failed as f64, "Count"),
        (
            "UnavailableReceivers",
            n.unavailable_receivers as f64,
            "Count",
        ),
        ("IteratorAge", n.iterator_age_ms as f64, "Milliseconds"),
    ];
    line(&[], &metrics, timestamp_ms)
}

/// The EMF line for a tick: lanes worked and changes still waiting.
pub fn tick_line(r: &crate::dispatch::TickReport, timestamp_ms: u64) -> Value {
    let metrics = [
        ("SpoolLanes", r.lanes as f64, "Count"),
        ("SpoolWaiting", r.waiting as f64, "Count"),
        ("SpoolOrphaned", r.orphaned as f64, "Count"),
        ("SpoolErrors", r.errors.len() as f64, "Count"),
    ];
    line(&[], &metrics, timestamp_ms)
}

/// One EMF line: `metrics` (name, value, unit) under `dimensions`.
pub fn line(
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, &str)],
    timestamp_ms: u64,
) -> Value {
    let mut root = serde_json::Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace(),
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), json!(v));
    }
    for (name, value, _) in metrics {
        root.insert((*name).into(), json!(value));
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<String> {
        v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_published_name_lists_are_exactly_what_the_lines_write() {
        let rl = receiver_line("r", &ReceiverStats::default(), 0);
        assert_eq!(names(&rl), RECEIVER_METRICS);
        let mut function = names(&batch_line(&BatchNumbers::default(), 0));
        function.extend(names(&tick_line(&Default::default(), 0)));
        assert_eq!(function, FUNCTION_METRICS);
    }

    #[test]
    fn receiver_line_is_valid_emf() {
        let st = ReceiverStats {
            seen: 3,
            accepted: 2,
            skipped: 1,
            messages: 2,
            bytes: 10,
            ..Default::default()
        };
        let v = receiver_line("website", &st, 1000);
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "prism");
        assert_eq!(spec["Dimensions"], json!([["Receiver"]]));
        assert_eq!(v["Receiver"], "website");
        // Every declared metric has a value at the root, and vice versa.
        for m in spec["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "{name} has no value");
        }
        assert_eq!(v["ChangesSeen"], 3.0);
        assert_eq!(v["ChangesSkipped"], 1.0);
        assert_eq!(v["_aws"]["Timestamp"], 1000);
    }

    #[test]
    fn batch_line_has_no_dimensions() {
        let v = batch_line(
            &BatchNumbers {
                records: 5,
                failed: 2,
                iterator_age_ms: 1500,
                ..Default::default()
            },
            7,
        );
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!(v["FailedRecords"], 2.0);
        assert_eq!(v["IteratorAge"], 1500.0);
    }
}
