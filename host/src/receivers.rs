//! The set of receivers a dispatcher serves: each enabled registry entry
//! with its plugin loaded. Registry-agnostic: local and DynamoDB registries
//! both hand in a [`Snapshot`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::engine::{LoadError, LoadSource, Plugin, PluginEngine};
use crate::manifest::ReceiverManifest;
use crate::registry::Snapshot;

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
    pub fn interested(&self, c: &crate::change::Change) -> bool {
        self.manifest.interest.is_empty()
            || prism_sdk::pointer::any_interest(&c.changed_paths, &self.manifest.interest)
    }
}

/// A receiver that is registered but cannot run.
#[derive(Debug)]
pub struct Unavailable {
    /// The receiver id, when the entry got that far.
    pub receiver: Option<String>,
    /// The plugin digest, when known.
    pub digest: Option<Digest>,
    /// Why.
    pub reason: String,
    /// Where its changes would have gone (its dead-letter queue then keeps
    /// them on the AWS path), when the entry got that far.
    pub destination: Option<crate::manifest::Destination>,
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

fn load_reason(e: &LoadError, origin: &str) -> String {
    format!("{origin}: plugin {e}")
}
