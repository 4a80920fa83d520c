//! A mapper for the host's failure-path tests. The new item's `do` field
//! picks the behaviour; `write` (the default) upserts `item.doc` under
//! `item.model_key`, so tests control the documents exactly.

use prism_mapper_sdk::{MapError, Mapper, ModelWrite, ShadowChange, export_mapper, json, shadow};

/// The hostile mapper.
pub struct Hostile;

impl Mapper for Hostile {
    fn map(change: &ShadowChange) -> Result<Vec<ModelWrite>, MapError> {
        let Some(item) = change.item() else {
            return Ok(vec![]);
        };
        let key = item["model_key"].as_str().unwrap_or("K").to_owned();
        match item["do"].as_str().unwrap_or("write") {
            "reject" => Err(MapError::reject("master data says no")),
            "retry" => Err(MapError::retry("not now")),
            "trap" => panic!("mapper panicked on purpose"),
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "undeclared" => {
                shadow::get("secrets", &json!({"id": "root"}))?;
                Ok(vec![])
            }
            "bad-index" => {
                shadow::query("orders", "by-nothing", &json!("x"))?;
                Ok(vec![])
            }
            "flood" => {
                let n = item["count"].as_u64().unwrap_or(10) as usize;
                Ok((0..n)
                    .map(|i| ModelWrite::upsert(format!("F{i}"), json!({"i": i})))
                    .collect())
            }
            "delete" => Ok(vec![ModelWrite::delete(key)]),
            _ => Ok(vec![ModelWrite::upsert(key, item["doc"].clone())]),
        }
    }
}

export_mapper!(Hostile);
