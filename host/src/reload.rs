//! Hot reload: a warm dispatcher re-reads the registry when its copy is
//! older than a TTL, and picks up new, changed, disabled and removed
//! receivers without a redeploy.
//!
//! Receivers whose entry did not change keep their loaded plugin. A receiver
//! whose plugin fails to load is unavailable on its own (logged loudly). If
//! the registry itself cannot be read, the last good set stays in use and
//! the error is returned for logs and metrics: a registry outage never stops
//! the dispatcher.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::{self, ArtifactStore, DynamoRegistry, RegistryOpError};
use crate::engine::PluginEngine;
use crate::receivers::ReceiverSet;

/// Default time a registry read stays fresh.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The receivers a warm dispatcher serves, refreshed on a TTL.
pub struct LiveReceivers {
    registry: DynamoRegistry,
    store: ArtifactStore,
    artifacts_dir: PathBuf,
    ttl: Duration,
    loaded_at: Option<Instant>,
    set: Arc<ReceiverSet>,
}

/// What a refresh changed (receiver ids).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Receivers that appeared.
    pub added: Vec<String>,
    /// Receivers whose entry changed (new plugin, config, limits, …).
    pub changed: Vec<String>,
    /// Receivers that are no longer active (disabled, removed or unloadable).
    pub gone: Vec<String>,
}

impl LiveReceivers {
    /// Nothing loaded yet; the first [`Self::current`] reads the registry.
    pub fn new(
        registry: DynamoRegistry,
        store: ArtifactStore,
        artifacts_dir: PathBuf,
        ttl: Duration,
    ) -> Self {
        Self {
            registry,
            store,
            artifacts_dir,
            ttl,
            loaded_at: None,
            set: Arc::new(ReceiverSet::default()),
        }
    }

    /// Whether the registry has been read successfully at least once.
    pub fn loaded(&self) -> bool {
        self.loaded_at.is_some()
    }

    /// The current set, re-read from the registry if the copy is stale.
    /// On a registry error the previous set is returned with the error.
    pub async fn current(
        &mut self,
        engine: &PluginEngine,
    ) -> (Arc<ReceiverSet>, Option<RegistryOpError>) {
        let fresh = self.loaded_at.is_some_and(|t| t.elapsed() < self.ttl);
        if fresh {
            return (self.set.clone(), None);
        }
        match self.refresh(engine).await {
            Ok(changes) => {
                if changes != Changes::default() {
                    tracing::info!(added = ?changes.added, changed = ?changes.changed, gone = ?changes.gone, "registry reloaded");
                }
                (self.set.clone(), None)
            }
            Err(e) => {
                tracing::error!(error = %e, "registry unreadable; keeping the receivers loaded before");
                // Try again on the next call rather than after a full TTL.
                (self.set.clone(), Some(e))
            }
        }
    }

    /// Re-read the registry now.
    pub async fn refresh(&mut self, engine: &PluginEngine) -> Result<Changes, RegistryOpError> {
        let snapshot =
            aws::snapshot(&self.registry, &self.store, engine, &self.artifacts_dir).await?;
        let old = self.set.clone();
        let mut reused = Vec::new();
        let mut fresh = crate::registry::Snapshot {
            problems: snapshot.problems,
            entries: Vec::new(),
        };
        for e in snapshot.entries {
            match old.active.iter().find(|r| r.manifest == e.manifest) {
                Some(r) if e.manifest.enabled => reused.push(r.clone()),
                _ => fresh.entries.push(e),
            }
        }
        let mut set = ReceiverSet::load(engine, fresh);
        self.share_compiled(engine, &set).await;
        set.active.extend(reused);
        set.active.sort_by(|a, b| a.id().cmp(b.id()));
        let changes = diff(&old, &set);
        self.set = Arc::new(set);
        self.loaded_at = Some(Instant::now());
        Ok(changes)
    }
}

impl LiveReceivers {
    /// Record each receiver's latest error on its registry head, for
    /// `prism status` (best effort: a failure is logged, nothing more).
    pub async fn record_errors(&self, errors: &[(String, String)]) {
        for (receiver, error) in errors {
            if let Err(e) = self.registry.record_error(receiver, error).await {
                tracing::warn!(receiver = %receiver, error = %e, "could not record the last error in the registry");
            }
        }
    }

    /// Upload what this engine had to compile, so that the next cold start
    /// of any dispatcher with the same engine loads it precompiled. A failed
    /// upload only costs that later start a compile.
    async fn share_compiled(&self, engine: &PluginEngine, set: &ReceiverSet) {
        for (receiver, source, took) in &set.loads {
            if *source != crate::engine::LoadSource::Compiled {
                continue;
            }
            let Some(r) = set.active.iter().find(|r| r.id() == receiver) else {
                continue;
            };
            let digest = *r.digest();
            tracing::warn!(receiver = %receiver, %digest, took_ms = took.as_millis() as u64, "plugin compiled at start-up; sharing the artifact");
            let Some(path) = engine.cache_path(&digest) else {
                continue;
            };
            let uploaded = match std::fs::read(&path) {
                Ok(bytes) => self
                    .store
                    .put_cwasm(engine.compatibility_hash(), &digest, bytes)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("{}: {e}", path.display())),
            };
            if let Err(e) = uploaded {
                tracing::warn!(receiver = %receiver, error = %e, "could not share the compiled plugin");
            }
        }
    }
}

fn diff(old: &ReceiverSet, new: &ReceiverSet) -> Changes {
    let mut c = Changes::default();
    for r in &new.active {
        match old.active.iter().find(|o| o.id() == r.id()) {
            None => c.added.push(r.id().to_owned()),
            Some(o) if o.manifest != r.manifest => c.changed.push(r.id().to_owned()),
            Some(_) => {}
        }
    }
    for o in &old.active {
        if !new.active.iter().any(|r| r.id() == o.id()) {
            c.gone.push(o.id().to_owned());
        }
    }
    c
}
