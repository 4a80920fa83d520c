//! Hostile plugins: each is stopped with a clear error for the change it
//! misbehaves on, its other changes still go through, and the good
//! receivers deliver exactly what they deliver without it.

use std::time::{Duration, Instant};

use prism_e2e::{bodies, changes, dead_letters, engine, register, run, sample, wasm};
use prism_types::limits::Limits;
use prism_types::manifest::Mode;

/// (behaviour, expected error kind, text the error must contain)
const CASES: &[(&str, &str, &str)] = &[
    ("loop", "timeout", "exceeded its 50 ms time budget"),
    ("memory", "memory-limit", "over its cap of 16777216 bytes"),
    // 5 MiB of body against a 256 KiB cap: refused while being lifted,
    // before the host copies it (the cap leaves room for 100 messages'
    // metadata and a reason: 829,980 bytes).
    (
        "huge-output",
        "output",
        "tried to pass more than 829980 bytes to the host in one call",
    ),
    // 10,000 messages, emitted one at a time (prism:receiver@0.2.0): the
    // host stops the call at the first one over the limit. (A 0.1 plugin's
    // list alone was over the host-copy cap and refused unlifted.)
    (
        "many-messages",
        "output",
        "returned 101 messages, over its limit of 100",
    ),
    ("panic", "trap", "boom: no price for P-00001"),
    ("recursion", "stack-overflow", "stack overflow"),
    ("file", "trap", "could not open /etc/passwd"),
    (
        "retry",
        "retry-exhausted",
        "still asking to retry after 2 retries: downstream lookup unavailable",
    ),
    ("reject", "rejected", "rejected: P-00001 has no EAN"),
    (
        "malformed",
        "output",
        "malformed result: message 0: content type \"not a content type\"",
    ),
    // Blocks inside a WASI host call (`std::thread::sleep`): virtual time
    // turns the hour into an immediate timeout.
    ("sleep", "timeout", "exceeded its 10000 ms time budget"),
    // Cheap in the guest, huge for a host that copies before it checks.
    // On 0.2.0 each message is emitted, checked and counted on its own: the
    // second 200 KiB body crosses the 256 KiB limit and the call stops
    // there, after the host copied 400 KiB, not 200 MB.
    (
        "alias-output",
        "output",
        "returned 409600 bytes of message bodies, over its limit of 262144",
    ),
    (
        "alias-log",
        "output",
        "tried to pass more than 829980 bytes to the host in one call",
    ),
    // 64 MiB of randomness, which the host used to allocate before the
    // guest's memory cap could say no.
    ("random", "trap", "exceeds limit 65536"),
];

const TARGET: &str = "P-00001";

