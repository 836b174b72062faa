//! Why an import, or a call on the import service, failed: import's own error type. Each
//! has a stable code (what a failed job records, and what clients match on); the server
//! maps them to ARM's envelope at its edge.

use wharf_management::ArmError;
use wharf_storage::{JobError, StorageError};

/// Why an import failed, each with the code clients see.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The request itself is wrong.
    #[error("{0}")]
    InvalidParameters(String),
    #[error("{0}")]
    SourceImageNotFound(String),
    #[error("{0}")]
    SourceRegistryNotFound(String),
    #[error("{0}")]
    SourceUnauthorized(String),
    #[error("{0}")]
    SourceForbidden(String),
    #[error("{0}")]
    SourceRateLimited(String),
    #[error("{0}")]
    SourceUnreachable(String),
    #[error("{0}")]
    SourceAddressNotAllowed(String),
    #[error("{0}")]
    SourceDigestMismatch(String),
    #[error("{0}")]
    SourceInvalidManifest(String),
    /// A token, manifest or list answer larger than its bound.
    #[error("{0}")]
    SourceResponseTooLarge(String),
    /// The source answered or streamed too slowly (a request timeout, or a download below
    /// the minimum throughput).
    #[error("{0}")]
    SourceTooSlow(String),
    /// The source's referrers point in a loop, or list manifests that don't refer to what
    /// they were listed for.
    #[error("{0}")]
    SourceReferrerLoop(String),
    /// The image is larger than this server's import limits allow (manifests, blobs,
    /// bytes, nesting).
    #[error("{0}")]
    LimitExceeded(String),
    /// The import ran past its deadline.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// `NoForce` and a target tag already points at another manifest.
    #[error("{0}")]
    TagAlreadyExists(String),
    #[error("{0}")]
    Canceled(String),
    /// Another server took the job over (this one lost its lease): it records the outcome.
    #[error("{0}")]
    TakenOver(String),
    #[error("{0}")]
    Internal(String),
    /// The job was interrupted (its server stopped) and can't be resumed.
    #[error("{0}")]
    Interrupted(String),
    /// This server runs or queues as many imports as it may.
    #[error("{0}")]
    TooManyImports(String),
    /// The target registry's network rules close the path imports write through.
    #[error("{0}")]
    NetworkRestricted(String),
    /// The caller may not read the source repository of a registry on this server.
    #[error("{0}")]
    AuthorizationFailed(String),
    #[error("{0}")]
    OperationNotFound(String),
    /// The job has finished.
    #[error("{0}")]
    OperationNotCancelable(String),
    /// The management plane's own error (an unknown target, a busy store), as it came.
    #[error("{0}")]
    Management(ArmError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// Who submitted a resumed job could not be looked up.
    #[error("{0}")]
    Auth(#[from] wharf_auth::AuthError),
}

impl ImportError {
    /// The job was canceled (asked to, or the server is stopping).
    pub(crate) fn canceled() -> ImportError {
        ImportError::Canceled("The import was canceled.".into())
    }

    pub fn code(&self) -> &str {
        use ImportError::*;
        match self {
            InvalidParameters(_) => "InvalidParameters",
            SourceImageNotFound(_) => "SourceImageNotFound",
            SourceRegistryNotFound(_) => "SourceRegistryNotFound",
            SourceUnauthorized(_) => "SourceUnauthorized",
            SourceForbidden(_) => "SourceForbidden",
            SourceRateLimited(_) => "SourceRateLimited",
            SourceUnreachable(_) => "SourceUnreachable",
            SourceAddressNotAllowed(_) => "SourceAddressNotAllowed",
            SourceDigestMismatch(_) => "SourceDigestMismatch",
            SourceInvalidManifest(_) => "SourceInvalidManifest",
            SourceResponseTooLarge(_) => "SourceResponseTooLarge",
            SourceTooSlow(_) => "SourceTooSlow",
            SourceReferrerLoop(_) => "SourceReferrerLoop",
            LimitExceeded(_) => "ImportLimitExceeded",
            DeadlineExceeded(_) => "ImportDeadlineExceeded",
            TagAlreadyExists(_) => "TagAlreadyExists",
            Canceled(_) => "ImportCanceled",
            TakenOver(_) => "ImportTakenOver",
            Internal(_) | Storage(_) | Auth(_) => "InternalServerError",
            Interrupted(_) => "ImportInterrupted",
            TooManyImports(_) => "TooManyRequests",
            NetworkRestricted(_) => "NetworkRestricted",
            AuthorizationFailed(_) => "AuthorizationFailed",
            OperationNotFound(_) => "OperationNotFound",
            OperationNotCancelable(_) => "OperationNotCancelable",
            Management(e) => &e.code,
        }
    }

    /// The error a job that ended with it records.
    pub(crate) fn to_job_error(&self) -> JobError {
        let message = match self {
            ImportError::Management(e) => e.message.clone(),
            other => other.to_string(),
        };
        JobError { code: self.code().to_owned(), message }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "import failure");
        ImportError::Internal(format!("The import failed inside the server: {e}"))
    }
}

impl From<ArmError> for ImportError {
    fn from(e: ArmError) -> Self {
        ImportError::Management(e)
    }
}

impl From<wharf_registry::RegistryError> for ImportError {
    fn from(e: wharf_registry::RegistryError) -> Self {
        ImportError::internal(e)
    }
}
