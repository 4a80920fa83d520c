//! The `types` interface: what a change is, and what a receiver returns
//! (messages, or an error that says whether to retry).

use serde_json::Value;

/// What happened to the item (a product, or a shadow-table row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// It appeared.
    Insert,
    /// It changed.
    Modify,
    /// It is gone.
    Remove,
}

/// One message for the receiver's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The body, exactly as it is to be delivered.
    pub body: Vec<u8>,
    /// Its media type, e.g. `application/json`.
    pub content_type: String,
    /// The ordering group; `None` means the product key.
    pub group: Option<String>,
    /// String attributes delivered with the message.
    pub attributes: Vec<(String, String)>,
}

impl Message {
    /// A message with this content type and body.
    pub fn new(content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            content_type: content_type.into(),
            group: None,
            attributes: Vec::new(),
        }
    }

    /// A compact JSON body (`application/json`).
    pub fn json(value: &Value) -> Self {
        Self::new("application/json", value.to_string())
    }

    /// Set the ordering group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Add a string attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }

    /// The body as UTF-8 text, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// Why a plugin could not format a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The change can never be formatted: parked as a dead letter, not retried.
    Reject(String),
    /// A transient problem: the host retries later.
    Retry(String),
}

impl FormatError {
    /// Reject with a reason.
    pub fn reject(reason: impl Into<String>) -> Self {
        Self::Reject(reason.into())
    }

    /// Ask for a retry with a reason.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry(reason.into())
    }
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reject(r) => write!(f, "rejected: {r}"),
            Self::Retry(r) => write!(f, "retry: {r}"),
        }
    }
}

impl std::error::Error for FormatError {}
