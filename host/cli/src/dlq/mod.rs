//! `prism dlq list|show|redrive --receiver R`: a receiver's dead-letter
//! queue, read by kind.
//!
//! A receiver's DLQ holds two kinds of message, told apart by their
//! attributes:
//! - **parked**: a change the dispatcher could not deliver (rejected,
//!   trapped, too large, plugin unavailable…). Attribute `prism-error-kind`;
//!   the body is the dead letter (`receiver`, `key`, `sequence`,
//!   `error_kind`, `error`, `plugin_digest`, and the original `change`).
//! - **consumer**: a message the receiver's *consumer* failed on, moved here
//!   by SQS's redrive policy after `maxReceiveCount` tries. It is the
//!   delivered message itself, with the delivery attributes (`prism-key`,
//!   `prism-sequence`, …) and no `prism-error-kind`.
//!
//! Anything else is `unknown` and left alone.
//!
//! `redrive` runs parked changes through the receiver's **current** plugin,
//! through the same dispatch path as the stream (dedup, lanes, parking),
//! and only that receiver. A parked change is skipped when the product has
//! changed since (its document in the model table is no longer the
//! change's new image): the newer version went through the stream after
//! it, so delivering the parked one would move the receiver backwards.
//! Consumer failures are sent back to the receiver's queue unchanged and
//! then deleted from the DLQ. A message is deleted from the DLQ only after
//! what replaces it is safe: delivered, parked again (a new dead letter),
//! held in a lane, or skipped as superseded.
//!
//! Why not SQS's `StartMessageMoveTask` for consumer failures: it moves
//! every message of the DLQ and cannot filter, so it would also hand the
//! parked dead letters to the receiver's consumer. The one-by-one move is
//! also what moto (the test suite's AWS) can run: moto 5.2 has no
//! message-move tasks.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use anyhow::Context;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};
use clap::Subcommand;
use prism_aws::claims::{ClaimRef, ClaimStore};
use prism_aws::{self as aws, AwsTarget, sdk_error};
use serde_json::{Value, json};

use crate::aws_args::{Remote, RemoteArgs, block_on_multi};

mod redrive;

/// Inspect and redrive a receiver's dead-letter queue.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The dead letters, grouped by kind and error.
    List(ListArgs),
    /// One dead letter, with its original change.
    Show(ShowArgs),
    /// Run parked changes through the receiver's current plugin, and send
    /// consumer failures back to its queue.
    Redrive(RedriveArgs),
}

/// What every `dlq` command needs.
#[derive(Debug, clap::Args)]
pub struct Common {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The receiver whose DLQ to read.
    #[arg(long)]
    pub receiver: String,
    /// Read at most this many messages.
    #[arg(long, default_value_t = 10_000)]
    pub max: usize,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: Common,
    /// The SQS message id (from `dlq list`).
    pub message_id: String,
}

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub common: Common,
    /// The model table: a parked change is redriven only while the product
    /// is still as the change left it.
    #[arg(long, env = "PRISM_MODEL_TABLE", value_name = "TABLE")]
    pub model_table: String,
    /// Output dedup table, as the dispatcher's.
    #[arg(long, env = "PRISM_OUTPUTS_TABLE", value_name = "TABLE")]
    pub outputs_table: Option<String>,
    /// Spool table, as the dispatcher's (a change the plugin asks to retry
    /// waits in its lane).
    #[arg(long, env = "PRISM_SPOOL_TABLE", value_name = "TABLE")]
    pub spool_table: Option<String>,
    /// Say what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    block_on_multi(async move {
        match c {
            Command::List(a) => list(a).await,
            Command::Show(a) => show(a).await,
            Command::Redrive(a) => redrive::redrive(a).await,
        }
    })?
}

/// Which kind of dead letter a message is (see the module docs).
pub use prism_core::redrive::LetterKind as Kind;

/// One DLQ message, held invisible while the command works on it.
#[derive(Debug, Clone)]
struct Letter {
    id: String,
    receipt: String,
    body: String,
    attributes: HashMap<String, String>,
    group: Option<String>,
    sent_ms: u64,
    receives: u64,
    kind: Kind,
}

