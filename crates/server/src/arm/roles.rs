//! Role definitions and role assignments (`{scope}/providers/Microsoft.Authorization/…`),
//! at `/`, a subscription, a resource group or a registry.

use axum::http::StatusCode;
use wharf_management::authorization as authz;

use super::{ArmResult, Ctx, created, deleted, ok};

pub(super) async fn list_role_definitions(ctx: &Ctx<'_>, scope: &str) -> ArmResult {
    Ok(ok(StatusCode::OK, authz::list_role_definitions(ctx.identity(), scope, ctx.filter()).await?))
}

pub(super) async fn get_role_definition(ctx: &Ctx<'_>, scope: &str, id: &str) -> ArmResult {
    Ok(ok(StatusCode::OK, authz::get_role_definition(ctx.identity(), scope, id).await?))
}

pub(super) async fn put_role_definition(ctx: &Ctx<'_>, scope: &str, id: &str) -> ArmResult {
    let body = ctx.json()?;
    let (c, v) = authz::put_role_definition(ctx.identity(), ctx.caller, scope, id, &body).await?;
    Ok(created(c, v))
}

pub(super) async fn delete_role_definition(ctx: &Ctx<'_>, scope: &str, id: &str) -> ArmResult {
    Ok(deleted(authz::delete_role_definition(ctx.identity(), ctx.caller, scope, id).await?))
}

pub(super) async fn list_role_assignments(ctx: &Ctx<'_>, scope: &str) -> ArmResult {
    Ok(ok(StatusCode::OK, authz::list_role_assignments(ctx.identity(), scope, ctx.filter()).await?))
}

pub(super) async fn get_role_assignment(ctx: &Ctx<'_>, scope: &str, name: &str) -> ArmResult {
    Ok(ok(StatusCode::OK, authz::get_role_assignment(ctx.identity(), scope, name).await?))
}

pub(super) async fn put_role_assignment(ctx: &Ctx<'_>, scope: &str, name: &str) -> ArmResult {
    let body = ctx.json()?;
    let (c, v) = authz::put_role_assignment(ctx.identity(), ctx.caller, scope, name, &body).await?;
    Ok(created(c, v))
}

pub(super) async fn delete_role_assignment(ctx: &Ctx<'_>, scope: &str, name: &str) -> ArmResult {
    Ok(deleted(authz::delete_role_assignment(ctx.identity(), ctx.caller, scope, name).await?))
}
