//! Delivery to SQS: each receiver's messages to its queue, its dead letters
//! to its dead-letter queue.
//!
//! - `SendMessageBatch`, split to SQS's limits: 10 entries and 256 KiB per call.
//! - Attributes on every message: `prism-receiver`, `prism-key`,
//!   `prism-sequence`, `prism-content-type`, `prism-digest`, plus the plugin's
//!   own. A flushed batch window carries its first key and last sequence, so
//!   the same window always has the same attributes and deduplication ids.
//! - FIFO queues (`.fifo`): `MessageGroupId` is the message's group (default:
//!   the product key); `MessageDeduplicationId` is sha256(receiver, key,
//!   sequence, index), so a retried delivery is never a duplicate.
//! - Bodies that are not SQS-safe text (not UTF-8, or characters SQS refuses)
//!   are sent base64-encoded with `prism-encoding = base64`.
//! - A message over 256 KiB (body plus attributes) is not sent: the change is
//!   parked for that receiver as `too-large` with its size.
//! - Outcomes are per entry. An entry SQS took is never sent again: a
//!   failure reports which messages got out ([`SinkError::delivered`]), and
//!   the retry sends only the rest.
//! - Entries SQS failed on its side are retried here with jittered
//!   exponential backoff ([`ENTRY_ATTEMPTS`] tries). A call that fails as a
//!   whole (throttling, 5xx, a dropped connection) has already been retried
//!   by the SDK ([`crate::retry_config`]); it is not retried again here, so
//!   the two loops never multiply.
//! - An entry SQS refuses as the sender's fault fails the change as
//!   [`SinkErrorKind::Refused`] with SQS's code: it is parked as
//!   `refused:<Code>`, not retried (it would fail the same way forever).

mod batches;
mod delivery;
mod message;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use batches::{ChunkResult, Outcome, Packed, backoff, chunks, chunks_of};
pub use delivery::{SqsDelivery, queue_url};
pub use message::dedup_id;
use message::{Outgoing, entry, outgoing, string_attr};

use prism_core::sink::{DeadLetter, Envelope, Sink, SinkError, SinkErrorKind};
use prism_types::manifest::Destination;

use crate::claims::ClaimStore;

/// SQS's limit on a message (body plus attributes) and on a batch.
pub const MAX_BYTES: usize = 256 * 1024;
/// SQS's limit on entries per batch.
pub const MAX_ENTRIES: usize = 10;
/// Tries of an entry SQS failed on its side (a whole call's failures are
/// the SDK's to retry).
pub const ENTRY_ATTEMPTS: u32 = 4;
/// The IAM actions the sink needs on a queue (`SendMessageBatch` is
/// authorized as `sqs:SendMessage`). Terraform grants exactly these.
pub const ACTIONS: &[&str] = &["sqs:GetQueueUrl", "sqs:SendMessage"];

