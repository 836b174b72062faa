//! A registry's credentials: the admin user's passwords, and the scope maps and tokens
//! that grant repository access.

use axum::http::StatusCode;
use wharf_management::RegistryResourceId;
use wharf_management::registry_credentials as creds;

use super::{ArmResult, Ctx, created, ok, removed};

pub(super) async fn list_credentials(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    Ok(ok(StatusCode::OK, creds::list_credentials(ctx.identity(), &r).await?))
}

pub(super) async fn regenerate_credential(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    let v = creds::regenerate_credential(ctx.identity(), &r, &ctx.json()?).await?;
    Ok(ok(StatusCode::OK, v))
}

pub(super) async fn generate_credentials(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    let v = creds::generate_credentials(ctx.identity(), &r, &ctx.json()?).await?;
    Ok(ok(StatusCode::OK, v))
}

pub(super) async fn list_scope_maps(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    Ok(ok(StatusCode::OK, creds::list_scope_maps(ctx.identity(), &r).await?))
}

pub(super) async fn get_scope_map(ctx: &Ctx<'_>, id: &RegistryResourceId, n: &str) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    Ok(ok(StatusCode::OK, creds::get_scope_map(ctx.identity(), &r, n).await?))
}

/// `PUT` (`patch` false) or `PATCH` (true).
pub(super) async fn put_scope_map(
    ctx: &Ctx<'_>,
    id: &RegistryResourceId,
    n: &str,
    patch: bool,
) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    let (c, v) = creds::put_scope_map(ctx.identity(), &r, n, &ctx.json()?, patch).await?;
    Ok(created(c, v))
}

pub(super) async fn delete_scope_map(ctx: &Ctx<'_>, id: &RegistryResourceId, n: &str) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    Ok(removed(creds::delete_scope_map(ctx.identity(), &r, n).await?))
}

pub(super) async fn list_tokens(ctx: &Ctx<'_>, id: &RegistryResourceId) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    Ok(ok(StatusCode::OK, creds::list_tokens(ctx.identity(), &r).await?))
}

pub(super) async fn get_token(ctx: &Ctx<'_>, id: &RegistryResourceId, n: &str) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    Ok(ok(StatusCode::OK, creds::get_token(ctx.identity(), &r, n).await?))
}

/// `PUT` (`patch` false) or `PATCH` (true).
pub(super) async fn put_token(
    ctx: &Ctx<'_>,
    id: &RegistryResourceId,
    n: &str,
    patch: bool,
) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    let (c, v) = creds::put_token(ctx.identity(), &r, n, &ctx.json()?, patch).await?;
    Ok(created(c, v))
}

pub(super) async fn delete_token(ctx: &Ctx<'_>, id: &RegistryResourceId, n: &str) -> ArmResult {
    let r = ctx.management().registry(id).await?;
    Ok(removed(creds::delete_token(ctx.identity(), &r, n).await?))
}
