//! A fault-injecting HTTP proxy between the AWS SDK and moto.
//!
//! moto always answers, and answers at once; AWS does not. The proxy sits on
//! the SDK's endpoint URL and, per [`Rule`], can delay a call, answer with
//! throttling or a 5xx, drop the connection before or after moto saw the
//! request, or fail part of a `SendMessageBatch` (retryable or sender-fault
//! entries). Rules match an action (`SendMessageBatch`, `PutItem`, …) and,
//! optionally, a text in the request body (a table name, a queue URL), fire
//! with a probability drawn from a seeded generator, and can be limited to a
//! number of hits. Every call is counted by action, every injected fault by
//! kind.
//!
//! The proxy runs on its own thread and runtime, so blocking tests and
//! single-threaded runtimes can use it alike.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// What a rule does to a call it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forward the call after this long.
    Delay(Duration),
    /// Hold the call until [`FaultProxy::release`], then forward it: a
    /// call made to lose a race, whatever the machine's speed.
    Hold,
    /// Answer `ThrottlingException` (HTTP 400) without forwarding.
    Throttle,
    /// Answer HTTP 500 without forwarding.
    ServerError,
    /// Close the connection without forwarding: the call never happened.
    DropBefore,
    /// Forward the call, then close the connection without the answer: the
    /// call happened, but the caller cannot know.
    DropAfter,
    /// Fail some entries of a `SendMessageBatch`: each entry, with these
    /// probabilities, is failed as SQS's side (`InternalError`, retryable)
    /// or refused as the sender's fault (`InvalidParameterValue`). The other
    /// entries are forwarded and succeed.
    PartialBatch {
        /// Probability of a retryable failure per entry.
        retryable: f64,
        /// Probability of a sender-fault refusal per entry.
        sender_fault: f64,
    },
    /// Answer a `SendMessageBatch` here, every entry successful, without
    /// forwarding: a queue as fast as SQS, for the throughput benchmark
    /// (moto's `SendMessage` costs time linear in the queue's length).
    Accept,
    /// Fail exactly the entry at `position` of a `SendMessageBatch` (as
    /// SQS's side, or refused as the sender's fault); the rest go through.
    FailEntry {
        /// The entry's position in the call.
        position: usize,
        /// Refused as the sender's fault (else retryable).
        sender_fault: bool,
    },
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::Delay(_) | Fault::Hold => "delay",
            Fault::Throttle => "throttle",
            Fault::ServerError => "5xx",
            Fault::DropBefore => "drop-before",
            Fault::DropAfter => "drop-after",
            Fault::PartialBatch { .. } | Fault::FailEntry { .. } => "partial-batch",
            Fault::Accept => "accepted-here",
        }
    }
}

/// One fault rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The action (`SendMessageBatch`, `PutItem`, `S3:PUT`, …); `*`: any.
    pub action: String,
    /// Only calls whose body contains this text (a table name, a queue URL).
    pub body_contains: Option<String>,
    /// What happens.
    pub fault: Fault,
    /// Probability that a matching call gets it.
    pub probability: f64,
    /// How many more times it may fire; `None`: no limit.
    pub remaining: Option<u32>,
}

impl Rule {
    /// `fault` on every `action` call.
    pub fn always(action: &str, fault: Fault) -> Self {
        Self {
            action: action.to_owned(),
            body_contains: None,
            fault,
            probability: 1.0,
            remaining: None,
        }
    }

    /// `fault` on `action` calls with probability `p`.
    pub fn sometimes(action: &str, fault: Fault, p: f64) -> Self {
        Self {
            probability: p,
            ..Self::always(action, fault)
        }
    }

    /// Only for calls whose body contains `text`.
    pub fn on(mut self, text: &str) -> Self {
        self.body_contains = Some(text.to_owned());
        self
    }

    /// At most `n` times.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    latency: Duration,
    calls: BTreeMap<String, u64>,
    by_table: BTreeMap<String, u64>,
    injected: BTreeMap<String, u64>,
    /// Calls [`Fault::Hold`] has held so far: each waits for its turn.
    held: u64,
    /// Held calls with a turn below this go on.
    released: u64,
    /// Entries answered by [`Fault::Accept`]: (queue URL, body), in the
    /// order they arrived.
    accepted: Vec<(String, String)>,
}

struct Shared {
    upstream: String,
    state: Mutex<State>,
    rng: Mutex<fastrand::Rng>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A running proxy. Dropping it stops it.
pub struct FaultProxy {
    /// The proxy's endpoint URL (give it to the SDK instead of moto's).
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (moto's URL), drawing from `seed`.
    pub fn start(upstream: &str, seed: u64) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the proxy");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a port for the proxy");
        let addr: SocketAddr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            state: Mutex::new(State::default()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                loop {
                    let conn = tokio::select! {
                        c = listener.accept() => c,
                        _ = &mut stopped => break,
                    };
                    let Ok((stream, _)) = conn else { continue };
                    let s = s.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let s = s.clone();
                            async move { s.handle(req).await }
                        });
                        // A dropped connection ends here with an error: that is the point.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self {
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Replace the rules.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.shared.lock().rules = rules;
    }

