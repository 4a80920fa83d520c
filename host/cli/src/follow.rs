//! Following a DynamoDB stream shard by shard, as Lambda's event source
//! mapping does, with the records a batch holds retried first (`prism dev`,
//! for the model table's stream and the shadow tables').

use std::collections::BTreeMap;

use prism_aws::{ShardCursor, StreamReader};
use serde_json::Value;

/// A shard being followed, with the records held for a retry.
struct Shard {
    cursor: ShardCursor,
    held: Vec<Value>,
}

/// One stream being followed, shard by shard.
pub(crate) struct Followed {
    reader: StreamReader,
    shards: BTreeMap<String, Shard>,
}

impl Followed {
    pub(crate) fn new(config: &aws_config::SdkConfig, arn: &str) -> Self {
        Self {
            reader: StreamReader::new(aws_sdk_dynamodbstreams::Client::new(config), arn),
            shards: BTreeMap::new(),
        }
    }

    /// Read every shard once and hand each batch (held records first) to
    /// `handle`, which returns the records to hold for a retry. Returns
    /// whether anything new was read.
    pub(crate) async fn poll<F, Fut>(
        &mut self,
        batch_size: i32,
        from_start: bool,
        mut handle: F,
    ) -> anyhow::Result<bool>
    where
        F: FnMut(String, Vec<Value>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Vec<Value>>>,
    {
        // New shards (splits, or the stream's first) start at their beginning.
        for id in self.reader.shards().await? {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.shards.entry(id) {
                let cursor = self.reader.open(slot.key(), from_start).await?;
                slot.insert(Shard {
                    cursor,
                    held: Vec::new(),
                });
            }
        }
        let mut busy = false;
        for (id, shard) in &mut self.shards {
            let new = self.reader.read(&mut shard.cursor, batch_size).await?;
            if new.is_empty() && shard.held.is_empty() {
                continue;
            }
            busy |= !new.is_empty();
            let mut batch = std::mem::take(&mut shard.held);
            batch.extend(new);
            shard.held = handle(id.clone(), batch).await?;
        }
        self.shards
            .retain(|_, s| s.cursor.iterator.is_some() || !s.held.is_empty());
        Ok(busy)
    }

    pub(crate) fn held(&self) -> usize {
        self.shards.values().map(|s| s.held.len()).sum()
    }
}

/// The records Lambda would retry: from the lowest failed sequence on.
pub(crate) fn held_from(
    batch: Vec<Value>,
    failed: &[prism_core::stream::BatchItemFailure],
) -> Vec<Value> {
    let Some(from) = failed.first() else {
        return Vec::new();
    };
    let start = batch
        .iter()
        .position(|r| r["dynamodb"]["SequenceNumber"].as_str() == from.item_identifier.as_deref())
        .unwrap_or(0);
    batch[start..].to_vec()
}
