//! The three Lambda entry points and what they share: the dispatcher
//! ([`dispatcher`]: stream batches, the tick, backfill segments), the model
//! builder ([`mapper`]) and the read API ([`api`]); their configuration from
//! the environment ([`vars`], [`env`](mod@env)), their errors ([`error`]), JSON logs
//! and the invocation deadline.

use std::process::ExitCode;
use std::time::Duration;

pub mod api;
pub mod backfill;
pub mod dispatcher;
pub mod env;
pub mod error;
pub mod mapper;

pub use dispatcher::{Invocation, LambdaConfig, compile_bound, invocation, main, max_instances};
pub use env::Env;
pub use error::{Error, ErrorKind};

/// Where the Lambdas keep compiled plugins and downloads unless told otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/tmp/prism";

/// The names of the Lambda's environment variables (Terraform sets them;
/// `tests/all/terraform/mod.rs` checks the two agree).
pub mod vars {
    /// The registry table (required).
    pub const REGISTRY_TABLE: &str = "PRISM_REGISTRY_TABLE";
    /// The plugin bucket (required).
    pub const PLUGIN_BUCKET: &str = "PRISM_PLUGIN_BUCKET";
    /// The retry ledger table (required).
    pub const LEDGER_TABLE: &str = "PRISM_LEDGER_TABLE";
    /// Queue for unreadable records.
    pub const UNREADABLE_QUEUE: &str = "PRISM_UNREADABLE_QUEUE";
    /// The output dedup table (unset: no dedup).
    pub const OUTPUTS_TABLE: &str = "PRISM_OUTPUTS_TABLE";
    /// The spool table: batch buffers and retry lanes (unset: none).
    pub const SPOOL_TABLE: &str = "PRISM_SPOOL_TABLE";
    /// The model table, for backfill events (unset: refused).
    pub const MODEL_TABLE: &str = "PRISM_MODEL_TABLE";
    /// Registry TTL in seconds.
    pub const RELOAD_SECS: &str = "PRISM_RELOAD_SECS";
    /// Cache directory.
    pub const CACHE_DIR: &str = "PRISM_CACHE_DIR";
    /// Dispatcher threads.
    pub const THREADS: &str = "PRISM_THREADS";
    /// `SendMessageBatch` calls one invocation keeps in flight at once.
    pub const SQS_IN_FLIGHT: &str = "PRISM_SQS_IN_FLIGHT";
    /// `SendMessageBatch` calls one invocation keeps in flight to one queue.
    pub const SQS_IN_FLIGHT_PER_QUEUE: &str = "PRISM_SQS_IN_FLIGHT_PER_QUEUE";
    /// Log filter.
    pub const LOG: &str = "PRISM_LOG";
    /// The function's memory in MB (Terraform sets it from
    /// `lambda_memory_mb`); receivers whose limits cannot fit are refused.
    pub const MEMORY_MB: &str = "PRISM_MEMORY_MB";
    /// What Lambda itself sets to the function's memory, when
    /// [`MEMORY_MB`] is not.
    pub const LAMBDA_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
    /// The function's timeout in seconds (Terraform sets it from
    /// `lambda_timeout_seconds`); receivers whose call budget cannot fit
    /// in one invocation are refused at load.
    pub const LAMBDA_TIMEOUT: &str = "PRISM_LAMBDA_TIMEOUT";
    /// Endpoint override (emulators).
    pub const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
    /// The CloudWatch namespace of the EMF metrics (default `prism`).
    pub const METRICS_NAMESPACE: &str = prism_core::stream::metrics::NAMESPACE_VAR;
    /// Every variable the dispatcher reads.
    pub const ALL: &[&str] = &[
        REGISTRY_TABLE,
        PLUGIN_BUCKET,
        LEDGER_TABLE,
        UNREADABLE_QUEUE,
        OUTPUTS_TABLE,
        SPOOL_TABLE,
        MODEL_TABLE,
        RELOAD_SECS,
        CACHE_DIR,
        THREADS,
        SQS_IN_FLIGHT,
        SQS_IN_FLIGHT_PER_QUEUE,
        LOG,
        MEMORY_MB,
        LAMBDA_TIMEOUT,
        ENDPOINT_URL,
        METRICS_NAMESPACE,
    ];
    /// The ones without a default.
    pub const REQUIRED: &[&str] = &[REGISTRY_TABLE, PLUGIN_BUCKET, LEDGER_TABLE];
}
/// JSON log lines on stdout; `PRISM_LOG` sets the filter (default `info`).
pub fn init_json_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env(vars::LOG).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}

/// Run a Lambda binary: JSON logging, a multi-threaded runtime, `body`
/// (build the shared state once, then serve invocations), and exit status 1
/// with the error logged if it fails.
pub fn run_binary(
    what: &str,
    body: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    init_json_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{what} failed");
            ExitCode::from(1)
        }
    }
}
/// The invocation's deadline (ms since the epoch, from the runtime API), if
/// it is one: a deadline already past when the invocation starts is not
/// (Lambda never sends one; some emulators send 0), and the invocation then
/// runs without one rather than deferring everything.
pub fn usable_deadline(
    deadline_ms: u64,
    now: std::time::SystemTime,
) -> Option<std::time::SystemTime> {
    let deadline = std::time::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    match deadline.duration_since(now) {
        Ok(left) => {
            tracing::debug!(left_ms = left.as_millis() as u64, "invocation deadline");
            Some(deadline)
        }
        Err(_) => {
            tracing::warn!(
                deadline_ms,
                "the invocation's deadline is already past; running without one"
            );
            None
        }
    }
}
