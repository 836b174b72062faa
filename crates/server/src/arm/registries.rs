//! Registries: listed, created, changed and deleted, and the generic resource list (registries
//! being the only resources wharf has).

use axum::http::StatusCode;
use serde_json::{Value, json};
use wharf_auth::actions;
use wharf_management::{ArmError, REGISTRY_TYPE, RegistryResourceId};

use super::{ArmResult, Ctx, created, keep, ok, removed};

pub(super) async fn list_registries(ctx: &Ctx<'_>, sub: &str, rg: Option<&str>) -> ArmResult {
    let mut v = ctx.management().list_registries(Some(sub), rg).await?;
    keep(&mut v, |id| ctx.caller.allows(actions::REGISTRY_READ, id));
    Ok(ok(StatusCode::OK, v))
}

/// `…/resources`: the registries, in ARM's generic resource shape.
pub(super) async fn list_resources(ctx: &Ctx<'_>, sub: &str, rg: Option<&str>) -> ArmResult {
    let wanted = resource_type_filter(ctx.filter())?;
    let m = ctx.management();
    m.get_subscription(sub).await?;
    if let Some(g) = rg {
        m.get_resource_group(sub, g).await?;
    }
    let mut v = m.list_registries(Some(sub), rg).await?;
    keep(&mut v, |id| ctx.caller.allows(actions::REGISTRY_READ, id));
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

pub(super) async fn check_name(ctx: &Ctx<'_>, sub: &str) -> ArmResult {
    Ok(ok(StatusCode::OK, ctx.management().check_name_availability(sub, &ctx.json()?).await?))
}

pub(super) async fn get_registry(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    Ok(ok(StatusCode::OK, ctx.management().get_registry(id).await?))
}

pub(super) async fn put_registry(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    let (c, v) = ctx.management().put_registry(id, &ctx.json()?).await?;
    Ok(created(c, v))
}

pub(super) async fn patch_registry(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    Ok(ok(StatusCode::OK, ctx.management().patch_registry(id, &ctx.json()?).await?))
}

pub(super) async fn delete_registry(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    Ok(removed(ctx.management().delete_registry(id).await?))
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
