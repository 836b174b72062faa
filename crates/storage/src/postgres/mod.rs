//! The scale-out metadata store: PostgreSQL, shared by every wharf node of a deployment.
//!
//! Same observable behaviour as [`crate::SqliteMetadataStore`]; the schema is
//! `migrations/postgres`, applied at open under sqlx's advisory lock, so nodes starting
//! together migrate once.
//!
//! # Concurrency
//!
//! SQLite serialises writers; PostgreSQL doesn't, and several nodes write at once. Every
//! method that writes is one transaction at `SERIALIZABLE` isolation ([`PostgresMetadataStore`]'s
//! `write_tx`), retried whole on a serialization failure (`40001`) or deadlock (`40P01`)
//! with jittered backoff. PostgreSQL guarantees that committed serializable transactions
//! have the effect of *some* serial order, which is exactly what the single SQLite writer
//! gave: checks that read and then write (a manifest's blobs and children, a batch's links,
//! GC's "unreferenced" tests, a registry's free name, tag moves) can't interleave with a
//! write that invalidates them — one of the two is rolled back and re-run, and then sees
//! the other's result. This is used instead of explicit row locks because the conflicting
//! reads are mostly of rows that *don't* exist yet (a missing reference, a free name),
//! which `FOR UPDATE` can't lock. Retries exhausted, the call reports
//! [`StorageError::Busy`]. Reads run outside transactions, one statement at a time, and see
//! committed state only, as SQLite's read pool does.

mod coordination;
mod dialect;
// The SQL both stores share, compiled here for PostgreSQL (see `crate::sql`).
#[allow(clippy::duplicate_mod)]
#[path = "../sql/commit.rs"]
mod commit;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/identity.rs"]
mod identity;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/management.rs"]
mod management;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/registry.rs"]
mod registry;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/rows.rs"]
mod rows;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/tx.rs"]
mod tx;

use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::StorageError;
pub(crate) use crate::sql::{Scope, TxError};

/// What the shared SQL (`crate::sql`) runs on here.
type Store = PostgresMetadataStore;
type Conn = PgConnection;
type DbRow = sqlx::postgres::PgRow;

/// How a [`PostgresMetadataStore`] uses its database.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections this node keeps at most.
    pub max_connections: u32,
    /// How long a call waits for a free connection (or for a new one to be established)
    /// before the store reports itself busy (the HTTP layer answers 503).
    pub acquire_timeout: Duration,
    /// The server aborts any statement running longer (`statement_timeout`); the call then
    /// reports busy rather than hang on a lock.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// PostgreSQL-backed [`crate::MetadataStore`], [`crate::ManagementStore`] and
/// [`crate::IdentityStore`]. Cloning shares the connection pool.
#[derive(Clone, Debug)]
pub struct PostgresMetadataStore {
    pub(crate) pool: PgPool,
    /// Connections holding cluster-wide locks ([`crate::Coordination`]): a pool of their
    /// own, so that holders of locks never wait for a connection that lock waiters hold.
    locks: PgPool,
}

/// How often a writing transaction is tried before the store reports itself busy.
const MAX_ATTEMPTS: u32 = 10;

/// Whether re-running the whole transaction may succeed: it lost a serialization
/// conflict or a deadlock, and PostgreSQL rolled it back.
fn is_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40001") | Some("40P01")))
}

impl PostgresMetadataStore {
    /// Connect to the database at `url` (a `postgres://` URL) and migrate it if needed.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self, StorageError> {
        let connect = PgConnectOptions::from_str(url)?.application_name("wharf");
        // Migrations run on a connection of their own, without the statement timeout:
        // waiting for another node's migration (the advisory lock) or a long one is fine.
        // A server that never answers is as busy as one that refuses.
        let mut conn =
            tokio::time::timeout(options.acquire_timeout, PgConnection::connect_with(&connect))
                .await
                .map_err(|_| StorageError::Busy("no answer from the database server".into()))??;
        sqlx::migrate!("./migrations/postgres").run(&mut conn).await?;
        // Best effort: the migration is committed whether or not the goodbye arrives.
        let _ = conn.close().await;

        let timeout_ms = options.statement_timeout.as_millis().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let timeout_ms = timeout_ms.clone();
                Box::pin(async move {
                    sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                        .bind(timeout_ms)
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(connect.clone())
            .await?;
        let locks = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        Ok(PostgresMetadataStore { pool, locks })
    }

    /// The pool reads run on, one statement at a time.
    fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// The pool single-statement writes outside `write_tx` run on (job leases: see
    /// `claim_jobs`).
    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Close every connection, waiting for the calls using one to finish (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
        self.locks.close().await;
    }

    /// Run `f` in a transaction and commit if it says so (see `sql/tx.rs` `write_tx`):
    /// it returns its result and whether to commit (`false` rolls everything back).
    pub(crate) async fn write_tx_if<'a, T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send,
        F: for<'c> Fn(
                &'c mut PgConnection,
                Scope<'c, 'a>,
            ) -> BoxFuture<'c, Result<(T, bool), TxError>>
            + Send
            + Sync,
    {
        let mut attempt = 1;
        loop {
            let err = match self.try_tx(&f).await {
                Ok(value) => return Ok(value),
                Err(TxError::Sql(e)) if is_conflict(&e) && attempt < MAX_ATTEMPTS => e,
                Err(e) => return Err(e.into()),
            };
            tracing::debug!(attempt, error = %err, "serialization conflict, retrying");
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn try_tx<'a, T, F>(&self, f: &F) -> Result<T, TxError>
    where
        F: for<'c> Fn(
                &'c mut PgConnection,
                Scope<'c, 'a>,
            ) -> BoxFuture<'c, Result<(T, bool), TxError>>
            + Send
            + Sync,
    {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
        match f(&mut tx, PhantomData).await {
            Ok((value, true)) => {
                tx.commit().await?;
                Ok(value)
            }
            Ok((value, false)) => {
                // Nothing is stored whether or not the rollback gets through (a connection
                // that broke takes its transaction with it).
                let _ = tx.rollback().await;
                Ok(value)
            }
            Err(e) => {
                // Release the locks now rather than when the connection is next used; a
                // broken connection is discarded by the pool either way.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

/// Full-jitter exponential backoff: up to 2 ms before the second try, doubling, at most
/// 100 ms, so that two nodes that conflicted don't meet again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let ceiling = (2u64 << attempt.min(6)).min(100);
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_micros(random % (ceiling * 1000 + 1))
}
