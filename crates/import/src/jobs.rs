//! Import jobs: submitted, queued for a slot, run in the background under a deadline,
//! polled, cancelled, resumed after a restart.
//!
//! Every job runs inside a supervisor task: whatever the job does — fail, run out of time,
//! be cancelled, panic — the supervisor records an outcome, so no job stays `Running`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wharf_auth::{Caller, Identity, RegistryCredential, RepoOp};
use wharf_management::{ArmError, ErrorKind, Management, RegistryResourceId};
use wharf_registry::RegistryService;
use wharf_storage::{
    Coordination, JobFence, JobRecord, ManagementStore, RegistryRecord, now_millis,
};

use crate::ImportError;
use crate::engine::{Engine, Inflight, MinThroughput};
use crate::plan::PlanLimits;
use crate::policy::{EgressPolicy, EgressRefused, PolicyResolver, redact_url};
use crate::progress::Progress;
use crate::remote::{HostLimiter, RemoteRegistry};
use crate::request::{ImportRequest, SourceLocation, parse_parameters};
use crate::source::{LocalSource, RemoteSource, Source};

/// How long a cancelled or timed-out job gets to stop on its own (close its downloads,
/// drop what it staged) before it is dropped.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// Tunables of the import engine; each is a key of the `[import]` configuration section.
#[derive(Clone, Debug)]
pub struct ImportSettings {
    /// Blobs downloaded at once per import.
    pub parallel_blobs: usize,
    /// How long `importImage` waits before answering 202 instead of 200.
    pub sync_wait: Duration,
    /// The `Retry-After` answered with a 202.
    pub retry_after: Duration,
    /// Imports running at once on this server; more wait, queued (`Accepted`).
    pub max_running: usize,
    /// Imports waiting for a slot at most; more are refused (429) until some finish.
    pub max_queued: usize,
    /// Blob downloads at once across all imports.
    pub max_downloads: usize,
    /// How long one import may run (from when it starts, not while it is queued).
    pub deadline: Duration,
    /// The slowest a blob download may be.
    pub min_throughput: MinThroughput,
    /// The whole of a small request to a source (token, manifest, referrers).
    pub request_timeout: Duration,
    /// The longest a source may stay silent in the middle of an answer.
    pub read_timeout: Duration,
    /// What one import may hold.
    pub limits: PlanLimits,
    /// CA certificates (PEM) trusted for sources besides the system's: a private CA, such
    /// as another wharf's development CA.
    pub trusted_cas: Vec<Vec<u8>>,
    /// This server's node id: the owner of the jobs it runs (stable across its restarts).
    pub node: String,
    /// How long a job stays its server's without a heartbeat; a server that dies loses its
    /// jobs to another (or to itself, restarted) after this.
    pub job_lease: Duration,
    /// The secret that keys what a cluster's nodes share about downloads (an HMAC): the
    /// same on every node (`wharf serve` derives it from the sealing key).
    pub shared_secret: [u8; 32],
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            parallel_blobs: 4,
            sync_wait: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
            max_running: 8,
            max_queued: 1000,
            max_downloads: 32,
            deadline: Duration::from_secs(2 * 3600),
            min_throughput: MinThroughput {
                bytes_per_sec: 16 << 10,
                window: Duration::from_secs(60),
            },
            request_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(30),
            limits: PlanLimits::default(),
            trusted_cas: Vec::new(),
            node: Uuid::new_v4().to_string(),
            job_lease: Duration::from_secs(30),
            shared_secret: [0; 32],
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
    /// Not finished (queued or running); ACR's status map with progress.
    Running(Value),
    Succeeded(Value),
    Failed(ArmError),
}

/// A job's state as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobState {
    /// Recorded, possibly waiting for an import slot.
    Accepted,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Accepted => "Accepted",
            JobState::Running => "Running",
            JobState::Succeeded => "Succeeded",
            JobState::Failed => "Failed",
            JobState::Canceled => "Canceled",
        }
    }

    fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Accepted,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Canceled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A job's error as stored: enough to answer a poll the same way before and after the job
/// leaves memory.
#[derive(Debug, Serialize, Deserialize)]
struct StoredError {
    code: String,
    message: String,
    kind: ErrorKind,
}

