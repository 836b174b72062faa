//! Small things every part of the identity provider uses: the clock, the bound on its
//! caches, and locking a mutex.

use std::sync::{Mutex, PoisonError};

/// The most entries a cache keeps: past it, it is emptied rather than grown.
pub(crate) const CACHE_MAX: usize = 10_000;

/// A mutex's guard, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn now_ms() -> i64 {
    wharf_storage::now_millis()
}
