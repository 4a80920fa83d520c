//! `prism replay`: run stream records again through the normal dispatch
//! path, read back from the stream while it still holds them.
//!
//! The event source mapping's on-failure destination keeps only where a
//! failed batch was (`DDBStreamBatchInfo`: stream, shard, first and last
//! sequence number), not the records. `max_record_age_seconds` stays below
//! the stream's 24-hour retention (Terraform validates it), so a record
//! that exhausted its retries is still in the stream for a while: this
//! command reads it from there and hands it to the same stream processor the
//! Lambda runs (ledger, dedup, lanes and DLQs included).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::aws_args::RemoteArgs;
use prism_aws::{self as aws, AwsTarget, StreamReader};
use prism_lambda::LambdaConfig;

/// Replay stream records through the dispatcher: the records of an
/// on-failure message (`--file`), or a shard from a sequence number.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// On-failure destination messages (JSON, a JSON array, or JSON Lines):
    /// each one's DDBStreamBatchInfo says which records to replay.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["stream_arn", "shard", "sequence"])]
    pub file: Option<PathBuf>,
    /// The stream (with --shard and --sequence).
    #[arg(long, value_name = "ARN", requires_all = ["shard", "sequence"])]
    pub stream_arn: Option<String>,
    /// The shard id.
    #[arg(long, value_name = "SHARD", requires = "stream_arn")]
    pub shard: Option<String>,
    /// The first sequence number to replay.
    #[arg(long, value_name = "SEQUENCE", requires = "stream_arn")]
    pub sequence: Option<String>,
    /// The last sequence number to replay [default: all the shard holds now].
    #[arg(long, value_name = "SEQUENCE", requires = "stream_arn")]
    pub end_sequence: Option<String>,
    /// The model table: a record whose product has changed since is sent
    /// as the product is now, and every send is checked against it.
    #[arg(long, env = "PRISM_MODEL_TABLE", value_name = "TABLE")]
    pub model_table: String,
    /// Retry ledger table, as the dispatcher's (a replay then skips what
    /// was handled already).
    #[arg(long, env = "PRISM_LEDGER_TABLE", value_name = "TABLE")]
    pub ledger_table: Option<String>,
    /// Output dedup table, as the dispatcher's.
    #[arg(long, env = "PRISM_OUTPUTS_TABLE", value_name = "TABLE")]
    pub outputs_table: Option<String>,
    /// Spool table, as the dispatcher's (held changes wait in retry lanes).
    #[arg(long, env = "PRISM_SPOOL_TABLE", value_name = "TABLE")]
    pub spool_table: Option<String>,
    /// Queue for records that cannot be read.
    #[arg(long, env = "PRISM_UNREADABLE_QUEUE", value_name = "QUEUE")]
    pub unreadable_queue: Option<String>,
    /// Records per batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub batch_size: i32,
    /// Tries per batch before giving up on its failed records.
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
}

/// Which records to replay: a shard from one sequence number (to another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The stream ARN.
    pub stream_arn: String,
    /// The shard.
    pub shard: String,
    /// The first sequence number.
    pub start: String,
    /// The last one; `None`: to what the shard holds now.
    pub end: Option<String>,
}

/// The ranges in a file of on-failure destination messages.
pub fn ranges(text: &str) -> anyhow::Result<Vec<Range>> {
    let messages: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).with_context(|| format!("line {}: not JSON", n + 1))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    messages
        .iter()
        .enumerate()
        .map(|(n, m)| {
            let info = m.get("DDBStreamBatchInfo").with_context(|| {
                format!(
                    "message {}: no DDBStreamBatchInfo (not a DynamoDB stream on-failure message)",
                    n + 1
                )
            })?;
            let field = |k: &str| {
                info.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("message {}: DDBStreamBatchInfo has no {k}", n + 1))
            };
            Ok(Range {
                stream_arn: field("streamArn")?,
                shard: field("shardId")?,
                start: field("startSequenceNumber")?,
                end: Some(field("endSequenceNumber")?),
            })
        })
        .collect()
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    super::aws_args::block_on_multi(async move { replay(a).await })?
}

