//! Identity and access control for wharf: who is calling (principals, their secrets, the
//! tokens the identity provider and the registries issue) and what they may do (roles,
//! role assignments with ABAC conditions, registry scopes).
//!
//! - [`Identity`]: the identity provider (tenants, users, service principals, signing in,
//!   tokens, role definitions and assignments).
//! - [`Caller`]: an authenticated request's subject and grants; permission checks on it are
//!   pure functions of (grants, action, scope).
//! - [`registry_credentials`]: a registry's admin user, tokens and scope maps.
//! - [`roles`], [`conditions`], [`scope`], [`actions`]: the vocabulary.
//!
//! Architecture invariants: this crate knows nothing of HTTP; secrets are stored only as
//! argon2id hashes and never logged or returned after creation (the registry admin user's
//! passwords are also kept sealed, for `listCredentials`); tokens are ES256 only.

pub mod actions;
mod caller;
pub mod claims;
mod common;
pub mod conditions;
mod directory;
mod error;
mod glob;
mod keys;
mod limiter;
mod rbac;
pub mod registry_credentials;
pub mod roles;
pub mod scope;
mod scope_map;
mod sealer;
pub mod secret;
mod service;
mod signin;
mod tokens;

pub use actions::RepoOp;
pub use caller::{
    Caller, Grant, PrincipalKind, RegistryPolicy, Subject, covers, is_resource_scope,
    normalize_scope,
};
pub use error::AuthError;
pub use keys::KeyRing;
pub use service::{
    ADMIN_USER, Bootstrap, DEFAULT_AUDIENCES, DEFAULT_MAX_FAILURES, Identity, IdentitySettings,
    NewSecret, RoleBody,
};
pub use tokens::{NULL_GUID, RegistryCredential, Surface, registry_issuer};
