//! Admin endpoints the CLI calls on a running server: garbage collection and the keys that
//! sign tokens. Each is checked against its own action at `/`; errors are ARM's envelope.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use wharf_auth::actions;
use wharf_management::{ArmError, timestamp};

use crate::arm::ArmResponse;
use crate::{AppState, OciError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_wharf/gc", post(gc))
        .route("/_wharf/keys", get(list_keys))
        .route("/_wharf/keys/rotate", post(rotate_keys))
        .route("/_wharf/keys/prune", post(prune_keys))
}

/// The caller, allowed `action` at `/`.
async fn allowed(state: &AppState, headers: &HeaderMap, action: &str) -> Result<(), ArmResponse> {
    let caller = crate::auth::arm_caller(state, headers).await?;
    caller.check(action, "/").map_err(ArmError::from)?;
    Ok(())
}

/// Run one garbage-collection pass now and report what it removed.
async fn gc(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = allowed(&state, &headers, actions::GARBAGE_COLLECT).await {
        return e.into_response();
    }
    match state.registry.gc(state.settings.gc).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => OciError(e).into_response(),
    }
}

/// The signing keys: id, when made, when retired (still verifying until pruned).
async fn list_keys(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = allowed(&state, &headers, actions::SIGNING_KEYS_READ).await {
        return e.into_response();
    }
    keys_json(&state).await
}

async fn keys_json(state: &AppState) -> Response {
    match state.identity.signing_keys().await {
        Ok(keys) => {
            let value: Vec<_> = keys
                .into_iter()
                .map(|(kid, created, retired)| {
                    json!({"kid": kid, "createdOn": timestamp(created),
                           "retiredOn": retired.map(timestamp), "signing": retired.is_none()})
                })
                .collect();
            Json(json!({ "value": value })).into_response()
        }
        Err(e) => ArmResponse(e.into()).into_response(),
    }
}

/// A new signing key; the others are retired (tokens they signed keep verifying).
async fn rotate_keys(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = allowed(&state, &headers, actions::SIGNING_KEYS_WRITE).await {
        return e.into_response();
    }
    if let Err(e) = state.identity.rotate_keys().await {
        return ArmResponse(e.into()).into_response();
    }
    tracing::info!("signing keys rotated");
    keys_json(&state).await
}

/// Delete retired keys no valid token needs (`?allRetired=true`: every retired key now).
async fn prune_keys(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = allowed(&state, &headers, actions::SIGNING_KEYS_WRITE).await {
        return e.into_response();
    }
    let all = match query.get("allRetired").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return ArmResponse(ArmError::bad_request(
                "InvalidParameter",
                "allRetired must be true or false.",
            ))
            .into_response();
        }
    };
    match state.identity.prune_keys(all).await {
        Ok(pruned) => {
            tracing::info!(pruned, all_retired = all, "signing keys pruned");
            Json(json!({ "pruned": pruned })).into_response()
        }
        Err(e) => ArmResponse(e.into()).into_response(),
    }
}
