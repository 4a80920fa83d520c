//! Durable, ordered lists of changes waiting for a receiver: the *spool*.
//!
//! Two kinds of lane live in it, both named by [`Lane`]:
//! - a **batch buffer** per batched receiver: the changes it accepted and
//!   has not had formatted yet, flushed through `format-batch` when a limit
//!   (count, bytes, age) is reached;
//! - a **retry lane** per (receiver, product key): a change that receiver
//!   could not take now (its queue is down, its plugin keeps asking to
//!   retry), and every later change of the same product behind it, retried
//!   in order by the scheduled tick while other products and receivers carry on.
//!
//! A lane also has a *claim*: who is working on it (a lease), and for a
//! buffer, the window being flushed and how many of its messages are out.
//! The claim is what makes a flush that was killed midway resumable without
//! losing or repeating anything.
//!
//! Stores: [`LocalSpool`] (in memory, or a JSON file under `prism run
//! --state DIR`) and `prism_aws::spool::DynamoSpool` on AWS. The trait is
//! blocking: it is called from the dispatcher's worker threads.

mod local;

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use prism_types::change::Change;

pub use local::LocalSpool;

/// One change waiting in a lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spooled {
    /// The change's stream sequence number (orders the lane).
    pub sequence: String,
    /// When it was put in the lane, ms since the Unix epoch (a buffer's age
    /// is measured from its oldest entry's).
    pub spooled_ms: u64,
    /// Image bytes (a buffer's byte limit counts these).
    pub bytes: u64,
    /// The change, as [`Change::to_json`] writes it.
    pub change: Value,
    /// Indices of the change's messages that already got out (a delivery
    /// that failed midway): the retry sends only the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<usize>,
    /// The change is replayed on purpose (`prism dlq redrive`): it is
    /// added even if the lane handled its sequence before. A lane that
    /// parked a change remembers its sequence as handled, and a redrive
    /// keeps the sequence, so without this the redriven change was filtered
    /// out, counted as handled and its dead letter deleted. Not stored.
    #[serde(skip)]
    pub replay: bool,
}

impl Spooled {
    /// Spool `change` at `now_ms`.
    pub fn new(change: &Change, now_ms: u64) -> Self {
        Self {
            sequence: change.sequence.clone(),
            spooled_ms: now_ms,
            bytes: change.image_bytes() as u64,
            change: change.to_json(),
            sent: Vec::new(),
            replay: false,
        }
    }

    /// An entry whose change cannot be had any more (`why`), in its place
    /// so that the lane parks it, with the reason, instead of failing every
    /// read of the lane.
    pub fn unreadable(sequence: String, spooled_ms: u64, why: String) -> Self {
        Self {
            sequence,
            spooled_ms,
            bytes: 0,
            change: serde_json::json!({ UNREADABLE_FIELD: why }),
            sent: Vec::new(),
            replay: false,
        }
    }

    /// The change back.
    pub fn to_change(&self) -> Result<Change, String> {
        if let Some(why) = self.change.get(UNREADABLE_FIELD).and_then(Value::as_str) {
            return Err(why.to_owned());
        }
        Change::from_json(&self.change)
    }
}

/// The field of an [`Spooled::unreadable`] entry's change that says why.
pub const UNREADABLE_FIELD: &str = "prism:unreadable";

/// Totals of a lane, for deciding whether a buffer is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneInfo {
    /// Entries.
    pub count: u64,
    /// Image bytes of all entries.
    pub bytes: u64,
    /// When the oldest entry was spooled (ms since the Unix epoch).
    pub oldest_ms: u64,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    /// Entries added (not already in the lane, nor handled by it before).
    pub added: u64,
    /// The lane's totals afterwards.
    pub info: LaneInfo,
}

/// How long a lane remembers the sequences it handled: past the stream's
/// 24-hour retention, so no retry of a stream batch can bring one back.
pub const DONE_MS: u64 = 48 * 3600 * 1000;

/// Work in progress on a lane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The window being flushed (sequences, in order); empty when no flush
    /// is under way.
    pub members: Vec<String>,
    /// Messages of that window already delivered.
    pub sent: usize,
    /// Hash of the window's formatted output, to notice a plugin that
    /// formats the same window differently on the second try.
    pub digest: Option<String>,
    /// Failed retries of the lane's head so far (retry lanes).
    pub attempts: u32,
    /// Retry lanes: messages of entries (by sequence) that a retry got out
    /// before the destination failed again; they are not sent again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub partial: std::collections::BTreeMap<String, Vec<usize>>,
}

/// Which lane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// A batched receiver's buffer.
    Buffer {
        /// The receiver.
        receiver: String,
    },
    /// A receiver's retry lane for one product.
    Retry {
        /// The receiver.
        receiver: String,
        /// The product key.
        key: String,
    },
}

/// Name prefix of buffer lanes.
pub const BUFFER_PREFIX: &str = "buffer/";
/// Name prefix of retry lanes.
pub const RETRY_PREFIX: &str = "retry/";

impl Lane {
    /// The receiver the lane belongs to.
    pub fn receiver(&self) -> &str {
        match self {
            Lane::Buffer { receiver } | Lane::Retry { receiver, .. } => receiver,
        }
    }

