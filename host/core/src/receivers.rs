//! The set of receivers a dispatcher serves: each enabled registry entry
//! with its plugin loaded. Registry-agnostic: local and DynamoDB registries
//! both hand in a [`Snapshot`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prism_engine::{LoadSource, Plugin, PluginEngine};
use prism_types::digest::Digest;
use prism_types::manifest::ReceiverManifest;
use prism_types::registry::{Quarantine, Snapshot};

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

    /// The longest one call of this receiver may take: `limits.timeout_ms`,
    /// or for a batched receiver a whole window's format (`timeout_ms` per
    /// change, up to [`prism_types::limits::MAX_TIMEOUT_MS`]). A call starts
    /// only when this much time is left in the invocation.
    pub fn call_budget(&self) -> Duration {
        call_budget(&self.manifest)
    }

    /// Whether the change touches the receiver's declared field interest
    /// (always, for inserts, removes, and receivers that declare none).
    pub fn interested(&self, c: &prism_types::change::Change) -> bool {
        self.manifest.interest.is_empty()
            || prism_contract::pointer::any_interest(&c.changed_paths, &self.manifest.interest)
    }
}

/// See [`ActiveReceiver::call_budget`].
pub fn call_budget(m: &ReceiverManifest) -> Duration {
    let ms = match m.mode {
        prism_types::manifest::Mode::Batch { max_count, .. } => m
            .limits
            .timeout_ms
            .saturating_mul(max_count as u64)
            .min(prism_types::limits::MAX_TIMEOUT_MS),
        prism_types::manifest::Mode::Immediate => m.limits.timeout_ms,
    };
    Duration::from_millis(ms)
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

impl Unavailable {
    /// The receiver of `m`, refused for `reason`.
    fn of(m: ReceiverManifest, reason: String) -> Self {
        Self {
            receiver: Some(m.receiver),
            digest: Some(m.plugin.digest),
            destination: m.destination,
            reason,
        }
    }
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
        Self::load_within(engine, snapshot, None)
    }

    /// [`Self::load`] for a dispatcher whose invocations last at most
    /// `timeout`: a receiver whose call budget cannot fit in one (see
    /// [`crate::deadline::fits_invocation`]) is refused, on its own, with the
    /// reason, instead of being deferred on every invocation.
    pub fn load_within(
        engine: &PluginEngine,
        snapshot: Snapshot,
        timeout: Option<Duration>,
    ) -> Self {
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
        // Two entries claiming one id: neither is loaded. Which one is the
        // owner cannot be told here, and loading either would let the other
        // deliver into its queue and take over its state.
        let mut origins: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for e in &snapshot.entries {
            origins
                .entry(e.manifest.receiver.as_str())
                .or_default()
                .push(e.origin.as_str());
        }
        let duplicated: BTreeMap<String, String> = origins
            .into_iter()
            .filter(|(_, o)| o.len() > 1)
            .map(|(r, o)| (r.to_owned(), o.join(" and ")))
            .collect();
        for entry in snapshot.entries {
            let m = entry.manifest;
            if let Some(both) = duplicated.get(&m.receiver) {
                let reason = format!(
                    "{}: receiver {} is defined more than once ({both}); none of them is loaded",
                    entry.origin, m.receiver
                );
                tracing::error!(receiver = %m.receiver, error = %reason, "duplicate registry entries; receiver refused");
                set.unavailable.push(Unavailable::of(m, reason));
                continue;
            }
            if !m.enabled {
                set.disabled.push(m.receiver);
                continue;
            }
            if let Some(reason) =
                timeout.and_then(|t| crate::deadline::fits_invocation(call_budget(&m), t).err())
            {
                tracing::error!(receiver = %m.receiver, error = %reason, "receiver refused: its limits do not fit the dispatcher's invocation");
                set.unavailable
                    .push(Unavailable::of(m, format!("{}: {reason}", entry.origin)));
                continue;
            }
            if let Err(reason) = engine.check_memory(&m.limits, m.mode.window()) {
                tracing::error!(receiver = %m.receiver, error = %reason, "receiver refused: its limits do not fit the process's memory");
                set.unavailable
                    .push(Unavailable::of(m, format!("{}: {reason}", entry.origin)));
                continue;
            }
            let started = Instant::now();
            match engine.load(&entry.wasm) {
                Ok(plugin) => {
                    set.loads
                        .push((m.receiver.clone(), plugin.source(), started.elapsed()));
                    let config = Arc::new(m.config.clone());
                    let breaker = resumed_breaker(snapshot.quarantines.get(&m.receiver), &m);
                    set.active.push(Arc::new(ActiveReceiver {
                        manifest: m,
                        plugin,
                        config,
                        breaker,
                    }));
                }
                Err(e) => {
                    let reason = load_reason(&e, &entry.origin);
                    tracing::error!(receiver = %m.receiver, digest = %m.plugin.digest, error = %reason, "plugin failed to load; receiver disabled");
                    set.unavailable.push(Unavailable::of(m, reason));
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

/// The breaker a receiver starts with: the quarantine another process
/// recorded for this very component, if any, else a closed one.
fn resumed_breaker(
    recorded: Option<&prism_types::registry::Quarantine>,
    m: &ReceiverManifest,
) -> crate::breaker::Breaker {
    match recorded {
        Some(q) if q.digest == m.plugin.digest => {
            let now = crate::spool::now_ms();
            let remaining = Duration::from_millis(q.until_ms.saturating_sub(now));
            tracing::warn!(receiver = %m.receiver, remaining_ms = remaining.as_millis() as u64, ejections = q.ejections, "receiver starts quarantined: a dispatcher recorded it");
            crate::breaker::Breaker::resumed(remaining, q.ejections)
        }
        _ => crate::breaker::Breaker::default(),
    }
}

fn load_reason(e: &prism_engine::Error, origin: &str) -> String {
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
    pub async fn current(&self, engine: &PluginEngine) -> Result<Arc<ReceiverSet>, crate::Error> {
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

    /// Record the quarantines that opened or closed in `set` since last
    /// asked, where the next process reads them (a fixed set has nowhere).
    pub async fn record_quarantines(&self, set: &ReceiverSet) {
        let now = crate::spool::now_ms();
        let changed: Vec<(String, Option<Quarantine>)> = set
            .active
            .iter()
            .filter_map(|r| {
                let change = r.breaker.take_change()?;
                Some((
                    r.id().to_owned(),
                    change.map(|(remaining, ejections)| Quarantine {
                        until_ms: now + remaining.as_millis() as u64,
                        ejections,
                        digest: *r.digest(),
                    }),
                ))
            })
            .collect();
        if let (Receivers::Live(live), false) = (self, changed.is_empty()) {
            live.record_quarantines(&changed).await;
        }
    }
}

/// A registry the receivers are re-read from while the dispatcher runs.
#[async_trait::async_trait]
pub trait ReceiverSource: Send + Sync {
    /// The current set (re-read when stale). An error only when the source
    /// has never been read.
    async fn current(&self, engine: &PluginEngine) -> Result<Arc<ReceiverSet>, crate::Error>;

    /// Record each `(receiver, error)` as the receiver's latest error.
    async fn record_errors(&self, errors: &[(String, String)]);

    /// Record each receiver's quarantine (`None`: it ended), so processes
    /// that start later begin with it.
    async fn record_quarantines(&self, quarantines: &[(String, Option<Quarantine>)]);
}
