//! `wharf role definition …` and `wharf role assignment …`, with `az role`'s flags.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{
    GlobalArgs, Output, RoleAssignmentCommand, RoleAssignmentCreateArgs, RoleCommand,
    RoleDefinitionCommand,
};
use crate::client::Client;
use crate::output::print;

const AUTHZ: &str = "providers/Microsoft.Authorization";
const DEFINITION_COLUMNS: &[(&str, &str)] =
    &[("NAME", "/properties/roleName"), ("TYPE", "/properties/type"), ("ID", "/name")];
const ASSIGNMENT_COLUMNS: &[(&str, &str)] = &[
    ("PRINCIPAL", "/properties/principalId"),
    ("ROLE", "/properties/roleDefinitionName"),
    ("SCOPE", "/properties/scope"),
];

/// `{scope}/providers/Microsoft.Authorization/{kind}`; `/` is the root.
fn under(scope: &str, kind: &str) -> String {
    format!("{}/{AUTHZ}/{kind}", scope.trim_end_matches('/'))
}

fn guid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A role definition by name or id, as seen at `scope`.
async fn find_role(client: &Client, scope: &str, role: &str) -> anyhow::Result<Value> {
    let id = role.rsplit('/').next().unwrap_or(role);
    if guid_like(id) {
        let path = format!("{}/{id}", under(scope, "roleDefinitions"));
        return Ok(client.arm(Method::GET, &path, None).await?.body);
    }
    let filter = url::form_urlencoded::byte_serialize(format!("roleName eq '{role}'").as_bytes())
        .collect::<String>();
    let path = format!("{}?$filter={filter}", under(scope, "roleDefinitions"));
    let list = client.arm(Method::GET, &path, None).await?.body;
    list["value"]
        .as_array()
        .and_then(|v| v.first())
        .cloned()
        .with_context(|| format!("Role '{role}' doesn't exist."))
}

/// The object id of a user or service principal named by name, app id or object id.
async fn principal_id(client: &Client, assignee: &str) -> anyhow::Result<String> {
    let enc: String = url::form_urlencoded::byte_serialize(assignee.as_bytes()).collect();
    for kind in ["users", "servicePrincipals"] {
        let a = client.send(Method::GET, &format!("/v1.0/{kind}/{enc}"), None, None).await?;
        if a.status.is_success() {
            return a.body["id"].as_str().map(str::to_owned).context("the answer has no id");
        }
    }
    bail!("Cannot find user or service principal in graph database for '{assignee}'.")
}

/// Assign `role` to the principal with object id `principal` at `scope`.
pub(crate) async fn assign(
    client: &Client,
    principal: &str,
    role: &str,
    scope: &str,
    condition: Option<&str>,
    description: Option<&str>,
) -> anyhow::Result<Value> {
    let definition = find_role(client, scope, role).await?;
    let mut props = json!({
        "roleDefinitionId": definition["id"],
        "principalId": principal,
    });
    if let Some(c) = condition {
        props["condition"] = json!(c);
        props["conditionVersion"] = json!("2.0");
    }
    if let Some(d) = description {
        props["description"] = json!(d);
    }
    let path = format!("{}/{}", under(scope, "roleAssignments"), uuid::Uuid::new_v4());
    let mut v = client.arm(Method::PUT, &path, Some(&json!({ "properties": props }))).await?.body;
    v["properties"]["roleDefinitionName"] = definition["properties"]["roleName"].clone();
    Ok(v)
}

/// Assignments at `scope` (and below), with their role names filled in.
async fn assignments(
    client: &Client,
    scope: &str,
    principal: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let mut path = under(scope, "roleAssignments");
    if let Some(p) = principal {
        let filter: String =
            url::form_urlencoded::byte_serialize(format!("principalId eq '{p}'").as_bytes())
                .collect();
        path.push_str(&format!("?$filter={filter}"));
    }
    let list = client.arm(Method::GET, &path, None).await?.body;
    let defs = client.arm(Method::GET, &under(scope, "roleDefinitions"), None).await?.body;
    let name_of = |id: &str| -> Value {
        let guid = id.rsplit('/').next().unwrap_or(id);
        defs["value"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(guid)))
            .map(|d| d["properties"]["roleName"].clone())
            .unwrap_or(Value::Null)
    };
    let mut out: Vec<Value> = list["value"].as_array().cloned().unwrap_or_default();
    for a in &mut out {
        let id = a["properties"]["roleDefinitionId"].as_str().unwrap_or_default().to_owned();
        a["properties"]["roleDefinitionName"] = name_of(&id);
    }
    Ok(out)
}

pub(crate) async fn run(global: &GlobalArgs, cmd: RoleCommand) -> anyhow::Result<()> {
    let client = Client::new(&global.server).await?;
    let out = global.output;
    match cmd {
        RoleCommand::Definition(d) => match d {
            RoleDefinitionCommand::List { name, custom_role_only, scope } => {
                definition_list(&client, out, name, custom_role_only, &scope).await
            }
            RoleDefinitionCommand::Create { role_definition } => {
                definition_create(&client, out, role_definition).await
            }
            RoleDefinitionCommand::Delete { name, scope } => {
                definition_delete(&client, &name, &scope).await
            }
        },
        RoleCommand::Assignment(a) => match a {
            RoleAssignmentCommand::Create(args) => assignment_create(&client, out, args).await,
            RoleAssignmentCommand::List { assignee, scope, role, all } => {
                assignment_list(&client, out, assignee, scope, role, all).await
            }
            RoleAssignmentCommand::Delete { ids, assignee, role, scope } => {
                assignment_delete(&client, ids, assignee, role, scope).await
            }
        },
    }
}

