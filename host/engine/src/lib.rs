//! The Wasm engine: one wasmtime [`Engine`] with the component model, the
//! pooling allocator and epoch interruption; a [`Linker`] that grants only
//! deny-all WASI and the contract's own imports; and an on-disk compile cache.
//!
//! Build one [`PluginEngine`] per process and share it: components are
//! compiled (or loaded precompiled) once, then each change runs in a fresh,
//! cheap instance (see [`Plugin::session`]).

pub mod behaviour;
mod bindings;
pub mod budget;
pub mod cache;
mod call_state;
pub mod check;
mod clocks;
pub mod determinism;
#[cfg(any(test, feature = "testkit"))]
pub mod handmade;
mod imports_v0_2;
mod loaded;
pub mod mapper;
mod output_check;
mod plugin;
mod reads;
pub mod sandbox;
#[cfg(test)]
mod sandbox_suite;
pub(crate) mod ticker;
mod vtime;

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use bindings::{WitChange, WitChangeKind};
pub use call_state::ImageReads;
pub use mapper::{MapError, MapperPlugin, MapperReads, ModelWrite, ShadowChange};
pub use output_check::OutputError;
pub use plugin::{CallError, Contract, Plugin, Session, host_copy_cap};
pub use sandbox::{GuestLog, Level};

use cache::CompileCache;
use loaded::Loaded;
use prism_types::digest::Digest;
use prism_types::limits::MAX_MEMORY_MIB;
use sandbox::HostState;

/// How often the epoch advances: the granularity of time budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes of each linear memory kept resident between instances (reset
/// with memset instead of madvise).
pub const KEEP_RESIDENT: usize = 2 << 20;

/// The largest component prism compiles by default: well above what
/// componentize-py (about 18 MB, the Python interpreter included) and
/// componentize-js (about 12 MB, StarlingMonkey included) produce.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 64 << 20;

/// How long one compile may take by default before its receiver is made
/// unavailable (the compile goes on in the background and lands in the
/// compile cache, so a later reload finds it).
pub const DEFAULT_MAX_COMPILE: Duration = Duration::from_secs(120);

/// Options for building the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where precompiled components are kept; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Max instances alive at once (one per worker thread is enough).
    pub max_instances: u32,
    /// Components larger than this are refused before any compile.
    pub max_component_bytes: usize,
    /// A compile that takes longer is abandoned (see [`DEFAULT_MAX_COMPILE`]).
    pub max_compile: Duration,
    /// The process's memory: receivers whose limits cannot fit it are
    /// refused at load ([`budget`]). `None`: not checked.
    pub memory_mib: Option<u64>,
    /// Worker threads that run sandboxes at once (for the memory check).
    pub threads: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 64,
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            max_compile: DEFAULT_MAX_COMPILE,
            memory_mib: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Why a plugin could not be loaded: prism-engine's one error (a plugin
/// call's outcome is a [`CallError`], which the dispatcher turns into a
/// dead letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not a Wasm component.
    NotAComponent,
    /// Cranelift refused it (invalid Wasm, unsupported feature).
    Compile,
    /// It does not fit its world or imports what is not granted; the
    /// message names the world.
    Shape,
    /// Larger than the engine compiles.
    TooLarge,
    /// The compile took longer than the engine allows.
    CompileTimeout,
}

impl ErrorKind {
    /// What an error of this kind says first.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::NotAComponent => "not a Wasm component: ",
            Self::Compile => "does not compile: ",
            Self::Shape | Self::TooLarge | Self::CompileTimeout => "",
        }
    }
}

prism_types::crate_error!(ErrorKind);

/// Where a loaded plugin's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled now from the `.wasm`.
    Compiled,
    /// Loaded from the compile cache.
    Cached,
}

/// The shared Wasm engine.
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    mapper_linker: Arc<Linker<HostState>>,
    cache: Option<CompileCache>,
    compat_hash: String,
    /// Shared with every loaded plugin: a plugin that outlives the engine
    /// value still has its time budget enforced.
    ticker: Arc<ticker::EpochTicker>,
    max_component_bytes: usize,
    max_compile: Duration,
    budget: Option<budget::MemoryBudget>,
}

