//! The embedded blob store: one file per blob under `blobs/sha256/<2 hex>/<hex>` (the 256
//! shards made durably at open), one per upload session under `uploads/<uuid>`; a chunk is
//! a part beside it (`uploads/<uuid>.<part>.part`) until attached, by rename or copy.
//!
//! Each fsync is needed (`tests/it/powerloss.rs` fails without any one): new directories and
//! their parents ([`create_dir_durably`]), the shards' parent at open, written data
//! ([`BatchWriter::finish`]), an attach (the uploads directory after a rename, the data after
//! a copy), the shard after a commit's rename, a commit cutting off an unrecorded chunk.
//!
//! No transfer owns a thread. Incoming bytes are batched on the async side, each batch
//! written by one short blocking task while the next is received; a client that stops
//! sending holds at most one partial batch, flushed after [`FLUSH_IDLE`]. A chunk is read
//! when the consumer asks for it, from the page cache without blocking (`preadv2(RWF_NOWAIT)`)
//! or else in a blocking task; a consumer that stops reading holds at most two chunks
//! ([`FileChunks`]) and no thread.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::task::AtomicWaker;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use uuid::Uuid;
use wharf_oci::Digest;

use crate::StorageError;
use crate::blob::{
    Appended, BlobStore, BlobWriter, ByteRange, ByteStream, Part, PartWritten, StoredBlob,
    StoredUpload,
};

/// Bytes collected from the request before they are handed to a blocking write: large while
/// the write budget has room, small otherwise (so memory stays bounded however many uploads).
const WRITE_BATCH: usize = 512 << 10;
const SMALL_BATCH: usize = 64 << 10;
const BATCH_UNITS: u32 = (WRITE_BATCH as u64 / UNIT) as u32;
/// Memory for large write batches server-wide, unless configured.
pub const DEFAULT_WRITE_BUDGET: usize = 64 << 20;
/// A partial batch is written out when no more bytes arrived for this long, so that a
/// client that stalls mid-body doesn't keep it in memory.
const FLUSH_IDLE: Duration = Duration::from_millis(50);
/// Start background writeback every this many bytes, so the final fsync has little left.
const WRITEBACK_STEP: u64 = 32 << 20;
/// Bytes read per chunk when serving a blob: large when the read budget allows it, small
/// otherwise (see [`FileChunks`]).
const LARGE_CHUNK: u64 = 256 << 10;
const SMALL_CHUNK: u64 = 16 << 10;
/// The read budget counts 4 KiB units.
const UNIT: u64 = 4 << 10;
const LARGE_UNITS: u32 = (LARGE_CHUNK / UNIT) as u32;
/// Memory for large read chunks server-wide, unless configured.
pub const DEFAULT_READ_BUDGET: usize = 32 << 20;

/// Blobs and uploads as files under one directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    blobs: PathBuf,
    uploads: PathBuf,
    /// Large read chunks in flight, in 4 KiB units.
    read_budget: Arc<Semaphore>,
    /// Large write batches in flight, in 4 KiB units.
    write_budget: Arc<Semaphore>,
}

