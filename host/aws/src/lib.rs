//! The AWS backends, each behind a trait of `prism-core` (or the engine's
//! artifact cache): the registry in DynamoDB with hot reload ([`reload`]),
//! plugin artifacts in S3, the SQS sink, the retry ledger, output dedup
//! state, the spool, the shadow and model tables, the read API's model
//! reads, and the model table's stream read through the Streams API.
//!
//! Clients use the standard AWS config chain (env, profile, IMDS/ECS/Lambda
//! role), rustls with the ring provider, and an optional endpoint URL for
//! emulators such as moto.

pub mod artifacts;
pub mod attr_json;
pub mod backfill;
pub mod batch;
pub mod claims;
pub mod error;
pub mod ledger;
pub mod model_store;
pub mod outputs;
pub mod read_model;
pub mod registry;
pub mod reload;
pub mod shadow;
pub mod spool;
pub mod sqs;
mod streams;

pub use artifacts::{ArtifactStore, Precompiled};
pub use error::{Error, ErrorKind};
pub use registry::{DynamoRegistry, Head, Version};
pub use streams::{ShardCursor, StreamReader, attr_json, item_json, record_json};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::{Builder, tls};

/// Read the registry table and fetch every enabled receiver's component
/// (and, when S3 has one for this engine, its precompiled artifact into the
/// engine's compile cache). A receiver whose item or artifact cannot be read
/// becomes a problem of its own; the others load.
pub async fn snapshot(
    registry: &DynamoRegistry,
    store: &ArtifactStore,
    engine: &prism_engine::PluginEngine,
    cache_dir: &std::path::Path,
) -> Result<prism_types::registry::Snapshot, Error> {
    use prism_types::registry::{Entry, Snapshot};
    use prism_types::{Error as EntryError, ErrorKind as EntryKind};
    let mut snap = Snapshot::default();
    for head in registry.heads().await? {
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                snap.problems.push(EntryError::new(
                    EntryKind::Unavailable,
                    registry.table(),
                    e.to_string(),
                ));
                continue;
            }
        };
        let m = head.manifest.clone();
        if let Some(q) = head.quarantine {
            snap.quarantines.insert(m.receiver.clone(), q);
        }
        let origin = format!(
            "dynamodb://{}/{} (v{})",
            registry.table(),
            m.receiver,
            head.current
        );
        if !m.enabled {
            snap.entries.push(Entry {
                manifest: m,
                origin,
                wasm: Vec::new(),
            });
            continue;
        }
        let digest = m.plugin.digest;
        match store.wasm(&m.receiver, &digest, cache_dir).await {
            Ok(wasm) => {
                if let Some(path) = engine.cache_path(&digest) {
                    let engine_hash = engine.compatibility_hash();
                    let trusted = head.trusted_precompiled(engine_hash, &digest);
                    match store
                        .fetch_cwasm(engine_hash, &digest, &path, trusted)
                        .await
                    {
                        Ok(Precompiled::Untrusted {
                            key,
                            actual,
                            recorded,
                        }) => {
                            tracing::error!(receiver = %m.receiver, key = %key, %actual, %recorded, "discarding a precompiled artifact that is not the one recorded in the registry; compiling from the .wasm");
                            snap.untrusted_artifacts.push(key);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(receiver = %m.receiver, error = %e, "no precompiled artifact; compiling");
                        }
                    }
                }
                snap.entries.push(Entry {
                    manifest: m,
                    origin,
                    wasm,
                });
            }
            Err(e) => snap.problems.push(EntryError::new(
                EntryKind::Unavailable,
                origin,
                e.to_string(),
            )),
        }
    }
    Ok(snap)
}

/// Where to reach AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsTarget {
    /// An endpoint URL for every service (e.g. a moto server); `None` for AWS.
    pub endpoint_url: Option<String>,
    /// The region; `None` takes it from the config chain.
    pub region: Option<String>,
}