impl StoredError {
    fn of(e: &ArmError) -> String {
        let stored = StoredError { code: e.code.clone(), message: e.message.clone(), kind: e.kind };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    fn read(json: Option<&str>) -> ArmError {
        match json.and_then(|j| serde_json::from_str::<StoredError>(j).ok()) {
            Some(e) => ArmError::new(e.kind, &e.code, e.message),
            None => ArmError::bad_request("ImportFailed", "The import failed."),
        }
    }
}

/// What [`ImportService::cancel`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was told to stop; it ends `Canceled` shortly.
    Requested,
}

struct Live {
    registry: i64,
    progress: Arc<Progress>,
    done: watch::Receiver<Option<Result<Value, ArmError>>>,
    cancel: CancellationToken,
}

struct Inner {
    registry: RegistryService,
    management: Management,
    store: Arc<dyn ManagementStore>,
    policy: Arc<EgressPolicy>,
    identity: Arc<Identity>,
    http: reqwest::Client,
    settings: ImportSettings,
    limiters: Mutex<HashMap<String, Arc<HostLimiter>>>,
    /// The cluster this server is a node of, if any: upstream pauses are shared through it.
    cluster: Option<Arc<dyn Coordination>>,
    inflight: Arc<Inflight>,
    live: Mutex<HashMap<String, Live>>,
    /// Jobs recorded but not yet in `live` (so the job watcher doesn't take them).
    starting: Mutex<std::collections::HashSet<String>>,
    /// Import slots: jobs wait for one before they start.
    running: Arc<Semaphore>,
    /// Blob downloads in flight across all jobs.
    downloads: Arc<Semaphore>,
}

