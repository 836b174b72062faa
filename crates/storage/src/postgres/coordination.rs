//! Cluster-wide locks on PostgreSQL: transaction-scoped advisory locks. A guard is an open
//! transaction holding `pg_advisory_xact_lock(hash of the name)`; dropping it rolls the
//! transaction back, which releases the lock, and a node that dies loses its connection,
//! which releases it too — so no lock outlives its holder and none needs a heartbeat.

use async_trait::async_trait;

use super::PostgresMetadataStore;
use crate::coordination::HeldLock;
use crate::{Coordination, LockGuard, StorageError};

/// A lock is its transaction: alive while a statement still runs on its connection.
#[async_trait]
impl HeldLock for sqlx::Transaction<'static, sqlx::Postgres> {
    async fn verify(&mut self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&mut **self).await.map_err(|e| {
            StorageError::Busy(format!("a cluster lock was lost with its connection: {e}"))
        })?;
        Ok(())
    }
}

/// How long [`Coordination::lock`] waits before the store reports itself busy (503): longer
/// than any one holder keeps a lock (a copy in the object store, a row), short enough that
/// a client isn't left hanging.
const LOCK_WAIT: &str = "30s";

/// How long a lock's transaction may sit idle before PostgreSQL ends its session, releasing
/// the lock: a holder runs a statement at least this often (it keeps a lock for less than
/// [`LOCK_WAIT`]), so only a node that froze (stopped, swapped out, partitioned with its
/// socket open) loses its locks, and it notices before publishing (`LockGuard::verify`).
/// Without it, a frozen node's lock holds every other node back for as long as it's frozen.
const LOCK_IDLE: &str = "30s";

/// A transaction for an advisory lock: bounded lock wait, no statement timeout (a lock wait
/// isn't a statement that should be cancelled), bounded idleness.
async fn lock_tx(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StorageError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', '0', true),
                set_config('idle_in_transaction_session_timeout', $2, true)",
    )
    .bind(LOCK_WAIT)
    .bind(LOCK_IDLE)
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

#[async_trait]
impl Coordination for PostgresMetadataStore {
    async fn lock(&self, key: &str) -> Result<LockGuard, StorageError> {
        let mut tx = lock_tx(&self.locks).await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(LockGuard::new(tx))
    }

    async fn try_lock(&self, key: &str) -> Result<Option<LockGuard>, StorageError> {
        let mut tx = lock_tx(&self.locks).await?;
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

    async fn reserve_sign_in(
        &self,
        keys: &[(String, u32)],
        now: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> Result<Option<i64>, StorageError> {
        // Keys in order (two nodes reserving the same keys lock them in the same order); a
        // key over its limit rolls the whole reservation back.
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup_by(|a, b| a.0 == b.0);
        let mut tx = self.pool.begin().await?;
        for (key, limit) in &keys {
            let (count, ends): (i32, i64) = sqlx::query_as(
                "INSERT INTO sign_in_failures AS f (key, count, since_ms, window_ms)
                 VALUES ($1, 1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET
                   count = CASE WHEN f.since_ms + f.window_ms <= $2 THEN 1 ELSE f.count + 1 END,
                   window_ms = CASE WHEN f.since_ms + f.window_ms > $2 THEN f.window_ms
                                    WHEN f.count >= $4 THEN LEAST(f.window_ms * 2, $5)
                                    ELSE $3 END,
                   since_ms = CASE WHEN f.since_ms + f.window_ms <= $2 THEN $2 ELSE f.since_ms END
                 RETURNING count, since_ms + window_ms",
            )
            .bind(key)
            .bind(now)
            .bind(base_ms)
            .bind(i64::from(*limit))
            .bind(max_ms)
            .fetch_one(&mut *tx)
            .await?;
            if i64::from(count) > i64::from(*limit) {
                tx.rollback().await?;
                return Ok(Some(ends));
            }
        }
        tx.commit().await?;
        // Windows that ended long ago are no use to anyone: the table holds about the
        // longest window's worth, however many names an attacker tries.
        sqlx::query(
            "DELETE FROM sign_in_failures WHERE key IN
               (SELECT key FROM sign_in_failures WHERE since_ms + window_ms <= $1
                 LIMIT 100 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now - max_ms)
        .execute(&self.pool)
        .await?;
        Ok(None)
    }

    async fn release_sign_in(&self, keys: &[String]) -> Result<(), StorageError> {
        let mut keys = keys.to_vec();
        keys.sort();
        // The rows locked in key order, as `reserve_sign_in` locks them (an UPDATE alone
        // locks in whatever order it finds them, and two nodes could deadlock).
        sqlx::query(
            "UPDATE sign_in_failures f SET count = GREATEST(f.count - 1, 0)
               FROM (SELECT key FROM sign_in_failures WHERE key = ANY($1)
                      ORDER BY key FOR UPDATE) s
              WHERE f.key = s.key",
        )
        .bind(&keys)
        .execute(&self.pool)
        .await?;
        Ok(())
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
