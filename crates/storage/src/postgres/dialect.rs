//! What PostgreSQL says its own way (see [`crate::sql`]): lists are arrays (`unnest`,
//! `= ANY`), a listing's tags an `ARRAY(…)`, no limit is `NULL`, and a batch's job check
//! locks the job row. SQLite's `dialect.rs` has the same names.

use sqlx::PgPool;
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};

use crate::StorageError;
use crate::meta::BlobRef;
use crate::now_millis;
use crate::sql::TxError;

/// Whether the job committing a batch is still its node's (see `JobFence`), read in the
/// batch's own transaction and locked until it commits (`FOR SHARE`): a claim by another
/// node waits for the batch, or the batch sees its new epoch (claims write outside
/// serializable transactions, so a plain read wouldn't conflict with them).
pub(crate) const JOB_HELD: &str = "SELECT 1 FROM import_jobs WHERE id = $1 AND owner = $2
                          AND lease_epoch = $3 AND status NOT IN ('Succeeded', 'Failed', 'Canceled')
                          FOR SHARE";

/// A manifest's tags (beside `SUMMARY_COLUMNS`), in byte order.
pub(crate) const TAG_NAMES: &str = "ARRAY(SELECT t.name FROM tags t
           WHERE t.repo_id = m.repo_id AND t.digest = m.digest ORDER BY t.name) AS tag_names";

pub(crate) fn tag_names(r: &PgRow) -> Result<Vec<String>, StorageError> {
    Ok(r.try_get("tag_names")?)
}

/// The database's clock in ms: job leases are set and compared by it alone.
pub(crate) const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A job's id is not in the list `$4` ([`text_list`]).
pub(crate) const JOB_NOT_RUNNING: &str = "NOT (id = ANY($4))";

/// A list of strings as one bound value: an array.
pub(crate) fn text_list(items: &[String]) -> Result<&[String], StorageError> {
    Ok(items)
}

/// `LIMIT` for an optional limit (`NULL`: none).
pub(crate) fn sql_limit(limit: Option<u32>) -> Option<i64> {
    limit.map(i64::from)
}

