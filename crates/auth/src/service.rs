//! The identity provider: tenants, users and service principals, signing in, issuing and
//! checking tokens, role definitions and assignments, and each caller's grants.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wharf_storage::{
    Coordination, CredentialRecord, IdentityStore, PrincipalRecord, RoleAssignmentRecord,
    RoleDefinitionRecord, TenantRecord,
};

use crate::caller::{
    Caller, Grant, PrincipalKind, RegistryPolicy, RepoOp, Subject, normalize_scope,
};
use crate::claims::{IdentityClaims, RegistryClaims};
use crate::conditions::Condition;
use crate::keys::KeyRing;
use crate::roles::{Permission, RoleDefinition, find_built_in};
use crate::scope::Access;
use crate::{AuthError, secret};

/// How long tokens live and where they come from.
#[derive(Clone, Debug)]
pub struct IdentitySettings {
    /// The public base URL of the identity endpoints; tokens' `iss` is
    /// `<base>/<tenant>/v2.0`.
    pub issuer_base: String,
    pub identity_token_ttl: Duration,
    pub registry_refresh_ttl: Duration,
    pub registry_access_ttl: Duration,
    /// The audiences identity tokens may be issued for and are accepted with (ARM's, the
    /// registries', and this server's management endpoint).
    pub audiences: Vec<String>,
    /// Failed sign-ins per principal name per minute before it is refused for a while (ten
    /// times as many per client address).
    pub max_failed_sign_ins: u32,
    /// Access control on: requests are authenticated and checked. Off, every request may do
    /// anything (a development server on a trusted machine).
    pub enforced: bool,
    /// The key that seals registry admin users' passwords (a random one per process when
    /// `None`: they then don't survive a restart and must be regenerated).
    pub sealing_key: Option<[u8; 32]>,
}

impl IdentitySettings {
    pub fn new(issuer_base: impl Into<String>) -> Self {
        IdentitySettings {
            issuer_base: issuer_base.into().trim_end_matches('/').to_owned(),
            identity_token_ttl: Duration::from_secs(3600),
            registry_refresh_ttl: Duration::from_secs(3 * 3600),
            registry_access_ttl: Duration::from_secs(20 * 60),
            audiences: DEFAULT_AUDIENCES.iter().map(|a| a.to_string()).collect(),
            enforced: true,
            max_failed_sign_ins: DEFAULT_MAX_FAILURES,
            sealing_key: None,
        }
    }
}

/// Audiences Azure clients ask for: ARM (both spellings) and ACR's data plane.
pub const DEFAULT_AUDIENCES: &[&str] = &[
    "https://management.azure.com/",
    "https://management.core.windows.net/",
    "https://containerregistry.azure.net/",
    "https://graph.microsoft.com/",
];

/// The user name that says "the password is a registry refresh token" (ACR's convention).
pub const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// The name of the first user, who owns everything.
pub const ADMIN_USER: &str = "admin";
/// How long a caller's grants are reused before they are read again (changes made on this
/// server take effect at once; the delay bounds anything else).
const GRANTS_TTL: Duration = Duration::from_secs(30);
/// How long a checked password is remembered, so that Basic credentials sent with every
/// request are hashed once, not per request.
pub(crate) const SECRET_CACHE_TTL: Duration = Duration::from_secs(300);
pub(crate) const CACHE_MAX: usize = 10_000;
/// Failed sign-ins allowed per principal name in a window, unless configured (ten times as
/// many per client address).
pub const DEFAULT_MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn now_ms() -> i64 {
    wharf_storage::now_millis()
}

/// Counts failed sign-ins per key (a principal name, a client address) and refuses more
/// than `per_name` for a name, or ten times that from an address, in a window: credential
/// stuffing meets a wall before the hash, and one noisy address can't lock a name out for
/// others without also hitting the name's own limit.
pub(crate) struct FailureLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    per_name: u32,
    /// Set on a cluster: failures are counted in the shared store as well, so that N nodes
    /// allow no more guesses than one server does.
    shared: Option<Arc<dyn Coordination>>,
}

impl FailureLimiter {
    fn new(per_name: u32) -> FailureLimiter {
        FailureLimiter { failures: Mutex::default(), per_name: per_name.max(1), shared: None }
    }

    fn limit(&self, key: &str) -> u32 {
        if key.starts_with("ip:") { self.per_name.saturating_mul(10) } else { self.per_name }
    }

    /// Refuse a sign-in when this node counted too many failures for one of `keys`.
    pub(crate) fn check(&self, keys: &[String]) -> Result<(), AuthError> {
        let map = lock(&self.failures);
        for k in keys {
            if let Some((n, since)) = map.get(k)
                && *n >= self.limit(k)
                && since.elapsed() < FAILURE_WINDOW
            {
                let left = FAILURE_WINDOW.saturating_sub(since.elapsed()).as_secs().max(1);
                return Err(AuthError::Throttled(left));
            }
        }
        Ok(())
    }

