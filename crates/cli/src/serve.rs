//! `wharf serve`: resolve the configuration, open the embedded store, run the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wharf_import::{EgressPolicy, ImportService, ImportSettings, MinThroughput, PlanLimits};
use wharf_management::{LoginServers, Management};
use wharf_registry::{DownloadRedirects, GcOptions, RegistryService};
use wharf_server::{Admission, AppState, Limits, Settings};
use wharf_storage::{
    BlobStore, FsBlobStore, IdentityStore, ManagementStore, MetadataStore, ObjectBlobStore,
    ObjectStoreUrl, PostgresMetadataStore, PostgresOptions, SqliteMetadataStore,
    create_dir_durably,
};

use crate::args::{LogFormat, ServeArgs};
use crate::config::FileConfig;

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
    pub(crate) forwarded: wharf_server::network::ForwardedHeader,
    /// Networks that pass registries' network rules (ACR's private endpoints).
    pub(crate) private_networks: Vec<ipnet::IpNet>,
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
    pub(crate) fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let defaults = GcOptions::default();
        let import_defaults = ImportSettings::default();
        let ld = Limits::default();
        let l = &file.limits;
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
            max_transfers_per_client: l
                .max_transfers_per_client
                .unwrap_or(ld.max_transfers_per_client),
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
        let gc_interval =
            args.gc_interval.or(file.gc.interval).unwrap_or(Duration::from_secs(3600));
        let gc = GcOptions {
            grace: args.gc_grace.or(file.gc.grace).unwrap_or(defaults.grace),
            upload_ttl: args.upload_ttl.or(file.gc.upload_ttl).unwrap_or(defaults.upload_ttl),
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
        let blocking_threads = file.limits.blocking_threads.unwrap_or(DEFAULT_BLOCKING_THREADS);
        if blocking_threads == 0 {
            anyhow::bail!("limits.blocking_threads must be at least 1");
        }
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
            registry_mirrors: if args.registry_mirrors.is_empty() {
                file.import.registry_mirrors.clone().into_iter().collect()
            } else {
                args.registry_mirrors
                    .iter()
                    .map(|m| {
                        m.split_once('=')
                            .map(|(h, u)| (h.trim().to_owned(), u.trim().to_owned()))
                            .ok_or_else(|| {
                                anyhow::anyhow!("--registry-mirror '{m}' is not HOST=URL")
                            })
                    })
                    .collect::<anyhow::Result<_>>()?
            },
            import: {
                let i = &file.import;
                let d = &import_defaults;
                let settings = ImportSettings {
                    parallel_blobs: args
                        .import_parallelism
                        .or(i.parallelism)
                        .unwrap_or(d.parallel_blobs),
                    sync_wait: args.import_sync_wait.or(i.sync_wait).unwrap_or(d.sync_wait),
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
                        max_manifest_bytes: i
                            .max_manifest_bytes
                            .unwrap_or(d.limits.max_manifest_bytes),
                        max_blobs: i.max_blobs.unwrap_or(d.limits.max_blobs),
                        max_bytes: i.max_bytes.unwrap_or(d.limits.max_bytes),
                    },
                    trusted_cas: i
                        .ca_files
                        .iter()
                        .map(|f| {
                            std::fs::read(f).with_context(|| {
                                format!("import.ca_files: cannot read {}", f.display())
                            })
                        })
                        .collect::<anyhow::Result<_>>()?,
                    node: d.node.clone(),
                    job_lease: i.job_lease.unwrap_or(d.job_lease),
                    // Derived from the sealing key once it is read (`run`).
                    shared_secret: d.shared_secret,
                };
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
                settings
            },
            limits,
            blocking_threads,
            tls: match (
                args.tls_cert.or(file.tls.cert),
                args.tls_key.or(file.tls.key),
                args.tls_self_signed || file.tls.self_signed.unwrap_or(false),
            ) {
                (None, None, false) => TlsMode::Off,
                (None, None, true) => TlsMode::SelfSigned,
                (Some(cert), Some(key), false) => TlsMode::Files { cert, key },
                (Some(_), Some(_), true) => {
                    anyhow::bail!("give either a TLS certificate and key or self_signed, not both")
                }
                _ => anyhow::bail!("a TLS certificate needs its key, and a key its certificate"),
            },
            trusted_proxies: networks("network.trusted_proxies", &file.network.trusted_proxies)?,
            forwarded: match file.network.forwarded_header.as_deref().map(str::to_ascii_lowercase) {
                None => wharf_server::network::ForwardedHeader::XForwardedFor,
                Some(h) if h == "x-forwarded-for" => {
                    wharf_server::network::ForwardedHeader::XForwardedFor
                }
                Some(h) if h == "forwarded" => wharf_server::network::ForwardedHeader::Rfc7239,
                Some(h) => anyhow::bail!(
                    "network.forwarded_header: '{h}' is neither x-forwarded-for nor forwarded"
                ),
            },
            private_networks: networks("network.private_networks", &file.network.private_networks)?,
            metadata: match args.metadata.or(file.storage.metadata.clone()) {
                Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                    Some(url)
                }
                Some(_) => anyhow::bail!("--metadata must be a postgres:// URL"),
                None => None,
            },
            redirects: redirects(args.redirect_downloads, &file.storage, args.blobs.is_some())?,
            blobs: args
                .blobs
                .or(file.storage.blobs.clone())
                .map(|u| u.parse::<ObjectStoreUrl>().map_err(|e| anyhow::anyhow!("--blobs: {e}")))
                .transpose()?,
            max_db_connections: match file.storage.max_db_connections {
                Some(0) => anyhow::bail!("storage.max_db_connections must be at least 1"),
                Some(n) => n,
                None => PostgresOptions::default().max_connections,
            },
            sealing_key_file: file.auth.sealing_key_file.clone(),
            auth: !args.no_auth && file.auth.enabled.unwrap_or(true),
            max_failed_sign_ins: match file.auth.max_failed_sign_ins {
                Some(0) => anyhow::bail!("auth.max_failed_sign_ins must be at least 1"),
                Some(n) => n,
                None => wharf_auth::DEFAULT_MAX_FAILURES,
            },
            token_lifetimes: token_lifetimes(&file.auth)?,
            public_url: match args.public_url.or(file.public_url) {
                Some(u) => {
                    let parsed = reqwest::Url::parse(&u)
                        .map_err(|e| anyhow::anyhow!("public_url '{u}' is not a URL: {e}"))?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                        anyhow::bail!("public_url '{u}' must be an http(s) URL with a host");
                    }
                    Some(u.trim_end_matches('/').to_owned())
                }
                None => None,
            },
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