    /// Let the calls [`Fault::Hold`] holds (and any later ones) go on.
    pub fn release(&self) {
        self.shared.lock().released = u64::MAX;
    }

    /// Let the oldest call [`Fault::Hold`] holds (or the next one it will
    /// hold) go on, and only that one.
    pub fn release_one(&self) {
        let mut s = self.shared.lock();
        s.released = s.released.saturating_add(1);
    }

    /// Wait until [`Fault::Hold`] has held `n` calls in all (the test's
    /// cue that they are on their way); panics after 5 minutes, naming
    /// `what` it waited for.
    pub fn wait_held(&self, n: u64, what: &str) {
        let waited = std::time::Instant::now();
        while self.shared.lock().held < n {
            assert!(
                waited.elapsed() < Duration::from_secs(300),
                "{what}: {n} calls never reached the proxy (held {})",
                self.shared.lock().held
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Add a fixed latency to every call (on top of any rule's delay).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Calls seen so far, by action.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.shared.lock().calls.clone()
    }

    /// DynamoDB calls so far, by "<action> <table>" (a batch call counts
    /// under the first table it names).
    pub fn calls_by_table(&self) -> BTreeMap<String, u64> {
        self.shared.lock().by_table.clone()
    }

    /// What [`Fault::Accept`] answered: (queue URL, body) per entry, in
    /// arrival order (a queue as SQS would hold it).
    pub fn accepted(&self) -> Vec<(String, String)> {
        self.shared.lock().accepted.clone()
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.shared.lock().injected.clone()
    }

    /// Faults injected so far, in all.
    pub fn injected_total(&self) -> u64 {
        self.shared.lock().injected.values().sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The action a call performs: the `X-Amz-Target` operation for JSON
/// protocols (DynamoDB, Streams, SQS), else `S3:<METHOD>`.
pub fn action_of<B>(req: &Request<B>) -> String {
    match req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        Some(t) => t.rsplit('.').next().unwrap_or(t).to_owned(),
        None => format!("S3:{}", req.method()),
    }
}

/// The error body AWS JSON protocols use.
fn aws_error(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    let body = json!({"__type": code, "message": format!("injected by the fault proxy: {code}")});
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// Which entries of a batch fail.
#[derive(Clone, Copy)]
enum Pick {
    Random { retryable: f64, sender_fault: f64 },
    At { position: usize, sender_fault: bool },
}

/// A `SendMessageBatch` answer with every entry successful.
fn accept_all(body: &[u8]) -> Response<Full<Bytes>> {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let ok: Vec<Value> = request["Entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(n, e)| {
                    json!({"Id": e["Id"], "MessageId": format!("accepted-{n}"), "MD5OfMessageBody": "0"})
                })
                .collect()
        })
        .unwrap_or_default();
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(Bytes::from(
            json!({"Successful": ok, "Failed": []}).to_string(),
        )))
        .expect("a valid response")
}

/// The table a DynamoDB JSON request names (`TableName`, or the first key
/// of `RequestItems`).
fn table_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if let Some(t) = v.get("TableName").and_then(Value::as_str) {
        return Some(t.to_owned());
    }
    v.get("RequestItems")?.as_object()?.keys().next().cloned()
}