/// Link blobs (each at most once in `digests`: an upsert can't touch a row twice in one
/// statement) into a repository, refreshing the links that exist.
pub(crate) async fn link_tx(
    conn: &mut PgConnection,
    repo_id: i64,
    digests: &[String],
) -> Result<(), TxError> {
    sqlx::query(
        "INSERT INTO repo_blobs (repo_id, digest, linked_at)
         SELECT $1, d, $2 FROM unnest($3::text[]) AS d
         ON CONFLICT (repo_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
    )
    .bind(repo_id)
    .bind(now_millis())
    .bind(digests)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The first of `digests` no blob is stored for.
pub(crate) async fn first_missing_blob(
    conn: &mut PgConnection,
    digests: &[String],
) -> Result<Option<String>, TxError> {
    Ok(sqlx::query_scalar(
        "SELECT j.d FROM unnest($1::text[]) WITH ORDINALITY AS j(d, ord)
          WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = j.d)
          ORDER BY j.ord LIMIT 1",
    )
    .bind(digests)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The first of a manifest's `blobs` that is required but not linked into the repository,
/// or linked with another size than declared: `(digest, declared, actual)` columns.
pub(crate) async fn first_bad_blob(
    conn: &mut PgConnection,
    repo_id: i64,
    blobs: &[BlobRef],
) -> Result<Option<PgRow>, TxError> {
    let digests: Vec<String> = blobs.iter().map(|b| b.digest.to_string()).collect();
    let sizes: Vec<i64> = blobs.iter().map(|b| b.size as i64).collect();
    let required: Vec<bool> = blobs.iter().map(|b| b.required).collect();
    Ok(sqlx::query(
        "SELECT w.digest, w.declared, b.size AS actual
           FROM unnest($2::text[], $3::int8[], $4::bool[])
                WITH ORDINALITY AS w(digest, declared, required, ord)
           LEFT JOIN repo_blobs l ON l.repo_id = $1 AND l.digest = w.digest
           LEFT JOIN blobs b ON b.digest = l.digest
          WHERE (b.size IS NULL AND w.required)
             OR (b.size IS NOT NULL AND b.size <> w.declared)
          ORDER BY w.ord LIMIT 1",
    )
    .bind(repo_id)
    .bind(&digests)
    .bind(&sizes)
    .bind(&required)
    .fetch_optional(&mut *conn)
    .await?)
}

/// A manifest's references `(target, kind, platform)`, in one statement, in order.
pub(crate) async fn insert_refs(
    conn: &mut PgConnection,
    repo_id: i64,
    manifest: &str,
    refs: &[(String, i64, Option<&str>)],
) -> Result<(), TxError> {
    let targets: Vec<&str> = refs.iter().map(|r| r.0.as_str()).collect();
    let kinds: Vec<i64> = refs.iter().map(|r| r.1).collect();
    let platforms: Vec<Option<&str>> = refs.iter().map(|r| r.2).collect();
    sqlx::query(
        "INSERT INTO manifest_refs (repo_id, manifest_digest, target, kind, platform, position)
         SELECT $1, $2, t.target, t.kind, t.platform, t.ord - 1
           FROM unnest($3::text[], $4::int8[], $5::text[])
                WITH ORDINALITY AS t(target, kind, platform, ord)
          ORDER BY t.ord
         ON CONFLICT DO NOTHING",
    )
    .bind(repo_id)
    .bind(manifest)
    .bind(&targets)
    .bind(&kinds)
    .bind(&platforms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The children `(manifest_digest, target, platform)` of the indexes `parents`.
pub(crate) async fn children_of(
    pool: &PgPool,
    repo_id: i64,
    parents: &[String],
) -> Result<Vec<PgRow>, StorageError> {
    Ok(sqlx::query(
        "SELECT manifest_digest, target, platform FROM manifest_refs
          WHERE repo_id = $1 AND kind = 1 AND manifest_digest = ANY($2)
          ORDER BY manifest_digest, position",
    )
    .bind(repo_id)
    .bind(parents)
    .fetch_all(pool)
    .await?)
}

/// GC's link pass over one batch of `(repo_id, digest)` candidates: links older than
/// `cutoff` no manifest of their repository references are dropped; links too young to
/// judge are looked at again when their grace is over; the rest leave the list.
pub(crate) async fn unlink_stale_links(
    conn: &mut PgConnection,
    cutoff: i64,
    batch: &[(i64, String)],
) -> Result<u64, TxError> {
    let (repos, digests): (Vec<i64>, Vec<String>) = batch.iter().cloned().unzip();
    let done = sqlx::query(
        "DELETE FROM repo_blobs l USING unnest($2::int8[], $3::text[]) AS b(r, d)
          WHERE l.repo_id = b.r AND l.digest = b.d AND l.linked_at < $1
            AND NOT EXISTS (SELECT 1 FROM manifest_refs m
                             WHERE m.repo_id = l.repo_id AND m.target = l.digest)",
    )
    .bind(cutoff)
    .bind(&repos)
    .bind(&digests)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE gc_candidates c SET since = l.linked_at
           FROM unnest($2::int8[], $3::text[]) AS b(r, d), repo_blobs l
          WHERE c.repo_id = b.r AND c.digest = b.d
            AND l.repo_id = b.r AND l.digest = b.d AND l.linked_at >= $1",
    )
    .bind(cutoff)
    .bind(&repos)
    .bind(&digests)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM gc_candidates c USING unnest($2::int8[], $3::text[]) AS b(r, d)
          WHERE c.repo_id = b.r AND c.digest = b.d AND c.since < $1",
    )
    .bind(cutoff)
    .bind(&repos)
    .bind(&digests)
    .execute(&mut *conn)
    .await?;
    Ok(done)
}

/// GC's blob pass over one batch: `young` blob candidates wait until their grace is over
/// (from when they were last touched), `settled` ones leave the list.
pub(crate) async fn settle_blob_candidates(
    conn: &mut PgConnection,
    young: &[String],
    settled: &[String],
) -> Result<(), TxError> {
    sqlx::query(
        "UPDATE gc_candidates c SET since = b.touched_at FROM blobs b
          WHERE c.repo_id = 0 AND c.digest = ANY($1) AND b.digest = c.digest",
    )
    .bind(young)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM gc_candidates WHERE repo_id = 0 AND digest = ANY($1)")
        .bind(settled)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
