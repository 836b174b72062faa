//! The `wharf` binary: the server and the CLI in one. All logic lives in the crates.
fn main() -> std::process::ExitCode {
    wharf_cli::main()
}
