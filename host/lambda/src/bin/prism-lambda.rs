//! The dispatcher Lambda's entry point: see [`prism_lambda::dispatcher`].

fn main() -> std::process::ExitCode {
    prism_lambda::main()
}
