//! Authentication on the wire: reading credentials from a request's `Authorization`
//! header, turning them into a [`Caller`] through [`wharf_auth::Identity`], and answering a
//! refusal in each protocol's own form — the registry's `401` with a Bearer challenge on
//! `/v2/` and `/acr/v1/`, ARM's `401`/`403` envelope on the management API.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use wharf_auth::{AuthError, Caller, RegistryCredential, RegistryPolicy, RepoOp, Surface};
use wharf_management::{ArmError, Registry};

use crate::OciError;
use crate::error::oci_error;
use crate::{AppState, Origin};

/// What an `Authorization` header holds.
pub(crate) enum Presented {
    None,
    Basic {
        username: String,
        password: String,
    },
    Bearer(String),
    /// Present but unreadable, or a scheme nobody here accepts.
    Malformed,
}

impl Presented {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Presented {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return Presented::None };
        let Ok(value) = value.to_str() else { return Presented::Malformed };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Presented::Bearer(rest.to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                return Presented::Basic { username: u.to_owned(), password: p.to_owned() };
            }
        }
        Presented::Malformed
    }

    fn credential(&self) -> Option<RegistryCredential<'_>> {
        match self {
            Presented::Basic { username, password } => {
                Some(RegistryCredential::Basic { username, password })
            }
            Presented::Bearer(t) => Some(RegistryCredential::Bearer(t)),
            Presented::None | Presented::Malformed => None,
        }
    }
}

/// The address a request came from (see [`crate::network::client_address`]).
pub(crate) fn client_ip(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Option<IpAddr> {
    crate::network::client_address(state, headers, extensions)
}

// ---- the registry data plane --------------------------------------------------------

/// What a refused data-plane request was after, for the challenge's `scope`.
pub(crate) enum Wanted<'a> {
    /// Just signing in (`GET /v2/`).
    Nothing,
    Catalog,
    Repository(&'a str, RepoOp),
    /// A cross-repository mount: push on the target, pull on `from`.
    Mount {
        name: &'a str,
        from: &'a str,
    },
}

impl Wanted<'_> {
    fn scope(&self) -> Option<String> {
        match self {
            Wanted::Nothing => None,
            Wanted::Catalog => Some("registry:catalog:*".into()),
            Wanted::Repository(name, op) => {
                Some(format!("repository:{name}:{}", op.scope_action()))
            }
            Wanted::Mount { name, from } => {
                Some(format!("repository:{name}:pull,push repository:{from}:pull"))
            }
        }
    }
}

impl Wanted<'_> {
    /// Whether `caller` may do it in the registry of `policy`.
    pub(crate) fn allowed(&self, caller: &Caller, policy: &RegistryPolicy) -> bool {
        match self {
            Wanted::Catalog => caller.can_list_catalog(policy),
            Wanted::Repository(name, op) => caller.can(*op, policy, name),
            Wanted::Mount { name, .. } => caller.can(RepoOp::Push, policy, name),
            Wanted::Nothing => true,
        }
    }
}

/// The registry a data-plane request is addressed to (by host), past its network rules —
/// what every `/v2`, `/acr/v1` and registry-token request does first.
pub(crate) async fn addressed_registry(
    state: &AppState,
    parts: &http::request::Parts,
    origin: &Origin<'_>,
) -> Result<Registry, Response> {
    let record = state
        .registry
        .registry_for_host(origin.host(), &state.settings.domain)
        .await
        .map_err(|e| OciError(e).into_response())?;
    // Its settings are decoded here, once for the whole request.
    let registry = Registry::decode(record);
    crate::network::gate(state, &registry, &parts.headers, &parts.extensions)?;
    Ok(registry)
}

/// A data-plane request's caller, authenticated and allowed what it wants in `registry`.
/// The one permission check of a `/v2` or `/acr/v1` request.
pub(crate) async fn authorize(
    state: &AppState,
    parts: &http::request::Parts,
    origin: &Origin<'_>,
    registry: &Registry,
    wanted: &Wanted<'_>,
) -> Result<Caller, Response> {
    let policy = &registry.policy;
    let login = state.management.login_server(&registry.record);
    let caller =
        registry_caller(state, &parts.headers, &parts.extensions, origin, policy, &login, wanted)
            .await?;
    require(state, &caller, wanted.allowed(&caller, policy), origin, wanted)?;
    Ok(caller)
}

