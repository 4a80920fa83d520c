//! All end-to-end tests, in one binary (one link instead of many).

mod cli;
mod hostile;
mod input;
mod pipeline;
mod python;
mod sandbox;
mod scaffold;