async fn definition_list(
    client: &Client,
    out: Output,
    name: Option<String>,
    custom_role_only: bool,
    scope: &str,
) -> anyhow::Result<()> {
    let list = client.arm(Method::GET, &under(scope, "roleDefinitions"), None).await?.body;
    let items: Vec<Value> = list["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            name.as_ref().is_none_or(|n| {
                r["properties"]["roleName"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(n))
            })
        })
        .filter(|r| !custom_role_only || r["properties"]["type"] == "CustomRole")
        .cloned()
        .collect();
    print(out, &Value::Array(items), DEFINITION_COLUMNS);
    Ok(())
}

/// `--role-definition`: az's role JSON (inline or `@file`), PUT as a custom role at its
/// first assignable scope.
async fn definition_create(
    client: &Client,
    out: Output,
    role_definition: String,
) -> anyhow::Result<()> {
    let text = match role_definition.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
        }
        None => role_definition,
    };
    let d: Value = serde_json::from_str(&text).context("--role-definition is not JSON")?;
    let get = |k: &str| {
        d.get(k).or_else(|| d.get(k.to_ascii_lowercase())).cloned().unwrap_or(Value::Null)
    };
    let name = get("Name");
    let name =
        name.as_str().or(d["roleName"].as_str()).context("the role definition needs a Name")?;
    let list = |k: &str| match get(k) {
        Value::Null => json!([]),
        v => v,
    };
    let scopes = list("AssignableScopes");
    let scope = scopes.get(0).and_then(Value::as_str).unwrap_or("/").to_owned();
    let body = json!({"properties": {
        "roleName": name,
        "description": get("Description").as_str().unwrap_or_default(),
        "type": "CustomRole",
        "assignableScopes": scopes,
        "permissions": [{
            "actions": list("Actions"),
            "notActions": list("NotActions"),
            "dataActions": list("DataActions"),
            "notDataActions": list("NotDataActions"),
        }],
    }});
    let path = format!("{}/{}", under(&scope, "roleDefinitions"), uuid::Uuid::new_v4());
    let v = client.arm(Method::PUT, &path, Some(&body)).await?.body;
    print(out, &v, DEFINITION_COLUMNS);
    Ok(())
}

async fn definition_delete(client: &Client, name: &str, scope: &str) -> anyhow::Result<()> {
    let r = find_role(client, scope, name).await?;
    if r["properties"]["type"] != "CustomRole" {
        bail!("'{name}' is a built-in role: it can't be deleted");
    }
    let id = r["name"].as_str().context("the role has no id")?;
    client.arm(Method::DELETE, &format!("{}/{id}", under(scope, "roleDefinitions")), None).await?;
    Ok(())
}

async fn assignment_create(
    client: &Client,
    out: Output,
    args: RoleAssignmentCreateArgs,
) -> anyhow::Result<()> {
    if args.condition_version.as_deref().is_some_and(|v| v != "2.0") {
        bail!("--condition-version must be 2.0");
    }
    let principal = principal_id(client, &args.assignee).await?;
    let v = assign(
        client,
        &principal,
        &args.role,
        &args.scope,
        args.condition.as_deref(),
        args.description.as_deref(),
    )
    .await?;
    print(out, &v, ASSIGNMENT_COLUMNS);
    Ok(())
}

async fn assignment_list(
    client: &Client,
    out: Output,
    assignee: Option<String>,
    scope: Option<String>,
    role: Option<String>,
    all: bool,
) -> anyhow::Result<()> {
    let scope = if all { "/".to_owned() } else { scope.unwrap_or_else(|| "/".into()) };
    let principal = match &assignee {
        Some(a) => Some(principal_id(client, a).await?),
        None => None,
    };
    let mut items = assignments(client, &scope, principal.as_deref()).await?;
    if let Some(role) = &role {
        items.retain(|a| {
            a["properties"]["roleDefinitionName"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(role))
                || a["properties"]["roleDefinitionId"]
                    .as_str()
                    .is_some_and(|i| i.to_ascii_lowercase().ends_with(&role.to_ascii_lowercase()))
        });
    }
    print(out, &Value::Array(items), ASSIGNMENT_COLUMNS);
    Ok(())
}

/// By `--ids`, or every assignment matching `--assignee`, `--role` and `--scope`.
async fn assignment_delete(
    client: &Client,
    ids: Vec<String>,
    assignee: Option<String>,
    role: Option<String>,
    scope: Option<String>,
) -> anyhow::Result<()> {
    if !ids.is_empty() {
        for id in &ids {
            client.arm(Method::DELETE, id, None).await?;
        }
        return Ok(());
    }
    if assignee.is_none() && role.is_none() && scope.is_none() {
        bail!("name what to delete: --ids, or --assignee/--role/--scope");
    }
    let at = scope.clone().unwrap_or_else(|| "/".into());
    let principal = match &assignee {
        Some(a) => Some(principal_id(client, a).await?),
        None => None,
    };
    let items = assignments(client, &at, principal.as_deref()).await?;
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    let matching: Vec<&Value> = items
        .iter()
        .filter(|a| {
            scope
                .as_ref()
                .is_none_or(|s| norm(a["properties"]["scope"].as_str().unwrap_or("")) == norm(s))
        })
        .filter(|a| {
            role.as_ref().is_none_or(|r| {
                a["properties"]["roleDefinitionName"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(r))
            })
        })
        .collect();
    if matching.is_empty() {
        bail!("No matched assignments were found to delete");
    }
    for a in matching {
        let id = a["id"].as_str().context("an assignment has no id")?;
        client.arm(Method::DELETE, id, None).await?;
    }
    Ok(())
}
