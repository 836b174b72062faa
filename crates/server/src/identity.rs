//! The identity provider's endpoints, shaped like Microsoft Entra ID's public contract so
//! that Azure credential libraries (MSAL, azure-identity) and `az`-style clients can sign in
//! against wharf:
//!
//! - `GET /{tenant}/v2.0/.well-known/openid-configuration`, `GET /{tenant}/discovery/v2.0/keys`
//! - `POST /{tenant}/oauth2/v2.0/token` (`client_credentials`, `password`)
//! - `GET /common/discovery/instance` (MSAL's instance discovery)
//! - `GET /metadata/endpoints` (ARM's cloud description: where management, sign-in and login
//!   servers are)
//!
//! Errors are OAuth2's `{"error","error_description","error_codes"}`, with Entra's AADSTS
//! numbers where clients look for them.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use wharf_auth::{AuthError, PrincipalKind};
use wharf_storage::PrincipalRecord;

use crate::AppState;
use crate::auth::{Presented, client_ip};
use crate::limits::ReadError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(openid_configuration))
        .route("/{tenant}/.well-known/openid-configuration", get(openid_configuration))
        .route("/{tenant}/discovery/v2.0/keys", get(keys))
        .route("/{tenant}/discovery/keys", get(keys))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/discovery/instance", get(instance_discovery))
        .route("/metadata/endpoints", get(metadata_endpoints))
}

/// An OAuth2 error answer.
pub(crate) fn oauth_error(
    status: StatusCode,
    error: &str,
    code: u32,
    description: &str,
) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}"),
        "error_codes": [code],
        "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": uuid::Uuid::new_v4().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The tenant a path segment names: its id, or one of Entra's aliases (`common`,
/// `organizations`) for the server's only tenant.
fn tenant(state: &AppState, segment: &str) -> Result<String, Response> {
    let default = state.identity.default_tenant();
    if segment.eq_ignore_ascii_case(default)
        || ["common", "organizations", "default"].iter().any(|a| a.eq_ignore_ascii_case(segment))
    {
        return Ok(default.to_owned());
    }
    Err(oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_tenant",
        90002,
        &format!("Tenant '{}' not found.", segment.chars().take(64).collect::<String>()),
    ))
}

fn base(state: &AppState) -> String {
    state.identity.settings().issuer_base.clone()
}

async fn openid_configuration(State(state): State<AppState>, Path(t): Path<String>) -> Response {
    let tenant = match tenant(&state, &t) {
        Ok(t) => t,
        Err(res) => return res,
    };
    let base = base(&state);
    axum::Json(json!({
        "issuer": state.identity.issuer(&tenant),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_types_supported": ["token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "grant_types_supported": ["client_credentials", "password"],
        "scopes_supported": ["openid", "profile", "offline_access"],
        "claims_supported": ["aud", "iss", "iat", "nbf", "exp", "tid", "oid", "sub", "azp", "appid", "idtyp", "name", "preferred_username", "ver"],
        "tenant_region_scope": null,
        "cloud_instance_name": "wharf",
        "cloud_graph_host_name": "wharf",
        "msgraph_host": base.trim_start_matches("https://").trim_start_matches("http://"),
    }))
    .into_response()
}

async fn keys(State(state): State<AppState>, Path(t): Path<String>) -> Response {
    if let Err(res) = tenant(&state, &t) {
        return res;
    }
    axum::Json(state.identity.jwks()).into_response()
}

/// MSAL asks this before it trusts an authority it doesn't know.
async fn instance_discovery(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let base = base(&state);
    let tenant = q
        .get("authorization_endpoint")
        .and_then(|e| url::Url::parse(e).ok())
        .and_then(|u| u.path_segments()?.next().map(str::to_owned))
        .and_then(|t| self::tenant(&state, &t).ok())
        .unwrap_or_else(|| state.identity.default_tenant().to_owned());
    let host = base.split("://").nth(1).unwrap_or_default().to_owned();
    axum::Json(json!({
        "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
    .into_response()
}

/// ARM's `/metadata/endpoints`: an array of clouds (api-version 2019-05-01 and later), or
/// the one cloud as an object (earlier or none), as ARM answers.
async fn metadata_endpoints(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let base = base(&state);
    let login_suffix =
        format!(".{}{}", state.settings.domain, state.management.login_servers().port_suffix);
    let audiences: Vec<String> = state.identity.settings().audiences.clone();
    let cloud = json!({
        "name": "wharf",
        "portal": base,
        "resourceManager": format!("{base}/"),
        "authentication": {
            "loginEndpoint": format!("{base}/"),
            "audiences": audiences,
            "tenant": state.identity.default_tenant(),
            "identityProvider": "AAD",
        },
        "graph": format!("{base}/"),
        "graphAudience": format!("{base}/"),
        "microsoftGraphResourceId": format!("{base}/"),
        "suffixes": {
            "acrLoginServer": login_suffix,
        },
    });
    let new_shape = q.get("api-version").is_some_and(|v| v.as_str() >= "2019-05-01");
    if new_shape {
        axum::Json(json!([cloud])).into_response()
    } else {
        axum::Json(json!({
            "galleryEndpoint": base,
            "graphEndpoint": format!("{base}/"),
            "portalEndpoint": base,
            "authentication": cloud["authentication"],
        }))
        .into_response()
    }
}

/// The form fields of a token request (`application/x-www-form-urlencoded`).
pub(crate) fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Read a small form body (token requests): at most 64 KiB.
pub(crate) async fn small_body(
    state: &AppState,
    request: Request,
) -> Result<(http::request::Parts, Bytes), Response> {
    let (parts, body) = request.into_parts();
    match state.admission.read_whole(body.into_data_stream(), 64 << 10, 64 << 10).await {
        Ok((bytes, _memory)) => Ok((parts, bytes)),
        Err(ReadError::TooLarge) => Err(oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            90014,
            "The request body is larger than 64 KiB.",
        )),
        Err(ReadError::Incomplete(_)) => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90014,
            "The request body broke off.",
        )),
        Err(ReadError::Busy) => Err(oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            50196,
            "The server is handling too many requests; retry shortly.",
        )),
    }
}

