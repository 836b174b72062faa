//! The OCI distribution API under `/v2/`.
//!
//! Repository names contain slashes, so `/v2/<name>/…` can't be matched by a router
//! pattern; [`parse_route`] splits the path from the end, where the grammar is fixed
//! (`manifests/<ref>`, `blobs/<digest>`, `blobs/uploads/[<id>]`, `tags/list`,
//! `referrers/<digest>`), and validates the name that is left.

mod blobs;
mod discovery;
mod manifests;
mod uploads;

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::TryStreamExt;
use wharf_auth::{Caller, RegistryPolicy, RepoOp};
use wharf_management::Management;
use wharf_oci::{Digest, Reference, RepositoryName};
use wharf_registry::{ByteStream, RegistryError, RepoKey};

use crate::auth::Wanted;
use crate::error::{oci_error, too_many_requests};
use crate::limits::{Permit, Refusal};
use crate::{AppState, OciError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/", get(base))
        .route("/v2", get(base))
        .route("/v2/{*path}", any(dispatch))
}

/// `GET /v2/`: the API version check every client starts with (and `docker login`'s
/// probe: a login server naming no registry answers 404).
async fn base(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let origin = crate::origin(&state, &parts);
    let registry = match crate::auth::addressed_registry(&state, &parts, &origin).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    // As ACR: signing in is required here, even where anonymous pull is on.
    let policy = Management::policy(&registry);
    let login = state.management.login_server(&registry);
    let caller = match crate::auth::registry_caller(
        &state,
        &parts.headers,
        &parts.extensions,
        &origin,
        &policy,
        &login,
        &Wanted::Nothing,
    )
    .await
    {
        Ok(c) => c,
        Err(res) => return res,
    };
    let signed_in = !caller.is_anonymous() || !state.identity.enforced();
    if let Err(res) = crate::auth::require(&state, &caller, signed_in, &origin, &Wanted::Nothing) {
        return res;
    }
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

/// A parsed `/v2/…` path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Catalog,
    Tags { name: &'a str },
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    Uploads { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Referrers { name: &'a str, digest: &'a str },
}

impl Route<'_> {
    /// The repository the route is about (none for the catalog).
    fn name(&self) -> Option<&str> {
        match self {
            Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::Uploads { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// Split a path after `/v2/` into a route; `None` if it matches no API.
pub(crate) fn parse_route(path: &str) -> Option<Route<'_>> {
    if path == "_catalog" {
        return Some(Route::Catalog);
    }
    // name/<a>/<b>: the last two segments select the route.
    let (rest, last) = path.rsplit_once('/')?;
    if let Some(name) = rest.strip_suffix("/tags").filter(|_| last == "list") {
        return Some(Route::Tags { name });
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(if last.is_empty() {
            Route::Uploads { name }
        } else {
            Route::Upload { name, id: last }
        });
    }
    if last == "uploads"
        && let Some(name) = rest.strip_suffix("/blobs")
    {
        return Some(Route::Uploads { name });
    }
    let (name, kind) = rest.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest { name, reference: last }),
        "blobs" => Some(Route::Blob { name, digest: last }),
        "referrers" => Some(Route::Referrers { name, digest: last }),
        _ => None,
    }
}

async fn dispatch(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().strip_prefix("/v2/").unwrap_or("");
    // `/v2/<name>/blobs/uploads/` ends in an empty segment: keep it for the parser.
    let Some(route) = parse_route(path) else {
        return oci_error(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such API route");
    };
    let origin = crate::origin(&state, &parts);
    let registry = match crate::auth::addressed_registry(&state, &parts, &origin).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    // The name is checked before the permission: a check reads the same name the handler does.
    if let Some(name) = route.name()
        && let Err(e) = RepositoryName::parse(name)
    {
        return OciError(RegistryError::NameInvalid(e.to_string())).into_response();
    }
    let mount_from = query.get("mount").and(query.get("from"));
    let wanted = match (&route, &parts.method) {
        (Route::Catalog, _) => Wanted::Catalog,
        // A mount asks for pull on `from` too, in the same challenge (one round trip).
        (Route::Uploads { name }, &Method::POST) if mount_from.is_some() => {
            Wanted::Mount { name, from: mount_from.map(String::as_str).unwrap_or_default() }
        }
        (r, m) => {
            let op = match *m {
                Method::GET | Method::HEAD => RepoOp::Pull,
                Method::DELETE => RepoOp::Delete,
                _ => RepoOp::Push,
            };
            Wanted::Repository(r.name().unwrap_or_default(), op)
        }
    };
    let (caller, policy) =
        match crate::auth::authorize(&state, &parts, &origin, &registry, &wanted).await {
            Ok(c) => c,
            Err(res) => return res,
        };
    // Transfers in flight are capped, server-wide and per client address — the address the
    // network rules see (behind a trusted proxy, the client it names, not the proxy): past
    // a cap the client is told to come back.
    let admission = &state.admission;
    let client = crate::auth::client_ip(&state, &parts.headers, &parts.extensions);
    let slot = match (&route, &parts.method) {
        (Route::Blob { .. } | Route::Manifest { .. }, &Method::GET) => {
            Some(admission.download(client).map_err(|r| (r, "downloads")))
        }
        (Route::Uploads { .. }, &Method::POST)
        | (Route::Upload { .. }, &Method::PATCH | &Method::PUT)
        | (Route::Manifest { .. }, &Method::PUT) => {
            Some(admission.upload(client).map_err(|r| (r, "uploads")))
        }
        _ => None,
    };
    let permit = match slot {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err((Refusal::Server, what))) => {
            return too_many_requests(&format!("too many {what} in flight; retry shortly"));
        }
        Some(Err((Refusal::Client, what))) => {
            return too_many_requests(&format!(
                "too many {what} in flight from this client; retry shortly"
            ));
        }
    };
    let req = Req {
        state: &state,
        registry: registry.id,
        policy: &policy,
        caller: &caller,
        origin,
        query,
        headers: &parts.headers,
        body,
        permit,
    };
    let result = match (route, &parts.method) {
        (Route::Catalog, &Method::GET) => discovery::catalog(req).await,
        (Route::Tags { name }, &Method::GET) => discovery::tags(req, name).await,
        (Route::Referrers { name, digest }, &Method::GET) => {
            discovery::referrers(req, name, digest).await
        }
        (Route::Manifest { name, reference }, m) => {
            manifests::handle(req, m, name, reference).await
        }
        (Route::Blob { name, digest }, m) => blobs::handle(req, m, name, digest).await,
        (Route::Uploads { name }, &Method::POST) => uploads::start(req, name).await,
        (Route::Upload { name, id }, m) => uploads::handle(req, m, name, id).await,
        _ => {
            return oci_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "method not allowed here",
            );
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// One request's parts, as handlers need them.
pub(crate) struct Req<'a> {
    state: &'a AppState,
    registry: i64,
    /// Who may do what in the registry, and who is asking.
    policy: &'a RegistryPolicy,
    caller: &'a Caller,
    /// How the request was addressed (for challenges).
    origin: crate::Origin<'a>,
    query: HashMap<String, String>,
    headers: &'a HeaderMap,
    body: Body,
    /// The transfer slot this request holds; a streamed response takes it along.
    permit: Option<Permit>,
}

impl Req<'_> {
    fn repo(&self, name: &str) -> Result<RepoKey> {
        let name =
            RepositoryName::parse(name).map_err(|e| RegistryError::NameInvalid(e.to_string()))?;
        Ok(RepoKey { registry: self.registry, name })
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a stream of chunks, errors as `io::Error`.
    fn body_stream(body: Body) -> ByteStream {
        Box::pin(body.into_data_stream().map_err(std::io::Error::other))
    }
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse::<Digest>().map_err(|e| RegistryError::DigestInvalid(e.to_string()).into())
}

fn parse_reference(s: &str) -> Result<Reference> {
    Reference::parse(s).map_err(|e| match e {
        wharf_oci::ReferenceError::Digest(d) => RegistryError::DigestInvalid(d.to_string()).into(),
        wharf_oci::ReferenceError::Tag(t) => RegistryError::TagInvalid(t.to_string()).into(),
    })
}

type Result<T = Response> = std::result::Result<T, OciError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_from_the_end() {
        use Route::*;
        assert_eq!(parse_route("_catalog"), Some(Catalog));
        assert_eq!(parse_route("a/b/tags/list"), Some(Tags { name: "a/b" }));
        assert_eq!(
            parse_route("a/manifests/latest"),
            Some(Manifest { name: "a", reference: "latest" })
        );
        assert_eq!(
            parse_route("x/manifests/y/manifests/v1"),
            Some(Manifest { name: "x/manifests/y", reference: "v1" })
        );
        assert_eq!(
            parse_route("a/b/blobs/sha256:00"),
            Some(Blob { name: "a/b", digest: "sha256:00" })
        );
        assert_eq!(parse_route("a/blobs/uploads/"), Some(Uploads { name: "a" }));
        assert_eq!(parse_route("a/blobs/uploads"), Some(Uploads { name: "a" }));
        assert_eq!(parse_route("a/blobs/uploads/abc"), Some(Upload { name: "a", id: "abc" }));
        assert_eq!(
            parse_route("a/referrers/sha256:00"),
            Some(Referrers { name: "a", digest: "sha256:00" })
        );
        assert_eq!(parse_route("a/tags/lists"), None);
        assert_eq!(parse_route("a"), None);
        assert_eq!(parse_route("a/unknown/x"), None);
    }
}
