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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use prism_core::sink::{DeadLetter, Delivery, Envelope, Sink, SinkError, SinkErrorKind};
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
}

/// `SendMessageBatch` calls one sink keeps in flight at once. At ~10 ms a
/// call from a Lambda, 32 in flight carry ~30,000 messages/s of packed
/// batches, more than the engine formats on 2 vCPUs.
pub const IN_FLIGHT: usize = 32;

/// One message ready to send.
struct Outgoing {
    body: String,
    attributes: HashMap<String, MessageAttributeValue>,
    group: String,
    dedup: String,
    size: usize,
}

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
        }
    }

    /// Dead letters over SQS's limit put their change in `claims` and
    /// carry a reference to it (see [`crate::claims`]).
    pub fn with_claims(mut self, claims: Option<ClaimStore>) -> Self {
        self.claims = claims;
        self
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
        let out = self
            .client
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|e| Self::err(receiver, format!("queue {queue}: {}", crate::sdk_error(&e))))?;
        let url = out
            .queue_url
            .ok_or_else(|| Self::err(receiver, format!("queue {queue}: no URL returned")))?;
        self.urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_owned(), url.clone());
        Ok(url)
    }

    /// Send `msgs` in order, in batches. On failure, the error says which
    /// of them did get out.
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
    /// messages one call after another (one per product per call), calls
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
        // Waves: the n-th message of every product goes in wave n.
        let mut rank: HashMap<&str, usize> = HashMap::new();
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for (i, &(c, _)) in owner.iter().enumerate() {
            let key = changes[positions[c]][0].key;
            let r = rank.entry(key).or_default();
            if waves.len() <= *r {
                waves.push(Vec::new());
            }
            waves[*r].push(i);
            *r += 1;
        }
        let mut blocked: HashSet<&str> = HashSet::new();
        for wave in waves {
            let eligible: Vec<usize> = wave
                .into_iter()
                .filter(|&i| {
                    let c = owner[i].0;
                    state[c].failed.is_none() && !blocked.contains(changes[positions[c]][0].key)
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
                    blocked.insert(changes[positions[c]][0].key);
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

/// How one change fared in [`SqsSink::deliver_packed`].
#[derive(Default)]
struct Packed {
    /// Its envelopes (by position) that got out.
    delivered: Vec<usize>,
    /// Why it did not all go out.
    failed: Option<SinkError>,
}

/// How one batch of entries went, after the entry retries.
#[derive(Debug, Default)]
struct ChunkResult {
    /// Entries SQS took.
    delivered: Vec<usize>,
    /// Entries that did not go out (the call failed, or they kept failing
    /// on SQS's side), and why.
    unavailable: Vec<usize>,
    why: String,
    /// Entries refused as the sender's fault: (entry, SQS code, what).
    refused: Vec<(usize, String, String)>,
}

impl ChunkResult {
    /// The error for the refusals, if any.
    fn refusal(&self, receiver: &str, queue: &str) -> Option<SinkError> {
        let (_, code, _) = self.refused.first()?;
        let what: Vec<&str> = self.refused.iter().map(|r| r.2.as_str()).collect();
        Some(SinkError::refused(
            receiver,
            code.clone(),
            format!("queue {queue} refused {}", what.join("; ")),
        ))
    }
}

/// Split `eligible` (message indices, at most one per product) into
/// batches of at most 10 entries and 256 KiB.
fn chunks_of(msgs: &[Outgoing], eligible: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for &i in eligible {
        if !cur.is_empty() && (cur.len() == MAX_ENTRIES || bytes + msgs[i].size > MAX_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(i);
        bytes += msgs[i].size;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The request entry for message `i`.
fn entry(i: usize, m: &Outgoing, fifo: bool) -> SendMessageBatchRequestEntry {
    let mut e = SendMessageBatchRequestEntry::builder()
        .id(i.to_string())
        .message_body(&m.body)
        .set_message_attributes(Some(m.attributes.clone()));
    if fifo {
        e = e
            .message_group_id(&m.group)
            .message_deduplication_id(&m.dedup);
    }
    e.build().expect("id and body are set")
}

/// What one `SendMessageBatch` answer says about its entries.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// Messages SQS took.
    delivered: Vec<usize>,
    /// Messages SQS failed on its side: worth another try.
    retry: Vec<usize>,
    /// The first entry refused as the sender's fault: SQS's code, and every
    /// refused entry described.
    refused: Option<(String, String)>,
    /// Every refused entry: (entry, SQS code, what).
    refused_entries: Vec<(usize, String, String)>,
    /// The last retryable failure, for the error message.
    last_error: String,
}

impl Outcome {
    fn of(
        out: &aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput,
        sent: &[usize],
    ) -> Self {
        let mut o = Outcome::default();
        let ours = |id: &str| id.parse::<usize>().ok().filter(|i| sent.contains(i));
        o.delivered = out
            .successful()
            .iter()
            .filter_map(|s| ours(s.id()))
            .collect();
        let mut refused = Vec::new();
        let mut code = None;
        for f in out.failed() {
            let Some(i) = ours(f.id()) else { continue };
            let what = format!("message {i}: {} {}", f.code(), f.message().unwrap_or(""));
            if f.sender_fault() {
                code.get_or_insert_with(|| f.code().to_owned());
                o.refused_entries
                    .push((i, f.code().to_owned(), what.clone()));
                refused.push(what);
            } else {
                o.retry.push(i);
                o.last_error = what;
            }
        }
        // An entry the answer does not mention at all is not known to be
        // out: it is tried again (FIFO deduplication ids make that safe).
        for &i in sent {
            let known = o.delivered.contains(&i)
                || o.retry.contains(&i)
                || out.failed().iter().any(|f| ours(f.id()) == Some(i));
            if !known {
                o.retry.push(i);
                o.last_error = format!("message {i}: missing from SQS's answer");
            }
        }
        o.retry.sort_unstable();
        o.refused = code.map(|c| (c, refused.join("; ")));
        o
    }
}

/// Full-jitter exponential backoff before entry retry `attempt` (1-based):
/// a random wait up to 50 ms × 2^attempt, so many dispatchers retrying at
/// once do not hit SQS in step.
fn backoff(attempt: u32) -> Duration {
    let cap = 50u64 << attempt.min(6);
    Duration::from_millis(fastrand::u64(cap / 4..=cap))
}

/// Split into batches of at most 10 entries and 256 KiB. On a FIFO queue a
/// batch holds at most one message per message group: should SQS fail an
/// entry and take a later one of the same group, the group's order would be
/// broken beyond repair. With one per call, a group's next message is only
/// sent once the one before it is in.
fn chunks(msgs: &[Outgoing], fifo: bool) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, m) in msgs.iter().enumerate() {
        let full = cur.len() == MAX_ENTRIES || bytes + m.size > MAX_BYTES;
        let same_group = fifo && cur.iter().any(|&j| msgs[j].group == m.group);
        if !cur.is_empty() && (full || same_group) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(i);
        bytes += m.size;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Characters SQS accepts in a body.
fn sqs_safe(s: &str) -> bool {
    s.chars().all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
}

fn string_attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .expect("data type is set")
}

/// The deduplication id of message `index` of a change.
pub fn dedup_id(receiver: &str, key: &str, sequence: &str, index: usize) -> String {
    let mut h = Sha256::new();
    for part in [receiver, key, sequence, &index.to_string()] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

fn outgoing(e: &Envelope<'_>) -> Result<Outgoing, SinkError> {
    let m = e.message;
    let mut attributes = HashMap::new();
    let (body, encoded) = match std::str::from_utf8(&m.body) {
        Ok(s) if sqs_safe(s) => (s.to_owned(), false),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(&m.body),
            true,
        ),
    };
    let digest = e.digest.to_string();
    let mut ours = vec![
        ("prism-receiver", e.receiver),
        ("prism-key", e.key),
        ("prism-sequence", e.sequence),
        ("prism-content-type", m.content_type.as_str()),
        ("prism-digest", digest.as_str()),
    ];
    if encoded {
        ours.push(("prism-encoding", "base64"));
    }

    let mut size = body.len();
    for (k, v) in ours
        .iter()
        .copied()
        .chain(m.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        size += k.len() + v.len() + "String".len();
        attributes.insert(k.to_owned(), string_attr(v));
    }
    if size > MAX_BYTES {
        return Err(SinkError::new(
            e.receiver,
            SinkErrorKind::TooLarge,
            format!(
                "message {} is {size} bytes with attributes, over SQS's limit of {MAX_BYTES}",
                e.index
            ),
        ));
    }
    Ok(Outgoing {
        body,
        attributes,
        group: m.group.clone().unwrap_or_else(|| e.key.to_owned()),
        dedup: dedup_id(e.receiver, e.key, e.sequence, e.index),
        size,
    })
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
            dedup: dedup_id(receiver, &dead.key, &dead.sequence, usize::MAX),
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

/// SQS as the stream processor's [`Delivery`]: one [`SqsSink`] per batch.
#[derive(Debug, Clone)]
pub struct SqsDelivery {
    /// The SQS client.
    pub client: Client,
    /// Where dead letters over SQS's limit put their change.
    pub claims: Option<ClaimStore>,
}

impl Delivery for SqsDelivery {
    fn sink(&self, destinations: HashMap<String, Destination>) -> Arc<dyn Sink> {
        Arc::new(
            SqsSink::new(
                self.client.clone(),
                tokio::runtime::Handle::current(),
                destinations,
            )
            .with_claims(self.claims.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(size: usize) -> Outgoing {
        Outgoing {
            body: String::new(),
            attributes: HashMap::new(),
            group: String::new(),
            dedup: String::new(),
            size,
        }
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let msgs: Vec<Outgoing> = (0..23).map(|_| out(10)).collect();
        assert_eq!(
            chunks(&msgs, false)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [10, 10, 3]
        );
        let msgs: Vec<Outgoing> = (0..5).map(|_| out(100 * 1024)).collect();
        assert_eq!(
            chunks(&msgs, false)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [2, 2, 1]
        );
    }

    #[test]
    fn fifo_batches_hold_one_message_per_group() {
        let msgs: Vec<Outgoing> = ["a", "b", "a", "c", "b", "d"]
            .iter()
            .map(|g| Outgoing {
                group: (*g).to_owned(),
                ..out(10)
            })
            .collect();
        // b's second message may join the third one's batch: its first went earlier.
        assert_eq!(chunks(&msgs, true), [vec![0, 1], vec![2, 3, 4, 5]]);
        assert_eq!(chunks(&msgs, false), [vec![0, 1, 2, 3, 4, 5]]);
    }

    #[test]
    fn dedup_ids_are_stable_and_unambiguous() {
        assert_eq!(dedup_id("r", "k", "1", 0), dedup_id("r", "k", "1", 0));
        assert_ne!(dedup_id("r", "k", "1", 0), dedup_id("r", "k", "1", 1));
        assert_ne!(dedup_id("ab", "c", "1", 0), dedup_id("a", "bc", "1", 0));
        assert_eq!(dedup_id("r", "k", "1", 0).len(), 64);
    }

    #[test]
    fn outcomes_are_per_entry() {
        use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
        use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};
        let ok = |id: &str| {
            SendMessageBatchResultEntry::builder()
                .id(id)
                .message_id("m")
                .md5_of_message_body("x")
                .build()
                .unwrap()
        };
        let fail = |id: &str, code: &str, sender: bool| {
            BatchResultErrorEntry::builder()
                .id(id)
                .code(code)
                .sender_fault(sender)
                .build()
                .unwrap()
        };
        let out = SendMessageBatchOutput::builder()
            .successful(ok("3"))
            .successful(ok("5"))
            .failed(fail("4", "InternalError", false))
            .build()
            .unwrap();
        // 6 was sent but is not in the answer: not known to be out.
        let o = Outcome::of(&out, &[3, 4, 5, 6]);
        assert_eq!(o.delivered, [3, 5]);
        assert_eq!(o.retry, [4, 6]);
        assert_eq!(o.refused, None);

        let out = SendMessageBatchOutput::builder()
            .successful(ok("0"))
            .failed(fail("1", "InvalidParameterValue", true))
            .failed(fail("2", "InternalError", false))
            .successful(ok("99"))
            .build()
            .unwrap();
        let o = Outcome::of(&out, &[0, 1, 2]);
        assert_eq!(o.delivered, [0], "ids the call did not send are ignored");
        assert_eq!(o.retry, [2]);
        let (code, what) = o.refused.unwrap();
        assert_eq!(code, "InvalidParameterValue");
        assert!(what.contains("message 1"), "{what}");
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        for attempt in 1..10 {
            let cap = 50u64 << attempt.min(6);
            let d = backoff(attempt).as_millis() as u64;
            assert!((cap / 4..=cap).contains(&d), "{attempt}: {d}");
        }
        let waits: std::collections::HashSet<_> = (0..50).map(|_| backoff(6)).collect();
        assert!(waits.len() > 1, "jittered");
    }

    #[test]
    fn unsafe_text_is_detected() {
        assert!(sqs_safe("Grüße\n"));
        assert!(!sqs_safe("a\u{0}b"));
        assert!(!sqs_safe("\u{FFFE}"));
    }
}
