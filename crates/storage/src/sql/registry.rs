//! [`MetadataStore`] for the store this file is compiled into (see [`crate::sql`]):
//! blobs, links, uploads, manifests, tags, listings and GC's work list.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;
use wharf_oci::{Digest, Reference, RepositoryName, Tag};

use super::commit::{commit_batch_tx, insert_manifest_tx, repo_id_tx};
use super::dialect::TAG_NAMES;
use super::rows::*;
use super::{DbRow, Store, dialect};
use crate::meta::*;
use crate::sql::gc_worklist::{BLOB_CANDIDATES, GC_BATCH, STALE_LINK_CANDIDATES};
use crate::sql::{order_by, parse_digest};
use crate::{StorageError, now_millis};

impl Store {
    /// The id of a repository that holds at least one manifest (what "exists" means to
    /// clients: uploads alone, or a last manifest deleted, leave an empty row behind).
    async fn listed_repo_id(&self, repo: &RepoKey) -> Result<Option<i64>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT r.id FROM repositories r
              WHERE r.registry_id = $1 AND r.name = $2
                AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)",
        )
        .bind(repo.registry)
        .bind(repo.name.as_str())
        .fetch_optional(self.reader())
        .await?)
    }

    async fn repo_id(&self, repo: &RepoKey) -> Result<Option<i64>, StorageError> {
        Ok(sqlx::query_scalar("SELECT id FROM repositories WHERE registry_id = $1 AND name = $2")
            .bind(repo.registry)
            .bind(repo.name.as_str())
            .fetch_optional(self.reader())
            .await?)
    }

    /// `columns` of the manifest `reference` names in `repo`, in one statement (one
    /// snapshot: a tag moving meanwhile can't make the lookup miss).
    async fn manifest_by_reference(
        &self,
        repo: &RepoKey,
        reference: &Reference,
        columns: &'static str,
    ) -> Result<Option<DbRow>, StorageError> {
        let (sql, key) = match reference {
            Reference::Digest(d) => (
                format!(
                    "SELECT {columns} FROM repositories r
                       JOIN manifests m ON m.repo_id = r.id
                      WHERE r.registry_id = $1 AND r.name = $2 AND m.digest = $3"
                ),
                d.to_string(),
            ),
            Reference::Tag(t) => (
                format!(
                    "SELECT {columns} FROM repositories r
                       JOIN tags t ON t.repo_id = r.id
                       JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest
                      WHERE r.registry_id = $1 AND r.name = $2 AND t.name = $3"
                ),
                t.as_str().to_owned(),
            ),
        };
        // Only constant fragments are formatted into the SQL.
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(repo.registry)
            .bind(repo.name.as_str())
            .bind(key)
            .fetch_optional(self.reader())
            .await?)
    }
}

#[async_trait]
impl MetadataStore for Store {
    async fn default_registry(&self) -> Result<RegistryRecord, StorageError> {
        let row = sqlx::query("SELECT * FROM registries WHERE is_default")
            .fetch_one(self.reader())
            .await?;
        registry_row(&row)
    }

    async fn registry_by_name(&self, name: &str) -> Result<Option<RegistryRecord>, StorageError> {
        sqlx::query("SELECT * FROM registries WHERE name_ci = lower($1)")
            .bind(name)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(registry_row)
            .transpose()
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        let size: Option<i64> = sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(self.reader())
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
        .fetch_optional(self.reader())
        .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn add_blob(
        &self,
        digest: &Digest,
        size: u64,
        repo: Option<&RepoKey>,
    ) -> Result<(), StorageError> {
        let digest = &digest.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO blobs (digest, size, touched_at) VALUES ($1, $2, $3)
                     ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
                )
                .bind(digest)
                .bind(size as i64)
                .bind(now_millis())
                .execute(&mut *conn)
                .await?;
                if let Some(repo) = repo {
                    let repo_id = repo_id_tx(conn, repo).await?;
                    dialect::link_tx(conn, repo_id, std::slice::from_ref(digest)).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn blob_in_registry(
        &self,
        registry: RegistryId,
        digest: &Digest,
    ) -> Result<Option<u64>, StorageError> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repo_blobs l
               JOIN repositories r ON r.id = l.repo_id
               JOIN blobs b ON b.digest = l.digest
              WHERE r.registry_id = $1 AND l.digest = $2 LIMIT 1",
        )
        .bind(registry)
        .bind(digest.to_string())
        .fetch_optional(self.reader())
        .await?;
        Ok(size.map(|s| s as u64))
    }

