//! `prism dev`: poll a table's stream and dispatch continuously, as the
//! Lambda would, against moto or real AWS.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::aws_args::RemoteArgs;
use super::follow::{Followed, held_from};
use prism_aws::{self as aws, AwsTarget};
use prism_core::stream::StreamProcessor;
use prism_lambda::LambdaConfig;

/// Watch the whole system run: poll the model table's stream through the
/// DynamoDB Streams API and hand each shard's records to the same stream
/// processor the Lambda uses (registry hot reload, SQS delivery, DLQs, held
/// records retried without repeating work). One line per batch.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The product-model table whose stream to follow.
    #[arg(long, value_name = "TABLE", required_unless_present = "stream_arn")]
    pub model_table: Option<String>,
    /// The stream ARN (instead of --model-table).
    #[arg(long, value_name = "ARN", conflicts_with = "model_table")]
    pub stream_arn: Option<String>,
    /// Start at the oldest record still in the stream (default: only new ones).
    #[arg(long)]
    pub from_start: bool,
    /// Read everything there is now, dispatch it, and exit (status 1 if
    /// anything is still held for a retry).
    #[arg(long)]
    pub once: bool,
    /// Records per batch (as the event source mapping's batch size).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub batch_size: i32,
    /// Pause between polls when there is nothing new, in ms.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Registry refresh interval, in seconds.
    #[arg(long, default_value_t = 5)]
    pub reload_secs: u64,
    /// Retry ledger table [default: kept in this process].
    #[arg(long, value_name = "TABLE")]
    pub ledger_table: Option<String>,
    /// Output dedup table [default: kept in this process].
    #[arg(long, value_name = "TABLE")]
    pub outputs_table: Option<String>,
    /// Spool table for batch buffers and retry lanes [default: kept in this
    /// process; --once and Ctrl-C flush every buffer before it exits].
    #[arg(long, value_name = "TABLE")]
    pub spool_table: Option<String>,
    /// Queue for records that cannot be read [default: they are held].
    #[arg(long, value_name = "QUEUE")]
    pub unreadable_queue: Option<String>,
    /// Compiled plugins and downloaded artifacts.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Also print the EMF metric lines the Lambda writes.
    #[arg(long)]
    pub metrics: bool,
    /// Run the whole chain: also follow the shadow tables' streams and
    /// build the product model (--model-table) with this mapper (a local
    /// manifest, its .wasm next to it), as the mapper Lambda does.
    #[arg(long, value_name = "MANIFEST", requires = "model_table")]
    pub mapper: Option<PathBuf>,
    /// With --mapper: shadow tables are named PREFIX + the manifest's names.
    #[arg(long, value_name = "PREFIX", default_value = "", requires = "mapper")]
    pub shadow_prefix: String,
    /// With --mapper: queue for shadow changes the mapper rejects or fails
    /// on [default: they are held and retried].
    #[arg(long, value_name = "QUEUE", requires = "mapper")]
    pub mapper_dlq: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    super::aws_args::block_on_multi(async move { dev(a).await })?
}

