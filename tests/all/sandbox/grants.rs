//! What a plugin can and cannot reach, and components that must be refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use prism_core::dispatch::to_wit;
use prism_e2e::{changes, engine, read, sample, wasm};
use prism_engine::ErrorKind;
use serde_json::Value;

fn probe() -> Value {
    let e = engine();
    let plugin = e.load(&read(wasm::HOSTILE)).unwrap();
    let config = Arc::new(BTreeMap::from([(
        "behaviour".to_owned(),
        "probe".to_owned(),
    )]));
    let c = &changes(&sample(1))[0];
    let mut s = plugin.session(config, prism_e2e::relaxed()).unwrap();
    let msgs = s.format(&to_wit(c)).unwrap().unwrap();
    serde_json::from_slice(&msgs[0].body).unwrap()
}

#[test]
fn plugins_see_no_env_args_files_stdin_or_real_clock() {
    let p = probe();
    assert_eq!(p["env"], serde_json::json!([]), "{p}");
    assert_eq!(p["args"], serde_json::json!([]), "{p}");
    assert_eq!(p["now_ms"], 0, "the wall clock is fixed at the epoch: {p}");
    assert_eq!(p["read_root"], false, "no preopened directories: {p}");
    assert_eq!(p["stdin"], "", "{p}");
    assert_eq!(
        p["config"],
        serde_json::json!([["behaviour", "probe"]]),
        "only its own config: {p}"
    );
}

#[test]
fn randomness_is_seeded_so_output_is_deterministic() {
    let (a, b) = (probe(), probe());
    assert_eq!(a["random_hash"], b["random_hash"]);
    assert_eq!(a, b);
}

#[test]
fn a_component_that_imports_sockets_is_refused() {
    let err = engine()
        .load(&read(wasm::SOCKET))
        .err()
        .expect("must be refused");
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Shape, "{msg}");
    assert!(
        msg.contains("wasi:sockets/") && msg.contains("network access is not granted"),
        "{msg}"
    );
}

#[test]
fn a_component_of_another_world_is_refused_with_what_it_exports() {
    let msg = engine()
        .load(&read(wasm::WRONG_WORLD))
        .err()
        .expect("must be refused")
        .to_string();
    for export in ["accepts", "format", "format-batch"] {
        assert!(
            msg.contains(&format!("does not export `{export}: func(")),
            "{msg}"
        );
    }
    assert!(msg.contains("it exports: func transform"), "{msg}");
}

#[test]
fn a_core_module_or_garbage_is_not_a_component() {
    let core = b"\0asm\x01\0\0\0".to_vec();
    let msg = engine().load(&core).err().unwrap().to_string();
    assert!(
        msg.contains("core Wasm module") && msg.contains("wasm32-wasip2"),
        "{msg}"
    );
    let msg = engine()
        .load(b"PK\x03\x04 a zip")
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("magic bytes"), "{msg}");
}

#[test]
fn the_compile_cache_is_used_and_survives_a_corrupt_artifact() {
    use prism_engine::{EngineOptions, LoadSource, PluginEngine};
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..EngineOptions::default()
    };
    let wasm = read(wasm::LOGISTICS);
    let first = PluginEngine::new(&opts).unwrap();
    assert_eq!(first.load(&wasm).unwrap().source(), LoadSource::Compiled);
    let second = PluginEngine::new(&opts).unwrap();
    assert_eq!(second.load(&wasm).unwrap().source(), LoadSource::Cached);
    // The artifact is keyed by the engine's compatibility hash and the wasm digest.
    let artifact = dir.path().join(second.compatibility_hash()).join(format!(
        "{}.cwasm",
        prism_types::digest::Digest::of(&wasm).hex()
    ));
    assert!(artifact.exists(), "{}", artifact.display());
    std::fs::write(&artifact, b"not a precompiled component").unwrap();
    let third = PluginEngine::new(&opts).unwrap();
    assert_eq!(
        third.load(&wasm).unwrap().source(),
        LoadSource::Compiled,
        "a corrupt artifact is rebuilt"
    );
    assert_eq!(
        PluginEngine::new(&opts)
            .unwrap()
            .load(&wasm)
            .unwrap()
            .source(),
        LoadSource::Cached
    );
}

/// Compilation is bounded: a component over the size cap is refused before
/// anything compiles, and a compile that runs over its time cap fails only
/// that load, while the compile finishes in the background and fills the
/// cache, so the next load is instant.
#[test]
fn components_over_the_size_cap_or_the_compile_cap_are_refused() {
    use prism_engine::{EngineOptions, LoadSource, PluginEngine};
    use std::time::{Duration, Instant};
    let wasm = read(wasm::LOGISTICS);
    let small = PluginEngine::new(&EngineOptions {
        max_component_bytes: wasm.len() - 1,
        ..EngineOptions::default()
    })
    .unwrap();
    let err = small.load(&wasm).err().expect("refused");
    assert!(
        err.kind() == ErrorKind::TooLarge
            && err.message().contains(&format!("is {} bytes", wasm.len())),
        "{err}"
    );
    assert!(err.to_string().contains("over the"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let hasty = PluginEngine::new(&EngineOptions {
        cache_dir: Some(dir.path().to_owned()),
        max_compile: Duration::ZERO,
        ..EngineOptions::default()
    })
    .unwrap();
    let err = hasty.load(&wasm).err().expect("abandoned");
    assert_eq!(err.kind(), ErrorKind::CompileTimeout, "{err}");
    let cached = hasty
        .cache_path(&prism_types::digest::Digest::of(&wasm))
        .unwrap();
    let waited = Instant::now();
    while !cached.exists() && waited.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cached.exists(), "the abandoned compile fills the cache");
    assert_eq!(hasty.load(&wasm).unwrap().source(), LoadSource::Cached);
}

/// A dispatcher that knows its memory refuses, at load, a receiver whose
/// limits cannot fit it (its worker threads each at that receiver's caps),
/// naming the arithmetic; the receivers that fit load as usual.
#[test]
fn a_receiver_whose_limits_cannot_fit_the_process_memory_is_refused_at_load() {
    use prism_core::receivers::ReceiverSet;
    use prism_engine::{EngineOptions, PluginEngine};
    use prism_types::limits::Limits;
    use prism_types::manifest::Mode;
    use prism_types::registry::LocalRegistry;
    let dir = tempfile::tempdir().unwrap();
    prism_e2e::immediate(dir.path(), "small", wasm::LOGISTICS);
    prism_e2e::register(
        dir.path(),
        "greedy",
        wasm::LOGISTICS,
        Mode::Immediate,
        Limits {
            memory_mib: 1024,
            ..prism_e2e::relaxed()
        },
        &[],
    );
    let engine = PluginEngine::new(&EngineOptions {
        memory_mib: Some(1769),
        threads: 2,
        max_instances: 6,
        ..EngineOptions::default()
    })
    .unwrap();
    let set = ReceiverSet::load(&engine, LocalRegistry::new(dir.path()).load().unwrap());
    let ids: Vec<&str> = set.active.iter().map(|r| r.id()).collect();
    assert_eq!(ids, ["small"]);
    let refused = &set.unavailable[0];
    assert_eq!(refused.receiver.as_deref(), Some("greedy"));
    assert!(
        refused.reason.contains("2 threads × (1024 MiB memory cap")
            && refused.reason.contains("over its 1769 MiB"),
        "{}",
        refused.reason
    );
}
