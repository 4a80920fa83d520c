//! Models of the AWS services the dispatcher talks to, in memory, with
//! faults injected at every call (see `faults.rs`):
//!
//! - SQS: a standard queue keeps every message it accepts (at least
//!   once); a FIFO queue drops a message whose deduplication id it
//!   accepted within the last 5 minutes (simulated time), as SQS does.
//!   A send is answered per 10 messages (one `SendMessageBatch`): a call
//!   that fails before sends nothing of its chunk and later ones, one that
//!   fails after has sent its chunk but says it did not.
//! - DynamoDB, as the spool (the core's in-memory spool behind faults),
//!   the retry ledger and the output table, each written in chunks of 25
//!   that succeed or fail on their own (`BatchWriteItem`).
//! - Time: one simulated clock, the processor's (`StreamProcessorBuilder::clock`)
//!   and the tick's, so leases, buffer ages and SQS's window move only
//!   when the schedule says so.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prism_core::outputs::{LastOutput, OutputKey, OutputsTable};
use prism_core::sink::{DeadLetter, Delivery, Envelope, Sink, SinkError};
use prism_core::spool::{Appended, Claim, Lane, LaneInfo, LocalSpool, Spool, Spooled};
use prism_core::stream::{LedgerStore, MemoryLedger};
use prism_types::manifest::Destination;

use super::faults::{Fault, Faults, applies, errs};

/// SQS's deduplication window.
pub(crate) const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// The simulated clock (ms since the Unix epoch).
#[derive(Debug)]
pub(crate) struct Clock(AtomicU64);

impl Clock {
    pub(crate) fn new(start_ms: u64) -> Self {
        Self(AtomicU64::new(start_ms))
    }
    pub(crate) fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    pub(crate) fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// One message a queue accepted.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub(crate) body: String,
    pub(crate) key: String,
    pub(crate) sequence: String,
}

/// One receiver's queue and dead-letter queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) fifo: bool,
    pub(crate) messages: Vec<Accepted>,
    /// The dead-letter queue's letters, and beside each (same index) its
    /// id and whether a redrive holds it.
    pub(crate) dead: Vec<DeadLetter>,
    pub(crate) letters: Vec<Held>,
    next_letter: u64,
    /// Every change ever parked (a redrive may delete its letter since).
    pub(crate) ever_parked: BTreeSet<String>,
    /// FIFO: deduplication id → when it was accepted.
    dedup: HashMap<String, u64>,
    /// FIFO: messages SQS dropped as duplicates within the window.
    pub(crate) dropped: u64,
}

/// A dead letter's id, its latest receipt, and until when it is hidden.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Held {
    pub(crate) id: u64,
    pub(crate) receipt: u64,
    pub(crate) until: u64,
}

impl Queue {
    /// A letter arrives in the dead-letter queue.
    pub(crate) fn park(&mut self, dead: DeadLetter) {
        self.next_letter += 1;
        self.ever_parked.insert(dead.sequence.clone());
        self.dead.push(dead);
        self.letters.push(Held {
            id: self.next_letter,
            ..Held::default()
        });
    }

    /// Delete letter `id` if `receipt` is its latest.
    pub(crate) fn delete(&mut self, id: u64, receipt: u64) -> bool {
        match self.letters.iter().position(|h| h.id == id) {
            Some(i) if self.letters[i].receipt == receipt => {
                self.letters.remove(i);
                self.dead.remove(i);
                true
            }
            _ => false,
        }
    }
}

/// Every queue of the schedule, by receiver.
#[derive(Default)]
pub(crate) struct Queues(pub(crate) Mutex<HashMap<String, Queue>>);

/// The SQS model as the dispatcher's [`Delivery`].
pub(crate) struct SimDelivery {
    pub(crate) queues: Arc<Queues>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) clock: Arc<Clock>,
}

impl Delivery for SimDelivery {
    fn sink(&self, destinations: HashMap<String, Destination>) -> Arc<dyn Sink> {
        Arc::new(SimSink {
            fifo: destinations
                .into_iter()
                .map(|(r, d)| (r, d.queue.ends_with(".fifo")))
                .collect(),
            queues: self.queues.clone(),
            faults: self.faults.clone(),
            clock: self.clock.clone(),
        })
    }
}

struct SimSink {
    fifo: HashMap<String, bool>,
    queues: Arc<Queues>,
    faults: Arc<Faults>,
    clock: Arc<Clock>,
}

