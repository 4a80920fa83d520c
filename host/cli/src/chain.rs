//! The local chain's first half (`prism run --mapper`): shadow-table
//! changes → the mapper → the product model, whose changes the receivers
//! are then run over.
//!
//! The shadow tables and the model live in memory, or in the state
//! directory (`shadow.json`, `model.json`) across runs. A shadow change the
//! mapper cannot take lands in `OUTBOX/_mapper/dead-letters/` with the
//! reason and its raw stream record, ready to be replayed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use prism_engine::{PluginEngine, ShadowChange};
use prism_mapping::local::{LocalModel, LocalShadow};
use prism_mapping::record::to_shadow_change;
use prism_mapping::{MapperManifest, ModelBuilder, WriteTally, change_json};
use prism_types::input::{self, Input, InputError};

/// What the mapper did in one run.
#[derive(Debug, Default)]
pub struct ChainReport {
    /// The mapper's name.
    pub mapper: String,
    /// Shadow changes read.
    pub shadow_changes: usize,
    /// What their writes did.
    pub tally: WriteTally,
    /// Changes parked in the mapper's dead letters.
    pub failed: usize,
    /// Items the mapper read through the host.
    pub items_read: usize,
    /// Time spent mapping.
    pub elapsed: Duration,
}

impl ChainReport {
    /// One summary line.
    pub fn line(&self) -> String {
        let t = &self.tally;
        format!(
            "mapper {}: {} shadow changes → {} model writes ({} upserts, {} deletes); {} unchanged, {} stale, {} failed; {} items read in {:.0?}",
            self.mapper,
            self.shadow_changes,
            t.written(),
            t.upserted,
            t.deleted,
            t.unchanged,
            t.stale,
            self.failed,
            self.items_read,
            self.elapsed
        )
    }
}

/// Map the shadow stream in `text`; returns the model changes (as the
/// dispatcher's input, with unreadable shadow records as its errors).
pub fn map_shadow_stream(
    engine: &PluginEngine,
    mapper: &Path,
    prefix: &str,
    text: &str,
    origin: &str,
    state: Option<&Path>,
    outbox: &Path,
) -> anyhow::Result<(Input, ChainReport)> {
    let (manifest, wasm) = MapperManifest::read_local(mapper)?;
    let parsed = input::parse_with(text, origin, |rec| {
        to_shadow_change(rec, &manifest, prefix).map(|c| (c, rec.clone()))
    });
    let (shadow, model) = match state {
        Some(dir) => (LocalShadow::open(dir)?, LocalModel::open(dir)?),
        None => (LocalShadow::default(), LocalModel::default()),
    };
    let (shadow, model) = (Arc::new(shadow), Arc::new(model));
    let name = manifest.mapper.clone();
    let builder = ModelBuilder::new(engine, manifest, &wasm, shadow.clone(), model.clone())
        .with_context(|| format!("loading mapper {name} ({})", mapper.display()))?;
    let mut report = ChainReport {
        mapper: name,
        shadow_changes: parsed.items.len(),
        ..ChainReport::default()
    };
    let dead = outbox.join("_mapper").join("dead-letters");
    let started = Instant::now();
    for (change, raw) in &parsed.items {
        shadow.apply(change);
        model.set_time(change.time_ms);
        match builder.apply(change) {
            Ok(applied) => {
                report.tally.add(&applied.tally);
                report.items_read += applied.items_read;
            }
            Err(e) => {
                report.failed += 1;
                tracing::error!(table = %change.table, key = %change.key, sequence = %change.sequence, error = %e, "shadow change parked");
                park(
                    &dead,
                    report.failed,
                    change,
                    raw,
                    &e.to_string(),
                    e.reason(),
                )?;
            }
        }
    }
    report.elapsed = started.elapsed();
    if let Some(dir) = state {
        shadow.save(dir)?;
        model.save(dir)?;
    }
    let errors: Vec<InputError> = parsed.errors;
    Ok((
        Input {
            changes: model.take_changes(),
            errors,
        },
        report,
    ))
}

fn park(
    dir: &Path,
    n: usize,
    change: &ShadowChange,
    raw: &Value,
    error: &str,
    kind: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let body = json!({"error": error, "kind": kind, "change": change_json(change), "record": raw});
    let path = dir.join(format!("{n:06}.json"));
    std::fs::write(&path, format!("{body:#}\n"))
        .with_context(|| format!("writing {}", path.display()))
}
