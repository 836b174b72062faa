use std::io;

/// A storage failure. `Input` is the caller's stream failing (a client that went away);
/// everything else is the store's own fault.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("reading the request body failed: {0}")]
    Input(io::Error),
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}
