//! The receiver registry in DynamoDB.
//!
//! Table design (one table per environment, `PAY_PER_REQUEST`):
//!
//! | item | `receiver` (partition key, S) | `version` (sort key, N) | other attributes |
//! |---|---|---|---|
//! | head | the receiver id | `0` | `entry` (M: the live manifest), `current` (N: the version it came from), `latest` (N), `revision` (N), `updated_at`, `updated_by`, `last_error`, `quarantine` (M: `until_ms`, `ejections`, `digest`), `cwasm#<engine>#<wasm-sha256>` (S: the sha256 of the trusted precompiled artifact) |
//! | history | the receiver id | `1`, `2`, … | `entry` (M: the manifest as registered), `registered_at`, `registered_by` |
//!
//! `entry` has exactly the local manifest's schema. Every write to a head is
//! conditional on the `revision` the writer read, so two operators can never
//! silently overwrite each other; `register` writes the new history item and
//! the head in one transaction. Rollback points the head at an older history
//! item: one conditional write.
//!
//! A precompiled artifact (`.cwasm`) is native code: a dispatcher loads one
//! from the bucket only when its sha256 equals a `cwasm#…` record on the
//! head, written by a trusted writer (`register`, or a dispatcher that
//! compiled the component itself) with [`DynamoRegistry::record_precompiled`].
//! The record is keyed by the engine and the component's digest, so a
//! rollback or an engine upgrade never pairs a component with another's code.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::attr_json::{map_from_av, to_av};
use super::sdk_error;
use crate::error::{Error, ErrorKind};
use prism_types::manifest::ReceiverManifest;
use prism_types::registry::Quarantine;

/// Partition key attribute.
pub const KEY_RECEIVER: &str = "receiver";
/// Sort key attribute.
pub const KEY_VERSION: &str = "version";
/// The attribute the dispatcher writes on a head when a receiver fails.
pub const LAST_ERROR: &str = "last_error";
/// The attribute the dispatcher writes on a head when a receiver is
/// quarantined (M: `until_ms`, `ejections`, `digest`), and removes when it
/// recovers: processes that start later begin quarantined.
pub const QUARANTINE: &str = "quarantine";
/// Prefix of the attributes that record trusted precompiled artifacts.
pub const PRECOMPILED_PREFIX: &str = "cwasm#";
/// The most bytes of an error kept in `last_error`: the text comes from a
/// plugin, and a head item must stay far below DynamoDB's 400 KB.
pub const MAX_LAST_ERROR_BYTES: usize = 2048;

/// The DynamoDB calls a dispatcher makes on the registry table (reading the
/// heads, recording a receiver's last error). Terraform grants exactly these.
pub const DISPATCHER_ACTIONS: &[&str] = &["dynamodb:Scan", "dynamodb:UpdateItem"];
/// The calls the read API makes on the registry table (reading the heads).
pub const READER_ACTIONS: &[&str] = &["dynamodb:Scan"];
/// The calls `prism plugin register|enable|disable|rollback` make for one
/// receiver, each on that receiver's items only: reading its head
/// (`GetItem`) and history (`Query`), writing them (`PutItem`, also inside
/// `register`'s transaction), recording a precompiled artifact
/// (`UpdateItem`). A receiver team's deploy role
/// (`terraform/modules/receiver-deployer`) grants exactly these, limited by
/// `dynamodb:LeadingKeys` to its receiver.
pub const TEAM_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
];

