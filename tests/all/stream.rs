//! The Lambda path end to end against moto: plugins registered with the CLI
//! into DynamoDB and S3, items written to a model table with a stream, the
//! stream read through the Streams API and handed to the stream processor
//! exactly as Lambda would, and every SQS queue checked for exactly the
//! expected messages. Failure paths: a queue that does not exist (held,
//! reported, retried without duplicates), a plugin that rejects (its DLQ),
//! unreadable records, and registry changes on a warm dispatcher.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prism_e2e::aws::{Queues, create_ledger_table, create_model_table, delete, put, setup};
use prism_e2e::{bodies, engine, register, relaxed, wasm};
use prism_host::aws::{ShardCursor, StreamReader};
use prism_host::lambda::LambdaConfig;
use prism_host::manifest::Mode;
use prism_host::stream::{BatchOutcome, StreamProcessor};
use serde_json::{Value, json};

use crate::{prism, text};

/// One test's model table, stream, registry, bucket, ledger and queues.
struct World {
    q: Queues,
    ep: String,
    table: String,
    bucket: String,
    model: String,
    ledger: String,
    reader: StreamReader,
    cursors: Mutex<Vec<ShardCursor>>,
    ddb: aws_sdk_dynamodb::Client,
    env: prism_e2e::aws::AwsEnv,
}

impl World {
    fn new(test: &str) -> Option<Self> {
        let q = Queues::new(test)?;
        let ep = prism_e2e::aws::endpoint()?;
        let env = q.rt.block_on(setup(&ep, test));
        let model = format!("{}-model", env.table);
        let ledger = format!("{}-ledger", env.table);
        let (arn, streams) = q.rt.block_on(async {
            let arn = create_model_table(&env.ddb, &model).await;
            create_ledger_table(&env.ddb, &ledger).await;
            prism_e2e::aws::create_outputs_table(&env.ddb, &format!("{}-outputs", env.table)).await;
            let config = prism_host::aws::sdk_config(&prism_host::aws::AwsTarget {
                endpoint_url: Some(ep.clone()),
                region: Some("us-east-1".into()),
            })
            .await;
            (arn, aws_sdk_dynamodbstreams::Client::new(&config))
        });
        let reader = StreamReader::new(streams, arn);
        let cursors = q.rt.block_on(async {
            let mut out = Vec::new();
            for s in reader.shards().await.unwrap() {
                out.push(reader.open(&s, true).await.unwrap());
            }
            out
        });
        Some(Self {
            ddb: env.ddb.clone(),
            ep,
            table: env.table.clone(),
            bucket: env.bucket.clone(),
            model,
            ledger,
            reader,
            cursors: Mutex::new(cursors),
            env,
            q,
        })
    }

    /// `prism` against this world's registry; panics on failure.
    fn prism(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend([
            "--table",
            &self.table,
            "--endpoint-url",
            &self.ep,
            "--region",
            "us-east-1",
        ]);
        let o = prism(&all);
        let (out, err) = text(&o);
        assert!(o.status.success(), "prism {all:?}:\n{out}\n{err}");
        out
    }

    /// Register `wasm` as `receiver` with its own queue and DLQ (created
    /// unless `create` is false); returns (queue URL or name, DLQ URL).
    fn register(
        &self,
        wasm: &str,
        receiver: &str,
        config: &[&str],
        create: bool,
    ) -> (String, String) {
        self.register_to(wasm, receiver, config, receiver, create)
    }

    /// As [`Self::register`], to the queue `<prefix>-<queue>`.
    fn register_to(
        &self,
        wasm: &str,
        receiver: &str,
        config: &[&str],
        queue: &str,
        create: bool,
    ) -> (String, String) {
        let queue = if create {
            self.q.create(queue)
        } else {
            format!("{}-{queue}", self.q.prefix)
        };
        let dlq = self.q.create(&format!("{receiver}-dlq"));
        let mut args = vec![
            "plugin",
            "register",
            wasm,
            "--receiver",
            receiver,
            "--bucket",
            &self.bucket,
            "--queue",
            &queue,
            "--dead-letter-queue",
            &dlq,
        ];
        for c in config {
            args.extend(["--config", c]);
        }
        self.prism(&args);
        (queue, dlq)
    }

