//! The model builder through the real host: the catalog mapper over the
//! sample shadow stream, a cascade over thousands of products, writes that
//! never go backwards and never send empty changes, and every way a mapper
//! can fail.

use std::sync::Arc;
use std::time::Instant;

use prism_e2e::{catalog_manifest, engine, hostile_mapper_manifest, read, wasm};
use prism_engine::{CallError, ShadowChange};
use prism_mapping::local::{LocalModel, LocalShadow};
use prism_mapping::record::to_shadow_change;
use prism_mapping::store::{ModelStore, Put, Stored};
use prism_mapping::{Error, ErrorKind, MapperManifest, ModelBuilder, WriteTally};
use prism_sample::SampleOptions;
use prism_sample::shadow;
use prism_types::change::ChangeKind;
use prism_types::input::attr;
use prism_types::mapper_manifest::MapperLimits;
use serde_json::{Value, json};

struct Chain {
    shadow: Arc<LocalShadow>,
    model: Arc<LocalModel>,
    builder: ModelBuilder,
}

impl Chain {
    fn new(manifest: MapperManifest, wasm_path: &str) -> Self {
        Self::with_model(manifest, wasm_path, Arc::new(LocalModel::default()))
    }

    fn with_model(manifest: MapperManifest, wasm_path: &str, model: Arc<LocalModel>) -> Self {
        Self::with_store(manifest, wasm_path, model.clone(), model)
    }

    fn with_store(
        manifest: MapperManifest,
        wasm_path: &str,
        model: Arc<LocalModel>,
        store: Arc<dyn ModelStore>,
    ) -> Self {
        let shadow = Arc::new(LocalShadow::default());
        let builder =
            ModelBuilder::new(&engine(), manifest, &read(wasm_path), shadow.clone(), store)
                .expect("mapper loads");
        Self {
            shadow,
            model,
            builder,
        }
    }

    /// What the master system's write does: the shadow table changes, then
    /// its stream record is mapped.
    fn write(&self, c: &ShadowChange) -> Result<WriteTally, Error> {
        self.shadow.apply(c);
        self.builder.apply(c).map(|a| a.tally)
    }
}

fn change(
    table: &str,
    key: Value,
    old: Option<Value>,
    new: Option<Value>,
    seq: u64,
) -> ShadowChange {
    let kind = match (&old, &new) {
        (None, _) => ChangeKind::Insert,
        (Some(_), Some(_)) => ChangeKind::Modify,
        _ => ChangeKind::Remove,
    };
    ShadowChange {
        table: table.into(),
        key,
        kind,
        old,
        new,
        sequence: seq.to_string(),
        time_ms: 0,
    }
}

/// A document as it reads back from DynamoDB JSON (numbers normalized).
fn as_streamed(doc: &Value) -> Value {
    let ddb = attr::item_from_json(doc.as_object().unwrap());
    Value::Object(attr::map_to_json(&ddb, "").unwrap())
}

#[test]
fn the_sample_shadow_stream_builds_exactly_the_sample_model() {
    let sample = shadow::stream(
        SampleOptions {
            products: 120,
            seed: 42,
        },
        "mdm-",
    );
    let manifest = catalog_manifest(&read(wasm::CATALOG));
    let chain = Chain::new(manifest.clone(), wasm::CATALOG);
    let mut total = WriteTally::default();
    for rec in sample.stream.records() {
        let c = to_shadow_change(rec, &manifest, "mdm-").expect("sample records read");
        total.add(&chain.write(&c).unwrap_or_else(|e| panic!("{c:?}: {e}")));
    }
    let built = chain.model.documents();
    assert_eq!(built.len(), sample.expected.len());
    for (key, doc) in &sample.expected {
        assert_eq!(built.get(key), Some(&as_streamed(doc)), "{key}");
    }
    let changes = chain.model.take_changes();
    assert_eq!(changes.len(), total.written());
    assert!(
        changes.iter().all(|c| !c.is_noop()),
        "no model change without a visible change"
    );
    assert!(sample.renamed > 10 && total.unchanged > 500, "{total:?}");
    assert_eq!(total.stale, 0);
}

