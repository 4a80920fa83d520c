//! A product change as the host carries it: parsed images for the host's own
//! use (diffing, filtering) and their JSON text, serialized once and handed to
//! every receiver.

use serde_json::Value;

pub use prism_sdk::ChangeKind;

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
                prism_sdk::pointer::changed_paths(o, n)
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
