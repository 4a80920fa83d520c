//! The sample catalogue as the master data system holds it: five shadow
//! tables, and a stream of their changes that, mapped by the example
//! `catalog` mapper, builds exactly the documents of [`super::product`].
//!
//! | table | key | item |
//! |---|---|---|
//! | `brands` | `brand_id` | `name` |
//! | `logistics` | `class_id` | `packaging_type`, `units_per_carton` (shared by many products) |
//! | `products` | `article_no` | `brand_id`, `product_group`, `lifecycle`, `ean`, `net_weight_g`, `length_mm`, `width_mm`, `height_mm`, `logistics_class`, `media` |
//! | `prices` | `article_no`, `market` | `currency`, `amount` |
//! | `texts` | `article_no`, `language` | `name`, `description`, `bullets` |
//!
//! The stream: brands, then per product its logistics class (when new),
//! texts, prices and last its row; single-field edits; a brand rename and a
//! logistics-class change (cascades); a few products removed; and a full
//! refresh that rewrites every item, of which about 3 % really change.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{BRANDS, Rng, SampleOptions, StreamWriter, edit, product};
use prism_types::mapper_manifest::{MapperManifest, TableDecl};

/// The shadow tables, as the catalog mapper's manifest declares them.
pub fn tables() -> Vec<TableDecl> {
    let t = |name: &str, key: &[&str], indexes: &[(&str, &str)]| TableDecl {
        name: name.to_owned(),
        key: key.iter().map(|k| (*k).to_owned()).collect(),
        indexes: indexes
            .iter()
            .map(|(i, a)| ((*i).to_owned(), (*a).to_owned()))
            .collect(),
    };
    vec![
        t("brands", &["brand_id"], &[]),
        t("logistics", &["class_id"], &[]),
        t(
            "products",
            &["article_no"],
            &[
                ("by-brand", "brand_id"),
                ("by-logistics-class", "logistics_class"),
            ],
        ),
        t("prices", &["article_no", "market"], &[]),
        t("texts", &["article_no", "language"], &[]),
    ]
}

/// The catalog mapper's manifest for the sample's shadow tables.
pub fn manifest(plugin: prism_types::manifest::PluginRef) -> MapperManifest {
    MapperManifest {
        schema: prism_types::manifest::SCHEMA_VERSION,
        mapper: "catalog".into(),
        model_key: "pk".into(),
        plugin,
        limits: Default::default(),
        config: Default::default(),
        tables: tables(),
    }
}

/// What the stream renames `BRANDS[2]` to.
pub const RENAMED_BRAND: &str = "Nordlicht Pro";

/// The brand id of a brand name (the renamed brand keeps its id).
pub fn brand_id(name: &str) -> String {
    let i = if name == RENAMED_BRAND {
        2
    } else {
        BRANDS
            .iter()
            .position(|b| *b == name)
            .unwrap_or(BRANDS.len())
    };
    format!("B-{:02}", i + 1)
}

/// Logistics classes met so far: (packaging type, units per carton).
#[derive(Debug, Default)]
pub struct Classes(Vec<(String, u64)>);

impl Classes {
    /// The class id for this packaging, and whether it is new.
    fn id(&mut self, packaging: &Value) -> (String, bool) {
        let kind = packaging["type"].as_str().unwrap_or("").to_owned();
        let units = packaging["units_per_carton"].as_u64().unwrap_or(1);
        let found = self.0.iter().position(|(k, u)| *k == kind && *u == units);
        let (i, new) = match found {
            Some(i) => (i, false),
            None => {
                self.0.push((kind, units));
                (self.0.len() - 1, true)
            }
        };
        (format!("LC-{:03}", i + 1), new)
    }

    fn item(&self, i: usize) -> (Value, Value) {
        let id = format!("LC-{:03}", i + 1);
        let (kind, units) = &self.0[i];
        (
            json!({ "class_id": id }),
            json!({"class_id": id, "packaging_type": kind, "units_per_carton": units}),
        )
    }
}

