//! The retry ledger: which receivers already handled which stream records of
//! a batch that is going to be retried.
//!
//! When a batch ends with some receiver holding a change (its queue was
//! down), the stream processor reports that record and every later one as
//! failed, and Lambda sends them again. Other receivers handled many of
//! those records already; the ledger remembers, per record, which ones, so
//! the retry runs each (receiver, record) pair at most once more.
//!
//! - An entry is written only for a batch that reports failures, one per
//!   record from the first failed one to the end of the batch (an empty
//!   receiver list included), so every retry's first record has an entry.
//! - A batch looks at the ledger with one read of its first record's entry;
//!   only when that exists (a retry) does it read the rest.
//! - Entries expire after two days (DynamoDB TTL), past the stream's 24 hour
//!   retention: a record cannot be retried after that.
//!
//! Record ids are `<event source ARN>#<sequence number>`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

/// Which receivers handled each record.
pub type Handled = HashMap<String, BTreeSet<String>>;

/// The ledger table's partition key (S).
pub const KEY: &str = "record";
/// The attribute listing the receivers that handled the record (L of S).
pub const RECEIVERS: &str = "receivers";
/// The TTL attribute (N, epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";
/// The calls the dispatcher makes on the ledger table. Terraform grants exactly these.
pub const ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
];
/// How long an entry is kept.
pub const KEEP: Duration = Duration::from_secs(2 * 24 * 3600);

/// A ledger read or write that failed.
#[derive(Debug, thiserror::Error)]
#[error("retry ledger {table}: {message}")]
pub struct LedgerError {
    /// The table (or `memory`).
    pub table: String,
    /// What failed.
    pub message: String,
}

/// Where the ledger lives.
pub enum Ledger {
    /// In this process (for `prism dev` without a table, and tests).
    Memory(Mutex<Handled>),
    /// A DynamoDB table with the schema above.
    Dynamo {
        /// The client.
        client: Client,
        /// The table name.
        table: String,
    },
}

impl Ledger {
    /// An empty in-process ledger.
    pub fn memory() -> Self {
        Self::Memory(Mutex::new(HashMap::new()))
    }

    /// What earlier attempts recorded for `records` (in batch order).
    pub async fn lookup(&self, records: &[String]) -> Result<Handled, LedgerError> {
        let Some(first) = records.first() else {
            return Ok(Handled::new());
        };
        match self {
            Self::Memory(m) => {
                let m = m.lock().unwrap_or_else(|e| e.into_inner());
                if !m.contains_key(first) {
                    return Ok(Handled::new());
                }
                Ok(records
                    .iter()
                    .filter_map(|r| m.get(r).map(|s| (r.clone(), s.clone())))
                    .collect())
            }
            Self::Dynamo { client, table } => {
                let err = |message: String| LedgerError {
                    table: table.clone(),
                    message,
                };
                let probe = client
                    .get_item()
                    .table_name(table)
                    .key(KEY, AttributeValue::S(first.clone()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| err(format!("GetItem: {}", crate::aws::sdk_error(&e))))?;
                if probe.item.is_none() {
                    return Ok(Handled::new());
                }
                let unique: BTreeSet<&String> = records.iter().collect();
                let keys = unique
                    .into_iter()
                    .map(|r| HashMap::from([(KEY.to_owned(), AttributeValue::S(r.clone()))]))
                    .collect();
                let items = crate::aws::batch::batch_get(client, table, keys)
                    .await
                    .map_err(err)?;
                let out: Handled = items.iter().filter_map(decode).collect();
                Ok(out)
            }
        }
    }

    /// Record which receivers handled each of `entries`' records.
    pub async fn remember(
        &self,
        entries: &[(String, BTreeSet<String>)],
    ) -> Result<(), LedgerError> {
        match self {
            Self::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                for (record, receivers) in entries {
                    m.insert(record.clone(), receivers.clone());
                }
                Ok(())
            }
            Self::Dynamo { client, table } => {
                let err = |message: String| LedgerError {
                    table: table.clone(),
                    message,
                };
                let expires = (SystemTime::now() + KEEP)
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let requests = entries
                    .iter()
                    .map(|(record, receivers)| {
                        crate::aws::batch::put(HashMap::from([
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
                crate::aws::batch::batch_write(client, table, requests)
                    .await
                    .map_err(err)?;
                Ok(())
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn memory_ledger_reads_only_for_a_retry() {
        let l = Ledger::memory();
        l.remember(&[("s#2".into(), set(&["a"])), ("s#3".into(), set(&[]))])
            .await
            .unwrap();
        // A batch that does not start at a remembered record is not a retry.
        assert!(
            l.lookup(&["s#1".into(), "s#2".into()])
                .await
                .unwrap()
                .is_empty()
        );
        let got = l
            .lookup(&["s#2".into(), "s#3".into(), "s#4".into()])
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["s#2"], set(&["a"]));
        assert!(got["s#3"].is_empty());
    }
}
