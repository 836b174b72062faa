//! `importImage` and the operations it starts: followed (`operationResults`) and stopped
//! (`…/cancel`, wharf's own).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wharf_import::{CancelOutcome, JobStatus, Submitted, parse_parameters};
use wharf_management::RegistryResourceId;

use super::import_error;
use super::{ArmResult, Ctx, ok};

pub(super) async fn import_image(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    let state = ctx.state;
    let target = ctx.management().registry(id).await?;
    let req = parse_parameters(&ctx.json()?)?;
    let location =
        operation_url(ctx.origin.clone(), &id.subscription, &target.location, ctx.api_version());
    match state.imports.submit(&target, req, ctx.caller).await? {
        Submitted::Done { id: op, result: Ok(_) } => {
            let mut res = (StatusCode::OK, axum::Json(Value::Null)).into_response();
            set_header(&mut res, header::LOCATION, &location(&op));
            Ok(res)
        }
        Submitted::Done { result: Err(e), .. } => Err(import_error::job_to_arm(e).into()),
        Submitted::Running { id: op } => {
            let mut res = (StatusCode::ACCEPTED, axum::Json(Value::Null)).into_response();
            set_header(&mut res, header::LOCATION, &location(&op));
            set_header(
                &mut res,
                header::RETRY_AFTER,
                &state.imports.retry_after().as_secs().max(1).to_string(),
            );
            Ok(res)
        }
    }
}

pub(super) async fn get_operation(ctx: &Ctx<'_>, sub: &str, op: &str) -> ArmResult {
    let imports = &ctx.state.imports;
    match imports.status(op, sub).await? {
        JobStatus::Running(v) => {
            let mut res = (StatusCode::ACCEPTED, axum::Json(v)).into_response();
            set_header(
                &mut res,
                header::RETRY_AFTER,
                &imports.retry_after().as_secs().max(1).to_string(),
            );
            Ok(res)
        }
        JobStatus::Succeeded(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("status".into(), json!("Succeeded"));
            }
            Ok(ok(StatusCode::OK, v))
        }
        JobStatus::Failed(e) => Err(import_error::job_to_arm(e).into()),
    }
}

pub(super) async fn cancel_operation(ctx: &Ctx<'_>, sub: &str, op: &str) -> ArmResult {
    match ctx.state.imports.cancel(op, sub).await? {
        CancelOutcome::Requested => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

fn set_header(res: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(name, v);
    }
}

/// The Location of an import operation, as ACR shapes it:
/// `…/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/locations/{LOCATION}/operationResults/{id}`.
fn operation_url<'a>(
    origin: crate::Origin<'_>,
    sub: &'a str,
    location: &'a str,
    api_version: Option<&'a str>,
) -> impl Fn(&str) -> String + 'a {
    let host = origin.host().unwrap_or("localhost").to_owned();
    let scheme = origin.scheme;
    // Only letters and digits of the region go into the path (its segment is not parsed).
    let mut region: String = location.chars().filter(char::is_ascii_alphanumeric).collect();
    if region.is_empty() {
        region = "LOCAL".into();
    }
    move |op: &str| {
        format!(
            "{scheme}://{host}/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/locations/{}/operationResults/{op}?api-version={}",
            region.to_ascii_uppercase(),
            api_version.unwrap_or("2025-11-01")
        )
    }
}
