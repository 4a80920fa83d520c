//! The local stores of the model builder: shadow tables and the model in
//! memory, optionally kept in a state directory (`shadow.json`,
//! `model.json`, rewritten atomically) so `prism run --state DIR` carries
//! on where the last run stopped.
//!
//! [`LocalShadow`] is what DynamoDB's shadow tables are on AWS: each shadow
//! change is applied to it before it is mapped. [`LocalModel`] records every
//! write it takes as a model [`Change`], the local model stream the
//! receivers are then run over.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use super::store::{Lookup, ModelStore, Put, ShadowStore, Stored};
use prism_engine::ShadowChange;
use prism_types::change::{Change, ChangeKind};
use prism_types::mapper_manifest::TableDecl;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_json(path: &Path) -> Result<Option<Value>, crate::Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| crate::Error::store(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::Error::store(format!("{}: {e}", path.display()))),
    }
}

fn write_json(path: &Path, v: &Value) -> Result<(), crate::Error> {
    let err = |e: std::io::Error| crate::Error::store(format!("{}: {e}", path.display()));
    prism_types::atomic::write(path, v.to_string().as_bytes()).map_err(err)
}

/// Shadow tables in memory: table → canonical key text → item, with an
/// index per (table, attribute) built on its first query and kept up to
/// date from then on (a cascade queries the same index for every change).
#[derive(Debug, Default)]
pub struct LocalShadow {
    // Lock order: tables, then indexes.
    tables: Mutex<BTreeMap<String, BTreeMap<String, Value>>>,
    indexes: Mutex<BTreeMap<(String, String), Index>>,
}

/// Attribute value (as JSON text) → keys of the items that have it.
type Index = BTreeMap<String, std::collections::BTreeSet<String>>;

impl LocalShadow {
    /// Load `DIR/shadow.json` (empty if absent).
    pub fn open(dir: &Path) -> Result<Self, crate::Error> {
        let tables = match read_json(&dir.join("shadow.json"))? {
            Some(v) => serde_json::from_value(v)
                .map_err(|e| crate::Error::store(format!("{}/shadow.json: {e}", dir.display())))?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            tables: Mutex::new(tables),
            indexes: Mutex::default(),
        })
    }

    /// Write `DIR/shadow.json`.
    pub fn save(&self, dir: &Path) -> Result<(), crate::Error> {
        let v = serde_json::to_value(&*lock(&self.tables)).expect("JSON values serialize");
        write_json(&dir.join("shadow.json"), &v)
    }

    /// Apply a shadow change (what the master system's write did to the table).
    pub fn apply(&self, change: &ShadowChange) {
        let key = change.key.to_string();
        let mut tables = lock(&self.tables);
        let table = tables.entry(change.table.clone()).or_default();
        let old = match &change.new {
            Some(item) => table.insert(key.clone(), item.clone()),
            None => table.remove(&key),
        };
        let mut indexes = lock(&self.indexes);
        for ((t, attribute), index) in indexes.iter_mut() {
            if *t != change.table {
                continue;
            }
            if let Some(v) = old.as_ref().and_then(|o| o.get(attribute))
                && let Some(keys) = index.get_mut(&v.to_string())
            {
                keys.remove(&key);
            }
            if let Some(v) = change.new.as_ref().and_then(|n| n.get(attribute)) {
                index.entry(v.to_string()).or_default().insert(key.clone());
            }
        }
    }
}

impl ShadowStore for LocalShadow {
    fn get_many(
        &self,
        table: &TableDecl,
        keys: &[Value],
    ) -> Result<Vec<Option<Value>>, crate::Error> {
        let tables = lock(&self.tables);
        let t = tables.get(&table.name);
        Ok(keys
            .iter()
            .map(|k| t.and_then(|t| t.get(&k.to_string())).cloned())
            .collect())
    }

    fn query(&self, lookup: Lookup<'_>) -> Result<Vec<Value>, crate::Error> {
        let Lookup {
            table,
            index: _,
            attribute,
            value,
        } = lookup;
        let tables = lock(&self.tables);
        let Some(items) = tables.get(&table.name) else {
            return Ok(Vec::new());
        };
        let mut indexes = lock(&self.indexes);
        let index = indexes
            .entry((table.name.clone(), attribute.to_owned()))
            .or_insert_with(|| {
                let mut index = Index::new();
                for (k, item) in items {
                    if let Some(v) = item.get(attribute) {
                        index.entry(v.to_string()).or_default().insert(k.clone());
                    }
                }
                index
            });
        Ok(index
            .get(&value.to_string())
            .into_iter()
            .flatten()
            .filter_map(|k| items.get(k).cloned())
            .collect())
    }
}

/// The first sequence of a fresh local model stream.
const FIRST_SEQUENCE: u128 = 200_000_000_000_000_000_000;

#[derive(Debug)]
struct ModelState {
    docs: BTreeMap<String, Stored>,
    next_sequence: u128,
    changes: Vec<Change>,
}

/// The product model in memory, recording each write as a model change.
#[derive(Debug)]
pub struct LocalModel {
    state: Mutex<ModelState>,
    time_ms: AtomicU64,
}

