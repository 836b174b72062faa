//! Test harness: the real `wharf` binary on a free loopback port, real peers (the CNCF
//! distribution registry, skopeo, podman, helm, oras) started from `../shared/tools`, and
//! a small blocking registry client for sessions written by hand.

#![allow(dead_code)]

mod arm;
mod cli;
mod cluster;
mod containerd;
mod content;
mod distribution;
mod evil_source;
mod fault_proxy;
mod process;
mod registry;
mod wharf;

pub use arm::*;
pub use cli::*;
pub use cluster::*;
pub use containerd::*;
pub use content::*;
pub use distribution::*;
pub use evil_source::*;
pub use fault_proxy::*;
pub use process::*;
pub use registry::*;
pub use wharf::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `../shared/tools`, or `$WHARF_SHARED_TOOLS`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("WHARF_SHARED_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools"))
}

pub fn wharf_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wharf")
}

/// The scopes of identity tokens for the management API and for the directory.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The password every test server gives its `admin` user (`WHARF_ADMIN_PASSWORD`).
pub const ADMIN_PASSWORD: &str = "test-admin-password-0";

/// The admin's credentials as a raw request's header line (for requests written by hand).
pub const ADMIN_AUTH_LINE: &str = "Authorization: Basic YWRtaW46dGVzdC1hZG1pbi1wYXNzd29yZC0w\r\n";

/// `Basic` credentials, as an `Authorization` header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The admin's `Basic` credentials (accepted on every registry's data plane).
pub fn admin_basic() -> String {
    basic("admin", ADMIN_PASSWORD)
}

fn builder() -> reqwest::blocking::ClientBuilder {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Client::builder().timeout(Duration::from_secs(300))
}

/// One client of a kind, made once and shared (making one costs ~20 ms: a runtime thread
/// and TLS roots). Shared clients keep no idle connections, so that a server restarted on
/// the same port, or a test counting a server's sockets, never meets one left open.
fn shared(make: impl FnOnce() -> reqwest::blocking::ClientBuilder) -> Client {
    make().pool_max_idle_per_host(0).build().unwrap()
}

/// A client that signs in to wharf's data plane as the admin (with `Basic` on every
/// request; a request that sets its own `Authorization` replaces it). Registries without
/// access control ignore the header.
pub fn client() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut h = HeaderMap::new();
            h.insert(reqwest::header::AUTHORIZATION, admin_basic().parse().unwrap());
            shared(|| builder().default_headers(h))
        })
        .clone()
}

/// A client without credentials whose connections come from `ip` (any 127.0.0.0/8 address
/// reaches a loopback server): for network rules.
pub fn client_from(ip: &str) -> Client {
    static CLIENTS: std::sync::Mutex<Vec<(String, Client)>> = std::sync::Mutex::new(Vec::new());
    let mut clients = CLIENTS.lock().unwrap();
    if let Some((_, c)) = clients.iter().find(|(from, _)| from == ip) {
        return c.clone();
    }
    let c = shared(|| builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()));
    clients.push((ip.to_owned(), c.clone()));
    c
}

/// A client without credentials.
pub fn anon_client() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| shared(builder)).clone()
}
