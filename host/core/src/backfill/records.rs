//! Model items as stream records: a backfilled item goes through exactly
//! the path a stream record takes (the same DynamoDB-JSON decoding, the
//! same bookkeeping stripped), so a receiver cannot tell a backfilled
//! insert from one the stream delivered.

use serde_json::{Map, Value, json};

/// Sequence numbers of backfill records are below every stream's (a
/// DynamoDB stream's have 21 digits or more): the output dedup state and
/// the retry lanes, which order by sequence, always put a backfilled
/// version before anything the stream delivers for the same product.
/// A run's records are `run × RUN_SCALE + offset` (20 digits at most),
/// `run` being the run's start in epoch seconds (10 digits), so two runs
/// never share a number.
///
/// Within a run every record has a number of its own: the buffers of
/// batched receivers and the done marks of the spool are keyed by
/// sequence, so two pages sharing numbers overwrote each other's buffered
/// changes, or were dropped as already handled.
pub const RUN_SCALE: u128 = 10_000_000_000;
pub use prism_types::change::is_backfill;

/// The largest page.
pub const MAX_PAGE: usize = 1_000;
/// Numbers one page of one segment owns: its inserts (round 0) and each
/// correction round, [`MAX_PAGE`] each.
pub const PAGE_SLOT: u128 = (super::CORRECTION_ROUNDS as u128 + 1) * MAX_PAGE as u128;
/// Pages (of all segments together) one run can number.
pub const MAX_SLOTS: u64 = ((RUN_SCALE - 1) / PAGE_SLOT) as u64;

/// The slot of page `page` of `segment` (of `segments`): pages of different
/// segments interleave, each segment's in order.
pub fn slot(page: u64, segment: u32, segments: u32) -> Result<u64, String> {
    let slot = page
        .checked_mul(u64::from(segments))
        .and_then(|s| s.checked_add(u64::from(segment)))
        .filter(|&s| s < MAX_SLOTS)
        .ok_or_else(|| {
            format!(
                "page {page} of segment {segment} of {segments} is past the {MAX_SLOTS} pages one run can number; use a larger --page-size"
            )
        })?;
    Ok(slot)
}

/// The sequence number of record `index` of `round` in page `slot` (see
/// [`slot`]) of `run`.
pub fn sequence(run: u64, slot: u64, round: u64, index: usize) -> String {
    debug_assert!(index < MAX_PAGE && round <= super::CORRECTION_ROUNDS && slot < MAX_SLOTS);
    let offset =
        u128::from(slot) * PAGE_SLOT + u128::from(round) * MAX_PAGE as u128 + index as u128 + 1;
    (u128::from(run) * RUN_SCALE + offset).to_string()
}

/// The key attributes of `item` (DynamoDB JSON), by the table's key names.
pub fn keys_of(
    item: &Map<String, Value>,
    key_names: &[String],
) -> Result<Map<String, Value>, String> {
    key_names
        .iter()
        .map(|k| {
            item.get(k)
                .map(|v| (k.clone(), v.clone()))
                .ok_or_else(|| format!("the item has no key attribute {k:?}"))
        })
        .collect()
}

/// What one record carries: its id, sequence, the images and the kind.
pub struct Record<'a> {
    /// `eventID`: stable for one page and round, so the retry ledger
    /// recognises a page tried again.
    pub event_id: String,
    /// [`sequence`].
    pub sequence: String,
    /// The item as it was sent before (`None`: an insert).
    pub old: Option<&'a Value>,
    /// The item now (`None`: it is gone, a remove).
    pub new: Option<&'a Value>,
    /// The key attributes.
    pub keys: Map<String, Value>,
    /// Now, in seconds since the epoch (the record's creation time).
    pub now_secs: f64,
}

