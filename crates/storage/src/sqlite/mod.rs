//! The embedded metadata store: SQLite in WAL mode, one file under the data directory.
//!
//! Writes go through a pool of exactly one connection, so transactions never contend
//! for SQLite's single writer lock inside the process; reads use a separate pool and see
//! the last committed state (WAL snapshots). The data directory is locked by the server,
//! so no other process writes.

mod dialect;
// The SQL both stores share, compiled here for SQLite (see `crate::sql`).
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
use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::StorageError;
use crate::sql::{Scope, TxError};

/// What the shared SQL (`crate::sql`) runs on here.
type Store = SqliteMetadataStore;
type Conn = SqliteConnection;
type DbRow = sqlx::sqlite::SqliteRow;

/// How long a call waits for a connection or a lock before the store reports itself busy
/// (the HTTP layer answers 503 with `Retry-After`): long enough for any one transaction of
/// ours, short enough that a client isn't left hanging.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// SQLite-backed [`crate::MetadataStore`] and [`crate::ManagementStore`].
#[derive(Clone, Debug)]
pub struct SqliteMetadataStore {
    pub(crate) read: SqlitePool,
    pub(crate) write: SqlitePool,
}

impl SqliteMetadataStore {
    /// Open (creating and migrating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with(path, BUSY_WAIT).await
    }

    /// Open, waiting at most `busy` for a lock held elsewhere (another process, a checkpoint)
    /// or for the writer connection before reporting [`StorageError::Busy`].
    pub async fn open_with(path: &Path, busy: Duration) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a transaction that returned is durable, not only crash-consistent.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(busy);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            // A write waiting longer than this answers "busy" (503) rather than hang.
            .acquire_timeout(busy)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(busy)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteMetadataStore { read, write })
    }

    /// The pool reads run on: they see the last committed state (a WAL snapshot).
    fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// The one writer connection, for single-statement writes outside `write_tx`.
    fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// Run `f` in a transaction and commit if it says so (see `sql/tx.rs` `write_tx`):
    /// it returns its result and whether to commit (`false` rolls everything back).
    pub(crate) async fn write_tx_if<'a, T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send,
        F: for<'c> Fn(
                &'c mut SqliteConnection,
                Scope<'c, 'a>,
            ) -> BoxFuture<'c, Result<(T, bool), TxError>>
            + Send
            + Sync,
    {
        let mut tx = self.write.begin().await?;
        // Dropping an uncommitted transaction rolls it back.
        let (value, commit) = f(&mut tx, PhantomData).await?;
        if commit {
            tx.commit().await?;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;
    use crate::MetadataStore;

    #[tokio::test]
    async fn a_locked_database_is_busy_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wharf.db");
        let store =
            SqliteMetadataStore::open_with(&path, Duration::from_millis(200)).await.unwrap();
        // Another process holds the write lock.
        let mut other =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut other).await.unwrap();
        let d = wharf_oci::Digest::sha256_of(b"x");
        let err = store.add_blob(&d, 1, None).await.unwrap_err();
        assert!(err.is_busy(), "{err}");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        store.add_blob(&d, 1, None).await.unwrap();
    }
}
