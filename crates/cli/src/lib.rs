//! The `wharf` command line. Parsing happens in two steps, as in ripgrep: [`args`] is what
//! the user typed (clap), each command module resolves it into what the program will do
//! (e.g. `serve::ServeConfig`) and does it.
//!
//! Architecture invariant: errors leave here as one line on stderr and a non-zero exit.

mod ad;
mod args;
mod client;
mod config;
mod gc;
mod import;
mod logging;
mod migrate;
mod operation;
mod output;
mod registry_cmd;
mod repository;
mod role;
mod serve;
mod session;
mod tokens;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

pub use crate::serve::{InProcess, in_process};

/// Clap's usage error as one line: its first paragraph, which names the problem and, when
/// arguments are missing, lists them on the lines below (the usage and tips follow a blank
/// line).
fn usage_error(text: &str) -> String {
    let first = text.split("\n\n").next().unwrap_or_default();
    let line = first.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>();
    let line = line.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    if line.is_empty() { "invalid arguments".to_owned() } else { line.to_owned() }
}

/// Run the command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout as clap writes them; a usage error is one line on
        // stderr and exit code 2.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("wharf: error: {} (see --help)", usage_error(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let command = match cli.command {
        Command::Serve(args) => {
            return match serve::main(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            };
        }
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve(_) => unreachable!("served above"),
            Command::Gc(args) => gc::run(&cli.global, args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Import(args) => import::run(&cli.global, args).await,
            Command::Registry(cmd) => registry_cmd::run(&cli.global, cmd).await,
            Command::Repository(cmd) => repository::run(&cli.global, cmd).await,
            Command::Operation(cmd) => operation::run(&cli.global, cmd).await,
            Command::Login(args) => session::login(&cli.global, args).await,
            Command::Logout => session::logout(&cli.global),
            Command::Ad(cmd) => ad::run(&cli.global, cmd).await,
            Command::Role(cmd) => role::run(&cli.global, cmd).await,
            Command::Token(cmd) => tokens::token(&cli.global, cmd).await,
            Command::ScopeMap(cmd) => tokens::scope_map(&cli.global, cmd).await,
            Command::Keys(cmd) => gc::keys(&cli.global, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    // One line: the error and its causes joined by ": ".
    let line = format!("{e:#}").replace('\n', " ");
    eprintln!("wharf: error: {line}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::usage_error;

    #[test]
    fn a_usage_error_names_what_is_missing_on_one_line() {
        let clap = "error: the following required arguments were not provided:\n  --name <NAME>\n  --registry <REGISTRY>\n\nUsage: wharf import --name <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error(clap),
            "the following required arguments were not provided: --name <NAME> --registry <REGISTRY>"
        );
        assert_eq!(
            usage_error(
                "error: unexpected argument '--x' found\n\n  tip: to pass '--x' as a value, use '-- --x'\n"
            ),
            "unexpected argument '--x' found"
        );
    }
}
