//! Shared helpers for the end-to-end tests: where the built components are,
//! and a few builders. The tests themselves live in `all/`.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use prism_types::digest::Digest;
use prism_types::limits::Limits;
use prism_types::manifest::{Mode, PluginRef, ReceiverManifest, SCHEMA_VERSION};
use prism_types::registry::LocalRegistry;

/// moto-backed AWS test support.
pub mod aws;
/// A fault-injecting proxy in front of moto.
pub mod fault_proxy;

/// This process's peak resident set size and CPU time, for the benchmarks.
pub mod process {
    /// Reset the peak (Linux 4.0+: writing "5" to `clear_refs`).
    pub fn reset_peak() {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }

    /// The peak since the last reset, in MiB (`VmHWM`).
    pub fn peak_mib() -> u64 {
        status_mib("VmHWM:")
    }

    /// The resident set size now, in MiB (`VmRSS`).
    pub fn rss_mib() -> u64 {
        status_mib("VmRSS:")
    }

    fn status_mib(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    }

    /// CPU time this process has used (user + system, all threads), in
    /// seconds, from `/proc/self/stat` (clock ticks of 1/100 s).
    pub fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may hold spaces), from field 3.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15: positions 11 and 12 here.
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        ticks as f64 / 100.0
    }
}

/// Paths of the guest components built by `build.rs`.
pub mod wasm {
    include!(concat!(env!("OUT_DIR"), "/gen.rs"));
}

/// A receiver as it was built for `prism:receiver@0.1.0` (kept in
/// `tests/fixtures/receiver-0.1.0`).
pub fn fixture_0_1(name: &str) -> String {
    format!("{}/tests/fixtures/receiver-0.1.0/{name}.wasm", wasm::ROOT)
}

/// Read a built component.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A manifest for `receiver` running `wasm` with `config`.
pub fn manifest(
    receiver: &str,
    wasm: &[u8],
    mode: Mode,
    limits: Limits,
    config: &[(&str, &str)],
) -> ReceiverManifest {
    ReceiverManifest {
        schema: SCHEMA_VERSION,
        receiver: receiver.to_owned(),
        enabled: true,
        plugin: PluginRef {
            digest: Digest::of(wasm),
            file: None,
        },
        mode,
        destination: None,
        interest: Vec::new(),
        dedup: true,
        limits,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        nondeterministic: None,
    }
}

/// Put a receiver into a local registry.
pub fn register(
    dir: &Path,
    receiver: &str,
    wasm_path: &str,
    mode: Mode,
    limits: Limits,
    config: &[(&str, &str)],
) {
    let wasm = read(wasm_path);
    LocalRegistry::new(dir)
        .put(manifest(receiver, &wasm, mode, limits, config), &wasm)
        .unwrap();
}

use prism_core::dispatch::{Dispatcher, Progress, RunReport};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::Outbox;
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::change::Change;

/// An engine without a compile cache.
pub fn engine() -> PluginEngine {
    PluginEngine::new(&EngineOptions::default()).expect("engine")
}

/// Parse stream text that must be fully readable.
pub fn changes(text: &str) -> Vec<Change> {
    let input = prism_types::input::parse(text, "test");
    assert!(input.errors.is_empty(), "{:?}", input.errors);
    input.changes
}

/// Load `registry` and run `changes` into `outbox` with `threads` workers.
pub fn run(
    engine: &PluginEngine,
    registry: &Path,
    changes: &[Change],
    outbox: &Path,
    threads: usize,
) -> (ReceiverSet, RunReport) {
    let set = ReceiverSet::load(engine, LocalRegistry::new(registry).load().unwrap());
    let d = Dispatcher::builder().threads(threads).build();
    let report = d.run(&set, changes, &Outbox::new(outbox), &Progress::default());
    (set, report)
}

/// The message bodies a receiver got, in delivery (file name) order, as text.
pub fn bodies(outbox: &Path, receiver: &str) -> Vec<String> {
    files(outbox, receiver, |name| !name.ends_with(".meta.json"))
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

/// The dead letters of a receiver, parsed, in order.
pub fn dead_letters(outbox: &Path, receiver: &str) -> Vec<serde_json::Value> {
    let dir = outbox.join(receiver).join("dead-letters");
    let mut names: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => return vec![],
    };
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// (file name, contents) of a receiver's message files matching `keep`, sorted.
pub fn files(outbox: &Path, receiver: &str, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let dir = outbox.join(receiver);
    let mut out: Vec<(String, String)> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .filter_map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                keep(&name).then(|| (name, std::fs::read_to_string(&p).unwrap()))
            })
            .collect(),
        Err(_) => vec![],
    };
    out.sort();
    out
}

/// A small sample stream (`products` products) as JSON Lines.
pub fn sample(products: usize) -> String {
    prism_sample::stream(prism_sample::SampleOptions { products, seed: 42 }).to_json_lines()
}

/// Default limits with a generous time budget, for tests about output rather
/// than time: a busy CI machine must not turn them into timeouts.
pub fn relaxed() -> Limits {
    Limits {
        timeout_ms: 10_000,
        ..Limits::default()
    }
}

/// Register an immediate receiver with relaxed limits and no config.
pub fn immediate(dir: &Path, receiver: &str, wasm_path: &str) {
    register(dir, receiver, wasm_path, Mode::Immediate, relaxed(), &[]);
}

use prism_mapping::{MapperManifest, TableDecl};

/// The catalog mapper's manifest for the sample shadow tables, naming `wasm`.
pub fn catalog_manifest(wasm: &[u8]) -> MapperManifest {
    prism_sample::shadow::manifest(PluginRef {
        digest: Digest::of(wasm),
        file: Some("mapper.wasm".into()),
    })
}

/// A manifest for the hostile test mapper: one table `orders` (key `id`,
/// index `by-customer`), with these limits.
pub fn hostile_mapper_manifest(
    wasm: &[u8],
    limits: prism_types::mapper_manifest::MapperLimits,
) -> MapperManifest {
    MapperManifest {
        limits,
        mapper: "hostile".into(),
        tables: vec![TableDecl {
            name: "orders".into(),
            key: vec!["id".into()],
            indexes: [("by-customer".to_owned(), "customer".to_owned())].into(),
        }],
        ..catalog_manifest(wasm)
    }
}

/// Write `manifest` and `wasm_path`'s component (as `mapper.wasm`) into
/// `dir`; returns the manifest's path, for `prism run --mapper`.
pub fn write_mapper(dir: &Path, manifest: &MapperManifest, wasm_path: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("mapper.wasm"), read(wasm_path)).unwrap();
    let path = dir.join("mapper.toml");
    std::fs::write(&path, manifest.to_toml()).unwrap();
    path
}
