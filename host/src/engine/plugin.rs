//! A loaded plugin and one sandboxed session with it.
//!
//! A [`Session`] is one fresh instance in its own store, with its own memory
//! cap, deadline, config and captured output. The dispatcher opens one per
//! change (or per batch), so no state leaks from one change to the next.

use std::collections::BTreeMap;
use std::sync::Arc;

use prism_sdk::{FormatError, Message};
use wasmtime::{Store, Trap};

use super::bindings::{Receiver, ReceiverPre, WitChange, WitFormatError};
use super::output::{self, OutputError, OutputLimits};
use super::sandbox::{GuestLog, HostState};
use super::{EPOCH_TICK, LoadSource};
use crate::digest::Digest;
use crate::limits::Limits;

/// Bytes of stdout/stderr kept per session.
pub(super) const STDIO_CAP: usize = 8 * 1024;

/// A compiled, checked plugin, ready to instantiate.
pub struct Plugin {
    digest: Digest,
    pre: ReceiverPre<HostState>,
    source: LoadSource,
    _ticker: std::sync::Arc<super::ticker::EpochTicker>,
}

/// Why a call into a plugin failed (as opposed to the plugin answering
/// with a [`FormatError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Ran past its time budget.
    #[error("timed out: exceeded its {budget_ms} ms time budget")]
    Timeout {
        /// The budget.
        budget_ms: u64,
    },
    /// Tried to grow memory past its cap.
    #[error(
        "memory limit: tried to grow linear memory to {requested} bytes, over its cap of {cap} bytes"
    )]
    MemoryLimit {
        /// The cap.
        cap: usize,
        /// What it asked for.
        requested: usize,
    },
    /// Overflowed the Wasm stack (deep recursion).
    #[error("stack overflow (call stack exhausted; deep recursion?)")]
    StackOverflow,
    /// Any other trap: a panic, `unreachable`, an out-of-bounds access.
    #[error("trapped: {message}{}", guest_output.as_deref().map(|o| format!(" (plugin said: {o})")).unwrap_or_default())]
    Trap {
        /// The trap.
        message: String,
        /// The last line the plugin printed, usually its panic message.
        guest_output: Option<String>,
    },
    /// Produced output over a limit, or output that is not well-formed.
    #[error("{0}")]
    Output(#[from] OutputError),
    /// Could not be instantiated (e.g. the instance pool is exhausted).
    #[error("could not instantiate: {0}")]
    Instantiate(String),
}

impl CallError {
    /// A short machine-readable kind, for metrics and dead letters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::StackOverflow => "stack-overflow",
            Self::Trap { .. } => "trap",
            Self::Output(_) => "output",
            Self::Instantiate(_) => "instantiate",
        }
    }
}

impl Plugin {
    pub(super) fn new(
        digest: Digest,
        pre: ReceiverPre<HostState>,
        source: LoadSource,
        ticker: std::sync::Arc<super::ticker::EpochTicker>,
    ) -> Self {
        Self {
            digest,
            pre,
            source,
            _ticker: ticker,
        }
    }

    /// The component's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Was it compiled now or loaded precompiled?
    pub fn source(&self) -> LoadSource {
        self.source
    }

    /// Open a fresh sandboxed instance with this receiver's config and limits.
    pub fn session(
        &self,
        config: Arc<BTreeMap<String, String>>,
        limits: Limits,
    ) -> Result<Session, CallError> {
        let engine = self.pre.engine();
        let mut store = Store::new(
            engine,
            HostState::new(config, limits.memory_bytes(), STDIO_CAP),
        );
        store.limiter(|s| s.limiter());
        set_deadline(&mut store, limits.timeout_ms);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, limits))?;
        Ok(Session {
            store,
            instance,
            limits,
        })
    }
}

/// One fresh instance of a plugin.
pub struct Session {
    store: Store<HostState>,
    instance: Receiver,
    limits: Limits,
}

impl Session {
    /// Call `accepts`.
    pub fn accepts(&mut self, change: &WitChange) -> Result<bool, CallError> {
        let r = self.instance.call_accepts(&mut self.store, change);
        r.map_err(|e| classify(e, &self.store, self.limits))
    }

    /// Call `format`, then check its output against the limits. The time
    /// budget is the session's: instantiation, `accepts` and `format` share it.
    pub fn format(
        &mut self,
        change: &WitChange,
    ) -> Result<Result<Vec<Message>, FormatError>, CallError> {
        let r = self.instance.call_format(&mut self.store, change);
        let r = r.map_err(|e| classify(e, &self.store, self.limits))?;
        self.finish(r, 1)
    }

    /// Call `format-batch` for `changes` (budget and output limits scale with
    /// the number of changes), then check its output.
    pub fn format_batch(
        &mut self,
        changes: &[WitChange],
    ) -> Result<Result<Vec<Message>, FormatError>, CallError> {
        let n = changes.len().max(1);
        let budget = self
            .limits
            .timeout_ms
            .saturating_mul(n as u64)
            .min(crate::limits::MAX_TIMEOUT_MS);
        set_deadline(&mut self.store, budget);
        let r = self.instance.call_format_batch(&mut self.store, changes);
        let limits = Limits {
            timeout_ms: budget,
            ..self.limits
        };
        let r = r.map_err(|e| classify(e, &self.store, limits))?;
        self.finish(r, n)
    }

    fn finish(
        &mut self,
        r: Result<Vec<super::bindings::WitMessage>, WitFormatError>,
        changes: usize,
    ) -> Result<Result<Vec<Message>, FormatError>, CallError> {
        match r {
            Ok(msgs) => {
                let limits = OutputLimits {
                    max_bytes: self.limits.max_output_bytes.saturating_mul(changes),
                    max_messages: self.limits.max_messages.saturating_mul(changes),
                };
                Ok(Ok(output::check(msgs, limits)?))
            }
            Err(WitFormatError::Reject(r)) => Ok(Err(FormatError::Reject(r))),
            Err(WitFormatError::Retry(r)) => Ok(Err(FormatError::Retry(r))),
        }
    }

    /// Give the session a fresh time budget for its next change (when a
    /// sandbox is reused for several changes).
    pub fn renew(&mut self) {
        set_deadline(&mut self.store, self.limits.timeout_ms);
    }

    /// What the plugin logged so far (drained).
    pub fn take_logs(&mut self) -> Vec<GuestLog> {
        self.store.data_mut().take_logs()
    }
}

pub(super) fn set_deadline(store: &mut Store<HostState>, budget_ms: u64) {
    let tick = EPOCH_TICK.as_millis().max(1) as u64;
    // +1: the current tick may be nearly over.
    store.set_epoch_deadline(budget_ms.div_ceil(tick) + 1);
}

pub(super) fn classify(e: wasmtime::Error, store: &Store<HostState>, limits: Limits) -> CallError {
    let state = store.data();
    if let Some(requested) = state.memory_limit_hit() {
        return CallError::MemoryLimit {
            cap: limits.memory_bytes(),
            requested,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout {
            budget_ms: limits.timeout_ms,
        },
        Some(Trap::StackOverflow) => CallError::StackOverflow,
        Some(t) => CallError::Trap {
            message: t.to_string(),
            guest_output: state.last_output_line(),
        },
        None => {
            let message = format!("{e:#}");
            if message.contains("concurrent") || message.contains("instance limit") {
                CallError::Instantiate(message)
            } else {
                CallError::Trap {
                    message,
                    guest_output: state.last_output_line(),
                }
            }
        }
    }
}
