//! A backfill's AWS side: the model table read through `Scan` and
//! `BatchGetItem` ([`DynamoModelScan`]) and the checkpoints kept in the
//! spool table ([`SpoolCheckpoints`]). The run itself (pages, checks,
//! corrections, resume) is `prism_core::backfill`, the same code the
//! simulation runs against its models.
//!
//! Checkpoints live in the partition `lane = "#backfill/<receiver>"`
//! (`entry = "<segments>/<segment>"`, attribute `checkpoint` = the
//! checkpoint's JSON): not a lane, so nothing that lists lanes sees them.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Value};

use prism_core::backfill::checkpoint::{Checkpoint, Checkpoints, checkpoint_error};
use prism_core::backfill::{ModelScan, PageRequest, ScanPage};

use crate::batch::Item;

/// The calls a backfill makes on the model table. Terraform grants them to
/// the dispatcher.
pub const MODEL_ACTIONS: &[&str] = &[
    "dynamodb:DescribeTable",
    "dynamodb:Scan",
    "dynamodb:BatchGetItem",
];

/// The model table, as a backfill reads it.
#[derive(Debug, Clone)]
pub struct DynamoModelScan {
    ddb: Client,
    table: String,
}

impl DynamoModelScan {
    /// The model table `table`.
    pub fn new(ddb: Client, table: impl Into<String>) -> Self {
        Self {
            ddb,
            table: table.into(),
        }
    }

    fn err(&self, message: String) -> prism_core::Error {
        prism_core::Error::model(self.table.clone(), message)
    }
}

#[async_trait::async_trait]
impl ModelScan for DynamoModelScan {
    fn table(&self) -> &str {
        &self.table
    }

    async fn describe(&self) -> Result<(Vec<String>, u64), prism_core::Error> {
        let d = self
            .ddb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.err(format!("DescribeTable: {}", crate::sdk_error(&e))))?;
        let t = d
            .table()
            .ok_or_else(|| self.err("no table description".into()))?;
        let mut keys: Vec<_> = t.key_schema().iter().collect();
        keys.sort_by_key(|k| k.key_type() != &aws_sdk_dynamodb::types::KeyType::Hash);
        let names: Vec<String> = keys.iter().map(|k| k.attribute_name().to_owned()).collect();
        if names.is_empty() {
            return Err(self.err("no key schema in the table's description".into()));
        }
        Ok((names, t.item_count().unwrap_or(0).max(0) as u64))
    }

    async fn scan(&self, req: PageRequest<'_>) -> Result<ScanPage, prism_core::Error> {
        let segment = req.segment;
        let start = req
            .after
            .map(key_from_json)
            .transpose()
            .map_err(|e| self.err(format!("segment {segment}: its checkpoint's key: {e}")))?;
        let page = self
            .ddb
            .scan()
            .table_name(&self.table)
            .segment(segment as i32)
            .total_segments(req.segments as i32)
            .limit(req.limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| self.err(format!("Scan segment {segment}: {}", crate::sdk_error(&e))))?;
        Ok(ScanPage {
            items: page
                .items()
                .iter()
                .map(crate::attr_json::ddb::item_json)
                .collect(),
            after: page
                .last_evaluated_key
                .filter(|k| !k.is_empty())
                .map(|k| crate::attr_json::ddb::item_json(&k)),
        })
    }

    async fn read(&self, keys: &[Map<String, Value>]) -> Result<Vec<Value>, prism_core::Error> {
        let keys = keys
            .iter()
            .map(|k| key_from_json(&Value::Object(k.clone())))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| self.err(e))?;
        let found = crate::batch::batch_get(&self.ddb, &self.table, keys)
            .await
            .map_err(|e| self.err(e))?;
        Ok(found.iter().map(crate::attr_json::ddb::item_json).collect())
    }
}