impl SimSink {
    fn accept(&self, e: &Envelope<'_>) {
        let fifo = self.fifo.get(e.receiver).copied().unwrap_or(false);
        let now = self.clock.now();
        let mut queues = self.queues.0.lock().unwrap();
        let q = queues.entry(e.receiver.to_owned()).or_default();
        q.fifo = fifo;
        if fifo {
            let id =
                prism_aws::sqs::dedup_id(e.receiver, e.key, e.sequence, e.index, &e.message.body);
            if let Some(&at) = q.dedup.get(&id)
                && now < at + DEDUP_WINDOW_MS
            {
                q.dropped += 1;
                drop(queues);
                self.faults.note(|| {
                    format!(
                        "  sqs {}: dropped duplicate {}",
                        e.receiver,
                        String::from_utf8_lossy(&e.message.body)
                    )
                });
                return;
            }
            q.dedup.insert(id, now);
        }
        q.messages.push(Accepted {
            body: String::from_utf8_lossy(&e.message.body).into_owned(),
            key: e.key.to_owned(),
            sequence: e.sequence.to_owned(),
        });
        drop(queues);
        self.faults.note(|| {
            format!(
                "  sqs {}: {} @{}",
                e.receiver,
                String::from_utf8_lossy(&e.message.body),
                e.sequence
            )
        });
    }
}

impl Sink for SimSink {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let Some(first) = envelopes.first() else {
            return Ok(());
        };
        let mut delivered = Vec::new();
        for (c, chunk) in envelopes.chunks(10).enumerate() {
            let f = self.faults.decide("sqs.send", first.receiver);
            if applies(f) {
                for e in chunk {
                    self.accept(e);
                }
            }
            if errs(f) {
                let mut err = SinkError::unavailable(
                    first.receiver,
                    format!("simulated SQS fault ({f:?}) on messages {}..", c * 10),
                );
                err.delivered = delivered;
                return Err(err);
            }
            delivered.extend(c * 10..c * 10 + chunk.len());
        }
        Ok(())
    }

    fn park(&self, dead: &DeadLetter) -> Result<(), SinkError> {
        let f = self.faults.decide("sqs.park", &dead.receiver);
        if applies(f) {
            let mut queues = self.queues.0.lock().unwrap();
            queues
                .entry(dead.receiver.clone())
                .or_default()
                .park(dead.clone());
            drop(queues);
            self.faults.note(|| {
                format!(
                    "  dlq {}: {} {} ({})",
                    dead.receiver, dead.key, dead.sequence, dead.error_kind
                )
            });
        }
        if errs(f) {
            return Err(SinkError::unavailable(
                &dead.receiver,
                format!("simulated SQS fault ({f:?}) parking a dead letter"),
            ));
        }
        Ok(())
    }
}

fn spool_err(lane: &Lane, f: Fault) -> prism_core::Error {
    prism_core::Error::spool(
        "sim",
        lane.to_string(),
        format!("simulated DynamoDB fault ({f:?})"),
    )
}

/// The spool: the core's in-memory spool behind faults.
pub(crate) struct SimSpool {
    pub(crate) inner: LocalSpool,
    pub(crate) faults: Arc<Faults>,
    cursor: Mutex<Option<String>>,
}

impl SimSpool {
    pub(crate) fn new(faults: Arc<Faults>) -> Self {
        Self {
            inner: LocalSpool::memory(),
            faults,
            cursor: Mutex::new(None),
        }
    }

    fn call<T>(
        &self,
        kind: &str,
        lane: &Lane,
        op: impl FnOnce() -> Result<T, prism_core::Error>,
    ) -> Result<T, prism_core::Error> {
        let f = self.faults.decide(kind, &lane.to_string());
        if !applies(f) {
            return Err(spool_err(lane, f));
        }
        let out = op()?;
        self.faults.note(|| format!("  {kind} {lane}"));
        if errs(f) {
            return Err(spool_err(lane, f));
        }
        Ok(out)
    }
}

