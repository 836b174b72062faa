use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_oci::{Digest, Reference, RepositoryName, Tag};

use crate::StorageError;
pub(crate) use crate::job::{JobError, JobProgress, JobState};

/// A registry hosted by this server. Exactly one is the default, which answers any host
/// that names no other registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRecord {
    pub id: RegistryId,
    pub name: String,
    pub is_default: bool,
    pub subscription: String,
    pub resource_group: String,
    pub location: String,
    pub sku: String,
    /// The ARM resource's mutable properties, as JSON (the management layer's schema).
    pub properties: String,
    /// The ARM resource's tags, as JSON.
    pub tags: String,
    pub created_at: i64,
}

/// wharf's number for a registry (its row's id): what every table that belongs to a
/// registry holds, never its name or ARM id, and never another kind of number.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type, Serialize, Deserialize,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct RegistryId(pub i64);

impl std::fmt::Display for RegistryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A repository: a name within a registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoKey {
    pub registry: RegistryId,
    pub name: RepositoryName,
}

/// A chunked upload in progress: how many bytes it holds and the hash state after them.
#[derive(Clone, Debug)]
pub struct UploadRecord {
    pub id: Uuid,
    pub repo: RepoKey,
    pub size: u64,
    pub hash_state: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A stored manifest, with its bytes exactly as pushed.
#[derive(Clone, Debug)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The manifest's `annotations`, as JSON.
    pub annotations: Option<String>,
    /// For an image manifest, the platform of its config, as JSON.
    pub platform: Option<String>,
    /// For an image manifest, its config's media type.
    pub config_media_type: Option<String>,
    /// Total size of the blobs the manifest references.
    pub blob_bytes: u64,
    pub created_at: i64,
}

/// A manifest as listings show it: everything but its bytes, with the tags that point at
/// it and, for an index, its children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestSummary {
    pub digest: Digest,
    pub media_type: String,
    /// The manifest's own size.
    pub size: u64,
    pub blob_bytes: u64,
    pub created_at: i64,
    pub artifact_type: Option<String>,
    /// For an image manifest, its config's platform, as JSON.
    pub platform: Option<String>,
    pub config_media_type: Option<String>,
    /// Tags pointing at it, by name.
    pub tags: Vec<String>,
    /// For an index: its children in index order, each with its platform as JSON.
    pub references: Vec<(Digest, Option<String>)>,
}

/// A repository's totals, for its details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositorySummary {
    pub manifest_count: u64,
    pub tag_count: u64,
    /// When its first manifest still stored was pushed.
    pub created_at: i64,
    /// The last manifest push or tag move.
    pub updated_at: i64,
}

/// A tag, for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRecord {
    pub name: String,
    pub digest: Digest,
    pub created_at: i64,
    pub updated_at: i64,
}

/// How a listing is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// By name (tags) or digest (manifests), lexically.
    #[default]
    Name,
    /// Most recently updated first.
    TimeDesc,
    /// Least recently updated first.
    TimeAsc,
}

/// Everything the last step of an import stores, in one transaction: blob links, manifests
/// (children before parents) and tag moves.
#[derive(Clone, Debug, Default)]
pub struct CommitBatch {
    pub links: Vec<(RepoKey, Digest)>,
    pub manifests: Vec<PutManifest>,
    pub tags: Vec<(RepoKey, Tag, Digest)>,
    /// Move tags that already point elsewhere (`Force`); otherwise such a tag fails the batch.
    pub force: bool,
    /// The import job committing it, if any: the batch commits only while the job is still
    /// its node's to run ([`CommitOutcome::Fenced`] otherwise).
    pub fence: Option<JobFence>,
}

/// What a node holds an import job by: its node id and the lease epoch it claimed the job
/// under. Every write for the job (its progress, outcome, the tag-moving commit) happens
/// only while both still match — a node that lost the job (its lease ran out, another node
/// took it over) changes nothing, even if it comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFence {
    pub id: String,
    pub owner: String,
    pub epoch: i64,
}

