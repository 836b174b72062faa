//! `/v2/…` requests parsed once, at the edge, into a typed [`Route`] and the [`Permission`]
//! it needs.
//!
//! Repository names contain slashes, so `/v2/<name>/…` can't be matched by a router
//! pattern; [`split_path`] splits the path from the end, where the grammar is fixed
//! (`manifests/<ref>`, `blobs/<digest>`, `blobs/uploads/[<id>]`, `tags/list`,
//! `referrers/<digest>`), and [`parse_route`] validates the name that is left, then the
//! reference, digest or upload id and the method.
//!
//! The errors keep distribution's order: an unknown path before anything, an invalid name
//! before authorization, everything else only to a caller authorized for what it asked
//! (so nobody else learns anything from them).

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;
use wharf_auth::RepoOp;
use wharf_oci::{Digest, Reference, ReferenceError, RepositoryName};
use wharf_registry::RegistryError;

use crate::OciError;
use crate::auth::Wanted;
use crate::error::oci_error;

/// A `/v2/…` path split into its parts, before anything is validated.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Path<'a> {
    Catalog,
    Repository { name: &'a str, tail: Tail<'a> },
}

/// What a path names in its repository.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tail<'a> {
    Tags,
    Manifest { reference: &'a str },
    Blob { digest: &'a str },
    Uploads,
    Upload { id: &'a str },
    Referrers { digest: &'a str },
}

/// Split a path after `/v2/` into its parts; `None` if it matches no API.
pub(super) fn split_path(path: &str) -> Option<Path<'_>> {
    if path == "_catalog" {
        return Some(Path::Catalog);
    }
    let at = |name, tail| Some(Path::Repository { name, tail });
    // name/<a>/<b>: the last two segments select the route.
    let (rest, last) = path.rsplit_once('/')?;
    if let Some(name) = rest.strip_suffix("/tags").filter(|_| last == "list") {
        return at(name, Tail::Tags);
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return at(name, if last.is_empty() { Tail::Uploads } else { Tail::Upload { id: last } });
    }
    if last == "uploads"
        && let Some(name) = rest.strip_suffix("/blobs")
    {
        return at(name, Tail::Uploads);
    }
    let (name, kind) = rest.rsplit_once('/')?;
    match kind {
        "manifests" => at(name, Tail::Manifest { reference: last }),
        "blobs" => at(name, Tail::Blob { digest: last }),
        "referrers" => at(name, Tail::Referrers { digest: last }),
        _ => None,
    }
}

/// A `/v2/…` request: its method and path, every part validated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Catalog,
    Tags(RepositoryName),
    Referrers(RepositoryName, Digest),
    GetManifest(RepositoryName, Reference),
    HeadManifest(RepositoryName, Reference),
    PutManifest(RepositoryName, Reference),
    DeleteManifest(RepositoryName, Reference),
    GetBlob(RepositoryName, Digest),
    HeadBlob(RepositoryName, Digest),
    DeleteBlob(RepositoryName, Digest),
    StartUpload(RepositoryName, Start),
    GetUpload(RepositoryName, Uuid),
    PatchUpload(RepositoryName, Uuid),
    /// `PUT`, with the `digest` the upload must have.
    FinishUpload(RepositoryName, Uuid, Digest),
    CancelUpload(RepositoryName, Uuid),
}

/// What `POST …/blobs/uploads/` asks for, by its query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// A session to send the blob in.
    Session,
    /// `?digest=`: the whole blob in this request's body.
    Monolithic(Digest),
    /// `?mount=<digest>[&from=<name>]`: the blob from another repository, else a session.
    Mount { digest: Digest, from: Option<RepositoryName> },
}

/// What a request needs of its caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Permission {
    Catalog,
    Repository(RepositoryName, RepoOp),
    /// A cross-repository mount: push on `name`, pull on `from` — as the client wrote it, in
    /// the same challenge (one round trip); it is validated once the caller is authorized.
    Mount {
        name: RepositoryName,
        from: String,
    },
}

