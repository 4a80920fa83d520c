//! `prism plugin diff`: the release gate. Replays recorded changes through
//! the live plugin of a receiver and a candidate `.wasm`, with the live
//! entry's config, limits and mode, and prints what differs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::aws_args::{RegistryPlace, RemoteArgs, TargetArgs, block_on};
use super::engine_opts::CacheArgs;
use crate::gate::{Recording, Report, compare, render};
use prism_core::dispatch::{Dispatcher, Progress};
use prism_core::receivers::ReceiverSet;
use prism_engine::PluginEngine;
use prism_types::change::Change;
use prism_types::digest::Digest;
use prism_types::manifest::ReceiverManifest;
use prism_types::registry::{Entry, LocalRegistry, Snapshot};

/// Compare a candidate plugin with a receiver's live one on recorded changes.
///
/// Prints each change whose output differs (added, removed or changed
/// messages, bodies as a unified diff; JSON pretty-printed first), then a
/// summary. Exit status 1 when anything differs, unless --allow.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The candidate component (.wasm).
    pub wasm: PathBuf,
    /// The receiver whose live plugin is compared.
    #[arg(long)]
    pub receiver: String,
    /// Recorded changes: a Lambda DynamoDB event or JSON Lines of stream records.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["model_table", "stream_arn"])]
    pub changes: Option<PathBuf>,
    /// Replay the last --last records of this table's stream instead of a file.
    #[arg(long, value_name = "TABLE", conflicts_with_all = ["changes", "stream_arn"])]
    pub model_table: Option<String>,
    /// Replay the last --last records of this stream instead of a file.
    #[arg(long, value_name = "ARN", conflicts_with = "changes")]
    pub stream_arn: Option<String>,
    /// How many of the stream's latest records to replay.
    #[arg(long, default_value_t = 1000)]
    pub last: usize,
    #[command(flatten)]
    pub place: RegistryPlace,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Exit 0 even when the outputs differ.
    #[arg(long)]
    pub allow: bool,
    /// Lines of context around each changed line.
    #[arg(long, default_value_t = 3)]
    pub context: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let candidate =
        std::fs::read(&a.wasm).with_context(|| format!("reading {}", a.wasm.display()))?;
    let changes = match &a.changes {
        Some(file) => read_changes(file)?,
        None => {
            let target = prism_aws::AwsTarget {
                endpoint_url: a.target.endpoint_url.clone(),
                region: a.target.region.clone(),
            };
            block_on(super::aws_args::last_changes(
                &target,
                a.stream_arn.as_deref(),
                a.model_table.as_deref(),
                a.last,
            ))??
        }
    };
    let engine = a.cache.engine()?;
    let live = live_entry(&a.place, &a.target, &a.receiver)?
        .with_context(|| format!("no receiver {:?} in {}", a.receiver, a.place))?;
    let report = gate(&engine, &live.manifest, &live.wasm, &candidate, &changes)?;
    print!("{}", render(&report, a.context));
    Ok(if report.differences.is_empty() || a.allow {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Recorded changes from a file; unreadable records are an error here (a
/// release gate must not silently compare less than it was given).
pub fn read_changes(path: &std::path::Path) -> anyhow::Result<Vec<Change>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let input = prism_types::input::parse(&text, &path.display().to_string());
    if let Some(e) = input.errors.first() {
        bail!(
            "{} unreadable record(s), the first: {e}",
            input.errors.len()
        );
    }
    Ok(input.changes)
}

/// The live entry of `receiver` in the local registry `dir` or, without
/// one, the DynamoDB registry `table`, if it has one.
pub fn live_entry(
    place: &RegistryPlace,
    target: &TargetArgs,
    receiver: &str,
) -> anyhow::Result<Option<Entry>> {
    match (&place.registry, &place.table) {
        (Some(dir), _) => local_live(dir, receiver),
        (None, Some(table)) => remote_live(table, target, receiver),
        (None, None) => bail!("name the registry: --registry DIR or --table TABLE"),
    }
}

/// The live entry of `receiver` in a local registry, if it has one.
pub fn local_live(dir: &std::path::Path, receiver: &str) -> anyhow::Result<Option<Entry>> {
    let snapshot = LocalRegistry::new(dir)
        .load()
        .with_context(|| format!("reading registry {}", dir.display()))?;
    Ok(snapshot
        .entries
        .into_iter()
        .find(|e| e.manifest.receiver == receiver))
}

/// The live entry of `receiver` in a DynamoDB registry, if it has one.
pub fn remote_live(
    table: &str,
    target: &TargetArgs,
    receiver: &str,
) -> anyhow::Result<Option<Entry>> {
    let remote = RemoteArgs {
        table: table.to_owned(),
        target: target.clone(),
    };
    block_on(async {
        let r = remote.connect().await;
        let Some(head) = r.registry.head(receiver).await? else {
            return Ok(None);
        };
        let tmp = tempfile_dir()?;
        let wasm = r
            .store()?
            .wasm(receiver, &head.manifest.plugin.digest, &tmp)
            .await?;
        Ok::<_, anyhow::Error>(Some(Entry {
            origin: format!("dynamodb://{table}/{receiver} (v{})", head.current),
            manifest: head.manifest,
            wasm,
        }))
    })?
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("prism-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Run `changes` through the live plugin and the candidate, each with the
/// live entry's settings, and compare the outcomes.
pub fn gate(
    engine: &PluginEngine,
    live: &ReceiverManifest,
    live_wasm: &[u8],
    candidate_wasm: &[u8],
    changes: &[Change],
) -> anyhow::Result<Report> {
    let run = |wasm: &[u8], which: &str| -> anyhow::Result<_> {
        let mut manifest = live.clone();
        manifest.plugin.digest = Digest::of(wasm);
        manifest.enabled = true;
        let set = ReceiverSet::load(
            engine,
            Snapshot {
                entries: vec![Entry {
                    manifest,
                    origin: which.to_owned(),
                    wasm: wasm.to_vec(),
                }],
                ..Snapshot::default()
            },
        );
        if let Some(u) = set.unavailable.first() {
            bail!("the {which} plugin cannot run: {}", u.reason);
        }
        let recording = Recording::default();
        Dispatcher::default().run(&set, changes, &recording, &Progress::default());
        Ok(recording.into_outcomes())
    };
    Ok(compare(
        run(live_wasm, "live")?,
        run(candidate_wasm, "candidate")?,
    ))
}
