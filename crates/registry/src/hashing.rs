//! The registry's one place blob bytes are hashed: a stream adapter that feeds every chunk
//! to a SHA-256 on its way into the blob store.

use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use wharf_oci::Sha256Hasher;
use wharf_storage::ByteStream;

/// Wraps `body` so that every chunk read from it is hashed into `hasher`.
pub(crate) fn hashing(body: ByteStream, hasher: Arc<Mutex<Sha256Hasher>>) -> ByteStream {
    Box::pin(body.inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            hasher.lock().unwrap_or_else(PoisonError::into_inner).update(bytes);
        }
    }))
}

/// Take the hasher back once the stream is done with it.
pub(crate) fn finish(hasher: Arc<Mutex<Sha256Hasher>>) -> Sha256Hasher {
    match Arc::try_unwrap(hasher) {
        Ok(m) => m.into_inner().unwrap_or_else(PoisonError::into_inner),
        Err(shared) => shared.lock().unwrap_or_else(PoisonError::into_inner).clone(),
    }
}
