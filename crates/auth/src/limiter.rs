//! What signing in holds between attempts: the [`Limiter`] that throttles guessing, and
//! [`PerKey`], which lets one verification of a secret run at a time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_storage::Coordination;

use crate::AuthError;
use crate::common::{CACHE_MAX, lock, now_ms};

/// Throttles guessing. Every attempt that would cost a hash first reserves a slot on three
/// keys — the (name, client address) pair, the name, the address — and is refused with
/// 429 when any key's window is full; a success gives its slots back, a failure keeps
/// them. Reserving *before* hashing is what holds against a burst of parallel guesses (all
/// would pass a check made after). The pair's limit is low and the name's ten times
/// higher, so that an attacker failing with a public name (`admin`, a registry's admin
/// user) from one address doesn't lock its owner out elsewhere; a credential already
/// verified skips the limiter. A window that ends full is followed by one twice as long
/// (up to [`MAX_WINDOW`]): persistent guessing backs off.
pub(crate) struct Limiter {
    windows: Mutex<HashMap<String, Window>>,
    per_pair: u32,
    /// Set on a cluster: slots are reserved in the shared store as well, so that N nodes
    /// allow no more guesses than one server does.
    pub(crate) shared: Option<Arc<dyn Coordination>>,
}

/// One async lock per key in use (a secret being verified), gone with its last holder.
#[derive(Default)]
pub(crate) struct PerKey {
    map: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

/// A key's lock, held; the map's entry goes with the last holder or waiter.
pub(crate) struct KeyHeld<'a> {
    owner: &'a PerKey,
    key: [u8; 32],
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl PerKey {
    pub(crate) async fn lock(&self, key: [u8; 32]) -> KeyHeld<'_> {
        let mutex = lock(&self.map).entry(key).or_default().clone();
        KeyHeld { owner: self, key, guard: Some(mutex.lock_owned().await) }
    }
}

impl Drop for KeyHeld<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = lock(&self.owner.map);
        if map.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.key);
        }
    }
}

/// The first window of a key; each one that ends full doubles the next, up to
/// [`MAX_WINDOW`].
const BASE_WINDOW: Duration = Duration::from_secs(60);
const MAX_WINDOW: Duration = Duration::from_secs(16 * 60);

/// One key's current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Attempts reserved in it (under way or failed).
    count: u32,
    since: Instant,
    length: Duration,
}

impl Window {
    /// The window in force at `now`: this one, or the next when it ended.
    fn at(self, now: Instant, limit: u32) -> Window {
        if now.duration_since(self.since) < self.length {
            return self;
        }
        let length =
            if self.count >= limit { (self.length * 2).min(MAX_WINDOW) } else { BASE_WINDOW };
        Window { count: 0, since: now, length }
    }

    fn retry_after(&self, now: Instant) -> u64 {
        (self.since + self.length).saturating_duration_since(now).as_secs().max(1)
    }
}

/// The slots one attempt holds: kept when the secret was wrong ([`Attempt::failed`]),
/// given back otherwise — a success, and also an error inside the server (a user isn't
/// throttled for the server's trouble).
pub(crate) struct Attempt<'a> {
    limiter: &'a Limiter,
    keys: Vec<(String, u32)>,
    failed: bool,
}

impl Limiter {
    pub(crate) fn new(per_pair: u32) -> Limiter {
        Limiter { windows: Mutex::default(), per_pair: per_pair.max(1), shared: None }
    }

    /// The keys of an attempt on `name` (a principal's id once known, so that its other
    /// names share its budget) from `client` (an IPv6 client by its /64, which one host
    /// holds whole), with their limits.
    fn keys(&self, name: &str, client: Option<IpAddr>) -> Vec<(String, u32)> {
        let name = name.to_lowercase();
        let ip = match client {
            None => "-".to_owned(),
            Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Some(ip) => ip.to_canonical().to_string(),
        };
        let ceiling = self.per_pair.saturating_mul(10);
        vec![
            (format!("pair:{name}|{ip}"), self.per_pair),
            (format!("name:{name}"), ceiling),
            (format!("ip:{ip}"), ceiling),
        ]
    }

    /// Reserve an attempt by `name` from `client`: refused (with the seconds to wait) when
    /// any of its keys' window is full, here or, on a cluster, on all nodes together.
    pub(crate) async fn begin(
        &self,
        name: &str,
        client: Option<IpAddr>,
    ) -> Result<Attempt<'_>, AuthError> {
        let keys = self.keys(name, client);
        self.reserve_here(&keys)?;
        if let Some(shared) = &self.shared {
            let window = (BASE_WINDOW.as_millis() as i64, MAX_WINDOW.as_millis() as i64);
            let refused = match shared.reserve_sign_in(&keys, now_ms(), window.0, window.1).await {
                Ok(None) => None,
                Ok(Some(until)) => {
                    let left = u64::try_from((until - now_ms()) / 1000).unwrap_or(0);
                    Some(AuthError::Throttled(left.max(1)))
                }
                Err(e) => Some(e.into()),
            };
            if let Some(e) = refused {
                self.release_here(&keys);
                return Err(e);
            }
        }
        Ok(Attempt { limiter: self, keys, failed: false })
    }

    fn reserve_here(&self, keys: &[(String, u32)]) -> Result<(), AuthError> {
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        if windows.len() > CACHE_MAX {
            windows.retain(|_, w| now.duration_since(w.since) < w.length);
        }
        let fresh = Window { count: 0, since: now, length: BASE_WINDOW };
        for (key, limit) in keys {
            let w = windows.get(key).copied().unwrap_or(fresh).at(now, *limit);
            if w.count >= *limit {
                return Err(AuthError::Throttled(w.retry_after(now)));
            }
        }
        for (key, limit) in keys {
            let w = windows.entry(key.clone()).or_insert(fresh);
            *w = w.at(now, *limit);
            w.count += 1;
        }
        Ok(())
    }
}

impl Limiter {
    fn release_here(&self, keys: &[(String, u32)]) {
        let mut windows = lock(&self.windows);
        for (key, _) in keys {
            if let Some(w) = windows.get_mut(key) {
                w.count = w.count.saturating_sub(1);
            }
        }
    }
}

impl Attempt<'_> {
    /// The secret was wrong: the slots stay taken until their windows end.
    pub(crate) fn failed(mut self) {
        self.failed = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.failed {
            return;
        }
        self.limiter.release_here(&self.keys);
        if let Some(shared) = self.limiter.shared.clone() {
            let keys: Vec<String> = self.keys.iter().map(|(k, _)| k.clone()).collect();
            tokio::spawn(async move {
                if let Err(e) = shared.release_sign_in(&keys).await {
                    // Counted as a failure on the cluster until its window ends: harmless.
                    tracing::warn!(error = %e, "cannot give back a sign-in slot in the shared store");
                }
            });
        }
    }
}
