//! Garbage collection: blobs nothing uses any more, and abandoned uploads.
//!
//! Safe while pushes go on:
//! - a grace period protects blobs that were just pushed and await their manifest;
//! - a blob's row is removed only in a transaction that re-checks that nothing links to
//!   or references it, so a manifest PUT either sees the blob (and references it first)
//!   or fails cleanly with MANIFEST_BLOB_UNKNOWN;
//! - the bytes are deleted under the digest lock that blob commits take, so a concurrent
//!   push of the same content can't have its fresh copy removed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use wharf_storage::now_millis;

use crate::{RegistryError, RegistryService};

/// How old a health probe's upload session must be before GC takes it for a leftover.
const PROBE_LEFTOVER: Duration = Duration::from_secs(600);

/// Blobs of the store a GC pass checks for a row.
const ORPHAN_PAGE: usize = 4096;

/// A random place to start the scan for orphaned bytes: a server that restarts often still
/// covers the whole store over time.
pub(crate) fn random_cursor() -> Arc<Mutex<Option<wharf_oci::Digest>>> {
    let random = wharf_oci::Digest::sha256_of(uuid::Uuid::new_v4().as_bytes());
    Arc::new(Mutex::new(Some(random)))
}

/// How careful a GC pass is.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Blobs pushed or linked more recently than this are kept even if unreferenced.
    pub grace: Duration,
    /// Upload sessions idle for longer than this are abandoned.
    pub upload_ttl: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { grace: Duration::from_secs(3600), upload_ttl: Duration::from_secs(24 * 3600) }
    }
}

/// What a GC pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub links_removed: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub uploads_removed: u64,
}

impl RegistryService {
    /// One garbage-collection pass; in a cluster, after any pass another node is running.
    pub async fn gc(&self, options: GcOptions) -> Result<GcReport, RegistryError> {
        let _here = self.locks.gc.lock().await;
        let _lease = match &self.locks.cluster {
            Some(cluster) => Some(cluster.lock("gc").await?),
            None => None,
        };
        self.gc_pass(options).await
    }

    /// One garbage-collection pass, unless another node of the cluster is running one
    /// (then `None`): what the background schedule on every node calls.
    pub async fn gc_unless_running(
        &self,
        options: GcOptions,
    ) -> Result<Option<GcReport>, RegistryError> {
        let Ok(_here) = self.locks.gc.try_lock() else { return Ok(None) };
        let _lease = match &self.locks.cluster {
            Some(cluster) => match cluster.try_lock("gc").await? {
                Some(lease) => Some(lease),
                None => return Ok(None),
            },
            None => None,
        };
        self.gc_pass(options).await.map(Some)
    }

    async fn gc_pass(&self, options: GcOptions) -> Result<GcReport, RegistryError> {
        let mut report = GcReport::default();
        let now = now_millis();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.collect_unreferenced(now.saturating_sub(ms(options.grace)), &mut report).await?;
        self.collect_orphans(options.grace, &mut report).await?;
        self.collect_idle_uploads(now.saturating_sub(ms(options.upload_ttl)), &mut report).await?;
        self.collect_stray_upload_data(options.upload_ttl, &mut report).await?;
        if report != GcReport::default() {
            tracing::info!(?report, "garbage collection");
        }
        Ok(report)
    }

    /// Links no manifest needs and blobs nothing links or references, older than `cutoff`.
    async fn collect_unreferenced(
        &self,
        cutoff: i64,
        report: &mut GcReport,
    ) -> Result<(), RegistryError> {
        report.links_removed = self.meta.unlink_stale_blobs(cutoff).await?;
        for digest in self.meta.unreferenced_blobs(cutoff).await? {
            let mut guard = self.locks.digest(&digest).await?;
            if self.locks.publishing.busy(&digest) {
                continue;
            }
            if self.meta.forget_blob_if_unreferenced(&digest, cutoff).await? {
                report.bytes_freed += self.blobs.stat(&digest).await?.unwrap_or(0);
                // Bytes go only while the lock holds (a commit of the same digest waits).
                guard.verify().await?;
                self.blobs.delete(&digest).await?;
                report.blobs_deleted += 1;
            }
        }
        Ok(())
    }

