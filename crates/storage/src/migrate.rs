//! Moving an embedded store's metadata into PostgreSQL (`wharf migrate`): every row of
//! every table, as stored — ids, timestamps, manifest bytes, hashed secrets — so that a
//! cluster reading the copy answers exactly what the embedded server answered.
//!
//! The copy works on tables, not through the store traits: the traits create records
//! (new ids, `created_at` = now, tags moved at now), and a migration must keep them as they
//! were. Columns are matched by name between the two schemas, and each value converted by
//! the PostgreSQL column's type; a column on one side only fails the copy, so a schema
//! change that forgets the other store is caught by the contract suite rather than losing
//! data. Upload sessions in progress are not copied (their bytes live in the old blob
//! store; clients start them again), nor is GC's work list (`gc_candidates`): the target's
//! triggers fill it from the copied links and blobs, so the first pass there looks at
//! everything once.
//!
//! The whole copy is one PostgreSQL transaction: it happens completely or not at all, and a
//! run that was interrupted is simply run again.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Connection, Row};
use wharf_oci::Digest;

use crate::{PostgresMetadataStore, SqliteMetadataStore, StorageError};

/// The tables copied, parents before children (the order foreign keys need).
pub const TABLES: &[&str] = &[
    "subscriptions",
    "resource_groups",
    "registries",
    "repositories",
    "blobs",
    "repo_blobs",
    "manifests",
    "manifest_refs",
    "tags",
    "import_jobs",
    "tenants",
    "principals",
    "credentials",
    "role_definitions",
    "role_assignments",
    "signing_keys",
    "scope_maps",
    "registry_tokens",
    "registry_token_passwords",
];

/// Rows of what a fresh database holds: the default subscription, resource group and
/// registry that the schema's first migration creates.
const SEED: &[(&str, u64)] = &[("subscriptions", 1), ("resource_groups", 1), ("registries", 1)];

/// Tables whose `id` is an identity column, continued after the copied ids (SQLite's
/// AUTOINCREMENT never reuses an id, nor may PostgreSQL after the move).
const IDENTITY_TABLES: &[&str] = &["registries", "repositories"];

/// Rows per table.
pub type RowCounts = BTreeMap<&'static str, u64>;

/// What the target database holds, as seen before a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// No wharf schema yet: the copy will create it.
    NoSchema,
    /// The schema and nothing but what a fresh database has.
    Fresh,
    /// Exactly as many rows in every table as the source: a copy already made.
    SameAsSource,
    /// Anything else: data of its own (nodes have run on it, or another server's copy).
    Holds(RowCounts),
}

/// What [`copy_metadata`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Every table copied: the rows of each.
    Copied(RowCounts),
    /// The target already held a copy of the source; nothing written.
    AlreadyCopied,
    /// The target holds data of its own; nothing written.
    TargetNotEmpty(RowCounts),
}

/// A value in transit, typed by its PostgreSQL column.
enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    fn size(&self) -> usize {
        match self {
            Value::Text(Some(s)) => s.len(),
            Value::Bytes(Some(b)) => b.len(),
            _ => 8,
        }
    }
}

/// How a PostgreSQL column's values are read from SQLite.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int,
    Bool,
    Text,
    Bytes,
}

impl SqliteMetadataStore {
    /// Rows in each table [`copy_metadata`] copies.
    pub async fn table_counts(&self) -> Result<RowCounts, StorageError> {
        let mut counts = RowCounts::new();
        let mut conn = self.read.acquire().await?;
        for table in TABLES {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *conn)
                .await?;
            counts.insert(table, n as u64);
        }
        Ok(counts)
    }

    /// Every blob the metadata records, with its size: what a blob store must hold for this
    /// metadata to be whole.
    pub async fn recorded_blobs(&self) -> Result<Vec<(Digest, u64)>, StorageError> {
        let rows = sqlx::query("SELECT digest, size FROM blobs ORDER BY digest")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("digest")?;
                let size: i64 = r.try_get("size")?;
                let d = Digest::from_str(&s)
                    .map_err(|e| StorageError::Corrupt(format!("stored digest {s:?}: {e}")))?;
                Ok((d, size as u64))
            })
            .collect()
    }
}

