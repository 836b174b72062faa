//! ACR's data-plane extras under `/acr/v1/` (what `az acr repository …` calls): repositories
//! and their tags and manifests with details. Errors use the OCI error body, as ACR does.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use wharf_auth::RepoOp;
use wharf_management::timestamp;
use wharf_oci::{Digest, Reference, RepositoryName, Tag};
use wharf_registry::{ListOrder, ManifestDetail, RegistryError, RepoKey, TagRecord};
use wharf_storage::RegistryRecord;

use crate::auth::Wanted;
use crate::error::oci_error;
use crate::{AppState, OciError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/acr/v1/{*path}", any(dispatch))
}

type Result<T = Response> = std::result::Result<T, OciError>;

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

/// `n`, within [`wharf_registry::MAX_PAGE`] (also the page without one).
fn limit(q: &HashMap<String, String>) -> Result<Option<u32>> {
    let n = match q.get("n").filter(|s| !s.is_empty()) {
        None => None,
        Some(n) => Some(n.parse().map_err(|_| {
            OciError(RegistryError::Unsupported(format!(
                "n must be a non-negative integer, got {n:?}"
            )))
        })?),
    };
    Ok(Some(wharf_registry::page_size(n)))
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

/// A parsed `/acr/v1/…` request: the method and path, with the repository name, tag or
/// digest already validated. It names the permission it needs ([`Route::wanted`]), and the
/// handler receives it, so the check and the handler read the same path.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Catalog,
    GetRepository(RepositoryName),
    DeleteRepository(RepositoryName),
    ListTags(RepositoryName),
    GetTag(RepositoryName, Tag),
    DeleteTag(RepositoryName, Tag),
    ListManifests(RepositoryName),
    GetManifest(RepositoryName, Digest),
    DeleteManifest(RepositoryName, Digest),
}

/// Why a request names no route: a method the path doesn't take (405), or a name, tag or
/// digest that doesn't parse (the registry's error for it).
#[derive(Debug)]
enum NoRoute {
    MethodNotAllowed,
    Invalid(RegistryError),
}

impl IntoResponse for NoRoute {
    fn into_response(self) -> Response {
        match self {
            NoRoute::MethodNotAllowed => {
                oci_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method not allowed here")
            }
            NoRoute::Invalid(e) => OciError(e).into_response(),
        }
    }
}

impl Route {
    /// `<name>`, `<name>/_tags[/<tag>]`, `<name>/_manifests[/<digest>]` or `_catalog`.
    fn parse(method: &Method, path: &str) -> std::result::Result<Route, NoRoute> {
        let not_allowed = || NoRoute::MethodNotAllowed;
        let name = |n: &str| {
            RepositoryName::parse(n)
                .map_err(|e| NoRoute::Invalid(RegistryError::NameInvalid(e.to_string())))
        };
        if path == "_catalog" {
            return if *method == Method::GET { Ok(Route::Catalog) } else { Err(not_allowed()) };
        }
        // The markers are searched from the end: a repository may be called `x/_tags`.
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
        let tag = |t: &str| {
            Tag::parse(t)
                .map_err(|e| NoRoute::Invalid(RegistryError::ManifestUnknown(e.to_string())))
        };
        let digest = |d: &str| {
            d.parse::<Digest>()
                .map_err(|e| NoRoute::Invalid(RegistryError::DigestInvalid(e.to_string())))
        };
        if let Some((n, t)) = split("/_tags") {
            return match (t, method.clone()) {
                (None, Method::GET) => Ok(Route::ListTags(name(n)?)),
                (Some(t), Method::GET) => Ok(Route::GetTag(name(n)?, tag(t)?)),
                (Some(t), Method::DELETE) => Ok(Route::DeleteTag(name(n)?, tag(t)?)),
                _ => Err(not_allowed()),
            };
        }
        if let Some((n, d)) = split("/_manifests") {
            return match (d, method.clone()) {
                (None, Method::GET) => Ok(Route::ListManifests(name(n)?)),
                (Some(d), Method::GET) => Ok(Route::GetManifest(name(n)?, digest(d)?)),
                (Some(d), Method::DELETE) => Ok(Route::DeleteManifest(name(n)?, digest(d)?)),
                _ => Err(not_allowed()),
            };
        }
        match method.clone() {
            Method::GET => Ok(Route::GetRepository(name(path)?)),
            Method::DELETE => Ok(Route::DeleteRepository(name(path)?)),
            _ => Err(not_allowed()),
        }
    }

