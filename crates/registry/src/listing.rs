//! Repository listings with details (tags with times, manifests with platforms): what the
//! ACR data-plane API (`/acr/v1/…`) and `wharf repository` show.

use wharf_oci::Digest;
use wharf_oci::manifest::{Content, Manifest, Platform};
use wharf_storage::{ListOrder, RepoKey, TagRecord};

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
        Ok(listing
            .into_iter()
            .map(|l| {
                let r = l.record;
                let parsed = Manifest::parse(&r.content, Some(&r.media_type)).ok();
                let references = parsed
                    .as_ref()
                    .map(|m| {
                        m.children()
                            .iter()
                            .map(|c| (c.digest.clone(), c.platform.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let config_media_type = parsed.as_ref().and_then(|m| match &m.content {
                    Content::Image { config: Some(c), .. } => Some(c.media_type.clone()),
                    _ => None,
                });
                ManifestDetail {
                    digest: r.digest,
                    media_type: r.media_type,
                    image_size: r.content.len() as u64 + r.blob_bytes,
                    created_at: r.created_at,
                    tags: l.tags,
                    platform: r.platform.and_then(|p| serde_json::from_str(&p).ok()),
                    references,
                    config_media_type,
                    artifact_type: r.artifact_type,
                }
            })
            .collect())
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