    /// On a cluster, the same against every node's count. Asked only before a secret is
    /// hashed — what a guess costs — so that a remembered success costs no query.
    pub(crate) async fn check_shared(&self, keys: &[String]) -> Result<(), AuthError> {
        if let Some(shared) = &self.shared {
            let (now, window) = (now_ms(), FAILURE_WINDOW.as_millis() as i64);
            for (k, n, since) in shared.sign_in_failures(keys, now, window).await? {
                if n >= self.limit(&k) {
                    let left = u64::try_from((since + window - now) / 1000).unwrap_or(0);
                    return Err(AuthError::Throttled(left.max(1)));
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn fail(&self, keys: &[String]) {
        {
            let mut map = lock(&self.failures);
            if map.len() > CACHE_MAX {
                map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            }
            for k in keys {
                let e = map.entry(k.clone()).or_insert((0, Instant::now()));
                if e.1.elapsed() >= FAILURE_WINDOW {
                    *e = (0, Instant::now());
                }
                e.0 += 1;
            }
        }
        if let Some(shared) = &self.shared {
            let window = FAILURE_WINDOW.as_millis() as i64;
            if let Err(e) = shared.count_sign_in_failure(keys, now_ms(), window).await {
                // Counted here still; the other nodes will see the next one.
                tracing::warn!(error = %e, "cannot count a failed sign-in in the shared store");
            }
        }
    }
}

/// How often a cluster node reads the access version (see [`Identity::share_with`]).
const ACCESS_POLL: i64 = 1000;

/// What a node knows of the cluster's access version.
struct AccessFollower {
    cluster: Arc<dyn Coordination>,
    /// The version this node's caches were filled under.
    version: std::sync::atomic::AtomicI64,
    /// When it was last read (ms); one request a second reads it, the others go on.
    checked: std::sync::atomic::AtomicI64,
}

/// A value remembered since an instant.
type Cached<T> = (T, Instant);

/// A custom role definition's stored body.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleBody {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub assignable_scopes: Vec<String>,
}

/// A new secret, shown once.
#[derive(Debug)]
pub struct NewSecret {
    pub principal: PrincipalRecord,
    pub secret: String,
    pub expires_at: Option<i64>,
}

/// The identity provider.
pub struct Identity {
    pub(crate) store: Arc<dyn IdentityStore>,
    settings: IdentitySettings,
    tenant: String,
    keys: RwLock<Arc<KeyRing>>,
    grants: Mutex<HashMap<String, Cached<Arc<Vec<Grant>>>>>,
    secrets: Mutex<HashMap<[u8; 32], (PrincipalRecord, Instant)>>,
    /// Registry credentials' checked passwords (hash of registry, name and password → until).
    pub(crate) registry_secrets: Mutex<HashMap<[u8; 32], Instant>>,
    pub(crate) failures: FailureLimiter,
    /// Set on a cluster: changes other nodes make to access clear this node's caches.
    access: Option<AccessFollower>,
    /// Moves whenever cached grants, secrets or registry credentials' passwords are dropped,
    /// so that a read that began before isn't cached after.
    pub(crate) cache_generation: std::sync::atomic::AtomicU64,
    /// Seals the registry admin users' passwords.
    pub(crate) sealer: crate::registry_credentials::Sealer,
    /// Bounds the argon2 hashes computed at once (each takes memory and a core).
    pub(crate) hashing: tokio::sync::Semaphore,
}

/// What the first start made.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// The admin user's password, when it was generated (to show once).
    pub generated_admin_password: Option<String>,
}

impl Identity {
    /// Open the identity provider, creating on first start the default tenant, a signing
    /// key, and the `admin` user (with `admin_password`, or a generated one) holding Owner
    /// on everything.
    pub async fn open(
        store: Arc<dyn IdentityStore>,
        settings: IdentitySettings,
        admin_password: Option<String>,
    ) -> Result<(Identity, Bootstrap), AuthError> {
        let tenant = match store.tenants().await?.into_iter().next() {
            Some(t) => t.id,
            None => {
                let t = TenantRecord {
                    id: secret::guid(),
                    name: "default".into(),
                    created_at: now_ms(),
                };
                store.put_tenant(&t).await?;
                t.id
            }
        };
        let mut records = store.signing_keys().await?;
        if records.is_empty() {
            let k = KeyRing::generate(now_ms())?;
            store.add_signing_key(&k).await?;
            records.push(k);
        }
        let keys = KeyRing::from_records(&records)?;
        let settings_max_failures = settings.max_failed_sign_ins;
        let sealing_key = match settings.sealing_key {
            Some(k) => k,
            None => crate::registry_credentials::Sealer::generate_key()?,
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let identity = Identity {
            store,
            settings,
            tenant,
            keys: RwLock::new(Arc::new(keys)),
            grants: Mutex::default(),
            secrets: Mutex::default(),
            registry_secrets: Mutex::default(),
            failures: FailureLimiter::new(settings_max_failures),
            access: None,
            cache_generation: std::sync::atomic::AtomicU64::new(0),
            sealer: crate::registry_credentials::Sealer::new(&sealing_key)?,
            hashing: tokio::sync::Semaphore::new(cores),
        };
        let mut boot = Bootstrap::default();
        if identity.store.principal_named(&identity.tenant, ADMIN_USER).await?.is_none() {
            let generated = admin_password.is_none();
            let password = admin_password.unwrap_or_else(|| secret::generate(24));
            let admin = identity.create_user_with(ADMIN_USER, &password).await?;
            let owner = find_built_in("Owner")
                .ok_or_else(|| AuthError::Internal("no Owner role".into()))?;
            identity
                .create_role_assignment(&RoleAssignmentRecord {
                    id: secret::guid(),
                    scope: "/".into(),
                    role_definition_id: owner.id.clone(),
                    principal_id: admin.id.clone(),
                    principal_type: "User".into(),
                    condition: None,
                    description: Some("The first user owns everything.".into()),
                    created_at: now_ms(),
                })
                .await?;
            if generated {
                boot.generated_admin_password = Some(password);
            }
            tracing::info!("created the admin user (Owner of everything)");
        }
        Ok((identity, boot))
    }

    /// Share sign-in failure counts and cache invalidation with the other servers of a
    /// cluster: failures count on every node, and a change to access made through any node
    /// (a revoked role, a reset secret, a disabled token) holds here within about a second
    /// rather than when this node's caches expire.
    pub fn share_with(&mut self, cluster: Arc<dyn Coordination>) {
        self.failures.shared = Some(cluster.clone());
        self.access = Some(AccessFollower {
            cluster,
            version: std::sync::atomic::AtomicI64::new(i64::MIN),
            checked: std::sync::atomic::AtomicI64::new(0),
        });
    }

    /// On a cluster, at most once a second: read the access version, and if it moved, drop
    /// every cached grant and checked secret.
    pub(crate) async fn follow_access(&self) -> Result<(), AuthError> {
        use std::sync::atomic::Ordering::SeqCst;
        let Some(access) = &self.access else { return Ok(()) };
        let now = now_ms();
        let checked = access.checked.load(SeqCst);
        if now - checked < ACCESS_POLL
            || access.checked.compare_exchange(checked, now, SeqCst, SeqCst).is_err()
        {
            return Ok(());
        }
        let version = access.cluster.access_version().await?;
        if access.version.swap(version, SeqCst) != version {
            self.forget_grants(None);
            self.forget_secrets();
            self.forget_registry_secrets();
        }
        Ok(())
    }

    /// Drop every checked secret — and what checks still running read before now.
    fn forget_secrets(&self) {
        let mut cache = lock(&self.secrets);
        self.cache_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.clear();
    }

    pub fn default_tenant(&self) -> &str {
        &self.tenant
    }

    pub fn settings(&self) -> &IdentitySettings {
        &self.settings
    }

    /// `<base>/<tenant>/v2.0`
    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.settings.issuer_base)
    }

    fn keys(&self) -> Arc<KeyRing> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys().jwks()
    }

