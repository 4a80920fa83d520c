//! `prism status`: per receiver, what an operator looks at first. State
//! (enabled, disabled, quarantined), version, its queue's depth and
//! oldest-message age, its DLQ's depth, the retry lanes and buffers
//! waiting in the spool, and the last error a dispatcher recorded. As a
//! table, or `--json` for scripts; `--watch` repeats it.
//!
//! Each number comes from where it lives: depths from SQS
//! (`GetQueueAttributes`), the oldest message's age from CloudWatch (SQS
//! publishes `ApproximateAgeOfOldestMessage` there and has no API for it),
//! lanes from the spool table's index, quarantine from the last error the
//! dispatcher wrote (the breaker itself lives in each Lambda instance). A
//! number that cannot be read is shown as `?` with the reason in
//! `problems`, and the command exits 2: a status that silently drops a
//! receiver's trouble is worse than none.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_sqs::types::QueueAttributeName;
use prism_aws::spool::DynamoSpool;
use prism_aws::{Head, sdk_error};
use prism_core::spool::{Lane, LaneInfo, Spool};
use prism_types::manifest::Mode;
use serde::Serialize;
use serde_json::json;

use crate::aws_args::{RemoteArgs, block_on};

mod table;
use table::table;

/// Show every receiver's state, queues, lanes and last error.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The spool table (retry lanes and batch buffers); without it, lanes
    /// are not shown.
    #[arg(long, env = "PRISM_SPOOL_TABLE", value_name = "TABLE")]
    pub spool_table: Option<String>,
    /// One JSON document (with `--watch`, one per line and refresh).
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "5")]
    pub watch: Option<u64>,
}

/// One receiver's status.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Row {
    pub receiver: String,
    /// `enabled`, `disabled` or `quarantined`.
    pub state: String,
    /// Until when a dispatcher reported it quarantined (RFC 3339).
    pub quarantined_until: Option<String>,
    pub version: u64,
    pub latest: u64,
    pub plugin: String,
    pub mode: String,
    pub queue: Option<QueueStatus>,
    pub dead_letter_queue: Option<QueueStatus>,
    /// Retry lanes (one per product) with changes waiting.
    pub lanes_waiting: Option<u64>,
    /// Changes waiting in retry lanes and the batch buffer.
    pub changes_waiting: Option<u64>,
    /// How long the oldest of them has waited, seconds.
    pub oldest_waiting_seconds: Option<u64>,
    /// The backfill its checkpoints in the spool table describe, if any.
    pub backfill: Option<Backfill>,
    pub updated_at: String,
    pub updated_by: String,
    pub last_error: Option<String>,
    /// What could not be read, and why.
    pub problems: Vec<String>,
}

/// Where a receiver's backfill stands, from its checkpoints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Backfill {
    /// Segments read to their end.
    pub segments_done: usize,
    /// Segments in the run.
    pub segments: u32,
    /// Items sent so far.
    pub items: u64,
    /// When a checkpoint was last written (RFC 3339).
    pub updated_at: String,
}

impl Backfill {
    fn of(cps: &[prism_core::backfill::checkpoint::Checkpoint]) -> Option<Self> {
        let segments = cps.iter().map(|c| c.segments).max()?;
        Some(Self {
            segments_done: cps.iter().filter(|c| c.done).count(),
            segments,
            items: cps.iter().map(|c| c.items).sum(),
            updated_at: prism_aws::registry::rfc3339(
                cps.iter().map(|c| c.updated_ms).max().unwrap_or(0) / 1000,
            ),
        })
    }

    fn cell(&self) -> String {
        if self.segments_done == self.segments as usize {
            format!("done ({} items)", self.items)
        } else {
            format!(
                "{}/{} segments, {} items",
                self.segments_done, self.segments, self.items
            )
        }
    }
}

