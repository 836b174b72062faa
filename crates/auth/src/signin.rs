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

/// The slots one attempt holds; given back with [`Attempt::succeeded`], kept otherwise.
pub(crate) struct Attempt<'a> {
    limiter: &'a Limiter,
    keys: Vec<(String, u32)>,
}

impl Limiter {
    pub(crate) fn new(per_pair: u32) -> Limiter {
        Limiter { windows: Mutex::default(), per_pair: per_pair.max(1), shared: None }
    }

    /// The keys of an attempt by `name` from `client`, with their limits.
    fn keys(&self, name: &str, client: Option<IpAddr>) -> Vec<(String, u32)> {
        let name = name.to_ascii_lowercase();
        let ip = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
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
        let attempt = Attempt { limiter: self, keys };
        if let Some(shared) = &self.shared {
            let window = (BASE_WINDOW.as_millis() as i64, MAX_WINDOW.as_millis() as i64);
            match shared.reserve_sign_in(&attempt.keys, now_ms(), window.0, window.1).await {
                Ok(None) => {}
                Ok(Some(until)) => {
                    attempt.release_here();
                    let left = u64::try_from((until - now_ms()) / 1000).unwrap_or(0);
                    return Err(AuthError::Throttled(left.max(1)));
                }
                Err(e) => {
                    attempt.release_here();
                    return Err(e.into());
                }
            }
        }
        Ok(attempt)
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

impl Attempt<'_> {
    /// The secret was right: the slots go back.
    pub(crate) async fn succeeded(self) {
        self.release_here();
        if let Some(shared) = &self.limiter.shared {
            let keys: Vec<String> = self.keys.iter().map(|(k, _)| k.clone()).collect();
            if let Err(e) = shared.release_sign_in(&keys).await {
                // Counted as a failure on the cluster until its window ends: harmless.
                tracing::warn!(error = %e, "cannot give back a sign-in slot in the shared store");
            }
        }
    }

    fn release_here(&self) {
        let mut windows = lock(&self.limiter.windows);
        for (key, _) in &self.keys {
            if let Some(w) = windows.get_mut(key) {
                w.count = w.count.saturating_sub(1);
            }
        }
    }
}

impl Identity {
    // --- signing in ---------------------------------------------------------------

    /// Check a secret against a principal's credentials (not expired). A secret already
    /// verified is remembered for a while (Basic credentials come with every request) and
    /// passes without the limiter; anything else reserves an attempt first.
    async fn check_secret(
        &self,
        p: &PrincipalRecord,
        name: &str,
        secret: &str,
        client: Option<IpAddr>,
    ) -> Result<bool, AuthError> {
        self.follow_access().await?;
        let key: [u8; 32] = Sha256::new()
            .chain_update(p.id.as_bytes())
            .chain_update([0])
            .chain_update(secret.as_bytes())
            .finalize()
            .into();
        if let Some((_, until)) = lock(&self.secrets).get(&key)
            && Instant::now() < *until
        {
            return Ok(true);
        }
        let attempt = self.failures.begin(name, client).await?;
        let generation = self.cache_generation.load(std::sync::atomic::Ordering::SeqCst);
        let credentials = self.store.credentials(&p.id).await?;
        let candidates = credentials.into_iter().map(|c| (c.hash, c.expires_at)).collect();
        let Some(left) = self.verify_against(candidates, secret).await? else {
            return Ok(false);
        };
        attempt.succeeded().await;
        let mut cache = lock(&self.secrets);
        // Caches dropped meanwhile (a change on another node): what was read may be stale.
        if self.cache_generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            if cache.len() > CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (p.clone(), Instant::now() + left));
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
        let matched = tokio::task::spawn_blocking(move || {
            candidates
                .into_iter()
                .filter(|(_, expires)| expires.is_none_or(|e| e > now))
                .find(|(hash, _)| secret::verify(&secret, hash))
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
            Some(p) if self.check_secret(&p, name, secret, client).await? => Ok(p),
            Some(_) => Err(AuthError::InvalidCredentials),
            None => {
                let _attempt = self.failures.begin(name, client).await?;
                self.verify_against(vec![(self.dummy_hash.clone(), None)], secret).await?;
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
