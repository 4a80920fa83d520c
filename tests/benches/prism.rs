//! `cargo bench -p prism-e2e --bench prism`: the numbers behind prism's
//! speed claims, measured in one run on one machine, printed as tables.
//!
//! 1. Per change and receiver: the Wasm path (a fresh sandbox per change,
//!    as the dispatcher runs it, and one sandbox reused for a batch) against
//!    the same plugin crate compiled natively, marshalling included on both
//!    sides (the native side parses the JSON images as the guest does); for
//!    each example, its `prism:receiver@0.1.0` build (the fixtures in
//!    `tests/fixtures/receiver-0.1.0`) and its 0.2.0 build, in the same run.
//!    Then the price-feed receiver in Python and JavaScript (0.2.0), when
//!    their build tools are installed (`scripts/test` installs them).
//! 2. Cold start with 20 registered receivers, precompiled and not: time
//!    and RSS, each in a fresh process.
//! 3. Throughput, receiver-changes per second on all cores and on one: 10k
//!    inserts × 20 receivers (every change formatted), and a full refresh of
//!    10k products of which 3 % changed (field interest and dedup at work).
//! 4. Calls skipped by field interest and messages suppressed by dedup.
//!
//! With `--features baselines`, table 1 is followed by the logistics
//! formatter written in jq (run by jaq) and JavaScript (run by QuickJS).
//!
//! Messages go to a sink that drops them: this measures prism, not a queue.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "baselines")]
mod baselines;

use prism_core::dispatch::{Dispatcher, Progress, RunOptions, RunReport, to_wit};
use prism_core::outputs::OutputMemory;
use prism_core::receivers::ReceiverSet;
use prism_core::sink::{DeadLetter, Envelope, Sink, SinkError};
use prism_e2e::wasm;
use prism_engine::{EngineOptions, PluginEngine, WitChange};
use prism_sample::{SampleOptions, StreamWriter, product};
use prism_sdk::{Image, Message, Receiver};
use prism_types::change::Change;
use prism_types::limits::Limits;
use prism_types::manifest::Mode;
use prism_types::registry::LocalRegistry;
use serde_json::json;

struct Null;
impl Sink for Null {
    fn deliver(&self, _: &[Envelope<'_>]) -> Result<(), SinkError> {
        Ok(())
    }
    fn park(&self, _: &DeadLetter) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The four example receivers: id, component, config, mode, interest.
type Spec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Mode,
    &'static [&'static str],
);

fn specs() -> Vec<Spec> {
    let batch = Mode::Batch {
        max_count: 100,
        max_bytes: 1 << 20,
        max_age_secs: 300,
    };
    vec![
        (
            "website",
            wasm::WEBSITE,
            &[("language", "en"), ("market", "DE")],
            Mode::Immediate,
            &[
                "/texts/en/**",
                "/prices/DE/**",
                "/images/**",
                "/brand",
                "/status",
                "/category",
                "/logistics/ean",
            ],
        ),
        (
            "leaflet",
            wasm::LEAFLET,
            &[],
            Mode::Immediate,
            &["/texts/**", "/brand", "/images/**", "/category"],
        ),
        (
            "logistics",
            wasm::LOGISTICS,
            &[],
            Mode::Immediate,
            &[
                "/logistics/weight_g",
                "/logistics/dimensions_mm/**",
                "/logistics/packaging/**",
            ],
        ),
        (
            "pricelist",
            wasm::PRICELIST,
            &[("market", "CH")],
            batch,
            &[
                "/prices/CH/**",
                "/texts/en/name",
                "/status",
                "/logistics/ean",
            ],
        ),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--cold-start-child") {
        cold_start_child(Path::new(&args[i + 1]), args[i + 2] == "cached");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    println!(
        "prism benchmark: {} cores, {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if cfg!(debug_assertions) {
            "DEBUG build (numbers are not representative)"
        } else {
            "release build"
        }
    );
    per_change(if quick { 100 } else { 500 });
    cold_start();
    throughput(if quick { 1_000 } else { 10_000 });
}

