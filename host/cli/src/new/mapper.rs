//! `prism new --mapper NAME`: a model mapper crate, its manifest and tests.

use super::SdkSource;

/// The files of a new mapper crate, as (relative path, contents).
pub fn scaffold(name: &str, sdk: &SdkSource) -> Vec<(&'static str, String)> {
    let ty = super::type_name(name);
    let lib = name.replace('-', "_");
    let cargo = super::cargo_toml(name, &sdk.dependency("prism-mapper-sdk"));
    let manifest = format!(
        r#"# The mapper's manifest: `prism mapper check --manifest mapper.toml`, then
# `prism mapper publish --manifest mapper.toml --bucket B` on AWS.
schema = 1
mapper = "{name}"
model_key = "pk"

[plugin]
# The component's sha256 (see README.md for the command that sets it).
digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
file = "target/wasm32-wasip2/release/{lib}.wasm"

[[tables]]
name = "products"
key = ["article_no"]
indexes = {{ by-brand = "brand_id" }}

[[tables]]
name = "brands"
key = ["brand_id"]
"#
    );
    let readme = format!(
        "# {name}\n\nA prism model mapper: shadow-table changes in, product documents out.\n\n```sh\n\
         cargo test\n\
         cargo build --release --target wasm32-wasip2\n\
         # record the component's digest in the manifest:\n\
         sed -i \"s/^digest = .*/digest = \\\"sha256:$(sha256sum target/wasm32-wasip2/release/{lib}.wasm | cut -d' ' -f1)\\\"/\" mapper.toml\n\
         prism mapper check --manifest mapper.toml\n```\n"
    );
    let src = TEMPLATE.replace("Example", &ty).replace("{name}", name);
    vec![
        ("Cargo.toml", cargo),
        ("src/lib.rs", src),
        ("mapper.toml", manifest),
        ("README.md", readme),
        (".gitignore", "target/\n".to_owned()),
    ]
}

const TEMPLATE: &str = r##"//! {name}: a prism model mapper.
//!
//! A product row becomes a product document with its brand's name; a
//! brand's rename rewrites every product of that brand.

use prism_mapper_sdk::{MapError, Mapper, ModelWrite, ShadowChange, Value, export_mapper, json, shadow};

/// The mapper.
pub struct Example;

impl Mapper for Example {
    fn map(change: &ShadowChange) -> Result<Vec<ModelWrite>, MapError> {
        match change.table.as_str() {
            "products" => product(change),
            "brands" => {
                let brand = change.key_str("brand_id")?;
                let Some(b) = &change.new else { return Ok(vec![]) };
                let mut writes = Vec::new();
                for p in shadow::query("products", "by-brand", &json!(brand))? {
                    writes.push(document(&p, Some(b))?);
                }
                Ok(writes)
            }
            other => Err(MapError::reject(format!("unknown table {other}"))),
        }
    }
}

fn product(change: &ShadowChange) -> Result<Vec<ModelWrite>, MapError> {
    let sku = change.key_str("article_no")?;
    let Some(item) = &change.new else {
        return Ok(vec![ModelWrite::delete(sku)]);
    };
    let brand = match item["brand_id"].as_str() {
        Some(id) => shadow::get("brands", &json!({"brand_id": id}))?,
        None => None,
    };
    Ok(vec![document(item, brand.as_ref())?])
}

fn document(item: &Value, brand: Option<&Value>) -> Result<ModelWrite, MapError> {
    let sku = item["article_no"]
        .as_str()
        .ok_or_else(|| MapError::reject("a product without article_no"))?;
    let brand = brand.and_then(|b| b["name"].as_str()).unwrap_or("");
    Ok(ModelWrite::upsert(sku, json!({"pk": sku, "name": item["name"], "brand": brand})))
}

export_mapper!(Example);

#[cfg(test)]
mod tests {
    use super::*;
    use prism_mapper_sdk::testing;

    #[test]
    fn a_product_gets_its_brand_name() {
        testing::put_shadow("brands", json!({"brand_id": "B1"}), json!({"brand_id": "B1", "name": "Voltar"}));
        let c = ShadowChange::insert(
            "products",
            json!({"article_no": "P1"}),
            json!({"article_no": "P1", "name": "Drill", "brand_id": "B1"}),
        );
        assert_eq!(
            Example::map(&c).unwrap(),
            vec![ModelWrite::upsert("P1", json!({"pk": "P1", "name": "Drill", "brand": "Voltar"}))]
        );
    }

    #[test]
    fn a_removed_product_is_deleted() {
        let c = ShadowChange::remove("products", json!({"article_no": "P1"}), json!({"article_no": "P1"}));
        assert_eq!(Example::map(&c).unwrap(), vec![ModelWrite::delete("P1")]);
    }
}
"##;
