//! `Microsoft.Authorization`: role definitions and role assignments as ARM shapes them, at
//! any scope (`/`, a subscription, a resource group, a registry), over the identity
//! provider's records.

use serde_json::{Value, json};
use wharf_auth::roles::{Permission, RoleDefinition};
use wharf_auth::{Caller, Identity, RoleBody, normalize_scope};
use wharf_storage::RoleAssignmentRecord;

use crate::ArmError;

const DEFINITIONS: &str = "Microsoft.Authorization/roleDefinitions";
const ASSIGNMENTS: &str = "Microsoft.Authorization/roleAssignments";

/// `/providers/Microsoft.Authorization/<kind>/<name>` under `scope` (`/` is the root).
fn under(scope: &str, kind: &str, name: &str) -> String {
    let scope = scope.trim_end_matches('/');
    format!("{scope}/providers/{kind}/{name}")
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// ARM's `$filter` clauses wharf understands: `roleName eq '…'`, `principalId eq '…'`,
/// `atScope()`, joined by `and`.
#[derive(Default)]
struct Filter {
    role_name: Option<String>,
    principal_id: Option<String>,
    at_scope: bool,
}

/// Split at ` and ` outside quotes (a role name may contain "and"), in one pass over the
/// bytes: the separator is ASCII, so every cut falls on a character boundary whatever the
/// text holds.
fn split_and(text: &str) -> Vec<&str> {
    const AND: &[u8] = b" and ";
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            quoted = !quoted;
        } else if !quoted
            && bytes[i..].len() >= AND.len()
            && bytes[i..i + AND.len()].eq_ignore_ascii_case(AND)
        {
            out.push(&text[start..i]);
            i += AND.len();
            start = i;
            continue;
        }
        i += 1;
    }
    out.push(&text[start..]);
    out
}

/// The longest `$filter` read (ARM's filters are a clause or two).
const MAX_FILTER: usize = 2048;

fn parse_filter(filter: Option<&str>) -> Result<Filter, ArmError> {
    let mut f = Filter::default();
    let Some(text) = filter.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(f) };
    if text.len() > MAX_FILTER {
        return Err(ArmError::bad_request(
            "InvalidFilterInQueryString",
            format!("The $filter is longer than {MAX_FILTER} bytes."),
        ));
    }
    for clause in split_and(text) {
        let clause = clause.trim();
        if clause.eq_ignore_ascii_case("atScope()") {
            f.at_scope = true;
            continue;
        }
        let quoted = |prefix: &str| -> Option<String> {
            let rest = clause
                .get(..prefix.len())?
                .eq_ignore_ascii_case(prefix)
                .then(|| &clause[prefix.len()..])?;
            let v = rest.trim().strip_prefix('\'')?.strip_suffix('\'')?;
            Some(v.to_owned())
        };
        if let Some(v) = quoted("roleName eq") {
            f.role_name = Some(v);
        } else if let Some(v) = quoted("principalId eq") {
            f.principal_id = Some(v);
        } else {
            return Err(ArmError::bad_request(
                "InvalidFilterInQueryString",
                format!(
                    "The filter '{}' is not supported.",
                    clause.chars().take(200).collect::<String>()
                ),
            ));
        }
    }
    Ok(f)
}

/// Where ARM names role definitions read at `scope`: under its subscription (as Azure does
/// whatever the scope below it), or at the root outside any subscription.
fn definitions_scope(scope: &str) -> &str {
    let Some(rest) = scope.strip_prefix("/subscriptions/") else { return "" };
    let end = rest.find('/').map_or(scope.len(), |i| "/subscriptions/".len() + i);
    &scope[..end]
}

/// A role definition's ARM JSON, as seen at `scope`.
pub fn role_definition_json(scope: &str, r: &RoleDefinition) -> Value {
    json!({
        "id": under(definitions_scope(scope), DEFINITIONS, &r.id),
        "name": r.id,
        "type": DEFINITIONS,
        "properties": {
            "roleName": r.name,
            "type": if r.built_in { "BuiltInRole" } else { "CustomRole" },
            "description": r.description,
            "assignableScopes": r.assignable_scopes,
            "permissions": r.permissions,
        }
    })
}