/// Sends to SQS, blocking the calling (non-runtime) thread on `handle`.
pub struct SqsSink {
    client: Client,
    handle: tokio::runtime::Handle,
    destinations: HashMap<String, Destination>,
    urls: Mutex<HashMap<String, String>>,
    claims: Option<ClaimStore>,
    /// Calls in flight at once, over every queue this sink sends to.
    in_flight: tokio::sync::Semaphore,
    /// Calls in flight at once to one queue: a slow or throttled queue
    /// cannot take every call slot from the other receivers.
    per_queue: usize,
    queues: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

/// `SendMessageBatch` calls one sink keeps in flight at once. At ~10 ms a
/// call from a Lambda, 32 in flight carry ~30,000 messages/s of packed
/// batches, more than the engine formats on 2 vCPUs.
pub const IN_FLIGHT: usize = 32;

/// `SendMessageBatch` calls one sink keeps in flight to one queue: a
/// quarter of [`IN_FLIGHT`], so a queue that answers slowly (throttled, or
/// retried by the SDK) leaves three quarters of the slots to the others.
pub const IN_FLIGHT_PER_QUEUE: usize = 8;

impl SqsSink {
    /// A sink for these receivers' destinations (receiver id → destination).
    pub fn new(
        client: Client,
        handle: tokio::runtime::Handle,
        destinations: HashMap<String, Destination>,
    ) -> Self {
        Self {
            client,
            handle,
            destinations,
            urls: Mutex::new(HashMap::new()),
            claims: None,
            in_flight: tokio::sync::Semaphore::new(IN_FLIGHT),
            per_queue: IN_FLIGHT_PER_QUEUE,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Dead letters over SQS's limit put their change in `claims` and
    /// carry a reference to it (see [`crate::claims`]).
    pub fn with_claims(mut self, claims: Option<ClaimStore>) -> Self {
        self.claims = claims;
        self
    }

    /// At most `n` calls in flight at once (default [`IN_FLIGHT`]).
    pub fn with_in_flight(mut self, n: usize) -> Self {
        self.in_flight = tokio::sync::Semaphore::new(n.max(1));
        self
    }

    /// At most `n` calls in flight at once to one queue (default
    /// [`IN_FLIGHT_PER_QUEUE`]).
    pub fn with_in_flight_per_queue(mut self, n: usize) -> Self {
        self.per_queue = n.max(1);
        self
    }

    /// The call slots of the queue at `url`.
    fn queue_slots(&self, url: &str) -> Arc<tokio::sync::Semaphore> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(url.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_queue)))
            .clone()
    }

    fn err(receiver: &str, message: impl Into<String>) -> SinkError {
        SinkError::unavailable(receiver, message)
    }

