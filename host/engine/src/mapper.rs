//! Mapper plugins (the `mapper` world): one shadow-table change in, product
//! model writes out, with read access to the shadow tables and the model
//! granted through [`MapperReads`].
//!
//! Each call runs in a fresh sandbox with the mapper's limits; the time
//! budget covers the host's reads too, and the reads of one call are capped
//! at [`MAX_ITEMS_READ`] items.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::LoadSource;
use super::bindings::WitChangeKind;
use super::bindings::mapper::{
    Mapper, MapperPre, WitMapError, WitModelWrite, WitShadowChange, model, shadow,
};
use super::loaded::Loaded;
use super::output_check::OutputError;
use super::plugin::{CallError, classify, new_store};
use super::reads::ReadAccess;
pub use super::reads::{MAX_ITEMS_READ, MapperReads};
use super::sandbox::{GuestLog, HostState};
use prism_types::change::ChangeKind;
use prism_types::digest::Digest;
use prism_types::limits::Limits;

/// The most keys one `get-many` may ask for.
pub const MAX_KEYS_PER_CALL: usize = 20_000;

pub use prism_contract::{MapError, ModelWrite, ShadowChange};

/// What one call returned.
#[derive(Debug)]
pub struct MapResult {
    /// The writes, or the plugin's refusal.
    pub outcome: Result<Vec<ModelWrite>, MapError>,
    /// What the plugin logged.
    pub logs: Vec<GuestLog>,
    /// Items it read through the host.
    pub items_read: usize,
}

/// A compiled, checked mapper, ready to instantiate.
pub struct MapperPlugin {
    loaded: Loaded<MapperPre<HostState>>,
}

impl MapperPlugin {
    pub(super) fn new(loaded: Loaded<MapperPre<HostState>>) -> Self {
        Self { loaded }
    }

    /// The component's digest.
    pub fn digest(&self) -> &Digest {
        &self.loaded.digest
    }

    /// Was it compiled now or loaded precompiled?
    pub fn source(&self) -> LoadSource {
        self.loaded.source
    }

    /// Map one change in a fresh sandbox. `limits.max_messages` caps the
    /// writes and `limits.max_output_bytes` their documents' total bytes.
    pub fn map(
        &self,
        change: &ShadowChange,
        config: Arc<BTreeMap<String, String>>,
        limits: Limits,
        reads: Arc<dyn MapperReads>,
    ) -> Result<MapResult, CallError> {
        let mut store = new_store(self.loaded.pre.engine(), config, limits);
        store.data_mut().grant_reads(ReadAccess {
            reads,
            items_read: 0,
        });
        let instance: Mapper = self
            .loaded
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, limits))?;
        let r = instance
            .call_map_change(&mut store, &to_wit(change))
            .map_err(|e| classify(e, &store, limits))?;
        let items_read = store.data_mut().reads().map_or(0, |r| r.items_read);
        let outcome = match r {
            Ok(writes) => Ok(check_writes(writes, limits)?),
            Err(WitMapError::Reject(r)) => Err(MapError::Reject(super::plugin::cap_reason(&r))),
            Err(WitMapError::Retry(r)) => Err(MapError::Retry(super::plugin::cap_reason(&r))),
        };
        Ok(MapResult {
            outcome,
            logs: store.data_mut().take_logs(),
            items_read,
        })
    }
}

fn to_wit(c: &ShadowChange) -> WitShadowChange {
    WitShadowChange {
        table: c.table.clone(),
        key: c.key.to_string(),
        kind: match c.kind {
            ChangeKind::Insert => WitChangeKind::Insert,
            ChangeKind::Modify => WitChangeKind::Modify,
            ChangeKind::Remove => WitChangeKind::Remove,
        },
        new_item: c.new.as_ref().map(Value::to_string),
        old_item: c.old.as_ref().map(Value::to_string),
        sequence: c.sequence.clone(),
        time_ms: c.time_ms,
    }
}

