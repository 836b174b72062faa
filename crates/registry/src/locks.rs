//! In-process coordination of upload sessions and digests.
//!
//! - [`UploadClaims`]: at most one request writes to an upload session at a time. A claim
//!   is taken without waiting: a second writer is refused at once (and the session stays
//!   as it was), never queued behind a body that may never end. Unrelated sessions never
//!   touch each other's state.
//! - [`DigestLocks`]: a blob commit and GC's deletion of the same digest run one after the
//!   other. One lock per digest in use (none for idle digests), held for a rename and a row,
//!   never across a request body.
//!
//! Lock order is always claim, then digest. These are correct because one server process
//! owns a data directory (it takes a file lock on it); a multi-node backend must use
//! database locks instead.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;
use wharf_oci::Digest;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Upload sessions some request is writing to.
#[derive(Default)]
pub(crate) struct UploadClaims {
    held: Mutex<HashSet<Uuid>>,
}

/// The right to write to one upload session; released on drop.
pub(crate) struct Claim {
    claims: Arc<UploadClaims>,
    id: Uuid,
}

impl UploadClaims {
    /// Claim `id`, or `None` if another request holds it.
    pub(crate) fn try_claim(self: &Arc<Self>, id: Uuid) -> Option<Claim> {
        lock(&self.held).insert(id).then(|| Claim { claims: self.clone(), id })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.claims.held).remove(&self.id);
    }
}

/// One async lock per digest being committed or collected.
#[derive(Default)]
pub(crate) struct DigestLocks {
    map: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds a digest's lock; the entry goes away with its last holder.
pub(crate) struct DigestGuard<'a> {
    locks: &'a DigestLocks,
    digest: Digest,
    guard: Option<OwnedMutexGuard<()>>,
}

impl DigestLocks {
    pub(crate) async fn lock(&self, digest: &Digest) -> DigestGuard<'_> {
        let mutex = lock(&self.map).entry(digest.clone()).or_default().clone();
        let guard = mutex.lock_owned().await;
        DigestGuard { locks: self, digest: digest.clone(), guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

impl Drop for DigestGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = lock(&self.locks.map);
        // Only the map's own reference left: nobody holds or waits for this digest.
        if map.get(&self.digest).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.digest);
        }
    }
}

/// The registry's in-process locks.
#[derive(Default)]
pub(crate) struct Locks {
    pub(crate) uploads: Arc<UploadClaims>,
    pub(crate) digests: DigestLocks,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_exclusive_and_released_on_drop() {
        let claims = Arc::new(UploadClaims::default());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = claims.try_claim(a).expect("free");
        assert!(claims.try_claim(a).is_none(), "a second writer is refused");
        assert!(claims.try_claim(b).is_some(), "another session is independent");
        drop(first);
        assert!(claims.try_claim(a).is_some());
    }

    #[tokio::test]
    async fn digest_locks_serialise_one_digest_and_clean_up() {
        let locks = DigestLocks::default();
        let d = Digest::sha256_of(b"x");
        let other = Digest::sha256_of(b"y");
        let g = locks.lock(&d).await;
        // Another digest doesn't wait.
        let h = tokio::time::timeout(std::time::Duration::from_millis(100), locks.lock(&other))
            .await
            .expect("unrelated digest must not wait");
        drop(h);
        // The same digest waits until the first guard goes.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(&d));
        assert!(waiting.await.is_err());
        drop(g);
        drop(locks.lock(&d).await);
        assert_eq!(locks.len(), 0, "no entry is kept for idle digests");
    }
}
