use wharf_storage::StorageError;

/// What kind of failure an [`ArmError`] is; the HTTP layer picks the status from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    Conflict,
    Forbidden,
    /// No or invalid credentials (401).
    Unauthenticated,
    MethodNotAllowed,
    /// A limit on concurrent work is reached (429); the client may retry shortly.
    TooManyRequests,
    /// The server can't do it right now (503); the client may retry shortly.
    Unavailable,
    Internal,
}

/// An error as Azure Resource Manager reports it: a code scripts match on, and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ArmError {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
}

impl ArmError {
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        ArmError { kind, code: code.to_owned(), message: message.into(), target: None }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// A body that didn't deserialize.
    pub fn invalid_content(detail: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {detail}"),
        )
    }

    pub fn resource_group_not_found(rg: &str) -> Self {
        Self::not_found(
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        )
    }

    pub fn registry_not_found(rg: &str, name: &str) -> Self {
        Self::not_found(
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.ContainerRegistry/registries/{name}' under resource group '{rg}' was not found."
            ),
        )
    }

    pub fn subscription_not_found(sub: &str) -> Self {
        Self::not_found(
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "management plane failure");
        Self::new(
            ErrorKind::Internal,
            "InternalServerError",
            "The server encountered an internal error; see its log.",
        )
    }
}

impl From<StorageError> for ArmError {
    fn from(e: StorageError) -> Self {
        if e.is_busy() {
            tracing::warn!(error = %e, "storage busy");
            return ArmError::new(
                ErrorKind::Unavailable,
                "ServiceUnavailable",
                "The server is busy; retry shortly.",
            );
        }
        ArmError::internal(e)
    }
}

impl From<wharf_auth::AuthError> for ArmError {
    fn from(e: wharf_auth::AuthError) -> Self {
        use wharf_auth::AuthError::*;
        match e {
            Unauthenticated => ArmError::new(
                ErrorKind::Unauthenticated,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ),
            InvalidCredentials => ArmError::new(
                ErrorKind::Unauthenticated,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ),
            InvalidToken(why) => ArmError::new(
                ErrorKind::Unauthenticated,
                if why == "expired" {
                    "ExpiredAuthenticationToken"
                } else {
                    "InvalidAuthenticationToken"
                },
                format!("The access token is invalid ({why})."),
            ),
            Throttled(secs) => ArmError::new(
                ErrorKind::TooManyRequests,
                "TooManyRequests",
                format!("Too many failed sign-in attempts; retry in {secs} s."),
            ),
            Denied { message } => {
                ArmError::new(ErrorKind::Forbidden, "AuthorizationFailed", message)
            }
            BadRequest(m) => ArmError::bad_request("BadRequest", m),
            NotFound(m) => ArmError::not_found("NotFound", m),
            Conflict(m) => ArmError::conflict("Conflict", m),
            Internal(m) => ArmError::internal(m),
        }
    }
}
