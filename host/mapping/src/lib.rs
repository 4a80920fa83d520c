//! The model builder: shadow-table changes → the product model.
//!
//! The master data system writes *shadow tables* that mirror its own data
//! model. For each change to one of them, the mapper plugin (the `mapper`
//! world, one per deployment, declared by a [`MapperManifest`]) returns
//! model writes, reading what else it needs through the host. The host
//! applies them ([`write`](mod@write)): conditioned on the source's sequence so a
//! retry never moves a document backwards, and not at all when a document
//! would not change, so no empty change reaches the receivers.
//!
//! Stores: [`local`] (memory or a state directory, for `prism run`) and
//! DynamoDB (`prism_aws::shadow`, for `prism dev` and the Lambda).

pub mod error;
pub mod local;
pub mod reads;
pub mod record;
pub mod store;
pub mod stream;
pub mod write;

use std::sync::Arc;

pub use error::{Error, ErrorKind};
use prism_engine::{GuestLog, MapError, MapperPlugin, PluginEngine, ShadowChange};
pub use prism_types::mapper_manifest::{self as manifest, MapperManifest, TableDecl};
use reads::Reads;
use store::{ModelStore, ShadowStore};
use write::WriteError;
pub use write::WriteTally;

/// What mapping one change did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The model writes and how they went.
    pub tally: WriteTally,
    /// Items the plugin read through the host.
    pub items_read: usize,
}

/// The mapper plugin with its manifest and stores.
pub struct ModelBuilder {
    manifest: Arc<MapperManifest>,
    plugin: MapperPlugin,
    config: Arc<std::collections::BTreeMap<String, String>>,
    reads: Arc<Reads>,
    model: Arc<dyn ModelStore>,
}

impl ModelBuilder {
    /// Load the mapper's component and wire its reads to these stores.
    pub fn new(
        engine: &PluginEngine,
        manifest: MapperManifest,
        wasm: &[u8],
        shadow: Arc<dyn ShadowStore>,
        model: Arc<dyn ModelStore>,
    ) -> Result<Self, prism_engine::Error> {
        let plugin = engine.load_mapper(wasm)?;
        let manifest = Arc::new(manifest);
        Ok(Self {
            config: Arc::new(manifest.config.clone()),
            reads: Arc::new(Reads::new(manifest.clone(), shadow, model.clone())),
            manifest,
            plugin,
            model,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &MapperManifest {
        &self.manifest
    }

    /// The plugin.
    pub fn plugin(&self) -> &MapperPlugin {
        &self.plugin
    }

    /// Map one change and apply its writes. When a document changes between
    /// the mapper's read and the host's write (another stream's change to
    /// the same product), the change is mapped again on the new state, up
    /// to [`MAX_REMAPS`] times.
    pub fn apply(&self, change: &ShadowChange) -> Result<Applied, Error> {
        let source = format!("{}/{}", change.table, change.key);
        let mut applied = Applied::default();
        for _ in 0..=MAX_REMAPS {
            let result = self.plugin.map(
                change,
                self.config.clone(),
                self.manifest.limits.sandbox(),
                self.reads.clone(),
            )?;
            emit_logs(&self.manifest.mapper, change, result.logs);
            applied.items_read += result.items_read;
            let writes = result.outcome.map_err(|e| match e {
                MapError::Reject(r) => Error::new(ErrorKind::Rejected, "", r),
                MapError::Retry(r) => Error::new(ErrorKind::Retry, "", r),
            })?;
            match write::apply(
                self.model.as_ref(),
                &self.manifest.model_key,
                writes,
                &source,
                &change.sequence,
            ) {
                Ok(mut tally) => {
                    // What an earlier attempt wrote is stale now: it counts as written.
                    tally.stale = tally.stale.saturating_sub(applied.tally.written());
                    tally.upserted += applied.tally.upserted;
                    tally.deleted += applied.tally.deleted;
                    applied.tally = tally;
                    return Ok(applied);
                }
                Err(WriteError::Conflict { key, done }) => {
                    tracing::debug!(%key, "model document changed while mapping; mapping again");
                    applied.tally.upserted += done.upserted;
                    applied.tally.deleted += done.deleted;
                }
                Err(WriteError::Store(e)) => return Err(e),
            }
        }
        Err(Error::store(format!(
            "model documents kept changing while this change was mapped ({} attempts); retried later",
            MAX_REMAPS + 1
        )))
    }
}

/// How often a change is mapped again after a conflicting write.
pub const MAX_REMAPS: usize = 7;

/// The change as it is parked: everything needed to replay it.
pub fn change_json(c: &ShadowChange) -> serde_json::Value {
    serde_json::json!({
        "table": c.table,
        "key": c.key,
        "kind": format!("{:?}", c.kind).to_uppercase(),
        "sequence": c.sequence,
        "time_ms": c.time_ms,
        "old": c.old,
        "new": c.new,
    })
}

fn emit_logs(mapper: &str, c: &ShadowChange, logs: Vec<GuestLog>) {
    let (table, key, sequence) = (c.table.as_str(), c.key.to_string(), c.sequence.as_str());
    for l in logs {
        let message = l.message.as_str();
        prism_engine::plugin_log!(l.level, mapper, table, key, sequence; "{message}");
    }
}