/// A receiver's live state.
#[derive(Debug, Clone)]
pub struct Head {
    /// The live entry.
    pub manifest: ReceiverManifest,
    /// The history version it came from.
    pub current: u64,
    /// The newest history version.
    pub latest: u64,
    /// Bumped by every write; writes are conditional on it.
    pub revision: u64,
    /// When and by whom it last changed.
    pub updated_at: String,
    /// Who changed it last.
    pub updated_by: String,
    /// The last error a dispatcher recorded for it.
    pub last_error: Option<String>,
    /// Trusted precompiled artifacts: `<engine>#<wasm sha256 hex>` → the
    /// `.cwasm`'s sha256 (see [`Head::trusted_precompiled`]).
    pub precompiled: BTreeMap<String, prism_types::digest::Digest>,
    /// The quarantine a dispatcher recorded, if any. Every write of the head
    /// by the CLI (register, enable, disable, rollback) drops it: an
    /// operator's action starts the receiver afresh.
    pub quarantine: Option<Quarantine>,
}

impl Head {
    /// The sha256 a precompiled artifact of `wasm` for `engine` must have to
    /// be loaded, if a trusted writer recorded one.
    pub fn trusted_precompiled(
        &self,
        engine: &str,
        wasm: &prism_types::digest::Digest,
    ) -> Option<&prism_types::digest::Digest> {
        self.precompiled.get(&precompiled_key(engine, wasm))
    }
}

fn precompiled_key(engine: &str, wasm: &prism_types::digest::Digest) -> String {
    format!("{engine}#{}", wasm.hex())
}

/// One registered version.
#[derive(Debug, Clone)]
pub struct Version {
    /// Its number (1, 2, …).
    pub version: u64,
    /// The entry as registered.
    pub manifest: ReceiverManifest,
    /// When.
    pub registered_at: String,
    /// By whom.
    pub registered_by: String,
}