/// The result of [`MetadataStore::commit_batch`]. Anything but `Committed` stored nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// A blob to link is no longer stored (garbage-collected since it was staged).
    BlobMissing(Digest),
    /// A manifest failed its checks.
    Manifest {
        repo: RepoKey,
        digest: Digest,
        outcome: PutManifestOutcome,
    },
    /// `force` is off and a tag already points at another manifest.
    TagExists {
        repo: RepoKey,
        tag: Tag,
        current: Digest,
    },
    /// The batch's job is no longer its node's (see [`JobFence`]).
    Fenced,
}

/// What a HEAD needs of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestMeta {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A blob or child manifest a manifest points to, with the size it declares.
/// `required: false` marks non-distributable layers, which may be absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub required: bool,
    /// For a child of an index: the platform its entry gives, as JSON.
    pub platform: Option<String>,
}

impl BlobRef {
    /// A required blob or child without a platform.
    pub fn new(digest: Digest, size: u64) -> BlobRef {
        BlobRef { digest, size, required: true, platform: None }
    }
}

/// Everything one manifest PUT stores, in one transaction.
#[derive(Clone, Debug)]
pub struct PutManifest {
    pub repo: RepoKey,
    pub record: ManifestRecord,
    pub blobs: Vec<BlobRef>,
    pub children: Vec<BlobRef>,
    pub tag: Option<Tag>,
}

/// The result of [`MetadataStore::put_manifest`]. Anything but `Stored` stored nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutManifestOutcome {
    Stored,
    BlobUnknown(Digest),
    ManifestUnknown(Digest),
    SizeMismatch { digest: Digest, declared: u64, actual: u64 },
}