/// `wharf serve`: the configuration decides the runtime's shape, so it is resolved first.
pub(crate) fn main(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::resolve(args)?;
    crate::logging::init(config.log_format);
    wharf_server::quiet_panics();
    let mut config = config;
    // Every transfer holds a file open besides its connection.
    let files = config.limits.max_downloads + config.limits.max_uploads;
    config.limits.max_connections = fit_connections(config.limits.max_connections, files);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Explicit: no transfer holds a blocking thread while it waits on a client, so a
        // small pool serves any number of them.
        .max_blocking_threads(config.blocking_threads)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

/// Raise the open-file limit to its hard maximum, and keep the connection cap below it,
/// with room for `files` open by transfers, the database and outgoing connections.
fn fit_connections(wanted: usize, files: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let reserved = 512 + files as u64;
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), hard) = (limit.current, limit.maximum) else {
        return wanted; // unlimited
    };
    let target = hard.unwrap_or(current);
    let effective = if target > current {
        match setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit { current: Some(target), maximum: hard },
        ) {
            Ok(()) => target,
            Err(e) => {
                tracing::warn!(error = %e, current, "cannot raise the open-file limit");
                current
            }
        }
    } else {
        current
    };
    let fits = usize::try_from(effective.saturating_sub(reserved).max(16)).unwrap_or(usize::MAX);
    let cap = wanted.min(fits);
    tracing::info!(open_files = effective, max_connections = cap, "open-file limit");
    if cap < wanted {
        tracing::warn!(
            configured = wanted,
            max_connections = cap,
            "limits.max_connections lowered to fit the open-file limit"
        );
    }
    cap
}

