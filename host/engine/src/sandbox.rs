//! The per-call sandbox: a deny-all WASI context plus the two host imports
//! (`log`, `config`) a receiver may use, and the memory limiter.
//!
//! What a plugin can reach:
//! - no files (no preopened directories), no sockets, no environment, no args;
//! - stdin is empty; stdout and stderr are captured (up to a cap) and logged;
//! - clocks are virtual: they start at the Unix epoch and move only when the
//!   plugin sleeps or polls, which never waits (see `vtime.rs`);
//!   randomness is a fixed seeded stream, so output depends on the input
//!   change alone;
//! - `prism:receiver/log` and its own `prism:receiver/config`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{config, log};
use super::vtime::{VirtualClock, VirtualTime};

/// Severity of a plugin log record.
pub use super::bindings::log::Level;

/// Emit a plugin's log record through `tracing` at the record's own level
/// (target `plugin`): `plugin_log!(level, field, field, …; "{message}")`.
/// `tracing` takes levels as constants, hence one arm per level.
#[macro_export]
#[doc(hidden)]
macro_rules! plugin_log {
    ($level:expr, $($field:ident),* ; $($msg:tt)+) => {
        match $level {
            $crate::Level::Trace => ::tracing::trace!(target: "plugin", $($field,)* $($msg)+),
            $crate::Level::Debug => ::tracing::debug!(target: "plugin", $($field,)* $($msg)+),
            $crate::Level::Info => ::tracing::info!(target: "plugin", $($field,)* $($msg)+),
            $crate::Level::Warn => ::tracing::warn!(target: "plugin", $($field,)* $($msg)+),
            $crate::Level::Error => ::tracing::error!(target: "plugin", $($field,)* $($msg)+),
        }
    };
}

/// Store data for one plugin call.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    config: Arc<BTreeMap<String, String>>,
    logs: Vec<GuestLog>,
    stdio: CapturedOutput,
    /// What a mapper may read (`None` for receivers, whose linker has no
    /// `shadow` or `model` import anyway).
    reads: Option<super::reads::ReadAccess>,
    /// The sandbox's virtual clock and the current call's time budget.
    time: VirtualTime,
    /// A 0.2 receiver's current call: its changes' images and its outbox.
    call: super::call_state::Call,
}

/// One record a plugin logged, through `log` or on stdout/stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLog {
    /// Severity (stdout is `info`, stderr is `warn`).
    pub level: log::Level,
    /// The message.
    pub message: String,
    /// Key/value fields the plugin attached.
    pub fields: Vec<(String, String)>,
}

/// Caps on what one call may log: records, bytes in all (messages, field
/// names and values), fields per record, and the size of each field.
pub const MAX_LOG_RECORDS: usize = 100;
/// See [`MAX_LOG_RECORDS`].
pub const MAX_LOG_BYTES: usize = 16 * 1024;
/// See [`MAX_LOG_RECORDS`].
pub const MAX_LOG_FIELDS: usize = 16;
const MAX_LOG_FIELD_KEY: usize = 64;
const MAX_LOG_FIELD_VALUE: usize = 512;

