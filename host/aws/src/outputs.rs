//! Output dedup state in DynamoDB: **one item per product**, holding the
//! last output of every receiver that deduplicates (its sequence number,
//! output hash and image hash).
//!
//! A stream batch reads the items of its products with `BatchGetItem` (100
//! per call) before dispatch, and writes back the items it changed with
//! `BatchWriteItem` (25 per call) afterwards: about 0.05 requests per change
//! however many receivers there are (one item per (receiver, product) took
//! one conditional `PutItem` per receiver and change).
//!
//! The writes are unconditional. Two writers can meet on one product (a
//! tick's retry lane and a stream batch), and the loser's entries can then
//! be older than what a receiver got. That is safe by construction: an entry
//! only suppresses a change whose old image is the entry's own image
//! (`prism_core::outputs`), so a stale entry sends one output again and
//! never suppresses a real update.
//!
//! The item lives in the table's existing key schema: partition `receiver`
//! = [`PRODUCT_ITEM`], sort `key` = the product key, and one map attribute
//! `r:<receiver>` = `{s: sequence, h: hash, i: image}` per receiver.
//! Entries in the older layout (an item per receiver) are not read: after
//! the upgrade each product's next output is sent once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};

use super::batch::{Item, batch_get, batch_write};
use prism_core::outputs::{LastOutput, OutputKey, OutputsTable};

/// Partition key (S): [`PRODUCT_ITEM`] for the per-product items.
pub const KEY_RECEIVER: &str = "receiver";
/// Sort key: the product key (S).
pub const KEY_PRODUCT: &str = "key";
/// The partition value of the per-product items (no receiver id has `#`).
pub const PRODUCT_ITEM: &str = "#product";
/// The prefix of a receiver's map attribute.
pub const RECEIVER_PREFIX: &str = "r:";
/// Width of a stored sequence number.
pub const SEQUENCE_WIDTH: usize = 48;
/// The calls a dispatcher makes on the table. Terraform grants exactly these.
pub const ACTIONS: &[&str] = &["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"];

/// The output state table.
#[derive(Debug, Clone)]
pub struct DynamoOutputs {
    client: Client,
    table: String,
}

fn padded(sequence: &str) -> String {
    format!("{sequence:0>SEQUENCE_WIDTH$}")
}

fn unpadded(s: &str) -> String {
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

fn key_of(product: &str) -> Item {
    HashMap::from([
        (
            KEY_RECEIVER.to_owned(),
            AttributeValue::S(PRODUCT_ITEM.to_owned()),
        ),
        (
            KEY_PRODUCT.to_owned(),
            AttributeValue::S(product.to_owned()),
        ),
    ])
}

impl DynamoOutputs {
    /// The table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn err(&self, message: String) -> prism_core::Error {
        prism_core::Error::outputs_table(self.table.clone(), message)
    }
}

#[async_trait::async_trait]
impl OutputsTable for DynamoOutputs {
    async fn read(
        &self,
        pairs: &[OutputKey],
    ) -> Result<Vec<(OutputKey, LastOutput)>, prism_core::Error> {
        let products: BTreeSet<&str> = pairs.iter().map(|(_, k)| k.as_str()).collect();
        let keys: Vec<Item> = products.into_iter().map(key_of).collect();
        let items = batch_get(&self.client, &self.table, keys)
            .await
            .map_err(|e| self.err(e))?;
        Ok(items.iter().flat_map(decode).collect())
    }

    async fn write(&self, entries: &[(OutputKey, LastOutput)]) -> Result<usize, prism_core::Error> {
        let mut items: BTreeMap<&str, Item> = BTreeMap::new();
        for ((receiver, product), e) in entries {
            let item = items
                .entry(product.as_str())
                .or_insert_with(|| key_of(product));
            item.insert(format!("{RECEIVER_PREFIX}{receiver}"), encode(e));
        }
        let requests: Vec<WriteRequest> = items
            .into_values()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .expect("item is set"),
                    )
                    .build()
            })
            .collect();
        let n = requests.len();
        batch_write(&self.client, &self.table, requests)
            .await
            .map_err(|e| self.err(e))?;
        Ok(n)
    }
}

fn encode(e: &LastOutput) -> AttributeValue {
    let mut m = HashMap::from([
        ("s".to_owned(), AttributeValue::S(padded(&e.sequence))),
        ("h".to_owned(), AttributeValue::B(e.hash.to_vec().into())),
    ]);
    if let Some(image) = e.image {
        m.insert("i".to_owned(), AttributeValue::B(image.to_vec().into()));
    }
    AttributeValue::M(m)
}

/// Every receiver's entry in a product's item.
fn decode(item: &Item) -> Vec<(OutputKey, LastOutput)> {
    let Some(product) = item.get(KEY_PRODUCT).and_then(|v| v.as_s().ok()) else {
        return Vec::new();
    };
    item.iter()
        .filter_map(|(name, v)| {
            let receiver = name.strip_prefix(RECEIVER_PREFIX)?;
            let m = v.as_m().ok()?;
            let bytes32 =
                |k: &str| -> Option<[u8; 32]> { m.get(k)?.as_b().ok()?.as_ref().try_into().ok() };
            Some((
                (receiver.to_owned(), product.clone()),
                LastOutput {
                    sequence: unpadded(m.get("s")?.as_s().ok()?),
                    hash: bytes32("h")?,
                    image: bytes32("i"),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_products_item_round_trips_every_receivers_entry() {
        assert!(padded("99") < padded("100"));
        assert_eq!(padded("7").len(), SEQUENCE_WIDTH);
        let e = |seq: &str, image| LastOutput {
            sequence: seq.into(),
            hash: [1u8; 32],
            image,
        };
        let mut item = key_of("P-1");
        item.insert("r:web".into(), encode(&e("4200", Some([2u8; 32]))));
        item.insert("r:shop".into(), encode(&e("0", None)));
        let mut got = decode(&item);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                (("shop".into(), "P-1".into()), e("0", None)),
                (("web".into(), "P-1".into()), e("4200", Some([2u8; 32]))),
            ]
        );
    }
}
