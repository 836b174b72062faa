use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

use crate::Digest;

/// An incremental SHA-256 whose state can be saved and restored.
///
/// A chunked upload is hashed once, as its bytes arrive, across many requests and even
/// across a server restart: after each chunk the state is saved with the upload session,
/// and the next chunk continues from it. sha2 does the hashing (SHA-NI when the CPU has
/// it); this type only adds the byte count and a stable serialisation.
#[derive(Clone, Default)]
pub struct Sha256Hasher {
    inner: sha2::Sha256,
    len: u64,
}

/// A saved hasher state that can't be restored.
#[derive(Debug, thiserror::Error)]
#[error("corrupt SHA-256 state")]
pub struct HasherStateError;

const STATE_VERSION: u8 = 1;

impl Sha256Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// How many bytes have been hashed.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything hashed so far (the hasher stays usable).
    pub fn digest(&self) -> Digest {
        Digest::from_sha256_bytes(&self.inner.clone().finalize())
    }

    /// The state as bytes: a version byte, the length, then sha2's own serialisation.
    pub fn save(&self) -> Vec<u8> {
        let core = self.inner.serialize();
        let mut out = Vec::with_capacity(1 + 8 + core.len());
        out.push(STATE_VERSION);
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&core);
        out
    }

    /// Restore a state written by [`save`](Self::save).
    pub fn restore(bytes: &[u8]) -> Result<Self, HasherStateError> {
        let (&version, rest) = bytes.split_first().ok_or(HasherStateError)?;
        if version != STATE_VERSION || rest.len() < 8 {
            return Err(HasherStateError);
        }
        let (len, core) = rest.split_at(8);
        let len = u64::from_le_bytes(len.try_into().map_err(|_| HasherStateError)?);
        let core = SerializedState::<sha2::Sha256>::try_from(core).map_err(|_| HasherStateError)?;
        let inner = sha2::Sha256::deserialize(&core).map_err(|_| HasherStateError)?;
        Ok(Sha256Hasher { inner, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn save_restore_at_any_split(data in proptest::collection::vec(any::<u8>(), 0..300), split in 0usize..300) {
            let split = split.min(data.len());
            let mut a = Sha256Hasher::new();
            a.update(&data[..split]);
            let mut b = Sha256Hasher::restore(&a.save()).unwrap();
            b.update(&data[split..]);
            prop_assert_eq!(b.digest(), Digest::sha256_of(&data));
            prop_assert_eq!(b.len(), data.len() as u64);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Sha256Hasher::restore(&[]).is_err());
        assert!(Sha256Hasher::restore(&[1, 2, 3]).is_err());
        let mut s = Sha256Hasher::new().save();
        s[0] = 9;
        assert!(Sha256Hasher::restore(&s).is_err());
    }
}
