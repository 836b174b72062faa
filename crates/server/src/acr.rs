//! ACR's data-plane extras under `/acr/v1/` (what `az acr repository …` calls): repositories
//! and their tags and manifests with details. Errors use the OCI error body, as ACR does.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use wharf_management::authz::actions;
use wharf_oci::{Digest, Reference, RepositoryName, Tag};
use wharf_registry::{ListOrder, ManifestDetail, RegistryError, RepoKey, TagRecord};
use wharf_storage::RegistryRecord;

use crate::error::oci_error;
use crate::{AppState, OciError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/acr/v1/{*path}", any(dispatch))
}

type Result<T = Response> = std::result::Result<T, OciError>;

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn changeable() -> Value {
    json!({"deleteEnabled": true, "writeEnabled": true, "readEnabled": true, "listEnabled": true})
}

fn tag_json(t: &TagRecord) -> Value {
    json!({
        "name": t.name,
        "digest": t.digest,
        "createdTime": timestamp(t.created_at),
        "lastUpdateTime": timestamp(t.updated_at),
        "signed": false,
        "changeableAttributes": changeable(),
    })
}

fn manifest_json(m: &ManifestDetail) -> Value {
    let mut v = json!({
        "digest": m.digest,
        "imageSize": m.image_size,
        "createdTime": timestamp(m.created_at),
        "lastUpdateTime": timestamp(m.created_at),
        "mediaType": m.media_type,
        "tags": m.tags,
        "changeableAttributes": changeable(),
    });
    if let Some(p) = &m.platform {
        v["architecture"] = json!(p.architecture);
        v["os"] = json!(p.os);
        if let Some(variant) = &p.variant {
            v["variant"] = json!(variant);
        }
    }
    if let Some(c) = &m.config_media_type {
        v["configMediaType"] = json!(c);
    }
    if let Some(a) = &m.artifact_type {
        v["artifactType"] = json!(a);
    }
    if !m.references.is_empty() {
        v["references"] = m
            .references
            .iter()
            .map(|(d, p)| {
                let mut r = json!({"digest": d});
                if let Some(p) = p {
                    r["architecture"] = json!(p.architecture);
                    r["os"] = json!(p.os);
                    if let Some(variant) = &p.variant {
                        r["variant"] = json!(variant);
                    }
                }
                r
            })
            .collect();
    }
    v
}

fn order(q: &HashMap<String, String>) -> ListOrder {
    match q.get("orderby").map(|s| s.to_ascii_lowercase().replace('_', "")) {
        Some(o) if o == "timedesc" => ListOrder::TimeDesc,
        Some(o) if o == "timeasc" => ListOrder::TimeAsc,
        _ => ListOrder::Name,
    }
}

fn limit(q: &HashMap<String, String>) -> Result<Option<u32>> {
    match q.get("n").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(n) => n.parse().map(Some).map_err(|_| {
            RegistryError::Unsupported(format!("n must be a non-negative integer, got {n:?}"))
                .into()
        }),
    }
}

/// Cut a list fetched with `n + 1` items back to `n`; the key to continue after, if more.
/// (Only name order pages: `last` is lexical, as in ACR.)
fn cut<T>(items: &mut Vec<T>, n: Option<u32>, key: impl Fn(&T) -> String) -> Option<String> {
    let n = n? as usize;
    if items.len() <= n {
        return None;
    }
    items.truncate(n);
    items.last().map(key)
}

/// Add ACR's `Link: <…?last=…&n=…&orderby=…>; rel="next"` when a page was cut.
fn link(
    mut res: Response,
    path: &str,
    next: Option<String>,
    n: Option<u32>,
    q: &HashMap<String, String>,
) -> Response {
    if let (Some(last), Some(n)) = (next, n)
        && order(q) == ListOrder::Name
    {
        let digest = q
            .get("digest")
            .filter(|d| !d.is_empty())
            .map(|d| format!("&digest={}", d.replace(':', "%3A")))
            .unwrap_or_default();
        let link = format!(
            "<{path}?last={}&n={n}&orderby={digest}>; rel=\"next\"",
            last.replace('/', "%2F").replace(':', "%3A")
        );
        if let Ok(v) = header::HeaderValue::from_str(&link) {
            res.headers_mut().insert(header::LINK, v);
        }
    }
    res
}

