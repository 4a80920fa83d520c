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

mod builder;
mod dedup_state;
pub mod ledger;
pub mod metrics;
mod outcome;
mod records;
mod routing;
mod run;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::dispatch::{Dispatcher, RunReport};
use crate::dispatch::{TickOptions, TickReport};
use crate::outputs::OutputMemory;
use crate::outputs::OutputsTable;
use crate::receivers::{ReceiverSet, Receivers};
use crate::sink::Delivery;
use crate::spool::Spool;
use prism_engine::PluginEngine;
use prism_types::change::Change;

pub use crate::deadline::{FINISH_RESERVE, finish_by, fits_invocation};
pub use builder::StreamProcessorBuilder;
pub use ledger::{LedgerStore, MemoryLedger};
pub use metrics::BatchNumbers;

use dedup_state::dirty_entries;
use records::{read_records, readable};
use routing::{deliverable, destinations};
use run::Run;

/// The receiver name under which unreadable records are parked and remembered.
pub const UNREADABLE: &str = "prism:unreadable";

/// What a DynamoDB stream Lambda returns: the records to retry, Lambda's
/// "partial batch response" (`{"batchItemFailures": [{"itemIdentifier":
/// SEQUENCE}]}`). Written here rather than taken from `aws_lambda_events`:
/// two fields do not earn the core, which knows nothing of AWS, a
/// dependency on a Lambda crate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamoDbEventResponse {
    /// The records Lambda is to send again (it resumes at the first).
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One record to retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// Its sequence number.
    pub item_identifier: Option<String>,
}

/// The failure entry for the record with `sequence`.
pub fn item_failure(sequence: impl Into<String>) -> BatchItemFailure {
    BatchItemFailure {
        item_identifier: Some(sequence.into()),
    }
}

/// Everything a warm dispatcher keeps between batches. Built with
/// [`StreamProcessor::builder`]: the engine, the receivers and the delivery
/// are required, everything else has a default.
pub struct StreamProcessor {
    /// The Wasm engine (with its compile cache), shareable with other
    /// processors (a simulation runs many over one engine).
    pub(crate) engine: Arc<PluginEngine>,
    /// The receivers.
    pub(crate) receivers: Receivers,
    /// Where messages and dead letters go (SQS on AWS).
    pub(crate) delivery: Arc<dyn Delivery>,
    /// The retry ledger.
    pub(crate) ledger: Arc<dyn LedgerStore>,
    /// Dispatch settings (hold mode is forced on).
    pub(crate) dispatcher: Dispatcher,
    /// Queue for records that cannot be read (name or URL).
    pub(crate) unreadable_queue: Option<String>,
    /// Write EMF metric lines to stdout.
    pub(crate) emit_metrics: bool,
    /// Output dedup state; `None`: every output is sent.
    pub(crate) outputs: Option<OutputsStore>,
    /// Batch buffers and retry lanes; `None`: batch windows end with the
    /// stream batch, and a held change fails its record (Lambda retries it).
    pub(crate) spool: Option<Arc<dyn Spool>>,
    /// Run only this receiver (`prism dlq redrive`); `None`: every receiver.
    pub(crate) only: Option<String>,
    /// The records replay changes on purpose (`prism dlq redrive`): the
    /// spool takes them even where a lane handled their sequence before.
    pub(crate) replay: bool,
    /// Now, in ms since the Unix epoch: [`system_clock`] on Lambda, a
    /// simulated one in the simulation (buffer ages and lane times are
    /// measured by it).
    pub(crate) clock: Clock,
}

/// Where a processor reads the time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system's clock.
pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

/// What the registry says of one receiver ([`StreamProcessor::presence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Enabled, and its plugin loaded.
    Active,
    /// Registered but disabled.
    Disabled,
    /// Enabled, but it cannot run (why).
    Unavailable(String),
    /// Not in the registry.
    Unknown,
}

/// Where the output dedup state lives.
pub enum OutputsStore {
    /// In this process, kept across batches (`prism dev`).
    Memory(Arc<OutputMemory>),
    /// A table, read and written per batch (DynamoDB on AWS).
    Table(Arc<dyn OutputsTable>),
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

impl StreamProcessor {
    /// Handle one DynamoDB stream event (`{"Records": [...]}`).
    pub async fn handle(&self, event: &Value) -> Result<BatchOutcome, crate::Error> {
        self.handle_within(event, None).await
    }

    /// [`Self::handle`] within an invocation that ends at `deadline` (the
    /// Lambda context's): no plugin call may end after [`finish_by`] of it, and
    /// what was not started is reported in `batchItemFailures` (with the
    /// ledger written for what was handled), so a batch never ends in a
    /// Lambda timeout.
    pub async fn handle_within(
        &self,
        event: &Value,
        deadline: Option<SystemTime>,
    ) -> Result<BatchOutcome, crate::Error> {
        self.handle_for(event, deadline, self.only.as_deref()).await
    }

