//! One batch of DynamoDB stream records through every receiver, as the
//! Lambda does it (and `prism dev`, which polls the stream itself).
//!
//! - Messages go to each receiver's SQS queue; what a receiver cannot take
//!   (rejected, trapped, over a limit, too large for SQS) is parked in its
//!   dead-letter queue with the original change, the error and the digest.
//! - A queue that is down (or a plugin that keeps asking to retry) holds
//!   the change for a retry. With a spool the change waits in the
//!   receiver's retry lane for that product, later changes of the product
//!   wait behind it, and everything else carries on; the scheduled tick
//!   ([`StreamProcessor::tick`]) retries the lanes in order and flushes
//!   batch buffers. Only what cannot be put in a lane fails its record: the
//!   batch then reports it and every later record (`batchItemFailures`), so
//!   Lambda sends them again. Nothing is acknowledged unless it was
//!   delivered, parked or spooled.
//! - The [`ledger`] remembers which receivers handled the reported records,
//!   so the retry does not repeat their work.
//! - A record that cannot be read at all is parked in the dispatcher's own
//!   dead-letter queue when one is configured, and otherwise reported as
//!   failed (the event source mapping's on-failure destination then keeps
//!   it after its retries).

mod deadline;
pub mod ledger;
pub mod metrics;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::RegistryOpError;
use crate::aws::outputs::DynamoOutputs;
use crate::change::Change;
use crate::dispatch::{Dispatcher, Progress, RunReport};
use crate::dispatch::{Lanes, RunOptions, TickOptions, TickReport};
use crate::engine::PluginEngine;
use crate::manifest::{Destination, Mode};
use crate::outputs::OutputMemory;
use crate::receivers::ReceiverSet;
use crate::reload::LiveReceivers;
use crate::sink::{DeadLetter, Sink, SqsSink};
use crate::spool::Spool;

pub use deadline::{FINISH_RESERVE, stop_at};
pub use ledger::{Ledger, LedgerError};
pub use metrics::BatchNumbers;

/// The receiver name under which unreadable records are parked and remembered.
pub const UNREADABLE: &str = "prism:unreadable";

/// What a DynamoDB stream Lambda returns: the records to retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamoDbEventResponse {
    /// Failed records; Lambda retries from the lowest sequence number.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One failed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The record's sequence number.
    pub item_identifier: String,
}

/// Why a whole batch could not be handled (Lambda retries all of it).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The event is not a DynamoDB stream event.
    #[error("malformed stream event: {0}")]
    Malformed(String),
    /// The registry has never been read, so no receiver is known.
    #[error("no receivers loaded: {0}")]
    Registry(#[from] RegistryOpError),
}

/// Where the receivers come from.
pub enum Receivers {
    /// The DynamoDB registry, re-read on a TTL (hot reload).
    Live(tokio::sync::Mutex<LiveReceivers>),
    /// A fixed set (tests, local registries).
    Fixed(Arc<ReceiverSet>),
}

impl Receivers {
    /// The current set (re-read from the registry when stale). An error
    /// only when the registry has never been read: after that, a failed
    /// refresh keeps the last good set.
    pub async fn current(
        &self,
        engine: &PluginEngine,
    ) -> Result<Arc<ReceiverSet>, RegistryOpError> {
        match self {
            Receivers::Fixed(s) => Ok(s.clone()),
            Receivers::Live(live) => {
                // Reload without holding the lock: compiling takes seconds,
                // and meanwhile other callers are served the set in use.
                let job = live.lock().await.begin_refresh();
                let Some((loader, old)) = job else {
                    return Ok(live.lock().await.set());
                };
                let result = loader.load(engine, &old).await;
                let mut live = live.lock().await;
                let (set, err) = live.finish_refresh(result);
                match err {
                    Some(e) if !live.loaded() => Err(e),
                    _ => Ok(set),
                }
            }
        }
    }
}

