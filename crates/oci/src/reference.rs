use std::fmt;

use crate::{Digest, DigestError, NameError, Tag};

/// What follows `/manifests/`: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// Parse a reference: anything with a `:` must be a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse().map_err(ReferenceError::Digest)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s).map_err(ReferenceError::Tag)?))
        }
    }
}

/// Why a reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Digest(DigestError),
    #[error(transparent)]
    Tag(NameError),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}
