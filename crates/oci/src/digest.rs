use std::fmt;
use std::str::FromStr;

/// A content digest, `algorithm:hex`, e.g. `sha256:e3b0…`.
///
/// Only `sha256` content can be stored; `sha512` digests parse (so that the error for them
/// says "unsupported" rather than "malformed").
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// A digest algorithm named by the OCI image spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears before the `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected <algorithm>:<hex>")]
    Malformed(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
}

impl Digest {
    /// The digest of `bytes` with SHA-256.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::from_sha256_bytes(&sha2::Sha256::digest(bytes))
    }

    /// A SHA-256 digest from the 32 raw bytes of a hash.
    pub fn from_sha256_bytes(bytes: &[u8]) -> Digest {
        Digest { algorithm: Algorithm::Sha256, hex: hex::encode(bytes) }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part after the `:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether wharf can verify and store content under this digest.
    pub fn is_supported(&self) -> bool {
        self.algorithm == Algorithm::Sha256
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || DigestError::Malformed(s.chars().take(200).collect());
        let (algo, hex) = s.split_once(':').ok_or_else(malformed)?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            // The image spec's grammar for other algorithms: [a-z0-9]+([+._-][a-z0-9]+)*
            other
                if !other.is_empty()
                    && other.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)
                    }) =>
            {
                return Err(DigestError::UnsupportedAlgorithm(other.chars().take(50).collect()));
            }
            _ => return Err(malformed()),
        };
        if hex.len() != algorithm.hex_len()
            || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(malformed());
        }
        Ok(Digest { algorithm, hex: hex.to_owned() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256() {
        let s = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Digest = s.parse().unwrap();
        assert_eq!(d.to_string(), s);
        assert_eq!(d, Digest::sha256_of(b""));
        assert!(d.is_supported());
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            ":e3b0",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "../../etc/passwd",
        ] {
            assert!(matches!(bad.parse::<Digest>(), Err(DigestError::Malformed(_))), "{bad}");
        }
        assert!(matches!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert!(!sha512.parse::<Digest>().unwrap().is_supported());
    }
}
