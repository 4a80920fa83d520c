//! `prism backfill --receiver R`: the catalogue that already exists,
//! through one receiver, beside the live stream. Here (a process of this
//! machine, the segments in parallel) or on AWS (`--function`: one
//! dispatcher invocation per segment at a time, each resuming from the
//! segment's checkpoint in the spool table, this process only fanning out
//! and adding up). How it stays safe beside the stream:
//! [`prism_core::backfill`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};

use prism_aws::backfill::{DynamoModelScan, SpoolCheckpoints};
use prism_aws::{AwsTarget, sdk_error};
use prism_core::backfill::checkpoint::{Checkpoints, DirCheckpoints};
use prism_core::backfill::pacer::Pacer;
use prism_core::backfill::{
    self as bf, Backfill, Backfiller, Limits, ModelScan, Plan, Totals, WallClock,
};
use prism_lambda::LambdaConfig;

use crate::aws_args::RemoteArgs;

/// Run the current catalogue through one receiver (after its first
/// registration, or to refill it), resumable, paced, beside the stream.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The receiver.
    #[arg(long)]
    pub receiver: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub opts: Options,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How a backfill runs (shared with `prism plugin register --backfill`).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The model table.
    #[arg(long, env = "PRISM_MODEL_TABLE", value_name = "TABLE")]
    pub model_table: Option<String>,
    /// Parallel Scan segments: the parallelism here, the number of
    /// invocations with --function.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub segments: u32,
    /// Items per Scan page (and per checkpoint).
    #[arg(long, default_value_t = bf::DEFAULT_PAGE, value_name = "N")]
    pub page_size: usize,
    /// At most this many items per second, over all segments.
    #[arg(long, value_name = "N")]
    pub max_per_second: Option<f64>,
    /// Output dedup table, as the dispatcher's.
    #[arg(long, env = "PRISM_OUTPUTS_TABLE", value_name = "TABLE")]
    pub outputs_table: Option<String>,
    /// Spool table, as the dispatcher's: batch windows and retry lanes, and
    /// the checkpoints (else they go to --state-dir).
    #[arg(long, env = "PRISM_SPOOL_TABLE", value_name = "TABLE")]
    pub spool_table: Option<String>,
    /// Where checkpoints go without a spool table.
    #[arg(long, default_value = ".prism", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Forget the checkpoints of an earlier run and start over.
    #[arg(long)]
    pub restart: bool,
    /// Run the segments on this dispatcher Lambda (name or ARN) instead of
    /// here; needs --spool-table (the function's checkpoints).
    #[arg(long, value_name = "FUNCTION", requires = "spool_table")]
    pub function: Option<String>,
    /// Endpoint for the Lambda API alone (an emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL_LAMBDA", value_name = "URL")]
    pub lambda_endpoint_url: Option<String>,
    /// With --function: invocations at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// With --function: at most this many pages per invocation (else each
    /// runs until its deadline is near).
    #[arg(long, value_name = "N")]
    pub pages_per_invocation: Option<u64>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let json = a.json;
    let (totals, code) = backfill(&a.receiver, &a.remote, &a.opts)?;
    if json {
        let mut s = totals.summary();
        if let Some(cpu) = cpu_seconds() {
            // What this process spent (with --function: only the fan-out).
            s["cpu_seconds"] = json!(cpu);
        }
        println!("{s}");
    }
    Ok(code)
}

