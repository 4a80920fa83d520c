//! prism's own attributes in model items: written by the model builder,
//! never shown to plugins or API callers.

use serde_json::{Map, Value};

/// The revision attribute.
pub const REV_ATTR: &str = "_prism_rev";
/// The per-source sequence map attribute.
pub const SOURCES_ATTR: &str = "_prism_sources";
/// Attributes starting with this are prism's own, never shown to plugins.
pub const BOOKKEEPING_PREFIX: &str = "_prism_";

/// Remove prism's bookkeeping attributes from a model item, and return
/// them as JSON text (keys sorted), if it had any.
pub fn take_bookkeeping(item: &mut Map<String, Value>) -> Option<String> {
    let books: Map<String, Value> = item
        .iter()
        .filter(|(k, _)| k.starts_with(BOOKKEEPING_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    strip_bookkeeping(item);
    (!books.is_empty()).then(|| Value::Object(books).to_string())
}

/// Remove prism's bookkeeping attributes from a model item.
pub fn strip_bookkeeping(item: &mut Map<String, Value>) {
    item.retain(|k, _| !k.starts_with(BOOKKEEPING_PREFIX));
}
