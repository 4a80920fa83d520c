//! Checks on what a plugin returns, before anything is delivered: size and
//! count limits, and well-formed content types, groups and attributes (the
//! rules are SQS's, so a message that passes here can be sent).

use prism_contract::Message;

use super::bindings::WitMessage;

/// Output limits for one call.
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    /// Max total body bytes.
    pub max_bytes: usize,
    /// Max messages.
    pub max_messages: usize,
}

/// Max attributes a plugin may set per message (SQS allows 10 in all; prism
/// adds its own five, six for a base64 body).
pub const MAX_ATTRIBUTES: usize = 4;

/// Attribute names prism sets itself.
pub const RESERVED_ATTRIBUTE_PREFIX: &str = "prism-";

/// Output that breaks a limit or is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// Too many messages.
    #[error("output limit: returned {count} messages, over its limit of {limit}")]
    TooManyMessages {
        /// How many.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many bytes.
    #[error("output limit: returned {bytes} bytes of message bodies, over its limit of {limit}")]
    TooManyBytes {
        /// How many.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Tried to pass more bytes to the host in one call (a result, or the
    /// arguments of one import) than its limits allow: refused while being
    /// lifted, before the host copied it.
    #[error(
        "output limit: tried to pass more than {limit} bytes to the host in one call (its result, or the arguments of one host call)"
    )]
    HostCopy {
        /// The cap, in bytes.
        limit: usize,
    },
    /// A message is malformed.
    #[error("malformed result: message {index}: {problem}")]
    Malformed {
        /// Which message (0-based).
        index: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Check and convert a call's messages (0.1: the whole result at once).
pub fn check(msgs: Vec<WitMessage>, limits: OutputLimits) -> Result<Vec<Message>, OutputError> {
    let mut out = Outbox::new(limits);
    if msgs.len() > limits.max_messages {
        return Err(OutputError::TooManyMessages {
            count: msgs.len(),
            limit: limits.max_messages,
        });
    }
    let bytes: usize = msgs.iter().map(|m| m.body.len()).sum();
    if bytes > limits.max_bytes {
        return Err(OutputError::TooManyBytes {
            bytes,
            limit: limits.max_bytes,
        });
    }
    for m in msgs {
        out.push(Message {
            body: m.body,
            content_type: m.content_type,
            group: m.group,
            attributes: m.attributes,
        })?;
    }
    Ok(out.take())
}

/// The messages of one call as they arrive one at a time (0.2's
/// `output.emit`), each checked before it is kept: the first one over a
/// limit or malformed is refused and the call is to be stopped.
#[derive(Debug)]
pub struct Outbox {
    limits: OutputLimits,
    msgs: Vec<Message>,
    bytes: usize,
}

impl Outbox {
    /// An empty outbox for a call with these limits.
    pub fn new(limits: OutputLimits) -> Self {
        Self {
            limits,
            msgs: Vec::new(),
            bytes: 0,
        }
    }

    /// Keep one more message, or say which limit or rule it breaks.
    pub fn push(&mut self, m: Message) -> Result<(), OutputError> {
        let count = self.msgs.len() + 1;
        if count > self.limits.max_messages {
            return Err(OutputError::TooManyMessages {
                count,
                limit: self.limits.max_messages,
            });
        }
        let bytes = self.bytes.saturating_add(m.body.len());
        if bytes > self.limits.max_bytes {
            return Err(OutputError::TooManyBytes {
                bytes,
                limit: self.limits.max_bytes,
            });
        }
        well_formed(&m).map_err(|problem| OutputError::Malformed {
            index: self.msgs.len(),
            problem,
        })?;
        self.bytes = bytes;
        self.msgs.push(m);
        Ok(())
    }

    /// The messages kept so far (drained).
    pub fn take(&mut self) -> Vec<Message> {
        self.bytes = 0;
        std::mem::take(&mut self.msgs)
    }
}

fn well_formed(m: &Message) -> Result<(), String> {
    let ct = &m.content_type;
    if ct.is_empty()
        || ct.len() > 255
        || !ct.contains('/')
        || !ct.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(format!(
            "content type {ct:?} is not a media type like \"application/json\""
        ));
    }
    if let Some(g) = &m.group
        && (g.is_empty() || g.len() > 128 || !g.bytes().all(|b| (0x21..0x7f).contains(&b)))
    {
        return Err(format!(
            "group {g:?} must be 1-128 printable ASCII characters without spaces"
        ));
    }
    if m.attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "{} attributes, over the limit of {MAX_ATTRIBUTES}",
            m.attributes.len()
        ));
    }
    for (k, v) in &m.attributes {
        let name_ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !k.starts_with('.')
            && !k.ends_with('.')
            && !k.contains("..");
        if !name_ok {
            return Err(format!(
                "attribute name {k:?} must be 1-64 of [A-Za-z0-9_.-]"
            ));
        }
        let lower = k.to_ascii_lowercase();
        if lower.starts_with(RESERVED_ATTRIBUTE_PREFIX)
            || lower.starts_with("aws.")
            || lower.starts_with("amazon.")
        {
            return Err(format!("attribute name {k:?} is reserved"));
        }
        if v.is_empty() || v.len() > 1024 {
            return Err(format!("attribute {k:?} value must be 1-1024 bytes"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ct: &str) -> WitMessage {
        WitMessage {
            body: b"{}".to_vec(),
            content_type: ct.into(),
            group: None,
            attributes: vec![],
        }
    }

    const L: OutputLimits = OutputLimits {
        max_bytes: 10,
        max_messages: 2,
    };

    #[test]
    fn accepts_good_output() {
        let mut m = msg("application/json");
        m.group = Some("g-1".into());
        m.attributes = vec![("language".into(), "de".into())];
        assert_eq!(
            check(vec![m], L).unwrap()[0].content_type,
            "application/json"
        );
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            check(vec![msg("a/b"), msg("a/b"), msg("a/b")], L).unwrap_err(),
            OutputError::TooManyMessages { count: 3, limit: 2 }
        );
        let mut big = msg("a/b");
        big.body = vec![b'x'; 11];
        assert_eq!(
            check(vec![big], L).unwrap_err(),
            OutputError::TooManyBytes {
                bytes: 11,
                limit: 10
            }
        );
    }

    #[test]
    fn an_outbox_refuses_the_first_message_over_a_limit_and_keeps_the_rest() {
        let m = |n: usize| Message::new("a/b", vec![b'x'; n]);
        let mut out = Outbox::new(L);
        out.push(m(4)).unwrap();
        assert_eq!(
            out.push(m(7)).unwrap_err(),
            OutputError::TooManyBytes {
                bytes: 11,
                limit: 10
            }
        );
        out.push(m(6)).unwrap();
        assert_eq!(
            out.push(m(0)).unwrap_err(),
            OutputError::TooManyMessages { count: 3, limit: 2 }
        );
        assert_eq!(out.take().len(), 2);
        let mut out = Outbox::new(L);
        out.push(m(1)).unwrap();
        assert!(
            out.push(Message::new("json", vec![]))
                .unwrap_err()
                .to_string()
                .contains("message 1")
        );
    }

    #[test]
    fn malformed_messages_are_named() {
        let e = check(vec![msg("a/b"), msg("json")], L)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("malformed result: message 1: content type \"json\""),
            "{e}"
        );
        let mut m = msg("a/b");
        m.attributes = vec![("prism-receiver".into(), "x".into())];
        assert!(
            check(vec![m], L)
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        let mut m = msg("a/b");
        m.group = Some("has space".into());
        assert!(check(vec![m], L).unwrap_err().to_string().contains("group"));
    }
}
