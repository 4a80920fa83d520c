//! The dispatcher Lambda: a DynamoDB stream event in, a
//! [`DynamoDbEventResponse`](prism_core::stream::DynamoDbEventResponse) out; or
//! the scheduled tick (`{"prism": "tick"}`), which flushes due batch buffers
//! and retries retry lanes; or one segment of a backfill
//! (`{"prism": "backfill", …}`, [`backfill`]). [`invocation`] tells them apart.
//!
//! Everything expensive (the Wasm engine, the AWS clients, the registry copy
//! and loaded plugins) is built once per cold start and kept while the
//! instance is warm. Logs are JSON lines (`tracing`), metrics are CloudWatch
//! EMF lines, both on stdout.
//!
//! Configuration, from the environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `PRISM_REGISTRY_TABLE` | the registry table | required |
//! | `PRISM_PLUGIN_BUCKET` | the plugin bucket | required |
//! | `PRISM_LEDGER_TABLE` | the retry ledger table | required |
//! | `PRISM_UNREADABLE_QUEUE` | queue for records that cannot be read | none: such records are reported failed |
//! | `PRISM_OUTPUTS_TABLE` | output dedup state | none: every output is sent |
//! | `PRISM_SPOOL_TABLE` | batch buffers and retry lanes (and backfill checkpoints) | none: batch windows end with the stream batch, held changes fail their record, no backfill |
//! | `PRISM_MODEL_TABLE` | the model table, which a backfill event scans | none: backfill events are refused |
//! | `PRISM_RELOAD_SECS` | how long a registry read stays fresh | 30 |
//! | `PRISM_CACHE_DIR` | compiled plugins and artifacts | `/tmp/prism` |
//! | `PRISM_THREADS` | dispatcher threads | all cores |
//! | `PRISM_SQS_IN_FLIGHT` | `SendMessageBatch` calls in flight at once, over all queues | 32 |
//! | `PRISM_SQS_IN_FLIGHT_PER_QUEUE` | `SendMessageBatch` calls in flight to one queue (a slow queue leaves the rest to the others) | 8 |
//! | `PRISM_MEMORY_MB` | the function's memory: receivers whose limits cannot fit are refused | `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, else unchecked |
//! | `PRISM_LOG` | log filter | `info` |
//! | `AWS_ENDPOINT_URL` | one endpoint for every service (emulators) | AWS |

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use prism_aws::ledger::DynamoLedger;
use prism_aws::reload::LiveReceivers;
use prism_aws::sqs::SqsDelivery;
use prism_aws::{self as aws, ArtifactStore, AwsTarget, DynamoRegistry};
use prism_core::dispatch::Dispatcher;
use prism_core::stream::{MemoryLedger, StreamProcessor};
use prism_engine::{EngineOptions, PluginEngine};

use crate::{DEFAULT_CACHE_DIR, Env, Error, backfill, run_binary, usable_deadline, vars};

/// The Lambda's settings, read from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaConfig {
    /// Registry table.
    pub registry_table: String,
    /// Plugin bucket.
    pub plugin_bucket: String,
    /// Retry ledger table (`None`: in process, for `prism dev`).
    pub ledger_table: Option<String>,
    /// Queue for unreadable records.
    pub unreadable_queue: Option<String>,
    /// Output dedup table (`None`: no dedup, or in process for `prism dev`).
    pub outputs_table: Option<String>,
    /// Spool table (`None`: no spool, or in process for `prism dev`).
    pub spool_table: Option<String>,
    /// Model table, for backfill events (`None`: they are refused).
    pub model_table: Option<String>,
    /// Registry TTL.
    pub reload: Duration,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Dispatcher threads.
    pub threads: Option<usize>,
    /// SQS calls in flight at once (`None`: [`prism_aws::sqs::IN_FLIGHT`]).
    pub sqs_in_flight: Option<usize>,
    /// SQS calls in flight to one queue (`None`: [`prism_aws::sqs::IN_FLIGHT_PER_QUEUE`]).
    pub sqs_in_flight_per_queue: Option<usize>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
    /// The function's memory (MB), for the memory check at load.
    pub memory_mb: Option<u64>,
    /// The function's timeout, for the call budget check at load.
    pub timeout: Option<Duration>,
    /// Write EMF metric lines to stdout (on for the Lambda; off for a
    /// `prism` command, whose stdout is its report).
    pub metrics: bool,
}

