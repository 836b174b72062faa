//! Secrets: generated with the OS's random source, stored only as argon2id hashes, checked
//! in constant time (argon2's verification compares the whole hash).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};

/// Characters of generated secrets: letters, digits and two safe symbols, like Entra's
/// client secrets.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~.";

/// A new random secret of `len` characters (6 bits each).
pub fn generate(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // The OS random source doesn't fail on Linux once the process is up; if it ever did,
    // a secret must not be weak: abort rather than return something guessable.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the operating system's random source failed");
    }
    bytes.iter().map(|b| ALPHABET[usize::from(b & 63)] as char).collect()
}

/// A random GUID-shaped id (v4).
pub fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn hasher() -> Argon2<'static> {
    // One of OWASP's equivalent argon2id settings (7 MiB, 5 passes), the one that takes the
    // least memory: ~20 ms here. Secrets are checked only when a token is issued or a Basic
    // credential first seen, never per request. (A stored hash carries its own parameters.)
    let params = Params::new(7 * 1024, 5, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of an argon2id hash of `secret`.
pub fn hash(secret: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| "no random source".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    hasher()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `secret` is the one hashed in `phc`.
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_verify() {
        let s = generate(40);
        assert_eq!(s.len(), 40);
        assert_ne!(s, generate(40));
        let h = hash(&s).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains(&s));
        assert!(verify(&s, &h));
        assert!(!verify("wrong", &h));
        assert!(!verify(&s, "not a hash"));
    }
}
