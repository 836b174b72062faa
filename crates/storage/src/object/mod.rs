//! Blobs in an object store — S3 and S3-compatible stores, or Azure Blob Storage — through
//! the `object_store` crate, for servers that scale out: every node sees the same objects and
//! keeps nothing of a transfer in memory between calls, so an upload begun on one node goes
//! on through another.
//!
//! Layout under the configured prefix:
//! - `blobs/<algorithm>/<2 hex>/<hex>`: a committed blob, one object, published in one step
//!   (a server-side copy or the completion of a multipart upload), so it is never half there.
//! - `uploads/<uuid>/data/<offset, 20 digits>`: the pieces of an upload session, each holding
//!   the session's bytes from its offset on. Objects can't be appended to or cut short, so a
//!   session is pieces: an append or attach at offset `o` first drops the pieces starting at
//!   or after `o`, and a piece running past the next one's start (bytes of an append that was
//!   never recorded) is cut there when the session is read.
//! - `uploads/<uuid>/parts/<uuid>`: a chunk written beside its session; attaching it at an
//!   offset writes an empty marker `uploads/<uuid>/attached/<offset, 20 digits>.<part uuid>`
//!   that makes the part a piece of the session. A part is never renamed or copied: an
//!   object store renames by copying, and S3 copies at most 5 GiB in one request (a push
//!   of a larger layer in one PATCH, as docker, podman and skopeo do, would fail).
//!
//! Memory is bounded per transfer and server-wide: bytes go out in parts of [`PART`] bytes,
//! one part uploading while the next fills, and large transfers take their two parts' worth
//! from a shared budget first (others wait, which is backpressure on their clients).

use std::io;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Semaphore;
use uuid::Uuid;
use wharf_oci::Digest;

mod url;
mod writer;

pub use url::ObjectStoreUrl;
use writer::ObjectBlobWriter;

use crate::StorageError;
use crate::blob::{
    Appended, BlobStore, BlobWriter, ByteRange, ByteStream, Part, PartWritten, StoredBlob,
    StoredUpload,
};

/// The size of each part of a multipart upload (S3 wants at least 5 MiB for all but the last).
const PART: usize = 8 << 20;
/// Bytes a transfer collects before it is known to be large: a transfer that ends sooner is
/// one plain PUT and takes nothing from the shared budget.
const SMALL: usize = 1 << 20;
/// The largest object S3 copies in one request; larger uploads are composed by streaming.
const MAX_COPY: u64 = 5 << 30;
/// Bytes each ranged GET of a large read fetches.
const READ_CHUNK: u64 = 4 << 20;
/// Ranged GETs a large read keeps in flight.
const READ_AHEAD: usize = 4;
/// Read-ahead buffers server-wide: four large reads at once go in parallel ranges; more
/// stream with one GET each, as small reads do.
const READ_BUDGET: usize = 16;
/// Part buffers server-wide, unless configured: enough for eight large transfers at once.
pub const DEFAULT_PART_BUDGET: usize = 128 << 20;

/// A [`BlobStore`] on an object store.
#[derive(Clone, Debug)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    /// The same store's URL signer, when it has one (S3, Azure), for presigned downloads.
    signer: Option<Arc<dyn Signer>>,
    prefix: String,
    parts: Arc<Semaphore>,
    /// Permits for read-ahead chunks ([`READ_BUDGET`]).
    reads: Arc<Semaphore>,
    /// The largest object published by a server-side copy ([`MAX_COPY`]; smaller in tests).
    max_copy: u64,
}

/// One piece of an upload session: bytes of the session from `offset` on, in the object at
/// `path` — a piece written in place (`data/`) or an attached part (then `marker` says so).
#[derive(Clone, Debug)]
struct Piece {
    offset: u64,
    size: u64,
    path: Path,
    marker: Option<Path>,
}

