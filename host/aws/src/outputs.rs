//! Output dedup state in DynamoDB: one item per (receiver, product key)
//! with the sequence number and hash of the last output delivered.
//!
//! A batch reads the items for its (receiver, key) pairs with
//! `BatchGetItem` before dispatch and writes back what changed with
//! conditional `PutItem`s afterwards: the condition (no item yet, or an older
//! sequence) means a late retry or a parallel shard can never move the state
//! backwards; a write that loses that race is simply dropped.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::batch::{Item, batch_get};
use prism_core::outputs::{LastOutput, OutputKey, OutputsError, OutputsTable};

/// Partition key: the receiver (S).
pub const KEY_RECEIVER: &str = "receiver";
/// Sort key: the product key (S).
pub const KEY_PRODUCT: &str = "key";
/// The sequence number, zero-padded to [`SEQUENCE_WIDTH`] digits so that
/// DynamoDB's string comparison orders it numerically (S).
pub const SEQUENCE: &str = "sequence";
/// The output hash (B, 32 bytes).
pub const HASH: &str = "hash";
/// The hash of the product image the output was made from (B, 32 bytes).
pub const IMAGE: &str = "image";
/// Width of a stored sequence number.
pub const SEQUENCE_WIDTH: usize = 48;
/// The calls a dispatcher makes on the table. Terraform grants exactly these.
pub const ACTIONS: &[&str] = &["dynamodb:BatchGetItem", "dynamodb:PutItem"];

/// The output state table.
#[derive(Debug, Clone)]
pub struct DynamoOutputs {
    client: Client,
    table: String,
}

fn padded(sequence: &str) -> String {
    format!("{sequence:0>SEQUENCE_WIDTH$}")
}

impl DynamoOutputs {
    /// The table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn err(&self, message: String) -> OutputsError {
        OutputsError {
            table: self.table.clone(),
            message,
        }
    }
}

#[async_trait::async_trait]
impl OutputsTable for DynamoOutputs {
    async fn read(
        &self,
        pairs: &[OutputKey],
    ) -> Result<Vec<(OutputKey, LastOutput)>, OutputsError> {
        let keys: Vec<Item> = pairs
            .iter()
            .map(|(r, k)| {
                HashMap::from([
                    (KEY_RECEIVER.to_owned(), AttributeValue::S(r.clone())),
                    (KEY_PRODUCT.to_owned(), AttributeValue::S(k.clone())),
                ])
            })
            .collect();
        let items = batch_get(&self.client, &self.table, keys)
            .await
            .map_err(|e| self.err(e))?;
        Ok(items.iter().filter_map(decode).collect())
    }

    async fn write(&self, entries: &[(OutputKey, LastOutput)]) -> Result<usize, OutputsError> {
        let mut written = 0;
        for ((receiver, key), e) in entries {
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY_RECEIVER, AttributeValue::S(receiver.clone()))
                .item(KEY_PRODUCT, AttributeValue::S(key.clone()))
                .item(SEQUENCE, AttributeValue::S(padded(&e.sequence)))
                .item(HASH, AttributeValue::B(e.hash.to_vec().into()))
                .condition_expression("attribute_not_exists(#s) OR #s < :s")
                .expression_attribute_names("#s", SEQUENCE)
                .expression_attribute_values(":s", AttributeValue::S(padded(&e.sequence)));
            if let Some(image) = e.image {
                put = put.item(IMAGE, AttributeValue::B(image.to_vec().into()));
            }
            let put = put.send().await;
            match put {
                Ok(_) => written += 1,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(err) => {
                    return Err(self.err(format!(
                        "PutItem {receiver}/{key}: {}",
                        super::sdk_error(&err)
                    )));
                }
            }
        }
        Ok(written)
    }
}

fn decode(item: &Item) -> Option<(OutputKey, LastOutput)> {
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let hash: [u8; 32] = item.get(HASH)?.as_b().ok()?.as_ref().try_into().ok()?;
    let seq = s(SEQUENCE)?;
    let trimmed = seq.trim_start_matches('0');
    Some((
        (s(KEY_RECEIVER)?, s(KEY_PRODUCT)?),
        LastOutput {
            sequence: if trimmed.is_empty() {
                "0".into()
            } else {
                trimmed.into()
            },
            hash,
            image: item
                .get(IMAGE)
                .and_then(|v| v.as_b().ok())
                .and_then(|b| b.as_ref().try_into().ok()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_sequences_order_as_numbers() {
        assert!(padded("99") < padded("100"));
        assert_eq!(padded("7").len(), SEQUENCE_WIDTH);
        let item = HashMap::from([
            (KEY_RECEIVER.to_owned(), AttributeValue::S("r".into())),
            (KEY_PRODUCT.to_owned(), AttributeValue::S("k".into())),
            (SEQUENCE.to_owned(), AttributeValue::S(padded("4200"))),
            (HASH.to_owned(), AttributeValue::B(vec![1u8; 32].into())),
        ]);
        let (k, e) = decode(&item).unwrap();
        assert_eq!(k, ("r".to_owned(), "k".to_owned()));
        assert_eq!((e.sequence.as_str(), e.hash), ("4200", [1u8; 32]));
        assert_eq!(e.image, None, "state written before images were kept");
        let mut item = item;
        item.insert(IMAGE.to_owned(), AttributeValue::B(vec![2u8; 32].into()));
        assert_eq!(decode(&item).unwrap().1.image, Some([2u8; 32]));
    }
}
