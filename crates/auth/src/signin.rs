//! Signing in: checking a name and secret, throttling failures, and the argon2 budget.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wharf_storage::PrincipalRecord;

use crate::common::{CACHE_MAX, lock, now_ms};
use crate::service::{Identity, SECRET_CACHE_TTL};
use crate::{AuthError, secret};

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
    /// secret. Attempts are throttled per name and client address (`Limiter`); a name that
    /// is unknown (or disabled) costs the same hash as a known one and fails alike, so that
    /// neither the answer nor its timing tells which names exist.
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