/// 3,000 products of brand B-01 and 200 of B-02, all in one logistics class.
fn catalogue_of_one_brand(chain: &Chain) -> u64 {
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    let brand = |id: &str, name: &str| json!({"brand_id": id, "name": name});
    for (id, name) in [("B-01", "Voltar"), ("B-02", "Nordlicht")] {
        chain
            .write(&change(
                "brands",
                json!({"brand_id": id}),
                None,
                Some(brand(id, name)),
                next(),
            ))
            .unwrap();
    }
    let class = json!({"class_id": "LC-1", "packaging_type": "box", "units_per_carton": 6});
    chain
        .write(&change(
            "logistics",
            json!({"class_id": "LC-1"}),
            None,
            Some(class),
            next(),
        ))
        .unwrap();
    for n in 0..3200 {
        let sku = format!("P-{n:05}");
        let text = json!({"article_no": sku, "language": "en", "name": format!("Drill {n}")});
        let key = json!({"article_no": sku, "language": "en"});
        chain
            .write(&change("texts", key, None, Some(text), next()))
            .unwrap();
        let row = json!({"article_no": sku, "brand_id": if n < 3000 { "B-01" } else { "B-02" },
                         "product_group": "drills", "lifecycle": "ACTIVE", "logistics_class": "LC-1"});
        chain
            .write(&change(
                "products",
                json!({"article_no": sku}),
                None,
                Some(row),
                next(),
            ))
            .unwrap();
    }
    seq
}

#[test]
fn a_brand_rename_cascades_to_each_of_its_thousands_of_products_once() {
    let chain = Chain::new(catalog_manifest(&read(wasm::CATALOG)), wasm::CATALOG);
    let mut seq = catalogue_of_one_brand(&chain);
    assert_eq!(chain.model.take_changes().len(), 3200);

    let old = json!({"brand_id": "B-01", "name": "Voltar"});
    let new = json!({"brand_id": "B-01", "name": "Voltar Professional"});
    seq += 1;
    let rename = change(
        "brands",
        json!({"brand_id": "B-01"}),
        Some(old),
        Some(new.clone()),
        seq,
    );
    let started = Instant::now();
    let tally = chain.write(&rename).unwrap();
    eprintln!("brand rename over 3000 products: {:?}", started.elapsed());
    assert_eq!((tally.upserted, tally.unchanged, tally.stale), (3000, 0, 0));
    let changes = chain.model.take_changes();
    assert_eq!(changes.len(), 3000);
    for c in &changes {
        assert_eq!(c.kind, ChangeKind::Modify);
        assert_eq!(c.changed_paths, vec!["/brand"], "{}", c.key);
        assert_eq!(c.new.as_ref().unwrap()["brand"], "Voltar Professional");
    }
    let docs = chain.model.documents();
    assert_eq!(
        docs["P-03100"]["brand"], "Nordlicht",
        "the other brand is untouched"
    );

    // Lambda retries the same record: every write is stale, nothing moves.
    let tally = chain.write(&rename).unwrap();
    assert_eq!((tally.upserted, tally.stale), (0, 3000));
    // The master system rewrites the brand as it is: nothing changes downstream.
    seq += 1;
    let same = change(
        "brands",
        json!({"brand_id": "B-01"}),
        Some(new.clone()),
        Some(new),
        seq,
    );
    let tally = chain.write(&same).unwrap();
    assert_eq!((tally.upserted, tally.unchanged), (0, 3000));
    assert!(chain.model.take_changes().is_empty());

    // A shared logistics class changes: all 3,200 products get its packaging.
    seq += 1;
    let class =
        |u: u64| json!({"class_id": "LC-1", "packaging_type": "box", "units_per_carton": u});
    let tally = chain
        .write(&change(
            "logistics",
            json!({"class_id": "LC-1"}),
            Some(class(6)),
            Some(class(8)),
            seq,
        ))
        .unwrap();
    assert_eq!(tally.upserted, 3200);
    let changes = chain.model.take_changes();
    assert!(
        changes
            .iter()
            .all(|c| c.changed_paths == ["/logistics/packaging/units_per_carton"])
    );
}