impl FsBlobStore {
    /// Open (creating if needed) a store rooted at `root`. Directories it creates are made
    /// durable before it returns: a power cut must not take `blobs/` away with every blob.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::open_with(root, DEFAULT_READ_BUDGET, DEFAULT_WRITE_BUDGET).await
    }

    /// Open with `read_budget` bytes for large read chunks across all downloads and
    /// `write_budget` bytes for large write batches across all uploads (beyond them,
    /// transfers go on in small pieces).
    pub async fn open_with(
        root: impl Into<PathBuf>,
        read_budget: usize,
        write_budget: usize,
    ) -> Result<Self, StorageError> {
        let root = root.into();
        let units = |bytes: usize| {
            usize::try_from(bytes as u64 / UNIT).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS)
        };
        let store = FsBlobStore {
            root: root.clone(),
            blobs: root.join("blobs"),
            uploads: root.join("uploads"),
            read_budget: Arc::new(Semaphore::new(units(read_budget))),
            write_budget: Arc::new(Semaphore::new(units(write_budget))),
        };
        let (b, u) = (store.blobs.join("sha256"), store.uploads.clone());
        blocking(move || {
            create_dir_durably(&b)?;
            create_dir_durably(&u)?;
            // Every shard directory exists (durably) before any blob is committed: two
            // commits into a new shard must not race on making it durable.
            let mut created = false;
            for shard in 0..=255u8 {
                let dir = b.join(format!("{shard:02x}"));
                if !dir.exists() {
                    fs::create_dir(&dir)?;
                    created = true;
                }
            }
            if created {
                sync_dir(&b)?;
            }
            Ok(())
        })
        .await?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(digest.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    fn upload_path(&self, id: Uuid) -> PathBuf {
        self.uploads.join(id.to_string())
    }

    /// A chunk of session `id` written beside it: `uploads/<id>.<part>.part`.
    fn part_path(&self, id: Uuid, part: Uuid) -> PathBuf {
        self.uploads.join(format!("{id}.{part}.part"))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(task_failed)?
}

fn task_failed(e: tokio::task::JoinError) -> StorageError {
    StorageError::Io(io::Error::other(format!("storage task failed: {e}")))
}

/// fsync a directory, making the names in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all`, then fsync every directory whose entries changed, from the top down.
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    // Each new directory's parent now holds a new name.
    for d in missing.iter().rev() {
        let parent = d.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        sync_dir(parent)?;
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<ByteStream>, StorageError> {
        let path = self.blob_path(digest);
        let opened = blocking(move || match File::open(&path) {
            Ok(f) => {
                let len = f.metadata()?.len();
                let (start, count) = match range {
                    Some(r) => (r.start, r.len().min(len.saturating_sub(r.start))),
                    None => (0, len),
                };
                Ok(Some((f, start, count)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await?;
        Ok(opened.map(|(file, start, count)| {
            Box::pin(FileChunks::new(file, start, count, self.read_budget.clone())) as ByteStream
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        let root = self.blobs.join("sha256");
        // Only sha256 is stored; its hex orders digests. Shards are read in order from the
        // one `after` is in, each sorted, until `limit` blobs are found.
        let after =
            after.filter(|d| d.algorithm().as_str() == "sha256").map(|d| d.hex().to_owned());
        blocking(move || {
            let mut out = Vec::new();
            let first = after
                .as_deref()
                .map_or(0, |hex| u8::from_str_radix(hex.get(..2).unwrap_or("00"), 16).unwrap_or(0));
            for shard in first..=255u8 {
                let dir = root.join(format!("{shard:02x}"));
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                let mut names: Vec<String> = Vec::new();
                for entry in entries {
                    let name = entry?.file_name();
                    // Anything that isn't a well-formed name is not ours to list.
                    if let Some(hex) = name.to_str()
                        && format!("sha256:{hex}").parse::<Digest>().is_ok()
                        && after.as_deref().is_none_or(|a| hex > a)
                    {
                        names.push(hex.to_owned());
                    }
                }
                names.sort_unstable();
                for hex in names {
                    let Ok(meta) = fs::metadata(dir.join(&hex)) else { continue };
                    let digest = format!("sha256:{hex}")
                        .parse::<Digest>()
                        .map_err(|e| StorageError::Corrupt(format!("blob file {hex}: {e}")))?;
                    out.push(StoredBlob { digest, size: meta.len(), modified: meta.modified()? });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn create_upload(&self, id: Uuid) -> Result<(), StorageError> {
        // Not synced: an empty upload that a power cut takes away is recreated when it is
        // first written to (or committed empty).
        let path = self.upload_path(id);
        blocking(move || {
            OpenOptions::new().write(true).create_new(true).open(path)?;
            Ok(())
        })
        .await
    }

    async fn append_upload(
        &self,
        id: Uuid,
        offset: u64,
        data: ByteStream,
    ) -> Result<Appended, StorageError> {
        let path = self.upload_path(id);
        let file = blocking(move || open_for_append(&path, offset)).await?;
        stream_into(file, offset, data, self.write_budget.clone()).await
    }

    async fn write_part(&self, id: Uuid, data: ByteStream) -> Result<PartWritten, StorageError> {
        let part = Uuid::new_v4();
        let path = self.part_path(id, part);
        let file =
            blocking(move || Ok(OpenOptions::new().write(true).create_new(true).open(path)?))
                .await?;
        let appended = stream_into(file, 0, data, self.write_budget.clone()).await?;
        Ok(PartWritten {
            part: Part { id: part, len: appended.len },
            input_error: appended.input_error,
        })
    }

    async fn attach_part(&self, id: Uuid, offset: u64, part: &Part) -> Result<u64, StorageError> {
        let (base, piece, dir) =
            (self.upload_path(id), self.part_path(id, part.id), self.uploads.clone());
        let len = part.len;
        blocking(move || {
            let held = match fs::metadata(&base) {
                Ok(m) => m.len(),
                // A session's empty file may be gone with a power cut before its first chunk.
                Err(e) if e.kind() == io::ErrorKind::NotFound && offset == 0 => 0,
                Err(e) => return Err(e.into()),
            };
            if held < offset {
                return Err(StorageError::Corrupt(format!(
                    "upload {id} holds {held} bytes, {offset} were recorded"
                )));
            }
            if offset == 0 {
                // The first chunk becomes the session's bytes as they are.
                fs::rename(&piece, &base)?;
                sync_dir(&dir)?;
                return Ok(len);
            }
            // Bytes past `offset` were attached before a crash left them unrecorded.
            let mut out = OpenOptions::new().write(true).open(&base)?;
            out.set_len(offset)?;
            out.seek(SeekFrom::Start(offset))?;
            let mut input = File::open(&piece)?;
            // std copies file to file inside the kernel (copy_file_range) where it can.
            let copied = io::copy(&mut input, &mut out)?;
            if copied != len {
                return Err(StorageError::Corrupt(format!(
                    "part of upload {id} holds {copied} bytes, {len} were written"
                )));
            }
            out.sync_data()?;
            drop(input);
            fs::remove_file(&piece)?;
            Ok(offset + len)
        })
        .await
    }

    async fn drop_part(&self, id: Uuid, part: Uuid) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.part_path(id, part)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn commit_upload(&self, id: Uuid, len: u64, digest: &Digest) -> Result<(), StorageError> {
        let src = self.upload_path(id);
        let dst = self.blob_path(digest);
        blocking(move || {
            let actual = match fs::metadata(&src) {
                Ok(m) => m.len(),
                // Renamed by an earlier attempt whose bookkeeping then failed: done already.
                Err(e) if e.kind() == io::ErrorKind::NotFound && dst.exists() => return Ok(()),
                // An empty upload whose file didn't survive a power cut.
                Err(e) if e.kind() == io::ErrorKind::NotFound && len == 0 => {
                    File::create(&src)?;
                    0
                }
                Err(e) => return Err(e.into()),
            };
            if actual < len {
                return Err(StorageError::Corrupt(format!(
                    "upload {id} holds {actual} bytes, {len} were recorded"
                )));
            }
            if actual > len {
                // A chunk was attached but a crash kept it from being recorded, and the
                // client then finished without it: the blob is the recorded bytes only.
                let f = OpenOptions::new().write(true).open(&src)?;
                f.set_len(len)?;
                f.sync_data()?;
            }
            if dst.exists() {
                // Content-addressed: the stored copy has the same bytes.
                fs::remove_file(&src)?;
                return Ok(());
            }
            let parent =
                dst.parent().ok_or_else(|| StorageError::Corrupt("bad blob path".into()))?;
            // Shards are created at open; one removed by hand comes back, durably.
            create_dir_durably(parent)?;
            fs::rename(&src, &dst)?;
            sync_dir(parent)?;
            Ok(())
        })
        .await
    }

    async fn read_probe(&self, id: Uuid) -> Result<Option<bytes::Bytes>, StorageError> {
        Ok(Some(tokio::fs::read(self.upload_path(id)).await?.into()))
    }

    async fn abort_upload(&self, id: Uuid) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.upload_path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_uploads(&self) -> Result<Vec<StoredUpload>, StorageError> {
        let dir = self.uploads.clone();
        blocking(move || {
            let mut out = Vec::new();
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let (id, part) = match name.strip_suffix(".part").and_then(|n| n.split_once('.')) {
                    Some((id, part)) => (Uuid::parse_str(id).ok(), Uuid::parse_str(part).ok()),
                    None => (Uuid::parse_str(name).ok(), None),
                };
                let Some(id) = id else { continue };
                if name.ends_with(".part") && part.is_none() {
                    continue;
                }
                // Gone since the directory was read (finished, aborted, a health probe's).
                let meta = match entry.metadata() {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    meta => meta?,
                };
                out.push(StoredUpload { id, part, modified: meta.modified()? });
            }
            Ok(out)
        })
        .await
    }

    async fn write_blob(&self, digest: &Digest) -> Result<Box<dyn BlobWriter>, StorageError> {
        // A file written, synced and renamed into place is what a session does already.
        let id = Uuid::new_v4();
        self.create_upload(id).await?;
        Ok(Box::new(FsBlobWriter { store: self.clone(), id, digest: digest.clone(), len: 0 }))
    }
}

fn open_for_append(path: &Path, offset: u64) -> Result<File, StorageError> {
    let mut file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        // An upload's empty file may not have survived a power cut.
        Err(e) if e.kind() == io::ErrorKind::NotFound && offset == 0 => {
            OpenOptions::new().write(true).create(true).truncate(false).open(path)?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StorageError::Corrupt("upload data is missing".into()));
        }
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len < offset {
        return Err(StorageError::Corrupt(format!(
            "upload holds {len} bytes, {offset} were recorded"
        )));
    }
    if len > offset {
        file.set_len(offset)?;
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

/// Write `data` into `file` from `offset` in batches (see [`BatchWriter`]) and make it
/// durable. What the input yielded before failing is written too; the failure is reported.
async fn stream_into(
    file: File,
    offset: u64,
    mut data: ByteStream,
    budget: Arc<Semaphore>,
) -> Result<Appended, StorageError> {
    let mut writer = BatchWriter::new(file, offset);
    let mut input_error = None;
    let mut batch = Vec::new();
    let mut batch_len = 0;
    // Large batches while the server-wide write budget has room, small ones otherwise.
    let mut limit = SMALL_BATCH;
    let mut reserved: Option<OwnedSemaphorePermit> = None;
    // Armed while a partial batch waits for more bytes (one timer, reset, not one per
    // network chunk).
    let flush = tokio::time::sleep(FLUSH_IDLE);
    tokio::pin!(flush);
    loop {
        let item = if batch.is_empty() {
            data.next().await
        } else {
            tokio::select! {
                biased;
                item = data.next() => item,
                () = &mut flush => {
                    // The client paused: write what we hold rather than keep it.
                    batch_len = 0;
                    writer.write(std::mem::take(&mut batch), reserved.take()).await?;
                    continue;
                }
            }
        };
        match item {
            None => break,
            Some(Ok(bytes)) => {
                if bytes.is_empty() {
                    continue;
                }
                if batch.is_empty() {
                    flush.as_mut().reset(tokio::time::Instant::now() + FLUSH_IDLE);
                    reserved = budget.clone().try_acquire_many_owned(BATCH_UNITS).ok();
                    limit = if reserved.is_some() { WRITE_BATCH } else { SMALL_BATCH };
                }
                batch_len += bytes.len();
                batch.push(bytes);
                if batch_len >= limit {
                    batch_len = 0;
                    writer.write(std::mem::take(&mut batch), reserved.take()).await?;
                }
            }
            Some(Err(e)) => {
                input_error = Some(e);
                break;
            }
        }
    }
    // Everything the input yielded is written, even when it then failed: the caller's
    // hash covers exactly these bytes.
    if !batch.is_empty() {
        writer.write(batch, reserved.take()).await?;
    }
    let len = writer.finish().await?;
    Ok(Appended { len, input_error })
}

/// Writes batches to a file one short blocking task at a time, keeping at most one batch
/// in flight so that the caller receives the next one meanwhile.
struct BatchWriter {
    /// The file while no write is in flight.
    idle: Option<Cursor>,
    /// The write in flight; gives the file back.
    busy: Option<JoinHandle<Result<Cursor, StorageError>>>,
}

/// An open upload file, where the next write goes, and how far writeback was started.
struct Cursor {
    file: File,
    pos: u64,
    flushed: u64,
}

impl BatchWriter {
    fn new(file: File, offset: u64) -> Self {
        BatchWriter { idle: Some(Cursor { file, pos: offset, flushed: offset }), busy: None }
    }

    async fn settle(&mut self) -> Result<Cursor, StorageError> {
        if let Some(h) = self.busy.take() {
            return h.await.map_err(task_failed)?;
        }
        self.idle.take().ok_or_else(|| StorageError::Io(io::Error::other("writer lost its file")))
    }

    /// Start writing `batch` once the previous batch is written; `budget` (its share of the
    /// write budget) is released when it is.
    async fn write(
        &mut self,
        batch: Vec<Bytes>,
        budget: Option<OwnedSemaphorePermit>,
    ) -> Result<(), StorageError> {
        let cursor = self.settle().await?;
        self.busy = Some(tokio::task::spawn_blocking(move || {
            let written = write_batch(cursor, &batch);
            drop(budget);
            written
        }));
        Ok(())
    }

    /// Wait for the last write and make everything durable; the file's length.
    async fn finish(mut self) -> Result<u64, StorageError> {
        let cursor = self.settle().await?;
        blocking(move || {
            cursor.file.sync_data()?;
            Ok(cursor.pos)
        })
        .await
    }
}

fn write_batch(mut c: Cursor, batch: &[Bytes]) -> Result<Cursor, StorageError> {
    // One writev per batch rather than one write per network chunk.
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = c.file.write_vectored(rest)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write").into());
        }
        c.pos += n as u64;
        IoSlice::advance_slices(&mut rest, n);
    }
    if c.pos - c.flushed >= WRITEBACK_STEP {
        writeback::start(&c.file, c.flushed, c.pos - c.flushed);
        c.flushed = c.pos;
    }
    Ok(c)
}

/// Chunks of a blob on their way to a client. A chunk is read only when the consumer asks
/// for the next one, and a new one is handed out only while few of the earlier ones are
/// still held downstream (by the HTTP layer's write buffer): each chunk tells the stream
/// when it is dropped. Large chunks (fast) come out of a server-wide budget; without one,
/// chunks are small and one at a time. So a client that stops reading pins at most two
/// budgeted large chunks, or one small one.
struct FileChunks {
    file: Arc<File>,
    pos: u64,
    left: u64,
    budget: Arc<Semaphore>,
    held: Arc<Held>,
    /// A read running on the blocking pool.
    reading: Option<JoinHandle<io::Result<Chunk>>>,
    /// Cleared when the filesystem doesn't support non-blocking reads.
    nowait: bool,
}

/// How many chunks of a stream are still alive downstream, and who to wake when one goes.
#[derive(Default)]
struct Held {
    count: AtomicUsize,
    waker: AtomicWaker,
}

/// A chunk's bytes, with its share of the budget; dropping it lets its stream go on.
struct Chunk {
    data: Vec<u8>,
    _budget: Option<OwnedSemaphorePermit>,
    held: Arc<Held>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.held.count.fetch_sub(1, Ordering::AcqRel);
        self.held.waker.wake();
    }
}

/// Chunks alive downstream at most: two large ones (one being written, one ready), or
/// one small one.
const HELD_LARGE: usize = 2;
const HELD_SMALL: usize = 1;

impl FileChunks {
    fn new(file: File, start: u64, count: u64, budget: Arc<Semaphore>) -> Self {
        FileChunks {
            file: Arc::new(file),
            pos: start,
            left: count,
            budget,
            held: Arc::default(),
            reading: None,
            nowait: true,
        }
    }

    /// Start the next read: a large chunk when the budget has room, else a small one.
    /// `Ready` when it could be read at once from the page cache.
    fn start_read(&mut self) -> Option<io::Result<Chunk>> {
        let large = (self.left > SMALL_CHUNK)
            .then(|| self.budget.clone().try_acquire_many_owned(LARGE_UNITS).ok())
            .flatten();
        let size = if large.is_some() { LARGE_CHUNK } else { SMALL_CHUNK };
        let want = self.left.min(size) as usize;
        let mut data = vec![0u8; want];
        self.held.count.fetch_add(1, Ordering::AcqRel);
        let chunk = |data: Vec<u8>| Chunk { data, _budget: large, held: self.held.clone() };
        if self.nowait {
            match read_cached(&self.file, &mut data, self.pos) {
                Ok(Some(got)) if got > 0 => {
                    data.truncate(got);
                    return Some(Ok(chunk(data)));
                }
                Ok(_) => {}
                Err(e) if is_unsupported(&e) => self.nowait = false,
                Err(e) => return Some(Err(e)),
            }
        }
        let mut chunk = chunk(data);
        let (file, pos) = (self.file.clone(), self.pos);
        self.reading = Some(tokio::task::spawn_blocking(move || {
            let got = file.read_at(&mut chunk.data, pos)?;
            chunk.data.truncate(got);
            Ok(chunk)
        }));
        None
    }
}

impl futures::Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let read = match this.reading.as_mut() {
            Some(handle) => {
                let r = ready!(Pin::new(handle).poll(cx)).map_err(io::Error::other);
                this.reading = None;
                r.and_then(|r| r)
            }
            None => {
                if this.left == 0 {
                    return Poll::Ready(None);
                }
                // Wait until downstream let go of enough of what it was given.
                let limit = |budgeted: bool| if budgeted { HELD_LARGE } else { HELD_SMALL };
                let busy = || {
                    let held = this.held.count.load(Ordering::Acquire);
                    held >= limit(this.budget.available_permits() >= LARGE_UNITS as usize)
                };
                if busy() {
                    this.held.waker.register(cx.waker());
                    if busy() {
                        return Poll::Pending;
                    }
                }
                match this.start_read() {
                    Some(r) => r,
                    None => return Pin::new(this).poll_next(cx),
                }
            }
        };
        let chunk = match read {
            Ok(chunk) => chunk,
            Err(e) => {
                this.left = 0;
                return Poll::Ready(Some(Err(e)));
            }
        };
        if chunk.data.is_empty() {
            this.left = 0;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob file ended early",
            ))));
        }
        let n = chunk.data.len() as u64;
        this.pos += n;
        this.left = this.left.saturating_sub(n);
        Poll::Ready(Some(Ok(Bytes::from_owner(chunk))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

/// Read what the page cache holds at `pos` without blocking; `None` if it would block.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, buf: &mut [u8], pos: u64) -> io::Result<Option<usize>> {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    match preadv2(file, &mut [IoSliceMut::new(buf)], pos, ReadWriteFlags::NOWAIT) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_: &File, _: &mut [u8], _: u64) -> io::Result<Option<usize>> {
    Ok(None)
}

/// Non-blocking reads aren't supported here (older kernels, some filesystems).
fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == libc::EOPNOTSUPP || code == libc::EINVAL || code == libc::ENOSYS)
}

#[allow(unsafe_code)]
mod writeback {
    use std::fs::File;
    use std::os::fd::AsRawFd;

    /// Ask the kernel to start writing `len` bytes at `offset` to disk now, without
    /// waiting. A hint only: the final fsync is what makes the data durable.
    /// Hand-written because neither rustix nor nix exposes sync_file_range(2).
    pub(super) fn start(file: &File, offset: u64, len: u64) {
        #[cfg(target_os = "linux")]
        // SAFETY: sync_file_range only reads its integer arguments; the fd is valid for
        // the duration of the call because `file` is borrowed.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (file, offset, len);
    }
}

/// [`BlobStore::write_blob`] on files: an upload session, committed on publish.
struct FsBlobWriter {
    store: FsBlobStore,
    id: Uuid,
    digest: Digest,
    len: u64,
}

#[async_trait]
impl BlobWriter for FsBlobWriter {
    async fn write(&mut self, data: ByteStream) -> Result<Appended, StorageError> {
        let appended = self.store.append_upload(self.id, self.len, data).await?;
        self.len = appended.len;
        Ok(appended)
    }

    async fn publish(self: Box<Self>) -> Result<(), StorageError> {
        self.store.commit_upload(self.id, self.len, &self.digest).await
    }

    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        self.store.abort_upload(self.id).await
    }
}

#[cfg(test)]
mod tests;