impl PluginEngine {
    /// Build the engine and start its epoch ticker.
    pub fn new(opts: &EngineOptions) -> Result<Self, wasmtime::Error> {
        let engine = Engine::new(&config(opts.max_instances))?;
        let mut linker = Linker::new(&engine);
        add_wasi(&mut linker)?;
        bindings::Receiver::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )?;
        bindings::v0_2::Receiver::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )?;
        let mut mapper_linker = Linker::new(&engine);
        add_wasi(&mut mapper_linker)?;
        bindings::mapper::Mapper::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut mapper_linker,
            |s| s,
        )?;
        let compat_hash = compat_hash(&engine);
        let cache = opts
            .cache_dir
            .as_deref()
            .map(|d| CompileCache::new(d, &compat_hash));
        let ticker = ticker::EpochTicker::start(engine.clone(), EPOCH_TICK);
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            mapper_linker: Arc::new(mapper_linker),
            cache,
            compat_hash,
            ticker: Arc::new(ticker),
            max_component_bytes: opts.max_component_bytes,
            max_compile: opts.max_compile,
            budget: opts.memory_mib.map(|total_mib| budget::MemoryBudget {
                total_mib,
                threads: opts.threads.max(1),
                max_instances: opts.max_instances,
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A short hex hash of everything that makes a precompiled artifact
    /// loadable here (wasmtime version, features, tunables). Caches key on it.
    pub fn compatibility_hash(&self) -> &str {
        &self.compat_hash
    }

    /// Whether a receiver with `limits`, formatting up to `window` changes
    /// in one call, fits the process's memory (always, when the engine was
    /// given no memory size).
    pub fn check_memory(
        &self,
        limits: &prism_types::limits::Limits,
        window: usize,
    ) -> Result<(), String> {
        self.budget.map_or(Ok(()), |b| b.check(limits, window))
    }

    /// Where the compile cache keeps (or would keep) the artifact for `digest`.
    pub fn cache_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.cache.as_ref().map(|c| c.path(digest))
    }

    /// Compile (or load from cache) and check a component.
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, Error> {
        let digest = Digest::of(wasm);
        let (component, source) = self.compile(wasm, &digest)?;
        let world = check::receiver_world(&self.engine, &component);
        let pre = self.checked(&self.linker, &component, world)?;
        let pre = match world.contract {
            Some(Contract::V0_2) => bindings::v0_2::ReceiverPre::new(pre).map(plugin::Pre::V0_2),
            _ => bindings::ReceiverPre::new(pre).map(plugin::Pre::V0_1),
        }
        .map_err(|e| shape_error(world, e))?;
        Ok(Plugin::new(Loaded::new(
            digest,
            pre,
            source,
            self.ticker.clone(),
        )))
    }

    /// Compile (or load from cache) and check a mapper component.
    pub fn load_mapper(&self, wasm: &[u8]) -> Result<MapperPlugin, Error> {
        let digest = Digest::of(wasm);
        let (component, source) = self.compile(wasm, &digest)?;
        let pre = self.checked(&self.mapper_linker, &component, &check::MAPPER)?;
        let pre =
            bindings::mapper::MapperPre::new(pre).map_err(|e| shape_error(&check::MAPPER, e))?;
        Ok(MapperPlugin::new(Loaded::new(
            digest,
            pre,
            source,
            self.ticker.clone(),
        )))
    }

    /// Check a component's shape against `world`, then pre-link it.
    fn checked(
        &self,
        linker: &Linker<HostState>,
        component: &Component,
        world: &check::World,
    ) -> Result<wasmtime::component::InstancePre<HostState>, Error> {
        let (problems, exports) = check::shape(&self.engine, component, world);
        if !problems.is_empty() {
            return Err(Error::new(
                ErrorKind::Shape,
                "",
                format!(
                    "does not fit the {} world:\n{}",
                    world.name,
                    problems.explain(world, &exports)
                ),
            ));
        }
        linker
            .instantiate_pre(component)
            .map_err(|e| shape_error(world, e))
    }

    /// Compile on a thread of its own, waiting at most `max_compile`.
    /// Cranelift cannot be interrupted: a compile that runs over is left to
    /// finish in the background, where it still fills the compile cache.
    fn compile_bounded(&self, wasm: &[u8]) -> Result<Component, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (engine, bytes, cache) = (self.engine.clone(), wasm.to_vec(), self.cache.clone());
        std::thread::Builder::new()
            .name("prism-compile".into())
            .spawn(move || {
                let r = Component::new(&engine, &bytes).map_err(|e| format!("{e:#}"));
                let compiled = r.as_ref().ok().cloned();
                if tx.send(r).is_err()
                    && let (Some(c), Some(cache)) = (compiled, &cache)
                {
                    // Nobody waits any more: keep the work for the next load.
                    store_in_cache(cache, &Digest::of(&bytes), &c);
                }
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Compile,
                    "",
                    format!("starting a compile thread: {e}"),
                )
            })?;
        match rx.recv_timeout(self.max_compile) {
            Ok(r) => r.map_err(|e| Error::new(ErrorKind::Compile, "", e)),
            Err(_) => Err(Error::new(
                ErrorKind::CompileTimeout,
                "",
                format!(
                    "compiling took longer than {} s; abandoned (it finishes in the background and a later load finds it in the compile cache)",
                    self.max_compile.as_secs()
                ),
            )),
        }
    }

    /// Compile without checking the world: `(component, compile time, source)`.
    fn compile(&self, wasm: &[u8], digest: &Digest) -> Result<(Component, LoadSource), Error> {
        if wasm.len() > self.max_component_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                "",
                format!(
                    "the component is {} bytes, over the {}-byte limit on components",
                    wasm.len(),
                    self.max_component_bytes
                ),
            ));
        }
        if !is_component(wasm) {
            return Err(Error::new(
                ErrorKind::NotAComponent,
                "",
                if wasm.starts_with(b"\0asm") {
                    "this is a core Wasm module; build with `--target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
                } else {
                    "the file does not start with the Wasm magic bytes"
                },
            ));
        }
        if let Some(cache) = &self.cache {
            let path = cache.path(digest);
            if path.exists() {
                match load_precompiled(&self.engine, &path) {
                    Ok(c) => return Ok((c, LoadSource::Cached)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "discarding unusable precompiled artifact");
                        cache.evict(digest);
                    }
                }
            }
        }
        let started = Instant::now();
        let component = self.compile_bounded(wasm)?;
        tracing::debug!(digest = %digest, ms = started.elapsed().as_millis() as u64, "compiled component");
        if let Some(cache) = &self.cache {
            store_in_cache(cache, digest, &component);
        }
        Ok((component, LoadSource::Compiled))
    }

    /// Precompile a component to the bytes of a `.cwasm` for this engine.
    /// When the compile cache already holds it (a [`Self::load`] just wrote
    /// it), those bytes are returned instead of compiling a second time.
    pub fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, Error> {
        if let Some(path) = self.cache_path(&Digest::of(wasm))
            && let Ok(bytes) = std::fs::read(path)
        {
            return Ok(bytes);
        }
        self.engine
            .precompile_component(wasm)
            .map_err(|e| Error::new(ErrorKind::Compile, "", format!("{e:#}")))
    }
}

