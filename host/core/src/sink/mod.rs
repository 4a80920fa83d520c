//! Where messages go. The dispatcher talks to a [`Sink`]; the local outbox
//! implements it for local runs, the SQS sink on AWS.

mod outbox;

pub use outbox::Outbox;

use prism_contract::Message;
use serde::Serialize;

use std::collections::HashMap;
use std::sync::Arc;

use prism_types::digest::Digest;
use prism_types::failure::FailureKind;
use prism_types::manifest::Destination;

/// Makes the sink for one batch, given where each receiver's messages go
/// (`prism_aws::sqs::SqsDelivery` on AWS).
pub trait Delivery: Send + Sync {
    /// A sink delivering to `destinations` (receiver → queues).
    fn sink(&self, destinations: HashMap<String, Destination>) -> Arc<dyn Sink>;
}

/// One message on its way to a receiver, with where it came from.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The receiver.
    pub receiver: &'a str,
    /// The product key (for a batch: the first change's key).
    pub key: &'a str,
    /// The stream sequence number (for a batch: the last change's).
    pub sequence: &'a str,
    /// Position of the (first) change in this run's input, 1-based: orders messages.
    pub ordinal: u64,
    /// Index of this message among those of the same change or batch.
    pub index: usize,
    /// The message itself.
    pub message: &'a Message,
    /// The plugin that made it.
    pub digest: &'a Digest,
    /// For a flushed batch buffer: the window's id (`<first>-<last>`
    /// sequence), the same however often the flush is tried.
    pub window: Option<&'a str>,
}

/// A change a receiver could not take, parked where it can be seen and replayed.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The receiver.
    pub receiver: String,
    /// The plugin digest, when a plugin was involved.
    pub plugin_digest: Option<String>,
    /// Product key.
    pub key: String,
    /// Stream sequence number.
    pub sequence: String,
    /// Position in this run's input (1-based).
    pub ordinal: u64,
    /// `rejected`, `retry-exhausted`, `timeout`, `memory-limit`, `trap`, …
    pub error_kind: String,
    /// The full error message.
    pub error: String,
    /// The original change (key, kind, images, changed paths, sequence, time).
    pub change: serde_json::Value,
}

/// A delivery failure.
#[derive(Debug, thiserror::Error)]
#[error("delivery to {receiver} failed: {message}")]
pub struct SinkError {
    /// The receiver.
    pub receiver: String,
    /// What happened.
    pub message: String,
    /// Whether trying again could help.
    pub kind: SinkErrorKind,
    /// The destination's own error code for a refusal (SQS's `Code`, e.g.
    /// `InvalidParameterValue`).
    pub code: Option<String>,
    /// Positions (in the slice given to [`Sink::deliver`]) of the messages
    /// that did get out before the failure: a retry must not send them again.
    pub delivered: Vec<usize>,
}

impl SinkError {
    /// A failure of `kind` with nothing delivered.
    pub fn new(
        receiver: impl Into<String>,
        kind: SinkErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            receiver: receiver.into(),
            message: message.into(),
            kind,
            code: None,
            delivered: Vec::new(),
        }
    }

    /// The destination is unavailable; retrying may help.
    pub fn unavailable(receiver: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(receiver, SinkErrorKind::Unavailable, message)
    }

    /// The destination refused a message as the sender's fault, with its
    /// error `code`: sending it again would fail the same way.
    pub fn refused(
        receiver: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code: Some(code.into()),
            ..Self::new(receiver, SinkErrorKind::Refused, message)
        }
    }

    /// The dead-letter kind for this failure: `delivery`, `too-large`, or
    /// `refused:<code>` naming the destination's error code.
    pub fn dead_letter_kind(&self) -> String {
        match (&self.kind, &self.code) {
            (SinkErrorKind::Refused, Some(code)) => format!("refused:{code}"),
            (kind, _) => kind.failure().as_str().to_owned(),
        }
    }
}

/// What kind of delivery failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// The destination is unreachable, missing or failing: retrying may help.
    Unavailable,
    /// The message can never be sent as it is (over the size limit).
    TooLarge,
    /// The destination refused a message as the sender's fault (a bad
    /// attribute, a FIFO field it rejects): it is parked, not retried.
    Refused,
}

impl SinkErrorKind {
    /// The dead-letter kind for this failure.
    pub fn failure(self) -> FailureKind {
        match self {
            Self::Unavailable => FailureKind::Delivery,
            Self::TooLarge => FailureKind::TooLarge,
            Self::Refused => FailureKind::Refused,
        }
    }
}

/// The outcome of a change not sent because an earlier change of the same
/// product could not be delivered.
pub fn behind(e: &Envelope<'_>) -> SinkError {
    SinkError::unavailable(
        e.receiver,
        format!(
            "not sent: an earlier change of {} could not be delivered, and this one waits behind it",
            e.key
        ),
    )
}

/// A destination for messages and dead letters.
pub trait Sink: Send + Sync {
    /// Deliver the messages of one change (or one batch), in order.
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError>;
    /// Park a change that a receiver could not take.
    fn park(&self, dead: &DeadLetter) -> Result<(), SinkError>;
    /// Deliver the messages of many changes (one slice per change, in
    /// stream order), packed as the destination allows; one outcome per
    /// change. Once a change of a product could not go out (the destination
    /// is unavailable), that product's later changes here are not sent:
    /// their outcome is `Unavailable` too, so they wait behind it in order.
    /// The default delivers change by change.
    fn deliver_many(&self, changes: &[Vec<Envelope<'_>>]) -> Vec<Result<(), SinkError>> {
        let mut blocked: std::collections::HashSet<(&str, &str)> = Default::default();
        changes
            .iter()
            .map(|c| {
                let Some(first) = c.first() else {
                    return Ok(());
                };
                let product = (first.receiver, first.key);
                if blocked.contains(&product) {
                    return Err(behind(first));
                }
                let r = self.deliver(c);
                if matches!(&r, Err(e) if e.kind == SinkErrorKind::Unavailable) {
                    blocked.insert(product);
                }
                r
            })
            .collect()
    }
    /// Would these messages be accepted as they are (size limits)? Checked
    /// before a flush sends anything, so an oversized window can be split.
    fn check(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let _ = envelopes;
        Ok(())
    }
}
