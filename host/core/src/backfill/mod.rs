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

impl Backfiller<'_> {
    fn receiver(&self) -> &str {
        &self.spec.receiver
    }

    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.clock.now_ms())
    }

    /// Refuse a receiver that is not registered, disabled, or cannot run
    /// (its backfill would only park every product in its DLQ).
    pub async fn check_receiver(&self) -> Result<(), crate::Error> {
        let refuse = |message: String| {
            crate::Error::new(
                crate::ErrorKind::BackfillReceiver,
                self.receiver().to_owned(),
                message,
            )
        };
        match self
            .processor
            .presence(self.receiver())
            .await
            .map_err(|e| refuse(e.to_string()))?
        {
            Presence::Active => Ok(()),
            Presence::Disabled => Err(refuse(
                "is disabled: enable it (prism plugin enable) before a backfill".into(),
            )),
            Presence::Unavailable(why) => Err(refuse(format!(
                "cannot run ({why}); a backfill would only park every product in its DLQ"
            ))),
            Presence::Unknown => Err(refuse("is not in the registry".into())),
        }
    }

    /// Run segment `segment` from its checkpoint (or from the start, in
    /// `run`) until it is done or `limits` say stop. Returns its checkpoint.
    pub async fn run_segment(
        &self,
        segment: u32,
        run: u64,
        limits: Limits,
    ) -> Result<Checkpoint, crate::Error> {
        let segments = self.spec.segments;
        if segment >= segments {
            return Err(crate::Error::invalid(format!(
                "segment {segment} is out of range for {segments} segments"
            )));
        }
        let mut cp = self
            .checkpoints
            .load(segment, segments)
            .await?
            .unwrap_or_else(|| Checkpoint::start(segment, segments, run));
        let mut pages = 0;
        while !cp.done {
            if self.stop.load(Ordering::Relaxed)
                || limits.max_pages.is_some_and(|m| pages >= m)
                || limits.stop_at.is_some_and(|t| self.now() >= t)
            {
                break;
            }
            if cp.open && !cp.open_keys.is_empty() {
                self.recover(&mut cp).await?;
            }
            let page = self
                .model
                .scan(PageRequest {
                    segment,
                    segments,
                    limit: self.spec.page_size,
                    after: cp.after.as_ref(),
                })
                .await?;
            let items = page.items;
            if !items.is_empty() {
                if let Some(p) = self.pacer {
                    p.take(items.len()).await;
                }
                // Marked open before it goes out, with its keys: an attempt
                // that does not finish is numbered afresh next time, and
                // its products are checked first.
                if cp.open {
                    cp.abandoned += 1;
                }
                cp.open = true;
                cp.open_keys = items
                    .iter()
                    .map(|i| self.keys_of(&cp, i))
                    .collect::<Result<_, _>>()?;
                cp.updated_ms = self.clock.now_ms();
                self.checkpoints.save(&cp).await?;
                cp.corrected += self.send_page(&cp, &items, &[]).await?;
                self.totals
                    .items
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
            }
            cp.items += items.len() as u64;
            cp.pages += 1;
            cp.open = false;
            cp.open_keys.clear();
            cp.after = page.after;
            cp.done = cp.after.is_none();
            cp.updated_ms = self.clock.now_ms();
            self.checkpoints.save(&cp).await?;
            pages += 1;
        }
        Ok(cp)
    }

    fn bad_item(&self, cp: &Checkpoint, e: String) -> crate::Error {
        crate::Error::model(
            self.model.table().to_owned(),
            format!("segment {} page {}: {e}", cp.segment, cp.pages),
        )
    }

    /// The key attributes of `item`.
    fn keys_of(&self, cp: &Checkpoint, item: &Value) -> Result<Map<String, Value>, crate::Error> {
        let item = item
            .as_object()
            .ok_or_else(|| self.bad_item(cp, "an item that is not an object".into()))?;
        records::keys_of(item, &self.key_names).map_err(|e| self.bad_item(cp, e))
    }

    /// The page before did not finish (the process died, or a product kept
    /// changing) after it may have sent: what went out may be older than
    /// the table, with no check after it, and a scan may not find those
    /// products again (removed since). They are read by key and sent as
    /// they are now (a remove for one that is gone), then checked as a page
    /// is. Numbered apart from every attempt, so no done mark or ledger
    /// entry takes it for one of them.
    async fn recover(&self, cp: &mut Checkpoint) -> Result<(), crate::Error> {
        cp.abandoned += 1;
        cp.updated_ms = self.clock.now_ms();
        self.checkpoints.save(cp).await?;
        let found = self.model.read(&cp.open_keys).await?;
        let found: HashMap<String, Value> = found
            .into_iter()
            .map(|v| {
                let keys = self.keys_of(cp, &v)?;
                let key = prism_types::input::record::key_string(&keys)
                    .map_err(|e| self.bad_item(cp, e))?;
                Ok((key, v))
            })
            .collect::<Result<_, crate::Error>>()?;
        let mut present = Vec::new();
        let mut gone = Vec::new();
        for keys in &cp.open_keys {
            let key =
                prism_types::input::record::key_string(keys).map_err(|e| self.bad_item(cp, e))?;
            match found.get(&key) {
                Some(v) => present.push(v.clone()),
                None => gone.push(keys.clone()),
            }
        }
        tracing::info!(
            receiver = self.receiver(),
            segment = cp.segment,
            page = cp.pages,
            products = cp.open_keys.len(),
            gone = gone.len(),
            "an unfinished page's products are checked and sent as they are now"
        );
        cp.corrected += self.send_page(cp, &present, &gone).await?;
        self.totals
            .recovered
            .fetch_add(cp.open_keys.len() as u64, Ordering::Relaxed);
        // Its numbers are never used again either.
        cp.abandoned += 1;
        cp.open = false;
        cp.open_keys.clear();
        cp.updated_ms = self.clock.now_ms();
        self.checkpoints.save(cp).await
    }

    /// Send one page (`items` as inserts, the products at `gone` as
    /// removes), then check it against the table until every product is
    /// as sent; returns how many were sent again.
    async fn send_page(
        &self,
        cp: &Checkpoint,
        items: &[Value],
        gone: &[Map<String, Value>],
    ) -> Result<u64, crate::Error> {
        struct Product {
            key: String,
            keys: Map<String, Value>,
            sent: Option<Value>,
        }
        let bad_item = |e: String| self.bad_item(cp, e);
        let mut products = Vec::with_capacity(items.len() + gone.len());
        for item in items {
            let keys = self.keys_of(cp, item)?;
            let key = prism_types::input::record::key_string(&keys).map_err(bad_item)?;
            products.push(Product {
                key,
                keys,
                sent: Some(item.clone()),
            });
        }
        for keys in gone {
            let key = prism_types::input::record::key_string(keys).map_err(bad_item)?;
            products.push(Product {
                key,
                keys: keys.clone(),
                sent: None,
            });
        }
        let now_secs = self.clock.now_ms() as f64 / 1000.0;
        let slot =
            records::slot(cp.pages + cp.abandoned, cp.segment, cp.segments).map_err(bad_item)?;
        let id = |round: u64, i: usize| {
            format!("backfill:{}:{}:{slot}:{round}:{i}", self.receiver(), cp.run,)
        };
        // A product that is gone is sent as a remove, its old image only
        // its key (what the receiver had of it is not known).
        let key_images: Vec<Value> = products
            .iter()
            .map(|p| Value::Object(p.keys.clone()))
            .collect();
        let firsts: Vec<Value> = products
            .iter()
            .enumerate()
            .map(|(i, p)| {
                records::Record {
                    event_id: id(0, i),
                    sequence: records::sequence(cp.run, slot, 0, i),
                    old: p.sent.is_none().then_some(&key_images[i]),
                    new: p.sent.as_ref(),
                    keys: p.keys.clone(),
                    now_secs,
                }
                .to_json()
            })
            .collect();
        self.deliver(cp.segment, &firsts).await?;

        let mut pending: Vec<usize> = (0..products.len()).collect();
        let mut corrected = 0;
        // Every send is checked, the last correction's too.
        for round in 1..=CORRECTION_ROUNDS + 1 {
            if round > 1 {
                // A product changing in a burst gets time to settle.
                self.clock.sleep(SETTLE * (1 << (round - 2))).await;
            }
            let keys: Vec<Map<String, Value>> =
                pending.iter().map(|&i| products[i].keys.clone()).collect();
            let now: HashMap<String, Value> = self
                .model
                .read(&keys)
                .await?
                .into_iter()
                .filter_map(|v| {
                    let keys = records::keys_of(v.as_object()?, &self.key_names).ok()?;
                    let key = prism_types::input::record::key_string(&keys).ok()?;
                    Some((key, v))
                })
                .collect();
            let changed: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| now.get(&products[i].key) != products[i].sent.as_ref())
                .collect();
            if changed.is_empty() {
                return Ok(corrected);
            }
            pending = changed;
            if round > CORRECTION_ROUNDS {
                break;
            }
            let changed = &pending;
            let mut again = Vec::new();
            for (n, &i) in changed.iter().enumerate() {
                let p = &products[i];
                let current = now.get(&p.key);
                let r = records::Record {
                    event_id: id(round, n),
                    sequence: records::sequence(cp.run, slot, round, n),
                    old: p.sent.as_ref(),
                    new: current,
                    keys: p.keys.clone(),
                    now_secs,
                };
                // Gone before the first send and still gone: nothing to say.
                if r.old.is_some() || r.new.is_some() {
                    again.push(r.to_json());
                }
            }
            tracing::info!(
                receiver = self.receiver(),
                segment = cp.segment,
                page = cp.pages,
                round,
                products = again.len(),
                "the stream changed products while they were sent; sending their newest version"
            );
            self.deliver(cp.segment, &again).await?;
            corrected += changed.len() as u64;
            self.totals
                .corrected
                .fetch_add(changed.len() as u64, Ordering::Relaxed);
            for &i in changed {
                let current = now.get(&products[i].key).cloned();
                products[i].sent = current;
            }
        }
        // The receiver may have got the stream's newer version before this
        // run's last send: it could end on an older one than the table's.
        // Not confirmed, the page stays open, and a rerun sends it again.
        let contended: Vec<String> = pending.iter().map(|&i| products[i].key.clone()).collect();
        self.totals
            .contended
            .fetch_add(contended.len() as u64, Ordering::Relaxed);
        Err(crate::Error::new(
            crate::ErrorKind::Contended,
            format!("segment {} page {}", cp.segment, cp.pages),
            format!(
                "{} still changing after {CORRECTION_ROUNDS} corrections, so the receiver may hold an older version than the model table; the checkpoint stays before this page: run the backfill again (it resumes here) when they are quiet",
                named(&contended)
            ),
        ))
    }

    /// Run `records` through the receiver until none fails, or fail.
    async fn deliver(&self, segment: u32, records: &[Value]) -> Result<(), crate::Error> {
        if records.is_empty() {
            return Ok(());
        }
        let event = json!({ "Records": records });
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let out = self
                .processor
                .handle_only(&event, self.receiver(), None)
                .await
                .map_err(|e| {
                    crate::Error::new(
                        crate::ErrorKind::Segment,
                        segment.to_string(),
                        e.to_string(),
                    )
                })?;
            if let Some(st) = out.report.receivers.get(self.receiver()) {
                self.totals.add(st);
                last = st.first_errors.join("; ");
            }
            if out.response.batch_item_failures.is_empty() {
                return Ok(());
            }
            self.totals.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                receiver = self.receiver(),
                segment,
                attempt,
                failed = out.response.batch_item_failures.len(),
                "backfill page not delivered; trying again"
            );
            self.clock
                .sleep(Duration::from_millis(100 << attempt))
                .await;
        }
        Err(crate::Error::new(
            crate::ErrorKind::Segment,
            segment.to_string(),
            format!(
                "{} records still not delivered after {ATTEMPTS} attempts{}; the checkpoint stays before this page, so a rerun resumes here",
                records.len(),
                if last.is_empty() {
                    String::new()
                } else {
                    format!(" (last errors: {last})")
                }
            ),
        ))
    }
}
