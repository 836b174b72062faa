//! Credentials that belong to one registry rather than to a principal, as ACR has them: the
//! registry's **admin user** (user name = the registry's name, two passwords, full push and
//! pull on that registry, off unless `adminUserEnabled`) and its **repository-scoped tokens**
//! (a name, two passwords with optional expiry, enabled or disabled, and one scope map: the
//! repository actions the token may do, `samples/*`-style wildcards allowed).
//!
//! Token passwords are shown once, when generated, and stored as argon2id hashes. The admin
//! user's are also kept sealed (ChaCha20-Poly1305 under the server's sealing key), because
//! ACR's `listCredentials` shows them again — scripts read them from there.

use std::net::IpAddr;

use wharf_storage::{RegistryId, RegistryTokenRecord, ScopeMapRecord, TokenPasswordRecord};

use crate::AuthError;
use crate::caller::{Caller, RegistryPolicy};
use crate::common::now_ms;
pub use crate::scope_map::{ADMIN, RegistryGrant, ScopeRule, TOKEN, system_scope_maps};
pub use crate::sealer::Sealer;
use crate::secret;
use crate::service::{Identity, Issuer};

/// The admin user's password slots, as ACR names them.
pub const ADMIN_SLOTS: [&str; 2] = ["password", "password2"];
/// A token's password slots.
pub const TOKEN_SLOTS: [&str; 2] = ["password1", "password2"];

/// A password of a registry credential, as `listCredentials` / `generateCredentials` show it.
#[derive(Clone, Debug)]
pub struct ShownPassword {
    pub name: String,
    /// The secret itself: only in the answer that creates it (and, for the admin user, in
    /// `listCredentials`).
    pub value: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A scope map as the API shows it.
#[derive(Clone, Debug)]
pub struct ScopeMapView {
    pub name: String,
    pub description: Option<String>,
    pub actions: Vec<String>,
    /// One of the registry's built-in maps (`_repositories_pull`…): read-only.
    pub system: bool,
    pub created_at: i64,
}

/// A token as the API shows it (passwords without their values).
#[derive(Clone, Debug)]
pub struct TokenView {
    pub name: String,
    pub scope_map: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub passwords: Vec<ShownPassword>,
}

/// Scope map and token names: ACR's rule (5–50 letters, digits and `-`; scope maps may
/// not start with `_`, which is for the system ones).
fn valid_name(kind: &str, name: &str) -> Result<(), AuthError> {
    // The null GUID is the user name of refresh-token sign-ins.
    let ok = (5..=50).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && name != crate::NULL_GUID;
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadRequest(format!(
            "The {kind} name '{name}' is invalid: use 5 to 50 letters, digits and hyphens."
        )))
    }
}

fn shown(p: &TokenPasswordRecord, value: Option<String>) -> ShownPassword {
    ShownPassword {
        name: p.slot.clone(),
        value,
        created_at: p.created_at,
        expires_at: p.expires_at,
    }
}

impl Identity {
    /// The admin user's passwords of a registry, made on first use (ACR makes them when the
    /// admin user is enabled). Only `listCredentials` asks; the caller checks the registry
    /// has its admin user enabled.
    pub async fn admin_credentials(
        &self,
        registry: &RegistryPolicy,
    ) -> Result<Vec<ShownPassword>, AuthError> {
        self.ensure_admin(registry).await?;
        let stored = self.store.token_passwords(registry.id, ADMIN, &registry.name).await?;
        let mut out = Vec::new();
        for slot in ADMIN_SLOTS {
            let p = match stored.iter().find(|p| p.slot == slot) {
                Some(p) => p.clone(),
                None => self.set_admin_password(registry, slot).await?.0,
            };
            let sealed = p.sealed.as_deref().ok_or_else(|| {
                AuthError::Internal("an admin password was stored without its sealed copy".into())
            })?;
            // A password sealed under another key (the key file was replaced) can't be
            // shown: make a new one rather than fail forever.
            let value = match self.sealer.open(&seal_context(registry.id, slot), sealed) {
                Ok(v) => v,
                Err(_) => self.set_admin_password(registry, slot).await?.1,
            };
            out.push(shown(&p, Some(value)));
        }
        Ok(out)
    }