    /// Parse a lane name (`buffer/<receiver>` or `retry/<receiver>/<key>`;
    /// receiver ids never contain `/`, keys may).
    pub fn parse(name: &str) -> Option<Lane> {
        if let Some(receiver) = name.strip_prefix(BUFFER_PREFIX) {
            return (!receiver.is_empty() && !receiver.contains('/')).then(|| Lane::Buffer {
                receiver: receiver.to_owned(),
            });
        }
        let (receiver, key) = name.strip_prefix(RETRY_PREFIX)?.split_once('/')?;
        (!receiver.is_empty()).then(|| Lane::Retry {
            receiver: receiver.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lane::Buffer { receiver } => write!(f, "{BUFFER_PREFIX}{receiver}"),
            Lane::Retry { receiver, key } => write!(f, "{RETRY_PREFIX}{receiver}/{key}"),
        }
    }
}

/// How long a claim's lease lasts: longer than any one flush or retry (the
/// Lambda's longest timeout). A flush that died keeps its lanes this long,
/// unless the next one breaks the lease (`prism flush --break-leases`).
pub const LEASE_MS: u64 = 15 * 60 * 1000;

/// A spool store. Every method is blocking.
pub trait Spool: Send + Sync {
    /// Add entries to a lane. Appending an entry the lane already has (same
    /// sequence) is harmless (what it recorded stays), unless it is a
    /// [`Spooled::replay`]: a replay replaces it, as a redrive's correction
    /// carries the product's newer version under the parked change's
    /// sequence. One the lane removed (handled) within
    /// [`DONE_MS`] is not added again, unless it is a [`Spooled::replay`]:
    /// a stream batch retried after a crash cannot put a flushed or
    /// delivered change back, but a redrive can. Nor, in a retry lane (one
    /// product's), is an entry older than the newest one the lane handled:
    /// the receiver has a newer version, and a retried batch whose ledger
    /// was lost would otherwise put the older one after it (found by the
    /// simulation). That rule is the stream's alone: a backfill's entries
    /// ([`prism_types::change::is_backfill`]) number below every stream's on
    /// purpose, and a backfill's correction waiting behind a failed send
    /// must not be refused as older (the simulation found that too).
    /// Returns how many were added and the lane's totals afterwards.
    fn append(&self, lane: &Lane, entries: &[Spooled]) -> Result<Appended, crate::Error>;
    /// Every entry of a lane, in sequence order.
    fn read(&self, lane: &Lane) -> Result<Vec<Spooled>, crate::Error>;
    /// Which of `sequences` the lane removed as handled within [`DONE_MS`]
    /// (delivered or parked): a stream batch retried whole must not send
    /// them again in windows it cuts itself, past the buffer.
    fn handled(&self, lane: &Lane, sequences: &[String]) -> Result<HashSet<String>, crate::Error>;
    /// Remember `sequences` as handled for [`DONE_MS`], as [`Self::remove`]
    /// does, though the lane never held them: a window cut in a stream
    /// batch went out (or was parked) past the buffer.
    fn mark_handled(&self, lane: &Lane, sequences: &[String]) -> Result<(), crate::Error>;
    /// Remove entries (by sequence) as handled, remembering them for
    /// [`DONE_MS`]; a lane left empty disappears from [`Self::lanes`].
    fn remove(&self, lane: &Lane, sequences: &[String]) -> Result<(), crate::Error>;
    /// Every non-empty lane with its totals.
    fn lanes(&self) -> Result<Vec<(Lane, LaneInfo)>, crate::Error>;
    /// Take the lane's lease until `now_ms + LEASE_MS`: `None` when someone
    /// else holds a live one (unless `steal`), else the claim left by the
    /// last holder (a flush that was interrupted) or an empty one.
    fn claim(&self, lane: &Lane, now_ms: u64, steal: bool) -> Result<Option<Claim>, crate::Error>;
    /// Record progress under the lease.
    fn save_claim(&self, lane: &Lane, claim: &Claim) -> Result<(), crate::Error>;
    /// Give the lease up, keeping `claim` (progress, attempts) for the next holder.
    fn unlock(&self, lane: &Lane, claim: &Claim) -> Result<(), crate::Error>;
    /// Drop the claim: the lane's work is done.
    fn release(&self, lane: &Lane) -> Result<(), crate::Error>;
    /// The last lane a tick cut short by its deadline reached, kept in the
    /// store so the next tick resumes after it on whichever instance runs
    /// it. Stores that one process owns keep it in memory (the default).
    fn tick_cursor(&self) -> Result<Option<String>, crate::Error> {
        Ok(None)
    }
    /// Record where the last tick stopped (`None`: it did a full pass).
    fn save_tick_cursor(&self, lane: Option<&str>) -> Result<(), crate::Error> {
        let _ = lane;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A test hook: `PRISM_CRASH_AT=<point>` (or `<point>:<n>`, the n-th time)
/// aborts the process at a named point, as a kill would. Used by the tests
/// that kill a flush midway; unset, it costs one environment read.
pub fn crash_point(point: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HITS: AtomicU32 = AtomicU32::new(0);
    static TARGET: std::sync::OnceLock<Option<(String, u32)>> = std::sync::OnceLock::new();
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("PRISM_CRASH_AT").ok()?;
        Some(match v.split_once(':') {
            Some((p, n)) => (p.to_owned(), n.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    if let Some((p, n)) = target
        && p == point
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("prism: PRISM_CRASH_AT={p}:{n} reached; aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_names_round_trip() {
        for lane in [
            Lane::Buffer {
                receiver: "pricelist".into(),
            },
            Lane::Retry {
                receiver: "website".into(),
                key: "P-1/a".into(),
            },
        ] {
            assert_eq!(Lane::parse(&lane.to_string()), Some(lane));
        }
        assert_eq!(Lane::parse("buffer/"), None);
        assert_eq!(Lane::parse("retry/website"), None);
        assert_eq!(Lane::parse("other/x"), None);
    }
}
