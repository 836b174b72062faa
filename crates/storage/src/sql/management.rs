//! [`ManagementStore`] for the store this file is compiled into (see [`crate::sql`]):
//! subscriptions, resource groups, registries and import jobs.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::dialect::{JOB_NOT_RUNNING, NOW};
use super::rows::*;
use super::{Store, dialect};
use crate::meta::*;
use crate::{StorageError, now_millis};

/// Job states after which nothing changes.
const FINISHED: &str = "('Succeeded', 'Failed', 'Canceled')";

#[async_trait]
impl ManagementStore for Store {
    async fn put_subscription(&self, id: &str, display_name: &str) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM subscriptions WHERE id_ci = lower($1)")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                sqlx::query(
                    "INSERT INTO subscriptions (id, display_name, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (id_ci) DO UPDATE SET display_name = excluded.display_name",
                )
                .bind(id)
                .bind(display_name)
                .bind(now_millis())
                .execute(&mut *conn)
                .await?;
                Ok(exists.is_none())
            })
        })
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StorageError> {
        sqlx::query("SELECT * FROM subscriptions WHERE id_ci = lower($1)")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(sub_row)
            .transpose()
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StorageError> {
        let rows = sqlx::query("SELECT * FROM subscriptions ORDER BY id_ci")
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(sub_row).collect()
    }

    async fn put_resource_group(&self, rg: &ResourceGroupRecord) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let exists: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM resource_groups
                      WHERE subscription_ci = lower($1) AND name_ci = lower($2)",
                )
                .bind(&rg.subscription)
                .bind(&rg.name)
                .fetch_optional(&mut *conn)
                .await?;
                sqlx::query(
                    "INSERT INTO resource_groups (subscription_id, name, location, tags, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (subscription_ci, name_ci) DO UPDATE SET tags = excluded.tags",
                )
                .bind(&rg.subscription)
                .bind(&rg.name)
                .bind(&rg.location)
                .bind(&rg.tags)
                .bind(rg.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(exists.is_none())
            })
        })
        .await
    }

    async fn resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroupRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM resource_groups WHERE subscription_ci = lower($1) AND name_ci = lower($2)",
        )
        .bind(subscription)
        .bind(name)
        .fetch_optional(self.reader())
        .await?
        .as_ref()
        .map(rg_row)
        .transpose()
    }

    async fn resource_groups(
        &self,
        subscription: &str,
    ) -> Result<Vec<ResourceGroupRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT * FROM resource_groups WHERE subscription_ci = lower($1) ORDER BY name_ci",
        )
        .bind(subscription)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(rg_row).collect()
    }

    async fn delete_resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                // Everything in the group goes, as in ARM. The default registry never does:
                // with it inside, the group's own delete fails on the foreign key (the
                // management layer refuses earlier, with a clear error).
                sqlx::query(
                    "DELETE FROM registries
                      WHERE subscription_ci = lower($1) AND resource_group_ci = lower($2)
                        AND NOT is_default",
                )
                .bind(subscription)
                .bind(name)
                .execute(&mut *conn)
                .await?;
                let done = sqlx::query(
                    "DELETE FROM resource_groups
                      WHERE subscription_ci = lower($1) AND name_ci = lower($2)",
                )
                .bind(subscription)
                .bind(name)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn create_registry(
        &self,
        r: &RegistryRecord,
    ) -> Result<CreateRegistryOutcome, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let rg: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM resource_groups
                      WHERE subscription_ci = lower($1) AND name_ci = lower($2)",
                )
                .bind(&r.subscription)
                .bind(&r.resource_group)
                .fetch_optional(&mut *conn)
                .await?;
                if rg.is_none() {
                    return Ok(CreateRegistryOutcome::NoResourceGroup);
                }
                let taken: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM registries WHERE name_ci = lower($1)")
                        .bind(&r.name)
                        .fetch_optional(&mut *conn)
                        .await?;
                if taken.is_some() {
                    return Ok(CreateRegistryOutcome::NameTaken);
                }
                // Canonical casing of the group comes from the group itself.
                let row = sqlx::query(
                    "INSERT INTO registries (name, is_default, subscription_id, resource_group,
                                             location, sku, properties, tags, created_at)
                     SELECT $1, false, subscription_id, name, $4, $5, $6, $7, $8
                       FROM resource_groups
                      WHERE subscription_ci = lower($2) AND name_ci = lower($3)
                     RETURNING *",
                )
                .bind(&r.name)
                .bind(&r.subscription)
                .bind(&r.resource_group)
                .bind(&r.location)
                .bind(&r.sku)
                .bind(&r.properties)
                .bind(&r.tags)
                .bind(r.created_at)
                .fetch_one(&mut *conn)
                .await?;
                Ok(CreateRegistryOutcome::Created(registry_row(&row)?))
            })
        })
        .await
    }

    async fn update_registry(&self, r: &RegistryRecord) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE registries SET location = $2, sku = $3, properties = $4, tags = $5
                      WHERE id = $1",
                )
                .bind(r.id)
                .bind(&r.location)
                .bind(&r.sku)
                .bind(&r.properties)
                .bind(&r.tags)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn registry(&self, id: RegistryId) -> Result<Option<RegistryRecord>, StorageError> {
        sqlx::query("SELECT * FROM registries WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(registry_row)
            .transpose()
    }

    async fn registry_in(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM registries
              WHERE subscription_ci = lower($1) AND resource_group_ci = lower($2)
                AND name_ci = lower($3)",
        )
        .bind(subscription)
        .bind(resource_group)
        .bind(name)
        .fetch_optional(self.reader())
        .await?
        .as_ref()
        .map(registry_row)
        .transpose()
    }

    async fn registries(
        &self,
        subscription: Option<&str>,
        resource_group: Option<&str>,
    ) -> Result<Vec<RegistryRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT * FROM registries
              WHERE (CAST($1 AS TEXT) IS NULL OR subscription_ci = lower($1))
                AND (CAST($2 AS TEXT) IS NULL OR resource_group_ci = lower($2))
              ORDER BY name_ci",
        )
        .bind(subscription)
        .bind(resource_group)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(registry_row).collect()
    }

    async fn delete_registry(&self, id: RegistryId) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                // Repositories, manifests, tags, links, jobs, scope maps and tokens go with
                // it; blobs are left to GC.
                let done = sqlx::query("DELETE FROM registries WHERE id = $1 AND NOT is_default")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn create_job(&self, job: &JobRecord, lease_ms: i64) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                // Only constant fragments are formatted into the SQL.
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO import_jobs (id, registry_id, request, resumable, status, progress,
                                              error, created_at, updated_at, owner, lease_until,
                                              lease_epoch)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {NOW} + $11, 0)"
                )))
                .bind(&job.id)
                .bind(job.registry_id)
                .bind(&job.request)
                .bind(job.resumable)
                .bind(job.status.as_str())
                .bind(job.progress.to_text()?)
                .bind(job.error.as_ref().map(JobError::to_text).transpose()?)
                .bind(job.created_at)
                .bind(job.updated_at)
                .bind(&job.owner)
                .bind(lease_ms)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn update_job(
        &self,
        fence: &JobFence,
        status: JobState,
        progress: &JobProgress,
        error: Option<&JobError>,
    ) -> Result<bool, StorageError> {
        let (progress, error) = (progress.to_text()?, error.map(JobError::to_text).transpose()?);
        let (progress, error) = (progress.as_str(), error.as_deref());
        self.write_tx(|conn, _| {
            Box::pin(async move {
                // Only constant fragments are formatted into the SQL.
                let done = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE import_jobs SET status = $4, progress = $5, error = $6, updated_at = $7
                      WHERE id = $1 AND owner = $2 AND lease_epoch = $3
                        AND status NOT IN {FINISHED}"
                )))
                .bind(&fence.id)
                .bind(&fence.owner)
                .bind(fence.epoch)
                .bind(status.as_str())
                .bind(progress)
                .bind(error)
                .bind(now_millis())
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn job(&self, id: &str) -> Result<Option<JobRecord>, StorageError> {
        sqlx::query("SELECT * FROM import_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StorageError> {
        // Only constant fragments are formatted into the SQL.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM import_jobs WHERE status NOT IN {FINISHED} ORDER BY created_at, id"
        )))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(job_row).collect()
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        lease_ms: i64,
        restarted: bool,
        running: &[String],
    ) -> Result<Vec<JobRecord>, StorageError> {
        // One statement: rows another node is claiming at the same moment are locked by its
        // UPDATE, and re-checked after it commits (their lease is then no longer past), so
        // no job is taken twice. Only constant fragments are formatted into the SQL.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE import_jobs SET owner = $1, lease_until = {NOW} + $2,
                                    lease_epoch = lease_epoch + 1
              WHERE status NOT IN {FINISHED}
                AND (owner IS NULL OR lease_until < {NOW} OR (owner = $1 AND $3))
                AND {JOB_NOT_RUNNING}
             RETURNING *"
        )))
        .bind(owner)
        .bind(lease_ms)
        .bind(restarted)
        .bind(dialect::text_list(running)?)
        .fetch_all(self.writer())
        .await?;
        let mut jobs: Vec<JobRecord> = rows.iter().map(job_row).collect::<Result<_, _>>()?;
        jobs.sort_by_key(|j| j.created_at);
        Ok(jobs)
    }

    async fn heartbeat_job(
        &self,
        fence: &JobFence,
        progress: &JobProgress,
        lease_ms: i64,
    ) -> Result<Option<JobState>, StorageError> {
        let progress = progress.to_text()?;
        // Only constant fragments are formatted into the SQL.
        let status: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE import_jobs SET progress = $4, lease_until = {NOW} + $5, updated_at = $6
              WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND status NOT IN {FINISHED}
             RETURNING status"
        )))
        .bind(&fence.id)
        .bind(&fence.owner)
        .bind(fence.epoch)
        .bind(&progress)
        .bind(lease_ms)
        .bind(now_millis())
        .fetch_optional(self.writer())
        .await?;
        status.as_deref().map(JobState::parse).transpose()
    }

    async fn request_job_cancel(&self, id: &str) -> Result<bool, StorageError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE import_jobs SET status = 'Canceling', updated_at = $2
              WHERE id = $1 AND status NOT IN {FINISHED}"
        )))
        .bind(id)
        .bind(now_millis())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_finished_jobs(&self, cutoff: i64) -> Result<u64, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                // Only constant fragments are formatted into the SQL.
                let done = sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM import_jobs WHERE status IN {FINISHED} AND updated_at < $1"
                )))
                .bind(cutoff)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }
}
