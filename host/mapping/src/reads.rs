//! The reads a mapper plugin is granted, checked against its manifest:
//! only declared tables and indexes, keys of exactly the declared
//! attributes. Errors go back to the plugin as text naming what is wrong.

use std::sync::Arc;

use serde_json::Value;

use super::store::{Lookup, ModelStore, ShadowStore};
use prism_engine::MapperReads;
use prism_types::mapper_manifest::{MapperManifest, TableDecl};

/// A mapper's reads: its manifest's shadow tables and the model.
pub struct Reads {
    manifest: Arc<MapperManifest>,
    shadow: Arc<dyn ShadowStore>,
    model: Arc<dyn ModelStore>,
}

impl Reads {
    /// Reads through these stores, as `manifest` allows.
    pub fn new(
        manifest: Arc<MapperManifest>,
        shadow: Arc<dyn ShadowStore>,
        model: Arc<dyn ModelStore>,
    ) -> Self {
        Self {
            manifest,
            shadow,
            model,
        }
    }

    fn table(&self, name: &str) -> Result<&TableDecl, String> {
        self.manifest.table(name).ok_or_else(|| {
            let declared: Vec<&str> = self
                .manifest
                .tables
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            format!(
                "table {name:?} is not declared in the mapper manifest (declared: {})",
                declared.join(", ")
            )
        })
    }
}

/// Check that `key` is an object of exactly the table's key attributes,
/// each a string or a number.
pub fn check_key(table: &TableDecl, key: &Value) -> Result<(), String> {
    let ok = key.as_object().is_some_and(|o| {
        o.len() == table.key.len()
            && table
                .key
                .iter()
                .all(|k| o.get(k).is_some_and(|v| v.is_string() || v.is_number()))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a key of table {:?} is a JSON object of its key attributes {:?} (strings or numbers), got {key}",
            table.name, table.key
        ))
    }
}

impl MapperReads for Reads {
    fn shadow_get_many(&self, table: &str, keys: &[Value]) -> Result<Vec<Option<Value>>, String> {
        let decl = self.table(table)?;
        for k in keys {
            check_key(decl, k)?;
        }
        self.shadow.get_many(decl, keys).map_err(|e| e.to_string())
    }

    fn shadow_query(&self, table: &str, index: &str, value: &Value) -> Result<Vec<Value>, String> {
        let decl = self.table(table)?;
        if !(value.is_string() || value.is_number()) {
            return Err(format!(
                "a query value is a JSON string or number, got {value}"
            ));
        }
        let (index, attribute) = if index == decl.partition_key() {
            (None, decl.partition_key())
        } else if let Some(attr) = decl.indexes.get(index) {
            (Some(index), attr.as_str())
        } else {
            let mut known: Vec<&str> = vec![decl.partition_key()];
            known.extend(decl.indexes.keys().map(String::as_str));
            return Err(format!(
                "table {table:?} has no index {index:?} (declared: {})",
                known.join(", ")
            ));
        };
        self.shadow
            .query(Lookup {
                table: decl,
                index,
                attribute,
                value,
            })
            .map_err(|e| e.to_string())
    }

    fn model_get_many(&self, keys: &[String]) -> Result<Vec<Option<Value>>, String> {
        let found = self.model.get_many(keys).map_err(|e| e.to_string())?;
        Ok(found.into_iter().map(|s| s.map(|s| s.doc)).collect())
    }
}
