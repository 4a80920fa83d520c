//! Where the model builder reads and writes: the shadow tables and the
//! product model, behind two small traits (local files or DynamoDB).
//!
//! Each model document carries two bookkeeping attributes that receivers
//! never see (the stream reader and the read API strip them):
//! - `_prism_rev`: a revision, incremented by every write, so a write is
//!   conditioned on the document not having changed since it was read;
//! - `_prism_sources`: per source (a shadow table and item key), the last
//!   stream sequence applied, so a retried or late change never moves a
//!   document backwards. Sequences of different shadow streams cannot be
//!   compared; each source is compared only with itself.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use prism_types::mapper_manifest::TableDecl;

pub use prism_types::bookkeeping::{BOOKKEEPING_PREFIX, REV_ATTR, SOURCES_ATTR, strip_bookkeeping};

/// A model document as stored, with its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The document as receivers see it.
    pub doc: Value,
    /// Its revision (0: written by something other than prism).
    pub rev: u64,
    /// Last sequence applied per source.
    pub sources: BTreeMap<String, String>,
}

impl Stored {
    /// Split a model item into the document and its bookkeeping.
    pub fn from_item(mut item: Map<String, Value>) -> Self {
        let rev = item.get(REV_ATTR).and_then(Value::as_u64).unwrap_or(0);
        let sources = item
            .get(SOURCES_ATTR)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        strip_bookkeeping(&mut item);
        Self {
            doc: Value::Object(item),
            rev,
            sources,
        }
    }

    /// The item to write: the document plus its bookkeeping.
    pub fn to_item(&self) -> Map<String, Value> {
        let mut item = self.doc.as_object().cloned().unwrap_or_default();
        item.insert(REV_ATTR.into(), self.rev.into());
        item.insert(
            SOURCES_ATTR.into(),
            Value::Object(
                self.sources
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
        item
    }
}

/// How a conditional write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Written.
    Done,
    /// The document changed since it was read (or appeared, or went): read again.
    Conflict,
}

/// What [`ShadowStore::query`] is asked for: the items of `table` whose
/// `attribute` equals `value`.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The table.
    pub table: &'a TableDecl,
    /// The index to query through (`None`: the table's own partition key).
    pub index: Option<&'a str>,
    /// The attribute the index (or the table) is keyed on.
    pub attribute: &'a str,
    /// The value it must equal.
    pub value: &'a Value,
}

/// The shadow tables (the master data system's mirror), read-only.
pub trait ShadowStore: Send + Sync {
    /// Items of `table` by key (JSON objects of exactly the key attributes),
    /// in the order asked.
    fn get_many(
        &self,
        table: &TableDecl,
        keys: &[Value],
    ) -> Result<Vec<Option<Value>>, crate::Error>;
    /// The items `lookup` names, in key order.
    fn query(&self, lookup: Lookup<'_>) -> Result<Vec<Value>, crate::Error>;
}

/// The product model, written only by the model builder.
pub trait ModelStore: Send + Sync {
    /// Documents by model key, in the order asked.
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Stored>>, crate::Error>;
    /// Write `next` under `key` if the stored revision is still `expected`
    /// (`None`: only if there is no document).
    fn put(&self, key: &str, next: &Stored, expected: Option<u64>) -> Result<Put, crate::Error>;
    /// Delete the document under `key` if its revision is still `expected`.
    fn delete(&self, key: &str, expected: u64) -> Result<Put, crate::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bookkeeping_round_trips_and_is_hidden_from_the_document() {
        let stored = Stored {
            doc: json!({"pk": "P1", "brand": "Voltar"}),
            rev: 3,
            sources: [("brands/{\"brand_id\":\"B1\"}".to_owned(), "42".to_owned())].into(),
        };
        let item = stored.to_item();
        assert_eq!(item[REV_ATTR], json!(3));
        let back = Stored::from_item(item);
        assert_eq!(back, stored);
        let mut plain = json!({"pk": "P1", "_prism_rev": 1, "_prism_sources": {}})
            .as_object()
            .unwrap()
            .clone();
        strip_bookkeeping(&mut plain);
        assert_eq!(Value::Object(plain), json!({"pk": "P1"}));
    }
}
