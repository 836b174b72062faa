//! A registry's own credentials as ARM shapes them: the admin user (`listCredentials`,
//! `regenerateCredential`), repository-scoped tokens (`…/tokens/{name}`,
//! `generateCredentials`) and scope maps (`…/scopeMaps/{name}`), over the identity
//! provider's records.

use serde_json::{Value, json};
use wharf_auth::Identity;
use wharf_auth::registry_credentials::{ScopeMapView, ShownPassword, TOKEN_SLOTS, TokenView};
use wharf_storage::RegistryRecord;

use crate::service::timestamp;
use crate::{ArmError, Management};

const SCOPE_MAPS: &str = "Microsoft.ContainerRegistry/registries/scopeMaps";
const TOKENS: &str = "Microsoft.ContainerRegistry/registries/tokens";

fn registry_id(r: &RegistryRecord) -> String {
    Management::resource_id(r).to_string()
}

fn password_json(p: &ShownPassword) -> Value {
    let mut v = json!({ "name": p.name, "creationTime": timestamp(p.created_at) });
    if let Some(e) = p.expires_at {
        v["expiry"] = json!(timestamp(e));
    }
    if let Some(value) = &p.value {
        v["value"] = json!(value);
    }
    v
}

fn scope_map_json(r: &RegistryRecord, m: &ScopeMapView) -> Value {
    json!({
        "id": format!("{}/scopeMaps/{}", registry_id(r), m.name),
        "name": m.name,
        "type": SCOPE_MAPS,
        "properties": {
            "description": m.description,
            "type": if m.system { "SystemDefined" } else { "UserDefined" },
            "creationDate": timestamp(m.created_at.max(r.created_at)),
            "provisioningState": "Succeeded",
            "actions": m.actions,
        },
    })
}

fn token_json(r: &RegistryRecord, t: &TokenView) -> Value {
    json!({
        "id": format!("{}/tokens/{}", registry_id(r), t.name),
        "name": t.name,
        "type": TOKENS,
        "properties": {
            "creationDate": timestamp(t.created_at),
            "provisioningState": "Succeeded",
            "scopeMapId": t.scope_map.as_ref().map(|m| format!("{}/scopeMaps/{m}", registry_id(r))),
            "status": if t.enabled { "enabled" } else { "disabled" },
            "credentials": {
                "passwords": t.passwords.iter().map(password_json).collect::<Vec<_>>(),
                "certificates": [],
            },
        },
    })
}

fn credentials_json(username: &str, passwords: &[ShownPassword]) -> Value {
    json!({ "username": username, "passwords": passwords.iter().map(password_json).collect::<Vec<_>>() })
}

fn properties(body: &Value) -> Result<&serde_json::Map<String, Value>, ArmError> {
    match body.get("properties") {
        None | Some(Value::Null) => {
            static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> =
                std::sync::OnceLock::new();
            Ok(EMPTY.get_or_init(serde_json::Map::new))
        }
        Some(Value::Object(p)) => Ok(p),
        Some(_) => Err(ArmError::invalid_content("properties must be an object")),
    }
}

fn string_field<'a>(
    props: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ArmError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ArmError::bad_request(
            "InvalidRequestContent",
            format!("properties.{key} must be a string."),
        )),
    }
}

fn actions_field(props: &serde_json::Map<String, Value>) -> Result<Option<Vec<String>>, ArmError> {
    match props.get("actions") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|a| {
                a.as_str().map(str::to_owned).ok_or_else(|| {
                    ArmError::bad_request(
                        "InvalidRequestContent",
                        "properties.actions must be a list of strings.",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ArmError::bad_request(
            "InvalidRequestContent",
            "properties.actions must be a list of strings.",
        )),
    }
}

/// An ISO 8601 time → milliseconds since the epoch.
fn parse_time(field: &str, s: &str) -> Result<i64, ArmError> {
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).map_err(|_| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("{field} must be an ISO 8601 time, e.g. 2027-01-01T00:00:00Z."),
        )
    })
}

