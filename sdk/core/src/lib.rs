//! # prism-sdk-core
//!
//! The layer prism's two plugin SDKs share, so that a receiver (`prism-sdk`)
//! and a mapper (`prism-mapper-sdk`) log, read their config and name change
//! kinds the same way, from one definition. Plugin authors use it through
//! those SDKs, which re-export everything here.
//!
//! On `wasm32` each SDK installs its world's imports as the [`Host`] before
//! it runs plugin code. Natively (a plugin author's `cargo test`) log
//! records and config live in a per-thread store ([`testing`]).

#![deny(missing_docs)]

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use prism_contract::{ChangeKind, Level};

/// The host imports both worlds share: `prism:receiver/log` and
/// `prism:receiver/config`. Each SDK implements it over its own bindings.
pub trait Host: Sync {
    /// Write one log record.
    fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]);
    /// One config value.
    fn config_get(&self, key: &str) -> Option<String>;
    /// Every config entry, sorted by key.
    fn config_entries(&self) -> Vec<(String, String)>;
}

/// Implement [`Host`] as `WitHost` over a world's generated `log` and
/// `config` imports. Both SDKs' worlds import the same two interfaces, but
/// each binds its own world, so each has its own copy of those bindings;
/// this one macro is their one implementation.
#[doc(hidden)]
#[macro_export]
macro_rules! wit_host {
    (log: $($log:ident)::+, config: $($config:ident)::+ $(,)?) => {
        /// The world's `log` and `config` imports, as the SDKs' shared host.
        pub(crate) struct WitHost;

        impl $crate::Host for WitHost {
            fn log(&self, level: $crate::Level, message: &str, fields: &[(&str, &str)]) {
                use $($log)::+ as wit_log;
                let level = match level {
                    $crate::Level::Trace => wit_log::Level::Trace,
                    $crate::Level::Debug => wit_log::Level::Debug,
                    $crate::Level::Info => wit_log::Level::Info,
                    $crate::Level::Warn => wit_log::Level::Warn,
                    $crate::Level::Error => wit_log::Level::Error,
                };
                let fields: ::std::vec::Vec<(::std::string::String, ::std::string::String)> =
                    fields
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect();
                wit_log::log(level, message, &fields);
            }

            fn config_get(&self, key: &str) -> ::std::option::Option<::std::string::String> {
                $($config)::+::get(key)
            }

            fn config_entries(&self) -> ::std::vec::Vec<(::std::string::String, ::std::string::String)> {
                $($config)::+::entries()
            }
        }
    };
}

#[cfg(target_arch = "wasm32")]
static HOST: std::sync::OnceLock<&'static dyn Host> = std::sync::OnceLock::new();

/// Install the world's imports (an SDK's export glue calls this before any
/// plugin code; later calls keep the first host).
#[doc(hidden)]
pub fn install_host(host: &'static dyn Host) {
    #[cfg(target_arch = "wasm32")]
    HOST.get_or_init(|| host);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = host;
}

fn host() -> &'static dyn Host {
    #[cfg(target_arch = "wasm32")]
    {
        *HOST.get().expect(
            "prism SDK: the host was not installed (call through export_receiver!/export_mapper!)",
        )
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        &testing::ThreadStore
    }
}

/// Logging into the host's structured log (with the receiver or mapper,
/// the key and the sequence added by the host).
pub mod log {
    pub use super::Level;

    /// Write a log record with key/value fields.
    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        super::host().log(level, message, fields);
    }

    /// Log at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message, &[]);
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

/// The plugin's config map (from its registry entry or manifest).
pub mod config {
    /// The value for `key`, if set.
    pub fn get(key: &str) -> Option<String> {
        super::host().config_get(key)
    }

    /// The value for `key`, or `default`.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_owned())
    }

    /// Every key/value pair, sorted by key.
    pub fn entries() -> Vec<(String, String)> {
        super::host().config_entries()
    }
}