/// A queue's numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueStatus {
    pub name: String,
    /// Messages waiting (visible).
    pub depth: Option<u64>,
    /// Messages a consumer holds (in flight).
    pub in_flight: Option<u64>,
    /// The oldest message's age, seconds (CloudWatch, last 15 minutes).
    pub oldest_age_seconds: Option<u64>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    block_on(async {
        let clients = Clients::connect(&a).await;
        loop {
            let (rows, unreadable) = collect(&clients).await?;
            let ok = unreadable.is_empty() && rows.iter().all(|r| r.problems.is_empty());
            if a.json {
                let doc = json!({"receivers": rows, "unreadable": unreadable});
                println!("{}", serde_json::to_string(&doc)?);
            } else {
                if a.watch.is_some() && std::io::stdout().is_terminal() {
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", table(&rows));
                for p in &unreadable {
                    println!("UNREADABLE {p}");
                }
                for r in &rows {
                    for p in &r.problems {
                        println!("? {}: {p}", r.receiver);
                    }
                }
            }
            let Some(secs) = a.watch else {
                return Ok::<_, anyhow::Error>(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                });
            };
            tokio::time::sleep(Duration::from_secs(secs.max(1))).await;
        }
    })?
}

struct Clients {
    remote: crate::aws_args::Remote,
    sqs: aws_sdk_sqs::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    spool: Option<DynamoSpool>,
    /// The spool table's name, for backfill checkpoints.
    spool_table: Option<String>,
}

impl Clients {
    async fn connect(a: &Args) -> Self {
        let remote = a.remote.connect().await;
        let spool = a.spool_table.as_ref().map(|t| {
            DynamoSpool::new(
                aws_sdk_dynamodb::Client::new(&remote.config),
                t,
                tokio::runtime::Handle::current(),
            )
        });
        Self {
            sqs: aws_sdk_sqs::Client::new(&remote.config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&remote.config),
            remote,
            spool,
            spool_table: a.spool_table.clone(),
        }
    }
}

