//! Where an import reads from: another registry over HTTP, or a registry on this server.

use async_trait::async_trait;
use wharf_oci::manifest::Descriptor;
use wharf_oci::{Digest, Reference, RepositoryName};
use wharf_registry::{ByteStream, RegistryError, RegistryService, RepoKey};

use crate::ImportError;
use crate::remote::{Fetched, RemoteRegistry};
use wharf_storage::RegistryId;

#[async_trait]
pub(crate) trait Source: Send + Sync {
    /// The source as messages name it.
    fn display(&self) -> String;
    /// Who reads what from where: two imports with the same identity may share one
    /// download (the same registry, repository and credentials prove the same bytes).
    fn identity(&self, repo: &RepositoryName) -> String;
    /// How long requests to this source have been held back by its 429s, in all (only
    /// growing): waiting that isn't the source's slowness.
    fn paused(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// For a registry on this server: the size of a blob the caller can read there, which
    /// needs no download at all.
    async fn local_blob(
        &self,
        _repo: &RepositoryName,
        _digest: &Digest,
    ) -> Result<Option<u64>, ImportError> {
        Ok(None)
    }
    /// A manifest, verified against the digest when asked by digest and against `size`
    /// when a descriptor gives one; `None` if absent.
    async fn manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        size: Option<u64>,
    ) -> Result<Option<Fetched>, ImportError>;
    /// A blob from `offset` on; `None` if absent.
    async fn blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        offset: u64,
    ) -> Result<Option<ByteStream>, ImportError>;
    async fn referrers(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, ImportError>;
}

pub(crate) struct RemoteSource(pub(crate) RemoteRegistry);

#[async_trait]
impl Source for RemoteSource {
    fn display(&self) -> String {
        self.0.display().to_owned()
    }

    fn identity(&self, repo: &RepositoryName) -> String {
        format!("{}/{repo}#{}", self.0.base(), self.0.credential_fingerprint())
    }

    fn paused(&self) -> std::time::Duration {
        self.0.paused()
    }

    async fn manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        size: Option<u64>,
    ) -> Result<Option<Fetched>, ImportError> {
        self.0.manifest(repo, reference, size).await
    }

    async fn blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        offset: u64,
    ) -> Result<Option<ByteStream>, ImportError> {
        self.0.blob(repo, digest, offset).await
    }

    async fn referrers(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, ImportError> {
        self.0.referrers(repo, digest).await
    }
}

/// The most pages of referrers read of one manifest on this server (a thousand each).
const MAX_REFERRER_PAGES: usize = 10;

/// A registry on this server: read through the registry service, never over HTTP.
pub(crate) struct LocalSource {
    pub(crate) registry: RegistryService,
    pub(crate) registry_id: RegistryId,
    pub(crate) name: String,
}

impl LocalSource {
    fn key(&self, repo: &RepositoryName) -> RepoKey {
        RepoKey { registry: self.registry_id, name: repo.clone() }
    }
}

#[async_trait]
impl Source for LocalSource {
    fn display(&self) -> String {
        format!("registry '{}'", self.name)
    }

    fn identity(&self, repo: &RepositoryName) -> String {
        format!("local:{}/{repo}", self.registry_id)
    }

    async fn local_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, ImportError> {
        match self.registry.stat_blob(&self.key(repo), digest).await {
            Ok(size) => {
                self.registry.retain_blob(digest).await?;
                Ok(Some(size))
            }
            Err(RegistryError::BlobUnknown(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        size: Option<u64>,
    ) -> Result<Option<Fetched>, ImportError> {
        match self.registry.get_manifest(&self.key(repo), reference).await {
            Ok(m) if size.is_some_and(|s| s != m.content.len() as u64) => {
                Err(ImportError::SourceDigestMismatch(format!(
                    "{} holds {repo}@{} with another size than its descriptor gives.",
                    self.display(),
                    m.digest
                )))
            }
            Ok(m) => {
                Ok(Some(Fetched { digest: m.digest, media_type: m.media_type, bytes: m.content }))
            }
            Err(RegistryError::ManifestUnknown(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        offset: u64,
    ) -> Result<Option<ByteStream>, ImportError> {
        let range =
            (offset > 0).then_some(wharf_registry::RangeRequest::From { start: offset, end: None });
        match self.registry.read_blob(&self.key(repo), digest, range).await {
            Ok(read) => Ok(Some(read.stream)),
            Err(RegistryError::BlobUnknown(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn referrers(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, ImportError> {
        // Page by page, as the referrers API serves them; the plan bounds what it keeps.
        let mut all = Vec::new();
        let mut after = None;
        for _ in 0..MAX_REFERRER_PAGES {
            let (page, next) = self
                .registry
                .referrers(&self.key(repo), digest, None, after.as_ref(), None)
                .await?;
            all.extend(page);
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(all)
    }
}