    /// The queue URL for a queue name or URL (looked up once, then cached).
    async fn url(&self, receiver: &str, queue: &str) -> Result<String, SinkError> {
        if queue.starts_with("https://") || queue.starts_with("http://") {
            return Ok(queue.to_owned());
        }
        if let Some(u) = self
            .urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
        {
            return Ok(u.clone());
        }
        let url = queue_url(&self.client, queue)
            .await
            .map_err(|e| Self::err(receiver, format!("queue {queue}: {e}")))?;
        self.urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_owned(), url.clone());
        Ok(url)
    }

    /// Send `msgs` in batches: one after another on a FIFO queue (in
    /// order), all at once on a standard one. On failure, the error says
    /// which of them did get out.
    async fn send(
        &self,
        receiver: &str,
        queue: &str,
        msgs: Vec<Outgoing>,
    ) -> Result<(), SinkError> {
        let url = self.url(receiver, queue).await?;
        let fifo = url.ends_with(".fifo");
        let mut delivered: Vec<usize> = Vec::with_capacity(msgs.len());
        let failed = |mut e: SinkError, delivered: &[usize]| {
            e.delivered = delivered.to_vec();
            e.delivered.sort_unstable();
            e
        };
        if !fifo {
            // A standard queue keeps no order: every call at once (up to
            // the sink's limit in flight).
            let results = futures_util::future::join_all(
                chunks(&msgs, fifo)
                    .into_iter()
                    .map(|chunk| self.send_chunk(&url, queue, receiver, fifo, &msgs, chunk)),
            )
            .await;
            for c in &results {
                delivered.extend(&c.delivered);
            }
            // A refusal decides (retrying would fail the same way), then
            // any call that could not get through.
            let refused = results.iter().find_map(|c| c.refusal(receiver, queue));
            let unavailable = results
                .into_iter()
                .find(|c| !c.unavailable.is_empty())
                .map(|c| Self::err(receiver, c.why));
            return match refused.or(unavailable) {
                Some(e) => Err(failed(e, &delivered)),
                None => Ok(()),
            };
        }
        for chunk in chunks(&msgs, fifo) {
            let c = self
                .send_chunk(&url, queue, receiver, fifo, &msgs, chunk)
                .await;
            delivered.extend(&c.delivered);
            if let Some(e) = c.refusal(receiver, queue) {
                return Err(failed(e, &delivered));
            }
            if !c.unavailable.is_empty() {
                return Err(failed(Self::err(receiver, c.why), &delivered));
            }
        }
        Ok(())
    }

    /// Send one batch of entries, retrying those SQS failed on its side.
    async fn send_chunk(
        &self,
        url: &str,
        queue: &str,
        receiver: &str,
        fifo: bool,
        msgs: &[Outgoing],
        chunk: Vec<usize>,
    ) -> ChunkResult {
        // The queue's slot first: calls waiting on a slow queue hold none
        // of the slots the other queues share.
        let slots = self.queue_slots(url);
        let _queue_permit = slots.acquire().await;
        let _permit = self.in_flight.acquire().await;
        let mut r = ChunkResult::default();
        let mut pending = chunk;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let entries: Vec<SendMessageBatchRequestEntry> =
                pending.iter().map(|&i| entry(i, &msgs[i], fifo)).collect();
            let out = match self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    // The SDK has retried this call already.
                    r.why = format!(
                        "queue {queue}: SendMessageBatch failed: {}",
                        crate::sdk_error(&e)
                    );
                    r.unavailable = pending;
                    return r;
                }
            };
            let outcome = Outcome::of(&out, &pending);
            r.delivered.extend(&outcome.delivered);
            r.refused.extend(outcome.refused_entries);
            if outcome.retry.is_empty() {
                return r;
            }
            if attempt >= ENTRY_ATTEMPTS {
                r.why = format!(
                    "queue {queue}: {} messages still failing after {ENTRY_ATTEMPTS} tries: {}",
                    outcome.retry.len(),
                    outcome.last_error
                );
                r.unavailable = outcome.retry;
                return r;
            }
            tracing::warn!(receiver, queue, attempt, failing = outcome.retry.len(), error = %outcome.last_error, "SQS failed some entries; retrying them");
            tokio::time::sleep(backoff(attempt)).await;
            pending = outcome.retry;
        }
    }

    /// [`Sink::deliver_many`] for one receiver's changes (positions in
    /// `changes`): their messages packed into shared calls, a product's
    /// messages one round after another (one per product, and on a FIFO
    /// queue one per group, per round: [`batches::waves`]), calls
    /// for different products concurrently.
    async fn deliver_packed(
        &self,
        receiver: &str,
        changes: &[Vec<Envelope<'_>>],
        positions: &[usize],
    ) -> Vec<(usize, Result<(), SinkError>)> {
        let all_fail = |e: &SinkError| {
            positions
                .iter()
                .map(|&p| (p, Err(SinkError::unavailable(receiver, e.message.clone()))))
                .collect()
        };
        let Some(dest) = self.destinations.get(receiver) else {
            return all_fail(&Self::err(
                receiver,
                "no destination queue in its registry entry",
            ));
        };
        let url = match self.url(receiver, &dest.queue).await {
            Ok(u) => u,
            Err(e) => return all_fail(&e),
        };
        let fifo = url.ends_with(".fifo");
        let queue = dest.queue.as_str();
        // Every message, with its change (index into `positions`) and its
        // place among the change's envelopes.
        let mut msgs: Vec<Outgoing> = Vec::new();
        let mut owner: Vec<(usize, usize)> = Vec::new();
        let mut state: Vec<Packed> = positions.iter().map(|_| Packed::default()).collect();
        for (c, &p) in positions.iter().enumerate() {
            let built: Result<Vec<Outgoing>, SinkError> = changes[p].iter().map(outgoing).collect();
            match built {
                Ok(out) => {
                    for (k, o) in out.into_iter().enumerate() {
                        msgs.push(o);
                        owner.push((c, k));
                    }
                }
                Err(e) => state[c].failed = Some(e),
            }
        }
        // Waves: each product's (and on a FIFO queue each group's) messages
        // one per wave, in order.
        let order: Vec<(&str, Option<&str>)> = owner
            .iter()
            .enumerate()
            .map(|(i, &(c, _))| {
                let key = changes[positions[c]][0].key;
                (key, fifo.then_some(msgs[i].group.as_str()))
            })
            .collect();
        // What did not get out holds back its product's and its group's later
        // messages (they would overtake it).
        let mut blocked_keys: HashSet<&str> = HashSet::new();
        let mut blocked_groups: HashSet<&str> = HashSet::new();
        for wave in batches::waves(&order) {
            let eligible: Vec<usize> = wave
                .into_iter()
                .filter(|&i| {
                    let (key, group) = order[i];
                    state[owner[i].0].failed.is_none()
                        && !blocked_keys.contains(key)
                        && !group.is_some_and(|g| blocked_groups.contains(g))
                })
                .collect();
            let batches = chunks_of(&msgs, &eligible);
            let results = futures_util::future::join_all(
                batches
                    .into_iter()
                    .map(|b| self.send_chunk(&url, queue, receiver, fifo, &msgs, b)),
            )
            .await;
            for r in results {
                for &i in &r.delivered {
                    let (c, k) = owner[i];
                    state[c].delivered.push(k);
                }
                for (i, code, what) in &r.refused {
                    let c = owner[*i].0;
                    state[c].failed.get_or_insert_with(|| {
                        SinkError::refused(
                            receiver,
                            code.clone(),
                            format!("queue {queue} refused {what}"),
                        )
                    });
                }
                for &i in &r.unavailable {
                    let c = owner[i].0;
                    blocked_keys.insert(order[i].0);
                    blocked_groups.extend(order[i].1);
                    state[c]
                        .failed
                        .get_or_insert_with(|| Self::err(receiver, r.why.clone()));
                }
            }
        }
        positions
            .iter()
            .zip(state)
            .map(|(&p, mut st)| {
                let n = changes[p].len();
                st.delivered.sort_unstable();
                let outcome = match st.failed {
                    Some(mut e) => {
                        e.delivered = st.delivered;
                        Err(e)
                    }
                    None if st.delivered.len() == n => Ok(()),
                    // Not all out, nothing failed: it waits behind its product.
                    None => {
                        let mut e = prism_core::sink::behind(&changes[p][0]);
                        e.delivered = st.delivered;
                        Err(e)
                    }
                };
                (p, outcome)
            })
            .collect()
    }
}

