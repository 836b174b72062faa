//! The writing transaction the shared SQL runs in, for the store this file is compiled into
//! (see [`crate::sql`]): each store's `write_tx_if` decides how (SQLite's one writer;
//! PostgreSQL's `SERIALIZABLE`, re-run whole on a conflict, so `f` may run more than once).

use futures::future::BoxFuture;

use super::{Conn, Store};
use crate::StorageError;
use crate::sql::{Scope, TxError};

impl Store {
    /// Run `f` in one writing transaction and commit.
    pub(crate) async fn write_tx<'a, T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'a,
        F: for<'c> Fn(&'c mut Conn, Scope<'c, 'a>) -> BoxFuture<'c, Result<T, TxError>>
            + Send
            + Sync,
    {
        self.write_tx_if(|conn, scope| {
            let run = f(conn, scope);
            Box::pin(async move { Ok((run.await?, true)) })
        })
        .await
    }
}
