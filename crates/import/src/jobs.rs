//! Import jobs: submitted, queued for a slot, run in the background under a deadline,
//! polled, cancelled, resumed after a restart.
//!
//! Every job runs inside a supervisor task: whatever the job does — fail, run out of time,
//! be cancelled, panic — the supervisor records an outcome, so no job stays `Running`.

mod lease;
mod resolve;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wharf_auth::{Caller, Identity};
use wharf_management::Management;
use wharf_registry::RegistryService;
use wharf_storage::{
    Coordination, JobError, JobFence, JobProgress, JobRecord, JobState, ManagementStore, Phase,
    RegistryId, RegistryRecord, now_millis,
};

use crate::ImportError;
use crate::engine::{Engine, MinThroughput};
use crate::inflight::Inflight;
use crate::plan::PlanLimits;
use crate::policy::{EgressPolicy, EgressRefused, PolicyResolver, redact_url};
use crate::progress::Progress;
use crate::remote::HostLimiter;
use crate::request::ImportRequest;
use crate::source::Source;

/// How long a cancelled or timed-out job gets to stop on its own (close its downloads,
/// drop what it staged) before it is dropped.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// Tunables of the import engine; each is a key of the `[import]` configuration section.
#[derive(Clone, Debug)]
pub struct ImportSettings {
    /// Blobs downloaded at once per import.
    pub parallel_blobs: usize,
    /// How long `importImage` waits before answering 202 instead of 200 (zero: it always
    /// answers 202).
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
    Done { id: String, result: Result<(), JobError> },
    Running { id: String },
}

/// An import job as polled.
#[derive(Debug)]
pub enum JobStatus {
    /// Not finished (queued or running); ACR's status map with progress.
    Running(Value),
    Succeeded(Value),
    /// Failed or canceled: the error it ended with.
    Failed(JobError),
}

/// How a job ended, as its waiters learn it.
type Outcome = Result<JobProgress, JobError>;

/// What [`ImportService::cancel`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was told to stop; it ends `Canceled` shortly.
    Requested,
}

struct Live {
    registry: RegistryId,
    progress: Arc<Progress>,
    done: watch::Receiver<Option<Outcome>>,
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

fn not_found(id: &str) -> ImportError {
    ImportError::OperationNotFound(format!("The operation '{id}' was not found."))
}

/// A job's progress as its status reports it (a `Value`'s keys are sorted, as the status
/// has always listed them).
fn report(progress: &JobProgress) -> Value {
    serde_json::to_value(progress).unwrap_or_else(|_| json!({}))
}

/// What a job not finished reports: its progress, `Accepted`.
fn running(progress: &JobProgress) -> JobStatus {
    let mut v = report(progress);
    if let Some(o) = v.as_object_mut() {
        o.insert("status".into(), json!("Accepted"));
    }
    JobStatus::Running(v)
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
    ) -> Result<Submitted, ImportError> {
        self.admit(target)?;
        let source = self.source(&req, caller, target.id).await?;
        let id = format!("registries-{}", Uuid::new_v4());
        let now = now_millis();
        lock(&self.inner.starting).insert(id.clone());
        let started = self.record_and_spawn(id.clone(), now, target, req, source, caller).await;
        lock(&self.inner.starting).remove(&id);
        let mut done = started?;
        // No wait means none: the answer is 202 whatever the job did meanwhile (a timeout
        // of zero would still look once, and that look races the job).
        if self.inner.settings.sync_wait.is_zero() {
            return Ok(Submitted::Running { id });
        }
        let finished =
            tokio::time::timeout(self.inner.settings.sync_wait, done.wait_for(Option::is_some))
                .await;
        match finished {
            Ok(Ok(result)) => {
                let result = result.as_ref().map_or(Ok(()), |r| r.as_ref().map(|_| ()));
                Ok(Submitted::Done { id, result: result.map_err(Clone::clone) })
            }
            _ => Ok(Submitted::Running { id }),
        }
    }

    /// Whether an import into `target` may start now.
    fn admit(&self, target: &RegistryRecord) -> Result<(), ImportError> {
        let waiting = lock(&self.inner.live).len();
        let settings = &self.inner.settings;
        if waiting >= settings.max_running.saturating_add(settings.max_queued) {
            return Err(ImportError::TooManyImports(format!(
                "{waiting} imports are running or queued on this server (import.max_queued); retry later."
            )));
        }
        // A network-restricted target is written only through the trusted path, which its
        // owner may have closed.
        let net = Management::network(target);
        if net.restricted() && !net.trusted_services {
            return Err(ImportError::NetworkRestricted(format!(
                "The registry '{}' restricts network access and doesn't allow trusted services (networkRuleBypassOptions: None), so nothing can be imported into it. Set networkRuleBypassOptions to AzureServices to allow import.",
                target.name
            )));
        }
        Ok(())
    }

