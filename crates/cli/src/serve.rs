//! `wharf serve`: resolve the configuration, open the embedded store, run the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use wharf_import::{EgressPolicy, ImportService, ImportSettings};
use wharf_management::authz::AllowAll;
use wharf_management::{LoginServers, Management};
use wharf_registry::{GcOptions, RegistryService};
use wharf_server::{AppState, Settings};
use wharf_storage::{FsBlobStore, SqliteMetadataStore};

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
}

impl ServeConfig {
    pub(crate) fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let defaults = GcOptions::default();
        let import_defaults = ImportSettings::default();
        let format = args.log_format.or(file.log_format).unwrap_or(LogFormat::Human);
        Ok(ServeConfig {
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
            gc_interval: args.gc_interval.or(file.gc.interval).unwrap_or(Duration::from_secs(3600)),
            gc: GcOptions {
                grace: args.gc_grace.or(file.gc.grace).unwrap_or(defaults.grace),
                upload_ttl: args.upload_ttl.or(file.gc.upload_ttl).unwrap_or(defaults.upload_ttl),
            },
            insecure_sources: if args.insecure_sources.is_empty() {
                file.import.insecure_sources
            } else {
                args.insecure_sources
            },
            registry_mirrors: if args.registry_mirrors.is_empty() {
                file.import.registry_mirrors.into_iter().collect()
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
            import: ImportSettings {
                parallel_blobs: args
                    .import_parallelism
                    .or(file.import.parallelism)
                    .unwrap_or(import_defaults.parallel_blobs),
                sync_wait: args
                    .import_sync_wait
                    .or(file.import.sync_wait)
                    .unwrap_or(import_defaults.sync_wait),
                ..import_defaults
            },
        })
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::resolve(args)?;
    crate::logging::init(config.log_format);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;

    let blobs = FsBlobStore::open(&config.data_dir)
        .await
        .with_context(|| format!("cannot open the blob store in {}", config.data_dir.display()))?;
    let meta = SqliteMetadataStore::open(&config.data_dir.join("wharf.db"))
        .await
        .context("cannot open the metadata database")?;
    let meta = Arc::new(meta);
    let registry = RegistryService::new(Arc::new(blobs), meta.clone());

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Login servers carry the port clients reach the server on.
    let port_suffix = match addr.port() {
        80 | 443 => String::new(),
        p => format!(":{p}"),
    };
    let management =
        Management::new(meta.clone(), LoginServers { domain: config.domain.clone(), port_suffix });
    let policy = EgressPolicy::new(&config.insecure_sources, &config.registry_mirrors)
        .map_err(anyhow::Error::msg)?;
    let authz = Arc::new(AllowAll);
    let imports = ImportService::new(
        registry.clone(),
        management.clone(),
        meta.clone(),
        policy,
        authz.clone(),
        config.import.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    imports.resume_unfinished().await.map_err(|e| anyhow::anyhow!("cannot resume imports: {e}"))?;
    let state = AppState {
        registry: registry.clone(),
        management,
        imports,
        authz,
        settings: Arc::new(Settings { domain: config.domain.clone(), gc: config.gc }),
    };
    tracing::info!(
        %addr,
        data_dir = %config.data_dir.display(),
        "wharf {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );

    if !config.gc_interval.is_zero() {
        tokio::spawn(gc_loop(registry, state.imports.clone(), config.gc_interval, config.gc));
    }
    wharf_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// One server per data directory: a second one would break the in-process locks that
/// keep blob commits and GC apart.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
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
        if let Err(e) = registry.gc(options).await {
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