    /// Stored bytes with no row, older than `grace`.
    async fn collect_orphans(
        &self,
        grace: Duration,
        report: &mut GcReport,
    ) -> Result<(), RegistryError> {
        // Bytes without a row: left by a crash between a commit's rename and its row (or
        // between GC's forgetting a blob and deleting it). Rare, so each pass looks at one
        // page of the store, going on from where the last one stopped: every blob is
        // looked at within (blobs / ORPHAN_PAGE) passes, and a pass costs the same however
        // large the store grows.
        let grace_start = SystemTime::now().checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
        let after = self.orphan_cursor.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut page = self.blobs.list(after.as_ref(), ORPHAN_PAGE).await?;
        if let Some(start) = after.as_ref().filter(|_| page.len() < ORPHAN_PAGE) {
            // The end reached: on from the beginning, up to where this pass started.
            let start = start.to_string();
            let rest = self.blobs.list(None, ORPHAN_PAGE - page.len()).await?;
            page.extend(rest.into_iter().take_while(|b| b.digest.to_string() <= start));
        }
        // A store smaller than a page was looked at whole: the next pass starts at the same
        // place; otherwise where this one stopped.
        if page.len() >= ORPHAN_PAGE {
            *self.orphan_cursor.lock().unwrap_or_else(|e| e.into_inner()) =
                page.last().map(|b| b.digest.clone());
        }
        for stored in page {
            if stored.modified >= grace_start {
                continue;
            }
            let mut guard = self.locks.digest(&stored.digest).await?;
            // Bytes being published here have no row yet either: not leftovers.
            if self.locks.publishing.busy(&stored.digest) {
                continue;
            }
            if self.meta.blob_size(&stored.digest).await?.is_none() {
                guard.verify().await?;
                self.blobs.delete(&stored.digest).await?;
                report.blobs_deleted += 1;
                report.bytes_freed += stored.size;
            }
        }
        Ok(())
    }

    /// Upload sessions idle since before `upload_cutoff`.
    async fn collect_idle_uploads(
        &self,
        upload_cutoff: i64,
        report: &mut GcReport,
    ) -> Result<(), RegistryError> {
        for id in self.meta.idle_uploads(upload_cutoff).await? {
            // A chunk streaming in now makes it not idle: skip it.
            if self.locks.writers.busy(id) {
                continue;
            }
            let _session = self.locks.session(&id).await?;
            // Re-checked: a chunk may have been attached since the list was read.
            if self.meta.delete_upload_if_idle(id, upload_cutoff).await? {
                self.blobs.abort_upload(id).await?;
                report.uploads_removed += 1;
            }
        }
        Ok(())
    }

    /// Upload data without a session, and parts never attached, older than `upload_ttl`.
    async fn collect_stray_upload_data(
        &self,
        upload_ttl: Duration,
        report: &mut GcReport,
    ) -> Result<(), RegistryError> {
        // Upload data without a session (monolithic pushes cut off by a crash), and parts
        // never attached (chunks whose request broke off). Files being written to are
        // modified continuously, so an active one is never this old.
        let ttl_start = SystemTime::now().checked_sub(upload_ttl).unwrap_or(SystemTime::UNIX_EPOCH);
        // A health probe's session lives for milliseconds, whatever `upload_ttl` says: only
        // one a crash or a timed-out probe left behind is removed.
        let probe_start =
            SystemTime::now().checked_sub(PROBE_LEFTOVER).unwrap_or(SystemTime::UNIX_EPOCH);
        for stored in self.blobs.list_uploads().await? {
            if stored.modified >= ttl_start
                || (wharf_storage::is_probe_upload(&stored.id) && stored.modified >= probe_start)
            {
                continue;
            }
            if let Some(part) = stored.part {
                // A part of a session with a chunk streaming in may be that chunk's.
                if self.locks.writers.busy(stored.id) {
                    continue;
                }
                self.blobs.drop_part(stored.id, part).await?;
                report.uploads_removed += 1;
                continue;
            }
            let _session = self.locks.session(&stored.id).await?;
            if self.meta.upload(stored.id).await?.is_none() {
                self.blobs.abort_upload(stored.id).await?;
                report.uploads_removed += 1;
            }
        }
        Ok(())
    }
}
