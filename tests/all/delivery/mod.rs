//! Delivery: the local pipeline, the Lambda path against moto, spool, windows, dedup, backfill, dead letters, replay, and AWS's failure modes.

mod backfill;
mod chaos;
mod claims;
mod dedup;
mod dlq;
mod entry_points;
mod faults;
mod pipeline;
mod replay;
mod spool;
mod spool_props;
mod sqs;
mod stream;
mod windows;
