//! Catalog mapper: denormalizes the master data system's shadow tables into
//! the product documents the example receivers consume.
//!
//! Shadow tables (logical names, as `catalog.toml` declares them):
//!
//! | table | key | what |
//! |---|---|---|
//! | `products` | `article_no` | brand, product group, lifecycle, EAN, weight, dimensions, logistics class, media |
//! | `prices` | `article_no`, `market` | currency and amount per market |
//! | `texts` | `article_no`, `language` | name, description, bullets per language |
//! | `logistics` | `class_id` | a logistics class shared by many products: packaging type, units per carton |
//! | `brands` | `brand_id` | a brand shared by many products: its name |
//!
//! Indexes: `products` by `by-brand` (`brand_id`) and `by-logistics-class`
//! (`logistics_class`); `prices` and `texts` by their partition key.
//!
//! A change to a product, a price or a text rebuilds that product's
//! document from the shadow tables. A change to a brand or a logistics
//! class is a **cascade**: every product of it gets its document patched
//! (one query for the products, one batched read of their documents).
//! Products whose document does not exist yet are skipped: they are built,
//! with the brand and class as they are then, when their own row arrives.
//!
//! A product is published once it is complete enough to show: it has a
//! name in at least one language. Until then nothing is written (shadow
//! tables have streams of their own, so a row may arrive before its texts).

use prism_mapper_sdk::{
    MapError, Mapper, ModelWrite, ShadowChange, Value, export_mapper, json, log, model, shadow,
};

/// The catalog mapper.
pub struct Catalog;

impl Mapper for Catalog {
    fn map(change: &ShadowChange) -> Result<Vec<ModelWrite>, MapError> {
        match change.table.as_str() {
            "products" => {
                let sku = change.key_str("article_no")?;
                // The row as it is now, not as this change left it: a late
                // retry of an old change must not bring back old data.
                match shadow::get("products", &json!({ "article_no": sku }))? {
                    Some(row) => publish(sku, &row),
                    None => Ok(vec![ModelWrite::delete(sku)]),
                }
            }
            "prices" | "texts" => {
                let sku = change.key_str("article_no")?;
                match shadow::get("products", &json!({ "article_no": sku }))? {
                    Some(row) => publish(sku, &row),
                    None => {
                        log::debug(&format!("{sku}: no product row yet; built when it arrives"));
                        Ok(vec![])
                    }
                }
            }
            "brands" => {
                let id = change.key_str("brand_id")?;
                let name = change.new.as_ref().map(|b| b["name"].clone());
                cascade("by-brand", id, |doc| match &name {
                    Some(n) if n.is_string() => {
                        doc["brand"] = n.clone();
                    }
                    _ => {
                        doc.as_object_mut().map(|o| o.remove("brand"));
                    }
                })
            }
            "logistics" => {
                let id = change.key_str("class_id")?;
                let packaging = change.new.as_ref().map(packaging);
                cascade("by-logistics-class", id, |doc| match &packaging {
                    Some(p) => doc["logistics"]["packaging"] = p.clone(),
                    None => {
                        if let Some(l) = doc["logistics"].as_object_mut() {
                            l.remove("packaging");
                        }
                    }
                })
            }
            other => Err(MapError::reject(format!(
                "table {other:?} is not one the catalog mapper knows"
            ))),
        }
    }
}

export_mapper!(Catalog);

/// The product's document, once it is complete enough to publish.
fn publish(sku: &str, row: &Value) -> Result<Vec<ModelWrite>, MapError> {
    let doc = build(sku, row)?;
    if doc["texts"].as_object().is_none_or(|t| t.is_empty()) {
        log::debug(&format!(
            "{sku}: no texts yet; published when it has a name"
        ));
        return Ok(vec![]);
    }
    Ok(vec![ModelWrite::upsert(sku, doc)])
}

