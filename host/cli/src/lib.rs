//! The `prism` command line: one module per subcommand. The binary's
//! `main` is [`main`]; it lives in the library so end-to-end tests can run
//! the very same entry point. Errors here are `anyhow` (binary code).

#![allow(missing_docs)]

mod args;
#[cfg(feature = "aws")]
mod aws_args;
#[cfg(feature = "aws")]
mod backfill;
mod chain;
mod demo;
mod determinism;
#[cfg(feature = "aws")]
mod dev;
#[cfg(feature = "aws")]
mod dev_mapper;
#[cfg(feature = "aws")]
mod diff;
#[cfg(feature = "aws")]
mod dlq;
mod engine_opts;
#[cfg(feature = "aws")]
mod flush;
#[cfg(feature = "aws")]
mod follow;
#[cfg(feature = "aws")]
mod gate;
#[cfg(feature = "aws")]
mod http;
mod mapper;
mod new;
mod plugin;
mod progress;
#[cfg(feature = "aws")]
mod register;
#[cfg(feature = "aws")]
mod registry_cmds;
#[cfg(feature = "aws")]
mod replay;
mod run;
mod sample;
#[cfg(feature = "aws")]
mod serve;
#[cfg(feature = "aws")]
mod status;
mod summary;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// prism: one dispatcher, one sandboxed Wasm plugin per receiver.
///
/// Product changes (DynamoDB stream records) go in; each receiver's plugin
/// filters and formats them; messages come out per receiver.
#[derive(Debug, Parser)]
#[command(name = "prism", bin_name = "prism", version, propagate_version = true)]
pub struct Cli {
    /// Log more (-v: info, -vv: debug). `PRISM_LOG` (e.g. `prism_core=debug`) overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(run::Args),
    /// Check or preview a plugin.
    #[command(subcommand)]
    Plugin(plugin::Command),
    New(new::Args),
    Sample(sample::Args),
    Demo(demo::Args),
    #[cfg(feature = "aws")]
    /// Per receiver: state (enabled, disabled, quarantined), version, queue
    /// depth and oldest-message age, DLQ depth, lanes waiting, last error.
    Status(status::Args),
    #[cfg(feature = "aws")]
    /// Run the existing catalogue through one receiver: parallel Scan
    /// segments, resumable, paced, safe beside the live stream.
    Backfill(backfill::Args),
    #[cfg(feature = "aws")]
    /// A receiver's dead-letter queue: list, show, redrive.
    #[command(subcommand)]
    Dlq(dlq::Command),
    #[cfg(feature = "aws")]
    Dev(dev::Args),
    #[cfg(feature = "aws")]
    Flush(flush::Args),
    #[cfg(feature = "aws")]
    Replay(replay::Args),
    #[cfg(feature = "aws")]
    Serve(serve::Args),
    /// Check or publish the model mapper (shadow tables → product model).
    #[command(subcommand)]
    Mapper(mapper::Command),
}

/// The whole program: parse arguments, set up logging, run, map errors to
/// exit status 1 with the error chain on stderr.
pub fn main() -> ExitCode {
    let args = Cli::parse();
    init_logging(args.verbose);
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Run the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    #[cfg(feature = "aws")]
    prism_aws::set_default_caller(match &cli.command {
        Command::Plugin(c) if c.is_deploy() => prism_aws::Caller::Deployer,
        _ => prism_aws::Caller::Operator,
    });
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Plugin(c) => plugin::run(c),
        Command::New(a) => new::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Demo(a) => demo::run(a),
        #[cfg(feature = "aws")]
        Command::Status(a) => status::run(a),
        #[cfg(feature = "aws")]
        Command::Backfill(a) => backfill::run(a),
        #[cfg(feature = "aws")]
        Command::Dlq(c) => dlq::run(c),
        #[cfg(feature = "aws")]
        Command::Dev(a) => dev::run(a),
        #[cfg(feature = "aws")]
        Command::Flush(a) => flush::run(a),
        #[cfg(feature = "aws")]
        Command::Replay(a) => replay::run(a),
        #[cfg(feature = "aws")]
        Command::Serve(a) => serve::run(a),
        Command::Mapper(c) => mapper::run(c),
    }
}

/// Human-readable logs on stderr; `PRISM_LOG` sets the filter.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("PRISM_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
