//! `prism dlq redrive`: the SQS side of `prism_core::redrive` (which
//! decides what is sent, checked, kept and deleted), and its report.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use aws_sdk_sqs::types::MessageAttributeValue;
use prism_core::redrive::{DeadLetters, Letter, Redrive};
use prism_core::stream::StreamProcessor;
use prism_lambda::LambdaConfig;
use prism_types::change::Change;

use super::{Queues, RedriveArgs, delete, load_claim, queues, release, scan, target};
use crate::aws_args::{Remote, RemoteArgs};
use prism_aws::claims::ClaimRef;
use prism_aws::sdk_error;

pub(super) async fn redrive(a: RedriveArgs) -> anyhow::Result<ExitCode> {
    let r = a.common.receiver.clone();
    let remote = a.common.remote.connect().await;
    let q = queues(&remote, &r).await?;
    let model = prism_aws::read_model::DynamoModel::new(
        aws_sdk_dynamodb::Client::new(&remote.config),
        &a.model_table,
    );
    // The processor first (loading and compiling the plugin takes seconds):
    // the model is read as close to the send as it can be.
    let processor = if a.dry_run {
        None
    } else {
        Some(processor(&a, &remote).await?)
    };
    let letters = SqsDeadLetters {
        q: &q,
        args: &a.common.remote,
        remote: &remote,
    };
    let say = |line: String| println!("{line}");
    let t = Redrive {
        receiver: &r,
        letters: &letters,
        model: &model,
        processor: processor.as_ref(),
        max: a.common.max,
        run_id: format!("{}-{}", std::process::id(), prism_core::spool::now_ms()),
        say: &say,
    }
    .run()
    .await?;
    println!(
        "{r}: {}{} parked changes redriven ({} sent as the product is now, it had changed since; {} parked again), {} skipped (the product came and went), {} sent again at a newer version the stream wrote meanwhile, {} consumer messages moved back, {} failed (left in the DLQ), {} unknown (left alone)",
        if a.dry_run { "dry run: " } else { "" },
        t.redriven,
        t.caught_up,
        t.parked_again,
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
    let processor = lambda.processor_with(&remote.config, &target).await?;
    // The letters' changes keep their sequences, which a lane that parked
    // them remembers as handled: replayed on purpose, they are spooled anyway.
    Ok(processor
        .into_builder()
        .redrive(a.common.receiver.clone())
        .build())
}

/// A receiver's DLQ (and queue) on SQS.
struct SqsDeadLetters<'a> {
    q: &'a Queues,
    args: &'a RemoteArgs,
    remote: &'a Remote,
}

fn err(place: &str, e: anyhow::Error) -> prism_core::Error {
    prism_core::Error::redrive(place, format!("{e:#}"))
}

#[async_trait::async_trait]
impl DeadLetters for SqsDeadLetters<'_> {
    fn place(&self) -> String {
        self.q.dlq.clone()
    }

    async fn hold(&self, max: usize, hold_secs: u32) -> Result<Vec<Letter>, prism_core::Error> {
        let letters = scan(self.q, max, hold_secs as i32)
            .await
            .map_err(|e| err(&self.q.dlq, e))?;
        Ok(letters.iter().map(super::Letter::held).collect())
    }

    async fn change(&self, l: &Letter) -> Result<Change, prism_core::Error> {
        let read = async {
            let body: serde_json::Value =
                serde_json::from_str(&l.body).context("the dead letter is not JSON")?;
            let mut change = body["change"].clone();
            if let Some(r) = ClaimRef::from_value(&change) {
                change = load_claim(self.args, self.remote, &r).await?;
            }
            Change::from_json(&change).map_err(|e| anyhow::anyhow!("{e}"))
        };
        read.await.map_err(|e| err(&l.id, e))
    }

    async fn delete(&self, l: &Letter) -> Result<(), prism_core::Error> {
        delete(self.q, &l.id, &l.receipt)
            .await
            .map_err(|e| err(&self.q.dlq, e))
    }

    async fn release(&self, letters: &[&Letter]) -> Result<(), prism_core::Error> {
        let receipts: Vec<&str> = letters.iter().map(|l| l.receipt.as_str()).collect();
        release(self.q, &receipts)
            .await
            .map_err(|e| err(&self.q.dlq, e))
    }

    /// With its body, attributes and (FIFO) group.
    async fn send_back(&self, l: &Letter) -> Result<(), prism_core::Error> {
        let q = self.q;
        let mut req = q
            .sqs
            .send_message()
            .queue_url(&q.queue)
            .message_body(&l.body);
        let attributes: &HashMap<String, String> = &l.attributes;
        for (k, v) in attributes {
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
        req.send().await.map_err(|e| {
            prism_core::Error::redrive(
                format!("sending {} back to {}", l.id, q.queue),
                sdk_error(&e),
            )
        })?;
        Ok(())
    }
}
