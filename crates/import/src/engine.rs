//! Running a planned import: blobs into the store, then one commit.
//!
//! Where a blob comes from, cheapest first:
//! 1. already visible in the target registry, whose every repository the caller may read
//!    → linked, nothing fetched;
//! 2. the source is a registry on this server and the caller can read the blob there →
//!    linked, nothing fetched;
//! 3. an earlier fetch from the same source identity proved it (a retried import) → linked;
//!    another import with that identity is fetching it → wait and share;
//! 4. stored on the server for someone else → fetched from the source and hashed, not
//!    written: having the bytes must not let a source that merely names a digest link
//!    another tenant's blob;
//! 5. otherwise → fetched, hashed and written.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wharf_oci::{Digest, Reference, RepositoryName, Sha256Hasher};
use wharf_registry::{
    ByteStream, CommitBatch, CommitError, RegistryError, RegistryService, RepoKey,
};
use wharf_storage::PutManifest;
use wharf_storage::{JobFence, Phase, RegistryId};

use crate::ImportError;
use crate::inflight::{Claimed, Inflight, Role};
use crate::plan::{Plan, PlanLimits, PlannedBlob, plan};
use crate::progress::Progress;
use crate::request::{ImportMode, ImportRequest};
use crate::source::Source;

/// Times one blob download may break off without having made progress since the last time.
/// (A break after progress is resumed at once and not counted: a source that cuts every
/// response after a few MB still finishes.)
const MAX_STALLED_ATTEMPTS: u32 = 8;
/// Commits retried when garbage collection took a staged blob in between.
const MAX_COMMIT_ATTEMPTS: u32 = 3;

/// What to do with fetched bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// Store them.
    Write,
    /// The server has them: only prove the source serves them.
    Verify,
}

/// The slowest a download may be: `bytes_per_sec` on average over each `window` of time
/// spent receiving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinThroughput {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

pub(crate) struct Engine<'a> {
    pub(crate) registry: &'a RegistryService,
    pub(crate) inflight: &'a Arc<Inflight>,
    pub(crate) parallel: usize,
    pub(crate) progress: Arc<Progress>,
    /// Blob downloads in flight across every import.
    pub(crate) downloads: &'a Arc<Semaphore>,
    pub(crate) limits: &'a PlanLimits,
    pub(crate) min_throughput: MinThroughput,
    /// Cancelled when the job is cancelled or runs out of time.
    pub(crate) cancel: CancellationToken,
    /// The caller may read every repository of the target registry, so a blob visible
    /// anywhere there may be linked without a download.
    pub(crate) link_in_target: bool,
    /// The job's lease: the commit moves tags only while it is still this node's.
    pub(crate) fence: JobFence,
}