async fn dispatch(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let path = parts.uri.path().strip_prefix("/acr/v1/").unwrap_or("");
    let host = crate::request_host(&parts);
    let registry = match state.registry.registry_for_host(host, &state.settings.domain).await {
        Ok(r) => r,
        Err(e) => return OciError(e).into_response(),
    };
    // One permission check: catalog, or the repository the path names.
    let (repository, action) = if path == "_catalog" {
        (None, actions::CATALOG_READ)
    } else {
        let name = ["/_tags", "/_manifests"]
            .iter()
            .find_map(|m| path.rfind(m).map(|i| &path[..i]))
            .unwrap_or(path);
        let action =
            if parts.method == Method::DELETE { actions::DELETE_ARTIFACT } else { actions::PULL };
        (Some(name), action)
    };
    if let Some(denied) = crate::authorize_data(&state, &registry, repository, action) {
        return denied;
    }
    handle(&state, &registry, &parts.method, path, &q)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    state: &AppState,
    registry: &RegistryRecord,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
) -> Result {
    let login = state.management.login_server(registry);
    let svc = &state.registry;
    let repo_key = |name: &str| -> Result<RepoKey> {
        let name =
            RepositoryName::parse(name).map_err(|e| RegistryError::NameInvalid(e.to_string()))?;
        Ok(RepoKey { registry: registry.id, name })
    };
    if path == "_catalog" {
        if *method != Method::GET {
            return Ok(oci_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "method not allowed here",
            ));
        }
        let n = limit(q)?;
        let page = svc.catalog(registry.id, q.get("last").map(String::as_str), n).await?;
        let mut res = axum::Json(json!({"repositories": page.items})).into_response();
        if let (Some(last), Some(n)) = (page.next_last, n) {
            let link = format!(
                "</acr/v1/_catalog?last={}&n={n}&orderby=>; rel=\"next\"",
                last.replace('/', "%2F")
            );
            if let Ok(v) = header::HeaderValue::from_str(&link) {
                res.headers_mut().insert(header::LINK, v);
            }
        }
        return Ok(res);
    }
    // <name>/_tags[/<tag>], <name>/_manifests[/<digest>], or <name>
    let split = |marker: &str| -> Option<(&str, Option<&str>)> {
        let i = path.rfind(marker)?;
        let (name, rest) = (&path[..i], &path[i + marker.len()..]);
        match rest {
            "" => Some((name, None)),
            r if r.starts_with('/') && r.len() > 1 && !r[1..].contains('/') => {
                Some((name, Some(&r[1..])))
            }
            _ => None,
        }
    };
    if let Some((name, tag)) = split("/_tags") {
        let repo = repo_key(name)?;
        return match (tag, method.clone()) {
            (None, Method::GET) => {
                let n = limit(q)?;
                let digest = q.get("digest").filter(|d| !d.is_empty());
                // With a digest filter, filter first and page what is left.
                let more = if digest.is_some() { None } else { n.map(|n| n.saturating_add(1)) };
                let mut tags = svc
                    .tag_details(&repo, q.get("last").map(String::as_str), more, order(q))
                    .await?;
                if let Some(d) = digest {
                    tags.retain(|t| t.digest.to_string() == *d);
                }
                let next = cut(&mut tags, n, |t| t.name.clone());
                let res = axum::Json(json!({
                    "registry": login, "imageName": repo.name,
                    "tags": tags.iter().map(tag_json).collect::<Vec<_>>(),
                }))
                .into_response();
                Ok(link(res, &format!("/acr/v1/{}/_tags", repo.name), next, n, q))
            }
            (Some(tag), Method::GET) => {
                let tag =
                    Tag::parse(tag).map_err(|e| RegistryError::ManifestUnknown(e.to_string()))?;
                let tags = svc.tag_details(&repo, None, None, ListOrder::Name).await?;
                let t = tags.iter().find(|t| t.name == tag.as_str()).ok_or_else(|| {
                    RegistryError::ManifestUnknown(format!("tag {tag} not found"))
                })?;
                Ok(axum::Json(
                    json!({"registry": login, "imageName": repo.name, "tag": tag_json(t)}),
                )
                .into_response())
            }
            (Some(tag), Method::DELETE) => {
                let tag =
                    Tag::parse(tag).map_err(|e| RegistryError::ManifestUnknown(e.to_string()))?;
                svc.delete_manifest(&repo, &Reference::Tag(tag)).await?;
                Ok(StatusCode::ACCEPTED.into_response())
            }
            _ => Ok(oci_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "method not allowed here",
            )),
        };
    }
    if let Some((name, digest)) = split("/_manifests") {
        let repo = repo_key(name)?;
        return match (digest, method.clone()) {
            (None, Method::GET) => {
                let n = limit(q)?;
                let more = n.map(|n| n.saturating_add(1));
                let mut ms = svc
                    .manifest_details(&repo, q.get("last").map(String::as_str), more, order(q))
                    .await?;
                let next = cut(&mut ms, n, |m| m.digest.to_string());
                let res = axum::Json(json!({
                    "registry": login, "imageName": repo.name,
                    "manifests": ms.iter().map(manifest_json).collect::<Vec<_>>(),
                }))
                .into_response();
                Ok(link(res, &format!("/acr/v1/{}/_manifests", repo.name), next, n, q))
            }
            (Some(d), Method::GET) => {
                let d: Digest = d.parse().map_err(|e: wharf_oci::DigestError| {
                    RegistryError::DigestInvalid(e.to_string())
                })?;
                let ms = svc.manifest_details(&repo, None, None, ListOrder::Name).await?;
                let m = ms
                    .iter()
                    .find(|m| m.digest == d)
                    .ok_or_else(|| RegistryError::ManifestUnknown(d.to_string()))?;
                Ok(axum::Json(json!({"registry": login, "imageName": repo.name, "manifest": manifest_json(m)})).into_response())
            }
            (Some(d), Method::DELETE) => {
                let d: Digest = d.parse().map_err(|e: wharf_oci::DigestError| {
                    RegistryError::DigestInvalid(e.to_string())
                })?;
                svc.delete_manifest(&repo, &Reference::Digest(d)).await?;
                Ok(StatusCode::ACCEPTED.into_response())
            }
            _ => Ok(oci_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "method not allowed here",
            )),
        };
    }
    let repo = repo_key(path)?;
    match method.clone() {
        Method::GET => {
            let tags = svc.tag_details(&repo, None, None, ListOrder::Name).await?;
            let ms = svc.manifest_details(&repo, None, None, ListOrder::Name).await?;
            let created = ms.iter().map(|m| m.created_at).min().unwrap_or(0);
            let updated = ms
                .iter()
                .map(|m| m.created_at)
                .chain(tags.iter().map(|t| t.updated_at))
                .max()
                .unwrap_or(0);
            Ok(axum::Json(json!({
                "registry": login, "imageName": repo.name,
                "createdTime": timestamp(created), "lastUpdateTime": timestamp(updated),
                "manifestCount": ms.len(), "tagCount": tags.len(),
                "changeableAttributes": changeable(),
            }))
            .into_response())
        }
        Method::DELETE => {
            let (manifests, tags) = svc.delete_repository(&repo).await?;
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({"manifestsDeleted": manifests, "tagsDeleted": tags})),
            )
                .into_response())
        }
        _ => {
            Ok(oci_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method not allowed here"))
        }
    }
}
