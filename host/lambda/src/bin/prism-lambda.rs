//! The dispatcher Lambda's entry point: see [`prism_lambda`].

fn main() -> std::process::ExitCode {
    prism_lambda::main()
}
