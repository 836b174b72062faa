//! The management API, shaped like Azure Resource Manager, under `/subscriptions/…`.
//!
//! [`route`] parses the method and path once into a typed [`Route`] and checks the one
//! permission it names, before anything is done; [`serve`] then hands the route to one
//! function per route, in a module per resource family: [`subscriptions`] (tenants,
//! subscriptions, resource groups), [`registries`], [`imports`] (importImage and its
//! operations), [`credentials`] (admin credentials, scope maps, tokens) and [`roles`] (role
//! definitions and assignments). Errors are ARM's envelope: `{"error":{"code","message"}}`.

mod credentials;
mod import_error;
mod imports;
mod registries;
mod roles;
mod route;
mod subscriptions;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use wharf_auth::Caller;
use wharf_management::{ArmError, ErrorKind, Management, check_api_version};

use crate::AppState;
use crate::limits::ReadError;
use route::Route;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/subscriptions", any(dispatch))
        .route("/subscriptions/{*rest}", any(dispatch))
        .route("/tenants", any(dispatch))
        .route("/providers/{*rest}", any(dispatch))
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
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
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

/// A management request's [`route::Route`], for metrics to name; else the fixed name that
/// stands for it.
pub(crate) fn route_for_metrics(
    method: &axum::http::Method,
    path: &str,
) -> Result<impl std::fmt::Debug, &'static str> {
    route::parse(method, path).map_err(|_| "arm_invalid")
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
            crate::origin(&state, &parts),
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
    origin: crate::Origin<'_>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ArmResult {
    check_api_version(query.get("api-version").map(String::as_str))?;
    let route = route::parse(method, path)?;
    // Who, then whether: one check per request, on the route's own action and scope.
    let caller = crate::auth::arm_caller(state, headers).await?;
    route::authorize(state, &caller, &route).await?;
    let ctx = Ctx { state, caller: &caller, origin, query, body };
    serve(&ctx, route).await
}

/// The function that serves each route.
async fn serve(ctx: &Ctx<'_>, route: Route) -> ArmResult {
    use Route::*;
    match route {
        ListTenants => subscriptions::list_tenants(ctx).await,
        ListSubscriptions => subscriptions::list_subscriptions(ctx).await,
        GetSubscription(sub) => subscriptions::get_subscription(ctx, &sub).await,
        PutSubscription(sub) => subscriptions::put_subscription(ctx, &sub).await,
        ListResourceGroups(sub) => subscriptions::list_resource_groups(ctx, &sub).await,
        GetResourceGroup(sub, rg) => subscriptions::get_resource_group(ctx, &sub, &rg).await,
        HeadResourceGroup(sub, rg) => subscriptions::head_resource_group(ctx, &sub, &rg).await,
        PutResourceGroup(sub, rg) => subscriptions::put_resource_group(ctx, &sub, &rg).await,
        DeleteResourceGroup(sub, rg) => subscriptions::delete_resource_group(ctx, &sub, &rg).await,
        ListRegistries(sub, rg) => registries::list_registries(ctx, &sub, rg.as_deref()).await,
        ListResources(sub, rg) => registries::list_resources(ctx, &sub, rg.as_deref()).await,
        CheckName(sub) => registries::check_name(ctx, &sub).await,
        GetRegistry(id) => registries::get_registry(ctx, &id).await,
        PutRegistry(id) => registries::put_registry(ctx, &id).await,
        PatchRegistry(id) => registries::patch_registry(ctx, &id).await,
        DeleteRegistry(id) => registries::delete_registry(ctx, &id).await,
        ImportImage(id) => imports::import_image(ctx, &id).await,
        GetOperation(sub, op) => imports::get_operation(ctx, &sub, &op).await,
        CancelOperation(sub, op) => imports::cancel_operation(ctx, &sub, &op).await,
        ListCredentials(id) => credentials::list_credentials(ctx, &id).await,
        RegenerateCredential(id) => credentials::regenerate_credential(ctx, &id).await,
        GenerateCredentials(id) => credentials::generate_credentials(ctx, &id).await,
        ListScopeMaps(id) => credentials::list_scope_maps(ctx, &id).await,
        GetScopeMap(id, n) => credentials::get_scope_map(ctx, &id, &n).await,
        PutScopeMap(id, n, patch) => credentials::put_scope_map(ctx, &id, &n, patch).await,
        DeleteScopeMap(id, n) => credentials::delete_scope_map(ctx, &id, &n).await,
        ListTokens(id) => credentials::list_tokens(ctx, &id).await,
        GetToken(id, n) => credentials::get_token(ctx, &id, &n).await,
        PutToken(id, n, patch) => credentials::put_token(ctx, &id, &n, patch).await,
        DeleteToken(id, n) => credentials::delete_token(ctx, &id, &n).await,
        ListRoleDefinitions(scope) => roles::list_role_definitions(ctx, &scope).await,
        GetRoleDefinition(scope, id) => roles::get_role_definition(ctx, &scope, &id).await,
        PutRoleDefinition(scope, id) => roles::put_role_definition(ctx, &scope, &id).await,
        DeleteRoleDefinition(scope, id) => roles::delete_role_definition(ctx, &scope, &id).await,
        ListRoleAssignments(scope) => roles::list_role_assignments(ctx, &scope).await,
        GetRoleAssignment(scope, n) => roles::get_role_assignment(ctx, &scope, &n).await,
        PutRoleAssignment(scope, n) => roles::put_role_assignment(ctx, &scope, &n).await,
        DeleteRoleAssignment(scope, n) => roles::delete_role_assignment(ctx, &scope, &n).await,
    }
}

/// What every route's function needs besides the route: the request, authorized.
struct Ctx<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    origin: crate::Origin<'a>,
    query: &'a HashMap<String, String>,
    body: Bytes,
}

impl Ctx<'_> {
    fn management(&self) -> &Management {
        &self.state.management
    }

    fn identity(&self) -> &wharf_auth::Identity {
        &self.state.identity
    }

    fn api_version(&self) -> Option<&str> {
        self.query.get("api-version").map(String::as_str)
    }

    /// A list's `$filter`.
    fn filter(&self) -> Option<&str> {
        self.query.get("$filter").map(String::as_str)
    }

    /// The body as JSON (required).
    fn json(&self) -> Result<Value, ArmError> {
        if self.body.is_empty() {
            return Err(ArmError::invalid_content("the request has no body"));
        }
        serde_json::from_slice(&self.body).map_err(ArmError::invalid_content)
    }
}

fn ok(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// A PUT's answer: 201 if it created the resource, 200 if it updated one.
fn created(created: bool, v: Value) -> Response {
    ok(if created { StatusCode::CREATED } else { StatusCode::OK }, v)
}

/// A DELETE's answer: 200 if something was deleted, 204 if there was nothing to.
fn removed(gone: bool) -> Response {
    if gone { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response()
}

/// A DELETE's answer that shows what was deleted (204 if there was nothing to).
fn deleted(v: Option<Value>) -> Response {
    match v {
        Some(v) => ok(StatusCode::OK, v),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Keep the items of a `{"value":[…]}` list whose `id` passes `visible`.
fn keep(v: &mut Value, visible: impl Fn(&str) -> bool) {
    if let Some(items) = v.get_mut("value").and_then(Value::as_array_mut) {
        items.retain(|i| i["id"].as_str().is_some_and(&visible));
    }
}
