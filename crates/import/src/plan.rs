//! Everything an import copies, worked out before anything is copied: the manifest tree
//! (index → platform manifests → …), every blob, and the referrers of every manifest.
//!
//! A source is not trusted to be small or sane. Before a level of child manifests is
//! fetched, the sizes and counts their descriptors declare are charged to the import's
//! [`PlanLimits`] (each fetched manifest is then held to its declared size), so an index of
//! twenty thousand 4 MiB children is refused before one of them is downloaded. Nesting is
//! bounded, and a referrer must really refer to what it was listed for, so that referrer
//! lists can't go round in circles.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use wharf_oci::manifest::{Descriptor, Manifest};
use wharf_oci::{Digest, Reference, RepositoryName, media_type};
use wharf_registry::MAX_MANIFEST_SIZE;

use crate::ImportError;
use crate::remote::Fetched;
use crate::source::Source;

/// How deep indexes may nest, and referrers of referrers: far beyond real images.
const MAX_DEPTH: usize = 8;
const MAX_REFERRER_DEPTH: usize = 8;
/// Manifests fetched at once.
const FETCH_PARALLELISM: usize = 8;

/// What one import may hold; past any of these it fails with `ImportLimitExceeded`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    /// Manifests (platforms, referrers and the root).
    pub max_manifests: usize,
    /// Bytes of manifests (they are kept in memory until the commit).
    pub max_manifest_bytes: u64,
    /// Distinct blobs.
    pub max_blobs: usize,
    /// Bytes of blobs, as their descriptors give them.
    pub max_bytes: u64,
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits {
            max_manifests: 1000,
            max_manifest_bytes: 64 << 20,
            max_blobs: 10_000,
            max_bytes: 1 << 40,
        }
    }
}

/// A manifest to store, with its bytes exactly as the source served them, hashed and
/// parsed once (as fetched) for every target repository.
#[derive(Clone, Debug)]
pub(crate) struct PlannedManifest {
    pub(crate) digest: Digest,
    pub(crate) manifest: Manifest,
    pub(crate) bytes: bytes::Bytes,
    /// Reached through the referrers API rather than the image itself.
    pub(crate) referrer: bool,
}

/// A blob to have, with the size its descriptors give.
#[derive(Clone, Debug)]
pub(crate) struct PlannedBlob {
    pub(crate) size: u64,
    /// Non-distributable layers with URLs may be missing from the source.
    pub(crate) required: bool,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) root: Digest,
    /// Children before the manifests that list them.
    pub(crate) manifests: Vec<PlannedManifest>,
    pub(crate) blobs: BTreeMap<Digest, PlannedBlob>,
    /// `os/arch[/variant]` of each platform of an index.
    pub(crate) platforms: Vec<String>,
    /// Total size of the manifests fetched.
    pub(crate) manifest_bytes: u64,
    /// Total size of the blobs, as their descriptors give it.
    pub(crate) blob_bytes: u64,
}

impl Plan {
    pub(crate) fn bytes_total(&self) -> u64 {
        self.blob_bytes
    }
}

pub(crate) async fn plan(
    source: &dyn Source,
    repo: &RepositoryName,
    reference: &Reference,
    include_referrers: bool,
    limits: &PlanLimits,
) -> Result<Plan, ImportError> {
    let root = source.manifest(repo, reference, None).await?.ok_or_else(|| {
        let sep = if matches!(reference, Reference::Digest(_)) { '@' } else { ':' };
        ImportError::SourceImageNotFound(format!(
            "The source image {repo}{sep}{reference} was not found in {}.",
            source.display()
        ))
    })?;
    let mut walker = Walker {
        source,
        repo,
        limits,
        seen: HashSet::new(),
        subjects: HashMap::new(),
        plan: Plan {
            root: root.digest.clone(),
            manifests: Vec::new(),
            blobs: BTreeMap::new(),
            platforms: Vec::new(),
            manifest_bytes: 0,
            blob_bytes: 0,
        },
    };
    walker.charge_manifests(1, root.bytes.len() as u64)?;
    let mut added = walker.walk(vec![(root, None)], false).await?;
    if include_referrers {
        // Referrers of everything copied, then referrers of those (a signature on an SBOM).
        let mut depth = 0;
        while !added.is_empty() {
            depth += 1;
            if depth > MAX_REFERRER_DEPTH {
                return Err(ImportError::LimitExceeded(format!(
                    "The referrers of the image from {} nest more than {MAX_REFERRER_DEPTH} levels deep.",
                    source.display()
                )));
            }
            added = walker.referrers_of(added).await?;
        }
    }
    Ok(walker.plan)
}

struct Walker<'a> {
    source: &'a dyn Source,
    repo: &'a RepositoryName,
    limits: &'a PlanLimits,
    /// Every manifest planned or being fetched.
    seen: HashSet<Digest>,
    /// The `subject` of every manifest planned.
    subjects: HashMap<Digest, Option<Digest>>,
    plan: Plan,
}