/// The registry table.
#[derive(Debug, Clone)]
pub struct DynamoRegistry {
    ddb: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoRegistry {
    /// The registry in `table`.
    pub fn new(ddb: Client, table: impl Into<String>) -> Self {
        Self {
            ddb,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn err(&self, message: String) -> Error {
        Error::new(ErrorKind::RegistryTable, self.table.clone(), message)
    }

    /// A receiver's head, read consistently.
    pub async fn head(&self, receiver: &str) -> Result<Option<Head>, Error> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key(KEY_RECEIVER, AttributeValue::S(receiver.to_owned()))
            .key(KEY_VERSION, AttributeValue::N("0".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(sdk_error(&e)))?;
        out.item.map(|i| self.parse_head(&i)).transpose()
    }

    /// Every receiver's head (entries that do not parse come back as errors
    /// naming the receiver, so one bad item cannot hide the others).
    pub async fn heads(&self) -> Result<Vec<Result<Head, Error>>, Error> {
        let scan = self
            .ddb
            .scan()
            .table_name(&self.table)
            .filter_expression("#v = :zero")
            .expression_attribute_names("#v", KEY_VERSION)
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .consistent_read(true);
        let items = super::all_items(scan.into_paginator().items().send())
            .await
            .map_err(|e| self.err(e))?;
        let mut out: Vec<_> = items.iter().map(|i| self.parse_head(i)).collect();
        out.sort_by_key(key_of);
        Ok(out)
    }

    /// A receiver's history, oldest first.
    pub async fn versions(&self, receiver: &str) -> Result<Vec<Version>, Error> {
        let query = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("#r = :r AND #v > :zero")
            .expression_attribute_names("#r", KEY_RECEIVER)
            .expression_attribute_names("#v", KEY_VERSION)
            .expression_attribute_values(":r", AttributeValue::S(receiver.to_owned()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .consistent_read(true);
        let items = super::all_items(query.into_paginator().items().send())
            .await
            .map_err(|e| self.err(e))?;
        items
            .iter()
            .map(|item| {
                Ok(Version {
                    version: num(item, KEY_VERSION),
                    manifest: self.parse_entry(item, receiver)?,
                    registered_at: text(item, "registered_at"),
                    registered_by: text(item, "registered_by"),
                })
            })
            .collect()
    }

    /// Register a new version of `manifest.receiver` and make it live, if the
    /// head is still at `seen` (`None`: the receiver must not exist yet).
    pub async fn publish(
        &self,
        manifest: &ReceiverManifest,
        seen: Option<&Head>,
        by: &str,
    ) -> Result<Head, Error> {
        let receiver = &manifest.receiver;
        let version = seen.map_or(1, |h| h.latest + 1);
        let revision = seen.map_or(1, |h| h.revision + 1);
        let now = now();
        let entry = entry_av(manifest);
        let history = Put::builder()
            .table_name(&self.table)
            .item(KEY_RECEIVER, AttributeValue::S(receiver.clone()))
            .item(KEY_VERSION, AttributeValue::N(version.to_string()))
            .item("entry", entry.clone())
            .item("registered_at", AttributeValue::S(now.clone()))
            .item("registered_by", AttributeValue::S(by.to_owned()))
            .condition_expression("attribute_not_exists(#r)")
            .expression_attribute_names("#r", KEY_RECEIVER)
            .build()
            .map_err(|e| self.err(e.to_string()))?;
        let head = Head {
            manifest: manifest.clone(),
            current: version,
            latest: version,
            revision,
            updated_at: now,
            updated_by: by.to_owned(),
            last_error: None,
            precompiled: BTreeMap::new(),
            quarantine: None,
        };
        let head_put = self.head_put(&head, seen.map(|h| h.revision))?;
        self.ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(history).build())
            .transact_items(TransactWriteItem::builder().put(head_put).build())
            .send()
            .await
            .map_err(|e| {
                let raced = e
                    .as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception());
                if raced {
                    conflict(receiver, seen.map_or(0, |h| h.revision))
                } else {
                    self.err(sdk_error(&e))
                }
            })?;
        Ok(head)
    }

    /// Replace the head (enable, disable, rollback), if it is still at `seen`.
    pub async fn update_head(&self, seen: &Head, mut next: Head, by: &str) -> Result<Head, Error> {
        next.revision = seen.revision + 1;
        next.updated_at = now();
        next.updated_by = by.to_owned();
        let put = self.head_put(&next, Some(seen.revision))?;
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(put.item().clone()))
            .set_condition_expression(put.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(put.expression_attribute_names().cloned())
            .set_expression_attribute_values(put.expression_attribute_values().cloned())
            .send()
            .await
            .map_err(|e| {
                if crate::condition_failed(&e) {
                    conflict(&next.manifest.receiver, seen.revision)
                } else {
                    self.err(sdk_error(&e))
                }
            })?;
        Ok(next)
    }

    /// Delete a receiver: its head and its history. Artifacts stay in S3
    /// (content-addressed; other receivers may share them).
    pub async fn remove(&self, receiver: &str) -> Result<usize, Error> {
        let mut keys: Vec<u64> = self
            .versions(receiver)
            .await?
            .iter()
            .map(|v| v.version)
            .collect();
        keys.push(0);
        for v in &keys {
            self.ddb
                .delete_item()
                .table_name(&self.table)
                .key(KEY_RECEIVER, AttributeValue::S(receiver.to_owned()))
                .key(KEY_VERSION, AttributeValue::N(v.to_string()))
                .send()
                .await
                .map_err(|e| self.err(sdk_error(&e)))?;
        }
        Ok(keys.len())
    }

    /// Record the sha256 of the precompiled artifact of `wasm` for `engine`,
    /// unless one is recorded already (the first trusted writer wins, so a
    /// racing dispatcher cannot replace it). Returns whether this call
    /// recorded it. Does not bump the revision.
    pub async fn record_precompiled(
        &self,
        receiver: &str,
        engine: &str,
        wasm: &prism_types::digest::Digest,
        cwasm: &prism_types::digest::Digest,
    ) -> Result<bool, Error> {
        let attr = format!("{PRECOMPILED_PREFIX}{}", precompiled_key(engine, wasm));
        let r = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(KEY_RECEIVER, AttributeValue::S(receiver.to_owned()))
            .key(KEY_VERSION, AttributeValue::N("0".into()))
            .update_expression("SET #a = :d")
            .condition_expression("attribute_exists(#r) AND attribute_not_exists(#a)")
            .expression_attribute_names("#a", attr)
            .expression_attribute_names("#r", KEY_RECEIVER)
            .expression_attribute_values(":d", AttributeValue::S(cwasm.to_string()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if crate::condition_failed(&e) => Ok(false),
            Err(e) => Err(self.err(sdk_error(&e))),
        }
    }

    /// Record a dispatcher's last error for a receiver (best effort; shown by
    /// `prism status`), cut to [`MAX_LAST_ERROR_BYTES`]. Does not bump the
    /// revision.
    pub async fn record_error(&self, receiver: &str, error: &str) -> Result<(), Error> {
        let error = prism_types::text::cap(error, MAX_LAST_ERROR_BYTES);
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key(KEY_RECEIVER, AttributeValue::S(receiver.to_owned()))
            .key(KEY_VERSION, AttributeValue::N("0".into()))
            .update_expression("SET #e = :e")
            .expression_attribute_names("#e", LAST_ERROR)
            .condition_expression("attribute_exists(#r)")
            .expression_attribute_names("#r", KEY_RECEIVER)
            .expression_attribute_values(":e", AttributeValue::S(format!("{} {error}", now())))
            .send()
            .await
            .map_err(|e| self.err(sdk_error(&e)))?;
        Ok(())
    }

    /// Record a receiver's quarantine on its head (`None`: remove it), for
    /// processes that start later. Best effort, like [`Self::record_error`];
    /// does not bump the revision.
    pub async fn record_quarantine(
        &self,
        receiver: &str,
        quarantine: Option<&Quarantine>,
    ) -> Result<(), Error> {
        let update = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(KEY_RECEIVER, AttributeValue::S(receiver.to_owned()))
            .key(KEY_VERSION, AttributeValue::N("0".into()))
            .expression_attribute_names("#q", QUARANTINE)
            .condition_expression("attribute_exists(#r)")
            .expression_attribute_names("#r", KEY_RECEIVER);
        let update = match quarantine {
            Some(q) => update
                .update_expression("SET #q = :q")
                .expression_attribute_values(
                    ":q",
                    AttributeValue::M(HashMap::from([
                        (
                            "until_ms".to_owned(),
                            AttributeValue::N(q.until_ms.to_string()),
                        ),
                        (
                            "ejections".to_owned(),
                            AttributeValue::N(q.ejections.to_string()),
                        ),
                        ("digest".to_owned(), AttributeValue::S(q.digest.to_string())),
                    ])),
                ),
            None => update.update_expression("REMOVE #q"),
        };
        update.send().await.map_err(|e| self.err(sdk_error(&e)))?;
        Ok(())
    }

    fn head_put(&self, h: &Head, expected_revision: Option<u64>) -> Result<Put, Error> {
        let mut b = Put::builder()
            .table_name(&self.table)
            .item(KEY_RECEIVER, AttributeValue::S(h.manifest.receiver.clone()))
            .item(KEY_VERSION, AttributeValue::N("0".into()))
            .item("entry", entry_av(&h.manifest))
            .item("current", AttributeValue::N(h.current.to_string()))
            .item("latest", AttributeValue::N(h.latest.to_string()))
            .item("revision", AttributeValue::N(h.revision.to_string()))
            .item("updated_at", AttributeValue::S(h.updated_at.clone()))
            .item("updated_by", AttributeValue::S(h.updated_by.clone()))
            .expression_attribute_names("#r", KEY_RECEIVER);
        if let Some(e) = &h.last_error {
            b = b.item(LAST_ERROR, AttributeValue::S(e.clone()));
        }
        for (k, d) in &h.precompiled {
            b = b.item(
                format!("{PRECOMPILED_PREFIX}{k}"),
                AttributeValue::S(d.to_string()),
            );
        }
        b = match expected_revision {
            None => b.condition_expression("attribute_not_exists(#r)"),
            Some(rev) => b
                .condition_expression("attribute_exists(#r) AND revision = :rev")
                .expression_attribute_values(":rev", AttributeValue::N(rev.to_string())),
        };
        b.build().map_err(|e| self.err(e.to_string()))
    }

    fn parse_head(&self, item: &Item) -> Result<Head, Error> {
        let receiver = text(item, KEY_RECEIVER);
        Ok(Head {
            manifest: self.parse_entry(item, &receiver)?,
            current: num(item, "current"),
            latest: num(item, "latest"),
            revision: num(item, "revision"),
            updated_at: text(item, "updated_at"),
            updated_by: text(item, "updated_by"),
            last_error: item.get(LAST_ERROR).and_then(|v| v.as_s().ok()).cloned(),
            precompiled: item
                .iter()
                .filter_map(|(k, v)| {
                    let key = k.strip_prefix(PRECOMPILED_PREFIX)?;
                    Some((key.to_owned(), v.as_s().ok()?.parse().ok()?))
                })
                .collect(),
            quarantine: item.get(QUARANTINE).and_then(parse_quarantine),
        })
    }

    fn parse_entry(&self, item: &Item, receiver: &str) -> Result<ReceiverManifest, Error> {
        let version = num(item, KEY_VERSION);
        let origin = format!("dynamodb://{}/{receiver}/v{version}", self.table);
        let invalid = |message: String| {
            Error::invalid_entry(prism_types::Error::new(
                prism_types::ErrorKind::ManifestInvalid,
                origin.clone(),
                message,
            ))
        };
        let entry = item
            .get("entry")
            .and_then(|e| e.as_m().ok())
            .ok_or_else(|| invalid("no `entry` map".into()))?;
        let json = map_from_av(entry, "entry").map_err(invalid)?;
        let manifest = ReceiverManifest::from_json(serde_json::Value::Object(json), &origin)
            .map_err(Error::invalid_entry)?;
        // Identity comes from the key, never from the item's content: a
        // team's role may write only items under its own partition key
        // (`dynamodb:LeadingKeys`), but it writes the entry's text freely.
        if manifest.receiver != receiver {
            return Err(Error::invalid_entry(prism_types::Error::new(
                prism_types::ErrorKind::ForeignIdentity,
                origin.clone(),
                format!(
                    "the entry names receiver {:?}, but it is stored under {receiver:?}; refused (an entry may define only the receiver its key names)",
                    manifest.receiver
                ),
            )));
        }
        Ok(manifest)
    }
}

/// Someone else changed `receiver` since it was read at `revision`.
fn conflict(receiver: &str, revision: u64) -> Error {
    Error::new(
        ErrorKind::Conflict,
        receiver,
        format!(
            "was changed by someone else since it was read (revision {revision}); read it again and retry"
        ),
    )
}

fn entry_av(m: &ReceiverManifest) -> AttributeValue {
    to_av(&serde_json::to_value(m).expect("a manifest serializes"))
}

fn key_of(h: &Result<Head, Error>) -> String {
    match h {
        Ok(h) => h.manifest.receiver.clone(),
        Err(e) => e.to_string(),
    }
}

/// A recorded quarantine; anything malformed reads as none (a team can
/// write its own head: the worst it does is lift its own quarantine early).
fn parse_quarantine(v: &AttributeValue) -> Option<Quarantine> {
    let m = v.as_m().ok()?;
    Some(Quarantine {
        until_ms: m.get("until_ms")?.as_n().ok()?.parse().ok()?,
        ejections: m.get("ejections")?.as_n().ok()?.parse().ok()?,
        digest: m.get("digest")?.as_s().ok()?.parse().ok()?,
    })
}

fn text(item: &Item, k: &str) -> String {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn num(item: &Item, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Now, as an RFC 3339 UTC timestamp.
fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }
}