    /// Add a new signing key; tokens signed by the older ones stay valid until they expire.
    pub async fn rotate_keys(&self) -> Result<(), AuthError> {
        let k = KeyRing::generate(now_ms())?;
        self.store.add_signing_key(&k).await?;
        self.store.retire_signing_keys(&k.kid, now_ms()).await?;
        let ring = KeyRing::from_records(&self.store.signing_keys().await?)?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
        Ok(())
    }

    /// Read the signing keys again: servers sharing a store see the keys another one made
    /// or rotated (tokens it signs verify here) once this has run.
    pub async fn refresh_keys(&self) -> Result<(), AuthError> {
        let ring = KeyRing::from_records(&self.store.signing_keys().await?)?;
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
        Ok(())
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRecord>, AuthError> {
        Ok(self.store.tenants().await?)
    }

    // --- signing in ---------------------------------------------------------------

    pub(crate) fn limiter_keys(name: &str, client: Option<IpAddr>) -> Vec<String> {
        let mut keys = vec![format!("name:{}", name.to_ascii_lowercase())];
        if let Some(ip) = client {
            keys.push(format!("ip:{ip}"));
        }
        keys
    }

    /// Check a secret against a principal's credentials (not expired), remembering a
    /// success for a while so that repeated Basic credentials aren't hashed each time.
    async fn check_secret(
        &self,
        p: &PrincipalRecord,
        secret: &str,
        limiter_keys: &[String],
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
        self.failures.check_shared(limiter_keys).await?;
        let generation = self.cache_generation.load(std::sync::atomic::Ordering::SeqCst);
        let credentials = self.store.credentials(&p.id).await?;
        let candidates = credentials.into_iter().map(|c| (c.hash, c.expires_at)).collect();
        let Some(left) = self.verify_against(candidates, secret).await? else {
            return Ok(false);
        };
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
    /// secret. Failures are counted per name and per client address, and say nothing about
    /// which part was wrong.
    pub async fn sign_in(
        &self,
        tenant: Option<&str>,
        name: &str,
        secret: &str,
        client: Option<IpAddr>,
    ) -> Result<PrincipalRecord, AuthError> {
        let keys = Self::limiter_keys(name, client);
        self.failures.check(&keys)?;
        let tenant = tenant.unwrap_or(&self.tenant);
        let found = match self.store.principal_by_app_id(name).await? {
            Some(p) => Some(p),
            None => self.store.principal_named(tenant, name).await?,
        };
        let found = found.filter(|p| p.enabled && p.tenant.eq_ignore_ascii_case(tenant));
        match found {
            Some(p) if self.check_secret(&p, secret, &keys).await? => Ok(p),
            found => {
                // An unknown name meets the cluster's limit as a known one does: being
                // throttled mustn't tell which names exist.
                if found.is_none() {
                    self.failures.check_shared(&keys).await?;
                }
                self.failures.fail(&keys).await;
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    // --- identity tokens ----------------------------------------------------------

    /// An access token for `audience`, as the identity provider's token endpoint answers.
    pub fn issue_identity_token(
        &self,
        p: &PrincipalRecord,
        audience: &str,
        client_id: Option<&str>,
    ) -> Result<(String, Duration), AuthError> {
        let now = now_secs();
        let ttl = self.settings.identity_token_ttl;
        let user = p.kind == PrincipalKind::User.as_str();
        let claims = IdentityClaims {
            aud: audience.to_owned(),
            iss: self.issuer(&p.tenant),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            tid: p.tenant.clone(),
            oid: p.id.clone(),
            sub: p.id.clone(),
            azp: client_id.map(str::to_owned).or_else(|| p.app_id.clone()),
            appid: client_id.map(str::to_owned).or_else(|| p.app_id.clone()),
            idtyp: if user { "user" } else { "app" }.into(),
            name: Some(p.name.clone()),
            preferred_username: user.then(|| p.name.clone()),
            ver: "2.0".into(),
            uti: secret::generate(22),
        };
        Ok((self.keys().sign(&claims)?, ttl))
    }

    /// Check an identity token meant for one of `audiences`; the principal it names.
    pub async fn verify_identity_token(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Result<PrincipalRecord, AuthError> {
        let base = format!("{}/", self.settings.issuer_base);
        let claims: IdentityClaims = self.keys().verify(token, audiences, |iss| {
            iss.strip_prefix(&base).is_some_and(|rest| rest.ends_with("/v2.0"))
        })?;
        if claims.iss != self.issuer(&claims.tid) {
            return Err(AuthError::InvalidToken("wrong issuer".into()));
        }
        let p = self
            .store
            .principal(&claims.oid)
            .await?
            .filter(|p| p.enabled && p.tenant.eq_ignore_ascii_case(&claims.tid))
            .ok_or_else(|| AuthError::InvalidToken("unknown principal".into()))?;
        Ok(p)
    }

    // --- callers and grants -------------------------------------------------------

    /// A principal as a caller, with its grants.
    pub async fn caller(&self, p: &PrincipalRecord) -> Result<Caller, AuthError> {
        let kind = PrincipalKind::parse(&p.kind).unwrap_or(PrincipalKind::User);
        let subject = Subject::Principal {
            id: p.id.clone(),
            tenant: p.tenant.clone(),
            kind,
            name: p.name.clone(),
        };
        Ok(Caller::new(subject, self.grants(&p.id).await?))
    }

    async fn grants(&self, principal: &str) -> Result<Arc<Vec<Grant>>, AuthError> {
        self.follow_access().await?;
        if let Some((g, at)) = lock(&self.grants).get(principal)
            && at.elapsed() < GRANTS_TTL
        {
            return Ok(g.clone());
        }
        let generation = self.cache_generation.load(std::sync::atomic::Ordering::SeqCst);
        let mut grants = Vec::new();
        for a in self.store.role_assignments_of(principal).await? {
            let Some(role) = self.role_definition(&a.role_definition_id).await? else {
                tracing::warn!(assignment = %a.id, "a role assignment names an unknown role");
                continue;
            };
            let condition = match a.condition.as_deref().map(Condition::parse).transpose() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(assignment = %a.id, error = %e, "a role assignment's condition is unreadable: it grants nothing");
                    continue;
                }
            };
            grants.push(Grant { scope: normalize_scope(&a.scope), role, condition });
        }
        let grants = Arc::new(grants);
        let mut cache = lock(&self.grants);
        // Caches dropped meanwhile (a change here or on another node): what was read may be
        // stale, so it is used for this request only.
        if self.cache_generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            if cache.len() > CACHE_MAX {
                cache.clear();
            }
            cache.insert(principal.to_owned(), (grants.clone(), Instant::now()));
        }
        Ok(grants)
    }

    fn forget_grants(&self, principal: Option<&str>) {
        let mut cache = lock(&self.grants);
        self.cache_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match principal {
            Some(p) => {
                cache.remove(p);
            }
            None => cache.clear(),
        }
    }

    // --- the directory ------------------------------------------------------------

    async fn create_user_with(
        &self,
        name: &str,
        password: &str,
    ) -> Result<PrincipalRecord, AuthError> {
        let p = PrincipalRecord {
            id: secret::guid(),
            tenant: self.tenant.clone(),
            kind: PrincipalKind::User.as_str().into(),
            name: name.to_owned(),
            app_id: None,
            enabled: true,
            created_at: now_ms(),
        };
        if !self.store.create_principal(&p).await? {
            return Err(AuthError::Conflict(format!("A user named '{name}' already exists.")));
        }
        self.store.add_credential(&self.credential(&p.id, password, "password", None)?).await?;
        Ok(p)
    }

    fn credential(
        &self,
        principal: &str,
        secret_text: &str,
        display_name: &str,
        expires_at: Option<i64>,
    ) -> Result<CredentialRecord, AuthError> {
        Ok(CredentialRecord {
            id: secret::guid(),
            principal: principal.to_owned(),
            hash: secret::hash(secret_text).map_err(AuthError::Internal)?,
            hint: secret_text.chars().take(3).collect(),
            display_name: display_name.to_owned(),
            expires_at,
            created_at: now_ms(),
        })
    }

    /// A new user with the given password (or a generated one).
    pub async fn create_user(
        &self,
        name: &str,
        password: Option<&str>,
    ) -> Result<NewSecret, AuthError> {
        valid_name(name)?;
        let password = match password {
            Some(p) if p.len() < 12 => {
                return Err(AuthError::BadRequest(
                    "The password must be at least 12 characters long.".into(),
                ));
            }
            Some(p) => p.to_owned(),
            None => secret::generate(24),
        };
        let p = self.create_user_with(name, &password).await?;
        Ok(NewSecret { principal: p, secret: password, expires_at: None })
    }

    /// A new service principal (with its application id) and a client secret valid for
    /// `years`.
    pub async fn create_service_principal(
        &self,
        display_name: &str,
        years: u32,
    ) -> Result<NewSecret, AuthError> {
        valid_name(display_name)?;
        let p = PrincipalRecord {
            id: secret::guid(),
            tenant: self.tenant.clone(),
            kind: PrincipalKind::ServicePrincipal.as_str().into(),
            name: display_name.to_owned(),
            app_id: Some(secret::guid()),
            enabled: true,
            created_at: now_ms(),
        };
        if !self.store.create_principal(&p).await? {
            return Err(AuthError::Conflict(format!(
                "A service principal named '{display_name}' already exists."
            )));
        }
        let secret_text = secret::generate(40);
        let expires = expiry(years);
        self.store.add_credential(&self.credential(&p.id, &secret_text, "rbac", expires)?).await?;
        Ok(NewSecret { principal: p, secret: secret_text, expires_at: expires })
    }

    /// Replace a principal's secrets with a new one (valid for `years`; users' passwords
    /// don't expire).
    pub async fn reset_secret(&self, principal: &str, years: u32) -> Result<NewSecret, AuthError> {
        let p = self.principal(principal).await?;
        let user = p.kind == PrincipalKind::User.as_str();
        let secret_text = secret::generate(if user { 24 } else { 40 });
        let expires = if user { None } else { expiry(years) };
        self.store
            .replace_credentials(&self.credential(&p.id, &secret_text, "reset", expires)?)
            .await?;
        lock(&self.secrets).retain(|_, (q, _)| q.id != p.id);
        Ok(NewSecret { principal: p, secret: secret_text, expires_at: expires })
    }

    /// Add a secret to a service principal, keeping its others (valid for `years`).
    pub async fn add_secret(
        &self,
        principal: &str,
        display_name: &str,
        years: u32,
    ) -> Result<(NewSecret, CredentialRecord), AuthError> {
        let p = self.principal(principal).await?;
        if p.kind != PrincipalKind::ServicePrincipal.as_str() {
            return Err(AuthError::BadRequest(
                "Only service principals have client secrets.".into(),
            ));
        }
        let secret_text = secret::generate(40);
        let expires = expiry(years);
        let c = self.credential(&p.id, &secret_text, display_name, expires)?;
        self.store.add_credential(&c).await?;
        Ok((NewSecret { principal: p, secret: secret_text, expires_at: expires }, c))
    }

    /// A principal by object id, app id or name.
    pub async fn principal(&self, id: &str) -> Result<PrincipalRecord, AuthError> {
        let found = match self.store.principal(id).await? {
            Some(p) => Some(p),
            None => match self.store.principal_by_app_id(id).await? {
                Some(p) => Some(p),
                None => self.store.principal_named(&self.tenant, id).await?,
            },
        };
        found.ok_or_else(|| AuthError::NotFound(format!("No principal '{id}' was found.")))
    }

    pub async fn principals(&self, kind: PrincipalKind) -> Result<Vec<PrincipalRecord>, AuthError> {
        Ok(self.store.principals(&self.tenant, kind.as_str()).await?)
    }

    pub async fn credentials(&self, principal: &str) -> Result<Vec<CredentialRecord>, AuthError> {
        Ok(self.store.credentials(principal).await?)
    }

    /// Delete a principal, its secrets and its role assignments. The last owner of
    /// everything can't be deleted.
    pub async fn delete_principal(&self, id: &str) -> Result<(), AuthError> {
        let p = self.principal(id).await?;
        if p.name.eq_ignore_ascii_case(ADMIN_USER) && p.kind == PrincipalKind::User.as_str() {
            return Err(AuthError::Conflict("The admin user can't be deleted.".into()));
        }
        self.store.delete_principal(&p.id).await?;
        self.forget_grants(Some(&p.id));
        lock(&self.secrets).retain(|_, (q, _)| q.id != p.id);
        Ok(())
    }

    // --- roles ----------------------------------------------------------------------

    /// A role definition, built in or custom, by id.
    pub async fn role_definition(&self, id: &str) -> Result<Option<RoleDefinition>, AuthError> {
        let id = id.rsplit('/').next().unwrap_or(id);
        if let Some(r) = find_built_in(id).filter(|r| r.id.eq_ignore_ascii_case(id)) {
            return Ok(Some(r.clone()));
        }
        Ok(self.store.role_definition(id).await?.map(|r| custom(&r)))
    }

    /// Every role definition: built in, then custom.
    pub async fn role_definitions(&self) -> Result<Vec<RoleDefinition>, AuthError> {
        let mut out: Vec<RoleDefinition> = crate::roles::built_in().to_vec();
        out.extend(self.store.role_definitions().await?.iter().map(custom));
        Ok(out)
    }

    /// A role definition by id or name.
    pub async fn find_role(&self, id_or_name: &str) -> Result<Option<RoleDefinition>, AuthError> {
        if let Some(r) = self.role_definition(id_or_name).await? {
            return Ok(Some(r));
        }
        Ok(self
            .role_definitions()
            .await?
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(id_or_name)))
    }

    /// Create or update a custom role; `true` if created.
    pub async fn put_custom_role(
        &self,
        id: &str,
        name: &str,
        body: &RoleBody,
    ) -> Result<bool, AuthError> {
        if find_built_in(id).is_some() || find_built_in(name).is_some() {
            return Err(AuthError::Conflict(format!("'{name}' is a built-in role.")));
        }
        if body.permissions.is_empty() || body.assignable_scopes.is_empty() {
            return Err(AuthError::BadRequest(
                "A role definition needs permissions and assignableScopes.".into(),
            ));
        }
        let record = RoleDefinitionRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            body: serde_json::to_string(body).map_err(|e| AuthError::Internal(e.to_string()))?,
            created_at: now_ms(),
        };
        let created = self.store.put_role_definition(&record).await.map_err(|e| match e {
            wharf_storage::StorageError::Database(ref db) if db.to_string().contains("UNIQUE") => {
                AuthError::Conflict(format!("A role named '{name}' already exists."))
            }
            other => other.into(),
        })?;
        self.forget_grants(None);
        Ok(created)
    }

    pub async fn delete_custom_role(&self, id: &str) -> Result<bool, AuthError> {
        if find_built_in(id).is_some() {
            return Err(AuthError::BadRequest("Built-in roles can't be deleted.".into()));
        }
        let used = self
            .store
            .role_assignments()
            .await?
            .iter()
            .any(|a| a.role_definition_id.eq_ignore_ascii_case(id));
        if used {
            return Err(AuthError::Conflict(
                "The role definition is used by role assignments; delete them first.".into(),
            ));
        }
        let deleted = self.store.delete_role_definition(id).await?;
        self.forget_grants(None);
        Ok(deleted)
    }

    /// Create a role assignment (its condition checked first).
    pub async fn create_role_assignment(
        &self,
        a: &RoleAssignmentRecord,
    ) -> Result<bool, AuthError> {
        if let Some(c) = &a.condition {
            Condition::parse(c).map_err(|e| {
                AuthError::BadRequest(format!("The role assignment condition is invalid: {e}"))
            })?;
        }
        let role = self.role_definition(&a.role_definition_id).await?.ok_or_else(|| {
            AuthError::BadRequest(format!(
                "The role definition '{}' does not exist.",
                a.role_definition_id
            ))
        })?;
        let target = normalize_scope(&a.scope);
        let assignable = role
            .assignable_scopes
            .iter()
            .any(|s| crate::caller::covers(&normalize_scope(s), &target));
        if !assignable {
            return Err(AuthError::BadRequest(format!(
                "The role '{}' can't be assigned at scope '{}'.",
                role.name, a.scope
            )));
        }
        self.principal(&a.principal_id).await.map_err(|_| {
            AuthError::BadRequest(format!(
                "Principal {} does not exist in the directory.",
                a.principal_id
            ))
        })?;
        let created = self.store.create_role_assignment(a).await?;
        self.forget_grants(Some(&a.principal_id));
        Ok(created)
    }

    pub async fn role_assignment(
        &self,
        id: &str,
    ) -> Result<Option<RoleAssignmentRecord>, AuthError> {
        Ok(self.store.role_assignment(id).await?)
    }

    pub async fn role_assignments(&self) -> Result<Vec<RoleAssignmentRecord>, AuthError> {
        Ok(self.store.role_assignments().await?)
    }

    pub async fn delete_role_assignment(
        &self,
        id: &str,
    ) -> Result<Option<RoleAssignmentRecord>, AuthError> {
        let Some(a) = self.store.role_assignment(id).await? else { return Ok(None) };
        // Someone must always be able to manage access: the last Owner of everything stays.
        let owner = find_built_in("Owner").map(|r| r.id.as_str()).unwrap_or_default();
        let root_owner = |r: &RoleAssignmentRecord| {
            normalize_scope(&r.scope).is_empty() && r.role_definition_id.eq_ignore_ascii_case(owner)
        };
        if root_owner(&a) {
            let owners =
                self.store.role_assignments().await?.iter().filter(|r| root_owner(r)).count();
            if owners <= 1 {
                return Err(AuthError::Conflict(
                    "This is the last Owner assignment at '/': assign Owner to someone else first."
                        .into(),
                ));
            }
        }
        self.store.delete_role_assignment(id).await?;
        self.forget_grants(Some(&a.principal_id));
        Ok(Some(a))
    }

    // --- registry tokens ----------------------------------------------------------

    /// Sign a registry token (refresh or access).
    pub fn sign_registry_token(&self, claims: &RegistryClaims) -> Result<String, AuthError> {
        self.keys().sign(claims)
    }

    /// Check a registry token meant for `login_server` (and issued by it).
    pub fn verify_registry_token(
        &self,
        token: &str,
        login_server: &str,
    ) -> Result<RegistryClaims, AuthError> {
        let issuer = registry_issuer(login_server);
        self.keys().verify(token, &[login_server], |iss| iss == issuer)
    }
}

impl Identity {
    /// Whether access control is on.
    pub fn enforced(&self) -> bool {
        self.settings.enforced
    }

