//! The directory: users and service principals, and their secrets.

use wharf_storage::{CredentialRecord, PrincipalRecord};

use crate::caller::{Caller, PrincipalKind};
use crate::common::now_ms;
use crate::service::{ADMIN_USER, Identity, NewSecret};
use crate::{AuthError, secret};

/// The shortest password a user may be given.
const MIN_PASSWORD: usize = 12;

impl Identity {
    pub(crate) async fn create_user_with(
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
            token_generation: 0,
        };
        if !self.store.create_principal(&p).await? {
            return Err(AuthError::Conflict(format!("A user named '{name}' already exists.")));
        }
        self.store
            .add_credential(&self.credential(&p.id, password, "password", None).await?)
            .await?;
        Ok(p)
    }

    async fn credential(
        &self,
        principal: &str,
        secret_text: &str,
        display_name: &str,
        expires_at: Option<i64>,
    ) -> Result<CredentialRecord, AuthError> {
        Ok(CredentialRecord {
            id: secret::guid(),
            principal: principal.to_owned(),
            hash: self.hash_secret(secret_text).await?,
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
            Some(p) => valid_password(p)?.to_owned(),
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
            token_generation: 0,
        };
        if !self.store.create_principal(&p).await? {
            return Err(AuthError::Conflict(format!(
                "A service principal named '{display_name}' already exists."
            )));
        }
        let secret_text = secret::generate(40);
        let expires = expiry(years);
        self.store
            .add_credential(&self.credential(&p.id, &secret_text, "rbac", expires).await?)
            .await?;
        Ok(NewSecret { principal: p, secret: secret_text, expires_at: expires })
    }

    /// Replace a principal's secrets with a new one (valid for `years`; users' passwords
    /// don't expire), for a caller allowed to manage it ([`check_may_manage`]). Every
    /// token issued to it before stops working, on every node.
    ///
    /// [`check_may_manage`]: Self::check_may_manage
    pub async fn reset_secret(
        &self,
        caller: &Caller,
        principal: &str,
        years: u32,
    ) -> Result<NewSecret, AuthError> {
        let p = self.principal(principal).await?;
        self.check_may_manage(caller, &p).await?;
        let user = p.kind == PrincipalKind::User.as_str();
        let secret_text = secret::generate(if user { 24 } else { 40 });
        let expires = if user { None } else { expiry(years) };
        self.replace_secret(&p, &secret_text, "reset", expires).await?;
        Ok(NewSecret { principal: p, secret: secret_text, expires_at: expires })
    }

    /// Set a user's password (an administrator's reset: Graph's `passwordProfile`).
    pub async fn set_password(
        &self,
        caller: &Caller,
        user: &PrincipalRecord,
        password: &str,
    ) -> Result<(), AuthError> {
        valid_password(password)?;
        self.check_may_manage(caller, user).await?;
        if user.kind != PrincipalKind::User.as_str() {
            return Err(AuthError::BadRequest("Only users have passwords.".into()));
        }
        self.replace_secret(user, password, "password", None).await
    }

    /// A user changes their own password, proving the current one (counted as a sign-in).
    pub async fn change_password(
        &self,
        user: &PrincipalRecord,
        current: &str,
        new: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<(), AuthError> {
        valid_password(new)?;
        if user.kind != PrincipalKind::User.as_str() {
            return Err(AuthError::BadRequest("Only users have passwords.".into()));
        }
        let checked = self.sign_in(Some(&user.tenant), &user.name, current, client).await?;
        if !checked.id.eq_ignore_ascii_case(&user.id) {
            return Err(AuthError::InvalidCredentials);
        }
        self.replace_secret(user, new, "password", None).await
    }

    /// Replace every secret of `p` with one, and forget every copy of the old ones this
    /// node remembers (other nodes do when the access version moves).
    async fn replace_secret(
        &self,
        p: &PrincipalRecord,
        secret_text: &str,
        display_name: &str,
        expires: Option<i64>,
    ) -> Result<(), AuthError> {
        let c = self.credential(&p.id, secret_text, display_name, expires).await?;
        self.store.replace_credentials(&c).await?;
        self.forget_principal(&p.id);
        Ok(())
    }

    /// Enable or disable a principal (Graph's `accountEnabled`). Disabling ends every token
    /// it holds; re-enabling doesn't bring them back. The last Owner of `/` stays enabled.
    pub async fn set_enabled(
        &self,
        caller: &Caller,
        principal: &PrincipalRecord,
        enabled: bool,
    ) -> Result<(), AuthError> {
        self.check_may_manage(caller, principal).await?;
        let hold = match enabled {
            false => Some(self.keep_a_keeper(&principal.id, None, "be disabled").await?),
            true => None,
        };
        self.store.update_principal(&principal.id, Some(enabled), !enabled).await?;
        drop(hold);
        self.forget_principal(&principal.id);
        Ok(())
    }

    /// End every token issued to a principal so far (Graph's `revokeSignInSessions`).
    pub async fn revoke_tokens(
        &self,
        caller: &Caller,
        principal: &PrincipalRecord,
    ) -> Result<(), AuthError> {
        self.check_may_manage(caller, principal).await?;
        self.store.update_principal(&principal.id, None, true).await?;
        self.forget_principal(&principal.id);
        Ok(())
    }

    /// Add a secret to a service principal, keeping its others (valid for `years`).
    pub async fn add_secret(
        &self,
        caller: &Caller,
        principal: &str,
        display_name: &str,
        years: u32,
    ) -> Result<(NewSecret, CredentialRecord), AuthError> {
        let p = self.principal(principal).await?;
        self.check_may_manage(caller, &p).await?;
        if p.kind != PrincipalKind::ServicePrincipal.as_str() {
            return Err(AuthError::BadRequest(
                "Only service principals have client secrets.".into(),
            ));
        }
        let secret_text = secret::generate(40);
        let expires = expiry(years);
        let c = self.credential(&p.id, &secret_text, display_name, expires).await?;
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

    /// Delete a principal, its secrets and its role assignments, for a caller allowed to
    /// manage it. The `admin` user and the last enabled Owner of `/` can't be deleted.
    pub async fn delete_principal(&self, caller: &Caller, id: &str) -> Result<(), AuthError> {
        let p = self.principal(id).await?;
        if p.name.eq_ignore_ascii_case(ADMIN_USER) && p.kind == PrincipalKind::User.as_str() {
            return Err(AuthError::Conflict("The admin user can't be deleted.".into()));
        }
        self.check_may_manage(caller, &p).await?;
        let hold = self.keep_a_keeper(&p.id, None, "be deleted").await?;
        self.store.delete_principal(&p.id).await?;
        drop(hold);
        self.forget_principal(&p.id);
        Ok(())
    }
}

/// A password a user may be given: 12 to 256 characters.
fn valid_password(p: &str) -> Result<&str, AuthError> {
    if p.chars().count() < MIN_PASSWORD || p.len() > 256 {
        return Err(AuthError::BadRequest(format!(
            "The password must be {MIN_PASSWORD} to 256 characters long."
        )));
    }
    Ok(p)
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