/// CPU time (user + system, every thread) this process has used, from
/// `/proc/self/stat` (Linux; `None` elsewhere). Ticks are taken as 1/100 s,
/// Linux's `USER_HZ` on every architecture prism deploys to.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Run one backfill and print what it did; (its counters, exit status).
pub fn backfill(
    receiver: &str,
    remote: &RemoteArgs,
    o: &Options,
) -> anyhow::Result<(Totals, ExitCode)> {
    let model_table = o
        .model_table
        .clone()
        .context("a backfill needs the model table: pass --model-table or set PRISM_MODEL_TABLE")?;
    let spec = Backfill {
        receiver: receiver.to_owned(),
        model_table,
        segments: o.segments,
        page_size: o.page_size,
    };
    spec.validate()?;
    let pacer = match o.max_per_second {
        None => None,
        Some(r) => Some(
            Pacer::per_second(r)
                .with_context(|| format!("--max-per-second {r} must be a positive number"))?,
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let r = rt.block_on(remote.connect());
    let ddb = aws_sdk_dynamodb::Client::new(&r.config);
    let checkpoints: Box<dyn Checkpoints> = match &o.spool_table {
        Some(t) => Box::new(SpoolCheckpoints::new(ddb.clone(), t, receiver)),
        None => Box::new(DirCheckpoints::new(&o.state_dir, receiver)),
    };
    let scan = DynamoModelScan::new(ddb.clone(), &spec.model_table);
    let (key_names, count) = rt.block_on(scan.describe())?;
    let totals = Totals::default();
    // Here, the receiver runs in this process: build it first, so a
    // receiver that cannot run is refused before any checkpoint is touched.
    let processor = match &o.function {
        Some(_) => None,
        None => {
            let target = AwsTarget {
                endpoint_url: remote.target.endpoint_url.clone(),
                region: remote.target.region.clone(),
            };
            let bucket = remote.target.bucket.clone().context(
                "a backfill here needs the plugin bucket: pass --bucket or set PRISM_PLUGIN_BUCKET",
            )?;
            let lambda = LambdaConfig {
                outputs_table: o.outputs_table.clone(),
                spool_table: o.spool_table.clone(),
                endpoint_url: target.endpoint_url.clone(),
                ..LambdaConfig::new(
                    remote.table.clone(),
                    bucket,
                    std::env::temp_dir().join("prism-backfill"),
                )
            };
            Some(rt.block_on(lambda.processor_with(&r.config, &target))?)
        }
    };
    let backfiller = processor.as_ref().map(|p| Backfiller {
        model: &scan,
        clock: &WallClock,
        processor: p,
        checkpoints: &*checkpoints,
        spec: &spec,
        pacer: pacer.as_ref(),
        totals: &totals,
        key_names,
        stop: Default::default(),
    });
    if let Some(b) = &backfiller {
        rt.block_on(b.check_receiver())?;
    }
    let run = match rt.block_on(bf::plan(&*checkpoints, &spec, o.restart, &WallClock))? {
        Plan::Complete(cps) => {
            let items: u64 = cps.iter().map(|c| c.items).sum();
            println!(
                "{receiver}: the backfill in {} is complete ({items} items); pass --restart to run it again",
                checkpoints.place()
            );
            return Ok((totals, ExitCode::SUCCESS));
        }
        Plan::Go { run, resumed } => {
            eprintln!(
                "{receiver}: backfilling from {} (about {count} items) in {} segments{}; checkpoints in {}{}",
                spec.model_table,
                spec.segments,
                match &o.function {
                    Some(f) => format!(" on {f}"),
                    None => String::new(),
                },
                checkpoints.place(),
                if resumed > 0 {
                    format!(", resuming {resumed} segments")
                } else {
                    String::new()
                }
            );
            run
        }
    };
    let started = std::time::Instant::now();
    let outcome = crate::progress::with_count(&totals.items, count, "items", || {
        rt.block_on(async {
            match (&backfiller, &o.function) {
                (Some(b), _) => here(b, run).await,
                (None, Some(f)) => {
                    let lambda = lambda_client(&r.config, o.lambda_endpoint_url.as_deref());
                    tokio::select! {
                        r = fan_out(&lambda, f, &spec, o, run, &totals) => r.map(|()| true),
                        _ = tokio::signal::ctrl_c() => Ok(false),
                    }
                }
                (None, None) => unreachable!("a processor is built unless --function"),
            }
        })
    });
    let secs = started.elapsed().as_secs_f64();
    let s = totals.summary();
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "{receiver}: stopped after {} items; run the same command again to resume from {}",
                s["items"],
                checkpoints.place()
            );
            return Ok((totals, ExitCode::from(130)));
        }
        Err(e) => {
            return Err(e.context(format!(
                "backfilling {receiver} (stopped after {} items; the checkpoints in {} resume it)",
                s["items"],
                checkpoints.place()
            )));
        }
    }
    println!(
        "{receiver}: backfilled {} items in {secs:.1}s ({:.0}/s): {} messages, {} suppressed (already there), {} passed over by its interest, {} held (batch windows, retry lanes), {} parked in its DLQ, {} sent again at a newer version the stream wrote meanwhile",
        s["items"],
        s["items"].as_u64().unwrap_or(0) as f64 / secs.max(0.001),
        s["messages"],
        s["suppressed"],
        s["filtered"],
        s["held"],
        s["parked"],
        s["corrected"],
    );
    if s["parked"].as_u64().unwrap_or(0) > 0 {
        println!("{receiver}: see what was parked with: prism dlq list --receiver {receiver}");
    }
    Ok((totals, ExitCode::SUCCESS))
}

