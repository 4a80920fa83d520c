//! The mapper Lambda's entry point: see [`prism_lambda::mapper`].

fn main() -> std::process::ExitCode {
    prism_lambda::mapper::main()
}
