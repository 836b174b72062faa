//! The directory: users and service principals, shaped like Microsoft Graph's v1.0
//! (`/v1.0/users`, `/v1.0/servicePrincipals`), which `az ad …` and `wharf ad …` call.
//! Callers need `Wharf/directory/read` or `…/write` at `/` (Owner has both).
//!
//! Callers present an identity token for Graph's audience (never ARM's: a token meant for
//! one surface is no key to another) and need the directory's own roles (Directory
//! Administrator / Reader at `/`): Owner's `*` doesn't reach the directory. Setting a
//! secret or password on a principal, disabling or deleting it, also needs every right
//! that principal holds (`Identity::check_may_manage`).
//!
//! Besides reading and creating: `PATCH …/users/{id}` (`accountEnabled`, an administrator's
//! `passwordProfile`), `PATCH …/servicePrincipals/{id}` (`accountEnabled`),
//! `POST …/{users|servicePrincipals}/{id}/revokeSignInSessions` (every token issued so far
//! stops working), and `POST /v1.0/me/changePassword` (a user, proving the current one).
//!
//! Differences from Graph, on purpose: creating a service principal also creates its
//! application and a first client secret, returned once in `passwordCredentials[0]
//! .secretText` (what `az ad sp create-for-rbac` does in three calls); and
//! `POST …/servicePrincipals/{id}/resetPassword` (wharf's own) replaces every secret with a
//! new one, as `az ad sp credential reset` does.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use wharf_auth::{AuthError, Caller, NewSecret, PrincipalKind, actions};
use wharf_management::{ArmError, ErrorKind};
use wharf_storage::{CredentialRecord, PrincipalRecord};

use crate::AppState;
use crate::arm::ArmResponse;
use crate::limits::ReadError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1.0/users", any(users))
        .route("/v1.0/users/{id}", any(user))
        .route("/v1.0/servicePrincipals", any(service_principals))
        .route("/v1.0/servicePrincipals/{id}", any(service_principal))
        .route("/v1.0/servicePrincipals/{id}/addPassword", post(add_password))
        .route("/v1.0/servicePrincipals/{id}/resetPassword", post(reset_password))
        .route("/v1.0/users/{id}/revokeSignInSessions", post(revoke_user_sessions))
        .route("/v1.0/servicePrincipals/{id}/revokeSignInSessions", post(revoke_sp_sessions))
        .route("/v1.0/me", get(me))
        .route("/v1.0/me/changePassword", post(change_password))
}

type Result<T = Response> = std::result::Result<T, ArmResponse>;

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn user_json(p: &PrincipalRecord) -> Value {
    json!({
        "id": p.id,
        "displayName": p.name,
        "userPrincipalName": p.name,
        "accountEnabled": p.enabled,
        "createdDateTime": timestamp(p.created_at),
    })
}

fn credential_json(c: &CredentialRecord) -> Value {
    json!({
        "keyId": c.id,
        "displayName": c.display_name,
        "hint": c.hint,
        "startDateTime": timestamp(c.created_at),
        "endDateTime": c.expires_at.map(timestamp),
    })
}

fn sp_json(p: &PrincipalRecord, credentials: &[CredentialRecord]) -> Value {
    json!({
        "id": p.id,
        "appId": p.app_id,
        "displayName": p.name,
        "servicePrincipalType": "Application",
        "accountEnabled": p.enabled,
        "appOwnerOrganizationId": p.tenant,
        "createdDateTime": timestamp(p.created_at),
        "passwordCredentials": credentials.iter().map(credential_json).collect::<Vec<_>>(),
    })
}

/// The caller, allowed to read (or write) the directory.
async fn authorize(state: &AppState, headers: &HeaderMap, write: bool) -> Result<Caller> {
    let caller = crate::auth::directory_caller(state, headers).await?;
    let action = if write { actions::DIRECTORY_WRITE } else { actions::DIRECTORY_READ };
    caller.check(action, "/").map_err(ArmError::from)?;
    Ok(caller)
}

fn graph_error(e: AuthError) -> ArmResponse {
    ArmError::from(e).into()
}

async fn json_body(state: &AppState, request: Request) -> Result<(HeaderMap, Value)> {
    let (parts, body) = request.into_parts();
    let bytes: Bytes =
        match state.admission.read_whole(body.into_data_stream(), 64 << 10, 64 << 10).await {
            Ok((b, _memory)) => b,
            Err(ReadError::TooLarge) => {
                return Err(ArmError::bad_request(
                    "Request_BadRequest",
                    "The body is larger than 64 KiB.",
                )
                .into());
            }
            Err(ReadError::Incomplete(e)) => {
                return Err(ArmError::invalid_content(format!("the body broke off: {e}")).into());
            }
            Err(ReadError::Busy) => {
                return Err(ArmError::new(
                    ErrorKind::TooManyRequests,
                    "TooManyRequests",
                    "Retry shortly.",
                )
                .into());
            }
        };
    let v = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ArmError::bad_request("Request_BadRequest", format!("The body is not JSON: {e}"))
        })?
    };
    Ok((parts.headers, v))
}

