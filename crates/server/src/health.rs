//! Health probes for load balancers and orchestrators: `/livez` (the process answers),
//! `/startupz` (the stores are open and migrated: the router only exists once they are) and
//! `/readyz` (the last results of a periodic probe of the metadata and blob stores).
//!
//! The probe runs in the background ([`Health::watch`]) and its results are cached, so a
//! probe request does no store I/O and costs nothing however often it is scraped. A check
//! is reported failed after `threshold` failures in a row (distribution's rule: one slow
//! round doesn't take a node out of rotation) and ok again at its first success. No
//! authentication and no registry host routing: the three answer on any `Host`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use wharf_storage::{BlobStore, MetadataStore, StorageError};

use crate::AppState;

/// How the stores are probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between probe rounds.
    pub interval: Duration,
    /// A check taking longer than this fails (a paused database answers nothing at all).
    pub timeout: Duration,
    /// Failures in a row before a check is reported failed.
    pub threshold: u32,
}

impl Default for HealthSettings {
    /// A store gone away is reported within `interval + timeout` after `threshold - 1`
    /// more rounds: about 8 s, inside the 10 s an orchestrator is promised.
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_secs(3),
            timeout: Duration::from_secs(2),
            threshold: 2,
        }
    }
}

/// What a check's last rounds found.
#[derive(Clone, Debug, Default)]
struct CheckState {
    failures: u32,
    last_error: Option<String>,
}

/// The stores' health, probed in the background and read by the probe handlers.
#[derive(Clone)]
pub struct Health {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    settings: HealthSettings,
    /// `None` until the first round is done.
    checks: Arc<RwLock<Option<[CheckState; 2]>>>,
}

/// The checks, in the order of [`Health::checks`]'s array.
const CHECKS: [&str; 2] = ["metadata", "blobs"];

/// Bytes the blob probe writes: small, recognisable in a store's listing of uploads.
const PROBE_BYTES: &[u8] = b"wharf health probe";

impl Health {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        settings: HealthSettings,
    ) -> Health {
        Health { meta, blobs, settings, checks: Arc::new(RwLock::new(None)) }
    }

    /// One probe round: both stores at once, each within the timeout; the results recorded.
    pub async fn probe(&self) {
        let timeout = self.settings.timeout;
        let (meta, blobs) = tokio::join!(
            bounded(timeout, self.probe_metadata()),
            bounded(timeout, self.probe_blobs())
        );
        let mut guard = self.checks.write().unwrap_or_else(|e| e.into_inner());
        let checks = guard.get_or_insert_with(Default::default);
        for (name, (check, result)) in CHECKS.iter().zip(checks.iter_mut().zip([meta, blobs])) {
            match result {
                Ok(()) => {
                    if check.failures >= self.settings.threshold {
                        tracing::info!(check = name, "health check passes again");
                    }
                    *check = CheckState::default();
                }
                Err(e) => {
                    check.failures = check.failures.saturating_add(1);
                    if check.failures == self.settings.threshold {
                        tracing::warn!(check = name, error = %e, "health check failed");
                    }
                    check.last_error = Some(e);
                }
            }
        }
    }

    /// Probe every `interval` until the task is aborted (`wharf serve` does at shutdown).
    pub async fn watch(self) {
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // immediate: the first round ran before the server started
        loop {
            tick.tick().await;
            self.probe().await;
        }
    }

    /// A cheap query: one round trip to PostgreSQL, one read of SQLite.
    async fn probe_metadata(&self) -> Result<(), String> {
        self.meta.registry_by_name("").await.map(|_| ()).map_err(|e| described(&e))
    }

    /// Write a small upload session, read it back, drop it: never a content-addressed
    /// blob, so listings and GC's blob pass never see it; its id is a probe's
    /// (`probe_upload_id`), which GC leaves alone unless a crash left it behind.
    async fn probe_blobs(&self) -> Result<(), String> {
        let id = wharf_storage::probe_upload_id();
        let result = async {
            self.blobs.create_upload(id).await?;
            let data = futures::stream::iter([Ok(bytes::Bytes::from_static(PROBE_BYTES))]);
            let appended = self.blobs.append_upload(id, 0, Box::pin(data)).await?;
            if appended.len != PROBE_BYTES.len() as u64 {
                return Err(StorageError::Corrupt(format!(
                    "wrote {} bytes, the store kept {}",
                    PROBE_BYTES.len(),
                    appended.len
                )));
            }
            match self.blobs.read_probe(id).await? {
                Some(read) if read != PROBE_BYTES => Err(StorageError::Corrupt(
                    "the probe's bytes read back differ from those written".into(),
                )),
                _ => Ok(()),
            }
        }
        .await;
        let dropped = self.blobs.abort_upload(id).await;
        result.and(dropped).map_err(|e| described(&e))
    }

    /// `(ready, body)` from the last round's results.
    fn report(&self) -> (bool, Value) {
        let guard = self.checks.read().unwrap_or_else(|e| e.into_inner());
        let Some(checks) = guard.as_ref() else {
            return (false, json!({"status": "starting", "checks": {}}));
        };
        let mut ready = true;
        let mut out = Map::new();
        for (name, check) in CHECKS.iter().zip(checks) {
            let failed = check.failures >= self.settings.threshold;
            ready &= !failed;
            let value = match &check.last_error {
                Some(e) if failed => json!({"status": "failed", "error": e}),
                _ => json!({"status": "ok"}),
            };
            out.insert((*name).to_owned(), value);
        }
        let status = if ready { "ok" } else { "unavailable" };
        (ready, json!({"status": status, "checks": out}))
    }
}

/// A check's result, or a failure once it has taken `timeout`.
async fn bounded(
    timeout: Duration,
    check: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", timeout.as_secs_f32())))
}

/// A store error as a probe reports it: no URL (which may carry credentials or a SAS
/// token), and short.
fn described(e: &StorageError) -> String {
    let full = e.to_string();
    let words: Vec<&str> =
        full.split_whitespace().map(|w| if w.contains("://") { "[url]" } else { w }).collect();
    let mut text = words.join(" ");
    if text.len() > 300 {
        let cut = (0..=300).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/livez", get(alive))
        .route("/startupz", get(alive))
        .route("/readyz", get(ready))
}

/// The process answers; `/startupz` too: the router serves only once the stores are open
/// and migrated.
async fn alive() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    let (ready, body) = state.health.report();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(axum::http::header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_uploads_are_told_from_clients_uploads() {
        let id = wharf_storage::probe_upload_id();
        assert!(wharf_storage::is_probe_upload(&id), "{id}");
        assert_ne!(id, wharf_storage::probe_upload_id());
        assert!(!wharf_storage::is_probe_upload(&uuid::Uuid::new_v4()));
    }

    #[test]
    fn urls_are_never_reported() {
        let e = StorageError::Busy(
            "error sending request for url (https://acct.blob.core.windows.net/c/x?sig=SECRET)"
                .into(),
        );
        let d = described(&e);
        assert!(!d.contains("SECRET") && !d.contains("windows.net"), "{d}");
        assert!(d.contains("[url]"), "{d}");
    }
}