/// The proxy closes the connection when the service fails.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault for this call, if a rule fires (and the fixed latency).
    fn pick(&self, action: &str, body: &[u8]) -> (Option<Fault>, Duration) {
        let mut st = self.lock();
        *st.calls.entry(action.to_owned()).or_default() += 1;
        if let Some(table) = table_of(body) {
            *st.by_table.entry(format!("{action} {table}")).or_default() += 1;
        }
        let latency = st.latency;
        let text = String::from_utf8_lossy(body);
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut fired = None;
        for r in st.rules.iter_mut() {
            let matches = (r.action == "*" || r.action == action)
                && r.body_contains
                    .as_ref()
                    .is_none_or(|t| text.contains(t.as_str()))
                && r.remaining != Some(0);
            if matches && rng.f64() < r.probability {
                if let Some(n) = &mut r.remaining {
                    *n -= 1;
                }
                fired = Some(r.fault.clone());
                break;
            }
        }
        drop(rng);
        if let Some(f) = &fired {
            *st.injected.entry(f.name().to_owned()).or_default() += 1;
        }
        (fired, latency)
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        let action = action_of(&req);
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(Dropped),
        };
        let (fault, latency) = self.pick(&action, &body);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fault {
            None => self.forward(parts, body).await,
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                self.forward(parts, body).await
            }
            Some(Fault::Hold) => {
                let turn = {
                    let mut s = self.lock();
                    s.held += 1;
                    s.held - 1
                };
                while self.lock().released <= turn {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                self.forward(parts, body).await
            }
            Some(Fault::Throttle) => Ok(aws_error(StatusCode::BAD_REQUEST, "ThrottlingException")),
            Some(Fault::ServerError) => Ok(aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
            )),
            Some(Fault::DropBefore) => Err(Dropped),
            Some(Fault::Accept) => {
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let queue = request["QueueUrl"].as_str().unwrap_or_default().to_owned();
                let entries = request["Entries"].as_array().cloned().unwrap_or_default();
                self.lock().accepted.extend(entries.iter().map(|e| {
                    (
                        queue.clone(),
                        e["MessageBody"].as_str().unwrap_or_default().to_owned(),
                    )
                }));
                Ok(accept_all(&body))
            }
            Some(Fault::DropAfter) => {
                let _ = self.forward(parts, body).await;
                Err(Dropped)
            }
            Some(Fault::PartialBatch {
                retryable,
                sender_fault,
            }) => {
                let pick = Pick::Random {
                    retryable,
                    sender_fault,
                };
                self.partial_batch(parts, body, pick).await
            }
            Some(Fault::FailEntry {
                position,
                sender_fault,
            }) => {
                let pick = Pick::At {
                    position,
                    sender_fault,
                };
                self.partial_batch(parts, body, pick).await
            }
        }
    }

    /// Send the call on to moto and hand its answer back.
    async fn forward(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let uri: hyper::Uri = format!("{}{path}", self.upstream)
            .parse()
            .map_err(|_| Dropped)?;
        let mut req = Request::from_parts(parts, Full::new(body));
        *req.uri_mut() = uri;
        let resp = self.client.request(req).await.map_err(|_| Dropped)?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
        Ok(Response::from_parts(parts, Full::new(body)))
    }

    /// Fail some entries of a `SendMessageBatch` and forward the rest.
    async fn partial_batch(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
        pick: Pick,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
            return self.forward(parts, body).await;
        };
        let entries = request["Entries"].as_array().cloned().unwrap_or_default();
        let mut keep = Vec::new();
        let mut failed = Vec::new();
        {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            for (n, e) in entries.into_iter().enumerate() {
                let id = e["Id"].clone();
                let fail = match pick {
                    Pick::Random {
                        retryable,
                        sender_fault,
                    } => {
                        let x = rng.f64();
                        (x < sender_fault + retryable).then_some(x < sender_fault)
                    }
                    Pick::At {
                        position,
                        sender_fault,
                    } => (n == position).then_some(sender_fault),
                };
                match fail {
                    Some(true) => failed.push(json!({"Id": id, "SenderFault": true, "Code": "InvalidParameterValue", "Message": "injected: refused"})),
                    Some(false) => failed.push(json!({"Id": id, "SenderFault": false, "Code": "InternalError", "Message": "injected: try again"})),
                    None => keep.push(e),
                }
            }
        }
        let mut answer = json!({"Successful": [], "Failed": []});
        let mut status = StatusCode::OK;
        let mut headers = None;
        if !keep.is_empty() {
            request["Entries"] = Value::Array(keep);
            let body = Bytes::from(request.to_string());
            let mut parts = parts;
            parts.headers.remove("content-length");
            parts.headers.remove("x-amz-content-sha256");
            let resp = self.forward(parts, body).await?;
            let (p, body) = resp.into_parts();
            let bytes = body.collect().await.map_err(|_| Dropped)?.to_bytes();
            if !p.status.is_success() {
                return Ok(Response::from_parts(p, Full::new(bytes)));
            }
            answer = serde_json::from_slice(&bytes).map_err(|_| Dropped)?;
            status = p.status;
            headers = Some(p.headers);
        }
        let list = answer
            .as_object_mut()
            .expect("an SQS answer is an object")
            .entry("Failed")
            .or_insert_with(|| json!([]));
        if let Value::Array(a) = list {
            a.extend(failed);
        }
        let body = Bytes::from(answer.to_string());
        let mut resp = Response::builder().status(status);
        if let Some(h) = headers {
            for (k, v) in &h {
                if k != "content-length" && k != "x-amz-crc32" {
                    resp = resp.header(k, v);
                }
            }
        } else {
            resp = resp.header("content-type", "application/x-amz-json-1.0");
        }
        Ok(resp.body(Full::new(body)).expect("a valid response"))
    }
}