/// One shadow item: (table, key attributes, item).
pub type Item = (&'static str, Value, Value);

/// A product document as shadow items: its texts, its prices and its row,
/// in that order (the row last, so the mapper finds the rest), plus the
/// logistics class it needs if that class is new.
pub fn decompose(doc: &Value, classes: &mut Classes) -> (Option<Item>, Vec<Item>) {
    let sku = doc["sku"].as_str().unwrap_or_default();
    let mut items = Vec::new();
    for (lang, t) in doc["texts"].as_object().into_iter().flatten() {
        let key = json!({"article_no": sku, "language": lang});
        let item = json!({"article_no": sku, "language": lang, "name": t["name"], "description": t["description"], "bullets": t["bullets"]});
        items.push(("texts", key, item));
    }
    for (market, p) in doc["prices"].as_object().into_iter().flatten() {
        let key = json!({"article_no": sku, "market": market});
        let item = json!({"article_no": sku, "market": market, "currency": p["currency"], "amount": p["amount"]});
        items.push(("prices", key, item));
    }
    let (class_id, new_class) = classes.id(&doc["logistics"]["packaging"]);
    let class = new_class.then(|| {
        let (key, item) = classes.item(classes.0.len() - 1);
        ("logistics", key, item)
    });
    let l = &doc["logistics"];
    let media: Vec<Value> = doc["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| json!({"kind": i["role"], "href": i["url"]}))
        .collect();
    items.push((
        "products",
        json!({ "article_no": sku }),
        json!({
            "article_no": sku,
            "brand_id": brand_id(doc["brand"].as_str().unwrap_or_default()),
            "product_group": doc["category"],
            "lifecycle": doc["status"].as_str().unwrap_or_default().to_uppercase(),
            "ean": l["ean"],
            "net_weight_g": l["weight_g"],
            "length_mm": l["dimensions_mm"]["length"],
            "width_mm": l["dimensions_mm"]["width"],
            "height_mm": l["dimensions_mm"]["height"],
            "logistics_class": class_id,
            "media": media,
        }),
    ));
    (class, items)
}

/// The sample shadow stream and the model it must build.
pub struct ShadowSample {
    /// The stream records of all five tables, in write order.
    pub stream: StreamWriter,
    /// The product documents the mapper must end with, by key.
    pub expected: BTreeMap<String, Value>,
    /// How many products the brand rename touches.
    pub renamed: usize,
    /// How many products the logistics-class change touches.
    pub reclassed: usize,
}

/// Physical table names in the sample: `prefix` + logical name.
pub fn stream(opts: SampleOptions, prefix: &str) -> ShadowSample {
    let mut w = StreamWriter::new();
    let mut rng = Rng(opts.seed);
    let mut classes = Classes::default();
    let table = |t: &str| format!("{prefix}{t}");
    let push = |w: &mut StreamWriter, (t, key, item): &Item, old: Option<&Value>| {
        w.push_to(&table(t), key, old, Some(item));
    };
    for name in BRANDS {
        let id = brand_id(name);
        push(
            &mut w,
            &(
                "brands",
                json!({"brand_id": id}),
                json!({"brand_id": id, "name": name}),
            ),
            None,
        );
    }
    let mut docs: Vec<Option<Value>> = (0..opts.products)
        .map(|n| Some(product(n, opts.seed)))
        .collect();
    for doc in docs.iter().flatten() {
        let (class, items) = decompose(doc, &mut classes);
        for item in class.iter().chain(&items) {
            push(&mut w, item, None);
        }
    }
    // Single-field edits: only the items that changed are written.
    for _ in 0..opts.products / 2 {
        let n = rng.below(opts.products as u64) as usize;
        let Some(old) = docs[n].clone() else { continue };
        let mut new = old.clone();
        edit(&mut new, &mut rng);
        write_changes(&mut w, &table, &mut classes, &old, &new, false);
        docs[n] = Some(new);
    }
    // A brand rename and a logistics-class change: one item each, many products.
    let renamed = cascade(
        &mut docs,
        |d| d["brand"] == json!(BRANDS[2]),
        |d| d["brand"] = json!(RENAMED_BRAND),
    );
    let id = brand_id(BRANDS[2]);
    w.push_to(
        &table("brands"),
        &json!({"brand_id": id}),
        Some(&json!({"brand_id": id, "name": BRANDS[2]})),
        Some(&json!({"brand_id": id, "name": RENAMED_BRAND})),
    );
    let (key, old_class) = classes.item(0);
    classes.0[0].1 += 12;
    let (_, new_class) = classes.item(0);
    let (kind, units) = (
        old_class["packaging_type"].clone(),
        old_class["units_per_carton"].clone(),
    );
    let reclassed = cascade(
        &mut docs,
        |d| {
            d["logistics"]["packaging"]["type"] == kind
                && d["logistics"]["packaging"]["units_per_carton"] == units
        },
        |d| d["logistics"]["packaging"]["units_per_carton"] = new_class["units_per_carton"].clone(),
    );
    w.push_to(
        &table("logistics"),
        &key,
        Some(&old_class),
        Some(&new_class),
    );
    // A few products go: their row first, then their texts and prices.
    for k in 0..(opts.products / 60).max(1) {
        let n = (k * 37 + 11) % opts.products;
        if let Some(old) = docs[n].take() {
            let (_, mut items) = decompose(&old, &mut classes);
            items.rotate_right(1);
            for (t, key, item) in &items {
                w.push_to(&table(t), key, Some(item), None);
            }
        }
    }
    // Full refresh: every item rewritten, about 3 % of products really changed.
    for name in BRANDS {
        let id = brand_id(name);
        let name = if *name == BRANDS[2] {
            RENAMED_BRAND
        } else {
            name
        };
        let b = json!({"brand_id": id, "name": name});
        w.push_to(
            &table("brands"),
            &json!({"brand_id": id}),
            Some(&b),
            Some(&b),
        );
    }
    for i in 0..classes.0.len() {
        let (key, item) = classes.item(i);
        w.push_to(&table("logistics"), &key, Some(&item), Some(&item));
    }
    for slot in docs.iter_mut() {
        let Some(old) = slot.clone() else { continue };
        let mut new = old.clone();
        if rng.below(100) < 3 {
            edit(&mut new, &mut rng);
        }
        write_changes(&mut w, &table, &mut classes, &old, &new, true);
        *slot = Some(new);
    }
    let expected = docs
        .into_iter()
        .flatten()
        .map(|d| (d["pk"].as_str().unwrap_or_default().to_owned(), d))
        .collect();
    ShadowSample {
        stream: w,
        expected,
        renamed,
        reclassed,
    }
}

/// Apply `patch` to every document that `belongs`; how many did.
fn cascade(
    docs: &mut [Option<Value>],
    belongs: impl Fn(&Value) -> bool,
    patch: impl Fn(&mut Value),
) -> usize {
    let mut n = 0;
    for d in docs.iter_mut().flatten().filter(|d| belongs(d)) {
        patch(d);
        n += 1;
    }
    n
}

/// Write the shadow items that differ between two versions of a product
/// (all of them when `all`, as a full refresh does).
fn write_changes(
    w: &mut StreamWriter,
    table: &impl Fn(&str) -> String,
    classes: &mut Classes,
    old: &Value,
    new: &Value,
    all: bool,
) {
    let (_, before) = decompose(old, classes);
    let (class, after) = decompose(new, classes);
    if let Some((t, key, item)) = &class {
        w.push_to(&table(t), key, None, Some(item));
    }
    for ((t, key, was), (_, _, now)) in before.iter().zip(&after) {
        if all || was != now {
            w.push_to(&table(t), key, Some(was), Some(now));
        }
    }
}