impl Sink for SqsSink {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let Some(first) = envelopes.first() else {
            return Ok(());
        };
        let receiver = first.receiver;
        let dest = self
            .destinations
            .get(receiver)
            .ok_or_else(|| Self::err(receiver, "no destination queue in its registry entry"))?;
        let msgs = envelopes
            .iter()
            .map(outgoing)
            .collect::<Result<Vec<_>, _>>()?;
        self.handle
            .block_on(self.send(receiver, &dest.queue, msgs))
            .map_err(|mut e| {
                e.receiver = receiver.to_owned();
                e
            })
    }

    fn check(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        envelopes.iter().try_for_each(|e| outgoing(e).map(|_| ()))
    }

    fn deliver_many(&self, changes: &[Vec<Envelope<'_>>]) -> Vec<Result<(), SinkError>> {
        let mut by_receiver: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        let mut out: Vec<Option<Result<(), SinkError>>> =
            (0..changes.len()).map(|_| None).collect();
        for (p, c) in changes.iter().enumerate() {
            match c.first() {
                Some(e) => by_receiver.entry(e.receiver).or_default().push(p),
                None => out[p] = Some(Ok(())),
            }
        }
        let done =
            self.handle
                .block_on(futures_util::future::join_all(by_receiver.iter().map(
                    |(receiver, positions)| self.deliver_packed(receiver, changes, positions),
                )));
        for (p, r) in done.into_iter().flatten() {
            out[p] = Some(r);
        }
        out.into_iter()
            .map(|r| r.expect("every change has an outcome"))
            .collect()
    }

    fn park(&self, dead: &DeadLetter) -> Result<(), SinkError> {
        let receiver = dead.receiver.as_str();
        let dlq = self
            .destinations
            .get(receiver)
            .and_then(|d| d.dead_letter_queue.clone())
            .ok_or_else(|| Self::err(receiver, "no dead_letter_queue in its registry entry"))?;
        let mut body = serde_json::to_string(dead).expect("dead letters serialize");
        let mut attributes = HashMap::from([
            ("prism-receiver".to_owned(), string_attr(receiver)),
            ("prism-error-kind".to_owned(), string_attr(&dead.error_kind)),
        ]);
        // Room for the attributes: what is left of the message is the body's.
        let room = MAX_BYTES - 1024;
        if body.len() > room {
            let Some(claims) = &self.claims else {
                return Err(SinkError::new(
                    receiver,
                    SinkErrorKind::TooLarge,
                    format!(
                        "dead letter for {} is {} bytes, over SQS's limit, and there is no claim bucket",
                        dead.key,
                        body.len()
                    ),
                ));
            };
            let change = serde_json::to_vec(&dead.change).expect("a change serializes");
            let r = self
                .handle
                .block_on(claims.put(&change))
                .map_err(|e| Self::err(receiver, format!("dead letter for {}: {e}", dead.key)))?;
            let mut claimed = dead.clone();
            claimed.change = r.to_value();
            body = serde_json::to_string(&claimed).expect("dead letters serialize");
            attributes.insert("prism-claim".to_owned(), string_attr(&r.key));
        }
        let msg = Outgoing {
            attributes,
            group: dead.key.clone(),
            // Unique per parking: a FIFO DLQ drops a letter whose id it saw
            // in the last 5 minutes, and a change parked again (a redrive
            // that fails again, a flush of a redriven window) must not be
            // dropped while the letter it replaces is deleted. A retried
            // batch that parks again leaves a second letter, as on a
            // standard queue: a duplicate, never a loss.
            dedup: dedup_id(
                receiver,
                &dead.key,
                &format!("{}#{:032x}", dead.sequence, fastrand::u128(..)),
                usize::MAX,
                &[],
            ),
            size: body.len(),
            body,
        };
        if msg.size > room {
            return Err(SinkError::new(
                receiver,
                SinkErrorKind::TooLarge,
                format!(
                    "dead letter for {} is {} bytes even without its change, over SQS's limit",
                    dead.key, msg.size
                ),
            ));
        }
        self.handle.block_on(self.send(receiver, &dlq, vec![msg]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(rt: &tokio::runtime::Runtime) -> SqsSink {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .build();
        SqsSink::new(
            Client::from_conf(config),
            rt.handle().clone(),
            HashMap::new(),
        )
        .with_in_flight(4)
        .with_in_flight_per_queue(2)
    }

    /// A queue whose calls never come back holds its own slots only: the
    /// other queues keep theirs, and the shared ones are not taken while
    /// its further calls wait.
    #[test]
    fn a_stuck_queue_holds_only_its_own_slots() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = sink(&rt);
        let slow = s.queue_slots("https://sqs/slow");
        let held: Vec<_> = (0..2)
            .map(|_| slow.clone().try_acquire_owned().unwrap())
            .collect();
        assert!(
            slow.clone().try_acquire_owned().is_err(),
            "two calls in flight fill the slow queue"
        );
        assert_eq!(s.queue_slots("https://sqs/slow").available_permits(), 0);
        assert_eq!(s.queue_slots("https://sqs/other").available_permits(), 2);
        assert_eq!(s.in_flight.available_permits(), 4);
        drop(held);
        assert_eq!(s.queue_slots("https://sqs/slow").available_permits(), 2);
    }

    #[test]
    fn zero_slots_are_taken_as_one() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = sink(&rt).with_in_flight(0).with_in_flight_per_queue(0);
        assert_eq!(s.in_flight.available_permits(), 1);
        assert_eq!(s.queue_slots("q").available_permits(), 1);
    }
}
