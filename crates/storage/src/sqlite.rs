//! The embedded metadata store: SQLite in WAL mode, one file under the data directory.
//!
//! Writes go through a pool of exactly one connection, so transactions never contend
//! for SQLite's single writer lock inside the process; reads use a separate pool and see
//! the last committed state (WAL snapshots). The data directory is locked by the server,
//! so no other process writes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;
use wharf_oci::{Digest, Reference, RepositoryName, Tag};

use crate::meta::*;
use crate::{StorageError, now_millis};

/// SQLite-backed [`MetadataStore`].
#[derive(Clone, Debug)]
pub struct SqliteMetadataStore {
    read: SqlitePool,
    write: SqlitePool,
}

const KIND_BLOB: i64 = 0;
const KIND_MANIFEST: i64 = 1;

impl SqliteMetadataStore {
    /// Open (creating and migrating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a transaction that returned is durable, not only crash-consistent.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let write =
            SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteMetadataStore { read, write })
    }

    /// An in-memory-like store in a temp file, for tests.
    pub async fn open_in(dir: &Path) -> Result<Self, StorageError> {
        Self::open(&dir.join("wharf.db")).await
    }
}

fn digest_col(row: &SqliteRow, col: &str) -> Result<Digest, StorageError> {
    let s: String = row.try_get(col)?;
    Digest::from_str(&s).map_err(|e| StorageError::Corrupt(format!("stored digest {s:?}: {e}")))
}

fn opt_digest_col(row: &SqliteRow, col: &str) -> Result<Option<Digest>, StorageError> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| {
        Digest::from_str(&s).map_err(|e| StorageError::Corrupt(format!("stored digest {s:?}: {e}")))
    })
    .transpose()
}

