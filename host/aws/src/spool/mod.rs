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

mod layout;
mod store;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::batch::{Item, batch_get, batch_write, delete, put};
use crate::claims::{ClaimRef, ClaimStore};
use prism_core::spool::{
    Appended, Claim, DONE_MS, LEASE_MS, Lane, LaneInfo, Spool, Spooled, now_ms,
};

use layout::*;
pub use layout::{
    ACTIONS, CLAIM, CURSOR, DONE_PREFIX, EXPIRES_AT, INDEX, KEY_ENTRY, KEY_LANE, TICK,
};

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
                    .map_err(|e| format!("UpdateItem (index): {}", crate::sdk_error(&e)))?;
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
                format!("UpdateItem (claim): {}", crate::sdk_error(&e)),
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
                    format!("GetItem (tick cursor): {}", crate::sdk_error(&e)),
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
                .map_err(|e| format!("UpdateItem (tick cursor): {}", crate::sdk_error(&e))),
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
                .map_err(|e| format!("DeleteItem (tick cursor): {}", crate::sdk_error(&e))),
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
                    format!("DeleteItem (claim): {}", crate::sdk_error(&e)),
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