/// What the database at `url` holds, read without changing it (for a dry run: no schema
/// is created).
pub async fn target_state(url: &str, source: &RowCounts) -> Result<TargetState, StorageError> {
    let connect = PgConnectOptions::from_str(url)?.application_name("wharf migrate");
    let mut conn = PgConnection::connect_with(&connect).await?;
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('registries')::text").fetch_one(&mut conn).await?;
    let state = match exists {
        None => TargetState::NoSchema,
        Some(_) => state_of(&mut conn, source).await?,
    };
    let _ = conn.close().await;
    Ok(state)
}

async fn state_of(
    conn: &mut PgConnection,
    source: &RowCounts,
) -> Result<TargetState, StorageError> {
    let mut counts = RowCounts::new();
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut *conn)
            .await?;
        counts.insert(table, n as u64);
    }
    let uploads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM uploads").fetch_one(&mut *conn).await?;
    let fresh = uploads == 0
        && counts.iter().all(|(table, n)| {
            *n == SEED.iter().find(|(t, _)| t == table).map_or(0, |(_, rows)| *rows)
        });
    Ok(if fresh {
        TargetState::Fresh
    } else if &counts == source {
        TargetState::SameAsSource
    } else {
        TargetState::Holds(counts)
    })
}

/// Copy every table of `source` into `target`, in one transaction, if `target` is fresh
/// (its schema and default records only, which the copy replaces). `source` must not
/// change meanwhile (the caller holds the data directory's lock); it is read in one
/// snapshot anyway.
pub async fn copy_metadata(
    source: &SqliteMetadataStore,
    target: &PostgresMetadataStore,
) -> Result<CopyOutcome, StorageError> {
    let source_counts = source.table_counts().await?;
    let mut pg = target.pool.begin().await?;
    // One long transaction: no statement timeout, and nobody else writes meanwhile (a node
    // started on the target too early waits, then finds the copy).
    sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *pg).await?;
    let lock = format!("LOCK TABLE {} IN EXCLUSIVE MODE", TABLES.join(", "));
    sqlx::query(AssertSqlSafe(lock)).execute(&mut *pg).await?;
    match state_of(&mut pg, &source_counts).await? {
        TargetState::Fresh | TargetState::NoSchema => {}
        TargetState::SameAsSource => return Ok(CopyOutcome::AlreadyCopied),
        TargetState::Holds(counts) => return Ok(CopyOutcome::TargetNotEmpty(counts)),
    }
    // The default records go; the source's own (the same ids and names, their real
    // creation times and properties) replace them.
    for table in ["registries", "resource_groups", "subscriptions"] {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut *pg).await?;
    }

    let mut lite = source.read.begin().await?;
    let mut copied = RowCounts::new();
    for table in TABLES {
        let columns = matched_columns(&mut lite, &mut pg, table).await?;
        let n = copy_table(&mut lite, &mut pg, table, &columns).await?;
        copied.insert(table, n);
    }
    for table in IDENTITY_TABLES {
        let max_id: Option<i64> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(id) FROM {table}")))
                .fetch_one(&mut *lite)
                .await?;
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
            .bind(table)
            .fetch_optional(&mut *lite)
            .await?
            .flatten();
        let last = max_id.unwrap_or(0).max(seq.unwrap_or(0));
        sqlx::query("SELECT setval(pg_get_serial_sequence($1, 'id'), $2, $3)")
            .bind(*table)
            .bind(last.max(1))
            .bind(last > 0)
            .execute(&mut *pg)
            .await?;
    }
    drop(lite);
    pg.commit().await?;
    Ok(CopyOutcome::Copied(copied))
}

