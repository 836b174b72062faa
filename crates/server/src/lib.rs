//! wharf's HTTP layer. Only this crate knows HTTP: routes, headers, status codes and the
//! JSON shapes on the wire. Handlers parse the request into domain values
//! ([`wharf_oci`] types), call [`wharf_registry::RegistryService`], and turn the result
//! or the [`wharf_registry::RegistryError`] into a response.
//!
//! Routes:
//! - `/v2/…` — the OCI distribution API ([`oci`]), on every registry's login server;
//! - `/acr/v1/…` — ACR's repository/tag/manifest details ([`acr`]), likewise;
//! - `/subscriptions/…` — the ARM-shaped management API and import ([`arm`]);
//! - `/oauth2/token`, `/oauth2/exchange` — each registry's token service ([`oauth2`]);
//! - `/{tenant}/oauth2/v2.0/token`, OIDC discovery, `/metadata/endpoints` — the identity
//!   provider, shaped like Entra ID ([`identity`]); `/v1.0/…` — its directory ([`directory`]);
//! - `/_wharf/…` — admin endpoints ([`admin`]) used by the CLI (`wharf gc`);
//! - `/livez`, `/startupz`, `/readyz` — health probes ([`health`]), on any host, no auth.
//! - `/metrics` — Prometheus metrics ([`metrics`]).
//!
//! Every request is authenticated in [`auth`] and checked once against the permission its
//! parsed route names.
//!
//! Architecture invariant: no handler holds a whole blob in memory; blob bodies are
//! streams from the socket to the blob store and back.

// Handlers answer a refusal with the `Response` to send, once per request: boxing it buys
// nothing.
#![allow(clippy::result_large_err)]

mod acr;
mod admin;
mod arm;
mod auth;
mod directory;
mod error;
mod headers;
mod health;
mod identity;
pub mod limits;
mod listener;
pub mod metrics;
pub mod network;
mod oauth2;
mod oci;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use std::borrow::Cow;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use wharf_import::ImportService;
use wharf_management::Management;
use wharf_registry::{GcOptions, RegistryService};

pub use error::OciError;
pub use health::{Health, HealthSettings};
pub use limits::{Admission, Limits};
pub use listener::bind;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: RegistryService,
    pub management: Management,
    pub imports: ImportService,
    /// Who callers are and what they may do.
    pub identity: Arc<wharf_auth::Identity>,
    pub settings: Arc<Settings>,
    /// Caps on transfers and body memory, shared by every request.
    pub admission: Admission,
    /// The stores' health as the background probe last found it (`/readyz`).
    pub health: Health,
}

/// Server settings handlers need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Registries answer at `<name>.<domain>`.
    pub domain: String,
    /// How the GC endpoint collects.
    pub gc: GcOptions,
    /// Connection and transfer limits.
    pub limits: Limits,
    /// Proxies whose `X-Forwarded-For` names the client (for network rules and sign-in
    /// throttling); nobody else's is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Client networks that pass registries' public-network rules, as ACR's private
    /// endpoints do.
    pub private_networks: Vec<ipnet::IpNet>,
    /// The URL clients reach the server at, when it isn't the listen address (a reverse
    /// proxy, a port mapping): its scheme is what realms and `Location`s name.
    pub public_url: Option<String>,
    /// The server speaks TLS itself (then `https` is the scheme clients used).
    pub tls: bool,
    /// Which header trusted proxies write.
    pub forwarded: network::ForwardedHeader,
    /// Client networks that may read `/metrics` without signing in (`[metrics] allow`).
    pub metrics_allow: Vec<ipnet::IpNet>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let body_idle = state.settings.limits.body_idle_timeout;
    // A handler that panics (a bug: none may on input) answers 500 in its protocol's error
    // format instead of dropping the connection; the panic's message isn't logged (it may
    // quote the request), only where it happened (`quiet_panics`).
    let oci = || CatchPanicLayer::custom(|_| panic_response(Protocol::Oci));
    let arm = || CatchPanicLayer::custom(|_| panic_response(Protocol::Arm));
    let oauth = || CatchPanicLayer::custom(|_| panic_response(Protocol::OAuth));
    let app = Router::new()
        .merge(oci::routes().layer(oci()))
        .merge(acr::routes().layer(oci()))
        .merge(arm::routes().layer(arm()))
        .merge(admin::routes().layer(arm()))
        .merge(identity::routes().layer(oauth()))
        .merge(oauth2::routes().layer(oci()))
        .merge(directory::routes().layer(arm()))
        .merge(health::routes().layer(arm()))
        .merge(metrics::routes().layer(arm()))
        .with_state(state)
        // A request body that sends nothing for this long fails its request.
        .layer(axum::middleware::map_request(move |req: Request| async move {
            req.map(|body| axum::body::Body::new(limits::IdleBody::new(body, body_idle)))
        }))
        .layer(axum::middleware::map_response(api_version_header))
        // Every request counted and timed by its bounded route name (see `metrics`).
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(
            TraceLayer::new_for_http()
                // Paths only: queries and headers may carry secrets in later APIs.
                .make_span_with(|req: &Request| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_request(())
                .on_response(
                    |res: &axum::response::Response, latency: std::time::Duration, _: &tracing::Span| {
                        tracing::info!(status = res.status().as_u16(), ms = latency.as_millis() as u64, "served");
                    },
                ),
        );
    // Paths are normalised before the router sees them.
    Router::new().fallback_service(
        tower::ServiceBuilder::new().map_request(collapse_empty_segments).service(app),
    )
}

