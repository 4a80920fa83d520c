//! The DynamoDB calls behind [`DynamoSpool`]: entries in and out (claimed
//! when too large), lane totals, the index, claims and leases.

use super::layout::*;
use super::*;

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
    pub(super) async fn stored(&self, change: &Value) -> Result<String, String> {
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
    pub(super) async fn loaded(&self, text: &str) -> Result<Value, Loaded> {
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

    pub(super) fn err(&self, lane: &Lane, message: String) -> prism_core::Error {
        prism_core::Error::spool(format!("table {}", self.table), lane.to_string(), message)
    }

    pub(super) async fn query(
        &self,
        partition: &str,
        below: Option<&str>,
    ) -> Result<Vec<Item>, String> {
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
        crate::all_items(q.into_paginator().items().send())
            .await
            .map_err(|e| format!("Query: {e}"))
    }

    /// The newest live done mark of a lane (its padded sequence): one
    /// query, newest first, skipping marks past their expiry.
    pub(super) async fn newest_done(
        &self,
        done_lane: &str,
        now_s: u64,
    ) -> Result<Option<String>, String> {
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
            .map_err(|e| format!("Query (done marks): {}", crate::sdk_error(&e)))?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter(|m| num(m, EXPIRES_AT) > now_s)
            .find_map(|m| text(m, KEY_ENTRY).map(str::to_owned)))
    }

    /// The lane's index item (its totals and version), read consistently.
    pub(super) async fn index_item(&self, name: &str) -> Result<Option<Item>, String> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(INDEX, name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("GetItem (index): {}", crate::sdk_error(&e)))?;
        Ok(out.item)
    }

    pub(super) async fn entries(&self, lane: &Lane) -> Result<Vec<Spooled>, String> {
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
    pub(super) fn entry_item(&self, name: &str, e: &Spooled, text: String) -> Item {
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
    pub(super) fn set_totals(
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
    pub(super) async fn recount(&self, lane: &Lane) -> Result<Appended, String> {
        let name = lane.to_string();
        let left = self.entries(lane).await?;
        tracing::warn!(lane = %name, entries = left.len(), "spool index undercounted a lane (an append that died before counting it); counted again");
        let out = self
            .set_totals(&name, &left, " ADD version :one")
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| format!("UpdateItem (index): {}", crate::sdk_error(&e)))?;
        Ok(Appended {
            added: 0,
            info: lane_info(&out.attributes.unwrap_or_default()),
        })
    }

    pub(super) async fn write_claim(
        &self,
        lane: &Lane,
        claim: &Claim,
        unlock: bool,
    ) -> Result<(), String> {
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
            .map_err(|e| format!("UpdateItem (claim): {}", crate::sdk_error(&e)))
    }
}

/// Why a stored change could not be had.
pub(super) enum Loaded {
    /// Its claim check is gone for good.
    Gone(String),
    /// Anything else (try again later).
    Failed(String),
}