fn not_allowed(method: &Method) -> ArmResponse {
    ArmError::new(
        ErrorKind::MethodNotAllowed,
        "Request_BadRequest",
        format!("{method} is not supported here."),
    )
    .into()
}

/// A principal of `kind` by object id, app id or name; Graph's 404 otherwise.
async fn find(state: &AppState, id: &str, kind: PrincipalKind) -> Result<PrincipalRecord> {
    match state.identity.principal(id).await {
        Ok(p) if p.kind == kind.as_str() => Ok(p),
        Ok(_) | Err(AuthError::NotFound(_)) => Err(ArmError::not_found(
            "Request_ResourceNotFound",
            format!("Resource '{}' does not exist or one of its queried reference-property objects are not present.", id.chars().take(100).collect::<String>()),
        )
        .into()),
        Err(e) => Err(ArmError::from(e).into()),
    }
}

fn years_until(end: Option<&str>) -> std::result::Result<u32, ArmError> {
    let Some(end) = end else { return Ok(1) };
    let end = chrono::DateTime::parse_from_rfc3339(end)
        .map_err(|e| ArmError::bad_request("Request_BadRequest", format!("endDateTime: {e}")))?;
    let days = (end.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    if days <= 0 {
        return Err(ArmError::bad_request("Request_BadRequest", "endDateTime is in the past."));
    }
    Ok(u32::try_from((days + 364) / 365).unwrap_or(100).clamp(1, 100))
}

fn with_secret(mut v: Value, s: &NewSecret, c: Option<&CredentialRecord>) -> Value {
    let mut cred = c.map(credential_json).unwrap_or_else(|| json!({}));
    cred["secretText"] = json!(s.secret);
    cred["endDateTime"] = json!(s.expires_at.map(timestamp));
    v["passwordCredentials"] = json!([cred]);
    v
}

async fn users(State(state): State<AppState>, request: Request) -> Result {
    match request.method().clone() {
        Method::GET => {
            authorize(&state, request.headers(), false).await?;
            let list =
                state.identity.principals(PrincipalKind::User).await.map_err(ArmError::from)?;
            Ok(axum::Json(json!({"value": list.iter().map(user_json).collect::<Vec<_>>()}))
                .into_response())
        }
        Method::POST => {
            let (headers, body) = json_body(&state, request).await?;
            authorize(&state, &headers, true).await?;
            let name = body["userPrincipalName"]
                .as_str()
                .or(body["mailNickname"].as_str())
                .ok_or_else(|| {
                    ArmError::bad_request("Request_BadRequest", "userPrincipalName is required.")
                })?;
            let password = body["passwordProfile"]["password"].as_str();
            let created =
                state.identity.create_user(name, password).await.map_err(ArmError::from)?;
            let mut v = user_json(&created.principal);
            if password.is_none() {
                // Generated: shown this once.
                v["passwordProfile"] = json!({"password": created.secret});
            }
            Ok((StatusCode::CREATED, axum::Json(v)).into_response())
        }
        m => Err(not_allowed(&m)),
    }
}

async fn user(State(state): State<AppState>, Path(id): Path<String>, request: Request) -> Result {
    let method = request.method().clone();
    let (headers, body) = json_body(&state, request).await?;
    let caller = authorize(&state, &headers, method != Method::GET).await?;
    let p = find(&state, &id, PrincipalKind::User).await?;
    match method {
        Method::GET => Ok(axum::Json(user_json(&p)).into_response()),
        Method::PATCH => {
            let enabled = optional_bool(&body, "accountEnabled")?;
            let password = body["passwordProfile"]["password"].as_str();
            if let Some(password) = password {
                state.identity.set_password(&caller, &p, password).await.map_err(graph_error)?;
            }
            if let Some(enabled) = enabled {
                state.identity.set_enabled(&caller, &p, enabled).await.map_err(graph_error)?;
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::DELETE => {
            state.identity.delete_principal(&caller, &p.id).await.map_err(graph_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        m => Err(not_allowed(&m)),
    }
}

/// A boolean property of a PATCH body, if present.
fn optional_bool(body: &Value, key: &str) -> Result<Option<bool>> {
    match &body[key] {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(ArmError::bad_request(
            "Request_BadRequest",
            format!("{key} must be true or false."),
        )
        .into()),
    }
}

/// `POST …/users/{id}/revokeSignInSessions`: every token the user holds stops working.
async fn revoke_user_sessions(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result {
    revoke(&state, &headers, &id, PrincipalKind::User).await
}

/// The same for a service principal (wharf's own: Graph has it for users only).
async fn revoke_sp_sessions(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result {
    revoke(&state, &headers, &id, PrincipalKind::ServicePrincipal).await
}

async fn revoke(state: &AppState, headers: &HeaderMap, id: &str, kind: PrincipalKind) -> Result {
    let caller = authorize(state, headers, true).await?;
    let p = find(state, id, kind).await?;
    state.identity.revoke_tokens(&caller, &p).await.map_err(graph_error)?;
    Ok(axum::Json(json!({ "value": true })).into_response())
}

/// `GET /v1.0/me`: the signed-in user (or service principal), no directory role needed.
async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result {
    let p = signed_in(&state, &headers).await?;
    Ok(axum::Json(user_json(&p)).into_response())
}

/// `POST /v1.0/me/changePassword {"currentPassword","newPassword"}`: a user changes their
/// own password; every token they held stops working.
async fn change_password(State(state): State<AppState>, request: Request) -> Result {
    let client = crate::auth::client_ip(&state, request.headers(), request.extensions());
    let (headers, body) = json_body(&state, request).await?;
    let p = signed_in(&state, &headers).await?;
    let field = |k: &str| {
        body[k].as_str().ok_or_else(|| {
            ArmResponse::from(ArmError::bad_request(
                "Request_BadRequest",
                format!("{k} is required."),
            ))
        })
    };
    let (current, new) = (field("currentPassword")?, field("newPassword")?);
    match state.identity.change_password(&p, current, new, client).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(AuthError::InvalidCredentials) => Err(ArmError::new(
            ErrorKind::BadRequest,
            "Request_BadRequest",
            "The current password is not right.",
        )
        .into()),
        Err(e) => Err(graph_error(e)),
    }
}

/// The principal a directory request's token stands for.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<PrincipalRecord> {
    let caller = crate::auth::directory_caller(state, headers).await?;
    let Some(id) = caller.principal_id() else {
        return Err(ArmError::from(AuthError::Unauthenticated).into());
    };
    state.identity.principal(id).await.map_err(graph_error)
}

async fn service_principals(State(state): State<AppState>, request: Request) -> Result {
    match request.method().clone() {
        Method::GET => {
            authorize(&state, request.headers(), false).await?;
            let list = state
                .identity
                .principals(PrincipalKind::ServicePrincipal)
                .await
                .map_err(ArmError::from)?;
            let mut out = Vec::new();
            for p in &list {
                let creds = state.identity.credentials(&p.id).await.map_err(ArmError::from)?;
                out.push(sp_json(p, &creds));
            }
            Ok(axum::Json(json!({ "value": out })).into_response())
        }
        Method::POST => {
            let (headers, body) = json_body(&state, request).await?;
            authorize(&state, &headers, true).await?;
            let name = body["displayName"].as_str().ok_or_else(|| {
                ArmError::bad_request("Request_BadRequest", "displayName is required.")
            })?;
            let years = years_until(body["endDateTime"].as_str())?;
            let created = state
                .identity
                .create_service_principal(name, years)
                .await
                .map_err(ArmError::from)?;
            let creds =
                state.identity.credentials(&created.principal.id).await.map_err(ArmError::from)?;
            let v = with_secret(sp_json(&created.principal, &creds), &created, creds.first());
            Ok((StatusCode::CREATED, axum::Json(v)).into_response())
        }
        m => Err(not_allowed(&m)),
    }
}

async fn service_principal(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result {
    let method = request.method().clone();
    let (headers, body) = json_body(&state, request).await?;
    let caller = authorize(&state, &headers, method != Method::GET).await?;
    let p = find(&state, &id, PrincipalKind::ServicePrincipal).await?;
    match method {
        Method::GET => {
            let creds = state.identity.credentials(&p.id).await.map_err(graph_error)?;
            Ok(axum::Json(sp_json(&p, &creds)).into_response())
        }
        Method::PATCH => {
            if let Some(enabled) = optional_bool(&body, "accountEnabled")? {
                state.identity.set_enabled(&caller, &p, enabled).await.map_err(graph_error)?;
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::DELETE => {
            state.identity.delete_principal(&caller, &p.id).await.map_err(graph_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        m => Err(not_allowed(&m)),
    }
}

/// `POST …/addPassword {"passwordCredential":{"displayName","endDateTime"}}`: one more secret.
async fn add_password(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result {
    let (headers, body) = json_body(&state, request).await?;
    let caller = authorize(&state, &headers, true).await?;
    let p = find(&state, &id, PrincipalKind::ServicePrincipal).await?;
    let cred = &body["passwordCredential"];
    let years = years_until(cred["endDateTime"].as_str())?;
    let name = cred["displayName"].as_str().unwrap_or("password");
    let (secret, record) =
        state.identity.add_secret(&caller, &p.id, name, years).await.map_err(graph_error)?;
    let mut v = credential_json(&record);
    v["secretText"] = json!(secret.secret);
    Ok(axum::Json(v).into_response())
}

/// `POST …/resetPassword {"endDateTime"?}`: every secret replaced by a new one.
async fn reset_password(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result {
    let (headers, body) = json_body(&state, request).await?;
    let caller = authorize(&state, &headers, true).await?;
    let p = find(&state, &id, PrincipalKind::ServicePrincipal).await?;
    let years = years_until(body["endDateTime"].as_str())?;
    let secret = state.identity.reset_secret(&caller, &p.id, years).await.map_err(graph_error)?;
    let creds = state.identity.credentials(&p.id).await.map_err(ArmError::from)?;
    Ok(axum::Json(with_secret(sp_json(&p, &creds), &secret, creds.first())).into_response())
}