/// ARM answers `//metadata/endpoints` — what `az cloud register` sends when the endpoint
/// a user copied ends in `/` — as `/metadata/endpoints`, and so every management path:
/// empty path segments are dropped before routing (not on `/v2`, whose paths are the
/// distribution spec's and never have empty segments).
fn collapse_empty_segments(mut req: Request) -> Request {
    let path = req.uri().path();
    if !path.contains("//") || path.starts_with("/v2/") {
        return req;
    }
    let mut collapsed = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        collapsed.push('/');
        collapsed.push_str(segment);
    }
    if collapsed.is_empty() {
        collapsed.push('/');
    }
    if let Some(q) = req.uri().query() {
        collapsed.push('?');
        collapsed.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = collapsed.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

#[derive(Clone, Copy)]
enum Protocol {
    Oci,
    Arm,
    OAuth,
}

fn panic_response(protocol: Protocol) -> axum::response::Response {
    let status = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    let message = "internal error; see the server log";
    match protocol {
        Protocol::Oci => error::oci_error(status, "UNKNOWN", message),
        Protocol::Arm => axum::response::IntoResponse::into_response(arm::ArmResponse(
            wharf_management::ArmError::internal(message),
        )),
        Protocol::OAuth => identity::oauth_error(status, "server_error", 90033, message),
    }
}

/// Log a panic as where it happened, never with its message (which may quote a request,
/// and with it a secret): what `wharf serve` installs.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::error!(at, "a handler panicked (a bug); the request was answered 500");
    }));
}

async fn api_version_header(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut()
        .insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    res
}

/// How a client addressed a request: the scheme and host it used.
#[derive(Clone, Debug)]
pub(crate) struct Origin<'a> {
    pub(crate) scheme: &'static str,
    pub(crate) host: Option<Cow<'a, str>>,
}

impl Origin<'_> {
    pub(crate) fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
}

/// A request's [`Origin`]: from a trusted proxy, what its configured header says (the last
/// `X-Forwarded-Host`/`-Proto`, or the nearest `Forwarded` element's `host=`/`proto=`); otherwise `Host` (or the HTTP/2 authority) and the scheme of the
/// server's public URL (`http` without one). Nobody else's forwarding headers are believed.
pub(crate) fn origin<'a>(state: &AppState, parts: &'a http::request::Parts) -> Origin<'a> {
    let proxied = network::from_trusted_proxy(state, &parts.extensions);
    let own_host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.authority().map(|a| a.as_str()));
    let (fwd_host, proto) =
        if proxied { network::forwarded_host_proto(state, &parts.headers) } else { (None, None) };
    let host = match fwd_host {
        Some(h) => Some(Cow::Owned(h)),
        None => own_host.map(Cow::Borrowed),
    };
    let configured = match &state.settings.public_url {
        Some(u) if u.starts_with("https://") => "https",
        Some(_) => "http",
        None if state.settings.tls => "https",
        None => "http",
    };
    let scheme = match proto.as_deref() {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ => configured,
    };
    Origin { scheme, host }
}

/// Serve until `shutdown` resolves, then finish in-flight requests and return. Connections
/// are accepted and timed out within the state's [`Limits`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<Arc<tls::Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.settings.limits.clone();
    let acceptor = tls.map(|t| t.acceptor());
    listener::serve(listener, router(state), &limits, acceptor, shutdown).await
}
