//! The mapper's manifest: which plugin builds the model, under what limits,
//! and which shadow tables (keys, indexes) it may read.
//!
//! ```toml
//! schema = 1
//! mapper = "catalog"
//! model_key = "pk"              # the model table's partition key attribute
//!
//! [plugin]
//! digest = "sha256:…"
//! file = "catalog.wasm"          # local: path next to the manifest
//!
//! [limits]                       # all optional
//! timeout_ms = 10000
//!
//! [[tables]]
//! name = "products"              # logical name; the DynamoDB table is PREFIX + name
//! key = ["article_no"]           # partition key [, sort key]
//! indexes = { by-brand = "brand_id" }   # index name = partition attribute
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::limits::Limits;
use crate::manifest::{PluginRef, SCHEMA_VERSION, validate_receiver_id};

/// The mapper's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperManifest {
    /// Schema version; must be [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The mapper's name (lowercase letters, digits and `-`).
    pub mapper: String,
    /// The model table's partition key attribute; the host sets it in every
    /// document to the key the plugin returned.
    #[serde(default = "default_model_key")]
    pub model_key: String,
    /// The plugin.
    pub plugin: PluginRef,
    /// Sandbox limits for one shadow change (reads included).
    #[serde(default)]
    pub limits: MapperLimits,
    /// Free-form config handed to the plugin through `config`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The shadow tables the plugin may read, and whose changes it maps.
    pub tables: Vec<TableDecl>,
}

fn default_model_key() -> String {
    "pk".into()
}

/// One shadow table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDecl {
    /// Its logical name, as the plugin sees it.
    pub name: String,
    /// Its key attributes: the partition key, then the sort key if any.
    pub key: Vec<String>,
    /// Global secondary indexes: index name → its partition key attribute.
    #[serde(default)]
    pub indexes: BTreeMap<String, String>,
}

impl TableDecl {
    /// The partition key attribute.
    pub fn partition_key(&self) -> &str {
        &self.key[0]
    }
}

/// A mapper's limits. A mapper does more per call than a receiver (reads,
/// cascades over thousands of products), so its defaults are larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapperLimits {
    /// Wall-clock budget for one change, reads included, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory cap, in MiB.
    pub memory_mib: u32,
    /// Max model writes one change may cause.
    pub max_writes: usize,
    /// Max total bytes of the documents one change writes.
    pub max_output_bytes: usize,
}

impl Default for MapperLimits {
    fn default() -> Self {
        Self {
            timeout_ms: 30_000,
            memory_mib: 256,
            max_writes: 50_000,
            max_output_bytes: 256 << 20,
        }
    }
}

impl MapperLimits {
    /// As sandbox limits (a fresh sandbox per change).
    pub fn sandbox(&self) -> Limits {
        Limits {
            timeout_ms: self.timeout_ms,
            memory_mib: self.memory_mib,
            max_output_bytes: self.max_output_bytes,
            max_messages: self.max_writes,
            reuse: 1,
        }
    }
}

impl MapperManifest {
    /// Parse and validate a TOML manifest; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        let err = |message: String| Error::new(ErrorKind::MapperManifest, origin, message);
        let m: Self = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        m.validate().map_err(err)?;
        Ok(m)
    }

    /// The manifest as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a manifest serializes")
    }

    /// Check what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != SCHEMA_VERSION {
            return Err(format!(
                "schema {} is not supported (this prism reads schema {SCHEMA_VERSION})",
                self.schema
            ));
        }
        validate_receiver_id(&self.mapper).map_err(|e| format!("mapper: {e}"))?;
        if self.model_key.is_empty() {
            return Err("model_key must not be empty".into());
        }
        self.limits.sandbox().validate()?;
        if self.tables.is_empty() {
            return Err("declare at least one shadow table in [[tables]]".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tables {
            if !seen.insert(t.name.as_str()) {
                return Err(format!("table {:?} is declared twice", t.name));
            }
            if t.name.is_empty() || t.name.contains('/') {
                return Err(format!(
                    "table name {:?} must be non-empty, without '/'",
                    t.name
                ));
            }
            if t.key.is_empty() || t.key.len() > 2 {
                return Err(format!(
                    "table {:?}: key must be [partition] or [partition, sort], got {:?}",
                    t.name, t.key
                ));
            }
        }
        Ok(())
    }

    /// Read a local manifest and its component (`plugin.file`, relative to
    /// the manifest), checking the component's digest.
    pub fn read_local(path: &std::path::Path) -> Result<(Self, Vec<u8>), Error> {
        let origin = path.display().to_string();
        let err = |message: String| Error::new(ErrorKind::MapperManifest, origin.clone(), message);
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let m = Self::from_toml(&text, &origin)?;
        let file =
            m.plugin.file.as_deref().ok_or_else(|| {
                err("plugin.file is not set (a local mapper names its .wasm)".into())
            })?;
        let wasm_path = path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(file);
        let wasm = std::fs::read(&wasm_path)
            .map_err(|e| err(format!("reading {}: {e}", wasm_path.display())))?;
        let actual = crate::digest::Digest::of(&wasm);
        if actual != m.plugin.digest {
            return Err(err(format!(
                "{} has digest {actual}, but the manifest says {}",
                wasm_path.display(),
                m.plugin.digest
            )));
        }
        Ok((m, wasm))
    }

    /// The declaration of a logical table.
    pub fn table(&self, name: &str) -> Option<&TableDecl> {
        self.tables.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
schema = 1
mapper = "catalog"
[plugin]
digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
[[tables]]
name = "products"
key = ["article_no"]
indexes = { by-brand = "brand_id" }
[[tables]]
name = "prices"
key = ["article_no", "market"]
"#;

    #[test]
    fn a_manifest_takes_mapper_defaults() {
        let m = MapperManifest::from_toml(BASE, "m.toml").unwrap();
        assert_eq!(m.model_key, "pk");
        assert_eq!(m.limits, MapperLimits::default());
        assert_eq!(m.table("prices").unwrap().partition_key(), "article_no");
        assert_eq!(m.table("products").unwrap().indexes["by-brand"], "brand_id");
        assert_eq!(MapperManifest::from_toml(&m.to_toml(), "again").unwrap(), m);
    }

    #[test]
    fn problems_name_the_file_and_what_is_wrong() {
        let e = MapperManifest::from_toml(&format!("{BASE}\nflavour = 1"), "m.toml").unwrap_err();
        assert!(
            e.to_string().contains("m.toml") && e.to_string().contains("flavour"),
            "{e}"
        );
        let twice = format!("{BASE}\n[[tables]]\nname = \"prices\"\nkey = [\"a\"]\n");
        let e = MapperManifest::from_toml(&twice, "m.toml").unwrap_err();
        assert!(e.to_string().contains("declared twice"), "{e}");
        let three = BASE.replace(r#"["article_no", "market"]"#, r#"["a", "b", "c"]"#);
        let e = MapperManifest::from_toml(&three, "m.toml").unwrap_err();
        assert!(e.to_string().contains("[partition, sort]"), "{e}");
        let slow = format!("{BASE}\n[limits]\ntimeout_ms = 600000\n");
        assert!(MapperManifest::from_toml(&slow, "m.toml").is_err());
    }
}
