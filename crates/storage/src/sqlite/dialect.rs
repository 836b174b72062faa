//! What SQLite says its own way (see [`crate::sql`]): lists are JSON arrays read with
//! `json_each`, a listing's tags a `group_concat`, no limit is `-1`, and no row is locked
//! (the one writer connection serialises every writing transaction). PostgreSQL's
//! `dialect.rs` has the same names.

use sqlx::Row as _;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::StorageError;
use crate::meta::BlobRef;
use crate::now_millis;
use crate::sql::TxError;

/// Whether the job committing a batch is still its node's (see `JobFence`), read in the
/// batch's own transaction.
pub(crate) const JOB_HELD: &str = "SELECT 1 FROM import_jobs WHERE id = $1 AND owner = $2
                          AND lease_epoch = $3 AND status NOT IN ('Succeeded', 'Failed', 'Canceled')";

/// A manifest's tags (beside `SUMMARY_COLUMNS`), one per line; [`tag_names`] sorts them.
pub(crate) const TAG_NAMES: &str = "(SELECT group_concat(t.name, char(10)) FROM tags t
      WHERE t.repo_id = m.repo_id AND t.digest = m.digest) AS tag_names";

/// [`TAG_NAMES`] in byte order (tag names never hold a newline).
pub(crate) fn tag_names(r: &SqliteRow) -> Result<Vec<String>, StorageError> {
    let names: Option<String> = r.try_get("tag_names")?;
    let mut tags: Vec<String> =
        names.map(|n| n.split('\n').map(str::to_owned).collect()).unwrap_or_default();
    tags.sort();
    Ok(tags)
}

/// The database's clock in ms: job leases are set and compared by it alone.
pub(crate) const NOW: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// A job's id is not in the list `$4` ([`text_list`]).
pub(crate) const JOB_NOT_RUNNING: &str = "id NOT IN (SELECT value FROM json_each($4))";

/// A list of strings as one bound value: a JSON array.
pub(crate) fn text_list(items: &[String]) -> Result<String, StorageError> {
    json(items)
}

/// `LIMIT` for an optional limit (`-1`: none).
pub(crate) fn sql_limit(limit: Option<u32>) -> i64 {
    limit.map(i64::from).unwrap_or(-1)
}