impl ObjectBlobStore {
    /// Open the store a `--blobs` URL names, with credentials from the environment, and
    /// check that it answers.
    pub async fn open(url: &ObjectStoreUrl) -> Result<Self, StorageError> {
        // HTTPS to the store needs a TLS provider; the server installs the same one (a
        // second install is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = |e: object_store::Error| StorageError::Config(e.to_string());
        let (store, signer, prefix): (Arc<dyn ObjectStore>, Arc<dyn Signer>, _) = match url {
            ObjectStoreUrl::S3 { bucket, prefix, options } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key = k.parse().map_err(config)?;
                    b = b.with_config(key, v);
                }
                let s3 = Arc::new(b.build().map_err(config)?);
                (s3.clone(), s3, prefix.clone())
            }
            ObjectStoreUrl::Azure { account, container, prefix, options } => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_account(account)
                    .with_container_name(container);
                for (k, v) in options {
                    let key = k.parse().map_err(config)?;
                    b = b.with_config(key, v);
                }
                let azure = Arc::new(b.build().map_err(config)?);
                (azure.clone(), azure, prefix.clone())
            }
        };
        let mut this = Self::with_store(store, &prefix, DEFAULT_PART_BUDGET);
        this.signer = Some(signer);
        // A wrong endpoint, bucket or credential is reported at start, not on the first push.
        this.store
            .list_with_delimiter(Some(&this.path("blobs")))
            .await
            .map_err(|e| StorageError::Config(format!("the blob store doesn't answer: {e}")))?;
        Ok(this)
    }

    /// A store on any `object_store` implementation, keeping objects under `prefix`, with
    /// `part_budget` bytes for part buffers server-wide.
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str, part_budget: usize) -> Self {
        let permits = (part_budget / PART).max(2);
        ObjectBlobStore {
            store,
            signer: None,
            prefix: prefix.trim_matches('/').to_owned(),
            parts: Arc::new(Semaphore::new(permits)),
            reads: Arc::new(Semaphore::new(READ_BUDGET)),
            max_copy: MAX_COPY,
        }
    }

    fn path(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.path(&format!("blobs/{}/{}/{hex}", digest.algorithm().as_str(), &hex[..2]))
    }

    fn blobs_root(&self) -> Path {
        self.path("blobs")
    }

    fn uploads_root(&self) -> Path {
        self.path("uploads")
    }

    fn session_dir(&self, id: Uuid) -> Path {
        self.path(&format!("uploads/{id}"))
    }

    fn marker_path(&self, id: Uuid, offset: u64, part: Uuid) -> Path {
        self.path(&format!("uploads/{id}/attached/{offset:020}.{part}"))
    }

    fn piece_path(&self, id: Uuid, offset: u64) -> Path {
        self.path(&format!("uploads/{id}/data/{offset:020}"))
    }

    fn part_path(&self, id: Uuid, part: Uuid) -> Path {
        self.path(&format!("uploads/{id}/parts/{part}"))
    }

    /// A session's pieces in order: those written in place and the parts attached, from
    /// one listing of the session.
    async fn pieces(&self, id: Uuid) -> Result<Vec<Piece>, StorageError> {
        let objects: Vec<_> = self
            .store
            .list(Some(&self.session_dir(id)))
            .try_collect()
            .await
            .map_err(unavailable)?;
        let part_sizes: std::collections::HashMap<String, u64> = objects
            .iter()
            .filter_map(|m| {
                let parts: Vec<_> = m.location.parts().collect();
                match parts.as_slice() {
                    [.., kind, name] if kind.as_ref() == "parts" => {
                        Some((name.as_ref().to_owned(), m.size))
                    }
                    _ => None,
                }
            })
            .collect();
        let part_size = |part: &str| part_sizes.get(part).copied();
        let mut pieces = Vec::new();
        for meta in &objects {
            let parts: Vec<_> = meta.location.parts().collect();
            let [.., kind, name] = parts.as_slice() else { continue };
            match kind.as_ref() {
                "data" => {
                    if let Ok(offset) = name.as_ref().parse::<u64>() {
                        let path = meta.location.clone();
                        pieces.push(Piece { offset, size: meta.size, path, marker: None });
                    }
                }
                "attached" => {
                    let Some((offset, part)) = name.as_ref().split_once('.') else { continue };
                    let (Ok(offset), Ok(part)) = (offset.parse::<u64>(), Uuid::parse_str(part))
                    else {
                        continue;
                    };
                    // A marker whose part is gone (removed by hand) holds nothing: the
                    // session then reads as missing those bytes, which `layout` reports.
                    if let Some(size) = part_size(&part.to_string()) {
                        let path = self.part_path(id, part);
                        let marker = Some(meta.location.clone());
                        pieces.push(Piece { offset, size, path, marker });
                    }
                }
                _ => {}
            }
        }
        pieces.sort_by_key(|p| p.offset);
        Ok(pieces)
    }

    /// Delete a piece (an attached part with its marker, the marker first).
    async fn delete_piece(&self, piece: &Piece) -> Result<(), StorageError> {
        if let Some(marker) = &piece.marker {
            delete_quietly(&*self.store, marker).await?;
        }
        delete_quietly(&*self.store, &piece.path).await
    }

    /// Drop the pieces of a session that start at or after `offset`.
    async fn drop_pieces_from(&self, id: Uuid, offset: u64) -> Result<(), StorageError> {
        for piece in self.pieces(id).await? {
            if piece.offset >= offset {
                self.delete_piece(&piece).await?;
            }
        }
        Ok(())
    }

    /// The ranges of objects making up a session's first `len` bytes, and whether they are
    /// one object holding exactly those bytes (then a copy publishes it).
    async fn layout(
        &self,
        id: Uuid,
        len: u64,
    ) -> Result<(Vec<(Path, Range<u64>)>, bool), StorageError> {
        let pieces = self.pieces(id).await?;
        let whole = matches!(pieces.as_slice(), [p] if p.offset == 0 && p.size == len);
        let mut out = Vec::new();
        let mut at = 0u64;
        for (i, piece) in pieces.iter().enumerate() {
            if at >= len {
                break;
            }
            let start = piece.offset;
            if start > at {
                return Err(StorageError::Corrupt(format!(
                    "upload {id} has no bytes at {at} (next piece at {start})"
                )));
            }
            let next = pieces.get(i + 1).map_or(u64::MAX, |p| p.offset);
            let end = (start + piece.size).min(next).min(len);
            if end > at {
                out.push((piece.path.clone(), at - start..end - start));
                at = end;
            }
        }
        if at < len {
            return Err(StorageError::Corrupt(format!("upload {id} holds {at} of {len} bytes")));
        }
        Ok((out, whole))
    }

    /// Stream `data` into one new object at `path`. Returns the bytes written and the
    /// input's failure, if it failed (the object then holds what came before).
    async fn write_object(
        &self,
        path: &Path,
        data: ByteStream,
    ) -> Result<(u64, Option<io::Error>), StorageError> {
        let mut writer = Box::new(self.writer(path.clone()));
        let written = match writer.write(data).await {
            Ok(written) => written,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e);
            }
        };
        // An input that failed before its first byte leaves no object at all.
        if written.len > 0 || written.input_error.is_none() {
            writer.publish().await?;
        } else {
            writer.abort().await?;
        }
        Ok((written.len, written.input_error))
    }

    /// Read `range` of the object at `path` as [`READ_AHEAD`] ranged GETs in flight at a
    /// time, in order, holding `permits` (their buffers' share of the budget) until the
    /// stream is dropped. One GET streams at the speed of one request's round trips; object
    /// stores serve several at once (s3s-fs: 3-4x as fast with four).
    async fn read_ahead(
        &self,
        path: Path,
        range: ByteRange,
        permits: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Option<ByteStream>, StorageError> {
        let store = self.store.clone();
        let end = range.end.saturating_add(1);
        let mut chunks = futures::stream::iter((range.start..end).step_by(READ_CHUNK as usize))
            .map(move |at| {
                let (store, path) = (store.clone(), path.clone());
                async move { store.get_range(&path, at..(at + READ_CHUNK).min(end)).await }
            })
            .buffered(READ_AHEAD);
        // The first chunk is awaited here, so a missing blob is `None` rather than a
        // stream that fails after the response began.
        let first = match chunks.next().await {
            Some(Ok(bytes)) => bytes,
            Some(Err(object_store::Error::NotFound { .. })) => return Ok(None),
            Some(Err(e)) => return Err(unavailable(e)),
            None => bytes::Bytes::new(),
        };
        let rest = chunks.map(move |chunk| {
            // The permits go when the stream does (finished, or the client went away).
            let _held = &permits;
            chunk.map_err(io_error)
        });
        Ok(Some(Box::pin(futures::stream::once(async { Ok(first) }).chain(rest))))
    }

    /// A writer of one new object at `path`, readable once published.
    fn writer(&self, path: Path) -> ObjectBlobWriter {
        ObjectBlobWriter {
            store: self.store.clone(),
            path,
            parts: self.parts.clone(),
            head: BytesMut::new(),
            multipart: None,
            len: 0,
        }
    }
}

