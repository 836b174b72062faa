//! Live progress of an import, as the operation status reports it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use wharf_storage::{JobCounters, JobProgress, ManifestState, Phase};

use crate::plan::Plan;

pub(crate) struct Progress {
    phase: Mutex<Phase>,
    /// Why the job waits, when it does.
    note: Mutex<String>,
    /// `(<source repo>@<digest>, state)` per manifest, the keys ACR's status uses.
    manifests: Mutex<Vec<(String, ManifestState)>>,
    platforms: Mutex<Vec<String>>,
    referrers: AtomicU64,
    pub(crate) bytes_total: AtomicU64,
    pub(crate) bytes_done: AtomicU64,
    pub(crate) blobs_total: AtomicU64,
    pub(crate) blobs_done: AtomicU64,
    /// Blobs the server already had (not downloaded).
    pub(crate) blobs_reused: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            phase: Mutex::new(Phase::Queued),
            note: Mutex::default(),
            manifests: Mutex::default(),
            platforms: Mutex::default(),
            referrers: AtomicU64::default(),
            bytes_total: AtomicU64::default(),
            bytes_done: AtomicU64::default(),
            blobs_total: AtomicU64::default(),
            blobs_done: AtomicU64::default(),
            blobs_reused: AtomicU64::default(),
        }
    }
}

impl Progress {
    pub(crate) fn set_phase(&self, phase: Phase) {
        *lock(&self.phase) = phase;
    }

    pub(crate) fn set_note(&self, note: String) {
        *lock(&self.note) = note;
    }

    pub(crate) fn set_plan(&self, repo: &str, plan: &Plan) {
        *lock(&self.manifests) = plan
            .manifests
            .iter()
            .map(|m| (format!("{repo}@{}", m.digest), ManifestState::Pending))
            .collect();
        *lock(&self.platforms) = plan.platforms.clone();
        self.referrers
            .store(plan.manifests.iter().filter(|m| m.referrer).count() as u64, Ordering::Relaxed);
        self.bytes_total.store(plan.bytes_total(), Ordering::Relaxed);
        self.blobs_total.store(plan.blobs.len() as u64, Ordering::Relaxed);
    }

    pub(crate) fn manifests_succeeded(&self) {
        for m in lock(&self.manifests).iter_mut() {
            m.1 = ManifestState::Succeeded;
        }
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn blob_done(&self, reused: bool) {
        self.blobs_done.fetch_add(1, Ordering::Relaxed);
        if reused {
            self.blobs_reused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// ACR's status map (`"<repo>@<digest>": "Pending"`), plus a `progress` object.
    pub(crate) fn snapshot(&self) -> JobProgress {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let manifests = lock(&self.manifests);
        let note = lock(&self.note).clone();
        JobProgress {
            message: (!note.is_empty()).then_some(note),
            progress: Some(JobCounters {
                phase: *lock(&self.phase),
                bytes_total: l(&self.bytes_total),
                bytes_done: l(&self.bytes_done),
                blobs_total: l(&self.blobs_total),
                blobs_done: l(&self.blobs_done),
                blobs_reused: l(&self.blobs_reused),
                manifests_total: manifests.len() as u64,
                referrers: l(&self.referrers),
                platforms: lock(&self.platforms).clone(),
            }),
            manifests: manifests.iter().cloned().collect(),
        }
    }
}
