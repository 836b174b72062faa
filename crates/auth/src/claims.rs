//! What wharf's tokens say.

use serde::{Deserialize, Serialize};
use wharf_storage::RegistryId;

use crate::scope::Access;

/// An access token of the identity provider, shaped like Microsoft Entra ID's v2.0 tokens
/// (the claims Azure SDKs and ARM clients read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Tenant id.
    pub tid: String,
    /// The principal's object id.
    pub oid: String,
    pub sub: String,
    /// The client (application) id that asked for the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// `app` for a service principal, `user` for a user.
    pub idtyp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    pub ver: String,
    /// A unique id of the token.
    pub uti: String,
    /// wharf's own: the principal's token generation when the token was issued; the token
    /// stops working when it moves (a secret reset, a revocation). Tokens issued before
    /// this claim existed read as generation 0.
    #[serde(default)]
    pub wharf_gen: i64,
}

/// A registry's refresh or access token, shaped like ACR's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryClaims {
    /// `wharf` with the registry's login server.
    pub iss: String,
    /// The login server.
    pub aud: String,
    /// A principal's object id, or `registry:<name>` for a registry credential.
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// `refresh_token` or `access_token`.
    pub grant_type: String,
    /// The registry (wharf's number for it).
    pub rid: RegistryId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What an access token grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<Access>,
    /// wharf's own: for a principal, its token generation at issue (see
    /// [`IdentityClaims::wharf_gen`]).
    #[serde(default)]
    pub wharf_gen: i64,
    /// wharf's own: for a registry credential, its kind (`admin`, `token`); the token
    /// stops working when that credential is disabled or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wharf_cred: Option<String>,
}
