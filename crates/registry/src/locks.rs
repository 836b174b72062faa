//! In-process locks that serialise work on one upload or one digest.
//!
//! Striped rather than one lock per key: a fixed array never grows and needs no cleanup.
//! Lock order is always upload, then digest, so two stripes never deadlock.
//! These locks are correct because one server process owns a data directory (it takes a
//! file lock on it); a multi-node backend must use database locks instead.

use std::hash::{BuildHasher, Hash};

use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;
use wharf_oci::Digest;

const STRIPES: usize = 64;

pub(crate) struct Locks {
    uploads: Vec<Mutex<()>>,
    digests: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Locks {
    fn default() -> Self {
        Locks {
            uploads: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            digests: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }
}

impl Locks {
    fn stripe(&self, key: impl Hash) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    pub(crate) async fn upload(&self, id: Uuid) -> MutexGuard<'_, ()> {
        self.uploads[self.stripe(id)].lock().await
    }

    pub(crate) async fn digest(&self, digest: &Digest) -> MutexGuard<'_, ()> {
        self.digests[self.stripe(digest)].lock().await
    }
}
