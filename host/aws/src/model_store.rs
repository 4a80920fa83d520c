//! The product model in DynamoDB, as the model builder writes it: batched
//! consistent reads, and `PutItem`/`DeleteItem` conditioned on the
//! document's revision (`_prism_rev`), so two mappers writing the same
//! product never lose each other's change: the loser reads again.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use super::attr_json::to_av;
use super::batch::{Item, batch_get};
use super::shadow::plain;
use prism_mapping::store::{ModelStore, Put, REV_ATTR, Stored};

/// The calls the model builder makes on the model table. Terraform grants
/// exactly these (and no other function may write the model).
pub const ACTIONS: &[&str] = &[
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
];

/// The model table.
pub struct DynamoModelStore {
    client: Client,
    table: String,
    key: String,
    handle: tokio::runtime::Handle,
}

impl DynamoModelStore {
    /// The model table `table` with partition key attribute `key`; calls
    /// block on `handle` (call from a blocking thread).
    pub fn new(
        client: Client,
        table: impl Into<String>,
        key: impl Into<String>,
        handle: tokio::runtime::Handle,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            key: key.into(),
            handle,
        }
    }

    fn key_item(&self, key: &str) -> Item {
        Item::from([(self.key.clone(), AttributeValue::S(key.to_owned()))])
    }

    fn err(&self, call: &str, key: &str, e: String) -> prism_mapping::Error {
        prism_mapping::Error::store(format!("model table {}: {call} {key}: {e}", self.table))
    }
}

/// The condition that the stored revision is still `expected`.
fn condition(expected: Option<u64>) -> (String, Option<AttributeValue>) {
    match expected {
        None => ("attribute_not_exists(#k)".into(), None),
        Some(0) => (
            "attribute_exists(#k) AND attribute_not_exists(#rev)".into(),
            None,
        ),
        Some(rev) => (
            "#rev = :rev".into(),
            Some(AttributeValue::N(rev.to_string())),
        ),
    }
}

impl ModelStore for DynamoModelStore {
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Stored>>, prism_mapping::Error> {
        let mut unique: Vec<&String> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let found = self
            .handle
            .block_on(batch_get(
                &self.client,
                &self.table,
                unique.iter().map(|k| self.key_item(k)).collect(),
            ))
            .map_err(|e| prism_mapping::Error::store(format!("model table {}: {e}", self.table)))?;
        let mut by_key = std::collections::HashMap::new();
        for item in &found {
            let Value::Object(v) = plain(item, &self.table)? else {
                unreachable!("an item is an object");
            };
            let k = v
                .get(&self.key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            by_key.insert(k, Stored::from_item(v));
        }
        Ok(keys.iter().map(|k| by_key.get(k).cloned()).collect())
    }

    fn put(
        &self,
        key: &str,
        next: &Stored,
        expected: Option<u64>,
    ) -> Result<Put, prism_mapping::Error> {
        let item: Item = next
            .to_item()
            .iter()
            .map(|(k, v)| (k.clone(), to_av(v)))
            .collect();
        let (cond, rev) = condition(expected);
        let mut call = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(cond.as_str());
        if cond.contains("#k") {
            call = call.expression_attribute_names("#k", &self.key);
        }
        if cond.contains("#rev") {
            call = call.expression_attribute_names("#rev", REV_ATTR);
        }
        if let Some(rev) = rev {
            call = call.expression_attribute_values(":rev", rev);
        }
        match self.handle.block_on(call.send()) {
            Ok(_) => Ok(Put::Done),
            Err(e) if crate::condition_failed(&e) => Ok(Put::Conflict),
            Err(e) => Err(self.err("PutItem", key, super::sdk_error(&e))),
        }
    }

    fn delete(&self, key: &str, expected: u64) -> Result<Put, prism_mapping::Error> {
        let (cond, rev) = condition(Some(expected));
        let mut call = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key_item(key)))
            .condition_expression(cond.as_str())
            .expression_attribute_names("#rev", REV_ATTR);
        if cond.contains("#k") {
            call = call.expression_attribute_names("#k", &self.key);
        }
        if let Some(rev) = rev {
            call = call.expression_attribute_values(":rev", rev);
        }
        match self.handle.block_on(call.send()) {
            Ok(_) => Ok(Put::Done),
            Err(e) if crate::condition_failed(&e) => Ok(Put::Conflict),
            Err(e) => Err(self.err("DeleteItem", key, super::sdk_error(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_conditioned_on_the_revision_read() {
        assert_eq!(condition(None).0, "attribute_not_exists(#k)");
        let (c, v) = condition(Some(4));
        assert_eq!(
            (c.as_str(), v),
            ("#rev = :rev", Some(AttributeValue::N("4".into())))
        );
        assert!(condition(Some(0)).0.contains("attribute_not_exists(#rev)"));
    }
}
