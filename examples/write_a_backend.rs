//! Write a backend: where the dispatcher's messages go. prism's own are
//! SQS (`prism-aws`) and the local outbox (`prism-core`); this one prints
//! each message as a line of JSON and keeps the dead letters in memory.
//!
//! ```text
//! cargo run -p prism-examples --example write-a-backend -- PLUGIN.wasm [KEY=VALUE ...]
//! ```
//!
//! A backend implements [`Sink`]: `deliver` gets one change's (or one
//! batch's) messages in order and either takes all of them or returns an
//! error; `park` keeps a change a receiver could not take. An error of kind
//! `Unavailable` makes the dispatcher hold the product's later changes
//! behind it, so order per product survives an outage.

use std::sync::Mutex;

use anyhow::{Context, bail};
use prism_core::dispatch::{Dispatcher, Progress};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::{DeadLetter, Envelope, Sink, SinkError};
use prism_engine::{EngineOptions, PluginEngine};
use prism_sample::SampleOptions;
use prism_types::digest::Digest;
use prism_types::manifest::{PluginRef, ReceiverManifest};
use prism_types::registry::{Entry, Snapshot};

/// Prints messages to stdout; keeps dead letters.
#[derive(Default)]
struct PrintSink {
    parked: Mutex<Vec<DeadLetter>>,
}

impl Sink for PrintSink {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let mut out = std::io::stdout().lock();
        for e in envelopes {
            let line = format!(
                "{{\"receiver\":{:?},\"key\":{:?},\"sequence\":{:?},\"bytes\":{}}}",
                e.receiver,
                e.key,
                e.sequence,
                e.message.body.len()
            );
            std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes())
                // A closed stdout is a destination that is down: hold, retry later.
                .map_err(|err| SinkError::unavailable(e.receiver, format!("stdout: {err}")))?;
        }
        Ok(())
    }

    fn park(&self, dead: &DeadLetter) -> Result<(), SinkError> {
        self.parked.lock().expect("not poisoned").push(dead.clone());
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        bail!("usage: write-a-backend PLUGIN.wasm [KEY=VALUE ...]  (the receiver's config)");
    };
    let wasm = std::fs::read(&path).with_context(|| format!("reading {path}"))?;

    // A registry of one receiver, built in memory (a real one is a
    // directory or a DynamoDB table: `prism_types::registry`).
    let plugin = PluginRef {
        digest: Digest::of(&wasm),
        file: None,
    };
    let mut manifest = ReceiverManifest::new("example", plugin);
    for kv in args {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("config {kv:?}: expected KEY=VALUE");
        };
        manifest.config.insert(k.to_owned(), v.to_owned());
    }
    let snapshot = Snapshot {
        entries: vec![Entry {
            manifest,
            origin: path.clone(),
            wasm,
        }],
        ..Snapshot::default()
    };
    let engine = PluginEngine::new(&EngineOptions::default())
        .map_err(|e| anyhow::anyhow!("building the engine: {e}"))?;
    let set = ReceiverSet::load(&engine, snapshot);
    if let Some(u) = set.unavailable.first() {
        bail!("{path}: {}", u.reason);
    }

    // The sample stream: 20 products inserted, edited, removed, refreshed.
    let text = prism_sample::stream(SampleOptions {
        products: 20,
        seed: 42,
    })
    .to_json_lines();
    let changes = prism_types::input::parse(&text, "sample").changes;

    let sink = PrintSink::default();
    let report = Dispatcher::default().run(&set, &changes, &sink, &Progress::default());
    let stats = &report.receivers["example"];
    let parked = sink.parked.lock().expect("not poisoned");
    eprintln!(
        "{} changes: {} messages printed, {} parked",
        changes.len(),
        stats.messages,
        parked.len()
    );
    for d in parked.iter() {
        eprintln!(
            "parked {} at {}: {} ({})",
            d.key, d.sequence, d.error_kind, d.error
        );
    }
    Ok(())
}
