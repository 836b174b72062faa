//! Live progress of an import, as the operation status reports it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value, json};

use crate::plan::Plan;

#[derive(Default)]
pub(crate) struct Progress {
    phase: Mutex<&'static str>,
    /// Why the job waits, when it does.
    note: Mutex<String>,
    /// `(<source repo>@<digest>, state)` per manifest, the keys ACR's status uses.
    manifests: Mutex<Vec<(String, &'static str)>>,
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

impl Progress {
    pub(crate) fn set_phase(&self, phase: &'static str) {
        *lock(&self.phase) = phase;
    }

    pub(crate) fn set_note(&self, note: String) {
        *lock(&self.note) = note;
    }

    pub(crate) fn set_plan(&self, repo: &str, plan: &Plan) {
        *lock(&self.manifests) =
            plan.manifests.iter().map(|m| (format!("{repo}@{}", m.digest), "Pending")).collect();
        *lock(&self.platforms) = plan.platforms.clone();
        self.referrers
            .store(plan.manifests.iter().filter(|m| m.referrer).count() as u64, Ordering::Relaxed);
        self.bytes_total.store(plan.bytes_total(), Ordering::Relaxed);
        self.blobs_total.store(plan.blobs.len() as u64, Ordering::Relaxed);
    }

    pub(crate) fn manifests_succeeded(&self) {
        for m in lock(&self.manifests).iter_mut() {
            m.1 = "Succeeded";
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
    pub(crate) fn snapshot(&self) -> Value {
        let mut out = Map::new();
        for (key, state) in lock(&self.manifests).iter() {
            out.insert(key.clone(), json!(state));
        }
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let note = lock(&self.note).clone();
        if !note.is_empty() {
            out.insert("message".into(), json!(note));
        }
        out.insert(
            "progress".into(),
            json!({
                "phase": *lock(&self.phase),
                "bytesTotal": l(&self.bytes_total),
                "bytesDone": l(&self.bytes_done),
                "blobsTotal": l(&self.blobs_total),
                "blobsDone": l(&self.blobs_done),
                "blobsReused": l(&self.blobs_reused),
                "manifestsTotal": lock(&self.manifests).len(),
                "referrers": l(&self.referrers),
                "platforms": *lock(&self.platforms),
            }),
        );
        Value::Object(out)
    }
}
