//! `wharf serve`'s settings: flags, environment and config file resolved into a
//! [`ServeConfig`], one function per group of settings, each checking what it resolves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use wharf_import::{ImportSettings, MinThroughput, PlanLimits};
use wharf_registry::{DownloadRedirects, GcOptions};
use wharf_server::network::ForwardedHeader;
use wharf_server::{HealthSettings, Limits};
use wharf_storage::{ObjectStoreUrl, PostgresOptions};

use crate::args::{LogFormat, ServeArgs};
use crate::config::{
    AuthConfig, FileConfig, GcConfig, HealthConfig, ImportConfig, LimitsConfig, NetworkConfig,
    StorageConfig, TlsConfig,
};

/// Everything `wharf serve` needs, resolved: flag, else environment, else config file,
/// else the default.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) log_format: LogFormat,
    pub(crate) domain: String,
    pub(crate) gc_interval: Duration,
    pub(crate) gc: GcOptions,
    /// `host[:port]` sources allowed over plain HTTP and on private addresses.
    pub(crate) insecure_sources: Vec<String>,
    /// `(registry host, mirror URL)`.
    pub(crate) registry_mirrors: Vec<(String, String)>,
    pub(crate) import: ImportSettings,
    pub(crate) limits: Limits,
    /// Threads of the blocking pool (file I/O, hashing of whole files).
    pub(crate) blocking_threads: usize,
    /// Access control on.
    pub(crate) auth: bool,
    /// Failed sign-ins per (name, address) per window.
    pub(crate) max_failed_sign_ins: u32,
    /// Identity, registry refresh and registry access tokens' lifetimes.
    pub(crate) token_lifetimes: [Duration; 3],
    /// What clients reach, if set (else derived from the listen address).
    pub(crate) public_url: Option<String>,
    /// TLS, if the server speaks it itself.
    pub(crate) tls: TlsMode,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// The header those proxies write.
    pub(crate) forwarded: ForwardedHeader,
    /// Networks that pass registries' network rules (ACR's private endpoints).
    pub(crate) private_networks: Vec<ipnet::IpNet>,
    /// Client networks that may read `/metrics` without signing in.
    pub(crate) metrics_allow: Vec<ipnet::IpNet>,
    /// PostgreSQL, if metadata isn't kept in the embedded SQLite.
    pub(crate) metadata: Option<String>,
    /// An object store, if blobs aren't kept in the data directory.
    pub(crate) blobs: Option<ObjectStoreUrl>,
    /// Connections to PostgreSQL.
    pub(crate) max_db_connections: u32,
    /// Blob GETs redirected to the object store, if on.
    pub(crate) redirects: Option<DownloadRedirects>,
    /// Where the sealing key is, if not `<data-dir>/sealing-key`.
    pub(crate) sealing_key_file: Option<PathBuf>,
    /// How `/readyz`'s probe checks the stores.
    pub(crate) health: HealthSettings,
}

/// How the server speaks TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Off,
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// Blocking-pool threads unless configured: enough for the disk, bounded for the host.
const DEFAULT_BLOCKING_THREADS: usize = 64;