    /// [`Self::handle_within`] for `receiver` alone, whatever [`StreamProcessorBuilder::redrive`]
    /// says: how a backfill runs the catalogue through one receiver on the
    /// dispatcher's own warm state.
    pub async fn handle_only(
        &self,
        event: &Value,
        receiver: &str,
        deadline: Option<SystemTime>,
    ) -> Result<BatchOutcome, crate::Error> {
        self.handle_for(event, deadline, Some(receiver)).await
    }

    async fn handle_for(
        &self,
        event: &Value,
        deadline: Option<SystemTime>,
        only: Option<&str>,
    ) -> Result<BatchOutcome, crate::Error> {
        let records = read_records(event)?;
        let set = self.current(only).await?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let prior = match self.ledger.lookup(&ids).await {
            Ok(p) => ledger::trusted_prefix(&ids, p),
            Err(e) => {
                // As new, a retry would run again what an attempt that died
                // after delivering suppressed or parked, and send it after
                // the newer change that attempt delivered (found by the
                // simulation): the batch waits for the ledger instead.
                tracing::error!(error = %e, "retry ledger unreadable; nothing delivered, the batch is tried again");
                return Err(e.because(crate::ErrorKind::LedgerUnreadable));
            }
        };
        let (destinations, broken) = destinations(&set, self.unreadable_queue.as_deref());
        let sink = self.delivery.sink(destinations.clone());
        let (changes, of_change) = readable(&records);
        let deliverable = Arc::new(deliverable(&set, &destinations));
        let dispatcher = self
            .dispatcher
            .to_builder()
            .hold_unavailable(true)
            .finish_by(deadline.map(finish_by))
            .build();
        // Sequence numbers are the stream's own unless a backfill (`only`)
        // or a redrive (`replay`) runs the batch.
        let stream_order = only.is_none() && !self.replay;
        let outputs = self
            .batch_outputs(&deliverable, &changes, stream_order)
            .await?;
        let run = Run {
            dispatcher,
            set: deliverable.clone(),
            sink,
            spool: self.spool.clone(),
            outputs: outputs.clone(),
            park_unreadable: self.unreadable_queue.is_some(),
            broken,
            replay: self.replay,
            now_ms: (self.clock)(),
        };
        let (report, changes, prior, of_change, records) =
            tokio::task::spawn_blocking(move || run.run(changes, prior, of_change, records, ids))
                .await
                .expect("the dispatcher does not panic")
                .map_err(|e| e.because(crate::ErrorKind::SpoolUnreadable))?;

        // Before the ledger: a retry that finds no ledger runs the batch
        // again whole, and records the state then.
        self.save_outputs(outputs.as_deref())
            .await
            .map_err(|e| e.because(crate::ErrorKind::OutputsUnwritable))?;
        let mut response = DynamoDbEventResponse::default();
        if let Some(f) = outcome::first_failed(report.first_held(), &of_change, &records) {
            let (entries, failures) =
                outcome::retry_entries(f, &of_change, &records, &report, &prior);
            response.batch_item_failures = failures;
            if let Err(e) = self.ledger.remember(&entries).await {
                tracing::error!(error = %e, "could not write the retry ledger; the retry may repeat delivered work");
            }
            tracing::warn!(first = %records[f].0.sequence, failed = response.batch_item_failures.len(), "records reported failed for a retry");
        }
        let errors = outcome::status_errors(&report, &set);
        if !errors.is_empty() {
            self.receivers.record_errors(&errors).await;
        }
        self.receivers.record_quarantines(&set).await;

        let now_ms = (self.clock)();
        let numbers = BatchNumbers {
            records: records.len(),
            unreadable: records.iter().filter(|(r, _)| r.change.is_err()).count(),
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

    /// The scheduled tick: flush the batch buffers that are due (all of them
    /// with `opts.force`) and retry the retry lanes, in order. Without a
    /// spool there is nothing to do.
    pub async fn tick(&self, opts: TickOptions) -> Result<TickReport, crate::Error> {
        self.tick_within(opts, None).await
    }

    /// [`Self::tick`] within an invocation that ends at `deadline`: no lane
    /// may end after [`finish_by`] of it; the next tick takes the rest.
    pub async fn tick_within(
        &self,
        opts: TickOptions,
        deadline: Option<SystemTime>,
    ) -> Result<TickReport, crate::Error> {
        let Some(spool) = self.spool.clone() else {
            tracing::info!("tick without a spool: nothing to flush or retry");
            return Ok(TickReport::default());
        };
        let set = self.current(self.only.as_deref()).await?;
        let (destinations, _) = destinations(&set, self.unreadable_queue.as_deref());
        let sink = self.delivery.sink(destinations.clone());
        let deliverable = deliverable(&set, &destinations);
        let dispatcher = self
            .dispatcher
            .to_builder()
            .finish_by(deadline.map(finish_by))
            .build();
        let outputs = self.tick_outputs(&deliverable, spool.clone()).await?;
        let memory = outputs.clone();
        // A table's state is written per lane, before the lane marks its
        // entries done; a state kept in this process needs no writing.
        let persist = match &self.outputs {
            Some(OutputsStore::Table(store)) => {
                let (store, handle) = (store.clone(), tokio::runtime::Handle::current());
                Some(move |mem: &OutputMemory| -> Result<(), String> {
                    let entries = dirty_entries(mem);
                    if entries.is_empty() {
                        return Ok(());
                    }
                    handle
                        .block_on(store.write(&entries))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            }
            _ => None,
        };
        let report = tokio::task::spawn_blocking(move || {
            let work = crate::dispatch::Work {
                spool: &*spool,
                sink: &*sink,
                outputs: memory.as_deref(),
                persist: persist.as_ref().map(|p| p as &crate::dispatch::Persist),
            };
            crate::dispatch::tick_with(&dispatcher, &deliverable, &work, opts)
        })
        .await
        .expect("the tick does not panic");
        // Each lane wrote its state before marking its entries done
        // (`persist`); what is left is the rest of the run's.
        self.save_outputs(outputs.as_deref())
            .await
            .map_err(|e| e.because(crate::ErrorKind::OutputsUnwritable))?;
        self.receivers.record_quarantines(&set).await;
        tracing::info!(
            lanes = report.lanes,
            busy = report.busy,
            waiting = report.waiting,
            orphaned = report.orphaned,
            deferred = report.deferred,
            "tick done"
        );
        if self.emit_metrics {
            let now_ms = (self.clock)();
            for (receiver, st) in &report.receivers {
                println!("{}", metrics::receiver_line(receiver, st, now_ms));
            }
            println!("{}", metrics::tick_line(&report, now_ms));
        }
        Ok(report)
    }

    /// Park `change` in `receiver`'s dead-letter queue with `kind` and
    /// `error`, outside any run (a redrive's correction it could not send).
    pub async fn park(
        &self,
        receiver: &str,
        change: &Change,
        kind: prism_types::failure::FailureKind,
        error: String,
    ) -> Result<(), crate::sink::SinkError> {
        let set = self
            .current(Some(receiver))
            .await
            .map_err(|e| crate::sink::SinkError::unavailable(receiver, e.to_string()))?;
        let (destinations, _) = destinations(&set, self.unreadable_queue.as_deref());
        let sink = self.delivery.sink(destinations);
        let dead = crate::sink::DeadLetter {
            receiver: receiver.to_owned(),
            plugin_digest: set.active.first().map(|r| r.digest().to_string()),
            key: change.key.clone(),
            sequence: change.sequence.clone(),
            ordinal: 1,
            error_kind: kind.as_str().into(),
            error,
            change: crate::dispatch::change_json(change),
        };
        tokio::task::spawn_blocking(move || sink.park(&dead))
            .await
            .expect("parking does not panic")
    }

    /// Whether `receiver` would run now: a backfill refuses to start for
    /// one that would only park every change.
    pub async fn presence(&self, receiver: &str) -> Result<Presence, crate::Error> {
        let set = self
            .receivers
            .current(&self.engine)
            .await
            .map_err(|e| e.because(crate::ErrorKind::NoReceivers))?;
        Ok(if set.active.iter().any(|a| a.id() == receiver) {
            Presence::Active
        } else if set.disabled.iter().any(|d| d == receiver) {
            Presence::Disabled
        } else if let Some(u) = set
            .unavailable
            .iter()
            .find(|u| u.receiver.as_deref() == Some(receiver))
        {
            Presence::Unavailable(u.reason.clone())
        } else {
            Presence::Unknown
        })
    }

    /// The current receivers (re-read from the registry when stale), or
    /// just `only`.
    async fn current(&self, only: Option<&str>) -> Result<Arc<ReceiverSet>, crate::Error> {
        let set = self
            .receivers
            .current(&self.engine)
            .await
            .map_err(|e| e.because(crate::ErrorKind::NoReceivers))?;
        Ok(match only {
            None => set,
            Some(r) => Arc::new(set.only(r)),
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lambda reads the partial batch response by these exact names.
    #[test]
    fn the_partial_batch_response_has_lambdas_shape() {
        let r = DynamoDbEventResponse {
            batch_item_failures: vec![item_failure("4200")],
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "4200"}]})
        );
        assert_eq!(
            serde_json::from_value::<DynamoDbEventResponse>(json).unwrap(),
            r
        );
        assert_eq!(
            serde_json::to_value(DynamoDbEventResponse::default()).unwrap(),
            serde_json::json!({"batchItemFailures": []})
        );
    }
}