/// `POST /{tenant}/oauth2/v2.0/token`.
async fn token(State(state): State<AppState>, Path(t): Path<String>, request: Request) -> Response {
    let tenant = match tenant(&state, &t) {
        Ok(t) => t,
        Err(res) => return res,
    };
    let (parts, body) = match small_body(&state, request).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let f = form(&body);
    let field = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(scope) = field("scope") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let Some(audience) = state.identity.audience_for_scope(scope) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            500011,
            &format!(
                "The resource principal named {} was not found in the tenant.",
                scope.chars().take(200).collect::<String>()
            ),
        );
    };
    let principal = match sign_in(&state, &tenant, &f, &parts).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    match state.identity.issue_identity_token(&principal, &audience, field("client_id")) {
        Ok((token, ttl)) => {
            let secs = ttl.as_secs();
            let mut res = axum::Json(json!({
                "token_type": "Bearer",
                "scope": format!("{}/.default", audience.trim_end_matches('/')),
                "expires_in": secs,
                "ext_expires_in": secs,
                "access_token": token,
            }))
            .into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a token");
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", 90033, "internal error")
        }
    }
}

/// Sign in with a token request's grant (`client_credentials` or `password`): the principal,
/// of the kind the grant is for, or the OAuth2 error to answer.
async fn sign_in(
    state: &AppState,
    tenant: &str,
    f: &HashMap<String, String>,
    parts: &http::request::Parts,
) -> Result<PrincipalRecord, Response> {
    let field = |k: &str| f.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let client = client_ip(state, &parts.headers, &parts.extensions);
    let missing = |what: &str| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following {what}."),
        )
    };
    let (principal, kind) = match field("grant_type") {
        Some("client_credentials") => {
            // client_secret_basic: the client id and secret may come in the Authorization
            // header.
            let basic = match Presented::from_headers(&parts.headers) {
                Presented::Basic { username, password } => Some((username, password)),
                _ => None,
            };
            let (id, secret) = match (field("client_id"), field("client_secret"), &basic) {
                (Some(id), Some(secret), _) => (id.to_owned(), secret.to_owned()),
                (_, _, Some((u, p))) => (u.clone(), p.clone()),
                _ => return Err(missing("parameters: 'client_id' and 'client_secret'")),
            };
            let p = state.identity.sign_in(Some(tenant), &id, &secret, client).await;
            (p, PrincipalKind::ServicePrincipal)
        }
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return Err(missing("parameters: 'username' and 'password'"));
            };
            let p = state.identity.sign_in(Some(tenant), user, password, client).await;
            (p, PrincipalKind::User)
        }
        Some(other) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!(
                    "The app requested an unsupported grant type '{}'.",
                    other.chars().take(64).collect::<String>()
                ),
            ));
        }
        None => return Err(missing("parameter: 'grant_type'")),
    };
    match principal {
        Ok(p) if p.kind == kind.as_str() => Ok(p),
        Ok(_) => Err(refused(kind, AuthError::InvalidCredentials)),
        Err(e) => Err(refused(kind, e)),
    }
}

/// The answer to a failed sign-in: wrong credentials as Entra words them for the grant's
/// kind of principal, a throttled name or address with `Retry-After`.
fn refused(kind: PrincipalKind, e: AuthError) -> Response {
    match e {
        AuthError::InvalidCredentials => match kind {
            PrincipalKind::ServicePrincipal => oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            ),
            PrincipalKind::User => oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                50126,
                "Error validating credentials due to invalid username or password.",
            ),
        },
        AuthError::Throttled(secs) => {
            let mut res = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                50053,
                "The account is locked because of too many failed sign-in attempts; retry later.",
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
        e => {
            tracing::error!(error = %e, "sign-in failed inside the server");
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", 90033, "internal error")
        }
    }
}