async fn dev(a: Args) -> anyhow::Result<ExitCode> {
    let bucket =
        a.remote.target.bucket.clone().context(
            "prism dev needs the plugin bucket: pass --bucket or set PRISM_PLUGIN_BUCKET",
        )?;
    let target = AwsTarget {
        endpoint_url: a.remote.target.endpoint_url.clone(),
        region: a.remote.target.region.clone(),
    };
    let config = aws::sdk_config(&target).await;
    let arn =
        super::aws_args::stream_arn(&config, a.stream_arn.as_deref(), a.model_table.as_deref())
            .await?;
    let cache_dir = a
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("prism-dev"));
    let lambda = LambdaConfig {
        ledger_table: a.ledger_table.clone(),
        unreadable_queue: a.unreadable_queue.clone(),
        outputs_table: a.outputs_table.clone(),
        spool_table: a.spool_table.clone(),
        reload: Duration::from_secs(a.reload_secs),
        endpoint_url: target.endpoint_url.clone(),
        metrics: a.metrics,
        ..LambdaConfig::new(a.remote.table.clone(), bucket, cache_dir)
    };
    let processor = lambda.processor_with(&config, &target).await?;
    // Without tables, dedup state and the spool live in this process.
    let durable = processor.has_spool();
    let memory_outputs = (!processor.has_outputs())
        .then(|| prism_core::stream::OutputsStore::Memory(Default::default()));
    let mut processor = processor.into_builder();
    if let Some(outputs) = memory_outputs {
        processor = processor.outputs(Some(outputs));
    }
    if !durable {
        let memory: std::sync::Arc<dyn prism_core::spool::Spool> =
            std::sync::Arc::new(prism_core::spool::LocalSpool::memory());
        processor = processor.spool(Some(memory));
    }
    let processor = processor.build();
    let mut model_stream = Followed::new(&config, &arn);
    println!("following {arn}");
    let mut chain = match &a.mapper {
        Some(path) => Some(
            super::dev_mapper::Chain::start(
                &config,
                processor.engine(),
                path,
                &a.shadow_prefix,
                a.model_table.as_deref().unwrap_or_default(),
                a.mapper_dlq.as_deref(),
            )
            .await?,
        ),
        None => None,
    };

    // Ctrl-C ends the loop after the current poll, with a last tick that
    // flushes an in-process spool whole (nothing buffered dies with us).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }

    let mut first = true;
    loop {
        let from_start = a.from_start || !first;
        let mut busy = false;
        // Shadow changes first: the model writes they cause are then read
        // from the model stream in the same round.
        if let Some(chain) = chain.as_mut() {
            busy |= chain.poll(a.batch_size, from_start).await?;
        }
        busy |= model_stream
            .poll(a.batch_size, from_start, |id, batch| {
                dispatch(&processor, id, batch)
            })
            .await?;
        first = false;
        let interrupted = stop.load(std::sync::atomic::Ordering::SeqCst);
        let last = (a.once && !busy) || interrupted;
        // The tick: due buffers and retry lanes (an in-process spool is
        // flushed whole before --once exits, so nothing is left in memory).
        let waiting = tick(&processor, last && !durable).await?;
        if last {
            let held = model_stream.held() + chain.as_ref().map_or(0, |c| c.held());
            if held > 0 || waiting > 0 {
                println!(
                    "{held} records still held for a retry, {waiting} changes waiting in the spool"
                );
                return Ok(ExitCode::from(1));
            }
            return Ok(ExitCode::SUCCESS);
        }
        if !busy {
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
    }
}

/// Run the tick and say what it did; returns the changes still waiting.
async fn tick(processor: &StreamProcessor, force: bool) -> anyhow::Result<u64> {
    let opts = prism_core::dispatch::TickOptions {
        force,
        ..prism_core::dispatch::TickOptions::at(prism_core::spool::now_ms())
    };
    let report = processor.tick(opts).await.context("tick")?;
    if let Some(e) = report.errors.first() {
        anyhow::bail!("tick: {e}");
    }
    let flushed: u64 = report.receivers.values().map(|s| s.batches).sum();
    let messages: u64 = report.receivers.values().map(|s| s.messages).sum();
    let errors: u64 = report.receivers.values().map(|s| s.errors()).sum();
    if report.lanes > 0 {
        println!(
            "tick: {} lanes, {flushed} windows flushed, {messages} msgs, {errors} errors, {} changes waiting",
            report.lanes, report.waiting
        );
    }
    Ok(report.waiting)
}

/// Handle one batch; returns the records to retry.
async fn dispatch(
    processor: &StreamProcessor,
    shard: String,
    batch: Vec<Value>,
) -> anyhow::Result<Vec<Value>> {
    let outcome = processor
        .handle(&json!({ "Records": batch }))
        .await
        .with_context(|| format!("shard {shard}"))?;
    let per: Vec<String> = outcome
        .report
        .receivers
        .iter()
        .map(|(r, st)| {
            format!(
                "{r} {}/{} msgs{}{}{}",
                st.messages,
                st.seen,
                match (st.buffered, st.laned) {
                    (0, 0) => String::new(),
                    (b, 0) => format!(" ({b} buffered)"),
                    (0, l) => format!(" ({l} in retry lanes)"),
                    (b, l) => format!(" ({b} buffered, {l} in retry lanes)"),
                },
                if st.suppressed > 0 {
                    format!(" ({} unchanged)", st.suppressed)
                } else {
                    String::new()
                },
                if st.errors() > 0 {
                    format!(" {} errors", st.errors())
                } else {
                    String::new()
                }
            )
        })
        .collect();
    let failed = &outcome.response.batch_item_failures;
    println!(
        "{shard}: {} records -> {}{}",
        outcome.numbers.records,
        if per.is_empty() {
            "no receivers".to_owned()
        } else {
            per.join(", ")
        },
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({} held for a retry)", failed.len())
        }
    );
    Ok(held_from(batch, failed))
}
