//! Native test support: set the plugin's config and read what it logged.
//!
//! Available only outside Wasm, where a plugin author's `cargo test` runs.
//! State is per thread, so parallel tests do not see each other's.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{Host, Level};

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
    static CONFIG: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    static LOGS: RefCell<Vec<LogRecord>> = const { RefCell::new(Vec::new()) };
}

/// Replace this thread's config, as a registry entry's `config` map would.
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

/// Clear this thread's config and logs.
pub fn reset() {
    CONFIG.with(|c| c.borrow_mut().clear());
    LOGS.with(|l| l.borrow_mut().clear());
}

/// The per-thread store, as the host natively.
pub(crate) struct ThreadStore;

impl Host for ThreadStore {
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        LOGS.with(|l| {
            l.borrow_mut().push(LogRecord {
                level,
                message: message.to_owned(),
                fields: fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            })
        });
    }

    fn config_get(&self, key: &str) -> Option<String> {
        CONFIG.with(|c| c.borrow().get(key).cloned())
    }

    fn config_entries(&self) -> Vec<(String, String)> {
        CONFIG.with(|c| {
            c.borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_and_config_stay_on_their_thread() {
        set_config([("currency", "EUR")]);
        crate::log::error("boom");
        crate::log::log(Level::Info, "with fields", &[("k", "v")]);
        assert_eq!(crate::config::get_or("currency", "USD"), "EUR");
        assert_eq!(
            crate::config::entries(),
            [("currency".to_owned(), "EUR".to_owned())]
        );
        std::thread::spawn(|| {
            assert_eq!(crate::config::get("currency"), None);
            assert!(take_logs().is_empty());
        })
        .join()
        .unwrap();
        let logs = take_logs();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].level, Level::Error);
        assert_eq!(logs[1].fields, [("k".to_owned(), "v".to_owned())]);
        reset();
        assert_eq!(crate::config::get("currency"), None);
    }
}
