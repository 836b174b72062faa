//! The management API, shaped like Azure Resource Manager, under `/subscriptions/…`.
//!
//! ARM paths match case-insensitively (`resourceGroups` = `resourcegroups`), so the path
//! is split by hand ([`parse`]) rather than by router patterns. Every route names the ARM
//! action it needs and checks it, once, through the [`Authorizer`] before doing anything.
//! Errors are ARM's envelope: `{"error":{"code","message"}}`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use wharf_import::{CancelOutcome, JobStatus, Submitted, parse_parameters};
use wharf_management::authz::{Caller, actions};
use wharf_management::{ArmError, ErrorKind, RegistryResourceId, check_api_version};

use crate::AppState;
use crate::limits::ReadError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/subscriptions", any(dispatch))
        .route("/subscriptions/{*rest}", any(dispatch))
}

/// An ARM error response.
pub(crate) struct ArmResponse(pub(crate) ArmError);

impl IntoResponse for ArmResponse {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = match e.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry = matches!(e.kind, ErrorKind::TooManyRequests | ErrorKind::Unavailable);
        let mut error = json!({"code": e.code, "message": e.message});
        if let Some(t) = e.target {
            error["target"] = json!(t);
        }
        let mut res = (status, axum::Json(json!({ "error": error }))).into_response();
        res.headers_mut().insert("x-ms-failure-cause", HeaderValue::from_static("service"));
        if retry {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

impl From<ArmError> for ArmResponse {
    fn from(e: ArmError) -> Self {
        ArmResponse(e)
    }
}

type ArmResult = Result<Response, ArmResponse>;

/// The routes, by the shape of their path.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Subscriptions,
    Subscription(String),
    ResourceGroups(String),
    ResourceGroup(String, String),
    RegistriesInSubscription(String),
    CheckName(String),
    Operation(String, String),
    CancelOperation(String, String),
    RegistriesInGroup(String, String),
    Registry(RegistryResourceId),
    ImportImage(RegistryResourceId),
}

fn parse(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let acr = |p: &str, ns: &str| eq(p, "providers") && eq(ns, "Microsoft.ContainerRegistry");
    let reg = |sub: &str, rg: &str, name: &str| RegistryResourceId {
        subscription: sub.into(),
        resource_group: rg.into(),
        name: name.into(),
    };
    Some(match segs.as_slice() {
        [s] if eq(s, "subscriptions") => Route::Subscriptions,
        [s, sub] if eq(s, "subscriptions") => Route::Subscription(sub.to_string()),
        [s, sub, g] if eq(s, "subscriptions") && eq(g, "resourceGroups") => {
            Route::ResourceGroups(sub.to_string())
        }
        [s, sub, g, rg] if eq(s, "subscriptions") && eq(g, "resourceGroups") => {
            Route::ResourceGroup(sub.to_string(), rg.to_string())
        }
        [s, sub, p, ns, r] if eq(s, "subscriptions") && acr(p, ns) && eq(r, "registries") => {
            Route::RegistriesInSubscription(sub.to_string())
        }
        [s, sub, p, ns, c]
            if eq(s, "subscriptions") && acr(p, ns) && eq(c, "checkNameAvailability") =>
        {
            Route::CheckName(sub.to_string())
        }
        [s, sub, p, ns, l, _loc, o, id]
            if eq(s, "subscriptions")
                && acr(p, ns)
                && eq(l, "locations")
                && eq(o, "operationResults") =>
        {
            Route::Operation(sub.to_string(), id.to_string())
        }
        // wharf's own: ARM has no generic cancel for an operation, ACR none for import.
        [s, sub, p, ns, l, _loc, o, id, c]
            if eq(s, "subscriptions")
                && acr(p, ns)
                && eq(l, "locations")
                && eq(o, "operationResults")
                && eq(c, "cancel") =>
        {
            Route::CancelOperation(sub.to_string(), id.to_string())
        }
        [s, sub, g, _rg, p, ns, l, _loc, o, rest @ ..]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(l, "locations")
                && eq(o, "operationResults")
                && (rest.len() == 1 || (rest.len() == 2 && eq(rest[0], "operationStatuses"))) =>
        {
            Route::Operation(sub.to_string(), rest[rest.len() - 1].to_string())
        }
        [s, sub, g, rg, p, ns, r]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(r, "registries") =>
        {
            Route::RegistriesInGroup(sub.to_string(), rg.to_string())
        }
        [s, sub, g, rg, p, ns, r, name]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(r, "registries") =>
        {
            Route::Registry(reg(sub, rg, name))
        }
        [s, sub, g, rg, p, ns, r, name, i]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(r, "registries")
                && eq(i, "importImage") =>
        {
            Route::ImportImage(reg(sub, rg, name))
        }
        _ => return None,
    })
}

fn json_body(body: &Bytes) -> Result<Value, ArmError> {
    if body.is_empty() {
        return Err(ArmError::invalid_content("the request has no body"));
    }
    serde_json::from_slice(body).map_err(ArmError::invalid_content)
}

fn ok(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

async fn dispatch(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let request_id = uuid::Uuid::new_v4().to_string();
    // The body is read whole (at most 4 MiB, counted in the server's body memory).
    let read = state.admission.read_whole(body.into_data_stream(), 4 << 20, 4 << 20).await;
    let mut res = match read {
        Ok((body, _memory)) => handle(
            &state,
            crate::request_host(&parts),
            &parts.method,
            parts.uri.path(),
            &query,
            &parts.headers,
            body,
        )
        .await
        .unwrap_or_else(IntoResponse::into_response),
        Err(ReadError::TooLarge) => ArmResponse(ArmError::bad_request(
            "RequestTooLarge",
            "The request body is larger than 4 MiB.",
        ))
        .into_response(),
        Err(ReadError::Incomplete(e)) => {
            ArmResponse(ArmError::invalid_content(format!("the body broke off: {e}")))
                .into_response()
        }
        Err(ReadError::Busy) => ArmResponse(ArmError::new(
            ErrorKind::TooManyRequests,
            "TooManyRequests",
            "The server is handling too many requests; retry shortly.",
        ))
        .into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-ms-request-id", v.clone());
        res.headers_mut().insert("x-ms-correlation-request-id", v);
    }
    res
}

async fn handle(
    state: &AppState,
    host: Option<&str>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ArmResult {
    let api_version = query.get("api-version").map(String::as_str);
    check_api_version(api_version)?;
    let route = parse(path).ok_or_else(|| {
        ArmError::not_found(
            "InvalidResourceType",
            format!("No management API is served at '{path}'."),
        )
    })?;
    let caller = Caller::default();
    let m = &state.management;
    let authz = |action: &str, scope: &str| state.authz.check(&caller, action, scope);
    let not_allowed = || -> ArmResult {
        Err(ArmError::new(
            ErrorKind::MethodNotAllowed,
            "MethodNotAllowed",
            format!("{method} is not supported here."),
        )
        .into())
    };
    match (route, method.clone()) {
        (Route::Subscriptions, Method::GET) => {
            authz(actions::SUBSCRIPTION_READ, "/")?;
            Ok(ok(StatusCode::OK, m.list_subscriptions().await?))
        }
        (Route::Subscription(sub), Method::GET) => {
            authz(actions::SUBSCRIPTION_READ, &format!("/subscriptions/{sub}"))?;
            Ok(ok(StatusCode::OK, m.get_subscription(&sub).await?))
        }
        (Route::Subscription(sub), Method::PUT) => {
            authz(actions::SUBSCRIPTION_WRITE, &format!("/subscriptions/{sub}"))?;
            let body = if body.is_empty() { json!({}) } else { json_body(&body)? };
            let (created, v) = m.put_subscription(&sub, &body).await?;
            Ok(ok(if created { StatusCode::CREATED } else { StatusCode::OK }, v))
        }
        (Route::ResourceGroups(sub), Method::GET) => {
            authz(actions::RESOURCE_GROUP_READ, &format!("/subscriptions/{sub}"))?;
            Ok(ok(StatusCode::OK, m.list_resource_groups(&sub).await?))
        }
        (Route::ResourceGroup(sub, rg), method) => {
            let scope = format!("/subscriptions/{sub}/resourceGroups/{rg}");
            match method {
                Method::GET => {
                    authz(actions::RESOURCE_GROUP_READ, &scope)?;
                    Ok(ok(StatusCode::OK, m.get_resource_group(&sub, &rg).await?))
                }
                Method::HEAD => {
                    authz(actions::RESOURCE_GROUP_READ, &scope)?;
                    let exists = m.get_resource_group(&sub, &rg).await.is_ok();
                    Ok(if exists { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
                        .into_response())
                }
                Method::PUT => {
                    authz(actions::RESOURCE_GROUP_WRITE, &scope)?;
                    let (created, v) = m.put_resource_group(&sub, &rg, &json_body(&body)?).await?;
                    Ok(ok(if created { StatusCode::CREATED } else { StatusCode::OK }, v))
                }
                Method::DELETE => {
                    authz(actions::RESOURCE_GROUP_DELETE, &scope)?;
                    let deleted = m.delete_resource_group(&sub, &rg).await?;
                    Ok(if deleted { StatusCode::OK } else { StatusCode::NO_CONTENT }
                        .into_response())
                }
                _ => not_allowed(),
            }
        }
        (Route::RegistriesInSubscription(sub), Method::GET) => {
            authz(actions::REGISTRY_READ, &format!("/subscriptions/{sub}"))?;
            Ok(ok(StatusCode::OK, m.list_registries(Some(&sub), None).await?))
        }
        (Route::RegistriesInGroup(sub, rg), Method::GET) => {
            authz(actions::REGISTRY_READ, &format!("/subscriptions/{sub}/resourceGroups/{rg}"))?;
            Ok(ok(StatusCode::OK, m.list_registries(Some(&sub), Some(&rg)).await?))
        }
        (Route::CheckName(sub), Method::POST) => {
            authz(actions::CHECK_NAME, &format!("/subscriptions/{sub}"))?;
            Ok(ok(StatusCode::OK, m.check_name_availability(&sub, &json_body(&body)?).await?))
        }
        (Route::Registry(id), method) => {
            let scope = id.to_string();
            match method {
                Method::GET => {
                    authz(actions::REGISTRY_READ, &scope)?;
                    Ok(ok(StatusCode::OK, m.get_registry(&id).await?))
                }
                Method::PUT => {
                    authz(actions::REGISTRY_WRITE, &scope)?;
                    let (created, v) = m.put_registry(&id, &json_body(&body)?).await?;
                    Ok(ok(if created { StatusCode::CREATED } else { StatusCode::OK }, v))
                }
                Method::PATCH => {
                    authz(actions::REGISTRY_WRITE, &scope)?;
                    Ok(ok(StatusCode::OK, m.patch_registry(&id, &json_body(&body)?).await?))
                }
                Method::DELETE => {
                    authz(actions::REGISTRY_DELETE, &scope)?;
                    let deleted = m.delete_registry(&id).await?;
                    Ok(if deleted { StatusCode::OK } else { StatusCode::NO_CONTENT }
                        .into_response())
                }
                _ => not_allowed(),
            }
        }
        (Route::ImportImage(id), Method::POST) => {
            authz(actions::IMPORT_IMAGE, &id.to_string())?;
            let target = m.registry(&id).await?;
            let req = parse_parameters(&json_body(&body)?).map_err(|e| e.to_arm())?;
            let location =
                operation_url(host, headers, &id.subscription, &target.location, api_version);
            match state.imports.submit(&target, req, &caller).await? {
                Submitted::Done { id: op, result: Ok(_) } => {
                    let mut res = (StatusCode::OK, axum::Json(Value::Null)).into_response();
                    set_header(&mut res, header::LOCATION, &location(&op));
                    Ok(res)
                }
                Submitted::Done { result: Err(e), .. } => Err(e.into()),
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
        (Route::Operation(sub, op), Method::GET) => {
            authz(actions::OPERATION_READ, &format!("/subscriptions/{sub}"))?;
            match state.imports.status(&op, &sub).await? {
                JobStatus::Running(v) => {
                    let mut res = (StatusCode::ACCEPTED, axum::Json(v)).into_response();
                    set_header(
                        &mut res,
                        header::RETRY_AFTER,
                        &state.imports.retry_after().as_secs().max(1).to_string(),
                    );
                    Ok(res)
                }
                JobStatus::Succeeded(mut v) => {
                    if let Some(o) = v.as_object_mut() {
                        o.insert("status".into(), json!("Succeeded"));
                    }
                    Ok(ok(StatusCode::OK, v))
                }
                JobStatus::Failed(e) => Err(e.into()),
            }
        }
        (Route::CancelOperation(sub, op), Method::POST) => {
            authz(actions::OPERATION_CANCEL, &format!("/subscriptions/{sub}"))?;
            match state.imports.cancel(&op, &sub).await? {
                CancelOutcome::Requested => Ok(StatusCode::ACCEPTED.into_response()),
            }
        }
        _ => not_allowed(),
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
    host: Option<&str>,
    headers: &'a HeaderMap,
    sub: &'a str,
    location: &'a str,
    api_version: Option<&'a str>,
) -> impl Fn(&str) -> String + 'a {
    let host = host.unwrap_or("localhost").to_owned();
    // Only letters and digits of the region go into the path (its segment is not parsed).
    let mut region: String = location.chars().filter(char::is_ascii_alphanumeric).collect();
    if region.is_empty() {
        region = "LOCAL".into();
    }
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http")
        .to_owned();
    move |op: &str| {
        format!(
            "{scheme}://{host}/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/locations/{}/operationResults/{op}?api-version={}",
            region.to_ascii_uppercase(),
            api_version.unwrap_or("2025-11-01")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse("/subscriptions"), Some(Route::Subscriptions));
        assert_eq!(
            parse("/subscriptions/s/resourcegroups/rg"),
            Some(Route::ResourceGroup("s".into(), "rg".into()))
        );
        let r = parse(
            "/subscriptions/s/resourceGroups/rg/providers/microsoft.containerregistry/registries/myreg/importImage",
        );
        assert!(matches!(r, Some(Route::ImportImage(id)) if id.name == "myreg"));
        assert_eq!(
            parse(
                "/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/WESTUS/operationResults/registries-1"
            ),
            Some(Route::Operation("s".into(), "registries-1".into()))
        );
        assert_eq!(
            parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/locations/x/operationResults/operationStatuses/registries-1"
            ),
            Some(Route::Operation("s".into(), "registries-1".into()))
        );
        assert_eq!(
            parse(
                "/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/L/operationResults/registries-1/cancel"
            ),
            Some(Route::CancelOperation("s".into(), "registries-1".into()))
        );
        assert_eq!(
            parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x"
            ),
            None
        );
    }
}
