//! Running a planned import: blobs into the store, then one commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;
use wharf_oci::{Digest, Reference, RepositoryName};
use wharf_registry::{
    ByteStream, CommitBatch, CommitError, RegistryError, RegistryService, RepoKey,
};

use crate::ImportError;
use crate::plan::{Plan, PlannedBlob, plan};
use crate::progress::Progress;
use crate::request::{ImportMode, ImportRequest};
use crate::source::Source;

/// Times one blob download may break off and be resumed.
const MAX_RESUMES: u32 = 8;

/// Downloads in progress across all imports, so that two imports of the same content share
/// one download.
#[derive(Default)]
pub(crate) struct Inflight {
    map: Mutex<HashMap<Digest, watch::Receiver<()>>>,
}

enum Role {
    Lead(LeadGuard),
    Follow(watch::Receiver<()>),
}

/// Held while leading a download; dropping it wakes the followers.
struct LeadGuard {
    inflight: Arc<Inflight>,
    digest: Digest,
    _done: watch::Sender<()>,
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        self.inflight.map.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.digest);
    }
}

impl Inflight {
    fn join(self: &Arc<Self>, digest: &Digest) -> Role {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(digest) {
            return Role::Follow(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        map.insert(digest.clone(), rx);
        Role::Lead(LeadGuard { inflight: self.clone(), digest: digest.clone(), _done: tx })
    }
}

pub(crate) struct Engine<'a> {
    pub(crate) registry: &'a RegistryService,
    pub(crate) inflight: &'a Arc<Inflight>,
    pub(crate) parallel: usize,
    pub(crate) progress: Arc<Progress>,
}

impl Engine<'_> {
    pub(crate) async fn run(
        &self,
        source: &dyn Source,
        req: &ImportRequest,
        target: i64,
    ) -> Result<(), ImportError> {
        self.progress.set_phase("Resolving");
        let plan =
            plan(source, &req.source_repo, &req.source_reference, req.include_referrers).await?;
        self.progress.set_plan(req.source_repo.as_str(), &plan);
        tracing::info!(
            source = %source.display(), image = %req.source_image, digest = %plan.root,
            manifests = plan.manifests.len(), blobs = plan.blobs.len(), bytes = plan.bytes_total(),
            "import planned"
        );

        // NoForce fails before anything is copied.
        if req.mode == ImportMode::NoForce {
            for (repo, tag) in &req.target_tags {
                let key = RepoKey { registry: target, name: repo.clone() };
                match self.registry.head_manifest(&key, &Reference::Tag(tag.clone())).await {
                    Ok(m) if m.digest != plan.root => {
                        return Err(ImportError::TagAlreadyExists(format!(
                            "Tag {repo}:{tag} already exists in target registry."
                        )));
                    }
                    Ok(_) | Err(RegistryError::ManifestUnknown(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }

        self.progress.set_phase("Copying");
        let cancel = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = plan
            .blobs
            .iter()
            .map(|(digest, blob)| {
                let (digest, blob, cancel) = (digest.clone(), blob.clone(), cancel.clone());
                let repo = &req.source_repo;
                Box::pin(async move {
                    let r = self.ensure_blob(source, repo, &digest, &blob, &cancel).await;
                    if r.is_err() {
                        cancel.store(true, Ordering::Relaxed);
                    }
                    r.map(|present| (!present).then_some(digest))
                })
                    as futures::future::BoxFuture<'_, Result<Option<Digest>, ImportError>>
            })
            .collect();
        let missing: Vec<Digest> = futures::stream::iter(tasks)
            .buffer_unordered(self.parallel.max(1))
            .try_filter_map(|d| futures::future::ready(Ok(d)))
            .try_collect()
            .await?;

        self.progress.set_phase("Committing");
        let mut attempts = 0;
        loop {
            let batch = self.batch(req, target, &plan, &missing).await?;
            match self.registry.commit_batch(&batch).await {
                Ok(()) => break,
                Err(CommitError::TagExists { repo, tag }) => {
                    return Err(ImportError::TagAlreadyExists(format!(
                        "Tag {}:{tag} already exists in target registry.",
                        repo.name
                    )));
                }
                // Garbage-collected between download and commit (a tiny grace period): again.
                Err(CommitError::BlobMissing(d)) if attempts < 3 => {
                    attempts += 1;
                    let blob = plan
                        .blobs
                        .get(&d)
                        .cloned()
                        .unwrap_or(PlannedBlob { size: 0, required: true });
                    self.ensure_blob(source, &req.source_repo, &d, &blob, &cancel).await?;
                }
                Err(CommitError::BlobMissing(d)) => {
                    return Err(ImportError::internal(format!(
                        "blob {d} keeps disappearing before the commit"
                    )));
                }
                Err(CommitError::Registry(e)) => {
                    return Err(ImportError::SourceInvalidManifest(format!(
                        "The image from {} can't be stored: {e}.",
                        source.display()
                    )));
                }
            }
        }
        self.progress.manifests_succeeded();
        self.progress.set_phase("Done");
        Ok(())
    }

    /// Everything the import stores, for one transaction.
    async fn batch(
        &self,
        req: &ImportRequest,
        target: i64,
        plan: &Plan,
        missing: &[Digest],
    ) -> Result<CommitBatch, ImportError> {
        let mut repos: Vec<&RepositoryName> = req.target_tags.iter().map(|(r, _)| r).collect();
        repos.extend(req.untagged_repositories.iter());
        repos.sort();
        repos.dedup();
        let mut batch = CommitBatch { force: req.mode == ImportMode::Force, ..Default::default() };
        for repo in repos {
            let key = RepoKey { registry: target, name: repo.clone() };
            for digest in plan.blobs.keys().filter(|d| !missing.contains(d)) {
                batch.links.push((key.clone(), digest.clone()));
            }
            for m in &plan.manifests {
                let prepared = match self
                    .registry
                    .prepare_manifest(&key, Some(&m.media_type), m.bytes.clone())
                    .await
                {
                    // A source whose Content-Type disagrees with the body: trust the body.
                    Err(RegistryError::ManifestInvalid(_)) => {
                        self.registry.prepare_manifest(&key, None, m.bytes.clone()).await
                    }
                    other => other,
                };
                batch.manifests.push(prepared.map_err(|e| {
                    ImportError::SourceInvalidManifest(format!(
                        "The manifest {repo}@{} can't be stored: {e}.",
                        m.digest
                    ))
                })?);
            }
        }
        for (repo, tag) in &req.target_tags {
            batch.tags.push((
                RepoKey { registry: target, name: repo.clone() },
                tag.clone(),
                plan.root.clone(),
            ));
        }
        Ok(batch)
    }

    /// Make sure the server holds a blob: already stored, being downloaded by another
    /// import, or downloaded now. `false` for an optional blob the source doesn't have.
    async fn ensure_blob(
        &self,
        source: &dyn Source,
        repo: &RepositoryName,
        digest: &Digest,
        blob: &PlannedBlob,
        cancel: &Arc<AtomicBool>,
    ) -> Result<bool, ImportError> {
        loop {
            if let Some(size) = self.registry.retain_blob(digest).await? {
                if size != blob.size {
                    return Err(ImportError::SourceInvalidManifest(format!(
                        "A descriptor gives {digest} a size of {} bytes; the blob has {size}.",
                        blob.size
                    )));
                }
                self.progress.add_bytes(size);
                self.progress.blob_done(true);
                return Ok(true);
            }
            match self.inflight.join(digest) {
                Role::Follow(mut rx) => {
                    // Another import is fetching it: wait, then look again.
                    let _ = rx.changed().await;
                }
                Role::Lead(guard) => {
                    let result = self.download(source, repo, digest, blob, cancel).await;
                    drop(guard);
                    if let Ok(true) = result {
                        self.progress.blob_done(false);
                    }
                    return result;
                }
            }
        }
    }

    /// Stream a blob from the source into the store, resuming with `Range` when the
    /// connection breaks, hashing once; nothing is kept unless the digest matches.
    async fn download(
        &self,
        source: &dyn Source,
        repo: &RepositoryName,
        digest: &Digest,
        blob: &PlannedBlob,
        cancel: &Arc<AtomicBool>,
    ) -> Result<bool, ImportError> {
        let mut ingest = self.registry.ingest_begin().await?;
        let mut resumes = 0;
        let outcome = loop {
            if cancel.load(Ordering::Relaxed) {
                break Err(ImportError::Canceled("another part of the import failed".into()));
            }
            let stream = match source.blob(repo, digest, ingest.len()).await {
                Ok(Some(s)) => s,
                Ok(None) if !blob.required => {
                    let _ = self.registry.ingest_abort(ingest).await;
                    return Ok(false);
                }
                Ok(None) => {
                    break Err(ImportError::SourceImageNotFound(format!(
                        "The blob {repo}@{digest} was not found in {}.",
                        source.display()
                    )));
                }
                Err(e) => break Err(e),
            };
            let guarded = guard_stream(
                stream,
                blob.size - ingest.len().min(blob.size),
                self.progress.clone(),
                cancel.clone(),
            );
            match self.registry.ingest_append(&mut ingest, guarded).await {
                Ok(None) => break Ok(()),
                Ok(Some(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    break Err(ImportError::SourceDigestMismatch(format!(
                        "The source {} sent more bytes for {digest} than its descriptor's {}; nothing was stored.",
                        source.display(),
                        blob.size
                    )));
                }
                Ok(Some(e)) => {
                    resumes += 1;
                    if resumes > MAX_RESUMES || cancel.load(Ordering::Relaxed) {
                        break Err(ImportError::SourceUnreachable(format!(
                            "The download of {digest} from {} broke off {resumes} times: {e}.",
                            source.display()
                        )));
                    }
                    tracing::info!(%digest, at = ingest.len(), error = %e, "download broke off; resuming with Range");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(resumes))).await;
                }
                Err(e) => break Err(e.into()),
            }
        };
        if let Err(e) = outcome {
            let _ = self.registry.ingest_abort(ingest).await;
            return Err(e);
        }
        if ingest.len() != blob.size {
            let got = ingest.len();
            let _ = self.registry.ingest_abort(ingest).await;
            return Err(ImportError::SourceDigestMismatch(format!(
                "The source {} sent {got} bytes for {digest}, whose descriptor says {}; nothing was stored.",
                source.display(),
                blob.size
            )));
        }
        match self.registry.ingest_finish(ingest, digest, None).await {
            Ok(()) => Ok(true),
            Err(RegistryError::DigestInvalid(detail)) => {
                Err(ImportError::SourceDigestMismatch(format!(
                    "The source {} served bytes that do not match their digest ({detail}); nothing was stored.",
                    source.display()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Counts bytes into the progress, stops at the import's cancellation, and refuses bytes
/// past what the descriptor announced (a source can't make the server store without end).
fn guard_stream(
    stream: ByteStream,
    mut left: u64,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> ByteStream {
    Box::pin(stream.map(move |chunk| {
        let chunk = chunk?;
        if cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("import canceled"));
        }
        let n = chunk.len() as u64;
        if n > left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "more bytes than announced",
            ));
        }
        left -= n;
        progress.add_bytes(n);
        Ok(chunk)
    }))
}
