use async_trait::async_trait;

use super::SqliteMetadataStore;
use super::rows::*;
use crate::meta::*;
use crate::{StorageError, now_millis};

/// Job states after which nothing changes.
const FINISHED: &str = "('Succeeded', 'Failed', 'Canceled')";
/// The database's clock in ms: leases are set and compared by it alone.
const NOW: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

#[async_trait]
impl ManagementStore for SqliteMetadataStore {
    async fn put_subscription(&self, id: &str, display_name: &str) -> Result<bool, StorageError> {
        let mut tx = self.write.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM subscriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO subscriptions (id, display_name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name",
        )
        .bind(id)
        .bind(display_name)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(exists.is_none())
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StorageError> {
        sqlx::query("SELECT * FROM subscriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(sub_row)
            .transpose()
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StorageError> {
        let rows =
            sqlx::query("SELECT * FROM subscriptions ORDER BY id").fetch_all(&self.read).await?;
        rows.iter().map(sub_row).collect()
    }

    async fn put_resource_group(&self, rg: &ResourceGroupRecord) -> Result<bool, StorageError> {
        let mut tx = self.write.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM resource_groups WHERE subscription_id = $1 AND name = $2",
        )
        .bind(&rg.subscription)
        .bind(&rg.name)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO resource_groups (subscription_id, name, location, tags, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (subscription_id, name) DO UPDATE SET tags = excluded.tags",
        )
        .bind(&rg.subscription)
        .bind(&rg.name)
        .bind(&rg.location)
        .bind(&rg.tags)
        .bind(rg.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(exists.is_none())
    }

    async fn resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<Option<ResourceGroupRecord>, StorageError> {
        sqlx::query("SELECT * FROM resource_groups WHERE subscription_id = $1 AND name = $2")
            .bind(subscription)
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(rg_row)
            .transpose()
    }

    async fn resource_groups(
        &self,
        subscription: &str,
    ) -> Result<Vec<ResourceGroupRecord>, StorageError> {
        let rows =
            sqlx::query("SELECT * FROM resource_groups WHERE subscription_id = $1 ORDER BY name")
                .bind(subscription)
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(rg_row).collect()
    }

    async fn delete_resource_group(
        &self,
        subscription: &str,
        name: &str,
    ) -> Result<bool, StorageError> {
        let mut tx = self.write.begin().await?;
        // Everything in the group goes, as in ARM. The default registry never does: with it
        // inside, the group's own delete fails on the foreign key (the management layer
        // refuses earlier, with a clear error).
        sqlx::query(
            "DELETE FROM registries WHERE subscription_id = $1 AND resource_group = $2 AND is_default = 0",
        )
            .bind(subscription)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done =
            sqlx::query("DELETE FROM resource_groups WHERE subscription_id = $1 AND name = $2")
                .bind(subscription)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_registry(
        &self,
        r: &RegistryRecord,
    ) -> Result<CreateRegistryOutcome, StorageError> {
        let mut tx = self.write.begin().await?;
        let rg: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM resource_groups WHERE subscription_id = $1 AND name = $2",
        )
        .bind(&r.subscription)
        .bind(&r.resource_group)
        .fetch_optional(&mut *tx)
        .await?;
        if rg.is_none() {
            return Ok(CreateRegistryOutcome::NoResourceGroup);
        }
        let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM registries WHERE name = $1")
            .bind(&r.name)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Ok(CreateRegistryOutcome::NameTaken);
        }
        // Canonical casing of the group comes from the group itself.
        let row = sqlx::query(
            "INSERT INTO registries (name, is_default, subscription_id, resource_group, location, sku,
                                     properties, tags, created_at)
             SELECT $1, 0, subscription_id, name, $4, $5, $6, $7, $8 FROM resource_groups
              WHERE subscription_id = $2 AND name = $3
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
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CreateRegistryOutcome::Created(registry_row(&row)?))
    }

    async fn update_registry(&self, r: &RegistryRecord) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE registries SET location = $2, sku = $3, properties = $4, tags = $5 WHERE id = $1",
        )
        .bind(r.id)
        .bind(&r.location)
        .bind(&r.sku)
        .bind(&r.properties)
        .bind(&r.tags)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn registry(&self, id: i64) -> Result<Option<RegistryRecord>, StorageError> {
        sqlx::query("SELECT * FROM registries WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
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
            "SELECT * FROM registries WHERE subscription_id = $1 AND resource_group = $2 AND name = $3",
        )
        .bind(subscription)
        .bind(resource_group)
        .bind(name)
        .fetch_optional(&self.read)
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
              WHERE ($1 IS NULL OR subscription_id = $1) AND ($2 IS NULL OR resource_group = $2)
              ORDER BY name",
        )
        .bind(subscription)
        .bind(resource_group)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(registry_row).collect()
    }

    async fn delete_registry(&self, id: i64) -> Result<bool, StorageError> {
        // Repositories, manifests, tags and links go with it; blobs are left to GC.
        let done = sqlx::query("DELETE FROM registries WHERE id = $1 AND is_default = 0")
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_job(&self, job: &JobRecord, lease_ms: i64) -> Result<(), StorageError> {
        // Only constant fragments are formatted into the SQL.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO import_jobs (id, registry_id, request, resumable, status, progress, error,
                                      created_at, updated_at, owner, lease_until, lease_epoch)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {NOW} + $11, 0)"
        )))
        .bind(&job.id)
        .bind(job.registry_id)
        .bind(&job.request)
        .bind(job.resumable as i64)
        .bind(job.status.as_str())
        .bind(job.progress.to_text()?)
        .bind(job.error.as_ref().map(JobError::to_text).transpose()?)
        .bind(job.created_at)
        .bind(job.updated_at)
        .bind(&job.owner)
        .bind(lease_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn update_job(
        &self,
        fence: &JobFence,
        status: JobState,
        progress: &JobProgress,
        error: Option<&JobError>,
    ) -> Result<bool, StorageError> {
        let (progress, error) = (progress.to_text()?, error.map(JobError::to_text).transpose()?);
        // Only constant fragments are formatted into the SQL.
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE import_jobs SET status = $4, progress = $5, error = $6, updated_at = $7
              WHERE id = $1 AND owner = $2 AND lease_epoch = $3 AND status NOT IN {FINISHED}"
        )))
        .bind(&fence.id)
        .bind(&fence.owner)
        .bind(fence.epoch)
        .bind(status.as_str())
        .bind(progress)
        .bind(error)
        .bind(now_millis())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job(&self, id: &str) -> Result<Option<JobRecord>, StorageError> {
        sqlx::query("SELECT * FROM import_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StorageError> {
        // Only constant fragments are formatted into the SQL.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM import_jobs WHERE status NOT IN {FINISHED} ORDER BY created_at"
        )))
        .fetch_all(&self.read)
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
        let running = serde_json::to_string(running)
            .map_err(|e| StorageError::Corrupt(format!("job ids: {e}")))?;
        // Only constant fragments are formatted into the SQL.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE import_jobs SET owner = $1, lease_until = {NOW} + $2,
                                    lease_epoch = lease_epoch + 1
              WHERE status NOT IN {FINISHED}
                AND (owner IS NULL OR lease_until < {NOW} OR (owner = $1 AND $3))
                AND id NOT IN (SELECT value FROM json_each($4))
             RETURNING *"
        )))
        .bind(owner)
        .bind(lease_ms)
        .bind(restarted)
        .bind(running)
        .fetch_all(&self.write)
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
        let status: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
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
        .fetch_optional(&self.write)
        .await?;
        status.as_deref().map(JobState::parse).transpose()
    }

    async fn request_job_cancel(&self, id: &str) -> Result<bool, StorageError> {
        // Only constant fragments are formatted into the SQL.
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE import_jobs SET status = 'Canceling', updated_at = $2
              WHERE id = $1 AND status NOT IN {FINISHED}"
        )))
        .bind(id)
        .bind(now_millis())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_finished_jobs(&self, cutoff: i64) -> Result<u64, StorageError> {
        // Only constant fragments are formatted into the SQL.
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM import_jobs WHERE status IN {FINISHED} AND updated_at < $1"
        )))
        .bind(cutoff)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }
}
