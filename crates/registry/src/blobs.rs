//! Blobs: reads, deletes, mounts, and the three ways to push one (monolithic, chunked
//! upload sessions, cross-repository mount).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use uuid::Uuid;
use wharf_oci::{Digest, RepositoryName, Sha256Hasher};
use wharf_storage::{ByteRange, ByteStream, RegistryId, RepoKey, UploadRecord, now_millis};

use crate::hashing::{finish, hashing};
use crate::locks::Held;
use crate::{RegistryError, RegistryService};

/// A blob being read: its full size, the range served (if one was asked), the bytes.
pub struct BlobRead {
    pub size: u64,
    pub range: Option<ByteRange>,
    pub stream: ByteStream,
}

/// Blob downloads handed to the blob store — a `307` to a URL the store signed — rather
/// than streamed through the server (see [`RegistryService::with_download_redirects`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadRedirects {
    /// Blobs smaller than this are streamed: for them a redirect costs the client a round
    /// trip more than it saves the server.
    pub min_size: u64,
    /// How long a redirect's URL works.
    pub valid_for: Duration,
}

/// How a blob GET is answered.
pub enum BlobDownload {
    /// Send the client to `url` (presigned: it needs no credentials) for the blob's `size`
    /// bytes.
    Redirect { url: String, size: u64 },
    /// Stream the bytes.
    Bytes(BlobRead),
}

/// Where an upload session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: Uuid,
    /// Bytes received so far.
    pub size: u64,
}

/// A requested byte range of a blob, as a `Range` header asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// From `start` to `end` inclusive, or to the end of the blob.
    From { start: u64, end: Option<u64> },
    /// The last `n` bytes.
    Suffix(u64),
}

/// The bytes of a `size`-byte blob that `range` asks for, or `RangeNotSatisfiable`.
fn satisfiable(range: Option<RangeRequest>, size: u64) -> Result<Option<ByteRange>, RegistryError> {
    Ok(match range {
        None => None,
        Some(RangeRequest::From { start, end }) => {
            let end = end.unwrap_or(u64::MAX).min(size.saturating_sub(1));
            if start >= size || start > end {
                return Err(RegistryError::RangeNotSatisfiable { size });
            }
            Some(ByteRange { start, end })
        }
        Some(RangeRequest::Suffix(n)) => {
            if n == 0 || size == 0 {
                return Err(RegistryError::RangeNotSatisfiable { size });
            }
            Some(ByteRange { start: size.saturating_sub(n), end: size - 1 })
        }
    })
}

fn supported(digest: &Digest) -> Result<(), RegistryError> {
    if digest.is_supported() {
        Ok(())
    } else {
        Err(RegistryError::Unsupported(format!(
            "digest algorithm {} is not supported; use sha256",
            digest.algorithm().as_str()
        )))
    }
}

