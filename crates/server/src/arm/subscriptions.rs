//! Tenants, subscriptions and resource groups: the containers registries live in.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use wharf_auth::actions;
use wharf_management::ArmError;

use super::{ArmResult, Ctx, created, keep, ok, removed};

pub(super) async fn list_tenants(ctx: &Ctx<'_>) -> ArmResult {
    let tenants: Vec<Value> = ctx
        .identity()
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
                "defaultDomain": ctx.state.settings.domain,
            })
        })
        .collect();
    Ok(ok(StatusCode::OK, json!({ "value": tenants })))
}

pub(super) async fn list_subscriptions(ctx: &Ctx<'_>) -> ArmResult {
    let mut v = ctx.management().list_subscriptions().await?;
    keep(&mut v, |id| ctx.caller.has_grant_within(id));
    add_tenant(&mut v, ctx.identity().default_tenant());
    Ok(ok(StatusCode::OK, v))
}

pub(super) async fn get_subscription(ctx: &Ctx<'_>, sub: &str) -> ArmResult {
    let mut v = ctx.management().get_subscription(sub).await?;
    add_tenant(&mut v, ctx.identity().default_tenant());
    Ok(ok(StatusCode::OK, v))
}

pub(super) async fn put_subscription(ctx: &Ctx<'_>, sub: &str) -> ArmResult {
    let body = if ctx.body.is_empty() { json!({}) } else { ctx.json()? };
    let (c, v) = ctx.management().put_subscription(sub, &body).await?;
    Ok(created(c, v))
}

pub(super) async fn list_resource_groups(ctx: &Ctx<'_>, sub: &str) -> ArmResult {
    let mut v = ctx.management().list_resource_groups(sub).await?;
    keep(&mut v, |id| ctx.caller.allows(actions::RESOURCE_GROUP_READ, id));
    Ok(ok(StatusCode::OK, v))
}

pub(super) async fn get_resource_group(ctx: &Ctx<'_>, sub: &str, rg: &str) -> ArmResult {
    Ok(ok(StatusCode::OK, ctx.management().get_resource_group(sub, rg).await?))
}

pub(super) async fn head_resource_group(ctx: &Ctx<'_>, sub: &str, rg: &str) -> ArmResult {
    let exists = ctx.management().get_resource_group(sub, rg).await.is_ok();
    Ok(if exists { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }.into_response())
}

pub(super) async fn put_resource_group(ctx: &Ctx<'_>, sub: &str, rg: &str) -> ArmResult {
    let (c, v) = ctx.management().put_resource_group(sub, rg, &ctx.json()?).await?;
    Ok(created(c, v))
}

pub(super) async fn delete_resource_group(ctx: &Ctx<'_>, sub: &str, rg: &str) -> ArmResult {
    Ok(removed(ctx.management().delete_resource_group(sub, rg).await?))
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