impl Permission {
    pub(crate) fn wanted(&self) -> Wanted<'_> {
        match self {
            Permission::Catalog => Wanted::Catalog,
            Permission::Repository(name, op) => Wanted::Repository(name.as_str(), *op),
            Permission::Mount { name, from } => Wanted::Mount { name: name.as_str(), from },
        }
    }
}

/// The transfer slot a request takes (see [`crate::limits::Admission`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transfer {
    Download,
    Upload,
}

/// A request parsed at the edge: what it needs, then the route — or why it is none, said
/// only to a caller allowed `permission`.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) permission: Permission,
    pub(crate) transfer: Option<Transfer>,
    pub(crate) route: Result<Route, Rejected>,
}

/// Why a request for a valid repository name is no route: an invalid reference, digest or
/// upload id, or a method the path doesn't take (each with the message it always had).
#[derive(Debug)]
pub(crate) enum Rejected {
    Invalid(RegistryError),
    MethodNotAllowed(&'static str),
}

impl From<RegistryError> for Rejected {
    fn from(e: RegistryError) -> Self {
        Rejected::Invalid(e)
    }
}

impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        match self {
            Rejected::Invalid(e) => OciError(e).into_response(),
            Rejected::MethodNotAllowed(message) => {
                oci_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
            }
        }
    }
}

/// Why a request has no permission to check: an unknown path (404, before anything else)
/// or an invalid repository name (before authorization: there is nothing to authorize).
#[derive(Debug)]
pub(crate) enum NoRoute {
    Unknown,
    Name(RegistryError),
}

