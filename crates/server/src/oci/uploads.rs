//! `POST /v2/<name>/blobs/uploads/` and `GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>`

use axum::body::HttpBody;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;
use wharf_auth::RepoOp;
use wharf_oci::{Digest, RepositoryName};
use wharf_registry::{RegistryError, RepoKey, UploadStatus};

use super::route::Start;
use super::{Req, Result};
use crate::auth::{Wanted, challenge};
use crate::headers::{range_value, value};

/// Start an upload: a monolithic push, a mount, or a session.
pub(super) async fn start(req: Req<'_>, name: RepositoryName, start: Start) -> Result {
    let repo = req.key(name);
    let registry = &req.state.registry;
    match start {
        Start::Mount { digest, from: Some(from) } => {
            // A token that never asked about `from`: tell the client to ask (as distribution
            // does), so that token clients can mount.
            if let Some(access) = req.caller.registry_access(req.policy.id)
                && !access.iter().any(|a| a.kind == "repository" && a.name == from.as_str())
            {
                let wanted = Wanted::Mount { name: repo.name.as_str(), from: from.as_str() };
                return Ok(challenge(
                    req.state,
                    &req.origin,
                    &wanted,
                    Some("insufficient_scope"),
                    "UNAUTHORIZED",
                ));
            }
            // Mounting reads `from`: a caller who may not pull there gets a session, as if
            // the blob weren't there (nothing said about what `from` holds).
            let readable = req.caller.can(RepoOp::Pull, req.policy, from.as_str());
            if readable && registry.mount_blob(&repo, &digest, &from).await? {
                return Ok(created(&repo, &digest));
            }
        }
        Start::Monolithic(digest) => {
            let body = Req::body_stream(req.body);
            registry.put_blob(&repo, &digest, body).await?;
            return Ok(created(&repo, &digest));
        }
        Start::Mount { from: None, .. } | Start::Session => {}
    }
    // A session; also where a mount can't be done (a 202, as the spec asks).
    let status = registry.start_upload(&repo).await?;
    Ok(accepted(&repo, status))
}

pub(super) async fn status(req: Req<'_>, name: RepositoryName, id: Uuid) -> Result {
    let repo = req.key(name);
    let status = req.state.registry.upload_status(&repo, id).await?;
    let mut res = accepted(&repo, status);
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}

pub(super) async fn patch(req: Req<'_>, name: RepositoryName, id: Uuid) -> Result {
    let repo = req.key(name);
    let (start, len) = match req.header(header::CONTENT_RANGE) {
        None => (None, None),
        Some(v) => match parse_content_range(v) {
            Some((start, len)) => (Some(start), Some(len)),
            None => {
                return Err(RegistryError::BlobUploadInvalid(format!(
                    "Content-Range {v:?} is not <start>-<end>"
                ))
                .into());
            }
        },
    };
    let body = Req::body_stream(req.body);
    let status = req.state.registry.upload_chunk(&repo, id, start, len, body).await?;
    Ok(accepted(&repo, status))
}

/// `PUT`: the upload ends, with this request's body if it has one.
pub(super) async fn finish(req: Req<'_>, name: RepositoryName, id: Uuid, digest: Digest) -> Result {
    let repo = req.key(name);
    // From the body itself: HTTP/2 may send one without Content-Length.
    let has_body = !req.body.is_end_stream();
    let body = has_body.then(|| Req::body_stream(req.body));
    req.state.registry.finish_upload(&repo, id, &digest, body).await?;
    Ok(created(&repo, &digest))
}

pub(super) async fn cancel(req: Req<'_>, name: RepositoryName, id: Uuid) -> Result {
    req.state.registry.cancel_upload(&req.key(name), id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 201 for a blob now in the repository.
fn created(repo: &RepoKey, digest: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, value(format!("/v2/{}/blobs/{digest}", repo.name))),
            (header::HeaderName::from_static("docker-content-digest"), value(digest.to_string())),
            (header::CONTENT_LENGTH, value("0".into())),
        ],
    )
        .into_response()
}

/// 202 for an upload session that takes more data.
fn accepted(repo: &RepoKey, status: UploadStatus) -> Response {
    (
        StatusCode::ACCEPTED,
        [
            (header::LOCATION, value(format!("/v2/{}/blobs/uploads/{}", repo.name, status.id))),
            (header::RANGE, value(range_value(status.size))),
            (header::HeaderName::from_static("docker-upload-uuid"), value(status.id.to_string())),
            (header::CONTENT_LENGTH, value("0".into())),
        ],
    )
        .into_response()
}

/// `<start>-<end>` (also accepted: `bytes <start>-<end>[/<total>|/*]`), end inclusive, as
/// `(start, length)`; `None` for anything else, including a length past `u64`.
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v.strip_prefix("bytes ").or_else(|| v.strip_prefix("bytes=")).unwrap_or(v);
    let v = v.split('/').next()?;
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let len = end.checked_sub(start)?.checked_add(1)?;
    Some((start, len))
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 100)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 100)));
        assert_eq!(parse_content_range("0-18446744073709551615"), None, "length overflows");
        assert_eq!(parse_content_range("1-18446744073709551615"), Some((1, u64::MAX)));
        assert_eq!(parse_content_range("5-4"), None);
        assert_eq!(parse_content_range("abc"), None);
        assert_eq!(parse_content_range("-5"), None);
    }
}
