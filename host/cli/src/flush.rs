//! `prism flush`: the tick, on demand: flush batch buffers that are due (or
//! all of them) and retry the retry lanes, locally or against a spool table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::aws_args::TargetArgs;
use super::engine_opts::CacheArgs;
use prism_aws::{self as aws, AwsTarget};
use prism_core::dispatch::{Dispatcher, TickOptions, TickReport, Work, tick_with};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::Outbox;
use prism_core::spool::{LocalSpool, now_ms};
use prism_lambda::LambdaConfig;
use prism_types::registry::LocalRegistry;

/// Flush batched receivers' buffers and retry changes waiting in retry lanes.
///
/// Locally (`--registry`, `--state`, `--outbox`): the spool that `prism run
/// --state DIR` keeps in DIR/spool.json. On AWS (`--spool-table`, with the
/// registry table and bucket): what the scheduled tick does. A flush that
/// is interrupted resumes where it stopped on the next run, sending nothing
/// twice. Exit status 2 when a delivery or the spool failed (what failed
/// stays in the spool for the next run).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry directory (local).
    #[arg(long, value_name = "DIR", requires_all = ["state", "outbox"], conflicts_with = "spool_table")]
    pub registry: Option<PathBuf>,
    /// The state directory `prism run --state` used (local).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Where messages go, one directory per receiver (local).
    #[arg(long, value_name = "DIR")]
    pub outbox: Option<PathBuf>,
    /// The spool table (AWS).
    #[arg(long, value_name = "TABLE", required_unless_present = "registry")]
    pub spool_table: Option<String>,
    /// Registry table (AWS).
    #[arg(long, env = "PRISM_REGISTRY_TABLE", value_name = "TABLE")]
    pub table: Option<String>,
    /// The output dedup table (AWS): what a retry lane delivers is recorded
    /// there, as the dispatcher's tick does.
    #[arg(long, env = "PRISM_OUTPUTS_TABLE", value_name = "TABLE")]
    pub outputs_table: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Flush every buffer now, whatever its limits.
    #[arg(long)]
    pub all: bool,
    /// Take over lanes another flush holds: for when one died (its lease
    /// would otherwise keep them for 15 minutes). Make sure no other flush
    /// is running.
    #[arg(long)]
    pub break_leases: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl Args {
    fn tick_options(&self) -> TickOptions {
        TickOptions {
            now_ms: now_ms(),
            force: self.all,
            break_leases: self.break_leases,
        }
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let report = match (&a.registry, &a.spool_table) {
        (Some(registry), _) => {
            let state = a.state.as_ref().expect("clap requires --state");
            let outbox = a.outbox.as_ref().expect("clap requires --outbox");
            let engine = a.cache.engine()?;
            let snapshot = LocalRegistry::new(registry)
                .load()
                .with_context(|| format!("reading registry {}", registry.display()))?;
            let set = ReceiverSet::load(&engine, snapshot);
            for u in &set.unavailable {
                eprintln!(
                    "warning: receiver {} cannot run ({}); its lanes are kept until it loads",
                    u.receiver.as_deref().unwrap_or("?"),
                    u.reason
                );
            }
            let spool = LocalSpool::open(state)?;
            let outputs = prism_core::outputs::local::load(state)?;
            let work = Work {
                spool: &spool,
                sink: &Outbox::new(outbox),
                outputs: Some(&outputs),
                persist: None,
            };
            let report = tick_with(&Dispatcher::default(), &set, &work, a.tick_options());
            prism_core::outputs::local::save(state, &outputs)?;
            super::summary::print_tick(&report, &state.display());
            report
        }
        (None, Some(table)) => {
            let report = super::aws_args::block_on_multi(aws_tick(&a, table))??;
            super::summary::print_tick(&report, &format!("table {table}"));
            report
        }
        (None, None) => unreachable!("clap requires --registry or --spool-table"),
    };
    let errors: u64 = report.receivers.values().map(|s| s.errors()).sum();
    Ok(if errors > 0 || !report.errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn aws_tick(a: &Args, spool_table: &str) -> anyhow::Result<TickReport> {
    let table = a
        .table
        .clone()
        .context("--spool-table needs the registry: pass --table or set PRISM_REGISTRY_TABLE")?;
    let bucket = a.target.bucket.clone().context(
        "--spool-table needs the plugin bucket: pass --bucket or set PRISM_PLUGIN_BUCKET",
    )?;
    let target = AwsTarget {
        endpoint_url: a.target.endpoint_url.clone(),
        region: a.target.region.clone(),
    };
    let config = aws::sdk_config(&target).await;
    let cache_dir = a
        .cache
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("prism-flush"));
    let lambda = LambdaConfig {
        outputs_table: a.outputs_table.clone(),
        spool_table: Some(spool_table.to_owned()),
        endpoint_url: target.endpoint_url.clone(),
        ..LambdaConfig::new(table, bucket, cache_dir)
    };
    let processor = lambda.processor_with(&config, &target).await?;
    Ok(processor.tick(a.tick_options()).await?)
}