/// Everything a warm dispatcher keeps between batches.
pub struct StreamProcessor {
    /// The Wasm engine (with its compile cache).
    pub engine: PluginEngine,
    /// The receivers.
    pub receivers: Receivers,
    /// SQS, for queues and dead-letter queues.
    pub sqs: aws_sdk_sqs::Client,
    /// The retry ledger.
    pub ledger: Ledger,
    /// Dispatch settings (hold mode is forced on).
    pub dispatcher: Dispatcher,
    /// Queue for records that cannot be read (name or URL).
    pub unreadable_queue: Option<String>,
    /// Write EMF metric lines to stdout.
    pub emit_metrics: bool,
    /// Output dedup state; `None`: every output is sent.
    pub outputs: Option<OutputsStore>,
    /// Batch buffers and retry lanes; `None`: batch windows end with the
    /// stream batch, and a held change fails its record (Lambda retries it).
    pub spool: Option<Arc<dyn Spool>>,
}

/// Where the output dedup state lives.
pub enum OutputsStore {
    /// In this process, kept across batches (`prism dev`).
    Memory(Arc<OutputMemory>),
    /// A DynamoDB table, read and written per batch (the Lambda).
    Dynamo(DynamoOutputs),
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The answer for Lambda.
    pub response: DynamoDbEventResponse,
    /// Per-receiver counts.
    pub report: RunReport,
    /// Batch-level numbers (also emitted as metrics).
    pub numbers: BatchNumbers,
}

/// One record of the event, as far as it could be read.
struct Record {
    /// `<event source ARN>#<sequence>` (the ledger's key).
    id: String,
    sequence: String,
    change: Result<Change, String>,
    raw: Value,
}

impl StreamProcessor {
    /// Handle one DynamoDB stream event (`{"Records": [...]}`).
    pub async fn handle(&self, event: &Value) -> Result<BatchOutcome, StreamError> {
        self.handle_within(event, None).await
    }

