//! What `put_manifest` and `commit_batch` run inside their transaction, for the store
//! this file is compiled into (see [`crate::sql`]): the checks of a manifest's references,
//! then its rows, its tag, and a batch's links, all or nothing.

use sqlx::Row;
use wharf_oci::{Digest, Tag};

use super::rows::*;
use super::{Conn, dialect};
use crate::meta::*;
use crate::now_millis;
use crate::sql::{TxError, parse_digest};

const KIND_BLOB: i64 = 0;
const KIND_MANIFEST: i64 = 1;

/// The id of a repository, creating it if needed.
pub(super) async fn repo_id_tx(conn: &mut Conn, repo: &RepoKey) -> Result<i64, TxError> {
    // Look first: `INSERT … ON CONFLICT` would spend an identity value on every call.
    let found: Option<i64> =
        sqlx::query_scalar("SELECT id FROM repositories WHERE registry_id = $1 AND name = $2")
            .bind(repo.registry)
            .bind(repo.name.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = found {
        return Ok(id);
    }
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO repositories (registry_id, name, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (registry_id, name) DO NOTHING RETURNING id",
    )
    .bind(repo.registry)
    .bind(repo.name.as_str())
    .bind(now_millis())
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => Ok(sqlx::query_scalar(
            "SELECT id FROM repositories WHERE registry_id = $1 AND name = $2",
        )
        .bind(repo.registry)
        .bind(repo.name.as_str())
        .fetch_one(&mut *conn)
        .await?),
    }
}

async fn move_tag_tx(
    conn: &mut Conn,
    repo_id: i64,
    tag: &Tag,
    digest: &Digest,
) -> Result<(), TxError> {
    sqlx::query(
        "INSERT INTO tags (repo_id, name, digest, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (repo_id, name) DO UPDATE
           SET digest = excluded.digest, updated_at = excluded.updated_at
           WHERE tags.digest <> excluded.digest",
    )
    .bind(repo_id)
    .bind(tag.as_str())
    .bind(digest.to_string())
    .bind(now_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn commit_batch_tx(
    conn: &mut Conn,
    batch: &CommitBatch,
    by_repo: &[(&RepoKey, Vec<String>)],
) -> Result<CommitOutcome, TxError> {
    if let Some(fence) = &batch.fence {
        let held: Option<i32> = sqlx::query_scalar(dialect::JOB_HELD)
            .bind(&fence.id)
            .bind(&fence.owner)
            .bind(fence.epoch)
            .fetch_optional(&mut *conn)
            .await?;
        if held.is_none() {
            return Ok(CommitOutcome::Fenced);
        }
    }
    for (repo, digests) in by_repo {
        let missing = dialect::first_missing_blob(conn, digests).await?;
        if let Some(d) = missing {
            return Ok(CommitOutcome::BlobMissing(parse_digest(&d)?));
        }
        let repo_id = repo_id_tx(conn, repo).await?;
        dialect::link_tx(conn, repo_id, digests).await?;
    }
    for put in &batch.manifests {
        let outcome = insert_manifest_tx(conn, put).await?;
        if outcome != PutManifestOutcome::Stored {
            return Ok(CommitOutcome::Manifest {
                repo: put.repo.clone(),
                digest: put.record.digest.clone(),
                outcome,
            });
        }
    }
    for (repo, tag, digest) in &batch.tags {
        let repo_id = repo_id_tx(conn, repo).await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(repo_id)
                .bind(tag.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(current) = current
            && !batch.force
            && current != digest.to_string()
        {
            return Ok(CommitOutcome::TagExists {
                repo: (*repo).clone(),
                tag: tag.clone(),
                current: parse_digest(&current)?,
            });
        }
        move_tag_tx(conn, repo_id, tag, digest).await?;
    }
    Ok(CommitOutcome::Committed)
}

/// Why a manifest can't be stored, if it can't: a blob it names isn't linked into the
/// repository (or has another size), or a child manifest isn't in it.
async fn check_references(
    conn: &mut Conn,
    repo_id: i64,
    put: &PutManifest,
) -> Result<Option<PutManifestOutcome>, TxError> {
    if !put.blobs.is_empty() {
        // Every blob in one query (a manifest may have thousands): the first missing one,
        // or the first whose stored size differs from the declared one.
        let bad = dialect::first_bad_blob(conn, repo_id, &put.blobs).await?;
        if let Some(row) = bad {
            let digest = digest_col(&row, "digest")?;
            let declared = row.try_get::<i64, _>("declared")? as u64;
            return Ok(Some(match row.try_get::<Option<i64>, _>("actual")? {
                None => PutManifestOutcome::BlobUnknown(digest),
                Some(actual) => {
                    PutManifestOutcome::SizeMismatch { digest, declared, actual: actual as u64 }
                }
            }));
        }
    }
    for child in &put.children {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT size FROM manifests WHERE repo_id = $1 AND digest = $2
             UNION ALL
             SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
              WHERE l.repo_id = $1 AND l.digest = $2
             LIMIT 1",
        )
        .bind(repo_id)
        .bind(child.digest.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        match size {
            None => return Ok(Some(PutManifestOutcome::ManifestUnknown(child.digest.clone()))),
            Some(actual) if actual as u64 != child.size => {
                return Ok(Some(PutManifestOutcome::SizeMismatch {
                    digest: child.digest.clone(),
                    declared: child.size,
                    actual: actual as u64,
                }));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Check a manifest's references and store it (and its tag) inside the transaction.
pub(super) async fn insert_manifest_tx(
    conn: &mut Conn,
    put: &PutManifest,
) -> Result<PutManifestOutcome, TxError> {
    let repo_id = repo_id_tx(conn, &put.repo).await?;
    if let Some(refused) = check_references(conn, repo_id, put).await? {
        return Ok(refused);
    }

    let rec = &put.record;
    let digest = rec.digest.to_string();
    sqlx::query(
        "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations,
                                platform, blob_bytes, size, content, created_at, config_media_type)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (repo_id, digest) DO NOTHING",
    )
    .bind(repo_id)
    .bind(&digest)
    .bind(&rec.media_type)
    .bind(&rec.artifact_type)
    .bind(rec.subject.as_ref().map(|d| d.to_string()))
    .bind(&rec.annotations)
    .bind(&rec.platform)
    .bind(rec.blob_bytes as i64)
    .bind(rec.content.len() as i64)
    .bind(rec.content.as_ref())
    .bind(rec.created_at)
    .bind(&rec.config_media_type)
    .execute(&mut *conn)
    .await?;
    // Its references in one statement, in order (children keep their index position).
    let refs = put
        .blobs
        .iter()
        .map(|b| (b, KIND_BLOB))
        .chain(put.children.iter().map(|c| (c, KIND_MANIFEST)));
    let refs: Vec<(String, i64, Option<&str>)> =
        refs.map(|(r, kind)| (r.digest.to_string(), kind, r.platform.as_deref())).collect();
    if !refs.is_empty() {
        dialect::insert_refs(conn, repo_id, &digest, &refs).await?;
    }
    if let Some(tag) = &put.tag {
        move_tag_tx(conn, repo_id, tag, &rec.digest).await?;
    }
    Ok(PutManifestOutcome::Stored)
}
