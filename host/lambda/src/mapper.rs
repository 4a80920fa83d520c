//! The mapper Lambda (`prism-mapper`): a second function built from the
//! same crate, on the shadow tables' streams. A shadow stream batch in, a
//! `DynamoDbEventResponse` out (the records to retry).
//!
//! Why a function of its own rather than the dispatcher with a switch: it
//! is the only writer of the model table, so only its role may write it;
//! a cascade over thousands of products wants a longer timeout and more
//! memory than a delivery; and a mapper backlog or a poison shadow record
//! never stalls the receivers' deliveries (nor the other way round).
//!
//! The mapper's manifest lives in the plugin bucket (`mappers/NAME.toml`,
//! written by `prism mapper publish`) and is read again when it is older
//! than `PRISM_RELOAD_SECS`: a new mapper version goes live without a
//! deploy.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `PRISM_MAPPER_MANIFEST` | the manifest's key in the bucket | required |
//! | `PRISM_PLUGIN_BUCKET` | the plugin bucket | required |
//! | `PRISM_MODEL_TABLE` | the product-model table | required |
//! | `PRISM_SHADOW_PREFIX` | shadow tables are named PREFIX + the manifest's names | empty |
//! | `PRISM_MAPPER_DLQ` | queue for changes the mapper rejects or fails on | none: they fail their record |
//! | `PRISM_MAPPER_CONCURRENCY` | items mapped at once | 8 |
//! | `PRISM_RELOAD_SECS` | how long a manifest read stays fresh | 30 |
//! | `PRISM_CACHE_DIR` | compiled plugins and artifacts | `/tmp/prism` |
//! | `PRISM_LOG` | log filter | `info` |
//! | `AWS_ENDPOINT_URL` | one endpoint for every service (emulators) | AWS |

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use prism_aws::model_store::DynamoModelStore;
use prism_aws::shadow::DynamoShadow;
use prism_aws::sqs::SqsSink;
use prism_aws::{self as aws, ArtifactStore, AwsTarget};
use prism_engine::{EngineOptions, PluginEngine};
use prism_mapping::stream::{MAPPER, MapBatchOutcome, MapperProcessor};
use prism_mapping::{MapperManifest, ModelBuilder};
use prism_types::manifest::Destination;

use crate::Error;
use crate::env::Env;

/// The names of the mapper Lambda's environment variables (Terraform sets
/// them; `tests/all/terraform/mod.rs` checks the two agree).
pub mod vars {
    /// The manifest's key in the bucket (required).
    pub const MAPPER_MANIFEST: &str = "PRISM_MAPPER_MANIFEST";
    /// The plugin bucket (required).
    pub const PLUGIN_BUCKET: &str = crate::vars::PLUGIN_BUCKET;
    /// The model table (required).
    pub const MODEL_TABLE: &str = "PRISM_MODEL_TABLE";
    /// The shadow tables' name prefix.
    pub const SHADOW_PREFIX: &str = "PRISM_SHADOW_PREFIX";
    /// The mapper's dead-letter queue.
    pub const DEAD_LETTER_QUEUE: &str = "PRISM_MAPPER_DLQ";
    /// Items mapped at once.
    pub const CONCURRENCY: &str = "PRISM_MAPPER_CONCURRENCY";
    /// Manifest TTL in seconds.
    pub const RELOAD_SECS: &str = crate::vars::RELOAD_SECS;
    /// Cache directory.
    pub const CACHE_DIR: &str = crate::vars::CACHE_DIR;
    /// Log filter.
    pub const LOG: &str = crate::vars::LOG;
    /// Endpoint override (emulators).
    pub const ENDPOINT_URL: &str = crate::vars::ENDPOINT_URL;
    /// The CloudWatch namespace of the EMF metrics (default `prism`).
    pub const METRICS_NAMESPACE: &str = crate::vars::METRICS_NAMESPACE;
    /// Every variable the mapper reads.
    pub const ALL: &[&str] = &[
        MAPPER_MANIFEST,
        PLUGIN_BUCKET,
        MODEL_TABLE,
        SHADOW_PREFIX,
        DEAD_LETTER_QUEUE,
        CONCURRENCY,
        RELOAD_SECS,
        CACHE_DIR,
        LOG,
        ENDPOINT_URL,
        METRICS_NAMESPACE,
    ];
    /// The ones without a default.
    pub const REQUIRED: &[&str] = &[MAPPER_MANIFEST, PLUGIN_BUCKET, MODEL_TABLE];
}

/// The mapper Lambda's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MapperConfig {
    /// The manifest's key in the bucket.
    pub manifest_key: String,
    /// The plugin bucket.
    pub plugin_bucket: String,
    /// The model table.
    pub model_table: String,
    /// The shadow tables' prefix.
    pub shadow_prefix: String,
    /// The dead-letter queue (name or URL).
    pub dead_letter_queue: Option<String>,
    /// Items mapped at once.
    pub concurrency: usize,
    /// Manifest TTL.
    pub reload: Duration,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
}