    async fn touch_blob(&self, digest: &Digest) -> Result<bool, StorageError> {
        let digest = &digest.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query("UPDATE blobs SET touched_at = $2 WHERE digest = $1")
                    .bind(digest)
                    .bind(now_millis())
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn link_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, StorageError> {
        let digest = &digest.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1")
                        .bind(digest)
                        .fetch_optional(&mut *conn)
                        .await?;
                if exists.is_none() {
                    return Ok(false);
                }
                let repo_id = repo_id_tx(conn, repo).await?;
                dialect::link_tx(conn, repo_id, std::slice::from_ref(digest)).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn unlink_blob(&self, repo: &RepoKey, digest: &Digest) -> Result<bool, StorageError> {
        let digest = &digest.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM repo_blobs WHERE digest = $3 AND repo_id =
                       (SELECT id FROM repositories WHERE registry_id = $1 AND name = $2)",
                )
                .bind(repo.registry)
                .bind(repo.name.as_str())
                .bind(digest)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let repo_id = repo_id_tx(conn, &upload.repo).await?;
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
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn upload(&self, id: Uuid) -> Result<Option<UploadRecord>, StorageError> {
        let Some(row) = sqlx::query(
            "SELECT u.size, u.hash_state, u.created_at, u.updated_at, r.registry_id, r.name
               FROM uploads u JOIN repositories r ON r.id = u.repo_id WHERE u.id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.reader())
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
        let id = &id.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE uploads SET size = $2, hash_state = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(size as i64)
                .bind(hash_state)
                .bind(now_millis())
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_upload(&self, id: Uuid) -> Result<(), StorageError> {
        let id = &id.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                sqlx::query("DELETE FROM uploads WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_upload_if_idle(&self, id: Uuid, cutoff: i64) -> Result<bool, StorageError> {
        let id = &id.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM uploads WHERE id = $1 AND updated_at < $2")
                    .bind(id)
                    .bind(cutoff)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn idle_uploads(&self, cutoff: i64) -> Result<Vec<Uuid>, StorageError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE updated_at < $1")
            .bind(cutoff)
            .fetch_all(self.reader())
            .await?;
        Ok(ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect())
    }

    async fn put_manifest(&self, put: &PutManifest) -> Result<PutManifestOutcome, StorageError> {
        self.write_tx_if(|conn, _| {
            Box::pin(async move {
                let outcome = insert_manifest_tx(conn, put).await?;
                // Anything but `Stored` stores nothing (not even the repository row).
                let commit = outcome == PutManifestOutcome::Stored;
                Ok((outcome, commit))
            })
        })
        .await
    }

    async fn commit_batch(&self, batch: &CommitBatch) -> Result<CommitOutcome, StorageError> {
        // One statement per repository rather than per link, each digest once (an upsert
        // can't touch a row twice in one statement).
        let mut by_repo: Vec<(&RepoKey, Vec<String>)> = Vec::new();
        for (repo, digest) in &batch.links {
            let digest = digest.to_string();
            match by_repo.iter_mut().find(|(r, _)| *r == repo) {
                Some((_, list)) => {
                    if !list.contains(&digest) {
                        list.push(digest);
                    }
                }
                None => by_repo.push((repo, vec![digest])),
            }
        }
        let by_repo = &by_repo;
        self.write_tx_if(|conn, _| {
            Box::pin(async move {
                let outcome = commit_batch_tx(conn, batch, by_repo).await?;
                let commit = outcome == CommitOutcome::Committed;
                Ok((outcome, commit))
            })
        })
        .await
    }

    async fn manifest(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, StorageError> {
        self.manifest_by_reference(repo, reference, "m.*")
            .await?
            .as_ref()
            .map(manifest_row)
            .transpose()
    }

    async fn manifest_meta(
        &self,
        repo: &RepoKey,
        reference: &Reference,
    ) -> Result<Option<ManifestMeta>, StorageError> {
        let Some(row) =
            self.manifest_by_reference(repo, reference, "m.digest, m.media_type, m.size").await?
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
        let digest = &digest.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                // Tags and references go with it (ON DELETE CASCADE).
                let done = sqlx::query(
                    "DELETE FROM manifests WHERE digest = $3 AND repo_id =
                       (SELECT id FROM repositories WHERE registry_id = $1 AND name = $2)",
                )
                .bind(repo.registry)
                .bind(repo.name.as_str())
                .bind(digest)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoKey, tag: &Tag) -> Result<bool, StorageError> {
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM tags WHERE name = $3 AND repo_id =
                       (SELECT id FROM repositories WHERE registry_id = $1 AND name = $2)",
                )
                .bind(repo.registry)
                .bind(repo.name.as_str())
                .bind(tag.as_str())
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn tags(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Option<Vec<String>>, StorageError> {
        let Some(repo_id) = self.listed_repo_id(repo).await? else {
            return Ok(None);
        };
        // Keyset pagination on the primary key (repo_id, name), byte order.
        let tags = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(dialect::sql_limit(limit))
        .fetch_all(self.reader())
        .await?;
        Ok(Some(tags))
    }

    async fn repositories(
        &self,
        registry: RegistryId,
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
        .bind(dialect::sql_limit(limit))
        .fetch_all(self.reader())
        .await?)
    }

    async fn referrers(
        &self,
        repo: &RepoKey,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<ReferrerRecord>, StorageError> {
        let Some(repo_id) = self.repo_id(repo).await? else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests m
              WHERE repo_id = $1 AND subject = $2 AND ($3 IS NULL OR artifact_type = $3)
                AND ($5 IS NULL OR (m.created_at, m.digest) >
                     (SELECT a.created_at, a.digest FROM manifests a
                       WHERE a.repo_id = $1 AND a.digest = $5))
              ORDER BY created_at, digest LIMIT $4",
        )
        .bind(repo_id)
        .bind(subject.to_string())
        .bind(artifact_type)
        .bind(i64::from(limit))
        .bind(after.map(|d| d.to_string()))
        .fetch_all(self.reader())
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

    async fn tag_records(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        limit: Option<u32>,
        order: ListOrder,
    ) -> Result<Option<Vec<TagRecord>>, StorageError> {
        let Some(repo_id) = self.listed_repo_id(repo).await? else {
            return Ok(None);
        };
        let order_by = order_by(order, "name", "updated_at");
        // Only constant fragments are formatted into the SQL.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT name, digest, created_at, updated_at FROM tags
              WHERE repo_id = $1 AND name > $2 ORDER BY {order_by} LIMIT $3"
        )))
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(dialect::sql_limit(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(tag_row).collect::<Result<Vec<_>, StorageError>>().map(Some)
    }

    async fn tag_record(
        &self,
        repo: &RepoKey,
        tag: &Tag,
    ) -> Result<Option<Option<TagRecord>>, StorageError> {
        let Some(repo_id) = self.listed_repo_id(repo).await? else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT name, digest, created_at, updated_at FROM tags WHERE repo_id = $1 AND name = $2",
        )
        .bind(repo_id)
        .bind(tag.as_str())
        .fetch_optional(self.reader())
        .await?;
        Ok(Some(row.as_ref().map(tag_row).transpose()?))
    }

    async fn manifest_listing(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        limit: Option<u32>,
        order: ListOrder,
    ) -> Result<Option<Vec<ManifestSummary>>, StorageError> {
        let Some(repo_id) = self.listed_repo_id(repo).await? else {
            return Ok(None);
        };
        let order_by = order_by(order, "m.digest", "m.created_at");
        // Only constant fragments are formatted into the SQL.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, {TAG_NAMES} FROM manifests m
              WHERE m.repo_id = $1 AND m.digest > $2
              ORDER BY {order_by} LIMIT $3"
        )))
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(dialect::sql_limit(limit))
        .fetch_all(self.reader())
        .await?;
        let mut out = rows.iter().map(summary_row).collect::<Result<Vec<_>, StorageError>>()?;
        // The children of the indexes on this page, in one query.
        let indexes: Vec<String> = out.iter().map(|m| m.digest.to_string()).collect();
        if !indexes.is_empty() {
            let refs = dialect::children_of(self.reader(), repo_id, &indexes).await?;
            let mut by_parent: std::collections::HashMap<String, Vec<(Digest, Option<String>)>> =
                std::collections::HashMap::new();
            for r in &refs {
                by_parent
                    .entry(r.try_get("manifest_digest")?)
                    .or_default()
                    .push((digest_col(r, "target")?, r.try_get("platform")?));
            }
            for m in &mut out {
                if let Some(children) = by_parent.remove(&m.digest.to_string()) {
                    m.references = children;
                }
            }
        }
        Ok(Some(out))
    }

    async fn manifest_summary(
        &self,
        repo: &RepoKey,
        digest: &Digest,
    ) -> Result<Option<Option<ManifestSummary>>, StorageError> {
        let Some(repo_id) = self.listed_repo_id(repo).await? else {
            return Ok(None);
        };
        // Only constant fragments are formatted into the SQL.
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, {TAG_NAMES} FROM manifests m
              WHERE m.repo_id = $1 AND m.digest = $2"
        )))
        .bind(repo_id)
        .bind(digest.to_string())
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(Some(None)) };
        let mut m = summary_row(&row)?;
        let refs = sqlx::query(
            "SELECT target, platform FROM manifest_refs
              WHERE repo_id = $1 AND manifest_digest = $2 AND kind = 1 ORDER BY position",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .fetch_all(self.reader())
        .await?;
        m.references = refs
            .iter()
            .map(|r| Ok((digest_col(r, "target")?, r.try_get("platform")?)))
            .collect::<Result<_, StorageError>>()?;
        Ok(Some(Some(m)))
    }

    async fn repository_summary(
        &self,
        repo: &RepoKey,
    ) -> Result<Option<RepositorySummary>, StorageError> {
        let Some(repo_id) = self.listed_repo_id(repo).await? else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM manifests WHERE repo_id = $1) AS manifests,
                    (SELECT MIN(created_at) FROM manifests WHERE repo_id = $1) AS created,
                    (SELECT MAX(created_at) FROM manifests WHERE repo_id = $1) AS pushed,
                    (SELECT COUNT(*) FROM tags WHERE repo_id = $1) AS tags,
                    (SELECT MAX(updated_at) FROM tags WHERE repo_id = $1) AS moved",
        )
        .bind(repo_id)
        .fetch_one(self.reader())
        .await?;
        let pushed: Option<i64> = row.try_get("pushed")?;
        let moved: Option<i64> = row.try_get("moved")?;
        Ok(Some(RepositorySummary {
            manifest_count: row.try_get::<i64, _>("manifests")? as u64,
            tag_count: row.try_get::<i64, _>("tags")? as u64,
            created_at: row.try_get::<Option<i64>, _>("created")?.unwrap_or(0),
            updated_at: pushed.max(moved).unwrap_or(0),
        }))
    }

    async fn delete_repository(
        &self,
        repo: &RepoKey,
    ) -> Result<Option<(Vec<Digest>, Vec<String>)>, StorageError> {
        let deleted = self
            .write_tx(|conn, _| {
                Box::pin(async move {
                    let Some(repo_id): Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM repositories WHERE registry_id = $1 AND name = $2",
                    )
                    .bind(repo.registry)
                    .bind(repo.name.as_str())
                    .fetch_optional(&mut *conn)
                    .await?
                    else {
                        return Ok(None);
                    };
                    let digests: Vec<String> = sqlx::query_scalar(
                        "SELECT digest FROM manifests WHERE repo_id = $1 ORDER BY digest",
                    )
                    .bind(repo_id)
                    .fetch_all(&mut *conn)
                    .await?;
                    let tags: Vec<String> = sqlx::query_scalar(
                        "SELECT name FROM tags WHERE repo_id = $1 ORDER BY name",
                    )
                    .bind(repo_id)
                    .fetch_all(&mut *conn)
                    .await?;
                    // Manifests, tags, references, links and uploads go with it (ON DELETE
                    // CASCADE).
                    sqlx::query("DELETE FROM repositories WHERE id = $1")
                        .bind(repo_id)
                        .execute(&mut *conn)
                        .await?;
                    Ok(Some((digests, tags)))
                })
            })
            .await?;
        let Some((digests, tags)) = deleted else { return Ok(None) };
        let digests = digests.iter().map(|d| parse_digest(d)).collect::<Result<_, _>>()?;
        Ok(Some((digests, tags)))
    }

    async fn unlink_stale_blobs(&self, cutoff: i64) -> Result<u64, StorageError> {
        // The links that became candidates before `cutoff` (gc_candidates, fed by
        // triggers), a batch per transaction: each is dropped if no manifest of its
        // repository references it, and leaves the list unless it is too young to judge.
        let mut removed = 0;
        loop {
            let (done, seen) = self
                .write_tx(|conn, _| {
                    Box::pin(async move {
                        let batch: Vec<(i64, String)> = sqlx::query_as(STALE_LINK_CANDIDATES)
                            .bind(cutoff)
                            .bind(GC_BATCH)
                            .fetch_all(&mut *conn)
                            .await?;
                        let done = dialect::unlink_stale_links(conn, cutoff, &batch).await?;
                        Ok((done, batch.len()))
                    })
                })
                .await?;
            removed += done;
            if (seen as i64) < GC_BATCH {
                return Ok(removed);
            }
        }
    }

    async fn unreferenced_blobs(&self, cutoff: i64) -> Result<Vec<Digest>, StorageError> {
        // The blob candidates older than `cutoff`, in (since, digest) order a batch per
        // transaction: those linked or referenced somewhere (or gone) leave the list, those
        // touched since wait for their grace period, the rest are garbage (listed until
        // forgotten).
        let mut garbage = Vec::new();
        let mut from = (i64::MIN, String::new());
        loop {
            let from_ref = &from;
            let (found, next) = self
                .write_tx(|conn, _| {
                    Box::pin(async move {
                        let batch: Vec<(String, i64, Option<i64>, bool)> =
                            sqlx::query_as(BLOB_CANDIDATES)
                                .bind(cutoff)
                                .bind(GC_BATCH)
                                .bind(from_ref.0)
                                .bind(&from_ref.1)
                                .fetch_all(&mut *conn)
                                .await?;
                        let (mut found, mut young, mut settled) =
                            (Vec::new(), Vec::new(), Vec::new());
                        for (digest, _, touched, used) in &batch {
                            match touched {
                                Some(t) if !used && *t >= cutoff => young.push(digest.clone()),
                                Some(_) if !used => found.push(digest.clone()),
                                _ => settled.push(digest.clone()),
                            }
                        }
                        dialect::settle_blob_candidates(conn, &young, &settled).await?;
                        let next = match batch.last() {
                            Some((digest, since, ..)) if batch.len() as i64 == GC_BATCH => {
                                Some((*since, digest.clone()))
                            }
                            _ => None,
                        };
                        Ok((found, next))
                    })
                })
                .await?;
            for d in found {
                garbage.push(parse_digest(&d)?);
            }
            match next {
                Some(n) => from = n,
                None => return Ok(garbage),
            }
        }
    }

    async fn forget_blob_if_unreferenced(
        &self,
        digest: &Digest,
        cutoff: i64,
    ) -> Result<bool, StorageError> {
        let digest = &digest.to_string();
        self.write_tx(|conn, _| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM blobs WHERE digest = $1 AND touched_at < $2
                        AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = blobs.digest)
                        AND NOT EXISTS (SELECT 1 FROM manifest_refs m WHERE m.target = blobs.digest)",
                )
                .bind(digest)
                .bind(cutoff)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }
}

/// What a [`ManifestSummary`] reads of a manifest row (never `content`); its tags are
/// `dialect::TAG_NAMES`.
const SUMMARY_COLUMNS: &str = "m.digest, m.media_type, m.size, m.blob_bytes, m.created_at,
    m.artifact_type, m.platform, m.config_media_type";

fn summary_row(r: &DbRow) -> Result<ManifestSummary, StorageError> {
    Ok(ManifestSummary {
        digest: digest_col(r, "digest")?,
        media_type: r.try_get("media_type")?,
        size: r.try_get::<i64, _>("size")? as u64,
        blob_bytes: r.try_get::<i64, _>("blob_bytes")? as u64,
        created_at: r.try_get("created_at")?,
        artifact_type: r.try_get("artifact_type")?,
        platform: r.try_get("platform")?,
        config_media_type: r.try_get("config_media_type")?,
        tags: dialect::tag_names(r)?,
        references: Vec::new(),
    })
}