/// How long an invocation waits for one plugin's compile: a quarter of the
/// function's timeout (at most the engine's default). A slower compile
/// makes only its receiver unavailable for now; it finishes in the
/// background, into the compile cache, and the next reload loads it. The
/// invocation never waits past its own deadline for it.
pub fn compile_bound(timeout: Option<Duration>) -> Duration {
    let default = prism_engine::DEFAULT_MAX_COMPILE;
    timeout.map_or(default, |t| (t / 4).min(default))
}

/// Instances the engine's pool holds for `threads` workers: one sandbox
/// per worker, a replacement made while a failed one is dropped, and room
/// for a flush and a tick.
pub fn max_instances(threads: usize) -> u32 {
    2 * threads.max(1) as u32 + 2
}

impl LambdaConfig {
    /// The settings a `prism` command starts from: this registry, bucket
    /// and cache, everything else off or at its default (no ledger, no
    /// dedup table, no spool, a 30 s registry TTL, all cores).
    pub fn new(registry_table: String, plugin_bucket: String, cache_dir: PathBuf) -> Self {
        Self {
            registry_table,
            plugin_bucket,
            ledger_table: None,
            unreadable_queue: None,
            outputs_table: None,
            spool_table: None,
            model_table: None,
            reload: Duration::from_secs(30),
            cache_dir,
            threads: None,
            sqs_in_flight: None,
            sqs_in_flight_per_queue: None,
            endpoint_url: None,
            memory_mb: None,
            timeout: None,
            metrics: false,
        }
    }

