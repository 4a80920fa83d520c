//! The real Lambda entry point (`prism_lambda::main`), built here so
//! the end-to-end tests can run it under the Lambda runtime API emulator.

fn main() -> std::process::ExitCode {
    prism_lambda::main()
}