/// Every role definition visible at `scope` (built in, and custom ones assignable there).
pub async fn list_role_definitions(
    identity: &Identity,
    scope: &str,
    filter: Option<&str>,
) -> Result<Value, ArmError> {
    let f = parse_filter(filter)?;
    let value: Vec<Value> = identity
        .role_definitions()
        .await?
        .iter()
        .filter(|r| Identity::role_visible_at(r, scope))
        .filter(|r| f.role_name.as_ref().is_none_or(|n| r.name.eq_ignore_ascii_case(n)))
        .map(|r| role_definition_json(scope, r))
        .collect();
    Ok(json!({ "value": value }))
}

fn no_definition(id: &str) -> ArmError {
    ArmError::not_found(
        "RoleDefinitionDoesNotExist",
        format!("The specified role definition with ID '{id}' does not exist."),
    )
}

pub async fn get_role_definition(
    identity: &Identity,
    scope: &str,
    id: &str,
) -> Result<Value, ArmError> {
    let r = identity
        .role_definition(id)
        .await?
        .filter(|r| Identity::role_visible_at(r, scope))
        .ok_or_else(|| no_definition(id))?;
    Ok(role_definition_json(scope, &r))
}

/// Create or update a custom role (`PUT …/roleDefinitions/<guid>`) for `caller`; `true`
/// if created.
pub async fn put_role_definition(
    identity: &Identity,
    caller: &Caller,
    scope: &str,
    id: &str,
    body: &Value,
) -> Result<(bool, Value), ArmError> {
    if !is_guid(id) {
        return Err(ArmError::bad_request(
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{id}' is not valid: it must be a GUID."),
        ));
    }
    let props = body.get("properties").filter(|p| p.is_object()).ok_or_else(|| {
        ArmError::invalid_content("the role definition needs a 'properties' object")
    })?;
    let name = props["roleName"]
        .as_str()
        .filter(|n| !n.trim().is_empty() && n.len() <= 256)
        .ok_or_else(|| ArmError::invalid_content("'properties.roleName' is required"))?;
    let permissions: Vec<Permission> = serde_json::from_value(props["permissions"].clone())
        .map_err(|e| ArmError::invalid_content(format!("'properties.permissions': {e}")))?;
    let mut assignable: Vec<String> = match props.get("assignableScopes") {
        None | Some(Value::Null) => vec![scope.to_owned()],
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            ArmError::invalid_content(format!("'properties.assignableScopes': {e}"))
        })?,
    };
    assignable.retain(|s| !s.trim().is_empty());
    if assignable.is_empty() {
        assignable.push(scope.to_owned());
    }
    let body = RoleBody {
        description: props["description"].as_str().unwrap_or_default().to_owned(),
        permissions,
        assignable_scopes: assignable,
    };
    let created = identity.put_custom_role(caller, id, name, &body).await?;
    let r = identity.role_definition(id).await?.ok_or_else(|| no_definition(id))?;
    Ok((created, role_definition_json(scope, &r)))
}

/// Delete a custom role for `caller`; its JSON if it existed (and was visible at `scope`).
pub async fn delete_role_definition(
    identity: &Identity,
    caller: &Caller,
    scope: &str,
    id: &str,
) -> Result<Option<Value>, ArmError> {
    let visible =
        identity.role_definition(id).await?.filter(|r| Identity::role_visible_at(r, scope));
    let Some(r) = visible else { return Ok(None) };
    identity.delete_custom_role(caller, &r.id).await?;
    Ok(Some(role_definition_json(scope, &r)))
}

