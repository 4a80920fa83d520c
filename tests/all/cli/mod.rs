//! The `prism` command line as its users run it.

mod chain;
mod commands;
mod diff;
mod scaffold;
mod serve;
mod status;