impl Record<'_> {
    /// The stream record, in the JSON shape Lambda delivers.
    pub fn to_json(&self) -> Value {
        let name = match (self.old, self.new) {
            (None, _) => "INSERT",
            (Some(_), Some(_)) => "MODIFY",
            (Some(_), None) => "REMOVE",
        };
        let mut ddb = Map::new();
        ddb.insert("ApproximateCreationDateTime".into(), json!(self.now_secs));
        ddb.insert("Keys".into(), Value::Object(self.keys.clone()));
        if let Some(n) = self.new {
            ddb.insert("NewImage".into(), n.clone());
        }
        if let Some(o) = self.old {
            ddb.insert("OldImage".into(), o.clone());
        }
        ddb.insert("SequenceNumber".into(), json!(self.sequence));
        ddb.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
        json!({
            "eventID": self.event_id,
            "eventName": name,
            "eventSource": "prism:backfill",
            "dynamodb": Value::Object(ddb),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_types::change::{ChangeKind, cmp_sequence};
    use prism_types::input::record::to_change;

    fn item() -> Value {
        json!({"pk": {"S": "P-1"}, "name": {"S": "Drill"}, "_prism_rev": {"N": "7"}})
    }

    fn record<'a>(old: Option<&'a Value>, new: Option<&'a Value>) -> Record<'a> {
        Record {
            event_id: "backfill:r:0:0:0".into(),
            sequence: sequence(1_760_000_000, 0, 0, 3),
            old,
            new,
            keys: keys_of(item().as_object().unwrap(), &["pk".into()]).unwrap(),
            now_secs: 1_760_000_000.5,
        }
    }

    #[test]
    fn an_item_reads_back_as_the_streams_insert_would() {
        let i = item();
        let c = to_change(&record(None, Some(&i)).to_json()).unwrap();
        assert_eq!(c.kind, ChangeKind::Insert);
        assert_eq!(c.key, "P-1");
        // The bookkeeping is stripped exactly as for a stream record.
        assert_eq!(c.new, Some(json!({"pk": "P-1", "name": "Drill"})));
        assert_eq!(c.sequence, "17600000000000000004");
        assert_eq!(c.event_id.as_deref(), Some("backfill:r:0:0:0"));
    }

    #[test]
    fn corrections_are_modifies_or_removes_of_what_was_sent() {
        let (sent, now) = (item(), json!({"pk": {"S": "P-1"}, "name": {"S": "Hammer"}}));
        let m = to_change(&record(Some(&sent), Some(&now)).to_json()).unwrap();
        assert_eq!(m.kind, ChangeKind::Modify);
        assert_eq!(m.changed_paths, vec!["/name"]);
        let r = to_change(&record(Some(&sent), None).to_json()).unwrap();
        assert_eq!((r.kind, r.new), (ChangeKind::Remove, None));
    }

    #[test]
    fn sequences_stay_below_the_streams_and_apart_across_runs() {
        let stream = "1100000000017454423009"; // moto's first, 22 digits like DynamoDB's
        let rounds = crate::backfill::CORRECTION_ROUNDS;
        let last = sequence(9_999_999_999, MAX_SLOTS - 1, rounds, MAX_PAGE - 1);
        assert_eq!(last.len(), 20);
        assert!(cmp_sequence(&last, stream).is_lt(), "{last}");
        let end_of_run = sequence(1, MAX_SLOTS - 1, rounds, MAX_PAGE - 1);
        assert!(cmp_sequence(&end_of_run, &sequence(2, 0, 0, 0)).is_lt());
        // A correction orders after its page's insert, and a later page of
        // a segment after an earlier one.
        assert!(cmp_sequence(&sequence(5, 0, 0, MAX_PAGE - 1), &sequence(5, 0, 1, 0)).is_lt());
        let (a, b) = (slot(3, 1, 4).unwrap(), slot(4, 1, 4).unwrap());
        assert!(cmp_sequence(&sequence(5, a, rounds, 0), &sequence(5, b, 0, 0)).is_lt());
        assert!(slot(MAX_SLOTS, 0, 1).unwrap_err().contains("--page-size"));
        assert!(is_backfill(&last) && is_backfill(&end_of_run));
        assert!(!is_backfill(stream) && !is_backfill("100000000000000000001"));
    }

    /// Every record of a run has a number of its own, whatever its
    /// segment, page, round and index: the spool keys buffered changes
    /// and done marks by it.
    #[test]
    fn no_two_records_of_a_run_share_a_sequence() {
        let mut seen = std::collections::HashSet::new();
        let segments = 3;
        for page in 0..4 {
            for segment in 0..segments {
                let s = slot(page, segment, segments).unwrap();
                for round in 0..=crate::backfill::CORRECTION_ROUNDS {
                    for index in [0, 1, 39, MAX_PAGE - 1] {
                        assert!(
                            seen.insert(sequence(7, s, round, index)),
                            "page {page} segment {segment} round {round} index {index}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_missing_key_attribute_is_named() {
        let e = keys_of(item().as_object().unwrap(), &["pk".into(), "sk".into()]).unwrap_err();
        assert!(e.contains("\"sk\""), "{e}");
    }
}
