//! The identity provider: tenants, users and service principals, signing in, issuing and
//! checking tokens, role definitions and assignments, and each caller's grants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wharf_storage::{
    Coordination, IdentityStore, PrincipalRecord, RoleAssignmentRecord, TenantRecord,
};

use crate::caller::{Caller, Grant, PrincipalKind, Subject, normalize_scope};
use crate::common::{CACHE_MAX, lock, now_ms};
use crate::conditions::Condition;
use crate::keys::KeyRing;
use crate::limiter::{Limiter, PerKey};
use crate::roles::{Permission, find_built_in};
use crate::sealer::Sealer;
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
    /// Failed sign-ins per (name, client address) in a window before more are refused for
    /// a while (ten times as many per name, and per address; see `limiter::Limiter`).
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

/// The name of the first user, who owns everything.
pub const ADMIN_USER: &str = "admin";
/// How long a caller's grants are reused before they are read again (changes made on this
/// server take effect at once; the delay bounds anything else).
const GRANTS_TTL: Duration = Duration::from_secs(30);
/// How long a checked password is remembered, so that Basic credentials sent with every
/// request are hashed once, not per request.
pub(crate) const SECRET_CACHE_TTL: Duration = Duration::from_secs(300);
/// Failed sign-ins allowed per principal name in a window, unless configured (ten times as
/// many per client address).
pub const DEFAULT_MAX_FAILURES: u32 = 10;

/// The default tenant: the first there is, made on first start.
async fn default_tenant(store: &dyn IdentityStore) -> Result<String, AuthError> {
    if let Some(t) = store.tenants().await?.into_iter().next() {
        return Ok(t.id);
    }
    let t = TenantRecord { id: secret::guid(), name: "default".into(), created_at: now_ms() };
    store.put_tenant(&t).await?;
    Ok(t.id)
}

/// The signing keys, with one made on first start.
async fn signing_keys(store: &dyn IdentityStore) -> Result<KeyRing, AuthError> {
    let mut records = store.signing_keys().await?;
    if records.is_empty() {
        let k = KeyRing::generate(now_ms())?;
        store.add_signing_key(&k).await?;
        records.push(k);
    }
    KeyRing::from_records(&records)
}

/// A hash of a random secret, made once at start (off the async threads).
async fn dummy_hash() -> Result<String, AuthError> {
    tokio::task::spawn_blocking(|| secret::hash(&secret::generate(24)))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
        .map_err(AuthError::Internal)
}

/// How often a cluster node reads the access version (see [`Identity::share_with`]).
const ACCESS_POLL: i64 = 500;

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