/// The columns of `table` to copy, with how to read each: every column PostgreSQL stores
/// (not the generated ones), which SQLite must have too, and SQLite must have no other.
async fn matched_columns(
    lite: &mut sqlx::SqliteConnection,
    pg: &mut PgConnection,
    table: &str,
) -> Result<Vec<(String, Kind)>, StorageError> {
    let pg_columns = sqlx::query(
        "SELECT column_name::text AS name, data_type::text AS ty, is_generated::text AS generated
           FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = $1
          ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *pg)
    .await?;
    let lite_columns: BTreeSet<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(table)
            .fetch_all(&mut *lite)
            .await?
            .into_iter()
            .collect();
    let mut columns = Vec::new();
    let mut generated = BTreeSet::new();
    for row in &pg_columns {
        let name: String = row.try_get("name")?;
        let ty: String = row.try_get("ty")?;
        let gen_kind: String = row.try_get("generated")?;
        if gen_kind != "NEVER" {
            generated.insert(name);
            continue;
        }
        let kind = match ty.as_str() {
            "bigint" | "integer" | "smallint" => Kind::Int,
            "boolean" => Kind::Bool,
            "text" | "character varying" => Kind::Text,
            "bytea" => Kind::Bytes,
            other => {
                return Err(StorageError::Corrupt(format!(
                    "{table}.{name}: no conversion for PostgreSQL type {other}"
                )));
            }
        };
        if !lite_columns.contains(&name) {
            return Err(StorageError::Corrupt(format!(
                "{table}.{name} exists in PostgreSQL but not in the embedded store"
            )));
        }
        columns.push((name, kind));
    }
    if let Some(extra) = lite_columns
        .iter()
        .find(|c| !columns.iter().any(|(n, _)| n == *c) && !generated.contains(*c))
    {
        return Err(StorageError::Corrupt(format!(
            "{table}.{extra} exists in the embedded store but not in PostgreSQL"
        )));
    }
    Ok(columns)
}

/// Rows per INSERT, and bytes: big enough to be quick, small enough to bound memory (a
/// manifest may be 4 MiB) and the statement's parameters (at most 65 535).
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 16 << 20;

async fn copy_table(
    lite: &mut sqlx::SqliteConnection,
    pg: &mut PgConnection,
    table: &str,
    columns: &[(String, Kind)],
) -> Result<u64, StorageError> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let select = format!("SELECT {} FROM {table} ORDER BY rowid", names.join(", "));
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut *lite);
    let mut batch: Vec<Vec<Value>> = Vec::new();
    let mut batch_bytes = 0;
    let mut copied = 0u64;
    while let Some(row) = rows.try_next().await? {
        let values = read_row(&row, columns)?;
        batch_bytes += values.iter().map(Value::size).sum::<usize>();
        batch.push(values);
        if batch.len() >= BATCH_ROWS || batch_bytes >= BATCH_BYTES {
            copied += insert(pg, table, &names, std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        copied += insert(pg, table, &names, batch).await?;
    }
    Ok(copied)
}

fn read_row(row: &SqliteRow, columns: &[(String, Kind)]) -> Result<Vec<Value>, StorageError> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            Ok(match kind {
                Kind::Int => Value::Int(row.try_get(i)?),
                Kind::Bool => Value::Bool(row.try_get::<Option<i64>, _>(i)?.map(|v| v != 0)),
                Kind::Text => Value::Text(row.try_get(i)?),
                Kind::Bytes => Value::Bytes(row.try_get(i)?),
            })
        })
        .collect()
}

async fn insert(
    pg: &mut PgConnection,
    table: &str,
    names: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<u64, StorageError> {
    let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "INSERT INTO {table} ({}) ",
        names.join(", ")
    ));
    q.push_values(rows, |mut b, row| {
        for v in row {
            match v {
                Value::Int(x) => b.push_bind(x),
                Value::Bool(x) => b.push_bind(x),
                Value::Text(x) => b.push_bind(x),
                Value::Bytes(x) => b.push_bind(x),
            };
        }
    });
    Ok(q.build().execute(&mut *pg).await?.rows_affected())
}
