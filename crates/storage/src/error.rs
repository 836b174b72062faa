use std::io;

/// A storage failure: the store's own fault (a failing input stream is reported in
/// [`crate::Appended`] instead).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The store is overloaded right now (no connection free in time, the database is
    /// locked): nothing was changed, and the same call may succeed later.
    #[error("storage busy: {0}")]
    Busy(String),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The store can't be used as configured (a bad URL, credentials, a missing bucket).
    #[error("storage configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// Whether trying again later may succeed (the HTTP layer answers 503 + Retry-After).
    pub fn is_busy(&self) -> bool {
        matches!(self, StorageError::Busy(_))
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut => StorageError::Busy("no database connection free".into()),
            sqlx::Error::PoolClosed => StorageError::Busy("the database pool is closed".into()),
            // The connection to a database server failed (refused, reset, closed midway):
            // the server is down or restarting, which another try may find over.
            sqlx::Error::Io(io) => StorageError::Busy(format!("database connection: {io}")),
            // PostgreSQL says by SQLSTATE whether the condition is transient.
            sqlx::Error::Database(db)
                if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() =>
            {
                match db.code() {
                    Some(code) if postgres_transient(&code) => {
                        StorageError::Busy(db.message().to_owned())
                    }
                    _ => StorageError::Database(e),
                }
            }
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .and_then(|c| c.parse::<u32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6)) =>
            {
                StorageError::Busy(db.message().to_owned())
            }
            _ => StorageError::Database(e),
        }
    }
}

/// Whether a PostgreSQL SQLSTATE means "not now" rather than "never": the server is
/// unreachable, starting or shutting down, out of connections, a lock or the statement
/// timed out, or a transaction kept losing serialization conflicts.
fn postgres_transient(code: &str) -> bool {
    code.starts_with("08") // connection_exception and its subclasses
        || matches!(
            code,
            "40001" // serialization_failure (once the store's retries are exhausted)
                | "40P01" // deadlock_detected
                | "53300" // too_many_connections
                | "55P03" // lock_not_available
                | "57014" // query_canceled (statement_timeout)
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now
        )
}
