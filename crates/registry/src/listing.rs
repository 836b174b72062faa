//! Repository listings with details (tags with times, manifests with platforms): what the
//! ACR data-plane API (`/acr/v1/…`) and `wharf repository` show. Read from columns kept
//! for the purpose: no listing loads or parses manifest bytes, and one item is one lookup.

use wharf_oci::manifest::Platform;
use wharf_oci::{Digest, Tag};
use wharf_storage::{ListOrder, ManifestSummary, RepoKey, RepositorySummary, TagRecord};

use crate::{RegistryError, RegistryService};

/// A manifest as listings show it.
#[derive(Clone, Debug)]
pub struct ManifestDetail {
    pub digest: Digest,
    pub media_type: String,
    /// The manifest's own size plus the blobs it references.
    pub image_size: u64,
    pub created_at: i64,
    pub tags: Vec<String>,
    /// For an image manifest: its config's platform.
    pub platform: Option<Platform>,
    /// For an index: its children with their platforms.
    pub references: Vec<(Digest, Option<Platform>)>,
    pub config_media_type: Option<String>,
    pub artifact_type: Option<String>,
}

impl From<ManifestSummary> for ManifestDetail {
    fn from(m: ManifestSummary) -> Self {
        let platform = |p: Option<String>| p.and_then(|p| serde_json::from_str(&p).ok());
        ManifestDetail {
            image_size: m.size.saturating_add(m.blob_bytes),
            digest: m.digest,
            media_type: m.media_type,
            created_at: m.created_at,
            tags: m.tags,
            platform: platform(m.platform),
            references: m.references.into_iter().map(|(d, p)| (d, platform(p))).collect(),
            config_media_type: m.config_media_type,
            artifact_type: m.artifact_type,
        }
    }
}

impl RegistryService {
    pub async fn tag_details(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        n: Option<u32>,
        order: ListOrder,
    ) -> Result<Vec<TagRecord>, RegistryError> {
        self.meta
            .tag_records(repo, last, n, order)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.name.to_string()))
    }

    /// One tag with its times.
    pub async fn tag_detail(&self, repo: &RepoKey, tag: &Tag) -> Result<TagRecord, RegistryError> {
        self.meta
            .tag_record(repo, tag)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.name.to_string()))?
            .ok_or_else(|| RegistryError::ManifestUnknown(format!("tag {tag} not found")))
    }

    pub async fn manifest_details(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        n: Option<u32>,
        order: ListOrder,
    ) -> Result<Vec<ManifestDetail>, RegistryError> {
        let listing = self
            .meta
            .manifest_listing(repo, last, n, order)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.name.to_string()))?;
        Ok(listing.into_iter().map(ManifestDetail::from).collect())
    }

    /// One manifest with its tags and platforms.
    pub async fn manifest_detail(
        &self,
        repo: &RepoKey,
        digest: &Digest,
    ) -> Result<ManifestDetail, RegistryError> {
        self.meta
            .manifest_summary(repo, digest)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.name.to_string()))?
            .map(ManifestDetail::from)
            .ok_or_else(|| RegistryError::ManifestUnknown(digest.to_string()))
    }

    /// A repository's counts and times.
    pub async fn repository_detail(
        &self,
        repo: &RepoKey,
    ) -> Result<RepositorySummary, RegistryError> {
        self.meta
            .repository_summary(repo)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.name.to_string()))
    }

    /// Delete a repository: its manifests and tags. Blobs are left to GC.
    pub async fn delete_repository(
        &self,
        repo: &RepoKey,
    ) -> Result<(Vec<Digest>, Vec<String>), RegistryError> {
        self.meta
            .delete_repository(repo)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.name.to_string()))
    }
}
