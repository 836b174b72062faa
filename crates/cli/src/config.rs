//! The optional TOML configuration file of `wharf serve`.
//!
//! ```toml
//! listen = "127.0.0.1:5000"
//! data_dir = "/var/lib/wharf"
//! log_format = "json"
//! domain = "registry.example.com"
//! public_url = "https://wharf.example.com"   # what clients reach (tokens' issuer, realms)
//!
//! [storage]
//! metadata = "postgres://wharf@db.internal/wharf"   # a cluster: PostgreSQL …
//! blobs = "s3://wharf-blobs?region=eu-west-1"       # … and an object store
//! max_db_connections = 16
//! redirect_downloads = true   # blob GETs: 307 to a presigned URL of the object store
//! redirect_min_size = "1MiB"  # smaller blobs are streamed by the node
//! redirect_valid_for = "10m"
//!
//! [auth]
//! enabled = true              # false: anyone who reaches the port may do anything
//! max_failed_sign_ins = 10    # per name per minute (x10 per client address)
//!
//! [tls]
//! cert = "/etc/wharf/tls.pem"       # PEM chain, read again on SIGHUP
//! key = "/etc/wharf/tls-key.pem"
//! self_signed = false               # true: a development CA in <data_dir>/tls/
//!
//! [network]
//! trusted_proxies = ["10.0.0.2/32"]   # their X-Forwarded-For names the client
//! forwarded_header = "x-forwarded-for" # or "forwarded" (RFC 7239): the one they write
//! private_networks = ["10.8.0.0/16"]  # like ACR's private endpoints: past the network rules
//!
//! [metrics]
//! allow = ["127.0.0.0/8"]   # may scrape /metrics unsigned-in; others need Wharf/metrics/read
//!
//! [gc]
//! interval = "1h"
//! grace = "1h"
//! upload_ttl = "24h"
//!
//! [health]
//! interval = "3s"             # how often /readyz's probe checks the stores
//! timeout = "2s"              # a check slower than this fails
//! failure_threshold = 2       # failures in a row before /readyz answers 503
//!
//! [import]
//! insecure_sources = ["127.0.0.1:5001"]
//! registry_mirrors = { "docker.io" = "http://127.0.0.1:5001" }
//! ca_files = ["/etc/wharf/other-registry-ca.pem"]   # trusted for sources, besides the system's
//! parallelism = 4
//! sync_wait = "2s"
//! max_running = 8
//! max_queued = 1000
//! max_downloads = 32
//! deadline = "2h"
//! min_throughput = "16KiB"    # per second, averaged over throughput_window
//! throughput_window = "60s"
//! request_timeout = "60s"
//! read_timeout = "30s"
//! max_manifests = 1000
//! max_manifest_bytes = "64MiB"
//! max_blobs = 10000
//! max_bytes = "1TiB"
//!
//! [limits]
//! max_connections = 16384
//! header_read_timeout = "20s"
//! keepalive_timeout = "60s"
//! body_idle_timeout = "60s"
//! write_idle_timeout = "60s"
//! max_header_bytes = "64KiB"
//! max_downloads = 2048
//! max_uploads = 512
//! body_memory = "256MiB"
//! http2_max_streams = 100
//! download_buffers = "32MiB"
//! upload_buffers = "64MiB"
//! max_transfers_per_client = 256
//! blocking_threads = 64
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::args::LogFormat;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) domain: Option<String>,
    pub(crate) public_url: Option<String>,
    #[serde(default)]
    pub(crate) storage: StorageConfig,
    #[serde(default)]
    pub(crate) auth: AuthConfig,
    #[serde(default)]
    pub(crate) tls: TlsConfig,
    #[serde(default)]
    pub(crate) network: NetworkConfig,
    #[serde(default)]
    pub(crate) gc: GcConfig,
    #[serde(default)]
    pub(crate) metrics: MetricsConfig,
    #[serde(default)]
    pub(crate) import: ImportConfig,
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    #[serde(default)]
    pub(crate) health: HealthConfig,
}

