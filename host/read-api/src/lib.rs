//! The HTTP read path: parts of the model served over HTTP.
//!
//! - `GET /v1/products/{key}`: the model document, as the receivers see it.
//! - `GET /v1/receivers/{receiver}/products/{key}`: the product rendered by
//!   the receiver's plugin as if it were newly inserted, with the plugin's
//!   content type: the same plugin serves push (SQS) and pull (HTTP), in the
//!   same sandbox with the same limits.
//!
//! Errors are JSON (`{"error": …, "kind": …}`): 404 for an unknown key or
//! receiver (or one that does not publish the product), 422 when the plugin
//! rejects it, 503 with the reason when it traps, times out, goes over a
//! limit or asks to retry, or when the model cannot be read; 400 for a
//! malformed path, 405 for a method other than GET. A response over
//! [`MAX_RESPONSE_BYTES`] is a 503 too (Lambda cannot return it).
//!
//! [`ReadApi::handle`] is the whole API, free of any HTTP framework: `prism
//! serve` puts hyper in front of it (`prism_cli`), the API Lambda `lambda_http`
//! (`prism_lambda::api`).

pub mod route;

use std::sync::Arc;

use serde_json::json;

use route::{NoRoute, Route};

use prism_core::receivers::ActiveReceiver;
use prism_core::receivers::Receivers;
use prism_engine::PluginEngine;
use prism_types::change::{Change, ChangeKind};

/// The largest body the API returns: Lambda's 6 MB response limit, less
/// room for base64 (binary bodies) and the envelope.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body's media type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, v: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json".into(),
            body: v.to_string().into_bytes(),
        }
    }

    fn error(status: u16, kind: &str, message: impl Into<String>) -> Self {
        Self::json(status, &json!({"error": message.into(), "kind": kind}))
    }
}

/// Everything the API needs, built once.
pub struct ReadApi {
    /// The Wasm engine.
    pub engine: PluginEngine,
    /// The receivers (hot reloaded from the registry, or fixed).
    pub receivers: Receivers,
    /// The product model (a DynamoDB table on AWS).
    pub model: Arc<dyn ModelSource>,
}

pub use prism_core::model::ModelSource;

impl ReadApi {
    /// Answer one request.
    pub async fn handle(self: &Arc<Self>, method: &str, path: &str) -> Reply {
        let reply = match route::parse(method, path) {
            Ok(Route::Product { key }) => self.product(&key).await,
            Ok(Route::Rendered { receiver, key }) => self.rendered(&receiver, &key).await,
            Err(NoRoute::NotFound) => Reply::error(404, "not-found", format!("no route {path}")),
            Err(NoRoute::Method) => Reply::error(
                405,
                "method",
                format!("{method} {path}: only GET is served"),
            ),
            Err(NoRoute::BadPath(s)) => Reply::error(
                400,
                "bad-path",
                format!("path segment {s:?} is not valid percent-encoded UTF-8"),
            ),
        };
        let reply = if reply.body.len() > MAX_RESPONSE_BYTES {
            Reply::error(
                503,
                "too-large",
                format!(
                    "the response is {} bytes, over the API's limit of {MAX_RESPONSE_BYTES}",
                    reply.body.len()
                ),
            )
        } else {
            reply
        };
        tracing::info!(
            method,
            path,
            status = reply.status,
            bytes = reply.body.len(),
            "request"
        );
        reply
    }

    async fn document(&self, key: &str) -> Result<serde_json::Value, Reply> {
        match self.model.get(key).await {
            Ok(Some(doc)) => Ok(doc),
            Ok(None) => Err(Reply::error(404, "not-found", format!("no product {key}"))),
            Err(e) => {
                tracing::error!(error = %e, "model unreadable");
                Err(Reply::error(503, "model", e.to_string()))
            }
        }
    }

    async fn product(&self, key: &str) -> Reply {
        match self.document(key).await {
            Ok(doc) => Reply::json(200, &doc),
            Err(r) => r,
        }
    }

    async fn rendered(self: &Arc<Self>, receiver: &str, key: &str) -> Reply {
        let set = match self.receivers.current(&self.engine).await {
            Ok(s) => s,
            Err(e) => return Reply::error(503, "registry", e.to_string()),
        };
        let Some(r) = set.active.iter().find(|r| r.id() == receiver).cloned() else {
            if let Some(u) = set
                .unavailable
                .iter()
                .find(|u| u.receiver.as_deref() == Some(receiver))
            {
                return Reply::error(
                    503,
                    "unavailable",
                    format!("receiver {receiver}: plugin unavailable: {}", u.reason),
                );
            }
            let why = if set.disabled.iter().any(|d| d == receiver) {
                "is disabled"
            } else {
                "is not registered"
            };
            return Reply::error(404, "not-found", format!("receiver {receiver} {why}"));
        };
        let doc = match self.document(key).await {
            Ok(d) => d,
            Err(reply) => return reply,
        };
        let change = Change::new(
            key.to_owned(),
            ChangeKind::Insert,
            None,
            Some(doc),
            "0".into(),
            0,
        );
        tokio::task::spawn_blocking(move || render(&r, &change))
            .await
            .unwrap_or_else(|e| Reply::error(503, "panic", format!("rendering failed: {e}")))
    }
}

/// Run `accepts` and `format` for one product, as for a new insert.
fn render(r: &ActiveReceiver, change: &Change) -> Reply {
    let (receiver, key) = (r.id(), change.key.as_str());
    let wit = prism_core::dispatch::to_wit(change);
    let failed = |e: prism_engine::CallError| {
        Reply::error(
            503,
            e.kind().as_str(),
            format!("receiver {receiver} (plugin {}) on {key}: {e}", r.digest()),
        )
    };
    let mut session = match r.plugin.session(r.config.clone(), r.manifest.limits) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    match session.accepts(&wit) {
        Ok(true) => {}
        Ok(false) => {
            return Reply::error(
                404,
                "not-published",
                format!("receiver {receiver} does not publish product {key}"),
            );
        }
        Err(e) => return failed(e),
    }
    match session.format(&wit) {
        Ok(Ok(msgs)) => match msgs.as_slice() {
            [] => Reply::error(
                404,
                "not-published",
                format!("receiver {receiver} makes no message for product {key}"),
            ),
            [one] => Reply {
                status: 200,
                content_type: one.content_type.clone(),
                body: one.body.clone(),
            },
            many => Reply::json(
                200,
                &serde_json::Value::Array(
                    many.iter()
                        .map(|m| {
                            json!({
                                "content_type": m.content_type,
                                "body": String::from_utf8_lossy(&m.body),
                            })
                        })
                        .collect(),
                ),
            ),
        },
        Ok(Err(prism_contract::FormatError::Reject(reason))) => Reply::error(
            422,
            "rejected",
            format!("receiver {receiver} rejects product {key}: {reason}"),
        ),
        Ok(Err(prism_contract::FormatError::Retry(reason))) => Reply::error(
            503,
            "retry",
            format!("receiver {receiver} cannot render product {key} now: {reason}"),
        ),
        Err(e) => failed(e),
    }
}
