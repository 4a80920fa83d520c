//! The retry ledger in DynamoDB: see [`prism_core::stream::ledger`] for
//! what it records and when.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use prism_core::stream::ledger::{EXPIRES_AT, Handled, KEEP, KEY, LedgerStore, RECEIVERS};

/// The calls the dispatcher makes on the ledger table. Terraform grants exactly these.
pub const ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
];

/// The ledger in a DynamoDB table with the schema of [`prism_core::stream::ledger`].
pub struct DynamoLedger {
    /// The client.
    pub client: Client,
    /// The table name.
    pub table: String,
}

impl DynamoLedger {
    fn err(&self, message: String) -> prism_core::Error {
        prism_core::Error::ledger(self.table.clone(), message)
    }
}

#[async_trait::async_trait]
impl LedgerStore for DynamoLedger {
    async fn lookup(&self, records: &[String]) -> Result<Handled, prism_core::Error> {
        let Some(first) = records.first() else {
            return Ok(Handled::new());
        };
        let (client, table) = (&self.client, &self.table);
        let probe = client
            .get_item()
            .table_name(table)
            .key(KEY, AttributeValue::S(first.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(format!("GetItem: {}", crate::sdk_error(&e))))?;
        if probe.item.is_none() {
            return Ok(Handled::new());
        }
        let unique: BTreeSet<&String> = records.iter().collect();
        let keys = unique
            .into_iter()
            .map(|r| HashMap::from([(KEY.to_owned(), AttributeValue::S(r.clone()))]))
            .collect();
        let items = crate::batch::batch_get(client, table, keys)
            .await
            .map_err(|e| self.err(e))?;
        Ok(items.iter().filter_map(decode).collect())
    }

    async fn remember(
        &self,
        entries: &[(String, BTreeSet<String>)],
    ) -> Result<(), prism_core::Error> {
        let expires = (SystemTime::now() + KEEP)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let requests = entries
            .iter()
            .map(|(record, receivers)| {
                crate::batch::put(HashMap::from([
                    (KEY.to_owned(), AttributeValue::S(record.clone())),
                    (
                        RECEIVERS.to_owned(),
                        AttributeValue::L(
                            receivers.iter().cloned().map(AttributeValue::S).collect(),
                        ),
                    ),
                    (
                        EXPIRES_AT.to_owned(),
                        AttributeValue::N(expires.to_string()),
                    ),
                ]))
            })
            .collect();
        crate::batch::batch_write(&self.client, &self.table, requests)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

fn decode(item: &HashMap<String, AttributeValue>) -> Option<(String, BTreeSet<String>)> {
    let record = item.get(KEY)?.as_s().ok()?.clone();
    let receivers = match item.get(RECEIVERS) {
        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => BTreeSet::new(),
    };
    Some((record, receivers))
}