impl Letter {
    /// As a redrive works on it.
    fn held(&self) -> prism_core::redrive::Letter {
        prism_core::redrive::Letter {
            id: self.id.clone(),
            receipt: self.receipt.clone(),
            body: self.body.clone(),
            attributes: self.attributes.clone(),
            group: self.group.clone(),
            kind: self.kind,
        }
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// (error kind, first line of the error) for grouping.
    fn error(&self) -> (String, String) {
        match self.kind {
            Kind::Parked => {
                let v = self.json().unwrap_or_default();
                let line = v["error"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("");
                (
                    v["error_kind"].as_str().unwrap_or("?").to_owned(),
                    prism_types::text::cap(what_failed(line), 120).to_string(),
                )
            }
            Kind::Consumer => (
                format!("received {} times", self.receives),
                "the consumer did not delete it".into(),
            ),
            Kind::Unknown => ("-".into(), "not a prism message".into()),
        }
    }
}

/// An error without its per-change prefix (`receiver R (plugin D) on key K
/// sequence S: `, host/core/src/dispatch/worker.rs), so that one cause
/// groups as one line.
fn what_failed(error: &str) -> &str {
    match error.find(" sequence ") {
        Some(i) => error[i..].split_once(": ").map_or(error, |(_, rest)| rest),
        None => error,
    }
}

/// The receiver's queue and DLQ URLs.
struct Queues {
    sqs: aws_sdk_sqs::Client,
    queue: String,
    dlq: String,
}

async fn queues(remote: &Remote, receiver: &str) -> anyhow::Result<Queues> {
    let head = remote.require_head(receiver).await?;
    let d = head
        .manifest
        .destination
        .with_context(|| format!("receiver {receiver} has no destination in the registry"))?;
    let dlq = d
        .dead_letter_queue
        .with_context(|| format!("receiver {receiver} has no dead_letter_queue in the registry"))?;
    let sqs = aws_sdk_sqs::Client::new(&remote.config);
    let url = |q: String| {
        let sqs = sqs.clone();
        async move {
            prism_aws::sqs::queue_url(&sqs, &q)
                .await
                .map_err(|e| anyhow::anyhow!("finding queue {q}: {e}"))
        }
    };
    Ok(Queues {
        queue: url(d.queue).await?,
        dlq: url(dlq).await?,
        sqs,
    })
}

/// Receive up to `max` messages, each kept invisible for `hold_secs`.
async fn scan(q: &Queues, max: usize, hold_secs: i32) -> anyhow::Result<Vec<Letter>> {
    let mut out: Vec<Letter> = Vec::new();
    let mut empty = 0;
    while out.len() < max && empty < 2 {
        let got = q
            .sqs
            .receive_message()
            .queue_url(&q.dlq)
            .max_number_of_messages((max - out.len()).min(10) as i32)
            .visibility_timeout(hold_secs)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", sdk_error(&e)))
            .with_context(|| format!("reading {}", q.dlq))?;
        let msgs = got.messages.unwrap_or_default();
        if msgs.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for m in msgs {
            let attributes: HashMap<String, String> = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.string_value?)))
                .collect();
            let sys = m.attributes.unwrap_or_default();
            let num = |k: MessageSystemAttributeName| {
                sys.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            };
            let id = m.message_id.unwrap_or_default();
            if out.iter().any(|l| l.id == id) {
                continue;
            }
            out.push(Letter {
                kind: Kind::of(&attributes),
                id,
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                group: sys
                    .get(&MessageSystemAttributeName::MessageGroupId)
                    .cloned(),
                sent_ms: num(MessageSystemAttributeName::SentTimestamp),
                receives: num(MessageSystemAttributeName::ApproximateReceiveCount),
                attributes,
            });
        }
    }
    Ok(out)
}

/// Make the letters with these receipts visible again at once (they stay
/// in the DLQ).
async fn release(q: &Queues, receipts: &[&str]) -> anyhow::Result<()> {
    for chunk in receipts.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*receipt)
                    .visibility_timeout(0)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        q.sqs
            .change_message_visibility_batch()
            .queue_url(&q.dlq)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", sdk_error(&e)))
            .context("making the dead letters visible again")?;
    }
    Ok(())
}

async fn delete(q: &Queues, id: &str, receipt: &str) -> anyhow::Result<()> {
    q.sqs
        .delete_message()
        .queue_url(&q.dlq)
        .receipt_handle(receipt)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", sdk_error(&e)))
        .with_context(|| format!("deleting dead letter {id} from {}", q.dlq))?;
    Ok(())
}