    /// A warm dispatcher as the Lambda builds it, from the same variables.
    fn processor(&self, extra: &[(&str, &str)]) -> StreamProcessor {
        let cache = tempfile::tempdir().unwrap().keep();
        let mut vars: BTreeMap<String, String> = [
            ("PRISM_REGISTRY_TABLE", self.table.as_str()),
            ("PRISM_PLUGIN_BUCKET", &self.bucket),
            ("PRISM_LEDGER_TABLE", &self.ledger),
            ("AWS_ENDPOINT_URL", &self.ep),
            ("PRISM_CACHE_DIR", cache.to_str().unwrap()),
            ("PRISM_THREADS", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = LambdaConfig::from_vars(|k| vars.get(k).cloned()).unwrap();
        let mut p = self.q.rt.block_on(config.processor()).unwrap();
        p.emit_metrics = false;
        p
    }

    fn write(&self, docs: &[Value]) {
        self.q.rt.block_on(async {
            for d in docs {
                put(&self.ddb, &self.model, d).await;
            }
        });
    }

    fn remove(&self, pk: &str) {
        self.q.rt.block_on(delete(&self.ddb, &self.model, pk));
    }

    /// Every stream record written since the last call, in shard order.
    fn records(&self) -> Vec<Value> {
        let mut cursors = self.cursors.lock().unwrap();
        self.q.rt.block_on(async {
            let mut out = Vec::new();
            for c in cursors.iter_mut() {
                loop {
                    let got = self.reader.read(c, 1000).await.unwrap();
                    if got.is_empty() {
                        break;
                    }
                    out.extend(got);
                }
            }
            out
        })
    }

    fn invoke(&self, p: &StreamProcessor, records: &[Value]) -> BatchOutcome {
        self.q
            .rt
            .block_on(p.handle(&json!({ "Records": records })))
            .unwrap()
    }

    fn bodies(&self, queue: &str) -> Vec<String> {
        let url = if queue.starts_with("http") {
            queue.to_owned()
        } else {
            self.q.rt.block_on(async {
                self.q
                    .client
                    .get_queue_url()
                    .queue_name(queue)
                    .send()
                    .await
                    .unwrap()
                    .queue_url
                    .unwrap()
            })
        };
        let mut b: Vec<String> = self.q.drain(&url).into_iter().map(|m| m.0).collect();
        b.sort();
        b
    }
}

/// What the local pipeline makes of `records` for one plugin: sorted bodies.
fn expected(
    records: &[Value],
    receiver: &str,
    wasm_path: &str,
    config: &[(&str, &str)],
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    register(
        &reg,
        receiver,
        wasm_path,
        Mode::Immediate,
        relaxed(),
        config,
    );
    let input = prism_host::input::parse(&json!({ "Records": records }).to_string(), "stream");
    assert!(input.errors.is_empty(), "{:?}", input.errors);
    let out = dir.path().join("out");
    prism_e2e::run(&engine(), &reg, &input.changes, &out, 2);
    let mut b = bodies(&out, receiver);
    b.sort();
    b
}

fn products(range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(|n| prism_host::sample::product(n, 7)).collect()
}

fn sequences(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned())
        .collect()
}

fn failed(o: &BatchOutcome) -> Vec<String> {
    o.response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[test]
fn stream_records_reach_standard_and_fifo_queues_as_the_local_pipeline_makes_them() {
    let Some(w) = World::new("lambda-same") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &["language=de"], true);
    let (wh_q, _) = w.register_to(wasm::LOGISTICS, "warehouse", &[], "warehouse.fifo", true);
    // Answers everything it is offered; the host offers only inserts,
    // removes and logistics changes.
    let echo_q = w.q.create("echo");
    w.prism(&[
        "plugin",
        "register",
        wasm::HOSTILE,
        "--receiver",
        "echo",
        "--bucket",
        &w.bucket,
        "--queue",
        &echo_q,
        "--interest",
        "/logistics/**",
    ]);
    let p = w.processor(&[]);

    let mut docs = products(0..6);
    w.write(&docs);
    docs[1]["logistics"]["weight_g"] = json!(999);
    docs[2]["prices"]["DE"]["amount"] = json!(12.5);
    w.write(&docs[1..3]);
    w.remove("P-00005");
    let records = w.records();
    assert_eq!(records.len(), 9, "6 inserts, 2 modifies, 1 remove");

    let out = w.invoke(&p, &records);
    assert!(failed(&out).is_empty(), "{:?}", out.response);
    assert_eq!(out.numbers.records, 9);
    let site = w.bodies(&site_q);
    assert_eq!(
        site,
        expected(&records, "website", wasm::WEBSITE, &[("language", "de")])
    );
    assert!(!site.is_empty());
    let wh = w.bodies(&wh_q);
    assert_eq!(wh, expected(&records, "warehouse", wasm::LOGISTICS, &[]));
    // The price change is not the warehouse's business.
    let st = &out.report.receivers["warehouse"];
    assert_eq!((st.seen, st.skipped), (9, 1), "{st:?}");
    let echo = &out.report.receivers["echo"];
    assert_eq!((echo.filtered, echo.messages), (1, 8), "{echo:?}");
    assert_eq!(w.bodies(&echo_q).len(), 8);
}

#[test]
fn a_dead_queue_holds_its_receiver_and_the_retry_repeats_nothing() {
    let Some(w) = World::new("lambda-dead") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    // The warehouse's queue does not exist yet.
    let (wh_q, _) = w.register(wasm::LOGISTICS, "warehouse", &[], false);
    let p = w.processor(&[]);
    let mut docs = products(0..4);
    w.write(&docs);
    docs[3]["logistics"]["weight_g"] = json!(1);
    w.write(&docs[3..]);
    let records = w.records();
    let seqs = sequences(&records);

    // Every record after the first the warehouse could not take is reported.
    let first = w.invoke(&p, &records);
    assert_eq!(
        failed(&first),
        seqs,
        "the first insert already needs the warehouse"
    );
    let site_first = w.bodies(&site_q);
    assert_eq!(
        site_first.len(),
        4,
        "the website got all it wanted (not the weight)"
    );
    assert!(first.report.receivers["warehouse"].first_errors[0].contains("warehouse"));

    // Lambda retries from the first failed record; the queue is still down.
    let again = w.invoke(&p, &records);
    assert_eq!(failed(&again), seqs);
    assert!(
        w.bodies(&site_q).is_empty(),
        "the website is not sent anything twice"
    );
    assert_eq!(again.report.receivers["website"].already_handled, 5);

    // The queue comes back: the retry delivers to the warehouse only.
    w.q.create("warehouse");
    let last = w.invoke(&p, &records);
    assert!(failed(&last).is_empty(), "{:?}", last.response);
    assert!(w.bodies(&site_q).is_empty());
    assert_eq!(
        w.bodies(&wh_q),
        expected(&records, "warehouse", wasm::LOGISTICS, &[])
    );
    assert_eq!(
        site_first,
        expected(&records, "website", wasm::WEBSITE, &[])
    );
}

#[test]
fn a_rejected_change_goes_to_its_receivers_dlq_and_blocks_no_one() {
    let Some(w) = World::new("lambda-reject") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    let (picky_q, picky_dlq) = w.register(
        wasm::HOSTILE,
        "picky",
        &["behaviour=reject", "only_key=P-00001"],
        true,
    );
    let p = w.processor(&[]);
    w.write(&products(0..3));
    let records = w.records();
    let out = w.invoke(&p, &records);
    assert!(
        failed(&out).is_empty(),
        "a rejection is parked, not retried"
    );
    assert_eq!(w.bodies(&site_q).len(), 3);
    assert_eq!(
        w.bodies(&picky_q).len(),
        2,
        "the other two changes went through"
    );
    let dead: Vec<Value> = w
        .bodies(&picky_dlq)
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d["receiver"], "picky");
    assert_eq!(d["key"], "P-00001");
    assert_eq!(d["error_kind"], "rejected");
    assert!(
        d["error"].as_str().unwrap().contains("P-00001 has no EAN"),
        "{d}"
    );
    assert_eq!(
        d["plugin_digest"],
        prism_host::digest::Digest::of(&prism_e2e::read(wasm::HOSTILE)).to_string()
    );
    assert_eq!(
        d["change"]["new"]["sku"], "P-00001",
        "the original change is kept"
    );
    assert_eq!(d["sequence"], records[1]["dynamodb"]["SequenceNumber"]);

