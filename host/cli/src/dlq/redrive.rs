//! `prism dlq redrive`: parked changes through the receiver's current
//! plugin (skipping what the model has moved past), consumer failures back
//! to the queue; see the parent module for why each step is as it is.

use anyhow::Context;
use aws_sdk_sqs::types::MessageAttributeValue;
use prism_core::api::ModelSource;
use prism_lambda::LambdaConfig;
use prism_types::change::Change;
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
    } else if !current.is_empty() {
        let (done, failed) = dispatch(&a, &remote, &current).await?;
        for (i, (l, _)) in current.iter().enumerate() {
            if failed.contains(&i) {
                keep.push(l);
            } else {
                delete(&q, l).await?;
            }
        }
        t.redriven = done;
        t.failed += failed.len();
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
        "{r}: {}{} parked changes redriven, {} skipped (superseded), {} consumer messages moved back, {} failed (left in the DLQ), {} unknown (left alone)",
        if a.dry_run { "dry run: " } else { "" },
        t.redriven,
        t.superseded,
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

/// Run `changes` through the receiver alone, as stream records; the indices
/// of those not handled (to stay in the DLQ).
async fn dispatch(
    a: &RedriveArgs,
    remote: &Remote,
    changes: &[(&Letter, Change)],
) -> anyhow::Result<(usize, Vec<usize>)> {
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
    let mut records: Vec<Value> = changes
        .iter()
        .map(|(_, c)| prism_types::input::record::from_change(c))
        .collect();
    // Fresh record ids: the retry ledger must not take a redrive for the
    // original delivery it already counted.
    for (i, r) in records.iter_mut().enumerate() {
        r["eventID"] = json!(format!("redrive-{}-{i}", std::process::id()));
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
        .filter_map(|seq| changes.iter().position(|(_, c)| c.sequence == seq))
        .collect();
    // Lambda retries from the first failed record on: so does a redrive.
    let first = failed.iter().min().copied();
    let failed: Vec<usize> = match first {
        Some(f) => (f..changes.len()).collect(),
        None => vec![],
    };
    if let Some(st) = out.report.receivers.get(&a.common.receiver) {
        println!(
            "dispatched {} changes: {} messages sent, {} parked again, {} held in lanes",
            changes.len(),
            st.messages,
            st.errors(),
            st.laned
        );
    }
    Ok((changes.len() - failed.len(), failed))
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
