//! Role-based access control: role definitions (built in and custom) and role
//! assignments, and the rules on who may change them.

use wharf_storage::{PrincipalRecord, RoleAssignmentRecord, RoleDefinitionRecord};

use crate::caller::{Caller, covers, normalize_scope};
use crate::common::now_ms;
use crate::conditions::Condition;
use crate::roles::{RoleDefinition, find_built_in, validate_permissions};
use crate::service::{Identity, RoleBody};
use crate::{AuthError, actions};

/// Held from a keeper check until the change it allowed is written (in this process, and on
/// a cluster in every node's), so that keeper checks and their changes go one at a time.
pub(crate) struct KeeperHold<'a> {
    _here: tokio::sync::MutexGuard<'a, ()>,
    _cluster: Option<wharf_storage::LockGuard>,
}

impl Identity {
    // --- roles ----------------------------------------------------------------------

    /// A role definition, built in or custom, by id.
    pub async fn role_definition(&self, id: &str) -> Result<Option<RoleDefinition>, AuthError> {
        let id = id.rsplit('/').next().unwrap_or(id);
        if let Some(r) = find_built_in(id).filter(|r| r.id.eq_ignore_ascii_case(id)) {
            return Ok(Some(r.clone()));
        }
        Ok(self.store.role_definition(id).await?.map(|r| custom(&r)))
    }

    /// Every role definition: built in, then custom.
    pub async fn role_definitions(&self) -> Result<Vec<RoleDefinition>, AuthError> {
        let mut out: Vec<RoleDefinition> = crate::roles::built_in().to_vec();
        out.extend(self.store.role_definitions().await?.iter().map(custom));
        Ok(out)
    }

