//! Import jobs: submitted, run in the background, polled, resumed after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;
use wharf_management::authz::{Authorizer, Caller, actions};
use wharf_management::{ArmError, ErrorKind, Management, RegistryResourceId};
use wharf_registry::RegistryService;
use wharf_storage::{JobRecord, ManagementStore, RegistryRecord, now_millis};

use crate::ImportError;
use crate::engine::{Engine, Inflight};
use crate::policy::{EgressPolicy, EgressRefused, PolicyResolver};
use crate::progress::Progress;
use crate::remote::{HostLimiter, RemoteRegistry};
use crate::request::{ImportRequest, SourceLocation, parse_parameters};
use crate::source::{LocalSource, RemoteSource, Source};

/// Tunables of the import engine.
#[derive(Clone, Debug)]
pub struct ImportSettings {
    /// Blobs downloaded at once per import.
    pub parallel_blobs: usize,
    /// How long `importImage` waits before answering 202 instead of 200.
    pub sync_wait: Duration,
    /// The `Retry-After` answered with a 202.
    pub retry_after: Duration,
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            parallel_blobs: 4,
            sync_wait: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// What `submit` answers: done within the wait, or still running.
#[derive(Debug)]
pub enum Submitted {
    Done { id: String, result: Result<Value, ArmError> },
    Running { id: String },
}

/// An import job as polled.
#[derive(Debug)]
pub enum JobStatus {
    /// Not finished; ACR's status map with progress.
    Running(Value),
    Succeeded(Value),
    Failed(ArmError),
}

struct Live {
    registry: i64,
    progress: Arc<Progress>,
    done: watch::Receiver<Option<Result<Value, ArmError>>>,
}

struct Inner {
    registry: RegistryService,
    management: Management,
    store: Arc<dyn ManagementStore>,
    policy: Arc<EgressPolicy>,
    authz: Arc<dyn Authorizer>,
    http: reqwest::Client,
    settings: ImportSettings,
    limiters: Mutex<HashMap<String, Arc<HostLimiter>>>,
    inflight: Arc<Inflight>,
    live: Mutex<HashMap<String, Live>>,
}

/// Runs imports.
#[derive(Clone)]
pub struct ImportService {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A job's error as stored: code, message, and its kind (so that a polled status answers
/// the same HTTP status before and after the job leaves memory).
fn error_json(e: &ArmError) -> String {
    json!({"code": e.code, "message": e.message, "kind": format!("{:?}", e.kind)}).to_string()
}

fn kind_of(s: &str) -> ErrorKind {
    match s {
        "NotFound" => ErrorKind::NotFound,
        "Conflict" => ErrorKind::Conflict,
        "Forbidden" => ErrorKind::Forbidden,
        "Internal" => ErrorKind::Internal,
        _ => ErrorKind::BadRequest,
    }
}

fn not_found(id: &str) -> ArmError {
    ArmError::not_found("OperationNotFound", format!("The operation '{id}' was not found."))
}

impl ImportService {
    pub fn new(
        registry: RegistryService,
        management: Management,
        store: Arc<dyn ManagementStore>,
        policy: EgressPolicy,
        authz: Arc<dyn Authorizer>,
        settings: ImportSettings,
    ) -> Result<ImportService, String> {
        let policy = Arc::new(policy);
        let redirect_policy = policy.clone();
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf-import/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 10 {
                    attempt.error("too many redirects")
                } else if let Err(e) = redirect_policy.check_url(attempt.url()) {
                    attempt.error(EgressRefused(e))
                } else {
                    attempt.follow()
                }
            }))
            // Never through a proxy from the environment: the proxy would resolve source
            // names itself, past the egress policy's resolver.
            .no_proxy()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the import HTTP client: {e}"))?;
        Ok(ImportService {
            inner: Arc::new(Inner {
                registry,
                management,
                store,
                policy,
                authz,
                http,
                settings,
                limiters: Mutex::default(),
                inflight: Arc::default(),
                live: Mutex::default(),
            }),
        })
    }

    /// Resolve the source, record the job and start it; answer when it is done or after the
    /// configured wait, whichever comes first. Errors found before starting (an unknown
    /// source registry, a refused address) come back at once.
    pub async fn submit(
        &self,
        target: &RegistryRecord,
        req: ImportRequest,
        caller: &Caller,
    ) -> Result<Submitted, ArmError> {
        let source = self.source(&req, caller).await.map_err(|e| e.to_arm())?;
        let id = format!("registries-{}", Uuid::new_v4());
        let now = now_millis();
        let mut stored = req.stored();
        stored.caller = caller.principal.clone();
        let stored = serde_json::to_string(&stored).map_err(ArmError::internal)?;
        self.inner
            .store
            .create_job(&JobRecord {
                id: id.clone(),
                registry_id: target.id,
                request: stored,
                resumable: !req.has_credentials(),
                status: "Accepted".into(),
                progress: "{}".into(),
                error: None,
                created_at: now,
                updated_at: now,
            })
            .await?;
        let mut done = self.spawn(id.clone(), target.id, req, source);
        let finished =
            tokio::time::timeout(self.inner.settings.sync_wait, done.wait_for(Option::is_some))
                .await;
        match finished {
            Ok(Ok(result)) => {
                Ok(Submitted::Done { id, result: result.clone().unwrap_or(Ok(Value::Null)) })
            }
            _ => Ok(Submitted::Running { id }),
        }
    }

    /// The `Retry-After` to answer with a 202.
    pub fn retry_after(&self) -> Duration {
        self.inner.settings.retry_after
    }

    fn spawn(
        &self,
        id: String,
        target: i64,
        req: ImportRequest,
        source: Box<dyn Source>,
    ) -> watch::Receiver<Option<Result<Value, ArmError>>> {
        let (tx, rx) = watch::channel(None);
        let progress = Arc::new(Progress::default());
        lock(&self.inner.live).insert(
            id.clone(),
            Live { registry: target, progress: progress.clone(), done: rx.clone() },
        );
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _ = inner.store.update_job(&id, "Running", "{}", None).await;
            let engine = Engine {
                registry: &inner.registry,
                inflight: &inner.inflight,
                parallel: inner.settings.parallel_blobs,
                progress: progress.clone(),
            };
            let result = engine.run(source.as_ref(), &req, target).await;
            let snapshot = progress.snapshot();
            let (status, error) = match &result {
                Ok(()) => ("Succeeded", None),
                Err(e) => ("Failed", Some(e.to_arm())),
            };
            match &error {
                None => tracing::info!(job = %id, image = %req.source_image, "import succeeded"),
                Some(e) => {
                    tracing::warn!(job = %id, image = %req.source_image, code = %e.code, error = %e.message, "import failed")
                }
            }
            let _ = inner
                .store
                .update_job(
                    &id,
                    status,
                    &snapshot.to_string(),
                    error.as_ref().map(error_json).as_deref(),
                )
                .await;
            let outcome = match error {
                None => Ok(snapshot),
                Some(e) => Err(e),
            };
            let _ = tx.send(Some(outcome));
            lock(&inner.live).remove(&id);
        });
        rx
    }

    /// A job's status: live progress while it runs, the stored outcome after. Only a job
    /// of a registry in `subscription` is found there.
    pub async fn status(&self, id: &str, subscription: &str) -> Result<JobStatus, ArmError> {
        let live = lock(&self.inner.live)
            .get(id)
            .map(|l| (l.registry, l.progress.clone(), l.done.clone()));
        let registry = match &live {
            Some((registry, ..)) => *registry,
            None => self.inner.store.job(id).await?.ok_or_else(|| not_found(id))?.registry_id,
        };
        let in_subscription = self
            .inner
            .management
            .registry_by_number(registry)
            .await?
            .is_some_and(|r| r.subscription.eq_ignore_ascii_case(subscription));
        if !in_subscription {
            return Err(not_found(id));
        }
        if let Some((_, progress, done)) = live {
            if let Some(result) = done.borrow().clone() {
                return Ok(match result {
                    Ok(v) => JobStatus::Succeeded(v),
                    Err(e) => JobStatus::Failed(e),
                });
            }
            let mut v = progress.snapshot();
            if let Some(o) = v.as_object_mut() {
                o.insert("status".into(), json!("Accepted"));
            }
            return Ok(JobStatus::Running(v));
        }
        let job = self.inner.store.job(id).await?.ok_or_else(|| not_found(id))?;
        let progress: Value = serde_json::from_str(&job.progress).unwrap_or_else(|_| json!({}));
        Ok(match job.status.as_str() {
            "Succeeded" => JobStatus::Succeeded(progress),
            "Failed" | "Canceled" => {
                let e: Value = job
                    .error
                    .as_deref()
                    .and_then(|e| serde_json::from_str(e).ok())
                    .unwrap_or_default();
                JobStatus::Failed(ArmError::new(
                    kind_of(e["kind"].as_str().unwrap_or("")),
                    e["code"].as_str().unwrap_or("ImportFailed"),
                    e["message"].as_str().unwrap_or("The import failed."),
                ))
            }
            _ => JobStatus::Running(json!({"status": "Accepted"})),
        })
    }

    /// Forget finished jobs older than `age` (their status can no longer be polled).
    pub async fn forget_finished(&self, age: Duration) -> Result<u64, ArmError> {
        Ok(self.inner.store.delete_finished_jobs(now_millis() - age.as_millis() as i64).await?)
    }

    /// After a restart: resume jobs that can be (no credentials), fail the others cleanly.
    pub async fn resume_unfinished(&self) -> Result<(), ArmError> {
        for job in self.inner.store.unfinished_jobs().await? {
            let target = self.inner.management.registry_by_number(job.registry_id).await?;
            let stored = serde_json::from_str::<Value>(&job.request).ok();
            // Read on behalf of whoever submitted it, as when it started.
            let caller = Caller {
                principal: stored.as_ref().and_then(|v| v["caller"].as_str()).map(str::to_owned),
            };
            let request = stored.and_then(|v| parse_parameters(&v).ok());
            let resumed = match (job.resumable, target, request) {
                (true, Some(target), Some(req)) => match self.source(&req, &caller).await {
                    Ok(source) => {
                        tracing::info!(job = %job.id, "resuming an import interrupted by a restart");
                        self.spawn(job.id.clone(), target.id, req, source);
                        true
                    }
                    Err(_) => false,
                },
                _ => false,
            };
            if !resumed {
                let e = ArmError::bad_request(
                    "ImportInterrupted",
                    "The import was interrupted by a server restart and could not be resumed (source credentials are never stored). Run it again.",
                );
                self.inner
                    .store
                    .update_job(&job.id, "Failed", &job.progress, Some(&error_json(&e)))
                    .await?;
            }
        }
        Ok(())
    }

    /// The source an import reads from. A `registryUri` that is one of this server's login
    /// servers is read locally, like a `resourceId`.
    async fn source(
        &self,
        req: &ImportRequest,
        caller: &Caller,
    ) -> Result<Box<dyn Source>, ImportError> {
        let inner = &self.inner;
        let local = |r: RegistryRecord| -> Result<Box<dyn Source>, ImportError> {
            let scope = Management::resource_id(&r).to_string();
            inner.authz.check(caller, actions::PULL, &scope)?;
            Ok(Box::new(LocalSource {
                registry: inner.registry.clone(),
                registry_id: r.id,
                name: r.name,
            }))
        };
        match &req.source {
            SourceLocation::Registry { resource_id } => {
                let id = RegistryResourceId::parse(resource_id).map_err(|e| {
                    ImportError::InvalidParameters(format!(
                        "Invalid source.resourceId: {}",
                        e.message
                    ))
                })?;
                let r = inner.management.registry(&id).await.map_err(|e| match e.kind {
                    ErrorKind::NotFound => ImportError::SourceRegistryNotFound(format!(
                        "The source registry '{resource_id}' was not found on this server."
                    )),
                    _ => ImportError::Arm(e),
                })?;
                local(r)
            }
            SourceLocation::Remote { registry_uri, credentials } => {
                let host =
                    registry_uri.split("://").last().unwrap_or("").split('/').next().unwrap_or("");
                let domain = inner.management.login_servers().domain.clone();
                // One of this server's login servers (port included: another server on this
                // host may use the same domain) is read locally.
                if let Some(r) = inner.registry.registry_named_by_host(host, &domain).await?
                    && inner.management.login_server(&r).eq_ignore_ascii_case(host)
                {
                    return local(r);
                }
                let endpoint = inner.policy.endpoint(registry_uri)?;
                let key = endpoint.base.as_str().to_owned();
                let limiter = lock(&inner.limiters).entry(key).or_default().clone();
                Ok(Box::new(RemoteSource(RemoteRegistry::new(
                    inner.http.clone(),
                    endpoint,
                    credentials.clone(),
                    limiter,
                    inner.policy.clone(),
                ))))
            }
        }
    }
}
