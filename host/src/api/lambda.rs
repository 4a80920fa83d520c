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

use super::{DynamoModel, ReadApi};
use crate::aws::{self, ArtifactStore, AwsTarget, DynamoRegistry};
use crate::engine::{EngineOptions, PluginEngine};
use crate::reload::LiveReceivers;
use crate::stream::Receivers;

/// The names of the API Lambda's environment variables.
pub mod vars {
    /// The product-model table (required).
    pub const MODEL_TABLE: &str = "PRISM_MODEL_TABLE";
    /// Every variable the API reads.
    pub const ALL: &[&str] = &[
        MODEL_TABLE,
        crate::lambda::vars::REGISTRY_TABLE,
        crate::lambda::vars::PLUGIN_BUCKET,
        crate::lambda::vars::RELOAD_SECS,
        crate::lambda::vars::CACHE_DIR,
        crate::lambda::vars::LOG,
        crate::lambda::vars::ENDPOINT_URL,
    ];
    /// The ones without a default.
    pub const REQUIRED: &[&str] = &[
        MODEL_TABLE,
        crate::lambda::vars::REGISTRY_TABLE,
        crate::lambda::vars::PLUGIN_BUCKET,
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
        receivers: Receivers::Live(tokio::sync::Mutex::new(live)),
        model: DynamoModel::new(ddb, model_table),
    })
}

/// The API Lambda binary.
pub fn main() -> ExitCode {
    crate::lambda::run_binary("read API", async {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| format!("environment variable {name} is not set"))
        };
        let target = AwsTarget {
            endpoint_url: std::env::var(crate::lambda::vars::ENDPOINT_URL).ok(),
            region: None,
        };
        let config = aws::sdk_config(&target).await;
        let reload = match std::env::var(crate::lambda::vars::RELOAD_SECS) {
            Ok(v) => v
                .parse()
                .with_context(|| format!("PRISM_RELOAD_SECS={v:?} is not a whole number"))?,
            Err(_) => 30,
        };
        let api = Arc::new(
            build(
                &config,
                &target,
                &var(crate::lambda::vars::REGISTRY_TABLE)?,
                &var(crate::lambda::vars::PLUGIN_BUCKET)?,
                &var(vars::MODEL_TABLE)?,
                std::env::var(crate::lambda::vars::CACHE_DIR)
                    .map_or_else(|_| PathBuf::from("/tmp/prism"), PathBuf::from),
                Duration::from_secs(reload),
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
