//! `prism`: run receiver plugins over product changes, check and preview
//! plugins, scaffold new ones. See `prism --help`.

fn main() -> std::process::ExitCode {
    prism_cli::main()
}
