//! OCI domain types shared by every wharf crate.
//!
//! Values in this crate are valid by construction: a [`Digest`] always names a supported
//! algorithm with a well-formed hex part, a [`RepositoryName`] always matches the
//! distribution-spec grammar, a [`Tag`] always matches the tag grammar. Code that holds
//! one never re-checks the string.
//!
//! Architecture invariant: this crate knows nothing about HTTP, storage or async.

mod digest;
mod hasher;
pub mod manifest;
pub mod media_type;
mod name;
mod reference;

pub use digest::{Algorithm, Digest, DigestError};
pub use hasher::{HasherStateError, Sha256Hasher};
pub use name::{MAX_NAME_LEN, NameError, RepositoryName, Tag};
pub use reference::{Reference, ReferenceError};
