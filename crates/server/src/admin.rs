//! Admin endpoints the CLI calls on a running server.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use wharf_auth::actions;

use crate::{AppState, OciError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/_wharf/gc", post(gc))
}

/// Run one garbage-collection pass now and report what it removed.
async fn gc(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let allowed = match crate::auth::arm_caller(&state, &headers).await {
        Ok(caller) => caller.check(actions::GARBAGE_COLLECT, "/").map_err(Into::into),
        Err(e) => Err(e),
    };
    if let Err(e) = allowed {
        return crate::arm::ArmResponse(e).into_response();
    }
    match state.registry.gc(state.settings.gc).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => OciError(e).into_response(),
    }
}
