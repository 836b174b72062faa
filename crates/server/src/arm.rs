//! The management API, shaped like Azure Resource Manager, under `/subscriptions/…`.
//!
//! ARM paths match case-insensitively (`resourceGroups` = `resourcegroups`), so the path
//! is split by hand ([`parse`]) rather than by router patterns. Every route names the ARM
//! action it needs ([`Route::permission`]) and it is checked, once, before anything is done.
//! Errors are ARM's envelope: `{"error":{"code","message"}}`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use wharf_auth::actions;
use wharf_import::{CancelOutcome, JobStatus, Submitted, parse_parameters};
use wharf_management::authorization as authz;
use wharf_management::registry_credentials as creds;
use wharf_management::{
    ArmError, ErrorKind, Management, REGISTRY_TYPE, RegistryResourceId, check_api_version,
};

use crate::AppState;
use crate::import_error;
use crate::limits::ReadError;

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

/// A management request, parsed once from its method and path. Each route names the
/// permission it needs ([`Route::permission`]) and the handler receives the same value, so
/// the check and the handler can't disagree about what the path says.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    ListTenants,
    ListSubscriptions,
    GetSubscription(String),
    PutSubscription(String),
    ListResourceGroups(String),
    GetResourceGroup(String, String),
    HeadResourceGroup(String, String),
    PutResourceGroup(String, String),
    DeleteResourceGroup(String, String),
    ListRegistries(String, Option<String>),
    /// ARM's generic resource list (`…/resources`), registries being the only resources.
    ListResources(String, Option<String>),
    CheckName(String),
    GetRegistry(RegistryResourceId),
    PutRegistry(RegistryResourceId),
    PatchRegistry(RegistryResourceId),
    DeleteRegistry(RegistryResourceId),
    ImportImage(RegistryResourceId),
    ListCredentials(RegistryResourceId),
    RegenerateCredential(RegistryResourceId),
    GenerateCredentials(RegistryResourceId),
    ListScopeMaps(RegistryResourceId),
    GetScopeMap(RegistryResourceId, String),
    /// `PUT` (`false`) or `PATCH` (`true`).
    PutScopeMap(RegistryResourceId, String, bool),
    DeleteScopeMap(RegistryResourceId, String),
    ListTokens(RegistryResourceId),
    GetToken(RegistryResourceId, String),
    PutToken(RegistryResourceId, String, bool),
    DeleteToken(RegistryResourceId, String),
    GetOperation(String, String),
    CancelOperation(String, String),
    /// `{scope}/providers/Microsoft.Authorization/…`; the scope is a resource id or `/`.
    ListRoleDefinitions(String),
    GetRoleDefinition(String, String),
    PutRoleDefinition(String, String),
    DeleteRoleDefinition(String, String),
    ListRoleAssignments(String),
    GetRoleAssignment(String, String),
    PutRoleAssignment(String, String),
    DeleteRoleAssignment(String, String),
}