    /// The permission the route needs: the catalog, or an operation in its repository.
    fn wanted(&self) -> Wanted<'_> {
        let op = match self {
            Route::DeleteRepository(_) | Route::DeleteTag(..) | Route::DeleteManifest(..) => {
                RepoOp::Delete
            }
            _ => RepoOp::MetadataRead,
        };
        match self.repository() {
            None => Wanted::Catalog,
            Some(name) => Wanted::Repository(name.as_str(), op),
        }
    }

    /// The repository the route is about (none for the catalog).
    fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Route::Catalog => None,
            Route::GetRepository(n)
            | Route::DeleteRepository(n)
            | Route::ListTags(n)
            | Route::GetTag(n, _)
            | Route::DeleteTag(n, _)
            | Route::ListManifests(n)
            | Route::GetManifest(n, _)
            | Route::DeleteManifest(n, _) => Some(n),
        }
    }
}

/// An `/acr/v1/<path>` request's [`Route`], for metrics to name; else the fixed name that
/// stands for it.
pub(crate) fn route_for_metrics(
    method: &Method,
    path: &str,
) -> std::result::Result<impl std::fmt::Debug, &'static str> {
    Route::parse(method, path).map_err(|_| "acr_invalid")
}

async fn dispatch(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let path = parts.uri.path().strip_prefix("/acr/v1/").unwrap_or("");
    let origin = crate::origin(&state, &parts);
    let registry = match crate::auth::addressed_registry(&state, &parts, &origin).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let route = match Route::parse(&parts.method, path) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Err(res) =
        crate::auth::authorize(&state, &parts, &origin, &registry, &route.wanted()).await
    {
        return res;
    }
    let ctx = Ctx { state: &state, registry: &registry.record, q: &q };
    let result = match route {
        Route::Catalog => catalog(ctx).await,
        Route::GetRepository(name) => get_repository(ctx, name).await,
        Route::DeleteRepository(name) => delete_repository(ctx, name).await,
        Route::ListTags(name) => list_tags(ctx, name).await,
        Route::GetTag(name, tag) => get_tag(ctx, name, tag).await,
        Route::DeleteTag(name, tag) => delete_reference(ctx, name, Reference::Tag(tag)).await,
        Route::ListManifests(name) => list_manifests(ctx, name).await,
        Route::GetManifest(name, digest) => get_manifest(ctx, name, digest).await,
        Route::DeleteManifest(name, digest) => {
            delete_reference(ctx, name, Reference::Digest(digest)).await
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// What every handler needs besides its route.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    state: &'a AppState,
    registry: &'a RegistryRecord,
    q: &'a HashMap<String, String>,
}

impl Ctx<'_> {
    fn key(&self, name: RepositoryName) -> RepoKey {
        RepoKey { registry: self.registry.id, name }
    }

    fn login(&self) -> String {
        self.state.management.login_server(self.registry)
    }
}

async fn catalog(ctx: Ctx<'_>) -> Result {
    let n = limit(ctx.q)?;
    let page = ctx
        .state
        .registry
        .catalog(ctx.registry.id, ctx.q.get("last").map(String::as_str), n)
        .await?;
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
    Ok(res)
}

async fn get_repository(ctx: Ctx<'_>, name: RepositoryName) -> Result {
    let repo = ctx.key(name);
    let s = ctx.state.registry.repository_detail(&repo).await?;
    Ok(axum::Json(json!({
        "registry": ctx.login(), "imageName": repo.name,
        "createdTime": timestamp(s.created_at), "lastUpdateTime": timestamp(s.updated_at),
        "manifestCount": s.manifest_count, "tagCount": s.tag_count,
        "changeableAttributes": changeable(),
    }))
    .into_response())
}

async fn delete_repository(ctx: Ctx<'_>, name: RepositoryName) -> Result {
    let (manifests, tags) = ctx.state.registry.delete_repository(&ctx.key(name)).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"manifestsDeleted": manifests, "tagsDeleted": tags})),
    )
        .into_response())
}

