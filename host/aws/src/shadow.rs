//! The shadow tables in DynamoDB, read by the mapper (through the host):
//! `BatchGetItem` for keys (100 per call, strongly consistent) and `Query`
//! on the table or a declared global secondary index, paginated.
//!
//! Items are converted exactly as the stream reader converts images, so a
//! document built from reads equals one built from stream images.

use aws_sdk_dynamodb::Client;
use serde_json::Value;

use super::attr_json::{ddb, to_av};
use super::batch::{Item, batch_get};
use prism_mapping::TableDecl;
use prism_mapping::store::{Lookup, ShadowStore};

/// The calls the mapper makes on shadow tables (and their indexes).
/// Terraform grants exactly these.
pub const ACTIONS: &[&str] = &["dynamodb:BatchGetItem", "dynamodb:Query"];

/// Shadow tables named `prefix` + logical name.
pub struct DynamoShadow {
    client: Client,
    prefix: String,
    handle: tokio::runtime::Handle,
}

impl DynamoShadow {
    /// Shadow tables `prefix` + name; calls block on `handle` (call from
    /// a blocking thread, as the mapper's sandbox does).
    pub fn new(client: Client, prefix: impl Into<String>, handle: tokio::runtime::Handle) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            handle,
        }
    }

    fn physical(&self, t: &TableDecl) -> String {
        format!("{}{}", self.prefix, t.name)
    }
}

/// A DynamoDB item as plain JSON, converted as stream images are.
pub fn plain(item: &Item, what: &str) -> Result<Value, prism_mapping::Error> {
    let Value::Object(ddb) = ddb::item_json(item) else {
        unreachable!("an item is an object");
    };
    prism_types::input::attr::map_to_json(&ddb, "")
        .map(Value::Object)
        .map_err(|e| prism_mapping::Error::store(format!("{what}: {e}")))
}

fn key_item(key: &Value) -> Item {
    key.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), to_av(v))).collect())
        .unwrap_or_default()
}

impl ShadowStore for DynamoShadow {
    fn get_many(
        &self,
        table: &TableDecl,
        keys: &[Value],
    ) -> Result<Vec<Option<Value>>, prism_mapping::Error> {
        let name = self.physical(table);
        // Keys by their JSON text (objects serialize with sorted keys), so a
        // cascade of thousands of keys is not matched pair by pair.
        let mut unique: std::collections::HashMap<String, Item> = std::collections::HashMap::new();
        for k in keys {
            unique.entry(k.to_string()).or_insert_with(|| key_item(k));
        }
        let found = self
            .handle
            .block_on(batch_get(
                &self.client,
                &name,
                unique.into_values().collect(),
            ))
            .map_err(|e| prism_mapping::Error::store(format!("shadow table {name}: {e}")))?;
        let mut by_key = std::collections::HashMap::with_capacity(found.len());
        for item in &found {
            let v = plain(item, &name)?;
            let key: serde_json::Map<String, Value> = table
                .key
                .iter()
                .filter_map(|k| v.get(k).map(|x| (k.clone(), x.clone())))
                .collect();
            by_key.insert(Value::Object(key).to_string(), v);
        }
        Ok(keys
            .iter()
            .map(|k| by_key.get(&k.to_string()).cloned())
            .collect())
    }

    fn query(&self, lookup: Lookup<'_>) -> Result<Vec<Value>, prism_mapping::Error> {
        let Lookup {
            table,
            index,
            attribute,
            value,
        } = lookup;
        let name = self.physical(table);
        let what = match index {
            Some(i) => format!("shadow table {name} index {i}"),
            None => format!("shadow table {name}"),
        };
        self.handle.block_on(async {
            let query = self
                .client
                .query()
                .table_name(&name)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", attribute)
                .expression_attribute_values(":v", to_av(value));
            let items = super::all_items(query.into_paginator().items().send())
                .await
                .map_err(|e| prism_mapping::Error::store(format!("{what}: Query: {e}")))?;
            items.iter().map(|item| plain(item, &what)).collect()
        })
    }
}
