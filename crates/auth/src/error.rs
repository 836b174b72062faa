/// Why an authentication or a permission check failed. The HTTP layer turns each into the
/// protocol's answer (ARM's 401/403 envelope, OAuth2's error, the registry's challenge).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials where some are needed.
    #[error("authentication required")]
    Unauthenticated,
    /// Credentials that don't check out (unknown principal, wrong or expired secret). The
    /// message never says which.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A token that doesn't verify (signature, expiry, audience, issuer…).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// Too many failed attempts from this address or for this principal: retry later.
    #[error("too many failed sign-in attempts; retry in {0} s")]
    Throttled(u64),
    /// An authenticated caller without the permission.
    #[error("{message}")]
    Denied { message: String },
    /// A request that can't be served (a bad parameter, an unknown resource).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<wharf_storage::StorageError> for AuthError {
    fn from(e: wharf_storage::StorageError) -> Self {
        AuthError::Internal(e.to_string())
    }
}
