//! Reading a table's stream through the DynamoDB Streams API, as records in
//! the JSON shape Lambda delivers, so the same code handles both.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_json::{Map, Value, json};

use crate::error::{Error, ErrorKind};

/// One open shard and where reading it has got to.
#[derive(Debug, Clone)]
pub struct ShardCursor {
    /// The shard id.
    pub shard: String,
    /// The next iterator; `None` once the shard is closed and read to its end.
    pub iterator: Option<String>,
}

/// Reads one stream's shards.
pub struct StreamReader {
    client: Client,
    arn: String,
    region: String,
}

impl StreamReader {
    /// A reader for the stream `arn`.
    pub fn new(client: Client, arn: impl Into<String>) -> Self {
        let arn = arn.into();
        let region = arn.split(':').nth(3).unwrap_or("").to_owned();
        Self {
            client,
            arn,
            region,
        }
    }

    /// The stream ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::StreamRead,
            self.arn.clone(),
            format!("{what}: {e}"),
        )
    }

    /// The shard ids of the stream, parents before children. (The Streams
    /// SDK models no paginator for DescribeStream, so this one loop stays.)
    pub async fn shards(&self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let d = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|e| self.err("DescribeStream", crate::sdk_error(&e)))?;
            let desc = d
                .stream_description
                .ok_or_else(|| self.err("DescribeStream", "no stream description"))?;
            for s in desc.shards() {
                if let Some(id) = s.shard_id() {
                    out.push(id.to_owned());
                }
            }
            match desc.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return Ok(out),
            }
        }
    }

    /// A cursor at the start (`from_start`) or the end of `shard`.
    pub async fn open(&self, shard: &str, from_start: bool) -> Result<ShardCursor, Error> {
        let kind = if from_start {
            ShardIteratorType::TrimHorizon
        } else {
            ShardIteratorType::Latest
        };
        let out = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .send()
            .await
            .map_err(|e| self.err("GetShardIterator", crate::sdk_error(&e)))?;
        Ok(ShardCursor {
            shard: shard.to_owned(),
            iterator: out.shard_iterator,
        })
    }

    /// A cursor at the record with `sequence` in `shard` (for a replay).
    /// A record the stream no longer holds (past its 24-hour retention) is
    /// an error that says so.
    pub async fn open_at(&self, shard: &str, sequence: &str) -> Result<ShardCursor, Error> {
        let out = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(sequence)
            .send()
            .await
            .map_err(|e| {
                let trimmed = e
                    .as_service_error()
                    .is_some_and(|s| s.is_trimmed_data_access_exception());
                let why = if trimmed {
                    "the stream no longer holds this record (its retention is 24 hours)".to_owned()
                } else {
                    crate::sdk_error(&e)
                };
                self.err(&format!("GetShardIterator at {sequence} in {shard}"), why)
            })?;
        Ok(ShardCursor {
            shard: shard.to_owned(),
            iterator: out.shard_iterator,
        })
    }

    /// The next records of a shard (at most `limit`), as Lambda-shaped JSON;
    /// advances the cursor.
    pub async fn read(&self, cursor: &mut ShardCursor, limit: i32) -> Result<Vec<Value>, Error> {
        let Some(it) = cursor.iterator.clone() else {
            return Ok(Vec::new());
        };
        let out = self
            .client
            .get_records()
            .shard_iterator(it)
            .limit(limit)
            .send()
            .await
            .map_err(|e| {
                self.err(
                    &format!("GetRecords on {}", cursor.shard),
                    crate::sdk_error(&e),
                )
            })?;
        cursor.iterator = out.next_shard_iterator;
        Ok(out
            .records
            .unwrap_or_default()
            .iter()
            .map(|r| record_json(r, &self.arn, &self.region))
            .collect())
    }
}

/// A Streams API record as Lambda puts it in a DynamoDB event.
pub fn record_json(r: &Record, source_arn: &str, region: &str) -> Value {
    let mut ddb = Map::new();
    if let Some(s) = r.dynamodb() {
        if let Some(t) = s.approximate_creation_date_time() {
            ddb.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
        }
        for (name, img) in [
            ("Keys", s.keys()),
            ("NewImage", s.new_image()),
            ("OldImage", s.old_image()),
        ] {
            if let Some(img) = img {
                ddb.insert(name.into(), item_json(img));
            }
        }
        if let Some(seq) = s.sequence_number() {
            ddb.insert("SequenceNumber".into(), json!(seq));
        }
        if let Some(n) = s.size_bytes() {
            ddb.insert("SizeBytes".into(), json!(n));
        }
        if let Some(v) = s.stream_view_type() {
            ddb.insert("StreamViewType".into(), json!(v.as_str()));
        }
    }
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version(),
        "eventSource": r.event_source().unwrap_or("aws:dynamodb"),
        "awsRegion": r.aws_region().unwrap_or(region),
        "eventSourceARN": source_arn,
        "dynamodb": ddb,
    })
}

super::attr_json::dynamodb_json!(aws_sdk_dynamodbstreams::primitives::Blob);

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::types::{OperationType, StreamRecord};

    #[test]
    fn records_become_what_lambda_delivers_and_what_the_input_reads() {
        let img = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("P-1".into())),
            ("price".to_owned(), AttributeValue::N("19.90".into())),
            (
                "blob".to_owned(),
                AttributeValue::B(aws_sdk_dynamodbstreams::primitives::Blob::new(
                    b"hi".to_vec(),
                )),
            ),
            (
                "tags".to_owned(),
                AttributeValue::L(vec![AttributeValue::M(HashMap::from([(
                    "on".to_owned(),
                    AttributeValue::Bool(true),
                )]))]),
            ),
        ]);
        let rec = Record::builder()
            .event_id("e1")
            .event_name(OperationType::Insert)
            .dynamodb(
                StreamRecord::builder()
                    .keys("pk", AttributeValue::S("P-1".into()))
                    .set_new_image(Some(img))
                    .sequence_number("100")
                    .approximate_creation_date_time(
                        aws_sdk_dynamodbstreams::primitives::DateTime::from_secs(1_700_000_000),
                    )
                    .build(),
            )
            .build();
        let arn = "arn:aws:dynamodb:eu-west-1:1:table/m/stream/x";
        let v = record_json(&rec, arn, "eu-west-1");
        assert_eq!(v["eventSourceARN"], arn);
        assert_eq!(v["eventName"], "INSERT");
        assert_eq!(v["dynamodb"]["NewImage"]["blob"]["B"], "aGk=");
        let c = prism_types::input::record::to_change(&v).unwrap();
        assert_eq!(c.key, "P-1");
        assert_eq!(c.sequence, "100");
        assert_eq!(c.time_ms, 1_700_000_000_000);
        assert_eq!(
            c.new_json.as_deref(),
            Some(r#"{"blob":"aGk=","pk":"P-1","price":19.9,"tags":[{"on":true}]}"#)
        );
    }
}