    /// The audience a token request's `scope` asks for (`<audience>/.default`, or the
    /// audience itself), if it is one this provider issues for.
    pub fn audience_for_scope(&self, scope: &str) -> Option<String> {
        let wanted = scope.split(' ').find(|s| !s.is_empty() && !OIDC_SCOPES.contains(s))?;
        let wanted = wanted.strip_suffix(".default").unwrap_or(wanted);
        let bare = wanted.trim_end_matches('/');
        self.settings
            .audiences
            .iter()
            .find(|a| a.trim_end_matches('/').eq_ignore_ascii_case(bare))
            .cloned()
    }

    /// Every audience spelling accepted on tokens (with and without the final `/`).
    fn accepted_audiences(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.settings.audiences {
            let bare = a.trim_end_matches('/');
            out.push(bare.to_owned());
            out.push(format!("{bare}/"));
        }
        out
    }

    /// The caller an identity token (`Authorization: Bearer` on the management API) is.
    pub async fn caller_from_identity_token(&self, token: &str) -> Result<Caller, AuthError> {
        if !self.enforced() {
            return Ok(Caller::unrestricted());
        }
        let p = self.principal_from_identity_token(token).await?;
        self.caller(&p).await
    }

    /// The principal an identity token (for any accepted audience) names.
    pub async fn principal_from_identity_token(
        &self,
        token: &str,
    ) -> Result<PrincipalRecord, AuthError> {
        let audiences = self.accepted_audiences();
        let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
        self.verify_identity_token(token, &audiences).await
    }