    /// Read the settings through `var` (the environment, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Env::from(var);
        Ok(Self {
            registry_table: env.required(vars::REGISTRY_TABLE)?,
            plugin_bucket: env.required(vars::PLUGIN_BUCKET)?,
            ledger_table: Some(env.required(vars::LEDGER_TABLE)?),
            unreadable_queue: env.optional(vars::UNREADABLE_QUEUE),
            outputs_table: env.optional(vars::OUTPUTS_TABLE),
            spool_table: env.optional(vars::SPOOL_TABLE),
            model_table: env.optional(vars::MODEL_TABLE),
            reload: env.seconds(vars::RELOAD_SECS, 30)?,
            cache_dir: env.path(vars::CACHE_DIR, DEFAULT_CACHE_DIR),
            threads: env.number(vars::THREADS)?.map(|n| n.max(1) as usize),
            sqs_in_flight: env.number(vars::SQS_IN_FLIGHT)?.map(|n| n.max(1) as usize),
            sqs_in_flight_per_queue: env
                .number(vars::SQS_IN_FLIGHT_PER_QUEUE)?
                .map(|n| n.max(1) as usize),
            endpoint_url: env.optional(vars::ENDPOINT_URL),
            memory_mb: match env.number(vars::MEMORY_MB)? {
                Some(mb) => Some(mb),
                None => env.number(vars::LAMBDA_MEMORY_SIZE)?,
            },
            timeout: env.number(vars::LAMBDA_TIMEOUT)?.map(Duration::from_secs),
            metrics: true,
        })
    }

    /// Build the shared state: engine, clients, live receivers, ledger.
    pub async fn processor(&self) -> anyhow::Result<StreamProcessor> {
        let target = AwsTarget {
            endpoint_url: self.endpoint_url.clone(),
            region: None,
        };
        let config = aws::sdk_config_as(aws::Caller::Dispatcher, &target).await;
        self.processor_with(&config, &target).await
    }

    /// As [`Self::processor`], with an SDK config already loaded.
    pub async fn processor_with(
        &self,
        config: &aws_config::SdkConfig,
        target: &AwsTarget,
    ) -> anyhow::Result<StreamProcessor> {
        let (config, target) = (config.clone(), target.clone());
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let engine = PluginEngine::new(&EngineOptions {
            cache_dir: Some(self.cache_dir.join("compiled")),
            max_instances: max_instances(threads),
            memory_mib: self.memory_mb,
            threads,
            max_compile: compile_bound(self.timeout),
            ..EngineOptions::default()
        })
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("starting the Wasm engine")?;
        let live = LiveReceivers::new(
            DynamoRegistry::new(ddb.clone(), &self.registry_table),
            ArtifactStore::new(aws::s3_client(&config, &target), &self.plugin_bucket),
            self.cache_dir.join("artifacts"),
            self.reload,
        )
        .within(self.timeout);
        let dispatcher = Dispatcher::builder().threads(threads).build();
        // Changes and dead letters too big for DynamoDB or SQS wait in the plugin bucket.
        let claims = prism_aws::claims::ClaimStore::new(
            aws::s3_client(&config, &target),
            &self.plugin_bucket,
        );
        let delivery = Arc::new(SqsDelivery {
            client: aws_sdk_sqs::Client::new(&config),
            claims: Some(claims.clone()),
            in_flight: self.sqs_in_flight.unwrap_or(prism_aws::sqs::IN_FLIGHT),
            in_flight_per_queue: self
                .sqs_in_flight_per_queue
                .unwrap_or(prism_aws::sqs::IN_FLIGHT_PER_QUEUE),
        });
        let ledger: Arc<dyn prism_core::stream::LedgerStore> = match &self.ledger_table {
            Some(table) => Arc::new(DynamoLedger {
                client: ddb,
                table: table.clone(),
            }),
            None => Arc::new(MemoryLedger::default()),
        };
        let outputs = self.outputs_table.as_ref().map(|t| {
            prism_core::stream::OutputsStore::Table(Arc::new(
                prism_aws::outputs::DynamoOutputs::new(aws_sdk_dynamodb::Client::new(&config), t),
            ))
        });
        let spool = self.spool_table.as_ref().map(|t| {
            Arc::new(
                prism_aws::spool::DynamoSpool::new(
                    aws_sdk_dynamodb::Client::new(&config),
                    t,
                    tokio::runtime::Handle::current(),
                )
                .with_claims(Some(claims.clone())),
            ) as Arc<dyn prism_core::spool::Spool>
        });
        Ok(
            StreamProcessor::builder(Arc::new(engine), live.into_receivers(), delivery)
                .ledger(ledger)
                .dispatcher(dispatcher)
                .unreadable_queue(self.unreadable_queue.clone())
                .metrics(self.metrics)
                .outputs(outputs)
                .spool(spool)
                .build(),
        )
    }
}
/// The Lambda binary: build the shared state once, then serve invocations.
pub fn main() -> std::process::ExitCode {
    run_binary("dispatcher", async {
        let config = LambdaConfig::from_vars(|k| std::env::var(k).ok())?;
        tracing::info!(registry = %config.registry_table, bucket = %config.plugin_bucket, ledger = ?config.ledger_table, "cold start");
        let target = AwsTarget {
            endpoint_url: config.endpoint_url.clone(),
            region: None,
        };
        let sdk = aws::sdk_config_as(aws::Caller::Dispatcher, &target).await;
        let warm = Arc::new(Warm {
            processor: config.processor_with(&sdk, &target).await?,
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            config,
        });
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
            let warm = warm.clone();
            async move { invoke(&warm, event).await }
        }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the Lambda runtime stopped")
    })
}

/// What a warm instance keeps between invocations.
struct Warm {
    processor: StreamProcessor,
    ddb: aws_sdk_dynamodb::Client,
    config: LambdaConfig,
}

/// What an invocation asks for.
#[derive(Debug, PartialEq)]
pub enum Invocation {
    /// A DynamoDB stream batch (`{"Records": [...]}`).
    Stream,
    /// The scheduled tick (`{"prism": "tick"}`, optionally `"force": true`
    /// to flush every buffer whatever its limits).
    Tick {
        /// Flush every buffer.
        force: bool,
    },
    /// One segment of a backfill (`{"prism": "backfill", …}`).
    Backfill,
}

