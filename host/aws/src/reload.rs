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

use crate::{ArtifactStore, DynamoRegistry, Error};
use prism_core::receivers::{ReceiverSet, ReceiverSource, Receivers};
use prism_engine::PluginEngine;

/// Default time a registry read stays fresh.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The receivers a warm dispatcher serves, refreshed on a TTL.
pub struct LiveReceivers {
    loader: Loader,
    ttl: Duration,
    loaded_at: Option<Instant>,
    set: Arc<ReceiverSet>,
    /// A refresh is under way outside the lock (see [`Self::begin_refresh`]).
    refreshing: bool,
}

/// What a refresh reads and writes: everything but the current set, so
/// that it can run without the lock on the set.
#[derive(Debug, Clone)]
pub struct Loader {
    registry: DynamoRegistry,
    store: ArtifactStore,
    artifacts_dir: PathBuf,
    /// Whether what this process compiles is recorded and uploaded.
    shares_compiled: bool,
    /// The invocation timeout receivers' call budgets must fit in.
    timeout: Option<Duration>,
}

/// What a refresh changed (receiver ids).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Receivers that appeared.
    pub added: Vec<String>,
    /// Receivers whose entry changed (new plugin, config, limits, …).
    pub changed: Vec<String>,
    /// Receivers that are gone (removed or disabled).
    pub gone: Vec<String>,
}

impl LiveReceivers {
    /// Receivers from `registry`, components from `store` (cached in
    /// `artifacts_dir`), re-read when older than `ttl`.
    pub fn new(
        registry: DynamoRegistry,
        store: ArtifactStore,
        artifacts_dir: PathBuf,
        ttl: Duration,
    ) -> Self {
        Self {
            loader: Loader {
                registry,
                store,
                artifacts_dir,
                shares_compiled: true,
                timeout: None,
            },
            ttl,
            loaded_at: None,
            set: Arc::new(ReceiverSet::default()),
            refreshing: false,
        }
    }

    /// Never share what this process compiles (the read API: its role may
    /// not write the bucket or vouch for native code in the registry).
    pub fn without_sharing(mut self) -> Self {
        self.loader.shares_compiled = false;
        self
    }

    /// Refuse receivers whose call budget cannot fit in an invocation of
    /// `timeout` (the dispatcher's; `None`: no check).
    pub fn within(mut self, timeout: Option<Duration>) -> Self {
        self.loader.timeout = timeout;
        self
    }

    /// Whether the registry has been read successfully at least once.
    pub fn loaded(&self) -> bool {
        self.loaded_at.is_some()
    }

    /// The set in use now.
    pub fn set(&self) -> Arc<ReceiverSet> {
        self.set.clone()
    }

    /// The current set, re-read from the registry if the copy is stale.
    /// On a registry error the previous set is returned with the error.
    pub async fn current(&mut self, engine: &PluginEngine) -> (Arc<ReceiverSet>, Option<Error>) {
        let Some((loader, old)) = self.begin_refresh() else {
            return (self.set.clone(), None);
        };
        let result = loader.load(engine, &old).await;
        self.finish_refresh(result)
    }

    /// Start a refresh if the copy is stale and no other refresh is under
    /// way: what it needs, to run without holding whatever guards `self`
    /// (compiles take seconds). Finish it with [`Self::finish_refresh`].
    /// `None`: serve [`Self::set`] as it is.
    pub fn begin_refresh(&mut self) -> Option<(Loader, Arc<ReceiverSet>)> {
        let fresh = self.loaded_at.is_some_and(|t| t.elapsed() < self.ttl);
        if fresh || self.refreshing {
            return None;
        }
        self.refreshing = true;
        Some((self.loader.clone(), self.set.clone()))
    }

