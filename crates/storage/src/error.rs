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
