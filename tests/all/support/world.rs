//! Test support for the Lambda-path tests: one model table with a stream,
//! a registry, a bucket, a retry ledger, an output table, a spool table and
//! queues per test, all in moto, and the stream processor built as the Lambda builds it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prism_aws::{ShardCursor, StreamReader};
use prism_core::stream::{BatchOutcome, StreamProcessor};
use prism_e2e::aws::{Queues, create_ledger_table, create_model_table, delete, put, setup};
use prism_e2e::{bodies, engine, register, relaxed, wasm};
use prism_lambda::LambdaConfig;
use prism_types::manifest::Mode;
use serde_json::{Value, json};

use crate::{prism, text};

/// One test's model table, stream, registry, bucket, ledger and queues.
pub(crate) struct World {
    pub(crate) q: Queues,
    pub(crate) ep: String,
    pub(crate) table: String,
    pub(crate) bucket: String,
    pub(crate) model: String,
    pub(crate) ledger: String,
    pub(crate) reader: StreamReader,
    pub(crate) cursors: Mutex<Vec<ShardCursor>>,
    pub(crate) ddb: aws_sdk_dynamodb::Client,
    pub(crate) env: prism_e2e::aws::AwsEnv,
}

impl World {
    pub(crate) fn new(test: &str) -> Option<Self> {
        let q = Queues::new(test)?;
        let ep = prism_e2e::aws::endpoint()?;
        let env = q.rt.block_on(setup(&ep, test));
        let model = format!("{}-model", env.table);
        let ledger = format!("{}-ledger", env.table);
        let (arn, streams) = q.rt.block_on(async {
            let arn = create_model_table(&env.ddb, &model).await;
            create_ledger_table(&env.ddb, &ledger).await;
            prism_e2e::aws::create_outputs_table(&env.ddb, &format!("{}-outputs", env.table)).await;
            prism_e2e::aws::create_spool_table(&env.ddb, &format!("{}-spool", env.table)).await;
            let config = prism_aws::sdk_config(&prism_aws::AwsTarget {
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
    pub(crate) fn prism(&self, args: &[&str]) -> String {
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

    /// `prism` against this world (its registry table, bucket, endpoint and
    /// region), without asserting: whether it succeeded, and what it said
    /// (stdout, then stderr).
    pub(crate) fn try_prism(&self, args: &[&str]) -> (bool, String) {
        let mut all = args.to_vec();
        all.extend([
            "--table",
            &self.table,
            "--bucket",
            &self.bucket,
            "--endpoint-url",
            &self.ep,
            "--region",
            "us-east-1",
        ]);
        let o = prism(&all);
        let (out, err) = text(&o);
        (o.status.success(), format!("{out}\n{err}"))
    }

    /// `prism flush --all` of this world's spool (what the tick does).
    pub(crate) fn flush_all(&self) -> (bool, String) {
        self.try_prism(&["flush", "--spool-table", &self.spool(), "--all"])
    }

    /// How many dead letters `receiver`'s DLQ holds (`prism dlq list`).
    pub(crate) fn dead_letters(&self, receiver: &str) -> u64 {
        let (ok, out) = self.try_prism(&["dlq", "list", "--json", "--receiver", receiver]);
        assert!(ok, "{out}");
        let doc: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        doc["dead_letters"].as_u64().unwrap()
    }

    /// `prism dev --once --from-start` against this world, plus `extra`.
    pub(crate) fn dev(&self, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "dev",
            "--once",
            "--from-start",
            "--model-table",
            &self.model,
            "--bucket",
            &self.bucket,
            "--table",
            &self.table,
            "--endpoint-url",
            &self.ep,
            "--region",
            "us-east-1",
        ];
        args.extend(extra);
        prism(&args)
    }

    /// Register `wasm` as `receiver` with its own queue and DLQ (created
    /// unless `create` is false); returns (queue URL or name, DLQ URL).
    pub(crate) fn register(
        &self,
        wasm: &str,
        receiver: &str,
        config: &[&str],
        create: bool,
    ) -> (String, String) {
        self.register_to(wasm, receiver, config, receiver, create)
    }

    /// As [`Self::register`], to the queue `<prefix>-<queue>`.
    pub(crate) fn register_to(
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
        if wasm == wasm::HOSTILE {
            args.extend([
                "--allow-failures",
                "hostile on purpose: the test drives the dispatcher's failure paths",
            ]);
        }
        self.prism(&args);
        (queue, dlq)
    }

    /// Register the price list as a batched receiver (windows of up to 100)
    /// with a new standard queue; returns the queue's URL.
    pub(crate) fn register_pricelist(&self) -> String {
        self.register_pricelist_with(100, true)
    }

    /// Register the price list in windows of up to `max_count` changes,
    /// sending to the queue `<prefix>-pricelist` (created unless `create`
    /// is false); returns the queue's URL or name.
    pub(crate) fn register_pricelist_with(&self, max_count: usize, create: bool) -> String {
        let queue = if create {
            self.q.create("pricelist")
        } else {
            format!("{}-pricelist", self.q.prefix)
        };
        let count = max_count.to_string();
        self.prism(&[
            "plugin",
            "register",
            wasm::PRICELIST,
            "--receiver",
            "pricelist",
            "--bucket",
            &self.bucket,
            "--queue",
            &queue,
            "--batch-max-count",
            &count,
        ]);
        queue
    }

    /// A warm dispatcher as the Lambda builds it, from the same variables.
    pub(crate) fn processor(&self, extra: &[(&str, &str)]) -> StreamProcessor {
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
        let p = self.q.rt.block_on(config.processor()).unwrap();
        p.into_builder().metrics(false).build()
    }

    /// This world's spool table (created empty).
    pub(crate) fn spool(&self) -> String {
        format!("{}-spool", self.table)
    }

    pub(crate) fn write(&self, docs: &[Value]) {
        self.q.rt.block_on(async {
            for d in docs {
                put(&self.ddb, &self.model, d).await;
            }
        });
    }

    pub(crate) fn remove(&self, pk: &str) {
        self.q.rt.block_on(delete(&self.ddb, &self.model, pk));
    }

    /// Every stream record written since the last call, in shard order.
    pub(crate) fn records(&self) -> Vec<Value> {
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

    pub(crate) fn invoke(&self, p: &StreamProcessor, records: &[Value]) -> BatchOutcome {
        self.q
            .rt
            .block_on(p.handle(&json!({ "Records": records })))
            .unwrap()
    }

    pub(crate) fn bodies(&self, queue: &str) -> Vec<String> {
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
pub(crate) fn expected(
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
    let input = prism_types::input::parse(&json!({ "Records": records }).to_string(), "stream");
    assert!(input.errors.is_empty(), "{:?}", input.errors);
    let out = dir.path().join("out");
    prism_e2e::run(&engine(), &reg, &input.changes, &out, 2);
    let mut b = bodies(&out, receiver);
    b.sort();
    b
}

pub(crate) fn products(range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(|n| prism_sample::product(n, 7)).collect()
}

pub(crate) fn sequences(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn failed(o: &BatchOutcome) -> Vec<String> {
    o.response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}