impl ServeConfig {
    /// The settings in the order they are checked: the first bad one is the error.
    pub(crate) fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let limits = limits(&file.limits)?;
        let (gc_interval, gc) = gc(&args, &file.gc)?;
        let blocking_threads = blocking_threads(&file.limits)?;
        let format = args.log_format.or(file.log_format).unwrap_or(LogFormat::Human);
        let config = ServeConfig {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000))),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("wharf-data")),
            log_format: format,
            domain: args.domain.or(file.domain).unwrap_or_else(|| "localhost".to_owned()),
            gc_interval,
            gc,
            insecure_sources: if args.insecure_sources.is_empty() {
                file.import.insecure_sources.clone()
            } else {
                args.insecure_sources
            },
            registry_mirrors: registry_mirrors(&args.registry_mirrors, &file.import)?,
            import: import(args.import_parallelism, args.import_sync_wait, &file.import)?,
            limits,
            blocking_threads,
            tls: tls(args.tls_cert, args.tls_key, args.tls_self_signed, &file.tls)?,
            trusted_proxies: networks("network.trusted_proxies", &file.network.trusted_proxies)?,
            forwarded: forwarded_header(&file.network)?,
            private_networks: networks("network.private_networks", &file.network.private_networks)?,
            metrics_allow: networks("metrics.allow", &file.metrics.allow)?,
            metadata: metadata(args.metadata, &file.storage)?,
            redirects: redirects(args.redirect_downloads, &file.storage, args.blobs.is_some())?,
            blobs: blobs(args.blobs, &file.storage)?,
            max_db_connections: max_db_connections(&file.storage)?,
            sealing_key_file: file.auth.sealing_key_file.clone(),
            auth: !args.no_auth && file.auth.enabled.unwrap_or(true),
            max_failed_sign_ins: max_failed_sign_ins(&file.auth)?,
            token_lifetimes: token_lifetimes(&file.auth)?,
            public_url: public_url(args.public_url.or(file.public_url))?,
            health: health(&file.health)?,
        };
        config.refuse_unsafe_cluster()?;
        Ok(config)
    }

    /// Nodes sharing PostgreSQL must agree on the address their tokens name: without a
    /// `public_url` each names its own listen address, and a token from one is refused by
    /// the next (behind a load balancer, every other request).
    fn refuse_unsafe_cluster(&self) -> anyhow::Result<()> {
        if self.metadata.is_some() && self.public_url.is_none() {
            anyhow::bail!(
                "storage.metadata (PostgreSQL) needs public_url (--public-url): every node must issue tokens for the address clients reach them by"
            );
        }
        Ok(())
    }
}

/// `[limits]`, each checked against what the server can work with.
fn limits(l: &LimitsConfig) -> anyhow::Result<Limits> {
    let ld = Limits::default();
    let size = |v: Option<u64>, default: usize| {
        v.map_or(Ok(default), |n| {
            usize::try_from(n).map_err(|_| anyhow::anyhow!("limit {n} is too large"))
        })
    };
    let limits = Limits {
        max_connections: l.max_connections.unwrap_or(ld.max_connections),
        header_read_timeout: l.header_read_timeout.unwrap_or(ld.header_read_timeout),
        keepalive_timeout: l.keepalive_timeout.unwrap_or(ld.keepalive_timeout),
        body_idle_timeout: l.body_idle_timeout.unwrap_or(ld.body_idle_timeout),
        write_idle_timeout: l.write_idle_timeout.unwrap_or(ld.write_idle_timeout),
        max_header_bytes: size(l.max_header_bytes, ld.max_header_bytes)?,
        max_downloads: l.max_downloads.unwrap_or(ld.max_downloads),
        max_uploads: l.max_uploads.unwrap_or(ld.max_uploads),
        body_memory: size(l.body_memory, ld.body_memory)?,
        http2_max_streams: l.http2_max_streams.unwrap_or(ld.http2_max_streams),
        download_buffers: size(l.download_buffers, ld.download_buffers)?,
        upload_buffers: size(l.upload_buffers, ld.upload_buffers)?,
        max_transfers_per_client: l.max_transfers_per_client.unwrap_or(ld.max_transfers_per_client),
    };
    if limits.max_header_bytes < 8192 || limits.max_header_bytes > (1 << 20) {
        anyhow::bail!("limits.max_header_bytes must be between 8KiB and 1MiB");
    }
    for (key, d) in [
        ("header_read_timeout", limits.header_read_timeout),
        ("keepalive_timeout", limits.keepalive_timeout),
        ("body_idle_timeout", limits.body_idle_timeout),
        ("write_idle_timeout", limits.write_idle_timeout),
    ] {
        if d.is_zero() || d > Duration::from_secs(7 * 24 * 3600) {
            anyhow::bail!("limits.{key} must be between 1s and 7 days");
        }
    }
    Ok(limits)
}

