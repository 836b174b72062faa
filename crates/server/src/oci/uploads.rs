//! `POST /v2/<name>/blobs/uploads/` and `GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>`

use axum::body::HttpBody;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;
use wharf_auth::RepoOp;
use wharf_oci::{Digest, RepositoryName};
use wharf_registry::{RegistryError, RepoKey, UploadStatus};

use super::{Req, Result, parse_digest};
use crate::auth::{Wanted, challenge};
use crate::error::oci_error;
use crate::headers::{range_value, value};

/// Start an upload: a monolithic push (`?digest=`), a mount (`?mount=&from=`), or a session.
pub(super) async fn start(req: Req<'_>, name: &str) -> Result {
    let repo = req.repo(name)?;
    let registry = &req.state.registry;
    if let Some(mount) = req.query.get("mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = req.query.get("from") {
            let from = RepositoryName::parse(from)
                .map_err(|e| RegistryError::NameInvalid(e.to_string()))?;
            // A token that never asked about `from`: tell the client to ask (as distribution
            // does), so that token clients can mount.
            if let Some(access) = req.caller.registry_access(req.policy.id)
                && !access.iter().any(|a| a.kind == "repository" && a.name == from.as_str())
            {
                let wanted = Wanted::Mount { name, from: from.as_str() };
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
        // Not mountable: fall back to a fresh session (202), as the spec asks.
    } else if let Some(digest) = req.query.get("digest") {
        let digest = parse_digest(digest)?;
        let body = Req::body_stream(req.body);
        registry.put_blob(&repo, &digest, body).await?;
        return Ok(created(&repo, &digest));
    }
    let status = registry.start_upload(&repo).await?;
    Ok(accepted(&repo, status))
}

pub(super) async fn handle(req: Req<'_>, method: &Method, name: &str, id: &str) -> Result {
    let repo = req.repo(name)?;
    let id = Uuid::parse_str(id).map_err(|_| RegistryError::BlobUploadUnknown)?;
    let registry = &req.state.registry;
    match *method {
        Method::GET => {
            let status = registry.upload_status(&repo, id).await?;
            let mut res = accepted(&repo, status);
            *res.status_mut() = StatusCode::NO_CONTENT;
            Ok(res)
        }
        Method::PATCH => {
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
            let status = registry.upload_chunk(&repo, id, start, len, body).await?;
            Ok(accepted(&repo, status))
        }
        Method::PUT => {
            let digest = req.query.get("digest").ok_or_else(|| {
                RegistryError::DigestInvalid("the digest query parameter is required".into())
            })?;
            let digest = parse_digest(digest)?;
            // From the body itself: HTTP/2 may send one without Content-Length.
            let has_body = !req.body.is_end_stream();
            let body = has_body.then(|| Req::body_stream(req.body));
            registry.finish_upload(&repo, id, &digest, body).await?;
            Ok(created(&repo, &digest))
        }
        Method::DELETE => {
            registry.cancel_upload(&repo, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Ok(oci_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "method not allowed on an upload",
        )),
    }
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
