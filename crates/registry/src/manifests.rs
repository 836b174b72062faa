//! Manifests: validated, stored byte for byte, tagged in the same transaction.

use bytes::Bytes;
use futures::StreamExt;
use wharf_oci::manifest::{Manifest, Platform};
use wharf_oci::{Digest, Reference, media_type};
use wharf_storage::{
    BlobRef, CommitBatch, CommitOutcome, ManifestMeta, ManifestRecord, PutManifest,
    PutManifestOutcome, RepoKey, now_millis,
};

use crate::{RegistryError, RegistryService};

/// The largest manifest accepted (the limit of the distribution spec's reference
/// implementation and of ACR).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// Image configs larger than this aren't read for their platform.
const MAX_CONFIG_READ: u64 = 1 << 20;

/// What a manifest PUT stored.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// Why [`RegistryService::commit_batch`] stored nothing.
#[derive(Debug)]
pub enum CommitError {
    /// A tag exists and points elsewhere (and the batch doesn't force).
    TagExists {
        repo: RepoKey,
        tag: wharf_oci::Tag,
    },
    /// A staged blob was garbage-collected before the batch committed.
    BlobMissing(Digest),
    /// The import job committing it is no longer this node's (taken over).
    Fenced,
    Registry(RegistryError),
}

impl From<RegistryError> for CommitError {
    fn from(e: RegistryError) -> Self {
        CommitError::Registry(e)
    }
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
                    return Err(RegistryError::DigestMismatch(format!(
                        "the manifest was pushed as {claimed} but its bytes hash to {digest}"
                    )));
                }
                None
            }
            Reference::Tag(t) => Some(t.clone()),
        };
        let mut put = self.prepare_manifest(repo, content_type, body).await?;
        put.tag = tag;
        let subject = put.record.subject.clone();
        outcome(self.meta.put_manifest(&put).await?)?;
        Ok(StoredManifest { digest, subject })
    }

    /// Check a manifest and build what storing it takes (untagged), without storing it.
    pub async fn prepare_manifest(
        &self,
        repo: &RepoKey,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest, RegistryError> {
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge {
                what: "manifest",
                limit: MAX_MANIFEST_SIZE as u64,
            });
        }
        let digest = Digest::sha256_of(&body);
        let manifest = Manifest::parse(&body, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        self.prepare_parsed_manifest(repo, digest, &manifest, body).await
    }

    /// As [`RegistryService::prepare_manifest`], for a manifest its caller has hashed and
    /// parsed already (an import parses each manifest once, for every target repository).
    pub async fn prepare_parsed_manifest(
        &self,
        repo: &RepoKey,
        digest: Digest,
        manifest: &Manifest,
        body: Bytes,
    ) -> Result<PutManifest, RegistryError> {
        let blobs: Vec<BlobRef> = manifest
            .blobs()
            .map(|d| BlobRef {
                digest: d.digest.clone(),
                size: d.size,
                // Foreign / non-distributable layers are fetched from their URLs.
                required: !media_type::is_non_distributable(&d.media_type) || d.urls.is_empty(),
                platform: None,
            })
            .collect();
        let children = manifest
            .children()
            .iter()
            .map(|d| BlobRef {
                platform: d.platform.as_ref().and_then(|p| serde_json::to_string(p).ok()),
                ..BlobRef::new(d.digest.clone(), d.size)
            })
            .collect();
        let blob_bytes = blobs
            .iter()
            .try_fold(0u64, |sum, b| sum.checked_add(b.size))
            .filter(|&n| n <= wharf_oci::manifest::MAX_DESCRIPTOR_SIZE)
            .ok_or_else(|| {
                RegistryError::ManifestInvalid("the sizes of its blobs add up past 2^63".into())
            })?;
        let config_media_type = match &manifest.content {
            wharf_oci::manifest::Content::Image { config: Some(c), .. } => {
                Some(c.media_type.clone())
            }
            _ => None,
        };
        let annotations = manifest
            .annotations
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        let platform =
            self.config_platform(manifest).await.and_then(|p| serde_json::to_string(&p).ok());
        Ok(PutManifest {
            repo: repo.clone(),
            record: ManifestRecord {
                digest,
                media_type: manifest.media_type.clone(),
                content: body,
                artifact_type: manifest.artifact_type.clone(),
                subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
                annotations,
                platform,
                config_media_type,
                blob_bytes,
                created_at: now_millis(),
            },
            blobs,
            children,
            tag: None,
        })
    }

    /// The os/architecture of an image manifest, read from its config (if stored).
    async fn config_platform(&self, manifest: &Manifest) -> Option<Platform> {
        let wharf_oci::manifest::Content::Image { config: Some(config), .. } = &manifest.content
        else {
            return None;
        };
        if !(config.media_type == media_type::OCI_CONFIG
            || config.media_type == media_type::DOCKER_CONFIG)
            || config.size > MAX_CONFIG_READ
        {
            return None;
        }
        let mut stream = self.blobs.read(&config.digest, None).await.ok()??;
        let mut bytes = Vec::with_capacity(config.size as usize);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.ok()?);
            if bytes.len() as u64 > MAX_CONFIG_READ {
                return None;
            }
        }
        #[derive(serde::Deserialize)]
        struct Config {
            architecture: Option<String>,
            os: Option<String>,
            variant: Option<String>,
            #[serde(rename = "os.version")]
            os_version: Option<String>,
        }
        let c: Config = serde_json::from_slice(&bytes).ok()?;
        Some(Platform {
            architecture: c.architecture.unwrap_or_default(),
            os: c.os.unwrap_or_default(),
            os_version: c.os_version,
            variant: c.variant,
        })
    }

    /// Store blob links, manifests and tag moves in one transaction, or nothing: the last
    /// step of an import.
    pub async fn commit_batch(&self, batch: &CommitBatch) -> Result<(), CommitError> {
        match self.meta.commit_batch(batch).await.map_err(RegistryError::from)? {
            CommitOutcome::Committed => Ok(()),
            CommitOutcome::BlobMissing(d) => Err(CommitError::BlobMissing(d)),
            CommitOutcome::Manifest { digest, outcome: o, .. } => {
                Err(CommitError::Registry(outcome(o).err().unwrap_or_else(|| {
                    RegistryError::ManifestInvalid(format!("{digest} was rejected"))
                })))
            }
            CommitOutcome::TagExists { repo, tag, .. } => Err(CommitError::TagExists { repo, tag }),
            CommitOutcome::Fenced => Err(CommitError::Fenced),
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

fn outcome(o: PutManifestOutcome) -> Result<(), RegistryError> {
    match o {
        PutManifestOutcome::Stored => Ok(()),
        PutManifestOutcome::BlobUnknown(d) => Err(RegistryError::ManifestBlobUnknown(d)),
        PutManifestOutcome::ManifestUnknown(d) => Err(RegistryError::ManifestChildUnknown(d)),
        PutManifestOutcome::SizeMismatch { digest, declared, actual } => {
            Err(RegistryError::ManifestInvalid(format!(
                "descriptor of {digest} says {declared} bytes, the stored content has {actual}"
            )))
        }
    }
}
