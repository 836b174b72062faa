//! The identity store's records and trait: tenants, principals (users and service
//! principals), their hashed secrets, custom role definitions, role assignments and the
//! token-signing keys. Storage only: hashing, checking and signing live in `wharf-auth`.

use async_trait::async_trait;

use crate::StorageError;
use crate::meta::RegistryId;

/// A directory of principals (Entra ID's tenant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A user or a service principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalRecord {
    /// The object id (`oid`), a GUID.
    pub id: String,
    pub tenant: String,
    /// `User` or `ServicePrincipal`.
    pub kind: String,
    /// A user's sign-in name, or a service principal's display name.
    pub name: String,
    /// A service principal's application (client) id.
    pub app_id: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    /// Moves when every token issued to the principal so far must stop working (a secret
    /// reset, a password change, `revoke_tokens`); tokens carry the value they were issued
    /// under. A counter rather than a time, so that nodes' clocks never matter.
    pub token_generation: i64,
}

/// A hashed secret of a principal (a user's password, a service principal's client secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRecord {
    pub id: String,
    pub principal: String,
    /// The PHC string of an argon2id hash; never the secret.
    pub hash: String,
    /// The first characters of the secret, as Entra shows a `hint`.
    pub hint: String,
    pub display_name: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

/// A custom role definition (built-in ones live in code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleDefinitionRecord {
    pub id: String,
    pub name: String,
    /// `description`, `permissions` and `assignableScopes`, as JSON.
    pub body: String,
    pub created_at: i64,
}

/// A role given to a principal at a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignmentRecord {
    /// The assignment's name (a GUID).
    pub id: String,
    /// A resource ID, `/` for everything.
    pub scope: String,
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: String,
    /// An ABAC condition (version 2.0), if any.
    pub condition: Option<String>,
    pub description: Option<String>,
    pub created_at: i64,
}

/// A key that signs tokens; retired keys still verify until they are removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// The private key, PKCS#8 DER.
    pub pkcs8: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A scope map of a registry: the repository actions a token gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeMapRecord {
    pub registry_id: RegistryId,
    pub name: String,
    pub description: Option<String>,
    /// `repositories/<repo>/<content|metadata>/<read|write|delete>`, checked by `wharf-auth`.
    pub actions: Vec<String>,
    pub created_at: i64,
}

/// A credential of one registry: its admin user (`kind` `admin`, named like the registry)
/// or a repository-scoped token (`kind` `token`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryTokenRecord {
    pub registry_id: RegistryId,
    pub kind: String,
    pub name: String,
    pub scope_map: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
}

/// One of a registry credential's two passwords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPasswordRecord {
    pub registry_id: RegistryId,
    pub kind: String,
    pub token: String,
    /// `password1`/`password2` (tokens), `password`/`password2` (the admin user).
    pub slot: String,
    /// argon2id PHC string.
    pub hash: String,
    /// The admin user's password encrypted under the server's sealing key; `None` for tokens
    /// (their passwords are shown once).
    pub sealed: Option<Vec<u8>>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