/// A data-plane request's caller, or the `401` to answer: unreadable or refused
/// credentials get `error="invalid_token"` in the challenge.
pub(crate) async fn registry_caller(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &http::Extensions,
    origin: &Origin<'_>,
    policy: &RegistryPolicy,
    login_server: &str,
    wanted: &Wanted<'_>,
) -> Result<Caller, Response> {
    let presented = Presented::from_headers(headers);
    if matches!(presented, Presented::Malformed) && state.identity.enforced() {
        return Err(challenge(state, origin, wanted, Some("invalid_request"), "UNAUTHORIZED"));
    }
    let client = client_ip(state, headers, extensions);
    match state.identity.registry_caller(policy, login_server, presented.credential(), client).await
    {
        Ok(c) => Ok(c),
        Err(AuthError::Throttled(secs)) => Err(throttled(secs)),
        Err(AuthError::Internal(m)) => {
            tracing::error!(error = %m, "authentication failed inside the server");
            Err(oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error"))
        }
        Err(_) => Err(challenge(state, origin, wanted, Some("invalid_token"), "UNAUTHORIZED")),
    }
}

/// Check a data-plane permission; the `401` to answer when it is missing (as ACR answers
/// it, so that token clients ask for a token with that scope).
pub(crate) fn require(
    state: &AppState,
    caller: &Caller,
    allowed: bool,
    origin: &Origin<'_>,
    wanted: &Wanted<'_>,
) -> Result<(), Response> {
    if allowed {
        return Ok(());
    }
    if caller.is_anonymous() {
        return Err(challenge(state, origin, wanted, None, "UNAUTHORIZED"));
    }
    Err(challenge(state, origin, wanted, Some("insufficient_scope"), "DENIED"))
}

/// `401` with `WWW-Authenticate: Bearer realm="<scheme>://<host>/oauth2/token",service="<host>"[,scope=…][,error=…]`.
pub(crate) fn challenge(
    _state: &AppState,
    origin: &Origin<'_>,
    wanted: &Wanted<'_>,
    error: Option<&str>,
    code: &str,
) -> Response {
    let host = origin.host().unwrap_or("localhost");
    let scheme = origin.scheme;
    let mut value = format!("Bearer realm=\"{scheme}://{host}/oauth2/token\",service=\"{host}\"");
    if let Some(scope) = wanted.scope() {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(e) = error {
        value.push_str(&format!(",error=\"{e}\""));
    }
    let message = match code {
        "DENIED" => "requested access to the resource is denied",
        _ => "authentication required",
    };
    let mut res = oci_error(StatusCode::UNAUTHORIZED, code, message);
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

fn throttled(secs: u64) -> Response {
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

// ---- the management API -------------------------------------------------------------

/// A management request's caller: an identity token for ARM as `Authorization: Bearer`.
/// Without access control every caller may do anything.
pub(crate) async fn arm_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ArmError> {
    identity_caller(state, headers, Surface::Management).await
}

/// A directory request's caller: an identity token for Microsoft Graph.
pub(crate) async fn directory_caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Caller, ArmError> {
    identity_caller(state, headers, Surface::Directory).await
}

async fn identity_caller(
    state: &AppState,
    headers: &HeaderMap,
    surface: Surface,
) -> Result<Caller, ArmError> {
    if !state.identity.enforced() {
        return Ok(Caller::unrestricted());
    }
    match Presented::from_headers(headers) {
        Presented::Bearer(token) => {
            Ok(state.identity.caller_from_identity_token(&token, surface).await?)
        }
        Presented::None => Err(AuthError::Unauthenticated.into()),
        Presented::Basic { .. } | Presented::Malformed => Err(ArmError::new(
            wharf_management::ErrorKind::Unauthenticated,
            "InvalidAuthenticationToken",
            "The management API accepts a Bearer access token from the identity endpoint only.",
        )),
    }
}
