//! The dispatcher Lambda's entry point: see [`prism_host::lambda`].

fn main() -> std::process::ExitCode {
    prism_host::lambda::main()
}