    async fn record_and_spawn(
        &self,
        id: String,
        now: i64,
        target: &RegistryRecord,
        req: ImportRequest,
        source: Box<dyn Source>,
        caller: &Caller,
    ) -> Result<watch::Receiver<Option<Outcome>>, ImportError> {
        let stored = req.stored(caller.principal_id().map(str::to_owned));
        let stored = serde_json::to_string(&stored).map_err(ImportError::internal)?;
        self.inner
            .store
            .create_job(
                &JobRecord {
                    id: id.clone(),
                    registry_id: target.id,
                    request: stored,
                    resumable: !req.has_credentials(),
                    status: JobState::Accepted,
                    progress: JobProgress::default(),
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
        target: RegistryId,
        req: ImportRequest,
        source: Box<dyn Source>,
        link_in_target: bool,
    ) -> watch::Receiver<Option<Outcome>> {
        let id = fence.id.clone();
        let (tx, rx) = watch::channel(None);
        let progress = Arc::new(Progress::default());
        progress.set_phase(Phase::Queued);
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
            let lost = Arc::new(AtomicBool::new(false));
            let beating = CancellationToken::new();
            tokio::spawn(lease::heartbeat(
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
            let lost = lost.load(Ordering::SeqCst);
            finish(&inner, &fence, result, &progress, tx, lost).await;
        });
        rx
    }

    /// Stop a job: it ends `Canceled` (nothing it copied becomes visible). Only a job of a
    /// registry in `subscription` is found there.
    pub async fn cancel(&self, id: &str, subscription: &str) -> Result<CancelOutcome, ImportError> {
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
                Err(ImportError::OperationNotCancelable(format!(
                    "The operation '{id}' has already finished ({}).",
                    job.status.as_str()
                )))
            }
        }
    }

    /// The registry a job imports into (what its status and cancel are authorized on), if
    /// the job exists in `subscription`.
    pub async fn job_registry(
        &self,
        id: &str,
        subscription: &str,
    ) -> Result<Option<RegistryRecord>, ImportError> {
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

    async fn in_subscription(
        &self,
        registry: RegistryId,
        subscription: &str,
    ) -> Result<bool, ImportError> {
        Ok(self
            .inner
            .management
            .registry_by_number(registry)
            .await?
            .is_some_and(|r| r.subscription.eq_ignore_ascii_case(subscription)))
    }

    /// A job's status: live progress while it runs, the stored outcome after. Only a job
    /// of a registry in `subscription` is found there.
    pub async fn status(&self, id: &str, subscription: &str) -> Result<JobStatus, ImportError> {
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
            return Ok(match done.borrow().as_ref() {
                Some(Ok(finished)) => JobStatus::Succeeded(report(finished)),
                Some(Err(e)) => JobStatus::Failed(e.clone()),
                None => running(&progress.snapshot()),
            });
        }
        let job = self.inner.store.job(id).await?.ok_or_else(|| not_found(id))?;
        Ok(match job.status {
            JobState::Succeeded => JobStatus::Succeeded(report(&job.progress)),
            JobState::Failed | JobState::Canceled => {
                JobStatus::Failed(job.error.unwrap_or_else(|| JobError {
                    code: "ImportFailed".into(),
                    message: "The import failed.".into(),
                }))
            }
            // Running on another server of the cluster: what its last heartbeat recorded.
            JobState::Accepted | JobState::Running | JobState::Canceling => running(&job.progress),
        })
    }

    /// Forget finished jobs older than `age` (their status can no longer be polled).
    pub async fn forget_finished(&self, age: Duration) -> Result<u64, ImportError> {
        Ok(self.inner.store.delete_finished_jobs(now_millis() - age.as_millis() as i64).await?)
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

/// Where a job writes: the registry, and whether its caller may read all of it (then blobs
/// already there are linked without a download).
struct Target {
    id: RegistryId,
    link_in_target: bool,
}

/// A job from its slot to its outcome: queued until an import slot is free, then run under
/// the deadline, stopping early if cancelled.
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
    if inner.running.available_permits() == 0 {
        progress.set_note(queued_note(inner.settings.max_running));
    }
    let _slot = tokio::select! {
        slot = inner.running.clone().acquire_owned() => slot.map_err(ImportError::internal)?,
        () = cancel.cancelled() => return Err(ImportError::canceled()),
    };
    progress.set_note(String::new());
    progress.set_phase(Phase::Resolving);
    let started = JobProgress::default();
    if let Err(e) = inner.store.update_job(&fence, JobState::Running, &started, None).await {
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
        () = cancel.cancelled() => ImportError::canceled(),
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

/// Record a job's outcome (unless another server has taken it over), tell the waiters,
/// forget it from memory.
async fn finish(
    inner: &Inner,
    fence: &JobFence,
    result: Result<(), ImportError>,
    progress: &Progress,
    tx: watch::Sender<Option<Outcome>>,
    lost: bool,
) {
    let snapshot = progress.snapshot();
    let id = fence.id.as_str();
    let lost = lost || matches!(result, Err(ImportError::TakenOver(_)));
    let (state, error) = match &result {
        Ok(()) => (JobState::Succeeded, None),
        Err(e @ ImportError::Canceled(_)) => (JobState::Canceled, Some(e.to_job_error())),
        Err(e) => (JobState::Failed, Some(e.to_job_error())),
    };
    match &error {
        None => tracing::info!(job = %id, "import succeeded"),
        Some(e) => tracing::warn!(job = %id, code = %e.code, error = %e.message, "import failed"),
    }
    if lost {
        // The server that took it over records the outcome.
    } else {
        let stored = inner.store.update_job(fence, state, &snapshot, error.as_ref()).await;
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
    fn a_jobs_error_keeps_its_code_and_message() {
        let e = ImportError::TagAlreadyExists("Tag a:b already exists in target registry.".into());
        let stored = e.to_job_error();
        assert_eq!(stored.code, "TagAlreadyExists");
        assert_eq!(stored.message, "Tag a:b already exists in target registry.");
        let arm = wharf_management::ArmError::not_found("ResourceNotFound", "gone");
        assert_eq!(ImportError::Management(arm).to_job_error().message, "gone");
    }
}