impl Default for LocalModel {
    fn default() -> Self {
        Self {
            state: Mutex::new(ModelState {
                docs: BTreeMap::new(),
                next_sequence: FIRST_SEQUENCE,
                changes: Vec::new(),
            }),
            time_ms: AtomicU64::new(0),
        }
    }
}

impl LocalModel {
    /// Load `DIR/model.json` (empty if absent).
    pub fn open(dir: &Path) -> Result<Self, crate::Error> {
        let path = dir.join("model.json");
        let model = Self::default();
        let Some(v) = read_json(&path)? else {
            return Ok(model);
        };
        let bad = |what: &str| crate::Error::store(format!("{}: {what}", path.display()));
        {
            let mut s = lock(&model.state);
            s.next_sequence = v["next_sequence"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("no \"next_sequence\""))?;
            for (k, item) in v["docs"].as_object().ok_or_else(|| bad("no \"docs\""))? {
                let item = item
                    .as_object()
                    .ok_or_else(|| bad("a document is not an object"))?;
                s.docs.insert(k.clone(), Stored::from_item(item.clone()));
            }
        }
        Ok(model)
    }

    /// Write `DIR/model.json`.
    pub fn save(&self, dir: &Path) -> Result<(), crate::Error> {
        let s = lock(&self.state);
        let docs: Map<String, Value> = s
            .docs
            .iter()
            .map(|(k, d)| (k.clone(), Value::Object(d.to_item())))
            .collect();
        write_json(
            &dir.join("model.json"),
            &json!({"next_sequence": s.next_sequence.to_string(), "docs": docs}),
        )
    }

    /// The time stamped on the model changes that follow (the shadow change's).
    pub fn set_time(&self, time_ms: u64) {
        self.time_ms.store(time_ms, Ordering::Relaxed);
    }

    /// Take the model changes recorded so far, in write order.
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut lock(&self.state).changes)
    }

    /// Every document, by key (for tests and the demo's checks).
    pub fn documents(&self) -> BTreeMap<String, Value> {
        lock(&self.state)
            .docs
            .iter()
            .map(|(k, s)| (k.clone(), s.doc.clone()))
            .collect()
    }

    fn record(&self, s: &mut ModelState, key: &str, old: Option<Value>, new: Option<Value>) {
        let kind = match (&old, &new) {
            (None, _) => ChangeKind::Insert,
            (Some(_), Some(_)) => ChangeKind::Modify,
            (Some(_), None) => ChangeKind::Remove,
        };
        let seq = s.next_sequence;
        s.next_sequence += 1;
        let time = self.time_ms.load(Ordering::Relaxed);
        s.changes.push(Change::new(
            key.to_owned(),
            kind,
            old,
            new,
            seq.to_string(),
            time,
        ));
    }
}

impl ModelStore for LocalModel {
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Stored>>, crate::Error> {
        let s = lock(&self.state);
        Ok(keys.iter().map(|k| s.docs.get(k).cloned()).collect())
    }

    fn put(&self, key: &str, next: &Stored, expected: Option<u64>) -> Result<Put, crate::Error> {
        let mut s = lock(&self.state);
        let current = s.docs.get(key);
        if current.map(|c| c.rev) != expected {
            return Ok(Put::Conflict);
        }
        let old = current.map(|c| c.doc.clone());
        s.docs.insert(key.to_owned(), next.clone());
        self.record(&mut s, key, old, Some(next.doc.clone()));
        Ok(Put::Done)
    }

    fn delete(&self, key: &str, expected: u64) -> Result<Put, crate::Error> {
        let mut s = lock(&self.state);
        match s.docs.get(key) {
            Some(c) if c.rev == expected => {
                let old = s.docs.remove(key).map(|c| c.doc);
                self.record(&mut s, key, old, None);
                Ok(Put::Done)
            }
            _ => Ok(Put::Conflict),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_types::change::ChangeKind;

    fn put(s: &LocalShadow, id: &str, brand: Option<&str>) {
        s.apply(&ShadowChange {
            table: "products".into(),
            key: json!({ "article_no": id }),
            kind: ChangeKind::Modify,
            old: None,
            new: brand.map(|b| json!({"article_no": id, "brand_id": b})),
            sequence: "1".into(),
            time_ms: 0,
        });
    }

    #[test]
    fn an_index_follows_the_items_after_its_first_query() {
        let s = LocalShadow::default();
        let t = TableDecl {
            name: "products".into(),
            key: vec!["article_no".into()],
            indexes: [("by-brand".to_owned(), "brand_id".to_owned())].into(),
        };
        let by_brand = |b: &str| -> Vec<String> {
            s.query(Lookup {
                table: &t,
                index: Some("by-brand"),
                attribute: "brand_id",
                value: &json!(b),
            })
            .unwrap()
            .iter()
            .map(|i| i["article_no"].as_str().unwrap().to_owned())
            .collect()
        };
        put(&s, "P1", Some("B1"));
        put(&s, "P2", Some("B1"));
        assert_eq!(by_brand("B1"), ["P1", "P2"]);
        put(&s, "P2", Some("B2")); // moves to another brand
        put(&s, "P3", Some("B1")); // arrives after the index was built
        put(&s, "P1", None); // goes
        assert_eq!(by_brand("B1"), ["P3"]);
        assert_eq!(by_brand("B2"), ["P2"]);
        assert!(by_brand("B3").is_empty());
    }
}