async fn run(config: ServeConfig) -> anyhow::Result<()> {
    // What the server writes is its own: the database holds password hashes and signing
    // keys, blobs may be private images. Nobody else on the machine reads them.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Durably: a power cut must not take the new directory away with what is stored in it.
    create_dir_durably(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let mut config = config;
    config.import.node = node_id(&config.data_dir)?;

    let stores = open_stores(&config).await?;
    let registry = match &stores.cluster {
        Some(cluster) => {
            RegistryService::clustered(stores.blobs.clone(), stores.meta.clone(), cluster.clone())
        }
        None => RegistryService::new(stores.blobs.clone(), stores.meta.clone()),
    };
    let registry = match config.redirects {
        Some(redirects) => registry.with_download_redirects(redirects),
        None => registry,
    };

    let listener = wharf_server::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Login servers carry the port clients reach the server on: the public URL's when one
    // is set (a proxy or a port mapping), else the listen port.
    let public_port = config
        .public_url
        .as_deref()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .map(|u| (u.port_or_known_default().unwrap_or(80), u.scheme() == "https"));
    let port_suffix = match public_port.unwrap_or((addr.port(), false)) {
        (80, false) | (443, true) => String::new(),
        (80 | 443, _) if public_port.is_none() => String::new(),
        (p, _) => format!(":{p}"),
    };
    let management = Management::new(
        stores.management.clone(),
        LoginServers { domain: config.domain.clone(), port_suffix },
    );
    let policy = EgressPolicy::new(&config.insecure_sources, &config.registry_mirrors)
        .map_err(anyhow::Error::msg)?;
    let tls = open_tls(&config, addr)?;
    // Nodes starting together on an empty database would each make a tenant, a signing
    // key and an admin user: a first start is one node's at a time.
    let first_start = match &stores.cluster {
        Some(cluster) => {
            Some(cluster.lock("first-start").await.context("cannot take the first-start lock")?)
        }
        None => None,
    };
    let identity =
        open_identity(&config, stores.identity.clone(), stores.cluster.clone(), addr).await?;
    drop(first_start);
    let mut import_settings = config.import.clone();
    import_settings.shared_secret = derived_secret(&sealing_key(&config)?, "shared downloads");
    let imports = ImportService::new(
        registry.clone(),
        management.clone(),
        stores.management.clone(),
        policy,
        identity.clone(),
        import_settings,
        stores.cluster.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    imports.resume_unfinished().await.map_err(|e| anyhow::anyhow!("cannot resume imports: {e}"))?;
    // Jobs of servers that stop (in a cluster) are taken over once their lease runs out.
    tokio::spawn(imports.clone().watch_jobs());
    if stores.cluster.is_some() {
        // Signing keys another node made or rotated become known here.
        let identity = identity.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEY_REFRESH).await;
                if let Err(e) = identity.refresh_keys().await {
                    tracing::warn!(error = %e, "cannot read the signing keys again");
                }
            }
        });
    }
    let state = AppState {
        registry: registry.clone(),
        management,
        imports,
        identity,
        settings: Arc::new(Settings {
            domain: config.domain.clone(),
            gc: config.gc,
            limits: config.limits.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            private_networks: config.private_networks.clone(),
            public_url: config.public_url.clone(),
            tls: tls.is_some(),
            forwarded: config.forwarded,
        }),
        admission: Admission::new(&config.limits),
    };
    tracing::info!(
        %addr,
        data_dir = %config.data_dir.display(),
        metadata = stores.metadata_name,
        blobs = stores.blobs_name,
        "wharf {} listening on {}://{addr}",
        env!("CARGO_PKG_VERSION"),
        if tls.is_some() { "https" } else { "http" }
    );
    if let Some(tls) = tls.clone() {
        tokio::spawn(reload_on_sighup(tls));
    }

    if !config.gc_interval.is_zero() {
        tokio::spawn(gc_loop(registry, state.imports.clone(), config.gc_interval, config.gc));
    }
    wharf_server::serve(listener, state, tls, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The stores a server runs on: each embedded unless configured.
struct Stores {
    meta: Arc<dyn MetadataStore>,
    /// Cluster-wide locks, when other servers may share the metadata store.
    cluster: Option<Arc<dyn wharf_storage::Coordination>>,
    management: Arc<dyn ManagementStore>,
    identity: Arc<dyn IdentityStore>,
    blobs: Arc<dyn BlobStore>,
    /// For the log: which metadata store (never its URL, which may hold a password).
    metadata_name: &'static str,
    blobs_name: String,
}

async fn open_stores(config: &ServeConfig) -> anyhow::Result<Stores> {
    let blobs: Arc<dyn BlobStore> = match &config.blobs {
        None => Arc::new(
            FsBlobStore::open_with(
                &config.data_dir,
                config.limits.download_buffers,
                config.limits.upload_buffers,
            )
            .await
            .with_context(|| {
                format!("cannot open the blob store in {}", config.data_dir.display())
            })?,
        ),
        Some(url) => Arc::new(
            ObjectBlobStore::open(url).await.context("cannot open the object store for blobs")?,
        ),
    };
    let blobs_name = match &config.blobs {
        None => "embedded".to_owned(),
        Some(ObjectStoreUrl::S3 { bucket, .. }) => format!("s3://{bucket}"),
        Some(ObjectStoreUrl::Azure { account, container, .. }) => {
            format!("az://{account}/{container}")
        }
    };
    Ok(match &config.metadata {
        None => {
            let store = Arc::new(
                SqliteMetadataStore::open(&config.data_dir.join("wharf.db"))
                    .await
                    .context("cannot open the metadata database")?,
            );
            Stores {
                meta: store.clone(),
                cluster: None,
                management: store.clone(),
                identity: store,
                blobs,
                metadata_name: "embedded",
                blobs_name,
            }
        }
        Some(url) => {
            let options = PostgresOptions {
                max_connections: config.max_db_connections,
                ..PostgresOptions::default()
            };
            // The error names the host and database, never the URL (it may hold a password).
            let store = Arc::new(
                PostgresMetadataStore::open(url, options)
                    .await
                    .context("cannot open the PostgreSQL metadata store")?,
            );
            Stores {
                meta: store.clone(),
                cluster: Some(store.clone()),
                management: store.clone(),
                identity: store,
                blobs,
                metadata_name: "postgresql",
                blobs_name,
            }
        }
    })
}

/// The server's TLS, if it speaks it: from the configured files, or a development CA's
/// certificate for localhost, the registries' domain and the listen address.
fn open_tls(
    config: &ServeConfig,
    addr: SocketAddr,
) -> anyhow::Result<Option<Arc<wharf_server::tls::Tls>>> {
    let (cert, key) = match &config.tls {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (cert.clone(), key.clone()),
        TlsMode::SelfSigned => {
            let mut ips = vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ];
            if !addr.ip().is_unspecified() && !ips.contains(&addr.ip()) {
                ips.push(addr.ip());
            }
            let (tls, ca) =
                wharf_server::tls::self_signed(&config.data_dir.join("tls"), &config.domain, &ips)
                    .map_err(anyhow::Error::msg)?;
            tracing::info!(ca = %ca.display(), "serving TLS with certificates of a development CA: trust this CA on clients");
            return Ok(Some(Arc::new(tls)));
        }
    };
    let tls = wharf_server::tls::Tls::from_files(&cert, &key).map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(tls)))
}

