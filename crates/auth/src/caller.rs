//! Who is calling, and what they were granted: everything a permission check needs, loaded
//! once when the request is authenticated, so that checks are pure and synchronous.

use std::sync::Arc;

use crate::AuthError;
use crate::actions::RepoOp;
use crate::conditions::{Condition, Context};
use crate::roles::RoleDefinition;
use crate::scope::Access;
use crate::scope_map::RegistryGrant;
use wharf_storage::RegistryId;

/// A principal's kind, as ARM names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    ServicePrincipal,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::ServicePrincipal => "ServicePrincipal",
        }
    }

    pub fn parse(s: &str) -> Option<PrincipalKind> {
        match s {
            "User" => Some(PrincipalKind::User),
            "ServicePrincipal" => Some(PrincipalKind::ServicePrincipal),
            _ => None,
        }
    }
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Anonymous,
    /// A user or service principal of a tenant.
    Principal {
        id: String,
        tenant: String,
        kind: PrincipalKind,
        name: String,
        /// Its token generation when it was authenticated (what tokens issued now carry).
        generation: i64,
    },
    /// A credential of one registry that isn't a principal: its admin user, or one of its
    /// repository-scoped tokens.
    RegistryCredential {
        registry: RegistryId,
        /// `admin` (the admin user) or `token`.
        kind: &'static str,
        name: String,
    },
}

/// A role given at a scope, with its condition.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Lowercase, without a trailing slash; `""` is the root (`/`).
    pub scope: String,
    pub role: RoleDefinition,
    pub condition: Option<Condition>,
}

/// A caller: who, and what they may do.
#[derive(Clone, Debug)]
pub struct Caller {
    pub subject: Subject,
    grants: Arc<Vec<Grant>>,
    /// For a registry access token: exactly what it grants (then `grants` don't apply to
    /// that registry's content).
    access: Option<Arc<(RegistryId, Vec<Access>)>>,
    /// For a registry credential (admin user, token): what it may do in its registry.
    registry_grant: Option<Arc<(RegistryId, RegistryGrant)>>,
}

