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
pub struct LockGuard(#[allow(dead_code)] Box<dyn Send>);

impl LockGuard {
    /// A guard holding `inner` (whatever keeps the lock: a connection, a transaction).
    pub fn new(inner: impl Send + 'static) -> Self {
        LockGuard(Box::new(inner))
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
    /// Count a failed sign-in against each of `keys` (a name, a client address) at `now`
    /// (ms): a key whose window began `window_ms` or more ago starts a new one.
    async fn count_sign_in_failure(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> Result<(), StorageError>;
    /// The failures counted against each of `keys` in windows begun after `now - window_ms`:
    /// (key, failures, when its window began).
    async fn sign_in_failures(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> Result<Vec<(String, u32, i64)>, StorageError>;
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