/// A manifest whose `subject` is a given digest, as the referrers API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// Registry metadata. Every method that writes is one transaction, and reads see committed
/// state only; a tag never points at a manifest that isn't stored, and a manifest is never
/// stored before every blob it needs.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// The registry that answers hosts naming no other.
    async fn default_registry(&self) -> Result<RegistryRecord, StorageError>;
    async fn registry_by_name(&self, name: &str) -> Result<Option<RegistryRecord>, StorageError>;

    /// The size of a blob stored anywhere on this server.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;
    /// The size of a blob if it is visible in `repo`.
    async fn linked_blob_size(
        &self,
        repo: &RepoKey,
        digest: &Digest,
    ) -> Result<Option<u64>, StorageError>;
    /// Record a committed blob (refreshing its GC grace period) and link it into `repo`
    /// (without a repository, the blob is staged: stored, visible nowhere yet).
    async fn add_blob(
        &self,
        digest: &Digest,
        size: u64,
        repo: Option<&RepoKey>,
    ) -> Result<(), StorageError>;
    /// The size of a blob if it is visible in any repository of `registry`.
    async fn blob_in_registry(
        &self,
        registry: RegistryId,
        digest: &Digest,
    ) -> Result<Option<u64>, StorageError>;
    /// Restart a stored blob's GC grace period; `false` if the blob isn't stored.
    async fn touch_blob(&self, digest: &Digest) -> Result<bool, StorageError>;
    /// Link an already stored blob into `repo` (cross-repository mount); `false` if the
    /// blob isn't stored.
    async fn link_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, StorageError>;
    /// Remove a blob from `repo`; `false` if it wasn't there.
    async fn unlink_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, StorageError>;

    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StorageError>;
    async fn upload(&self, id: Uuid) -> Result<Option<UploadRecord>, StorageError>;
    async fn update_upload(
        &self,
        id: Uuid,
        size: u64,
        hash_state: &[u8],
    ) -> Result<(), StorageError>;
    async fn delete_upload(&self, id: Uuid) -> Result<(), StorageError>;
    /// Delete an upload session only if it is still idle since before `cutoff` (ms);
    /// `true` if it was deleted.
    async fn delete_upload_if_idle(&self, id: Uuid, cutoff: i64) -> Result<bool, StorageError>;
    /// Uploads not touched since `cutoff` (ms).
    async fn idle_uploads(&self, cutoff: i64) -> Result<Vec<Uuid>, StorageError>;

    /// Check that every required blob and child is in the repository with the declared
    /// size, then store the manifest, its references and the tag, all or nothing.
    async fn put_manifest(&self, put: &PutManifest) -> Result<PutManifestOutcome, StorageError>;
    /// Store manifests, blob links and tag moves all at once, or nothing.
    async fn commit_batch(&self, batch: &CommitBatch) -> Result<CommitOutcome, StorageError>;
    async fn manifest(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, StorageError>;
    async fn manifest_meta(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<Option<ManifestMeta>, StorageError>;
    /// Delete a manifest and every tag pointing at it; `false` if it wasn't there.
    async fn delete_manifest(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, StorageError>;
    async fn delete_tag(&self, repo: &RepoKey, tag: &Tag) -> Result<bool, StorageError>;
    /// Tags in lexical order after `last`, at most `limit`; `None` if the repository has
    /// no manifests.
    async fn tags(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Option<Vec<String>>, StorageError>;
    /// Repositories with at least one manifest, in lexical order after `last`.
    async fn repositories(
        &self,
        registry: RegistryId,
        last: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>, StorageError>;
    /// Manifests in `repo` whose subject is `subject` (of `artifact_type`, if given),
    /// oldest first, after the referrer `after` (a page's last), at most `limit`.
    async fn referrers(
        &self,
        repo: &RepoKey,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<ReferrerRecord>, StorageError>;

    /// The tag records of a repository, after `last` (by name), at most `limit`; `None` if
    /// the repository has no manifests.
    async fn tag_records(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        limit: Option<u32>,
        order: ListOrder,
    ) -> Result<Option<Vec<TagRecord>>, StorageError>;
    /// One tag; `None` if the repository has no manifests, `Some(None)` if it has no such
    /// tag.
    async fn tag_record(
        &self,
        repo: &RepoKey,
        tag: &Tag,
    ) -> Result<Option<Option<TagRecord>>, StorageError>;
    /// The manifests of a repository with their tags, after `last` (by digest), at most
    /// `limit`; `None` if the repository has no manifests. Never reads manifest bytes.
    async fn manifest_listing(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        limit: Option<u32>,
        order: ListOrder,
    ) -> Result<Option<Vec<ManifestSummary>>, StorageError>;
    /// One manifest as listings show it; `None` if the repository has no manifests,
    /// `Some(None)` if it has no such manifest.
    async fn manifest_summary(
        &self,
        repo: &RepoKey,
        digest: &Digest,
    ) -> Result<Option<Option<ManifestSummary>>, StorageError>;
    /// A repository's totals; `None` if it has no manifests.
    async fn repository_summary(
        &self,
        repo: &RepoKey,
    ) -> Result<Option<RepositorySummary>, StorageError>;
    /// Delete a repository with its manifests and tags; what was deleted, or `None` if it
    /// didn't exist.
    async fn delete_repository(
        &self,
        repo: &RepoKey,
    ) -> Result<Option<(Vec<Digest>, Vec<String>)>, StorageError>;

    /// GC step 1: drop links, made before `cutoff`, to blobs that no manifest in the same
    /// repository references. Returns how many.
    async fn unlink_stale_blobs(&self, cutoff: i64) -> Result<u64, StorageError>;
    /// GC step 2: blobs linked nowhere, referenced by nothing, untouched since `cutoff`.
    async fn unreferenced_blobs(&self, cutoff: i64) -> Result<Vec<Digest>, StorageError>;
    /// GC step 3: forget a blob if it is still unreferenced and untouched since `cutoff`;
    /// `true` if it was forgotten (the caller then deletes its bytes).
    async fn forget_blob_if_unreferenced(
        &self,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<bool, StorageError>;
}

/// A subscription: the outermost container of resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub id: String,
    pub display_name: String,
    pub created_at: i64,
}

/// A resource group within a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceGroupRecord {
    pub subscription: String,
    pub name: String,
    pub location: String,
    pub tags: String,
    pub created_at: i64,
}

/// An import job (a long-running operation) as stored. Never holds source credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub registry_id: RegistryId,
    /// The import request without credentials, as JSON.
    pub request: String,
    /// Whether the job can be restarted after a server restart (it had no credentials).
    pub resumable: bool,
    pub status: JobState,
    pub progress: JobProgress,
    pub error: Option<JobError>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The server running it (its node id), while it runs.
    pub owner: Option<String>,
    /// Until when (ms, by the database's clock) `owner` holds it: a server that dies stops
    /// renewing, and another takes the job over once this has passed.
    pub lease_until: i64,
    /// How many times the job was claimed: what its owner's writes are fenced with.
    pub lease_epoch: i64,
}

/// The result of creating a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateRegistryOutcome {
    Created(RegistryRecord),
    /// Another registry on this server has the name.
    NameTaken,
    /// The resource group doesn't exist.
    NoResourceGroup,
}

/// The management plane's records: subscriptions, resource groups, registries, import jobs.
#[async_trait]
pub trait ManagementStore: Send + Sync + 'static {
    async fn put_subscription(&self, id: &str, display_name: &str) -> Result<bool, StorageError>;
    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StorageError>;
    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StorageError>;

    /// Create or update a resource group; `true` if it was created.
    async fn put_resource_group(&self, rg: &ResourceGroupRecord) -> Result<bool, StorageError>;
    async fn resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroupRecord>, StorageError>;
    async fn resource_groups(
        &self,
        subscription: &str,
    ) -> Result<Vec<ResourceGroupRecord>, StorageError>;
    /// Delete a resource group and every registry in it; `false` if it didn't exist.
    async fn delete_resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<bool, StorageError>;

    async fn create_registry(
        &self,
        r: &RegistryRecord,
    ) -> Result<CreateRegistryOutcome, StorageError>;
    /// Update location, sku, properties and tags of a registry.
    async fn update_registry(&self, r: &RegistryRecord) -> Result<(), StorageError>;
    async fn registry(&self, id: RegistryId) -> Result<Option<RegistryRecord>, StorageError>;
    /// A registry by its ARM coordinates (case-insensitive).
    async fn registry_in(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StorageError>;
    /// Registries of a subscription, or of one resource group in it; all of them for `None`.
    async fn registries(
        &self,
        subscription: Option<&str>,
        resource_group: Option<&str>,
    ) -> Result<Vec<RegistryRecord>, StorageError>;
    async fn delete_registry(&self, id: RegistryId) -> Result<bool, StorageError>;

    /// Record a new job, `job.owner`'s under epoch 0 for `lease_ms` from now (by the
    /// database's clock; `job.lease_until` and `job.lease_epoch` are not read).
    async fn create_job(&self, job: &JobRecord, lease_ms: i64) -> Result<(), StorageError>;
    /// Record a job's status, progress and error while it is `fence`'s (unfinished, same
    /// owner and epoch); `false` if it is not (nothing written).
    async fn update_job(
        &self,
        fence: &JobFence,
        status: JobState,
        progress: &JobProgress,
        error: Option<&JobError>,
    ) -> Result<bool, StorageError>;
    async fn job(&self, id: &str) -> Result<Option<JobRecord>, StorageError>;
    /// Jobs not finished (for resuming or failing them after a restart).
    async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StorageError>;
    /// Take the unfinished jobs whose lease ran out, by the database's clock (nodes' clocks
    /// never decide), and with `restarted` those `owner` held before (it restarted) —
    /// never those in `running` (this node's live jobs, whose epoch must not move under
    /// them): they become `owner`'s for `lease_ms`, each under a new lease epoch. Two
    /// servers never take the same job. The jobs taken, with their new epochs.
    async fn claim_jobs(
        &self,
        owner: &str,
        lease_ms: i64,
        restarted: bool,
        running: &[String],
    ) -> Result<Vec<JobRecord>, StorageError>;
    /// Renew `fence`'s lease on its job for `lease_ms` and record its progress. The job's
    /// status, or `None` if it is no longer `fence`'s to run (taken over, finished, deleted).
    async fn heartbeat_job(
        &self,
        fence: &JobFence,
        progress: &JobProgress,
        lease_ms: i64,
    ) -> Result<Option<JobState>, StorageError>;
    /// Ask the server running an unfinished job to stop it (status `Canceling`, seen at its
    /// next heartbeat); `false` if the job has finished.
    async fn request_job_cancel(&self, id: &str) -> Result<bool, StorageError>;
    /// Forget finished jobs last updated before `cutoff` (ms); how many.
    async fn delete_finished_jobs(&self, cutoff: i64) -> Result<u64, StorageError>;
}