    // Operators see it in `prism status`.
    let status = w.prism(&["status"]);
    let line = status.lines().find(|l| l.starts_with("picky")).unwrap();
    assert!(line.contains("P-00001 has no EAN"), "{status}");
    let line = status.lines().find(|l| l.starts_with("website")).unwrap();
    assert!(!line.contains("rejected"), "{status}");
}

#[test]
fn a_warm_dispatcher_picks_up_rollback_disable_and_new_receivers() {
    let Some(w) = World::new("lambda-reload") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &["language=en"], true);
    let (wh_q, _) = w.register(wasm::LOGISTICS, "warehouse", &[], true);
    let p = w.processor(&[("PRISM_RELOAD_SECS", "0")]);
    let lang = |bodies: &[String]| -> Vec<String> {
        bodies
            .iter()
            .map(|b| {
                let url = serde_json::from_str::<Value>(b).unwrap()["url"].clone();
                url.as_str().unwrap().split('/').nth(3).unwrap().to_owned()
            })
            .collect()
    };

    w.write(&products(0..2));
    w.invoke(&p, &w.records());
    assert_eq!(lang(&w.bodies(&site_q)), ["en", "en"]);
    assert_eq!(w.bodies(&wh_q).len(), 2);

    // A new version (German), then a rollback to the English one.
    w.register(wasm::WEBSITE, "website", &["language=de"], true);
    w.write(&products(2..3));
    w.invoke(&p, &w.records());
    assert_eq!(lang(&w.bodies(&site_q)), ["de"]);
    w.prism(&["plugin", "rollback", "website"]);
    w.write(&products(3..4));
    w.invoke(&p, &w.records());
    assert_eq!(
        lang(&w.bodies(&site_q)),
        ["en"],
        "rollback changes the output"
    );

    // Disabled: it gets nothing. A new receiver starts getting changes.
    assert_eq!(w.bodies(&wh_q).len(), 2, "enabled, it got both changes");
    w.prism(&["plugin", "disable", "warehouse"]);
    let (leaf_q, _) = w.register(wasm::LEAFLET, "leaflet", &[], true);
    w.write(&products(4..6));
    let out = w.invoke(&p, &w.records());
    assert!(
        w.bodies(&wh_q).is_empty(),
        "a disabled receiver gets nothing"
    );
    assert!(!out.report.receivers.contains_key("warehouse"));
    assert_eq!(w.bodies(&leaf_q).len(), 2, "a new receiver, no restart");
    assert_eq!(w.bodies(&site_q).len(), 2);
}

