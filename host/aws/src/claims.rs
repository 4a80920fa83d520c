//! Claim checks: a change or dead letter too big for where it has to wait
//! (a DynamoDB item holds 400 KB, an SQS message 256 KiB) is put in the
//! plugin bucket under a content-addressed key, and the spool entry or DLQ
//! message carries a small reference instead:
//!
//! ```json
//! {"prism-claim": {"bucket": "…", "key": "claims/<sha256>.json", "bytes": 712345, "sha256": "…"}}
//! ```
//!
//! Every reader follows the reference ([`ClaimStore::resolve`]), checking
//! the content against its hash. The key is the content's hash, so writing
//! the same body twice (a retried append) stores it once. Claims are never
//! rewritten; a bucket lifecycle rule on `claims/` expires them after the
//! stream's retention plus the longest a lane may wait (see `terraform/`).

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, ErrorKind};

/// The key prefix of claims in the plugin bucket.
pub const PREFIX: &str = "claims/";
/// The field that marks a reference.
pub const FIELD: &str = "prism-claim";
/// The IAM actions the dispatcher needs on `claims/*`.
pub const ACTIONS: &[&str] = &["s3:GetObject", "s3:PutObject"];

/// Where a claimed body is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRef {
    /// The bucket.
    pub bucket: String,
    /// The object key (`claims/<sha256>.json`).
    pub key: String,
    /// The body's size.
    pub bytes: u64,
    /// The body's SHA-256, hex.
    pub sha256: String,
}

impl ClaimRef {
    /// The reference as the JSON value stored in place of the body.
    pub fn to_value(&self) -> Value {
        serde_json::json!({ FIELD: self })
    }

    /// The reference in `v`, if `v` is one.
    pub fn from_value(v: &Value) -> Option<Self> {
        serde_json::from_value(v.get(FIELD)?.clone()).ok()
    }
}

/// The claim checks in the plugin bucket.
#[derive(Debug, Clone)]
pub struct ClaimStore {
    s3: Client,
    bucket: String,
}

impl ClaimStore {
    /// Claims in `bucket`.
    pub fn new(s3: Client, bucket: impl Into<String>) -> Self {
        Self {
            s3,
            bucket: bucket.into(),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Store `body`; the reference to keep in its place.
    pub async fn put(&self, body: &[u8]) -> Result<ClaimRef, Error> {
        let sha256 = hex::encode(Sha256::digest(body));
        let r = ClaimRef {
            bucket: self.bucket.clone(),
            key: format!("{PREFIX}{sha256}.json"),
            bytes: body.len() as u64,
            sha256,
        };
        self.s3
            .put_object()
            .bucket(&r.bucket)
            .key(&r.key)
            .content_type("application/json")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .map_err(|e| self.err(&r.key, format!("PutObject: {}", crate::sdk_error(&e))))?;
        Ok(r)
    }

    /// The body a reference points to, checked against its hash.
    pub async fn get(&self, r: &ClaimRef) -> Result<Vec<u8>, Error> {
        let out = self
            .s3
            .get_object()
            .bucket(&r.bucket)
            .key(&r.key)
            .send()
            .await
            .map_err(|e| {
                let gone = e.as_service_error().is_some_and(|se| se.is_no_such_key());
                let message = format!("GetObject: {}", crate::sdk_error(&e));
                match gone {
                    true => self.gone(&r.key, message),
                    false => self.err(&r.key, message),
                }
            })?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| self.err(&r.key, format!("reading the body: {e}")))?
            .into_bytes()
            .to_vec();
        let actual = hex::encode(Sha256::digest(&body));
        if actual != r.sha256 {
            return Err(self.gone(
                &r.key,
                format!("content hashes to {actual}, not the {} recorded", r.sha256),
            ));
        }
        Ok(body)
    }

    /// Claim `v` when its JSON text is over `limit` bytes: the reference in
    /// its place, else `v` itself.
    pub async fn check_in(&self, v: Value, limit: usize) -> Result<Value, Error> {
        let text = v.to_string();
        if text.len() <= limit {
            return Ok(v);
        }
        Ok(self.put(text.as_bytes()).await?.to_value())
    }

    /// `v`, or what it refers to when it is a claim reference.
    pub async fn resolve(&self, v: Value) -> Result<Value, Error> {
        let Some(r) = ClaimRef::from_value(&v) else {
            return Ok(v);
        };
        let body = self.get(&r).await?;
        serde_json::from_slice(&body).map_err(|e| self.err(&r.key, format!("not JSON: {e}")))
    }

    fn err(&self, key: &str, message: String) -> Error {
        Error::new(ErrorKind::Claim, self.place(key), message)
    }

    fn gone(&self, key: &str, message: String) -> Error {
        Error::new(ErrorKind::ClaimGone, self.place(key), message)
    }

    fn place(&self, key: &str) -> String {
        format!("{key} in bucket {}", self.bucket)
    }
}

/// A dead letter read from a DLQ, with its `change` fetched when it was
/// claimed because the letter was over SQS's limit.
pub async fn resolve_dead_letter(store: &ClaimStore, body: &str) -> Result<Value, Error> {
    let mut letter: Value = serde_json::from_str(body)
        .map_err(|e| store.err("-", format!("dead letter is not JSON: {e}")))?;
    if let Some(change) = letter.get_mut("change") {
        *change = store.resolve(change.take()).await?;
    }
    Ok(letter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_plain_values_are_not_references() {
        let r = ClaimRef {
            bucket: "b".into(),
            key: "claims/ab.json".into(),
            bytes: 3,
            sha256: "ab".into(),
        };
        assert_eq!(ClaimRef::from_value(&r.to_value()), Some(r));
        assert_eq!(
            ClaimRef::from_value(&serde_json::json!({"key": "P-1"})),
            None
        );
        assert_eq!(ClaimRef::from_value(&serde_json::json!({FIELD: 1})), None);
    }
}
