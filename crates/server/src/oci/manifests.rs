//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wharf_oci::{Reference, RepositoryName, media_type};
use wharf_registry::{MAX_MANIFEST_SIZE, RegistryError};

use super::{Req, Result};
use crate::error::too_many_requests;
use crate::headers::value;
use crate::limits::{Admission, Permit, ReadError, WithPermit};

pub(super) async fn get(mut req: Req<'_>, name: RepositoryName, reference: Reference) -> Result {
    let m = req.state.registry.get_manifest(&req.key(name), &reference).await?;
    negotiate(req.headers, &m.media_type)?;
    // The bytes stay in memory until the client has read them: count them.
    let Some(memory) = req.state.admission.reserve(m.content.len()) else {
        return Ok(too_many_requests("the server is busy serving manifests; retry shortly"));
    };
    let permits = req.permit.take().into_iter().chain([memory]).collect::<Permit>();
    let once =
        futures::stream::once(std::future::ready(Ok::<_, std::io::Error>(m.content.clone())));
    let mut res = Response::new(Body::from_stream(WithPermit::new(once, permits)));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, value(m.media_type));
    h.insert(header::CONTENT_LENGTH, value(m.content.len().to_string()));
    h.insert("docker-content-digest", value(m.digest.to_string()));
    h.insert(header::ETAG, value(format!("\"{}\"", m.digest)));
    Ok(res)
}

pub(super) async fn head(req: Req<'_>, name: RepositoryName, reference: Reference) -> Result {
    let m = req.state.registry.head_manifest(&req.key(name), &reference).await?;
    negotiate(req.headers, &m.media_type)?;
    let mut res = Response::new(Body::empty());
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, value(m.media_type));
    h.insert(header::CONTENT_LENGTH, value(m.size.to_string()));
    h.insert("docker-content-digest", value(m.digest.to_string()));
    h.insert(header::ETAG, value(format!("\"{}\"", m.digest)));
    Ok(res)
}

pub(super) async fn put(req: Req<'_>, name: RepositoryName, reference: Reference) -> Result {
    let repo = req.key(name);
    let content_type = req.header(header::CONTENT_TYPE).map(str::to_owned);
    let (body, _memory) = match read_manifest_body(&req.state.admission, req.body).await {
        Ok(read) => read,
        Err(ReadError::Busy) => {
            return Ok(too_many_requests("too many manifests being pushed; retry shortly"));
        }
        Err(ReadError::Incomplete(e)) => {
            return Err(RegistryError::BodyIncomplete(e).into());
        }
        Err(ReadError::TooLarge) => {
            return Err(RegistryError::TooLarge {
                what: "manifest",
                limit: MAX_MANIFEST_SIZE as u64,
            }
            .into());
        }
    };
    let stored =
        req.state.registry.put_manifest(&repo, &reference, content_type.as_deref(), body).await?;
    let mut res = (
        StatusCode::CREATED,
        [
            (header::LOCATION, value(format!("/v2/{}/manifests/{}", repo.name, stored.digest))),
            (
                header::HeaderName::from_static("docker-content-digest"),
                value(stored.digest.to_string()),
            ),
            (header::CONTENT_LENGTH, value("0".into())),
        ],
    )
        .into_response();
    if let Some(subject) = stored.subject {
        res.headers_mut().insert("oci-subject", value(subject.to_string()));
    }
    Ok(res)
}

pub(super) async fn delete(req: Req<'_>, name: RepositoryName, reference: Reference) -> Result {
    req.state.registry.delete_manifest(&req.key(name), &reference).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Read a manifest body of at most [`MAX_MANIFEST_SIZE`] bytes, its memory counted in the
/// server's body budget. A larger one is read to its end (up to a bound) but not kept, so
/// that the client, still sending, gets the 413 instead of a reset connection.
async fn read_manifest_body(
    admission: &Admission,
    body: Body,
) -> std::result::Result<(bytes::Bytes, Permit), ReadError> {
    const DRAIN_LIMIT: usize = 64 << 20;
    admission.read_whole(body.into_data_stream(), MAX_MANIFEST_SIZE, DRAIN_LIMIT).await
}

/// Refuse a manifest the client said it can't take, as distribution does: a client that
/// lists specific types in `Accept` and not this one gets MANIFEST_UNKNOWN.
fn negotiate(headers: &HeaderMap, stored: &str) -> std::result::Result<(), RegistryError> {
    let mut accepted = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(media_type::essence)
        .filter(|t| !t.is_empty())
        .peekable();
    if accepted.peek().is_none() {
        return Ok(());
    }
    let stored_essence = media_type::essence(stored);
    let mut listed = Vec::new();
    for t in accepted {
        if t == "*/*" || t == stored_essence || t == "application/*" {
            return Ok(());
        }
        listed.push(t);
    }
    Err(RegistryError::ManifestUnknown(format!(
        "the manifest is {stored}, which the Accept header ({}) does not include",
        listed.join(", ")
    )))
}
