//! A product change as the host carries it: parsed images for the host's own
//! use (diffing, filtering) and their JSON text, serialized once and handed to
//! every receiver.

use serde_json::Value;

pub use prism_contract::ChangeKind;

/// One change to one product, ready to dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The product key.
    pub key: String,
    /// Insert, modify or remove.
    pub kind: ChangeKind,
    /// The item after the change, as plain JSON (absent on remove).
    pub new: Option<Value>,
    /// The item before the change, as plain JSON (absent on insert).
    pub old: Option<Value>,
    /// `new` as JSON text.
    pub new_json: Option<String>,
    /// `old` as JSON text.
    pub old_json: Option<String>,
    /// Changed fields as JSON pointers (`[""]` for insert and remove).
    pub changed_paths: Vec<String>,
    /// Stream sequence number (decimal text).
    pub sequence: String,
    /// Approximate creation time, ms since the Unix epoch.
    pub time_ms: u64,
    /// The stream's event id, when known (for error messages).
    pub event_id: Option<String>,
    /// The model builder's bookkeeping of `old` (its `_prism_*` attributes:
    /// the revision and the source sequences that wrote it), stripped from
    /// the image and kept here as JSON text, when the item carries any.
    pub old_bookkeeping: Option<String>,
    /// The same for `new`.
    pub new_bookkeeping: Option<String>,
}

impl Change {
    /// Build a change from plain-JSON images, computing the changed paths.
    pub fn new(
        key: String,
        kind: ChangeKind,
        old: Option<Value>,
        new: Option<Value>,
        sequence: String,
        time_ms: u64,
    ) -> Self {
        let changed_paths = match (&old, &new) {
            (Some(o), Some(n)) if kind == ChangeKind::Modify => {
                prism_contract::pointer::changed_paths(o, n)
            }
            _ => vec![String::new()],
        };
        Self {
            key,
            kind,
            new_json: new.as_ref().map(Value::to_string),
            old_json: old.as_ref().map(Value::to_string),
            new,
            old,
            changed_paths,
            sequence,
            time_ms,
            event_id: None,
            old_bookkeeping: None,
            new_bookkeeping: None,
        }
    }

    /// Bytes of image text this change carries (used for batch size limits).
    pub fn image_bytes(&self) -> usize {
        self.new_json.as_ref().map_or(0, String::len)
            + self.old_json.as_ref().map_or(0, String::len)
    }

    /// Does the modify leave the document unchanged (no changed paths)?
    pub fn is_noop(&self) -> bool {
        self.kind == ChangeKind::Modify && self.changed_paths.is_empty()
    }

    /// The change as JSON: everything needed to replay it. This is what
    /// dead letters carry and what batch buffers and retry lanes store.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "key": self.key,
            "kind": kind_name(self.kind),
            "sequence": self.sequence,
            "time_ms": self.time_ms,
            "event_id": self.event_id,
            "changed_paths": self.changed_paths,
            "old": self.old,
            "new": self.new,
        })
    }

    /// Read back what [`Self::to_json`] wrote; the error names the field.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let text = |field: &str| {
            v.get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("stored change has no string \"{field}\""))
        };
        let kind = match text("kind")?.as_str() {
            "INSERT" => ChangeKind::Insert,
            "MODIFY" => ChangeKind::Modify,
            "REMOVE" => ChangeKind::Remove,
            other => return Err(format!("stored change has unknown kind {other:?}")),
        };
        let image = |field: &str| v.get(field).filter(|i| !i.is_null()).cloned();
        let mut c = Change::new(
            text("key")?,
            kind,
            image("old"),
            image("new"),
            text("sequence")?,
            v.get("time_ms").and_then(Value::as_u64).unwrap_or(0),
        );
        c.event_id = v.get("event_id").and_then(Value::as_str).map(str::to_owned);
        Ok(c)
    }
}

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Insert => "INSERT",
        ChangeKind::Modify => "MODIFY",
        ChangeKind::Remove => "REMOVE",
    }
}

/// Whether `sequence` is a backfill's: at most 20 digits, where a
/// DynamoDB stream's have 21 or more (backfill numbers sit below every
/// stream's on purpose; see `prism_core::backfill::records`).
pub fn is_backfill(sequence: &str) -> bool {
    sequence.len() <= 20 && sequence.bytes().all(|b| b.is_ascii_digit())
}

/// Compare two stream sequence numbers (decimal strings of any length) numerically.
pub fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modify_gets_diffed_paths_and_insert_the_root() {
        let c = Change::new(
            "k".into(),
            ChangeKind::Modify,
            Some(json!({"a": 1})),
            Some(json!({"a": 2})),
            "1".into(),
            0,
        );
        assert_eq!(c.changed_paths, vec!["/a"]);
        assert_eq!(c.new_json.as_deref(), Some(r#"{"a":2}"#));
        let c = Change::new(
            "k".into(),
            ChangeKind::Insert,
            None,
            Some(json!({"a": 1})),
            "1".into(),
            0,
        );
        assert_eq!(c.changed_paths, vec![""]);
    }

    #[test]
    fn stored_changes_read_back_whole() {
        let mut c = Change::new(
            "P-1".into(),
            ChangeKind::Modify,
            Some(json!({"a": 1, "b": [1]})),
            Some(json!({"a": 2, "b": [1]})),
            "120".into(),
            77,
        );
        c.event_id = Some("e1".into());
        assert_eq!(Change::from_json(&c.to_json()).unwrap(), c);
        let gone = Change::new(
            "P-2".into(),
            ChangeKind::Remove,
            Some(json!({})),
            None,
            "9".into(),
            1,
        );
        assert_eq!(Change::from_json(&gone.to_json()).unwrap(), gone);
        let err =
            Change::from_json(&json!({"key": "k", "kind": "UPSERT", "sequence": "1"})).unwrap_err();
        assert!(err.contains("UPSERT"), "{err}");
        let err = Change::from_json(&json!({"kind": "INSERT"})).unwrap_err();
        assert!(err.contains("\"key\""), "{err}");
    }

    #[test]
    fn sequences_compare_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(cmp_sequence("9", "10"), Less);
        assert_eq!(
            cmp_sequence(
                "111000000000000000000000000000000000002",
                "111000000000000000000000000000000000001"
            ),
            Greater
        );
        assert_eq!(cmp_sequence("007", "7"), Equal);
    }
}