/// What issued a token, as tokens are checked against it.
#[derive(Clone, Debug)]
pub(crate) enum Issuer {
    Principal(PrincipalRecord),
    /// A registry credential (its admin user, a token), and whether it is enabled.
    Credential {
        enabled: bool,
    },
}

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
    pub(crate) settings: IdentitySettings,
    pub(crate) tenant: String,
    pub(crate) keys: RwLock<Arc<KeyRing>>,
    pub(crate) grants: Mutex<HashMap<String, Cached<Arc<Vec<Grant>>>>>,
    /// Secrets verified lately (principals' and registry credentials'), by a hash of what
    /// they are for and the secret, until when they may be trusted without hashing again.
    pub(crate) verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// The verifications under way, one per secret: the same secret arriving many times at
    /// once (a client's parallel pulls) is hashed once, the others wait for its answer.
    pub(crate) verifying: PerKey,
    /// Principals and registry credentials as tokens last found them (enabled, token
    /// generation): a token is checked against these on every request without a query.
    pub(crate) issuers: Mutex<HashMap<String, Cached<Option<Issuer>>>>,
    pub(crate) failures: Limiter,
    /// Keeper checks and the changes they allow, one at a time (see `keep_a_keeper`).
    pub(crate) keepers: tokio::sync::Mutex<()>,
    /// An argon2 hash of nothing anyone knows: checked against when a name is unknown, so
    /// that a wrong name costs as long as a wrong secret.
    pub(crate) dummy_hash: String,
    /// Set on a cluster: changes other nodes make to access clear this node's caches.
    access: Option<AccessFollower>,
    /// Moves whenever cached grants, secrets or registry credentials' passwords are dropped,
    /// so that a read that began before isn't cached after.
    pub(crate) cache_generation: std::sync::atomic::AtomicU64,
    /// Seals the registry admin users' passwords.
    pub(crate) sealer: Sealer,
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
        let tenant = default_tenant(store.as_ref()).await?;
        let keys = signing_keys(store.as_ref()).await?;
        let identity = Identity::new(store, settings, tenant, keys).await?;
        let boot = identity.bootstrap_admin(admin_password).await?;
        Ok((identity, boot))
    }

    async fn new(
        store: Arc<dyn IdentityStore>,
        settings: IdentitySettings,
        tenant: String,
        keys: KeyRing,
    ) -> Result<Identity, AuthError> {
        let settings_max_failures = settings.max_failed_sign_ins;
        let sealing_key = match settings.sealing_key {
            Some(k) => k,
            None => Sealer::generate_key()?,
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Identity {
            store,
            settings,
            tenant,
            keys: RwLock::new(Arc::new(keys)),
            grants: Mutex::default(),
            verified: Mutex::default(),
            verifying: Default::default(),
            issuers: Mutex::default(),
            failures: Limiter::new(settings_max_failures),
            keepers: tokio::sync::Mutex::new(()),
            dummy_hash: dummy_hash().await?,
            access: None,
            cache_generation: std::sync::atomic::AtomicU64::new(0),
            sealer: Sealer::new(&sealing_key)?,
            hashing: tokio::sync::Semaphore::new(cores),
        })
    }

    /// On first start, the `admin` user: Owner of everything, and administrator of the
    /// directory (which Owner's `*` doesn't reach).
    async fn bootstrap_admin(
        &self,
        admin_password: Option<String>,
    ) -> Result<Bootstrap, AuthError> {
        let mut boot = Bootstrap::default();
        if self.store.principal_named(&self.tenant, ADMIN_USER).await?.is_some() {
            return Ok(boot);
        }
        let generated = admin_password.is_none();
        let password = admin_password.unwrap_or_else(|| secret::generate(24));
        let admin = self.create_user_with(ADMIN_USER, &password).await?;
        for (role, description) in [
            ("Owner", "The first user owns everything."),
            (crate::roles::DIRECTORY_ADMINISTRATOR, "The first user administers the directory."),
        ] {
            let role = find_built_in(role)
                .ok_or_else(|| AuthError::Internal(format!("no built-in role {role}")))?;
            self.store_role_assignment(&RoleAssignmentRecord {
                id: secret::guid(),
                scope: "/".into(),
                role_definition_id: role.id.clone(),
                principal_id: admin.id.clone(),
                principal_type: "User".into(),
                condition: None,
                description: Some(description.into()),
                created_at: now_ms(),
            })
            .await?;
        }
        if generated {
            boot.generated_admin_password = Some(password);
        }
        tracing::info!("created the admin user (Owner of everything)");
        Ok(boot)
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
            self.forget_issuers();
        }
        Ok(())
    }

    /// After a change to one principal (its secrets, status, assignments, existence):
    /// drop what this node remembers of it — and what reads still running began before.
    pub(crate) fn forget_principal(&self, id: &str) {
        self.forget_grants(Some(id));
        self.forget_secrets();
        self.forget_issuers();
    }

    /// Drop what tokens were last checked against.
    pub(crate) fn forget_issuers(&self) {
        let mut cache = lock(&self.issuers);
        self.cache_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.clear();
    }

    /// A principal as it is now, for checking the tokens it holds: read at most once per
    /// [`GRANTS_TTL`] (changes through this node, and on a cluster through any node within
    /// about a second, drop it sooner).
    pub(crate) async fn current_principal(
        &self,
        id: &str,
    ) -> Result<Option<PrincipalRecord>, AuthError> {
        let key = format!("principal/{}", id.to_ascii_lowercase());
        let found = self
            .remembered(key, || async {
                Ok(self.store.principal(id).await?.map(Issuer::Principal))
            })
            .await?;
        Ok(match found {
            Some(Issuer::Principal(p)) => Some(p),
            _ => None,
        })
    }

    /// `read`'s answer, remembered under `key` for [`GRANTS_TTL`] unless caches are
    /// dropped meanwhile.
    pub(crate) async fn remembered<F, Fut>(
        &self,
        key: String,
        read: F,
    ) -> Result<Option<Issuer>, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Issuer>, AuthError>>,
    {
        self.follow_access().await?;
        if let Some((p, at)) = lock(&self.issuers).get(&key)
            && at.elapsed() < GRANTS_TTL
        {
            return Ok(p.clone());
        }
        let generation = self.cache_generation.load(std::sync::atomic::Ordering::SeqCst);
        let found = read().await?;
        let mut cache = lock(&self.issuers);
        if self.cache_generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            if cache.len() > CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (found.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// Drop every checked secret — and what checks still running read before now.
    pub(crate) fn forget_secrets(&self) {
        let mut cache = lock(&self.verified);
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

    pub(crate) fn keys(&self) -> Arc<KeyRing> {
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

    /// Delete retired signing keys: those retired longer ago than the longest token
    /// lifetime (no token they signed is still valid), or with `all_retired` every retired
    /// one now (what a leaked key asks for: every token it signed stops working). The key
    /// in use stays. How many were deleted.
    pub async fn prune_keys(&self, all_retired: bool) -> Result<u64, AuthError> {
        let s = &self.settings;
        let longest = s.identity_token_ttl.max(s.registry_refresh_ttl).max(s.registry_access_ttl);
        let before = if all_retired {
            i64::MAX
        } else {
            now_ms().saturating_sub(i64::try_from(longest.as_millis()).unwrap_or(i64::MAX))
        };
        let pruned = self.store.prune_signing_keys(before).await?;
        self.refresh_keys().await?;
        Ok(pruned)
    }

    /// The signing keys (kid, created, retired), newest first.
    pub async fn signing_keys(&self) -> Result<Vec<(String, i64, Option<i64>)>, AuthError> {
        let mut keys: Vec<_> = self
            .store
            .signing_keys()
            .await?
            .into_iter()
            .map(|k| (k.kid, k.created_at, k.retired_at))
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.1));
        Ok(keys)
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

    // --- callers and grants -------------------------------------------------------

    /// A principal as a caller, with its grants.
    pub async fn caller(&self, p: &PrincipalRecord) -> Result<Caller, AuthError> {
        let kind = PrincipalKind::parse(&p.kind).unwrap_or(PrincipalKind::User);
        let subject = Subject::Principal {
            id: p.id.clone(),
            tenant: p.tenant.clone(),
            kind,
            name: p.name.clone(),
            generation: p.token_generation,
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

    pub(crate) fn forget_grants(&self, principal: Option<&str>) {
        let mut cache = lock(&self.grants);
        self.cache_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match principal {
            Some(p) => {
                cache.remove(p);
            }
            None => cache.clear(),
        }
    }
}

impl Identity {
    /// Whether access control is on.
    pub fn enforced(&self) -> bool {
        self.settings.enforced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

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
        id.create_role_assignment(
            &admin,
            &RoleAssignmentRecord {
                id: secret::guid(),
                scope: "/subscriptions/x".into(),
                role_definition_id: role.id.clone(),
                principal_id: signed.id.clone(),
                principal_type: "ServicePrincipal".into(),
                condition: None,
                description: None,
                created_at: 0,
            },
        )
        .await
        .unwrap();
        let caller = id.caller(&signed).await.unwrap();
        assert!(caller.allows(actions::PULL, "/subscriptions/x/resourceGroups/r"));
        assert!(id.delete_principal(&admin, "admin").await.is_err());
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
    async fn a_principals_names_share_one_budget_and_ipv6_hosts_are_keyed_by_prefix() {
        let (id, _dir) = identity().await;
        let sp = id.create_service_principal("twonames", 1).await.unwrap();
        let app = sp.principal.app_id.clone().unwrap();
        let ip: IpAddr = "10.2.2.2".parse().unwrap();
        for name in [&app, "twonames"].into_iter().cycle().take(DEFAULT_MAX_FAILURES as usize) {
            let e = id.sign_in(None, name, "wrong", Some(ip)).await.unwrap_err();
            assert_eq!(e, AuthError::InvalidCredentials);
        }
        // Its display name and its app id were one budget: both are spent.
        for name in [app.as_str(), "twonames"] {
            let e = id.sign_in(None, name, &sp.secret, Some(ip)).await.unwrap_err();
            assert!(matches!(e, AuthError::Throttled(_)), "{name}: {e:?}");
        }
        // Addresses of one IPv6 /64 are one client.
        let v6 = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        for i in 0..DEFAULT_MAX_FAILURES as u16 {
            let _ = id.sign_in(None, "admin", "wrong", v6(i + 1)).await;
        }
        let e = id.sign_in(None, "admin", "also wrong", v6(999)).await.unwrap_err();
        assert!(matches!(e, AuthError::Throttled(_)), "{e:?}");
        // From elsewhere the admin still signs in.
        assert!(id.sign_in(None, "admin", "an admin password", Some(ip)).await.is_ok());
    }

    #[tokio::test]
    async fn someone_enabled_always_keeps_owner_and_the_directory() {
        let (id, _dir) = identity().await;
        let admin = id.sign_in(None, "admin", "an admin password", None).await.unwrap();
        let caller = id.caller(&admin).await.unwrap();
        let mine = id.store.role_assignments_of(&admin.id).await.unwrap();
        let owner = mine.iter().find(|a| a.role_definition_id.starts_with("8e3af657")).unwrap();
        // The only Owner: its assignment stays, and it can't be disabled.
        let e = id.delete_role_assignment(&caller, &owner.id).await.unwrap_err();
        assert!(matches!(e, AuthError::Conflict(_)), "{e:?}");
        assert!(id.set_enabled(&caller, &admin, false).await.is_err());
        // A second Owner who is disabled doesn't count.
        let other = id.create_user("second-owner", Some("second owner password")).await.unwrap();
        for role in ["Owner", "Directory Administrator"] {
            let role = find_built_in(role).unwrap();
            id.create_role_assignment(
                &caller,
                &RoleAssignmentRecord {
                    id: secret::guid(),
                    scope: "/".into(),
                    role_definition_id: role.id.clone(),
                    principal_id: other.principal.id.clone(),
                    principal_type: "User".into(),
                    condition: None,
                    description: None,
                    created_at: 0,
                },
            )
            .await
            .unwrap();
        }
        id.set_enabled(&caller, &other.principal, false).await.unwrap();
        assert!(id.delete_role_assignment(&caller, &owner.id).await.is_err());
        // Enabled again, it does.
        id.set_enabled(&caller, &other.principal, true).await.unwrap();
        assert!(id.delete_role_assignment(&caller, &owner.id).await.unwrap().is_some());
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