/// A role assignment's ARM JSON.
pub fn role_assignment_json(a: &RoleAssignmentRecord) -> Value {
    let scope = if a.scope.is_empty() { "/" } else { a.scope.as_str() };
    let definition_scope = if scope == "/" { "" } else { scope };
    json!({
        "id": under(definition_scope, ASSIGNMENTS, &a.id),
        "name": a.id,
        "type": ASSIGNMENTS,
        "properties": {
            "roleDefinitionId": under(definitions_scope(scope), DEFINITIONS, &a.role_definition_id),
            "principalId": a.principal_id,
            "principalType": a.principal_type,
            "scope": scope,
            "condition": a.condition,
            "conditionVersion": a.condition.as_ref().map(|_| "2.0"),
            "description": a.description,
            "createdOn": crate::service::timestamp(a.created_at),
        }
    })
}

/// Role assignments that apply at `scope` (there and above) or, without `atScope()`,
/// also inside it.
pub async fn list_role_assignments(
    identity: &Identity,
    scope: &str,
    filter: Option<&str>,
) -> Result<Value, ArmError> {
    let f = parse_filter(filter)?;
    let target = normalize_scope(scope);
    let value: Vec<Value> = identity
        .role_assignments()
        .await?
        .iter()
        .filter(|a| {
            let s = normalize_scope(&a.scope);
            wharf_auth::covers(&s, &target) || (!f.at_scope && wharf_auth::covers(&target, &s))
        })
        .filter(|a| f.principal_id.as_ref().is_none_or(|p| a.principal_id.eq_ignore_ascii_case(p)))
        .map(role_assignment_json)
        .collect();
    Ok(json!({ "value": value }))
}

fn no_assignment(name: &str) -> ArmError {
    ArmError::not_found(
        "RoleAssignmentNotFound",
        format!("The role assignment '{name}' is not found."),
    )
}

/// The assignment `name` if it exists at exactly `scope`.
async fn assignment_at(
    identity: &Identity,
    scope: &str,
    name: &str,
) -> Result<Option<RoleAssignmentRecord>, ArmError> {
    Ok(identity
        .role_assignment(name)
        .await?
        .filter(|a| normalize_scope(&a.scope) == normalize_scope(scope)))
}

pub async fn get_role_assignment(
    identity: &Identity,
    scope: &str,
    name: &str,
) -> Result<Value, ArmError> {
    let a = assignment_at(identity, scope, name).await?.ok_or_else(|| no_assignment(name))?;
    Ok(role_assignment_json(&a))
}

/// `PUT {scope}/providers/Microsoft.Authorization/roleAssignments/<guid>`; `true` if
/// created.
pub async fn put_role_assignment(
    identity: &Identity,
    caller: &Caller,
    scope: &str,
    name: &str,
    body: &Value,
) -> Result<(bool, Value), ArmError> {
    let record = role_assignment_record(identity, scope, name, body).await?;
    if identity.create_role_assignment(caller, &record).await? {
        return Ok((true, role_assignment_json(&record)));
    }
    // Not created: the same assignment again is fine; anything else is a conflict.
    if let Some(existing) = identity.role_assignment(name).await? {
        let same = normalize_scope(&existing.scope) == normalize_scope(&record.scope)
            && existing.role_definition_id.eq_ignore_ascii_case(&record.role_definition_id)
            && existing.principal_id.eq_ignore_ascii_case(&record.principal_id)
            && existing.condition == record.condition;
        if same {
            return Ok((false, role_assignment_json(&existing)));
        }
        return Err(ArmError::conflict(
            "RoleAssignmentUpdateNotPermitted",
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
        ));
    }
    Err(ArmError::conflict("RoleAssignmentExists", "The role assignment already exists."))
}

