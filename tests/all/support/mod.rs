//! Test support: the moto-backed world of the Lambda-path tests and cargo lambda's emulator.

pub mod emulator;
pub mod world;
