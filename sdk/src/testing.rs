//! Native test support: set this receiver's config and read what it logged.
//!
//! Available only outside Wasm, where a plugin author's `cargo test` runs.
//! State is per thread, so parallel tests do not see each other's config.
//! (The store is `prism-sdk-core`'s, shared with the mapper SDK.)

pub use prism_sdk_core::testing::{LogRecord, reset, set_config, take_logs};
