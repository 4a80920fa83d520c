//! The read API Lambda's entry point: see [`prism_lambda::api`].

fn main() -> std::process::ExitCode {
    prism_lambda::api::main()
}
