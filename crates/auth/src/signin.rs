//! Signing in: checking a name and secret, throttling failures, and the argon2 budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wharf_storage::{Coordination, PrincipalRecord};

use crate::service::{CACHE_MAX, Identity, SECRET_CACHE_TTL, lock, now_ms};
use crate::{AuthError, secret};

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

impl Identity {
    // --- signing in ---------------------------------------------------------------

    /// Check a secret against a principal's credentials (not expired).
    async fn check_secret(
        &self,
        p: &PrincipalRecord,
        secret: &str,
        client: Option<IpAddr>,
    ) -> Result<bool, AuthError> {
        let key = verified_key(&[b"principal", p.id.as_bytes(), secret.as_bytes()]);
        let load = || async move {
            let credentials = self.store.credentials(&p.id).await?;
            Ok(credentials.into_iter().map(|c| (c.hash, c.expires_at)).collect())
        };
        self.verify_secret(key, &p.id, client, secret, load).await
    }

    /// Whether `secret` (`key`: a hash of it and what it is for) is one of the live secrets
    /// `load` reads. A secret verified lately is remembered until min(5 min, its expiry) —
    /// Basic credentials come with every request — and passes without the limiter; anything
    /// else reserves an attempt on the limiter under `who` first. One verification of a
    /// secret runs at a time: the same one arriving many times at once waits for the first
    /// answer rather than spending an attempt and a hash each.
    pub(crate) async fn verify_secret<F, Fut>(
        &self,
        key: [u8; 32],
        who: &str,
        client: Option<IpAddr>,
        secret: &str,
        load: F,
    ) -> Result<bool, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<(String, Option<i64>)>, AuthError>>,
    {
        self.follow_access().await?;
        let remembered = || lock(&self.verified).get(&key).is_some_and(|t| Instant::now() < *t);
        if remembered() {
            return Ok(true);
        }
        let _one_at_a_time = self.verifying.lock(key).await;
        if remembered() {
            return Ok(true);
        }
        let attempt = self.failures.begin(who, client).await?;
        let generation = self.cache_generation.load(std::sync::atomic::Ordering::SeqCst);
        let Some(left) = self.verify_against(load().await?, secret).await? else {
            attempt.failed();
            return Ok(false);
        };
        drop(attempt);
        let mut cache = lock(&self.verified);
        // Caches dropped meanwhile (a change here or on another node): what was read may be
        // stale, so it serves this request only.
        if self.cache_generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            if cache.len() > CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, Instant::now() + left);
        }
        Ok(true)
    }

    /// Whether `secret` matches one of `candidates` (argon2id hash, expiry) not yet expired;
    /// if so, how long the success may be remembered (never past that secret's expiry).
    /// Hashing is slow on purpose: it runs off the async threads, a core's worth at a time.
    pub(crate) async fn verify_against(
        &self,
        candidates: Vec<(String, Option<i64>)>,
        secret: &str,
    ) -> Result<Option<Duration>, AuthError> {
        let now = now_ms();
        let _permit = self.hashing_permit().await?;
        let secret = secret.to_owned();
        let mut live: Vec<_> =
            candidates.into_iter().filter(|(_, expires)| expires.is_none_or(|e| e > now)).collect();
        // No live secret (an unknown name, every secret expired): one hash all the same, so
        // that the time taken tells nothing.
        let dummy = live.is_empty();
        if dummy {
            live.push((self.dummy_hash.clone(), None));
        }
        let matched = tokio::task::spawn_blocking(move || {
            live.into_iter().find(|(hash, _)| secret::verify(&secret, hash)).filter(|_| !dummy)
        })
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(matched.map(|(_, expires)| {
            expires.map_or(SECRET_CACHE_TTL, |e| {
                Duration::from_millis(u64::try_from(e - now).unwrap_or(0)).min(SECRET_CACHE_TTL)
            })
        }))
    }

    /// A slot to compute argon2 hashes in: at most one per core at once, so that a flood of
    /// wrong passwords costs a bounded amount of memory (a hash takes 7 MiB) and leaves cores
    /// for everything else. Past 5 s of waiting the sign-in is refused as throttled.
    pub(crate) async fn hashing_permit(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, AuthError> {
        match tokio::time::timeout(Duration::from_secs(5), self.hashing.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(AuthError::Internal("hashing closed".into())),
            Err(_) => Err(AuthError::Throttled(1)),
        }
    }

    /// Sign in with a name (a user's sign-in name, or a service principal's app id) and a
    /// secret. Attempts are throttled per name and client address ([`Limiter`]); a name
    /// that is unknown (or disabled) costs the same hash as a known one and fails alike, so
    /// that neither the answer nor its timing tells which names exist.
    pub async fn sign_in(
        &self,
        tenant: Option<&str>,
        name: &str,
        secret: &str,
        client: Option<IpAddr>,
    ) -> Result<PrincipalRecord, AuthError> {
        let tenant = tenant.unwrap_or(&self.tenant);
        let found = match self.store.principal_by_app_id(name).await? {
            Some(p) => Some(p),
            None => self.store.principal_named(tenant, name).await?,
        };
        match found.filter(|p| p.enabled && p.tenant.eq_ignore_ascii_case(tenant)) {
            Some(p) if self.check_secret(&p, secret, client).await? => Ok(p),
            Some(_) => Err(AuthError::InvalidCredentials),
            None => {
                let attempt = self.failures.begin(name, client).await?;
                self.verify_against(Vec::new(), secret).await?;
                attempt.failed();
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// An argon2id hash of a new secret, computed off the async threads within the
    /// hashing budget.
    pub(crate) async fn hash_secret(&self, value: &str) -> Result<String, AuthError> {
        let _permit = self.hashing_permit().await?;
        let value = value.to_owned();
        tokio::task::spawn_blocking(move || secret::hash(&value))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
            .map_err(AuthError::Internal)
    }
}

/// What a verified secret is remembered under (`Identity::verified`): a hash of what it is
/// for and the secret, the parts separated by NULs (none holds one: names and ids are
/// validated, and secrets are text that Basic auth or a form carried).
pub(crate) fn verified_key(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0]);
        }
        h.update(part);
    }
    h.finalize().into()
}
