//! The SQL both metadata stores run, written once.
//!
//! Each file in this folder but this one is compiled twice: as a child module of
//! [`crate::sqlite`] and of [`crate::postgres`] (`#[path = "../sql/…"] mod …;`), where
//! `super::` names that store, its connection type `Conn`, its row type `DbRow` and its
//! `dialect` module. A query and the rule around it are written once and type-checked
//! against each driver. (A function generic over `sqlx::Database` would have to spell out
//! an `Encode + Type` bound for every type it binds and an `Executor` bound for every
//! call, on every function: Rust doesn't carry them over from a trait's where clauses.)
//!
//! The schemas are kept alike so that the SQL can be: case-insensitive names have a
//! `<col>_ci` twin in both (`lower(<col>)`; generated, stored in PostgreSQL, virtual in
//! SQLite), booleans bind as `bool`, times are integer milliseconds. What still differs
//! lives in each store's `dialect.rs`, with the same names on both sides:
//!
//! - lists bound as one value: PostgreSQL arrays (`unnest`, `= ANY`) or SQLite JSON
//!   (`json_each`);
//! - no `LIMIT`: `NULL` or `-1`; a listing's tags: an array or a joined string;
//! - row locks (`FOR SHARE`), which SQLite's single writer doesn't need;
//! - how a writing transaction runs ([`write_tx`](crate::SqliteMetadataStore)): SQLite's one
//!   writer connection, or PostgreSQL's `SERIALIZABLE` transactions retried on conflict.

pub(crate) mod gc_worklist;

use std::marker::PhantomData;
use std::str::FromStr;

use wharf_oci::Digest;

use crate::StorageError;
use crate::meta::ListOrder;

/// Ties the connection's borrow (`'c`) to the caller's data (`'a`) in `write_tx`'s
/// closures, so that they may capture references: `&'c &'a ()` implies `'a: 'c`.
pub(crate) type Scope<'c, 'a> = PhantomData<&'c &'a ()>;

/// A failure inside a writing transaction, kept as sqlx reported it until the store has
/// decided whether to run the transaction again.
pub(crate) enum TxError {
    Sql(sqlx::Error),
    Storage(StorageError),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Sql(e)
    }
}

impl From<StorageError> for TxError {
    fn from(e: StorageError) -> Self {
        TxError::Storage(e)
    }
}

impl From<TxError> for StorageError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Sql(e) => e.into(),
            TxError::Storage(e) => e,
        }
    }
}

/// A digest as stored (text), checked.
pub(crate) fn parse_digest(s: &str) -> Result<Digest, StorageError> {
    Digest::from_str(s).map_err(|e| StorageError::Corrupt(format!("stored digest {s:?}: {e}")))
}

/// The `ORDER BY` of a listing: by `name`, or by `time` with `name` breaking ties. Both are
/// constant column names, never input.
pub(crate) fn order_by(order: ListOrder, name: &'static str, time: &'static str) -> String {
    match order {
        ListOrder::Name => name.to_owned(),
        ListOrder::TimeDesc => format!("{time} DESC, {name}"),
        ListOrder::TimeAsc => format!("{time} ASC, {name}"),
    }
}