/// Every receiver's row, and the registry entries that could not be read.
async fn collect(c: &Clients) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let heads = c.remote.registry.heads().await?;
    let lanes = match &c.spool {
        None => None,
        Some(spool) => {
            let spool = spool.clone();
            Some(
                tokio::task::spawn_blocking(move || spool.lanes())
                    .await?
                    .map_err(|e| e.to_string()),
            )
        }
    };
    let now = now_secs();
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for h in heads {
        match h {
            Ok(h) => {
                let mut row = base_row(&h, now);
                fill_queues(c, &h, &mut row).await;
                match &lanes {
                    None => {}
                    Some(Ok(lanes)) => fill_lanes(lanes, &mut row, now),
                    Some(Err(e)) => row.problems.push(format!("spool: {e}")),
                }
                if let Some(t) = &c.spool_table {
                    use prism_aws::backfill::SpoolCheckpoints;
                    use prism_core::backfill::checkpoint::Checkpoints;
                    let cps = SpoolCheckpoints::new(
                        aws_sdk_dynamodb::Client::new(&c.remote.config),
                        t,
                        &row.receiver,
                    );
                    match cps.all().await {
                        Ok(all) => row.backfill = Backfill::of(&all),
                        Err(e) => row.problems.push(e.to_string()),
                    }
                }
                rows.push(row);
            }
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    Ok((rows, unreadable))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the registry says: state, version, plugin, mode, last error.
fn base_row(h: &Head, now: u64) -> Row {
    let m = &h.manifest;
    // The quarantine a dispatcher recorded for this component; older
    // dispatchers only said it in the last error.
    let until = h
        .quarantine
        .filter(|q| q.digest == m.plugin.digest)
        .map(|q| q.until_ms / 1000)
        .or_else(|| h.last_error.as_deref().and_then(quarantined_until));
    let state = match until {
        _ if !m.enabled => "disabled",
        Some(t) if t > now => "quarantined",
        _ => "enabled",
    };
    Row {
        receiver: m.receiver.clone(),
        state: state.into(),
        quarantined_until: until
            .filter(|t| *t > now && m.enabled)
            .map(prism_aws::registry::rfc3339),
        version: h.current,
        latest: h.latest,
        plugin: m.plugin.digest.short(),
        mode: match m.mode {
            Mode::Immediate => "immediate".into(),
            Mode::Batch { max_count, .. } => format!("batch ({max_count})"),
        },
        updated_at: h.updated_at.clone(),
        updated_by: h.updated_by.clone(),
        last_error: h.last_error.clone(),
        // Queues, lanes and backfill are filled in by what reads them.
        ..Row::default()
    }
}

/// When a quarantine a dispatcher reported ends (seconds since the
/// epoch): the last error reads `<RFC 3339 time> quarantined for another
/// <N> s: …` (host/core/src/stream/outcome.rs).
fn quarantined_until(last_error: &str) -> Option<u64> {
    let (at, rest) = last_error.split_once(' ')?;
    let secs = rest.strip_prefix("quarantined for another ")?;
    let (n, _) = secs.split_once(" s")?;
    let n: u64 = n.parse().ok()?;
    let at = DateTime::from_str(at, DateTimeFormat::DateTime).ok()?;
    Some(u64::try_from(at.secs()).ok()? + n)
}

async fn fill_queues(c: &Clients, h: &Head, row: &mut Row) {
    let Some(d) = &h.manifest.destination else {
        return;
    };
    row.queue = Some(queue_status(c, &d.queue, &mut row.problems).await);
    if let Some(dlq) = &d.dead_letter_queue {
        row.dead_letter_queue = Some(queue_status(c, dlq, &mut row.problems).await);
    }
}

async fn queue_status(c: &Clients, queue: &str, problems: &mut Vec<String>) -> QueueStatus {
    let name = prism_types::manifest::queue_name(queue)
        .unwrap_or(queue)
        .to_owned();
    let mut st = QueueStatus {
        name: name.clone(),
        depth: None,
        in_flight: None,
        oldest_age_seconds: None,
    };
    match depths(&c.sqs, queue).await {
        Ok((depth, in_flight)) => {
            st.depth = Some(depth);
            st.in_flight = Some(in_flight);
        }
        Err(e) => problems.push(format!("queue {name}: {e}")),
    }
    match oldest_age(&c.cloudwatch, &name).await {
        Ok(age) => st.oldest_age_seconds = age,
        Err(e) => problems.push(format!("CloudWatch, age of {name}'s oldest message: {e}")),
    }
    st
}

/// Visible and in-flight messages.
async fn depths(sqs: &aws_sdk_sqs::Client, queue: &str) -> Result<(u64, u64), String> {
    let url = prism_aws::sqs::queue_url(sqs, queue).await?;
    let out = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| sdk_error(&e))?;
    let attrs = out.attributes.unwrap_or_default();
    let get = |k: QueueAttributeName| -> Result<u64, String> {
        attrs
            .get(&k)
            .ok_or_else(|| format!("no {} in GetQueueAttributes", k.as_str()))?
            .parse()
            .map_err(|e| format!("{}: {e}", k.as_str()))
    };
    Ok((
        get(QueueAttributeName::ApproximateNumberOfMessages)?,
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
    ))
}

/// The newest `ApproximateAgeOfOldestMessage` (maximum per minute) of the
/// last 15 minutes; `None` when CloudWatch has none (an empty or idle queue).
async fn oldest_age(cw: &aws_sdk_cloudwatch::Client, queue: &str) -> Result<Option<u64>, String> {
    let end = SystemTime::now();
    let start = end - Duration::from_secs(15 * 60);
    let metric = Metric::builder()
        .namespace("AWS/SQS")
        .metric_name("ApproximateAgeOfOldestMessage")
        .dimensions(Dimension::builder().name("QueueName").value(queue).build())
        .build();
    let query = MetricDataQuery::builder()
        .id("age")
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(60)
                .stat("Maximum")
                .build(),
        )
        .build();
    let out = cw
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(start.into())
        .end_time(end.into())
        .send()
        .await
        .map_err(|e| sdk_error(&e))?;
    let newest = out
        .metric_data_results
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| {
            r.timestamps
                .unwrap_or_default()
                .into_iter()
                .zip(r.values.unwrap_or_default())
        })
        .max_by_key(|(t, _)| t.secs())
        .map(|(_, v)| v.max(0.0) as u64);
    Ok(newest)
}