    /// A caller recorded by principal id (an import resumed after a restart): that
    /// principal with its grants now; anonymous if it is gone or none was recorded.
    pub async fn caller_by_id(&self, id: Option<&str>) -> Result<Caller, AuthError> {
        if !self.enforced() {
            return Ok(Caller::unrestricted());
        }
        let Some(id) = id else { return Ok(Caller::anonymous()) };
        match self.store.principal(id).await?.filter(|p| p.enabled) {
            Some(p) => self.caller(&p).await,
            None => Ok(Caller::anonymous()),
        }
    }

    /// Who is calling a registry's data plane, from what the request carries: nothing
    /// (anonymous), a registry access token (`Bearer`), or `Basic` credentials — a
    /// principal's name or app id and secret, the null GUID with a registry refresh token,
    /// or an identity access token as the password (ACR's password-only form).
    pub async fn registry_caller(
        &self,
        registry: &RegistryPolicy,
        login_server: &str,
        credential: Option<RegistryCredential<'_>>,
        client: Option<IpAddr>,
    ) -> Result<Caller, AuthError> {
        if !self.enforced() {
            return Ok(Caller::unrestricted());
        }
        match credential {
            None => Ok(Caller::anonymous()),
            Some(RegistryCredential::Bearer(token)) => {
                let claims = self.verify_registry_token(token, login_server)?;
                if claims.grant_type != ACCESS_TOKEN || claims.rid != registry.id {
                    return Err(AuthError::InvalidToken(
                        "not an access token of this registry".into(),
                    ));
                }
                let subject = Subject::Principal {
                    id: claims.sub.clone(),
                    tenant: claims.tenant.clone().unwrap_or_default(),
                    kind: PrincipalKind::User,
                    name: claims.sub,
                };
                Ok(Caller::new(subject, Arc::default()).with_access(registry.id, claims.access))
            }
            Some(RegistryCredential::Basic { username, password }) => {
                if let Some(c) =
                    self.registry_credential_caller(registry, username, password, client).await?
                {
                    return Ok(c);
                }
                let p = self
                    .registry_principal(registry, login_server, username, password, client)
                    .await?;
                self.caller(&p).await
            }
        }
    }

