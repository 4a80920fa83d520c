//! The read API Lambda: API Gateway (HTTP API, payload 2.0) in, through
//! `lambda_http`, to [`ReadApi::handle`].
//!
//! Configuration, from the environment: `PRISM_MODEL_TABLE`,
//! `PRISM_REGISTRY_TABLE`, `PRISM_PLUGIN_BUCKET` (required),
//! `PRISM_RELOAD_SECS` (30), `PRISM_CACHE_DIR` (`/tmp/prism`), `PRISM_LOG`,
//! `AWS_ENDPOINT_URL`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lambda_http::{Body, Request, Response, service_fn};

use prism_aws::read_model::DynamoModel;
use prism_aws::reload::LiveReceivers;
use prism_aws::{self as aws, ArtifactStore, AwsTarget, DynamoRegistry};
use prism_engine::{EngineOptions, PluginEngine};
use prism_read_api::ReadApi;

use crate::Error;
use crate::env::Env;

/// The names of the API Lambda's environment variables.
pub mod vars {
    /// The product-model table (required).
    pub const MODEL_TABLE: &str = "PRISM_MODEL_TABLE";
    /// Every variable the API reads.
    pub const ALL: &[&str] = &[
        MODEL_TABLE,
        crate::vars::REGISTRY_TABLE,
        crate::vars::PLUGIN_BUCKET,
        crate::vars::RELOAD_SECS,
        crate::vars::CACHE_DIR,
        crate::vars::LOG,
        crate::vars::ENDPOINT_URL,
    ];
    /// The ones without a default.
    pub const REQUIRED: &[&str] = &[
        MODEL_TABLE,
        crate::vars::REGISTRY_TABLE,
        crate::vars::PLUGIN_BUCKET,
    ];
}

/// Build the API from the registry table, bucket and model table.
pub async fn build(
    config: &aws_config::SdkConfig,
    target: &AwsTarget,
    registry_table: &str,
    bucket: &str,
    model_table: &str,
    cache_dir: PathBuf,
    reload: Duration,
) -> anyhow::Result<ReadApi> {
    let ddb = aws_sdk_dynamodb::Client::new(config);
    let engine = PluginEngine::new(&EngineOptions {
        cache_dir: Some(cache_dir.join("compiled")),
        ..EngineOptions::default()
    })
    .map_err(|e| anyhow::anyhow!("{e:#}"))
    .context("starting the Wasm engine")?;
    let live = LiveReceivers::new(
        DynamoRegistry::new(ddb.clone(), registry_table),
        ArtifactStore::new(aws::s3_client(config, target), bucket),
        cache_dir.join("artifacts"),
        reload,
    )
    .without_sharing();
    Ok(ReadApi {
        engine,
        receivers: live.into_receivers(),
        model: Arc::new(DynamoModel::new(ddb, model_table)),
    })
}

/// The API Lambda's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// The registry table.
    pub registry_table: String,
    /// The plugin bucket.
    pub plugin_bucket: String,
    /// The product-model table.
    pub model_table: String,
    /// Registry TTL.
    pub reload: Duration,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
}

impl ApiConfig {
    /// Read the settings through `var` (the environment, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Env::from(var);
        Ok(Self {
            registry_table: env.required(crate::vars::REGISTRY_TABLE)?,
            plugin_bucket: env.required(crate::vars::PLUGIN_BUCKET)?,
            model_table: env.required(vars::MODEL_TABLE)?,
            reload: env.seconds(crate::vars::RELOAD_SECS, 30)?,
            cache_dir: env.path(crate::vars::CACHE_DIR, crate::DEFAULT_CACHE_DIR),
            endpoint_url: env.optional(crate::vars::ENDPOINT_URL),
        })
    }
}

/// The API Lambda binary.
pub fn main() -> ExitCode {
    crate::run_binary("read API", async {
        let c = ApiConfig::from_vars(|k| std::env::var(k).ok())?;
        let target = AwsTarget {
            endpoint_url: c.endpoint_url.clone(),
            region: None,
        };
        let config = aws::sdk_config_as(aws::Caller::ReadApi, &target).await;
        let api = Arc::new(
            build(
                &config,
                &target,
                &c.registry_table,
                &c.plugin_bucket,
                &c.model_table,
                c.cache_dir.clone(),
                c.reload,
            )
            .await?,
        );
        lambda_http::run(service_fn(move |req: Request| {
            let api = api.clone();
            async move {
                let r = api.handle(req.method().as_str(), req.uri().path()).await;
                let body = match String::from_utf8(r.body) {
                    Ok(text) => Body::Text(text),
                    Err(e) => Body::Binary(e.into_bytes()),
                };
                Response::builder()
                    .status(r.status)
                    .header("content-type", r.content_type)
                    .body(body)
                    .map_err(lambda_http::Error::from)
            }
        }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the Lambda runtime stopped")
    })
}
