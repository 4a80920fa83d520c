//! A product change as a plugin sees it, with typed accessors for its images.

use std::sync::OnceLock;

use serde_json::Value;

use crate::host::HostImage;
use crate::pointer;

pub use prism_sdk_core::ChangeKind;

/// One product document (an item image), read from the host and parsed on
/// first use: a plugin that never looks at an image never copies it.
#[derive(Debug)]
pub struct Image {
    raw: OnceLock<String>,
    /// Where to read it from, while it has not been read (0.2 plugins).
    from: Option<HostImage>,
    parsed: OnceLock<Value>,
}

impl Image {
    /// Wrap JSON text; it is parsed lazily, the first time a field is read.
    pub fn from_json_text(raw: String) -> Self {
        Self {
            raw: OnceLock::from(raw),
            from: None,
            parsed: OnceLock::new(),
        }
    }

    /// An image the host holds, read the first time it is used.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn on_host(from: HostImage) -> Self {
        Self {
            raw: OnceLock::new(),
            from: Some(from),
            parsed: OnceLock::new(),
        }
    }

    /// Wrap an already-parsed document.
    pub fn from_value(value: Value) -> Self {
        let raw = value.to_string();
        Self {
            raw: OnceLock::from(raw),
            from: None,
            parsed: OnceLock::from(value),
        }
    }

    /// The JSON text exactly as the host sent it (read from the host now,
    /// if it has not been read yet).
    pub fn raw(&self) -> &str {
        self.raw
            .get_or_init(|| self.from.map(crate::host::read_image).unwrap_or_default())
    }

    /// Has the image been copied from the host yet? (Always, for an image
    /// built from text or a value.)
    pub fn is_read(&self) -> bool {
        self.raw.get().is_some()
    }

    /// The whole document. Text that is not JSON (the host never sends any) reads as `null`.
    pub fn json(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_str(self.raw()).unwrap_or(Value::Null))
    }

    /// The value at a JSON pointer, e.g. `/texts/en/name`.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.json().pointer(pointer)
    }

    /// The string at `pointer`, if it is a string.
    pub fn str(&self, pointer: &str) -> Option<&str> {
        self.get(pointer)?.as_str()
    }

    /// The number at `pointer` as its exact decimal text (all 38 digits of a
    /// DynamoDB number survive), if it is a number.
    pub fn number_text(&self, pointer: &str) -> Option<String> {
        match self.get(pointer)? {
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The number at `pointer` as `f64` (may round beyond ~15 significant digits).
    pub fn f64(&self, pointer: &str) -> Option<f64> {
        self.get(pointer)?.as_f64()
    }

    /// The number at `pointer` as `i64`, if it is an integer in range.
    pub fn i64(&self, pointer: &str) -> Option<i64> {
        self.get(pointer)?.as_i64()
    }

    /// The boolean at `pointer`, if it is a boolean.
    pub fn bool(&self, pointer: &str) -> Option<bool> {
        self.get(pointer)?.as_bool()
    }

    /// The array at `pointer`, or an empty slice.
    pub fn array(&self, pointer: &str) -> &[Value] {
        self.get(pointer)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

impl Clone for Image {
    fn clone(&self) -> Self {
        Self::from_json_text(self.raw().to_owned())
    }
}

/// One change to one product.
#[derive(Debug, Clone)]
pub struct Change {
    /// The product key.
    pub key: String,
    /// Insert, modify or remove.
    pub kind: ChangeKind,
    /// The product after the change (absent on remove).
    pub new: Option<Image>,
    /// The product before the change (absent on insert).
    pub old: Option<Image>,
    /// The changed fields as JSON pointers; `[""]` for an insert or remove.
    pub changed_paths: Vec<String>,
    /// The stream sequence number (decimal text).
    pub sequence: String,
    /// When the change was written, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

impl Change {
    /// A new product, for tests: changed paths are `[""]`.
    pub fn insert(key: impl Into<String>, new: Value) -> Self {
        Self::build(key.into(), ChangeKind::Insert, None, Some(new))
    }

    /// A changed product, for tests: changed paths are computed as the host does.
    pub fn modify(key: impl Into<String>, old: Value, new: Value) -> Self {
        Self::build(key.into(), ChangeKind::Modify, Some(old), Some(new))
    }

    /// A removed product, for tests: changed paths are `[""]`.
    pub fn remove(key: impl Into<String>, old: Value) -> Self {
        Self::build(key.into(), ChangeKind::Remove, Some(old), None)
    }

    fn build(key: String, kind: ChangeKind, old: Option<Value>, new: Option<Value>) -> Self {
        let changed_paths = match (&old, &new) {
            (Some(o), Some(n)) => pointer::changed_paths(o, n),
            _ => vec![String::new()],
        };
        Self {
            key,
            kind,
            new: new.map(Image::from_value),
            old: old.map(Image::from_value),
            changed_paths,
            sequence: "1".to_owned(),
            time_ms: 0,
        }
    }

    /// Set the sequence number (builder style, for tests).
    pub fn with_sequence(mut self, sequence: impl Into<String>) -> Self {
        self.sequence = sequence.into();
        self
    }

    /// Set the change time (builder style, for tests).
    pub fn with_time_ms(mut self, time_ms: u64) -> Self {
        self.time_ms = time_ms;
        self
    }

    /// Did the field at `pattern` change? A JSON pointer whose tokens may be
    /// `*` (any one token) or `**` (any depth), as in [`Self::changed_any`].
    /// True for inserts and removes, and when a changed path is a selected
    /// field, lies inside one, or contains one.
    pub fn changed(&self, pattern: &str) -> bool {
        self.changed_any(&[pattern])
    }

    /// Did any field selected by one of these patterns (`*` and `**` allowed) change?
    pub fn changed_any(&self, patterns: &[&str]) -> bool {
        self.changed_paths
            .iter()
            .any(|c| patterns.iter().any(|p| pointer::pattern_touches(p, c)))
    }

    /// The current document: the new image, or the old one for a remove.
    pub fn current(&self) -> Option<&Image> {
        self.new.as_ref().or(self.old.as_ref())
    }

    /// Is this a remove?
    pub fn is_remove(&self) -> bool {
        self.kind == ChangeKind::Remove
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_takes_the_same_patterns_as_changed_any() {
        let old = json!({"sku": "p1", "prices": {"EUR": {"amount": 10}}, "name": "a"});
        let new = json!({"sku": "p1", "prices": {"EUR": {"amount": 12}}, "name": "a"});
        let c = Change::modify("p1", old, new);
        for p in [
            "/prices/*",
            "/prices/*/amount",
            "/**",
            "/prices",
            "/prices/EUR/amount",
        ] {
            assert!(c.changed(p), "{p}");
            assert_eq!(c.changed(p), c.changed_any(&[p]), "{p}");
        }
        for p in ["/name", "/prices/*/currency", "/price"] {
            assert!(!c.changed(p), "{p}");
        }
    }

    #[test]
    fn typed_reads() {
        let c = Change::insert(
            "p1",
            json!({"name": {"en": "Drill"}, "price": 19.99, "qty": 3, "ok": true}),
        );
        let img = c.new.as_ref().unwrap();
        assert_eq!(img.str("/name/en"), Some("Drill"));
        assert_eq!(img.number_text("/price").as_deref(), Some("19.99"));
        assert_eq!(img.i64("/qty"), Some(3));
        assert_eq!(img.bool("/ok"), Some(true));
        assert_eq!(img.str("/missing"), None);
        assert!(img.array("/none").is_empty());
    }

    #[test]
    fn numbers_keep_all_digits() {
        let img = Image::from_json_text(r#"{"n": 1234567890.1234567890123456789012345678}"#.into());
        assert_eq!(
            img.number_text("/n").unwrap(),
            "1234567890.1234567890123456789012345678"
        );
    }

    #[test]
    fn changed_checks() {
        let c = Change::modify(
            "p1",
            json!({"price": 1, "name": "a"}),
            json!({"price": 2, "name": "a"}),
        );
        assert!(c.changed("/price"));
        assert!(!c.changed("/name"));
        assert!(c.changed_any(&["/name", "/pri*", "/price"]));
        assert!(Change::insert("p", json!({})).changed("/anything"));
        assert!(Change::remove("p", json!({})).changed("/anything"));
    }
}
