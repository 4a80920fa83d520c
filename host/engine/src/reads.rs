//! What a mapper may read through the host, and the budget one call spends.

use std::sync::Arc;

use serde_json::Value;

/// The most items (shadow items and model documents) one call may read.
pub const MAX_ITEMS_READ: usize = 200_000;

/// What a mapper may read. Implementations check table and index names
/// against the mapper's manifest; errors are shown to the plugin.
pub trait MapperReads: Send + Sync {
    /// Shadow items of `table` by key (JSON objects of the key attributes),
    /// in the order asked.
    fn shadow_get_many(&self, table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, String>;
    /// Shadow items of `table` whose `index` attribute equals `value`, in key order.
    fn shadow_query(&self, table: &str, index: &str, value: &Value) -> Result<Vec<Value>, String>;
    /// Model documents by key, without the host's bookkeeping attributes.
    fn model_get_many(&self, keys: &[String]) -> Result<Vec<Option<Value>>, String>;
}

/// The reads granted to one call, with its budget.
pub struct ReadAccess {
    pub(crate) reads: Arc<dyn MapperReads>,
    pub(crate) items_read: usize,
}

impl ReadAccess {
    pub(crate) fn count<T>(&mut self, items: Vec<T>) -> Result<Vec<T>, String> {
        self.items_read += items.len();
        if self.items_read > MAX_ITEMS_READ {
            return Err(format!(
                "read budget spent: this call read more than {MAX_ITEMS_READ} items"
            ));
        }
        Ok(items)
    }
}
