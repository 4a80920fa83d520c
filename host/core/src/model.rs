//! Reading the current product model: what the read API serves, and what
//! a redrive or a replay checks its sends against.

/// Where the current product model is read (`prism_aws::read_model::DynamoModel`
/// on AWS).
#[async_trait::async_trait]
pub trait ModelSource: Send + Sync {
    /// The document for `key` as receivers see it (no bookkeeping), if any.
    async fn get(&self, key: &str) -> Result<Option<serde_json::Value>, crate::Error>;
}