/// Patch the document of every product whose `index` attribute is `id`.
fn cascade(index: &str, id: &str, patch: impl Fn(&mut Value)) -> Result<Vec<ModelWrite>, MapError> {
    let rows = shadow::query("products", index, &json!(id))?;
    let keys: Vec<String> = rows
        .iter()
        .filter_map(|r| r["article_no"].as_str().map(str::to_owned))
        .collect();
    let docs = model::get_many(&keys)?;
    let mut writes = Vec::with_capacity(keys.len());
    for (key, doc) in keys.into_iter().zip(docs) {
        if let Some(mut doc) = doc {
            patch(&mut doc);
            writes.push(ModelWrite::upsert(key, doc));
        }
    }
    log::info(&format!("{index} {id}: {} product documents", writes.len()));
    Ok(writes)
}

fn packaging(class: &Value) -> Value {
    json!({"type": class["packaging_type"], "units_per_carton": class["units_per_carton"]})
}

/// The whole product document, from its row and what it refers to.
fn build(sku: &str, row: &Value) -> Result<Value, MapError> {
    let mut doc = json!({
        "pk": sku,
        "sku": sku,
        "category": row["product_group"],
        "status": row["lifecycle"].as_str().map(str::to_lowercase),
    });
    if let Some(id) = row["brand_id"].as_str()
        && let Some(brand) = shadow::get("brands", &json!({ "brand_id": id }))?
    {
        doc["brand"] = brand["name"].clone();
    }
    let mut texts = json!({});
    for t in shadow::query("texts", "article_no", &json!(sku))? {
        let Some(lang) = t["language"].as_str() else {
            return Err(MapError::reject(format!(
                "{sku}: a text without a language"
            )));
        };
        texts[lang] =
            json!({"name": t["name"], "description": t["description"], "bullets": t["bullets"]});
    }
    doc["texts"] = texts;
    let mut prices = json!({});
    for p in shadow::query("prices", "article_no", &json!(sku))? {
        let Some(market) = p["market"].as_str() else {
            return Err(MapError::reject(format!("{sku}: a price without a market")));
        };
        prices[market] = json!({"currency": p["currency"], "amount": p["amount"]});
    }
    doc["prices"] = prices;
    let mut logistics = json!({
        "ean": row["ean"],
        "weight_g": row["net_weight_g"],
        "dimensions_mm": {"length": row["length_mm"], "width": row["width_mm"], "height": row["height_mm"]},
    });
    if let Some(id) = row["logistics_class"].as_str()
        && let Some(class) = shadow::get("logistics", &json!({ "class_id": id }))?
    {
        logistics["packaging"] = packaging(&class);
    }
    doc["logistics"] = logistics;
    doc["images"] = row["media"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|i| json!({"role": i["kind"], "url": i["href"]}))
                .collect()
        })
        .unwrap_or_default();
    // Absent master data stays absent, rather than `null` in the model.
    strip_nulls(&mut doc);
    Ok(doc)
}