fn us(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

fn sample_changes(products: usize) -> Vec<Change> {
    let text = prism_sample::stream(SampleOptions { products, seed: 42 }).to_json_lines();
    prism_types::input::parse(&text, "sample").changes
}

/// The host's change as the SDK gives it to a native plugin: images as JSON
/// text, parsed when first read, exactly as in the guest.
fn sdk_change(c: &Change) -> prism_sdk::Change {
    prism_sdk::Change {
        key: c.key.clone(),
        kind: c.kind,
        new: c.new_json.clone().map(Image::from_json_text),
        old: c.old_json.clone().map(Image::from_json_text),
        changed_paths: c.changed_paths.clone(),
        sequence: c.sequence.clone(),
        time_ms: c.time_ms,
    }
}

fn native<R: Receiver>(changes: &[Change]) -> (Duration, usize) {
    let started = Instant::now();
    let mut formatted = 0;
    for c in changes {
        let c = sdk_change(c);
        if R::accepts(&c) {
            let msgs: Vec<Message> = R::format(&c).expect("formats");
            std::hint::black_box(msgs);
            formatted += 1;
        }
    }
    (started.elapsed(), formatted)
}

fn native_batch<R: Receiver>(changes: &[Change]) -> (Duration, usize) {
    let started = Instant::now();
    let mut window = Vec::new();
    for c in changes {
        let c = sdk_change(c);
        if R::accepts(&c) {
            window.push(c);
        }
        if window.len() == 100 {
            std::hint::black_box(R::format_batch(&window).expect("formats"));
            window.clear();
        }
    }
    if !window.is_empty() {
        std::hint::black_box(R::format_batch(&window).expect("formats"));
    }
    (started.elapsed(), 0)
}

/// Wasm, as the dispatcher runs it: a fresh sandbox per change (per window
/// for a batched receiver), or one sandbox reused for `reuse` changes.
fn in_wasm(
    engine: &PluginEngine,
    path: &str,
    config: &[(&str, &str)],
    batch: bool,
    wits: &[WitChange],
    reuse: usize,
) -> Duration {
    let plugin = engine.load(&std::fs::read(path).unwrap()).unwrap();
    let config: Arc<BTreeMap<String, String>> = Arc::new(
        config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    let limits = Limits::default();
    let started = Instant::now();
    if batch {
        let mut window = Vec::new();
        for w in wits {
            let mut s = plugin.session(config.clone(), limits).unwrap();
            if s.accepts(w).unwrap() {
                window.push(w.clone());
            }
            if window.len() == 100 {
                let mut s = plugin.session(config.clone(), limits).unwrap();
                std::hint::black_box(s.format_batch(&window).unwrap().unwrap());
                window.clear();
            }
        }
        if !window.is_empty() {
            let mut s = plugin.session(config.clone(), limits).unwrap();
            std::hint::black_box(s.format_batch(&window).unwrap().unwrap());
        }
        return started.elapsed();
    }
    for chunk in wits.chunks(reuse) {
        let mut s = plugin.session(config.clone(), limits).unwrap();
        for w in chunk {
            if reuse == 1 {
                s = plugin.session(config.clone(), limits).unwrap();
            }
            if s.accepts(w).unwrap() {
                // A reject is an answer too (the price feed rejects products
                // without a price); a trap is not.
                let _ = std::hint::black_box(s.format(w).unwrap());
            }
        }
    }
    started.elapsed()
}

fn per_change(products: usize) {
    let changes = sample_changes(products);
    let wits: Vec<WitChange> = changes.iter().map(to_wit).collect();
    let n = changes.len();
    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
    println!();
    println!(
        "1. Per change and receiver ({n} sample changes: inserts, single-field modifies, removes, a refresh), µs per change"
    );
    println!(
        "   {:<10} {:>8} | {:>15} {:>15} | {:>15} {:>15}",
        "receiver", "native", "0.1 fresh", "0.1 reused", "0.2 fresh", "0.2 reused"
    );
    for (id, path, config, mode, _) in specs() {
        prism_sdk::testing::set_config(config.iter().copied());
        let batch = mode != Mode::Immediate;
        // Warm both sides up once, then measure the best of three.
        let native_run = || match id {
            "website" => native::<website::Website>(&changes).0,
            "leaflet" => native::<leaflet::Leaflet>(&changes).0,
            "logistics" => native::<logistics::Logistics>(&changes).0,
            _ => native_batch::<pricelist::PriceList>(&changes).0,
        };
        let best = |f: &dyn Fn() -> Duration| (0..3).map(|_| f()).min().unwrap();
        native_run();
        let t_native = best(&native_run);
        let cell = |t: Duration| {
            format!(
                "{:>8.2} {:>5.2}×",
                us(t, n),
                t.as_secs_f64() / t_native.as_secs_f64()
            )
        };
        let old = prism_e2e::fixture_0_1(id);
        let mut row = format!("   {:<10} {:>8.2} |", id, us(t_native, n));
        for (i, p) in [old.as_str(), path].into_iter().enumerate() {
            let t_fresh = best(&|| in_wasm(&engine, p, config, batch, &wits, 1));
            let reused = if batch {
                format!("{:>15}", "-")
            } else {
                cell(best(&|| in_wasm(&engine, p, config, false, &wits, 100)))
            };
            row.push_str(&format!(" {} {}", cell(t_fresh), reused));
            if i == 0 {
                row.push_str(" |");
            }
        }
        println!("{row}");
    }
    println!(
        "   (pricelist is batched: one format-batch per 100 accepted changes; 'reused' = one sandbox per 100 changes)"
    );
    other_engines(&engine, &changes, &wits);
    other_languages(&engine, &wits);
}

/// The price-feed receiver (`plugins/pricefeed-py`, `plugins/pricefeed-js`)
/// built now with the project's tools, µs per change.
fn other_languages(engine: &PluginEngine, wits: &[WitChange]) {
    let root = Path::new(wasm::ROOT);
    let dir = tempfile::tempdir().unwrap();
    let tool = |var: &str, default: &str| {
        std::env::var(var).unwrap_or_else(|_| root.join(default).display().to_string())
    };
    let py_out = dir.path().join("py.wasm");
    let py = std::process::Command::new(tool(
        "PRISM_COMPONENTIZE_PY",
        ".tools/venv/bin/componentize-py",
    ))
    .args([
        "-d",
        "wit/v0.2",
        "-w",
        "receiver",
        "componentize",
        "--stub-wasi",
    ])
    .args(["-p", "plugins/pricefeed-py", "app", "-o"])
    .arg(&py_out)
    .current_dir(root)
    .output();
    let js_out = dir.path().join("js.wasm");
    let js = std::process::Command::new(tool(
        "PRISM_COMPONENTIZE_JS",
        ".tools/npm/node_modules/.bin/componentize-js",
    ))
    .args(["--wit", "wit/v0.2", "--world-name", "receiver", "-d"])
    .args(["stdio", "random", "clocks", "http", "fetch-event", "-o"])
    .arg(&js_out)
    .arg("plugins/pricefeed-js/receiver.js")
    .current_dir(root)
    .output();
    println!();
    println!("   the price feed in other languages (0.2.0), µs per change");
    println!(
        "   {:<30} {:>10} {:>11} {:>11}",
        "", "size", "fresh", "reused"
    );
    let config = [("market", "DE")];
    for (what, built, out) in [
        ("Python (componentize-py)", py, &py_out),
        ("JavaScript (componentize-js)", js, &js_out),
    ] {
        match built {
            Ok(o) if o.status.success() => {
                let path = out.to_str().unwrap();
                let best = |reuse| {
                    (0..3)
                        .map(|_| in_wasm(engine, path, &config, false, wits, reuse))
                        .min()
                        .unwrap()
                };
                let size = std::fs::metadata(out).map_or(0, |m| m.len());
                println!(
                    "   {what:<30} {:>7.1} MB {:>11.2} {:>11.2}",
                    size as f64 / 1e6,
                    us(best(1), wits.len()),
                    us(best(100), wits.len())
                );
            }
            Ok(o) => println!(
                "   {what:<30} build failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            Err(e) => println!("   {what:<30} skipped: its build tool is not installed ({e})"),
        }
    }
}

/// The logistics formatter in jq and JavaScript, against native and Wasm.
#[cfg(feature = "baselines")]
fn other_engines(engine: &PluginEngine, changes: &[Change], wits: &[WitChange]) {
    let n = changes.len();
    let native_bodies = || {
        let started = Instant::now();
        let mut bodies = Vec::new();
        for c in changes {
            let c = sdk_change(c);
            if logistics::Logistics::accepts(&c) {
                for m in logistics::Logistics::format(&c).expect("formats") {
                    bodies.push(String::from_utf8(m.body).expect("JSON text"));
                }
            }
        }
        (started.elapsed(), bodies)
    };
    let best = |f: &dyn Fn() -> (Duration, Vec<String>)| {
        (0..3).map(|_| f()).min_by_key(|r| r.0).expect("three runs")
    };
    prism_sdk::testing::set_config::<&str, &str>([]);
    let (t_native, expect) = best(&native_bodies);
    let t_wasm = (0..3)
        .map(|_| in_wasm(engine, wasm::LOGISTICS, &[], false, wits, 100))
        .min()
        .expect("three runs");
    let (t_jaq, jaq_out) = best(&|| baselines::jaq(changes));
    let (t_js, js_out) = best(&|| baselines::quickjs(changes));
    let parse = |v: &[String]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|b| serde_json::from_str(b).expect("JSON"))
            .collect()
    };
    assert_eq!(
        parse(&jaq_out),
        parse(&expect),
        "jaq formats as the plugin does"
    );
    assert_eq!(
        parse(&js_out),
        parse(&expect),
        "QuickJS formats as the plugin does"
    );
    println!();
    println!(
        "   logistics, the same formatter elsewhere ({} messages, checked equal), µs per change",
        expect.len()
    );
    for (what, t) in [
        ("native Rust", t_native),
        ("Wasm (prism, reused)", t_wasm),
        ("jq (jaq 3)", t_jaq),
        ("JavaScript (QuickJS)", t_js),
    ] {
        println!(
            "   {what:<22} {:>9.2} {:>6.2}×",
            us(t, n),
            t.as_secs_f64() / t_native.as_secs_f64()
        );
    }
}

#[cfg(not(feature = "baselines"))]
fn other_engines(_: &PluginEngine, _: &[Change], _: &[WitChange]) {
    println!("   (jq and JavaScript baselines: add --features baselines)");
}

/// 20 receivers: each example plugin under 5 configurations.
fn twenty_receivers(dir: &Path) {
    let reg = LocalRegistry::new(dir);
    for (id, path, config, mode, interest) in specs() {
        let wasm_bytes = std::fs::read(path).unwrap();
        for i in 0..5 {
            let mut config: Vec<(&str, &str)> = config.to_vec();
            let variant = i.to_string();
            config.push(("variant", &variant));
            let mut m = prism_e2e::manifest(
                &format!("{id}-{i}"),
                &wasm_bytes,
                mode,
                Limits::default(),
                &config,
            );
            m.interest = interest.iter().map(|p| (*p).to_owned()).collect();
            reg.put(m, &wasm_bytes).unwrap();
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// In a fresh process: engine + 20 receivers loaded; prints ms and RSS.
fn cold_start_child(dir: &Path, cached: bool) {
    let started = Instant::now();
    let engine = PluginEngine::new(&EngineOptions {
        cache_dir: cached.then(|| dir.join("cache")),
        ..EngineOptions::default()
    })
    .unwrap();
    let set = ReceiverSet::load(&engine, LocalRegistry::new(dir.join("reg")).load().unwrap());
    let elapsed = started.elapsed();
    assert_eq!(set.active.len(), 20, "{:?}", set.unavailable);
    println!("{} {}", elapsed.as_secs_f64() * 1000.0, rss_kib());
}

fn cold_start() {
    let dir = tempfile::tempdir().unwrap();
    twenty_receivers(&dir.path().join("reg"));
    let me = std::env::current_exe().unwrap();
    let run = |mode: &str| -> (f64, u64) {
        let o = std::process::Command::new(&me)
            .args(["--cold-start-child", dir.path().to_str().unwrap(), mode])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        let mut it = out.split_whitespace();
        (
            it.next().unwrap().parse().unwrap(),
            it.next().unwrap().parse().unwrap(),
        )
    };
    // Fill the compile cache once, as `register` (or a first start) does.
    run("cached");
    let best = |mode: &str| {
        (0..3)
            .map(|_| run(mode))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap()
    };
    let (warm_ms, warm_rss) = best("cached");
    let (cold_ms, cold_rss) = best("compile");
    println!();
    println!(
        "2. Cold start with 20 receivers (engine + registry + 20 plugins ready), fresh process, best of 3"
    );
    println!("   {:<24} {:>10} {:>10}", "", "time", "RSS");
    println!(
        "   {:<24} {:>7.1} ms {:>7} MiB",
        "precompiled (cache)",
        warm_ms,
        warm_rss / 1024
    );
    println!(
        "   {:<24} {:>7.1} ms {:>7} MiB",
        "not precompiled",
        cold_ms,
        cold_rss / 1024
    );
}

fn run(
    set: &ReceiverSet,
    changes: &[Change],
    threads: usize,
    outputs: Option<&OutputMemory>,
) -> RunReport {
    Dispatcher::builder().threads(threads).build().run_with(
        set,
        changes,
        &Null,
        &Progress::default(),
        RunOptions {
            outputs,
            ..RunOptions::default()
        },
    )
}

fn throughput(products: usize) {
    let dir = tempfile::tempdir().unwrap();
    twenty_receivers(dir.path());
    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
    let set = ReceiverSet::load(&engine, LocalRegistry::new(dir.path()).load().unwrap());
    let mut docs: Vec<_> = (0..products).map(|n| product(n, 42)).collect();
    let mut w = StreamWriter::new();
    for d in &docs {
        w.push(d["pk"].as_str().unwrap(), None, Some(d));
    }
    let inserts = prism_types::input::parse(&w.to_json_lines(), "inserts").changes;
    // A full refresh: every product rewritten with reworded English bullets
    // (offered to the receivers interested in /texts, published by few),
    // 3 % with a new price.
    let mut w = StreamWriter::new();
    for (i, d) in docs.iter_mut().enumerate() {
        let old = d.clone();
        d["texts"]["en"]["bullets"] = json!(["Robust housing", "Refreshed"]);
        if i % 33 == 0 {
            d["prices"]["DE"]["amount"] = json!(1.25);
            d["prices"]["CH"]["amount"] = json!(1.35);
        }
        w.push(d["pk"].as_str().unwrap(), Some(&old), Some(d));
    }
    let refresh = prism_types::input::parse(&w.to_json_lines(), "refresh").changes;
    // A full refresh that changes nothing: every product rewritten as it is.
    let mut w = StreamWriter::new();
    for d in &docs {
        w.push(d["pk"].as_str().unwrap(), Some(d), Some(d));
    }
    let noop = prism_types::input::parse(&w.to_json_lines(), "no-op").changes;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!();
    println!(
        "3. Throughput, {products} products × {} receivers, receiver-changes per second (best of 3)",
        set.active.len()
    );
    println!(
        "   {:<44} {:>12} {:>12}",
        "",
        format!("{cores} threads"),
        "1 thread"
    );
    let mut last = None;
    let insert_label = format!("{products} inserts (every change formatted)");
    for (name, changes, dedup) in [
        (insert_label.as_str(), &inserts, false),
        (
            "full refresh, 3 % new prices (interest+dedup)",
            &refresh,
            true,
        ),
    ] {
        let rate = |threads: usize| {
            (0..3)
                .map(|_| {
                    // Dedup state as after the inserts were delivered.
                    let outputs = OutputMemory::default();
                    if dedup {
                        run(&set, &inserts, cores, Some(&outputs));
                    }
                    let r = run(&set, changes, threads, dedup.then_some(&outputs));
                    let n = (changes.len() * set.active.len()) as f64;
                    (n / r.elapsed.as_secs_f64(), r)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap()
        };
        let (all, report) = rate(cores);
        let (one, _) = rate(1);
        println!("   {name:<44} {all:>12.0} {one:>12.0}");
        last = Some((name, report));
    }

    // 4. What the filters saved.
    let sample = sample_changes(products.min(3000));
    let outputs = OutputMemory::default();
    let on_sample = run(&set, &sample, cores, Some(&outputs));
    let (_, on_refresh) = last.unwrap();
    let outputs = OutputMemory::default();
    run(&set, &inserts, cores, Some(&outputs));
    let on_noop = run(&set, &noop, cores, Some(&outputs));
    println!();
    println!("4. What field interest and dedup saved");
    println!(
        "   {:<36} {:>16} {:>14} {:>12} {:>12}",
        "", "receiver-changes", "calls skipped", "messages", "suppressed"
    );
    for (name, r) in [
        ("sample stream (demo's mix)", &on_sample),
        ("full refresh, 3 % new prices", &on_refresh),
        ("no-op full refresh", &on_noop),
    ] {
        let sum = |f: fn(&prism_core::dispatch::ReceiverStats) -> u64| {
            r.receivers.values().map(f).sum::<u64>()
        };
        println!(
            "   {:<36} {:>16} {:>14} {:>12} {:>12}",
            name,
            sum(|s| s.seen),
            sum(|s| s.filtered),
            sum(|s| s.messages),
            sum(|s| s.suppressed)
        );
    }
}
