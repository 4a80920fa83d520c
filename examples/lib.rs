//! Small programs that use prism's crates directly, one concept each. Each
//! is a complete `main` of 50 to 90 lines; read them in this order:
//!
//! | example | concept | crates |
//! |---|---|---|
//! | `run-one-plugin` | embed the Wasm engine, load one receiver, run it on one change in a sandbox session | `prism-engine` |
//! | `dispatch-a-file` | run every receiver of a local registry over a file of stream events, into an outbox | `prism-core` |
//! | `write-a-backend` | implement the [`Sink`](prism_core::sink::Sink) trait (where messages go) and dispatch into it | `prism-core` |
//!
//! ```text
//! cargo run -p prism-examples --example run-one-plugin -- PLUGIN.wasm
//! cargo run -p prism-examples --example dispatch-a-file -- REGISTRY_DIR EVENTS OUTBOX_DIR
//! cargo run -p prism-examples --example write-a-backend -- PLUGIN.wasm
//! ```
//!
//! `tests/all/project/examples.rs` runs all three on every CI run.

#![deny(missing_docs)]