    /// The principal behind `Basic` credentials on a registry (see [`registry_caller`]).
    ///
    /// [`registry_caller`]: Self::registry_caller
    pub async fn registry_principal(
        &self,
        registry: &RegistryPolicy,
        login_server: &str,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<PrincipalRecord, AuthError> {
        if username == NULL_GUID || (username.is_empty() && looks_like_jwt(password)) {
            if let Ok(claims) = self.verify_registry_token(password, login_server) {
                if claims.grant_type != REFRESH_TOKEN || claims.rid != registry.id {
                    return Err(AuthError::InvalidToken(
                        "not a refresh token of this registry".into(),
                    ));
                }
                return self.enabled_principal(&claims.sub).await;
            }
            if looks_like_jwt(password) {
                return self.principal_from_identity_token(password).await;
            }
            return Err(AuthError::InvalidCredentials);
        }
        self.sign_in(None, username, password, client).await
    }

    async fn enabled_principal(&self, id: &str) -> Result<PrincipalRecord, AuthError> {
        self.store
            .principal(id)
            .await?
            .filter(|p| p.enabled)
            .ok_or_else(|| AuthError::InvalidToken("unknown principal".into()))
    }

    /// A registry refresh token for a principal (what `/oauth2/exchange` answers).
    pub fn issue_registry_refresh_token(
        &self,
        p: &PrincipalRecord,
        registry: &RegistryPolicy,
        login_server: &str,
    ) -> Result<String, AuthError> {
        self.registry_token(
            &p.id,
            Some(&p.tenant),
            registry,
            login_server,
            REFRESH_TOKEN,
            Vec::new(),
        )
        .map(|(t, _)| t)
    }

    /// A registry access token granting what the caller may of what it asked for (each
    /// action the caller's permissions don't allow is left out, never refused outright, as
    /// Docker's token protocol has it); the token and what it grants.
    pub fn issue_registry_access_token(
        &self,
        caller: &Caller,
        registry: &RegistryPolicy,
        login_server: &str,
        requested: &[Access],
    ) -> Result<(String, Vec<Access>), AuthError> {
        let mut granted: Vec<Access> = Vec::new();
        for want in requested {
            let actions: Vec<String> = match want.kind.as_str() {
                "repository" => want
                    .actions
                    .iter()
                    .filter(|a| {
                        RepoOp::from_scope_action(a)
                            .is_some_and(|op| caller.can(op, registry, &want.name))
                    })
                    .cloned()
                    .collect(),
                "registry" if want.name == "catalog" && caller.can_list_catalog(registry) => {
                    vec!["*".to_owned()]
                }
                _ => Vec::new(),
            };
            // A scope granted nothing stays in the token with no actions: it says "asked
            // for, and refused" (a client that never asked can be told to).
            match granted.iter_mut().find(|g| g.kind == want.kind && g.name == want.name) {
                Some(g) => {
                    for a in actions {
                        if !g.actions.contains(&a) {
                            g.actions.push(a);
                        }
                    }
                }
                None => granted.push(Access {
                    kind: want.kind.clone(),
                    name: want.name.clone(),
                    actions,
                }),
            }
        }
        let (sub, tenant) = match &caller.subject {
            Subject::Principal { id, tenant, .. } => (id.clone(), Some(tenant.clone())),
            Subject::RegistryCredential { name, .. } => (name.clone(), None),
            Subject::Anonymous => ("anonymous".to_owned(), None),
        };
        let tenant = tenant.filter(|t| !t.is_empty());
        let (token, _) = self.registry_token(
            &sub,
            tenant.as_deref(),
            registry,
            login_server,
            ACCESS_TOKEN,
            granted.clone(),
        )?;
        Ok((token, granted))
    }

    fn registry_token(
        &self,
        sub: &str,
        tenant: Option<&str>,
        registry: &RegistryPolicy,
        login_server: &str,
        grant_type: &str,
        access: Vec<Access>,
    ) -> Result<(String, Duration), AuthError> {
        let ttl = if grant_type == REFRESH_TOKEN {
            self.settings.registry_refresh_ttl
        } else {
            self.settings.registry_access_ttl
        };
        let now = now_secs();
        let claims = RegistryClaims {
            iss: registry_issuer(login_server),
            aud: login_server.to_owned(),
            sub: sub.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            jti: secret::guid(),
            grant_type: grant_type.to_owned(),
            rid: registry.id,
            tenant: tenant.map(str::to_owned),
            access,
        };
        Ok((self.sign_registry_token(&claims)?, ttl))
    }

    /// How long registry access tokens live (the token endpoint's `expires_in`).
    pub fn registry_access_ttl(&self) -> Duration {
        self.settings.registry_access_ttl
    }
}

/// `grant_type` of registry tokens.
const REFRESH_TOKEN: &str = "refresh_token";
const ACCESS_TOKEN: &str = "access_token";
/// OpenID scopes that may come along with a resource's `.default` scope.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "offline_access", "email"];

/// A JWT's shape: three base64url parts, the first a JSON object.
fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|b| *b == b'.').count() == 2
}

