//! Downloads shared between imports: one download per (blob, source identity) at a time
//! on this server, proofs that a source serves a blob, and on a cluster, claims and proofs
//! shared with the other nodes so that a blob is downloaded once across them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wharf_oci::Digest;
use wharf_storage::{Coordination, now_millis};

use crate::ImportError;

/// Downloads in progress across all imports, by (digest, source identity), so that two
/// imports of the same content from the same source share one download.
#[derive(Default)]
pub(crate) struct Inflight {
    map: Mutex<HashMap<DownloadKey, watch::Receiver<Option<bool>>>>,
    /// Blobs a source identity was seen to serve, and when (kept in memory, bounded; a
    /// proof stands for [`PROOF_KEEP_MS`]: a source's content or access may change).
    proven: Mutex<HashMap<DownloadKey, Instant>>,
    /// Set on a cluster: downloads are claimed and proofs shared through it, so that a
    /// blob another node is downloading, or saw this source serve, isn't downloaded here too.
    shared: Option<SharedDownloads>,
}

/// A cluster's view of downloads: its coordination, this node's name in claims, and the
/// secret the shared tables' keys are keyed with.
struct SharedDownloads {
    cluster: Arc<dyn Coordination>,
    node: String,
    secret: ring::hmac::Key,
}

impl SharedDownloads {
    /// A download key as the cluster stores it: an HMAC under the cluster's secret. A
    /// source identity names a registry, a repository and a credential's fingerprint;
    /// unkeyed, a reader of the database could test guessed passwords against it offline.
    fn key(&self, (digest, source): &DownloadKey) -> String {
        let tag = ring::hmac::sign(&self.secret, format!("{digest}\n{source}").as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How long a shared proof that a source serves a blob stands.
const PROOF_KEEP_MS: i64 = 3600 * 1000;
/// A download claim's lease, renewed every third of it while the download runs.
const CLAIM_LEASE_MS: i64 = 30_000;
/// How often a node waiting for another's download looks for its proof.
const CLAIM_POLL: Duration = Duration::from_millis(500);

/// Who downloads a blob that no import on this node is downloading yet.
pub(crate) enum Claimed {
    /// This node (holding the cluster's claim, if on a cluster).
    Here(Option<ClaimGuard>),
    /// Another node did, and proved the source serves it.
    Elsewhere,
}

/// This node's claim on a download: renewed while held, given up when dropped.
pub(crate) struct ClaimGuard {
    renew: tokio::task::JoinHandle<()>,
    release: Option<(Arc<dyn Coordination>, String, String)>,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.renew.abort();
        if let Some((cluster, key, node)) = self.release.take() {
            // Let a waiting node go on at once rather than when the lease runs out.
            tokio::spawn(async move {
                if let Err(e) = cluster.release_download(&key, &node).await {
                    tracing::warn!(error = %e, "cannot release a download claim");
                }
            });
        }
    }
}

/// Proofs remembered before the set starts over.
const MAX_PROVEN: usize = 100_000;

/// A blob, and the identity of the source it is read from.
pub(crate) type DownloadKey = (Digest, String);

pub(crate) enum Role {
    Lead(LeadGuard),
    Follow(watch::Receiver<Option<bool>>),
}

/// Held while leading a download; finishing (or dropping) it wakes the followers.
pub(crate) struct LeadGuard {
    inflight: Arc<Inflight>,
    key: DownloadKey,
    done: watch::Sender<Option<bool>>,
}

impl LeadGuard {
    pub(crate) fn finish(self, ok: bool) {
        let _ = self.done.send(Some(ok));
    }
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        self.inflight.map.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

impl Inflight {
    /// Downloads of the cluster node `node`: claims and proofs shared through `cluster`.
    /// Downloads shared with a cluster's other nodes, whose shared keys are keyed with
    /// `secret` (the same on every node).
    pub(crate) fn shared(cluster: Arc<dyn Coordination>, node: String, secret: &[u8]) -> Inflight {
        let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        Inflight { shared: Some(SharedDownloads { cluster, node, secret }), ..Inflight::default() }
    }

    /// Decide who downloads `key`: this node, unless another node of the cluster holds a
    /// live claim on it — then wait until it proves the blob (`Elsewhere`) or gives its
    /// claim up (failed, or died and its lease ran out), and claim it then.
    pub(crate) async fn claim(
        &self,
        key: &DownloadKey,
        cancel: &CancellationToken,
    ) -> Result<Claimed, ImportError> {
        let Some(shared) = &self.shared else { return Ok(Claimed::Here(None)) };
        let k = shared.key(key);
        loop {
            let now = now_millis();
            match shared.cluster.claim_download(&k, &shared.node, now, now + CLAIM_LEASE_MS).await {
                Ok(true) => {
                    let (cluster, key, node) =
                        (shared.cluster.clone(), k.clone(), shared.node.clone());
                    let renew = tokio::spawn(async move {
                        let every = Duration::from_millis(CLAIM_LEASE_MS as u64 / 3);
                        loop {
                            tokio::time::sleep(every).await;
                            let now = now_millis();
                            let until = now + CLAIM_LEASE_MS;
                            if let Err(e) = cluster.claim_download(&key, &node, now, until).await {
                                tracing::warn!(error = %e, "cannot renew a download claim");
                            }
                        }
                    });
                    let release = Some((shared.cluster.clone(), k, shared.node.clone()));
                    return Ok(Claimed::Here(Some(ClaimGuard { renew, release })));
                }
                Ok(false) => {}
                // Without the cluster's word, download here: at worst twice, never corrupt.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a download");
                    return Ok(Claimed::Here(None));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(CLAIM_POLL) => {}
                () = cancel.cancelled() => return Err(ImportError::canceled()),
            }
            if self.proven(key).await {
                return Ok(Claimed::Elsewhere);
            }
        }
    }

    /// Whether the source was seen to serve the blob, here or (on a cluster) on any node.
    pub(crate) async fn proven(&self, key: &DownloadKey) -> bool {
        let keep = Duration::from_millis(PROOF_KEEP_MS as u64);
        if self
            .proven
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .is_some_and(|at| at.elapsed() < keep)
        {
            return true;
        }
        let Some(shared) = &self.shared else { return false };
        match shared.cluster.download_proven(&shared.key(key), now_millis() - PROOF_KEEP_MS).await {
            Ok(true) => {
                self.prove_here(key.clone());
                true
            }
            Ok(false) => false,
            // Not known to be proven: the blob is downloaded, as it would be anyway.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read shared download proofs");
                false
            }
        }
    }

    pub(crate) async fn prove(&self, key: DownloadKey) {
        if let Some(shared) = &self.shared
            && let Err(e) =
                shared.cluster.prove_download(&shared.key(&key), now_millis(), PROOF_KEEP_MS).await
        {
            tracing::warn!(error = %e, "cannot share a download proof");
        }
        self.prove_here(key);
    }

    fn prove_here(&self, key: DownloadKey) {
        let mut set = self.proven.lock().unwrap_or_else(PoisonError::into_inner);
        if set.len() >= MAX_PROVEN {
            set.clear();
        }
        set.insert(key, Instant::now());
    }

    pub(crate) fn join(self: &Arc<Self>, key: DownloadKey) -> Role {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(&key) {
            return Role::Follow(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Role::Lead(LeadGuard { inflight: self.clone(), key, done: tx })
    }
}
