//! A job's lease: renewed by its server's heartbeat while it runs; once it runs out (the
//! server died, or restarted), another server — or the same one, restarted — claims the
//! job under a new epoch and resumes it, or fails it cleanly if it can't be resumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use wharf_management::Management;
use wharf_storage::{JobFence, JobRecord, JobState};

use super::{ImportService, Inner, lock, millis};
use crate::ImportError;
use crate::progress::Progress;
use crate::request::StoredRequest;

impl ImportService {
    /// Take over the jobs this server ran before a restart, and those of servers that
    /// stopped renewing their leases: resume those that can be (no credentials), fail the
    /// others cleanly.
    pub async fn resume_unfinished(&self) -> Result<(), ImportError> {
        self.take_over(true).await
    }

    /// Every third of a lease: take over jobs whose server stopped renewing them. Runs until
    /// the process ends.
    pub async fn watch_jobs(self) {
        let every = self.inner.settings.job_lease / 3;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.take_over(false).await {
                tracing::warn!(code = %e.code(), error = %e, "cannot take over import jobs");
            }
        }
    }

    /// Claim and resume (or fail) jobs whose lease ran out, and with `restarted` this
    /// node's own from before its restart. (A node's sweeps never claim its own live jobs:
    /// that would move their lease epoch under them.)
    async fn take_over(&self, restarted: bool) -> Result<(), ImportError> {
        let lease = millis(self.inner.settings.job_lease);
        let node = &self.inner.settings.node;
        let running: Vec<String> = {
            let live = lock(&self.inner.live);
            let starting = lock(&self.inner.starting);
            live.keys().chain(starting.iter()).cloned().collect()
        };
        let claimed = self.inner.store.claim_jobs(node, lease, restarted, &running).await?;
        for job in claimed {
            let here = lock(&self.inner.live).contains_key(&job.id)
                || lock(&self.inner.starting).contains(&job.id);
            if !here {
                self.take(job).await?;
            }
        }
        Ok(())
    }

    /// A job just claimed: ended if a cancel was asked, else resumed, or failed if it
    /// can't be.
    async fn take(&self, job: JobRecord) -> Result<(), ImportError> {
        let fence = JobFence {
            id: job.id.clone(),
            owner: self.inner.settings.node.clone(),
            epoch: job.lease_epoch,
        };
        let ended = match job.status {
            JobState::Canceling => {
                Some((JobState::Canceled, ImportError::Canceled("The import was canceled.".into())))
            }
            _ if self.resume(&job, &fence).await? => None,
            _ => Some((
                JobState::Failed,
                ImportError::Interrupted(
                    "The import was interrupted (its server stopped) and could not be resumed (source credentials are never stored). Run it again.".into(),
                ),
            )),
        };
        if let Some((state, e)) = ended {
            let error = e.to_job_error();
            self.inner.store.update_job(&fence, state, &job.progress, Some(&error)).await?;
        }
        Ok(())
    }

    /// Run a claimed job again, read on behalf of whoever submitted it, as when it started;
    /// `false` if it can't be (it had credentials, its target or source is gone).
    async fn resume(&self, job: &JobRecord, fence: &JobFence) -> Result<bool, ImportError> {
        let target = self.inner.management.registry_by_number(job.registry_id).await?;
        let stored = serde_json::from_str::<StoredRequest>(&job.request).ok();
        let principal = stored.as_ref().and_then(|s| s.caller.as_deref());
        let caller = self.inner.identity.caller_by_id(principal).await?;
        let request = stored.and_then(|s| s.request().ok());
        let (true, Some(target), Some(req)) = (job.resumable, target, request) else {
            return Ok(false);
        };
        let Ok(source) = self.source(&req, &caller, target.id).await else { return Ok(false) };
        tracing::info!(job = %job.id, "resuming an import its server stopped running");
        let link = caller.can_read_all(&Management::policy(&target));
        self.spawn(fence.clone(), target.id, req, source, link);
        Ok(true)
    }
}

/// While a job runs: renew its lease and record its progress every third of a lease; stop
/// it when a cancel was asked on another server, when the job is no longer this server's
/// (taken over), or when no renewal got through for a whole lease (another server may
/// take it over now: this one must not go on writing as if it still held it).
pub(super) async fn heartbeat(
    inner: Arc<Inner>,
    fence: JobFence,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let lease = inner.settings.job_lease;
    let mut renewed = tokio::time::Instant::now();
    let id = &fence.id;
    let give_up = |why: &str| {
        tracing::warn!(job = %id, "{why}; stopping it here");
        lost.store(true, Ordering::SeqCst);
        cancel.cancel();
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(lease / 3) => {}
        }
        let snapshot = progress.snapshot();
        // A renewal counts from when it was sent, and may take no longer than what is left
        // of the lease: past it, another server may hold the job.
        let sent = tokio::time::Instant::now();
        let left = lease.saturating_sub(renewed.elapsed());
        let renewal = inner.store.heartbeat_job(&fence, &snapshot, millis(lease));
        match tokio::time::timeout(left, renewal).await {
            Ok(Ok(Some(JobState::Canceling))) => {
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