impl Engine<'_> {
    /// The import: plan it, check its tags, have its blobs, commit.
    pub(crate) async fn run(
        &self,
        source: &dyn Source,
        req: &ImportRequest,
        target: RegistryId,
    ) -> Result<(), ImportError> {
        let plan = self.plan(source, req).await?;
        self.check_tags(req, target).await?;
        self.progress.set_phase(Phase::Copying);
        // Cancelled with the job, or by the first blob that fails.
        let cancel = self.cancel.child_token();
        let missing = self.ensure_blobs(source, req, target, plan.blobs.iter(), &cancel).await?;

        // The last moment a cancellation or the deadline stops the import: the commit
        // below is all or nothing.
        if self.cancel.is_cancelled() {
            return Err(ImportError::canceled());
        }
        self.progress.set_phase(Phase::Committing);
        self.commit(source, req, target, &plan, &missing, &cancel).await?;
        self.progress.manifests_succeeded();
        self.progress.set_phase(Phase::Done);
        Ok(())
    }

    /// Work out what the import copies (unless it is cancelled meanwhile).
    async fn plan(&self, source: &dyn Source, req: &ImportRequest) -> Result<Plan, ImportError> {
        self.progress.set_phase(Phase::Resolving);
        let planning = plan(
            source,
            &req.source_repo,
            &req.source_reference,
            req.include_referrers,
            self.limits,
        );
        let plan = tokio::select! {
            plan = planning => plan?,
            () = self.cancel.cancelled() => return Err(ImportError::canceled()),
        };
        self.progress.set_plan(req.source_repo.as_str(), &plan);
        tracing::info!(
            source = %source.display(), image = %req.source_image, digest = %plan.root,
            manifests = plan.manifests.len(), blobs = plan.blobs.len(), bytes = plan.bytes_total(),
            "import planned"
        );
        Ok(plan)
    }

    /// NoForce fails before anything is copied, as ACR documents it: "any existing target
    /// tags will fail the operation" — also one already pointing at this very manifest
    /// (scripts use the failure to learn that the tag exists).
    async fn check_tags(&self, req: &ImportRequest, target: RegistryId) -> Result<(), ImportError> {
        if req.mode != ImportMode::NoForce {
            return Ok(());
        }
        for (repo, tag) in &req.target_tags {
            let key = RepoKey { registry: target, name: repo.clone() };
            match self.registry.head_manifest(&key, &Reference::Tag(tag.clone())).await {
                Ok(_) => {
                    return Err(ImportError::TagAlreadyExists(format!(
                        "Tag {repo}:{tag} already exists in target registry."
                    )));
                }
                Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Store everything in one transaction; blobs garbage collection took in the meantime
    /// are fetched again first (a few times at most).
    async fn commit(
        &self,
        source: &dyn Source,
        req: &ImportRequest,
        target: RegistryId,
        plan: &Plan,
        missing: &[Digest],
        cancel: &CancellationToken,
    ) -> Result<(), ImportError> {
        let mut attempts = 0;
        loop {
            let batch = self.batch(req, target, plan, missing).await?;
            match self.registry.commit_batch(&batch).await {
                Ok(()) => return Ok(()),
                Err(CommitError::TagExists { repo, tag }) => {
                    return Err(ImportError::TagAlreadyExists(format!(
                        "Tag {}:{tag} already exists in target registry.",
                        repo.name
                    )));
                }
                // A long import can outlive the GC grace period of what it staged first:
                // restart every planned blob's grace period, fetch again what is gone.
                Err(CommitError::BlobMissing(_)) if attempts < MAX_COMMIT_ATTEMPTS => {
                    attempts += 1;
                    let mut gone = Vec::new();
                    for (digest, blob) in &plan.blobs {
                        if !missing.contains(digest)
                            && self.registry.retain_blob(digest).await?.is_none()
                        {
                            gone.push((digest, blob));
                        }
                    }
                    tracing::info!(
                        blobs = gone.len(),
                        "staged blobs were collected; fetching them again"
                    );
                    self.ensure_blobs(source, req, target, gone.into_iter(), cancel).await?;
                }
                Err(CommitError::BlobMissing(d)) => {
                    return Err(ImportError::internal(format!(
                        "blob {d} keeps disappearing before the commit"
                    )));
                }
                Err(CommitError::Fenced) => {
                    return Err(ImportError::TakenOver(
                        "The import was taken over by another server; nothing was changed here."
                            .into(),
                    ));
                }
                Err(CommitError::Registry(e)) => {
                    return Err(ImportError::SourceInvalidManifest(format!(
                        "The image from {} can't be stored: {e}.",
                        source.display()
                    )));
                }
            }
        }
    }

    /// Have every blob (`--import-parallelism` at a time); the optional ones the source
    /// doesn't have.
    async fn ensure_blobs<'b>(
        &self,
        source: &dyn Source,
        req: &ImportRequest,
        target: RegistryId,
        blobs: impl Iterator<Item = (&'b Digest, &'b PlannedBlob)>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Digest>, ImportError> {
        let tasks: Vec<_> = blobs
            .map(|(digest, blob)| {
                let (digest, blob, cancel) = (digest.clone(), blob.clone(), cancel.clone());
                let repo = &req.source_repo;
                Box::pin(async move {
                    let r = self.ensure_blob(source, repo, target, &digest, &blob, &cancel).await;
                    if r.is_err() {
                        cancel.cancel();
                    }
                    r.map(|present| (!present).then_some(digest))
                })
                    as futures::future::BoxFuture<'_, Result<Option<Digest>, ImportError>>
            })
            .collect();
        futures::stream::iter(tasks)
            .buffer_unordered(self.parallel.max(1))
            .try_filter_map(|d| futures::future::ready(Ok(d)))
            .try_collect()
            .await
    }

    /// Everything the import stores, for one transaction. Each manifest is prepared once
    /// (from what the plan parsed) and stored in every target repository.
    async fn batch(
        &self,
        req: &ImportRequest,
        target: RegistryId,
        plan: &Plan,
        missing: &[Digest],
    ) -> Result<CommitBatch, ImportError> {
        let mut repos: Vec<&RepositoryName> = req.target_tags.iter().map(|(r, _)| r).collect();
        repos.extend(req.untagged_repositories.iter());
        repos.sort();
        repos.dedup();
        let mut batch = CommitBatch {
            force: req.mode == ImportMode::Force,
            fence: Some(self.fence.clone()),
            ..Default::default()
        };
        let Some(first) = repos.first() else { return Ok(batch) };
        let mut prepared = Vec::with_capacity(plan.manifests.len());
        for m in &plan.manifests {
            let key = RepoKey { registry: target, name: (*first).clone() };
            let put = self
                .registry
                .prepare_parsed_manifest(&key, m.digest.clone(), &m.manifest, m.bytes.clone())
                .await
                .map_err(|e| {
                    ImportError::SourceInvalidManifest(format!(
                        "The manifest {first}@{} can't be stored: {e}.",
                        m.digest
                    ))
                })?;
            prepared.push(put);
        }
        for repo in repos {
            let key = RepoKey { registry: target, name: repo.clone() };
            for digest in plan.blobs.keys().filter(|d| !missing.contains(d)) {
                batch.links.push((key.clone(), digest.clone()));
            }
            for put in &prepared {
                batch.manifests.push(PutManifest { repo: key.clone(), ..put.clone() });
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

    /// Make sure the blob can be linked into the target (see the module's list of ways).
    /// `false` for an optional blob the source doesn't have.
    async fn ensure_blob(
        &self,
        source: &dyn Source,
        repo: &RepositoryName,
        target: RegistryId,
        digest: &Digest,
        blob: &PlannedBlob,
        cancel: &CancellationToken,
    ) -> Result<bool, ImportError> {
        let have = |size: u64| -> Result<bool, ImportError> {
            if size != blob.size {
                return Err(ImportError::SourceInvalidManifest(format!(
                    "The size a descriptor gives {digest} does not match its content."
                )));
            }
            self.progress.add_bytes(size);
            self.progress.blob_done(true);
            Ok(true)
        };
        loop {
            if self.link_in_target
                && let Some(size) = self.registry.retain_blob_in(target, digest).await?
            {
                return have(size);
            }
            if let Some(size) = source.local_blob(repo, digest).await? {
                return have(size);
            }
            let key = (digest.clone(), source.identity(repo));
            if self.inflight.proven(&key).await
                && self.registry.retain_blob(digest).await?.is_some()
            {
                return have(blob.size);
            }
            match self.inflight.join(key.clone()) {
                Role::Follow(mut rx) => {
                    // The same source is being read by another import: share its download.
                    let done = tokio::select! {
                        r = rx.wait_for(Option::is_some) => r.ok().and_then(|v| *v),
                        () = cancel.cancelled() => return Err(ImportError::canceled()),
                    };
                    if done == Some(true) && self.registry.retain_blob(digest).await?.is_some() {
                        return have(blob.size);
                    }
                }
                Role::Lead(guard) => {
                    let _claim = match self.inflight.claim(&key, cancel).await? {
                        Claimed::Here(claim) => claim,
                        Claimed::Elsewhere => {
                            if self.registry.retain_blob(digest).await?.is_some() {
                                guard.finish(true);
                                return have(blob.size);
                            }
                            // Proven, but collected since: fetched here after all.
                            continue;
                        }
                    };
                    let how = match self.registry.retain_blob(digest).await? {
                        Some(_) => Fetch::Verify,
                        None => Fetch::Write,
                    };
                    let result = self.fetch(source, repo, digest, blob, cancel, how).await;
                    if let Ok(true) = result {
                        self.inflight.prove(key).await;
                    }
                    guard.finish(matches!(result, Ok(true)));
                    if let Ok(true) = result {
                        self.progress.blob_done(false);
                    }
                    return result;
                }
            }
        }
    }

    /// Stream a blob from the source, resuming with `Range` when the connection breaks,
    /// hashing once; written only with `Fetch::Write`, and kept only if the digest matches.
    async fn fetch(
        &self,
        source: &dyn Source,
        repo: &RepositoryName,
        digest: &Digest,
        blob: &PlannedBlob,
        cancel: &CancellationToken,
        how: Fetch,
    ) -> Result<bool, ImportError> {
        // One of the server's download slots, for the whole blob.
        let _slot = tokio::select! {
            slot = self.downloads.acquire() => slot.map_err(ImportError::internal)?,
            () = cancel.cancelled() => return Err(ImportError::canceled()),
        };
        let mut sink = match how {
            Fetch::Write => Sink::Store(self.registry.ingest_begin().await?),
            Fetch::Verify => Sink::Hash(Sha256Hasher::new()),
        };
        let at = Download { source, repo, digest, blob };
        match self.download(&at, cancel, &mut sink).await {
            Ok(true) => {}
            Ok(false) => {
                sink.abort(self.registry).await;
                return Ok(false);
            }
            Err(e) => {
                sink.abort(self.registry).await;
                return Err(e);
            }
        }
        if sink.len() != blob.size {
            let got = sink.len();
            sink.abort(self.registry).await;
            return Err(ImportError::SourceDigestMismatch(format!(
                "The source {} sent {got} bytes for {digest}, whose descriptor says {}; nothing was stored.",
                source.display(),
                blob.size
            )));
        }
        self.keep(source, digest, sink).await
    }

    /// Stream the blob into `sink`, from where it is, until it is whole; `false` if the
    /// source doesn't have an optional blob.
    async fn download(
        &self,
        at: &Download<'_>,
        cancel: &CancellationToken,
        sink: &mut Sink,
    ) -> Result<bool, ImportError> {
        let Download { source, repo, digest, blob } = *at;
        let meter = Arc::new(Mutex::new(Meter::new(self.min_throughput)));
        let mut stalled = 0;
        let mut attempts = 0;
        loop {
            if cancel.is_cancelled() {
                return Err(ImportError::canceled());
            }
            // A connection can break after the last byte: then there is nothing to resume.
            if sink.len() == blob.size && attempts > 0 {
                return Ok(true);
            }
            attempts += 1;
            let before = sink.len();
            let stream = match self.request(at, before, cancel, &meter).await? {
                Some(s) => s,
                None if !blob.required => return Ok(false),
                None => {
                    return Err(ImportError::SourceImageNotFound(format!(
                        "The blob {repo}@{digest} was not found in {}.",
                        source.display()
                    )));
                }
            };
            let left = blob.size.saturating_sub(before);
            let guarded = Guarded::new(stream, left, self.progress.clone(), cancel, meter.clone());
            let Some(e) = sink.append(self.registry, Box::pin(guarded)).await? else {
                return Ok(true);
            };
            if let Some(failure) = self.guard_failure(at, &e) {
                return Err(failure);
            }
            // Only a break without progress counts against the download.
            if sink.len() == before {
                stalled += 1;
                if stalled > MAX_STALLED_ATTEMPTS {
                    return Err(ImportError::SourceUnreachable(format!(
                        "The download of {digest} from {} broke off {stalled} times without progress: {e}.",
                        source.display()
                    )));
                }
                tracing::info!(%digest, at = sink.len(), error = %e, "download broke off; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200 * u64::from(stalled))) => {}
                    () = cancel.cancelled() => {}
                }
            } else {
                tracing::info!(%digest, at = sink.len(), error = %e, "download broke off; resuming with Range");
            }
        }
    }

    /// Ask the source for the blob from `offset` on. Time spent getting an answer counts
    /// against the throughput too (a source that answers slowly then sends a little is
    /// slow), except time paused by a 429.
    async fn request(
        &self,
        at: &Download<'_>,
        offset: u64,
        cancel: &CancellationToken,
        meter: &Mutex<Meter>,
    ) -> Result<Option<ByteStream>, ImportError> {
        let (asked, paused) = (Instant::now(), at.source.paused());
        let stream = tokio::select! {
            s = at.source.blob(at.repo, at.digest, offset) => s,
            () = cancel.cancelled() => Err(ImportError::canceled()),
        };
        let waited = asked.elapsed().saturating_sub(at.source.paused().saturating_sub(paused));
        lock(meter).active += waited;
        stream
    }

    /// The import's failure when [`Guarded`] ended a download; `None` for a connection that
    /// broke off (resumed).
    fn guard_failure(&self, at: &Download<'_>, e: &std::io::Error) -> Option<ImportError> {
        let (source, digest) = (at.source, at.digest);
        match GuardError::of(e)? {
            GuardError::TooLong => Some(ImportError::SourceDigestMismatch(format!(
                "The source {} sent more bytes for {digest} than its descriptor's {}; nothing was stored.",
                source.display(),
                at.blob.size
            ))),
            GuardError::Canceled => Some(ImportError::canceled()),
            GuardError::TooSlow { bytes_per_sec } => Some(ImportError::SourceTooSlow(format!(
                "The download of {digest} from {} averaged {bytes_per_sec} bytes/s, below this server's minimum of {} bytes/s.",
                source.display(),
                self.min_throughput.bytes_per_sec
            ))),
        }
    }

    /// Keep the whole blob if its bytes hash to its digest: stored, or (verified only) the
    /// stored copy's grace period restarted.
    async fn keep(
        &self,
        source: &dyn Source,
        digest: &Digest,
        sink: Sink,
    ) -> Result<bool, ImportError> {
        let mismatch = |detail: String| {
            ImportError::SourceDigestMismatch(format!(
                "The source {} served bytes that do not match their digest ({detail}); nothing was stored.",
                source.display()
            ))
        };
        match sink {
            Sink::Store(ingest) => match self.registry.ingest_finish(ingest, digest, None).await {
                Ok(()) => Ok(true),
                Err(RegistryError::DigestMismatch(detail)) => Err(mismatch(detail)),
                Err(e) => Err(e.into()),
            },
            Sink::Hash(hasher) => {
                let actual = hasher.digest();
                if &actual != digest {
                    return Err(mismatch(format!(
                        "{digest} was claimed, the bytes hash to {actual}"
                    )));
                }
                // Proven: the stored copy may be linked. Restart its grace period.
                match self.registry.retain_blob(digest).await? {
                    Some(_) => Ok(true),
                    None => Err(ImportError::internal(format!(
                        "{digest} was collected while it was verified"
                    ))),
                }
            }
        }
    }
}

/// A blob being downloaded, and from where.
#[derive(Clone, Copy)]
struct Download<'a> {
    source: &'a dyn Source,
    repo: &'a RepositoryName,
    digest: &'a Digest,
    blob: &'a PlannedBlob,
}

/// Where fetched bytes go.
enum Sink {
    Store(wharf_registry::Ingest),
    Hash(Sha256Hasher),
}

impl Sink {
    fn len(&self) -> u64 {
        match self {
            Sink::Store(i) => i.len(),
            Sink::Hash(h) => h.len(),
        }
    }

    /// Append a stream; the stream's error if it broke off (what came before is kept).
    async fn append(
        &mut self,
        registry: &RegistryService,
        stream: ByteStream,
    ) -> Result<Option<std::io::Error>, ImportError> {
        match self {
            Sink::Store(ingest) => Ok(registry.ingest_append(ingest, stream).await?),
            Sink::Hash(hasher) => {
                let mut stream = stream;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => hasher.update(&bytes),
                        Err(e) => return Ok(Some(e)),
                    }
                }
                Ok(None)
            }
        }
    }

    async fn abort(self, registry: &RegistryService) {
        if let Sink::Store(ingest) = self {
            let _ = registry.ingest_abort(ingest).await;
        }
    }
}

/// Why [`Guarded`] ended a download, carried inside the `io::Error` of the stream.
#[derive(Debug)]
enum GuardError {
    /// More bytes than the descriptor announced.
    TooLong,
    Canceled,
    TooSlow {
        bytes_per_sec: u64,
    },
}

impl std::fmt::Display for GuardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardError::TooLong => f.write_str("more bytes than announced"),
            GuardError::Canceled => f.write_str("import canceled"),
            GuardError::TooSlow { bytes_per_sec } => write!(f, "too slow ({bytes_per_sec} B/s)"),
        }
    }
}

