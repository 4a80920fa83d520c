//! The spool in DynamoDB: batch buffers and retry lanes for the Lambda.
//!
//! One table, partition key `lane` (S), sort key `entry` (S):
//! - an entry of a lane: `entry` is its sequence, zero-padded to 48 digits
//!   so text order is numeric; `change` (S, JSON), `spooled_ms` (N), `bytes` (N);
//! - the lane's claim: `entry = "~claim"` (sorts after every sequence):
//!   `lease_until`, `members`, `sent`, `digest`, `attempts`, `partial`
//!   (messages of entries a retry already got out, by sequence); an entry
//!   may also have `sent` (the messages its first try got out), and a
//!   `change` over [`CHANGE_LIMIT`] is a claim reference ([`crate::claims`]);
//! - where the last tick cut short stopped: `lane = "#tick"`, `entry =
//!   "cursor"`, attribute `resume_after` (a lane name);
//! - a *done* mark for every entry a lane removed, in the partition
//!   `lane = "#done/<lane>"`, expiring (TTL [`EXPIRES_AT`]) after
//!   [`prism_core::spool::DONE_MS`]: an append skips what a lane already handled;
//! - an index of non-empty lanes in the partition `lane = "#index"`, one
//!   item per lane (`entry` = lane name) with `count`, `bytes`, `oldest_ms`
//!   and a `version` every append increments. One `Query` finds every open
//!   lane; an index item is deleted only if no append came in since the
//!   lane was seen empty (conditional on `version`), so a lane is never
//!   forgotten while it has entries.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use super::batch::{Item, batch_get, batch_write, delete, put};
use crate::claims::{ClaimRef, ClaimStore};
use prism_core::spool::{
    Appended, Claim, DONE_MS, LEASE_MS, Lane, LaneInfo, Spool, Spooled, now_ms,
};

/// Partition key: the lane name, or [`INDEX`] (S).
pub const KEY_LANE: &str = "lane";
/// Sort key: the padded sequence, [`CLAIM`], or (in the index) a lane name (S).
pub const KEY_ENTRY: &str = "entry";
/// The index partition.
pub const INDEX: &str = "#index";
/// The partition of the tick's cursor (where the last tick cut short
/// stopped); not a lane, so no listing of lanes sees it.
pub const TICK: &str = "#tick";
/// The tick cursor's item.
pub const CURSOR: &str = "cursor";

/// The tick cursor, named like a lane for error messages.
fn tick_lane() -> Lane {
    Lane::Buffer {
        receiver: "#tick".into(),
    }
}

/// A lane's claim item.
pub const CLAIM: &str = "~claim";
/// Prefix of the partitions holding lanes' done marks.
pub const DONE_PREFIX: &str = "#done/";
/// The TTL attribute of done marks (N, epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";
/// The calls the dispatcher makes on the table. Terraform grants exactly these.
pub const ACTIONS: &[&str] = &[
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
];

fn padded(sequence: &str) -> String {
    format!("{sequence:0>48}")
}