async fn replay(a: Args) -> anyhow::Result<ExitCode> {
    let ranges = match (&a.file, &a.stream_arn, &a.shard, &a.sequence) {
        (Some(f), ..) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            ranges(&text).with_context(|| format!("{}", f.display()))?
        }
        (None, Some(arn), Some(shard), Some(seq)) => vec![Range {
            stream_arn: arn.clone(),
            shard: shard.clone(),
            start: seq.clone(),
            end: a.end_sequence.clone(),
        }],
        _ => {
            anyhow::bail!("say what to replay: --file, or --stream-arn with --shard and --sequence")
        }
    };
    let bucket = a.remote.target.bucket.clone().context(
        "prism replay needs the plugin bucket: pass --bucket or set PRISM_PLUGIN_BUCKET",
    )?;
    let target = AwsTarget {
        endpoint_url: a.remote.target.endpoint_url.clone(),
        region: a.remote.target.region.clone(),
    };
    let config = aws::sdk_config(&target).await;
    let lambda = LambdaConfig {
        ledger_table: a.ledger_table.clone(),
        unreadable_queue: a.unreadable_queue.clone(),
        outputs_table: a.outputs_table.clone(),
        spool_table: a.spool_table.clone(),
        endpoint_url: target.endpoint_url.clone(),
        ..LambdaConfig::new(
            a.remote.table.clone(),
            bucket,
            std::env::temp_dir().join("prism-replay"),
        )
    };
    let processor = lambda.processor_with(&config, &target).await?;
    let model = prism_aws::read_model::DynamoModel::new(
        aws_sdk_dynamodb::Client::new(&config),
        &a.model_table,
    );
    let say = |line: String| println!("{line}");
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let (mut replayed, mut still_failed) = (0usize, 0usize);
    for r in &ranges {
        let reader = StreamReader::new(streams.clone(), &r.stream_arn);
        let records = read_range(&reader, r, a.batch_size).await?;
        println!(
            "{} {}: {} records from {} to {}",
            r.stream_arn,
            r.shard,
            records.len(),
            r.start,
            r.end.as_deref().unwrap_or("the end")
        );
        for batch in records.chunks(a.batch_size as usize) {
            let t = prism_core::replay::Replay {
                processor: &processor,
                model: &model,
                attempts: a.attempts,
                run_id: format!("{}-{}", std::process::id(), prism_core::spool::now_ms()),
                say: &say,
            }
            .run(batch)
            .await
            .context("replaying")?;
            if t.caught_up + t.superseded + t.corrected > 0 {
                println!(
                    "  {} sent as the product is now (it changed since), {} of products that came and went, {} sent again at a newer version the stream wrote meanwhile",
                    t.caught_up, t.superseded, t.corrected
                );
            }
            still_failed += t.failing.len();
        }
        replayed += records.len();
    }
    println!("replayed {replayed} records; {still_failed} still failing");
    Ok(if still_failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The records of `r`, in order.
async fn read_range(reader: &StreamReader, r: &Range, batch: i32) -> anyhow::Result<Vec<Value>> {
    let mut cursor = reader.open_at(&r.shard, &r.start).await?;
    let past_end = |v: &Value| {
        let seq = v["dynamodb"]["SequenceNumber"].as_str().unwrap_or_default();
        r.end
            .as_deref()
            .is_some_and(|end| prism_types::change::cmp_sequence(seq, end).is_gt())
    };
    let mut out = Vec::new();
    loop {
        let got = reader.read(&mut cursor, batch).await?;
        if got.is_empty() {
            return Ok(out);
        }
        for v in got {
            if past_end(&v) {
                return Ok(out);
            }
            out.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_failure_messages_name_their_records() {
        let one = r#"{"requestContext": {"condition": "RetryAttemptsExhausted"},
            "DDBStreamBatchInfo": {"shardId": "shardId-1", "startSequenceNumber": "100",
            "endSequenceNumber": "300", "batchSize": 3, "streamArn": "arn:s"}}"#;
        let want = Range {
            stream_arn: "arn:s".into(),
            shard: "shardId-1".into(),
            start: "100".into(),
            end: Some("300".into()),
        };
        assert_eq!(ranges(one).unwrap(), std::slice::from_ref(&want));
        let lines = format!("{}\n\n{}\n", one.replace('\n', " "), one.replace('\n', " "));
        assert_eq!(ranges(&lines).unwrap().len(), 2);
        assert_eq!(ranges(&format!("[{one}]")).unwrap(), [want]);
        let e = ranges(r#"{"Records": []}"#).unwrap_err().to_string();
        assert!(e.contains("no DDBStreamBatchInfo"), "{e}");
        let e = format!("{:#}", ranges("{\"DDBStreamBatchInfo\": {}}").unwrap_err());
        assert!(e.contains("has no streamArn"), "{e}");
    }
}
