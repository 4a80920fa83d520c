//! The two things a plugin may ask of the host: logging and its own config.
//!
//! On `wasm32` these call the host's `prism:receiver/log` and
//! `prism:receiver/config` imports. Natively (a plugin author's `cargo test`)
//! log records are kept per thread and config comes from
//! [`crate::testing::set_config`].

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// For debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd, handled.
    Warn,
    /// Something failed.
    Error,
}

/// Logging into the host's structured log.
pub mod log {
    pub use super::Level;

    /// Write a log record with key/value fields.
    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        super::imp::log(level, message, fields);
    }

    /// Log at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message, &[]);
    }

    /// Log at info level.
    pub fn info(message: &str) {
        log(Level::Info, message, &[]);
    }

    /// Log at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message, &[]);
    }

    /// Log at error level.
    pub fn error(message: &str) {
        log(Level::Error, message, &[]);
    }
}

/// This receiver's config map (from its registry entry).
pub mod config {
    /// The value for `key`, if set.
    pub fn get(key: &str) -> Option<String> {
        super::imp::config_get(key)
    }

    /// The value for `key`, or `default`.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_owned())
    }

    /// Every key/value pair, sorted by key.
    pub fn entries() -> Vec<(String, String)> {
        super::imp::config_entries()
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::wasm::bindings::prism::receiver::{config, log as wit_log};

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Trace => wit_log::Level::Trace,
            Level::Debug => wit_log::Level::Debug,
            Level::Info => wit_log::Level::Info,
            Level::Warn => wit_log::Level::Warn,
            Level::Error => wit_log::Level::Error,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wit_log::log(level, message, &fields);
    }

    pub fn config_get(key: &str) -> Option<String> {
        config::get(key)
    }

    pub fn config_entries() -> Vec<(String, String)> {
        config::entries()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Level;
    use crate::testing::{CONFIG, LOGS, LogRecord};

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
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

    pub fn config_get(key: &str) -> Option<String> {
        CONFIG.with(|c| c.borrow().get(key).cloned())
    }

    pub fn config_entries() -> Vec<(String, String)> {
        CONFIG.with(|c| {
            c.borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }
}
