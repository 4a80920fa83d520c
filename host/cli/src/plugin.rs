//! `prism plugin …`: check a component, or preview what it produces.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use prism_contract::{FormatError, Message};
use prism_core::dispatch::to_wit;
use prism_engine::{CallError, Session};
use prism_types::digest::Digest;
use prism_types::limits::Limits;

use super::engine_opts::CacheArgs;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a component before it may be registered: it must be a
    /// component, export a receiver world's functions (0.1 or 0.2) with the
    /// right types, import nothing the host does not grant, instantiate, and
    /// give the same output for a change whatever ran before it.
    Check(CheckArgs),
    /// Preview: run a plugin over a file of changes and print its messages.
    Run(RunArgs),
    #[cfg(feature = "aws")]
    /// The release gate: compare a candidate with a receiver's live plugin on recorded changes.
    Diff(super::diff::Args),
    #[cfg(feature = "aws")]
    /// Register a plugin for a receiver, locally or in DynamoDB + S3 (checks it first).
    Register(Box<super::register::Args>),
    #[cfg(feature = "aws")]
    /// List the receivers in a DynamoDB registry.
    List(super::registry_cmds::AllArgs),
    #[cfg(feature = "aws")]
    /// Show a receiver's live entry and its versions.
    Show(super::registry_cmds::OneArgs),
    #[cfg(feature = "aws")]
    /// Enable a receiver.
    Enable(super::registry_cmds::OneArgs),
    #[cfg(feature = "aws")]
    /// Disable a receiver: it gets nothing until enabled again.
    Disable(super::registry_cmds::OneArgs),
    #[cfg(feature = "aws")]
    /// Make an earlier version live again.
    Rollback(super::registry_cmds::RollbackArgs),
    #[cfg(feature = "aws")]
    /// Remove a receiver and its history from the registry.
    Remove(super::registry_cmds::OneArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The component (.wasm).
    pub wasm: PathBuf,
    /// Config entries handed to the plugin in the determinism check, as
    /// KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::args::parse_kv)]
    pub config: Vec<(String, String)>,
    /// Also check `format-batch` (for a batched receiver).
    #[arg(long)]
    pub batch: bool,
    #[command(flatten)]
    pub determinism: super::determinism::DeterminismArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The component (.wasm).
    pub wasm: PathBuf,
    /// Stream events: a Lambda DynamoDB event (JSON) or JSON Lines of records.
    #[arg(long, value_name = "FILE")]
    pub changes: PathBuf,
    /// Config entries handed to the plugin, as KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::args::parse_kv)]
    pub config: Vec<(String, String)>,
    /// Call format-batch once with every accepted change, as a batched receiver would.
    #[arg(long)]
    pub batch: bool,
    /// Time budget per change, in ms.
    #[arg(long, default_value_t = prism_types::limits::DEFAULT_TIMEOUT_MS)]
    pub timeout_ms: u64,
    /// Print at most this many bytes of each body.
    #[arg(long, default_value_t = 4096)]
    pub max_body: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl Command {
    /// Whether this is what a receiver team's deploy role runs: register
    /// (without `--backfill`, which reads the model table: an operator's
    /// job), enable, disable, rollback.
    #[cfg(feature = "aws")]
    pub fn is_deploy(&self) -> bool {
        match self {
            Command::Register(a) => !a.backfill,
            Command::Enable(_) | Command::Disable(_) | Command::Rollback(_) => true,
            _ => false,
        }
    }
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Check(a) => check(a),
        Command::Run(a) => preview(a),
        #[cfg(feature = "aws")]
        Command::Register(a) => super::register::run(*a),
        #[cfg(feature = "aws")]
        Command::Diff(a) => super::diff::run(a),
        #[cfg(feature = "aws")]
        Command::List(a) => super::registry_cmds::list(a),
        #[cfg(feature = "aws")]
        Command::Show(a) => super::registry_cmds::show(a),
        #[cfg(feature = "aws")]
        Command::Enable(a) => super::registry_cmds::set_enabled(a, true),
        #[cfg(feature = "aws")]
        Command::Disable(a) => super::registry_cmds::set_enabled(a, false),
        #[cfg(feature = "aws")]
        Command::Rollback(a) => super::registry_cmds::rollback(a),
        #[cfg(feature = "aws")]
        Command::Remove(a) => super::registry_cmds::remove(a),
    }
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(&a.wasm).with_context(|| format!("reading {}", a.wasm.display()))?;
    let engine = a.cache.engine()?;
    let started = Instant::now();
    let plugin = match engine.load(&wasm) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: REJECTED\n{e}", a.wasm.display());
            return Ok(ExitCode::from(1));
        }
    };
    let load = started.elapsed();
    // It must also instantiate (a start function could trap).
    if let Err(e) = plugin.session(Arc::new(BTreeMap::new()), Limits::default()) {
        eprintln!(
            "{}: REJECTED\ndoes not instantiate in the sandbox: {e}",
            a.wasm.display()
        );
        return Ok(ExitCode::from(1));
    }
    let contract = plugin.contract();
    println!("{}", a.wasm.display());
    println!("  digest   {}", Digest::of(&wasm));
    println!("  size     {} bytes", wasm.len());
    println!(
        "  world    prism:receiver/receiver@{} (accepts, format, format-batch)",
        contract.version()
    );
    let imports = plugin.imports();
    println!(
        "  imports  {}",
        if imports.is_empty() {
            "nothing".to_owned()
        } else {
            imports.join(", ")
        }
    );
    if let Some(note) = contract.deprecation() {
        println!("  note     {note}");
    }
    println!(
        "  load     {:.1} ms ({:?})",
        load.as_secs_f64() * 1000.0,
        plugin.source()
    );
    let config: BTreeMap<String, String> = a.config.iter().cloned().collect();
    if !a
        .determinism
        .gate(&plugin, &config, Limits::default(), a.batch)?
    {
        eprintln!("{}: REJECTED", a.wasm.display());
        return Ok(ExitCode::from(1));
    }
    println!("{}: OK", a.wasm.display());
    Ok(ExitCode::SUCCESS)
}

