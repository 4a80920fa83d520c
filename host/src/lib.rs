//! # prism host
//!
//! The dispatcher: reads product changes from a DynamoDB stream, runs one
//! sandboxed Wasm component per receiver over them, and delivers the
//! messages each receiver's plugin produces. Before it, the model builder
//! turns the master data system's shadow-table changes into those product
//! changes with one sandboxed mapper component.
//!
//! The pieces, each in its own module:
//! - [`input`]: DynamoDB stream records (Lambda's JSON) to [`change::Change`];
//! - [`manifest`] and [`registry`]: which receivers exist, with what plugin and limits;
//! - [`engine`]: wasmtime, the compile cache, the sandbox and the limits;
//! - [`dispatch`]: every change to every enabled receiver, in parallel, in order per key;
//! - [`outputs`] and [`diff`]: output dedup, and the release gate's comparison;
//! - [`sink`]: where messages go: a local outbox, or SQS;
//! - [`spool`]: durable batch buffers and per-product retry lanes;
//! - [`aws`] and [`reload`]: the DynamoDB registry, S3 artifacts and hot reload;
//! - [`stream`]: one stream batch as the Lambda handles it, with retries that repeat nothing;
//! - [`lambda`]: the Lambda entry point;
//! - [`mapping`]: the model builder (shadow tables → product model) and its Lambda;
//! - [`api`]: the read API over the model.
//!
//! ```
//! // A DynamoDB stream record as Lambda delivers it, to a change with exact
//! // numbers and the changed fields computed by the host.
//! let event = r#"{"Records": [{"eventID": "1", "eventName": "MODIFY", "dynamodb": {
//!     "Keys": {"pk": {"S": "P-1"}}, "SequenceNumber": "42",
//!     "OldImage": {"pk": {"S": "P-1"}, "price": {"N": "19.90"}, "tags": {"SS": ["b", "a"]}},
//!     "NewImage": {"pk": {"S": "P-1"}, "price": {"N": "12345678901234567890.123456789"}, "tags": {"SS": ["a", "b"]}}
//! }}]}"#;
//! let input = prism_host::input::parse(event, "event.json");
//! let change = &input.changes[0];
//! assert_eq!(change.key, "P-1");
//! assert_eq!(change.changed_paths, ["/price"]); // the set's order does not count
//! assert_eq!(
//!     change.new_json.as_deref(),
//!     Some(r#"{"pk":"P-1","price":12345678901234567890.123456789,"tags":["a","b"]}"#)
//! );
//! ```

#![deny(missing_docs)]

pub mod api;
pub mod aws;
pub mod breaker;
pub mod change;
#[doc(hidden)]
pub mod cli;
pub mod diff;
pub mod digest;
pub mod dispatch;
pub mod engine;
pub mod input;
pub mod lambda;
pub mod limits;
pub mod manifest;
pub mod mapping;
pub mod outputs;
pub mod receivers;
pub mod registry;
pub mod reload;
pub mod sample;
pub mod sink;
pub mod spool;
pub mod stream;
pub mod text;