/// Tell a stream batch from a tick; anything else is named in the error.
pub fn invocation(event: &Value) -> Result<Invocation, String> {
    if event.get("Records").is_some() {
        return Ok(Invocation::Stream);
    }
    match event.get("prism").and_then(Value::as_str) {
        Some("tick") => Ok(Invocation::Tick {
            force: event.get("force").and_then(Value::as_bool).unwrap_or(false),
        }),
        Some("backfill") => Ok(Invocation::Backfill),
        Some(other) => Err(format!(
            "unknown prism event {other:?} (expected \"tick\" or \"backfill\")"
        )),
        None => Err(
            "neither a DynamoDB stream event (no \"Records\") nor a prism tick ({\"prism\": \"tick\"})"
                .into(),
        ),
    }
}
async fn invoke(warm: &Warm, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let processor = &warm.processor;
    // The runtime's own span already carries the request id.
    let deadline = usable_deadline(event.context.deadline, std::time::SystemTime::now());
    match invocation(&event.payload).map_err(Error::malformed)? {
        Invocation::Stream => {
            let outcome = processor.handle_within(&event.payload, deadline).await?;
            tracing::info!(
                records = outcome.numbers.records,
                failed = outcome.numbers.failed,
                elapsed_ms = outcome.report.elapsed.as_millis() as u64,
                "batch handled"
            );
            Ok(serde_json::to_value(outcome.response).expect("the response serializes"))
        }
        Invocation::Backfill => {
            let tables = backfill::Tables {
                model: warm.config.model_table.as_deref(),
                spool: warm.config.spool_table.as_deref(),
            };
            backfill::handle(processor, &warm.ddb, tables, &event.payload, deadline).await
        }
        Invocation::Tick { force } => {
            let opts = prism_core::dispatch::TickOptions {
                force,
                ..prism_core::dispatch::TickOptions::at(prism_core::spool::now_ms())
            };
            let report = processor.tick_within(opts, deadline).await?;
            if !report.errors.is_empty() {
                // Fail the invocation so the error shows (the schedule fires again).
                return Err(Error::new(
                    crate::ErrorKind::Spool,
                    "",
                    report.errors.join("; "),
                ));
            }
            Ok(serde_json::json!({
                "lanes": report.lanes,
                "busy": report.busy,
                "waiting": report.waiting,
                "orphaned": report.orphaned,
                "deferred": report.deferred,
                "flushed": report.receivers.values().map(|s| s.batches).sum::<u64>(),
                "messages": report.receivers.values().map(|s| s.messages).sum::<u64>(),
            }))
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn config_names_the_missing_variable() {
        let e = LambdaConfig::from_vars(vars(&[("PRISM_REGISTRY_TABLE", "r")])).unwrap_err();
        assert_eq!(
            (e.kind(), e.place()),
            (crate::ErrorKind::MissingVariable, "PRISM_PLUGIN_BUCKET")
        );
        assert_eq!(
            e.to_string(),
            "environment variable PRISM_PLUGIN_BUCKET: is not set"
        );
        let e = LambdaConfig::from_vars(vars(&[
            ("PRISM_REGISTRY_TABLE", "r"),
            ("PRISM_PLUGIN_BUCKET", "b"),
            ("PRISM_LEDGER_TABLE", "l"),
            ("PRISM_RELOAD_SECS", "soon"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "PRISM_RELOAD_SECS=\"soon\": is not a whole number"
        );
    }

    #[test]
    fn invocations_are_told_apart() {
        use serde_json::json;
        assert_eq!(invocation(&json!({"Records": []})), Ok(Invocation::Stream));
        assert_eq!(
            invocation(&json!({"prism": "tick"})),
            Ok(Invocation::Tick { force: false })
        );
        assert_eq!(
            invocation(&json!({"prism": "tick", "force": true})),
            Ok(Invocation::Tick { force: true })
        );
        assert_eq!(
            invocation(&json!({"prism": "backfill", "receiver": "r"})),
            Ok(Invocation::Backfill)
        );
        assert!(
            invocation(&json!({"prism": "flush"}))
                .unwrap_err()
                .contains("\"flush\"")
        );
        assert!(
            invocation(&json!({"detail": {}}))
                .unwrap_err()
                .contains("Records")
        );
    }

    #[test]
    fn a_compile_is_bounded_by_a_quarter_of_the_invocation() {
        assert_eq!(
            compile_bound(Some(Duration::from_secs(60))),
            Duration::from_secs(15)
        );
        assert_eq!(compile_bound(None), prism_engine::DEFAULT_MAX_COMPILE);
        assert_eq!(
            compile_bound(Some(Duration::from_secs(900))),
            prism_engine::DEFAULT_MAX_COMPILE
        );
        let c = LambdaConfig::from_vars(vars(&[
            ("PRISM_REGISTRY_TABLE", "r"),
            ("PRISM_PLUGIN_BUCKET", "b"),
            ("PRISM_LEDGER_TABLE", "l"),
            ("PRISM_LAMBDA_TIMEOUT", "60"),
        ]))
        .unwrap();
        assert_eq!(c.timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn config_defaults() {
        let c = LambdaConfig::from_vars(vars(&[
            ("PRISM_REGISTRY_TABLE", "r"),
            ("PRISM_PLUGIN_BUCKET", "b"),
            ("PRISM_LEDGER_TABLE", "l"),
        ]))
        .unwrap();
        assert_eq!(c.reload, Duration::from_secs(30));
        assert_eq!(c.cache_dir, PathBuf::from("/tmp/prism"));
        assert_eq!(
            (c.unreadable_queue, c.threads, c.endpoint_url, c.memory_mb),
            (None, None, None, None)
        );
        assert_eq!(c.sqs_in_flight, None);
    }

    #[test]
    fn sqs_calls_in_flight_are_configurable_and_never_zero() {
        let base = [
            ("PRISM_REGISTRY_TABLE", "r"),
            ("PRISM_PLUGIN_BUCKET", "b"),
            ("PRISM_LEDGER_TABLE", "l"),
        ];
        let with = |v: &'static str| {
            let mut all = base.to_vec();
            all.push(("PRISM_SQS_IN_FLIGHT", v));
            LambdaConfig::from_vars(vars(&all))
        };
        assert_eq!(with("64").unwrap().sqs_in_flight, Some(64));
        let mut all = base.to_vec();
        all.push(("PRISM_SQS_IN_FLIGHT_PER_QUEUE", "4"));
        let c = LambdaConfig::from_vars(vars(&all)).unwrap();
        assert_eq!(
            (c.sqs_in_flight, c.sqs_in_flight_per_queue),
            (None, Some(4))
        );
        assert_eq!(with("0").unwrap().sqs_in_flight, Some(1));
        let e = with("many").unwrap_err().to_string();
        assert!(e.contains("PRISM_SQS_IN_FLIGHT"), "{e}");
    }

    #[test]
    fn a_deadline_in_the_past_is_no_deadline() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(usable_deadline(0, now), None);
        assert_eq!(usable_deadline(999_999_000, now), None);
        assert_eq!(
            usable_deadline(1_000_030_000, now),
            Some(now + Duration::from_secs(30))
        );
    }

    #[test]
    fn memory_comes_from_terraform_else_from_lambda() {
        let base = [
            ("PRISM_REGISTRY_TABLE", "r"),
            ("PRISM_PLUGIN_BUCKET", "b"),
            ("PRISM_LEDGER_TABLE", "l"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let all: Vec<_> = base.iter().chain(extra).copied().collect();
            LambdaConfig::from_vars(vars(&all)).unwrap().memory_mb
        };
        assert_eq!(
            with(&[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")]),
            Some(1024)
        );
        assert_eq!(
            with(&[
                ("PRISM_MEMORY_MB", "1769"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            ]),
            Some(1769)
        );
    }
}