    /// [`Self::handle`] within an invocation that ends at `deadline` (the
    /// Lambda context's): no plugin call starts after [`stop_at`] of it, and
    /// what was not started is reported in `batchItemFailures` (with the
    /// ledger written for what was handled), so a batch never ends in a
    /// Lambda timeout.
    pub async fn handle_within(
        &self,
        event: &Value,
        deadline: Option<SystemTime>,
    ) -> Result<BatchOutcome, StreamError> {
        let records = read_records(event)?;
        let set = self.current().await?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let prior = match self.ledger.lookup(&ids).await {
            Ok(p) => p,
            Err(e) => {
                // Without the ledger a retry may repeat work (FIFO queues
                // still drop the duplicates); stopping the shard would be worse.
                tracing::error!(error = %e, "retry ledger unreadable; handling the batch as new");
                HashMap::new()
            }
        };

        let (destinations, broken) = self.destinations(&set);
        let sink = SqsSink::new(
            self.sqs.clone(),
            tokio::runtime::Handle::current(),
            destinations.clone(),
        );

        // Readable records become changes; `of_change[c]` is change c's record.
        let mut changes = Vec::new();
        let mut of_change = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if let Ok(c) = &r.change {
                changes.push(c.clone());
                of_change.push(i);
            }
        }
        let deliverable = Arc::new(deliverable(&set, &destinations));
        let dispatcher = Dispatcher {
            hold_unavailable: true,
            stop_at: deadline.map(|d| stop_at(d, &deliverable)),
            ..self.dispatcher.clone()
        };
        let outputs = self.batch_outputs(&deliverable, &changes).await;
        let unreadable_queue = self.unreadable_queue.is_some();
        let (report, changes, prior, of_change, records) = {
            let ids = ids.clone();
            let spool = self.spool.clone();
            let set = deliverable.clone();
            let outputs = outputs.clone();
            tokio::task::spawn_blocking(move || {
                let already = |receiver: &str, c: usize| {
                    prior
                        .get(&ids[of_change[c]])
                        .is_some_and(|s| s.contains(receiver))
                };
                let lanes = spool.as_deref().and_then(|s| match Lanes::open(s, now_ms()) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        // Without lanes a held change fails its record, and
                        // Lambda retries it: slower, but nothing is lost.
                        tracing::error!(error = %e, "spool unreadable; held changes fail the batch");
                        None
                    }
                });
                let opts = RunOptions {
                    already: &already,
                    outputs: outputs.as_deref(),
                    lanes: lanes.as_ref(),
                    ..RunOptions::default()
                };
                let mut report =
                    dispatcher.run_with(&set, &changes, &sink, &Progress::default(), opts);
                for b in &broken {
                    let st = park_all(&sink, b, &changes, &already);
                    report.receivers.insert(b.receiver.clone(), st);
                }
                let records: Vec<(Record, bool)> = records
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let parked = match &r.change {
                            Ok(_) => false,
                            Err(e) => {
                                tracing::error!(sequence = %r.sequence, error = %e, "stream record unreadable");
                                prior.get(&r.id).is_some_and(|s| s.contains(UNREADABLE))
                                    || (unreadable_queue && park_unreadable(&sink, i, &r, e))
                            }
                        };
                        (r, parked)
                    })
                    .collect();
                (report, changes, prior, of_change, records)
            })
            .await
            .expect("the dispatcher does not panic")
        };

        // Unreadable records that could not be parked are held like the rest.
        let mut first_failed = report.first_held().map(|c| of_change[c]);
        let mut unreadable = 0;
        for (i, (r, parked)) in records.iter().enumerate() {
            if r.change.is_err() {
                unreadable += 1;
                if !parked {
                    first_failed = Some(first_failed.map_or(i, |f| f.min(i)));
                }
            }
        }

        let mut response = DynamoDbEventResponse::default();
        if let Some(f) = first_failed {
            let mut entries = Vec::new();
            let mut change_of: HashMap<usize, usize> = HashMap::new();
            for (c, &rec) in of_change.iter().enumerate() {
                change_of.insert(rec, c);
            }
            for (i, (r, parked)) in records.iter().enumerate().skip(f) {
                let mut handled: BTreeSet<String> = prior.get(&r.id).cloned().unwrap_or_default();
                if let Some(&c) = change_of.get(&i) {
                    for (receiver, st) in &report.receivers {
                        if st.held.binary_search(&c).is_err() {
                            handled.insert(receiver.clone());
                        }
                    }
                } else if *parked {
                    handled.insert(UNREADABLE.to_owned());
                }
                entries.push((r.id.clone(), handled));
                response.batch_item_failures.push(BatchItemFailure {
                    item_identifier: r.sequence.clone(),
                });
            }
            if let Err(e) = self.ledger.remember(&entries).await {
                tracing::error!(error = %e, "could not write the retry ledger; the retry may repeat delivered work");
            }
            tracing::warn!(first = %records[f].0.sequence, failed = response.batch_item_failures.len(), "records reported failed for a retry");
        }

        if let (Some(OutputsStore::Dynamo(store)), Some(mem)) = (&self.outputs, &outputs)
            && let Err(e) = store.write(&mem.take_dirty()).await
        {
            // The state lags: the next identical output is sent once more.
            tracing::error!(error = %e, "could not write the output dedup state");
        }

        if let Receivers::Live(live) = &self.receivers {
            // `prism status` shows a quarantine rather than the error that
            // led to it (that one is in the logs and the dead letters).
            let errors: Vec<(String, String)> = report
                .receivers
                .iter()
                .filter_map(|(r, st)| {
                    let text = match set.active.iter().find(|a| a.id() == r) {
                        Some(a) if st.quarantined > 0 => format!(
                            "quarantined for another {} s: its plugin kept failing ({} changes not run in this batch)",
                            a.breaker.quarantined().unwrap_or_default().as_secs(),
                            st.quarantined
                        ),
                        _ => st.first_errors.first()?.clone(),
                    };
                    Some((r.clone(), text))
                })
                .collect();
            if !errors.is_empty() {
                live.lock().await.record_errors(&errors).await;
            }
        }

        let now_ms = now_ms();
        let numbers = BatchNumbers {
            records: records.len(),
            unreadable,
            failed: response.batch_item_failures.len(),
            unavailable_receivers: set.unavailable.len()
                + (set.active.len() - deliverable.active.len()),
            iterator_age_ms: changes
                .iter()
                .map(|c| c.time_ms)
                .max()
                .map_or(0, |t| now_ms.saturating_sub(t)),
        };
        if self.emit_metrics {
            for (receiver, st) in &report.receivers {
                println!("{}", metrics::receiver_line(receiver, st, now_ms));
            }
            println!("{}", metrics::batch_line(&numbers, now_ms));
        }
        Ok(BatchOutcome {
            response,
            report,
            numbers,
        })
    }

    /// Where each receiver's messages go (receivers without a queue are
    /// logged and left out), and the receivers whose plugin does not load
    /// but whose changes can be parked in their dead-letter queue.
    fn destinations(&self, set: &ReceiverSet) -> (HashMap<String, Destination>, Vec<Broken>) {
        let mut destinations: HashMap<String, Destination> = HashMap::new();
        for r in &set.active {
            match &r.manifest.destination {
                Some(d) => {
                    destinations.insert(r.id().to_owned(), d.clone());
                }
                None => tracing::error!(
                    receiver = r.id(),
                    "receiver has no destination queue in its registry entry; it gets nothing"
                ),
            }
        }
        if let Some(q) = &self.unreadable_queue {
            destinations.insert(
                UNREADABLE.to_owned(),
                Destination {
                    queue: q.clone(),
                    dead_letter_queue: Some(q.clone()),
                },
            );
        }
        // Enabled receivers whose plugin does not load: their changes are
        // parked in their dead-letter queue, to be replayed once it is fixed.
        let broken: Vec<Broken> = set
            .unavailable
            .iter()
            .filter_map(|u| {
                let d = u.destination.clone()?;
                d.dead_letter_queue.as_ref()?;
                let receiver = u.receiver.clone()?;
                destinations.insert(receiver.clone(), d);
                Some(Broken {
                    receiver,
                    digest: u.digest.map(|d| d.to_string()),
                    reason: u.reason.clone(),
                })
            })
            .collect();
        (destinations, broken)
    }

    /// The scheduled tick: flush the batch buffers that are due (all of them
    /// with `opts.force`) and retry the retry lanes, in order. Without a
    /// spool there is nothing to do.
    pub async fn tick(&self, opts: TickOptions) -> Result<TickReport, StreamError> {
        self.tick_within(opts, None).await
    }

    /// [`Self::tick`] within an invocation that ends at `deadline`: no lane
    /// is started after [`stop_at`] of it; the next tick takes the rest.
    pub async fn tick_within(
        &self,
        opts: TickOptions,
        deadline: Option<SystemTime>,
    ) -> Result<TickReport, StreamError> {
        let Some(spool) = self.spool.clone() else {
            tracing::info!("tick without a spool: nothing to flush or retry");
            return Ok(TickReport::default());
        };
        let set = self.current().await?;
        let (destinations, _) = self.destinations(&set);
        let sink = SqsSink::new(
            self.sqs.clone(),
            tokio::runtime::Handle::current(),
            destinations.clone(),
        );
        let deliverable = deliverable(&set, &destinations);
        let dispatcher = Dispatcher {
            stop_at: deadline.map(|d| stop_at(d, &deliverable)),
            ..self.dispatcher.clone()
        };
        let report = tokio::task::spawn_blocking(move || {
            crate::dispatch::tick(&dispatcher, &deliverable, &*spool, &sink, opts)
        })
        .await
        .expect("the tick does not panic");
        tracing::info!(
            lanes = report.lanes,
            busy = report.busy,
            waiting = report.waiting,
            orphaned = report.orphaned,
            deferred = report.deferred,
            "tick done"
        );
        if self.emit_metrics {
            let now_ms = now_ms();
            for (receiver, st) in &report.receivers {
                println!("{}", metrics::receiver_line(receiver, st, now_ms));
            }
            println!("{}", metrics::tick_line(&report, now_ms));
        }
        Ok(report)
    }

    /// The dedup state for this batch: the long-lived one, or the stored
    /// entries of its (receiver, key) pairs. A store that cannot be read
    /// turns dedup off for the batch (sending twice rather than losing).
    async fn batch_outputs(
        &self,
        set: &ReceiverSet,
        changes: &[Change],
    ) -> Option<Arc<OutputMemory>> {
        match self.outputs.as_ref()? {
            OutputsStore::Memory(m) => Some(m.clone()),
            OutputsStore::Dynamo(store) => {
                let keys: BTreeSet<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                let pairs: Vec<(String, String)> = set
                    .active
                    .iter()
                    .filter(|r| r.manifest.dedup && r.manifest.mode == Mode::Immediate)
                    .flat_map(|r| keys.iter().map(|k| (r.id().to_owned(), (*k).to_owned())))
                    .collect();
                match store.read(&pairs).await {
                    Ok(entries) => Some(Arc::new(OutputMemory::from_entries(entries))),
                    Err(e) => {
                        tracing::error!(error = %e, "output dedup state unreadable; this batch sends every output");
                        None
                    }
                }
            }
        }
    }

    /// The current receivers (re-read from the registry when stale).
    async fn current(&self) -> Result<Arc<ReceiverSet>, StreamError> {
        Ok(self.receivers.current(&self.engine).await?)
    }
}