/// What the identity provider stores. Every method that writes is one transaction.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn put_tenant(&self, t: &TenantRecord) -> Result<(), StorageError>;
    async fn tenants(&self) -> Result<Vec<TenantRecord>, StorageError>;

    /// Create a principal; `false` if its name (in its tenant) or app id is taken.
    async fn create_principal(&self, p: &PrincipalRecord) -> Result<bool, StorageError>;
    async fn principal(&self, id: &str) -> Result<Option<PrincipalRecord>, StorageError>;
    /// A principal by sign-in name (users) or display name (service principals), or by app id.
    async fn principal_named(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<PrincipalRecord>, StorageError>;
    async fn principal_by_app_id(
        &self,
        app_id: &str,
    ) -> Result<Option<PrincipalRecord>, StorageError>;
    async fn principals(
        &self,
        tenant: &str,
        kind: &str,
    ) -> Result<Vec<PrincipalRecord>, StorageError>;
    /// Delete a principal with its credentials and role assignments; `false` if absent.
    async fn delete_principal(&self, id: &str) -> Result<bool, StorageError>;
    /// Enable or disable a principal (`enabled`), and/or end every token issued to it so
    /// far (`revoke_tokens`: its token generation moves on); `false` if absent.
    async fn update_principal(
        &self,
        id: &str,
        enabled: Option<bool>,
        revoke_tokens: bool,
    ) -> Result<bool, StorageError>;

    async fn add_credential(&self, c: &CredentialRecord) -> Result<(), StorageError>;
    async fn credentials(&self, principal: &str) -> Result<Vec<CredentialRecord>, StorageError>;
    /// Replace every credential of a principal with `c` (a reset); every token issued to
    /// it before stops working (its token generation moves on), in the same transaction.
    async fn replace_credentials(&self, c: &CredentialRecord) -> Result<(), StorageError>;

    async fn put_role_definition(&self, r: &RoleDefinitionRecord) -> Result<bool, StorageError>;
    async fn role_definition(&self, id: &str)
    -> Result<Option<RoleDefinitionRecord>, StorageError>;
    async fn role_definitions(&self) -> Result<Vec<RoleDefinitionRecord>, StorageError>;
    /// `false` if absent, `Err` if assignments use it (the caller checks first).
    async fn delete_role_definition(&self, id: &str) -> Result<bool, StorageError>;

    /// Create an assignment; `false` if one with the same id exists.
    async fn create_role_assignment(&self, a: &RoleAssignmentRecord) -> Result<bool, StorageError>;
    async fn role_assignment(&self, id: &str)
    -> Result<Option<RoleAssignmentRecord>, StorageError>;
    /// Every assignment of a principal (at any scope).
    async fn role_assignments_of(
        &self,
        principal: &str,
    ) -> Result<Vec<RoleAssignmentRecord>, StorageError>;
    /// Every assignment, for listings (filtered by the caller).
    async fn role_assignments(&self) -> Result<Vec<RoleAssignmentRecord>, StorageError>;
    async fn delete_role_assignment(&self, id: &str) -> Result<bool, StorageError>;

    /// Create or replace a scope map.
    async fn put_scope_map(&self, m: &ScopeMapRecord) -> Result<(), StorageError>;
    async fn scope_map(
        &self,
        registry: RegistryId,
        name: &str,
    ) -> Result<Option<ScopeMapRecord>, StorageError>;
    async fn scope_maps(&self, registry: RegistryId) -> Result<Vec<ScopeMapRecord>, StorageError>;
    async fn delete_scope_map(
        &self,
        registry: RegistryId,
        name: &str,
    ) -> Result<bool, StorageError>;

    /// Create or replace a registry credential (its passwords are kept).
    async fn put_registry_token(&self, t: &RegistryTokenRecord) -> Result<(), StorageError>;
    async fn registry_token(
        &self,
        registry: RegistryId,
        kind: &str,
        name: &str,
    ) -> Result<Option<RegistryTokenRecord>, StorageError>;
    async fn registry_tokens(
        &self,
        registry: RegistryId,
        kind: &str,
    ) -> Result<Vec<RegistryTokenRecord>, StorageError>;
    /// Delete a registry credential with its passwords; `false` if absent.
    async fn delete_registry_token(
        &self,
        registry: RegistryId,
        kind: &str,
        name: &str,
    ) -> Result<bool, StorageError>;
    /// Set (create or replace) one password slot of a registry credential.
    async fn put_token_password(&self, p: &TokenPasswordRecord) -> Result<(), StorageError>;
    async fn token_passwords(
        &self,
        registry: RegistryId,
        kind: &str,
        name: &str,
    ) -> Result<Vec<TokenPasswordRecord>, StorageError>;

    /// One stored password that was sealed (any), to check a sealing key against.
    async fn a_sealed_password(&self) -> Result<Option<TokenPasswordRecord>, StorageError>;

    async fn add_signing_key(&self, k: &SigningKeyRecord) -> Result<(), StorageError>;
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StorageError>;
    async fn retire_signing_keys(&self, except: &str, at: i64) -> Result<(), StorageError>;
    /// Delete the keys retired before `before` (ms); how many. Tokens they signed stop
    /// verifying; a key in use (not retired) is never deleted.
    async fn prune_signing_keys(&self, before: i64) -> Result<u64, StorageError>;
}
