//! The `mapping` interface: the shadow-table change a mapper receives,
//! the model writes it asks for, and why it may decline a change.

use serde_json::Value;

use crate::ChangeKind;

/// One change to one shadow-table item.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowChange {
    /// The table's logical name, as the mapper manifest declares it.
    pub table: String,
    /// The key attributes, as a JSON object.
    pub key: Value,
    /// Insert, modify or remove.
    pub kind: ChangeKind,
    /// The item after the change (absent on remove).
    pub new: Option<Value>,
    /// The item before the change (absent on insert).
    pub old: Option<Value>,
    /// The shadow stream's sequence number.
    pub sequence: String,
    /// When it was written, ms since the Unix epoch.
    pub time_ms: u64,
}

impl ShadowChange {
    /// An insert (for tests).
    pub fn insert(table: &str, key: Value, new: Value) -> Self {
        Self::build(table, key, ChangeKind::Insert, None, Some(new))
    }

    /// A modify (for tests).
    pub fn modify(table: &str, key: Value, old: Value, new: Value) -> Self {
        Self::build(table, key, ChangeKind::Modify, Some(old), Some(new))
    }

    /// A remove (for tests).
    pub fn remove(table: &str, key: Value, old: Value) -> Self {
        Self::build(table, key, ChangeKind::Remove, Some(old), None)
    }

    fn build(
        table: &str,
        key: Value,
        kind: ChangeKind,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Self {
        Self {
            table: table.to_owned(),
            key,
            kind,
            new,
            old,
            sequence: "1".to_owned(),
            time_ms: 0,
        }
    }

    /// A string key attribute, or a rejection naming it.
    pub fn key_str(&self, attribute: &str) -> Result<&str, MapError> {
        self.key[attribute].as_str().ok_or_else(|| {
            MapError::reject(format!(
                "{} key {} has no string attribute {attribute:?}",
                self.table, self.key
            ))
        })
    }

    /// The item as it is now: the new item, or the old one on remove.
    pub fn item(&self) -> Option<&Value> {
        self.new.as_ref().or(self.old.as_ref())
    }
}

/// One write to the product model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelWrite {
    /// Create or replace the product document (the host skips it when unchanged).
    Upsert {
        /// The model key.
        key: String,
        /// The whole document, a JSON object.
        doc: Value,
    },
    /// Delete the product document.
    Delete {
        /// The model key.
        key: String,
    },
}

impl ModelWrite {
    /// Create or replace a document.
    pub fn upsert(key: impl Into<String>, doc: Value) -> Self {
        Self::Upsert {
            key: key.into(),
            doc,
        }
    }

    /// Delete a document.
    pub fn delete(key: impl Into<String>) -> Self {
        Self::Delete { key: key.into() }
    }

    /// The model key written.
    pub fn key(&self) -> &str {
        match self {
            Self::Upsert { key, .. } | Self::Delete { key } => key,
        }
    }
}

/// Why a mapper declined a change (its own answer, not a failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// Bad master data: parked with the reason, not retried.
    Reject(String),
    /// A transient problem (a read failed): retried later.
    Retry(String),
}

impl MapError {
    /// A rejection.
    pub fn reject(reason: impl Into<String>) -> Self {
        Self::Reject(reason.into())
    }

    /// A request to retry.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry(reason.into())
    }
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reject(r) => write!(f, "rejected: {r}"),
            Self::Retry(r) => write!(f, "asked to retry: {r}"),
        }
    }
}

impl std::error::Error for MapError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_names_its_key_and_an_error_says_whether_to_retry() {
        let up = ModelWrite::upsert("p1", serde_json::json!({"a": 1}));
        assert_eq!(up.key(), "p1");
        assert_eq!(ModelWrite::delete("p2").key(), "p2");
        assert_eq!(
            MapError::reject("no brand").to_string(),
            "rejected: no brand"
        );
        assert_eq!(
            MapError::retry("read failed").to_string(),
            "asked to retry: read failed"
        );
    }
}