fn receipts(letters: &[Letter]) -> Vec<&str> {
    letters.iter().map(|l| l.receipt.as_str()).collect()
}

fn rfc3339_ms(ms: u64) -> String {
    prism_aws::registry::rfc3339(ms / 1000)
}

async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let remote = a.common.remote.connect().await;
    let q = queues(&remote, &a.common.receiver).await?;
    let letters = scan(&q, a.common.max, 30).await?;
    release(&q, &receipts(&letters)).await?;
    // (kind, error kind, error) -> (count, oldest sent, an example id)
    let mut groups: BTreeMap<(Kind, String, String), (usize, u64, String)> = BTreeMap::new();
    for l in &letters {
        let (ek, e) = l.error();
        let g = groups
            .entry((l.kind, ek, e))
            .or_insert((0, u64::MAX, l.id.clone()));
        g.0 += 1;
        if l.sent_ms < g.1 {
            g.1 = l.sent_ms;
            g.2 = l.id.clone();
        }
    }
    if a.json {
        let rows: Vec<Value> = groups
            .iter()
            .map(|((k, ek, e), (n, oldest, id))| {
                json!({"kind": k.name(), "error_kind": ek, "error": e, "count": n,
                       "oldest": rfc3339_ms(*oldest), "example": id})
            })
            .collect();
        println!(
            "{}",
            json!({"receiver": a.common.receiver, "dead_letters": letters.len(), "groups": rows})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} dead letters in {}",
        a.common.receiver,
        letters.len(),
        prism_types::manifest::queue_name(&q.dlq).unwrap_or(&q.dlq)
    );
    for ((k, ek, e), (n, oldest, id)) in &groups {
        println!(
            "{n:>6}  {:<8}  {ek:<16}  oldest {}  e.g. {id}  {e}",
            k.name(),
            rfc3339_ms(*oldest)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let remote = a.common.remote.connect().await;
    let q = queues(&remote, &a.common.receiver).await?;
    let letters = scan(&q, a.common.max, 30).await?;
    release(&q, &receipts(&letters)).await?;
    let l = letters
        .iter()
        .find(|l| l.id == a.message_id)
        .with_context(|| {
            format!(
                "no message {} among the {} read from {}",
                a.message_id,
                letters.len(),
                q.dlq
            )
        })?;
    let mut body = l.json().unwrap_or_else(|| Value::String(l.body.clone()));
    if l.kind == Kind::Parked
        && let Some(r) = ClaimRef::from_value(&body["change"])
    {
        body["change"] = load_claim(&a.common.remote, &remote, &r).await?;
    }
    let attrs: BTreeMap<_, _> = l.attributes.iter().collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "message_id": l.id, "kind": l.kind.name(), "sent": rfc3339_ms(l.sent_ms),
            "receives": l.receives, "group": l.group, "attributes": attrs, "body": body,
        }))?
    );
    Ok(ExitCode::SUCCESS)
}

/// A change too large for SQS, from the claim bucket its reference names.
async fn load_claim(args: &RemoteArgs, remote: &Remote, r: &ClaimRef) -> anyhow::Result<Value> {
    let target = target(args);
    let claims = ClaimStore::new(aws::s3_client(&remote.config, &target), &r.bucket);
    let bytes = claims.get(r).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("claimed change {}", r.key))
}

fn target(args: &RemoteArgs) -> AwsTarget {
    AwsTarget {
        endpoint_url: args.target.endpoint_url.clone(),
        region: args.target.region.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_group_by_cause_not_by_change() {
        let a =
            "receiver picky (plugin sha256:ab) on key P-1 sequence 100: rejected: P-1 has no EAN";
        assert_eq!(what_failed(a), "rejected: P-1 has no EAN");
        assert_eq!(what_failed("timeout: 200 ms"), "timeout: 200 ms");
    }

    #[test]
    fn the_two_kinds_are_told_apart_by_their_attributes() {
        let attrs = |ks: &[&str]| {
            ks.iter()
                .map(|k| ((*k).to_owned(), "x".to_owned()))
                .collect()
        };
        assert_eq!(
            Kind::of(&attrs(&["prism-receiver", "prism-error-kind"])),
            Kind::Parked
        );
        assert_eq!(
            Kind::of(&attrs(&["prism-receiver", "prism-key", "prism-sequence"])),
            Kind::Consumer
        );
        assert_eq!(Kind::of(&attrs(&["other"])), Kind::Unknown);
    }
}