/// Check the writes against the limits and parse their documents.
fn check_writes(writes: Vec<WitModelWrite>, limits: Limits) -> Result<Vec<ModelWrite>, CallError> {
    if writes.len() > limits.max_messages {
        return Err(OutputError::TooManyMessages {
            count: writes.len(),
            limit: limits.max_messages,
        }
        .into());
    }
    let bytes: usize = writes
        .iter()
        .map(|w| match w {
            WitModelWrite::Upsert((k, d)) => k.len() + d.len(),
            WitModelWrite::Delete(k) => k.len(),
        })
        .sum();
    if bytes > limits.max_output_bytes {
        return Err(OutputError::TooManyBytes {
            bytes,
            limit: limits.max_output_bytes,
        }
        .into());
    }
    let malformed = |index: usize, problem: String| OutputError::Malformed { index, problem };
    writes
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let key = match &w {
                WitModelWrite::Upsert((k, _)) | WitModelWrite::Delete(k) => k,
            };
            if key.is_empty() {
                return Err(malformed(i, "empty model key".into()).into());
            }
            Ok(match w {
                WitModelWrite::Upsert((key, doc)) => {
                    let doc: Value = serde_json::from_str(&doc).map_err(|e| {
                        malformed(i, format!("document for {key:?} is not JSON: {e}"))
                    })?;
                    if !doc.is_object() {
                        return Err(malformed(
                            i,
                            format!("document for {key:?} is not a JSON object"),
                        )
                        .into());
                    }
                    ModelWrite::Upsert { key, doc }
                }
                WitModelWrite::Delete(key) => ModelWrite::Delete { key },
            })
        })
        .collect()
}

fn parse(text: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} is not JSON: {e}"))
}

fn render(items: Vec<Option<Value>>) -> Vec<Option<String>> {
    items
        .into_iter()
        .map(|i| i.as_ref().map(Value::to_string))
        .collect()
}

impl HostState {
    fn access(&mut self) -> Result<&mut ReadAccess, String> {
        self.reads()
            .ok_or_else(|| "reads are not granted to this plugin".to_owned())
    }
}

fn check_count(n: usize) -> Result<(), String> {
    if n > MAX_KEYS_PER_CALL {
        return Err(format!(
            "asked for {n} keys in one call; the most is {MAX_KEYS_PER_CALL}"
        ));
    }
    Ok(())
}

impl shadow::Host for HostState {
    fn get(&mut self, table: String, key: String) -> Result<Option<String>, String> {
        let key = parse(&key, "the key")?;
        let access = self.access()?;
        let found = access.reads.shadow_get_many(&table, &[key])?;
        Ok(render(access.count(found)?).into_iter().next().flatten())
    }

    fn get_many(
        &mut self,
        table: String,
        keys: Vec<String>,
    ) -> Result<Vec<Option<String>>, String> {
        check_count(keys.len())?;
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, k)| parse(k, &format!("key {i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let access = self.access()?;
        let found = access.reads.shadow_get_many(&table, &keys)?;
        Ok(render(access.count(found)?))
    }

    fn query(
        &mut self,
        table: String,
        index: String,
        value: String,
    ) -> Result<Vec<String>, String> {
        let value = parse(&value, "the value")?;
        let access = self.access()?;
        let found = access.reads.shadow_query(&table, &index, &value)?;
        Ok(access.count(found)?.iter().map(Value::to_string).collect())
    }
}

impl model::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<String>, String> {
        let access = self.access()?;
        let found = access.reads.model_get_many(&[key])?;
        Ok(render(access.count(found)?).into_iter().next().flatten())
    }

    fn get_many(&mut self, keys: Vec<String>) -> Result<Vec<Option<String>>, String> {
        check_count(keys.len())?;
        let access = self.access()?;
        let found = access.reads.model_get_many(&keys)?;
        Ok(render(access.count(found)?))
    }
}

impl super::bindings::mapper::prism::receiver::mapping::Host for HostState {}