#[test]
fn every_hostile_plugin_fails_alone_and_names_what_and_where() {
    let stream = changes(&sample(4));
    let targeted = stream.iter().filter(|c| c.key == TARGET).count();
    assert!(
        targeted >= 2,
        "the sample must touch {TARGET} more than once"
    );

    // Baseline: the good receivers alone.
    let base = tempfile::tempdir().unwrap();
    let (reg, out) = (base.path().join("reg"), base.path().join("out"));
    prism_e2e::immediate(&reg, "website", wasm::WEBSITE);
    prism_e2e::immediate(&reg, "logistics", wasm::LOGISTICS);
    let e = engine();
    run(&e, &reg, &stream, &out, 2);
    let base_website = bodies(&out, "website");
    let base_logistics = bodies(&out, "logistics");
    assert!(!base_website.is_empty() && !base_logistics.is_empty());

    // The same, with every hostile plugin beside them.
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    prism_e2e::immediate(&reg, "website", wasm::WEBSITE);
    prism_e2e::immediate(&reg, "logistics", wasm::LOGISTICS);
    for (behaviour, _, _) in CASES {
        // Only the endless loop gets a tight budget; the others get a generous
        // one, so a loaded machine cannot turn their real error into a timeout.
        let timeout_ms = if *behaviour == "loop" { 50 } else { 10_000 };
        let limits = Limits {
            timeout_ms,
            memory_mib: 16,
            ..prism_e2e::relaxed()
        };
        let config = [("behaviour", *behaviour), ("only_key", TARGET)];
        register(
            &reg,
            &format!("h-{behaviour}"),
            wasm::HOSTILE,
            Mode::Immediate,
            limits,
            &config,
        );
    }
    let (set, report) = run(&e, &reg, &stream, &out, 2);
    assert_eq!(set.active.len(), 2 + CASES.len());
    assert_eq!(
        prism_engine::host_copy_cap(&Limits::default(), 1),
        829_980,
        "the cap the expected texts name"
    );

    assert_eq!(
        bodies(&out, "website"),
        base_website,
        "a good receiver is not affected"
    );
    assert_eq!(
        bodies(&out, "logistics"),
        base_logistics,
        "a good receiver is not affected"
    );
    assert_eq!(report.receivers["website"].errors(), 0);

    let digest = prism_types::digest::Digest::of(&prism_e2e::read(wasm::HOSTILE)).to_string();
    for (behaviour, kind, text) in CASES {
        let id = format!("h-{behaviour}");
        let st = &report.receivers[&id];
        let dead = dead_letters(&out, &id);
        assert_eq!(
            dead.len(),
            targeted,
            "{id}: one dead letter per change of {TARGET}: {:?}",
            st.first_errors
        );
        for d in &dead {
            assert_eq!(d["key"], TARGET, "{id}");
            assert_eq!(d["error_kind"], *kind, "{id}: {d}");
            let err = d["error"].as_str().unwrap();
            assert!(err.contains(text), "{id}: {err}");
            assert!(
                err.starts_with(&format!(
                    "receiver {id} (plugin {digest}) on key {TARGET} sequence "
                )),
                "{id}: {err}"
            );
            assert_eq!(d["plugin_digest"], digest.as_str());
            assert_eq!(
                d["change"]["key"], TARGET,
                "the original change is kept for replay"
            );
            assert!(d["change"]["new"].is_object() || d["change"]["old"].is_object());
        }
        // Its other changes went through.
        assert_eq!(bodies(&out, &id).len(), stream.len() - targeted, "{id}");
        assert_eq!(st.errors(), targeted as u64, "{id}");
        assert_eq!(st.errors_by_kind[*kind], targeted as u64, "{id}");
    }
}

#[test]
fn a_chatty_plugin_is_capped_not_failed() {
    let stream = changes(&sample(1));
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    register(
        &reg,
        "chatty",
        wasm::HOSTILE,
        Mode::Immediate,
        prism_e2e::relaxed(),
        &[("behaviour", "chatty")],
    );
    let (_, report) = run(&engine(), &reg, &stream, &out, 1);
    assert_eq!(report.receivers["chatty"].errors(), 0);
    assert_eq!(bodies(&out, "chatty").len(), stream.len());
}

#[test]
fn a_hostile_batch_receiver_parks_the_whole_window() {
    let stream = changes(&sample(2));
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    let batch = Mode::Batch {
        max_count: 1000,
        max_bytes: 1 << 30,
        max_age_secs: 1_000_000,
    };
    register(
        &reg,
        "bad-batch",
        wasm::HOSTILE,
        batch,
        prism_e2e::relaxed(),
        &[("behaviour", "panic")],
    );
    register(
        &reg,
        "pricelist",
        wasm::PRICELIST,
        batch,
        prism_e2e::relaxed(),
        &[],
    );
    let (_, report) = run(&engine(), &reg, &stream, &out, 2);
    let dead = dead_letters(&out, "bad-batch");
    assert_eq!(
        dead.len(),
        stream.len(),
        "every change of the failed window is parked"
    );
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains(&format!("batch of {} changes", stream.len())),
        "{}",
        dead[0]
    );
    assert_eq!(report.receivers["pricelist"].errors(), 0);
    assert_eq!(bodies(&out, "pricelist").len(), 1);
}