/// A credential presented to a registry's data plane.
#[derive(Clone, Copy, Debug)]
pub enum RegistryCredential<'a> {
    /// `Authorization: Basic`.
    Basic { username: &'a str, password: &'a str },
    /// `Authorization: Bearer`: a registry access token.
    Bearer(&'a str),
}

/// The `iss` of a registry's tokens.
pub fn registry_issuer(login_server: &str) -> String {
    format!("wharf:{login_server}")
}

fn custom(r: &RoleDefinitionRecord) -> RoleDefinition {
    let body: RoleBody = serde_json::from_str(&r.body).unwrap_or_default();
    RoleDefinition {
        id: r.id.clone(),
        name: r.name.clone(),
        description: body.description,
        built_in: false,
        permissions: body.permissions,
        assignable_scopes: body.assignable_scopes,
    }
}

fn expiry(years: u32) -> Option<i64> {
    let ms = i64::from(years.clamp(1, 100)) * 365 * 24 * 3600 * 1000;
    Some(now_ms().saturating_add(ms))
}

/// Names of users and service principals: printable, bounded.
fn valid_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_alphanumeric() || "-_.@ ".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadRequest(format!(
            "'{name}' is not a valid name: 1 to 256 letters, digits and -_.@ or spaces."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions;

    async fn identity() -> (Identity, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            wharf_storage::SqliteMetadataStore::open(&dir.path().join("w.db")).await.unwrap();
        let (id, boot) = Identity::open(
            Arc::new(store),
            IdentitySettings::new("https://idp.example"),
            Some("an admin password".into()),
        )
        .await
        .unwrap();
        assert!(boot.generated_admin_password.is_none());
        (id, dir)
    }

    #[tokio::test]
    async fn the_admin_owns_everything_and_others_nothing_until_assigned() {
        let (id, _dir) = identity().await;
        let admin = id.sign_in(None, "admin", "an admin password", None).await.unwrap();
        let admin = id.caller(&admin).await.unwrap();
        assert!(admin.allows(actions::ROLE_ASSIGNMENT_WRITE, "/subscriptions/x"));
        let sp = id.create_service_principal("ci", 1).await.unwrap();
        let app = sp.principal.app_id.clone().unwrap();
        let signed = id.sign_in(None, &app, &sp.secret, None).await.unwrap();
        let caller = id.caller(&signed).await.unwrap();
        assert!(!caller.allows(actions::PULL, "/subscriptions/x"));
        let role = find_built_in("AcrPull").unwrap();
        id.create_role_assignment(&RoleAssignmentRecord {
            id: secret::guid(),
            scope: "/subscriptions/x".into(),
            role_definition_id: role.id.clone(),
            principal_id: signed.id.clone(),
            principal_type: "ServicePrincipal".into(),
            condition: None,
            description: None,
            created_at: 0,
        })
        .await
        .unwrap();
        let caller = id.caller(&signed).await.unwrap();
        assert!(caller.allows(actions::PULL, "/subscriptions/x/resourceGroups/r"));
        assert!(id.delete_principal("admin").await.is_err());
    }

    #[tokio::test]
    async fn wrong_secrets_fail_alike_and_are_throttled() {
        let (id, _dir) = identity().await;
        assert_eq!(
            id.sign_in(None, "admin", "wrong", None).await.unwrap_err(),
            AuthError::InvalidCredentials
        );
        assert_eq!(
            id.sign_in(None, "nobody", "wrong", None).await.unwrap_err(),
            AuthError::InvalidCredentials
        );
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        for _ in 0..DEFAULT_MAX_FAILURES * 10 {
            let _ = id.sign_in(None, &secret::generate(8), "x", Some(ip)).await;
        }
        // Even the right password is refused from that address for a while.
        assert!(matches!(
            id.sign_in(None, "admin", "an admin password", Some(ip)).await,
            Err(AuthError::Throttled(_))
        ));
    }

    #[tokio::test]
    async fn identity_tokens_round_trip_and_are_checked() {
        let (id, _dir) = identity().await;
        let admin = id.sign_in(None, "admin", "an admin password", None).await.unwrap();
        let (token, _) =
            id.issue_identity_token(&admin, "https://management.azure.com/", None).unwrap();
        let back =
            id.verify_identity_token(&token, &["https://management.azure.com/"]).await.unwrap();
        assert_eq!(back.id, admin.id);
        assert!(id.verify_identity_token(&token, &["https://other/"]).await.is_err());
        // Expired secrets don't sign in.
        let sp = id.create_service_principal("old", 1).await.unwrap();
        let mut c = id.credentials(&sp.principal.id).await.unwrap().remove(0);
        c.expires_at = Some(1);
        id.store.replace_credentials(&c).await.unwrap();
        let app = sp.principal.app_id.unwrap();
        assert!(id.sign_in(None, &app, &sp.secret, None).await.is_err());
    }
}
