//! The set of receivers a dispatcher serves: each enabled registry entry
//! with its plugin loaded. Registry-agnostic: local and DynamoDB registries
//! both hand in a [`Snapshot`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prism_engine::{LoadError, LoadSource, Plugin, PluginEngine};
use prism_types::digest::Digest;
use prism_types::manifest::ReceiverManifest;
use prism_types::registry::Snapshot;

/// A receiver ready to run.
pub struct ActiveReceiver {
    /// Its registry entry.
    pub manifest: ReceiverManifest,
    /// Its loaded plugin.
    pub plugin: Plugin,
    /// Its config, shared with every sandbox.
    pub config: Arc<BTreeMap<String, String>>,
    /// Its circuit breaker (state for this process and plugin version).
    pub breaker: crate::breaker::Breaker,
}

impl ActiveReceiver {
    /// The receiver id.
    pub fn id(&self) -> &str {
        &self.manifest.receiver
    }

    /// The plugin digest.
    pub fn digest(&self) -> &Digest {
        self.plugin.digest()
    }

    /// Whether the change touches the receiver's declared field interest
    /// (always, for inserts, removes, and receivers that declare none).
    pub fn interested(&self, c: &prism_types::change::Change) -> bool {
        self.manifest.interest.is_empty()
            || prism_sdk::pointer::any_interest(&c.changed_paths, &self.manifest.interest)
    }
}

/// A receiver that is registered but cannot run.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// The receiver id, when the entry got that far.
    pub receiver: Option<String>,
    /// The plugin digest, when known.
    pub digest: Option<Digest>,
    /// Why.
    pub reason: String,
    /// Where its changes would have gone (its dead-letter queue then keeps
    /// them on the AWS path), when the entry got that far.
    pub destination: Option<prism_types::manifest::Destination>,
}

/// All receivers of one registry snapshot.
#[derive(Default)]
pub struct ReceiverSet {
    /// Enabled receivers whose plugin loaded.
    pub active: Vec<Arc<ActiveReceiver>>,
    /// Disabled receivers (ids).
    pub disabled: Vec<String>,
    /// Receivers that could not be loaded, with the reason.
    pub unavailable: Vec<Unavailable>,
    /// How the loads went: (receiver, source, time).
    pub loads: Vec<(String, LoadSource, Duration)>,
}

impl ReceiverSet {
    /// Load every enabled entry's plugin. A plugin that fails to load makes
    /// only its receiver unavailable (logged loudly); the others run.
    pub fn load(engine: &PluginEngine, snapshot: Snapshot) -> Self {
        let mut set = Self::default();
        for problem in snapshot.problems {
            tracing::error!(error = %problem, "registry entry unusable; receiver disabled");
            set.unavailable.push(Unavailable {
                receiver: None,
                digest: None,
                reason: problem.to_string(),
                destination: None,
            });
        }
        for entry in snapshot.entries {
            let m = entry.manifest;
            if !m.enabled {
                set.disabled.push(m.receiver);
                continue;
            }
            if let Err(reason) = engine.check_memory(&m.limits) {
                tracing::error!(receiver = %m.receiver, error = %reason, "receiver refused: its limits do not fit the process's memory");
                set.unavailable.push(Unavailable {
                    destination: m.destination.clone(),
                    receiver: Some(m.receiver),
                    digest: Some(m.plugin.digest),
                    reason: format!("{}: {reason}", entry.origin),
                });
                continue;
            }
            let started = Instant::now();
            match engine.load(&entry.wasm) {
                Ok(plugin) => {
                    set.loads
                        .push((m.receiver.clone(), plugin.source(), started.elapsed()));
                    let config = Arc::new(m.config.clone());
                    set.active.push(Arc::new(ActiveReceiver {
                        manifest: m,
                        plugin,
                        config,
                        breaker: crate::breaker::Breaker::default(),
                    }));
                }
                Err(e) => {
                    let reason = load_reason(&e, &entry.origin);
                    tracing::error!(receiver = %m.receiver, digest = %m.plugin.digest, error = %reason, "plugin failed to load; receiver disabled");
                    set.unavailable.push(Unavailable {
                        destination: m.destination.clone(),
                        receiver: Some(m.receiver),
                        digest: Some(m.plugin.digest),
                        reason,
                    });
                }
            }
        }
        set
    }
}

impl ReceiverSet {
    /// The part of the set that is `receiver` (the same loaded plugin,
    /// breaker and all): nothing else runs, is parked or is reported.
    pub fn only(&self, receiver: &str) -> Self {
        Self {
            active: self
                .active
                .iter()
                .filter(|a| a.id() == receiver)
                .cloned()
                .collect(),
            disabled: self
                .disabled
                .iter()
                .filter(|d| *d == receiver)
                .cloned()
                .collect(),
            unavailable: self
                .unavailable
                .iter()
                .filter(|u| u.receiver.as_deref() == Some(receiver))
                .cloned()
                .collect(),
            loads: self
                .loads
                .iter()
                .filter(|(r, ..)| r == receiver)
                .cloned()
                .collect(),
        }
    }
}

fn load_reason(e: &LoadError, origin: &str) -> String {
    format!("{origin}: plugin {e}")
}

/// Where a dispatcher's receivers come from.
pub enum Receivers {
    /// A fixed set (tests, local registries).
    Fixed(Arc<ReceiverSet>),
    /// A source re-read while running (the DynamoDB registry, hot reloaded:
    /// `prism_aws::reload::LiveReceivers`).
    Live(Box<dyn ReceiverSource>),
}

impl Receivers {
    /// The current set. An error only when the source has never been read:
    /// after that, a failed refresh keeps the last good set.
    pub async fn current(&self, engine: &PluginEngine) -> Result<Arc<ReceiverSet>, SourceError> {
        match self {
            Receivers::Fixed(s) => Ok(s.clone()),
            Receivers::Live(live) => live.current(engine).await,
        }
    }

    /// Show each receiver's latest error where operators look
    /// (`prism status`); a fixed set has nowhere to show it.
    pub async fn record_errors(&self, errors: &[(String, String)]) {
        if let Receivers::Live(live) = self {
            live.record_errors(errors).await;
        }
    }
}

/// A registry the receivers are re-read from while the dispatcher runs.
#[async_trait::async_trait]
pub trait ReceiverSource: Send + Sync {
    /// The current set (re-read when stale). An error only when the source
    /// has never been read.
    async fn current(&self, engine: &PluginEngine) -> Result<Arc<ReceiverSet>, SourceError>;

    /// Record each `(receiver, error)` as the receiver's latest error.
    async fn record_errors(&self, errors: &[(String, String)]);
}

/// A receiver source that could not be read.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SourceError(pub Box<dyn std::error::Error + Send + Sync>);
