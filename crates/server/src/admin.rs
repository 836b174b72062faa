//! Admin endpoints the CLI calls on a running server.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use crate::{AppState, OciError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/_wharf/gc", post(gc))
}

/// Run one garbage-collection pass now and report what it removed.
async fn gc(State(state): State<AppState>) -> Result<Json<wharf_registry::GcReport>, OciError> {
    Ok(Json(state.registry.gc(state.settings.gc).await?))
}
