//! `cargo bench -p prism-e2e --bench mapper`: the model builder's numbers,
//! printed (README, Performance).
//!
//! 1. The sample shadow stream (brands, logistics classes, products, prices,
//!    texts; edits, a brand rename, a class change, removes, a full refresh)
//!    through the catalog mapper into a local model: time per shadow change,
//!    items read, model writes.
//! 2. A cascade: one brand shared by 10,000 products renamed (10,000
//!    writes), then rewritten as it is (nothing written).
//!
//! The stores are the local ones (memory): this measures the mapper and the
//! host, not DynamoDB.

use std::sync::Arc;
use std::time::Instant;

use prism_e2e::{catalog_manifest, read, wasm};
use prism_engine::{EngineOptions, PluginEngine, ShadowChange};
use prism_mapping::local::{LocalModel, LocalShadow};
use prism_mapping::record::to_shadow_change;
use prism_mapping::{ModelBuilder, WriteTally};
use prism_sample::{SampleOptions, shadow};
use prism_types::change::ChangeKind;
use serde_json::{Value, json};

fn builder(engine: &PluginEngine) -> (Arc<LocalShadow>, Arc<LocalModel>, ModelBuilder) {
    let wasm = read(wasm::CATALOG);
    let (s, m) = (
        Arc::new(LocalShadow::default()),
        Arc::new(LocalModel::default()),
    );
    let b =
        ModelBuilder::new(engine, catalog_manifest(&wasm), &wasm, s.clone(), m.clone()).unwrap();
    (s, m, b)
}

fn change(table: &str, key: Value, new: Value, seq: u64) -> ShadowChange {
    ShadowChange {
        table: table.into(),
        key,
        kind: ChangeKind::Modify,
        old: None,
        new: Some(new),
        sequence: seq.to_string(),
        time_ms: 0,
    }
}

fn main() {
    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();

    println!("1. The sample shadow stream through the catalog mapper (local stores)\n");
    println!(
        "  products  shadow changes  model writes  unchanged   items read      total   µs/change"
    );
    for products in [300, 3000] {
        let sample = shadow::stream(SampleOptions { products, seed: 42 }, "");
        let (s, m, b) = builder(&engine);
        let manifest = b.manifest().clone();
        let changes: Vec<ShadowChange> = sample
            .stream
            .records()
            .iter()
            .map(|r| to_shadow_change(r, &manifest, "").unwrap())
            .collect();
        let mut tally = WriteTally::default();
        let mut read_items = 0;
        let started = Instant::now();
        for c in &changes {
            s.apply(c);
            let a = b.apply(c).unwrap();
            tally.add(&a.tally);
            read_items += a.items_read;
        }
        let took = started.elapsed();
        assert_eq!(m.documents().len(), sample.expected.len());
        println!(
            "  {products:>8}  {:>14}  {:>12}  {:>9}  {read_items:>11}  {:>9.1?}  {:>10.1}",
            changes.len(),
            tally.written(),
            tally.unchanged,
            took,
            took.as_secs_f64() * 1e6 / changes.len() as f64
        );
    }

    println!("\n2. A cascade: one brand, 10,000 products\n");
    let (s, m, b) = builder(&engine);
    let mut seq = 0;
    let mut write = |t: &str, key: Value, item: Value| {
        seq += 1;
        let c = change(t, key, item, seq);
        s.apply(&c);
        b.apply(&c).unwrap()
    };
    write(
        "brands",
        json!({"brand_id": "B-01"}),
        json!({"brand_id": "B-01", "name": "Voltar"}),
    );
    for n in 0..10_000 {
        let sku = format!("P-{n:05}");
        write(
            "texts",
            json!({"article_no": sku, "language": "en"}),
            json!({"article_no": sku, "language": "en", "name": "Drill"}),
        );
        write(
            "products",
            json!({"article_no": sku}),
            json!({"article_no": sku, "brand_id": "B-01", "lifecycle": "ACTIVE"}),
        );
    }
    m.take_changes();
    for (what, name) in [
        ("renamed", "Voltar Professional"),
        ("rewritten as it is", "Voltar Professional"),
    ] {
        let started = Instant::now();
        let a = write(
            "brands",
            json!({"brand_id": "B-01"}),
            json!({"brand_id": "B-01", "name": name}),
        );
        let took = started.elapsed();
        println!(
            "  brand {what:<20} {:>6} written, {:>6} unchanged, {:>6} items read in {:>8.1?} ({:.1} µs per product); {} model changes",
            a.tally.written(),
            a.tally.unchanged,
            a.items_read,
            took,
            took.as_secs_f64() * 1e6 / 10_000.0,
            m.take_changes().len()
        );
    }
}