impl std::error::Error for GuardError {}

impl GuardError {
    fn of(e: &std::io::Error) -> Option<&GuardError> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<GuardError>())
    }

    fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// Throughput of one download over its attempts: bytes received in the current window, and
/// the time spent receiving (time between attempts, or paused by a 429, doesn't count).
struct Meter {
    min: MinThroughput,
    bytes: u64,
    /// Receiving time in this window before the current attempt.
    active: Duration,
}

impl Meter {
    fn new(min: MinThroughput) -> Self {
        Meter { min, bytes: 0, active: Duration::ZERO }
    }
}

/// A source's blob stream, held to the import's rules: progress is counted, the import's
/// cancellation stops it, no byte past what the descriptor announced is accepted, and a
/// download slower than the minimum throughput fails.
struct Guarded {
    inner: ByteStream,
    left: u64,
    progress: Arc<Progress>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    meter: Arc<Mutex<Meter>>,
    /// When this attempt started receiving.
    started: Instant,
    /// The end of the current throughput window.
    window_end: Pin<Box<Sleep>>,
}

impl Guarded {
    fn new(
        inner: ByteStream,
        left: u64,
        progress: Arc<Progress>,
        cancel: &CancellationToken,
        meter: Arc<Mutex<Meter>>,
    ) -> Self {
        let started = Instant::now();
        let remaining = {
            let m = lock(&meter);
            m.min.window.saturating_sub(m.active)
        };
        Guarded {
            inner,
            left,
            progress,
            cancelled: Box::pin(cancel.clone().cancelled_owned()),
            meter,
            started,
            window_end: Box::pin(tokio::time::sleep_until(started + remaining)),
        }
    }

    /// The window is over: below the minimum, fail; else start the next one.
    fn end_window(&mut self) -> Result<(), GuardError> {
        let now = Instant::now();
        let mut m = lock(&self.meter);
        let window = m.min.window.max(Duration::from_millis(1));
        let rate = (u128::from(m.bytes) * 1000 / window.as_millis().max(1)) as u64;
        if m.min.bytes_per_sec > 0 && rate < m.min.bytes_per_sec {
            return Err(GuardError::TooSlow { bytes_per_sec: rate });
        }
        m.bytes = 0;
        m.active = Duration::ZERO;
        self.started = now;
        self.window_end.as_mut().reset(now + window);
        Ok(())
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let mut m = lock(&self.meter);
        m.active += self.started.elapsed();
    }
}

impl Stream for Guarded {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(GuardError::Canceled.into_io())));
        }
        while self.window_end.as_mut().poll(cx).is_ready() {
            if let Err(e) = self.end_window() {
                return Poll::Ready(Some(Err(e.into_io())));
            }
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                if n > self.left {
                    return Poll::Ready(Some(Err(GuardError::TooLong.into_io())));
                }
                self.left -= n;
                lock(&self.meter).bytes += n;
                self.progress.add_bytes(n);
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