/// `[health]`: the readiness probe's rhythm.
fn health(file: &HealthConfig) -> anyhow::Result<HealthSettings> {
    let d = HealthSettings::default();
    let health = HealthSettings {
        interval: file.interval.unwrap_or(d.interval),
        timeout: file.timeout.unwrap_or(d.timeout),
        threshold: file.failure_threshold.unwrap_or(d.threshold),
    };
    for (key, v) in [("health.interval", health.interval), ("health.timeout", health.timeout)] {
        if v < Duration::from_millis(100) || v > Duration::from_secs(3600) {
            anyhow::bail!("{key} must be between 100ms and 1h");
        }
    }
    if health.threshold == 0 {
        anyhow::bail!("health.failure_threshold must be at least 1");
    }
    Ok(health)
}

/// `[gc]`: how often GC runs, and what it leaves alone.
fn gc(args: &ServeArgs, file: &GcConfig) -> anyhow::Result<(Duration, GcOptions)> {
    let defaults = GcOptions::default();
    let gc_interval = args.gc_interval.or(file.interval).unwrap_or(Duration::from_secs(3600));
    let gc = GcOptions {
        grace: args.gc_grace.or(file.grace).unwrap_or(defaults.grace),
        upload_ttl: args.upload_ttl.or(file.upload_ttl).unwrap_or(defaults.upload_ttl),
    };
    // Durations go into clock arithmetic: keep them where it can't overflow.
    const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    for (key, d) in
        [("gc.interval", gc_interval), ("gc.grace", gc.grace), ("gc.upload_ttl", gc.upload_ttl)]
    {
        if d > TEN_YEARS {
            anyhow::bail!("{key} must be at most 10 years");
        }
    }
    Ok((gc_interval, gc))
}

fn blocking_threads(limits: &LimitsConfig) -> anyhow::Result<usize> {
    let blocking_threads = limits.blocking_threads.unwrap_or(DEFAULT_BLOCKING_THREADS);
    if blocking_threads == 0 {
        anyhow::bail!("limits.blocking_threads must be at least 1");
    }
    Ok(blocking_threads)
}

