//! # prism host
//!
//! The dispatcher: reads product changes from a DynamoDB stream, runs one
//! sandboxed Wasm component per receiver over them, and delivers the
//! messages each receiver's plugin produces.
//!
//! The pieces, each in its own module:
//! - [`input`]: DynamoDB stream records (Lambda's JSON) to [`change::Change`];
//! - [`manifest`] and [`registry`]: which receivers exist, with what plugin and limits;
//! - [`engine`]: wasmtime, the compile cache, the sandbox and the limits;
//! - [`dispatch`]: every change to every enabled receiver, in parallel, in order per key;
//! - [`sink`]: where messages go (a local outbox today).

#![deny(missing_docs)]

pub mod change;
#[doc(hidden)]
pub mod cli;
pub mod digest;
pub mod dispatch;
pub mod engine;
pub mod input;
pub mod limits;
pub mod manifest;
pub mod receivers;
pub mod registry;
pub mod sample;
pub mod sink;
