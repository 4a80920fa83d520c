//! Native test support: set this receiver's config and read what it logged.
//!
//! Available only outside Wasm, where a plugin author's `cargo test` runs.
//! State is per thread, so parallel tests do not see each other's config.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::host::Level;

/// One record written through [`crate::log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its severity.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its key/value fields.
    pub fields: Vec<(String, String)>,
}

thread_local! {
    pub(crate) static CONFIG: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    pub(crate) static LOGS: RefCell<Vec<LogRecord>> = const { RefCell::new(Vec::new()) };
}

/// Replace this thread's receiver config, as the registry entry's `config` map would.
pub fn set_config<K: Into<String>, V: Into<String>>(entries: impl IntoIterator<Item = (K, V)>) {
    CONFIG.with(|c| {
        *c.borrow_mut() = entries
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    });
}

/// Take (and clear) the records logged on this thread.
pub fn take_logs() -> Vec<LogRecord> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
