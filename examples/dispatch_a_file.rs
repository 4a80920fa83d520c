//! Run every receiver of a local registry over a file of stream events:
//! the dispatcher without Lambda, SQS or DynamoDB (what `prism run` does,
//! without its state, mapper and progress display).
//!
//! ```text
//! cargo run -p prism-examples --example dispatch-a-file -- REGISTRY_DIR EVENTS OUTBOX_DIR
//! ```
//!
//! REGISTRY_DIR holds one `RECEIVER.toml` manifest per receiver and its
//! `.wasm` (`prism plugin register --registry DIR` writes one). EVENTS is a
//! Lambda DynamoDB stream event or JSON Lines of stream records
//! (`prism sample` writes one). Each receiver's messages land in
//! OUTBOX_DIR/RECEIVER/, in delivery order, and what a receiver could not
//! take in OUTBOX_DIR/RECEIVER/dead-letters/ with the reason.

use anyhow::{Context, bail};
use prism_core::dispatch::{Dispatcher, Progress};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::Outbox;
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::input;
use prism_types::registry::LocalRegistry;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [registry, events, outbox] = args.as_slice() else {
        bail!("usage: dispatch-a-file REGISTRY_DIR EVENTS OUTBOX_DIR");
    };

    // Stream records become changes; a record that cannot be read is
    // reported with where it is, and the rest still run.
    let text = std::fs::read_to_string(events).with_context(|| format!("reading {events}"))?;
    let input = input::parse(&text, events);
    for e in &input.errors {
        eprintln!("unreadable record at {}: {}", e.location, e.message);
    }

    // The registry: each receiver's manifest (mode, limits, config) and
    // plugin. A receiver whose plugin does not load is unavailable on its
    // own; the others run.
    let engine = PluginEngine::new(&EngineOptions::default())
        .map_err(|e| anyhow::anyhow!("building the engine: {e}"))?;
    let snapshot = LocalRegistry::new(registry)
        .load()
        .with_context(|| format!("reading the registry {registry}"))?;
    let set = ReceiverSet::load(&engine, snapshot);
    for u in &set.unavailable {
        eprintln!("unavailable: {}", u.reason);
    }

    // The dispatcher: every change to every receiver that wants it, in
    // parallel across receivers and products, in order per product.
    let report = Dispatcher::default().run(
        &set,
        &input.changes,
        &Outbox::new(outbox),
        &Progress::default(),
    );

    println!(
        "{} changes, {} receivers, {:.2?}",
        input.changes.len(),
        set.active.len(),
        report.elapsed
    );
    for (receiver, s) in &report.receivers {
        println!(
            "{receiver}: {} accepted, {} messages, {} suppressed as unchanged, {} parked",
            s.accepted,
            s.messages,
            s.suppressed,
            s.errors()
        );
    }
    Ok(())
}
