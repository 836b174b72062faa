//! Sealing the registry admin users' passwords (ChaCha20-Poly1305 under the server's
//! sealing key): ACR's `listCredentials` shows them again, so unlike every other secret they
//! are kept openable, bound to the credential and slot they belong to.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::AuthError;

/// Seals and opens the admin user's stored passwords.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Result<Sealer, AuthError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
            .map_err(|_| AuthError::Internal("bad sealing key".into()))?;
        Ok(Sealer { key: LessSafeKey::new(unbound) })
    }

    /// A fresh random key.
    pub fn generate_key() -> Result<[u8; 32], AuthError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| AuthError::Internal("no random source".into()))?;
        Ok(key)
    }

    /// nonce ‖ ciphertext ‖ tag, bound to `context` (which credential and slot it is, so a
    /// sealed value can't be moved to another).
    pub fn seal(&self, context: &str, secret: &str) -> Result<Vec<u8>, AuthError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| AuthError::Internal("no random source".into()))?;
        let mut data = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| AuthError::Internal("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<String, AuthError> {
        let corrupt = || AuthError::Internal("a sealed password doesn't open".into());
        if sealed.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| corrupt())?;
        String::from_utf8(plain.to_vec()).map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_passwords_open_only_in_their_place() {
        let s = Sealer::new(&Sealer::generate_key().unwrap()).unwrap();
        let sealed = s.seal("1/admin/password", "hunter2-hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.open("1/admin/password", &sealed).unwrap(), "hunter2-hunter2");
        assert!(s.open("1/admin/password2", &sealed).is_err());
        let other = Sealer::new(&Sealer::generate_key().unwrap()).unwrap();
        assert!(other.open("1/admin/password", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(s.open("1/admin/password", &tampered).is_err());
    }
}
