use std::io;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use uuid::Uuid;
use wharf_oci::Digest;

use crate::StorageError;

/// What the ids of health probes' upload sessions start with (`/readyz` writes one per
/// probe round): version-8 UUIDs, while clients' uploads are version 4, so never one.
const PROBE_MARK: [u8; 6] = *b"health";

/// A fresh id for a health probe's upload session.
pub fn probe_upload_id() -> Uuid {
    let mut bytes = *Uuid::new_v4().as_bytes();
    bytes[..PROBE_MARK.len()].copy_from_slice(&PROBE_MARK);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Whether `id` is a health probe's upload session (GC leaves a live one alone).
pub fn is_probe_upload(id: &Uuid) -> bool {
    id.get_version_num() == 8 && id.as_bytes().starts_with(&PROBE_MARK)
}

/// A stream of bytes in or out of a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// An inclusive byte range `start..=end` of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Bytes in the range (`end >= start` holds for every range the registry builds).
    pub fn len(&self) -> u64 {
        (self.end - self.start).saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What [`BlobStore::append_upload`] did.
#[derive(Debug)]
pub struct Appended {
    /// The upload's length now, all of it durable.
    pub len: u64,
    /// Set when the input stream failed before its end.
    pub input_error: Option<std::io::Error>,
}

/// A blob found by [`BlobStore::list`].
#[derive(Clone, Debug)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
}

/// An upload's data found by [`BlobStore::list_uploads`]: the session's own bytes, or one
/// of its parts not attached (yet, or ever: a chunk whose request broke off).
#[derive(Clone, Debug)]
pub struct StoredUpload {
    pub id: Uuid,
    pub part: Option<Uuid>,
    pub modified: SystemTime,
}

/// A chunk written beside an upload session by [`BlobStore::write_part`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub id: Uuid,
    pub len: u64,
}

/// What [`BlobStore::write_part`] did.
#[derive(Debug)]
pub struct PartWritten {
    pub part: Part,
    /// Set when the input stream failed before its end (the part holds what came before).
    pub input_error: Option<std::io::Error>,
}

/// A blob being written under its name, known up front (a monolithic push names its
/// digest): nothing is readable until [`publish`](Self::publish), and a writer dropped or
/// aborted leaves nothing readable. The caller hashes what it writes and publishes only a
/// match — so an object store can write straight to the blob's key (a multipart upload,
/// completed on publish) instead of to an upload and then copying it.
#[async_trait]
pub trait BlobWriter: Send {
    /// Write `data` after what was written so far. When `data` fails part-way, what it
    /// yielded is kept and the failure reported in [`Appended::input_error`].
    async fn write(&mut self, data: ByteStream) -> Result<Appended, StorageError>;
    /// Make the blob readable under its digest, durably.
    async fn publish(self: Box<Self>) -> Result<(), StorageError>;
    /// Drop what was written.
    async fn abort(self: Box<Self>) -> Result<(), StorageError>;
}

/// Content-addressed blob storage with resumable upload sessions.
///
/// Invariant every implementation keeps: a blob is readable under a digest only after
/// [`commit_upload`](Self::commit_upload) has made it durable and published it
/// atomically, so a crash never leaves a readable blob whose bytes are not the ones
/// committed under that name. The caller verifies the digest before committing.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a stored blob, or `None` if it isn't stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// Read a blob, or a range of it (the caller checks the range against the size).
    ///
    /// A consumer lets go of each chunk it was given: a store may hand out the next chunk
    /// only once few earlier ones are still alive (the filesystem's does — that is what
    /// bounds a client that stops reading), so a consumer that keeps chunks rather than
    /// copying their bytes out stalls its own stream.
    async fn read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<ByteStream>, StorageError>;

    /// Remove a blob. Removing a missing blob is not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Stored blobs in digest order after `after`, at most `limit`: garbage collection
    /// looks at a page per pass, so that a pass's cost doesn't grow with the store.
    async fn list(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError>;

    /// Start an empty upload. (An empty upload needn't be durable: one lost to a power cut
    /// reads as empty when it is attached to, appended to at 0, or committed empty.)
    async fn create_upload(&self, id: Uuid) -> Result<(), StorageError>;

    /// Append `data` to an upload whose recorded length is `offset`, durably (the bytes are
    /// on stable storage when this returns). Bytes past
    /// `offset` left by an earlier, interrupted append are dropped first. When `data` fails
    /// part-way, every byte it yielded before failing is still appended, and the failure is
    /// reported in [`Appended::input_error`]; the caller keeps or discards them.
    async fn append_upload(
        &self,
        id: Uuid,
        offset: u64,
        data: ByteStream,
    ) -> Result<Appended, StorageError>;

    /// Write a chunk of session `id` beside it, durably: the session doesn't change until
    /// [`attach_part`](Self::attach_part). Chunks of one session may be written at the same
    /// time by different requests; the caller attaches at most one at each offset.
    async fn write_part(&self, id: Uuid, data: ByteStream) -> Result<PartWritten, StorageError>;

    /// Make `part` the session's bytes from `offset` on (`offset` is the session's recorded
    /// length; bytes past it, left by an attach that was never recorded, are dropped).
    /// Durable when it returns; the part is consumed. The session's new length.
    async fn attach_part(&self, id: Uuid, offset: u64, part: &Part) -> Result<u64, StorageError>;

    /// Drop a part that won't be attached. Dropping a missing part is not an error.
    async fn drop_part(&self, id: Uuid, part: Uuid) -> Result<(), StorageError>;

    /// Publish an upload of `len` bytes as the blob `digest` (already verified by the
    /// caller). If the blob is already stored, the upload is just dropped.
    async fn commit_upload(&self, id: Uuid, len: u64, digest: &Digest) -> Result<(), StorageError>;

    /// Drop an upload's data. Dropping a missing upload is not an error.
    async fn abort_upload(&self, id: Uuid) -> Result<(), StorageError>;

    /// Every upload and part whose data is stored (for cleaning up abandoned ones).
    async fn list_uploads(&self) -> Result<Vec<StoredUpload>, StorageError>;

    /// What a health probe's upload session `id` holds (the probe appends a few bytes at 0
    /// and reads them back), or `None` from a store that can't read an upload's bytes (the
    /// probe then trusts the length the append reported).
    async fn read_probe(&self, id: Uuid) -> Result<Option<Bytes>, StorageError> {
        let _ = id;
        Ok(None)
    }

    /// Start writing the blob `digest` in one go (see [`BlobWriter`]).
    async fn write_blob(&self, digest: &Digest) -> Result<Box<dyn BlobWriter>, StorageError>;

    /// A URL a client may GET the blob from directly for `valid_for`, without credentials
    /// of its own (a presigned URL), if the store can make one; `None` if it can't (the
    /// server then streams the bytes itself). It doesn't check that the blob is stored.
    async fn download_url(
        &self,
        digest: &Digest,
        valid_for: Duration,
    ) -> Result<Option<String>, StorageError> {
        let _ = (digest, valid_for);
        Ok(None)
    }
}