/// A sandbox serves several changes (limits.reuse), but never carries
/// failure from one change to another: a plugin that leaks memory across
/// calls runs into its memory limit in a reused sandbox, and that change is
/// tried again in a fresh one, so no change fails because of earlier ones.
#[test]
fn a_reused_sandbox_never_makes_a_later_change_fail() {
    let stream = prism_e2e::changes(&prism_e2e::sample(30));
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    prism_e2e::register(
        &reg,
        "leaky",
        prism_e2e::wasm::HOSTILE,
        prism_types::manifest::Mode::Immediate,
        prism_types::limits::Limits {
            memory_mib: 64,
            ..prism_e2e::relaxed()
        },
        &[("behaviour", "leak")],
    );
    let out = dir.path().join("out");
    let (_, report) = prism_e2e::run(&prism_e2e::engine(), &reg, &stream, &out, 1);
    let st = &report.receivers["leaky"];
    assert!(
        stream.len() > 7,
        "enough changes to fill 64 MiB at 8 MiB each"
    );
    assert_eq!(st.errors(), 0, "{:?}", st.first_errors);
    assert_eq!(st.messages as usize, stream.len());
}

/// Reuse is real (a stateful plugin sees it) and bounded by limits.reuse;
/// with reuse = 1 every change gets a fresh sandbox.
#[test]
fn limits_reuse_bounds_how_many_changes_a_sandbox_serves() {
    let stream = prism_e2e::changes(&prism_e2e::sample(10));
    let calls = |reuse: u32| -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("reg");
        prism_e2e::register(
            &reg,
            "counter",
            prism_e2e::wasm::HOSTILE,
            prism_types::manifest::Mode::Immediate,
            prism_types::limits::Limits {
                reuse,
                ..prism_e2e::relaxed()
            },
            &[("behaviour", "count")],
        );
        let out = dir.path().join("out");
        prism_e2e::run(&prism_e2e::engine(), &reg, &stream, &out, 1);
        prism_e2e::bodies(&out, "counter")
            .iter()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(b).unwrap()["calls"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert!(calls(1).iter().all(|&n| n == 1));
    let four = calls(4);
    assert_eq!(four.iter().max(), Some(&4), "{four:?}");
    assert!(four.contains(&1) && four.len() > 8);
}

/// `std::thread::sleep` waits in WASI host code, where the epoch never
/// reaches. In virtual time it does not wait at all: an hour's sleep is a
/// timeout at once, however large the budget, and no worker thread is held.
#[test]
fn a_plugin_that_sleeps_for_an_hour_times_out_without_waiting() {
    let stream = changes(&sample(1));
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    let budget = Duration::from_secs(30);
    register(
        &reg,
        "sleeper",
        wasm::HOSTILE,
        Mode::Immediate,
        Limits {
            timeout_ms: budget.as_millis() as u64,
            ..prism_e2e::relaxed()
        },
        &[("behaviour", "sleep")],
    );
    prism_e2e::immediate(&reg, "website", wasm::WEBSITE);
    let started = Instant::now();
    let (_, report) = run(&engine(), &reg, &stream, &out, 1);
    let took = started.elapsed();
    let st = &report.receivers["sleeper"];
    assert_eq!(st.errors_by_kind["timeout"], stream.len() as u64);
    assert_eq!(report.receivers["website"].errors(), 0);
    // Correctness, not speed: had any sleep waited, the run would have
    // taken at least one budget per change.
    assert!(
        took < budget,
        "{} sleeps took {took:?}: a sleep waited in real time",
        stream.len()
    );
}

/// A short sleep moves the plugin's own clocks by exactly what it slept,
/// wall and monotonic alike, so its output replays byte for byte; the same
/// sleep over a smaller budget is a timeout (virtual time is charged).
#[test]
fn virtual_time_is_exact_deterministic_and_charged_to_the_budget() {
    let stream = changes(&sample(1));
    let outputs = |timeout_ms: u64| {
        let dir = tempfile::tempdir().unwrap();
        let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
        register(
            &reg,
            "napper",
            wasm::HOSTILE,
            Mode::Immediate,
            Limits {
                timeout_ms,
                ..prism_e2e::relaxed()
            },
            &[("behaviour", "nap")],
        );
        let (_, report) = run(&engine(), &reg, &stream, &out, 2);
        (bodies(&out, "napper"), report.receivers["napper"].clone())
    };
    let (first, st) = outputs(10_000);
    assert_eq!(st.errors(), 0, "{:?}", st.first_errors);
    assert_eq!(first.len(), stream.len());
    for body in &first {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["slept_ns"], 30_000_000, "{body}");
        assert_eq!(v["wall_ns"], 30_000_000, "{body}");
    }
    assert_eq!(outputs(10_000).0, first, "a replay is byte-identical");

    let (none, st) = outputs(20);
    assert!(none.is_empty());
    assert_eq!(st.errors_by_kind["timeout"], stream.len() as u64);
}

