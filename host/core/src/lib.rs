//! # prism core
//!
//! The dispatcher: everything it decides, with no AWS SDK. Backends (SQS,
//! DynamoDB, S3) plug in through the traits defined here, implemented in
//! `prism-aws`; local ones (outbox, files, memory) live here. The model
//! builder (`prism-mapping`) and the read API (`prism-read-api`) are products
//! of their own, built on this crate's sinks, stream plumbing and receivers.
//!
//! - [`dispatch`]: every change to every enabled receiver, in parallel, in order per key;
//! - [`receivers`] and [`breaker`]: the loaded receivers, and the quarantine of failing ones;
//! - [`outputs`]: output dedup;
//! - [`sink`]: where messages go (the [`sink::Sink`] and [`sink::Delivery`] traits, the local outbox);
//! - [`spool`]: durable batch buffers and per-product retry lanes;
//! - [`stream`]: one stream batch as the Lambda handles it, with retries that repeat nothing;
//! - [`backfill`], [`redrive`], [`replay`]: the operator's runs, behind traits;
//! - [`model`]: reading the current product model.

#![deny(missing_docs)]

pub mod backfill;
pub mod breaker;
pub mod deadline;
pub mod dispatch;
pub mod error;
pub mod model;
pub mod outputs;
pub mod receivers;
pub mod redrive;
pub mod replay;
pub mod sink;
pub mod spool;
pub mod stream;

pub use error::{Error, ErrorKind};
