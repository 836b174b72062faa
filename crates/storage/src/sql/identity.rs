//! [`IdentityStore`] for the store this file is compiled into (see [`crate::sql`]):
//! tenants, principals and their credentials, role definitions and assignments, signing
//! keys, scope maps and registry tokens.

use async_trait::async_trait;
use sqlx::Row;

use super::Store;
use super::rows::*;
use crate::StorageError;
use crate::identity::*;
use crate::meta::RegistryId;

/// The columns of `credentials` an insert sets, in bind order.
const INSERT_CREDENTIAL: &str = "INSERT INTO credentials
    (id, principal, hash, hint, display_name, expires_at, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

const PRUNE_KEYS: &str =
    "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1";
const UPDATE_PRINCIPAL: &str = "UPDATE principals SET enabled = COALESCE($2, enabled),
     token_generation = token_generation + $3 WHERE id_ci = lower($1)";

#[async_trait]
impl IdentityStore for Store {
    async fn put_tenant(&self, t: &TenantRecord) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (id_ci) DO UPDATE SET name = excluded.name",
                )
                .bind(&t.id)
                .bind(&t.name)
                .bind(t.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>, StorageError> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY created_at, id_ci")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TenantRecord {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn create_principal(&self, p: &PrincipalRecord) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                // Any taken key (id, name in its tenant, app id) stores nothing.
                let done = sqlx::query(
                    "INSERT INTO principals (id, tenant, kind, name, app_id, enabled, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(&p.id)
                .bind(&p.tenant)
                .bind(&p.kind)
                .bind(&p.name)
                .bind(&p.app_id)
                .bind(p.enabled)
                .bind(p.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn principal(&self, id: &str) -> Result<Option<PrincipalRecord>, StorageError> {
        sqlx::query("SELECT * FROM principals WHERE id_ci = lower($1)")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(principal_row)
            .transpose()
    }

    async fn principal_named(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<PrincipalRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM principals
              WHERE tenant_ci = lower($1) AND (name_ci = lower($2) OR app_id_ci = lower($2))
              ORDER BY kind DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(self.reader())
        .await?
        .as_ref()
        .map(principal_row)
        .transpose()
    }

    async fn principal_by_app_id(
        &self,
        app_id: &str,
    ) -> Result<Option<PrincipalRecord>, StorageError> {
        sqlx::query("SELECT * FROM principals WHERE app_id_ci = lower($1)")
            .bind(app_id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(principal_row)
            .transpose()
    }

    async fn principals(
        &self,
        tenant: &str,
        kind: &str,
    ) -> Result<Vec<PrincipalRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT * FROM principals WHERE tenant_ci = lower($1) AND kind = $2 ORDER BY name_ci",
        )
        .bind(tenant)
        .bind(kind)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(principal_row).collect()
    }

    async fn delete_principal(&self, id: &str) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query("DELETE FROM role_assignments WHERE principal_id_ci = lower($1)")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                // Credentials go with it (ON DELETE CASCADE).
                let done = sqlx::query("DELETE FROM principals WHERE id_ci = lower($1)")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn update_principal(
        &self,
        id: &str,
        enabled: Option<bool>,
        revoke_tokens: bool,
    ) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query(UPDATE_PRINCIPAL)
                    .bind(id)
                    .bind(enabled)
                    .bind(i64::from(revoke_tokens))
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn add_credential(&self, c: &CredentialRecord) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(INSERT_CREDENTIAL)
                    .bind(&c.id)
                    .bind(&c.principal)
                    .bind(&c.hash)
                    .bind(&c.hint)
                    .bind(&c.display_name)
                    .bind(c.expires_at)
                    .bind(c.created_at)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn credentials(&self, principal: &str) -> Result<Vec<CredentialRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT * FROM credentials WHERE principal_ci = lower($1) ORDER BY created_at, id",
        )
        .bind(principal)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(credential_row).collect()
    }

    async fn replace_credentials(&self, c: &CredentialRecord) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query("DELETE FROM credentials WHERE principal_ci = lower($1)")
                    .bind(&c.principal)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(INSERT_CREDENTIAL)
                    .bind(&c.id)
                    .bind(&c.principal)
                    .bind(&c.hash)
                    .bind(&c.hint)
                    .bind(&c.display_name)
                    .bind(c.expires_at)
                    .bind(c.created_at)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(UPDATE_PRINCIPAL)
                    .bind(&c.principal)
                    .bind(None::<bool>)
                    .bind(1_i64)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn put_role_definition(&self, r: &RoleDefinitionRecord) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM role_definitions WHERE id_ci = lower($1)")
                        .bind(&r.id)
                        .fetch_optional(&mut *conn)
                        .await?;
                sqlx::query(
                    "INSERT INTO role_definitions (id, name, body, created_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id_ci) DO UPDATE SET name = excluded.name, body = excluded.body",
                )
                .bind(&r.id)
                .bind(&r.name)
                .bind(&r.body)
                .bind(r.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(exists.is_none())
            })
        })
        .await
    }

    async fn role_definition(
        &self,
        id: &str,
    ) -> Result<Option<RoleDefinitionRecord>, StorageError> {
        sqlx::query("SELECT * FROM role_definitions WHERE id_ci = lower($1)")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(role_definition_row)
            .transpose()
    }

    async fn role_definitions(&self) -> Result<Vec<RoleDefinitionRecord>, StorageError> {
        let rows = sqlx::query("SELECT * FROM role_definitions ORDER BY name_ci")
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(role_definition_row).collect()
    }

    async fn delete_role_definition(&self, id: &str) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM role_definitions WHERE id_ci = lower($1)")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn create_role_assignment(&self, a: &RoleAssignmentRecord) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query(
                    "INSERT INTO role_assignments (id, scope, role_definition_id, principal_id,
                                                   principal_type, condition, description,
                                                   created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .bind(&a.id)
                .bind(&a.scope)
                .bind(&a.role_definition_id)
                .bind(&a.principal_id)
                .bind(&a.principal_type)
                .bind(&a.condition)
                .bind(&a.description)
                .bind(a.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn role_assignment(
        &self,
        id: &str,
    ) -> Result<Option<RoleAssignmentRecord>, StorageError> {
        sqlx::query("SELECT * FROM role_assignments WHERE id_ci = lower($1)")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(assignment_row)
            .transpose()
    }

    async fn role_assignments_of(
        &self,
        principal: &str,
    ) -> Result<Vec<RoleAssignmentRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT * FROM role_assignments WHERE principal_id_ci = lower($1)
              ORDER BY created_at, id_ci",
        )
        .bind(principal)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(assignment_row).collect()
    }

    async fn role_assignments(&self) -> Result<Vec<RoleAssignmentRecord>, StorageError> {
        let rows =
            sqlx::query("SELECT * FROM role_assignments ORDER BY scope_ci, created_at, id_ci")
                .fetch_all(self.reader())
                .await?;
        rows.iter().map(assignment_row).collect()
    }

    async fn delete_role_assignment(&self, id: &str) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM role_assignments WHERE id_ci = lower($1)")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn put_scope_map(&self, m: &ScopeMapRecord) -> Result<(), StorageError> {
        let actions = &serde_json::to_string(&m.actions)
            .map_err(|e| StorageError::Corrupt(format!("scope map actions: {e}")))?;
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO scope_maps (registry_id, name, description, actions, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (registry_id, name_ci) DO UPDATE
                     SET description = excluded.description, actions = excluded.actions",
                )
                .bind(m.registry_id)
                .bind(&m.name)
                .bind(&m.description)
                .bind(actions)
                .bind(m.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn scope_map(
        &self,
        registry: RegistryId,
        name: &str,
    ) -> Result<Option<ScopeMapRecord>, StorageError> {
        sqlx::query("SELECT * FROM scope_maps WHERE registry_id = $1 AND name_ci = lower($2)")
            .bind(registry)
            .bind(name)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(scope_map_row)
            .transpose()
    }

    async fn scope_maps(&self, registry: RegistryId) -> Result<Vec<ScopeMapRecord>, StorageError> {
        let rows = sqlx::query("SELECT * FROM scope_maps WHERE registry_id = $1 ORDER BY name_ci")
            .bind(registry)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(scope_map_row).collect()
    }

    async fn delete_scope_map(
        &self,
        registry: RegistryId,
        name: &str,
    ) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM scope_maps WHERE registry_id = $1 AND name_ci = lower($2)",
                )
                .bind(registry)
                .bind(name)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn put_registry_token(&self, t: &RegistryTokenRecord) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO registry_tokens (registry_id, kind, name, scope_map, enabled,
                                                  created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (registry_id, kind, name_ci) DO UPDATE
                     SET scope_map = excluded.scope_map, enabled = excluded.enabled",
                )
                .bind(t.registry_id)
                .bind(&t.kind)
                .bind(&t.name)
                .bind(&t.scope_map)
                .bind(t.enabled)
                .bind(t.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn registry_token(
        &self,
        registry: RegistryId,
        kind: &str,
        name: &str,
    ) -> Result<Option<RegistryTokenRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM registry_tokens
              WHERE registry_id = $1 AND kind = $2 AND name_ci = lower($3)",
        )
        .bind(registry)
        .bind(kind)
        .bind(name)
        .fetch_optional(self.reader())
        .await?
        .as_ref()
        .map(registry_token_row)
        .transpose()
    }

    async fn registry_tokens(
        &self,
        registry: RegistryId,
        kind: &str,
    ) -> Result<Vec<RegistryTokenRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT * FROM registry_tokens WHERE registry_id = $1 AND kind = $2 ORDER BY name_ci",
        )
        .bind(registry)
        .bind(kind)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(registry_token_row).collect()
    }

    async fn delete_registry_token(
        &self,
        registry: RegistryId,
        kind: &str,
        name: &str,
    ) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                // Its passwords go with it (ON DELETE CASCADE).
                let done = sqlx::query(
                    "DELETE FROM registry_tokens
                      WHERE registry_id = $1 AND kind = $2 AND name_ci = lower($3)",
                )
                .bind(registry)
                .bind(kind)
                .bind(name)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn put_token_password(&self, p: &TokenPasswordRecord) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO registry_token_passwords
                         (registry_id, kind, token, slot, hash, sealed, expires_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (registry_id, kind, token_ci, slot) DO UPDATE
                     SET hash = excluded.hash, sealed = excluded.sealed,
                         expires_at = excluded.expires_at, created_at = excluded.created_at",
                )
                .bind(p.registry_id)
                .bind(&p.kind)
                .bind(&p.token)
                .bind(&p.slot)
                .bind(&p.hash)
                .bind(&p.sealed)
                .bind(p.expires_at)
                .bind(p.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn token_passwords(
        &self,
        registry: RegistryId,
        kind: &str,
        name: &str,
    ) -> Result<Vec<TokenPasswordRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT * FROM registry_token_passwords
              WHERE registry_id = $1 AND kind = $2 AND token_ci = lower($3) ORDER BY slot",
        )
        .bind(registry)
        .bind(kind)
        .bind(name)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(token_password_row).collect()
    }

    async fn a_sealed_password(&self) -> Result<Option<TokenPasswordRecord>, StorageError> {
        sqlx::query("SELECT * FROM registry_token_passwords WHERE sealed IS NOT NULL LIMIT 1")
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(token_password_row)
            .transpose()
    }

    async fn add_signing_key(&self, k: &SigningKeyRecord) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, pkcs8, created_at, retired_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&k.kid)
                .bind(&k.pkcs8)
                .bind(k.created_at)
                .bind(k.retired_at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StorageError> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    kid: r.try_get("kid")?,
                    pkcs8: r.try_get("pkcs8")?,
                    created_at: r.try_get("created_at")?,
                    retired_at: r.try_get("retired_at")?,
                })
            })
            .collect()
    }

    async fn retire_signing_keys(&self, except: &str, at: i64) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE signing_keys SET retired_at = $2
                      WHERE kid <> $1 AND retired_at IS NULL",
                )
                .bind(except)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn prune_signing_keys(&self, before: i64) -> Result<u64, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query(PRUNE_KEYS).bind(before).execute(&mut *conn).await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }
}
