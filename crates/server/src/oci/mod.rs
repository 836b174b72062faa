//! The OCI distribution API under `/v2/`.
//!
//! [`dispatch`] parses each request once ([`route::parse_route`]) into a typed [`Route`] and
//! the permission it needs, checks that, and hands the route to one function per route
//! (in [`discovery`], [`manifests`], [`blobs`], [`uploads`]), which take typed values.

mod blobs;
mod discovery;
mod manifests;
mod route;
mod uploads;

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::TryStreamExt;
use wharf_auth::{Caller, RegistryPolicy};
use wharf_oci::RepositoryName;
use wharf_registry::{ByteStream, RepoKey};

use crate::auth::Wanted;
use crate::error::too_many_requests;
use crate::limits::{Permit, Refusal};
use crate::{AppState, OciError};
use route::{NoRoute, Route, Transfer, parse_route};
use wharf_storage::RegistryId;

/// A `/v2/<path>` request's [`Route`], for metrics to name (see [`crate::metrics`]); else
/// the fixed name that stands for it.
pub(crate) fn route_for_metrics(
    method: &axum::http::Method,
    path: &str,
    query: Option<&str>,
) -> std::result::Result<impl std::fmt::Debug, &'static str> {
    if path.is_empty() {
        return Err("Base");
    }
    let query: HashMap<String, String> = query
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    match parse_route(method, path, &query) {
        Ok(route::Parsed { route: Ok(route), .. }) => Ok(route),
        Ok(_) | Err(NoRoute::Name(_)) => Err("v2_invalid"),
        Err(NoRoute::Unknown) => Err("unknown"),
    }
}

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
    let policy = &registry.policy;
    let login = state.management.login_server(&registry.record);
    let caller = match crate::auth::registry_caller(
        &state,
        &parts.headers,
        &parts.extensions,
        &origin,
        policy,
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

/// Every `/v2/<name>/…` request (and `/v2/_catalog`): parsed, its registry found, the
/// caller authorized and a transfer slot taken, then served.
async fn dispatch(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    // `/v2/<name>/blobs/uploads/` ends in an empty segment: keep it for the parser.
    let path = parts.uri.path().strip_prefix("/v2/").unwrap_or("");
    let parsed = parse_route(&parts.method, path, &query);
    if let Err(NoRoute::Unknown) = parsed {
        return NoRoute::Unknown.into_response();
    }
    let origin = crate::origin(&state, &parts);
    let registry = match crate::auth::addressed_registry(&state, &parts, &origin).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    // The name is checked before the permission: a check reads the same name the handler does.
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let wanted = parsed.permission.wanted();
    let caller = match crate::auth::authorize(&state, &parts, &origin, &registry, &wanted).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let permit = match admit(&state, &parts, parsed.transfer) {
        Ok(p) => p,
        Err(res) => return res,
    };
    // What is wrong past the name is said only now, to a caller allowed what it asked.
    let route = match parsed.route {
        Ok(r) => r,
        Err(rejected) => return rejected.into_response(),
    };
    let req = Req {
        state: &state,
        registry: registry.id(),
        policy: &registry.policy,
        caller: &caller,
        origin,
        query,
        headers: &parts.headers,
        body,
        permit,
    };
    serve(req, route).await.unwrap_or_else(IntoResponse::into_response)
}

/// The transfer slot a request takes, if it moves content. Transfers in flight are capped,
/// server-wide and per client address — the address the network rules see (behind a
/// trusted proxy, the client it names, not the proxy): past a cap the client is told to
/// come back.
fn admit(
    state: &AppState,
    parts: &http::request::Parts,
    transfer: Option<Transfer>,
) -> std::result::Result<Option<Permit>, Response> {
    let admission = &state.admission;
    let client = crate::auth::client_ip(state, &parts.headers, &parts.extensions);
    let slot = match transfer {
        None => return Ok(None),
        Some(Transfer::Download) => admission.download(client).map_err(|r| (r, "downloads")),
        Some(Transfer::Upload) => admission.upload(client).map_err(|r| (r, "uploads")),
    };
    match slot {
        Ok(p) => Ok(Some(p)),
        Err((Refusal::Server, what)) => {
            Err(too_many_requests(&format!("too many {what} in flight; retry shortly")))
        }
        Err((Refusal::Client, what)) => Err(too_many_requests(&format!(
            "too many {what} in flight from this client; retry shortly"
        ))),
    }
}

/// The function that serves each route.
async fn serve(req: Req<'_>, route: Route) -> Result {
    match route {
        Route::Catalog => discovery::catalog(req).await,
        Route::Tags(name) => discovery::tags(req, name).await,
        Route::Referrers(name, digest) => discovery::referrers(req, name, digest).await,
        Route::GetManifest(name, r) => manifests::get(req, name, r).await,
        Route::HeadManifest(name, r) => manifests::head(req, name, r).await,
        Route::PutManifest(name, r) => manifests::put(req, name, r).await,
        Route::DeleteManifest(name, r) => manifests::delete(req, name, r).await,
        Route::GetBlob(name, digest) => blobs::get(req, name, digest).await,
        Route::HeadBlob(name, digest) => blobs::head(req, name, digest).await,
        Route::DeleteBlob(name, digest) => blobs::delete(req, name, digest).await,
        Route::StartUpload(name, start) => uploads::start(req, name, start).await,
        Route::GetUpload(name, id) => uploads::status(req, name, id).await,
        Route::PatchUpload(name, id) => uploads::patch(req, name, id).await,
        Route::FinishUpload(name, id, digest) => uploads::finish(req, name, id, digest).await,
        Route::CancelUpload(name, id) => uploads::cancel(req, name, id).await,
    }
}

/// One request's parts, as handlers need them.
pub(crate) struct Req<'a> {
    state: &'a AppState,
    registry: RegistryId,
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
    fn key(&self, name: RepositoryName) -> RepoKey {
        RepoKey { registry: self.registry, name }
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a stream of chunks, errors as `io::Error`.
    fn body_stream(body: Body) -> ByteStream {
        Box::pin(body.into_data_stream().map_err(std::io::Error::other))
    }
}

type Result<T = Response> = std::result::Result<T, OciError>;
