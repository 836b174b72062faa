//! What both metadata stores ask of the GC work list (`gc_candidates`, fed by triggers in
//! each store's migrations): the same SQL in both dialects, written once. The stores differ
//! in how they run it (SQLite's one writer, PostgreSQL's retried serializable transactions).

/// Candidates GC looks at per transaction.
pub(crate) const GC_BATCH: i64 = 1000;

/// Links that became candidates before `$1`, at most `$2`: `(repo_id, digest)`.
pub(crate) const STALE_LINK_CANDIDATES: &str =
    "SELECT repo_id, digest FROM gc_candidates WHERE repo_id > 0 AND since < $1 LIMIT $2";

/// Blobs that became candidates before `$1`, at most `$2`, in `(since, digest)` order after
/// `($3, $4)`: `(digest, since, touched_at, still used)`.
pub(crate) const BLOB_CANDIDATES: &str = "SELECT c.digest, c.since, b.touched_at,
        EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = c.digest)
     OR EXISTS (SELECT 1 FROM manifest_refs m WHERE m.target = c.digest) AS used
   FROM gc_candidates c LEFT JOIN blobs b ON b.digest = c.digest
  WHERE c.repo_id = 0 AND c.since < $1 AND (c.since, c.digest) > ($3, $4)
  ORDER BY c.since, c.digest LIMIT $2";
