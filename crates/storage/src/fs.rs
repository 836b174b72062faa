//! The embedded blob store: one file per blob under `blobs/sha256/<2 hex>/<hex>`, one file
//! per upload session under `uploads/<uuid>`.
//!
//! Bytes are moved by a dedicated blocking thread per transfer, fed through a small
//! bounded channel, so that receiving (and hashing, done by the caller's stream) and
//! writing to disk overlap, and memory per transfer stays at a few MiB whatever the size.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;
use wharf_oci::Digest;

use crate::StorageError;
use crate::blob::{Appended, BlobStore, ByteRange, ByteStream, StoredBlob, StoredUpload};

/// Bytes collected from the request before they are handed to the writer thread.
const WRITE_BATCH: usize = 256 << 10;
/// Batches in flight between the receiving task and the writer thread.
const WRITE_QUEUE: usize = 4;
/// Start background writeback every this many bytes, so the final fsync has little left.
const WRITEBACK_STEP: u64 = 32 << 20;
/// Read size when serving a blob, and chunks read ahead of the socket.
const READ_CHUNK: usize = 512 << 10;
const READ_QUEUE: usize = 4;

/// Blobs and uploads as files under one directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    blobs: PathBuf,
    uploads: PathBuf,
}

impl FsBlobStore {
    /// Open (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let store = FsBlobStore { blobs: root.join("blobs"), uploads: root.join("uploads") };
        let (b, u) = (store.blobs.join("sha256"), store.uploads.clone());
        blocking(move || {
            fs::create_dir_all(&b)?;
            fs::create_dir_all(&u)?;
            Ok(())
        })
        .await?;
        Ok(store)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(digest.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    fn upload_path(&self, id: Uuid) -> PathBuf {
        self.uploads.join(id.to_string())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(io::Error::other(format!("storage task failed: {e}"))))?
}

/// fsync a directory, making the names in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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
            Ok(mut f) => {
                let len = f.metadata()?.len();
                let (start, count) = match range {
                    Some(r) => (r.start, r.len().min(len.saturating_sub(r.start))),
                    None => (0, len),
                };
                f.seek(SeekFrom::Start(start))?;
                Ok(Some((f, count)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await?;
        Ok(opened.map(|(file, count)| read_ahead(file, count)))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> Result<Vec<StoredBlob>, StorageError> {
        let root = self.blobs.join("sha256");
        blocking(move || {
            let mut out = Vec::new();
            for shard in fs::read_dir(&root)? {
                let shard = shard?;
                if !shard.file_type()?.is_dir() {
                    continue;
                }
                for entry in fs::read_dir(shard.path())? {
                    let entry = entry?;
                    let name = entry.file_name();
                    // Anything that isn't a well-formed name is not ours to list.
                    let Some(digest) = name
                        .to_str()
                        .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
                    else {
                        continue;
                    };
                    let meta = entry.metadata()?;
                    out.push(StoredBlob { digest, size: meta.len(), modified: meta.modified()? });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn create_upload(&self, id: Uuid) -> Result<(), StorageError> {
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
        mut data: ByteStream,
    ) -> Result<Appended, StorageError> {
        let path = self.upload_path(id);
        let file = blocking(move || open_for_append(&path, offset)).await?;

        let (tx, rx) = mpsc::channel::<Vec<Bytes>>(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking(move || write_batches(file, offset, rx));

        let mut input_error = None;
        let mut batch = Vec::new();
        let mut batch_len = 0;
        while let Some(item) = data.next().await {
            match item {
                Ok(bytes) => {
                    batch_len += bytes.len();
                    batch.push(bytes);
                    if batch_len >= WRITE_BATCH {
                        batch_len = 0;
                        if tx.send(std::mem::take(&mut batch)).await.is_err() {
                            break; // the writer failed; its error is reported below
                        }
                    }
                }
                Err(e) => {
                    input_error = Some(e);
                    break;
                }
            }
        }
        // Everything the input yielded is written, even when it then failed: the caller's
        // hash covers exactly these bytes.
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        drop(tx);
        let len =
            writer.await.map_err(|e| io::Error::other(format!("writer thread failed: {e}")))??;
        Ok(Appended { len, input_error })
    }

    async fn commit_upload(&self, id: Uuid, len: u64, digest: &Digest) -> Result<(), StorageError> {
        let src = self.upload_path(id);
        let dst = self.blob_path(digest);
        blocking(move || {
            let actual = match fs::metadata(&src) {
                Ok(m) => m.len(),
                // Renamed by an earlier attempt whose bookkeeping then failed: done already.
                Err(e) if e.kind() == io::ErrorKind::NotFound && dst.exists() => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if actual < len {
                return Err(StorageError::Corrupt(format!(
                    "upload {id} holds {actual} bytes, {len} were recorded"
                )));
            }
            if dst.exists() {
                // Content-addressed: the stored copy has the same bytes.
                fs::remove_file(&src)?;
                return Ok(());
            }
            if actual > len {
                // An interrupted append left bytes past the recorded end.
                let f = OpenOptions::new().write(true).open(&src)?;
                f.set_len(len)?;
                f.sync_all()?;
            }
            let parent =
                dst.parent().ok_or_else(|| StorageError::Corrupt("bad blob path".into()))?;
            if !parent.exists() {
                fs::create_dir_all(parent)?;
                if let Some(grandparent) = parent.parent() {
                    sync_dir(grandparent)?;
                }
            }
            fs::rename(&src, &dst)?;
            sync_dir(parent)?;
            Ok(())
        })
        .await
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
                let Some(id) = entry.file_name().to_str().and_then(|s| Uuid::parse_str(s).ok())
                else {
                    continue;
                };
                out.push(StoredUpload { id, modified: entry.metadata()?.modified()? });
            }
            Ok(out)
        })
        .await
    }
}

fn open_for_append(path: &Path, offset: u64) -> Result<File, StorageError> {
    let mut file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        // The empty file of a fresh session may not have survived a power cut.
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

fn write_batches(
    mut file: File,
    offset: u64,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
) -> Result<u64, StorageError> {
    let mut pos = offset;
    let mut flushed = offset;
    while let Some(batch) = rx.blocking_recv() {
        // One writev per batch rather than one write per network chunk.
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = file.write_vectored(rest)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "short write").into());
            }
            pos += n as u64;
            IoSlice::advance_slices(&mut rest, n);
        }
        if pos - flushed >= WRITEBACK_STEP {
            writeback::start(&file, flushed, pos - flushed);
            flushed = pos;
        }
    }
    file.sync_data()?;
    Ok(pos)
}

/// Stream `count` bytes from `file`'s current position, read ahead by a blocking thread.
fn read_ahead(mut file: File, count: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut left = count;
        while left > 0 {
            let n = (left as usize).min(READ_CHUNK);
            // read_to_end fills spare capacity without zeroing it first.
            let mut buf = Vec::with_capacity(n);
            let result = match (&mut file).take(n as u64).read_to_end(&mut buf) {
                Ok(got) if got == n => Ok(Bytes::from(buf)),
                Ok(got) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("blob file ended {} bytes early", left - got as u64),
                )),
                Err(e) => Err(e),
            };
            let failed = result.is_err();
            if tx.blocking_send(result).is_err() || failed {
                return; // the client went away, or the read failed (reported above)
            }
            left -= n as u64;
        }
    });
    Box::pin(tokio_stream_from(rx))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))))
    }

    async fn read_all(s: ByteStream) -> Vec<u8> {
        let chunks: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        chunks.concat()
    }

    #[tokio::test]
    async fn upload_append_commit_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let id = Uuid::new_v4();
        store.create_upload(id).await.unwrap();
        let n = store.append_upload(id, 0, stream(vec![b"hello ", b"wor"])).await.unwrap().len;
        assert_eq!(n, 9);
        let n = store.append_upload(id, 9, stream(vec![b"ld"])).await.unwrap().len;
        let digest = Digest::sha256_of(b"hello world");
        store.commit_upload(id, n, &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
        let all = store.read(&digest, None).await.unwrap().unwrap();
        assert_eq!(read_all(all).await, b"hello world");
        let part =
            store.read(&digest, Some(ByteRange { start: 6, end: 10 })).await.unwrap().unwrap();
        assert_eq!(read_all(part).await, b"world");
        assert!(store.list_uploads().await.unwrap().is_empty());
        assert_eq!(store.list().await.unwrap()[0].digest, digest);
    }

    #[tokio::test]
    async fn torn_append_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let id = Uuid::new_v4();
        store.create_upload(id).await.unwrap();
        store.append_upload(id, 0, stream(vec![b"abc"])).await.unwrap();
        // A failing body: some bytes arrive, then the client disconnects.
        let failing: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"XYZ")),
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "gone")),
        ]));
        let appended = store.append_upload(id, 3, failing).await.unwrap();
        assert!(appended.input_error.is_some());
        assert_eq!(appended.len, 6, "what arrived before the failure is kept");
        // A caller that discards them appends at its recorded length again.
        assert_eq!(store.append_upload(id, 3, stream(vec![b"def"])).await.unwrap().len, 6);
        let digest = Digest::sha256_of(b"abcdef");
        store.commit_upload(id, 6, &digest).await.unwrap();
        assert_eq!(read_all(store.read(&digest, None).await.unwrap().unwrap()).await, b"abcdef");
    }

    #[tokio::test]
    async fn missing_blob_reads_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let d = Digest::sha256_of(b"nope");
        assert!(store.read(&d, None).await.unwrap().is_none());
        assert_eq!(store.stat(&d).await.unwrap(), None);
        store.delete(&d).await.unwrap();
    }
}
