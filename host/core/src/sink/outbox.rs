//! The local outbox: one directory per receiver; message files whose names
//! sort in delivery order; dead letters beside them.
//!
//! ```text
//! outbox/website/00000001-000.json        message body
//! outbox/website/00000001-000.meta.json   key, sequence, content type, group, attributes, digest
//! outbox/website/dead-letters/00000007.json
//! ```
//! `00000001` is the change's position in the input (a batch uses its first
//! change's), `000` the message's index within that change. A window flushed
//! from a durable batch buffer is named by its sequences instead:
//! `batch-<first>-<last>-000.csv`, the same however often it is flushed.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{DeadLetter, Envelope, Sink, SinkError};

/// A directory outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    root: PathBuf,
}

impl Outbox {
    /// An outbox rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn write(&self, receiver: &str, rel: &str, bytes: &[u8]) -> Result<(), SinkError> {
        let path = self.root.join(receiver).join(rel);
        let err = |e: std::io::Error| {
            SinkError::unavailable(receiver, format!("{}: {e}", path.display()))
        };
        std::fs::create_dir_all(path.parent().expect("has parent")).map_err(err)?;
        std::fs::write(&path, bytes).map_err(err)
    }
}

/// File extension for a content type.
pub fn extension(content_type: &str) -> &'static str {
    let base = content_type.split(';').next().unwrap_or("").trim();
    match base {
        "application/json" | "application/ld+json" => "json",
        "application/xml" | "text/xml" => "xml",
        "text/csv" => "csv",
        t if t.ends_with("+json") => "json",
        t if t.ends_with("+xml") => "xml",
        t if t.starts_with("text/") => "txt",
        _ => "bin",
    }
}

impl Sink for Outbox {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        for e in envelopes {
            let stem = match e.window {
                Some(w) => format!("batch-{w}-{:03}", e.index),
                None => format!("{:08}-{:03}", e.ordinal, e.index),
            };
            let m = e.message;
            self.write(
                e.receiver,
                &format!("{stem}.{}", extension(&m.content_type)),
                &m.body,
            )?;
            let meta = json!({
                "receiver": e.receiver,
                "key": e.key,
                "sequence": e.sequence,
                "content_type": m.content_type,
                "group": m.group.as_deref().unwrap_or(e.key),
                "attributes": m.attributes.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "plugin_digest": e.digest.to_string(),
            });
            self.write(
                e.receiver,
                &format!("{stem}.meta.json"),
                format!("{meta:#}\n").as_bytes(),
            )?;
        }
        Ok(())
    }

    fn park(&self, dead: &DeadLetter) -> Result<(), SinkError> {
        let body = serde_json::to_string_pretty(dead).expect("dead letters serialize");
        self.write(
            &dead.receiver,
            &format!("dead-letters/{:08}.json", dead.ordinal),
            body.as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        assert_eq!(extension("application/ld+json"), "json");
        assert_eq!(extension("text/csv; charset=utf-8"), "csv");
        assert_eq!(extension("application/xml"), "xml");
        assert_eq!(extension("application/octet-stream"), "bin");
    }
}