    /// Whether this server's sealing key opens the admin passwords already stored: a node
    /// of a cluster given another key than the others must not start (it would make new
    /// passwords for the registries whose it can't open, behind everyone's back).
    pub async fn check_sealing_key(&self) -> Result<(), AuthError> {
        let Some(p) = self.store.a_sealed_password().await? else { return Ok(()) };
        let sealed = p.sealed.as_deref().unwrap_or_default();
        self.sealer.open(&seal_context(p.registry_id, &p.slot), sealed).map(|_| ()).map_err(|_| {
            AuthError::Conflict(
                "the sealing key can't open the registries' admin passwords stored in the database: every node must be given the same key (auth.sealing_key_file)".into(),
            )
        })
    }

    /// A new password in one of the admin user's slots (`password` or `password2`); the
    /// credentials as `listCredentials` shows them afterwards.
    pub async fn regenerate_admin_password(
        &self,
        registry: &RegistryPolicy,
        slot: &str,
    ) -> Result<Vec<ShownPassword>, AuthError> {
        if !ADMIN_SLOTS.contains(&slot) {
            return Err(AuthError::BadRequest(format!(
                "The password name '{slot}' is invalid: use 'password' or 'password2'."
            )));
        }
        self.ensure_admin(registry).await?;
        self.set_admin_password(registry, slot).await?;
        self.admin_credentials(registry).await
    }

    async fn ensure_admin(&self, registry: &RegistryPolicy) -> Result<(), AuthError> {
        if self.store.registry_token(registry.id, ADMIN, &registry.name).await?.is_none() {
            self.store
                .put_registry_token(&RegistryTokenRecord {
                    registry_id: registry.id,
                    kind: ADMIN.into(),
                    name: registry.name.clone(),
                    scope_map: None,
                    enabled: true,
                    created_at: now_ms(),
                })
                .await?;
        }
        Ok(())
    }

    async fn set_admin_password(
        &self,
        registry: &RegistryPolicy,
        slot: &str,
    ) -> Result<(TokenPasswordRecord, String), AuthError> {
        let value = secret::generate(32);
        let record = TokenPasswordRecord {
            registry_id: registry.id,
            kind: ADMIN.into(),
            token: registry.name.clone(),
            slot: slot.into(),
            hash: self.hash_secret(&value).await?,
            sealed: Some(self.sealer.seal(&seal_context(registry.id, slot), &value)?),
            expires_at: None,
            created_at: now_ms(),
        };
        self.store.put_token_password(&record).await?;
        self.forget_registry_secrets();
        Ok((record, value))
    }

    /// After any change to a registry credential: nothing checked before it is remembered,
    /// including a check still running (it sees the generation move and doesn't cache).
    pub(crate) fn forget_registry_secrets(&self) {
        self.forget_secrets();
        self.forget_issuers();
    }

    /// Whether a registry credential exists and is enabled (what its access tokens are
    /// checked against on every request; remembered like a principal).
    pub(crate) async fn registry_credential_enabled(
        &self,
        registry: RegistryId,
        kind: &str,
        name: &str,
    ) -> Result<bool, AuthError> {
        let key = format!("credential/{registry}/{kind}/{}", name.to_ascii_lowercase());
        let found = self
            .remembered(key, || async {
                let record = self.store.registry_token(registry, kind, name).await?;
                Ok(record.map(|t| Issuer::Credential { enabled: t.enabled }))
            })
            .await?;
        Ok(matches!(found, Some(Issuer::Credential { enabled: true })))
    }

    // --- scope maps ----------------------------------------------------------------

    /// Every scope map of a registry: the system ones, then the registry's own.
    pub async fn scope_maps(&self, registry: RegistryId) -> Result<Vec<ScopeMapView>, AuthError> {
        let mut out: Vec<ScopeMapView> = system_scope_maps()
            .into_iter()
            .map(|(name, description, actions)| ScopeMapView {
                name: name.into(),
                description: Some(description.into()),
                actions,
                system: true,
                created_at: 0,
            })
            .collect();
        out.extend(self.store.scope_maps(registry).await?.into_iter().map(user_map));
        Ok(out)
    }

    pub async fn scope_map(
        &self,
        registry: RegistryId,
        name: &str,
    ) -> Result<Option<ScopeMapView>, AuthError> {
        if name.starts_with('_') {
            return Ok(self
                .scope_maps(registry)
                .await?
                .into_iter()
                .find(|m| m.system && m.name.eq_ignore_ascii_case(name)));
        }
        Ok(self.store.scope_map(registry, name).await?.map(user_map))
    }