/// The store failed or didn't answer: the caller may try again later (HTTP 503).
fn unavailable(e: object_store::Error) -> StorageError {
    StorageError::Busy(format!("blob store: {e}"))
}

async fn delete_quietly(store: &dyn ObjectStore, path: &Path) -> Result<(), StorageError> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

fn io_error(e: object_store::Error) -> io::Error {
    io::Error::other(format!("blob store: {e}"))
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<ByteStream>, StorageError> {
        if let Some(r) = range.filter(|r| r.len() > 2 * READ_CHUNK)
            && let Ok(permits) = self.reads.clone().try_acquire_many_owned(READ_AHEAD as u32)
        {
            return self.read_ahead(self.blob_path(digest), r, permits).await;
        }
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end.saturating_add(1))),
            ..GetOptions::default()
        };
        match self.store.get_opts(&self.blob_path(digest), options).await {
            Ok(got) => Ok(Some(Box::pin(got.into_stream().map_err(io_error)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        delete_quietly(&*self.store, &self.blob_path(digest)).await
    }

    async fn list(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        // Object stores list keys in byte order, and `blobs/<alg>/<2 hex>/<hex>` orders as
        // digests do; the listing starts after `after`'s key (S3's start-after).
        let root = self.blobs_root();
        let offset = after.map(|d| self.blob_path(d));
        let listing = match &offset {
            Some(offset) => self.store.list_with_offset(Some(&root), offset),
            None => self.store.list(Some(&root)),
        };
        listing
            .map_err(unavailable)
            // Checked here too: a server that ignores the offset (Azurite ignores Azure's
            // `startFrom`) would otherwise hand every page the same first blobs.
            .try_filter(move |meta| {
                let after_offset = offset.as_ref().is_none_or(|o| meta.location > *o);
                std::future::ready(after_offset)
            })
            .try_filter_map(|meta| async move {
                // blobs/<algorithm>/<2 hex>/<hex>
                let parts: Vec<_> = meta.location.parts().collect();
                let [.., algorithm, _, hex] = parts.as_slice() else { return Ok(None) };
                let digest = Digest::from_str(&format!("{}:{}", algorithm.as_ref(), hex.as_ref()));
                Ok(digest.ok().map(|digest| StoredBlob {
                    digest,
                    size: meta.size,
                    modified: meta.last_modified.into(),
                }))
            })
            .take(limit)
            .try_collect()
            .await
    }

    async fn create_upload(&self, _id: Uuid) -> Result<(), StorageError> {
        // Nothing to make: a session with no pieces reads as empty.
        Ok(())
    }

    async fn append_upload(
        &self,
        id: Uuid,
        offset: u64,
        data: ByteStream,
    ) -> Result<Appended, StorageError> {
        self.drop_pieces_from(id, offset).await?;
        let (written, input_error) = self.write_object(&self.piece_path(id, offset), data).await?;
        Ok(Appended { len: offset + written, input_error })
    }

    async fn write_part(&self, id: Uuid, data: ByteStream) -> Result<PartWritten, StorageError> {
        let part = Uuid::new_v4();
        let (len, input_error) = self.write_object(&self.part_path(id, part), data).await?;
        Ok(PartWritten { part: Part { id: part, len }, input_error })
    }

    async fn attach_part(&self, id: Uuid, offset: u64, part: &Part) -> Result<u64, StorageError> {
        self.drop_pieces_from(id, offset).await?;
        if part.len > 0 {
            // A marker, not a rename: no bytes move, however large the part.
            self.store
                .put(&self.marker_path(id, offset, part.id), PutPayload::default())
                .await
                .map_err(unavailable)?;
        } else {
            delete_quietly(&*self.store, &self.part_path(id, part.id)).await?;
        }
        Ok(offset + part.len)
    }

    async fn drop_part(&self, id: Uuid, part: Uuid) -> Result<(), StorageError> {
        delete_quietly(&*self.store, &self.part_path(id, part)).await
    }

    async fn commit_upload(&self, id: Uuid, len: u64, digest: &Digest) -> Result<(), StorageError> {
        let target = self.blob_path(digest);
        if self.stat(digest).await?.is_some() {
            return self.abort_upload(id).await;
        }
        let (layout, whole) = self.layout(id, len).await?;
        match layout.as_slice() {
            [] => {
                self.store.put(&target, PutPayload::default()).await.map_err(unavailable)?;
            }
            // The common case, a session written in one go: a server-side copy (up to the
            // store's limit on one; beyond it the bytes are streamed into the blob).
            [(path, _)] if whole && len <= self.max_copy => {
                self.store.copy(path, &target).await.map_err(unavailable)?;
            }
            _ => {
                // Pieces (or a piece with bytes past `len`): stream them into the blob, the
                // same bounded way a push streams in. Never hashed again: the caller has.
                let store = self.store.clone();
                let reads = futures::stream::iter(layout)
                    .then(move |(path, range)| {
                        let store = store.clone();
                        async move {
                            let got = store
                                .get_opts(
                                    &path,
                                    GetOptions {
                                        range: Some(GetRange::Bounded(range)),
                                        ..GetOptions::default()
                                    },
                                )
                                .await
                                .map_err(io_error)?;
                            Ok::<_, io::Error>(got.into_stream().map_err(io_error))
                        }
                    })
                    .try_flatten();
                let (written, input_error) = self.write_object(&target, Box::pin(reads)).await?;
                if let Some(e) = input_error {
                    // A piece couldn't be read: the blob written holds less than it should.
                    delete_quietly(&*self.store, &target).await?;
                    return Err(StorageError::Busy(format!(
                        "blob store: reading upload {id}: {e}"
                    )));
                }
                if written != len {
                    delete_quietly(&*self.store, &target).await?;
                    return Err(StorageError::Corrupt(format!(
                        "upload {id}: composed {written} of {len} bytes"
                    )));
                }
            }
        }
        self.abort_upload(id).await
    }

    async fn read_probe(&self, id: Uuid) -> Result<Option<bytes::Bytes>, StorageError> {
        let got = self.store.get(&self.piece_path(id, 0)).await.map_err(unavailable)?;
        Ok(Some(got.bytes().await.map_err(unavailable)?))
    }

    async fn abort_upload(&self, id: Uuid) -> Result<(), StorageError> {
        for piece in self.pieces(id).await? {
            self.delete_piece(&piece).await?;
        }
        Ok(())
    }

    async fn list_uploads(&self) -> Result<Vec<StoredUpload>, StorageError> {
        let objects: Vec<_> =
            self.store.list(Some(&self.uploads_root())).try_collect().await.map_err(unavailable)?;
        // Parts attached to their session are its data, not loose parts.
        let attached: std::collections::HashSet<String> = objects
            .iter()
            .filter_map(|m| {
                let parts: Vec<_> = m.location.parts().collect();
                match parts.as_slice() {
                    [.., kind, name] if kind.as_ref() == "attached" => {
                        name.as_ref().split_once('.').map(|(_, part)| part.to_owned())
                    }
                    _ => None,
                }
            })
            .collect();
        let mut out: Vec<StoredUpload> = Vec::new();
        for meta in objects {
            // uploads/<id>/data/<offset>, …/attached/<offset>.<part> or …/parts/<part>
            let parts: Vec<_> = meta.location.parts().collect();
            let [.., id, kind, name] = parts.as_slice() else { continue };
            let Ok(id) = Uuid::parse_str(id.as_ref()) else { continue };
            let modified = meta.last_modified.into();
            let loose_part = kind.as_ref() == "parts" && !attached.contains(name.as_ref());
            if loose_part {
                if let Ok(part) = Uuid::parse_str(name.as_ref()) {
                    out.push(StoredUpload { id, part: Some(part), modified });
                }
                continue;
            }
            if !["data", "attached", "parts"].contains(&kind.as_ref()) {
                continue;
            }
            match out.iter_mut().find(|u| u.id == id && u.part.is_none()) {
                Some(u) => u.modified = u.modified.max(modified),
                None => out.push(StoredUpload { id, part: None, modified }),
            }
        }
        Ok(out)
    }

    async fn write_blob(&self, digest: &Digest) -> Result<Box<dyn BlobWriter>, StorageError> {
        Ok(Box::new(self.writer(self.blob_path(digest))))
    }

    async fn download_url(
        &self,
        digest: &Digest,
        valid_for: Duration,
    ) -> Result<Option<String>, StorageError> {
        let Some(signer) = &self.signer else { return Ok(None) };
        // Signing is local (an HMAC of the request with the store's key): no round trip.
        let url = signer
            .signed_url(object_store::signer::Method::GET, &self.blob_path(digest), valid_for)
            .await
            .map_err(unavailable)?;
        Ok(Some(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutOptions, PutResult,
    };

    use super::*;

    /// An in-memory store that refuses to copy an object larger than `max` in one request —
    /// S3's CopyObject limit (5 GiB), scaled down — and counts the copies it made.
    #[derive(Debug)]
    struct CopyLimited {
        inner: InMemory,
        max: u64,
        copies: AtomicU64,
    }

    impl std::fmt::Display for CopyLimited {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "CopyLimited({})", self.max)
        }
    }

    #[async_trait]
    impl ObjectStore for CopyLimited {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            let size = self.inner.head(from).await?.size;
            if size > self.max {
                return Err(object_store::Error::Generic {
                    store: "CopyLimited",
                    source: format!("{from} is {size} bytes, over the {} a copy takes", self.max)
                        .into(),
                });
            }
            self.copies.fetch_add(1, Ordering::SeqCst);
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn bytes_stream(b: Vec<u8>) -> ByteStream {
        Box::pin(futures::stream::iter([Ok(bytes::Bytes::from(b))]))
    }

    async fn read_all(store: &ObjectBlobStore, d: &Digest) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = store.read(d, None).await.unwrap().unwrap();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    /// A chunk larger than what the store copies at once is attached and committed without
    /// a copy: parts are attached by a marker, and a blob over the limit is composed by
    /// streaming. (On S3, a layer over 5 GiB pushed in one PATCH then PUT.)
    #[tokio::test]
    async fn parts_over_the_copy_limit_are_never_copied() {
        let limited =
            Arc::new(CopyLimited { inner: InMemory::new(), max: 1024, copies: AtomicU64::new(0) });
        let mut store = ObjectBlobStore::with_store(limited.clone(), "p", DEFAULT_PART_BUDGET);
        store.max_copy = limited.max;
        let big: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        for chunks in [vec![big.clone()], vec![big[..3000].to_vec(), big[3000..].to_vec()]] {
            let id = Uuid::new_v4();
            store.create_upload(id).await.unwrap();
            let mut at = 0;
            for chunk in chunks {
                let written = store.write_part(id, bytes_stream(chunk)).await.unwrap();
                at = store.attach_part(id, at, &written.part).await.unwrap();
            }
            let digest = Digest::sha256_of(&big);
            store.commit_upload(id, at, &digest).await.unwrap();
            assert_eq!(read_all(&store, &digest).await, big);
            // Nothing of the session is left, attached parts included.
            assert!(store.list_uploads().await.unwrap().is_empty());
            store.delete(&digest).await.unwrap();
        }
        assert_eq!(limited.copies.load(Ordering::SeqCst), 0, "no copy was asked for");
        // A blob within the limit, in one piece, is still published by one copy.
        let small = b"small enough to copy".to_vec();
        let id = Uuid::new_v4();
        let written = store.write_part(id, bytes_stream(small.clone())).await.unwrap();
        store.attach_part(id, 0, &written.part).await.unwrap();
        let digest = Digest::sha256_of(&small);
        store.commit_upload(id, small.len() as u64, &digest).await.unwrap();
        assert_eq!(read_all(&store, &digest).await, small);
        assert_eq!(limited.copies.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn urls_name_a_store() {
        let s3: ObjectStoreUrl =
            "s3://bucket/some/prefix?endpoint=http%3A%2F%2F127.0.0.1%3A9000&allow_http"
                .parse()
                .unwrap();
        assert_eq!(
            s3,
            ObjectStoreUrl::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into(),
                options: vec![
                    ("endpoint".into(), "http://127.0.0.1:9000".into()),
                    ("allow_http".into(), "true".into())
                ],
            }
        );
        let az: ObjectStoreUrl = "az://acct/container".parse().unwrap();
        assert!(matches!(az, ObjectStoreUrl::Azure { ref prefix, .. } if prefix.is_empty()));
        assert!("az://acct".parse::<ObjectStoreUrl>().is_err());
        assert!("gs://bucket".parse::<ObjectStoreUrl>().is_err());
        assert!("bucket".parse::<ObjectStoreUrl>().is_err());
        assert!("s3://b?endpoint=%zz".parse::<ObjectStoreUrl>().is_err());
        let secret = "s3://b?secret_access_key=hunter2".parse::<ObjectStoreUrl>().unwrap_err();
        assert!(secret.contains("environment") && !secret.contains("hunter2"), "{secret}");
        assert!("az://a/c?account_key=x".parse::<ObjectStoreUrl>().is_err());
    }
}