#[test]
fn unreadable_records_are_parked_when_there_is_a_queue_and_held_when_not() {
    let Some(w) = World::new("lambda-bad") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    let bad_q = w.q.create("unreadable");
    w.write(&products(0..3));
    let mut records = w.records();
    records[1]["eventName"] = json!("UPSERT");
    let seqs = sequences(&records);

    let held = w.processor(&[]);
    let out = w.invoke(&held, &records);
    assert_eq!(
        failed(&out),
        seqs[1..],
        "held from the unreadable record on"
    );
    assert_eq!(out.numbers.unreadable, 1);
    assert_eq!(w.bodies(&site_q).len(), 2);

    let parking = w.processor(&[("PRISM_UNREADABLE_QUEUE", bad_q.as_str())]);
    let out = w.invoke(&parking, &records[1..]);
    assert!(failed(&out).is_empty(), "{:?}", out.response);
    assert!(w.bodies(&site_q).is_empty(), "the retry repeats nothing");
    let parked = w.bodies(&bad_q);
    assert_eq!(parked.len(), 1);
    let d: Value = serde_json::from_str(&parked[0]).unwrap();
    assert_eq!(d["error_kind"], "unreadable");
    assert!(d["error"].as_str().unwrap().contains("UPSERT"), "{d}");
    assert_eq!(d["change"]["eventName"], "UPSERT", "the raw record is kept");
}

