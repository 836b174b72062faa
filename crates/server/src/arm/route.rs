//! Management paths parsed into a typed [`Route`], and the one permission check each route
//! needs ([`Route::check`], [`authorize`]).
//!
//! ARM paths match case-insensitively (`resourceGroups` = `resourcegroups`), so the path
//! is split by hand ([`parse`]) rather than by router patterns.

use axum::http::Method;
use wharf_auth::actions;
use wharf_management::{ArmError, ErrorKind, Management, RegistryResourceId};

use crate::AppState;

/// A management request, parsed once from its method and path. Each route names the
/// permission it needs ([`Route::check`]) and the handler receives the same value, so
/// the check and the handler can't disagree about what the path says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
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
pub(super) enum Check {
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
    pub(super) fn check(&self) -> Check {
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
pub(super) async fn authorize(
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
            let registry = registry.map_err(super::import_error::to_arm)?.ok_or_else(|| {
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

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `providers/Microsoft.ContainerRegistry`
fn acr(p: &str, ns: &str) -> bool {
    eq(p, "providers") && eq(ns, "Microsoft.ContainerRegistry")
}

fn reg(sub: &str, rg: &str, name: &str) -> RegistryResourceId {
    RegistryResourceId { subscription: sub.into(), resource_group: rg.into(), name: name.into() }
}

fn parse_resource(path: &str) -> Option<PathKind> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `{scope}/providers/Microsoft.Authorization/{roleDefinitions|roleAssignments}[/{name}]`
    if let Some(i) = segs.iter().enumerate().position(|(i, s)| {
        eq(s, "providers") && segs.get(i + 1).is_some_and(|n| eq(n, "Microsoft.Authorization"))
    }) {
        return authorization_path(&segs[..i], &segs[i + 2..]);
    }
    // Tried in order, as one match would be: the first that names the path wins.
    subscription_path(&segs).or_else(|| operation_path(&segs)).or_else(|| registry_path(&segs))
}

/// `{scope}/providers/Microsoft.Authorization/{roleDefinitions|roleAssignments}[/{name}]`,
/// split at the provider into the scope (a resource wharf knows, or `/`) and the rest.
fn authorization_path(scope: &[&str], rest: &[&str]) -> Option<PathKind> {
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
    match rest {
        [k] if eq(k, "roleDefinitions") => Some(PathKind::RoleDefinitions(scope, None)),
        [k, n] if eq(k, "roleDefinitions") => {
            Some(PathKind::RoleDefinitions(scope, Some(n.to_string())))
        }
        [k] if eq(k, "roleAssignments") => Some(PathKind::RoleAssignments(scope, None)),
        [k, n] if eq(k, "roleAssignments") => {
            Some(PathKind::RoleAssignments(scope, Some(n.to_string())))
        }
        _ => None,
    }
}

/// Tenants, subscriptions, resource groups and what is listed in them.
fn subscription_path(segs: &[&str]) -> Option<PathKind> {
    Some(match segs {
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
        _ => return None,
    })
}

/// An import operation, at a subscription or a resource group.
fn operation_path(segs: &[&str]) -> Option<PathKind> {
    Some(match segs {
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
        _ => return None,
    })
}

/// A registry in a resource group, its actions and its scope maps and tokens.
fn registry_path(segs: &[&str]) -> Option<PathKind> {
    Some(match segs {
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
pub(super) fn parse(method: &Method, path: &str) -> Result<Route, ArmError> {
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