    /// A role definition by id or name.
    pub async fn find_role(&self, id_or_name: &str) -> Result<Option<RoleDefinition>, AuthError> {
        if let Some(r) = self.role_definition(id_or_name).await? {
            return Ok(Some(r));
        }
        Ok(self
            .role_definitions()
            .await?
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(id_or_name)))
    }

    /// Create or update a custom role; `true` if created. As ARM: a role definition belongs
    /// to its `assignableScopes`, so the caller needs `roleDefinitions/write` on every one
    /// of them — those it lists now and, for an update, those it listed before (a UAA of
    /// one resource group can't rewrite, or widen, a role defined for a subscription).
    pub async fn put_custom_role(
        &self,
        caller: &Caller,
        id: &str,
        name: &str,
        body: &RoleBody,
    ) -> Result<bool, AuthError> {
        if find_built_in(id).is_some() || find_built_in(name).is_some() {
            return Err(AuthError::Conflict(format!("'{name}' is a built-in role.")));
        }
        validate_permissions(&body.permissions).map_err(|e| {
            AuthError::BadRequest(format!("The role definition's permissions are invalid: {e}."))
        })?;
        validate_assignable_scopes(&body.assignable_scopes)?;
        let before = self.store.role_definition(id).await?.map(|r| custom(&r));
        let scopes =
            body.assignable_scopes.iter().chain(before.iter().flat_map(|r| &r.assignable_scopes));
        for scope in scopes {
            caller.check(actions::ROLE_DEFINITION_WRITE, scope)?;
        }
        let role = RoleDefinition {
            id: id.to_owned(),
            name: name.to_owned(),
            description: body.description.clone(),
            built_in: false,
            permissions: body.permissions.clone(),
            assignable_scopes: body.assignable_scopes.clone(),
        };
        check_directory_rights(caller, &role)?;
        // Nor are directory rights taken out of a role by someone who doesn't hold them.
        if let Some(before) = &before {
            check_directory_rights(caller, before)?;
        }
        let record = RoleDefinitionRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            body: serde_json::to_string(body).map_err(|e| AuthError::Internal(e.to_string()))?,
            created_at: now_ms(),
        };
        let created = self.store.put_role_definition(&record).await.map_err(|e| match e {
            wharf_storage::StorageError::Database(ref db) if db.to_string().contains("UNIQUE") => {
                AuthError::Conflict(format!("A role named '{name}' already exists."))
            }
            other => other.into(),
        })?;
        self.forget_grants(None);
        Ok(created)
    }

    /// Delete a custom role no assignment uses; the caller needs `roleDefinitions/delete`
    /// on every scope it is assignable at.
    pub async fn delete_custom_role(&self, caller: &Caller, id: &str) -> Result<bool, AuthError> {
        if find_built_in(id).is_some() {
            return Err(AuthError::BadRequest("Built-in roles can't be deleted.".into()));
        }
        let Some(role) = self.store.role_definition(id).await?.map(|r| custom(&r)) else {
            return Ok(false);
        };
        for scope in &role.assignable_scopes {
            caller.check(actions::ROLE_DEFINITION_DELETE, scope)?;
        }
        let used = self
            .store
            .role_assignments()
            .await?
            .iter()
            .any(|a| a.role_definition_id.eq_ignore_ascii_case(id));
        if used {
            return Err(AuthError::Conflict(
                "The role definition is used by role assignments; delete them first.".into(),
            ));
        }
        let deleted = self.store.delete_role_definition(id).await?;
        self.forget_grants(None);
        Ok(deleted)
    }

    /// Whether a custom role may be seen at `scope`: built-in roles everywhere, custom ones
    /// where they are assignable (at, above or below the scope), as ARM lists them.
    pub fn role_visible_at(role: &RoleDefinition, scope: &str) -> bool {
        let target = normalize_scope(scope);
        role.built_in
            || role.assignable_scopes.iter().any(|s| {
                let s = normalize_scope(s);
                covers(&s, &target) || covers(&target, &s)
            })
    }

    /// Create a role assignment for `caller` (who passed `roleAssignments/write` on its
    /// scope): its condition and role checked, and a role that grants directory actions
    /// given only by someone who holds them.
    pub async fn create_role_assignment(
        &self,
        caller: &Caller,
        a: &RoleAssignmentRecord,
    ) -> Result<bool, AuthError> {
        let role = self.assignable_role(a).await?;
        check_directory_rights(caller, &role)?;
        self.store_role_assignment(a).await
    }

    /// The role of a new assignment, checked: it exists, may be assigned at the scope, and
    /// the condition reads.
    async fn assignable_role(&self, a: &RoleAssignmentRecord) -> Result<RoleDefinition, AuthError> {
        if let Some(c) = &a.condition {
            Condition::parse(c).map_err(|e| {
                AuthError::BadRequest(format!("The role assignment condition is invalid: {e}"))
            })?;
        }
        let role = self.role_definition(&a.role_definition_id).await?.ok_or_else(|| {
            AuthError::BadRequest(format!(
                "The role definition '{}' does not exist.",
                a.role_definition_id
            ))
        })?;
        let target = normalize_scope(&a.scope);
        let assignable =
            role.assignable_scopes.iter().any(|s| covers(&normalize_scope(s), &target));
        if !assignable {
            return Err(AuthError::BadRequest(format!(
                "The role '{}' can't be assigned at scope '{}'.",
                role.name, a.scope
            )));
        }
        Ok(role)
    }

    /// Store a checked assignment (also what the first start uses for the admin).
    pub(crate) async fn store_role_assignment(
        &self,
        a: &RoleAssignmentRecord,
    ) -> Result<bool, AuthError> {
        self.assignable_role(a).await?;
        self.principal(&a.principal_id).await.map_err(|_| {
            AuthError::BadRequest(format!(
                "Principal {} does not exist in the directory.",
                a.principal_id
            ))
        })?;
        let created = self.store.create_role_assignment(a).await?;
        self.forget_grants(Some(&a.principal_id));
        Ok(created)
    }

    pub async fn role_assignment(
        &self,
        id: &str,
    ) -> Result<Option<RoleAssignmentRecord>, AuthError> {
        Ok(self.store.role_assignment(id).await?)
    }

    pub async fn role_assignments(&self) -> Result<Vec<RoleAssignmentRecord>, AuthError> {
        Ok(self.store.role_assignments().await?)
    }

    /// Delete an assignment (the caller passed `roleAssignments/delete` on its scope; a
    /// directory role is taken away only by someone who holds its rights). The last Owner
    /// at `/` stays.
    pub async fn delete_role_assignment(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Option<RoleAssignmentRecord>, AuthError> {
        let Some(a) = self.store.role_assignment(id).await? else { return Ok(None) };
        if let Some(role) = self.role_definition(&a.role_definition_id).await? {
            check_directory_rights(caller, &role)?;
        }
        let mut hold = None;
        if normalize_scope(&a.scope).is_empty() {
            let role = a.role_definition_id.as_str();
            hold = Some(self.keep_a_keeper(&a.principal_id, Some(role), "lose it").await?);
        }
        self.store.delete_role_assignment(id).await?;
        drop(hold);
        self.forget_grants(Some(&a.principal_id));
        Ok(Some(a))
    }

    /// Refuse to leave no enabled principal holding one of the [`KEEPERS`] at `/` (Owner:
    /// someone must manage access; Directory Administrator: someone must manage the
    /// directory), when `principal` is about to lose `role` there (any keeper it holds
    /// with `None`: it is disabled or deleted).
    /// The hold it returns must be kept until the change it allowed is written: two
    /// changes checked at once could otherwise each leave the other as the last keeper.
    pub(crate) async fn keep_a_keeper(
        &self,
        principal: &str,
        role: Option<&str>,
        what: &str,
    ) -> Result<KeeperHold<'_>, AuthError> {
        let hold = KeeperHold {
            _here: self.keepers.lock().await,
            _cluster: match &self.failures.shared {
                Some(cluster) => Some(cluster.lock("wharf:keepers").await?),
                None => None,
            },
        };
        let at_root: Vec<RoleAssignmentRecord> = self
            .store
            .role_assignments()
            .await?
            .into_iter()
            .filter(|a| normalize_scope(&a.scope).is_empty() && a.condition.is_none())
            .collect();
        for (keeper, name) in KEEPERS {
            if role.is_some_and(|r| !r.eq_ignore_ascii_case(keeper)) {
                continue;
            }
            let holds = |a: &&RoleAssignmentRecord, p: &str| {
                a.role_definition_id.eq_ignore_ascii_case(keeper)
                    && a.principal_id.eq_ignore_ascii_case(p)
            };
            if !at_root.iter().any(|a| holds(&a, principal)) {
                continue;
            }
            let mut others: Vec<&str> = at_root
                .iter()
                .filter(|a| {
                    a.role_definition_id.eq_ignore_ascii_case(keeper)
                        && !a.principal_id.eq_ignore_ascii_case(principal)
                })
                .map(|a| a.principal_id.as_str())
                .collect();
            others.dedup();
            let mut enabled = false;
            for other in others {
                if self.store.principal(other).await?.is_some_and(|p| p.enabled) {
                    enabled = true;
                    break;
                }
            }
            if !enabled {
                return Err(AuthError::Conflict(format!(
                    "This is the last {name} at '/' (no other enabled principal holds it), which can't {what}: assign {name} at '/' to someone else first."
                )));
            }
        }
        Ok(hold)
    }

    /// Whether `caller` may set a secret on, disable or delete `target`: it needs the
    /// directory's write action, and must already hold every right `target` holds — for
    /// each of `target`'s assignments, either the same permissions at that scope (or above)
    /// or the right to assign that role there itself. Otherwise taking over a principal
    /// would be a way to more power (a Contributor at `/` signing in as an Owner).
    pub async fn check_may_manage(
        &self,
        caller: &Caller,
        target: &PrincipalRecord,
    ) -> Result<(), AuthError> {
        caller.check(actions::DIRECTORY_WRITE, "/")?;
        if caller.principal_id().is_some_and(|id| id.eq_ignore_ascii_case(&target.id)) {
            return Ok(());
        }
        for a in self.store.role_assignments_of(&target.id).await? {
            let Some(role) = self.role_definition(&a.role_definition_id).await? else {
                continue;
            };
            let condition = a.condition.as_deref().and_then(|c| Condition::parse(c).ok());
            let could_assign =
                !grants_directory(&role) && caller.allows(actions::ROLE_ASSIGNMENT_WRITE, &a.scope);
            if !could_assign && !caller.holds(&role, &a.scope, condition.as_ref()) {
                let scope = if normalize_scope(&a.scope).is_empty() { "/" } else { &a.scope };
                return Err(AuthError::Denied {
                    message: format!(
                        "The principal '{}' holds the role '{}' at '{scope}', which the caller doesn't: only a principal holding at least the same rights may change its secrets, disable it or delete it.",
                        target.id, role.name
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Roles someone enabled must always hold at `/`, unconditionally.
const KEEPERS: [(&str, &str); 2] = [
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
    (crate::roles::DIRECTORY_ADMINISTRATOR, "Directory Administrator"),
];

/// Whether a role grants any of the directory's actions.
fn grants_directory(role: &RoleDefinition) -> bool {
    [actions::DIRECTORY_READ, actions::DIRECTORY_WRITE].iter().any(|a| role.allows(a, false))
}

/// A role that grants directory actions is given, taken away or defined only by a caller
/// who holds those actions itself (Entra's rule: the directory is administered by its own
/// roles, and no one hands out rights they don't have).
fn check_directory_rights(caller: &Caller, role: &RoleDefinition) -> Result<(), AuthError> {
    for action in [actions::DIRECTORY_READ, actions::DIRECTORY_WRITE] {
        if role.allows(action, false) {
            caller.check(action, "/")?;
        }
    }
    Ok(())
}

/// A custom role's assignable scopes: 1 to 50 resource ids wharf knows (`/`, a
/// subscription, a resource group, a registry).
fn validate_assignable_scopes(scopes: &[String]) -> Result<(), AuthError> {
    if scopes.is_empty() || scopes.len() > 50 {
        return Err(AuthError::BadRequest(
            "A role definition needs 1 to 50 assignableScopes.".into(),
        ));
    }
    for s in scopes {
        if !crate::caller::is_resource_scope(s) {
            return Err(AuthError::BadRequest(format!(
                "The assignable scope '{}' is not '/', a subscription, a resource group or a registry.",
                s.chars().take(200).collect::<String>()
            )));
        }
    }
    Ok(())
}

fn custom(r: &RoleDefinitionRecord) -> RoleDefinition {
    let body: RoleBody = serde_json::from_str(&r.body).unwrap_or_default();
    RoleDefinition {
        id: r.id.clone(),
        name: r.name.clone(),
        description: body.description,
        built_in: false,
        permissions: body.permissions,
        assignable_scopes: body.assignable_scopes,
    }
}