fn strip_nulls(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
        o.values_mut().for_each(strip_nulls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_mapper_sdk::testing;

    fn shadow_product() {
        testing::reset();
        testing::declare_index("products", "by-brand", "brand_id");
        testing::declare_index("products", "by-logistics-class", "logistics_class");
        testing::put_shadow(
            "brands",
            json!({"brand_id": "B1"}),
            json!({"brand_id": "B1", "name": "Voltar"}),
        );
        testing::put_shadow(
            "logistics",
            json!({"class_id": "LC-1"}),
            json!({"class_id": "LC-1", "packaging_type": "box", "units_per_carton": 6}),
        );
        testing::put_shadow(
            "texts",
            json!({"article_no": "P1", "language": "en"}),
            json!({"article_no": "P1", "language": "en", "name": "Drill", "description": "A drill", "bullets": ["Robust"]}),
        );
        testing::put_shadow(
            "prices",
            json!({"article_no": "P1", "market": "DE"}),
            json!({"article_no": "P1", "market": "DE", "currency": "EUR", "amount": 19.99}),
        );
    }

    fn row() -> Value {
        json!({"article_no": "P1", "brand_id": "B1", "product_group": "drills", "lifecycle": "ACTIVE",
               "ean": "4000000000017", "net_weight_g": 900, "length_mm": 200, "width_mm": 80, "height_mm": 60,
               "logistics_class": "LC-1", "media": [{"kind": "main", "href": "https://cdn/p1.jpg"}]})
    }

    fn expected() -> Value {
        json!({"pk": "P1", "sku": "P1", "brand": "Voltar", "category": "drills", "status": "active",
               "texts": {"en": {"name": "Drill", "description": "A drill", "bullets": ["Robust"]}},
               "prices": {"DE": {"currency": "EUR", "amount": 19.99}},
               "logistics": {"ean": "4000000000017", "weight_g": 900,
                             "dimensions_mm": {"length": 200, "width": 80, "height": 60},
                             "packaging": {"type": "box", "units_per_carton": 6}},
               "images": [{"role": "main", "url": "https://cdn/p1.jpg"}]})
    }

    #[test]
    fn a_product_row_is_denormalized_into_one_document() {
        shadow_product();
        testing::put_shadow("products", json!({"article_no": "P1"}), row());
        let c = ShadowChange::insert("products", json!({"article_no": "P1"}), row());
        assert_eq!(
            Catalog::map(&c).unwrap(),
            vec![ModelWrite::upsert("P1", expected())]
        );
        // Without texts the product is not complete: nothing is published.
        testing::delete_shadow("texts", &json!({"article_no": "P1", "language": "en"}));
        assert_eq!(Catalog::map(&c).unwrap(), vec![]);
    }

    #[test]
    fn a_price_rebuilds_its_product_once_the_row_is_there() {
        shadow_product();
        let key = json!({"article_no": "P1", "market": "DE"});
        let c = ShadowChange::insert("prices", key.clone(), json!({}));
        assert_eq!(Catalog::map(&c).unwrap(), vec![], "no product row yet");
        testing::put_shadow("products", json!({"article_no": "P1"}), row());
        assert_eq!(
            Catalog::map(&c).unwrap(),
            vec![ModelWrite::upsert("P1", expected())]
        );
    }

    #[test]
    fn a_brand_rename_patches_every_product_of_the_brand() {
        shadow_product();
        for n in 0..3 {
            let sku = format!("P{n}");
            let brand = if n == 2 { "B2" } else { "B1" };
            testing::put_shadow(
                "products",
                json!({"article_no": sku}),
                json!({"article_no": sku, "brand_id": brand}),
            );
            testing::put_model(&sku, json!({"pk": sku, "brand": "Voltar"}));
        }
        let c = ShadowChange::modify(
            "brands",
            json!({"brand_id": "B1"}),
            json!({"brand_id": "B1", "name": "Voltar"}),
            json!({"brand_id": "B1", "name": "Voltar Pro"}),
        );
        let writes = Catalog::map(&c).unwrap();
        assert_eq!(
            writes,
            vec![
                ModelWrite::upsert("P0", json!({"pk": "P0", "brand": "Voltar Pro"})),
                ModelWrite::upsert("P1", json!({"pk": "P1", "brand": "Voltar Pro"})),
            ]
        );
    }

    #[test]
    fn removing_the_row_deletes_the_document_and_unknown_tables_are_rejected() {
        shadow_product();
        let c = ShadowChange::remove("products", json!({"article_no": "P1"}), row());
        // A late retry of the insert after the row is gone deletes too.
        let late = ShadowChange::insert("products", json!({"article_no": "P1"}), row());
        assert_eq!(Catalog::map(&late).unwrap(), vec![ModelWrite::delete("P1")]);
        // A late retry of the insert after the row is gone deletes too.
        assert_eq!(
            Catalog::map(&ShadowChange::insert(
                "products",
                json!({"article_no": "P1"}),
                row()
            ))
            .unwrap(),
            vec![ModelWrite::delete("P1")]
        );
        assert_eq!(Catalog::map(&c).unwrap(), vec![ModelWrite::delete("P1")]);
        let c = ShadowChange::insert("warehouses", json!({"id": "W"}), json!({}));
        assert!(matches!(Catalog::map(&c), Err(MapError::Reject(r)) if r.contains("warehouses")));
    }
}