impl MapperConfig {
    /// Read the settings through `var` (the environment, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Env::from(var);
        Ok(Self {
            manifest_key: env.required(vars::MAPPER_MANIFEST)?,
            plugin_bucket: env.required(vars::PLUGIN_BUCKET)?,
            model_table: env.required(vars::MODEL_TABLE)?,
            shadow_prefix: env.optional(vars::SHADOW_PREFIX).unwrap_or_default(),
            dead_letter_queue: env.optional(vars::DEAD_LETTER_QUEUE),
            concurrency: env.number(vars::CONCURRENCY)?.unwrap_or(8).clamp(1, 64) as usize,
            reload: env.seconds(vars::RELOAD_SECS, 30)?,
            cache_dir: env.path(vars::CACHE_DIR, crate::DEFAULT_CACHE_DIR),
            endpoint_url: env.optional(vars::ENDPOINT_URL),
        })
    }

    /// Build the processor and the live mapper.
    pub async fn build(
        &self,
        config: &aws_config::SdkConfig,
        target: &AwsTarget,
    ) -> anyhow::Result<MapperLambda> {
        let handle = tokio::runtime::Handle::current();
        let ddb = aws_sdk_dynamodb::Client::new(config);
        let engine = PluginEngine::new(&EngineOptions {
            cache_dir: Some(self.cache_dir.join("compiled")),
            max_instances: 2 * self.concurrency as u32 + 2,
            ..EngineOptions::default()
        })
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("starting the Wasm engine")?;
        let parking = self.dead_letter_queue.as_ref().map(|q| {
            let d = Destination {
                queue: q.clone(),
                dead_letter_queue: Some(q.clone()),
            };
            Arc::new(SqsSink::new(
                aws_sdk_sqs::Client::new(config),
                handle.clone(),
                HashMap::from([(MAPPER.to_owned(), d)]),
            )) as Arc<dyn prism_core::sink::Sink>
        });
        Ok(MapperLambda {
            processor: MapperProcessor {
                prefix: self.shadow_prefix.clone(),
                parking,
                concurrency: self.concurrency,
            },
            live: LiveMapper {
                engine,
                artifacts: ArtifactStore::new(aws::s3_client(config, target), &self.plugin_bucket),
                key: self.manifest_key.clone(),
                shadow: Arc::new(DynamoShadow::new(
                    ddb.clone(),
                    &self.shadow_prefix,
                    handle.clone(),
                )),
                model_table: self.model_table.clone(),
                ddb,
                handle,
                cache_dir: self.cache_dir.join("artifacts"),
                reload: self.reload,
                loaded: tokio::sync::Mutex::new(None),
            },
            emit_metrics: true,
        })
    }
}

/// The mapper as the manifest in the bucket says it is now.
pub struct LiveMapper {
    engine: PluginEngine,
    artifacts: ArtifactStore,
    key: String,
    shadow: Arc<DynamoShadow>,
    model_table: String,
    ddb: aws_sdk_dynamodb::Client,
    handle: tokio::runtime::Handle,
    cache_dir: PathBuf,
    reload: Duration,
    loaded: tokio::sync::Mutex<Option<(Instant, String, Arc<ModelBuilder>)>>,
}

impl LiveMapper {
    /// The current mapper: the one loaded, or, when its manifest read is
    /// older than the reload interval, the one the bucket names now. If the
    /// bucket cannot be read, the loaded mapper carries on.
    pub async fn current(&self) -> anyhow::Result<Arc<ModelBuilder>> {
        let mut loaded = self.loaded.lock().await;
        if let Some((at, _, b)) = loaded.as_ref()
            && at.elapsed() < self.reload
        {
            return Ok(b.clone());
        }
        let bucket = self.artifacts.bucket().to_owned();
        let text = match self.artifacts.text(&self.key).await {
            Ok(Some(t)) => t,
            Ok(None) => anyhow::bail!(
                "no mapper manifest at s3://{bucket}/{} (publish one with `prism mapper publish`)",
                self.key
            ),
            Err(e) => match loaded.as_mut() {
                Some((at, _, b)) => {
                    tracing::warn!(error = %e, "mapper manifest unreadable; the loaded mapper carries on");
                    *at = Instant::now();
                    return Ok(b.clone());
                }
                None => return Err(e).context("reading the mapper manifest"),
            },
        };
        if let Some((at, old, b)) = loaded.as_mut()
            && *old == text
        {
            *at = Instant::now();
            return Ok(b.clone());
        }
        let origin = format!("s3://{bucket}/{}", self.key);
        let manifest = MapperManifest::from_toml(&text, &origin)?;
        let wasm = self
            .artifacts
            .mapper_wasm(&manifest.mapper, &manifest.plugin.digest, &self.cache_dir)
            .await
            .with_context(|| format!("fetching mapper {}", manifest.mapper))?;
        let model = Arc::new(DynamoModelStore::new(
            self.ddb.clone(),
            &self.model_table,
            &manifest.model_key,
            self.handle.clone(),
        ));
        let name = manifest.mapper.clone();
        let digest = manifest.plugin.digest.to_string();
        let builder = tokio::task::block_in_place(|| {
            ModelBuilder::new(&self.engine, manifest, &wasm, self.shadow.clone(), model)
        })
        .with_context(|| format!("loading mapper {name} ({origin})"))?;
        let source = builder.plugin().source();
        tracing::info!(mapper = %name, %digest, ?source, "mapper loaded");
        let builder = Arc::new(builder);
        *loaded = Some((Instant::now(), text, builder.clone()));
        Ok(builder)
    }
}