fn preview(a: RunArgs) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(&a.wasm).with_context(|| format!("reading {}", a.wasm.display()))?;
    let text = std::fs::read_to_string(&a.changes)
        .with_context(|| format!("reading {}", a.changes.display()))?;
    let input = prism_types::input::parse(&text, &a.changes.display().to_string());
    for e in &input.errors {
        eprintln!("unreadable input: {e}");
    }
    let engine = a.cache.engine()?;
    let plugin = engine
        .load(&wasm)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.wasm.display()))?;
    let config = Arc::new(a.config.iter().cloned().collect::<BTreeMap<_, _>>());
    let limits = Limits {
        timeout_ms: a.timeout_ms,
        ..Limits::default()
    };
    limits.validate().map_err(anyhow::Error::msg)?;
    let open = || -> anyhow::Result<Session> {
        plugin
            .session(config.clone(), limits)
            .map_err(anyhow::Error::from)
    };

    let mut accepted = Vec::new();
    let mut failures = 0;
    for c in &input.changes {
        let wit = to_wit(c);
        let mut s = open()?;
        let label = format!("{} {:?} seq {}", c.key, c.kind, c.sequence);
        match s.accepts(&wit) {
            Ok(false) => println!("# {label}: skipped (accepts = false)"),
            Ok(true) if a.batch => {
                println!("# {label}: accepted");
                accepted.push(wit);
            }
            Ok(true) => {
                let r = s.format(&wit);
                failures += show(&label, r, a.max_body);
            }
            Err(e) => {
                failures += 1;
                println!("# {label}: ERROR in accepts: {e}");
            }
        }
        print_logs(&mut s);
    }
    if a.batch && !accepted.is_empty() {
        let mut s = open()?;
        failures += show(
            &format!("batch of {}", accepted.len()),
            s.format_batch(&accepted),
            a.max_body,
        );
        print_logs(&mut s);
    }
    if !input.errors.is_empty() && input.changes.is_empty() {
        bail!("no readable changes in {}", a.changes.display());
    }
    Ok(if failures > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn show(
    label: &str,
    r: Result<Result<Vec<Message>, FormatError>, CallError>,
    max_body: usize,
) -> usize {
    match r {
        Ok(Ok(msgs)) => {
            println!("# {label}: {} message(s)", msgs.len());
            for (i, m) in msgs.iter().enumerate() {
                let attrs: Vec<String> = m
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                println!(
                    "-- message {i}: {} ({} bytes){}{}",
                    m.content_type,
                    m.body.len(),
                    m.group
                        .as_deref()
                        .map(|g| format!(" group={g}"))
                        .unwrap_or_default(),
                    if attrs.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", attrs.join(" "))
                    }
                );
                let body = String::from_utf8_lossy(&m.body);
                let cut = body.floor_char_boundary(max_body.min(body.len()));
                println!(
                    "{}{}",
                    &body[..cut],
                    if cut < body.len() {
                        "\n[… truncated]"
                    } else {
                        ""
                    }
                );
            }
            0
        }
        Ok(Err(e)) => {
            println!("# {label}: {e}");
            1
        }
        Err(e) => {
            println!("# {label}: ERROR: {e}");
            1
        }
    }
}

fn print_logs(s: &mut Session) {
    for l in s.take_logs() {
        println!(
            "   [plugin {}] {}",
            format!("{:?}", l.level).to_lowercase(),
            l.message
        );
    }
}
