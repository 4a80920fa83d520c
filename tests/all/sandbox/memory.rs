//! The memory formula against a real process (issue 27, item 5). The
//! dispatcher refuses limits by `MemoryBudget::worst_case_mib`; here the
//! hostile plugins that go for memory run in one real `prism run` process,
//! and its peak resident set must stay under the formula for the largest
//! limits and window it admitted. The peak is the child's own
//! `ru_maxrss`, read by a small Python process that starts it (see
//! [`MEASURE`] for why not from the test process).
//!
//! Timing plays no part: each plugin runs to its cap or its trap, and the
//! peak is a high-water mark.

use std::path::Path;
use std::process::Command;

use prism_e2e::{register, sample, wasm};
use prism_engine::budget::MemoryBudget;
use prism_types::limits::Limits;
use prism_types::manifest::Mode;

/// Threads the measured run uses (the formula's `threads`).
const THREADS: usize = 2;

/// Run `prism run` over `events` with `registry`, and return its exit
/// status and peak RSS in MiB.
fn peak_of_run(registry: &Path, events: &Path, outbox: &Path, cache: &Path) -> (i32, u64) {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", MEASURE, env!("CARGO_BIN_EXE_prism-under-test")])
        .args(["run", "--threads", &THREADS.to_string(), "--registry"])
        .arg(registry)
        .arg("--outbox")
        .arg(outbox)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--clean")
        .arg("--events")
        .arg(events)
        .env_remove("PRISM_LOG")
        .stderr(std::process::Stdio::null());
    let out = cmd.output().expect("running python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no measurement in:\n{text}"));
    (out.status.code().unwrap_or(-1), kib.div_ceil(1024))
}

/// Runs its arguments as a grandchild and prints that process's own peak
/// RSS. Measured from the test process directly, the child's `ru_maxrss`
/// starts at the test process's (Linux records the address space a child
/// leaves at `exec`, and a spawned child starts as a copy of the parent's):
/// in a full suite that was 1.2 GB. A fork of a small Python process
/// starts small.
const MEASURE: &str = r#"
import os, sys
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"maxrss_kib={usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// Fill receivers at their cap, plugins that ask for 64 MiB of randomness
/// or grow until refused, and a batched receiver whose window's outputs
/// reach its host-copy cap: the process's peak stays under the formula
/// for the largest limits and window among them.
#[test]
fn hostile_memory_stays_under_the_formula_in_a_real_process() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, out, cache) = (
        dir.path().join("reg"),
        dir.path().join("out"),
        dir.path().join("cache"),
    );
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, sample(10)).unwrap();
    let limits = Limits {
        timeout_ms: 10_000,
        memory_mib: 64,
        ..Limits::default()
    };
    for i in 0..4 {
        register(
            &reg,
            &format!("fill-{i}"),
            wasm::HOSTILE,
            Mode::Immediate,
            limits,
            &[("behaviour", "fill"), ("fill_mib", "60")],
        );
    }
    for behaviour in ["random", "memory"] {
        register(
            &reg,
            behaviour,
            wasm::HOSTILE,
            Mode::Immediate,
            limits,
            &[("behaviour", behaviour)],
        );
    }
    // A window of 20 changes, each emitting just under its 1 MiB output
    // cap: the host copies 20 MiB out of the sandbox per window.
    let window = 20;
    let batch_limits = Limits {
        max_output_bytes: 1 << 20,
        ..limits
    };
    register(
        &reg,
        "big-window",
        wasm::HOSTILE,
        Mode::Batch {
            max_count: window,
            max_bytes: usize::MAX / 2,
            max_age_secs: 3600,
        },
        batch_limits,
        &[("behaviour", "huge-output"), ("output_kib", "1000")],
    );

    // Compile once, outside the measured run (the cranelift compile is not
    // a plugin's doing, and a warm dispatcher loads precompiled code).
    let (status, _) = peak_of_run(&reg, &events, &out, &cache);
    assert_eq!(status, 0);
    let (status, peak) = peak_of_run(&reg, &events, &out, &cache);
    assert_eq!(status, 0);

    // The run did what it is measured for.
    for i in 0..4 {
        let receiver = format!("fill-{i}");
        assert!(!prism_e2e::bodies(&out, &receiver).is_empty(), "{receiver}");
        assert!(
            prism_e2e::dead_letters(&out, &receiver).is_empty(),
            "every fill call reached its 60 MiB"
        );
    }
    let window_bytes: usize = prism_e2e::bodies(&out, "big-window")
        .iter()
        .map(|b| b.len())
        .sum();
    assert!(window_bytes >= 20 * 1000 * 1024, "{window_bytes} bytes");
    for hostile in ["random", "memory"] {
        assert!(
            !prism_e2e::dead_letters(&out, hostile).is_empty(),
            "{hostile} was stopped"
        );
    }

    let largest = Limits {
        max_output_bytes: batch_limits.max_output_bytes,
        ..limits
    };
    let formula = MemoryBudget {
        total_mib: 0,
        threads: THREADS,
        max_instances: prism_engine::EngineOptions::default().max_instances,
    }
    .worst_case_mib(&largest, window);
    println!("peak RSS {peak} MiB, formula {formula} MiB");
    assert!(
        peak <= formula,
        "peak RSS {peak} MiB over the formula's {formula} MiB"
    );
}

/// Eight memories cost what one does: a component whose seven extra core
/// modules each grow a memory of their own by 60 MiB and touch it (see
/// `prism_engine::handmade`, `Accepts::Hogs`) peaks no higher than a one-memory plugin filling
/// 60 MiB of the same 64 MiB cap. With a cap per memory it would hold 7 ×
/// 60 MiB per sandbox.
#[test]
fn a_component_with_eight_memories_is_held_to_one_cap() {
    use prism_engine::handmade::{Accepts, receiver};
    let wasm = receiver(Accepts::Hogs {
        count: 7,
        mib: 60,
        strict: false,
    });
    let engine = prism_e2e::engine();
    if let Err(e) = engine.load(&wasm) {
        panic!("the hand-made component does not load: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eight.wasm");
    std::fs::write(&path, &wasm).unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, sample(10)).unwrap();
    let limits = Limits {
        timeout_ms: 10_000,
        memory_mib: 64,
        ..Limits::default()
    };
    let peak = |name: &str, wasm_path: &str, config: &[(&str, &str)]| {
        let (reg, out, cache) = (
            dir.path().join(name).join("reg"),
            dir.path().join(name).join("out"),
            dir.path().join(name).join("cache"),
        );
        for i in 0..2 {
            register(
                &reg,
                &format!("{name}-{i}"),
                wasm_path,
                Mode::Immediate,
                limits,
                config,
            );
        }
        let (status, _) = peak_of_run(&reg, &events, &out, &cache);
        assert_eq!(status, 0);
        let (status, peak) = peak_of_run(&reg, &events, &out, &cache);
        assert_eq!(status, 0);
        for i in 0..2 {
            assert!(
                prism_e2e::dead_letters(&out, &format!("{name}-{i}")).is_empty(),
                "{name} ran cleanly"
            );
        }
        peak
    };
    let eight = peak("eight", path.to_str().unwrap(), &[]);
    let one = peak(
        "one",
        wasm::HOSTILE,
        &[("behaviour", "fill"), ("fill_mib", "60")],
    );
    println!("peak RSS: eight memories {eight} MiB, one memory at the cap {one} MiB");
    assert!(
        eight <= one + 32,
        "eight memories peaked at {eight} MiB, one at the same cap at {one} MiB"
    );
}
