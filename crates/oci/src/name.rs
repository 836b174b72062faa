use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// Longest repository name wharf accepts (the limit clients put on names).
pub const MAX_NAME_LEN: usize = 255;

// The distribution-spec grammar, anchored. A path component may hold `.`, `_`, `__`
// or runs of `-` between alphanumeric runs, so `..`, leading dots and `%` never match:
// a valid name can't escape a directory or smuggle encoded bytes.
static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
    )
    .expect("static regex")
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("static regex"));

/// Why a string is not a repository name or tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name {0:?}")]
    InvalidName(String),
    #[error("repository name longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
}

/// A repository name such as `library/alpine` or `a/b/c/d`, valid by construction.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong);
        }
        if !NAME_RE.is_match(s) {
            return Err(NameError::InvalidName(s.chars().take(MAX_NAME_LEN).collect()));
        }
        Ok(RepositoryName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tag such as `latest` or `v1.2.3`, valid by construction.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if !TAG_RE.is_match(s) {
            return Err(NameError::InvalidTag(s.chars().take(200).collect()));
        }
        Ok(Tag(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_like {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
        impl std::str::FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_like!(RepositoryName);
string_like!(Tag);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "library/alpine",
            "a/b/c/d",
            "my-app__x.y/sub_dir/a--b",
            "0",
            "harness/charts/harness-chart",
        ] {
            RepositoryName::parse(ok).unwrap();
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "", "A", "a//b", "/a", "a/", "a/../b", "..", "a/./b", "a..b", "a___b", "-a", "a-",
            "a%2fb", "a b", "a:b", "a\\b",
        ] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(256);
        assert_eq!(RepositoryName::parse(&long), Err(NameError::NameTooLong));
        RepositoryName::parse(&"a".repeat(255)).unwrap();
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            Tag::parse(ok).unwrap();
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129), "sha256:abc"] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn valid_names_never_traverse(s in "[a-z0-9._/-]{1,64}") {
            if let Ok(n) = RepositoryName::parse(&s) {
                prop_assert!(!n.as_str().split('/').any(|c| c == ".." || c == "." || c.is_empty()));
                prop_assert!(!n.as_str().starts_with('/'));
            }
        }
    }
}
