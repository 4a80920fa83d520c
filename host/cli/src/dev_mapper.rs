//! `prism dev --mapper`: the chain's first half against DynamoDB (or moto):
//! follow every shadow table's stream and map each batch with the same
//! batch handler the mapper Lambda uses, writing the model table.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};

use super::follow::{Followed, held_from};
use prism_aws::model_store::DynamoModelStore;
use prism_aws::shadow::DynamoShadow;
use prism_engine::PluginEngine;
use prism_mapping::stream::{MAPPER, MapperProcessor};
use prism_mapping::{MapperManifest, ModelBuilder};

/// The mapper and the shadow streams it follows.
pub struct Chain {
    builder: Arc<ModelBuilder>,
    processor: MapperProcessor,
    streams: Vec<(String, Followed)>,
}

impl Chain {
    /// Load the mapper and find each declared shadow table's stream.
    pub async fn start(
        config: &aws_config::SdkConfig,
        engine: &PluginEngine,
        manifest: &Path,
        prefix: &str,
        model_table: &str,
        dead_letters: Option<&str>,
    ) -> anyhow::Result<Self> {
        let (m, wasm) = MapperManifest::read_local(manifest)?;
        let handle = tokio::runtime::Handle::current();
        let ddb = aws_sdk_dynamodb::Client::new(config);
        let mut streams = Vec::new();
        for t in &m.tables {
            let table = format!("{prefix}{}", t.name);
            let arn = super::aws_args::stream_arn(config, None, Some(&table)).await?;
            println!("following shadow table {table}: {arn}");
            streams.push((table, Followed::new(config, &arn)));
        }
        let shadow = Arc::new(DynamoShadow::new(ddb.clone(), prefix, handle.clone()));
        let model = Arc::new(DynamoModelStore::new(
            ddb,
            model_table,
            &m.model_key,
            handle.clone(),
        ));
        let name = m.mapper.clone();
        // The dispatcher's engine: the mapper keeps its ticker alive.
        let builder = ModelBuilder::new(engine, m, &wasm, shadow, model)
            .with_context(|| format!("loading mapper {name} ({})", manifest.display()))?;
        let parking = dead_letters.map(|q| {
            let d = prism_types::manifest::Destination {
                queue: q.to_owned(),
                dead_letter_queue: Some(q.to_owned()),
            };
            Arc::new(prism_aws::sqs::SqsSink::new(
                aws_sdk_sqs::Client::new(config),
                handle.clone(),
                std::collections::HashMap::from([(MAPPER.to_owned(), d)]),
            )) as Arc<dyn prism_core::sink::Sink>
        });
        Ok(Self {
            builder: Arc::new(builder),
            processor: MapperProcessor {
                prefix: prefix.to_owned(),
                parking,
                concurrency: 8,
            },
            streams,
        })
    }

    /// Read every shadow stream once and map what is new; whether anything was.
    pub async fn poll(&mut self, batch_size: i32, from_start: bool) -> anyhow::Result<bool> {
        let mut busy = false;
        for (table, stream) in &mut self.streams {
            let (builder, processor, table) = (&self.builder, &self.processor, &*table);
            busy |= stream
                .poll(batch_size, from_start, |shard, batch| async move {
                    let outcome = processor
                        .handle(builder.clone(), &json!({ "Records": batch }))
                        .await
                        .map_err(|e| anyhow::anyhow!("{table} shard {shard}: {e}"))?;
                    let r = &outcome.report;
                    println!(
                        "{table} {shard}: {} records -> {} model writes ({} unchanged, {} stale){}{}",
                        r.records,
                        r.tally.written(),
                        r.tally.unchanged,
                        r.tally.stale,
                        if r.parked > 0 { format!(", {} parked", r.parked) } else { String::new() },
                        if r.failed > 0 { ", held for a retry from a failed record" } else { "" },
                    );
                    Ok::<Vec<Value>, anyhow::Error>(held_from(batch, &outcome.response.batch_item_failures))
                })
                .await?;
        }
        Ok(busy)
    }

    /// Records held for a retry.
    pub fn held(&self) -> usize {
        self.streams.iter().map(|(_, s)| s.held()).sum()
    }
}