fn hostile(limits: MapperLimits) -> Chain {
    let manifest = hostile_mapper_manifest(&read(wasm::HOSTILE_MAPPER), limits);
    Chain::new(manifest, wasm::HOSTILE_MAPPER)
}

fn order(id: &str, item: Value, seq: u64) -> ShadowChange {
    change("orders", json!({"id": id}), None, Some(item), seq)
}

#[test]
fn a_late_or_retried_change_never_moves_a_document_backwards() {
    let chain = hostile(MapperLimits::default());
    let v = |n: u64| json!({"model_key": "K", "doc": {"v": n}});
    chain.write(&order("o1", v(2), 20)).unwrap();
    let late = chain.write(&order("o1", v(1), 10)).unwrap();
    assert_eq!((late.upserted, late.stale), (0, 1));
    assert_eq!(chain.model.documents()["K"], json!({"pk": "K", "v": 2}));
    // Sequences of different sources are never compared with each other.
    let other = chain.write(&order("o2", v(3), 5)).unwrap();
    assert_eq!(other.upserted, 1);
    // A delete is stale too when its source has moved on.
    let gone = change(
        "orders",
        json!({"id": "o2"}),
        None,
        Some(json!({"do": "delete", "model_key": "K"})),
        4,
    );
    assert_eq!(chain.write(&gone).unwrap().stale, 1);
    assert_eq!(chain.model.documents()["K"]["v"], 3);
}

/// A model store where another writer changes a document between the
/// builder's read and its write, `conflicts` times: it sets `/theirs` to
/// the number of its write, as a concurrent price or text change would.
struct Contended {
    inner: Arc<LocalModel>,
    conflicts: std::sync::atomic::AtomicUsize,
}

impl Contended {
    fn new(inner: Arc<LocalModel>, conflicts: usize) -> Arc<Self> {
        Arc::new(Self {
            inner,
            conflicts: conflicts.into(),
        })
    }
}

impl ModelStore for Contended {
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Stored>>, prism_mapping::Error> {
        self.inner.get_many(keys)
    }

    fn put(
        &self,
        key: &str,
        next: &Stored,
        expected: Option<u64>,
    ) -> Result<Put, prism_mapping::Error> {
        use std::sync::atomic::Ordering;
        let left = self.conflicts.load(Ordering::SeqCst);
        if left > 0 {
            self.conflicts.store(left - 1, Ordering::SeqCst);
            let current = self.inner.get_many(&[key.to_owned()])?.pop().flatten();
            let mut theirs = current.clone().unwrap_or(Stored {
                doc: json!({"pk": key}),
                rev: 0,
                sources: Default::default(),
            });
            theirs.doc["theirs"] = json!(left);
            theirs.rev += 1;
            self.inner.put(key, &theirs, current.map(|c| c.rev))?;
        }
        self.inner.put(key, next, expected)
    }

    fn delete(&self, key: &str, expected: u64) -> Result<Put, prism_mapping::Error> {
        self.inner.delete(key, expected)
    }
}

