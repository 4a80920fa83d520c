//! What a mapper may ask of the host: logging and its own config (both
//! `prism-sdk-core`'s, shared with the receiver SDK), and reads of the
//! shadow tables and the model.
//!
//! On `wasm32` these call the host's imports. Natively (a mapper author's
//! `cargo test`) they use the per-thread store in [`crate::testing`].

use serde_json::Value;

pub use prism_sdk_core::{Level, config, log};

/// A read the host could not serve: an undeclared table or index, a failed
/// read, or the call's read budget spent. The text says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "read failed: {}", self.0)
    }
}

impl std::error::Error for ReadError {}

impl From<ReadError> for prism_contract::MapError {
    /// A failed read is transient as far as the mapper can tell: retry.
    fn from(e: ReadError) -> Self {
        Self::Retry(e.to_string())
    }
}

fn parse(text: String) -> Result<Value, ReadError> {
    serde_json::from_str(&text).map_err(|e| ReadError(format!("the host returned bad JSON: {e}")))
}

fn parse_all(items: Vec<Option<String>>) -> Result<Vec<Option<Value>>, ReadError> {
    items
        .into_iter()
        .map(|i| i.map(parse).transpose())
        .collect()
}

/// Reads of the shadow tables the manifest declares.
pub mod shadow {
    use super::{ReadError, Value, imp, parse, parse_all};

    /// One item by its key attributes, e.g. `json!({"brand_id": "B-01"})`.
    pub fn get(table: &str, key: &Value) -> Result<Option<Value>, ReadError> {
        imp::shadow_get(table, &key.to_string())
            .map_err(ReadError)?
            .map(parse)
            .transpose()
    }

    /// Several items of one table, in the order asked.
    pub fn get_many(table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, ReadError> {
        let keys: Vec<String> = keys.iter().map(Value::to_string).collect();
        parse_all(imp::shadow_get_many(table, &keys).map_err(ReadError)?)
    }

    /// Every item whose `index` attribute equals `value`, in key order.
    /// `index` is an index the manifest declares for the table, or the
    /// table's partition key attribute.
    pub fn query(table: &str, index: &str, value: &Value) -> Result<Vec<Value>, ReadError> {
        imp::shadow_query(table, index, &value.to_string())
            .map_err(ReadError)?
            .into_iter()
            .map(parse)
            .collect()
    }
}

/// Reads of the current product model.
pub mod model {
    use super::{ReadError, Value, imp, parse, parse_all};

    /// The product document for a model key.
    pub fn get(key: &str) -> Result<Option<Value>, ReadError> {
        imp::model_get(key)
            .map_err(ReadError)?
            .map(parse)
            .transpose()
    }

    /// Several product documents, in the order asked.
    pub fn get_many(keys: &[String]) -> Result<Vec<Option<Value>>, ReadError> {
        parse_all(imp::model_get_many(keys).map_err(ReadError)?)
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) mod imp {
    use crate::bindings::prism::receiver::{model, shadow};

    prism_sdk_core::wit_host!(
        log: crate::bindings::prism::receiver::log,
        config: crate::bindings::prism::receiver::config,
    );

    pub fn shadow_get(table: &str, key: &str) -> Result<Option<String>, String> {
        shadow::get(table, key)
    }

    pub fn shadow_get_many(table: &str, keys: &[String]) -> Result<Vec<Option<String>>, String> {
        shadow::get_many(table, keys)
    }

    pub fn shadow_query(table: &str, index: &str, value: &str) -> Result<Vec<String>, String> {
        shadow::query(table, index, value)
    }

    pub fn model_get(key: &str) -> Result<Option<String>, String> {
        model::get(key)
    }

    pub fn model_get_many(keys: &[String]) -> Result<Vec<Option<String>>, String> {
        model::get_many(keys)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub use crate::testing::native::*;
}
