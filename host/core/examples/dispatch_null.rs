//! Dispatcher throughput without I/O: a registry over the sample stream into a
//! sink that drops messages. `cargo run --release -p prism-core --example dispatch_null -- REGISTRY [PRODUCTS] [THREADS]`
use prism_core::dispatch::{Dispatcher, Progress};
use prism_core::receivers::ReceiverSet;
use prism_core::sink::{DeadLetter, Envelope, Sink, SinkError};
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::registry::LocalRegistry;

struct Null;
impl Sink for Null {
    fn deliver(&self, _: &[Envelope<'_>]) -> Result<(), SinkError> {
        Ok(())
    }
    fn park(&self, _: &DeadLetter) -> Result<(), SinkError> {
        Ok(())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let registry = args.next().expect("registry dir");
    let products: usize = args.next().map_or(3000, |s| s.parse().unwrap());
    let threads: usize = args.next().map_or(2, |s| s.parse().unwrap());
    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
    let set = ReceiverSet::load(&engine, LocalRegistry::new(registry).load().unwrap());
    let stream =
        prism_sample::stream(prism_sample::SampleOptions { products, seed: 42 }).to_json_lines();
    let changes = prism_types::input::parse(&stream, "s").changes;
    let r = Dispatcher::builder().threads(threads).build().run(
        &set,
        &changes,
        &Null,
        &Progress::default(),
    );
    let n: u64 = r.receivers.values().map(|s| s.seen).sum();
    println!(
        "{n} receiver-changes in {:?} on {threads} threads: {:.0}/s",
        r.elapsed,
        n as f64 / r.elapsed.as_secs_f64()
    );
}