impl RegistryService {
    /// The size of a blob visible in `repo`.
    pub async fn stat_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<u64, RegistryError> {
        self.meta
            .linked_blob_size(repo, digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    /// Read a blob visible in `repo`, whole or a range of it.
    pub async fn read_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead, RegistryError> {
        let size = self.stat_blob(repo, digest).await?;
        let range = satisfiable(range, size)?;
        self.read_sized(digest, size, range).await
    }

    /// Answer a client's GET of a blob visible in `repo`: a redirect to the blob store when
    /// redirects are on and the blob is large enough, else its bytes (whole or a range).
    pub async fn download_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobDownload, RegistryError> {
        let size = self.stat_blob(repo, digest).await?;
        // A range the blob can't satisfy is a 416 here, not a redirect to the store's error.
        let range = satisfiable(range, size)?;
        if let Some(redirects) = self.redirects.filter(|r| size >= r.min_size) {
            match self.blobs.download_url(digest, redirects.valid_for).await {
                Ok(Some(url)) => return Ok(BlobDownload::Redirect { url, size }),
                Ok(None) => {}
                // The bytes can still be served from here.
                Err(e) => tracing::warn!(%digest, error = %e, "can't sign a download URL"),
            }
        }
        Ok(BlobDownload::Bytes(self.read_sized(digest, size, range).await?))
    }

    /// Read a blob of `size` bytes, whole or `range` of it (checked against the size).
    async fn read_sized(
        &self,
        digest: &Digest,
        size: u64,
        range: Option<ByteRange>,
    ) -> Result<BlobRead, RegistryError> {
        // The store is told which bytes, whole blob or not: knowing the length up front, an
        // object store can fetch a large read in parallel ranges.
        let bytes = range.or((size > 0).then(|| ByteRange { start: 0, end: size - 1 }));
        let stream = self
            .blobs
            .read(digest, bytes)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        Ok(BlobRead { size, range, stream })
    }

    /// If the server stores a blob (in any repository of any registry), restart its GC
    /// grace period and return its size. Having the bytes is not having access to them:
    /// an import may skip writing them, not proving the source serves them.
    pub async fn retain_blob(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        if !self.meta.touch_blob(digest).await? {
            return Ok(None);
        }
        Ok(self.meta.blob_size(digest).await?)
    }

    /// If a blob is visible in some repository of `registry`, restart its GC grace period
    /// and return its size: an import into that registry may link it without a download.
    pub async fn retain_blob_in(
        &self,
        registry: RegistryId,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        match self.meta.blob_in_registry(registry, digest).await? {
            Some(size) => {
                self.meta.touch_blob(digest).await?;
                Ok(Some(size))
            }
            None => Ok(None),
        }
    }

    /// Remove a blob from a repository. Its bytes stay while anything else uses them.
    pub async fn delete_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<(), RegistryError> {
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }

    /// Make a blob of repository `from` (same registry) visible in `repo` without copying.
    /// `false` when `from` doesn't have it: the caller then starts a normal upload.
    pub async fn mount_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        from: &RepositoryName,
    ) -> Result<bool, RegistryError> {
        let source = RepoKey { registry: repo.registry, name: from.clone() };
        if self.meta.linked_blob_size(&source, digest).await?.is_none() {
            return Ok(false);
        }
        Ok(self.meta.link_blob(repo, digest).await?)
    }

    /// Push a whole blob in one request (`POST ?digest=` or a `PUT` with the body).
    pub async fn put_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<(), RegistryError> {
        supported(digest)?;
        if self.meta.touch_blob(digest).await? {
            return self.put_known_blob(repo, digest, body).await;
        }
        self.put_new_blob(repo, digest, body).await
    }

    /// A blob whose digest is known before its bytes arrive goes straight under its name
    /// (`BlobStore::write_blob`: no upload session, no copy afterwards), hashed as it
    /// streams and published only if it matches.
    async fn put_new_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<(), RegistryError> {
        let hasher = Arc::new(Mutex::new(Sha256Hasher::new()));
        let _publishing = self.locks.publishing.start(digest);
        let mut writer = self.blobs.write_blob(digest).await?;
        let written = match writer.write(hashing(body, hasher.clone())).await {
            Ok(written) => written,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e.into());
            }
        };
        let hasher = finish(hasher);
        if let Some(e) = written.input_error {
            writer.abort().await?;
            return Err(RegistryError::BodyIncomplete(e.to_string()));
        }
        let actual = hasher.digest();
        if &actual != digest || hasher.len() != written.len {
            writer.abort().await?;
            return Err(RegistryError::DigestMismatch(format!(
                "{digest} was claimed, the {} bytes received hash to {actual}",
                hasher.len()
            )));
        }
        // The bytes go under their name outside any lock (completing a large multipart
        // upload takes a while); the row is what makes them a blob, under the lock.
        writer.publish().await?;
        self.record_blob(Some(repo), digest, written.len).await
    }

    /// Under the digest's lock (GC deletes under it too): the bytes just stored under
    /// `digest` are still there, and the lock still held (its connection wasn't cut), then
    /// the row that makes them a blob — linked into `repo`, or staged without one.
    async fn record_blob(
        &self,
        repo: Option<&RepoKey>,
        digest: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        let mut guard = self.locks.digest(digest).await?;
        if self.blobs.stat(digest).await? != Some(size) {
            // GC took the bytes between their store and this lock (a stored copy it had
            // found unreferenced): nothing is recorded, the client pushes again.
            return Err(RegistryError::BlobUploadInvalid(
                "the blob was garbage-collected while it was being stored; push it again".into(),
            ));
        }
        guard.verify().await?;
        self.meta.add_blob(digest, size, repo).await?;
        tracing::debug!(%digest, size, "blob committed");
        Ok(())
    }

    /// A monolithic push of a blob the server already stores: the bytes are hashed (the
    /// client must prove it has them before the blob becomes visible in its repository)
    /// but not written again.
    async fn put_known_blob(
        &self,
        repo: &RepoKey,
        digest: &Digest,
        mut body: ByteStream,
    ) -> Result<(), RegistryError> {
        let mut hasher = Sha256Hasher::new();
        while let Some(chunk) = body.next().await {
            hasher.update(&chunk.map_err(|e| RegistryError::BodyIncomplete(e.to_string()))?);
        }
        let actual = hasher.digest();
        if &actual != digest {
            return Err(RegistryError::DigestMismatch(format!(
                "{digest} was claimed, the {} bytes received hash to {actual}",
                hasher.len()
            )));
        }
        let mut guard = self.locks.digest(digest).await?;
        // The touch above kept GC away for a grace period; check it still holds.
        match (self.meta.blob_size(digest).await?, self.blobs.stat(digest).await?) {
            (Some(size), Some(_)) if size == hasher.len() => {
                guard.verify().await?;
                self.meta.add_blob(digest, size, Some(repo)).await?;
                Ok(())
            }
            _ => Err(RegistryError::BlobUploadInvalid(
                "the blob was garbage-collected while it was being pushed; push it again".into(),
            )),
        }
    }

    /// Start writing a blob whose bytes arrive in one or more streams (a monolithic push,
    /// or an import that resumes broken downloads). Nothing is visible until
    /// [`ingest_finish`](Self::ingest_finish).
    pub async fn ingest_begin(&self) -> Result<Ingest, RegistryError> {
        let id = Uuid::new_v4();
        self.blobs.create_upload(id).await?;
        Ok(Ingest { id, len: 0, hasher: Sha256Hasher::new() })
    }

    /// Append a stream, hashing it on the way. If the stream breaks, what arrived before is
    /// kept (`ingest.len()` says how much) and the stream's error is returned, so that the
    /// caller can resume from there.
    pub async fn ingest_append(
        &self,
        ingest: &mut Ingest,
        body: ByteStream,
    ) -> Result<Option<std::io::Error>, RegistryError> {
        let hasher = Arc::new(Mutex::new(ingest.hasher.clone()));
        let appended =
            self.blobs.append_upload(ingest.id, ingest.len, hashing(body, hasher.clone())).await?;
        let hasher = finish(hasher);
        if hasher.len() != appended.len {
            return Err(corrupt(format!(
                "upload {} holds {} bytes but {} were hashed",
                ingest.id,
                appended.len,
                hasher.len()
            )));
        }
        ingest.len = appended.len;
        ingest.hasher = hasher;
        Ok(appended.input_error)
    }

    /// Verify the bytes against `digest` and publish the blob: linked into `repo`, or only
    /// staged (stored, visible nowhere) without one.
    pub async fn ingest_finish(
        &self,
        ingest: Ingest,
        digest: &Digest,
        repo: Option<&RepoKey>,
    ) -> Result<(), RegistryError> {
        self.commit(repo, ingest.id, ingest.len, ingest.hasher, digest).await
    }

    /// Drop an unfinished ingest.
    pub async fn ingest_abort(&self, ingest: Ingest) -> Result<(), RegistryError> {
        Ok(self.blobs.abort_upload(ingest.id).await?)
    }

    /// Start a chunked upload session.
    pub async fn start_upload(&self, repo: &RepoKey) -> Result<UploadStatus, RegistryError> {
        let id = Uuid::new_v4();
        self.blobs.create_upload(id).await?;
        let now = now_millis();
        let record = UploadRecord {
            id,
            repo: repo.clone(),
            size: 0,
            hash_state: Sha256Hasher::new().save(),
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = self.meta.create_upload(&record).await {
            self.blobs.abort_upload(id).await?;
            return Err(e.into());
        }
        Ok(UploadStatus { id, size: 0 })
    }

    async fn upload_record(&self, repo: &RepoKey, id: Uuid) -> Result<UploadRecord, RegistryError> {
        match self.meta.upload(id).await? {
            Some(u) if &u.repo == repo => Ok(u),
            _ => Err(RegistryError::BlobUploadUnknown),
        }
    }

    pub async fn upload_status(
        &self,
        repo: &RepoKey,
        id: Uuid,
    ) -> Result<UploadStatus, RegistryError> {
        let u = self.upload_record(repo, id).await?;
        Ok(UploadStatus { id, size: u.size })
    }

    /// Append a chunk. `start` is where the client says it begins (`Content-Range`), `len`
    /// how long it says it is. The body is written beside the session without any lock;
    /// then, under the session's lock, it is attached if the session still ends where the
    /// chunk begins (else 416 with the session's size: another chunk got there first). A
    /// chunk that breaks off or has the wrong length changes nothing.
    pub async fn upload_chunk(
        &self,
        repo: &RepoKey,
        id: Uuid,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus, RegistryError> {
        let upload = self.upload_record(repo, id).await?;
        if let Some(start) = start
            && start != upload.size
        {
            return Err(RegistryError::ChunkOutOfOrder { size: upload.size });
        }
        let chunk = self.write_chunk(&upload, body, len).await?;
        let mut session = self.locks.session(&id).await?;
        let size = self.attach_chunk(repo, &upload, chunk, &mut session).await?;
        Ok(UploadStatus { id, size })
    }

    /// Stream a chunk of `upload` into a part of its own, hashing it on from the session's
    /// saved state; checked against the length the client announced.
    async fn write_chunk(
        &self,
        upload: &UploadRecord,
        body: ByteStream,
        announced: Option<u64>,
    ) -> Result<Chunk, RegistryError> {
        let _writing = self.locks.writers.start(upload.id);
        let hasher =
            Sha256Hasher::restore(&upload.hash_state).map_err(|e| corrupt(e.to_string()))?;
        let hasher = Arc::new(Mutex::new(hasher));
        let written = self.blobs.write_part(upload.id, hashing(body, hasher.clone())).await?;
        let hasher = finish(hasher);
        let part = written.part;
        let failure = if let Some(e) = written.input_error {
            Some(RegistryError::BodyIncomplete(e.to_string()))
        } else if upload.size.checked_add(part.len) != Some(hasher.len()) {
            Some(corrupt(format!("a chunk of {} bytes was hashed as {}", part.len, hasher.len())))
        } else {
            announced.filter(|&n| n != part.len).map(|n| {
                RegistryError::SizeInvalid(format!(
                    "chunk was {} bytes, its Content-Range or Content-Length said {n}",
                    part.len
                ))
            })
        };
        if let Some(e) = failure {
            self.blobs.drop_part(upload.id, part.id).await?;
            return Err(e);
        }
        Ok(Chunk { part, hasher })
    }

    /// Under the session's lock: attach `chunk` if the session is still where it was when
    /// the chunk started, and record the new length and hash state. The new length.
    async fn attach_chunk(
        &self,
        repo: &RepoKey,
        started: &UploadRecord,
        chunk: Chunk,
        session: &mut Held<'_, Uuid>,
    ) -> Result<u64, RegistryError> {
        let now = match self.upload_record(repo, started.id).await {
            Ok(now) => now,
            Err(e) => {
                self.blobs.drop_part(started.id, chunk.part.id).await?;
                return Err(e);
            }
        };
        if now.size != started.size {
            self.blobs.drop_part(started.id, chunk.part.id).await?;
            return Err(RegistryError::ChunkOutOfOrder { size: now.size });
        }
        let size = self.blobs.attach_part(started.id, started.size, &chunk.part).await?;
        session.verify().await?;
        self.meta.update_upload(started.id, size, &chunk.hasher.save()).await?;
        Ok(size)
    }

    /// Close an upload (`PUT ?digest=`, optionally with a last chunk) and publish the blob.
    pub async fn finish_upload(
        &self,
        repo: &RepoKey,
        id: Uuid,
        digest: &Digest,
        last_chunk: Option<ByteStream>,
    ) -> Result<(), RegistryError> {
        supported(digest)?;
        let upload = self.upload_record(repo, id).await?;
        if upload.size == 0
            && let Some(body) = last_chunk
        {
            // The whole blob in the closing request (POST, then PUT with the body — what
            // most clients do): written under its name, as a monolithic push is. No session
            // lock while it streams: the blob is checked against its digest on its own, so
            // a chunk a client sent meanwhile can't make it wrong.
            let result = self.put_blob(repo, digest, body).await;
            // Published or refused: the session is over. A body cut short (or the store
            // failing) leaves it, empty, for the client to send the PUT again.
            if !matches!(result, Err(RegistryError::Storage(_) | RegistryError::BodyIncomplete(_)))
            {
                let _session = self.locks.session(&id).await?;
                self.meta.delete_upload(id).await?;
                self.blobs.abort_upload(id).await?;
            }
            return result;
        }
        let chunk = match last_chunk {
            Some(body) => Some(self.write_chunk(&upload, body, None).await?),
            None => None,
        };
        let (size, hasher) = self.close_session(repo, &upload, chunk).await?;
        let hash_state = hasher.save();
        let result = self.commit(Some(repo), id, size, hasher, digest).await;
        if matches!(result, Err(RegistryError::Storage(_))) {
            // The store failed: the session opens again, as it was, for the client to
            // send its PUT again.
            let reopened = UploadRecord { size, hash_state, updated_at: now_millis(), ..upload };
            self.meta.create_upload(&reopened).await?;
        }
        result
    }

    /// Under the session's lock: attach the last chunk (if any), then end the session (its
    /// row goes: a chunk arriving now finds no session) — so that the blob is composed
    /// without holding the lock. What the session holds: its length and hash state.
    async fn close_session(
        &self,
        repo: &RepoKey,
        upload: &UploadRecord,
        chunk: Option<Chunk>,
    ) -> Result<(u64, Sha256Hasher), RegistryError> {
        let mut session = self.locks.session(&upload.id).await?;
        let closed = match chunk {
            Some(chunk) => {
                let hasher = chunk.hasher.clone();
                (self.attach_chunk(repo, upload, chunk, &mut session).await?, hasher)
            }
            None => {
                // Whatever chunk was attached meanwhile is part of the blob.
                let now = self.upload_record(repo, upload.id).await?;
                let hasher =
                    Sha256Hasher::restore(&now.hash_state).map_err(|e| corrupt(e.to_string()))?;
                (now.size, hasher)
            }
        };
        session.verify().await?;
        self.meta.delete_upload(upload.id).await?;
        Ok(closed)
    }

    /// Verify the hash of an upload's bytes against `digest` and publish it, or drop it.
    async fn commit(
        &self,
        repo: Option<&RepoKey>,
        id: Uuid,
        size: u64,
        hasher: Sha256Hasher,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let actual = hasher.digest();
        if &actual != digest {
            self.blobs.abort_upload(id).await?;
            return Err(RegistryError::DigestMismatch(format!(
                "{digest} was claimed, the {size} bytes received hash to {actual}"
            )));
        }
        // A blob GC found unreferenced keeps its row a grace period more; then the bytes go
        // under their name outside any lock (composing a large upload on an object store
        // takes minutes), and the row is recorded under the lock.
        self.meta.touch_blob(digest).await?;
        let _publishing = self.locks.publishing.start(digest);
        self.blobs.commit_upload(id, size, digest).await?;
        self.record_blob(repo, digest, size).await
    }

    /// Abandon an upload session. (Chunks still streaming into it fail when they end.)
    pub async fn cancel_upload(&self, repo: &RepoKey, id: Uuid) -> Result<(), RegistryError> {
        let _session = self.locks.session(&id).await?;
        self.upload_record(repo, id).await?;
        self.meta.delete_upload(id).await?;
        self.blobs.abort_upload(id).await?;
        Ok(())
    }
}

/// A chunk written beside its session, with the hash state after it.
struct Chunk {
    part: wharf_storage::Part,
    hasher: Sha256Hasher,
}

/// A blob being written: see [`RegistryService::ingest_begin`].
pub struct Ingest {
    id: Uuid,
    len: u64,
    hasher: Sha256Hasher,
}

impl Ingest {
    /// Bytes received and stored so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn corrupt(message: String) -> RegistryError {
    RegistryError::Storage(wharf_storage::StorageError::Corrupt(message))
}
