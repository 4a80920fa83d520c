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
//! - Entries SQS fails on its side, and failed calls, are retried with
//!   exponential backoff (5 attempts); sender faults are not retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use prism_core::sink::{DeadLetter, Delivery, Envelope, Sink, SinkError, SinkErrorKind};
use prism_types::manifest::Destination;

/// SQS's limit on a message (body plus attributes) and on a batch.
pub const MAX_BYTES: usize = 256 * 1024;
/// SQS's limit on entries per batch.
pub const MAX_ENTRIES: usize = 10;
const ATTEMPTS: u32 = 5;
/// The IAM actions the sink needs on a queue (`SendMessageBatch` is
/// authorized as `sqs:SendMessage`). Terraform grants exactly these.
pub const ACTIONS: &[&str] = &["sqs:GetQueueUrl", "sqs:SendMessage"];

/// Sends to SQS, blocking the calling (non-runtime) thread on `handle`.
pub struct SqsSink {
    client: Client,
    handle: tokio::runtime::Handle,
    destinations: HashMap<String, Destination>,
    urls: Mutex<HashMap<String, String>>,
}

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
        }
    }

    fn err(receiver: &str, message: impl Into<String>) -> SinkError {
        SinkError {
            receiver: receiver.to_owned(),
            message: message.into(),
            kind: SinkErrorKind::Unavailable,
        }
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

    async fn send(
        &self,
        receiver: &str,
        queue: &str,
        msgs: Vec<Outgoing>,
    ) -> Result<(), SinkError> {
        let url = self.url(receiver, queue).await?;
        let fifo = url.ends_with(".fifo");
        for chunk in chunks(&msgs) {
            let mut pending: Vec<usize> = chunk.clone();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let entries: Vec<SendMessageBatchRequestEntry> = pending
                    .iter()
                    .map(|&i| {
                        let m = &msgs[i];
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
                    })
                    .collect();
                let result = self
                    .client
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                let out = match result {
                    Ok(out) => out,
                    Err(e) if attempt < ATTEMPTS => {
                        tracing::warn!(receiver, queue, attempt, error = %crate::sdk_error(&e), "SendMessageBatch failed; retrying");
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    Err(e) => {
                        let why = crate::sdk_error(&e);
                        return Err(Self::err(
                            receiver,
                            format!(
                                "queue {queue}: SendMessageBatch failed {ATTEMPTS} times: {why}"
                            ),
                        ));
                    }
                };
                let mut retry = Vec::new();
                let mut fatal = Vec::new();
                for f in out.failed() {
                    let i: usize = f.id().parse().unwrap_or(usize::MAX);
                    let what = format!("message {i}: {} {}", f.code(), f.message().unwrap_or(""));
                    if f.sender_fault() {
                        fatal.push(what);
                    } else {
                        retry.push(i);
                    }
                }
                if !fatal.is_empty() {
                    return Err(Self::err(
                        receiver,
                        format!("queue {queue} refused: {}", fatal.join("; ")),
                    ));
                }
                if retry.is_empty() {
                    break;
                }
                if attempt >= ATTEMPTS {
                    return Err(Self::err(
                        receiver,
                        format!(
                            "queue {queue}: {} messages still failing after {ATTEMPTS} attempts",
                            retry.len()
                        ),
                    ));
                }
                tokio::time::sleep(backoff(attempt)).await;
                pending = retry;
            }
        }
        Ok(())
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.min(6))
}

/// Split into batches of at most 10 entries and 256 KiB.
fn chunks(msgs: &[Outgoing]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, m) in msgs.iter().enumerate() {
        if !cur.is_empty() && (cur.len() == MAX_ENTRIES || bytes + m.size > MAX_BYTES) {
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
        return Err(SinkError {
            receiver: e.receiver.to_owned(),
            message: format!(
                "message {} is {size} bytes with attributes, over SQS's limit of {MAX_BYTES}",
                e.index
            ),
            kind: SinkErrorKind::TooLarge,
        });
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

    fn park(&self, dead: &DeadLetter) -> Result<(), SinkError> {
        let receiver = dead.receiver.as_str();
        let dlq = self
            .destinations
            .get(receiver)
            .and_then(|d| d.dead_letter_queue.clone())
            .ok_or_else(|| Self::err(receiver, "no dead_letter_queue in its registry entry"))?;
        let body = serde_json::to_string(dead).expect("dead letters serialize");
        let msg = Outgoing {
            attributes: HashMap::from([
                ("prism-receiver".to_owned(), string_attr(receiver)),
                ("prism-error-kind".to_owned(), string_attr(&dead.error_kind)),
            ]),
            group: dead.key.clone(),
            dedup: dedup_id(receiver, &dead.key, &dead.sequence, usize::MAX),
            size: body.len(),
            body,
        };
        if msg.size > MAX_BYTES {
            return Err(Self::err(
                receiver,
                format!(
                    "dead letter for {} is {} bytes, over SQS's limit",
                    dead.key, msg.size
                ),
            ));
        }
        self.handle.block_on(self.send(receiver, &dlq, vec![msg]))
    }
}

/// SQS as the stream processor's [`Delivery`]: one [`SqsSink`] per batch.
#[derive(Debug, Clone)]
pub struct SqsDelivery(pub Client);

impl Delivery for SqsDelivery {
    fn sink(&self, destinations: HashMap<String, Destination>) -> Arc<dyn Sink> {
        Arc::new(SqsSink::new(
            self.0.clone(),
            tokio::runtime::Handle::current(),
            destinations,
        ))
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
            chunks(&msgs).iter().map(Vec::len).collect::<Vec<_>>(),
            [10, 10, 3]
        );
        let msgs: Vec<Outgoing> = (0..5).map(|_| out(100 * 1024)).collect();
        assert_eq!(
            chunks(&msgs).iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 1]
        );
    }

    #[test]
    fn dedup_ids_are_stable_and_unambiguous() {
        assert_eq!(dedup_id("r", "k", "1", 0), dedup_id("r", "k", "1", 0));
        assert_ne!(dedup_id("r", "k", "1", 0), dedup_id("r", "k", "1", 1));
        assert_ne!(dedup_id("ab", "c", "1", 0), dedup_id("a", "bc", "1", 0));
        assert_eq!(dedup_id("r", "k", "1", 0).len(), 64);
    }

    #[test]
    fn unsafe_text_is_detected() {
        assert!(sqs_safe("Grüße\n"));
        assert!(!sqs_safe("a\u{0}b"));
        assert!(!sqs_safe("\u{FFFE}"));
    }
}
