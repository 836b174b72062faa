#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! The contract every storage backend keeps, written once and run against each
//! implementation: one test per behaviour and backend (`metadata::tags_move_and_list::sqlite`,
//! `blob::listing_pages_in_digest_order::s3`), so a failure names the rule it broke. A
//! scale-out backend adds one opener in `backends.rs` and its name to each trait's list.

/// For each behaviour, a module of one `#[tokio::test]` per backend
/// (`metadata::tags_move_and_list::postgres`): it opens a fresh store with
/// `backends::$backend` (skipping when the environment has no such backend), runs the
/// calling module's `$behaviour` on it, and cleans up after a pass.
macro_rules! contract_tests {
    ($backends:tt [$($behaviour:ident),+ $(,)?]) => {
        $( contract_tests!(@behaviour $behaviour $backends); )+
    };
    (@behaviour $behaviour:ident [$($backend:ident),+ $(,)?]) => {
        mod $behaviour {
            $(
                #[tokio::test]
                async fn $backend() {
                    let Some(store) = crate::backends::$backend().await else { return };
                    super::$behaviour(&*store).await;
                    store.finish().await;
                }
            )+
        }
    };
}

mod backends;
mod blob;
mod gc;
mod identity;
mod management;
mod metadata;
mod migrate;
mod postgres;

use bytes::Bytes;
use futures::StreamExt;
use wharf_oci::{Digest, RepositoryName, Tag};
use wharf_storage::*;

pub(crate) fn stream(parts: &[&'static [u8]]) -> ByteStream {
    Box::pin(futures::stream::iter(
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>(),
    ))
}

/// Everything a read yields. Each chunk is copied out and dropped at once: a store may
/// read ahead only as far as its chunks come back (the filesystem store's memory bound).
pub(crate) async fn read_all(mut s: ByteStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = s.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    all
}

pub(crate) fn repo(registry: RegistryId, name: &str) -> RepoKey {
    RepoKey { registry, name: RepositoryName::parse(name).unwrap() }
}

pub(crate) fn manifest(
    digest_of: &[u8],
    blobs: Vec<BlobRef>,
    tag: Option<&str>,
    r: &RepoKey,
) -> PutManifest {
    PutManifest {
        repo: r.clone(),
        record: ManifestRecord {
            digest: Digest::sha256_of(digest_of),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: Bytes::copy_from_slice(digest_of),
            artifact_type: None,
            subject: None,
            annotations: None,
            platform: None,
            config_media_type: None,
            blob_bytes: blobs.iter().map(|b| b.size).sum(),
            created_at: now_millis(),
        },
        blobs,
        children: vec![],
        tag: tag.map(|t| Tag::parse(t).unwrap()),
    }
}
