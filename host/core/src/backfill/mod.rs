//! Backfill: the catalogue that already exists, through one receiver.
//!
//! A newly registered receiver only gets the changes made after it went
//! live. A backfill reads the model table with a parallel `Scan` (one
//! [`Backfiller::run_segment`] per segment) and runs every item through
//! that receiver alone as an insert, on the dispatcher's own path: its
//! interest, dedup, batch windows, retry lanes, limits and DLQ all apply.
//!
//! **Beside the live stream.** The stream keeps delivering to the receiver
//! while a backfill runs; the two must never leave a product at an older
//! version. DynamoDB streams are ordered per item, not across items, so
//! DBLog's single watermark in the log cannot order a scan against the
//! stream here. Instead every page is checked per product, after it went
//! out: a strongly consistent read of the page's keys (the high
//! watermark). A product the read finds as sent cannot be overtaken: any
//! newer version is written after that read, and the stream delivers it
//! after it is written, so after the backfill's send. A product the read
//! finds changed (or gone) may have had its newer version delivered by the
//! stream *before* the backfill's send, so it is sent again at what the
//! read found, as a modify (or remove) from what was sent, and checked
//! again. Every product thus ends with its newest version delivered last.
//! The last correction is checked too. A product still changing after
//! [`CORRECTION_ROUNDS`] corrections may have been overtaken by the last
//! of them: the segment stops with [`crate::ErrorKind::Contended`] naming it,
//! its checkpoint before the page (marked open, so a rerun numbers the
//! page afresh and no done mark or ledger entry takes it for this one).
//!
//! **Resumable.** A checkpoint per segment ([`checkpoint`]) is written
//! after each page: a stopped run resumes after its last finished page.
//! A page is marked open, with its products' keys, before it goes out: a
//! run that stopped between a page's send and its check (a crash, a
//! product that kept changing) first reads those products by key and
//! sends each as it is now (a remove for one that is gone), checked as a
//! page is. A rescan alone would miss a product removed since, and the
//! receiver would keep the stale version that page sent.
//!
//! **Paced.** A [`pacer::Pacer`] shared by all segments holds the run to
//! `--max-per-second`.

pub mod checkpoint;
pub mod pacer;
pub mod records;
mod run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::stream::{Presence, StreamProcessor};
use checkpoint::{Checkpoint, Checkpoints};
use pacer::Pacer;

/// Checks of a page against the table, each sending what changed again.
pub const CORRECTION_ROUNDS: u64 = 4;
/// Deliveries of one page (or correction) before the run stops with an
/// error; the retry ledger makes each retry skip what already went out.
pub const ATTEMPTS: u32 = 6;
/// The wait before the second check of a page; doubled for each later one.
pub const SETTLE: Duration = Duration::from_millis(250);
/// Items per `Scan` page unless told otherwise (one `BatchGetItem` checks them).
pub const DEFAULT_PAGE: usize = 100;

/// One page of a segment of the model table.
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// The items, in DynamoDB JSON.
    pub items: Vec<Value>,
    /// Where the next page starts (DynamoDB JSON); `None` at the segment's end.
    pub after: Option<Value>,
}

/// What [`ModelScan::scan`] is asked for: one page of one scan segment.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    /// The segment, `0..segments`.
    pub segment: u32,
    /// How many segments the scan is cut into.
    pub segments: u32,
    /// The most items in the page.
    pub limit: usize,
    /// The last key of the page before, as JSON (`None`: the segment's start).
    pub after: Option<&'a Value>,
}

/// The model table as a backfill reads it: a parallel scan (eventually
/// consistent, as DynamoDB's `Scan` is) and a strongly consistent read of
/// a page's keys (the check after each send). `prism_aws` reads DynamoDB;
/// the simulation reads a model that may answer a scan with older images.
#[async_trait::async_trait]
pub trait ModelScan: Send + Sync {
    /// The table's name, for messages.
    fn table(&self) -> &str;
    /// The key attribute names (partition first) and the item count as
    /// the table last computed it (for a progress bar: it lags).
    async fn describe(&self) -> Result<(Vec<String>, u64), crate::Error>;
    /// Up to `page.limit` items of segment `page.segment` of
    /// `page.segments`, after `page.after`.
    async fn scan(&self, page: PageRequest<'_>) -> Result<ScanPage, crate::Error>;
    /// The items at `keys` now (a strongly consistent read); a key with no
    /// item is left out.
    async fn read(&self, keys: &[Map<String, Value>]) -> Result<Vec<Value>, crate::Error>;
}

/// Time as a backfill sees it: the wall clock and real waits, or a
/// simulation's clock.
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    /// Now, in ms since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Wait `d`.
    async fn sleep(&self, d: Duration);
}

/// The wall clock and tokio's timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

#[async_trait::async_trait]
impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        crate::spool::now_ms()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// One backfill: which receiver, which table, how it is cut.
#[derive(Debug, Clone)]
pub struct Backfill {
    /// The receiver.
    pub receiver: String,
    /// The model table.
    pub model_table: String,
    /// Scan segments (1 to 1,000,000, DynamoDB's range).
    pub segments: u32,
    /// Items per page (1 to [`records::MAX_PAGE`]).
    pub page_size: usize,
}

