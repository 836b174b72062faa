//! `wharf serve`: resolve the configuration ([`settings`]), open the embedded store, run the
//! server.

mod data_dir;
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wharf_import::{EgressPolicy, ImportService};
use wharf_management::{LoginServers, Management};
use wharf_registry::{GcOptions, RegistryService};
use wharf_server::{Admission, AppState, Health, Settings};
use wharf_storage::{
    BlobStore, FsBlobStore, IdentityStore, ManagementStore, MetadataStore, ObjectBlobStore,
    ObjectStoreUrl, PostgresMetadataStore, PostgresOptions, SqliteMetadataStore,
    create_dir_durably,
};

pub(crate) use self::data_dir::lock_data_dir;
use self::data_dir::{derived_secret, node_id, sealing_key, write_secret_file};
use self::settings::{ServeConfig, TlsMode};
use crate::args::ServeArgs;

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

/// The composition root: the data directory, the stores, the services on them, the server.
async fn run(mut config: ServeConfig) -> anyhow::Result<()> {
    let _lock = take_data_dir(&mut config)?;
    let stores = open_stores(&config).await?;
    let listener = wharf_server::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let services = services(&config, &stores, addr)?;
    let tls = open_tls(&config, addr)?;
    let state = start(&config, &stores, addr, services, tls.is_some()).await?;
    announce(&config, &stores, addr, tls.is_some());
    if let Some(tls) = tls.clone() {
        tokio::spawn(reload_on_sighup(tls));
    }
    if !config.gc_interval.is_zero() {
        let (registry, imports) = (state.registry.clone(), state.imports.clone());
        tokio::spawn(gc_loop(registry, imports, config.gc_interval, config.gc));
    }
    let probes = tokio::spawn(state.health.clone().watch());
    let served = wharf_server::serve(listener, state, tls, shutdown_signal()).await;
    probes.abort();
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// A server's application state, built as `wharf serve` builds it from the same flags
/// (`args`, without `serve`) but with no listener: for tests that send requests to
/// `wharf_server::router` in-process. The server is taken to be reached at `--listen`,
/// which the login servers and the token issuer name.
pub async fn in_process(args: &[&str]) -> anyhow::Result<InProcess> {
    use clap::Parser as _;
    let cli = crate::args::Cli::try_parse_from(["wharf", "serve"].iter().chain(args))?;
    let crate::args::Command::Serve(args) = cli.command else {
        anyhow::bail!("not serve's flags");
    };
    // As `main` does before any command.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = ServeConfig::resolve(args)?;
    let lock = take_data_dir(&mut config)?;
    let stores = open_stores(&config).await?;
    let services = services(&config, &stores, config.listen)?;
    let state = start(&config, &stores, config.listen, services, false).await?;
    Ok(InProcess { state, _data_dir_lock: lock })
}

/// What [`in_process`] builds: the state, and the data directory held while it lives.
pub struct InProcess {
    pub state: AppState,
    _data_dir_lock: std::fs::File,
}

/// The services that need nothing started: the registry, management, the egress policy.
fn services(
    config: &ServeConfig,
    stores: &Stores,
    addr: SocketAddr,
) -> anyhow::Result<(RegistryService, Management, EgressPolicy)> {
    let registry = registry_service(config, stores);
    let management = Management::new(
        stores.management.clone(),
        LoginServers { domain: config.domain.clone(), port_suffix: port_suffix(config, addr) },
    );
    let policy = EgressPolicy::new(&config.insecure_sources, &config.registry_mirrors)
        .map_err(anyhow::Error::msg)?;
    Ok((registry, management, policy))
}

/// The identity provider (first start included) and imports started; the state handlers
/// share.
async fn start(
    config: &ServeConfig,
    stores: &Stores,
    addr: SocketAddr,
    (registry, management, policy): (RegistryService, Management, EgressPolicy),
    tls: bool,
) -> anyhow::Result<AppState> {
    let identity = first_start(config, stores, addr).await?;
    let imports =
        start_imports(config, stores, registry.clone(), management.clone(), policy, &identity)
            .await?;
    if stores.cluster.is_some() {
        tokio::spawn(refresh_keys(identity.clone()));
    }
    // Kinds only: a bucket or container name would be one more label value per deployment.
    let db = if stores.metadata_name == "embedded" { "sqlite" } else { stores.metadata_name };
    let storage = match stores.blobs_name.split_once("://") {
        Some((scheme, _)) => scheme,
        None => "filesystem",
    };
    wharf_server::metrics::build_info(db, storage);
    let health = Health::new(stores.meta.clone(), stores.blobs.clone(), config.health);
    // `/readyz` answers from the first round on; later rounds run in the background.
    health.probe().await;
    Ok(app_state(config, (registry, management, imports), identity, health, tls))
}

/// Make the data directory (files private to this user), lock it, and learn this node's id.
fn take_data_dir(config: &mut ServeConfig) -> anyhow::Result<std::fs::File> {
    // What the server writes is its own: the database holds password hashes and signing
    // keys, blobs may be private images. Nobody else on the machine reads them.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Durably: a power cut must not take the new directory away with what is stored in it.
    create_dir_durably(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let lock = lock_data_dir(&config.data_dir)?;
    config.import.node = node_id(&config.data_dir)?;
    Ok(lock)
}

fn registry_service(config: &ServeConfig, stores: &Stores) -> RegistryService {
    let registry = match &stores.cluster {
        Some(cluster) => {
            RegistryService::clustered(stores.blobs.clone(), stores.meta.clone(), cluster.clone())
        }
        None => RegistryService::new(stores.blobs.clone(), stores.meta.clone()),
    };
    match config.redirects {
        Some(redirects) => registry.with_download_redirects(redirects),
        None => registry,
    }
}

/// Login servers carry the port clients reach the server on: the public URL's when one
/// is set (a proxy or a port mapping), else the listen port.
fn port_suffix(config: &ServeConfig, addr: SocketAddr) -> String {
    let public_port = config
        .public_url
        .as_deref()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .map(|u| (u.port_or_known_default().unwrap_or(80), u.scheme() == "https"));
    match public_port.unwrap_or((addr.port(), false)) {
        (80, false) | (443, true) => String::new(),
        (80 | 443, _) if public_port.is_none() => String::new(),
        (p, _) => format!(":{p}"),
    }
}

/// The identity provider, opened by one node at a time: nodes starting together on an
/// empty database would each make a tenant, a signing key and an admin user.
async fn first_start(
    config: &ServeConfig,
    stores: &Stores,
    addr: SocketAddr,
) -> anyhow::Result<Arc<wharf_auth::Identity>> {
    let first_start = match &stores.cluster {
        Some(cluster) => {
            Some(cluster.lock("first-start").await.context("cannot take the first-start lock")?)
        }
        None => None,
    };
    let identity =
        open_identity(config, stores.identity.clone(), stores.cluster.clone(), addr).await?;
    drop(first_start);
    Ok(identity)
}

/// The import service, with the jobs a previous run left unfinished running again.
async fn start_imports(
    config: &ServeConfig,
    stores: &Stores,
    registry: RegistryService,
    management: Management,
    policy: EgressPolicy,
    identity: &Arc<wharf_auth::Identity>,
) -> anyhow::Result<ImportService> {
    let mut import_settings = config.import.clone();
    import_settings.shared_secret = derived_secret(&sealing_key(config)?, "shared downloads");
    let imports = ImportService::new(
        registry,
        management,
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
    Ok(imports)
}

/// Signing keys another node made or rotated become known here.
async fn refresh_keys(identity: Arc<wharf_auth::Identity>) {
    loop {
        tokio::time::sleep(KEY_REFRESH).await;
        if let Err(e) = identity.refresh_keys().await {
            tracing::warn!(error = %e, "cannot read the signing keys again");
        }
    }
}

fn app_state(
    config: &ServeConfig,
    (registry, management, imports): (RegistryService, Management, ImportService),
    identity: Arc<wharf_auth::Identity>,
    health: Health,
    tls: bool,
) -> AppState {
    AppState {
        registry,
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
            tls,
            forwarded: config.forwarded,
            metrics_allow: config.metrics_allow.clone(),
        }),
        admission: Admission::new(&config.limits),
        health,
    }
}

fn announce(config: &ServeConfig, stores: &Stores, addr: SocketAddr, tls: bool) {
    tracing::info!(
        %addr,
        data_dir = %config.data_dir.display(),
        metadata = stores.metadata_name,
        blobs = stores.blobs_name,
        "wharf {} listening on {}://{addr}",
        env!("CARGO_PKG_VERSION"),
        if tls { "https" } else { "http" }
    );
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

/// How often a cluster node reads the signing keys again.
const KEY_REFRESH: Duration = Duration::from_secs(15);

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