/// A list as one bound value: a JSON array, for `json_each`.
fn json<T: serde::Serialize + ?Sized>(items: &T) -> Result<String, StorageError> {
    serde_json::to_string(items).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// Link blobs (each at most once in `digests`) into a repository, refreshing the links
/// that exist.
pub(crate) async fn link_tx(
    conn: &mut SqliteConnection,
    repo_id: i64,
    digests: &[String],
) -> Result<(), TxError> {
    // `WHERE true`: an upsert's SELECT needs a WHERE for SQLite to parse `ON CONFLICT`.
    sqlx::query(
        "INSERT INTO repo_blobs (repo_id, digest, linked_at)
         SELECT $1, j.value, $2 FROM json_each($3) j WHERE true
         ON CONFLICT (repo_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
    )
    .bind(repo_id)
    .bind(now_millis())
    .bind(json(digests)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The first of `digests` no blob is stored for.
pub(crate) async fn first_missing_blob(
    conn: &mut SqliteConnection,
    digests: &[String],
) -> Result<Option<String>, TxError> {
    Ok(sqlx::query_scalar(
        "SELECT j.value FROM json_each($1) j
          WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = j.value)
          ORDER BY j.key LIMIT 1",
    )
    .bind(json(digests)?)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The first of a manifest's `blobs` that is required but not linked into the repository,
/// or linked with another size than declared: `(digest, declared, actual)` columns.
pub(crate) async fn first_bad_blob(
    conn: &mut SqliteConnection,
    repo_id: i64,
    blobs: &[BlobRef],
) -> Result<Option<SqliteRow>, TxError> {
    let wanted: Vec<(String, u64, bool)> =
        blobs.iter().map(|b| (b.digest.to_string(), b.size, b.required)).collect();
    Ok(sqlx::query(
        "SELECT j.value ->> '$[0]' AS digest, j.value ->> '$[1]' AS declared, b.size AS actual
           FROM json_each($2) j
           LEFT JOIN repo_blobs l ON l.repo_id = $1 AND l.digest = j.value ->> '$[0]'
           LEFT JOIN blobs b ON b.digest = l.digest
          WHERE (b.size IS NULL AND j.value ->> '$[2]')
             OR (b.size IS NOT NULL AND b.size != j.value ->> '$[1]')
          ORDER BY j.key LIMIT 1",
    )
    .bind(repo_id)
    .bind(json(&wanted)?)
    .fetch_optional(&mut *conn)
    .await?)
}

/// A manifest's references `(target, kind, platform)`, in one statement, in order.
pub(crate) async fn insert_refs(
    conn: &mut SqliteConnection,
    repo_id: i64,
    manifest: &str,
    refs: &[(String, i64, Option<&str>)],
) -> Result<(), TxError> {
    sqlx::query(
        "INSERT INTO manifest_refs (repo_id, manifest_digest, target, kind, platform, position)
         SELECT $1, $2, j.value ->> '$[0]', j.value ->> '$[1]', j.value ->> '$[2]', j.key
           FROM json_each($3) j WHERE true
         ON CONFLICT DO NOTHING",
    )
    .bind(repo_id)
    .bind(manifest)
    .bind(json(refs)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The children `(manifest_digest, target, platform)` of the indexes `parents`.
pub(crate) async fn children_of(
    pool: &SqlitePool,
    repo_id: i64,
    parents: &[String],
) -> Result<Vec<SqliteRow>, StorageError> {
    Ok(sqlx::query(
        "SELECT manifest_digest, target, platform FROM manifest_refs
          WHERE repo_id = $1 AND kind = 1
            AND manifest_digest IN (SELECT value FROM json_each($2))
          ORDER BY manifest_digest, position",
    )
    .bind(repo_id)
    .bind(json(parents)?)
    .fetch_all(pool)
    .await?)
}

/// `(repo_id, digest)` pairs of the JSON array `$2`.
const PAIRS: &str = "SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]')
                       FROM json_each($2) j";

/// GC's link pass over one batch of `(repo_id, digest)` candidates: links older than
/// `cutoff` no manifest of their repository references are dropped; links too young to
/// judge are looked at again when their grace is over; the rest leave the list.
pub(crate) async fn unlink_stale_links(
    conn: &mut SqliteConnection,
    cutoff: i64,
    batch: &[(i64, String)],
) -> Result<u64, TxError> {
    let pairs = json(batch)?;
    // Only the constant `PAIRS` is formatted into the SQL.
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM repo_blobs WHERE linked_at < $1 AND (repo_id, digest) IN ({PAIRS})
            AND NOT EXISTS (SELECT 1 FROM manifest_refs m
                             WHERE m.repo_id = repo_blobs.repo_id
                               AND m.target = repo_blobs.digest)"
    )))
    .bind(cutoff)
    .bind(&pairs)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE gc_candidates SET since =
                (SELECT l.linked_at FROM repo_blobs l
                  WHERE l.repo_id = gc_candidates.repo_id AND l.digest = gc_candidates.digest)
          WHERE (repo_id, digest) IN ({PAIRS})
            AND EXISTS (SELECT 1 FROM repo_blobs l
                         WHERE l.repo_id = gc_candidates.repo_id
                           AND l.digest = gc_candidates.digest AND l.linked_at >= $1)"
    )))
    .bind(cutoff)
    .bind(&pairs)
    .execute(&mut *conn)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM gc_candidates WHERE since < $1 AND (repo_id, digest) IN ({PAIRS})"
    )))
    .bind(cutoff)
    .bind(&pairs)
    .execute(&mut *conn)
    .await?;
    Ok(done)
}

/// GC's blob pass over one batch: `young` blob candidates wait until their grace is over
/// (from when they were last touched), `settled` ones leave the list.
pub(crate) async fn settle_blob_candidates(
    conn: &mut SqliteConnection,
    young: &[String],
    settled: &[String],
) -> Result<(), TxError> {
    sqlx::query(
        "UPDATE gc_candidates
            SET since = (SELECT b.touched_at FROM blobs b WHERE b.digest = gc_candidates.digest)
          WHERE repo_id = 0 AND digest IN (SELECT value FROM json_each($1))",
    )
    .bind(json(young)?)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM gc_candidates WHERE repo_id = 0 AND digest IN (SELECT value FROM json_each($1))",
    )
    .bind(json(settled)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
