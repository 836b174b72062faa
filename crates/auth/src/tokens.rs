//! Tokens: the identity provider's (Entra-shaped) and each registry's (ACR-shaped), and
//! the callers they stand for.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use wharf_storage::PrincipalRecord;

use crate::actions::RepoOp;
use crate::caller::{Caller, PrincipalKind, RegistryPolicy, Subject};
use crate::claims::{IdentityClaims, RegistryClaims};
use crate::common::now_secs;
use crate::scope::Access;
use crate::service::Identity;
use crate::{AuthError, secret};

/// The user name that says "the password is a registry refresh token" (ACR's convention).
pub const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

impl Identity {
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
            wharf_gen: p.token_generation,
        };
        Ok((self.keys().sign(&claims)?, ttl))
    }

    /// Check an identity token meant for one of `audiences`; the principal it names, if
    /// it is still enabled and the token was issued under its current token generation.
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
        self.live_principal(&claims.oid, claims.wharf_gen)
            .await?
            .filter(|p| p.tenant.eq_ignore_ascii_case(&claims.tid))
            .ok_or_else(|| AuthError::InvalidToken("unknown principal".into()))
    }

    /// The principal `id` if it exists, is enabled and a token of `generation` still
    /// stands for it.
    async fn live_principal(
        &self,
        id: &str,
        generation: i64,
    ) -> Result<Option<PrincipalRecord>, AuthError> {
        Ok(self
            .current_principal(id)
            .await?
            .filter(|p| p.enabled && p.token_generation == generation))
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

    /// The audiences a surface accepts, each spelled with and without its final `/`: a
    /// token meant for one surface is no key to another.
    fn accepted_audiences(&self, surface: Surface) -> Vec<String> {
        let mut out = Vec::new();
        for a in self.settings.audiences.iter().filter(|a| surface.accepts(a)) {
            let bare = a.trim_end_matches('/');
            out.push(bare.to_owned());
            out.push(format!("{bare}/"));
        }
        out
    }

    /// The caller an identity token presented to `surface` is.
    pub async fn caller_from_identity_token(
        &self,
        token: &str,
        surface: Surface,
    ) -> Result<Caller, AuthError> {
        if !self.enforced() {
            return Ok(Caller::unrestricted());
        }
        let p = self.principal_from_identity_token(token, surface).await?;
        self.caller(&p).await
    }

    /// The principal an identity token presented to `surface` names.
    pub async fn principal_from_identity_token(
        &self,
        token: &str,
        surface: Surface,
    ) -> Result<PrincipalRecord, AuthError> {
        let audiences = self.accepted_audiences(surface);
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
                if !self.access_token_stands(&claims, registry).await? {
                    return Err(AuthError::InvalidToken("the token was revoked".into()));
                }
                let subject = Subject::Principal {
                    id: claims.sub.clone(),
                    tenant: claims.tenant.clone().unwrap_or_default(),
                    kind: PrincipalKind::User,
                    name: claims.sub,
                    generation: claims.wharf_gen,
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
                return self
                    .live_principal(&claims.sub, claims.wharf_gen)
                    .await?
                    .ok_or_else(|| AuthError::InvalidToken("unknown principal".into()));
            }
            if looks_like_jwt(password) {
                return self.principal_from_identity_token(password, Surface::Registry).await;
            }
            return Err(AuthError::InvalidCredentials);
        }
        self.sign_in(None, username, password, client).await
    }

    /// Whether what issued a registry access token still stands: the principal enabled
    /// and at the same token generation, or the registry credential enabled (and, for the
    /// admin user, still allowed).
    async fn access_token_stands(
        &self,
        claims: &RegistryClaims,
        registry: &RegistryPolicy,
    ) -> Result<bool, AuthError> {
        match claims.wharf_cred.as_deref() {
            Some(kind) => {
                if kind == crate::registry_credentials::ADMIN && !registry.admin_user {
                    return Ok(false);
                }
                self.registry_credential_enabled(registry.id, kind, &claims.sub).await
            }
            None if claims.tenant.is_none() => Ok(claims.sub == ANONYMOUS),
            None => Ok(self.live_principal(&claims.sub, claims.wharf_gen).await?.is_some()),
        }
    }

    /// A registry refresh token for a principal (what `/oauth2/exchange` answers).
    pub fn issue_registry_refresh_token(
        &self,
        p: &PrincipalRecord,
        registry: &RegistryPolicy,
        login_server: &str,
    ) -> Result<String, AuthError> {
        let issued = Issued {
            sub: &p.id,
            tenant: Some(&p.tenant),
            generation: p.token_generation,
            cred: None,
        };
        self.registry_token(issued, registry, login_server, REFRESH_TOKEN, Vec::new())
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
        let issued = match &caller.subject {
            Subject::Principal { id, tenant, generation, .. } => Issued {
                sub: id,
                tenant: Some(tenant.as_str()).filter(|t| !t.is_empty()),
                generation: *generation,
                cred: None,
            },
            Subject::RegistryCredential { name, kind, .. } => {
                Issued { sub: name, tenant: None, generation: 0, cred: Some(kind) }
            }
            Subject::Anonymous => {
                Issued { sub: ANONYMOUS, tenant: None, generation: 0, cred: None }
            }
        };
        let (token, _) =
            self.registry_token(issued, registry, login_server, ACCESS_TOKEN, granted.clone())?;
        Ok((token, granted))
    }

    fn registry_token(
        &self,
        issued: Issued<'_>,
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
            sub: issued.sub.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            jti: secret::guid(),
            grant_type: grant_type.to_owned(),
            rid: registry.id,
            tenant: issued.tenant.map(str::to_owned),
            access,
            wharf_gen: issued.generation,
            wharf_cred: issued.cred.map(str::to_owned),
        };
        Ok((self.sign_registry_token(&claims)?, ttl))
    }

    /// How long registry access tokens live (the token endpoint's `expires_in`).
    pub fn registry_access_ttl(&self) -> Duration {
        self.settings.registry_access_ttl
    }
}

/// Who a registry token is issued to.
struct Issued<'a> {
    sub: &'a str,
    tenant: Option<&'a str>,
    /// A principal's token generation.
    generation: i64,
    /// A registry credential's kind.
    cred: Option<&'a str>,
}

/// The `sub` of a registry access token for nobody in particular (anonymous pull).
const ANONYMOUS: &str = "anonymous";

/// The surfaces identity tokens are presented to, each accepting only its own audiences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// The management API (ARM): its audiences, and the server's own base URL.
    Management,
    /// A registry's data plane and token exchange: ACR's audience, and ARM's (which
    /// `az acr login` exchanges).
    Registry,
    /// The directory (Microsoft Graph's audience).
    Directory,
}

/// ACR's data-plane audience.
const REGISTRY_AUDIENCE: &str = "https://containerregistry.azure.net";
/// Microsoft Graph's.
const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";

impl Surface {
    fn accepts(self, audience: &str) -> bool {
        let bare = audience.trim_end_matches('/');
        let registry = bare.eq_ignore_ascii_case(REGISTRY_AUDIENCE);
        let graph = bare.eq_ignore_ascii_case(GRAPH_AUDIENCE);
        match self {
            Surface::Management => !registry && !graph,
            Surface::Registry => !graph,
            Surface::Directory => graph,
        }
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
