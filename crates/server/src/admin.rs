//! Admin endpoints the CLI calls on a running server.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use wharf_management::authz::{Caller, actions};

use crate::{AppState, OciError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/_wharf/gc", post(gc))
}

/// Run one garbage-collection pass now and report what it removed.
async fn gc(State(state): State<AppState>) -> Response {
    if let Err(e) = state.authz.check(&Caller::default(), actions::GARBAGE_COLLECT, "/") {
        return crate::arm::ArmResponse(e).into_response();
    }
    match state.registry.gc(state.settings.gc).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => OciError(e).into_response(),
    }
}
