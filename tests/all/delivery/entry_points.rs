//! The Lambda path through its real entry points: the `prism-lambda`
//! binary under cargo lambda's runtime API emulator, `prism dev` following a
//! stream, and `prism plugin diff` replaying a stream's last records.

use prism_e2e::wasm;
use serde_json::{Value, json};

use crate::support::emulator::{Emulator, log_lines};
use crate::support::world::{World, products};
use crate::{prism, text};

#[test]
fn the_real_lambda_binary_runs_under_the_runtime_api_emulator() {
    let Some(w) = World::new("lambda-emulated") else {
        return;
    };
    let Some(mut emulator) = Emulator::start() else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    let prices_q = w.register_pricelist();
    w.write(&products(0..2));
    let records = w.records();

    let cache = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let spool = w.spool();
    emulator.run(
        env!("CARGO_BIN_EXE_prism-lambda-under-test"),
        &[
            ("PRISM_REGISTRY_TABLE", &w.table),
            ("PRISM_PLUGIN_BUCKET", &w.bucket),
            ("PRISM_LEDGER_TABLE", &w.ledger),
            ("PRISM_SPOOL_TABLE", &spool),
            ("PRISM_CACHE_DIR", cache.path().to_str().unwrap()),
            ("AWS_ENDPOINT_URL", &w.ep),
        ],
        log.path(),
    );
    let invoke = |data: &str| emulator.invoke(data);
    let (ok, out, err) = invoke(&json!({ "Records": records }).to_string());
    assert!(ok, "invoke failed:\n{out}\n{err}");
    let response: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        response,
        json!({"batchItemFailures": []}),
        "{}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    assert_eq!(w.bodies(&site_q).len(), 2);
    assert!(w.bodies(&prices_q).is_empty(), "the price list buffers");

    // The scheduled tick, forced: the buffer goes out as one window.
    let (ok, out, err) = invoke(r#"{"prism": "tick", "force": true}"#);
    assert!(ok, "tick failed:\n{out}\n{err}");
    let response: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        response["flushed"],
        1,
        "{response}\n{}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    assert_eq!(response["waiting"], 0, "{response}");
    let prices = w.bodies(&prices_q);
    assert_eq!(prices.len(), 1);
    assert_eq!(prices[0].lines().count(), 3, "header and two rows");

    // A malformed event is an invocation error, named.
    let (ok, out, err) = invoke(r#"{"x": 1}"#);
    assert!(!ok, "{out}");
    assert!(
        err.contains("malformed event: neither a DynamoDB stream event"),
        "{err}"
    );

    drop(emulator);
    let logs = std::fs::read_to_string(log.path()).unwrap();
    let lines = log_lines(log.path());
    assert!(lines.iter().any(|l| l["message"] == "cold start"), "{logs}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "batch handled" && l["records"] == 2),
        "{logs}"
    );
    let emf = lines
        .iter()
        .find(|l| l["Receiver"] == "website")
        .unwrap_or_else(|| panic!("no EMF line for website:\n{logs}"));
    assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "prism");
    assert_eq!(emf["ChangesSeen"], 2.0);
    assert_eq!(emf["Messages"], 2.0);
}

#[test]
fn prism_dev_follows_the_stream_and_reports_what_it_holds() {
    let Some(w) = World::new("dev") else { return };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    w.write(&products(0..3));
    let dev = |extra: &[&str]| w.dev(extra);
    let o = dev(&[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("following arn:aws:dynamodb:"), "{out}");
    assert!(out.contains(": 3 records -> website 3/3 msgs"), "{out}");
    assert_eq!(w.bodies(&site_q).len(), 3);

    // A receiver whose queue does not exist: held, reported, exit status 1.
    w.register(wasm::LOGISTICS, "warehouse", &[], false);
    w.write(&products(3..4));
    let o = dev(&["--metrics"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("held for a retry"), "{out}");
    assert!(out.contains("records still held for a retry"), "{out}");
    assert!(
        out.contains("\"CloudWatchMetrics\""),
        "--metrics prints EMF lines: {out}"
    );
    // --from-start replays the stream: the website sees all four again.
    assert_eq!(w.bodies(&site_q).len(), 4);

    let o = prism(&[
        "dev",
        "--table",
        &w.table,
        "--model-table",
        &w.model,
        "--endpoint-url",
        &w.ep,
        "--once",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("needs the plugin bucket"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn plugin_diff_replays_the_last_records_of_the_stream() {
    let Some(w) = World::new("diff-stream") else {
        return;
    };
    w.register(wasm::WEBSITE, "website", &[], true);
    w.write(&products(0..6));
    let diff = |candidate: &str| {
        let args = [
            "plugin",
            "diff",
            candidate,
            "--receiver",
            "website",
            "--model-table",
            &w.model,
            "--last",
            "4",
            "--table",
            &w.table,
            "--bucket",
            &w.bucket,
            "--endpoint-url",
            &w.ep,
            "--region",
            "us-east-1",
        ];
        prism(&args)
    };
    let o = diff(wasm::WEBSITE);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.ends_with("4 outputs compared: 4 identical, 0 changed, 0 added, 0 removed\n"),
        "{out}"
    );
    let o = diff(wasm::LEAFLET);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    // The last four of six inserts: P-00002 … P-00005.
    assert!(
        out.contains("== P-00005 (sequence ") && !out.contains("== P-00001 "),
        "{out}"
    );
}

#[test]
fn prism_dev_flushes_its_in_process_buffers_when_interrupted() {
    use std::io::{BufRead, BufReader};
    let Some(w) = World::new("dev-interrupt") else {
        return;
    };
    let prices_q = w.register_pricelist();
    w.write(&products(0..3));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_prism-under-test"))
        .args([
            "dev",
            "--from-start",
            "--interval-ms",
            "100",
            "--model-table",
            &w.model,
            "--bucket",
            &w.bucket,
            "--table",
            &w.table,
            "--endpoint-url",
            &w.ep,
            "--region",
            "us-east-1",
        ])
        .env(
            "PRISM_CACHE_DIR",
            std::env::temp_dir().join("prism-e2e-cache"),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A watchdog: a dev that never prints the expected line must not hang the suite.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(120));
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains(": 3 records -> pricelist 0/3 msgs (3 buffered)") {
            break;
        }
    }
    assert!(
        w.bodies(&prices_q).is_empty(),
        "buffered, not sent: {seen:#?}"
    );
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen:#?}\n{rest:#?}");
    assert!(
        rest.iter().any(|l| l.contains("1 windows flushed")),
        "{rest:#?}"
    );
    let bodies = w.bodies(&prices_q);
    assert_eq!(
        bodies.len(),
        1,
        "the buffer went out before the process ended"
    );
    assert_eq!(bodies[0].lines().count(), 4, "header and three rows");
}
