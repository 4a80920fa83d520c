//! # prism core
//!
//! Everything the dispatcher and the model builder decide, with no AWS SDK:
//! backends (SQS, DynamoDB, S3) plug in through the traits defined here,
//! implemented in `prism-aws`; local ones (outbox, files, memory) live here.
//!
//! - [`dispatch`]: every change to every enabled receiver, in parallel, in order per key;
//! - [`receivers`] and [`breaker`]: the loaded receivers, and the quarantine of failing ones;
//! - [`outputs`] and [`diff`]: output dedup, and the release gate's comparison;
//! - [`sink`]: where messages go (the [`sink::Sink`] and [`sink::Delivery`] traits, the local outbox);
//! - [`spool`]: durable batch buffers and per-product retry lanes;
//! - [`stream`]: one stream batch as the Lambda handles it, with retries that repeat nothing;
//! - [`mapping`]: the model builder (shadow tables → product model);
//! - [`api`]: the read API over the model, free of any HTTP framework;
//! - [`sample`]: the synthetic catalogue the demo and the tests run on.

#![deny(missing_docs)]

pub mod api;
pub mod backfill;
pub mod breaker;
pub mod deadline;
pub mod diff;
pub mod dispatch;
pub mod mapping;
pub mod outputs;
pub mod receivers;
pub mod redrive;
pub mod replay;
pub mod sample;
pub mod sink;
pub mod spool;
pub mod stream;
