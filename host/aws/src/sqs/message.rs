//! One SQS message as the sink sends it: body (base64 when not SQS-safe
//! text), attributes, group and deduplication id, and its size as SQS
//! counts it.

use std::collections::HashMap;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use prism_core::sink::{Envelope, SinkError, SinkErrorKind};

use super::MAX_BYTES;

/// One message ready to send.
pub(super) struct Outgoing {
    pub(super) body: String,
    pub(super) attributes: HashMap<String, MessageAttributeValue>,
    pub(super) group: String,
    pub(super) dedup: String,
    pub(super) size: usize,
}

/// The request entry for message `i`.
pub(super) fn entry(i: usize, m: &Outgoing, fifo: bool) -> SendMessageBatchRequestEntry {
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

/// Characters SQS accepts in a body.
fn sqs_safe(s: &str) -> bool {
    s.chars().all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
}

pub(super) fn string_attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .expect("data type is set")
}

/// The deduplication id of message `index` of a change, with `body`.
///
/// The body is part of it: a send tried again carries the same body (the
/// plugin is deterministic) and SQS drops the copy, while a correction that
/// re-sends a product at a newer version under the same sequence (a
/// redrive's, after the stream overtook it) is a different message and
/// must not be dropped as one seen in the last 5 minutes.
pub fn dedup_id(receiver: &str, key: &str, sequence: &str, index: usize, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [
        receiver.as_bytes(),
        key.as_bytes(),
        sequence.as_bytes(),
        index.to_string().as_bytes(),
        body,
    ] {
        h.update(part.len().to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

pub(super) fn outgoing(e: &Envelope<'_>) -> Result<Outgoing, SinkError> {
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
        dedup: dedup_id(e.receiver, e.key, e.sequence, e.index, &m.body),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_ids_are_stable_and_unambiguous() {
        let b = b"{}";
        assert_eq!(dedup_id("r", "k", "1", 0, b), dedup_id("r", "k", "1", 0, b));
        assert_ne!(dedup_id("r", "k", "1", 0, b), dedup_id("r", "k", "1", 1, b));
        assert_ne!(
            dedup_id("ab", "c", "1", 0, b),
            dedup_id("a", "bc", "1", 0, b)
        );
        assert_ne!(
            dedup_id("r", "k", "1", 0, b),
            dedup_id("r", "k", "1", 0, b"{\"v\":2}"),
            "the same change re-sent at another version is another message"
        );
        assert_eq!(dedup_id("r", "k", "1", 0, b).len(), 64);
    }

    #[test]
    fn unsafe_text_is_detected() {
        assert!(sqs_safe("Grüße\n"));
        assert!(!sqs_safe("a\u{0}b"));
        assert!(!sqs_safe("\u{FFFE}"));
    }
}
