//! Identity and access control for wharf: who is calling (principals, their secrets, the
//! tokens the identity provider and the registries issue) and what they may do (roles,
//! role assignments with ABAC conditions, registry scopes).
//!
//! Architecture invariants: this crate knows nothing of HTTP; secrets are only ever stored
//! as argon2id hashes and never logged or returned after creation; every permission
//! decision is a pure function of a caller's grants, an action and a scope.

pub mod actions;
pub mod conditions;
pub mod roles;
pub mod secret;