#[test]
fn an_event_that_is_not_a_stream_event_is_an_error() {
    let Some(w) = World::new("lambda-malformed") else {
        return;
    };
    let p = w.processor(&[]);
    let e = w.q.rt.block_on(p.handle(&json!({"hello": 1}))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed stream event: no \"Records\" array"
    );
    let e =
        w.q.rt
            .block_on(p.handle(&json!({"Records": [{"eventID": "x", "dynamodb": {}}]})))
            .unwrap_err();
    assert!(
        e.to_string()
            .contains("record 0 (eventID \"x\") has no dynamodb.SequenceNumber"),
        "{e}"
    );
}

/// Children killed when the test ends, however it ends.
struct Kill(Vec<std::process::Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cargo_lambda() -> bool {
    let found = std::process::Command::new("cargo")
        .args(["lambda", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("PRISM_REQUIRE_ALL").is_none(),
            "cargo-lambda is not installed; scripts/test installs it (pip install cargo-lambda)"
        );
        eprintln!("SKIPPED: cargo-lambda not installed; scripts/test installs it");
    }
    found
}

#[test]
fn the_real_lambda_binary_runs_under_the_runtime_api_emulator() {
    use std::process::{Command, Stdio};
    if !cargo_lambda() {
        return;
    }
    let Some(w) = World::new("lambda-emulated") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    w.write(&products(0..2));
    let records = w.records();

    let port = free_port().to_string();
    let mut children = Kill(Vec::new());
    children.0.push(
        Command::new("cargo")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port,
            ])
            .current_dir(wasm::ROOT)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting cargo lambda watch"),
    );
    let up = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok()
    });
    assert!(up, "the runtime API emulator did not start on port {port}");

    let cache = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    children.0.push(
        Command::new(env!("CARGO_BIN_EXE_prism-lambda-under-test"))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("PRISM_REGISTRY_TABLE", &w.table)
            .env("PRISM_PLUGIN_BUCKET", &w.bucket)
            .env("PRISM_LEDGER_TABLE", &w.ledger)
            .env("PRISM_CACHE_DIR", cache.path())
            .env("AWS_ENDPOINT_URL", &w.ep)
            .env_remove("PRISM_LOG")
            .stdout(log.reopen().unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the Lambda binary"),
    );

    let event = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(event.path(), json!({ "Records": records }).to_string()).unwrap();
    let o = Command::new("cargo")
        .args([
            "lambda",
            "invoke",
            "_",
            "-A",
            "127.0.0.1",
            "-P",
            &port,
            "--data-file",
        ])
        .arg(event.path())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "invoke failed:\n{out}\n{err}");
    let response: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(w.bodies(&site_q).len(), 2);

    // A malformed event is an invocation error, named.
    let o = Command::new("cargo")
        .args([
            "lambda",
            "invoke",
            "_",
            "-A",
            "127.0.0.1",
            "-P",
            &port,
            "--data-ascii",
            "{\"x\": 1}",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o)
            .1
            .contains("malformed stream event: no \"Records\" array"),
        "{:?}",
        text(&o)
    );

    drop(children);
    let logs = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
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
    let dev = |extra: &[&str]| {
        let mut args = vec![
            "dev",
            "--once",
            "--from-start",
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
        ];
        args.extend(extra);
        prism(&args)
    };
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
fn changes_for_a_receiver_whose_plugin_does_not_load_wait_in_its_dlq() {
    let Some(w) = World::new("lambda-broken") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    // Registered behind the CLI's back: a component of the wrong world.
    let bad = prism_e2e::read(wasm::WRONG_WORLD);
    let dlq = w.q.create("broken-dlq");
    let queue = w.q.create("broken");
    w.q.rt.block_on(async {
        w.env.store.put_wasm(&bad).await.unwrap();
        let mut m = prism_e2e::manifest("broken", &bad, Mode::Immediate, relaxed(), &[]);
        m.destination = Some(prism_host::manifest::Destination {
            queue,
            dead_letter_queue: Some(dlq.clone()),
        });
        w.env.registry.publish(&m, None, "ops").await.unwrap();
    });
    let p = w.processor(&[]);
    w.write(&products(0..2));
    let out = w.invoke(&p, &w.records());
    assert!(failed(&out).is_empty(), "{:?}", out.response);
    assert_eq!(out.numbers.unavailable_receivers, 1);
    assert_eq!(w.bodies(&site_q).len(), 2, "the others carry on");
    let dead: Vec<Value> = w
        .bodies(&dlq)
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(
        dead.len(),
        2,
        "every change waits in its DLQ for a fixed plugin"
    );
    for d in &dead {
        assert_eq!(d["error_kind"], "unavailable");
        assert!(
            d["error"].as_str().unwrap().contains("plugin unavailable"),
            "{d}"
        );
        assert!(d["change"]["new"]["sku"].is_string(), "{d}");
    }
}

