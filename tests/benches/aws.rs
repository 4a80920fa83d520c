//! `cargo bench -p prism-e2e --bench aws`: the Lambda path's throughput
//! with real AWS latency. The stream processor (the code the dispatcher
//! Lambda runs) handles stream batches of 100 records for many receivers,
//! reaching AWS through the fault proxy, which adds a fixed latency to every
//! call (10 ms, as from a Lambda to SQS and DynamoDB in-region), counts
//! calls by action, and answers `SendMessageBatch` itself (moto's queue
//! bookkeeping would otherwise be what is measured). DynamoDB (registry,
//! ledger, outputs, spool) is moto behind the same latency.
//!
//! Printed per path (change by change, then packed): receiver-messages/s,
//! SQS requests per message, DynamoDB requests per change, peak RSS, and
//! this process's CPU time per message with the rate 2 vCPUs of it would
//! carry (moto, a Python process on the same cores, is not counted there:
//! on a 2-core machine it takes most of the CPU, so the wall-clock rate
//! is moto's, not the dispatcher's).
//!
//! Needs moto: `PRISM_TEST_AWS_ENDPOINT`, or `moto_server` on the PATH
//! (`. scripts/tools` puts it there). `PRISM_BENCH_CHANGES` (default 1000),
//! `PRISM_BENCH_LATENCY_MS` (default 10), `PRISM_BENCH_WINDOW` (the batched
//! receivers' window, default 100), `PRISM_BENCH_THREADS` (the
//! dispatcher's worker threads, default 2).
//!
//! The path before packing (change by change, every batched change through
//! the spool) is no longer in the code: its row comes from the git tag
//! `perf-baseline-before-packing`, where this benchmark still prints it
//! (docs/performance.md, "Comparing with the path before").

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use prism_core::dispatch::TickOptions;
use prism_core::spool::now_ms;
use prism_e2e::aws::{create_ledger_table, create_outputs_table, create_spool_table, setup};
use prism_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use prism_e2e::process::{cpu_seconds, peak_mib, reset_peak, rss_mib};
use prism_e2e::wasm;
use prism_sample::{StreamWriter, product};
use serde_json::{Value, json};

