//! Native test support: an in-memory shadow store and model, config and
//! logs, per thread (parallel tests do not see each other's data).
//!
//! Queries match an item when its attribute equals the value; declare an
//! index name with [`declare_index`] (otherwise the index name is taken as
//! the attribute name, which is how a table's partition key is queried).

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::Value;

pub use prism_sdk_core::testing::{LogRecord, set_config, take_logs};

#[derive(Default)]
struct Store {
    shadow: BTreeMap<String, BTreeMap<String, Value>>,
    indexes: BTreeMap<(String, String), String>,
    model: BTreeMap<String, Value>,
}

thread_local! {
    static STORE: RefCell<Store> = RefCell::new(Store::default());
}

fn with<T>(f: impl FnOnce(&mut Store) -> T) -> T {
    STORE.with(|s| f(&mut s.borrow_mut()))
}

/// Put a shadow item under its key (a JSON object of the key attributes).
pub fn put_shadow(table: &str, key: Value, item: Value) {
    with(|s| {
        s.shadow
            .entry(table.to_owned())
            .or_default()
            .insert(key.to_string(), item)
    });
}

/// Delete a shadow item.
pub fn delete_shadow(table: &str, key: &Value) {
    with(|s| {
        if let Some(t) = s.shadow.get_mut(table) {
            t.remove(&key.to_string());
        }
    });
}

/// Name an index: `query(table, index, v)` matches items whose `attribute` is `v`.
pub fn declare_index(table: &str, index: &str, attribute: &str) {
    with(|s| {
        s.indexes
            .insert((table.to_owned(), index.to_owned()), attribute.to_owned())
    });
}

/// Put a model document.
pub fn put_model(key: &str, doc: Value) {
    with(|s| s.model.insert(key.to_owned(), doc));
}

/// Forget everything this thread stored.
pub fn reset() {
    with(|s| *s = Store::default());
    prism_sdk_core::testing::reset();
}

/// The native side of the host calls.
pub(crate) mod native {
    use super::{Value, with};

    fn canonical(key: &str) -> Result<String, String> {
        serde_json::from_str::<Value>(key)
            .map(|v| v.to_string())
            .map_err(|e| format!("the key is not JSON: {e}"))
    }

    pub fn shadow_get(table: &str, key: &str) -> Result<Option<String>, String> {
        let key = canonical(key)?;
        Ok(with(|s| {
            s.shadow
                .get(table)
                .and_then(|t| t.get(&key))
                .map(Value::to_string)
        }))
    }

    pub fn shadow_get_many(table: &str, keys: &[String]) -> Result<Vec<Option<String>>, String> {
        keys.iter().map(|k| shadow_get(table, k)).collect()
    }

    pub fn shadow_query(table: &str, index: &str, value: &str) -> Result<Vec<String>, String> {
        let value: Value =
            serde_json::from_str(value).map_err(|e| format!("the value is not JSON: {e}"))?;
        Ok(with(|s| {
            let attribute = s
                .indexes
                .get(&(table.to_owned(), index.to_owned()))
                .cloned()
                .unwrap_or_else(|| index.to_owned());
            s.shadow
                .get(table)
                .map(|t| {
                    t.values()
                        .filter(|i| i.get(&attribute) == Some(&value))
                        .map(Value::to_string)
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    pub fn model_get(key: &str) -> Result<Option<String>, String> {
        Ok(with(|s| s.model.get(key).map(Value::to_string)))
    }

    pub fn model_get_many(keys: &[String]) -> Result<Vec<Option<String>>, String> {
        keys.iter().map(|k| model_get(k)).collect()
    }
}