fn unpadded(entry: &str) -> String {
    match entry.trim_start_matches('0') {
        "" => "0".to_owned(),
        q => q.to_owned(),
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(lane: &str, entry: &str) -> Item {
    HashMap::from([
        (KEY_LANE.to_owned(), s(lane)),
        (KEY_ENTRY.to_owned(), s(entry)),
    ])
}

fn num(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |v| v.max(0) as u64)
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A lane's totals from its index item.
fn lane_info(item: &Item) -> LaneInfo {
    LaneInfo {
        count: num(item, "count"),
        bytes: num(item, "bytes"),
        oldest_ms: num(item, "oldest_ms"),
    }
}

/// The spool table, used from blocking threads.
#[derive(Debug, Clone)]
pub struct DynamoSpool {
    client: Client,
    table: String,
    handle: tokio::runtime::Handle,
    claims: Option<ClaimStore>,
}

/// The largest change text kept in the item itself: DynamoDB's item limit
/// is 400 KB, names and the other attributes included. A larger change is
/// claimed (its text put in the plugin bucket, a reference in the item).
pub const CHANGE_LIMIT: usize = 350_000;

impl DynamoSpool {
    /// The table `table`; calls block the calling (non-runtime) thread on `handle`.
    pub fn new(client: Client, table: impl Into<String>, handle: tokio::runtime::Handle) -> Self {
        Self {
            client,
            table: table.into(),
            handle,
            claims: None,
        }
    }

    /// Changes over [`CHANGE_LIMIT`] go to `claims` (see [`crate::claims`]).
    pub fn with_claims(mut self, claims: Option<ClaimStore>) -> Self {
        self.claims = claims;
        self
    }

    /// The text to store for a change: itself, or a claim reference.
    async fn stored(&self, change: &Value) -> Result<String, String> {
        let text = change.to_string();
        if text.len() <= CHANGE_LIMIT {
            return Ok(text);
        }
        let claims = self.claims.as_ref().ok_or_else(|| {
            format!(
                "a change of {} bytes is over what a DynamoDB item holds, and the spool has no claim bucket",
                text.len()
            )
        })?;
        let r = claims
            .put(text.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        Ok(r.to_value().to_string())
    }

    /// A stored change back: followed to the plugin bucket when claimed.
    async fn loaded(&self, text: &str) -> Result<Value, Loaded> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Loaded::Failed(format!("an entry's change is not JSON: {e}")))?;
        if ClaimRef::from_value(&v).is_none() {
            return Ok(v);
        }
        let claims = self.claims.as_ref().ok_or_else(|| {
            Loaded::Failed(
                "an entry's change is claimed, and the spool has no claim bucket".to_owned(),
            )
        })?;
        claims.resolve(v).await.map_err(|e| {
            if e.is_gone() {
                Loaded::Gone(e.to_string())
            } else {
                Loaded::Failed(e.to_string())
            }
        })
    }

    fn err(&self, lane: &Lane, message: String) -> prism_core::Error {
        prism_core::Error::spool(format!("table {}", self.table), lane.to_string(), message)
    }

    async fn query(&self, partition: &str, below: Option<&str>) -> Result<Vec<Item>, String> {
        let q = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_names("#l", KEY_LANE)
            .expression_attribute_values(":l", s(partition));
        let q = match below {
            Some(b) => q
                .key_condition_expression("#l = :l AND #e < :b")
                .expression_attribute_names("#e", KEY_ENTRY)
                .expression_attribute_values(":b", s(b)),
            None => q.key_condition_expression("#l = :l"),
        };
        super::all_items(q.into_paginator().items().send())
            .await
            .map_err(|e| format!("Query: {e}"))
    }

    /// The newest live done mark of a lane (its padded sequence): one
    /// query, newest first, skipping marks past their expiry.
    async fn newest_done(&self, done_lane: &str, now_s: u64) -> Result<Option<String>, String> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#l = :l")
            .expression_attribute_names("#l", KEY_LANE)
            .expression_attribute_values(":l", s(done_lane))
            .scan_index_forward(false)
            .send()
            .await
            .map_err(|e| format!("Query (done marks): {}", super::sdk_error(&e)))?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter(|m| num(m, EXPIRES_AT) > now_s)
            .find_map(|m| text(m, KEY_ENTRY).map(str::to_owned)))
    }

    /// The lane's index item (its totals and version), read consistently.
    async fn index_item(&self, name: &str) -> Result<Option<Item>, String> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(INDEX, name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("GetItem (index): {}", super::sdk_error(&e)))?;
        Ok(out.item)
    }

    async fn entries(&self, lane: &Lane) -> Result<Vec<Spooled>, String> {
        let items = self.query(&lane.to_string(), Some("~")).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            let change = text(item, "change").ok_or("an entry has no change")?;
            let sequence = unpadded(text(item, KEY_ENTRY).unwrap_or_default());
            let change = match self.loaded(change).await {
                Ok(c) => c,
                // Its claim check is gone (the bucket's lifecycle expires
                // claims/ after 30 days): the entry is handed over as
                // unreadable and parked with the reason, rather than every
                // read of the lane failing from now on (issue 28, item 9).
                Err(Loaded::Gone(why)) => {
                    tracing::error!(lane = %lane, %sequence, error = %why, "a spooled change's claim check is gone; the entry is parked");
                    out.push(Spooled::unreadable(
                        sequence,
                        num(item, "spooled_ms"),
                        format!("its change was claimed in the plugin bucket and cannot be read back: {why}"),
                    ));
                    continue;
                }
                Err(Loaded::Failed(e)) => return Err(e),
            };
            out.push(Spooled {
                sequence,
                spooled_ms: num(item, "spooled_ms"),
                bytes: num(item, "bytes"),
                change,
                sent: text(item, "sent")
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| format!("an entry's sent list is not JSON: {e}"))?
                    .unwrap_or_default(),
                replay: false,
            });
        }
        Ok(out)
    }

    /// The item that stores `e` in lane `name`, its change as `text`.
    fn entry_item(&self, name: &str, e: &Spooled, text: String) -> Item {
        let mut item = key(name, &padded(&e.sequence));
        item.insert("change".into(), s(text));
        item.insert("spooled_ms".into(), n(e.spooled_ms));
        item.insert("bytes".into(), n(e.bytes));
        if !e.sent.is_empty() {
            let sent = serde_json::to_string(&e.sent).expect("a list serializes");
            item.insert("sent".into(), s(sent));
        }
        item
    }

    /// An `UpdateItem` of the lane's index item that sets its totals
    /// (count, bytes, oldest) from `entries`; `more` goes on the end of
    /// the update expression.
    fn set_totals(
        &self,
        name: &str,
        entries: &[Spooled],
        more: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(INDEX, name)))
            .update_expression(format!("SET #c = :c, bytes = :b, oldest_ms = :o{more}"))
            .expression_attribute_names("#c", "count")
            .expression_attribute_values(":c", n(entries.len()))
            .expression_attribute_values(":b", n(entries.iter().map(|e| e.bytes).sum::<u64>()))
            .expression_attribute_values(
                ":o",
                n(entries.iter().map(|e| e.spooled_ms).min().unwrap_or(0)),
            )
    }

    /// Set the lane's index from its entries (it undercounted them).
    async fn recount(&self, lane: &Lane) -> Result<Appended, String> {
        let name = lane.to_string();
        let left = self.entries(lane).await?;
        tracing::warn!(lane = %name, entries = left.len(), "spool index undercounted a lane (an append that died before counting it); counted again");
        let out = self
            .set_totals(&name, &left, " ADD version :one")
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| format!("UpdateItem (index): {}", super::sdk_error(&e)))?;
        Ok(Appended {
            added: 0,
            info: lane_info(&out.attributes.unwrap_or_default()),
        })
    }

    async fn write_claim(&self, lane: &Lane, claim: &Claim, unlock: bool) -> Result<(), String> {
        let mut u = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&lane.to_string(), CLAIM)))
            .update_expression(if unlock {
                "SET members = :m, sent = :s, digest = :d, attempts = :a, #p = :p, lease_until = :z"
            } else {
                "SET members = :m, sent = :s, digest = :d, attempts = :a, #p = :p"
            })
            .expression_attribute_values(
                ":m",
                AttributeValue::L(claim.members.iter().map(|m| s(m.as_str())).collect()),
            )
            .expression_attribute_values(":s", n(claim.sent))
            .expression_attribute_values(":d", s(claim.digest.clone().unwrap_or_default()))
            .expression_attribute_values(":a", n(claim.attempts))
            .expression_attribute_names("#p", "partial")
            .expression_attribute_values(
                ":p",
                s(serde_json::to_string(&claim.partial).expect("a map of lists serializes")),
            );
        if unlock {
            u = u.expression_attribute_values(":z", n(0));
        }
        u.send()
            .await
            .map(|_| ())
            .map_err(|e| format!("UpdateItem (claim): {}", super::sdk_error(&e)))
    }
}