/// Runs imports.
#[derive(Clone)]
pub struct ImportService {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
        identity: Arc<Identity>,
        settings: ImportSettings,
        cluster: Option<Arc<dyn Coordination>>,
    ) -> Result<ImportService, String> {
        let policy = Arc::new(policy);
        let redirect_policy = policy.clone();
        let mut extra_roots = Vec::new();
        for pem in &settings.trusted_cas {
            extra_roots.extend(
                reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("a trusted CA is not PEM: {e}"))?,
            );
        }
        let http = reqwest::Client::builder()
            .tls_certs_merge(extra_roots)
            .user_agent(concat!("wharf-import/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 10 {
                    attempt.error("too many redirects")
                } else if let Err(e) = redirect_policy.check_url(attempt.url()) {
                    // Named without its query: a CDN's signed URL must not reach a message.
                    tracing::info!(to = %redact_url(attempt.url()), "refused a redirect");
                    attempt.error(EgressRefused(e))
                } else {
                    attempt.follow()
                }
            }))
            // Never through a proxy from the environment: the proxy would resolve source
            // names itself, past the egress policy's resolver.
            .no_proxy()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(settings.read_timeout)
            .build()
            .map_err(|e| format!("cannot build the import HTTP client: {e}"))?;
        Ok(ImportService {
            inner: Arc::new(Inner {
                registry,
                management,
                store,
                policy,
                identity,
                http,
                limiters: Mutex::default(),
                inflight: Arc::new(match &cluster {
                    Some(cluster) => Inflight::shared(
                        cluster.clone(),
                        settings.node.clone(),
                        &settings.shared_secret,
                    ),
                    None => Inflight::default(),
                }),
                cluster,
                live: Mutex::default(),
                starting: Mutex::default(),
                running: Arc::new(Semaphore::new(settings.max_running.max(1))),
                downloads: Arc::new(Semaphore::new(settings.max_downloads.max(1))),
                settings,
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
        let waiting = lock(&self.inner.live).len();
        let settings = &self.inner.settings;
        if waiting >= settings.max_running.saturating_add(settings.max_queued) {
            return Err(ArmError::new(
                ErrorKind::TooManyRequests,
                "TooManyRequests",
                format!(
                    "{waiting} imports are running or queued on this server (import.max_queued); retry later."
                ),
            ));
        }
        // A network-restricted target is written only through the trusted path, which its
        // owner may have closed.
        let net = Management::network(target);
        if net.restricted() && !net.trusted_services {
            return Err(ArmError::new(
                ErrorKind::Forbidden,
                "NetworkRestricted",
                format!(
                    "The registry '{}' restricts network access and doesn't allow trusted services (networkRuleBypassOptions: None), so nothing can be imported into it. Set networkRuleBypassOptions to AzureServices (wharf registry update --allow-trusted-services true) to allow import.",
                    target.name
                ),
            ));
        }
        let source = self.source(&req, caller, target.id).await.map_err(|e| e.to_arm())?;
        let id = format!("registries-{}", Uuid::new_v4());
        let now = now_millis();
        lock(&self.inner.starting).insert(id.clone());
        let started = self.record_and_spawn(id.clone(), now, target, req, source, caller).await;
        lock(&self.inner.starting).remove(&id);
        let mut done = started?;
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

    async fn record_and_spawn(
        &self,
        id: String,
        now: i64,
        target: &RegistryRecord,
        req: ImportRequest,
        source: Box<dyn Source>,
        caller: &Caller,
    ) -> Result<watch::Receiver<Option<Result<Value, ArmError>>>, ArmError> {
        let mut stored = req.stored();
        stored.caller = caller.principal_id().map(str::to_owned);
        let stored = serde_json::to_string(&stored).map_err(ArmError::internal)?;
        self.inner
            .store
            .create_job(
                &JobRecord {
                    id: id.clone(),
                    registry_id: target.id,
                    request: stored,
                    resumable: !req.has_credentials(),
                    status: JobState::Accepted.as_str().into(),
                    progress: "{}".into(),
                    error: None,
                    created_at: now,
                    updated_at: now,
                    owner: Some(self.inner.settings.node.clone()),
                    lease_until: 0,
                    lease_epoch: 0,
                },
                millis(self.inner.settings.job_lease),
            )
            .await?;
        let link = caller.can_read_all(&Management::policy(target));
        let fence = JobFence { id: id.clone(), owner: self.inner.settings.node.clone(), epoch: 0 };
        Ok(self.spawn(fence, target.id, req, source, link))
    }

    /// The `Retry-After` to answer with a 202.
    pub fn retry_after(&self) -> Duration {
        self.inner.settings.retry_after
    }

    fn spawn(
        &self,
        fence: JobFence,
        target: i64,
        req: ImportRequest,
        source: Box<dyn Source>,
        link_in_target: bool,
    ) -> watch::Receiver<Option<Result<Value, ArmError>>> {
        let id = fence.id.clone();
        let (tx, rx) = watch::channel(None);
        let progress = Arc::new(Progress::default());
        progress.set_phase("Queued");
        if self.inner.running.available_permits() == 0 {
            progress.set_note(queued_note(self.inner.settings.max_running));
        }
        let cancel = CancellationToken::new();
        lock(&self.inner.live).insert(
            id.clone(),
            Live {
                registry: target,
                progress: progress.clone(),
                done: rx.clone(),
                cancel: cancel.clone(),
            },
        );
        let inner = self.inner.clone();
        // The supervisor: records an outcome whatever the job does, a panic included, and
        // keeps the job's lease while it runs.
        tokio::spawn(async move {
            let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let beating = CancellationToken::new();
            tokio::spawn(heartbeat(
                inner.clone(),
                fence.clone(),
                progress.clone(),
                cancel.clone(),
                lost.clone(),
                beating.clone(),
            ));
            let job = tokio::spawn(run_job(
                inner.clone(),
                fence.clone(),
                Target { id: target, link_in_target },
                req,
                source,
                progress.clone(),
                cancel,
            ));
            let result = supervised(job).await;
            beating.cancel();
            let lost = lost.load(std::sync::atomic::Ordering::SeqCst);
            finish(&inner, &fence, result, &progress, tx, lost).await;
        });
        rx
    }

    /// Stop a job: it ends `Canceled` (nothing it copied becomes visible). Only a job of a
    /// registry in `subscription` is found there.
    pub async fn cancel(&self, id: &str, subscription: &str) -> Result<CancelOutcome, ArmError> {
        let live = lock(&self.inner.live).get(id).map(|l| (l.registry, l.cancel.clone()));
        let registry = match &live {
            Some((registry, _)) => *registry,
            None => self.inner.store.job(id).await?.ok_or_else(|| not_found(id))?.registry_id,
        };
        if !self.in_subscription(registry, subscription).await? {
            return Err(not_found(id));
        }
        match live {
            Some((_, token)) => {
                tracing::info!(job = %id, "import cancellation requested");
                token.cancel();
                Ok(CancelOutcome::Requested)
            }
            // Running on another server of the cluster: it sees the request at its next
            // heartbeat.
            None if self.inner.store.request_job_cancel(id).await? => {
                tracing::info!(job = %id, "import cancellation requested of its server");
                Ok(CancelOutcome::Requested)
            }
            None => {
                let job = self.inner.store.job(id).await?.ok_or_else(|| not_found(id))?;
                Err(ArmError::conflict(
                    "OperationNotCancelable",
                    format!("The operation '{id}' has already finished ({}).", job.status),
                ))
            }
        }
    }

    /// The registry a job imports into (what its status and cancel are authorized on), if
    /// the job exists in `subscription`.
    pub async fn job_registry(
        &self,
        id: &str,
        subscription: &str,
    ) -> Result<Option<RegistryRecord>, ArmError> {
        let live = lock(&self.inner.live).get(id).map(|l| l.registry);
        let registry = match live {
            Some(r) => r,
            None => match self.inner.store.job(id).await? {
                Some(job) => job.registry_id,
                None => return Ok(None),
            },
        };
        Ok(self
            .inner
            .management
            .registry_by_number(registry)
            .await?
            .filter(|r| r.subscription.eq_ignore_ascii_case(subscription)))
    }

    async fn in_subscription(&self, registry: i64, subscription: &str) -> Result<bool, ArmError> {
        Ok(self
            .inner
            .management
            .registry_by_number(registry)
            .await?
            .is_some_and(|r| r.subscription.eq_ignore_ascii_case(subscription)))
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
        if !self.in_subscription(registry, subscription).await? {
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
        Ok(match JobState::parse(&job.status) {
            Some(JobState::Succeeded) => JobStatus::Succeeded(progress),
            Some(JobState::Failed | JobState::Canceled) => {
                JobStatus::Failed(StoredError::read(job.error.as_deref()))
            }
            // Running on another server of the cluster: what its last heartbeat recorded.
            _ => {
                let mut v = progress;
                match v.as_object_mut() {
                    Some(o) => {
                        o.insert("status".into(), json!("Accepted"));
                    }
                    None => v = json!({"status": "Accepted"}),
                }
                JobStatus::Running(v)
            }
        })
    }

    /// Forget finished jobs older than `age` (their status can no longer be polled).
    pub async fn forget_finished(&self, age: Duration) -> Result<u64, ArmError> {
        Ok(self.inner.store.delete_finished_jobs(now_millis() - age.as_millis() as i64).await?)
    }

    /// Take over the jobs this server ran before a restart, and those of servers that
    /// stopped renewing their leases: resume those that can be (no credentials), fail the
    /// others cleanly.
    pub async fn resume_unfinished(&self) -> Result<(), ArmError> {
        self.take_over(true).await
    }

    /// Claim and resume (or fail) jobs whose lease ran out, and with `restarted` this
    /// node's own from before its restart. (A node's sweeps never claim its own live jobs:
    /// that would move their lease epoch under them.)
    async fn take_over(&self, restarted: bool) -> Result<(), ArmError> {
        let lease = millis(self.inner.settings.job_lease);
        let node = &self.inner.settings.node;
        let running: Vec<String> = {
            let live = lock(&self.inner.live);
            let starting = lock(&self.inner.starting);
            live.keys().chain(starting.iter()).cloned().collect()
        };
        let claimed = self.inner.store.claim_jobs(node, lease, restarted, &running).await?;
        for job in claimed {
            let fence = JobFence {
                id: job.id.clone(),
                owner: self.inner.settings.node.clone(),
                epoch: job.lease_epoch,
            };
            let here = lock(&self.inner.live).contains_key(&job.id)
                || lock(&self.inner.starting).contains(&job.id);
            if here {
                continue;
            }
            if job.status == "Canceling" {
                let e = ArmError::bad_request("ImportCanceled", "The import was canceled.");
                self.inner
                    .store
                    .update_job(
                        &fence,
                        JobState::Canceled.as_str(),
                        &job.progress,
                        Some(&StoredError::of(&e)),
                    )
                    .await?;
                continue;
            }
            let target = self.inner.management.registry_by_number(job.registry_id).await?;
            let stored = serde_json::from_str::<Value>(&job.request).ok();
            // Read on behalf of whoever submitted it, as when it started.
            let principal = stored.as_ref().and_then(|v| v["caller"].as_str());
            let caller =
                self.inner.identity.caller_by_id(principal).await.map_err(ArmError::from)?;
            let request = stored.and_then(|v| parse_parameters(&v).ok());
            let resumed = match (job.resumable, target, request) {
                (true, Some(target), Some(req)) => {
                    match self.source(&req, &caller, target.id).await {
                        Ok(source) => {
                            tracing::info!(job = %job.id, "resuming an import its server stopped running");
                            let link = caller.can_read_all(&Management::policy(&target));
                            self.spawn(fence.clone(), target.id, req, source, link);
                            true
                        }
                        Err(_) => false,
                    }
                }
                _ => false,
            };
            if !resumed {
                let e = ArmError::bad_request(
                    "ImportInterrupted",
                    "The import was interrupted (its server stopped) and could not be resumed (source credentials are never stored). Run it again.",
                );
                self.inner
                    .store
                    .update_job(
                        &fence,
                        JobState::Failed.as_str(),
                        &job.progress,
                        Some(&StoredError::of(&e)),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Every third of a lease: take over jobs whose server stopped renewing them. Runs until
    /// the process ends.
    pub async fn watch_jobs(self) {
        let every = self.inner.settings.job_lease / 3;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.take_over(false).await {
                tracing::warn!(code = %e.code, error = %e.message, "cannot take over import jobs");
            }
        }
    }

    /// The source an import reads from. A `registryUri` that is one of this server's login
    /// servers is read locally, like a `resourceId`.
    async fn source(
        &self,
        req: &ImportRequest,
        caller: &Caller,
        target: i64,
    ) -> Result<Box<dyn Source>, ImportError> {
        let inner = &self.inner;
        // A registry on this server is read through the trusted in-server path: its network
        // rules let that path through unless its owner closed it, and its export policy may
        // forbid copying anything out of it.
        let reachable = |r: &RegistryRecord| -> Result<(), ImportError> {
            let net = Management::network(r);
            if !net.export && r.id != target {
                return Err(ImportError::SourceForbidden(format!(
                    "The source registry '{}' has exports disabled (policies.exportPolicy): its images can't be imported into another registry.",
                    r.name
                )));
            }
            if net.restricted() && !net.trusted_services {
                return Err(ImportError::SourceForbidden(format!(
                    "The source registry '{}' restricts network access and doesn't allow trusted services (networkRuleBypassOptions: None).",
                    r.name
                )));
            }
            Ok(())
        };
        // A registry on this server is read as `reader`, who must be allowed to pull the
        // source repository there.
        let local = |r: RegistryRecord, reader: &Caller| -> Result<Box<dyn Source>, ImportError> {
            let policy = Management::policy(&r);
            if !reader.can(RepoOp::Pull, &policy, req.source_repo.as_str()) {
                if reader.is_anonymous() {
                    return Err(ImportError::SourceUnauthorized(format!(
                        "The source registry '{}' requires valid credentials to read '{}'.",
                        r.name, req.source_repo
                    )));
                }
                let who = reader.display();
                return Err(ImportError::Arm(ArmError::new(
                    ErrorKind::Forbidden,
                    "AuthorizationFailed",
                    format!(
                        "The client '{who}' with object id '{who}' does not have authorization to perform action '{}' over scope '{}/repositories/{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                        wharf_auth::actions::PULL,
                        policy.scope,
                        req.source_repo
                    ),
                )));
            }
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
                reachable(&r)?;
                local(r, caller)
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
                    // By its login server, a registry is reached as over its public network:
                    // closed if that is; ACR's way around is the resourceId form.
                    if Management::network(&r).restricted() {
                        return Err(ImportError::SourceForbidden(format!(
                            "The source registry '{host}' restricts network access (public access disabled or IP rules): give it by resource ID (source.resourceId, or --registry with the resource ID) to import through the trusted path."
                        )));
                    }
                    reachable(&r)?;
                    // Read as whoever the given credentials are (anonymous without any), as
                    // a registry elsewhere would: not as the caller.
                    let login = inner.management.login_server(&r);
                    let policy = Management::policy(&r);
                    let credential = credentials.as_ref().map(|c| RegistryCredential::Basic {
                        username: c.username.as_deref().unwrap_or(""),
                        password: &c.password,
                    });
                    let reader = inner
                        .identity
                        .registry_caller(&policy, &login, credential, None)
                        .await
                        .map_err(|e| match e {
                            wharf_auth::AuthError::Internal(m) => ImportError::Internal(m),
                            _ => ImportError::SourceUnauthorized(format!(
                                "The source registry '{host}' refused the credentials."
                            )),
                        })?;
                    return local(r, &reader);
                }
                let endpoint = inner.policy.endpoint(registry_uri)?;
                let key = endpoint.base.as_str().to_owned();
                let limiter = lock(&inner.limiters)
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Arc::new(match &inner.cluster {
                            Some(cluster) => HostLimiter::shared(cluster.clone(), key),
                            None => HostLimiter::default(),
                        })
                    })
                    .clone();
                Ok(Box::new(RemoteSource(RemoteRegistry::new(
                    inner.http.clone(),
                    endpoint,
                    credentials.clone(),
                    limiter,
                    inner.policy.clone(),
                    inner.settings.request_timeout,
                ))))
            }
        }
    }
}

/// Wait for a job's task; a panic becomes an internal error (logged) instead of a job that
/// never ends.
async fn supervised(
    job: tokio::task::JoinHandle<Result<(), ImportError>>,
) -> Result<(), ImportError> {
    match job.await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error = %e, "an import task failed");
            Err(ImportError::Internal(
                "The import failed inside the server (the error is in its log); run it again."
                    .into(),
            ))
        }
    }
}