impl IntoResponse for NoRoute {
    fn into_response(self) -> Response {
        match self {
            NoRoute::Unknown => {
                oci_error(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such API route")
            }
            NoRoute::Name(e) => OciError(e).into_response(),
        }
    }
}

const HERE: &str = "method not allowed here";

/// Parse a request to `/v2/<path>` (`path` after the prefix).
pub(crate) fn parse_route(
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<Parsed, NoRoute> {
    let (name, tail) = match split_path(path).ok_or(NoRoute::Unknown)? {
        Path::Catalog => {
            let route =
                if *method == Method::GET { Ok(Route::Catalog) } else { Err(not_allowed(HERE)) };
            return Ok(Parsed { permission: Permission::Catalog, transfer: None, route });
        }
        Path::Repository { name, tail } => (name, tail),
    };
    let name = repository_name(name).map_err(NoRoute::Name)?;
    let transfer = transfer(&tail, method);
    let mount_from = query.get("mount").and(query.get("from"));
    let permission = match (&tail, method, mount_from) {
        (Tail::Uploads, &Method::POST, Some(from)) => {
            Permission::Mount { name: name.clone(), from: from.clone() }
        }
        _ => Permission::Repository(name.clone(), op(method)),
    };
    let route = match tail {
        Tail::Tags if *method == Method::GET => Ok(Route::Tags(name)),
        Tail::Referrers { digest } if *method == Method::GET => {
            parse_digest(digest).map(|d| Route::Referrers(name, d)).map_err(Rejected::Invalid)
        }
        Tail::Tags | Tail::Referrers { .. } => Err(not_allowed(HERE)),
        Tail::Manifest { reference } => manifest_route(method, name, reference),
        Tail::Blob { digest } => blob_route(method, name, digest),
        Tail::Uploads if *method == Method::POST => {
            start(query).map(|s| Route::StartUpload(name, s))
        }
        Tail::Uploads => Err(not_allowed(HERE)),
        Tail::Upload { id } => upload_route(method, name, id, query),
    };
    Ok(Parsed { permission, transfer, route })
}

/// What a method does in a repository.
fn op(method: &Method) -> RepoOp {
    match *method {
        Method::GET | Method::HEAD => RepoOp::Pull,
        Method::DELETE => RepoOp::Delete,
        _ => RepoOp::Push,
    }
}

/// Transfers in flight are capped: downloads of content, and uploads.
fn transfer(tail: &Tail<'_>, method: &Method) -> Option<Transfer> {
    match (tail, method) {
        (Tail::Blob { .. } | Tail::Manifest { .. }, &Method::GET) => Some(Transfer::Download),
        (Tail::Uploads, &Method::POST)
        | (Tail::Upload { .. }, &Method::PATCH | &Method::PUT)
        | (Tail::Manifest { .. }, &Method::PUT) => Some(Transfer::Upload),
        _ => None,
    }
}

fn not_allowed(message: &'static str) -> Rejected {
    Rejected::MethodNotAllowed(message)
}

fn manifest_route(
    method: &Method,
    name: RepositoryName,
    reference: &str,
) -> Result<Route, Rejected> {
    let reference = match Reference::parse(reference) {
        Ok(r) => r,
        // Nothing can be stored under an invalid reference: reading it finds nothing.
        Err(_) if *method != Method::PUT => {
            return Err(
                RegistryError::ManifestUnknown(reference.chars().take(200).collect()).into()
            );
        }
        Err(ReferenceError::Digest(d)) => {
            return Err(RegistryError::DigestInvalid(d.to_string()).into());
        }
        Err(ReferenceError::Tag(t)) => {
            return Err(RegistryError::TagInvalid(t.to_string()).into());
        }
    };
    match *method {
        Method::GET => Ok(Route::GetManifest(name, reference)),
        Method::HEAD => Ok(Route::HeadManifest(name, reference)),
        Method::PUT => Ok(Route::PutManifest(name, reference)),
        Method::DELETE => Ok(Route::DeleteManifest(name, reference)),
        _ => Err(not_allowed("method not allowed on a manifest")),
    }
}

fn blob_route(method: &Method, name: RepositoryName, digest: &str) -> Result<Route, Rejected> {
    let digest = parse_digest(digest)?;
    match *method {
        Method::GET => Ok(Route::GetBlob(name, digest)),
        Method::HEAD => Ok(Route::HeadBlob(name, digest)),
        Method::DELETE => Ok(Route::DeleteBlob(name, digest)),
        _ => Err(not_allowed("method not allowed on a blob")),
    }
}

fn upload_route(
    method: &Method,
    name: RepositoryName,
    id: &str,
    query: &HashMap<String, String>,
) -> Result<Route, Rejected> {
    let id = Uuid::parse_str(id).map_err(|_| RegistryError::BlobUploadUnknown)?;
    match *method {
        Method::GET => Ok(Route::GetUpload(name, id)),
        Method::PATCH => Ok(Route::PatchUpload(name, id)),
        Method::PUT => {
            let digest = query.get("digest").ok_or_else(|| {
                RegistryError::DigestInvalid("the digest query parameter is required".into())
            })?;
            Ok(Route::FinishUpload(name, id, parse_digest(digest)?))
        }
        Method::DELETE => Ok(Route::CancelUpload(name, id)),
        _ => Err(not_allowed("method not allowed on an upload")),
    }
}

/// A monolithic push (`?digest=`), a mount (`?mount=&from=`), or a session.
fn start(query: &HashMap<String, String>) -> Result<Start, Rejected> {
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount)?;
        let from = query.get("from").map(|f| repository_name(f)).transpose()?;
        return Ok(Start::Mount { digest, from });
    }
    match query.get("digest") {
        Some(digest) => Ok(Start::Monolithic(parse_digest(digest)?)),
        None => Ok(Start::Session),
    }
}

fn repository_name(s: &str) -> Result<RepositoryName, RegistryError> {
    RepositoryName::parse(s).map_err(|e| RegistryError::NameInvalid(e.to_string()))
}