/// The receiver's lanes in the spool: retry lanes with entries, and its
/// batch buffer.
fn fill_lanes(lanes: &[(Lane, LaneInfo)], row: &mut Row, now: u64) {
    let mine: Vec<&(Lane, LaneInfo)> = lanes
        .iter()
        .filter(|(l, _)| l.receiver() == row.receiver)
        .collect();
    row.lanes_waiting = Some(
        mine.iter()
            .filter(|(l, i)| matches!(l, Lane::Retry { .. }) && i.count > 0)
            .count() as u64,
    );
    row.changes_waiting = Some(mine.iter().map(|(_, i)| i.count).sum());
    row.oldest_waiting_seconds = mine
        .iter()
        .filter(|(_, i)| i.count > 0)
        .map(|(_, i)| now.saturating_sub(i.oldest_ms / 1000))
        .max();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_quarantine_ends_when_it_said() {
        let t = quarantined_until(
            "2026-12-04T10:00:00Z quarantined for another 30 s: its plugin kept failing (3 changes not run in this batch)",
        );
        assert_eq!(t, Some(1_796_378_400 + 30));
        assert_eq!(
            quarantined_until("2026-12-04T10:00:00Z trap: unreachable"),
            None
        );
        assert_eq!(quarantined_until("quarantined for another 30 s"), None);
        assert_eq!(quarantined_until(""), None);
    }

    #[test]
    fn lanes_count_only_the_receivers_own_and_its_oldest_entry() {
        let lanes = vec![
            (
                Lane::Retry {
                    receiver: "a".into(),
                    key: "p1".into(),
                },
                LaneInfo {
                    count: 2,
                    bytes: 10,
                    oldest_ms: 100_000,
                },
            ),
            (
                Lane::Retry {
                    receiver: "a".into(),
                    key: "p2".into(),
                },
                LaneInfo {
                    count: 1,
                    bytes: 10,
                    oldest_ms: 400_000,
                },
            ),
            (
                Lane::Buffer {
                    receiver: "a".into(),
                },
                LaneInfo {
                    count: 5,
                    bytes: 10,
                    oldest_ms: 50_000,
                },
            ),
            (
                Lane::Retry {
                    receiver: "ab".into(),
                    key: "p1".into(),
                },
                LaneInfo {
                    count: 9,
                    bytes: 10,
                    oldest_ms: 1,
                },
            ),
        ];
        let mut row = Row {
            receiver: "a".into(),
            state: "enabled".into(),
            version: 1,
            latest: 1,
            plugin: "x".into(),
            mode: "immediate".into(),
            updated_at: "t".into(),
            updated_by: "u".into(),
            ..Row::default()
        };
        fill_lanes(&lanes, &mut row, 1_000);
        assert_eq!(row.backfill, None);
        assert_eq!(row.lanes_waiting, Some(2));
        assert_eq!(row.changes_waiting, Some(8));
        assert_eq!(row.oldest_waiting_seconds, Some(950));
        let text = table(&[row]);
        assert!(text.contains("8 (15m)"), "{text}");
    }

    #[test]
    fn a_backfill_is_summed_over_its_segments() {
        use prism_core::backfill::checkpoint::Checkpoint;
        assert_eq!(Backfill::of(&[]), None);
        let mut a = Checkpoint::start(0, 2, 7);
        a.items = 100;
        a.done = true;
        a.updated_ms = 1_767_225_600_000;
        let mut b = Checkpoint::start(1, 2, 7);
        b.items = 40;
        let bf = Backfill::of(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(bf.cell(), "1/2 segments, 140 items");
        assert_eq!(bf.updated_at, "2026-01-01T00:00:00Z");
        b.done = true;
        assert_eq!(Backfill::of(&[a, b]).unwrap().cell(), "done (140 items)");
    }
}
