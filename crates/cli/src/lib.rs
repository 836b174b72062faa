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
mod operation;
mod output;
mod registry_cmd;
mod repository;
mod role;
mod serve;
mod session;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Run the command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
            Command::Import(args) => import::run(&cli.global, args).await,
            Command::Registry(cmd) => registry_cmd::run(&cli.global, cmd).await,
            Command::Repository(cmd) => repository::run(&cli.global, cmd).await,
            Command::Operation(cmd) => operation::run(&cli.global, cmd).await,
            Command::Login(args) => session::login(&cli.global, args).await,
            Command::Logout => session::logout(&cli.global),
            Command::Ad(cmd) => ad::run(&cli.global, cmd).await,
            Command::Role(cmd) => role::run(&cli.global, cmd).await,
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