pub(super) fn parse_digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse::<Digest>().map_err(|e| RegistryError::DigestInvalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_from_the_end() {
        let at = |name, tail| Some(Path::Repository { name, tail });
        assert_eq!(split_path("_catalog"), Some(Path::Catalog));
        assert_eq!(split_path("a/b/tags/list"), at("a/b", Tail::Tags));
        assert_eq!(
            split_path("a/manifests/latest"),
            at("a", Tail::Manifest { reference: "latest" })
        );
        assert_eq!(
            split_path("x/manifests/y/manifests/v1"),
            at("x/manifests/y", Tail::Manifest { reference: "v1" })
        );
        assert_eq!(
            split_path("a/b/blobs/sha256:00"),
            at("a/b", Tail::Blob { digest: "sha256:00" })
        );
        assert_eq!(split_path("a/blobs/uploads/"), at("a", Tail::Uploads));
        assert_eq!(split_path("a/blobs/uploads"), at("a", Tail::Uploads));
        assert_eq!(split_path("a/blobs/uploads/abc"), at("a", Tail::Upload { id: "abc" }));
        assert_eq!(
            split_path("a/referrers/sha256:00"),
            at("a", Tail::Referrers { digest: "sha256:00" })
        );
        assert_eq!(split_path("a/tags/lists"), None);
        assert_eq!(split_path("a"), None);
        assert_eq!(split_path("a/unknown/x"), None);
    }

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn parse(method: Method, path: &str, query: &[(&str, &str)]) -> Result<Parsed, NoRoute> {
        let query = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_route(&method, path, &query)
    }

    #[test]
    fn routes_carry_typed_values_and_their_permission() {
        let a = RepositoryName::parse("a/b").unwrap();
        let p = parse(Method::GET, &format!("a/b/blobs/{D}"), &[]).unwrap();
        assert_eq!(p.permission, Permission::Repository(a.clone(), RepoOp::Pull));
        assert_eq!(p.transfer, Some(Transfer::Download));
        assert_eq!(p.route.unwrap(), Route::GetBlob(a.clone(), D.parse().unwrap()));
        let p = parse(Method::DELETE, "a/b/manifests/v1", &[]).unwrap();
        assert_eq!(p.permission, Permission::Repository(a.clone(), RepoOp::Delete));
        assert_eq!(
            p.route.unwrap(),
            Route::DeleteManifest(a.clone(), Reference::parse("v1").unwrap())
        );
        let p = parse(Method::POST, "a/b/blobs/uploads/", &[("mount", D), ("from", "c")]).unwrap();
        assert_eq!(p.permission, Permission::Mount { name: a.clone(), from: "c".into() });
        assert_eq!(p.transfer, Some(Transfer::Upload));
        let from = Some(RepositoryName::parse("c").unwrap());
        assert_eq!(
            p.route.unwrap(),
            Route::StartUpload(a, Start::Mount { digest: D.parse().unwrap(), from })
        );
        let p = parse(Method::PUT, "_catalog", &[]).unwrap();
        assert_eq!(p.permission, Permission::Catalog);
        assert!(matches!(p.route, Err(Rejected::MethodNotAllowed(HERE))));
    }

    #[test]
    fn errors_wait_for_their_turn() {
        assert!(matches!(parse(Method::GET, "a/unknown/x", &[]), Err(NoRoute::Unknown)));
        assert!(matches!(parse(Method::GET, "A!/tags/list", &[]), Err(NoRoute::Name(_))));
        // Past the name, errors are said after authorization, which needs the permission.
        let p = parse(Method::GET, "a/blobs/nope", &[]).unwrap();
        assert_eq!(p.transfer, Some(Transfer::Download));
        assert!(matches!(p.route, Err(Rejected::Invalid(RegistryError::DigestInvalid(_)))));
        let p = parse(Method::GET, "a/manifests/!", &[]).unwrap();
        assert!(matches!(p.route, Err(Rejected::Invalid(RegistryError::ManifestUnknown(_)))));
        let p = parse(Method::PUT, "a/manifests/!", &[]).unwrap();
        assert!(matches!(p.route, Err(Rejected::Invalid(RegistryError::TagInvalid(_)))));
        let p = parse(Method::PUT, "a/blobs/uploads/x", &[]).unwrap();
        assert!(matches!(p.route, Err(Rejected::Invalid(RegistryError::BlobUploadUnknown))));
        let p = parse(Method::POST, "a/blobs/uploads/", &[("mount", D), ("from", "B!")]).unwrap();
        assert!(matches!(p.permission, Permission::Mount { .. }));
        assert!(matches!(p.route, Err(Rejected::Invalid(RegistryError::NameInvalid(_)))));
        let p = parse(Method::POST, &format!("a/blobs/{D}"), &[]).unwrap();
        assert!(matches!(p.route, Err(Rejected::MethodNotAllowed(_))));
    }
}
