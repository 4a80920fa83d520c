//! `cargo bench -p prism-e2e --bench isolation`: the attacks tried on the
//! shared dispatcher, measured in one run (README, "Sandbox").
//!
//! 1. Each hostile behaviour as one receiver beside two good ones (website,
//!    logistics) over the same sample stream: its outcome, the run's wall
//!    time and peak RSS, and whether the good receivers' output is
//!    byte-identical to a run without it.
//! 2. Memory: 20 receivers that all fill 60 of their 64 MiB on every change,
//!    peak RSS against the formula's worst case.
//! 3. The circuit breaker: one receiver that loops (200 ms budget) among 20,
//!    the batch's wall time with the breaker and with it switched off.
//!
//! Peak RSS is the process's high-water mark (VmHWM), reset before each row
//! through /proc/self/clear_refs.

use std::path::Path;
use std::time::{Duration, Instant};

use prism_core::breaker::BreakerConfig;
use prism_core::dispatch::{Dispatcher, Progress, RunReport};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::Outbox;
use prism_e2e::process::{peak_mib, reset_peak};
use prism_e2e::{bodies, changes, register, sample, wasm};
use prism_engine::budget::MemoryBudget;
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::change::Change;
use prism_types::limits::Limits;
use prism_types::manifest::Mode;
use prism_types::registry::LocalRegistry;

const THREADS: usize = 2;

/// (behaviour, budget in ms, memory cap in MiB)
const ATTACKS: &[(&str, u64, u32)] = &[
    ("loop", 200, 64),
    ("sleep", 200, 64),
    ("memory", 200, 64),
    ("huge-output", 200, 64),
    ("many-messages", 200, 64),
    ("alias-output", 200, 64),
    ("alias-log", 200, 64),
    ("chatty", 200, 64),
    ("recursion", 200, 64),
    ("panic", 200, 64),
    ("leak", 200, 64),
    ("file", 200, 64),
];

fn engine() -> PluginEngine {
    PluginEngine::new(&EngineOptions {
        max_instances: prism_lambda::max_instances(THREADS),
        ..EngineOptions::default()
    })
    .unwrap()
}

fn run(
    e: &PluginEngine,
    reg: &Path,
    stream: &[Change],
    out: &Path,
    breaker: BreakerConfig,
) -> (RunReport, Duration) {
    let set = ReceiverSet::load(e, LocalRegistry::new(reg).load().unwrap());
    let d = Dispatcher::builder()
        .threads(THREADS)
        .breaker(breaker)
        .build();
    let started = Instant::now();
    let report = d.run(&set, stream, &Outbox::new(out), &Progress::default());
    (report, started.elapsed())
}

fn good(reg: &Path) {
    prism_e2e::immediate(reg, "website", wasm::WEBSITE);
    prism_e2e::immediate(reg, "logistics", wasm::LOGISTICS);
}

fn main() {
    let stream = changes(&sample(20));
    let e = engine();
    let tmp = tempfile::tempdir().unwrap();

    // The good receivers alone, for comparison.
    let (reg, out) = (tmp.path().join("base/reg"), tmp.path().join("base/out"));
    good(&reg);
    reset_peak();
    let (_, base_time) = run(&e, &reg, &stream, &out, BreakerConfig::default());
    let base_peak = peak_mib();
    let base = (bodies(&out, "website"), bodies(&out, "logistics"));

    println!(
        "\n1. Attacks: one hostile receiver beside website and logistics, {} changes, {THREADS} threads",
        stream.len()
    );
    println!(
        "\n| attack | outcome (per change) | wall time | peak RSS | good receivers identical |"
    );
    println!("|---|---|---:|---:|---|");
    println!(
        "| none (baseline) | - | {} ms | {base_peak} MiB | - |",
        base_time.as_millis()
    );
    for &(behaviour, timeout_ms, memory_mib) in ATTACKS {
        let dir = tmp.path().join(behaviour);
        let (reg, out) = (dir.join("reg"), dir.join("out"));
        good(&reg);
        let limits = Limits {
            timeout_ms,
            memory_mib,
            ..Limits::default()
        };
        register(
            &reg,
            "hostile",
            wasm::HOSTILE,
            Mode::Immediate,
            limits,
            &[("behaviour", behaviour)],
        );
        reset_peak();
        let (report, took) = run(&e, &reg, &stream, &out, BreakerConfig::default());
        let peak = peak_mib();
        let st = &report.receivers["hostile"];
        let mut outcome: Vec<String> = st
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        if st.messages > 0 {
            outcome.push(format!("{} messages", st.messages));
        }
        let identical = (bodies(&out, "website"), bodies(&out, "logistics")) == base;
        println!(
            "| `{behaviour}` | {} | {} ms | {peak} MiB | {} |",
            outcome.join(", "),
            took.as_millis(),
            if identical { "yes" } else { "**no**" }
        );
    }

    // 2. Memory: 20 receivers at their cap.
    let dir = tmp.path().join("fill");
    let (reg, out) = (dir.join("reg"), dir.join("out"));
    let limits = Limits {
        memory_mib: 64,
        ..Limits::default()
    };
    for i in 0..20 {
        register(
            &reg,
            &format!("fill-{i:02}"),
            wasm::HOSTILE,
            Mode::Immediate,
            limits,
            &[("behaviour", "fill"), ("fill_mib", "60")],
        );
    }
    reset_peak();
    let (report, took) = run(&e, &reg, &stream, &out, BreakerConfig::default());
    let peak = peak_mib();
    let errors: u64 = report.receivers.values().map(|s| s.errors()).sum();
    let formula = MemoryBudget {
        total_mib: 0,
        threads: THREADS,
        max_instances: prism_lambda::max_instances(THREADS),
    }
    .worst_case_mib(&limits, 1);
    println!(
        "\n2. Memory: 20 receivers each touching 60 of their 64 MiB on every change ({} receiver-changes, {errors} errors), {THREADS} threads",
        stream.len() * 20
    );
    println!("\n| peak RSS | the formula's worst case | wall time |");
    println!("|---:|---:|---:|");
    println!("| {peak} MiB | {formula} MiB | {} ms |", took.as_millis());

    // 3. The breaker: one looping receiver among 20.
    let dir = tmp.path().join("breaker");
    let reg = dir.join("reg");
    for i in 0..19 {
        register(
            &reg,
            &format!("good-{i:02}"),
            wasm::LOGISTICS,
            Mode::Immediate,
            Limits::default(),
            &[],
        );
    }
    register(
        &reg,
        "looper",
        wasm::HOSTILE,
        Mode::Immediate,
        Limits::default(),
        &[("behaviour", "loop")],
    );
    println!(
        "\n3. Circuit breaker: 19 good receivers and one that loops (200 ms budget), {} changes, {THREADS} threads",
        stream.len()
    );
    println!("\n| breaker | batch wall time | looper's timeouts | changes not run (quarantined) |");
    println!("|---|---:|---:|---:|");
    for (name, cfg) in [
        (
            "off",
            BreakerConfig {
                threshold: u32::MAX,
                ..BreakerConfig::default()
            },
        ),
        ("default (5 in a row)", BreakerConfig::default()),
    ] {
        let out = dir.join(format!("out-{}", cfg.threshold));
        let (report, took) = run(&e, &reg, &stream, &out, cfg);
        let st = &report.receivers["looper"];
        println!(
            "| {name} | {} ms | {} | {} |",
            took.as_millis(),
            st.errors_by_kind.get("timeout").copied().unwrap_or(0),
            st.quarantined
        );
    }
}