impl GuestLog {
    /// Bytes the host keeps for this record.
    fn bytes(&self) -> usize {
        self.message.len()
            + self
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

impl HostState {
    /// A fresh sandbox for one call.
    pub fn new(
        config: Arc<BTreeMap<String, String>>,
        memory_bytes: usize,
        stdio_cap: usize,
    ) -> Self {
        let stdio = CapturedOutput::new(stdio_cap);
        let clock = VirtualClock::default();
        let mut b = WasiCtx::builder();
        b.stdout(stdio.clone())
            .stderr(stdio.clone())
            .wall_clock(clock.clone())
            .monotonic_clock(clock.clone())
            .secure_random(wasmtime_wasi::Deterministic::new(SEED.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(SEED.to_vec()))
            .insecure_random_seed(0x7072_6973_6d00_0000_0000_0000_0000_0001)
            // wasmtime's default lets one call allocate 64 MiB on the host,
            // outside the sandbox's memory cap.
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        Self {
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            config,
            logs: Vec::new(),
            stdio,
            reads: None,
            time: VirtualTime::new(clock),
            call: super::call_state::Call::default(),
        }
    }

    /// A 0.2 receiver's current call.
    pub(super) fn call(&mut self) -> &mut super::call_state::Call {
        &mut self.call
    }

    /// The virtual clock and the current call's budget.
    pub(super) fn time(&mut self) -> &mut VirtualTime {
        &mut self.time
    }

    /// The virtual time and the resource table, borrowed together.
    pub(super) fn time_and_table(&mut self) -> (&mut VirtualTime, &mut ResourceTable) {
        (&mut self.time, &mut self.table)
    }

    /// Grant a mapper's reads for this call.
    pub(super) fn grant_reads(&mut self, reads: super::reads::ReadAccess) {
        self.reads = Some(reads);
    }

    /// The mapper's reads, if granted.
    pub(super) fn reads(&mut self) -> Option<&mut super::reads::ReadAccess> {
        self.reads.as_mut()
    }

    /// The memory limiter (installed with `Store::limiter`).
    pub fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    /// If the plugin tried to grow past its memory cap: the size it asked for.
    pub fn memory_limit_hit(&self) -> Option<usize> {
        self.limiter.hit
    }

    /// Everything the plugin logged, stdout/stderr last.
    pub fn take_logs(&mut self) -> Vec<GuestLog> {
        let mut logs = std::mem::take(&mut self.logs);
        let text = self.stdio.take();
        if !text.is_empty() {
            logs.push(GuestLog {
                level: log::Level::Warn,
                message: text,
                fields: vec![("stream".into(), "stdio".into())],
            });
        }
        logs
    }

    /// The tail of what the plugin wrote to stdout/stderr (its panic message,
    /// usually): up to three non-empty lines, without Rust's backtrace hint.
    pub fn last_output_line(&self) -> Option<String> {
        let text = self.stdio.peek();
        let mut lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let tail = lines.split_off(lines.len().saturating_sub(3));
        (!tail.is_empty())
            .then(|| prism_types::text::cap(&tail.join(" | "), prism_types::text::MAX_REASON_BYTES))
    }
}

const SEED: [u8; 16] = *b"prism-fixed-seed";
/// The most bytes one `wasi:random` call may ask for: more traps, before
/// the host allocates any of it.
pub const MAX_RANDOM_BYTES: u64 = 64 * 1024;

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let used: usize = self.logs.iter().map(GuestLog::bytes).sum();
        if self.logs.len() >= MAX_LOG_RECORDS || used >= MAX_LOG_BYTES {
            return;
        }
        let mut room = MAX_LOG_BYTES - used;
        let mut message = message;
        prism_types::text::truncate(&mut message, room);
        room -= message.len();
        let mut kept = Vec::new();
        for (mut k, mut v) in fields.into_iter().take(MAX_LOG_FIELDS) {
            prism_types::text::truncate(&mut k, MAX_LOG_FIELD_KEY.min(room));
            room -= k.len();
            prism_types::text::truncate(&mut v, MAX_LOG_FIELD_VALUE.min(room));
            room -= v.len();
            if k.is_empty() {
                break;
            }
            kept.push((k, v));
        }
        self.logs.push(GuestLog {
            level,
            message,
            fields: kept,
        });
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl super::bindings::prism::receiver::types::Host for HostState {}

/// Caps linear memory (and tables) and remembers an attempt to exceed the cap,
/// so a trap that follows can be reported as "memory limit" rather than as
/// whatever the guest's allocator did next.
///
/// The caps are over **all** of a sandbox's memories and tables together:
/// a component may hold up to 8 memories and 32 tables, and a cap per
/// memory would let it have 8 times its `memory_mib`.
pub struct MemoryLimiter {
    max: usize,
    hit: Option<usize>,
    /// Bytes of all the sandbox's linear memories.
    memories: usize,
    /// Elements of all its tables.
    table_elements: usize,
}

/// The most table elements one sandbox's tables may hold together.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    fn new(max: usize) -> Self {
        Self {
            max,
            hit: None,
            memories: 0,
            table_elements: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memories - current.min(self.memories)).saturating_add(desired);
        if total > self.max {
            self.hit = Some(total);
            return Ok(false);
        }
        self.memories = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total =
            (self.table_elements - current.min(self.table_elements)).saturating_add(desired);
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }
}

/// stdout/stderr of one call: kept up to a cap, the rest dropped (never an
/// error, so a chatty plugin is not made to fail by its own logging).
#[derive(Clone)]
struct CapturedOutput {
    inner: Arc<Mutex<Captured>>,
}

struct Captured {
    buf: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl CapturedOutput {
    fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                buf: Vec::new(),
                cap,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peek(&self) -> String {
        String::from_utf8_lossy(&self.lock().buf).into_owned()
    }

    fn take(&self) -> String {
        let mut c = self.lock();
        let mut text = String::from_utf8_lossy(&std::mem::take(&mut c.buf)).into_owned();
        if c.dropped > 0 {
            text.push_str(&format!("\n[{} more bytes of output dropped]", c.dropped));
            c.dropped = 0;
        }
        text
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        let mut c = self.lock();
        let room = c.cap.saturating_sub(c.buf.len());
        let keep = room.min(bytes.len());
        c.buf.extend_from_slice(&bytes[..keep]);
        c.dropped += bytes.len() - keep;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::cli::IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// Eight memories of a component share one cap: each used to be
    /// checked on its own, so eight could hold eight times the cap.
    #[test]
    fn all_memories_of_a_sandbox_share_one_cap() {
        let mut l = MemoryLimiter::new(16 * MIB);
        for _ in 0..7 {
            // A new memory: from 0 to 2 MiB.
            assert!(l.memory_growing(0, 2 * MIB, None).unwrap());
        }
        assert!(!l.memory_growing(0, 4 * MIB, None).unwrap(), "14 + 4 > 16");
        assert_eq!(l.hit, Some(18 * MIB));
        // Growing one of them counts only the growth.
        assert!(l.memory_growing(2 * MIB, 4 * MIB, None).unwrap());
        assert!(!l.memory_growing(4 * MIB, 5 * MIB, None).unwrap());
    }

    #[test]
    fn all_tables_of_a_sandbox_share_one_cap() {
        let mut l = MemoryLimiter::new(MIB);
        for _ in 0..4 {
            assert!(l.table_growing(0, MAX_TABLE_ELEMENTS / 4, None).unwrap());
        }
        assert!(!l.table_growing(0, 1, None).unwrap());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_keeps_the_cap_and_counts_the_rest() {
        let mut out = CapturedOutput::new(5);
        out.write(bytes::Bytes::from_static(b"hello world"))
            .unwrap();
        assert_eq!(out.take(), "hello\n[6 more bytes of output dropped]");
        assert_eq!(out.take(), "");
    }

    #[test]
    fn log_records_fields_and_their_sizes_are_capped() {
        use log::Host as _;
        let mut st = HostState::new(Arc::default(), 1 << 20, 64);
        let fields: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("k{i}{}", "x".repeat(100)), "v".repeat(10_000)))
            .collect();
        st.log(log::Level::Info, "m".repeat(1000), fields);
        let logs = st.take_logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].message.len(), 1000);
        assert_eq!(logs[0].fields.len(), MAX_LOG_FIELDS);
        assert!(
            logs[0]
                .fields
                .iter()
                .all(|(k, v)| k.len() == 64 && v.len() == 512)
        );
        // Everything one call keeps stays under the byte cap.
        for _ in 0..1000 {
            st.log(
                log::Level::Info,
                "y".repeat(5000),
                vec![("k".into(), "v".repeat(5000))],
            );
        }
        let kept: usize = st.take_logs().iter().map(GuestLog::bytes).sum();
        assert!(kept <= MAX_LOG_BYTES, "{kept}");
    }
}