/// A job from its slot to its outcome: queued until an import slot is free, then run under
/// the deadline, stopping early if cancelled.
/// Where a job writes: the registry, and whether its caller may read all of it (then blobs
/// already there are linked without a download).
struct Target {
    id: i64,
    link_in_target: bool,
}

async fn run_job(
    inner: Arc<Inner>,
    fence: JobFence,
    target: Target,
    req: ImportRequest,
    source: Box<dyn Source>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> Result<(), ImportError> {
    let Target { id: target, link_in_target } = target;
    let canceled = || ImportError::Canceled("The import was canceled.".into());
    if inner.running.available_permits() == 0 {
        progress.set_note(queued_note(inner.settings.max_running));
    }
    let _slot = tokio::select! {
        slot = inner.running.clone().acquire_owned() => slot.map_err(ImportError::internal)?,
        () = cancel.cancelled() => return Err(canceled()),
    };
    progress.set_note(String::new());
    progress.set_phase("Resolving");
    if let Err(e) = inner.store.update_job(&fence, JobState::Running.as_str(), "{}", None).await {
        tracing::warn!(job = %fence.id, error = %e, "cannot record that an import started");
    }
    let engine = Engine {
        registry: &inner.registry,
        inflight: &inner.inflight,
        parallel: inner.settings.parallel_blobs,
        progress,
        downloads: &inner.downloads,
        limits: &inner.settings.limits,
        min_throughput: inner.settings.min_throughput,
        cancel: cancel.clone(),
        link_in_target,
        fence,
    };
    let work = engine.run(source.as_ref(), &req, target);
    tokio::pin!(work);
    let deadline = inner.settings.deadline;
    let stopped = tokio::select! {
        result = &mut work => return result,
        () = tokio::time::sleep(deadline) => ImportError::DeadlineExceeded(format!(
            "The import did not finish within {} (import.deadline); nothing was changed.",
            humanize(deadline)
        )),
        () = cancel.cancelled() => canceled(),
    };
    // Let the downloads stop and drop what they staged, within bounds. Work that finished
    // meanwhile (its commit had begun) did what it said: that's the outcome.
    cancel.cancel();
    match tokio::time::timeout(WIND_DOWN, &mut work).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(stopped),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// While a job runs: renew its lease and record its progress every third of a lease; stop
/// it when a cancel was asked on another server, when the job is no longer this server's
/// (taken over), or when no renewal got through for a whole lease (another server may
/// take it over now: this one must not go on writing as if it still held it).
async fn heartbeat(
    inner: Arc<Inner>,
    fence: JobFence,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    lost: Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
) {
    let lease = inner.settings.job_lease;
    let mut renewed = tokio::time::Instant::now();
    let id = &fence.id;
    let give_up = |why: &str| {
        tracing::warn!(job = %id, "{why}; stopping it here");
        lost.store(true, std::sync::atomic::Ordering::SeqCst);
        cancel.cancel();
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(lease / 3) => {}
        }
        let snapshot = progress.snapshot().to_string();
        // A renewal counts from when it was sent, and may take no longer than what is left
        // of the lease: past it, another server may hold the job.
        let sent = tokio::time::Instant::now();
        let left = lease.saturating_sub(renewed.elapsed());
        let renewal = inner.store.heartbeat_job(&fence, &snapshot, millis(lease));
        match tokio::time::timeout(left, renewal).await {
            Ok(Ok(Some(status))) if status == "Canceling" => {
                renewed = sent;
                tracing::info!(job = %id, "import cancellation requested on another server");
                cancel.cancel();
            }
            Ok(Ok(Some(_))) => renewed = sent,
            Ok(Ok(None)) => return give_up("import taken over by another server"),
            Ok(Err(e)) if renewed.elapsed() < lease => {
                tracing::warn!(job = %id, error = %e, "cannot renew an import's lease");
            }
            Ok(Err(e)) => {
                tracing::warn!(job = %id, error = %e, "cannot renew an import's lease");
                return give_up("no lease renewal got through for a whole lease");
            }
            Err(_) => return give_up("no lease renewal got through for a whole lease"),
        }
    }
}

/// Record a job's outcome (unless another server has taken it over), tell the waiters,
/// forget it from memory.
async fn finish(
    inner: &Inner,
    fence: &JobFence,
    result: Result<(), ImportError>,
    progress: &Progress,
    tx: watch::Sender<Option<Result<Value, ArmError>>>,
    lost: bool,
) {
    let snapshot = progress.snapshot();
    let id = fence.id.as_str();
    let lost = lost || matches!(result, Err(ImportError::TakenOver(_)));
    let (state, error) = match &result {
        Ok(()) => (JobState::Succeeded, None),
        Err(ImportError::Canceled(_)) => {
            (JobState::Canceled, result.as_ref().err().map(ImportError::to_arm))
        }
        Err(e) => (JobState::Failed, Some(e.to_arm())),
    };
    match &error {
        None => tracing::info!(job = %id, "import succeeded"),
        Some(e) => tracing::warn!(job = %id, code = %e.code, error = %e.message, "import failed"),
    }
    if lost {
        // The server that took it over records the outcome.
    } else {
        let stored = inner
            .store
            .update_job(
                fence,
                state.as_str(),
                &snapshot.to_string(),
                error.as_ref().map(StoredError::of).as_deref(),
            )
            .await;
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %id, "import taken over meanwhile: its outcome is the new server's to record")
            }
            Err(e) => tracing::error!(job = %id, error = %e, "cannot record an import's outcome"),
        }
    }
    let outcome = match error {
        None => Ok(snapshot),
        Some(e) => Err(e),
    };
    let _ = tx.send(Some(outcome));
    lock(&inner.live).remove(id);
}

fn queued_note(max_running: usize) -> String {
    format!("Waiting for an import slot: {max_running} imports are running (import.max_running).")
}

/// `2h`, `90s`: a duration as the configuration file spells it.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_ends_failed_with_an_internal_error() {
        let job = tokio::spawn(async {
            if std::hint::black_box(true) {
                panic!("a bug in a job");
            }
            Ok(())
        });
        match supervised(job).await {
            Err(e @ ImportError::Internal(_)) => assert_eq!(e.code(), "InternalServerError"),
            other => panic!("expected an internal error, got {other:?}"),
        }
    }

    #[test]
    fn stored_errors_keep_their_kind() {
        let e =
            ArmError::conflict("TagAlreadyExists", "Tag a:b already exists in target registry.");
        let back = StoredError::read(Some(&StoredError::of(&e)));
        assert_eq!(back, e);
        assert_eq!(StoredError::read(Some("garbage")).code, "ImportFailed");
        for st in ["Accepted", "Running", "Succeeded", "Failed", "Canceled"] {
            assert_eq!(JobState::parse(st).map(JobState::as_str), Some(st));
        }
    }
}
