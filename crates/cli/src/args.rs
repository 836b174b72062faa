//! What the user typed: clap's view of the command line, nothing resolved yet.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "wharf", version, about = "A self-hosted OCI registry with server-side import")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub(crate) struct GlobalArgs {
    /// The wharf server to talk to.
    #[arg(long, global = true, env = "WHARF_SERVER", default_value = "http://127.0.0.1:5000")]
    pub(crate) server: String,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the registry server.
    Serve(ServeArgs),
    /// Remove unreferenced blobs and abandoned uploads now (on a running server).
    Gc(GcArgs),
}

#[derive(Args, Debug, Default, Clone)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "WHARF_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Directory for the embedded store [default: ./wharf-data].
    #[arg(long, env = "WHARF_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "WHARF_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Log format [default: human].
    #[arg(long, env = "WHARF_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
    /// Registries answer at <name>.<domain> [default: localhost].
    #[arg(long, env = "WHARF_DOMAIN")]
    pub(crate) domain: Option<String>,
    /// How often garbage collection runs in the background; 0 turns it off [default: 1h].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) gc_interval: Option<std::time::Duration>,
    /// Unreferenced blobs younger than this are kept [default: 1h].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) gc_grace: Option<std::time::Duration>,
    /// Upload sessions idle for longer than this are removed [default: 24h].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) upload_ttl: Option<std::time::Duration>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct GcArgs {}
