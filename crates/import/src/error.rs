use wharf_management::{ArmError, ErrorKind};

/// Why an import failed, each with the ARM code clients see.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// An ARM error from the management plane (unknown target, permission...).
    #[error("{0}")]
    Arm(ArmError),
}

impl ImportError {
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
            Internal(_) => "InternalServerError",
            Arm(e) => &e.code,
        }
    }

    pub fn to_arm(&self) -> ArmError {
        use ImportError::*;
        match self {
            Arm(e) => e.clone(),
            other => {
                let kind = match other {
                    TagAlreadyExists(_) | TakenOver(_) => ErrorKind::Conflict,
                    SourceRegistryNotFound(_) => ErrorKind::NotFound,
                    Internal(_) => ErrorKind::Internal,
                    _ => ErrorKind::BadRequest,
                };
                ArmError::new(kind, other.code(), other.to_string())
            }
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "import failure");
        ImportError::Internal(format!("The import failed inside the server: {e}"))
    }
}

impl From<ArmError> for ImportError {
    fn from(e: ArmError) -> Self {
        ImportError::Arm(e)
    }
}

impl From<wharf_registry::RegistryError> for ImportError {
    fn from(e: wharf_registry::RegistryError) -> Self {
        ImportError::internal(e)
    }
}
