//! Cluster-wide locks on PostgreSQL: transaction-scoped advisory locks. A guard is an open
//! transaction holding `pg_advisory_xact_lock(hash of the name)`; dropping it rolls the
//! transaction back, which releases the lock, and a node that dies loses its connection,
//! which releases it too — so no lock outlives its holder and none needs a heartbeat.

use async_trait::async_trait;

use super::PostgresMetadataStore;
use crate::{Coordination, LockGuard, StorageError};

/// How long [`Coordination::lock`] waits before the store reports itself busy (503): longer
/// than any one holder keeps a lock (a copy in the object store, a row), short enough that
/// a client isn't left hanging.
const LOCK_WAIT: &str = "30s";

#[async_trait]
impl Coordination for PostgresMetadataStore {
    async fn lock(&self, key: &str) -> Result<LockGuard, StorageError> {
        let mut tx = self.locks.begin().await?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(LOCK_WAIT)
            .execute(&mut *tx)
            .await?;
        // A lock wait isn't a statement that should be cancelled by statement_timeout.
        sqlx::query("SELECT set_config('statement_timeout', '0', true)").execute(&mut *tx).await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(LockGuard::new(tx))
    }

    async fn try_lock(&self, key: &str) -> Result<Option<LockGuard>, StorageError> {
        let mut tx = self.locks.begin().await?;
        let (taken,): (bool,) =
            sqlx::query_as("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        Ok(taken.then(|| LockGuard::new(tx)))
    }

    async fn pause_upstream(&self, upstream: &str, until: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO upstream_pauses (upstream, until_ms) VALUES ($1, $2)
             ON CONFLICT (upstream) DO UPDATE SET until_ms = GREATEST(upstream_pauses.until_ms, excluded.until_ms)",
        )
        .bind(upstream)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upstream_paused_until(&self, upstream: &str) -> Result<Option<i64>, StorageError> {
        Ok(sqlx::query_scalar("SELECT until_ms FROM upstream_pauses WHERE upstream = $1")
            .bind(upstream)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn count_sign_in_failure(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> Result<(), StorageError> {
        // One statement, keys in order (two nodes counting the same keys lock them in the
        // same order), a window that ended starting over in place.
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        sqlx::query(
            "INSERT INTO sign_in_failures (key, count, since_ms)
             SELECT k, 1, $2 FROM unnest($1::text[]) AS k ORDER BY k
             ON CONFLICT (key) DO UPDATE SET
               count = CASE WHEN sign_in_failures.since_ms <= $3 THEN 1
                            ELSE sign_in_failures.count + 1 END,
               since_ms = CASE WHEN sign_in_failures.since_ms <= $3 THEN excluded.since_ms
                               ELSE sign_in_failures.since_ms END",
        )
        .bind(&keys)
        .bind(now)
        .bind(now - window_ms)
        .execute(&self.pool)
        .await?;
        // Windows that ended are no use to anyone: the table holds about one window's worth,
        // however many names an attacker tries. Rows another node holds are left to it.
        prune(&self.pool, "sign_in_failures", "since_ms", now - window_ms).await
    }

    async fn sign_in_failures(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> Result<Vec<(String, u32, i64)>, StorageError> {
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT key, count, since_ms FROM sign_in_failures
             WHERE key = ANY($1) AND since_ms > $2",
        )
        .bind(keys)
        .bind(now - window_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(k, n, since)| (k, u32::try_from(n).unwrap_or(0), since))
            .collect())
    }

    async fn access_version(&self) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar("SELECT version FROM access_version").fetch_one(&self.pool).await?)
    }

    async fn prove_download(&self, key: &str, now: i64, keep_ms: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO download_proofs (key, proven_ms) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET proven_ms = excluded.proven_ms",
        )
        .bind(key)
        .bind(now)
        .execute(&self.pool)
        .await?;
        prune(&self.pool, "download_proofs", "proven_ms", now - keep_ms).await?;
        // Claims a dead node left on downloads nobody asked for again.
        prune(&self.pool, "download_claims", "until_ms", now - keep_ms).await
    }

    async fn download_proven(&self, key: &str, since: i64) -> Result<bool, StorageError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM download_proofs WHERE key = $1 AND proven_ms > $2")
                .bind(key)
                .bind(since)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn claim_download(
        &self,
        key: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StorageError> {
        let held: Option<i32> = sqlx::query_scalar(
            "INSERT INTO download_claims (key, owner, until_ms) VALUES ($1, $2, $4)
             ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms
               WHERE download_claims.owner = excluded.owner OR download_claims.until_ms <= $3
             RETURNING 1",
        )
        .bind(key)
        .bind(owner)
        .bind(now)
        .bind(until)
        .fetch_optional(&self.pool)
        .await?;
        Ok(held.is_some())
    }

    async fn release_download(&self, key: &str, owner: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM download_claims WHERE key = $1 AND owner = $2")
            .bind(key)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Delete up to a batch of `table`'s rows whose `column` is at or before `cutoff`, skipping
/// rows other transactions hold (no waiting, no deadlock; the next call takes them).
async fn prune(
    pool: &sqlx::PgPool,
    table: &'static str,
    column: &'static str,
    cutoff: i64,
) -> Result<(), StorageError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE key IN
           (SELECT key FROM {table} WHERE {column} <= $1 LIMIT 100 FOR UPDATE SKIP LOCKED)"
    )))
    .bind(cutoff)
    .execute(pool)
    .await?;
    Ok(())
}