/// What a route needs of its caller, checked once, before anything is done.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// An action on a scope.
    Action(&'static str, String),
    /// Any signed-in caller (what it lists is cut down to what it may read).
    SignedIn,
    /// A caller holding some role at, above or inside a scope: a list of what is in it
    /// (else 403 — whether or not the scope exists, which nobody else may learn).
    HoldsWithin(&'static str, String),
    /// An import operation: the action (or import itself) on the registry the job imports
    /// into, found once the job is.
    Operation(&'static str),
}

impl Route {
    /// What the route needs: see [`Check`].
    fn check(&self) -> Check {
        use Route::*;
        let sub = |s: &str| format!("/subscriptions/{s}");
        let rg = |s: &str, g: &str| format!("/subscriptions/{s}/resourceGroups/{g}");
        let (action, scope) = match self {
            ListTenants | ListSubscriptions => return Check::SignedIn,
            ListResourceGroups(s) => {
                return Check::HoldsWithin(actions::RESOURCE_GROUP_READ, sub(s));
            }
            ListRegistries(s, None) | ListResources(s, None) => {
                return Check::HoldsWithin(actions::REGISTRY_READ, sub(s));
            }
            ListRegistries(s, Some(g)) | ListResources(s, Some(g)) => {
                return Check::HoldsWithin(actions::REGISTRY_READ, rg(s, g));
            }
            GetOperation(..) => return Check::Operation(actions::OPERATION_READ),
            CancelOperation(..) => return Check::Operation(actions::OPERATION_CANCEL),
            GetSubscription(s) => (actions::SUBSCRIPTION_READ, sub(s)),
            PutSubscription(s) => (actions::SUBSCRIPTION_WRITE, sub(s)),
            GetResourceGroup(s, g) | HeadResourceGroup(s, g) => {
                (actions::RESOURCE_GROUP_READ, rg(s, g))
            }
            PutResourceGroup(s, g) => (actions::RESOURCE_GROUP_WRITE, rg(s, g)),
            DeleteResourceGroup(s, g) => (actions::RESOURCE_GROUP_DELETE, rg(s, g)),
            CheckName(s) => (actions::CHECK_NAME, sub(s)),
            GetRegistry(id) => (actions::REGISTRY_READ, id.to_string()),
            PutRegistry(id) | PatchRegistry(id) => (actions::REGISTRY_WRITE, id.to_string()),
            DeleteRegistry(id) => (actions::REGISTRY_DELETE, id.to_string()),
            ImportImage(id) => (actions::IMPORT_IMAGE, id.to_string()),
            ListCredentials(id) => (actions::LIST_CREDENTIALS, id.to_string()),
            RegenerateCredential(id) => (actions::REGENERATE_CREDENTIAL, id.to_string()),
            GenerateCredentials(id) => (actions::GENERATE_CREDENTIALS, id.to_string()),
            ListScopeMaps(id) => (actions::SCOPE_MAP_READ, format!("{id}/scopeMaps")),
            GetScopeMap(id, n) => (actions::SCOPE_MAP_READ, format!("{id}/scopeMaps/{n}")),
            PutScopeMap(id, n, _) => (actions::SCOPE_MAP_WRITE, format!("{id}/scopeMaps/{n}")),
            DeleteScopeMap(id, n) => (actions::SCOPE_MAP_DELETE, format!("{id}/scopeMaps/{n}")),
            ListTokens(id) => (actions::TOKEN_READ, format!("{id}/tokens")),
            GetToken(id, n) => (actions::TOKEN_READ, format!("{id}/tokens/{n}")),
            PutToken(id, n, _) => (actions::TOKEN_WRITE, format!("{id}/tokens/{n}")),
            DeleteToken(id, n) => (actions::TOKEN_DELETE, format!("{id}/tokens/{n}")),
            ListRoleDefinitions(scope) | GetRoleDefinition(scope, _) => {
                (actions::ROLE_DEFINITION_READ, scope.clone())
            }
            PutRoleDefinition(scope, _) => (actions::ROLE_DEFINITION_WRITE, scope.clone()),
            DeleteRoleDefinition(scope, _) => (actions::ROLE_DEFINITION_DELETE, scope.clone()),
            ListRoleAssignments(scope) | GetRoleAssignment(scope, _) => {
                (actions::ROLE_ASSIGNMENT_READ, scope.clone())
            }
            PutRoleAssignment(scope, _) => (actions::ROLE_ASSIGNMENT_WRITE, scope.clone()),
            DeleteRoleAssignment(scope, _) => (actions::ROLE_ASSIGNMENT_DELETE, scope.clone()),
        };
        Check::Action(action, scope)
    }
}

/// Authorize `route` for `caller` (see [`Check`]).
async fn authorize(
    state: &AppState,
    caller: &wharf_auth::Caller,
    route: &Route,
) -> Result<(), ArmError> {
    match route.check() {
        Check::Action(action, scope) => Ok(caller.check(action, &scope)?),
        Check::SignedIn if caller.is_anonymous() => {
            Err(wharf_auth::AuthError::Unauthenticated.into())
        }
        Check::SignedIn => Ok(()),
        Check::HoldsWithin(action, scope) if !caller.has_grant_within(&scope) => {
            Ok(caller.check(action, &scope)?)
        }
        Check::HoldsWithin(..) => Ok(()),
        Check::Operation(action) => {
            let (Route::GetOperation(sub, op) | Route::CancelOperation(sub, op)) = route else {
                return Err(ArmError::internal("an operation check on another route"));
            };
            let registry = state.imports.job_registry(op, sub).await;
            let registry = registry.map_err(import_error::to_arm)?.ok_or_else(|| {
                ArmError::not_found(
                    "OperationNotFound",
                    format!("The operation '{op}' was not found."),
                )
            })?;
            // Whoever may import into the registry may follow (and stop) its imports.
            let scope = Management::resource_id(&registry).to_string();
            if caller.allows(actions::IMPORT_IMAGE, &scope) {
                return Ok(());
            }
            Ok(caller.check(action, &scope)?)
        }
    }
}

/// What a path names, before the method is considered.
#[derive(Debug, PartialEq, Eq)]
enum PathKind {
    Tenants,
    Subscriptions,
    Subscription(String),
    ResourceGroups(String),
    ResourceGroup(String, String),
    RegistriesInSubscription(String),
    Resources(String, Option<String>),
    CheckName(String),
    Operation(String, String),
    CancelOperation(String, String),
    RegistriesInGroup(String, String),
    Registry(RegistryResourceId),
    ImportImage(RegistryResourceId),
    /// `POST …/registries/{name}/{action}` other than importImage.
    RegistryAction(RegistryResourceId, RegistryAction),
    /// `…/registries/{name}/{scopeMaps|tokens}[/{child}]`.
    RegistryChild(RegistryResourceId, ChildKind, Option<String>),
    RoleDefinitions(String, Option<String>),
    RoleAssignments(String, Option<String>),
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum RegistryAction {
    ListCredentials,
    RegenerateCredential,
    GenerateCredentials,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum ChildKind {
    ScopeMaps,
    Tokens,
}

fn parse_resource(path: &str) -> Option<PathKind> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    // `{scope}/providers/Microsoft.Authorization/{roleDefinitions|roleAssignments}[/{name}]`
    if let Some(i) = segs.iter().enumerate().position(|(i, s)| {
        eq(s, "providers") && segs.get(i + 1).is_some_and(|n| eq(n, "Microsoft.Authorization"))
    }) {
        let scope = &segs[..i];
        let valid_scope = match scope {
            [] => true,
            [s, _] => eq(s, "subscriptions"),
            [s, _, g, _] => eq(s, "subscriptions") && eq(g, "resourceGroups"),
            [s, _, g, _, p, ns, r, _] => {
                eq(s, "subscriptions")
                    && eq(g, "resourceGroups")
                    && eq(p, "providers")
                    && eq(ns, "Microsoft.ContainerRegistry")
                    && eq(r, "registries")
            }
            _ => false,
        };
        if !valid_scope {
            return None;
        }
        let scope = format!("/{}", scope.join("/"));
        return match &segs[i + 2..] {
            [k] if eq(k, "roleDefinitions") => Some(PathKind::RoleDefinitions(scope, None)),
            [k, n] if eq(k, "roleDefinitions") => {
                Some(PathKind::RoleDefinitions(scope, Some(n.to_string())))
            }
            [k] if eq(k, "roleAssignments") => Some(PathKind::RoleAssignments(scope, None)),
            [k, n] if eq(k, "roleAssignments") => {
                Some(PathKind::RoleAssignments(scope, Some(n.to_string())))
            }
            _ => None,
        };
    }
    let acr = |p: &str, ns: &str| eq(p, "providers") && eq(ns, "Microsoft.ContainerRegistry");
    let reg = |sub: &str, rg: &str, name: &str| RegistryResourceId {
        subscription: sub.into(),
        resource_group: rg.into(),
        name: name.into(),
    };
    Some(match segs.as_slice() {
        [t] if eq(t, "tenants") => PathKind::Tenants,
        [s] if eq(s, "subscriptions") => PathKind::Subscriptions,
        [s, sub] if eq(s, "subscriptions") => PathKind::Subscription(sub.to_string()),
        [s, sub, g] if eq(s, "subscriptions") && eq(g, "resourceGroups") => {
            PathKind::ResourceGroups(sub.to_string())
        }
        [s, sub, g, rg] if eq(s, "subscriptions") && eq(g, "resourceGroups") => {
            PathKind::ResourceGroup(sub.to_string(), rg.to_string())
        }
        [s, sub, r] if eq(s, "subscriptions") && eq(r, "resources") => {
            PathKind::Resources(sub.to_string(), None)
        }
        [s, sub, g, rg, r]
            if eq(s, "subscriptions") && eq(g, "resourceGroups") && eq(r, "resources") =>
        {
            PathKind::Resources(sub.to_string(), Some(rg.to_string()))
        }
        [s, sub, p, ns, r] if eq(s, "subscriptions") && acr(p, ns) && eq(r, "registries") => {
            PathKind::RegistriesInSubscription(sub.to_string())
        }
        [s, sub, p, ns, c]
            if eq(s, "subscriptions") && acr(p, ns) && eq(c, "checkNameAvailability") =>
        {
            PathKind::CheckName(sub.to_string())
        }
        [s, sub, p, ns, l, _loc, o, id]
            if eq(s, "subscriptions")
                && acr(p, ns)
                && eq(l, "locations")
                && eq(o, "operationResults") =>
        {
            PathKind::Operation(sub.to_string(), id.to_string())
        }
        // wharf's own: ARM has no generic cancel for an operation, ACR none for import.
        [s, sub, p, ns, l, _loc, o, id, c]
            if eq(s, "subscriptions")
                && acr(p, ns)
                && eq(l, "locations")
                && eq(o, "operationResults")
                && eq(c, "cancel") =>
        {
            PathKind::CancelOperation(sub.to_string(), id.to_string())
        }
        [s, sub, g, _rg, p, ns, l, _loc, o, rest @ ..]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(l, "locations")
                && eq(o, "operationResults")
                && (rest.len() == 1 || (rest.len() == 2 && eq(rest[0], "operationStatuses"))) =>
        {
            PathKind::Operation(sub.to_string(), rest[rest.len() - 1].to_string())
        }
        [s, sub, g, rg, p, ns, r]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(r, "registries") =>
        {
            PathKind::RegistriesInGroup(sub.to_string(), rg.to_string())
        }
        [s, sub, g, rg, p, ns, r, name]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(r, "registries") =>
        {
            PathKind::Registry(reg(sub, rg, name))
        }
        [s, sub, g, rg, p, ns, r, name, i]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(r, "registries")
                && eq(i, "importImage") =>
        {
            PathKind::ImportImage(reg(sub, rg, name))
        }
        [s, sub, g, rg, p, ns, r, name, a]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(r, "registries") =>
        {
            let reg = reg(sub, rg, name);
            if eq(a, "listCredentials") {
                PathKind::RegistryAction(reg, RegistryAction::ListCredentials)
            } else if eq(a, "regenerateCredential") {
                PathKind::RegistryAction(reg, RegistryAction::RegenerateCredential)
            } else if eq(a, "generateCredentials") {
                PathKind::RegistryAction(reg, RegistryAction::GenerateCredentials)
            } else if eq(a, "scopeMaps") {
                PathKind::RegistryChild(reg, ChildKind::ScopeMaps, None)
            } else if eq(a, "tokens") {
                PathKind::RegistryChild(reg, ChildKind::Tokens, None)
            } else {
                return None;
            }
        }
        [s, sub, g, rg, p, ns, r, name, k, child]
            if eq(s, "subscriptions")
                && eq(g, "resourceGroups")
                && acr(p, ns)
                && eq(r, "registries")
                && (eq(k, "scopeMaps") || eq(k, "tokens")) =>
        {
            let kind = if eq(k, "tokens") { ChildKind::Tokens } else { ChildKind::ScopeMaps };
            PathKind::RegistryChild(reg(sub, rg, name), kind, Some(child.to_string()))
        }
        _ => return None,
    })
}

/// The route of a method on a path.
fn parse(method: &Method, path: &str) -> Result<Route, ArmError> {
    let resource = parse_resource(path).ok_or_else(|| {
        ArmError::not_found(
            "InvalidResourceType",
            format!("No management API is served at '{path}'."),
        )
    })?;
    use PathKind as R;
    let m = method.clone();
    let route = match (resource, m) {
        (R::Tenants, Method::GET) => Route::ListTenants,
        (R::Subscriptions, Method::GET) => Route::ListSubscriptions,
        (R::Subscription(s), Method::GET) => Route::GetSubscription(s),
        (R::Subscription(s), Method::PUT) => Route::PutSubscription(s),
        (R::ResourceGroups(s), Method::GET) => Route::ListResourceGroups(s),
        (R::ResourceGroup(s, g), Method::GET) => Route::GetResourceGroup(s, g),
        (R::ResourceGroup(s, g), Method::HEAD) => Route::HeadResourceGroup(s, g),
        (R::ResourceGroup(s, g), Method::PUT) => Route::PutResourceGroup(s, g),
        (R::ResourceGroup(s, g), Method::DELETE) => Route::DeleteResourceGroup(s, g),
        (R::RegistriesInSubscription(s), Method::GET) => Route::ListRegistries(s, None),
        (R::RegistriesInGroup(s, g), Method::GET) => Route::ListRegistries(s, Some(g)),
        (R::CheckName(s), Method::POST) => Route::CheckName(s),
        (R::Resources(s, g), Method::GET) => Route::ListResources(s, g),
        (R::Registry(id), Method::GET) => Route::GetRegistry(id),
        (R::Registry(id), Method::PUT) => Route::PutRegistry(id),
        (R::Registry(id), Method::PATCH) => Route::PatchRegistry(id),
        (R::Registry(id), Method::DELETE) => Route::DeleteRegistry(id),
        (R::ImportImage(id), Method::POST) => Route::ImportImage(id),
        (R::RegistryAction(id, a), Method::POST) => match a {
            RegistryAction::ListCredentials => Route::ListCredentials(id),
            RegistryAction::RegenerateCredential => Route::RegenerateCredential(id),
            RegistryAction::GenerateCredentials => Route::GenerateCredentials(id),
        },
        (R::RegistryChild(id, ChildKind::ScopeMaps, None), Method::GET) => Route::ListScopeMaps(id),
        (R::RegistryChild(id, ChildKind::Tokens, None), Method::GET) => Route::ListTokens(id),
        (R::RegistryChild(id, kind, Some(n)), m) => match (kind, m) {
            (ChildKind::ScopeMaps, Method::GET) => Route::GetScopeMap(id, n),
            (ChildKind::ScopeMaps, Method::PUT) => Route::PutScopeMap(id, n, false),
            (ChildKind::ScopeMaps, Method::PATCH) => Route::PutScopeMap(id, n, true),
            (ChildKind::ScopeMaps, Method::DELETE) => Route::DeleteScopeMap(id, n),
            (ChildKind::Tokens, Method::GET) => Route::GetToken(id, n),
            (ChildKind::Tokens, Method::PUT) => Route::PutToken(id, n, false),
            (ChildKind::Tokens, Method::PATCH) => Route::PutToken(id, n, true),
            (ChildKind::Tokens, Method::DELETE) => Route::DeleteToken(id, n),
            _ => return Err(method_not_allowed(method)),
        },
        (R::Operation(s, op), Method::GET) => Route::GetOperation(s, op),
        (R::CancelOperation(s, op), Method::POST) => Route::CancelOperation(s, op),
        (R::RoleDefinitions(scope, None), Method::GET) => Route::ListRoleDefinitions(scope),
        (R::RoleDefinitions(scope, Some(id)), m) => match m {
            Method::GET => Route::GetRoleDefinition(scope, id),
            Method::PUT => Route::PutRoleDefinition(scope, id),
            Method::DELETE => Route::DeleteRoleDefinition(scope, id),
            _ => return Err(method_not_allowed(method)),
        },
        (R::RoleAssignments(scope, None), Method::GET) => Route::ListRoleAssignments(scope),
        (R::RoleAssignments(scope, Some(n)), m) => match m {
            Method::GET => Route::GetRoleAssignment(scope, n),
            Method::PUT => Route::PutRoleAssignment(scope, n),
            Method::DELETE => Route::DeleteRoleAssignment(scope, n),
            _ => return Err(method_not_allowed(method)),
        },
        _ => return Err(method_not_allowed(method)),
    };
    Ok(route)
}

fn method_not_allowed(method: &Method) -> ArmError {
    ArmError::new(
        ErrorKind::MethodNotAllowed,
        "MethodNotAllowed",
        format!("{method} is not supported here."),
    )
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
    let api_version = query.get("api-version").map(String::as_str);
    check_api_version(api_version)?;
    let route = parse(method, path)?;
    // Who, then whether: one check per request, on the route's own action and scope.
    let caller = crate::auth::arm_caller(state, headers).await?;
    authorize(state, &caller, &route).await?;
    let m = &state.management;
    let identity = &*state.identity;
    let filter = query.get("$filter").map(String::as_str);
    let created =
        |created: bool, v: Value| ok(if created { StatusCode::CREATED } else { StatusCode::OK }, v);
    let deleted = |v: Option<Value>| match v {
        Some(v) => ok(StatusCode::OK, v),
        None => StatusCode::NO_CONTENT.into_response(),
    };
    match route {
        Route::ListTenants => {
            let tenants: Vec<Value> = identity
                .tenants()
                .await
                .map_err(ArmError::from)?
                .into_iter()
                .map(|t| {
                    json!({
                        "id": format!("/tenants/{}", t.id),
                        "tenantId": t.id,
                        "displayName": t.name,
                        "tenantCategory": "Home",
                        "defaultDomain": state.settings.domain,
                    })
                })
                .collect();
            Ok(ok(StatusCode::OK, json!({ "value": tenants })))
        }
        Route::ListSubscriptions => {
            let mut v = m.list_subscriptions().await?;
            keep(&mut v, |id| caller.has_grant_within(id));
            add_tenant(&mut v, identity.default_tenant());
            Ok(ok(StatusCode::OK, v))
        }
        Route::GetSubscription(sub) => {
            let mut v = m.get_subscription(&sub).await?;
            add_tenant(&mut v, identity.default_tenant());
            Ok(ok(StatusCode::OK, v))
        }
        Route::PutSubscription(sub) => {
            let body = if body.is_empty() { json!({}) } else { json_body(&body)? };
            let (c, v) = m.put_subscription(&sub, &body).await?;
            Ok(created(c, v))
        }
        Route::ListResourceGroups(sub) => {
            let mut v = m.list_resource_groups(&sub).await?;
            keep(&mut v, |id| caller.allows(actions::RESOURCE_GROUP_READ, id));
            Ok(ok(StatusCode::OK, v))
        }
        Route::GetResourceGroup(sub, rg) => {
            Ok(ok(StatusCode::OK, m.get_resource_group(&sub, &rg).await?))
        }
        Route::HeadResourceGroup(sub, rg) => {
            let exists = m.get_resource_group(&sub, &rg).await.is_ok();
            Ok(if exists { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }.into_response())
        }
        Route::PutResourceGroup(sub, rg) => {
            let (c, v) = m.put_resource_group(&sub, &rg, &json_body(&body)?).await?;
            Ok(created(c, v))
        }
        Route::DeleteResourceGroup(sub, rg) => {
            let gone = m.delete_resource_group(&sub, &rg).await?;
            Ok(if gone { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
        }
        Route::ListRegistries(sub, rg) => {
            let mut v = m.list_registries(Some(&sub), rg.as_deref()).await?;
            keep(&mut v, |id| caller.allows(actions::REGISTRY_READ, id));
            Ok(ok(StatusCode::OK, v))
        }
        Route::ListResources(sub, rg) => {
            let wanted = resource_type_filter(filter)?;
            m.get_subscription(&sub).await?;
            if let Some(g) = &rg {
                m.get_resource_group(&sub, g).await?;
            }
            let mut v = m.list_registries(Some(&sub), rg.as_deref()).await?;
            keep(&mut v, |id| caller.allows(actions::REGISTRY_READ, id));
            let items: Vec<Value> = v["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|_| wanted.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(REGISTRY_TYPE)))
                .map(|r| {
                    json!({"id": r["id"], "name": r["name"], "type": r["type"],
                           "location": r["location"], "tags": r["tags"], "sku": r["sku"]})
                })
                .collect();
            Ok(ok(StatusCode::OK, json!({ "value": items })))
        }
        Route::CheckName(sub) => {
            Ok(ok(StatusCode::OK, m.check_name_availability(&sub, &json_body(&body)?).await?))
        }
        Route::GetRegistry(id) => Ok(ok(StatusCode::OK, m.get_registry(&id).await?)),
        Route::PutRegistry(id) => {
            let (c, v) = m.put_registry(&id, &json_body(&body)?).await?;
            Ok(created(c, v))
        }
        Route::PatchRegistry(id) => {
            Ok(ok(StatusCode::OK, m.patch_registry(&id, &json_body(&body)?).await?))
        }
        Route::DeleteRegistry(id) => {
            let gone = m.delete_registry(&id).await?;
            Ok(if gone { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
        }
        Route::ImportImage(id) => {
            let target = m.registry(&id).await?;
            let req = parse_parameters(&json_body(&body)?)?;
            let location = operation_url(origin, &id.subscription, &target.location, api_version);
            match state.imports.submit(&target, req, &caller).await? {
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
        Route::ListCredentials(id) => Ok(ok(
            StatusCode::OK,
            creds::list_credentials(identity, &m.registry(&id).await?).await?,
        )),
        Route::RegenerateCredential(id) => {
            let r = m.registry(&id).await?;
            Ok(ok(
                StatusCode::OK,
                creds::regenerate_credential(identity, &r, &json_body(&body)?).await?,
            ))
        }
        Route::GenerateCredentials(id) => {
            let r = m.registry(&id).await?;
            Ok(ok(
                StatusCode::OK,
                creds::generate_credentials(identity, &r, &json_body(&body)?).await?,
            ))
        }
        Route::ListScopeMaps(id) => {
            Ok(ok(StatusCode::OK, creds::list_scope_maps(identity, &m.registry(&id).await?).await?))
        }
        Route::GetScopeMap(id, n) => Ok(ok(
            StatusCode::OK,
            creds::get_scope_map(identity, &m.registry(&id).await?, &n).await?,
        )),
        Route::PutScopeMap(id, n, patch) => {
            let r = m.registry(&id).await?;
            let (c, v) = creds::put_scope_map(identity, &r, &n, &json_body(&body)?, patch).await?;
            Ok(created(c, v))
        }
        Route::DeleteScopeMap(id, n) => {
            let gone = creds::delete_scope_map(identity, &m.registry(&id).await?, &n).await?;
            Ok(if gone { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
        }
        Route::ListTokens(id) => {
            Ok(ok(StatusCode::OK, creds::list_tokens(identity, &m.registry(&id).await?).await?))
        }
        Route::GetToken(id, n) => {
            Ok(ok(StatusCode::OK, creds::get_token(identity, &m.registry(&id).await?, &n).await?))
        }
        Route::PutToken(id, n, patch) => {
            let r = m.registry(&id).await?;
            let (c, v) = creds::put_token(identity, &r, &n, &json_body(&body)?, patch).await?;
            Ok(created(c, v))
        }
        Route::DeleteToken(id, n) => {
            let gone = creds::delete_token(identity, &m.registry(&id).await?, &n).await?;
            Ok(if gone { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
        }
        Route::GetOperation(sub, op) => match state.imports.status(&op, &sub).await? {
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
            JobStatus::Failed(e) => Err(import_error::job_to_arm(e).into()),
        },
        Route::CancelOperation(sub, op) => match state.imports.cancel(&op, &sub).await? {
            CancelOutcome::Requested => Ok(StatusCode::ACCEPTED.into_response()),
        },
        Route::ListRoleDefinitions(scope) => {
            Ok(ok(StatusCode::OK, authz::list_role_definitions(identity, &scope, filter).await?))
        }
        Route::GetRoleDefinition(scope, id) => {
            Ok(ok(StatusCode::OK, authz::get_role_definition(identity, &scope, &id).await?))
        }
        Route::PutRoleDefinition(scope, id) => {
            let (c, v) =
                authz::put_role_definition(identity, &caller, &scope, &id, &json_body(&body)?)
                    .await?;
            Ok(created(c, v))
        }
        Route::DeleteRoleDefinition(scope, id) => {
            Ok(deleted(authz::delete_role_definition(identity, &caller, &scope, &id).await?))
        }
        Route::ListRoleAssignments(scope) => {
            Ok(ok(StatusCode::OK, authz::list_role_assignments(identity, &scope, filter).await?))
        }
        Route::GetRoleAssignment(scope, name) => {
            Ok(ok(StatusCode::OK, authz::get_role_assignment(identity, &scope, &name).await?))
        }
        Route::PutRoleAssignment(scope, name) => {
            let (c, v) =
                authz::put_role_assignment(identity, &caller, &scope, &name, &json_body(&body)?)
                    .await?;
            Ok(created(c, v))
        }
        Route::DeleteRoleAssignment(scope, name) => {
            Ok(deleted(authz::delete_role_assignment(identity, &caller, &scope, &name).await?))
        }
    }
}

/// The resource type of a generic list's `$filter=resourceType eq '…'` (the one form wharf
/// understands; anything else is refused rather than ignored).
fn resource_type_filter(filter: Option<&str>) -> Result<Option<String>, ArmError> {
    let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) else { return Ok(None) };
    let invalid = || {
        ArmError::bad_request(
            "InvalidFilterInQueryString",
            format!(
                "The $filter '{}' is not supported: use resourceType eq '<type>'.",
                f.chars().take(200).collect::<String>()
            ),
        )
    };
    let mut words = f.splitn(3, char::is_whitespace);
    let (field, op, value) = (words.next(), words.next(), words.next().map(str::trim));
    match (field, op, value) {
        (Some(field), Some(op), Some(v))
            if field.eq_ignore_ascii_case("resourceType")
                && op.eq_ignore_ascii_case("eq")
                && v.len() >= 2
                && v.starts_with('\'')
                && v.ends_with('\'') =>
        {
            Ok(Some(v[1..v.len() - 1].to_owned()))
        }
        _ => Err(invalid()),
    }
}

/// Keep the items of a `{"value":[…]}` list whose `id` passes `visible`.
fn keep(v: &mut Value, visible: impl Fn(&str) -> bool) {
    if let Some(items) = v.get_mut("value").and_then(Value::as_array_mut) {
        items.retain(|i| i["id"].as_str().is_some_and(&visible));
    }
}

/// ARM's subscriptions name their tenant.
fn add_tenant(v: &mut Value, tenant: &str) {
    let one = |s: &mut Value| {
        if let Some(o) = s.as_object_mut() {
            o.insert("tenantId".into(), json!(tenant));
            o.insert("managedByTenants".into(), json!([]));
        }
    };
    match v.get_mut("value").and_then(Value::as_array_mut) {
        Some(items) => items.iter_mut().for_each(one),
        None => one(v),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let get = |p: &str| parse(&Method::GET, p).ok();
        assert_eq!(get("/subscriptions"), Some(Route::ListSubscriptions));
        assert_eq!(
            get("/subscriptions/s/resourcegroups/rg"),
            Some(Route::GetResourceGroup("s".into(), "rg".into()))
        );
        let r = parse(
            &Method::POST,
            "/subscriptions/s/resourceGroups/rg/providers/microsoft.containerregistry/registries/myreg/importImage",
        );
        assert!(matches!(r, Ok(Route::ImportImage(id)) if id.name == "myreg"));
        assert_eq!(
            get(
                "/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/WESTUS/operationResults/registries-1"
            ),
            Some(Route::GetOperation("s".into(), "registries-1".into()))
        );
        assert_eq!(
            get(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/locations/x/operationResults/operationStatuses/registries-1"
            ),
            Some(Route::GetOperation("s".into(), "registries-1".into()))
        );
        assert_eq!(
            parse(
                &Method::POST,
                "/subscriptions/s/providers/Microsoft.ContainerRegistry/locations/L/operationResults/registries-1/cancel"
            )
            .ok(),
            Some(Route::CancelOperation("s".into(), "registries-1".into()))
        );
        assert!(
            get("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x")
                .is_none()
        );
        // The wrong method is 405, not a different route.
        assert_eq!(
            parse(&Method::POST, "/subscriptions/s").unwrap_err().kind,
            ErrorKind::MethodNotAllowed
        );
    }

    #[test]
    fn authorization_paths_and_their_scopes() {
        let r = parse(
            &Method::PUT,
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r/providers/Microsoft.Authorization/roleAssignments/1",
        )
        .unwrap();
        assert_eq!(
            r.check(),
            Check::Action(
                actions::ROLE_ASSIGNMENT_WRITE,
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r"
                    .into()
            )
        );
        let root =
            parse(&Method::GET, "/providers/Microsoft.Authorization/roleDefinitions").unwrap();
        assert_eq!(root, Route::ListRoleDefinitions("/".into()));
        // An assignment "scope" that isn't a resource wharf knows is no route at all.
        assert!(
            parse(
                &Method::GET,
                "/subscriptions/s/x/providers/Microsoft.Authorization/roleAssignments"
            )
            .is_err()
        );
        let import = parse(
            &Method::POST,
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r/importImage",
        )
        .unwrap();
        assert!(matches!(import.check(), Check::Action(a, _) if a == actions::IMPORT_IMAGE));
        assert_eq!(Route::ListTenants.check(), Check::SignedIn);
        // Lists of what is in a scope need some role there; an operation is checked on its
        // job's registry once found.
        assert_eq!(
            Route::ListResourceGroups("s".into()).check(),
            Check::HoldsWithin(actions::RESOURCE_GROUP_READ, "/subscriptions/s".into())
        );
        assert_eq!(
            Route::GetOperation("s".into(), "registries-1".into()).check(),
            Check::Operation(actions::OPERATION_READ)
        );
    }
}