fn registry_row(row: &SqliteRow) -> Result<RegistryRecord, StorageError> {
    Ok(RegistryRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        is_default: row.try_get::<i64, _>("is_default")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

/// The id of a repository, creating it when `create`.
async fn repo_id_tx(tx: &mut Transaction<'_, Sqlite>, repo: &RepoKey) -> Result<i64, StorageError> {
    sqlx::query(
        "INSERT INTO repositories (registry_id, name, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (registry_id, name) DO NOTHING",
    )
    .bind(repo.registry)
    .bind(repo.name.as_str())
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    let id = sqlx::query_scalar("SELECT id FROM repositories WHERE registry_id = $1 AND name = $2")
        .bind(repo.registry)
        .bind(repo.name.as_str())
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

impl SqliteMetadataStore {
    async fn repo_id(&self, repo: &RepoKey) -> Result<Option<i64>, StorageError> {
        Ok(sqlx::query_scalar("SELECT id FROM repositories WHERE registry_id = $1 AND name = $2")
            .bind(repo.registry)
            .bind(repo.name.as_str())
            .fetch_optional(&self.read)
            .await?)
    }

    /// The digest a reference resolves to in a repository.
    async fn resolve(
        &self,
        repo_id: i64,
        reference: &Reference,
    ) -> Result<Option<String>, StorageError> {
        Ok(match reference {
            Reference::Digest(d) => Some(d.to_string()),
            Reference::Tag(t) => {
                sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                    .bind(repo_id)
                    .bind(t.as_str())
                    .fetch_optional(&self.read)
                    .await?
            }
        })
    }
}

#[async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn default_registry(&self) -> Result<RegistryRecord, StorageError> {
        let row = sqlx::query("SELECT * FROM registries WHERE is_default = 1")
            .fetch_one(&self.read)
            .await?;
        registry_row(&row)
    }

    async fn registry_by_name(&self, name: &str) -> Result<Option<RegistryRecord>, StorageError> {
        sqlx::query("SELECT * FROM registries WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(registry_row)
            .transpose()
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        let size: Option<i64> = sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn linked_blob_size(
        &self,
        repo: &RepoKey,
        digest: &Digest,
    ) -> Result<Option<u64>, StorageError> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repo_blobs l
               JOIN repositories r ON r.id = l.repo_id
               JOIN blobs b ON b.digest = l.digest
              WHERE r.registry_id = $1 AND r.name = $2 AND l.digest = $3",
        )
        .bind(repo.registry)
        .bind(repo.name.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn add_blob(
        &self,
        digest: &Digest,
        size: u64,
        repo: &RepoKey,
    ) -> Result<(), StorageError> {
        let now = now_millis();
        let mut tx = self.write.begin().await?;
        let repo_id = repo_id_tx(&mut tx, repo).await?;
        sqlx::query(
            "INSERT INTO blobs (digest, size, touched_at) VALUES ($1, $2, $3)
             ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO repo_blobs (repo_id, digest, linked_at) VALUES ($1, $2, $3)
             ON CONFLICT (repo_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch_blob(&self, digest: &Digest) -> Result<bool, StorageError> {
        let done = sqlx::query("UPDATE blobs SET touched_at = $2 WHERE digest = $1")
            .bind(digest.to_string())
            .bind(now_millis())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn link_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, StorageError> {
        let mut tx = self.write.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let repo_id = repo_id_tx(&mut tx, repo).await?;
        sqlx::query(
            "INSERT INTO repo_blobs (repo_id, digest, linked_at) VALUES ($1, $2, $3)
             ON CONFLICT (repo_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn unlink_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "DELETE FROM repo_blobs WHERE digest = $3 AND repo_id =
               (SELECT id FROM repositories WHERE registry_id = $1 AND name = $2)",
        )
        .bind(repo.registry)
        .bind(repo.name.as_str())
        .bind(digest.to_string())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StorageError> {
        let mut tx = self.write.begin().await?;
        let repo_id = repo_id_tx(&mut tx, &upload.repo).await?;
        sqlx::query(
            "INSERT INTO uploads (id, repo_id, size, hash_state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(upload.id.to_string())
        .bind(repo_id)
        .bind(upload.size as i64)
        .bind(&upload.hash_state)
        .bind(upload.created_at)
        .bind(upload.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn upload(&self, id: Uuid) -> Result<Option<UploadRecord>, StorageError> {
        let Some(row) = sqlx::query(
            "SELECT u.*, r.registry_id, r.name FROM uploads u
               JOIN repositories r ON r.id = u.repo_id WHERE u.id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        let name: String = row.try_get("name")?;
        Ok(Some(UploadRecord {
            id,
            repo: RepoKey {
                registry: row.try_get("registry_id")?,
                name: RepositoryName::parse(&name)
                    .map_err(|e| StorageError::Corrupt(e.to_string()))?,
            },
            size: row.try_get::<i64, _>("size")? as u64,
            hash_state: row.try_get("hash_state")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }

    async fn update_upload(
        &self,
        id: Uuid,
        size: u64,
        hash_state: &[u8],
    ) -> Result<(), StorageError> {
        sqlx::query("UPDATE uploads SET size = $2, hash_state = $3, updated_at = $4 WHERE id = $1")
            .bind(id.to_string())
            .bind(size as i64)
            .bind(hash_state)
            .bind(now_millis())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn delete_upload(&self, id: Uuid) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn idle_uploads(&self, cutoff: i64) -> Result<Vec<Uuid>, StorageError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE updated_at < $1")
            .bind(cutoff)
            .fetch_all(&self.read)
            .await?;
        Ok(ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect())
    }

    async fn put_manifest(&self, put: &PutManifest) -> Result<PutManifestOutcome, StorageError> {
        let mut tx = self.write.begin().await?;
        let repo_id = repo_id_tx(&mut tx, &put.repo).await?;

        for blob in &put.blobs {
            let size: Option<i64> = sqlx::query_scalar(
                "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
                  WHERE l.repo_id = $1 AND l.digest = $2",
            )
            .bind(repo_id)
            .bind(blob.digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            match size {
                None if blob.required => {
                    return Ok(PutManifestOutcome::BlobUnknown(blob.digest.clone()));
                }
                Some(actual) if actual as u64 != blob.size => {
                    return Ok(PutManifestOutcome::SizeMismatch {
                        digest: blob.digest.clone(),
                        declared: blob.size,
                        actual: actual as u64,
                    });
                }
                _ => {}
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
            .fetch_optional(&mut *tx)
            .await?;
            match size {
                None => return Ok(PutManifestOutcome::ManifestUnknown(child.digest.clone())),
                Some(actual) if actual as u64 != child.size => {
                    return Ok(PutManifestOutcome::SizeMismatch {
                        digest: child.digest.clone(),
                        declared: child.size,
                        actual: actual as u64,
                    });
                }
                _ => {}
            }
        }

        let rec = &put.record;
        let digest = rec.digest.to_string();
        sqlx::query(
            "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (repo_id, digest) DO NOTHING",
        )
        .bind(repo_id)
        .bind(&digest)
        .bind(&rec.media_type)
        .bind(&rec.artifact_type)
        .bind(rec.subject.as_ref().map(|d| d.to_string()))
        .bind(&rec.annotations)
        .bind(rec.content.len() as i64)
        .bind(rec.content.as_ref())
        .bind(rec.created_at)
        .execute(&mut *tx)
        .await?;
        let refs = put
            .blobs
            .iter()
            .map(|b| (b, KIND_BLOB))
            .chain(put.children.iter().map(|c| (c, KIND_MANIFEST)));
        for (r, kind) in refs {
            sqlx::query(
                "INSERT INTO manifest_refs (repo_id, manifest_digest, target, kind)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(&digest)
            .bind(r.digest.to_string())
            .bind(kind)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(tag) = &put.tag {
            sqlx::query(
                "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repo_id, name) DO UPDATE
                   SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo_id)
            .bind(tag.as_str())
            .bind(&digest)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(PutManifestOutcome::Stored)
    }

    async fn manifest(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, StorageError> {
        let Some(repo_id) = self.repo_id(repo).await? else {
            return Ok(None);
        };
        let Some(digest) = self.resolve(repo_id, reference).await? else {
            return Ok(None);
        };
        let Some(row) = sqlx::query("SELECT * FROM manifests WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(&digest)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(ManifestRecord {
            digest: digest_col(&row, "digest")?,
            media_type: row.try_get("media_type")?,
            content: Bytes::from(row.try_get::<Vec<u8>, _>("content")?),
            artifact_type: row.try_get("artifact_type")?,
            subject: opt_digest_col(&row, "subject")?,
            annotations: row.try_get("annotations")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn manifest_meta(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<Option<ManifestMeta>, StorageError> {
        let Some(repo_id) = self.repo_id(repo).await? else {
            return Ok(None);
        };
        let Some(digest) = self.resolve(repo_id, reference).await? else {
            return Ok(None);
        };
        let Some(row) = sqlx::query(
            "SELECT digest, media_type, size FROM manifests WHERE repo_id = $1 AND digest = $2",
        )
        .bind(repo_id)
        .bind(&digest)
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(ManifestMeta {
            digest: digest_col(&row, "digest")?,
            media_type: row.try_get("media_type")?,
            size: row.try_get::<i64, _>("size")? as u64,
        }))
    }

    async fn delete_manifest(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, StorageError> {
        // Tags and references go with it (ON DELETE CASCADE).
        let done = sqlx::query(
            "DELETE FROM manifests WHERE digest = $3 AND repo_id =
               (SELECT id FROM repositories WHERE registry_id = $1 AND name = $2)",
        )
        .bind(repo.registry)
        .bind(repo.name.as_str())
        .bind(digest.to_string())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tag(&self, repo: &RepoKey, tag: &Tag) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "DELETE FROM tags WHERE name = $3 AND repo_id =
               (SELECT id FROM repositories WHERE registry_id = $1 AND name = $2)",
        )
        .bind(repo.registry)
        .bind(repo.name.as_str())
        .bind(tag.as_str())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn tags(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Option<Vec<String>>, StorageError> {
        let Some(repo_id) = self.repo_id(repo).await? else {
            return Ok(None);
        };
        let has_manifests: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo_id = $1 LIMIT 1")
                .bind(repo_id)
                .fetch_optional(&self.read)
                .await?;
        if has_manifests.is_none() {
            return Ok(None);
        }
        let tags = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(limit.map(i64::from).unwrap_or(-1))
        .fetch_all(&self.read)
        .await?;
        Ok(Some(tags))
    }

    async fn repositories(
        &self,
        registry: i64,
        last: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT r.name FROM repositories r
              WHERE r.registry_id = $1 AND r.name > $2
                AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)
              ORDER BY r.name LIMIT $3",
        )
        .bind(registry)
        .bind(last.unwrap_or(""))
        .bind(limit.map(i64::from).unwrap_or(-1))
        .fetch_all(&self.read)
        .await?)
    }

    async fn referrers(
        &self,
        repo: &RepoKey,
        subject: &Digest,
    ) -> Result<Vec<ReferrerRecord>, StorageError> {
        let Some(repo_id) = self.repo_id(repo).await? else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
              WHERE repo_id = $1 AND subject = $2 ORDER BY created_at, digest",
        )
        .bind(repo_id)
        .bind(subject.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReferrerRecord {
                    digest: digest_col(row, "digest")?,
                    media_type: row.try_get("media_type")?,
                    size: row.try_get::<i64, _>("size")? as u64,
                    artifact_type: row.try_get("artifact_type")?,
                    annotations: row.try_get("annotations")?,
                })
            })
            .collect()
    }

    async fn unlink_stale_blobs(&self, cutoff: i64) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "DELETE FROM repo_blobs WHERE linked_at < $1 AND NOT EXISTS (
                SELECT 1 FROM manifest_refs m
                 WHERE m.repo_id = repo_blobs.repo_id AND m.target = repo_blobs.digest)",
        )
        .bind(cutoff)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn unreferenced_blobs(&self, cutoff: i64) -> Result<Vec<Digest>, StorageError> {
        let rows = sqlx::query(
            "SELECT digest FROM blobs b WHERE touched_at < $1
                AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest)
                AND NOT EXISTS (SELECT 1 FROM manifest_refs m WHERE m.target = b.digest)",
        )
        .bind(cutoff)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| digest_col(r, "digest")).collect()
    }

    async fn forget_blob_if_unreferenced(
        &self,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "DELETE FROM blobs WHERE digest = $1 AND touched_at < $2
                AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = blobs.digest)
                AND NOT EXISTS (SELECT 1 FROM manifest_refs m WHERE m.target = blobs.digest)",
        )
        .bind(digest.to_string())
        .bind(cutoff)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
