//! Embed prism's Wasm engine and run one receiver plugin on one change.
//!
//! ```text
//! cargo run -p prism-examples --example run-one-plugin -- PLUGIN.wasm [KEY=VALUE ...]
//! ```
//!
//! Three steps, each done once as far up as possible:
//! 1. one [`PluginEngine`] per process (Cranelift, the pooling allocator,
//!    the epoch ticker that ends runaway calls);
//! 2. one [`Plugin`](prism_engine::Plugin) per component: compiled, then
//!    checked against the contract (0.1.0 or 0.2.0) before anything runs;
//! 3. one [`Session`](prism_engine::Session) per change (or per batch): a
//!    fresh sandbox with the receiver's config and limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use prism_core::dispatch::to_wit;
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::change::{Change, ChangeKind};
use prism_types::limits::Limits;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        bail!("usage: run-one-plugin PLUGIN.wasm [KEY=VALUE ...]  (the receiver's config)");
    };
    let config: BTreeMap<String, String> = args
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => bail!("config {kv:?}: expected KEY=VALUE"),
        })
        .collect::<anyhow::Result<_>>()?;
    let wasm = std::fs::read(&path).with_context(|| format!("reading {path}"))?;

    // 1. The engine: build it once, share it between threads.
    let engine = PluginEngine::new(&EngineOptions::default())
        .map_err(|e| anyhow::anyhow!("building the engine: {e}"))?;
    // 2. The plugin: compiled and checked once (a wrong world, a forbidden
    //    import or a component over the size limit fails here).
    let plugin = engine
        .load(&wasm)
        .with_context(|| format!("loading {path}"))?;
    println!("{path}: {}, {}", plugin.contract(), plugin.digest());

    // One change: product 7 of the sample catalogue, inserted.
    let product = prism_sample::product(7, 42);
    let change = Change::new(
        prism_sample::sku(7),
        ChangeKind::Insert,
        None,
        Some(product),
        "1".to_owned(),
        0,
    );
    let wit = to_wit(&change);

    // 3. A session: a fresh sandbox with the receiver's config and limits
    //    (time budget, memory, output size). A trap, a timeout or a limit
    //    ends the session with a `CallError`; the process goes on.
    let mut session = plugin
        .session(Arc::new(config), Limits::default())
        .context("instantiating the plugin")?;
    if !session.accepts(&wit).context("calling accepts")? {
        println!("{}: the plugin does not want this change", change.key);
        return Ok(());
    }
    match session.format(&wit).context("calling format")? {
        Ok(messages) => {
            for m in &messages {
                let group = m.group.as_deref().unwrap_or(&change.key);
                println!(
                    "message ({}, group {group}, {} bytes):",
                    m.content_type,
                    m.body.len()
                );
                println!("{}", String::from_utf8_lossy(&m.body));
            }
            println!("{}: {} message(s)", change.key, messages.len());
        }
        // The plugin's own answer: reject (park it) or retry (try again later).
        Err(refused) => println!("{}: the plugin refused the change: {refused:?}", change.key),
    }
    for log in session.take_logs() {
        eprintln!("plugin log [{:?}] {}", log.level, log.message);
    }
    Ok(())
}