#[test]
fn dedup_in_dynamodb_sends_only_changed_outputs_across_cold_starts() {
    let Some(w) = World::new("lambda-dedup") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    let outputs = format!("{}-outputs", w.table);
    let vars = [("PRISM_OUTPUTS_TABLE", outputs.as_str())];
    let p = w.processor(&vars);
    let mut docs = products(0..5);
    w.write(&docs);
    let inserts = w.records();
    w.invoke(&p, &inserts);
    assert_eq!(w.bodies(&site_q).len(), 5);

    // A refresh: bullets everywhere (not published), two new prices.
    for (i, d) in docs.iter_mut().enumerate() {
        d["texts"]["en"]["bullets"] = json!(["Refreshed"]);
        if i < 2 {
            d["prices"]["DE"]["amount"] = json!(1.25);
        }
    }
    w.write(&docs);
    let out = w.invoke(&p, &w.records());
    let st = &out.report.receivers["website"];
    assert_eq!((st.messages, st.suppressed), (2, 3), "{st:?}");
    assert_eq!(w.bodies(&site_q).len(), 2);

    // A cold start reads the state from the table: another refresh sends nothing.
    let cold = w.processor(&vars);
    for d in docs.iter_mut() {
        d["texts"]["en"]["bullets"] = json!(["Again"]);
    }
    w.write(&docs);
    let out = w.invoke(&cold, &w.records());
    assert_eq!(out.report.receivers["website"].suppressed, 5);
    assert!(w.bodies(&site_q).is_empty());

    // A late retry of the old inserts: the two whose price changed since are
    // sent (they differ from the last output), but the state does not move
    // backwards: the current output is still recognised afterwards.
    let late = w.invoke(&cold, &inserts);
    assert_eq!(late.report.receivers["website"].messages, 2);
    w.bodies(&site_q);
    for d in docs.iter_mut() {
        d["texts"]["en"]["bullets"] = json!(["Once more"]);
    }
    w.write(&docs);
    let out = w.invoke(&cold, &w.records());
    assert_eq!(
        out.report.receivers["website"].suppressed, 5,
        "state did not move backwards"
    );
    assert!(w.bodies(&site_q).is_empty());
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