/// Deny-all WASI, with prism's virtual time in place of wasmtime-wasi's
/// monotonic clock and poll (which wait in host code; see [`vtime`]).
fn add_wasi(linker: &mut Linker<HostState>) -> Result<(), wasmtime::Error> {
    use wasmtime::component::HasSelf;
    use wasmtime_wasi::p2::bindings::{clocks::monotonic_clock, sync::io::poll};
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    poll::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Write a compiled component to the cache (a failure costs a compile later).
fn store_in_cache(cache: &CompileCache, digest: &Digest, component: &Component) {
    match component.serialize() {
        Ok(bytes) => {
            if let Err(e) = cache.store(digest, &bytes) {
                tracing::warn!(error = %e, "could not write the compile cache");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not serialize a compiled component"),
    }
}

fn shape_error(world: &check::World, e: wasmtime::Error) -> Error {
    Error::new(
        ErrorKind::Shape,
        "",
        format!("does not fit the {} world:\n{e:#}", world.name),
    )
}

/// Does this look like a component (not a core module)?
fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm.starts_with(b"\0asm") && wasm[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

#[allow(unsafe_code)]
fn load_precompiled(engine: &Engine, path: &Path) -> Result<Component, wasmtime::Error> {
    // SAFETY: the artifact was produced by `Component::serialize` of an engine
    // with the same compatibility hash (it is in the path), written atomically
    // into prism's own cache directory, which plugin authors cannot write.
    unsafe { Component::deserialize_file(engine, path) }
}

fn config(max_instances: u32) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances * 32)
        .total_memories(max_instances * 4)
        .total_tables(max_instances * 16)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(32)
        .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        // Reuse slots without syscalls: reset resident pages with memset
        // (found with PAGEMAP_SCAN where the kernel has it) rather than
        // madvise. madvise takes the process-wide mm lock: without this, two
        // worker threads were slower than one (sample stream, 5 receivers,
        // examples/dispatch_null: 13k receiver-changes/s on 2 threads
        // before, 57k/s after). What lies beyond KEEP_RESIDENT is decommitted
        // at once, not in batches: a batch of 16 freed slots held up to 16
        // memory caps resident (792 MiB for 20 receivers at a 64 MiB cap,
        // against a 434 MiB bound; benches/isolation.rs, table 2).
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .decommit_batch_size(1)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // For profiling only: name the compiled guest functions in
    // /tmp/perf-PID.map, so `perf report` shows where a plugin spends its
    // time (docs/performance.md).
    if std::env::var_os("PRISM_PERF_MAP").is_some_and(|v| v == "1") {
        cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    cfg
}

/// Hash `Engine::precompile_compatibility_hash` with a stable hash (sha256).
fn compat_hash(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = Sha(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    hex::encode(&h.0.finalize()[..8])
}
