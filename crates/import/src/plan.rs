//! Everything an import copies, worked out before anything is copied: the manifest tree
//! (index → platform manifests → …), every blob, and the referrers of every manifest.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use wharf_oci::manifest::Manifest;
use wharf_oci::{Digest, Reference, RepositoryName, media_type};

use crate::ImportError;
use crate::remote::Fetched;
use crate::source::Source;

/// How deep indexes may nest, and how many manifests one import may hold: limits against
/// a source that serves cycles or endless trees, far above what real images use.
const MAX_DEPTH: usize = 8;
const MAX_MANIFESTS: usize = 20_000;
/// Manifest bytes one import may hold (they are kept until the commit).
const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// Manifests fetched at once.
const FETCH_PARALLELISM: usize = 8;

/// A manifest to store, with its bytes exactly as the source served them.
#[derive(Clone, Debug)]
pub(crate) struct PlannedManifest {
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
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
}

impl Plan {
    pub(crate) fn bytes_total(&self) -> u64 {
        self.blobs.values().map(|b| b.size).sum()
    }
}

pub(crate) async fn plan(
    source: &dyn Source,
    repo: &RepositoryName,
    reference: &Reference,
    include_referrers: bool,
) -> Result<Plan, ImportError> {
    let root = source.manifest(repo, reference).await?.ok_or_else(|| {
        let sep = if matches!(reference, Reference::Digest(_)) { '@' } else { ':' };
        ImportError::SourceImageNotFound(format!(
            "The source image {repo}{sep}{reference} was not found in {}.",
            source.display()
        ))
    })?;
    let mut plan = Plan {
        root: root.digest.clone(),
        manifests: Vec::new(),
        blobs: BTreeMap::new(),
        platforms: Vec::new(),
        manifest_bytes: 0,
    };
    let mut seen = HashSet::new();
    let mut added = walk(source, repo, vec![root], false, &mut seen, &mut plan).await?;
    if include_referrers {
        // Referrers of everything copied, then referrers of those (a signature on an SBOM).
        while !added.is_empty() {
            // One lookup per manifest (two where the source lacks the referrers API): in
            // parallel, or an index of hundreds of platforms would wait on each in turn.
            let found: Vec<Vec<wharf_oci::manifest::Descriptor>> = futures::stream::iter(added)
                .map(|d| async move { source.referrers(repo, &d).await })
                .buffered(FETCH_PARALLELISM)
                .try_collect()
                .await?;
            let mut wanted: Vec<Digest> = Vec::new();
            for r in found.into_iter().flatten() {
                if !seen.contains(&r.digest) && !wanted.contains(&r.digest) {
                    wanted.push(r.digest);
                }
            }
            let roots: Vec<Fetched> = futures::stream::iter(wanted)
                .map(|d| async move { source.manifest(repo, &Reference::Digest(d)).await })
                .buffered(FETCH_PARALLELISM)
                .try_filter_map(|f| futures::future::ready(Ok(f)))
                .try_collect()
                .await?;
            added = walk(source, repo, roots, true, &mut seen, &mut plan).await?;
        }
    }
    Ok(plan)
}

/// Add `roots` and everything below them to the plan, children first; the digests added.
async fn walk(
    source: &dyn Source,
    repo: &RepositoryName,
    roots: Vec<Fetched>,
    referrer: bool,
    seen: &mut HashSet<Digest>,
    plan: &mut Plan,
) -> Result<Vec<Digest>, ImportError> {
    let root_digests: Vec<Digest> = roots.iter().map(|f| f.digest.clone()).collect();
    // Fetch breadth-first (a level at a time, in parallel), remembering each manifest's
    // children; then order depth-first so that every child precedes its parents.
    let mut fetched: HashMap<Digest, (Fetched, Vec<Digest>)> = HashMap::new();
    let mut level: Vec<Fetched> =
        roots.into_iter().filter(|f| seen.insert(f.digest.clone())).collect();
    let mut depth = 0;
    while !level.is_empty() {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(ImportError::SourceInvalidManifest(format!(
                "The image from {} nests indexes more than {MAX_DEPTH} levels deep.",
                source.display()
            )));
        }
        let mut next = Vec::new();
        for m in level {
            plan.manifest_bytes += m.bytes.len() as u64;
            if plan.manifest_bytes > MAX_MANIFEST_BYTES {
                return Err(ImportError::SourceInvalidManifest(format!(
                    "The image from {} holds more than {} MiB of manifests.",
                    source.display(),
                    MAX_MANIFEST_BYTES >> 20
                )));
            }
            let parsed = Manifest::parse(&m.bytes, Some(&m.media_type)).map_err(|e| {
                ImportError::SourceInvalidManifest(format!(
                    "The manifest {repo}@{} from {} is invalid: {e}.",
                    m.digest,
                    source.display()
                ))
            })?;
            for child in parsed.children() {
                if depth == 1
                    && !referrer
                    && let Some(p) = &child.platform
                {
                    plan.platforms.push(p.to_string());
                }
                if seen.insert(child.digest.clone()) {
                    next.push(child.digest.clone());
                }
            }
            for blob in parsed.blobs() {
                let required =
                    !media_type::is_non_distributable(&blob.media_type) || blob.urls.is_empty();
                plan.blobs
                    .entry(blob.digest.clone())
                    .or_insert(PlannedBlob { size: blob.size, required });
            }
            let children = parsed.children().iter().map(|c| c.digest.clone()).collect();
            fetched.insert(m.digest.clone(), (m, children));
        }
        if seen.len() > MAX_MANIFESTS {
            return Err(ImportError::SourceInvalidManifest(format!(
                "The image from {} holds more than {MAX_MANIFESTS} manifests.",
                source.display()
            )));
        }
        level = futures::stream::iter(next)
            .map(|d| async move {
                source.manifest(repo, &Reference::Digest(d.clone())).await?.ok_or_else(|| {
                    ImportError::SourceImageNotFound(format!(
                        "The source {} lists manifest {repo}@{d}, but does not have it.",
                        source.display()
                    ))
                })
            })
            .buffered(FETCH_PARALLELISM)
            .try_collect()
            .await?;
    }
    let mut added = Vec::new();
    let mut emitted = HashSet::new();
    for root in root_digests {
        post_order(&root, &mut fetched, &mut emitted, &mut added, referrer, plan);
    }
    Ok(added)
}

/// Emit `digest` after everything below it (iteratively: depth is bounded but stacks aren't free).
fn post_order(
    root: &Digest,
    fetched: &mut HashMap<Digest, (Fetched, Vec<Digest>)>,
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
            if let Some((m, _)) = fetched.remove(&d) {
                emitted.insert(d.clone());
                added.push(d);
                plan.manifests.push(PlannedManifest {
                    digest: m.digest,
                    media_type: m.media_type,
                    bytes: m.bytes,
                    referrer,
                });
            }
            continue;
        }
        stack.push((d.clone(), true));
        if let Some((_, children)) = fetched.get(&d) {
            for c in children.iter().rev() {
                if !emitted.contains(c) {
                    stack.push((c.clone(), false));
                }
            }
        }
    }
}
