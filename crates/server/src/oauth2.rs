//! A registry's token service, on its login server, as ACR runs it (and Docker's token
//! protocol describes it):
//!
//! - `GET /oauth2/token?service=…&scope=…` with `Basic` credentials (or none): an access
//!   token for what was asked, cut down to what the caller may do;
//! - `POST /oauth2/token` (form): `grant_type=refresh_token` or `password`, same answer;
//! - `POST /oauth2/exchange` (form): `grant_type=access_token` turns an identity access token
//!   into a registry refresh token (used as the password, with the null GUID as user name).
//!
//! Errors use the OCI error body, as ACR's token service does.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use wharf_auth::scope::{Access, parse_all};
use wharf_auth::{AuthError, Caller, RegistryCredential, RegistryPolicy};

use crate::AppState;
use crate::auth::{Presented, client_ip};
use crate::error::oci_error;
use crate::identity;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth2/token", get(token_get).post(token_post))
        .route("/oauth2/exchange", post(exchange))
}

/// The policy of the registry whose login server the request came to, and its canonical
/// login server (the `aud` of its tokens).
async fn registry(
    state: &AppState,
    parts: &http::request::Parts,
) -> Result<(RegistryPolicy, String), Response> {
    let origin = crate::origin(state, parts);
    let r = crate::auth::addressed_registry(state, parts, &origin).await?;
    let login = state.management.login_server(&r.record);
    Ok((r.policy, login))
}

fn unauthorized(message: &str) -> Response {
    oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

fn refusal(e: AuthError) -> Response {
    match e {
        AuthError::Throttled(secs) => {
            let mut res = oci_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                "too many failed sign-in attempts; retry later",
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        AuthError::Internal(m) => {
            tracing::error!(error = %m, "token service failure");
            oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error")
        }
        _ => unauthorized("authentication required"),
    }
}

/// Answer with an access token for `requested`, granted as far as `caller` may.
fn access_token(
    state: &AppState,
    caller: &Caller,
    policy: &RegistryPolicy,
    login: &str,
    requested: &[Access],
    refresh: Option<String>,
) -> Response {
    // An anonymous caller gets a token only where anonymous pull is on (and then only pull).
    if caller.is_anonymous() && state.identity.enforced() && !policy.anonymous_pull {
        return unauthorized("authentication required");
    }
    match state.identity.issue_registry_access_token(caller, policy, login, requested) {
        Ok((token, _granted)) => {
            let mut body = json!({
                "access_token": token,
                "token": token,
                "expires_in": state.identity.registry_access_ttl().as_secs(),
                "issued_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            if let Some(r) = refresh {
                body["refresh_token"] = json!(r);
            }
            no_store(axum::Json(body).into_response())
        }
        Err(e) => refusal(e),
    }
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Every `scope` of a query string (it may repeat).
fn query_scopes(query: Option<&str>) -> Vec<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// `GET /oauth2/token`: Basic credentials (or none) → an access token.
async fn token_get(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (policy, login) = match registry(&state, &parts).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let scopes = query_scopes(parts.uri.query());
    let requested = parse_all(scopes.iter().map(String::as_str));
    let caller =
        match caller_from_basic(&state, &parts.headers, &parts.extensions, &policy, &login).await {
            Ok(c) => c,
            Err(res) => return res,
        };
    access_token(&state, &caller, &policy, &login, &requested, None)
}

async fn caller_from_basic(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &http::Extensions,
    policy: &RegistryPolicy,
    login: &str,
) -> Result<Caller, Response> {
    let presented = Presented::from_headers(headers);
    let credential = match &presented {
        Presented::None => None,
        Presented::Basic { username, password } => {
            Some(RegistryCredential::Basic { username, password })
        }
        // A token is not a credential for a token: ask for Basic.
        Presented::Bearer(_) | Presented::Malformed => {
            return Err(unauthorized("the token service takes Basic credentials"));
        }
    };
    state
        .identity
        .registry_caller(policy, login, credential, client_ip(state, headers, extensions))
        .await
        .map_err(refusal)
}

/// `POST /oauth2/token`: `refresh_token` or `password` grant → an access token.
async fn token_post(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = match identity::small_body(&state, request).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let (policy, login) = match registry(&state, &parts).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| {
        fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    };
    let requested = parse_all(fields.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str()));
    let client = client_ip(&state, &parts.headers, &parts.extensions);
    let (username, password) = match field("grant_type") {
        Some("refresh_token") => match field("refresh_token") {
            Some(t) => (wharf_auth::NULL_GUID, t),
            None => {
                return oci_error(
                    StatusCode::BAD_REQUEST,
                    "UNSUPPORTED",
                    "refresh_token is required",
                );
            }
        },
        Some("password") => match (field("username"), field("password")) {
            (Some(u), Some(p)) => (u, p),
            _ => {
                return oci_error(
                    StatusCode::BAD_REQUEST,
                    "UNSUPPORTED",
                    "username and password are required",
                );
            }
        },
        _ => {
            return oci_error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                "grant_type must be refresh_token or password",
            );
        }
    };
    let credential = RegistryCredential::Basic { username, password };
    let caller =
        match state.identity.registry_caller(&policy, &login, Some(credential), client).await {
            Ok(c) => c,
            Err(e) => return refusal(e),
        };
    // Docker's OAuth2 flow asks for a refresh token along (`access_type=offline`).
    let refresh =
        if field("grant_type") == Some("password") && field("access_type") == Some("offline") {
            // Only a principal gets one (a registry credential signs in with its password each
            // time); the caller was authenticated above, once.
            match caller.principal_id() {
                Some(id) => match state.identity.principal(id).await {
                    Ok(p) => state.identity.issue_registry_refresh_token(&p, &policy, &login).ok(),
                    Err(_) => None,
                },
                None => None,
            }
        } else {
            None
        };
    access_token(&state, &caller, &policy, &login, &requested, refresh)
}

/// `POST /oauth2/exchange`: an identity access token → a registry refresh token.
async fn exchange(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = match identity::small_body(&state, request).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let (policy, login) = match registry(&state, &parts).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let f = identity::form(&body);
    let field = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if field("grant_type") != Some("access_token") {
        return oci_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "grant_type must be access_token (the other grants are deprecated and not supported)",
        );
    }
    let Some(token) = field("access_token") else {
        return oci_error(StatusCode::BAD_REQUEST, "UNSUPPORTED", "access_token is required");
    };
    if let Some(t) = field("tenant")
        && !t.eq_ignore_ascii_case(state.identity.default_tenant())
    {
        return unauthorized("the token's tenant is not this server's");
    }
    // Only an identity token is exchanged: a registry refresh token can't renew itself.
    let principal = match state
        .identity
        .principal_from_identity_token(token, wharf_auth::Surface::Registry)
        .await
    {
        Ok(p) => p,
        Err(e) => return refusal(e),
    };
    match state.identity.issue_registry_refresh_token(&principal, &policy, &login) {
        Ok(t) => no_store(axum::Json(json!({ "refresh_token": t })).into_response()),
        Err(e) => refusal(e),
    }
}
