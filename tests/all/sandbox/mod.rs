//! The sandbox: what a plugin can reach, hostile plugins, memory, both contract versions, bad input.

mod contracts;
mod grants;
mod hostile;
mod input;
mod memory;
