//! Prometheus metrics: the process-wide recorder, the HTTP layer that counts every request
//! by its bounded route name, and `GET /metrics`, which renders them.
//!
//! Design: [`track`] wraps the whole router and names each request *before* it runs
//! ([`route_name`]), by parsing it again with the same pure parsers the dispatchers use
//! (`/v2`, `/acr/v1`, ARM) and taking the typed `Route` variant's name — the value the
//! authorization matrix uses — or a fixed family name for the other APIs. Parsing twice
//! costs microseconds and needs no handler to change; naming up front lets the in-flight
//! gauge carry the same `route` as the counters. A label is never a path, repository,
//! digest or tag, so pushing to new repositories adds no series.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use wharf_auth::actions;

use crate::AppState;

/// distribution's request-duration buckets (seconds).
const DURATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The process's recorder, installed on first use (one per process: metrics are global).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("wharf_http_request_duration_seconds".into()),
                DURATION_BUCKETS,
            )
            // Valid static buckets: cannot fail.
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder installed first (an embedding program's) keeps its place; this
        // handle then renders nothing, which is what that program asked for.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_gauge!("wharf_build_info", "wharf's version and backends; always 1.");
    metrics::describe_counter!("wharf_http_requests_total", "HTTP requests answered.");
    metrics::describe_histogram!(
        "wharf_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request (headers; bodies stream afterwards)."
    );
    metrics::describe_gauge!("wharf_http_requests_in_flight", "HTTP requests being answered.");
    metrics::describe_counter!(
        "wharf_registry_bytes_total",
        metrics::Unit::Bytes,
        "Blob bytes received (in: uploads) and sent (out: downloads served by this node)."
    );
}