impl Walker<'_> {
    fn limit(&self, what: String) -> ImportError {
        ImportError::LimitExceeded(format!(
            "The image from {} {what}; this server imports at most {} manifests ({} MiB of them) and {} blobs ({} GiB).",
            self.source.display(),
            self.limits.max_manifests,
            self.limits.max_manifest_bytes >> 20,
            self.limits.max_blobs,
            self.limits.max_bytes >> 30,
        ))
    }

    /// Count `n` more manifests of `bytes` in all, or refuse.
    fn charge_manifests(&mut self, n: usize, bytes: u64) -> Result<(), ImportError> {
        let count = self.seen.len().saturating_add(n);
        if count > self.limits.max_manifests {
            return Err(
                self.limit(format!("holds more than {} manifests", self.limits.max_manifests))
            );
        }
        match self.plan.manifest_bytes.checked_add(bytes) {
            Some(total) if total <= self.limits.max_manifest_bytes => {
                self.plan.manifest_bytes = total;
                Ok(())
            }
            _ => Err(self.limit(format!(
                "holds more than {} MiB of manifests",
                self.limits.max_manifest_bytes >> 20
            ))),
        }
    }

    fn add_blob(&mut self, blob: &Descriptor) -> Result<(), ImportError> {
        if self.plan.blobs.contains_key(&blob.digest) {
            return Ok(());
        }
        if self.plan.blobs.len() >= self.limits.max_blobs {
            return Err(self.limit(format!("holds more than {} blobs", self.limits.max_blobs)));
        }
        self.plan.blob_bytes = self
            .plan
            .blob_bytes
            .checked_add(blob.size)
            .filter(|&t| t <= self.limits.max_bytes)
            .ok_or_else(|| {
                self.limit(format!("holds more than {} GiB of blobs", self.limits.max_bytes >> 30))
            })?;
        let required = !media_type::is_non_distributable(&blob.media_type) || blob.urls.is_empty();
        self.plan.blobs.insert(blob.digest.clone(), PlannedBlob { size: blob.size, required });
        Ok(())
    }

    /// Fetch the manifests `wanted` describes (charged already), in parallel, each held to
    /// its descriptor's size.
    async fn fetch(&self, wanted: Vec<Descriptor>) -> Result<Vec<Fetched>, ImportError> {
        let (source, repo) = (self.source, self.repo);
        futures::stream::iter(wanted)
            .map(|d| async move {
                source
                    .manifest(repo, &Reference::Digest(d.digest.clone()), Some(d.size))
                    .await?
                    .ok_or_else(|| {
                        ImportError::SourceImageNotFound(format!(
                            "The source {} lists manifest {repo}@{}, but does not have it.",
                            source.display(),
                            d.digest
                        ))
                    })
            })
            .buffered(FETCH_PARALLELISM)
            .try_collect()
            .await
    }

    /// Charge the not yet seen `descriptors` (manifests to fetch), or refuse before any
    /// of them is downloaded; the ones to fetch.
    fn admit(&mut self, descriptors: Vec<Descriptor>) -> Result<Vec<Descriptor>, ImportError> {
        let mut fresh = Vec::new();
        let mut bytes = 0u64;
        for d in descriptors {
            if self.seen.contains(&d.digest)
                || fresh.iter().any(|f: &Descriptor| f.digest == d.digest)
            {
                continue;
            }
            if d.size > MAX_MANIFEST_SIZE as u64 {
                return Err(ImportError::SourceInvalidManifest(format!(
                    "The source {} lists manifest {}@{} of {} bytes; manifests are at most {MAX_MANIFEST_SIZE} bytes.",
                    self.source.display(),
                    self.repo,
                    d.digest,
                    d.size
                )));
            }
            bytes = bytes.saturating_add(d.size);
            fresh.push(d);
        }
        self.charge_manifests(fresh.len(), bytes)?;
        self.seen.extend(fresh.iter().map(|d| d.digest.clone()));
        Ok(fresh)
    }

    /// The manifest `m` is.
    fn parse(&self, m: &Fetched) -> Result<Manifest, ImportError> {
        Manifest::parse(&m.bytes, Some(&m.media_type)).map_err(|e| {
            ImportError::SourceInvalidManifest(format!(
                "The manifest {}@{} from {} is invalid: {e}.",
                self.repo,
                m.digest,
                self.source.display()
            ))
        })
    }

    /// Add `roots` (fetched and charged, parsed if they were already) and everything below
    /// them to the plan, children first; the digests added.
    async fn walk(
        &mut self,
        roots: Vec<(Fetched, Option<Manifest>)>,
        referrer: bool,
    ) -> Result<Vec<Digest>, ImportError> {
        let root_digests: Vec<Digest> = roots.iter().map(|(f, _)| f.digest.clone()).collect();
        // Fetch breadth-first (a level at a time, in parallel), remembering each manifest's
        // children; then order depth-first so that every child precedes its parents.
        let mut fetched: HashMap<Digest, Walked> = HashMap::new();
        self.seen.extend(root_digests.iter().cloned());
        let mut level = roots;
        let mut depth = 0;
        while !level.is_empty() {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(self.limit(format!("nests indexes more than {MAX_DEPTH} levels deep")));
            }
            let mut children = Vec::new();
            for (m, parsed) in level {
                let parsed = match parsed {
                    Some(parsed) => parsed,
                    None => self.parse(&m)?,
                };
                for child in parsed.children() {
                    if depth == 1
                        && !referrer
                        && let Some(p) = &child.platform
                    {
                        self.plan.platforms.push(p.to_string());
                    }
                    children.push(child.clone());
                }
                for blob in parsed.blobs() {
                    self.add_blob(blob)?;
                }
                self.subjects
                    .insert(m.digest.clone(), parsed.subject.as_ref().map(|s| s.digest.clone()));
                let kids = parsed.children().iter().map(|c| c.digest.clone()).collect();
                fetched.insert(m.digest.clone(), (m, parsed, kids));
            }
            let wanted = self.admit(children)?;
            level = self.fetch(wanted).await?.into_iter().map(|f| (f, None)).collect();
        }
        let mut added = Vec::new();
        let mut emitted = HashSet::new();
        for root in root_digests {
            post_order(&root, &mut fetched, &mut emitted, &mut added, referrer, &mut self.plan);
        }
        Ok(added)
    }

    /// Plan the referrers of `of` (and what they contain); the manifests added.
    async fn referrers_of(&mut self, of: Vec<Digest>) -> Result<Vec<Digest>, ImportError> {
        // One lookup per manifest (two where the source lacks the referrers API): in
        // parallel, or an index of hundreds of platforms would wait on each in turn.
        let (source, repo) = (self.source, self.repo);
        let found: Vec<(Digest, Vec<Descriptor>)> =
            futures::stream::iter(of)
                .map(|d| async move {
                    Ok::<_, ImportError>((d.clone(), source.referrers(repo, &d).await?))
                })
                .buffered(FETCH_PARALLELISM)
                .try_collect()
                .await?;
        let mut wanted = Vec::new();
        let mut claimed: HashMap<Digest, Digest> = HashMap::new();
        for (subject, listed) in found {
            for r in listed {
                match self.subjects.get(&r.digest) {
                    // Already planned: it must really be a referrer of `subject`, or the
                    // lists go round in circles.
                    Some(actual) if actual.as_ref() != Some(&subject) => {
                        return Err(self.loop_error(&r.digest, &subject, actual.as_ref()));
                    }
                    Some(_) => {}
                    None => {
                        claimed.insert(r.digest.clone(), subject.clone());
                        wanted.push(r);
                    }
                }
            }
        }
        let wanted = self.admit(wanted)?;
        let mut roots = Vec::new();
        for m in self.fetch(wanted).await? {
            let parsed = Manifest::parse(&m.bytes, Some(&m.media_type)).ok();
            let actual = parsed.as_ref().and_then(|p| p.subject.as_ref()).map(|s| &s.digest);
            if let Some(subject) = claimed.get(&m.digest)
                && actual != Some(subject)
            {
                return Err(self.loop_error(&m.digest, subject, actual));
            }
            roots.push((m, parsed));
        }
        self.walk(roots, true).await
    }

    fn loop_error(
        &self,
        referrer: &Digest,
        listed_for: &Digest,
        actual: Option<&Digest>,
    ) -> ImportError {
        let actual = actual.map_or_else(|| "none".to_owned(), Digest::to_string);
        ImportError::SourceReferrerLoop(format!(
            "The source {} lists {}@{referrer} as a referrer of {listed_for}, but its subject is {actual}.",
            self.source.display(),
            self.repo
        ))
    }
}

/// A manifest walked: as fetched, parsed, and its children's digests.
type Walked = (Fetched, Manifest, Vec<Digest>);

/// Emit `digest` after everything below it (iteratively: depth is bounded but stacks aren't free).
fn post_order(
    root: &Digest,
    fetched: &mut HashMap<Digest, Walked>,
    emitted: &mut HashSet<Digest>,
    added: &mut Vec<Digest>,
    referrer: bool,
    plan: &mut Plan,
) {
    let mut stack = vec![(root.clone(), false)];
    while let Some((d, expanded)) = stack.pop() {
        if emitted.contains(&d) {
            continue;
        }
        if expanded {
            if let Some((m, manifest, _)) = fetched.remove(&d) {
                emitted.insert(d.clone());
                added.push(d);
                plan.manifests.push(PlannedManifest {
                    digest: m.digest,
                    manifest,
                    bytes: m.bytes,
                    referrer,
                });
            }
            continue;
        }
        stack.push((d.clone(), true));
        if let Some((_, _, children)) = fetched.get(&d) {
            for c in children.iter().rev() {
                if !emitted.contains(c) {
                    stack.push((c.clone(), false));
                }
            }
        }
    }
}