/// The last segment of `…/registries/{r}/{kind}/{name}` (or a bare name), checked to be
/// under this registry.
fn child_name<'a>(r: &RegistryRecord, kind: &str, value: &'a str) -> Result<&'a str, ArmError> {
    if !value.contains('/') {
        return Ok(value);
    }
    let prefix = format!("{}/{kind}/", registry_id(r));
    if value.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(&prefix))
        && value.len() > prefix.len()
    {
        let name = &value[prefix.len()..];
        if !name.contains('/') {
            return Ok(name);
        }
    }
    Err(ArmError::bad_request(
        "InvalidRequestContent",
        format!("'{value}' is not a {kind} resource of registry '{}'.", r.name),
    ))
}

// ---- the admin user -------------------------------------------------------------------

fn admin_disabled(r: &RegistryRecord) -> ArmError {
    ArmError::bad_request(
        "AdminUserDisabled",
        format!(
            "The admin user of registry '{}' is disabled. Enable it first: `wharf registry update -n {} --admin-enabled true` (adminUserEnabled).",
            r.name, r.name
        ),
    )
}

/// `POST …/listCredentials`.
pub async fn list_credentials(identity: &Identity, r: &RegistryRecord) -> Result<Value, ArmError> {
    let policy = Management::policy(r);
    if !policy.admin_user {
        return Err(admin_disabled(r));
    }
    let passwords = identity.admin_credentials(&policy).await?;
    Ok(credentials_json(&r.name, &passwords))
}

/// `POST …/regenerateCredential` with `{"name": "password"|"password2"}`.
pub async fn regenerate_credential(
    identity: &Identity,
    r: &RegistryRecord,
    body: &Value,
) -> Result<Value, ArmError> {
    let policy = Management::policy(r);
    if !policy.admin_user {
        return Err(admin_disabled(r));
    }
    let name = body.get("name").and_then(Value::as_str).ok_or_else(|| {
        ArmError::bad_request(
            "InvalidRequestContent",
            "name is required: 'password' or 'password2'.",
        )
    })?;
    let passwords = identity.regenerate_admin_password(&policy, name).await?;
    Ok(credentials_json(&r.name, &passwords))
}

// ---- scope maps -------------------------------------------------------------------------

pub async fn list_scope_maps(identity: &Identity, r: &RegistryRecord) -> Result<Value, ArmError> {
    let maps = identity.scope_maps(r.id).await?;
    Ok(json!({ "value": maps.iter().map(|m| scope_map_json(r, m)).collect::<Vec<_>>() }))
}

fn scope_map_not_found(name: &str) -> ArmError {
    ArmError::not_found("ResourceNotFound", format!("The scope map '{name}' could not be found."))
}

pub async fn get_scope_map(
    identity: &Identity,
    r: &RegistryRecord,
    name: &str,
) -> Result<Value, ArmError> {
    let m = identity.scope_map(r.id, name).await?.ok_or_else(|| scope_map_not_found(name))?;
    Ok(scope_map_json(r, &m))
}

/// `PUT` (replace) or `PATCH` (merge) a scope map; whether it was created.
pub async fn put_scope_map(
    identity: &Identity,
    r: &RegistryRecord,
    name: &str,
    body: &Value,
    patch: bool,
) -> Result<(bool, Value), ArmError> {
    let props = properties(body)?;
    let existing = if patch {
        Some(identity.scope_map(r.id, name).await?.ok_or_else(|| scope_map_not_found(name))?)
    } else {
        None
    };
    let description = match string_field(props, "description")? {
        Some(d) => Some(d.to_owned()),
        None => existing.as_ref().and_then(|m| m.description.clone()),
    };
    let actions = match actions_field(props)? {
        Some(a) => a,
        None => match &existing {
            Some(m) => m.actions.clone(),
            None => {
                return Err(ArmError::bad_request(
                    "InvalidRequestContent",
                    "properties.actions is required.",
                ));
            }
        },
    };
    let (m, created) = identity.put_scope_map(r.id, name, description, actions).await?;
    Ok((created, scope_map_json(r, &m)))
}