/// SIGHUP: read the TLS certificate and key again (a renewed certificate is served to new
/// connections; on a bad file the old one stays).
async fn reload_on_sighup(tls: Arc<wharf_server::tls::Tls>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("reloaded the TLS certificate"),
            Err(e) => tracing::error!(error = %e, "kept the old TLS certificate"),
        }
    }
}

/// `[auth]`'s token lifetimes (identity, registry refresh, registry access), each from a
/// minute to a day, defaults as Entra ID's and ACR's.
fn token_lifetimes(auth: &crate::config::AuthConfig) -> anyhow::Result<[Duration; 3]> {
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

/// The identity provider, with its first-start admin: password from
/// `WHARF_ADMIN_PASSWORD`, else generated, shown once on stdout and kept in a 0600 file
/// in the data directory.
async fn open_identity(
    config: &ServeConfig,
    store: Arc<dyn IdentityStore>,
    cluster: Option<Arc<dyn wharf_storage::Coordination>>,
    addr: SocketAddr,
) -> anyhow::Result<Arc<wharf_auth::Identity>> {
    let scheme = if config.tls == TlsMode::Off { "http" } else { "https" };
    let base = config.public_url.clone().unwrap_or_else(|| {
        if addr.ip().is_unspecified() {
            format!("{scheme}://localhost:{}", addr.port())
        } else {
            format!("{scheme}://{addr}")
        }
    });
    let mut settings = wharf_auth::IdentitySettings::new(&base);
    settings.audiences.push(format!("{base}/"));
    settings.enforced = config.auth;
    settings.max_failed_sign_ins = config.max_failed_sign_ins;
    [settings.identity_token_ttl, settings.registry_refresh_ttl, settings.registry_access_ttl] =
        config.token_lifetimes;
    settings.sealing_key = Some(sealing_key(config)?);
    let admin_password = std::env::var("WHARF_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    if admin_password.as_ref().is_some_and(|p| p.len() < 12) {
        anyhow::bail!("WHARF_ADMIN_PASSWORD must be at least 12 characters long");
    }
    let (mut identity, boot) = wharf_auth::Identity::open(store, settings, admin_password)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the identity provider: {e}"))?;
    if let Some(cluster) = cluster {
        // A node whose sealing key isn't the cluster's would rotate admin passwords.
        identity.check_sealing_key().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        identity.share_with(cluster);
    }
    if let Some(password) = boot.generated_admin_password {
        let file = config.data_dir.join("admin-password");
        write_secret_file(&file, &password)
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!(
            "wharf: created user 'admin' (Owner of everything) with password: {password}\nwharf: it is also in {} (readable by this user only); it is not shown again.",
            file.display()
        );
    }
    if !config.auth {
        tracing::warn!(
            "access control is OFF (--no-auth): anyone who reaches the port may do anything"
        );
    }
    Ok(Arc::new(identity))
}

/// Download redirects from `--redirect-downloads` / `[storage] redirect_*`: only with an
/// object store (the data directory has no URL a client could reach).
fn redirects(
    flag: bool,
    storage: &crate::config::StorageConfig,
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

/// The key that seals registry admin users' passwords: `[auth] sealing_key_file`, else
/// `<data-dir>/sealing-key` (0600), made on first start. Nodes sharing PostgreSQL must share
/// it too, so with PostgreSQL it is never made: a node with a key of its own would seal
/// passwords the others can't open.
/// A secret for one `purpose`, derived from the sealing key (HMAC-SHA256): every node of a
/// cluster has the same, and none of them can be turned back into the key.
fn derived_secret(sealing_key: &[u8; 32], purpose: &str) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, sealing_key);
    let tag = ring::hmac::sign(&key, format!("wharf/{purpose}").as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sealing_key(config: &ServeConfig) -> anyhow::Result<[u8; 32]> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let path =
        config.sealing_key_file.clone().unwrap_or_else(|| config.data_dir.join("sealing-key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = b64.decode(text.trim()).ok().filter(|b| b.len() == 32);
            let bytes = bytes.with_context(|| {
                format!("{} is not a sealing key (32 bytes, base64)", path.display())
            })?;
            let mut key = [0u8; 32];
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.metadata.is_some() => {
            anyhow::bail!(
                "{} does not exist: nodes sharing PostgreSQL share one sealing key; make it \
                 once (`head -c 32 /dev/urandom | base64 > FILE`), give every node the same \
                 file ([auth] sealing_key_file)",
                path.display()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = wharf_auth::registry_credentials::Sealer::generate_key()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            write_secret_file(&path, &b64.encode(key))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Write a secret to a new file only its owner can read.
fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// How often a cluster node reads the signing keys again.
const KEY_REFRESH: Duration = Duration::from_secs(15);

/// This server's node id (`<data-dir>/node-id`, made on first start): the owner of the
/// import jobs it runs, the same after a restart, so that it takes its own jobs back at once.
fn node_id(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            write_secret_file(&path, &id)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// One server per data directory: a second one would break the in-process locks that
/// keep blob commits and GC apart.
pub(crate) fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("wharf.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("data directory {} is in use by another wharf server", dir.display())
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// How long a finished import's status can still be polled.
const JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

async fn gc_loop(
    registry: RegistryService,
    imports: ImportService,
    every: Duration,
    options: GcOptions,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is immediate; start after one period
    loop {
        tick.tick().await;
        if let Err(e) = registry.gc_unless_running(options).await {
            tracing::warn!(error = %e, "garbage collection failed");
        }
        if let Err(e) = imports.forget_finished(JOB_RETENTION).await {
            tracing::warn!(error = %e, "forgetting old import jobs failed");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
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
