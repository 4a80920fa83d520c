//! `prism run`: the local pipeline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use prism_core::dispatch::{
    Dispatcher, Lanes, Progress, RunOptions, RunReport, TickOptions, Work, tick_with,
};
use prism_core::outputs::{self, OutputMemory};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::Outbox;
use prism_core::spool::{LocalSpool, now_ms};
use prism_types::input::{self, Input};
use prism_types::registry::LocalRegistry;

use super::engine_opts::CacheArgs;
use super::progress::with_progress;
use super::summary;

/// Run every receiver in a registry over a file of stream events.
///
/// Each receiver's messages land in OUTBOX/RECEIVER/ as files named in
/// delivery order; changes a receiver could not take land in
/// OUTBOX/RECEIVER/dead-letters/ with the reason, and unreadable input
/// records in OUTBOX/_input-errors/.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry directory: one RECEIVER.toml manifest per receiver plus its .wasm.
    #[arg(long, value_name = "DIR")]
    pub registry: PathBuf,
    /// Stream events: a Lambda DynamoDB event (JSON) or JSON Lines of
    /// records/events. Model-table records, or with --mapper shadow-table
    /// records.
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// Run the whole chain: EVENTS are changes to the master data system's
    /// shadow tables, which this mapper (its manifest, with the .wasm next
    /// to it) turns into product-model changes before the receivers run.
    /// Mapper failures land in OUTBOX/_mapper/dead-letters/.
    #[arg(long, value_name = "MANIFEST")]
    pub mapper: Option<PathBuf>,
    /// With --mapper: the shadow tables' physical names are PREFIX + the
    /// manifest's table names (as in the records' eventSourceARN).
    #[arg(long, value_name = "PREFIX", default_value = "", requires = "mapper")]
    pub shadow_prefix: String,
    /// Where messages go, one directory per receiver.
    #[arg(long, value_name = "DIR")]
    pub outbox: PathBuf,
    /// Remove what a previous run left in the outbox first.
    #[arg(long)]
    pub clean: bool,
    /// Keep state here across runs: the output dedup state
    /// (DIR/outputs.jsonl: an output identical to the last one delivered for
    /// the same product is not sent again), batched receivers' buffers and
    /// retry lanes (DIR/spool.json: a buffer is flushed when a limit is
    /// reached, here or by `prism flush`). Without it, dedup spans this run
    /// only and every batch window is flushed by the end of the run.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Exit with status 2 if any change was parked or any receiver could not run.
    #[arg(long)]
    pub fail_on_error: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// What `run` did, for callers that print more (the demo).
pub struct Outcome {
    pub report: RunReport,
    pub problems: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let outcome = execute(&args)?;
    Ok(
        if args.fail_on_error && (outcome.report.errors() > 0 || outcome.problems > 0) {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        },
    )
}

pub fn execute(args: &Args) -> anyhow::Result<Outcome> {
    prepare_outbox(&args.outbox, args.clean)?;
    let text = std::fs::read_to_string(&args.events)
        .with_context(|| format!("reading {}", args.events.display()))?;
    let origin = args.events.display().to_string();
    let engine = args.cache.engine()?;
    let (input, chain) = match &args.mapper {
        Some(mapper) => {
            let (input, report) = super::chain::map_shadow_stream(
                &engine,
                mapper,
                &args.shadow_prefix,
                &text,
                &origin,
                args.state.as_deref(),
                &args.outbox,
            )?;
            (input, Some(report))
        }
        None => (input::parse(&text, &origin), None),
    };
    park_input_errors(&args.outbox, &input)?;
    if let Some(chain) = &chain {
        println!("{}", chain.line());
    }

    let started = Instant::now();
    let snapshot = LocalRegistry::new(&args.registry)
        .load()
        .with_context(|| format!("reading registry {}", args.registry.display()))?;
    let set = ReceiverSet::load(&engine, snapshot);
    let load_time = started.elapsed();

    let mut dispatcher = Dispatcher::builder();
    if let Some(t) = args.threads {
        dispatcher = dispatcher.threads(t);
    }
    let progress = Progress::default();
    let expected = (input.changes.len() * set.active.len()) as u64;
    let outbox = Outbox::new(&args.outbox);
    let outputs = match &args.state {
        Some(dir) => outputs::local::load(dir)?,
        None => OutputMemory::default(),
    };
    let spool = match &args.state {
        Some(dir) => Some(LocalSpool::open(dir)?),
        None => None,
    };
    // Held changes wait in retry lanes, retried by `prism flush`.
    let dispatcher = dispatcher.hold_unavailable(spool.is_some()).build();
    let lanes = match &spool {
        Some(s) => Some(Lanes::open(s, now_ms())?),
        None => None,
    };
    let opts = RunOptions {
        outputs: Some(&outputs),
        lanes: lanes.as_ref(),
        ..RunOptions::default()
    };
    let report = with_progress(&progress, expected, || {
        dispatcher.run_with(&set, &input.changes, &outbox, &progress, opts)
    });
    summary::print(&set, &report, &input, load_time, &args.outbox);
    if let (Some(spool), Some(dir)) = (&spool, &args.state) {
        // The run loop's tick: buffers that are due, retry lanes.
        let work = Work {
            spool,
            sink: &outbox,
            outputs: Some(&outputs),
            persist: None,
        };
        let ticked = tick_with(&dispatcher, &set, &work, TickOptions::at(now_ms()));
        super::summary::print_tick(&ticked, &dir.display());
    }
    if let Some(dir) = &args.state {
        outputs::local::save(dir, &outputs)?;
    }
    Ok(Outcome {
        problems: set.unavailable.len()
            + input.errors.len()
            + chain.as_ref().map_or(0, |c| c.failed),
        report,
    })
}

fn prepare_outbox(dir: &Path, clean: bool) -> anyhow::Result<()> {
    if dir.exists() {
        let non_empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some();
        if non_empty {
            if !clean {
                bail!(
                    "outbox {} is not empty; pass --clean to clear it, or choose a new directory",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn park_input_errors(outbox: &Path, input: &Input) -> anyhow::Result<()> {
    if input.errors.is_empty() {
        return Ok(());
    }
    let dir = outbox.join("_input-errors");
    std::fs::create_dir_all(&dir)?;
    for (i, e) in input.errors.iter().enumerate() {
        tracing::error!(location = %e.location, error = %e.message, "unreadable stream record parked");
        let body = serde_json::json!({"location": e.location, "error": e.message, "raw": e.raw});
        std::fs::write(
            dir.join(format!("{:06}.json", i + 1)),
            format!("{body:#}\n"),
        )?;
    }
    Ok(())
}