/// The active receivers that have somewhere to deliver.
fn deliverable(set: &ReceiverSet, destinations: &HashMap<String, Destination>) -> ReceiverSet {
    ReceiverSet {
        active: set
            .active
            .iter()
            .filter(|r| destinations.contains_key(r.id()))
            .cloned()
            .collect(),
        ..ReceiverSet::default()
    }
}

/// A receiver whose plugin failed to load, with a dead-letter queue.
struct Broken {
    receiver: String,
    digest: Option<String>,
    reason: String,
}

/// Park every change for a receiver that cannot run; stop (and hold the
/// rest) at the first that cannot be parked.
fn park_all(
    sink: &SqsSink,
    b: &Broken,
    changes: &[Change],
    already: crate::dispatch::AlreadyHandled<'_>,
) -> crate::dispatch::ReceiverStats {
    let mut st = crate::dispatch::ReceiverStats::default();
    for (c, change) in changes.iter().enumerate() {
        if already(&b.receiver, c) {
            st.already_handled += 1;
            continue;
        }
        if !st.held.is_empty() {
            st.held.push(c);
            continue;
        }
        st.seen += 1;
        let error = format!(
            "receiver {} (plugin {}) on key {} sequence {}: plugin unavailable: {}",
            b.receiver,
            b.digest.as_deref().unwrap_or("?"),
            change.key,
            change.sequence,
            b.reason
        );
        st.error("unavailable", error.clone());
        let dead = DeadLetter {
            receiver: b.receiver.clone(),
            plugin_digest: b.digest.clone(),
            key: change.key.clone(),
            sequence: change.sequence.clone(),
            ordinal: c as u64 + 1,
            error_kind: "unavailable".into(),
            error,
            change: crate::dispatch::change_json(change),
        };
        if let Err(e) = sink.park(&dead) {
            tracing::error!(receiver = %b.receiver, key = %change.key, error = %e, "could not park a change for an unavailable receiver; held");
            st.held.push(c);
        }
    }
    st
}