    /// Install what a refresh loaded (or keep the old set on an error).
    pub fn finish_refresh(
        &mut self,
        result: Result<ReceiverSet, Error>,
    ) -> (Arc<ReceiverSet>, Option<Error>) {
        self.refreshing = false;
        match result {
            Ok(set) => {
                let changes = diff(&self.set, &set);
                if changes != Changes::default() {
                    tracing::info!(added = ?changes.added, changed = ?changes.changed, gone = ?changes.gone, "registry reloaded");
                }
                self.set = Arc::new(set);
                self.loaded_at = Some(Instant::now());
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
    pub async fn refresh(&mut self, engine: &PluginEngine) -> Result<Changes, Error> {
        let set = self.loader.clone().load(engine, &self.set).await?;
        let changes = diff(&self.set, &set);
        self.set = Arc::new(set);
        self.loaded_at = Some(Instant::now());
        Ok(changes)
    }

    /// Record each receiver's latest error on its registry head, for
    /// `prism status` (best effort: a failure is logged, nothing more).
    pub async fn record_errors(&self, errors: &[(String, String)]) {
        for (receiver, error) in errors {
            if let Err(e) = self.loader.registry.record_error(receiver, error).await {
                tracing::warn!(receiver = %receiver, error = %e, "could not record the last error in the registry");
            }
        }
    }
}

impl LiveReceivers {
    /// Record quarantines on the registry heads (best effort, as
    /// [`Self::record_errors`]).
    pub async fn record_quarantines(
        &self,
        quarantines: &[(String, Option<prism_types::registry::Quarantine>)],
    ) {
        for (receiver, q) in quarantines {
            match self
                .loader
                .registry
                .record_quarantine(receiver, q.as_ref())
                .await
            {
                Ok(()) => {
                    tracing::info!(receiver = %receiver, quarantined = q.is_some(), "quarantine recorded in the registry")
                }
                Err(e) => {
                    tracing::warn!(receiver = %receiver, error = %e, "could not record the quarantine in the registry; a new process starts without it")
                }
            }
        }
    }

    /// These receivers as a dispatcher's (or the read API's) source, behind
    /// a lock that is not held while a refresh compiles.
    pub fn into_receivers(self) -> Receivers {
        Receivers::Live(Box::new(Shared(tokio::sync::Mutex::new(self))))
    }
}

/// [`LiveReceivers`] shared by concurrent callers.
struct Shared(tokio::sync::Mutex<LiveReceivers>);

#[async_trait::async_trait]
impl ReceiverSource for Shared {
    async fn current(&self, engine: &PluginEngine) -> Result<Arc<ReceiverSet>, prism_core::Error> {
        // Reload without holding the lock: compiling takes seconds, and
        // meanwhile other callers are served the set in use.
        let job = self.0.lock().await.begin_refresh();
        let Some((loader, old)) = job else {
            return Ok(self.0.lock().await.set());
        };
        let result = loader.load(engine, &old).await;
        let mut live = self.0.lock().await;
        let (set, err) = live.finish_refresh(result);
        match err {
            Some(e) if !live.loaded() => Err(prism_core::Error::source_failed(e)),
            _ => Ok(set),
        }
    }

    async fn record_errors(&self, errors: &[(String, String)]) {
        self.0.lock().await.record_errors(errors).await;
    }

    async fn record_quarantines(
        &self,
        quarantines: &[(String, Option<prism_types::registry::Quarantine>)],
    ) {
        self.0.lock().await.record_quarantines(quarantines).await;
    }
}

impl Loader {
    /// Read the registry and load what changed since `old` (receivers whose
    /// entry is the same keep their loaded plugin and breaker).
    pub async fn load(
        &self,
        engine: &PluginEngine,
        old: &ReceiverSet,
    ) -> Result<ReceiverSet, Error> {
        let snapshot =
            crate::snapshot(&self.registry, &self.store, engine, &self.artifacts_dir).await?;
        let mut reused = Vec::new();
        let mut fresh = prism_types::registry::Snapshot {
            problems: snapshot.problems,
            entries: Vec::new(),
            untrusted_artifacts: snapshot.untrusted_artifacts,
            quarantines: snapshot.quarantines,
        };
        for e in snapshot.entries {
            match old.active.iter().find(|r| r.manifest == e.manifest) {
                Some(r) if e.manifest.enabled => reused.push(r.clone()),
                _ => fresh.entries.push(e),
            }
        }
        let mut set = ReceiverSet::load_within(engine, fresh, self.timeout);
        if self.shares_compiled {
            self.share_compiled(engine, &set).await;
        }
        set.active.extend(reused);
        set.active.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(set)
    }

    /// Share what this engine had to compile, so that the next cold start
    /// of any dispatcher with the same engine loads it precompiled: record
    /// the artifact's sha256 in the registry (only if no trusted writer has
    /// recorded one: first writer wins), then upload it. A dispatcher that
    /// lost the race uploads nothing, so the bucket never holds bytes other
    /// than the recorded ones. A failure only costs a later start a compile.
    async fn share_compiled(&self, engine: &PluginEngine, set: &ReceiverSet) {
        for (receiver, source, took) in &set.loads {
            if *source != prism_engine::LoadSource::Compiled {
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
            let shared = async {
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let hash = engine.compatibility_hash();
                let recorded = self
                    .registry
                    .record_precompiled(
                        receiver,
                        hash,
                        &digest,
                        &prism_types::digest::Digest::of(&bytes),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if recorded {
                    self.store
                        .put_cwasm(hash, &digest, bytes)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            };
            if let Err(e) = shared.await {
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
