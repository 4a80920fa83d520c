//! All end-to-end tests, in one binary (one link instead of many).

mod architecture;
mod aws_calls;
mod aws_registry;
mod backfill;
mod chain_cli;
mod chaos;
mod claims;
mod cleanup;
mod cli;
mod contracts;
mod control_plane;
mod dedup;
mod diff;
mod dlq;
mod docs;
mod emulator;
mod faults;
mod hostile;
mod iam;
mod iam_recorded;
mod input;
mod languages;
mod many_memories;
mod mapper;
mod mapper_aws;
mod memory;
mod package;
mod pipeline;

mod replay;
mod sandbox;
mod scaffold;
mod serve;
mod sim;
mod spool;
mod spool_aws;
mod spool_props;
mod sqs;
mod status;
mod stream;
mod stream_cli;
mod terraform;
mod terraform_alarms;
mod terraform_iam;
mod terraform_mapper;
mod windows;
mod world;

use std::process::{Command, Output};

/// Run the real `prism` entry point with `args`, with its own compile cache.
pub fn prism(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("prism-e2e-cache");
    Command::new(env!("CARGO_BIN_EXE_prism-under-test"))
        .args(args)
        .env("PRISM_CACHE_DIR", cache)
        .env_remove("PRISM_LOG")
        .output()
        .expect("running prism")
}

/// A `cargo` command for a nested build or query. scripts/test-runner
/// sets `RUSTC_BOOTSTRAP=1` on the test binaries so libtest reports each
/// test's time; it must not reach rustc in a nested build, where it would
/// change what build scripts detect and rebuild the shared target.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env_remove("RUSTC_BOOTSTRAP");
    cmd
}

/// stdout and stderr of a run, for assertions and failure messages.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
