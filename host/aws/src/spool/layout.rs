//! How the spool is laid out in its table: key names, the special
//! partitions (index, tick cursor, done marks), and the attribute helpers.

use aws_sdk_dynamodb::types::AttributeValue;

use std::collections::HashMap;

use crate::batch::Item;
use prism_core::spool::{Lane, LaneInfo};

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
pub(super) fn tick_lane() -> Lane {
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

pub(super) fn padded(sequence: &str) -> String {
    format!("{sequence:0>48}")
}

pub(super) fn unpadded(entry: &str) -> String {
    match entry.trim_start_matches('0') {
        "" => "0".to_owned(),
        q => q.to_owned(),
    }
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(lane: &str, entry: &str) -> Item {
    HashMap::from([
        (KEY_LANE.to_owned(), s(lane)),
        (KEY_ENTRY.to_owned(), s(entry)),
    ])
}

pub(super) fn num(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |v| v.max(0) as u64)
}

pub(super) fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A lane's totals from its index item.
pub(super) fn lane_info(item: &Item) -> LaneInfo {
    LaneInfo {
        count: num(item, "count"),
        bytes: num(item, "bytes"),
        oldest_ms: num(item, "oldest_ms"),
    }
}
