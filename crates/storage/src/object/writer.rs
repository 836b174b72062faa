//! Writing one new object in one go, with bounded memory: small ones in one PUT, large
//! ones as a multipart upload taking its parts' buffers from the store's shared budget.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::Semaphore;

use super::{PART, SMALL, unavailable};
use crate::StorageError;
use crate::blob::{Appended, BlobWriter, ByteStream};

/// Parts a large transfer may have uploading at once, beyond the two parts' worth it holds
/// already (one uploading, one filling): two more while the shared budget has room for them,
/// taken without waiting — so a transfer goes faster when the server is quiet and no slower
/// than before when it is busy.
fn more_parts(parts: &Arc<Semaphore>) -> (usize, Option<tokio::sync::OwnedSemaphorePermit>) {
    match parts.clone().try_acquire_many_owned(2) {
        Ok(more) => (3, Some(more)),
        Err(_) => (1, None),
    }
}

/// One new object written in one go — a blob straight to its key
/// ([`BlobStore::write_blob`](crate::BlobStore::write_blob)), or an upload's piece or part:
/// the first [`SMALL`] bytes kept in memory (published with one PUT, taking nothing from the
/// shared budget), beyond that a multipart upload completed only on publish (an incomplete
/// one is never readable).
pub(super) struct ObjectBlobWriter {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) path: Path,
    pub(super) parts: Arc<Semaphore>,
    pub(super) head: BytesMut,
    /// The upload once the blob outgrew `head`, with its share of the budget and how many
    /// parts it may have uploading at once ([`more_parts`]).
    pub(super) multipart: Option<(WriteMultipart, Vec<tokio::sync::OwnedSemaphorePermit>, usize)>,
    pub(super) len: u64,
}

#[async_trait]
impl BlobWriter for ObjectBlobWriter {
    async fn write(&mut self, mut data: ByteStream) -> Result<Appended, StorageError> {
        let mut input_error = None;
        while let Some(next) = data.next().await {
            let b = match next {
                Ok(b) => b,
                Err(e) => {
                    input_error = Some(e);
                    break;
                }
            };
            self.len += b.len() as u64;
            match &mut self.multipart {
                Some((writer, _, in_flight)) => {
                    writer.wait_for_capacity(*in_flight).await.map_err(unavailable)?;
                    writer.put(b);
                }
                None => {
                    self.head.extend_from_slice(&b);
                    if self.head.len() >= SMALL {
                        // Both parts' worth at once, so that two transfers can't each
                        // hold one and wait for the other.
                        let permits =
                            self.parts.clone().acquire_many_owned(2).await.map_err(|_| {
                                StorageError::Busy("the blob store is shutting down".into())
                            })?;
                        let (in_flight, more) = more_parts(&self.parts);
                        let upload =
                            self.store.put_multipart(&self.path).await.map_err(unavailable)?;
                        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
                        writer.put(self.head.split().freeze());
                        let permits = [Some(permits), more].into_iter().flatten().collect();
                        self.multipart = Some((writer, permits, in_flight));
                    }
                }
            }
        }
        Ok(Appended { len: self.len, input_error })
    }

    async fn publish(self: Box<Self>) -> Result<(), StorageError> {
        match self.multipart {
            Some((writer, _permits, _)) => {
                writer.finish().await.map_err(unavailable)?;
            }
            None => {
                self.store
                    .put(&self.path, PutPayload::from(self.head.freeze()))
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        if let Some((writer, _permits, _)) = self.multipart {
            writer.abort().await.map_err(unavailable)?;
        }
        Ok(())
    }
}