async fn list_tags(ctx: Ctx<'_>, name: RepositoryName) -> Result {
    let repo = ctx.key(name);
    let n = limit(ctx.q)?;
    let digest = ctx.q.get("digest").filter(|d| !d.is_empty());
    // With a digest filter, filter first and page what is left.
    let more = if digest.is_some() { None } else { n.map(|n| n.saturating_add(1)) };
    let mut tags = ctx
        .state
        .registry
        .tag_details(&repo, ctx.q.get("last").map(String::as_str), more, order(ctx.q))
        .await?;
    if let Some(d) = digest {
        tags.retain(|t| t.digest.to_string() == *d);
    }
    let next = cut(&mut tags, n, |t| t.name.clone());
    let res = axum::Json(json!({
        "registry": ctx.login(), "imageName": repo.name,
        "tags": tags.iter().map(tag_json).collect::<Vec<_>>(),
    }))
    .into_response();
    Ok(link(res, &format!("/acr/v1/{}/_tags", repo.name), next, n, ctx.q))
}

async fn get_tag(ctx: Ctx<'_>, name: RepositoryName, tag: Tag) -> Result {
    let repo = ctx.key(name);
    let t = ctx.state.registry.tag_detail(&repo, &tag).await?;
    Ok(axum::Json(json!({"registry": ctx.login(), "imageName": repo.name, "tag": tag_json(&t)}))
        .into_response())
}

async fn list_manifests(ctx: Ctx<'_>, name: RepositoryName) -> Result {
    let repo = ctx.key(name);
    let n = limit(ctx.q)?;
    let more = n.map(|n| n.saturating_add(1));
    let mut ms = ctx
        .state
        .registry
        .manifest_details(&repo, ctx.q.get("last").map(String::as_str), more, order(ctx.q))
        .await?;
    let next = cut(&mut ms, n, |m| m.digest.to_string());
    let res = axum::Json(json!({
        "registry": ctx.login(), "imageName": repo.name,
        "manifests": ms.iter().map(manifest_json).collect::<Vec<_>>(),
    }))
    .into_response();
    Ok(link(res, &format!("/acr/v1/{}/_manifests", repo.name), next, n, ctx.q))
}

async fn get_manifest(ctx: Ctx<'_>, name: RepositoryName, digest: Digest) -> Result {
    let repo = ctx.key(name);
    let m = ctx.state.registry.manifest_detail(&repo, &digest).await?;
    Ok(axum::Json(
        json!({"registry": ctx.login(), "imageName": repo.name, "manifest": manifest_json(&m)}),
    )
    .into_response())
}

async fn delete_reference(ctx: Ctx<'_>, name: RepositoryName, reference: Reference) -> Result {
    ctx.state.registry.delete_manifest(&ctx.key(name), &reference).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_carry_their_action_and_repository() {
        let get = |p: &str| Route::parse(&Method::GET, p).ok();
        assert_eq!(get("_catalog"), Some(Route::Catalog));
        let a = RepositoryName::parse("a/b").unwrap();
        assert_eq!(get("a/b"), Some(Route::GetRepository(a.clone())));
        assert_eq!(get("a/b/_tags"), Some(Route::ListTags(a.clone())));
        assert_eq!(get("a/b/_tags/v1"), Some(Route::GetTag(a.clone(), Tag::parse("v1").unwrap())));
        // Marker names can't be repository components (they start with `_`).
        assert!(get("x/_tags/y/_tags").is_none());
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let del = Route::parse(&Method::DELETE, &format!("a/b/_manifests/{d}")).unwrap();
        assert!(matches!(del.wanted(), Wanted::Repository("a/b", RepoOp::Delete)));
        assert_eq!(del.repository(), Some(&a));
        let list = get("a/b/_manifests").unwrap();
        assert!(matches!(list.wanted(), Wanted::Repository("a/b", RepoOp::MetadataRead)));
        assert!(matches!(get("_catalog").unwrap().wanted(), Wanted::Catalog));
        // A method a path doesn't take is a 405 with the OCI body, not a 400.
        for (m, p) in
            [(Method::PUT, "a/b"), (Method::DELETE, "_catalog"), (Method::POST, "a/_tags")]
        {
            let res = Route::parse(&m, p).unwrap_err().into_response();
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
        }
        assert!(matches!(Route::parse(&Method::GET, "A!/_tags"), Err(NoRoute::Invalid(_))));
        assert!(get("a/b/_manifests/nope").is_none());
        assert!(get("../etc").is_none());
    }
}
