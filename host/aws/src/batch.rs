//! Batched DynamoDB reads and writes (`BatchGetItem` in chunks of 100 keys,
//! `BatchWriteItem` in chunks of 25), retrying what DynamoDB leaves
//! unprocessed (with backoff), shared by every table that reads many items.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest,
};

/// One item (or key).
pub type Item = HashMap<String, AttributeValue>;

/// Read the items with `keys` from `table` (missing ones are simply absent),
/// strongly consistent. Errors are the SDK's, rendered.
pub async fn batch_get(client: &Client, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, String> {
    let mut out = Vec::new();
    for chunk in keys.chunks(100) {
        let mut pending = KeysAndAttributes::builder()
            .set_keys(Some(chunk.to_vec()))
            .consistent_read(true)
            .build()
            .expect("keys are set");
        for attempt in 1.. {
            let got = client
                .batch_get_item()
                .request_items(table, pending.clone())
                .send()
                .await
                .map_err(|e| format!("BatchGetItem: {}", super::sdk_error(&e)))?;
            out.extend(
                got.responses
                    .unwrap_or_default()
                    .remove(table)
                    .unwrap_or_default(),
            );
            match got.unprocessed_keys.and_then(|mut u| u.remove(table)) {
                Some(rest) if !rest.keys.is_empty() => {
                    if attempt >= 8 {
                        return Err("BatchGetItem kept returning unprocessed keys".into());
                    }
                    tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
                    pending = rest;
                }
                _ => break,
            }
        }
    }
    Ok(out)
}

/// Apply `requests` (puts and deletes) to `table` with `BatchWriteItem` in
/// chunks of 25, retrying what DynamoDB leaves unprocessed (with backoff).
/// Errors are the SDK's, rendered.
pub async fn batch_write(
    client: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
) -> Result<(), String> {
    // The chunks are independent: written concurrently, a few at a time.
    let chunks: Vec<Vec<WriteRequest>> = requests.chunks(25).map(<[_]>::to_vec).collect();
    for group in chunks.chunks(WRITES_IN_FLIGHT) {
        let results = futures_util::future::join_all(
            group
                .iter()
                .map(|chunk| write_chunk(client, table, chunk.clone())),
        )
        .await;
        results.into_iter().collect::<Result<Vec<()>, String>>()?;
    }
    Ok(())
}

/// `BatchWriteItem` calls in flight at once for one [`batch_write`].
const WRITES_IN_FLIGHT: usize = 8;

/// One `BatchWriteItem` of at most 25 requests, retrying what DynamoDB
/// leaves unprocessed.
async fn write_chunk(client: &Client, table: &str, chunk: Vec<WriteRequest>) -> Result<(), String> {
    let mut pending = chunk;
    for attempt in 1.. {
        let out = client
            .batch_write_item()
            .request_items(table, pending)
            .send()
            .await
            .map_err(|e| format!("BatchWriteItem: {}", super::sdk_error(&e)))?;
        match out.unprocessed_items.and_then(|mut u| u.remove(table)) {
            Some(rest) if !rest.is_empty() => {
                if attempt >= 8 {
                    return Err(format!(
                        "BatchWriteItem left {} entries unprocessed",
                        rest.len()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
                pending = rest;
            }
            _ => break,
        }
    }
    Ok(())
}

/// A `PutRequest` for `item`.
pub fn put(item: Item) -> WriteRequest {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .expect("item is set");
    WriteRequest::builder().put_request(put).build()
}

/// A `DeleteRequest` for `key`.
pub fn delete(key: Item) -> WriteRequest {
    let delete = DeleteRequest::builder()
        .set_key(Some(key))
        .build()
        .expect("key is set");
    WriteRequest::builder().delete_request(delete).build()
}
