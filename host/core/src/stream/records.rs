//! The records of a stream event, as far as each can be read.
//!
//! The event is read as JSON, record by record, rather than deserialized
//! whole into one typed event: one malformed record
//! must be parked on its own (with its raw text) instead of failing the
//! batch, and DynamoDB's numbers must keep all 38 digits.

use serde_json::Value;

use prism_types::change::Change;

/// One record of the event, as far as it could be read.
pub(crate) struct Record {
    /// `<event source ARN>#<sequence>` (the ledger's key).
    pub(crate) id: String,
    /// The record's sequence number (what Lambda retries from).
    pub(crate) sequence: String,
    /// The change, or why the record cannot be read.
    pub(crate) change: Result<Change, String>,
    /// The record as it came (parked as is when unreadable).
    pub(crate) raw: Value,
}

/// The readable records' changes, with `of_change[c]`: change c's record.
pub(crate) fn readable(records: &[Record]) -> (Vec<Change>, Vec<usize>) {
    records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((r.change.as_ref().ok()?.clone(), i)))
        .unzip()
}

/// Read every record of `event`; a record without a sequence number makes
/// the whole event malformed (nothing could be retried from it).
pub(crate) fn read_records(event: &Value) -> Result<Vec<Record>, crate::Error> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| crate::Error::malformed("no \"Records\" array"))?;
    records
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let sequence = raw
                .pointer("/dynamodb/SequenceNumber")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    crate::Error::malformed(format!(
                        "record {i} (eventID {}) has no dynamodb.SequenceNumber string",
                        raw.get("eventID").unwrap_or(&Value::Null)
                    ))
                })?
                .to_owned();
            let source = raw
                .get("eventSourceARN")
                .and_then(Value::as_str)
                .unwrap_or("local");
            Ok(Record {
                id: format!("{source}#{sequence}"),
                change: prism_types::input::record::to_change(raw)
                    .map_err(|e| format!("record {i}: {e}")),
                sequence,
                raw: raw.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(seq: &str, key: &str) -> Value {
        json!({"eventID": seq, "eventName": "INSERT", "eventSourceARN": "arn:s",
               "dynamodb": {"Keys": {"pk": {"S": key}}, "SequenceNumber": seq,
                            "NewImage": {"pk": {"S": key}}}})
    }

    #[test]
    fn unreadable_records_are_kept_in_place_and_readable_ones_indexed() {
        let mut bad = record("2", "b");
        bad["dynamodb"]["NewImage"] = json!({"pk": {"Q": "?"}});
        let event = json!({"Records": [record("1", "a"), bad, record("3", "c")]});
        let records = read_records(&event).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].id, "arn:s#1");
        assert!(
            records[1]
                .change
                .as_ref()
                .unwrap_err()
                .starts_with("record 1:")
        );
        let (changes, of_change) = readable(&records);
        assert_eq!(
            changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(of_change, [0, 2]);
    }

    #[test]
    fn a_record_without_a_sequence_makes_the_event_malformed() {
        let mut r = record("1", "a");
        r["dynamodb"]
            .as_object_mut()
            .unwrap()
            .remove("SequenceNumber");
        let e = read_records(&json!({"Records": [r]})).err().unwrap();
        assert!(
            e.to_string()
                .contains("record 0 (eventID \"1\") has no dynamodb.SequenceNumber"),
            "{e}"
        );
        assert!(read_records(&json!({"records": []})).is_err());
    }
}
