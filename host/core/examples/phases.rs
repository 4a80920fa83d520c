//! Times the phases of one plugin call: session (store + WASI + instantiate),
//! accepts, format. `cargo run --release -p prism-core --example phases -- PLUGIN.wasm`
use std::time::{Duration, Instant};

use prism_core::dispatch::to_wit;
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::limits::Limits;

fn main() {
    let path = std::env::args().nth(1).expect("usage: phases PLUGIN.wasm");
    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
    let plugin = engine.load(&std::fs::read(&path).unwrap()).unwrap();
    let stream = prism_core::sample::stream(prism_core::sample::SampleOptions {
        products: 500,
        seed: 1,
    })
    .to_json_lines();
    let changes = prism_types::input::parse(&stream, "s").changes;
    let wits: Vec<_> = changes.iter().map(to_wit).collect();
    let config = std::sync::Arc::new(std::collections::BTreeMap::new());
    let (mut t_session, mut t_accepts, mut t_format) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut formatted = 0;
    for w in &wits {
        let t = Instant::now();
        let mut s = plugin.session(config.clone(), Limits::default()).unwrap();
        t_session += t.elapsed();
        let t = Instant::now();
        let ok = s.accepts(w).unwrap();
        t_accepts += t.elapsed();
        if ok {
            let t = Instant::now();
            s.format(w).unwrap().unwrap();
            t_format += t.elapsed();
            formatted += 1;
        }
    }
    let n = wits.len() as u32;
    println!(
        "{n} changes: session {:?}/change, accepts {:?}/change, format {:?}/formatted ({formatted})",
        t_session / n,
        t_accepts / n,
        t_format / formatted.max(1)
    );
}