/// Every segment in this process at once. An error in one, or Ctrl-C,
/// stops the others after the page they are on (so all that went out is
/// checkpointed); `false` when interrupted.
async fn here(b: &Backfiller<'_>, run: u64) -> anyhow::Result<bool> {
    let segments = futures_util::future::join_all((0..b.spec.segments).map(|s| async move {
        let r = b.run_segment(s, run, Limits::default()).await;
        if r.is_err() {
            b.stop.store(true, Ordering::Relaxed);
        }
        r
    }));
    tokio::pin!(segments);
    let (results, interrupted) = tokio::select! {
        r = &mut segments => (r, false),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("stopping after the pages in flight…");
            b.stop.store(true, Ordering::Relaxed);
            (segments.await, true)
        }
    };
    for r in results {
        r?;
    }
    Ok(!interrupted)
}

/// The Lambda client: one try per call (a backfill invocation runs for
/// minutes; the segment loop below decides what to try again).
fn lambda_client(config: &aws_config::SdkConfig, endpoint: Option<&str>) -> aws_sdk_lambda::Client {
    let mut b = aws_sdk_lambda::config::Builder::from(config)
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(url) = endpoint {
        b = b.endpoint_url(url);
    }
    aws_sdk_lambda::Client::from_conf(b.build())
}

/// Invocations of one segment that may fail in a row before the run stops.
const INVOKE_ATTEMPTS: u32 = 3;

/// Every segment on the function, `concurrency` at a time, each invoked
/// again until it reports done.
async fn fan_out(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    spec: &Backfill,
    o: &Options,
    run: u64,
    totals: &Totals,
) -> anyhow::Result<()> {
    let at_once = o.concurrency.clamp(1, spec.segments as usize);
    // Each invocation paces itself to its share of the rate.
    let share = o.max_per_second.map(|r| r / at_once as f64);
    futures_util::stream::iter(0..spec.segments)
        .map(|segment| async move {
            let mut failures = 0;
            loop {
                let event = json!({
                    "prism": "backfill",
                    "receiver": spec.receiver,
                    "segment": segment,
                    "segments": spec.segments,
                    "run": run,
                    "page_size": spec.page_size,
                    "max_per_second": share,
                    "max_pages": o.pages_per_invocation,
                });
                match invoke(lambda, function, &event).await {
                    Ok(reply) => {
                        failures = 0;
                        add(totals, &reply["invocation"]);
                        if reply["done"] == true {
                            return Ok::<_, anyhow::Error>(());
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= INVOKE_ATTEMPTS {
                            return Err(e.context(format!(
                                "segment {segment}: {INVOKE_ATTEMPTS} invocations of {function} failed in a row"
                            )));
                        }
                        eprintln!("segment {segment}: {e:#}; invoking again");
                        tokio::time::sleep(std::time::Duration::from_secs(1 << failures)).await;
                    }
                }
            }
        })
        .buffer_unordered(at_once)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// One synchronous invocation; its reply, or the function's error.
async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    event: &Value,
) -> anyhow::Result<Value> {
    let out = lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", sdk_error(&e)))
        .with_context(|| format!("invoking {function}"))?;
    let body = out.payload.map(|b| b.into_inner()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if let Some(kind) = out.function_error {
        anyhow::bail!("{function} failed ({kind}): {text}");
    }
    serde_json::from_str(&text)
        .with_context(|| format!("{function} replied with something not JSON: {text}"))
}

/// Add an invocation's counters (its reply's `invocation`) to the run's.
fn add(totals: &Totals, counts: &Value) {
    let n = |k: &str| counts[k].as_u64().unwrap_or(0);
    for (counter, key) in [
        (&totals.items, "items"),
        (&totals.messages, "messages"),
        (&totals.suppressed, "suppressed"),
        (&totals.filtered, "filtered"),
        (&totals.parked, "parked"),
        (&totals.held, "held"),
        (&totals.corrected, "corrected"),
        (&totals.contended, "contended"),
        (&totals.retries, "retries"),
    ] {
        counter.fetch_add(n(key), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_proc_and_grows_with_work() {
        let before = cpu_seconds().expect("Linux has /proc/self/stat");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        // Spin until the counter moves by 5 ticks, or give up after 20 s.
        while cpu_seconds().unwrap() - before < 0.05 {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "20 s of spinning ({x}) and /proc/self/stat did not move from {before}"
            );
        }
    }
}