/// `[storage]`: where metadata and blobs live (the embedded store in `data_dir` unless set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StorageConfig {
    /// `postgres://…`: PostgreSQL instead of the embedded SQLite.
    pub(crate) metadata: Option<String>,
    /// `s3://bucket…` or `az://account/container…`: an object store instead of `data_dir`.
    pub(crate) blobs: Option<String>,
    /// Connections to PostgreSQL per node.
    pub(crate) max_db_connections: Option<u32>,
    /// Answer blob GETs with a `307` to a presigned URL of the object store.
    pub(crate) redirect_downloads: Option<bool>,
    /// Blobs smaller than this are streamed even so.
    #[serde(default, with = "opt_size")]
    pub(crate) redirect_min_size: Option<u64>,
    /// How long a redirect's URL works.
    #[serde(default, with = "opt_duration")]
    pub(crate) redirect_valid_for: Option<Duration>,
}

/// `[auth]`: access control.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthConfig {
    pub(crate) enabled: Option<bool>,
    pub(crate) max_failed_sign_ins: Option<u32>,
    /// The key sealing registries' admin passwords; a cluster's nodes must share one.
    pub(crate) sealing_key_file: Option<PathBuf>,
    /// How long identity tokens (the management API's) live.
    #[serde(default, with = "opt_duration")]
    pub(crate) identity_token_lifetime: Option<Duration>,
    /// How long registry refresh tokens live.
    #[serde(default, with = "opt_duration")]
    pub(crate) registry_refresh_token_lifetime: Option<Duration>,
    /// How long registry access tokens live.
    #[serde(default, with = "opt_duration")]
    pub(crate) registry_access_token_lifetime: Option<Duration>,
}

/// `[tls]`: the server's own TLS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) self_signed: Option<bool>,
}

/// `[network]`: where clients are, for registries' network rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkConfig {
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<String>,
    #[serde(default)]
    pub(crate) private_networks: Vec<String>,
    /// `x-forwarded-for` (default) or `forwarded`.
    pub(crate) forwarded_header: Option<String>,
}

/// `[metrics]`: who may scrape `/metrics` without signing in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    #[serde(default)]
    pub(crate) allow: Vec<String>,
}

/// `[limits]`: see `wharf_server::Limits` for what each one bounds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsConfig {
    pub(crate) max_connections: Option<usize>,
    #[serde(default, with = "opt_duration")]
    pub(crate) header_read_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) keepalive_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) body_idle_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) write_idle_timeout: Option<Duration>,
    #[serde(default, with = "opt_size")]
    pub(crate) max_header_bytes: Option<u64>,
    pub(crate) max_downloads: Option<usize>,
    pub(crate) max_uploads: Option<usize>,
    #[serde(default, with = "opt_size")]
    pub(crate) body_memory: Option<u64>,
    pub(crate) http2_max_streams: Option<u32>,
    #[serde(default, with = "opt_size")]
    pub(crate) download_buffers: Option<u64>,
    #[serde(default, with = "opt_size")]
    pub(crate) upload_buffers: Option<u64>,
    pub(crate) max_transfers_per_client: Option<usize>,
    /// Threads for blocking work (file I/O); no transfer holds one while it waits.
    pub(crate) blocking_threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportConfig {
    #[serde(default)]
    pub(crate) insecure_sources: Vec<String>,
    #[serde(default)]
    pub(crate) registry_mirrors: std::collections::BTreeMap<String, String>,
    /// CA certificates (PEM files) trusted for sources besides the system's.
    #[serde(default)]
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) parallelism: Option<usize>,
    #[serde(default, with = "opt_duration")]
    pub(crate) sync_wait: Option<Duration>,
    /// Imports running at once; more wait, queued.
    pub(crate) max_running: Option<usize>,
    /// Imports waiting at most; more are refused until some finish.
    pub(crate) max_queued: Option<usize>,
    /// Blob downloads at once across all imports.
    pub(crate) max_downloads: Option<usize>,
    #[serde(default, with = "opt_duration")]
    pub(crate) deadline: Option<Duration>,
    /// Bytes per second a blob download must average over `throughput_window`.
    #[serde(default, with = "opt_size")]
    pub(crate) min_throughput: Option<u64>,
    #[serde(default, with = "opt_duration")]
    pub(crate) throughput_window: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) request_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) read_timeout: Option<Duration>,
    /// How long a job stays its server's without a heartbeat (then another takes it over).
    #[serde(default, with = "opt_duration")]
    pub(crate) job_lease: Option<Duration>,
    pub(crate) max_manifests: Option<usize>,
    #[serde(default, with = "opt_size")]
    pub(crate) max_manifest_bytes: Option<u64>,
    pub(crate) max_blobs: Option<usize>,
    #[serde(default, with = "opt_size")]
    pub(crate) max_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GcConfig {
    #[serde(default, with = "opt_duration")]
    pub(crate) interval: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) grace: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) upload_ttl: Option<Duration>,
}