#[test]
fn a_concurrent_write_makes_the_change_map_again_and_neither_change_is_lost() {
    // A brand rename patches documents it read; another writer changes one
    // of them in between. Writing the patched old document would undo that
    // write: the change is mapped again on what is there now.
    let model = Arc::new(LocalModel::default());
    let manifest = catalog_manifest(&read(wasm::CATALOG));
    let plain = Chain::with_model(manifest.clone(), wasm::CATALOG, model.clone());
    let seq = catalogue_of_one_brand(&plain);
    let contended = Contended::new(model.clone(), 0);
    let chain = Chain::with_store(
        manifest.clone(),
        wasm::CATALOG,
        model.clone(),
        contended.clone(),
    );
    // The contended chain needs the same shadow tables: replay the catalogue into it.
    catalogue_of_one_brand(&chain);
    contended
        .conflicts
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let old = json!({"brand_id": "B-02", "name": "Nordlicht"});
    let new = json!({"brand_id": "B-02", "name": "Nordlicht Pro"});
    let t = chain
        .write(&change(
            "brands",
            json!({"brand_id": "B-02"}),
            Some(old),
            Some(new),
            seq + 1,
        ))
        .unwrap();
    assert_eq!(t.upserted, 200, "{t:?}");
    let docs = model.documents();
    let b02: Vec<&Value> = docs
        .values()
        .filter(|d| d["brand"] == "Nordlicht Pro")
        .collect();
    assert_eq!(b02.len(), 200);
    let theirs: Vec<&&Value> = b02.iter().filter(|d| d.get("theirs").is_some()).collect();
    assert_eq!(
        theirs.len(),
        1,
        "their write survives, with our rename on top"
    );
    assert_eq!(
        theirs[0]["theirs"], 1,
        "the second concurrent write is the one left"
    );

    // A store that never settles gives up with a clear, retryable error.
    let wasm = read(wasm::HOSTILE_MAPPER);
    let manifest = hostile_mapper_manifest(&wasm, MapperLimits::default());
    let chain = Chain::with_store(
        manifest,
        wasm::HOSTILE_MAPPER,
        model.clone(),
        Contended::new(model, 1000),
    );
    let e = chain
        .write(&order("o1", json!({"model_key": "K", "doc": {"v": 2}}), 2))
        .unwrap_err();
    assert!(
        e.is_transient() && e.to_string().contains("kept changing"),
        "{e}"
    );
}

#[test]
fn mapper_failures_say_what_failed_and_whether_it_is_retried() {
    let limits = MapperLimits {
        timeout_ms: 300,
        max_writes: 10,
        ..MapperLimits::default()
    };
    let chain = hostile(limits);
    let fail = |what: Value| chain.write(&order("o", what, 1)).unwrap_err();

    let e = fail(json!({"do": "reject"}));
    assert!(
        e.kind() == ErrorKind::Rejected
            && e.message() == "master data says no"
            && !e.is_transient()
    );
    let e = fail(json!({"do": "retry"}));
    assert!(e.kind() == ErrorKind::Retry && e.is_transient());
    let e = fail(json!({"do": "trap"}));
    assert!(
        matches!(e.call_error(), Some(CallError::Trap { .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("panicked on purpose") && !e.is_transient(),
        "{e}"
    );
    let e = fail(json!({"do": "spin"}));
    assert!(
        matches!(e.call_error(), Some(CallError::Timeout { budget_ms: 300 })),
        "{e}"
    );
    let e = fail(json!({"do": "undeclared"}));
    assert!(
        e.to_string().contains("table \"secrets\" is not declared"),
        "{e}"
    );
    let e = fail(json!({"do": "bad-index"}));
    assert!(
        e.to_string()
            .contains("has no index \"by-nothing\" (declared: id, by-customer)"),
        "{e}"
    );
    let e = fail(json!({"do": "flood", "count": 11}));
    assert!(
        e.to_string()
            .contains("returned 11 messages, over its limit of 10")
            && !e.is_transient(),
        "{e}"
    );
    assert_eq!((e.kind(), e.reason()), (ErrorKind::Plugin, "output"));

    // None of that touched the model, and the mapper still works.
    assert!(chain.model.documents().is_empty());
    let ok = chain
        .write(&order("o", json!({"doc": {"fine": true}}), 2))
        .unwrap();
    assert_eq!(ok.upserted, 1);
}

#[test]
fn receivers_and_mappers_are_refused_in_each_others_world() {
    let e = engine();
    let msg = e
        .load_mapper(&read(wasm::WEBSITE))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("prism:receiver/mapper@0.1.0") && msg.contains("map-change"),
        "{msg}"
    );
    let err = e.load(&read(wasm::CATALOG)).err().expect("refused");
    let msg = err.to_string();
    assert_eq!(err.kind(), prism_engine::ErrorKind::Shape, "{msg}");
    assert!(
        msg.contains("imports `prism:receiver/shadow@0.1.0`")
            && msg.contains("world grants only prism:receiver/{log,config} and"),
        "{msg}"
    );
}
