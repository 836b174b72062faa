//! The keys that sign tokens (ECDSA P-256, ES256): generated on first start, persisted,
//! rotated by adding a newer key (older ones keep verifying until removed), published as a
//! JWKS so that any OAuth2/OIDC library can check wharf's tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use wharf_storage::SigningKeyRecord;

use crate::AuthError;

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public point's coordinates, base64url (JWK `x`, `y`).
    x: String,
    y: String,
    retired: bool,
}

/// Every signing key, the newest first.
pub struct KeyRing {
    keys: Vec<Key>,
}

/// Leeway for clocks that disagree a little.
const LEEWAY_SECS: u64 = 60;

impl KeyRing {
    /// A new P-256 key, ready to be stored.
    pub fn generate(now: i64) -> Result<SigningKeyRecord, AuthError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| AuthError::Internal("cannot generate a signing key".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| AuthError::Internal("cannot read a generated signing key".into()))?;
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(pair.public_key().as_ref())[..12]);
        Ok(SigningKeyRecord {
            kid,
            pkcs8: pkcs8.as_ref().to_vec(),
            created_at: now,
            retired_at: None,
        })
    }

    pub fn from_records(records: &[SigningKeyRecord]) -> Result<KeyRing, AuthError> {
        let rng = SystemRandom::new();
        let mut keys = Vec::new();
        for r in records.iter().rev() {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &r.pkcs8, &rng)
                .map_err(|_| {
                AuthError::Internal(format!("signing key {} is unreadable", r.kid))
            })?;
            let point = pair.public_key().as_ref();
            // An uncompressed P-256 point: 0x04, X (32 bytes), Y (32 bytes).
            if point.len() != 65 {
                return Err(AuthError::Internal(format!("signing key {} is not P-256", r.kid)));
            }
            keys.push(Key {
                kid: r.kid.clone(),
                encoding: EncodingKey::from_ec_der(&r.pkcs8),
                decoding: DecodingKey::from_ec_der(point),
                x: URL_SAFE_NO_PAD.encode(&point[1..33]),
                y: URL_SAFE_NO_PAD.encode(&point[33..65]),
                retired: r.retired_at.is_some(),
            });
        }
        Ok(KeyRing { keys })
    }

    /// Sign claims with the newest key that isn't retired.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        let key = self
            .keys
            .iter()
            .find(|k| !k.retired)
            .ok_or_else(|| AuthError::Internal("no signing key".into()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| AuthError::Internal(format!("cannot sign a token: {e}")))
    }

    /// Verify a token signed by one of our keys, for one of `audiences`, from `issuer`
    /// (or any issuer for which `issuer_ok` says yes). ES256 only: `none`, HMAC with a
    /// public key as secret, and every other algorithm are refused.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        audiences: &[&str],
        issuer_ok: impl Fn(&str) -> bool,
    ) -> Result<T, AuthError> {
        let invalid = |why: &str| AuthError::InvalidToken(why.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        if header.alg != Algorithm::ES256 {
            return Err(invalid("unsupported algorithm"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or_else(|| invalid("unknown key"))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => invalid("expired"),
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => invalid("not yet valid"),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => invalid("wrong audience"),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid("bad signature"),
                _ => invalid("invalid"),
            },
        )?;
        let iss = data.claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if !issuer_ok(iss) {
            return Err(invalid("wrong issuer"));
        }
        serde_json::from_value(data.claims).map_err(|_| invalid("unexpected claims"))
    }

    /// The public keys, as a JWKS document.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                       "kid": k.kid, "x": k.x, "y": k.y})
            })
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Claims {
        iss: String,
        aud: String,
        sub: String,
        exp: i64,
        nbf: i64,
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn claims(aud: &str, exp: i64) -> Claims {
        Claims {
            iss: "https://idp/t/v2.0".into(),
            aud: aud.into(),
            sub: "s".into(),
            exp,
            nbf: now() - 10,
        }
    }

    #[test]
    fn sign_verify_and_refuse_what_must_be_refused() {
        let ring = KeyRing::from_records(&[KeyRing::generate(0).unwrap()]).unwrap();
        let ok = |t: &str| ring.verify::<Claims>(t, &["api"], |i| i == "https://idp/t/v2.0");
        let good = ring.sign(&claims("api", now() + 600)).unwrap();
        assert_eq!(ok(&good).unwrap().sub, "s");
        // Expired, wrong audience, wrong issuer.
        assert!(ok(&ring.sign(&claims("api", now() - 600)).unwrap()).is_err());
        assert!(ok(&ring.sign(&claims("other", now() + 600)).unwrap()).is_err());
        assert!(ring.verify::<Claims>(&good, &["api"], |i| i == "https://evil/").is_err());
        // Tampered payload, `alg: none`, HMAC keyed with the public key, another key.
        let parts: Vec<&str> = good.split('.').collect();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("api", now() + 9_999)).unwrap());
        assert!(ok(&format!("{}.{forged_payload}.{}", parts[0], parts[2])).is_err());
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(ok(&format!("{none}.{}.", parts[1])).is_err());
        let jwk = &ring.jwks()["keys"][0];
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("api", now() + 600),
            &EncodingKey::from_secret(jwk["x"].as_str().unwrap().as_bytes()),
        )
        .unwrap();
        assert!(ok(&hs).is_err());
        let other = KeyRing::from_records(&[KeyRing::generate(0).unwrap()]).unwrap();
        assert!(ok(&other.sign(&claims("api", now() + 600)).unwrap()).is_err());
    }

    #[test]
    fn rotation_keeps_old_tokens_valid() {
        let old = KeyRing::generate(0).unwrap();
        let ring = KeyRing::from_records(std::slice::from_ref(&old)).unwrap();
        let token = ring.sign(&claims("api", now() + 600)).unwrap();
        let new = KeyRing::generate(1).unwrap();
        let retired = SigningKeyRecord { retired_at: Some(1), ..old };
        let rotated = KeyRing::from_records(&[retired, new.clone()]).unwrap();
        assert!(rotated.verify::<Claims>(&token, &["api"], |_| true).is_ok());
        let fresh = rotated.sign(&claims("api", now() + 600)).unwrap();
        let kid = jsonwebtoken::decode_header(&fresh).unwrap().kid.unwrap();
        assert_eq!(kid, new.kid, "new tokens are signed with the newest key");
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
    }
}