/// `--registry-mirror HOST=URL`…, else `[import] registry_mirrors`.
fn registry_mirrors(
    flags: &[String],
    import: &ImportConfig,
) -> anyhow::Result<Vec<(String, String)>> {
    if flags.is_empty() {
        return Ok(import.registry_mirrors.clone().into_iter().collect());
    }
    flags
        .iter()
        .map(|m| {
            m.split_once('=')
                .map(|(h, u)| (h.trim().to_owned(), u.trim().to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--registry-mirror '{m}' is not HOST=URL"))
        })
        .collect()
}

/// `[import]`, with the two settings that have flags.
fn import(
    parallelism: Option<usize>,
    sync_wait: Option<Duration>,
    i: &ImportConfig,
) -> anyhow::Result<ImportSettings> {
    let d = &ImportSettings::default();
    let settings = ImportSettings {
        parallel_blobs: parallelism.or(i.parallelism).unwrap_or(d.parallel_blobs),
        sync_wait: sync_wait.or(i.sync_wait).unwrap_or(d.sync_wait),
        retry_after: d.retry_after,
        max_running: i.max_running.unwrap_or(d.max_running),
        max_queued: i.max_queued.unwrap_or(d.max_queued),
        max_downloads: i.max_downloads.unwrap_or(d.max_downloads),
        deadline: i.deadline.unwrap_or(d.deadline),
        min_throughput: MinThroughput {
            bytes_per_sec: i.min_throughput.unwrap_or(d.min_throughput.bytes_per_sec),
            window: i.throughput_window.unwrap_or(d.min_throughput.window),
        },
        request_timeout: i.request_timeout.unwrap_or(d.request_timeout),
        read_timeout: i.read_timeout.unwrap_or(d.read_timeout),
        limits: PlanLimits {
            max_manifests: i.max_manifests.unwrap_or(d.limits.max_manifests),
            max_manifest_bytes: i.max_manifest_bytes.unwrap_or(d.limits.max_manifest_bytes),
            max_blobs: i.max_blobs.unwrap_or(d.limits.max_blobs),
            max_bytes: i.max_bytes.unwrap_or(d.limits.max_bytes),
        },
        trusted_cas: i
            .ca_files
            .iter()
            .map(|f| {
                std::fs::read(f)
                    .with_context(|| format!("import.ca_files: cannot read {}", f.display()))
            })
            .collect::<anyhow::Result<_>>()?,
        node: d.node.clone(),
        job_lease: i.job_lease.unwrap_or(d.job_lease),
        // Derived from the sealing key once it is read (`run`).
        shared_secret: d.shared_secret,
    };
    check_import(&settings)?;
    Ok(settings)
}

fn check_import(settings: &ImportSettings) -> anyhow::Result<()> {
    for (key, v) in [
        ("import.parallelism", settings.parallel_blobs),
        ("import.max_running", settings.max_running),
        ("import.max_downloads", settings.max_downloads),
        ("import.max_manifests", settings.limits.max_manifests),
        ("import.max_blobs", settings.limits.max_blobs),
    ] {
        if v == 0 {
            anyhow::bail!("{key} must be at least 1");
        }
    }
    for (key, v) in [
        ("import.deadline", settings.deadline),
        ("import.throughput_window", settings.min_throughput.window),
        ("import.request_timeout", settings.request_timeout),
        ("import.read_timeout", settings.read_timeout),
        ("import.job_lease", settings.job_lease),
    ] {
        if v.is_zero() || v > Duration::from_secs(30 * 24 * 3600) {
            anyhow::bail!("{key} must be between 1s and 30 days");
        }
    }
    Ok(())
}

/// `--tls-cert`/`--tls-key`/`--tls-self-signed`, else `[tls]`.
fn tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    self_signed: bool,
    file: &TlsConfig,
) -> anyhow::Result<TlsMode> {
    Ok(
        match (
            cert.or(file.cert.clone()),
            key.or(file.key.clone()),
            self_signed || file.self_signed.unwrap_or(false),
        ) {
            (None, None, false) => TlsMode::Off,
            (None, None, true) => TlsMode::SelfSigned,
            (Some(cert), Some(key), false) => TlsMode::Files { cert, key },
            (Some(_), Some(_), true) => {
                anyhow::bail!("give either a TLS certificate and key or self_signed, not both")
            }
            _ => anyhow::bail!("a TLS certificate needs its key, and a key its certificate"),
        },
    )
}

/// Addresses or CIDR ranges, IPv4 or IPv6.
fn networks(key: &str, values: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    values
        .iter()
        .map(|v| {
            v.parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| anyhow::anyhow!("{key}: '{v}' is not an IP address or CIDR range"))
        })
        .collect()
}

fn forwarded_header(network: &NetworkConfig) -> anyhow::Result<ForwardedHeader> {
    Ok(match network.forwarded_header.as_deref().map(str::to_ascii_lowercase) {
        None => ForwardedHeader::XForwardedFor,
        Some(h) if h == "x-forwarded-for" => ForwardedHeader::XForwardedFor,
        Some(h) if h == "forwarded" => ForwardedHeader::Rfc7239,
        Some(h) => anyhow::bail!(
            "network.forwarded_header: '{h}' is neither x-forwarded-for nor forwarded"
        ),
    })
}

/// `--metadata`, else `[storage] metadata`: PostgreSQL's URL, if not the embedded SQLite.
fn metadata(flag: Option<String>, storage: &StorageConfig) -> anyhow::Result<Option<String>> {
    match flag.or(storage.metadata.clone()) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Some(url))
        }
        Some(_) => anyhow::bail!("--metadata must be a postgres:// URL"),
        None => Ok(None),
    }
}

/// `--blobs`, else `[storage] blobs`: an object store, if not the data directory.
fn blobs(flag: Option<String>, storage: &StorageConfig) -> anyhow::Result<Option<ObjectStoreUrl>> {
    flag.or(storage.blobs.clone())
        .map(|u| u.parse::<ObjectStoreUrl>().map_err(|e| anyhow::anyhow!("--blobs: {e}")))
        .transpose()
}