/// Park an unreadable record in the dispatcher's dead-letter queue.
fn park_unreadable(sink: &SqsSink, i: usize, r: &Record, error: &str) -> bool {
    let dead = DeadLetter {
        receiver: UNREADABLE.to_owned(),
        plugin_digest: None,
        key: String::new(),
        sequence: r.sequence.clone(),
        ordinal: i as u64 + 1,
        error_kind: "unreadable".into(),
        error: format!("stream record {i} (sequence {}): {error}", r.sequence),
        change: r.raw.clone(),
    };
    match sink.park(&dead) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(sequence = %r.sequence, error = %e, "could not park an unreadable record");
            false
        }
    }
}

fn read_records(event: &Value) -> Result<Vec<Record>, StreamError> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| StreamError::Malformed("no \"Records\" array".into()))?;
    records
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let sequence = raw
                .pointer("/dynamodb/SequenceNumber")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    StreamError::Malformed(format!(
                        "record {i} (eventID {}) has no dynamodb.SequenceNumber string",
                        raw.get("eventID").unwrap_or(&Value::Null)
                    ))
                })?
                .to_owned();
            let source = raw
                .get("eventSourceARN")
                .and_then(Value::as_str)
                .unwrap_or("local");
            Ok(Record {
                id: format!("{source}#{sequence}"),
                change: crate::input::record::to_change(raw)
                    .map_err(|e| format!("record {i}: {e}")),
                sequence,
                raw: raw.clone(),
            })
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
