//! Locks, upstream pauses, sign-in failures and the access version: what holds across
//! every server sharing a store.
//!
//! One server on the embedded store needs none: its locks live in its own memory (the
//! registry's `locks.rs`), and the data directory's file lock keeps a second server out.
//! Servers sharing PostgreSQL take these as well, so that "attach a chunk to an upload
//! session" or "commit a blob / delete it in GC" happen one at a time cluster-wide, and so
//! that one node at a time runs garbage collection.

use async_trait::async_trait;

use crate::StorageError;

/// A held lock; released when dropped (and by the database if the holder dies).
pub struct LockGuard(Box<dyn HeldLock>);

/// What keeps a lock (a connection, a transaction), and can tell whether it still does.
#[async_trait]
pub trait HeldLock: Send {
    /// `Ok` if the lock is still held; an error if it was lost (the database dropped the
    /// connection that held it, and with it the lock, which someone else may hold now).
    async fn verify(&mut self) -> Result<(), StorageError>;
}

impl LockGuard {
    /// A guard holding `inner`.
    pub fn new(inner: impl HeldLock + 'static) -> Self {
        LockGuard(Box::new(inner))
    }

    /// Whether the lock is still held: what a holder asks before it publishes what the
    /// lock protected, so that a lock lost meanwhile (its connection cut) publishes nothing.
    pub async fn verify(&mut self) -> Result<(), StorageError> {
        self.0.verify().await
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

/// What the servers on one store coordinate through: named locks, and the pauses upstream
/// registries asked for.
#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// Wait for the lock named `key` (a bounded time, else [`StorageError::Busy`]).
    async fn lock(&self, key: &str) -> Result<LockGuard, StorageError>;
    /// Take the lock named `key` if nobody holds it.
    async fn try_lock(&self, key: &str) -> Result<Option<LockGuard>, StorageError>;
    /// Record that requests to `upstream` wait until `until` (ms since the epoch); a later
    /// pause already recorded stands.
    async fn pause_upstream(&self, upstream: &str, until: i64) -> Result<(), StorageError>;
    /// Until when requests to `upstream` wait (ms), if a pause is recorded.
    async fn upstream_paused_until(&self, upstream: &str) -> Result<Option<i64>, StorageError>;
    /// Reserve a sign-in attempt at `now` (ms) on each of `keys` (a key and its limit),
    /// all or none: `None` when reserved, else when the first full window ends (ms). A
    /// key's window that ended starts a new one — `base_ms` long, or twice the last one
    /// (up to `max_ms`) when that one ended full.
    async fn reserve_sign_in(
        &self,
        keys: &[(String, u32)],
        now: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> Result<Option<i64>, StorageError>;
    /// Give back a reserved attempt on each of `keys` (it succeeded).
    async fn release_sign_in(&self, keys: &[String]) -> Result<(), StorageError>;
    /// A number that moves whenever principals, credentials, roles, role assignments,
    /// registries or their credentials change, through any server: a server that caches
    /// what callers may do drops its caches when it moved.
    async fn access_version(&self) -> Result<i64, StorageError>;
    /// Record that a source was seen to serve a blob (`key`: a hash of both) at `now` (ms);
    /// proofs older than `keep_ms` are dropped.
    async fn prove_download(&self, key: &str, now: i64, keep_ms: i64) -> Result<(), StorageError>;
    /// Whether `key` was proven after `since` (ms).
    async fn download_proven(&self, key: &str, since: i64) -> Result<bool, StorageError>;
    /// Claim the download `key` for `owner` until `until` (ms), or renew `owner`'s claim:
    /// whether `owner` holds it now (another owner's claim that hasn't run out stands).
    async fn claim_download(
        &self,
        key: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StorageError>;
    /// Give up `owner`'s claim on `key` (a missing claim is not an error).
    async fn release_download(&self, key: &str, owner: &str) -> Result<(), StorageError>;
}
