//! Options and plumbing for commands that talk to the AWS registry.

use std::path::PathBuf;

use anyhow::Context;

use prism_aws::{self as aws, ArtifactStore, AwsTarget, DynamoRegistry};

/// Where the DynamoDB registry and the plugin bucket are.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Registry table (DynamoDB).
    #[arg(long, env = "PRISM_REGISTRY_TABLE", value_name = "TABLE")]
    pub table: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The plugin bucket and how to reach AWS (shared with `plugin register`).
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Plugin bucket (S3), for commands that read or write artifacts.
    #[arg(long, env = "PRISM_PLUGIN_BUCKET", value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// Endpoint URL for every AWS service (an emulator such as moto).
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region [default: from the AWS config chain].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

/// Where the registry is: a local directory or a DynamoDB table (exactly
/// one; shared by `plugin register` and `plugin diff`).
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryPlace {
    /// Local registry directory.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "table",
        conflicts_with = "table"
    )]
    pub registry: Option<PathBuf>,
    /// DynamoDB registry table.
    #[arg(long, env = "PRISM_REGISTRY_TABLE", value_name = "TABLE")]
    pub table: Option<String>,
}

impl std::fmt::Display for RegistryPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.registry, &self.table) {
            (Some(dir), _) => write!(f, "{}", dir.display()),
            (None, Some(table)) => write!(f, "table {table}"),
            (None, None) => write!(f, "no registry"),
        }
    }
}

/// Clients for one command.
pub struct Remote {
    /// The AWS configuration the clients were built from.
    pub config: aws_config::SdkConfig,
    pub registry: DynamoRegistry,
    pub store: Option<ArtifactStore>,
}

impl RemoteArgs {
    /// Build the clients.
    pub async fn connect(&self) -> Remote {
        let target = AwsTarget {
            endpoint_url: self.target.endpoint_url.clone(),
            region: self.target.region.clone(),
        };
        let config = aws::sdk_config(&target).await;
        let registry = DynamoRegistry::new(aws_sdk_dynamodb::Client::new(&config), &self.table);
        let store = self
            .target
            .bucket
            .as_ref()
            .map(|b| ArtifactStore::new(aws::s3_client(&config, &target), b));
        Remote {
            config,
            registry,
            store,
        }
    }
}

impl Remote {
    /// A receiver's head, or an error naming the receiver and the table.
    pub async fn require_head(&self, receiver: &str) -> anyhow::Result<prism_aws::Head> {
        self.registry
            .head(receiver)
            .await?
            .with_context(|| format!("no receiver {receiver:?} in {}", self.registry.table()))
    }

    /// The artifact store, or an error saying `--bucket` is needed.
    pub fn store(&self) -> anyhow::Result<&ArtifactStore> {
        self.store.as_ref().context(
            "this command needs the plugin bucket: pass --bucket or set PRISM_PLUGIN_BUCKET",
        )
    }
}

/// Who is making a change (for the registry's audit fields).
pub fn operator() -> String {
    std::env::var("PRISM_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

/// Run a future on a fresh runtime (the CLI is otherwise synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}

/// Run a future on a multi-threaded runtime (for commands that dispatch:
/// the SQS sink blocks worker threads on it).
pub fn block_on_multi<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}

/// The stream to read: `arn` as given, or `table`'s latest stream.
pub async fn stream_arn(
    config: &aws_config::SdkConfig,
    arn: Option<&str>,
    table: Option<&str>,
) -> anyhow::Result<String> {
    match (arn, table) {
        (Some(arn), _) => Ok(arn.to_owned()),
        (None, Some(table)) => {
            let d = aws_sdk_dynamodb::Client::new(config)
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws::sdk_error(&e)))
                .with_context(|| format!("describing table {table}"))?;
            d.table
                .and_then(|t| t.latest_stream_arn)
                .with_context(|| format!("table {table} has no stream"))
        }
        (None, None) => anyhow::bail!("name the stream: --stream-arn or --model-table"),
    }
}

/// The last `n` records still in a stream (every shard, oldest first), as
/// changes.
pub async fn last_changes(
    target: &AwsTarget,
    arn: Option<&str>,
    table: Option<&str>,
    n: usize,
) -> anyhow::Result<Vec<prism_types::change::Change>> {
    let config = aws::sdk_config(target).await;
    let arn = stream_arn(&config, arn, table).await?;
    let reader = aws::StreamReader::new(aws_sdk_dynamodbstreams::Client::new(&config), &arn);
    let mut records = Vec::new();
    for shard in reader.shards().await? {
        let mut cursor = reader.open(&shard, true).await?;
        loop {
            let got = reader.read(&mut cursor, 1000).await?;
            if got.is_empty() {
                break;
            }
            records.extend(got);
        }
    }
    let input =
        prism_types::input::parse(&serde_json::json!({ "Records": records }).to_string(), &arn);
    if let Some(e) = input.errors.first() {
        anyhow::bail!(
            "{} unreadable record(s) in {arn}, the first: {e}",
            input.errors.len()
        );
    }
    let mut changes = input.changes;
    changes.sort_by(|a, b| prism_types::change::cmp_sequence(&a.sequence, &b.sequence));
    let skip = changes.len().saturating_sub(n);
    Ok(changes.split_off(skip))
}