/// Why a stored change could not be had.
enum Loaded {
    /// Its claim check is gone for good.
    Gone(String),
    /// Anything else (try again later).
    Failed(String),
}

impl Spool for DynamoSpool {
    fn append(&self, lane: &Lane, entries: &[Spooled]) -> Result<Appended, prism_core::Error> {
        let name = lane.to_string();
        let done_lane = format!("{DONE_PREFIX}{name}");
        self.handle
            .block_on(async {
                // What this lane handled already is not added again, and
                // what it holds is not written over: a retried stream batch
                // brings an entry back without the `sent` list a delivery
                // that failed midway recorded on it, and writing it again
                // would send those messages twice. One read for both.
                let mut keys: Vec<Item> = entries
                    .iter()
                    .map(|e| key(&done_lane, &padded(&e.sequence)))
                    .collect();
                keys.extend(entries.iter().map(|e| key(&name, &padded(&e.sequence))));
                let found = batch_get(&self.client, &self.table, keys).await?;
                let now_s = now_ms() / 1000;
                let lane_of = |m: &Item| text(m, KEY_LANE).map(str::to_owned);
                let done: std::collections::HashSet<String> = found
                    .iter()
                    .filter(|m| lane_of(m).as_deref() == Some(done_lane.as_str()))
                    .filter(|m| num(m, EXPIRES_AT) > now_s)
                    .filter_map(|m| text(m, KEY_ENTRY).map(str::to_owned))
                    .collect();
                let held: std::collections::HashSet<String> = found
                    .iter()
                    .filter(|m| lane_of(m).as_deref() == Some(name.as_str()))
                    .filter_map(|m| text(m, KEY_ENTRY).map(str::to_owned))
                    .collect();
                // A retry lane is one product's: what is older than the
                // newest change it handled is stale (`Spool::append`).
                let high = match lane {
                    Lane::Retry { .. } if entries.iter().any(|e| !e.replay) => {
                        self.newest_done(&done_lane, now_s).await?
                    }
                    _ => None,
                };
                // A replay is written whatever the lane holds or handled:
                // it replaces an entry under its sequence (`Spool::append`).
                let writes: Vec<&Spooled> = entries
                    .iter()
                    .filter(|e| {
                        e.replay
                            || (!held.contains(&padded(&e.sequence))
                                && !done.contains(&padded(&e.sequence))
                                && (prism_types::change::is_backfill(&e.sequence)
                                    || high.as_ref().is_none_or(|h| padded(&e.sequence) > *h)))
                    })
                    .collect();
                if !writes.is_empty() {
                    let mut texts = Vec::with_capacity(writes.len());
                    for e in &writes {
                        texts.push(self.stored(&e.change).await?);
                    }
                    let requests = writes
                        .iter()
                        .zip(texts)
                        .map(|(e, text)| put(self.entry_item(&name, e, text)))
                        .collect();
                    batch_write(&self.client, &self.table, requests).await?;
                }
                // What the lane did not hold is counted in its index.
                let fresh: Vec<&Spooled> = writes
                    .into_iter()
                    .filter(|e| !held.contains(&padded(&e.sequence)))
                    .collect();
                if fresh.is_empty() {
                    let a = self.index_item(&name).await?.unwrap_or_default();
                    let listed = num(&a, "count");
                    if listed < held.len() as u64 {
                        // The entries went in and the index was not counted
                        // (the entries are written first; a process died or
                        // the call failed between the two). Unlisted, the lane
                        // would never be worked: count it again.
                        return self.recount(lane).await;
                    }
                    return Ok(Appended {
                        added: 0,
                        info: lane_info(&a),
                    });
                }
                let oldest = fresh.iter().map(|e| e.spooled_ms).min().unwrap_or(0);
                let out = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(INDEX, &name)))
                    .update_expression(
                        "ADD #c :c, bytes :b, version :one SET oldest_ms = if_not_exists(oldest_ms, :o)",
                    )
                    .expression_attribute_names("#c", "count")
                    .expression_attribute_values(":c", n(fresh.len()))
                    .expression_attribute_values(
                        ":b",
                        n(fresh.iter().map(|e| e.bytes).sum::<u64>()),
                    )
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":o", n(oldest))
                    .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                    .send()
                    .await
                    .map_err(|e| format!("UpdateItem (index): {}", super::sdk_error(&e)))?;
                let a = out.attributes.unwrap_or_default();
                Ok(Appended {
                    added: fresh.len() as u64,
                    info: lane_info(&a),
                })
            })
            .map_err(|e: String| self.err(lane, e))
    }

    fn handled(
        &self,
        lane: &Lane,
        sequences: &[String],
    ) -> Result<std::collections::HashSet<String>, prism_core::Error> {
        if sequences.is_empty() {
            return Ok(Default::default());
        }
        let done_lane = format!("{DONE_PREFIX}{lane}");
        self.handle
            .block_on(async {
                let keys = sequences
                    .iter()
                    .map(|q| key(&done_lane, &padded(q)))
                    .collect();
                let now_s = now_ms() / 1000;
                Ok(batch_get(&self.client, &self.table, keys)
                    .await?
                    .iter()
                    .filter(|m| num(m, EXPIRES_AT) > now_s)
                    .filter_map(|m| text(m, KEY_ENTRY).map(unpadded))
                    .collect())
            })
            .map_err(|e: String| self.err(lane, e))
    }

    fn mark_handled(&self, lane: &Lane, sequences: &[String]) -> Result<(), prism_core::Error> {
        if sequences.is_empty() {
            return Ok(());
        }
        let done_lane = format!("{DONE_PREFIX}{lane}");
        let expires = (now_ms() + DONE_MS) / 1000;
        let requests = sequences
            .iter()
            .map(|q| {
                let mut mark = key(&done_lane, &padded(q));
                mark.insert(EXPIRES_AT.into(), n(expires));
                put(mark)
            })
            .collect();
        self.handle
            .block_on(batch_write(&self.client, &self.table, requests))
            .map_err(|e| self.err(lane, e))
    }

    fn read(&self, lane: &Lane) -> Result<Vec<Spooled>, prism_core::Error> {
        self.handle
            .block_on(self.entries(lane))
            .map_err(|e| self.err(lane, e))
    }

    fn remove(&self, lane: &Lane, sequences: &[String]) -> Result<(), prism_core::Error> {
        let name = lane.to_string();
        self.handle
            .block_on(async {
                let done_lane = format!("{DONE_PREFIX}{name}");
                let expires = (now_ms() + DONE_MS) / 1000;
                let mut requests: Vec<_> = sequences
                    .iter()
                    .map(|q| delete(key(&name, &padded(q))))
                    .collect();
                requests.extend(sequences.iter().map(|q| {
                    let mut mark = key(&done_lane, &padded(q));
                    mark.insert(EXPIRES_AT.into(), n(expires));
                    put(mark)
                }));
                batch_write(&self.client, &self.table, requests).await?;
                // Read the version before looking at what is left: an append
                // after this read bumps it, and the index item then stays.
                let index = self.index_item(&name).await?;
                let version = index.as_ref().map_or(0, |i| num(i, "version"));
                let left = self.entries(lane).await?;
                // A lost race (condition failed) means an append came in;
                // its totals stand.
                // Only if no append bumped the version since it was read.
                let unchanged = ("version = :v", ":v", n(version));
                if left.is_empty() {
                    let r = self
                        .client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key(INDEX, &name)))
                        .condition_expression(unchanged.0)
                        .expression_attribute_values(unchanged.1, unchanged.2)
                        .send()
                        .await;
                    crate::unless_raced(r, "DeleteItem (index)")
                } else {
                    let r = self.set_totals(&name, &left, "");
                    let r = r
                        .condition_expression(unchanged.0)
                        .expression_attribute_values(unchanged.1, unchanged.2)
                        .send()
                        .await;
                    crate::unless_raced(r, "UpdateItem (index)")
                }
            })
            .map_err(|e: String| self.err(lane, e))
    }

    fn lanes(&self) -> Result<Vec<(Lane, LaneInfo)>, prism_core::Error> {
        let items = self
            .handle
            .block_on(self.query(INDEX, None))
            .map_err(|e| prism_core::Error::spool(format!("table {}", self.table), INDEX, e))?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let lane = Lane::parse(text(item, KEY_ENTRY)?)?;
                Some((lane, lane_info(item)))
            })
            .collect())
    }

    fn claim(
        &self,
        lane: &Lane,
        now_ms: u64,
        steal: bool,
    ) -> Result<Option<Claim>, prism_core::Error> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&lane.to_string(), CLAIM)))
            .update_expression("SET lease_until = :l")
            .expression_attribute_values(":l", n(now_ms + LEASE_MS))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        if !steal {
            update = update
                .condition_expression("attribute_not_exists(lease_until) OR lease_until <= :now")
                .expression_attribute_values(":now", n(now_ms));
        }
        let out = self.handle.block_on(update.send());
        match out {
            Ok(out) => {
                let a = out.attributes.unwrap_or_default();
                Ok(Some(Claim {
                    members: a
                        .get("members")
                        .and_then(|m| m.as_l().ok())
                        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
                        .unwrap_or_default(),
                    sent: num(&a, "sent") as usize,
                    digest: text(&a, "digest")
                        .filter(|d| !d.is_empty())
                        .map(str::to_owned),
                    attempts: num(&a, "attempts") as u32,
                    partial: text(&a, "partial")
                        .and_then(|p| serde_json::from_str(p).ok())
                        .unwrap_or_default(),
                }))
            }
            Err(e) if crate::condition_failed(&e) => Ok(None),
            Err(e) => Err(self.err(
                lane,
                format!("UpdateItem (claim): {}", super::sdk_error(&e)),
            )),
        }
    }

    fn save_claim(&self, lane: &Lane, claim: &Claim) -> Result<(), prism_core::Error> {
        self.handle
            .block_on(self.write_claim(lane, claim, false))
            .map_err(|e| self.err(lane, e))
    }

    fn unlock(&self, lane: &Lane, claim: &Claim) -> Result<(), prism_core::Error> {
        self.handle
            .block_on(self.write_claim(lane, claim, true))
            .map_err(|e| self.err(lane, e))
    }

    fn tick_cursor(&self) -> Result<Option<String>, prism_core::Error> {
        let out = self
            .handle
            .block_on(
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(key(TICK, CURSOR)))
                    .consistent_read(true)
                    .send(),
            )
            .map_err(|e| {
                self.err(
                    &tick_lane(),
                    format!("GetItem (tick cursor): {}", super::sdk_error(&e)),
                )
            })?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| text(i, "resume_after"))
            .map(str::to_owned))
    }

    fn save_tick_cursor(&self, lane: Option<&str>) -> Result<(), prism_core::Error> {
        let result = match lane {
            Some(l) => self
                .handle
                .block_on(
                    self.client
                        .update_item()
                        .table_name(&self.table)
                        .set_key(Some(key(TICK, CURSOR)))
                        .update_expression("SET resume_after = :l")
                        .expression_attribute_values(":l", s(l))
                        .send(),
                )
                .map(|_| ())
                .map_err(|e| format!("UpdateItem (tick cursor): {}", super::sdk_error(&e))),
            None => self
                .handle
                .block_on(
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key(TICK, CURSOR)))
                        .send(),
                )
                .map(|_| ())
                .map_err(|e| format!("DeleteItem (tick cursor): {}", super::sdk_error(&e))),
        };
        result.map_err(|m| self.err(&tick_lane(), m))
    }

    fn release(&self, lane: &Lane) -> Result<(), prism_core::Error> {
        self.handle
            .block_on(
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key(&lane.to_string(), CLAIM)))
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| {
                self.err(
                    lane,
                    format!("DeleteItem (claim): {}", super::sdk_error(&e)),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sort_below_the_claim_as_numbers() {
        assert!(padded("99") < padded("100"));
        assert!(padded(&"9".repeat(48)).as_str() < CLAIM);
        assert!(padded(&"9".repeat(48)).as_str() < "~");
    }
}
