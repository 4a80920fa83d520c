//! `prism` for the end-to-end tests: the same entry point as the real binary.

fn main() -> std::process::ExitCode {
    prism_cli::main()
}