/// Run `stream` through the receivers of `reg` on one thread, with a
/// breaker that quarantines after 3 failures for an hour, parking into
/// `out`.
fn run_quarantining(
    reg: &std::path::Path,
    out: &std::path::Path,
    stream: &[prism_types::change::Change],
) -> prism_core::dispatch::RunReport {
    use prism_core::breaker::BreakerConfig;
    use prism_core::dispatch::{Dispatcher, Progress};
    use prism_core::receivers::ReceiverSet;
    use prism_core::sink::Outbox;
    use prism_types::registry::LocalRegistry;
    let set = ReceiverSet::load(&engine(), LocalRegistry::new(reg).load().unwrap());
    let d = Dispatcher::builder()
        .threads(1)
        .breaker(BreakerConfig {
            threshold: 3,
            cool_down: Duration::from_secs(3600),
            ..BreakerConfig::default()
        })
        .build();
    d.run(&set, stream, &Outbox::new(out), &Progress::default())
}

/// A plugin that answers `retry` for every change used to count as healthy:
/// each change cost its tries, and then its lane's, and the receiver was
/// never quarantined. A change still asking to retry is a failure now.
#[test]
fn a_receiver_that_always_asks_to_retry_is_quarantined() {
    let stream = changes(&sample(4));
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    register(
        &reg,
        "retrier",
        wasm::HOSTILE,
        Mode::Immediate,
        prism_e2e::relaxed(),
        &[("behaviour", "retry")],
    );
    let report = run_quarantining(&reg, &out, &stream);
    let st = &report.receivers["retrier"];
    assert_eq!(
        st.errors_by_kind["retry-exhausted"], 3,
        "{:?}",
        st.errors_by_kind
    );
    assert_eq!(st.quarantined, stream.len() as u64 - 3);
    assert_eq!(
        dead_letters(&out, "retrier").len(),
        stream.len(),
        "nothing lost"
    );
}

/// One receiver that loops is quarantined after `threshold` timeouts among
/// its recent calls: the plugin runs three times, not once per change, so a
/// hostile receiver costs the dispatcher at most `threshold` budgets per
/// cool-down. Its other changes are parked as `quarantined` (no spool
/// here), named, with the original change kept for replay; the good
/// receiver is untouched.
#[test]
fn a_looping_receiver_is_quarantined_and_costs_a_bounded_share() {
    let stream = changes(&sample(4));
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    prism_e2e::immediate(&reg, "website", wasm::WEBSITE);
    register(
        &reg,
        "looper",
        wasm::HOSTILE,
        Mode::Immediate,
        Limits {
            timeout_ms: 50,
            ..prism_e2e::relaxed()
        },
        &[("behaviour", "loop")],
    );
    let report = run_quarantining(&reg, &out, &stream);
    let st = &report.receivers["looper"];
    let rest = stream.len() as u64 - 3;
    assert_eq!(st.errors_by_kind["timeout"], 3, "{:?}", st.errors_by_kind);
    assert_eq!(st.quarantined, rest);
    assert_eq!(st.errors_by_kind["quarantined"], rest);
    let dead = dead_letters(&out, "looper");
    assert_eq!(dead.len(), stream.len());
    let quarantined: Vec<_> = dead
        .iter()
        .filter(|d| d["error_kind"] == "quarantined")
        .collect();
    assert_eq!(quarantined.len() as u64, rest);
    let err = quarantined[0]["error"].as_str().unwrap();
    assert!(
        err.starts_with("receiver looper (plugin sha256:")
            && err.contains("quarantined: its plugin failed 3 of its last 12 calls"),
        "{err}"
    );
    assert!(
        quarantined[0]["change"]["key"].is_string(),
        "kept for replay"
    );
    assert_eq!(report.receivers["website"].errors(), 0);
    let alone = dir.path().join("alone");
    prism_e2e::immediate(&alone.join("reg"), "website", wasm::WEBSITE);
    run(
        &engine(),
        &alone.join("reg"),
        &stream,
        &alone.join("out"),
        1,
    );
    assert_eq!(
        bodies(&out, "website"),
        bodies(&alone.join("out"), "website")
    );
}
