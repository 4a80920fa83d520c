//! # prism types
//!
//! What every part of prism speaks: a product [`change::Change`] and how it
//! is read from DynamoDB stream records ([`input`], with DynamoDB's exact
//! numbers), plugin [`digest`]s, a receiver's [`limits`] and [`manifest`],
//! the local [`registry`] of manifests, the model's [`bookkeeping`]
//! attributes, and caps on plugin-controlled [`text`]. No Wasm, no AWS.
//!
//! ```
//! // A DynamoDB stream record as Lambda delivers it, to a change with exact
//! // numbers and the changed fields computed by the host.
//! let event = r#"{"Records": [{"eventID": "1", "eventName": "MODIFY", "dynamodb": {
//!     "Keys": {"pk": {"S": "P-1"}}, "SequenceNumber": "42",
//!     "OldImage": {"pk": {"S": "P-1"}, "price": {"N": "19.90"}, "tags": {"SS": ["b", "a"]}},
//!     "NewImage": {"pk": {"S": "P-1"}, "price": {"N": "12345678901234567890.123456789"}, "tags": {"SS": ["a", "b"]}}
//! }}]}"#;
//! let input = prism_types::input::parse(event, "event.json");
//! let change = &input.changes[0];
//! assert_eq!(change.key, "P-1");
//! assert_eq!(change.changed_paths, ["/price"]); // the set's order does not count
//! assert_eq!(
//!     change.new_json.as_deref(),
//!     Some(r#"{"pk":"P-1","price":12345678901234567890.123456789,"tags":["a","b"]}"#)
//! );
//! ```

#![deny(missing_docs)]

pub mod atomic;
pub mod bookkeeping;
pub mod change;
pub mod digest;
pub mod error;
pub mod failure;
pub mod input;
pub mod limits;
pub mod manifest;
pub mod mapper_manifest;
pub mod registry;
pub mod text;

pub use error::{Error, ErrorKind};