/// Everything the mapper Lambda keeps while warm.
pub struct MapperLambda {
    /// The batch handler.
    pub processor: MapperProcessor,
    /// The mapper.
    pub live: LiveMapper,
    /// Write an EMF metric line per batch on stdout (on in the Lambda).
    pub emit_metrics: bool,
}

impl MapperLambda {
    /// Handle one stream event with the current mapper.
    pub async fn handle(&self, event: &Value) -> anyhow::Result<MapBatchOutcome> {
        self.handle_within(event, None).await
    }

    /// [`Self::handle`] within an invocation that ends at `deadline`: no
    /// change starts later than the mapper's time budget plus
    /// [`prism_core::stream::FINISH_RESERVE`] before it.
    pub async fn handle_within(
        &self,
        event: &Value,
        deadline: Option<std::time::SystemTime>,
    ) -> anyhow::Result<MapBatchOutcome> {
        let builder = self.live.current().await?;
        let mapper = builder.manifest().mapper.clone();
        let stop_at = deadline.map(|d| {
            let left = d
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            let keep = prism_core::stream::FINISH_RESERVE
                + std::time::Duration::from_millis(builder.manifest().limits.timeout_ms);
            Instant::now() + left.saturating_sub(keep)
        });
        let outcome = self
            .processor
            .handle_within(builder, event, stop_at)
            .await
            .map_err(|e| anyhow::anyhow!("malformed event: {e}"))?;
        let r = &outcome.report;
        tracing::info!(
            mapper,
            records = r.records,
            mapped = r.mapped,
            written = r.tally.written(),
            unchanged = r.tally.unchanged,
            stale = r.tally.stale,
            parked = r.parked,
            failed = r.failed,
            deferred = r.deferred,
            items_read = r.items_read,
            "batch"
        );
        if self.emit_metrics {
            let line = prism_mapping::stream::mapper_line(&mapper, r, prism_core::spool::now_ms());
            println!("{line}");
        }
        Ok(outcome)
    }
}

/// The mapper Lambda binary.
pub fn main() -> ExitCode {
    crate::run_binary("mapper", async {
        let config = MapperConfig::from_vars(|k| std::env::var(k).ok())?;
        let target = AwsTarget {
            endpoint_url: config.endpoint_url.clone(),
            region: None,
        };
        let sdk = aws::sdk_config_as(aws::Caller::Mapper, &target).await;
        tracing::info!(manifest = %config.manifest_key, bucket = %config.plugin_bucket, model = %config.model_table, "cold start");
        let lambda = Arc::new(config.build(&sdk, &target).await?);
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
            let lambda = lambda.clone();
            async move {
                let outcome = lambda
                    .handle_within(
                        &event.payload,
                        crate::usable_deadline(
                            event.context.deadline,
                            std::time::SystemTime::now(),
                        ),
                    )
                    .await
                    .map_err(|e| {
                        crate::Error::new(crate::ErrorKind::Mapper, "", format!("{e:#}"))
                    })?;
                Ok::<_, crate::Error>(
                    serde_json::to_value(&outcome.response).expect("the response serializes"),
                )
            }
        }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the Lambda runtime stopped")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_environment_with_defaults() {
        let env = HashMap::from([
            (vars::MAPPER_MANIFEST, "mappers/catalog.toml"),
            (vars::PLUGIN_BUCKET, "b"),
            (vars::MODEL_TABLE, "m"),
            (vars::CONCURRENCY, "500"),
        ]);
        let c = MapperConfig::from_vars(|k| env.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(
            (c.concurrency, c.reload, c.shadow_prefix.as_str()),
            (64, Duration::from_secs(30), "")
        );
        for missing in vars::REQUIRED {
            let e = MapperConfig::from_vars(|k| {
                (k != *missing)
                    .then(|| env.get(k).map(|v| (*v).to_owned()))
                    .flatten()
            })
            .unwrap_err();
            assert!(e.to_string().contains(missing), "{e}");
        }
    }
}
