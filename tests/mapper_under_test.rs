//! The real mapper Lambda entry point (`prism_lambda::mapper::main`),
//! built here so the end-to-end tests can run it under the runtime API emulator.

fn main() -> std::process::ExitCode {
    prism_lambda::mapper::main()
}
