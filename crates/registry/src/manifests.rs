//! Manifests: validated, stored byte for byte, tagged in the same transaction.

use bytes::Bytes;
use wharf_oci::manifest::Manifest;
use wharf_oci::{Digest, Reference, media_type};
use wharf_storage::{
    BlobRef, ManifestMeta, ManifestRecord, PutManifest, PutManifestOutcome, RepoKey, now_millis,
};

use crate::{RegistryError, RegistryService};

/// The largest manifest accepted (the limit of the distribution spec's reference
/// implementation and of ACR).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// What a manifest PUT stored.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl RegistryService {
    /// Store a manifest under a tag or its digest. `content_type` is the request's.
    pub async fn put_manifest(
        &self,
        repo: &RepoKey,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<StoredManifest, RegistryError> {
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge {
                what: "manifest",
                limit: MAX_MANIFEST_SIZE as u64,
            });
        }
        let digest = Digest::sha256_of(&body);
        let tag = match reference {
            Reference::Digest(claimed) => {
                if !claimed.is_supported() {
                    return Err(RegistryError::Unsupported(format!(
                        "digest algorithm {} is not supported; use sha256",
                        claimed.algorithm().as_str()
                    )));
                }
                if claimed != &digest {
                    return Err(RegistryError::DigestInvalid(format!(
                        "the manifest was pushed as {claimed} but its bytes hash to {digest}"
                    )));
                }
                None
            }
            Reference::Tag(t) => Some(t.clone()),
        };
        let manifest = Manifest::parse(&body, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;

        let blobs = manifest
            .blobs()
            .map(|d| BlobRef {
                digest: d.digest.clone(),
                size: d.size,
                // Foreign / non-distributable layers are fetched from their URLs.
                required: !media_type::is_non_distributable(&d.media_type) || d.urls.is_empty(),
            })
            .collect();
        let children = manifest
            .children()
            .iter()
            .map(|d| BlobRef { digest: d.digest.clone(), size: d.size, required: true })
            .collect();
        let annotations = manifest
            .annotations
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
        let put = PutManifest {
            repo: repo.clone(),
            record: ManifestRecord {
                digest: digest.clone(),
                media_type: manifest.media_type.clone(),
                content: body,
                artifact_type: manifest.artifact_type.clone(),
                subject: subject.clone(),
                annotations,
                created_at: now_millis(),
            },
            blobs,
            children,
            tag,
        };
        match self.meta.put_manifest(&put).await? {
            PutManifestOutcome::Stored => Ok(StoredManifest { digest, subject }),
            PutManifestOutcome::BlobUnknown(d) => Err(RegistryError::ManifestBlobUnknown(d)),
            PutManifestOutcome::ManifestUnknown(d) => Err(RegistryError::ManifestChildUnknown(d)),
            PutManifestOutcome::SizeMismatch { digest, declared, actual } => {
                Err(RegistryError::ManifestInvalid(format!(
                    "descriptor of {digest} says {declared} bytes, the stored content has {actual}"
                )))
            }
        }
    }

    pub async fn get_manifest(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<ManifestRecord, RegistryError> {
        self.meta
            .manifest(repo, reference)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))
    }

    pub async fn head_manifest(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<ManifestMeta, RegistryError> {
        self.meta
            .manifest_meta(repo, reference)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))
    }

    /// Delete a manifest (by digest: with every tag pointing at it) or just a tag.
    pub async fn delete_manifest(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        let found = match reference {
            Reference::Digest(d) => self.meta.delete_manifest(repo, d).await?,
            Reference::Tag(t) => self.meta.delete_tag(repo, t).await?,
        };
        if found { Ok(()) } else { Err(RegistryError::ManifestUnknown(reference.to_string())) }
    }
}