fn max_db_connections(storage: &StorageConfig) -> anyhow::Result<u32> {
    Ok(match storage.max_db_connections {
        Some(0) => anyhow::bail!("storage.max_db_connections must be at least 1"),
        Some(n) => n,
        None => PostgresOptions::default().max_connections,
    })
}

/// Download redirects from `--redirect-downloads` / `[storage] redirect_*`: only with an
/// object store (the data directory has no URL a client could reach).
fn redirects(
    flag: bool,
    storage: &StorageConfig,
    blobs_flag: bool,
) -> anyhow::Result<Option<DownloadRedirects>> {
    if !(flag || storage.redirect_downloads.unwrap_or(false)) {
        return Ok(None);
    }
    if !blobs_flag && storage.blobs.is_none() {
        anyhow::bail!(
            "redirect_downloads needs an object store (--blobs s3://… or az://…): blobs in the \
             data directory are served by wharf itself"
        );
    }
    // S3 signs URLs for at most a week; under a second is a URL nobody can use.
    let valid_for = storage.redirect_valid_for.unwrap_or(Duration::from_secs(600));
    if !(Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600)).contains(&valid_for) {
        anyhow::bail!("storage.redirect_valid_for must be between 1s and 7days");
    }
    Ok(Some(DownloadRedirects {
        min_size: storage.redirect_min_size.unwrap_or(1 << 20),
        valid_for,
    }))
}

fn max_failed_sign_ins(auth: &AuthConfig) -> anyhow::Result<u32> {
    Ok(match auth.max_failed_sign_ins {
        Some(0) => anyhow::bail!("auth.max_failed_sign_ins must be at least 1"),
        Some(n) => n,
        None => wharf_auth::DEFAULT_MAX_FAILURES,
    })
}

/// `[auth]`'s token lifetimes (identity, registry refresh, registry access), each from a
/// minute to a day, defaults as Entra ID's and ACR's.
fn token_lifetimes(auth: &AuthConfig) -> anyhow::Result<[Duration; 3]> {
    let defaults = wharf_auth::IdentitySettings::new("");
    let pick = |name: &str, set: Option<Duration>, default: Duration| {
        let d = set.unwrap_or(default);
        if !(Duration::from_secs(60)..=Duration::from_secs(24 * 3600)).contains(&d) {
            anyhow::bail!("auth.{name} must be between 1m and 24h");
        }
        Ok(d)
    };
    Ok([
        pick("identity_token_lifetime", auth.identity_token_lifetime, defaults.identity_token_ttl)?,
        pick(
            "registry_refresh_token_lifetime",
            auth.registry_refresh_token_lifetime,
            defaults.registry_refresh_ttl,
        )?,
        pick(
            "registry_access_token_lifetime",
            auth.registry_access_token_lifetime,
            defaults.registry_access_ttl,
        )?,
    ])
}

/// `--public-url`, else `public_url`: an http(s) URL with a host, kept without a trailing `/`.
fn public_url(set: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(u) = set else { return Ok(None) };
    let parsed = reqwest::Url::parse(&u)
        .map_err(|e| anyhow::anyhow!("public_url '{u}' is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        anyhow::bail!("public_url '{u}' must be an http(s) URL with a host");
    }
    Ok(Some(u.trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wharf.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\ndata_dir = \"/from/file\"\n[gc]\ngrace = \"10m\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            data_dir: Some("/from/flag".into()),
            ..Default::default()
        };
        let c = ServeConfig::resolve(args).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(c.gc.grace, Duration::from_secs(600));
        assert_eq!(c.gc.upload_ttl, GcOptions::default().upload_ttl);
        assert_eq!(c.domain, "localhost");

        let d = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert_eq!(d.listen, SocketAddr::from(([127, 0, 0, 1], 5000)));
        assert_eq!(d.data_dir, PathBuf::from("wharf-data"));
    }
}