impl Spool for SimSpool {
    fn append(&self, lane: &Lane, entries: &[Spooled]) -> Result<Appended, prism_core::Error> {
        self.faults.note(|| {
            let seqs: Vec<String> = entries
                .iter()
                .map(|e| {
                    format!(
                        "{}{}",
                        e.sequence.trim_start_matches("1000000000000000000"),
                        if e.replay { " (replay)" } else { "" }
                    )
                })
                .collect();
            format!("  appending {seqs:?}")
        });
        self.call("spool.append", lane, || self.inner.append(lane, entries))
    }
    fn read(&self, lane: &Lane) -> Result<Vec<Spooled>, prism_core::Error> {
        self.call("spool.read", lane, || self.inner.read(lane))
    }
    fn remove(&self, lane: &Lane, sequences: &[String]) -> Result<(), prism_core::Error> {
        self.call("spool.remove", lane, || self.inner.remove(lane, sequences))
    }
    fn mark_handled(&self, lane: &Lane, sequences: &[String]) -> Result<(), prism_core::Error> {
        self.call("spool.mark_handled", lane, || {
            self.inner.mark_handled(lane, sequences)
        })
    }
    fn handled(
        &self,
        lane: &Lane,
        sequences: &[String],
    ) -> Result<std::collections::HashSet<String>, prism_core::Error> {
        self.call("spool.handled", lane, || {
            self.inner.handled(lane, sequences)
        })
    }
    fn lanes(&self) -> Result<Vec<(Lane, LaneInfo)>, prism_core::Error> {
        let any = Lane::Buffer {
            receiver: "*".into(),
        };
        self.call("spool.lanes", &any, || self.inner.lanes())
    }
    fn claim(
        &self,
        lane: &Lane,
        now_ms: u64,
        steal: bool,
    ) -> Result<Option<Claim>, prism_core::Error> {
        self.call("spool.claim", lane, || {
            self.inner.claim(lane, now_ms, steal)
        })
    }
    fn save_claim(&self, lane: &Lane, claim: &Claim) -> Result<(), prism_core::Error> {
        self.call("spool.save_claim", lane, || {
            self.inner.save_claim(lane, claim)
        })
    }
    fn unlock(&self, lane: &Lane, claim: &Claim) -> Result<(), prism_core::Error> {
        self.call("spool.unlock", lane, || self.inner.unlock(lane, claim))
    }
    fn release(&self, lane: &Lane) -> Result<(), prism_core::Error> {
        self.call("spool.release", lane, || self.inner.release(lane))
    }
    fn tick_cursor(&self) -> Result<Option<String>, prism_core::Error> {
        Ok(self.cursor.lock().unwrap().clone())
    }
    fn save_tick_cursor(&self, lane: Option<&str>) -> Result<(), prism_core::Error> {
        *self.cursor.lock().unwrap() = lane.map(str::to_owned);
        Ok(())
    }
}

/// The retry ledger: written in chunks of 25 that succeed or fail alone.
pub(crate) struct SimLedger {
    pub(crate) inner: MemoryLedger,
    pub(crate) faults: Arc<Faults>,
}

fn ledger_err(f: Fault) -> prism_core::Error {
    prism_core::Error::ledger("sim", format!("simulated DynamoDB fault ({f:?})"))
}

#[async_trait::async_trait]
impl LedgerStore for SimLedger {
    async fn lookup(
        &self,
        records: &[String],
    ) -> Result<prism_core::stream::ledger::Handled, prism_core::Error> {
        let f = self.faults.decide("ledger.read", "");
        if errs(f) {
            return Err(ledger_err(f));
        }
        let found = self.inner.lookup(records).await?;
        if !found.is_empty() {
            self.faults.note(|| format!("  ledger: {found:?}"));
        }
        Ok(found)
    }

    async fn remember(
        &self,
        entries: &[(String, BTreeSet<String>)],
    ) -> Result<(), prism_core::Error> {
        let mut failed = None;
        for chunk in entries.chunks(25) {
            let f = self.faults.decide("ledger.write", "");
            if applies(f) {
                self.inner.remember(chunk).await?;
            }
            if errs(f) {
                failed = Some(f);
            }
        }
        match failed {
            Some(f) => Err(ledger_err(f)),
            None => Ok(()),
        }
    }
}

/// The output (dedup) table.
pub(crate) struct SimOutputs {
    pub(crate) items: Mutex<HashMap<OutputKey, LastOutput>>,
    pub(crate) faults: Arc<Faults>,
}

fn outputs_err(f: Fault) -> prism_core::Error {
    prism_core::Error::outputs_table("sim", format!("simulated DynamoDB fault ({f:?})"))
}

#[async_trait::async_trait]
impl OutputsTable for SimOutputs {
    async fn read(
        &self,
        pairs: &[OutputKey],
    ) -> Result<Vec<(OutputKey, LastOutput)>, prism_core::Error> {
        let f = self.faults.decide("outputs.read", "");
        if errs(f) {
            return Err(outputs_err(f));
        }
        let items = self.items.lock().unwrap();
        Ok(pairs
            .iter()
            .filter_map(|p| Some((p.clone(), items.get(p)?.clone())))
            .collect())
    }

    async fn write(&self, entries: &[(OutputKey, LastOutput)]) -> Result<usize, prism_core::Error> {
        let mut failed = None;
        let mut written = 0;
        for chunk in entries.chunks(25) {
            let f = self.faults.decide("outputs.write", "");
            if applies(f) {
                let mut items = self.items.lock().unwrap();
                for (k, v) in chunk {
                    items.insert(k.clone(), v.clone());
                    self.faults
                        .note(|| format!("  outputs {}/{} = @{}", k.0, k.1, v.sequence));
                }
                written += chunk.len();
            }
            if errs(f) {
                failed = Some(f);
            }
        }
        match failed {
            Some(f) => Err(outputs_err(f)),
            None => Ok(written),
        }
    }
}
