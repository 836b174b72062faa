//! Where wharf keeps things: five traits, their embedded and scale-out implementations,
//! and one contract suite (`tests/contract/`) that holds each to the same behaviour.
//!
//! - [`BlobStore`]: content-addressed bytes (layers, configs) and the upload sessions that
//!   produce them. Streams in, streams out, ranged reads; no filesystem path crosses the
//!   trait. [`FsBlobStore`] (files), [`ObjectBlobStore`] (S3, Azure Blob).
//! - [`MetadataStore`]: registries, repositories, manifests, tags, blob links, upload
//!   session state, GC's work list; [`ManagementStore`]: subscriptions, resource groups,
//!   registries, import jobs; [`IdentityStore`]: principals, credentials, roles, signing
//!   keys. Every method that writes is one transaction. [`SqliteMetadataStore`],
//!   [`PostgresMetadataStore`]; their SQL is written once, in `sql/`.
//! - [`Coordination`]: locks and shared state across the servers on one store
//!   ([`PostgresMetadataStore`]; one embedded server needs none).
//!
//! Architecture invariant: storage knows nothing about HTTP, auth or the wire formats;
//! it never computes a digest (the registry layer hashes, once, as bytes arrive) and
//! never decides policy — it stores what it is given, atomically.

mod blob;
mod coordination;
mod error;
mod fs;
mod identity;
mod job;
mod meta;
pub mod migrate;
mod object;
mod postgres;
mod sql;
mod sqlite;

/// The subscription every fresh server has, holding the default resource group.
pub const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
/// The resource group every fresh server has, holding the default registry.
pub const DEFAULT_RESOURCE_GROUP: &str = "default";

pub use blob::{
    Appended, BlobStore, BlobWriter, ByteRange, ByteStream, Part, PartWritten, StoredBlob,
    StoredUpload, is_probe_upload, probe_upload_id,
};
pub use coordination::{Coordination, HeldLock, LockGuard};
pub use error::StorageError;
pub use fs::{DEFAULT_READ_BUDGET, DEFAULT_WRITE_BUDGET, FsBlobStore, create_dir_durably};
pub use identity::{
    CredentialRecord, IdentityStore, PrincipalRecord, RegistryTokenRecord, RoleAssignmentRecord,
    RoleDefinitionRecord, ScopeMapRecord, SigningKeyRecord, TenantRecord, TokenPasswordRecord,
};
pub use job::{JobCounters, JobError, JobProgress, JobState, ManifestState, Phase};
pub use meta::{
    BlobRef, CommitBatch, CommitOutcome, CreateRegistryOutcome, JobFence, JobRecord, ListOrder,
    ManagementStore, ManifestMeta, ManifestRecord, ManifestSummary, MetadataStore, PutManifest,
    PutManifestOutcome, ReferrerRecord, RegistryId, RegistryRecord, RepoKey, RepositorySummary,
    ResourceGroupRecord, SubscriptionRecord, TagRecord, UploadRecord,
};
pub use object::{DEFAULT_PART_BUDGET, ObjectBlobStore, ObjectStoreUrl};
pub use postgres::{PostgresMetadataStore, PostgresOptions};
pub use sqlite::SqliteMetadataStore;

/// Milliseconds since the Unix epoch, the timestamp unit of every store.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