/// Which prism component makes a call, and so which IAM role makes it on
/// AWS. Sent as the SDK's app name (`app/prism-…` in the user agent), so
/// CloudTrail shows it, and the tests map each recorded call to the role
/// whose policy must allow it (`tests/all/aws/iam.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The dispatcher Lambda (`terraform/iam.tf`).
    Dispatcher,
    /// The model builder Lambda (`terraform/mapper.tf`).
    Mapper,
    /// The read API Lambda (`terraform/api.tf`).
    ReadApi,
    /// A receiver team's deploy pipeline: `prism plugin register|enable|
    /// disable|rollback` (`terraform/modules/receiver-deployer`).
    Deployer,
    /// An operator's `prism` (status, dlq, backfill, dev, …): no role of
    /// prism's own.
    Operator,
}

impl Caller {
    /// The app name the SDK sends.
    pub fn app_name(self) -> &'static str {
        match self {
            Caller::Dispatcher => "prism-dispatcher",
            Caller::Mapper => "prism-mapper",
            Caller::ReadApi => "prism-api",
            Caller::Deployer => "prism-deployer",
            Caller::Operator => "prism-operator",
        }
    }
}

static DEFAULT_CALLER: std::sync::OnceLock<Caller> = std::sync::OnceLock::new();

/// Who this process calls AWS as when [`sdk_config`] is not told (the CLI
/// sets it once, from its command). The first call wins.
pub fn set_default_caller(caller: Caller) {
    let _ = DEFAULT_CALLER.set(caller);
}

/// Load the shared SDK config for `target`, as the process's default
/// caller ([`set_default_caller`]; none: no app name).
pub async fn sdk_config(target: &AwsTarget) -> SdkConfig {
    config_for(DEFAULT_CALLER.get().copied(), target).await
}

/// Load the shared SDK config for `target`, calling as `caller`.
pub async fn sdk_config_as(caller: Caller, target: &AwsTarget) -> SdkConfig {
    config_for(Some(caller), target).await
}

async fn config_for(caller: Option<Caller>, target: &AwsTarget) -> SdkConfig {
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(retry_config());
    if let Some(url) = &target.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(r) = &target.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(c) = caller {
        loader = loader.app_name(aws_config::AppName::new(c.app_name()).expect("a valid app name"));
    }
    loader.load().await
}

/// The one place a failed AWS call is retried: the SDK's standard mode
/// (throttling, 5xx, timeouts and dropped connections, with jittered
/// exponential backoff and its retry quota), 4 tries from 100 ms up to 5 s.
/// Code above it does not loop over whole calls again (the SQS sink retries
/// only the entries SQS failed inside a successful call), so the worst case
/// is 4 tries, not 4 × N.
pub fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(4)
        .with_initial_backoff(std::time::Duration::from_millis(100))
        .with_max_backoff(std::time::Duration::from_secs(5))
}

/// An S3 client; path-style addressing when an endpoint URL is set (emulators
/// do not resolve bucket subdomains).
pub fn s3_client(config: &SdkConfig, target: &AwsTarget) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(target.endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Did a DynamoDB call fail only because its condition did not hold (it
/// lost a race, or found what it guards against)?
pub(crate) fn condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    matches!(e, aws_sdk_dynamodb::error::SdkError::ServiceError(s)
        if s.err().code() == Some("ConditionalCheckFailedException"))
}

/// Every item of a paginated `Scan` or `Query` (all pages), or the first
/// error as text.
pub(crate) async fn all_items<E>(
    pages: aws_smithy_async::future::pagination_stream::PaginationStream<
        Result<
            std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
            aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
        >,
    >,
) -> Result<Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>, String>
where
    E: std::error::Error + 'static,
{
    pages
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| sdk_error(&e))
}

/// A conditional write where losing the race is fine (what the other
/// writer did stands): `Err` only for a real failure, naming `call`.
pub(crate) fn unless_raced<T, E, R>(
    r: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    call: &str,
) -> Result<(), String>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match r {
        Err(e) if !condition_failed(&e) => Err(format!("{call}: {}", sdk_error(&e))),
        _ => Ok(()),
    }
}

/// Render an SDK error with its whole chain (the service's code and
/// message, or the network cause), not just "service error".
pub fn sdk_error<E: std::error::Error + 'static>(e: &E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}
