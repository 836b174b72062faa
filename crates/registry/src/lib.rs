//! The registry's domain logic, on top of the storage traits and below HTTP.
//!
//! [`RegistryService`] implements every operation of the OCI distribution spec — blob
//! uploads (monolithic, chunked, mounted), manifests, tags, referrers, deletes — plus
//! garbage collection, in terms of [`wharf_storage::BlobStore`] and
//! [`wharf_storage::MetadataStore`].
//!
//! Architecture invariants:
//! - Every byte of a blob is hashed exactly once, by [`hashing`], as it streams into the
//!   blob store; a blob is committed only when that hash equals the digest claimed.
//! - A manifest is stored only after every blob and child it needs is in its repository,
//!   and in the same transaction as its tag.
//! - Blob commits and GC deletions of one digest are serialised by [`locks`], so GC never
//!   removes bytes that a concurrent push has just made visible.
//! - This crate knows nothing about HTTP: errors are [`RegistryError`] values that the
//!   HTTP layer turns into OCI error bodies.

mod blobs;
mod discovery;
mod error;
mod gc;
mod hashing;
mod listing;
mod locks;
mod manifests;

use std::sync::Arc;

use wharf_storage::{BlobStore, Coordination, MetadataStore, RegistryRecord};

pub use blobs::{BlobDownload, BlobRead, DownloadRedirects, Ingest, RangeRequest, UploadStatus};
pub use discovery::{MAX_PAGE, MAX_REFERRERS, Page, page_size};
pub use error::RegistryError;
pub use gc::{GcOptions, GcReport};
pub use listing::ManifestDetail;
pub use manifests::{CommitError, MAX_MANIFEST_SIZE, StoredManifest};
pub use wharf_storage::{
    ByteRange, ByteStream, CommitBatch, ListOrder, ManifestMeta, ManifestRecord, PutManifest,
    RepoKey, RepositorySummary, TagRecord,
};

/// The registry operations, shared by every request handler.
#[derive(Clone)]
pub struct RegistryService {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetadataStore>,
    locks: Arc<locks::Locks>,
    /// Where GC's scan for bytes without a row goes on from (a page per pass).
    orphan_cursor: Arc<std::sync::Mutex<Option<wharf_oci::Digest>>>,
    /// Set when blob GETs are redirected to the blob store.
    redirects: Option<DownloadRedirects>,
}

impl RegistryService {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetadataStore>) -> Self {
        RegistryService {
            blobs,
            meta,
            locks: Arc::new(locks::Locks::default()),
            orphan_cursor: gc::random_cursor(),
            redirects: None,
        }
    }

    /// A registry whose stores other servers share: its locks also hold across them.
    pub fn clustered(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetadataStore>,
        cluster: Arc<dyn Coordination>,
    ) -> Self {
        let mut locks = locks::Locks::default();
        locks.cluster = Some(cluster);
        RegistryService {
            blobs,
            meta,
            locks: Arc::new(locks),
            orphan_cursor: gc::random_cursor(),
            redirects: None,
        }
    }

    /// Answer blob GETs with a `307` to a URL the blob store signed, for blobs of at least
    /// `redirects.min_size` bytes, when the store can sign one (an object store can; the
    /// filesystem can't, and its blobs are streamed as before). Clients then read from the
    /// store itself, and the server's bandwidth goes to what only it can serve.
    pub fn with_download_redirects(mut self, redirects: DownloadRedirects) -> Self {
        self.redirects = Some(redirects);
        self
    }

    /// The registry that answers `host` (a login server such as `myreg.localhost:5000`):
    /// the registry named by its first label when `host` is `<name>.<domain>`, the default
    /// registry for any other host. A `<name>.<domain>` naming no registry is an error, not
    /// the default: a push to a mistyped or deleted registry must not land elsewhere.
    pub async fn registry_for_host(
        &self,
        host: Option<&str>,
        domain: &str,
    ) -> Result<RegistryRecord, RegistryError> {
        if let Some(name) = host.and_then(|h| registry_label(h, domain)) {
            return self
                .meta
                .registry_by_name(&name)
                .await?
                .ok_or(RegistryError::RegistryUnknown(name));
        }
        Ok(self.meta.default_registry().await?)
    }

    /// The registry named by a login server `<name>.<domain>[:port]`, if it is one of ours.
    pub async fn registry_named_by_host(
        &self,
        host: &str,
        domain: &str,
    ) -> Result<Option<RegistryRecord>, RegistryError> {
        match registry_label(host, domain) {
            Some(name) => Ok(self.meta.registry_by_name(&name).await?),
            None => Ok(None),
        }
    }

    /// The metadata store, for layers (management, import) that keep their own records.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }
}

/// `myreg` from `myreg.<domain>[:port]`, lowercased; `None` for any other host.
fn registry_label(host: &str, domain: &str) -> Option<String> {
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
    let host = host.to_ascii_lowercase();
    let suffix = format!(".{}", domain.to_ascii_lowercase());
    let label = host.strip_suffix(&suffix)?;
    (!label.is_empty() && !label.contains('.')).then(|| label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::registry_label;

    #[test]
    fn host_labels() {
        assert_eq!(registry_label("myreg.localhost:5000", "localhost").as_deref(), Some("myreg"));
        assert_eq!(registry_label("MyReg.LocalHost", "localhost").as_deref(), Some("myreg"));
        assert_eq!(registry_label("localhost:5000", "localhost"), None);
        assert_eq!(registry_label("a.b.localhost", "localhost"), None);
        assert_eq!(registry_label("127.0.0.1:5000", "localhost"), None);
        assert_eq!(registry_label("x.example.com", "example.com").as_deref(), Some("x"));
    }
}