/// Set `wharf_build_info` for this process's backends, as kinds (`db`: sqlite/postgresql,
/// `storage`: filesystem/s3/az).
pub fn build_info(db: &str, storage: &str) {
    handle();
    let labels = [
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ("db", db.to_owned()),
        ("storage", storage.to_owned()),
    ];
    metrics::gauge!("wharf_build_info", &labels).set(1.0);
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// The exposition, for an allowed address or a caller allowed `Wharf/metrics/read` at `/`.
async fn scrape(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if !allowed_address(&state, &parts.headers, &parts.extensions) {
        let caller = match crate::auth::arm_caller(&state, &parts.headers).await {
            Ok(c) => c,
            Err(e) => return crate::arm::ArmResponse(e).into_response(),
        };
        if let Err(e) = caller.check(actions::METRICS_READ, "/") {
            return crate::arm::ArmResponse(e.into()).into_response();
        }
    }
    let body = handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// The client (as the network rules see it) is in `[metrics] allow`.
fn allowed_address(state: &AppState, headers: &HeaderMap, ext: &http::Extensions) -> bool {
    let allow = &state.settings.metrics_allow;
    if allow.is_empty() {
        return false;
    }
    let ip: Option<IpAddr> = crate::network::client_address(state, headers, ext);
    ip.is_some_and(|ip| allow.iter().any(|n| n.contains(&ip)))
}

/// Counts, times and gauges every request under its [`route_name`]; blob bytes are counted
/// as they pass, in or out ([`Counted`]).
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = route_name(req.method(), req.uri().path(), req.uri().query());
    let blob_in = matches!(route.as_str(), "StartUpload" | "PatchUpload" | "FinishUpload");
    let req = if blob_in { req.map(|b| Counted::wrap(b, "in")) } else { req };
    let method = method_label(req.method());
    let in_flight = metrics::gauge!("wharf_http_requests_in_flight", "route" => route.clone());
    in_flight.increment(1.0);
    let start = Instant::now();
    let res = next.run(req).await;
    in_flight.decrement(1.0);
    let code = res.status().as_u16().to_string();
    // A redirected download (307) sends no blob bytes from here.
    let res = if route == "GetBlob" && res.status().is_success() {
        res.map(|b| Counted::wrap(b, "out"))
    } else {
        res
    };
    metrics::counter!("wharf_http_requests_total",
        "route" => route.clone(), "method" => method, "code" => code)
    .increment(1);
    metrics::histogram!("wharf_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    res
}

/// A body whose data bytes are added to `wharf_registry_bytes_total{direction}` as they
/// are read: what actually crossed the socket, not what a header announced.
struct Counted {
    inner: Body,
    bytes: metrics::Counter,
}

impl Counted {
    fn wrap(inner: Body, direction: &'static str) -> Body {
        let bytes = metrics::counter!("wharf_registry_bytes_total", "direction" => direction);
        Body::new(Counted { inner, bytes })
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.increment(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Methods as a bounded set: anything unusual is `other`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A request's bounded route name: the typed route's variant for `/v2`, `/acr/v1` and ARM
/// (`v2_invalid`/`acr_invalid`/`arm_invalid` when the path has the shape but not valid
/// parts), else its API family.
pub(crate) fn route_name(method: &Method, path: &str, query: Option<&str>) -> String {
    if let Some(rest) = path.strip_prefix("/v2/") {
        return named(crate::oci::route_for_metrics(method, rest, query));
    }
    if path == "/v2" {
        return "Base".into();
    }
    if let Some(rest) = path.strip_prefix("/acr/v1/") {
        return named(crate::acr::route_for_metrics(method, rest));
    }
    let family = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    if family("/subscriptions") || family("/providers") || family("/tenants") {
        return named(crate::arm::route_for_metrics(method, path));
    }
    let name = if family("/oauth2") {
        "oauth2"
    } else if family("/v1.0") {
        "graph"
    } else if family("/_wharf") {
        "admin"
    } else if path == "/metrics" {
        "metrics"
    } else if matches!(path, "/livez" | "/readyz" | "/startupz") {
        "health"
    } else if path.contains("/oauth2/")
        || path.contains("/.well-known/")
        || path.contains("/discovery/")
        || family("/metadata")
    {
        "identity"
    } else {
        "unknown"
    };
    name.into()
}

/// A typed route's variant name (its `Debug` up to the first field: never the fields,
/// which hold names and digests), or the fixed name standing for a request that is none.
/// Exact, bounded by the enum, and a new variant is named with no extra code.
fn named(route: Result<impl std::fmt::Debug, &'static str>) -> String {
    match route {
        Ok(route) => {
            let debug = format!("{route:?}");
            let end = debug.find(['(', ' ', '{']).unwrap_or(debug.len());
            debug[..end].to_owned()
        }
        Err(name) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_named_by_their_type_or_family() {
        let name = |m: Method, p: &str, q: Option<&str>| route_name(&m, p, q);
        assert_eq!(name(Method::GET, "/v2/", None), "Base");
        assert_eq!(name(Method::GET, "/v2/a/b/manifests/v1", None), "GetManifest");
        assert_eq!(
            name(Method::PATCH, "/v2/a/blobs/uploads/0a5b2e61-54a6-4c6a-9d3c-6f5d4c3b2a10", None),
            "PatchUpload"
        );
        assert_eq!(name(Method::GET, "/v2/a/manifests/bad:tag!", None), "v2_invalid");
        assert_eq!(name(Method::GET, "/v2/nothing", None), "unknown");
        assert_eq!(name(Method::GET, "/acr/v1/a/_tags/v1", None), "GetTag");
        assert_eq!(name(Method::GET, "/subscriptions", None), "ListSubscriptions");
        assert_eq!(name(Method::GET, "/tenants", None), "ListTenants");
        assert_eq!(name(Method::POST, "/oauth2/token", None), "oauth2");
        assert_eq!(name(Method::POST, "/common/oauth2/v2.0/token", None), "identity");
        assert_eq!(name(Method::GET, "/common/discovery/v2.0/keys", None), "identity");
        assert_eq!(name(Method::GET, "/metadata/endpoints", None), "identity");
        assert_eq!(name(Method::GET, "/v1.0/users/x", None), "graph");
        assert_eq!(name(Method::POST, "/_wharf/gc", None), "admin");
        assert_eq!(name(Method::GET, "/readyz", None), "health");
        assert_eq!(name(Method::GET, "/metrics", None), "metrics");
        assert_eq!(name(Method::GET, "/anything/else", None), "unknown");
    }
}