pub async fn delete_scope_map(
    identity: &Identity,
    r: &RegistryRecord,
    name: &str,
) -> Result<bool, ArmError> {
    Ok(identity.delete_scope_map(r.id, name).await?)
}

// ---- tokens -----------------------------------------------------------------------------

pub async fn list_tokens(identity: &Identity, r: &RegistryRecord) -> Result<Value, ArmError> {
    let tokens = identity.tokens(r.id).await?;
    Ok(json!({ "value": tokens.iter().map(|t| token_json(r, t)).collect::<Vec<_>>() }))
}

fn token_not_found(name: &str) -> ArmError {
    ArmError::not_found("ResourceNotFound", format!("The token '{name}' could not be found."))
}

pub async fn get_token(
    identity: &Identity,
    r: &RegistryRecord,
    name: &str,
) -> Result<Value, ArmError> {
    let t = identity.token(r.id, name).await?.ok_or_else(|| token_not_found(name))?;
    Ok(token_json(r, &t))
}

/// `PUT` or `PATCH` a token: `properties.scopeMapId` and `properties.status`.
pub async fn put_token(
    identity: &Identity,
    r: &RegistryRecord,
    name: &str,
    body: &Value,
    patch: bool,
) -> Result<(bool, Value), ArmError> {
    let props = properties(body)?;
    let existing = identity.token(r.id, name).await?;
    if patch && existing.is_none() {
        return Err(token_not_found(name));
    }
    let scope_map = match string_field(props, "scopeMapId")? {
        Some(id) => Some(child_name(r, "scopeMaps", id)?.to_owned()),
        None => existing.as_ref().and_then(|t| t.scope_map.clone()),
    };
    if scope_map.is_none() {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "properties.scopeMapId is required: the scope map that says what the token may do.",
        ));
    }
    let enabled = match string_field(props, "status")? {
        Some(s) if s.eq_ignore_ascii_case("enabled") => true,
        Some(s) if s.eq_ignore_ascii_case("disabled") => false,
        Some(s) => {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                format!("properties.status '{s}' is invalid: use 'enabled' or 'disabled'."),
            ));
        }
        None => existing.as_ref().is_none_or(|t| t.enabled),
    };
    let (t, created) = identity.put_token(r.id, name, scope_map.as_deref(), enabled).await?;
    Ok((created, token_json(r, &t)))
}

pub async fn delete_token(
    identity: &Identity,
    r: &RegistryRecord,
    name: &str,
) -> Result<bool, ArmError> {
    Ok(identity.delete_token(r.id, name).await?)
}

/// `POST …/generateCredentials` with `{"tokenId", "name"?, "expiry"?}`: new passwords for a
/// token (both slots unless `name` picks one), shown once.
pub async fn generate_credentials(
    identity: &Identity,
    r: &RegistryRecord,
    body: &Value,
) -> Result<Value, ArmError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ArmError::invalid_content("the body must be a JSON object"))?;
    let token_id = string_field(obj, "tokenId")?
        .ok_or_else(|| ArmError::bad_request("InvalidRequestContent", "tokenId is required."))?;
    let token = child_name(r, "tokens", token_id)?;
    let expiry = string_field(obj, "expiry")?.map(|e| parse_time("expiry", e)).transpose()?;
    let slots: Vec<&str> = match string_field(obj, "name")? {
        Some(n) => vec![n],
        None => TOKEN_SLOTS.to_vec(),
    };
    let t = identity.token(r.id, token).await?.ok_or_else(|| token_not_found(token))?;
    let mut passwords = Vec::new();
    for slot in slots {
        passwords.push(identity.generate_token_password(r.id, &t.name, slot, expiry).await?);
    }
    Ok(credentials_json(&t.name, &passwords))
}
