//! The guest side of the `mapper` world: generated bindings and the glue
//! that turns them into SDK types. Used only through [`crate::export_mapper!`].

#![cfg(target_arch = "wasm32")]
#![doc(hidden)]
#![allow(missing_docs)]

use serde_json::Value;

use crate::{ChangeKind, MapError, Mapper, ModelWrite, ShadowChange};

pub use crate::bindings;
pub use wit_bindgen;

use bindings::prism::receiver::mapping as wit;
use bindings::prism::receiver::types::ChangeKind as WitKind;

fn json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn change_from_wit(c: wit::ShadowChange) -> ShadowChange {
    ShadowChange {
        table: c.table,
        key: json(c.key),
        kind: match c.kind {
            WitKind::Insert => ChangeKind::Insert,
            WitKind::Modify => ChangeKind::Modify,
            WitKind::Remove => ChangeKind::Remove,
        },
        new: c.new_item.map(json),
        old: c.old_item.map(json),
        sequence: c.sequence,
        time_ms: c.time_ms,
    }
}

pub fn map<M: Mapper>(change: wit::ShadowChange) -> Result<Vec<wit::ModelWrite>, wit::MapError> {
    prism_sdk_core::install_host(&crate::host::imp::WitHost);
    match M::map(&change_from_wit(change)) {
        Ok(writes) => Ok(writes
            .into_iter()
            .map(|w| match w {
                ModelWrite::Upsert { key, doc } => wit::ModelWrite::Upsert((key, doc.to_string())),
                ModelWrite::Delete { key } => wit::ModelWrite::Delete(key),
            })
            .collect()),
        Err(MapError::Reject(r)) => Err(wit::MapError::Reject(r)),
        Err(MapError::Retry(r)) => Err(wit::MapError::Retry(r)),
    }
}
