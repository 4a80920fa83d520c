//! A loaded plugin and one sandboxed session with it.
//!
//! A [`Session`] is one fresh instance in its own store, with its own memory
//! cap, deadline, config and captured output. The dispatcher opens one per
//! change (or per batch), so no state leaks from one change to the next.

use std::collections::BTreeMap;
use std::sync::Arc;

use prism_contract::{FormatError, Message};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::bindings::{Receiver, ReceiverPre, WitChange, WitFormatError, v0_2};
use super::loaded::Loaded;
use super::output_check::{self, OutputError, OutputLimits};
use super::sandbox::{GuestLog, HostState};
use super::{EPOCH_TICK, LoadSource};
use prism_types::digest::Digest;
use prism_types::failure::FailureKind;
use prism_types::limits::Limits;

/// Bytes of stdout/stderr kept per session.
pub(super) const STDIO_CAP: usize = 8 * 1024;

pub use prism_contract::Contract;

/// A plugin's pre-linked instance, per contract version.
pub(super) enum Pre {
    V0_1(ReceiverPre<HostState>),
    V0_2(v0_2::ReceiverPre<HostState>),
}

impl Pre {
    fn engine(&self) -> &Engine {
        match self {
            Self::V0_1(p) => p.engine(),
            Self::V0_2(p) => p.engine(),
        }
    }
}

enum Instance {
    V0_1(Receiver),
    V0_2(v0_2::Receiver),
}

/// A compiled, checked plugin, ready to instantiate.
pub struct Plugin {
    loaded: Loaded<Pre>,
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
    /// What kind of failure this is, for metrics and dead letters.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Timeout { .. } => FailureKind::Timeout,
            Self::MemoryLimit { .. } => FailureKind::MemoryLimit,
            Self::StackOverflow => FailureKind::StackOverflow,
            Self::Trap { .. } => FailureKind::Trap,
            Self::Output(_) => FailureKind::Output,
            Self::Instantiate(_) => FailureKind::Instantiate,
        }
    }
}

impl Plugin {
    pub(super) fn new(loaded: Loaded<Pre>) -> Self {
        Self { loaded }
    }

    /// The component's digest.
    pub fn digest(&self) -> &Digest {
        &self.loaded.digest
    }

    /// The contract version it was built for.
    pub fn contract(&self) -> Contract {
        match self.loaded.pre {
            Pre::V0_1(_) => Contract::V0_1,
            Pre::V0_2(_) => Contract::V0_2,
        }
    }

