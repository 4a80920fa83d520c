//! `prism plugin register`: put a checked plugin into a local registry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::engine_opts::CacheArgs;
use crate::digest::Digest;
use crate::manifest::{Mode, PluginRef, ReceiverManifest, SCHEMA_VERSION};
use crate::registry::LocalRegistry;

/// Register (or update) a receiver's plugin in a local registry.
///
/// The component is checked as `prism plugin check` does, copied into the
/// registry as `<sha256>.wasm`, and `<receiver>.toml` is written. Updating an
/// existing receiver keeps its other settings unless flags change them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (.wasm).
    pub wasm: PathBuf,
    /// Receiver id (lowercase letters, digits, '-').
    #[arg(long)]
    pub receiver: String,
    /// Registry directory.
    #[arg(long, value_name = "DIR")]
    pub registry: PathBuf,
    /// Config entries for the plugin, KEY=VALUE (repeatable; replaces the config when given).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::plugin::parse_kv)]
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
    /// Register it disabled.
    #[arg(long)]
    pub disabled: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(&a.wasm).with_context(|| format!("reading {}", a.wasm.display()))?;
    let engine = a.cache.engine()?;
    if let Err(e) = engine.load(&wasm) {
        eprintln!("{}: REJECTED, not registered\n{e}", a.wasm.display());
        return Ok(ExitCode::from(1));
    }
    let registry = LocalRegistry::new(&a.registry);
    let path = a.registry.join(format!("{}.toml", a.receiver));
    let mut m = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        ReceiverManifest::from_toml(&text, &path.display().to_string())?
    } else {
        ReceiverManifest {
            schema: SCHEMA_VERSION,
            receiver: a.receiver.clone(),
            enabled: true,
            plugin: PluginRef {
                digest: Digest::of(&wasm),
                file: None,
            },
            mode: Mode::Immediate,
            destination: None,
            limits: Default::default(),
            config: Default::default(),
        }
    };
    let previous = m.plugin.digest;
    if !a.config.is_empty() {
        m.config = a.config.into_iter().collect();
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
    if let Some(t) = a.timeout_ms {
        m.limits.timeout_ms = t;
    }
    if let Some(mib) = a.memory_mib {
        m.limits.memory_mib = mib;
    }
    m.enabled = !a.disabled;
    m.validate().map_err(anyhow::Error::msg)?;
    let written = registry
        .put(m, &wasm)
        .with_context(|| format!("writing to {}", a.registry.display()))?;
    let digest = Digest::of(&wasm);
    if path.exists() && previous != digest {
        println!("{}: {} -> {digest}", a.receiver, previous.short());
    }
    println!(
        "registered {} ({digest}) in {}",
        a.receiver,
        written.display()
    );
    Ok(ExitCode::SUCCESS)
}
