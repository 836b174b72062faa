use wharf_oci::Digest;
use wharf_storage::StorageError;

/// Why a registry operation failed. Each variant is one OCI error code (or an HTTP-only
/// condition such as a range the blob doesn't have); the HTTP layer picks the status.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// A digest that doesn't parse (its own error says how), or none where one is required.
    #[error("{0}")]
    DigestInvalid(String),
    /// Bytes that don't hash to the digest they were sent under.
    #[error("provided digest did not match uploaded content: {0}")]
    DigestMismatch(String),
    #[error("manifest references a blob unknown to the repository: {0}")]
    ManifestBlobUnknown(Digest),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("manifest refers to {0}, which is not in the repository")]
    ManifestChildUnknown(Digest),
    /// The name's own error says what is wrong with it.
    #[error("{0}")]
    NameInvalid(String),
    #[error("there is no registry '{0}' on this server")]
    RegistryUnknown(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    TagInvalid(String),
    #[error("{0}")]
    Unsupported(String),
    /// A chunk that doesn't start where the upload ends.
    #[error("chunk out of order: the upload holds {size} bytes")]
    ChunkOutOfOrder { size: u64 },
    /// Another request is writing to the same upload session right now.
    #[error("another request is writing to this upload session; it holds {size} bytes")]
    UploadBusy { size: u64 },
    /// A read range past the end of the blob.
    #[error("requested range not satisfiable: the blob has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{what} is too large (limit {limit} bytes)")]
    TooLarge { what: &'static str, limit: u64 },
    /// The request body broke off (client disconnected, truncated body).
    #[error("the request body ended early: {0}")]
    BodyIncomplete(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}
