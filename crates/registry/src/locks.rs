//! In-process coordination of upload sessions and digests.
//!
//! - `sessions`: the compare-and-set of an upload session's length. A chunk's body is
//!   written beside the session without any lock (several requests may write chunks of one
//!   session at once); only attaching it — check the recorded length, attach, record the
//!   new length and hash state — happens under the session's lock, for the time of a rename
//!   or a copy, never while waiting on a client.
//! - `digests`: a blob commit and GC's deletion of the same digest run one after the other,
//!   held for a rename and a row.
//! - [`Writers`]: which sessions have a chunk streaming in, so that GC leaves them alone.
//!
//! Each lock exists only while someone holds or waits for it. Lock order is always session,
//! then digest. In-process locks suffice on the embedded store, which one server process
//! owns (it takes a file lock on its data directory); servers sharing PostgreSQL also take
//! each lock in the database ([`Coordination`]), so it holds across the cluster.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;
use wharf_oci::Digest;
use wharf_storage::{Coordination, LockGuard, StorageError};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One async lock per key in use.
pub(crate) struct KeyedLocks<K> {
    map: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks { map: Mutex::default() }
    }
}

/// Holds a key's lock; the entry goes away with its last holder.
pub(crate) struct KeyGuard<'a, K: Hash + Eq + Clone> {
    locks: &'a KeyedLocks<K>,
    key: K,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> KeyedLocks<K> {
    pub(crate) async fn lock(&self, key: &K) -> KeyGuard<'_, K> {
        let mutex = lock(&self.map).entry(key.clone()).or_default().clone();
        let guard = mutex.lock_owned().await;
        KeyGuard { locks: self, key: key.clone(), guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

impl<K: Hash + Eq + Clone> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = lock(&self.locks.map);
        // Only the map's own reference left: nobody holds or waits for this key.
        if map.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.key);
        }
    }
}

/// Digests whose bytes are being put under their name, until their row is recorded: GC
/// leaves such bytes alone even with no grace period (they have no row yet, like the
/// leftovers of a crash it removes).
#[derive(Default)]
pub(crate) struct Publishing {
    active: Mutex<HashMap<Digest, usize>>,
}

/// One digest being published; counted until dropped.
pub(crate) struct Publish<'a> {
    publishing: &'a Publishing,
    digest: Digest,
}

impl Publishing {
    pub(crate) fn start(&self, digest: &Digest) -> Publish<'_> {
        *lock(&self.active).entry(digest.clone()).or_default() += 1;
        Publish { publishing: self, digest: digest.clone() }
    }

    pub(crate) fn busy(&self, digest: &Digest) -> bool {
        lock(&self.active).contains_key(digest)
    }
}

impl Drop for Publish<'_> {
    fn drop(&mut self) {
        let mut active = lock(&self.publishing.active);
        if let Some(n) = active.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.digest);
            }
        }
    }
}

/// Upload sessions with a chunk streaming in right now.
#[derive(Default)]
pub(crate) struct Writers {
    active: Mutex<HashMap<Uuid, usize>>,
}

/// One chunk streaming into a session; counted until dropped.
pub(crate) struct Writing<'a> {
    writers: &'a Writers,
    id: Uuid,
}

impl Writers {
    pub(crate) fn start(&self, id: Uuid) -> Writing<'_> {
        *lock(&self.active).entry(id).or_default() += 1;
        Writing { writers: self, id }
    }

    pub(crate) fn busy(&self, id: Uuid) -> bool {
        lock(&self.active).contains_key(&id)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut active = lock(&self.writers.active);
        if let Some(n) = active.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.id);
            }
        }
    }
}

/// The registry's locks: in-process, and cluster-wide too when servers share a store.
#[derive(Default)]
pub(crate) struct Locks {
    sessions: KeyedLocks<Uuid>,
    digests: KeyedLocks<Digest>,
    pub(crate) writers: Writers,
    pub(crate) publishing: Publishing,
    /// One GC pass at a time on this server: a second waits here, not holding a database
    /// connection while it waits for the cluster's `gc` lock.
    pub(crate) gc: tokio::sync::Mutex<()>,
    /// Set when other servers share the store: each lock is then also taken there, after
    /// the in-process one (so a node's own contention never costs a database connection).
    pub(crate) cluster: Option<Arc<dyn Coordination>>,
}

/// A lock held here and, in a cluster, everywhere.
pub(crate) struct Held<'a, K: Hash + Eq + Clone> {
    cluster: Option<LockGuard>,
    _local: KeyGuard<'a, K>,
}

impl<K: Hash + Eq + Clone> Held<'_, K> {
    /// Whether the lock still holds: asked right before publishing what it protects, so
    /// that a node whose database connection (and with it the cluster lock) was cut
    /// publishes nothing.
    pub(crate) async fn verify(&mut self) -> Result<(), StorageError> {
        match &mut self.cluster {
            Some(guard) => guard.verify().await,
            None => Ok(()),
        }
    }
}

impl Locks {
    /// An upload session's lock.
    pub(crate) async fn session(&self, id: &Uuid) -> Result<Held<'_, Uuid>, StorageError> {
        let local = self.sessions.lock(id).await;
        let cluster = match &self.cluster {
            Some(c) => Some(c.lock(&format!("upload/{id}")).await?),
            None => None,
        };
        Ok(Held { cluster, _local: local })
    }

    /// A digest's lock (a blob's commit against its deletion by GC).
    pub(crate) async fn digest(&self, digest: &Digest) -> Result<Held<'_, Digest>, StorageError> {
        let local = self.digests.lock(digest).await;
        let cluster = match &self.cluster {
            Some(c) => Some(c.lock(&format!("blob/{digest}")).await?),
            None => None,
        };
        Ok(Held { cluster, _local: local })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn keyed_locks_serialise_one_key_and_clean_up() {
        let locks = KeyedLocks::<Digest>::default();
        let d = Digest::sha256_of(b"x");
        let other = Digest::sha256_of(b"y");
        let g = locks.lock(&d).await;
        // Another key doesn't wait.
        let h = tokio::time::timeout(Duration::from_millis(100), locks.lock(&other))
            .await
            .expect("an unrelated key must not wait");
        drop(h);
        // The same key waits until the first guard goes.
        let waiting = tokio::time::timeout(Duration::from_millis(50), locks.lock(&d));
        assert!(waiting.await.is_err());
        drop(g);
        drop(locks.lock(&d).await);
        assert_eq!(locks.len(), 0, "no entry is kept for idle keys");
    }

    #[test]
    fn writers_are_counted_per_session() {
        let w = Writers::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let one = w.start(a);
        let two = w.start(a);
        assert!(w.busy(a) && !w.busy(b));
        drop(one);
        assert!(w.busy(a));
        drop(two);
        assert!(!w.busy(a));
    }
}
