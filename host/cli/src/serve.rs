//! `prism serve`: the read API on loopback, with the same routes and the
//! same code as the API Lambda.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::aws_args::TargetArgs;
use super::engine_opts::CacheArgs;
use prism_aws::read_model::DynamoModel;
use prism_aws::{self as aws, AwsTarget};
use prism_core::receivers::ReceiverSet;
use prism_core::receivers::Receivers;
use prism_read_api::ReadApi;
use prism_types::registry::LocalRegistry;

/// Serve the model and receiver renderings over HTTP on loopback:
/// `GET /v1/products/{key}` and `GET /v1/receivers/{receiver}/products/{key}`.
///
/// The model comes from a DynamoDB table (moto or AWS); the receivers from
/// a local registry directory, or from the DynamoDB registry (hot reloaded).
/// On AWS the same API runs as a Lambda behind API Gateway.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback only; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The product-model table.
    #[arg(long, value_name = "TABLE")]
    pub model_table: String,
    #[command(flatten)]
    pub place: super::aws_args::RegistryPlace,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if !a.listen.ip().is_loopback() {
        bail!(
            "prism serve listens on loopback only (got {}): on AWS the read API is API Gateway with IAM authorization",
            a.listen
        );
    }
    super::aws_args::block_on_multi(async move { serve(a).await })?
}

async fn serve(a: Args) -> anyhow::Result<ExitCode> {
    let target = AwsTarget {
        endpoint_url: a.target.endpoint_url.clone(),
        region: a.target.region.clone(),
    };
    let config = aws::sdk_config(&target).await;
    let api = match (&a.place.registry, &a.place.table) {
        (Some(dir), _) => {
            let engine = a.cache.engine()?;
            let snapshot = LocalRegistry::new(dir)
                .load()
                .with_context(|| format!("reading registry {}", dir.display()))?;
            let set = ReceiverSet::load(&engine, snapshot);
            ReadApi {
                engine,
                receivers: Receivers::Fixed(Arc::new(set)),
                model: Arc::new(DynamoModel::new(
                    aws_sdk_dynamodb::Client::new(&config),
                    &a.model_table,
                )),
            }
        }
        (None, Some(table)) => {
            let bucket = a.target.bucket.clone().context(
                "--table needs the plugin bucket: pass --bucket or set PRISM_PLUGIN_BUCKET",
            )?;
            let cache_dir = a
                .cache
                .cache_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("prism-serve"));
            prism_lambda::api::build(
                &config,
                &target,
                table,
                &bucket,
                &a.model_table,
                cache_dir,
                Duration::from_secs(5),
            )
            .await?
        }
        (None, None) => unreachable!("clap requires --registry or --table"),
    };
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "serving http://{addr}/v1/products/{{key}} and http://{addr}/v1/receivers/{{receiver}}/products/{{key}}"
    );
    use std::io::Write as _;
    std::io::stdout().flush()?;
    crate::http::serve(Arc::new(api), listener)
        .await
        .context("serving")?;
    Ok(ExitCode::SUCCESS)
}
