//! Reading model documents from the product-model table, as the receivers
//! see them in the stream (the same DynamoDB-to-JSON conversion).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use tokio::sync::OnceCell;

use prism_read_api::ModelSource;

/// The calls the read API makes on the model table. Terraform grants exactly these.
pub const ACTIONS: &[&str] = &["dynamodb:DescribeTable", "dynamodb:GetItem"];

/// The product-model table.
#[derive(Debug)]
pub struct DynamoModel {
    client: Client,
    table: String,
    /// The partition key's name, read once from the table's description.
    key_name: OnceCell<String>,
}

impl DynamoModel {
    /// The table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            key_name: OnceCell::new(),
        }
    }

    fn err(&self, message: String) -> prism_core::Error {
        prism_core::Error::model(self.table.clone(), message)
    }

    async fn key_name(&self) -> Result<&str, prism_core::Error> {
        self.key_name
            .get_or_try_init(|| async {
                let d = self
                    .client
                    .describe_table()
                    .table_name(&self.table)
                    .send()
                    .await
                    .map_err(|e| self.err(format!("DescribeTable: {}", crate::sdk_error(&e))))?;
                d.table()
                    .and_then(|t| {
                        t.key_schema()
                            .iter()
                            .find(|k| k.key_type() == &aws_sdk_dynamodb::types::KeyType::Hash)
                    })
                    .map(|k| k.attribute_name().to_owned())
                    .ok_or_else(|| self.err("no partition key in the table's description".into()))
            })
            .await
            .map(String::as_str)
    }
}

#[async_trait::async_trait]
impl ModelSource for DynamoModel {
    async fn get(&self, key: &str) -> Result<Option<Value>, prism_core::Error> {
        let name = self.key_name().await?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(name, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(format!("GetItem {key}: {}", crate::sdk_error(&e))))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let Value::Object(ddb) = crate::attr_json::ddb::item_json(&item) else {
            unreachable!("an item is an object");
        };
        prism_types::input::attr::map_to_json(&ddb, key)
            .map(|mut doc| {
                prism_types::bookkeeping::strip_bookkeeping(&mut doc);
                Some(Value::Object(doc))
            })
            .map_err(|e| self.err(format!("item {key}: {e}")))
    }
}
