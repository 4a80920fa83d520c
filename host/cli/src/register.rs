//! `prism plugin register`: put a checked plugin into a local registry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::engine_opts::CacheArgs;
use prism_types::digest::Digest;
use prism_types::manifest::{Mode, PluginRef, ReceiverManifest};
use prism_types::registry::LocalRegistry;

/// Register (or update) a receiver's plugin, in a local or a DynamoDB registry.
///
/// The component is checked as `prism plugin check` does. Locally it is
/// copied into the registry as `<sha256>.wasm` and `<receiver>.toml` is
/// written. With --table it is uploaded to the bucket (`plugins/<receiver>/<sha256>.wasm`),
/// precompiled (`precompiled/<engine>/<sha256>.cwasm`), and a new version is
/// written with a conditional write, keeping the earlier ones for rollback.
/// Updating a receiver keeps its other settings unless flags change them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (.wasm).
    pub wasm: PathBuf,
    /// Receiver id (lowercase letters, digits, '-').
    #[arg(long)]
    pub receiver: String,
    #[command(flatten)]
    pub place: super::aws_args::RegistryPlace,
    #[command(flatten)]
    pub target: super::aws_args::TargetArgs,
    /// Config entries for the plugin, KEY=VALUE (repeatable; replaces the config when given).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::args::parse_kv)]
    pub config: Vec<(String, String)>,
    /// Batch mode: flush after this many changes (sets the mode to batch).
    #[arg(long, value_name = "N")]
    pub batch_max_count: Option<usize>,
    /// Time budget per change, in ms.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Linear memory cap, in MiB.
    #[arg(long)]
    pub memory_mib: Option<u32>,
    /// The receiver's SQS queue (name or URL; a name ending in `.fifo` is a
    /// FIFO queue). Required for a new receiver in a DynamoDB registry.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// The receiver's dead-letter queue, for changes it cannot take.
    #[arg(long, value_name = "QUEUE", requires = "queue")]
    pub dead_letter_queue: Option<String>,
    /// Field interest: a JSON pointer (`*` and `**` allowed) of a field the
    /// receiver cares about; modifies touching none are not offered to the
    /// plugin (repeatable; replaces the interest when given).
    #[arg(long, value_name = "POINTER")]
    pub interest: Vec<String>,
    /// Release gate: first replay these recorded changes through the live
    /// version and this one (as `prism plugin diff`); refuse to register if
    /// the outputs differ, unless --allow-diff.
    #[arg(long, value_name = "FILE")]
    pub diff_changes: Option<PathBuf>,
    /// Register even though the diff against the live version is not clean.
    #[arg(long, requires = "diff_changes")]
    pub allow_diff: bool,
    /// Register it disabled.
    #[arg(long)]
    pub disabled: bool,
    /// The dispatcher Lambda's memory (MB): refuse limits that cannot fit
    /// it (its worker threads each at this receiver's memory and copy caps).
    #[arg(long, env = "PRISM_LAMBDA_MEMORY_MB", value_name = "MB")]
    pub lambda_memory_mb: Option<u64>,
    /// The dispatcher Lambda's timeout (seconds): refuse limits whose call
    /// budget (`timeout_ms`, times `max_count` for a batch window) cannot
    /// fit in one invocation. The dispatcher refuses them at load too.
    #[arg(long, env = "PRISM_LAMBDA_TIMEOUT", value_name = "SECS")]
    pub lambda_timeout: Option<u64>,
    /// The dispatcher's worker threads, for the memory check (a Lambda has
    /// 1 vCPU per 1769 MB; prism runs one thread per core).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub lambda_threads: usize,
    #[command(flatten)]
    pub determinism: super::determinism::DeterminismArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// After a new receiver's first registration, backfill it: run the
    /// model table's current catalogue through it (as `prism backfill`,
    /// with the options below). A later version is not backfilled.
    #[arg(long, requires = "table")]
    pub backfill: bool,
    #[command(flatten)]
    pub backfill_opts: super::backfill::Options,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(&a.wasm).with_context(|| format!("reading {}", a.wasm.display()))?;
    let engine = a.cache.engine()?;
    let plugin = match engine.load(&wasm) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: REJECTED, not registered\n{e}", a.wasm.display());
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "{}: prism:receiver@{}",
        a.wasm.display(),
        plugin.contract().version()
    );
    if let Some(note) = plugin.contract().deprecation() {
        println!("  note: {note}");
    }
    if let Some(total_mib) = a.lambda_memory_mb {
        let budget = prism_engine::budget::MemoryBudget {
            total_mib,
            threads: a.lambda_threads.max(1),
            max_instances: prism_lambda::max_instances(a.lambda_threads),
        };
        let m = apply(&a, None, Digest::of(&wasm))?;
        if let Err(e) = budget.check(&m.limits, m.mode.window()) {
            eprintln!("{}: REJECTED, not registered\n{e}", a.wasm.display());
            return Ok(ExitCode::from(1));
        }
    }
    if let Some(secs) = a.lambda_timeout {
        let m = apply(&a, None, Digest::of(&wasm))?;
        let budget = prism_core::receivers::call_budget(&m);
        if let Err(e) =
            prism_core::stream::fits_invocation(budget, std::time::Duration::from_secs(secs))
        {
            eprintln!(
                "{}: REJECTED, not registered\nreceiver {}: {e}",
                a.wasm.display(),
                m.receiver
            );
            return Ok(ExitCode::from(1));
        }
    }
    let digest = Digest::of(&wasm);
    if let Some(file) = &a.diff_changes
        && !diff_gate(&a, file, &wasm, &engine)?
    {
        return Ok(ExitCode::from(1));
    }
    if let Some(table) = a.place.table.clone() {
        let (code, first) = register_remote(&a, table.clone(), &wasm, &engine, &plugin)?;
        if code != ExitCode::SUCCESS || !a.backfill {
            return Ok(code);
        }
        if !first {
            println!(
                "{}: not backfilling: it was registered before, and has had every change since (run prism backfill to refill it anyway)",
                a.receiver
            );
            return Ok(code);
        }
        if a.disabled {
            println!(
                "{}: registered disabled; not backfilling (enable it, then run prism backfill)",
                a.receiver
            );
            return Ok(code);
        }
        let remote = super::aws_args::RemoteArgs {
            table,
            target: a.target.clone(),
        };
        let (_, code) = super::backfill::backfill(&a.receiver, &remote, &a.backfill_opts)?;
        return Ok(code);
    }
    let dir = a
        .place
        .registry
        .clone()
        .expect("clap requires --registry or --table");
    let path = dir.join(format!("{}.toml", a.receiver));
    let existing = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Some(ReceiverManifest::from_toml(
            &text,
            &path.display().to_string(),
        )?)
    } else {
        None
    };
    let previous = existing.as_ref().map(|m| m.plugin.digest);
    let m = apply(&a, existing, digest)?;
    if !deterministic(&a, &m, &plugin)? {
        return Ok(ExitCode::from(1));
    }
    let written = LocalRegistry::new(&dir)
        .put(m, &wasm)
        .with_context(|| format!("writing to {}", dir.display()))?;
    if let Some(p) = previous.filter(|p| *p != digest) {
        println!("{}: {} -> {}", a.receiver, p.short(), digest.short());
    }
    println!(
        "registered {} ({digest}) in {}",
        a.receiver,
        written.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The new entry: the existing one (or a fresh one) with the flags applied.
fn apply(
    a: &Args,
    existing: Option<ReceiverManifest>,
    digest: Digest,
) -> anyhow::Result<ReceiverManifest> {
    let mut m = existing.unwrap_or_else(|| {
        ReceiverManifest::new(a.receiver.clone(), PluginRef { digest, file: None })
    });
    m.plugin = PluginRef { digest, file: None };
    if !a.config.is_empty() {
        m.config = a.config.iter().cloned().collect();
    }
    if let Some(n) = a.batch_max_count {
        m.mode = match m.mode {
            Mode::Batch {
                max_bytes,
                max_age_secs,
                ..
            } => Mode::Batch {
                max_count: n,
                max_bytes,
                max_age_secs,
            },
            Mode::Immediate => Mode::Batch {
                max_count: n,
                max_bytes: 4 << 20,
                max_age_secs: 300,
            },
        };
    }
    if !a.interest.is_empty() {
        m.interest = a.interest.clone();
    }
    if let Some(queue) = &a.queue {
        m.destination = Some(prism_types::manifest::Destination {
            queue: queue.clone(),
            dead_letter_queue: a.dead_letter_queue.clone(),
        });
    }
    if let Some(t) = a.timeout_ms {
        m.limits.timeout_ms = t;
    }
    if let Some(mib) = a.memory_mib {
        m.limits.memory_mib = mib;
    }
    m.enabled = !a.disabled;
    // Every version is checked again: an override is for this plugin only.
    m.nondeterministic = a.determinism.allow_nondeterministic.clone();
    if m.nondeterministic.is_some() {
        m.limits.reuse = 1;
    }
    m.validate().map_err(anyhow::Error::msg)?;
    Ok(m)
}

/// The determinism gate for the entry about to be written.
fn deterministic(
    a: &Args,
    m: &ReceiverManifest,
    plugin: &prism_engine::Plugin,
) -> anyhow::Result<bool> {
    let batch = matches!(m.mode, Mode::Batch { .. });
    let ok = a.determinism.gate(plugin, &m.config, m.limits, batch)?;
    if !ok {
        eprintln!("{}: REJECTED, not registered", a.wasm.display());
    } else if m.nondeterministic.is_some() {
        println!(
            "{}: registered as nondeterministic; it runs with a fresh sandbox per change (limits.reuse = 1)",
            a.receiver
        );
    }
    Ok(ok)
}

fn register_remote(
    a: &Args,
    table: String,
    wasm: &[u8],
    engine: &prism_engine::PluginEngine,
    plugin: &prism_engine::Plugin,
) -> anyhow::Result<(ExitCode, bool)> {
    let remote = super::aws_args::RemoteArgs {
        table,
        target: a.target.clone(),
    };
    let cwasm = engine
        .precompile(wasm)
        .map_err(|e| anyhow::anyhow!("precompiling: {e}"))?;
    super::aws_args::block_on(async {
        let r = remote.connect().await;
        let store = r.store()?;
        let head = r.registry.head(&a.receiver).await?;
        let m = apply(
            a,
            head.as_ref().map(|h| h.manifest.clone()),
            Digest::of(wasm),
        )?;
        if !deterministic(a, &m, plugin)? {
            return Ok((ExitCode::from(1), false));
        }
        anyhow::ensure!(
            m.destination.is_some(),
            "receiver {} has no destination: pass --queue (and --dead-letter-queue)",
            a.receiver
        );
        let digest = store.put_wasm(&a.receiver, wasm).await?;
        let cwasm_digest = Digest::of(&cwasm);
        // A receiver team's deploy role may not write precompiled/ (native
        // code): then the dispatcher compiles at its next start and shares.
        let uploaded = match store
            .put_cwasm(engine.compatibility_hash(), &digest, cwasm)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "note: the precompiled artifact was not uploaded ({e}); the dispatcher compiles the plugin at its next start"
                );
                false
            }
        };
        let new = r
            .registry
            .publish(&m, head.as_ref(), &super::aws_args::operator())
            .await?;
        if uploaded {
            // Vouch for the artifact just uploaded: dispatchers load
            // precompiled code only when a trusted writer recorded its sha256.
            r.registry
                .record_precompiled(
                    &a.receiver,
                    engine.compatibility_hash(),
                    &digest,
                    &cwasm_digest,
                )
                .await?;
        }
        if let Some(h) = &head {
            println!(
                "{}: v{} ({}) -> v{} ({})",
                a.receiver,
                h.current,
                h.manifest.plugin.digest.short(),
                new.current,
                digest.short()
            );
        }
        println!(
            "registered {} v{} ({digest}) in {}; artifacts in s3://{}/{}",
            a.receiver,
            new.current,
            r.registry.table(),
            store.bucket(),
            prism_aws::ArtifactStore::wasm_key(&a.receiver, &digest)
        );
        Ok::<_, anyhow::Error>((ExitCode::SUCCESS, head.is_none()))
    })?
}

/// Compare with the live version on recorded changes; `false` when the
/// outputs differ and that is not allowed.
fn diff_gate(
    a: &Args,
    changes: &std::path::Path,
    wasm: &[u8],
    engine: &prism_engine::PluginEngine,
) -> anyhow::Result<bool> {
    let changes = super::diff::read_changes(changes)?;
    let live = super::diff::live_entry(&a.place, &a.target, &a.receiver)?;
    let Some(live) = live else {
        println!(
            "{}: no live version to compare with; the diff gate passes",
            a.receiver
        );
        return Ok(true);
    };
    let report = super::diff::gate(engine, &live.manifest, &live.wasm, wasm, &changes)?;
    print!("{}", crate::gate::render(&report, 3));
    if report.differences.is_empty() {
        return Ok(true);
    }
    if a.allow_diff {
        println!(
            "outputs differ from {}; registering anyway (--allow-diff)",
            live.origin
        );
        return Ok(true);
    }
    eprintln!(
        "{}: not registered: its outputs differ from the live version ({}); review the diff above and pass --allow-diff to register anyway",
        a.receiver, live.origin
    );
    Ok(false)
}
