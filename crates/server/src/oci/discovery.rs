//! `GET /v2/_catalog`, `GET /v2/<name>/tags/list`, `GET /v2/<name>/referrers/<digest>`

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wharf_oci::{Digest, RepositoryName, media_type};
use wharf_registry::{Page, RegistryError};

use super::route::parse_digest;
use super::{Req, Result};
use crate::headers::value;

/// `n` (within [`wharf_registry::MAX_PAGE`], which is also the page without one) and
/// `last` from the query.
fn paging(req: &Req<'_>) -> std::result::Result<(Option<u32>, Option<String>), RegistryError> {
    let n = match req.query.get("n") {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => Some(s.parse::<u32>().map_err(|_| {
            RegistryError::Unsupported(format!("n must be a non-negative integer, got {s:?}"))
        })?),
    };
    let n = Some(wharf_registry::page_size(n));
    Ok((n, req.query.get("last").filter(|s| !s.is_empty()).cloned()))
}

/// Add `Link: <path?n=&last=>; rel="next"` when the page was cut.
fn link_next(mut res: Response, path: &str, page: &Page, n: Option<u32>) -> Response {
    if let (Some(last), Some(n)) = (&page.next_last, n) {
        let link = format!("<{path}?n={n}&last={}>; rel=\"next\"", encode(last));
        res.headers_mut().insert(header::LINK, value(link));
    }
    res
}

/// Percent-encode a query value (names and tags hold only `[A-Za-z0-9._/-]`).
fn encode(s: &str) -> String {
    s.replace('/', "%2F")
}

pub(super) async fn catalog(req: Req<'_>) -> Result {
    let (n, last) = paging(&req)?;
    let page = req.state.registry.catalog(req.registry, last.as_deref(), n).await?;
    let res = axum::Json(json!({ "repositories": page.items })).into_response();
    Ok(link_next(res, "/v2/_catalog", &page, n))
}

pub(super) async fn tags(req: Req<'_>, name: RepositoryName) -> Result {
    let repo = req.key(name);
    let (n, last) = paging(&req)?;
    let page = req.state.registry.tags(&repo, last.as_deref(), n).await?;
    let res = axum::Json(json!({ "name": repo.name, "tags": page.items })).into_response();
    Ok(link_next(res, &format!("/v2/{}/tags/list", repo.name), &page, n))
}

pub(super) async fn referrers(req: Req<'_>, name: RepositoryName, digest: Digest) -> Result {
    let repo = req.key(name);
    let artifact_type = req.query.get("artifactType").filter(|s| !s.is_empty());
    let (n, last) = paging(&req)?;
    let after = last.as_deref().map(parse_digest).transpose()?;
    let (manifests, next) = req
        .state
        .registry
        .referrers(&repo, &digest, artifact_type.map(String::as_str), after.as_ref(), n)
        .await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let mut res =
        ([(header::CONTENT_TYPE, media_type::OCI_INDEX)], body.to_string()).into_response();
    if artifact_type.is_some() {
        res.headers_mut().insert("oci-filters-applied", value("artifactType".into()));
    }
    if let Some(last) = &next {
        // The filter goes along to the next page (a media type is `type/subtype[+suffix]`).
        let filter: String = artifact_type
            .map(|a| {
                format!(
                    "&artifactType={}",
                    url::form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
                )
            })
            .unwrap_or_default();
        let link = format!(
            "</v2/{}/referrers/{digest}?n={}&last={last}{filter}>; rel=\"next\"",
            repo.name,
            n.unwrap_or_default()
        );
        res.headers_mut().insert(header::LINK, value(link));
    }
    Ok(res)
}