const RECEIVERS: usize = 20;
const BATCH: usize = 100;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// moto: the one the environment names, or one started here.
fn moto() -> (String, Option<Child>) {
    if let Ok(ep) = std::env::var("PRISM_TEST_AWS_ENDPOINT") {
        return (ep, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server is not on the PATH: run `. scripts/tools` first, or set PRISM_TEST_AWS_ENDPOINT");
    let ep = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (ep, Some(child))
}

fn prism(args: &[&str]) {
    use clap::Parser;
    let cli = prism_cli::Cli::parse_from(std::iter::once("prism").chain(args.iter().copied()));
    let code = prism_cli::run(cli).expect("prism");
    assert_eq!(
        format!("{code:?}"),
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );
}

/// A runtime and an SQS client for the setup.
struct Bench {
    rt: tokio::runtime::Runtime,
    sqs: aws_sdk_sqs::Client,
}

impl Bench {
    fn new(ep: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let target = prism_aws::AwsTarget {
            endpoint_url: Some(ep.to_owned()),
            region: Some("us-east-1".into()),
        };
        let sqs = aws_sdk_sqs::Client::new(&rt.block_on(prism_aws::sdk_config(&target)));
        Self { rt, sqs }
    }

    /// A queue named `name` (FIFO when it ends in `.fifo`); its URL.
    fn create(&self, name: &str) -> String {
        self.rt.block_on(async {
            let mut req = self.sqs.create_queue().queue_name(format!("bench-{name}"));
            if name.ends_with(".fifo") {
                req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
            }
            req.send().await.unwrap().queue_url.unwrap()
        })
    }
}

struct Row {
    path: &'static str,
    messages: u64,
    wall: Duration,
    sqs: u64,
    ddb: u64,
    peak: u64,
    start: u64,
    cpu: f64,
}

fn main() {
    let changes = env_or("PRISM_BENCH_CHANGES", 1000) as usize;
    let latency = Duration::from_millis(env_or("PRISM_BENCH_LATENCY_MS", 10));
    let window = env_or("PRISM_BENCH_WINDOW", 100).to_string();
    let threads = env_or("PRISM_BENCH_THREADS", 2).to_string();
    let (ep, mut child) = moto();
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        if std::env::var_os(k).is_none() {
            eprintln!(
                "set {k} (any value does for moto), e.g. AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
            );
            std::process::exit(2);
        }
    }
    let q = Bench::new(&ep);
    let env = q.rt.block_on(setup(&ep, "bench-aws"));
    // 20 receivers: 14 immediate on standard queues, 3 immediate on FIFO
    // queues, 3 batched (windows of 100).
    for n in 0..RECEIVERS {
        let receiver = format!("r{n:02}");
        let queue = q.create(&if (14..17).contains(&n) {
            format!("{receiver}.fifo")
        } else {
            receiver.clone()
        });
        let mut args = vec![
            "plugin",
            "register",
            wasm::HOSTILE,
            "--receiver",
            &receiver,
            "--bucket",
            &env.bucket,
            "--queue",
            &queue,
            "--table",
            &env.table,
            "--endpoint-url",
            &ep,
            "--region",
            "us-east-1",
        ];
        let batched = n >= 17;
        if batched {
            args.extend(["--batch-max-count", &window]);
        }
        prism(&args);
    }
    // A first batch of other products warms each path (sandboxes, pools,
    // connections) outside the timing; then the measured changes.
    let mut w = StreamWriter::new();
    for n in changes..changes + BATCH {
        let doc = product(n, 7);
        w.push(doc["pk"].as_str().unwrap(), None, Some(&doc));
    }
    for n in 0..changes {
        let doc = product(n, 7);
        w.push(doc["pk"].as_str().unwrap(), None, Some(&doc));
    }
    let (warmup, records) = w.records().split_at(BATCH);
    let (warmup, records): (Vec<Value>, Vec<Value>) = (warmup.to_vec(), records.to_vec());
    drop(w);

    println!(
        "\nThe Lambda path with {} ms per AWS call: {} changes × {RECEIVERS} receivers (14 immediate standard, 3 immediate FIFO, 3 batched in windows of {window}), stream batches of {BATCH}, {threads} dispatcher threads",
        latency.as_millis(),
        changes
    );
    println!(
        "\n| path | receiver-messages | wall time | receiver-messages/s | SQS requests per message | DynamoDB requests per change | peak RSS (+ over the start of the run) | CPU per message | ceiling on 2 vCPUs (messages/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    let mut by_action_lines = Vec::new();
    for (n, (path, pack, overlap)) in [
        (
            "packed, concurrent, no I/O overlap",
            prism_core::dispatch::PACK,
            false,
        ),
        (
            "packed, concurrent, I/O beside the next unit",
            prism_core::dispatch::PACK,
            true,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        // Fresh state tables per path: the same changes, as new to each.
        let (ledger, outputs, spool) = (
            format!("{}-ledger-{n}", env.table),
            format!("{}-outputs-{n}", env.table),
            format!("{}-spool-{n}", env.table),
        );
        q.rt.block_on(async {
            create_ledger_table(&env.ddb, &ledger).await;
            create_outputs_table(&env.ddb, &outputs).await;
            create_spool_table(&env.ddb, &spool).await;
        });
        let proxy = FaultProxy::start(&ep, 1);
        proxy.set_latency(latency);
        proxy.set_rules(vec![Rule::always("SendMessageBatch", Fault::Accept)]);
        let cache = tempfile::tempdir().unwrap();
        let vars: BTreeMap<String, String> = [
            ("PRISM_REGISTRY_TABLE", env.table.as_str()),
            ("PRISM_PLUGIN_BUCKET", &env.bucket),
            ("PRISM_LEDGER_TABLE", &ledger),
            ("PRISM_OUTPUTS_TABLE", &outputs),
            ("PRISM_SPOOL_TABLE", &spool),
            ("AWS_ENDPOINT_URL", &proxy.url),
            ("PRISM_CACHE_DIR", cache.path().to_str().unwrap()),
            ("PRISM_THREADS", threads.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = prism_lambda::LambdaConfig::from_vars(|k| vars.get(k).cloned()).unwrap();
        let p = q.rt.block_on(config.processor()).unwrap();
        let dispatcher = p
            .dispatcher()
            .to_builder()
            .pack(pack)
            .overlap_io(overlap)
            .build();
        let p = p
            .into_builder()
            .metrics(false)
            .dispatcher(dispatcher)
            .build();
        // Warm: the registry read, the plugins compiled, a first batch.
        q.rt.block_on(p.handle(&json!({ "Records": warmup })))
            .unwrap();
        let before = proxy.calls();
        let tables_before = proxy.calls_by_table();
        reset_peak();
        let rss_before = rss_mib();
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let mut messages = 0;
        for batch in records.chunks(BATCH) {
            let out =
                q.rt.block_on(p.handle(&json!({ "Records": batch })))
                    .unwrap();
            assert!(
                out.response.batch_item_failures.is_empty(),
                "{:?}",
                out.response
            );
            messages += out
                .report
                .receivers
                .values()
                .map(|s| s.messages)
                .sum::<u64>();
        }
        let tick =
            q.rt.block_on(p.tick(TickOptions {
                now_ms: now_ms(),
                force: true,
                break_leases: false,
            }))
            .unwrap();
        messages += tick.receivers.values().map(|s| s.messages).sum::<u64>();
        let wall = started.elapsed();
        let cpu = cpu_seconds() - cpu_before;
        let after = proxy.calls();
        let delta = |action: &str| {
            after.get(action).copied().unwrap_or(0) - before.get(action).copied().unwrap_or(0)
        };
        let ddb: u64 = [
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "BatchGetItem",
            "BatchWriteItem",
            "Scan",
        ]
        .iter()
        .map(|a| delta(a))
        .sum();
        let row = Row {
            path,
            messages,
            wall,
            sqs: delta("SendMessageBatch"),
            ddb,
            peak: peak_mib(),
            start: rss_before,
            cpu,
        };
        println!(
            "| {} | {} | {:.1} s | {:.0} | {:.3} | {:.2} | {} MiB (+{} MiB) | {:.0} µs | {:.0} |",
            row.path,
            row.messages,
            row.wall.as_secs_f64(),
            row.messages as f64 / row.wall.as_secs_f64(),
            row.sqs as f64 / row.messages.max(1) as f64,
            row.ddb as f64 / changes as f64,
            row.peak,
            row.peak.saturating_sub(row.start),
            row.cpu * 1e6 / row.messages.max(1) as f64,
            2.0 * row.messages as f64 / row.cpu.max(1e-9),
        );
        let tables_after = proxy.calls_by_table();
        let by_action: Vec<String> = tables_after
            .iter()
            .map(|(a, n)| (a, n - tables_before.get(a).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .map(|(a, n)| format!("{a} {:.3}", n as f64 / changes as f64))
            .collect();
        by_action_lines.push(format!("{}: {}", row.path, by_action.join(", ")));
        rows.push(row);
    }
    println!("\nDynamoDB requests per change, by action and table:");
    for line in &by_action_lines {
        println!("- {line}");
    }
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
    }
}
