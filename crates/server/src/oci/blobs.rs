//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wharf_oci::{Digest, RepositoryName};
use wharf_registry::{BlobDownload, RangeRequest};

use super::{Req, Result};
use crate::headers::value;
use crate::limits::WithPermit;

pub(super) async fn head(req: Req<'_>, name: RepositoryName, digest: Digest) -> Result {
    let size = req.state.registry.stat_blob(&req.key(name), &digest).await?;
    Ok((
        [
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".into()),
            (header::ACCEPT_RANGES, "bytes".into()),
            (header::HeaderName::from_static("docker-content-digest"), digest.to_string()),
        ],
        Body::empty(),
    )
        .into_response())
}

pub(super) async fn get(mut req: Req<'_>, name: RepositoryName, digest: Digest) -> Result {
    let range = req.header(header::RANGE).and_then(parse_range);
    let read = match req.state.registry.download_blob(&req.key(name), &digest, range).await? {
        BlobDownload::Bytes(read) => read,
        // The client reads from the blob store; this request holds nothing more.
        BlobDownload::Redirect { url, .. } => {
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, value(url)),
                    (
                        header::HeaderName::from_static("docker-content-digest"),
                        value(digest.to_string()),
                    ),
                ],
            )
                .into_response());
        }
    };
    // The download slot is released when the body ends or the client goes away.
    let body = match req.permit.take() {
        Some(permit) => Body::from_stream(WithPermit::new(read.stream, permit)),
        None => Body::from_stream(read.stream),
    };
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("docker-content-digest", value(digest.to_string()));
    h.insert(header::ETAG, value(format!("\"{digest}\"")));
    match read.range {
        Some(r) => {
            h.insert(header::CONTENT_LENGTH, value(r.len().to_string()));
            h.insert(
                header::CONTENT_RANGE,
                value(format!("bytes {}-{}/{}", r.start, r.end, read.size)),
            );
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        None => {
            h.insert(header::CONTENT_LENGTH, value(read.size.to_string()));
        }
    }
    Ok(res)
}

pub(super) async fn delete(req: Req<'_>, name: RepositoryName, digest: Digest) -> Result {
    req.state.registry.delete_blob(&req.key(name), &digest).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `bytes=<start>-[<end>]` or `bytes=-<suffix>`. Anything else (including several
/// ranges) is ignored and the whole blob is served, as RFC 9110 allows.
fn parse_range(v: &str) -> Option<RangeRequest> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return Some(RangeRequest::Suffix(end.parse().ok()?));
    }
    let start: u64 = start.parse().ok()?;
    let end = if end.is_empty() { None } else { Some(end.parse().ok()?) };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(RangeRequest::From { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Some(RangeRequest::From { start: 0, end: Some(9) }));
        assert_eq!(parse_range("bytes=10-"), Some(RangeRequest::From { start: 10, end: None }));
        assert_eq!(parse_range("bytes=-5"), Some(RangeRequest::Suffix(5)));
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("bytes=0-1,4-5"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=x-1"), None);
    }
}