/// A `LastEvaluatedKey` read back from DynamoDB JSON (key attributes are
/// strings, numbers or binaries).
pub fn key_from_json(v: &Value) -> Result<Item, String> {
    use base64::Engine as _;
    let obj = v.as_object().ok_or("a checkpoint key must be an object")?;
    obj.iter()
        .map(|(name, attr)| {
            let (t, val) = attr
                .as_object()
                .and_then(|o| o.iter().next())
                .ok_or_else(|| format!("key attribute {name:?} is not DynamoDB JSON"))?;
            let s = val
                .as_str()
                .ok_or_else(|| format!("key attribute {name:?} must hold a string"))?;
            let av = match t.as_str() {
                "S" => AttributeValue::S(s.to_owned()),
                "N" => AttributeValue::N(s.to_owned()),
                "B" => AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|e| format!("key attribute {name:?}: {e}"))?,
                )),
                other => {
                    return Err(format!(
                        "key attribute {name:?} has type {other}, not S, N or B"
                    ));
                }
            };
            Ok((name.clone(), av))
        })
        .collect()
}

/// Checkpoints in the spool table.
#[derive(Debug, Clone)]
pub struct SpoolCheckpoints {
    client: Client,
    table: String,
    partition: String,
}

/// The spool-table partition of a receiver's checkpoints.
pub fn partition(receiver: &str) -> String {
    format!("#backfill/{receiver}")
}

impl SpoolCheckpoints {
    /// `receiver`'s checkpoints in the spool table `table`.
    pub fn new(client: Client, table: impl Into<String>, receiver: &str) -> Self {
        Self {
            client,
            table: table.into(),
            partition: partition(receiver),
        }
    }

    fn err(&self, message: String) -> prism_core::Error {
        checkpoint_error(self.place(), message)
    }

    fn key(&self, segment: u32, segments: u32) -> Item {
        Item::from([
            (
                crate::spool::KEY_LANE.to_owned(),
                AttributeValue::S(self.partition.clone()),
            ),
            (
                crate::spool::KEY_ENTRY.to_owned(),
                AttributeValue::S(format!("{segments:05}/{segment:05}")),
            ),
        ])
    }
}

#[async_trait::async_trait]
impl Checkpoints for SpoolCheckpoints {
    async fn all(&self) -> Result<Vec<Checkpoint>, prism_core::Error> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#l = :l")
                .expression_attribute_names("#l", crate::spool::KEY_LANE)
                .expression_attribute_values(":l", AttributeValue::S(self.partition.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err(format!("Query: {}", crate::sdk_error(&e))))?;
            for item in page.items() {
                let text = match item.get("checkpoint") {
                    Some(AttributeValue::S(s)) => s,
                    _ => return Err(self.err("an item without its checkpoint".into())),
                };
                out.push(serde_json::from_str(text).map_err(|e| self.err(e.to_string()))?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by_key(|c: &Checkpoint| (c.segments, c.segment));
        Ok(out)
    }

    async fn save(&self, cp: &Checkpoint) -> Result<(), prism_core::Error> {
        // UpdateItem, which the dispatcher's role already has on the spool.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(cp.segment, cp.segments)))
            .update_expression("SET #c = :c")
            .expression_attribute_names("#c", "checkpoint")
            .expression_attribute_values(
                ":c",
                AttributeValue::S(serde_json::to_string(cp).expect("a checkpoint serializes")),
            )
            .send()
            .await
            .map_err(|e| self.err(format!("UpdateItem: {}", crate::sdk_error(&e))))?;
        Ok(())
    }

    async fn clear(&self) -> Result<(), prism_core::Error> {
        let deletes = self
            .all()
            .await?
            .iter()
            .map(|c| crate::batch::delete(self.key(c.segment, c.segments)))
            .collect();
        crate::batch::batch_write(&self.client, &self.table, deletes)
            .await
            .map_err(|e| self.err(e))
    }

    fn place(&self) -> String {
        format!("spool table {} ({})", self.table, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_round_trip_through_json() {
        let key = Item::from([
            ("pk".to_owned(), AttributeValue::S("P-1".into())),
            ("n".to_owned(), AttributeValue::N("42".into())),
            (
                "b".to_owned(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0, 255])),
            ),
        ]);
        let json = crate::attr_json::ddb::item_json(&key);
        assert_eq!(key_from_json(&json).unwrap(), key);
        let e = key_from_json(&serde_json::json!({"pk": {"M": {}}})).unwrap_err();
        assert!(e.contains("\"pk\""), "{e}");
    }
}
