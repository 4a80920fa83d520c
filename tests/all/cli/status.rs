//! `prism status` against moto: queue and DLQ depths from SQS, the oldest
//! message's age from CloudWatch, lanes from the spool, quarantine from the
//! last error a dispatcher recorded; `--json` for scripts, `--watch`
//! refreshing; and a queue that cannot be read shown as such, not dropped.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use prism_aws::spool::DynamoSpool;
use prism_core::spool::{Lane, Spool, Spooled};
use prism_e2e::wasm;
use serde_json::{Value, json};

use crate::support::world::World;
use crate::{prism, text};

fn send(w: &World, url: &str, n: usize) {
    w.q.rt.block_on(async {
        for i in 0..n {
            w.q.client
                .send_message()
                .queue_url(url)
                .message_body(format!("m{i}"))
                .send()
                .await
                .unwrap();
        }
    });
}

fn status(w: &World, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "status",
        "--table",
        &w.table,
        "--endpoint-url",
        &w.ep,
        "--region",
        "us-east-1",
    ];
    args.extend(extra);
    prism(&args)
}

#[test]
fn status_shows_depths_age_lanes_and_quarantine_per_receiver() {
    let Some(w) = World::new("status") else {
        return;
    };
    let (site_q, site_dlq) = w.register(wasm::WEBSITE, "website", &["language=en"], true);
    let (wh_q, _) = w.register(wasm::LOGISTICS, "warehouse", &[], true);
    send(&w, &site_q, 3);
    send(&w, &site_dlq, 2);
    send(&w, &wh_q, 1);

    // SQS publishes the oldest message's age to CloudWatch; here the test does.
    let site_name = site_q.rsplit('/').next().unwrap().to_owned();
    w.q.rt.block_on(async {
        let config = prism_aws::sdk_config(&prism_aws::AwsTarget {
            endpoint_url: Some(w.ep.clone()),
            region: Some("us-east-1".into()),
        })
        .await;
        aws_sdk_cloudwatch::Client::new(&config)
            .put_metric_data()
            .namespace("AWS/SQS")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("ApproximateAgeOfOldestMessage")
                    .dimensions(
                        Dimension::builder()
                            .name("QueueName")
                            .value(&site_name)
                            .build(),
                    )
                    .timestamp((SystemTime::now() - Duration::from_secs(60)).into())
                    .value(754.0)
                    .unit(StandardUnit::Seconds)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });

    // Two retry lanes wait for the warehouse, one change each, since 10 min ago.
    let spool_table = format!("{}-spool", w.table);
    let spool = DynamoSpool::new(w.ddb.clone(), &spool_table, w.q.rt.handle().clone());
    let ten_min_ago = prism_core::spool::now_ms() - 600_000;
    let spool2 = spool.clone();
    std::thread::spawn(move || {
        for (key, seq) in [("P-1", "100"), ("P-2", "101")] {
            let lane = Lane::Retry {
                receiver: "warehouse".into(),
                key: key.into(),
            };
            let entry = Spooled {
                sequence: seq.into(),
                spooled_ms: ten_min_ago,
                bytes: 10,
                change: json!({"key": key}),
                sent: vec![],
                replay: false,
            };
            spool2.append(&lane, &[entry]).unwrap();
        }
    })
    .join()
    .unwrap();

    // A dispatcher reported the warehouse quarantined for another 10 minutes.
    w.q.rt
        .block_on(w.env.registry.record_error(
            "warehouse",
            "quarantined for another 600 s: its plugin kept failing (4 changes not run in this batch)",
        ))
        .unwrap();

    let o = status(&w, &["--spool-table", &spool_table, "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let row = |r: &str| {
        doc["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["receiver"] == r)
            .unwrap_or_else(|| panic!("no {r} in {doc}"))
            .clone()
    };
    let site = row("website");
    assert_eq!(site["state"], "enabled", "{site}");
    assert_eq!(site["queue"]["depth"], 3, "{site}");
    assert_eq!(site["queue"]["oldest_age_seconds"], 754, "{site}");
    assert_eq!(site["dead_letter_queue"]["depth"], 2, "{site}");
    assert_eq!(site["lanes_waiting"], 0, "{site}");
    assert_eq!(site["problems"], json!([]), "{site}");
    let wh = row("warehouse");
    assert_eq!(wh["state"], "quarantined", "{wh}");
    assert!(wh["quarantined_until"].is_string(), "{wh}");
    assert_eq!(wh["queue"]["depth"], 1, "{wh}");
    assert_eq!(
        wh["queue"]["oldest_age_seconds"],
        Value::Null,
        "no datapoint: {wh}"
    );
    assert_eq!(wh["dead_letter_queue"]["depth"], 0, "{wh}");
    assert_eq!(wh["lanes_waiting"], 2, "{wh}");
    assert_eq!(wh["changes_waiting"], 2, "{wh}");
    let waited = wh["oldest_waiting_seconds"].as_u64().unwrap();
    assert!((600..700).contains(&waited), "{wh}");

    // The table says the same.
    let o = status(&w, &["--spool-table", &spool_table]);
    let (out, _) = text(&o);
    let line = out.lines().find(|l| l.starts_with("website")).unwrap();
    assert!(line.contains("  3  ") && line.contains("12m"), "{out}");
    let line = out.lines().find(|l| l.starts_with("warehouse")).unwrap();
    assert!(line.contains("quarantined until "), "{out}");
    assert!(line.contains("2 (10m)"), "{out}");

    // Disabled beats quarantined.
    w.prism(&["plugin", "disable", "warehouse"]);
    let o = status(&w, &["--json"]);
    let doc: Value = serde_json::from_str(&text(&o).0).unwrap();
    let wh = doc["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["receiver"] == "warehouse")
        .unwrap()
        .clone();
    assert_eq!(wh["state"], "disabled", "{wh}");
    assert_eq!(wh["lanes_waiting"], Value::Null, "no --spool-table: {wh}");
}

#[test]
fn a_queue_status_cannot_read_is_shown_and_the_exit_code_says_so() {
    let Some(w) = World::new("status-missing") else {
        return;
    };
    // Registered to a queue that was never created (or was deleted).
    let (missing, _) = w.register(wasm::LOGISTICS, "warehouse", &[], false);
    let o = status(&w, &["--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let wh = &doc["receivers"][0];
    assert_eq!(wh["queue"]["depth"], Value::Null, "{wh}");
    let problems = wh["problems"].to_string();
    assert!(problems.contains(&format!("queue {missing}")), "{problems}");
    // The DLQ exists, and is still read.
    assert_eq!(wh["dead_letter_queue"]["depth"], 0, "{wh}");

    let o = status(&w, &[]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        out.contains(&format!("? warehouse: queue {missing}")),
        "{out}"
    );
}

#[test]
fn watch_refreshes_until_stopped() {
    let Some(w) = World::new("status-watch") else {
        return;
    };
    let (q, _) = w.register(wasm::LOGISTICS, "warehouse", &[], true);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_prism-under-test"))
        .args([
            "status",
            "--json",
            "--watch",
            "1",
            "--table",
            &w.table,
            "--endpoint-url",
            &w.ep,
            "--region",
            "us-east-1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let depth = |l: String| -> Value {
        serde_json::from_str::<Value>(&l).unwrap()["receivers"][0]["queue"]["depth"].clone()
    };
    assert_eq!(depth(lines.next().unwrap().unwrap()), 0);
    send(&w, &q, 2);
    // A later refresh sees the new messages.
    let seen = (0..10)
        .map(|_| depth(lines.next().unwrap().unwrap()))
        .any(|d| d == 2);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen, "--watch never showed the two new messages");
}