/// The assignment a PUT body describes, checked: a GUID name, a role, a principal of the
/// directory (of the type given, if one is), a supported condition version.
async fn role_assignment_record(
    identity: &Identity,
    scope: &str,
    name: &str,
    body: &Value,
) -> Result<RoleAssignmentRecord, ArmError> {
    if !is_guid(name) {
        return Err(ArmError::bad_request(
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        ));
    }
    let props = body.get("properties").filter(|p| p.is_object()).ok_or_else(|| {
        ArmError::invalid_content("the role assignment needs a 'properties' object")
    })?;
    let text = |key: &str| -> Result<&str, ArmError> {
        props[key]
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ArmError::invalid_content(format!("'properties.{key}' is required")))
    };
    let role_id = text("roleDefinitionId")?;
    let role_id = role_id.rsplit('/').next().unwrap_or(role_id);
    if identity.role_definition(role_id).await?.is_none() {
        // As Azure answers it (400, where a GET of the definition is a 404).
        let e = no_definition(role_id);
        return Err(ArmError::bad_request(&e.code, e.message));
    }
    let principal = identity.principal(text("principalId")?).await.map_err(|_| {
        ArmError::bad_request(
            "PrincipalNotFound",
            format!(
                "Principal {} does not exist in the directory {}.",
                props["principalId"].as_str().unwrap_or_default(),
                identity.default_tenant()
            ),
        )
    })?;
    if let Some(kind) = props["principalType"].as_str()
        && !kind.eq_ignore_ascii_case(&principal.kind)
    {
        return Err(ArmError::bad_request(
            "PrincipalTypeNotSupported",
            format!("The principal {} is a {}, not a {kind}.", principal.id, principal.kind),
        ));
    }
    let condition = props["condition"].as_str().filter(|c| !c.trim().is_empty());
    if let Some(v) = props["conditionVersion"].as_str()
        && v != "2.0"
    {
        return Err(ArmError::bad_request(
            "InvalidConditionVersion",
            "Only condition version 2.0 is supported.",
        ));
    }
    Ok(RoleAssignmentRecord {
        id: name.to_ascii_lowercase(),
        scope: if normalize_scope(scope).is_empty() { "/".into() } else { scope.to_owned() },
        role_definition_id: role_id.to_ascii_lowercase(),
        principal_id: principal.id.clone(),
        principal_type: principal.kind.clone(),
        condition: condition.map(str::to_owned),
        description: props["description"].as_str().map(str::to_owned),
        created_at: wharf_storage::now_millis(),
    })
}

/// Delete an assignment at `scope`; its JSON if it existed.
pub async fn delete_role_assignment(
    identity: &Identity,
    caller: &Caller,
    scope: &str,
    name: &str,
) -> Result<Option<Value>, ArmError> {
    if assignment_at(identity, scope, name).await?.is_none() {
        return Ok(None);
    }
    Ok(identity.delete_role_assignment(caller, name).await?.map(|a| role_assignment_json(&a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let f = parse_filter(Some("roleName eq 'AcrPull'")).unwrap();
        assert_eq!(f.role_name.as_deref(), Some("AcrPull"));
        let f = parse_filter(Some("atScope() and principalId eq 'abc'")).unwrap();
        assert!(f.at_scope);
        assert_eq!(f.principal_id.as_deref(), Some("abc"));
        assert!(parse_filter(Some("name eq 'x'")).is_err());
        let f = parse_filter(Some("roleName eq 'Data Importer and Data Reader'")).unwrap();
        assert_eq!(f.role_name.as_deref(), Some("Data Importer and Data Reader"));
        assert!(parse_filter(None).unwrap().role_name.is_none());
        // Any text is read without a panic (a non-ASCII byte after a quote once did), and
        // a long one is refused.
        for odd in ["é and x", "roleName eq 'é' and principalId eq 'ü'", "ä", "'", " and "] {
            let _ = parse_filter(Some(odd));
        }
        let f = parse_filter(Some("roleName eq 'Ünïcode and más'")).unwrap();
        assert_eq!(f.role_name.as_deref(), Some("Ünïcode and más"));
        assert!(parse_filter(Some(&"x".repeat(MAX_FILTER + 1))).is_err());
    }
}

#[cfg(test)]
mod definition_ids {
    use super::definitions_scope;

    #[test]
    fn role_definitions_are_named_under_their_subscription() {
        let sub = "/subscriptions/00000000-0000-0000-0000-000000000000";
        assert_eq!(definitions_scope(sub), sub);
        assert_eq!(definitions_scope(&format!("{sub}/resourceGroups/rg/providers/x/y")), sub);
        assert_eq!(definitions_scope("/"), "");
        assert_eq!(definitions_scope(""), "");
    }
}
