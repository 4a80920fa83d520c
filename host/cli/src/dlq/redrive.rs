//! `prism dlq redrive`: parked changes through the receiver's current
//! plugin (skipping what the model has moved past), consumer failures back
//! to the queue; see the parent module for why each step is as it is.

use anyhow::Context;
use aws_sdk_sqs::types::MessageAttributeValue;
use prism_core::api::ModelSource;
use prism_core::stream::StreamProcessor;
use prism_lambda::LambdaConfig;
use prism_types::change::{Change, ChangeKind};
use serde_json::{Value, json};

use super::{Kind, Letter, Queues, RedriveArgs, delete, load_claim, queues, release, scan, target};
use crate::remote::{Remote, RemoteArgs};
use prism_aws::claims::ClaimRef;
use prism_aws::sdk_error;
use std::process::ExitCode;

/// What a redrive did.
#[derive(Debug, Default)]
struct Tally {
    redriven: usize,
    superseded: usize,
    corrected: usize,
    moved: usize,
    failed: usize,
    unknown: usize,
}

pub(super) async fn redrive(a: RedriveArgs) -> anyhow::Result<ExitCode> {
    let r = a.common.receiver.clone();
    let remote = a.common.remote.connect().await;
    let q = queues(&remote, &r).await?;
    // Held for 15 minutes: what this run does not finish reappears by itself.
    let letters = scan(&q, a.common.max, 900).await?;
    let mut t = Tally::default();
    let mut keep: Vec<&Letter> = Vec::new();

    // Parked changes, oldest first per product.
    let mut parked: Vec<(&Letter, Change)> = Vec::new();
    for l in letters.iter().filter(|l| l.kind == Kind::Parked) {
        match parked_change(&a.common.remote, &remote, l).await {
            Ok(c) => parked.push((l, c)),
            Err(e) => {
                eprintln!("{}: {e:#}; left in the DLQ", l.id);
                t.failed += 1;
                keep.push(l);
            }
        }
    }
    parked.sort_by(|(_, a), (_, b)| {
        a.key
            .cmp(&b.key)
            .then(prism_types::change::cmp_sequence(&a.sequence, &b.sequence))
    });
    let model = prism_aws::read_model::DynamoModel::new(
        aws_sdk_dynamodb::Client::new(&remote.config),
        &a.model_table,
    );
    // The processor first (loading and compiling the plugin takes seconds):
    // the model is read as close to the send as it can be.
    let processor = if a.dry_run || parked.is_empty() {
        None
    } else {
        Some(processor(&a, &remote).await?)
    };
    let mut current = Vec::new();
    for (l, c) in parked {
        match model.get(&c.key).await {
            Ok(doc) if doc == c.new => current.push((l, c)),
            Ok(_) => {
                println!(
                    "skip {} {} (sequence {}): the product changed since; its newer version went through the stream",
                    l.id, c.key, c.sequence
                );
                t.superseded += 1;
                if !a.dry_run {
                    delete(&q, l).await?;
                }
            }
            Err(e) => {
                eprintln!(
                    "{}: reading {} from the model: {e}; left in the DLQ",
                    l.id, c.key
                );
                t.failed += 1;
                keep.push(l);
            }
        }
    }
    if a.dry_run {
        for (l, c) in &current {
            println!(
                "would redrive {} {} (sequence {}) through {r}'s current plugin",
                l.id, c.key, c.sequence
            );
        }
        t.redriven = current.len();
    } else if let (Some(processor), false) = (&processor, current.is_empty()) {
        let changes: Vec<Change> = current.iter().map(|(_, c)| c.clone()).collect();
        let failed = dispatch(processor, &r, &changes).await?;
        let sent: Vec<Change> = changes
            .iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains(i))
            .map(|(_, c)| c.clone())
            .collect();
        let confirmed = confirm(processor, &r, &model, sent).await?;
        t.corrected = confirmed.corrected;
        for (i, (l, c)) in current.iter().enumerate() {
            if failed.contains(&i) {
                keep.push(l);
            } else if confirmed.unconfirmed.contains(&c.key) {
                // Its letter stays: the product is still changing, and the
                // receiver may hold an older version than the model's.
                eprintln!(
                    "{}: {} still changing after {ROUNDS} corrections; left in the DLQ, redrive again when it is quiet",
                    l.id, c.key
                );
                keep.push(l);
            } else {
                delete(&q, l).await?;
            }
        }
        t.failed += failed.len() + confirmed.unconfirmed.len();
        t.redriven = current.len() - failed.len() - confirmed.unconfirmed.len();
    }

    // Consumer failures back to the queue, as they were.
    for l in letters.iter().filter(|l| l.kind == Kind::Consumer) {
        if a.dry_run {
            println!("would move {} back to {}", l.id, q.queue);
            t.moved += 1;
            continue;
        }
        match send_back(&q, l).await {
            Ok(()) => {
                delete(&q, l).await?;
                t.moved += 1;
            }
            Err(e) => {
                eprintln!("{}: {e:#}; left in the DLQ", l.id);
                t.failed += 1;
                keep.push(l);
            }
        }
    }
    for l in letters.iter().filter(|l| l.kind == Kind::Unknown) {
        t.unknown += 1;
        keep.push(l);
    }
    if a.dry_run {
        keep = letters.iter().collect();
    }
    release(&q, &keep).await?;
    println!(
        "{r}: {}{} parked changes redriven, {} skipped (superseded), {} sent again at a newer version the stream wrote meanwhile, {} consumer messages moved back, {} failed (left in the DLQ), {} unknown (left alone)",
        if a.dry_run { "dry run: " } else { "" },
        t.redriven,
        t.superseded,
        t.corrected,
        t.moved,
        t.failed,
        t.unknown
    );
    Ok(if t.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The change a parked dead letter carries (loaded from the claim bucket
/// when it was too large for SQS).
async fn parked_change(args: &RemoteArgs, remote: &Remote, l: &Letter) -> anyhow::Result<Change> {
    let body = l.json().context("the dead letter is not JSON")?;
    let mut change = body["change"].clone();
    if let Some(r) = ClaimRef::from_value(&change) {
        change = load_claim(args, remote, &r).await?;
    }
    Change::from_json(&change).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A processor that runs the receiver alone, as the dispatcher would.
async fn processor(a: &RedriveArgs, remote: &Remote) -> anyhow::Result<StreamProcessor> {
    let target = target(&a.common.remote);
    let bucket = a.common.remote.target.bucket.clone().context(
        "prism dlq redrive needs the plugin bucket: pass --bucket or set PRISM_PLUGIN_BUCKET",
    )?;
    let lambda = LambdaConfig {
        outputs_table: a.outputs_table.clone(),
        spool_table: a.spool_table.clone(),
        endpoint_url: target.endpoint_url.clone(),
        ..LambdaConfig::new(
            a.common.remote.table.clone(),
            bucket,
            std::env::temp_dir().join("prism-redrive"),
        )
    };
    let mut processor = lambda.processor_with(&remote.config, &target).await?;
    processor.emit_metrics = false;
    processor.only = Some(a.common.receiver.clone());
    // The letters' changes keep their sequences, which a lane that parked
    // them remembers as handled: replayed on purpose, they are spooled anyway.
    processor.replay = true;
    Ok(processor)
}

/// Run `changes` through `receiver` alone, as stream records; the indices
/// of those not handled (to stay in the DLQ).
async fn dispatch(
    processor: &StreamProcessor,
    receiver: &str,
    changes: &[Change],
) -> anyhow::Result<Vec<usize>> {
    let mut records: Vec<Value> = changes
        .iter()
        .map(prism_types::input::record::from_change)
        .collect();
    // Fresh record ids: the retry ledger must not take a redrive for the
    // original delivery it already counted (nor one round for another).
    let run = REDRIVE_RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for (i, r) in records.iter_mut().enumerate() {
        r["eventID"] = json!(format!("redrive-{}-{run}-{i}", std::process::id()));
    }
    let out = processor
        .handle(&json!({ "Records": records }))
        .await
        .context("dispatching the parked changes")?;
    let failed: Vec<usize> = out
        .response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.as_deref())
        .filter_map(|seq| changes.iter().position(|c| c.sequence == seq))
        .collect();
    if let Some(st) = out.report.receivers.get(receiver) {
        println!(
            "dispatched {} changes: {} messages sent, {} parked again, {} held in lanes",
            changes.len(),
            st.messages,
            st.errors(),
            st.laned
        );
    }
    // Lambda retries from the first failed record on: so does a redrive.
    Ok(match failed.iter().min().copied() {
        Some(f) => (f..changes.len()).collect(),
        None => vec![],
    })
}

/// Numbers this process's dispatches, for fresh record ids.
static REDRIVE_RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Checks of the redriven products against the model, each sending what
/// changed again (as a backfill's page).
const ROUNDS: usize = 4;

/// What [`confirm`] found.
#[derive(Debug, Default)]
struct Confirmed {
    /// Products sent again at a newer version.
    corrected: usize,
    /// Products still changing after every round (their letters stay).
    unconfirmed: Vec<String>,
}

/// After the send, read each product again: one the model still holds as
/// sent cannot have been overtaken (a newer version is written after this
/// read and delivered by the stream after it). One that changed may have
/// had its newer version delivered by the stream before the redrive's
/// older one went out: it is sent again at what the model holds, and
/// checked again, the last send too.
async fn confirm(
    processor: &StreamProcessor,
    receiver: &str,
    model: &impl ModelSource,
    sent: Vec<Change>,
) -> anyhow::Result<Confirmed> {
    let mut out = Confirmed::default();
    let mut pending = sent;
    for round in 0..=ROUNDS {
        let mut again = Vec::new();
        for c in &pending {
            let now = model
                .get(&c.key)
                .await
                .with_context(|| format!("reading {} from the model after the redrive", c.key))?;
            if now != c.new {
                let kind = match (&c.new, &now) {
                    (None, _) => ChangeKind::Insert,
                    (_, None) => ChangeKind::Remove,
                    _ => ChangeKind::Modify,
                };
                again.push(Change::new(
                    c.key.clone(),
                    kind,
                    c.new.clone(),
                    now,
                    c.sequence.clone(),
                    c.time_ms,
                ));
            }
        }
        if again.is_empty() || round == ROUNDS {
            out.unconfirmed = again.into_iter().map(|c| c.key).collect();
            return Ok(out);
        }
        println!(
            "{} redriven products changed while they were sent; sending their newest version",
            again.len()
        );
        let failed = dispatch(processor, receiver, &again).await?;
        // What could not be sent again was parked again, with a letter.
        out.corrected += again.len() - failed.len();
        pending = again
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains(i))
            .map(|(_, c)| c)
            .collect();
    }
    Ok(out)
}

/// Send a consumer's failed message back to the receiver's queue, with its
/// body, attributes and (FIFO) group.
async fn send_back(q: &Queues, l: &Letter) -> anyhow::Result<()> {
    let mut req = q
        .sqs
        .send_message()
        .queue_url(&q.queue)
        .message_body(&l.body);
    for (k, v) in &l.attributes {
        req = req.message_attributes(
            k,
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .expect("data type is set"),
        );
    }
    if q.queue.ends_with(".fifo") {
        req = req
            .message_group_id(l.group.clone().unwrap_or_else(|| "redrive".into()))
            .message_deduplication_id(format!("redrive-{}", l.id));
    }
    req.send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", sdk_error(&e)))
        .with_context(|| format!("sending {} back to {}", l.id, q.queue))?;
    Ok(())
}
