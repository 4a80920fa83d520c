//! Times the phases of plugin calls: session (store + WASI + instantiate),
//! accepts, format, with a fresh session per change or one reused for
//! `REUSE` changes, `ROUNDS` times over the sample (for a profiler).
//! `cargo run --release -p prism-core --example phases -- PLUGIN.wasm [REUSE] [ROUNDS]`
use std::time::{Duration, Instant};

use prism_core::dispatch::to_wit;
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::limits::Limits;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: phases PLUGIN.wasm [REUSE] [ROUNDS]");
    let reuse: usize = args
        .next()
        .map_or(1, |r| r.parse().expect("REUSE is a number"));
    let rounds: u32 = args
        .next()
        .map_or(1, |r| r.parse().expect("ROUNDS is a number"));
    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
    let plugin = engine.load(&std::fs::read(&path).unwrap()).unwrap();
    let stream = prism_sample::stream(prism_sample::SampleOptions {
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
    for _ in 0..rounds {
        for chunk in wits.chunks(reuse.max(1)) {
            let t = Instant::now();
            let mut s = plugin.session(config.clone(), Limits::default()).unwrap();
            t_session += t.elapsed();
            for w in chunk {
                let t = Instant::now();
                let ok = s.accepts(w).unwrap();
                t_accepts += t.elapsed();
                if ok {
                    let t = Instant::now();
                    let _ = std::hint::black_box(s.format(w).unwrap());
                    t_format += t.elapsed();
                    formatted += 1;
                }
            }
        }
    }
    let n = wits.len() as u32 * rounds;
    println!(
        "{n} changes, reuse {reuse}: session {:?}/change, accepts {:?}/change, format {:?}/formatted ({formatted})",
        t_session / n,
        t_accepts / n,
        t_format / formatted.max(1)
    );
}