impl Backfill {
    /// Check the numbers.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if !(1..=1_000_000).contains(&self.segments) {
            return Err(crate::Error::invalid(format!(
                "--segments {} is out of range: a Scan takes 1 to 1000000 segments",
                self.segments
            )));
        }
        if !(1..=records::MAX_PAGE).contains(&self.page_size) {
            return Err(crate::Error::invalid(format!(
                "--page-size {} is out of range: 1 to {}",
                self.page_size,
                records::MAX_PAGE
            )));
        }
        Ok(())
    }
}

/// Counters shared by every segment of a run: the progress bar reads them
/// while it runs, the summary after.
#[derive(Debug, Default)]
pub struct Totals {
    /// Items read and sent through the receiver.
    pub items: AtomicU64,
    /// Messages the receiver's plugin made that went out.
    pub messages: AtomicU64,
    /// Outputs dedup suppressed (the receiver already had them).
    pub suppressed: AtomicU64,
    /// Items the receiver's interest or `accepts` passed over.
    pub filtered: AtomicU64,
    /// Items parked in the receiver's DLQ (rejected or failed).
    pub parked: AtomicU64,
    /// Items held in a batch window or a retry lane (sent by the tick).
    pub held: AtomicU64,
    /// Products sent again because the stream changed them meanwhile.
    pub corrected: AtomicU64,
    /// Products of an unfinished page (a crash, a contended product)
    /// checked and sent again as they are now.
    pub recovered: AtomicU64,
    /// Products still changing after every check: their page stopped the
    /// segment ([`crate::ErrorKind::Contended`]).
    pub contended: AtomicU64,
    /// Deliveries tried again.
    pub retries: AtomicU64,
}

impl Totals {
    fn add(&self, st: &crate::dispatch::ReceiverStats) {
        let add = |c: &AtomicU64, n: u64| c.fetch_add(n, Ordering::Relaxed);
        add(&self.messages, st.messages);
        add(&self.suppressed, st.suppressed);
        add(&self.filtered, st.filtered + st.skipped);
        add(&self.parked, st.errors());
        add(&self.held, st.buffered + st.laned);
    }

    /// A one-line summary.
    pub fn summary(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "items": get(&self.items),
            "messages": get(&self.messages),
            "suppressed": get(&self.suppressed),
            "filtered": get(&self.filtered),
            "parked": get(&self.parked),
            "held": get(&self.held),
            "corrected": get(&self.corrected),
            "recovered": get(&self.recovered),
            "contended": get(&self.contended),
            "retries": get(&self.retries),
        })
    }
}

/// When one call of [`Backfiller::run_segment`] stops, done or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Start no page after this (a Lambda stops well before its deadline).
    pub stop_at: Option<SystemTime>,
    /// At most this many pages.
    pub max_pages: Option<u64>,
}

/// Where a run stands before it starts ([`plan`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Start or resume the run that began at `run` (epoch seconds);
    /// `resumed` segments already have a checkpoint.
    Go {
        /// The run's start.
        run: u64,
        /// Segments with a checkpoint already.
        resumed: usize,
    },
    /// Every segment is done already.
    Complete(Vec<Checkpoint>),
}

/// Runs a [`Backfill`] on a warm [`StreamProcessor`].
pub struct Backfiller<'a> {
    /// The model table.
    pub model: &'a dyn ModelScan,
    /// Now, and waits.
    pub clock: &'a dyn Clock,
    /// The dispatcher's processor (its receivers, sink, state, ledger).
    pub processor: &'a StreamProcessor,
    /// Where checkpoints go.
    pub checkpoints: &'a dyn Checkpoints,
    /// What to run.
    pub spec: &'a Backfill,
    /// The rate, if any.
    pub pacer: Option<&'a Pacer>,
    /// The counters.
    pub totals: &'a Totals,
    /// The model table's key attribute names ([`ModelScan::describe`]).
    pub key_names: Vec<String>,
    /// Set to stop every segment after the page it is on (an error in one
    /// segment, Ctrl-C): what was sent is then always checkpointed.
    pub stop: std::sync::atomic::AtomicBool,
}

/// Decide the run: a fresh one (after clearing old checkpoints when
/// `restart`), the unfinished one the checkpoints hold, or none because
/// every segment is done.
pub async fn plan(
    checkpoints: &dyn Checkpoints,
    spec: &Backfill,
    restart: bool,
    clock: &dyn Clock,
) -> Result<Plan, crate::Error> {
    spec.validate()?;
    if restart {
        checkpoints.clear().await?;
    }
    let all = checkpoints.all().await?;
    let Some(first) = all.first() else {
        return Ok(Plan::Go {
            run: clock.now_ms() / 1000,
            resumed: 0,
        });
    };
    if let Some(other) = all.iter().find(|c| c.segments != spec.segments) {
        return Err(crate::Error::invalid(format!(
            "the {} hold an unfinished run in {} segments: pass --segments {} to resume it, or --restart to start over",
            checkpoints.place(),
            other.segments,
            other.segments
        )));
    }
    if all.len() == spec.segments as usize && all.iter().all(|c| c.done) {
        return Ok(Plan::Complete(all));
    }
    Ok(Plan::Go {
        run: first.run,
        resumed: all.len(),
    })
}

/// `products` for a message: the first few keys, and how many more.
fn named(products: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = products
        .iter()
        .take(SHOWN)
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if products.len() > SHOWN {
        s += &format!(" and {} more", products.len() - SHOWN);
    }
    format!("product{} {s}", if products.len() == 1 { "" } else { "s" })
}