/// `[health]`: the readiness probe of the stores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthConfig {
    #[serde(default, with = "opt_duration")]
    pub(crate) interval: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(crate) timeout: Option<Duration>,
    pub(crate) failure_threshold: Option<u32>,
}

impl FileConfig {
    pub(crate) fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace('\n', " ")))
            .with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// Durations as humantime strings ("30s", "1h 30m").
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Sizes as a number of bytes or a string with a unit ("32KiB", "256MiB", "1G").
pub(crate) mod opt_size {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Number(n)) => Ok(Some(n)),
            Some(Raw::Text(s)) => parse(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }

    /// `<number>[K|M|G|T][i][B]`, binary multiples either way.
    pub(crate) fn parse(s: &str) -> Result<u64, String> {
        let t = s.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(digits);
        let n: u64 = n.parse().map_err(|_| format!("invalid size {s:?}"))?;
        let shift =
            match unit.trim().to_ascii_lowercase().trim_end_matches('b').trim_end_matches('i') {
                "" => 0,
                "k" => 10,
                "m" => 20,
                "g" => 30,
                "t" => 40,
                _ => return Err(format!("invalid size {s:?}: use bytes, KiB, MiB, GiB or TiB")),
            };
        n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} is too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\nlog_format = \"json\"\n[gc]\ngrace = \"5m\"\n[import]\ninsecure_sources = [\"a:1\"]\nregistry_mirrors = { \"docker.io\" = \"http://m\" }\n",
        )
        .unwrap();
        assert_eq!(c.listen.unwrap().port(), 6000);
        assert_eq!(c.log_format, Some(LogFormat::Json));
        assert_eq!(c.gc.grace, Some(Duration::from_secs(300)));
        assert_eq!(c.import.insecure_sources, ["a:1"]);
        assert_eq!(c.import.registry_mirrors["docker.io"], "http://m");
    }

    #[test]
    fn sizes() {
        assert_eq!(opt_size::parse("32KiB"), Ok(32 << 10));
        assert_eq!(opt_size::parse("256 MiB"), Ok(256 << 20));
        assert_eq!(opt_size::parse("1G"), Ok(1 << 30));
        assert_eq!(opt_size::parse("1024"), Ok(1024));
        assert!(opt_size::parse("12 parsecs").is_err());
        assert!(opt_size::parse("99999999999999999T").is_err());
        let c: FileConfig =
            toml::from_str("[limits]\nbody_memory = \"64MiB\"\nmax_header_bytes = 16384\n")
                .unwrap();
        assert_eq!(c.limits.body_memory, Some(64 << 20));
        assert_eq!(c.limits.max_header_bytes, Some(16384));
    }

    #[test]
    fn rejects_unknown_keys() {
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
    }
}