/// `/Subscriptions/X/` → `/subscriptions/x`; `/` → ``.
pub fn normalize_scope(scope: &str) -> String {
    scope.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether an assignment at `granted` applies to `target` (both normalized): the same
/// resource or one inside it, on a path-segment boundary.
pub fn covers(granted: &str, target: &str) -> bool {
    granted.is_empty()
        || target == granted
        || (target.starts_with(granted) && target.as_bytes().get(granted.len()) == Some(&b'/'))
}

/// Whether `scope` names something wharf can scope a role to: `/`, a subscription, a
/// resource group, or a registry (ids of letters, digits and `._()-`).
pub fn is_resource_scope(scope: &str) -> bool {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let id = |s: &str| {
        (1..=90).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._()-".contains(&b))
    };
    let trimmed = scope.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return scope.trim() == "/";
    }
    let Some(path) = trimmed.strip_prefix('/') else { return false };
    match path.split('/').collect::<Vec<_>>().as_slice() {
        [s, sub] => eq(s, "subscriptions") && id(sub),
        [s, sub, g, rg] => eq(s, "subscriptions") && id(sub) && eq(g, "resourceGroups") && id(rg),
        [s, sub, g, rg, p, ns, r, name] => {
            eq(s, "subscriptions")
                && id(sub)
                && eq(g, "resourceGroups")
                && id(rg)
                && eq(p, "providers")
                && eq(ns, "Microsoft.ContainerRegistry")
                && eq(r, "registries")
                && id(name)
        }
        _ => false,
    }
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller {
            subject: Subject::Anonymous,
            grants: Arc::default(),
            access: None,
            registry_grant: None,
        }
    }

    pub fn new(subject: Subject, grants: Arc<Vec<Grant>>) -> Caller {
        Caller { subject, grants, access: None, registry_grant: None }
    }

    /// A registry credential (its admin user, one of its tokens) of registry `registry`.
    pub fn registry_credential(registry: RegistryId, name: &str, grant: RegistryGrant) -> Caller {
        Caller {
            subject: Subject::RegistryCredential {
                registry,
                kind: grant.kind(),
                name: name.to_owned(),
            },
            grants: Arc::default(),
            access: None,
            registry_grant: Some(Arc::new((registry, grant))),
        }
    }

    /// A caller holding a registry access token for registry `registry`.
    pub fn with_access(mut self, registry: RegistryId, access: Vec<Access>) -> Caller {
        self.access = Some(Arc::new((registry, access)));
        self
    }

    /// Every caller may do anything (a server without access control, and tests).
    pub fn unrestricted() -> Caller {
        let owner = crate::roles::find_built_in("Owner").cloned();
        let grants = owner
            .map(|role| vec![Grant { scope: String::new(), role, condition: None }])
            .unwrap_or_default();
        Caller {
            subject: Subject::Anonymous,
            grants: Arc::new(grants),
            access: None,
            registry_grant: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.subject == Subject::Anonymous
    }

    /// The principal's object id, if the caller is one.
    pub fn principal_id(&self) -> Option<&str> {
        match &self.subject {
            Subject::Principal { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The name ARM's errors give the caller.
    pub fn display(&self) -> String {
        match &self.subject {
            Subject::Anonymous => "anonymous".into(),
            Subject::Principal { id, .. } => id.clone(),
            Subject::RegistryCredential { name, .. } => name.clone(),
        }
    }

    /// The registry access a token grants, if the caller holds one for `registry`.
    pub fn registry_access(&self, registry: RegistryId) -> Option<&[Access]> {
        self.access.as_deref().filter(|(r, _)| *r == registry).map(|(_, a)| a.as_slice())
    }

    /// Whether the caller may perform a management `action` on `scope` (a resource id).
    pub fn allows(&self, action: &str, scope: &str) -> bool {
        let target = normalize_scope(scope);
        self.grants.iter().any(|g| covers(&g.scope, &target) && g.role.allows(action, false))
    }

    /// Whether the caller already holds every permission `role` grants at `scope` (with
    /// `condition`): each of the role's action and data-action patterns is covered by a
    /// pattern of one of the caller's roles at or above the scope, under no condition or
    /// the same one, that none of that role's exclusions could touch. Exclusions of `role`
    /// itself are ignored (which only asks more of the caller).
    pub fn holds(&self, role: &RoleDefinition, scope: &str, condition: Option<&Condition>) -> bool {
        let target = normalize_scope(scope);
        let held = |pattern: &str, data: bool| {
            self.grants.iter().any(|g| {
                covers(&g.scope, &target)
                    && g.condition.as_ref().is_none_or(|c| Some(c) == condition)
                    && g.role.permissions.iter().any(|p| p.covers(pattern, data))
            })
        };
        role.permissions.iter().all(|p| {
            p.actions.iter().all(|a| held(a, false)) && p.data_actions.iter().all(|a| held(a, true))
        })
    }

    /// Whether any of the caller's roles applies at, above or inside `scope` (what ARM's
    /// lists show: a subscription in which one holds anything at all).
    /// Directory roles don't count: they are about the directory, not resources.
    pub fn has_grant_within(&self, scope: &str) -> bool {
        let target = normalize_scope(scope);
        self.grants.iter().any(|g| {
            !g.role.directory_only() && (covers(&g.scope, &target) || covers(&target, &g.scope))
        })
    }

    /// [`allows`](Self::allows), as ARM answers a refusal.
    pub fn check(&self, action: &str, scope: &str) -> Result<(), AuthError> {
        if self.allows(action, scope) {
            return Ok(());
        }
        if self.is_anonymous() {
            return Err(AuthError::Unauthenticated);
        }
        let who = self.display();
        Err(AuthError::Denied {
            message: format!(
                "The client '{who}' with object id '{who}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        })
    }

    /// Whether the caller may perform a data `action` on `repository` (or on the registry
    /// itself) of the registry at `registry_scope`: a role naming the data action, assigned
    /// at or above the registry, whose condition (if any) holds for this action and name.
    pub fn allows_data(
        &self,
        action: &str,
        registry_scope: &str,
        repository: Option<&str>,
    ) -> bool {
        let target = normalize_scope(registry_scope);
        let cx = Context { action, repository };
        self.grants.iter().any(|g| {
            covers(&g.scope, &target)
                && g.role.allows(action, true)
                && g.condition.as_ref().is_none_or(|c| c.holds(cx))
        })
    }
}

/// What a data-plane permission check needs to know about a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryPolicy {
    /// wharf's number for the registry.
    pub id: RegistryId,
    /// Its ARM resource id.
    pub scope: String,
    /// `roleAssignmentMode: AbacRepositoryPermissions`: only the Repository roles' data
    /// actions (with their conditions) grant content; the classic roles don't.
    pub abac: bool,
    /// `anonymousPullEnabled`: anyone may pull.
    pub anonymous_pull: bool,
    /// `adminUserEnabled`: the admin user may sign in.
    pub admin_user: bool,
    /// The registry's name (its admin user's user name).
    pub name: String,
}

impl Caller {
    /// Whether the caller may do `op` in `repository` of a registry, as ACR decides it: a
    /// registry access token grants exactly its scopes; otherwise roles do — the classic
    /// ones (AcrPull, AcrPush, Reader, Owner…) on a registry in `LegacyRegistryPermissions`
    /// mode, the Repository roles' data actions (with their conditions) on one in
    /// `AbacRepositoryPermissions` mode. Anonymous pull, where enabled, lets anyone read.
    pub fn can(&self, op: RepoOp, registry: &RegistryPolicy, repository: &str) -> bool {
        if registry.anonymous_pull && matches!(op, RepoOp::Pull | RepoOp::MetadataRead) {
            return true;
        }
        if let Some(access) = self.registry_access(registry.id) {
            return access.iter().any(|a| a.allows("repository", repository, op.scope_action()));
        }
        if let Some((id, grant)) = self.registry_grant.as_deref() {
            return *id == registry.id && grant.allows(op, repository);
        }
        if registry.abac {
            self.allows_data(op.data_action(), &registry.scope, Some(repository))
        } else {
            self.allows(
                op.classic_action(),
                &format!("{}/repositories/{repository}", registry.scope),
            )
        }
    }

    /// Whether the caller may list a registry's repositories (`registry:catalog:*`).
    pub fn can_list_catalog(&self, registry: &RegistryPolicy) -> bool {
        use crate::actions::*;
        if let Some(access) = self.registry_access(registry.id) {
            return access.iter().any(|a| a.allows("registry", "catalog", "*"));
        }
        if let Some((id, grant)) = self.registry_grant.as_deref() {
            return *id == registry.id && grant.catalog();
        }
        if registry.abac {
            self.allows_data(CATALOG_DATA_READ, &registry.scope, None)
        } else {
            self.allows(CATALOG_READ, &registry.scope) || self.allows(PULL, &registry.scope)
        }
    }

    /// Whether the caller may read every repository of a registry (a grant at the registry
    /// or above, without a condition on names).
    pub fn can_read_all(&self, registry: &RegistryPolicy) -> bool {
        if registry.anonymous_pull {
            return true;
        }
        if self.registry_access(registry.id).is_some() {
            return false;
        }
        if let Some((id, grant)) = self.registry_grant.as_deref() {
            return *id == registry.id && grant.reads_all();
        }
        if registry.abac {
            // A condition on names doesn't hold for "no repository in particular".
            self.allows_data(crate::actions::CONTENT_READ, &registry.scope, None)
        } else {
            self.allows(crate::actions::PULL, &registry.scope)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions;
    use crate::roles::find_built_in;

    fn caller(grants: Vec<(&str, &str, Option<&str>)>) -> Caller {
        let grants = grants
            .into_iter()
            .map(|(scope, role, cond)| Grant {
                scope: normalize_scope(scope),
                role: find_built_in(role).unwrap().clone(),
                condition: cond.map(|c| Condition::parse(c).unwrap()),
            })
            .collect();
        Caller::new(
            Subject::Principal {
                id: "p".into(),
                tenant: "t".into(),
                kind: PrincipalKind::User,
                name: "u".into(),
                generation: 0,
            },
            Arc::new(grants),
        )
    }

    const REG: &str =
        "/subscriptions/S/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/reg";

    #[test]
    fn scopes_cover_what_is_inside_them_only() {
        assert!(covers("", "/subscriptions/s"));
        assert!(covers("/subscriptions/s", "/subscriptions/s/resourcegroups/x"));
        assert!(!covers("/subscriptions/s", "/subscriptions/s2"));
        let c = caller(vec![(REG, "AcrPush", None)]);
        assert!(c.allows(actions::PUSH, REG));
        assert!(c.allows(actions::PUSH, &REG.to_uppercase()), "ARM ids ignore case");
        assert!(c.allows(actions::PUSH, &format!("{REG}/repositories/app")));
        assert!(!c.allows(actions::PUSH, &format!("{REG}2")));
        assert!(!c.allows(actions::IMPORT_IMAGE, REG), "AcrPush can't import");
        let denied = c.check(actions::IMPORT_IMAGE, REG).unwrap_err();
        assert!(
            matches!(denied, AuthError::Denied { message } if message.contains("importImage/action"))
        );
        assert_eq!(Caller::anonymous().check(actions::PULL, REG), Err(AuthError::Unauthenticated));
    }

    #[test]
    fn data_actions_follow_roles_and_conditions() {
        let cond = "((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})) OR (@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'samples/'))";
        let c = caller(vec![(REG, "Container Registry Repository Reader", Some(cond))]);
        assert!(c.allows_data(actions::CONTENT_READ, REG, Some("samples/a")));
        assert!(!c.allows_data(actions::CONTENT_READ, REG, Some("prod/a")));
        assert!(c.allows_data(actions::METADATA_READ, REG, Some("prod/a")), "not restricted");
        assert!(!c.allows_data(actions::CONTENT_WRITE, REG, Some("samples/a")));
        // A subscription-wide Owner has no data actions.
        let owner = caller(vec![("/subscriptions/s", "Owner", None)]);
        assert!(!owner.allows_data(actions::CONTENT_READ, REG, Some("x")));
        assert!(owner.allows(actions::PULL, REG));
    }
}
