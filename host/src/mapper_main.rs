//! The mapper Lambda's entry point: see [`prism_host::mapping::lambda`].

fn main() -> std::process::ExitCode {
    prism_host::mapping::lambda::main()
}