    /// What it imports (interface names, e.g. `prism:receiver/log@0.2.0`).
    pub fn imports(&self) -> Vec<String> {
        let (component, engine) = match &self.loaded.pre {
            Pre::V0_1(p) => (p.instance_pre().component(), p.engine()),
            Pre::V0_2(p) => (p.instance_pre().component(), p.engine()),
        };
        component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// Was it compiled now or loaded precompiled?
    pub fn source(&self) -> LoadSource {
        self.loaded.source
    }

    /// Open a fresh sandboxed instance with this receiver's config and limits.
    pub fn session(
        &self,
        config: Arc<BTreeMap<String, String>>,
        limits: Limits,
    ) -> Result<Session, CallError> {
        let mut store = new_store(self.loaded.pre.engine(), config, limits);
        let instance = match &self.loaded.pre {
            Pre::V0_1(p) => p.instantiate(&mut store).map(Instance::V0_1),
            Pre::V0_2(p) => p.instantiate(&mut store).map(Instance::V0_2),
        }
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
    instance: Instance,
    limits: Limits,
}

impl Session {
    /// Call `accepts`.
    pub fn accepts(&mut self, change: &WitChange) -> Result<bool, CallError> {
        let r = match &self.instance {
            Instance::V0_1(i) => i.call_accepts(&mut self.store, change),
            Instance::V0_2(i) => {
                let c = self.store.data_mut().call().one(change);
                i.call_accepts(&mut self.store, &c)
            }
        };
        r.map_err(|e| classify(e, &self.store, self.limits))
    }

    /// Call `format`, then check its output against the limits. The time
    /// budget is the session's: instantiation, `accepts` and `format` share it.
    pub fn format(
        &mut self,
        change: &WitChange,
    ) -> Result<Result<Vec<Message>, FormatError>, CallError> {
        match &self.instance {
            Instance::V0_1(i) => {
                let r = i.call_format(&mut self.store, change);
                let r = r.map_err(|e| classify(e, &self.store, self.limits))?;
                self.finish(r, 1)
            }
            Instance::V0_2(i) => {
                let c = self.store.data_mut().call().one(change);
                let out = self.output_limits(1);
                self.store.data_mut().call().open(out);
                let r = i.call_format(&mut self.store, &c);
                self.finish_emitted(r, self.limits)
            }
        }
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
            .min(prism_types::limits::MAX_TIMEOUT_MS);
        set_deadline(&mut self.store, budget);
        self.store.set_hostcall_fuel(host_copy_cap(&self.limits, n));
        let limits = Limits {
            timeout_ms: budget,
            ..self.limits
        };
        match &self.instance {
            Instance::V0_1(i) => {
                let r = i.call_format_batch(&mut self.store, changes);
                let r = r.map_err(|e| classify(e, &self.store, limits))?;
                self.finish(r, n)
            }
            Instance::V0_2(i) => {
                let cs = self.store.data_mut().call().many(changes);
                let out = self.output_limits(n);
                self.store.data_mut().call().open(out);
                let r = i.call_format_batch(&mut self.store, &cs);
                self.finish_emitted(r, limits)
            }
        }
    }

    fn output_limits(&self, changes: usize) -> OutputLimits {
        OutputLimits {
            max_bytes: self.limits.max_output_bytes.saturating_mul(changes),
            max_messages: self.limits.max_messages.saturating_mul(changes),
        }
    }

    fn finish(
        &mut self,
        r: Result<Vec<super::bindings::WitMessage>, WitFormatError>,
        changes: usize,
    ) -> Result<Result<Vec<Message>, FormatError>, CallError> {
        match r {
            Ok(msgs) => Ok(Ok(output_check::check(msgs, self.output_limits(changes))?)),
            Err(WitFormatError::Reject(r)) => Ok(Err(FormatError::Reject(cap_reason(&r)))),
            Err(WitFormatError::Retry(r)) => Ok(Err(FormatError::Retry(cap_reason(&r)))),
        }
    }

    /// A 0.2 call's outcome: the messages it emitted, unless it failed.
    fn finish_emitted(
        &mut self,
        r: wasmtime::Result<Result<(), v0_2::WitFormatError>>,
        limits: Limits,
    ) -> Result<Result<Vec<Message>, FormatError>, CallError> {
        let (msgs, refused) = self.store.data_mut().call().close();
        if let Some(e) = refused {
            return Err(CallError::Output(e));
        }
        match r.map_err(|e| classify(e, &self.store, limits))? {
            Ok(()) => Ok(Ok(msgs)),
            Err(v0_2::WitFormatError::Reject(r)) => Ok(Err(FormatError::Reject(cap_reason(&r)))),
            Err(v0_2::WitFormatError::Retry(r)) => Ok(Err(FormatError::Retry(cap_reason(&r)))),
        }
    }

    /// Give the session a fresh time budget for its next change (when a
    /// sandbox is reused for several changes).
    pub fn renew(&mut self) {
        set_deadline(&mut self.store, self.limits.timeout_ms);
        self.store.set_hostcall_fuel(host_copy_cap(&self.limits, 1));
    }

    /// The images this session copied into its plugin so far (0.2; a 0.1
    /// plugin is sent both images in every call and counts none here).
    pub fn image_reads(&mut self) -> super::ImageReads {
        self.store.data_mut().call().reads
    }

    /// What the plugin logged so far (drained).
    pub fn take_logs(&mut self) -> Vec<GuestLog> {
        self.store.data_mut().take_logs()
    }
}

/// How often (in epoch ticks) a running call re-checks its budget, which
/// also counts the virtual time it waited: the precision of a timeout.
const BUDGET_CHECK_TICKS: u64 = 10;

/// Fuel the host-copy cap leaves for one message's metadata beyond its body:
/// the lifted record, a content type, a group and four attributes at their
/// largest well-formed sizes (see `output::well_formed`).
const MESSAGE_OVERHEAD: usize = size_of::<super::bindings::WitMessage>()
    + 255
    + 128
    + 4 * (2 * size_of::<String>() + 64 + 1024);

/// Room for a reject or retry reason and other small values in a result.
const RESULT_SLACK: usize = 64 * 1024;

/// The most bytes the host copies out of a sandbox in one host call or one
/// result (wasmtime's hostcall fuel): what `changes` changes may return at
/// most under `limits`, with room for their messages' metadata. A result or
/// an import argument over it is refused while it is lifted, before it is
/// copied.
pub fn host_copy_cap(limits: &Limits, changes: usize) -> usize {
    let messages = limits.max_messages.saturating_mul(changes);
    limits
        .max_output_bytes
        .saturating_mul(changes)
        .saturating_add(messages.saturating_mul(MESSAGE_OVERHEAD))
        .saturating_add(RESULT_SLACK)
}

/// A store for one sandbox: its memory cap, its host-copy cap, and a time
/// budget enforced by the epoch and charged with the virtual time the
/// plugin waits (see `vtime`).
pub(super) fn new_store(
    engine: &Engine,
    config: Arc<BTreeMap<String, String>>,
    limits: Limits,
) -> Store<HostState> {
    let mut store = Store::new(
        engine,
        HostState::new(config, limits.memory_bytes(), STDIO_CAP),
    );
    store.limiter(|s| s.limiter());
    store.epoch_deadline_callback(|mut ctx| {
        Ok(match ctx.data_mut().time().remaining() {
            None => UpdateDeadline::Interrupt,
            Some(left) => UpdateDeadline::Continue(ticks(left).min(BUDGET_CHECK_TICKS)),
        })
    });
    store.set_hostcall_fuel(host_copy_cap(&limits, 1));
    set_deadline(&mut store, limits.timeout_ms);
    store
}

fn ticks(d: std::time::Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    // +1: the current tick may be nearly over.
    (d.as_nanos().div_ceil(tick) as u64).saturating_add(1)
}

/// Start a call's budget of `budget_ms` now.
pub(super) fn set_deadline(store: &mut Store<HostState>, budget_ms: u64) {
    let budget = std::time::Duration::from_millis(budget_ms);
    store.data_mut().time().start(budget);
    store.set_epoch_deadline(ticks(budget).min(BUDGET_CHECK_TICKS));
}

/// A plugin's reject or retry reason, cut to what the host keeps.
pub(super) fn cap_reason(r: &str) -> String {
    prism_types::text::cap(r, prism_types::text::MAX_REASON_BYTES)
}

/// How wasmtime words a lift over the hostcall fuel (its error type is
/// private); `tests::fuel_exhaustion_is_recognised` fails if it changes.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

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
            if message.contains(HOSTCALL_FUEL_EXHAUSTED) {
                CallError::Output(OutputError::HostCopy {
                    limit: store.hostcall_fuel(),
                })
            } else if message.contains("concurrent") || message.contains("instance limit") {
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
