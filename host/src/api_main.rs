//! The read API Lambda's entry point: see [`prism_host::api::lambda`].

fn main() -> std::process::ExitCode {
    prism_host::api::lambda::main()
}