    /// Create or replace a scope map; whether it was created.
    pub async fn put_scope_map(
        &self,
        registry: RegistryId,
        name: &str,
        description: Option<String>,
        actions: Vec<String>,
    ) -> Result<(ScopeMapView, bool), AuthError> {
        if name.starts_with('_') {
            return Err(AuthError::BadRequest(format!(
                "The scope map '{name}' is a system scope map and can't be changed."
            )));
        }
        valid_name("scope map", name)?;
        if actions.is_empty() {
            return Err(AuthError::BadRequest("A scope map needs at least one action.".into()));
        }
        for a in &actions {
            ScopeRule::parse(a)?;
        }
        let existing = self.store.scope_map(registry, name).await?;
        let record = ScopeMapRecord {
            registry_id: registry,
            name: existing.as_ref().map_or_else(|| name.to_owned(), |m| m.name.clone()),
            description,
            actions,
            created_at: existing.as_ref().map_or_else(now_ms, |m| m.created_at),
        };
        self.store.put_scope_map(&record).await?;
        Ok((user_map(record), existing.is_none()))
    }

    /// Delete a scope map no token uses; `false` if there was none.
    pub async fn delete_scope_map(
        &self,
        registry: RegistryId,
        name: &str,
    ) -> Result<bool, AuthError> {
        if name.starts_with('_') {
            return Err(AuthError::BadRequest(format!(
                "The scope map '{name}' is a system scope map and can't be deleted."
            )));
        }
        let users: Vec<String> = self
            .store
            .registry_tokens(registry, TOKEN)
            .await?
            .into_iter()
            .filter(|t| t.scope_map.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(name)))
            .map(|t| t.name)
            .collect();
        if !users.is_empty() {
            return Err(AuthError::Conflict(format!(
                "The scope map '{name}' is used by the tokens {}: delete or change them first.",
                users.join(", ")
            )));
        }
        Ok(self.store.delete_scope_map(registry, name).await?)
    }

    // --- tokens --------------------------------------------------------------------

    pub async fn tokens(&self, registry: RegistryId) -> Result<Vec<TokenView>, AuthError> {
        let mut out = Vec::new();
        for t in self.store.registry_tokens(registry, TOKEN).await? {
            out.push(self.token_view(t).await?);
        }
        Ok(out)
    }

    pub async fn token(
        &self,
        registry: RegistryId,
        name: &str,
    ) -> Result<Option<TokenView>, AuthError> {
        match self.store.registry_token(registry, TOKEN, name).await? {
            Some(t) => Ok(Some(self.token_view(t).await?)),
            None => Ok(None),
        }
    }

    async fn token_view(&self, t: RegistryTokenRecord) -> Result<TokenView, AuthError> {
        let passwords = self
            .store
            .token_passwords(t.registry_id, TOKEN, &t.name)
            .await?
            .iter()
            .map(|p| shown(p, None))
            .collect();
        Ok(TokenView {
            name: t.name,
            scope_map: t.scope_map,
            enabled: t.enabled,
            created_at: t.created_at,
            passwords,
        })
    }

    /// Create or update a token: its scope map (which must exist) and status. Whether it
    /// was created.
    pub async fn put_token(
        &self,
        registry: RegistryId,
        name: &str,
        scope_map: Option<&str>,
        enabled: bool,
    ) -> Result<(TokenView, bool), AuthError> {
        valid_name("token", name)?;
        let map = match scope_map {
            Some(m) => Some(
                self.scope_map(registry, m)
                    .await?
                    .ok_or_else(|| {
                        AuthError::BadRequest(format!("The scope map '{m}' doesn't exist."))
                    })?
                    .name,
            ),
            None => None,
        };
        let existing = self.store.registry_token(registry, TOKEN, name).await?;
        let record = RegistryTokenRecord {
            registry_id: registry,
            kind: TOKEN.into(),
            name: existing.as_ref().map_or_else(|| name.to_owned(), |t| t.name.clone()),
            scope_map: map,
            enabled,
            created_at: existing.as_ref().map_or_else(now_ms, |t| t.created_at),
        };
        self.store.put_registry_token(&record).await?;
        self.forget_registry_secrets();
        Ok((self.token_view(record).await?, existing.is_none()))
    }

    pub async fn delete_token(&self, registry: RegistryId, name: &str) -> Result<bool, AuthError> {
        let done = self.store.delete_registry_token(registry, TOKEN, name).await?;
        self.forget_registry_secrets();
        Ok(done)
    }

    /// A new password in one of a token's slots (`password1`, `password2`), shown once.
    pub async fn generate_token_password(
        &self,
        registry: RegistryId,
        name: &str,
        slot: &str,
        expires_at: Option<i64>,
    ) -> Result<ShownPassword, AuthError> {
        if !TOKEN_SLOTS.contains(&slot) {
            return Err(AuthError::BadRequest(format!(
                "The password name '{slot}' is invalid: use 'password1' or 'password2'."
            )));
        }
        if expires_at.is_some_and(|e| e <= now_ms()) {
            return Err(AuthError::BadRequest("The expiry must be in the future.".into()));
        }
        let token = self
            .store
            .registry_token(registry, TOKEN, name)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("The token '{name}' doesn't exist.")))?;
        let value = secret::generate(32);
        let record = TokenPasswordRecord {
            registry_id: registry,
            kind: TOKEN.into(),
            token: token.name,
            slot: slot.into(),
            hash: self.hash_secret(&value).await?,
            sealed: None,
            expires_at,
            created_at: now_ms(),
        };
        self.store.put_token_password(&record).await?;
        self.forget_registry_secrets();
        Ok(shown(&record, Some(value)))
    }

    // --- signing in ----------------------------------------------------------------

    /// The caller behind `Basic` credentials that name one of the registry's own
    /// credentials — its admin user (when enabled) or an enabled token — with a password that
    /// matches (not expired); `None` when the name is no such credential (it may be a
    /// principal's). A wrong password for one is refused here, and counted against that
    /// credential of that registry (and the address) only: nobody can lock another
    /// registry's admin user or tokens out by failing with their names elsewhere.
    pub(crate) async fn registry_credential_caller(
        &self,
        registry: &RegistryPolicy,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Option<Caller>, AuthError> {
        if username == crate::NULL_GUID {
            return Ok(None);
        }
        let (kind, record) = if registry.admin_user && username.eq_ignore_ascii_case(&registry.name)
        {
            (ADMIN, self.store.registry_token(registry.id, ADMIN, &registry.name).await?)
        } else {
            (TOKEN, self.store.registry_token(registry.id, TOKEN, username).await?)
        };
        let Some(record) = record.filter(|t| t.enabled) else { return Ok(None) };
        // Counted as this registry's credential, not as the (public) name; `/` can't be in a
        // principal's name, so the key is nobody else's.
        let credential = format!("registry/{}/{kind}/{}", registry.id, record.name);
        if !self.check_registry_password(&record, password, &credential, client).await? {
            return Err(AuthError::InvalidCredentials);
        }
        let grant = if kind == ADMIN {
            RegistryGrant::Admin
        } else {
            let actions = match &record.scope_map {
                Some(m) => self.scope_map(registry.id, m).await?.map(|m| m.actions),
                None => None,
            };
            let rules = actions
                .unwrap_or_default()
                .iter()
                .filter_map(|a| ScopeRule::parse(a).ok())
                .collect();
            RegistryGrant::Rules(rules)
        };
        Ok(Some(Caller::registry_credential(registry.id, &record.name, grant)))
    }

    /// As a principal's secret is checked ([`Identity::verify_secret`]), counted on the
    /// limiter under `credential`, this registry's own name for it.
    async fn check_registry_password(
        &self,
        record: &RegistryTokenRecord,
        password: &str,
        credential: &str,
        client: Option<IpAddr>,
    ) -> Result<bool, AuthError> {
        let name = record.name.to_ascii_lowercase();
        let key = crate::signin::verified_key(&[
            b"registry credential",
            &record.registry_id.0.to_be_bytes(),
            record.kind.as_bytes(),
            name.as_bytes(),
            password.as_bytes(),
        ]);
        let (registry, kind, name) = (record.registry_id, &record.kind, &record.name);
        let load = || async move {
            let stored = self.store.token_passwords(registry, kind, name).await?;
            Ok(stored.into_iter().map(|p| (p.hash, p.expires_at)).collect())
        };
        self.verify_secret(key, credential, client, password, load).await
    }
}

fn seal_context(registry: RegistryId, slot: &str) -> String {
    format!("wharf admin password/{registry}/{slot}")
}

fn user_map(m: ScopeMapRecord) -> ScopeMapView {
    ScopeMapView {
        name: m.name,
        description: m.description,
        actions: m.actions,
        system: false,
        created_at: m.created_at,
    }
}
