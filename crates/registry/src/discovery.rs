//! Content discovery: tag lists, the catalog, referrers.

use std::collections::BTreeMap;

use wharf_oci::Digest;
use wharf_oci::manifest::Descriptor;
use wharf_storage::{RegistryId, RepoKey};

use crate::{RegistryError, RegistryService};

/// One page of names, and whether more follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// Set when the page was cut at `n`: the last item, to pass as `last` next time.
    pub next_last: Option<String>,
}

/// The most names a tag list or catalog page holds, and the page a request without `n` gets
/// (distribution's default): a listing never holds more in memory, whatever it asks for.
pub const MAX_PAGE: u32 = 1000;

/// The most referrers of one manifest returned (and held) at once.
pub const MAX_REFERRERS: u32 = 1000;

/// A page size asked for (`n`), within [`MAX_PAGE`].
pub fn page_size(n: Option<u32>) -> u32 {
    n.unwrap_or(MAX_PAGE).min(MAX_PAGE)
}

fn page(mut items: Vec<String>, n: Option<u32>) -> Page {
    match n {
        Some(n) if items.len() > n as usize => {
            items.truncate(n as usize);
            let next_last = items.last().cloned();
            Page { items, next_last }
        }
        _ => Page { items, next_last: None },
    }
}

impl RegistryService {
    /// Tags of a repository in lexical order, after `last`, at most `n`.
    pub async fn tags(
        &self,
        repo: &RepoKey,
        last: Option<&str>,
        n: Option<u32>,
    ) -> Result<Page, RegistryError> {
        if n == Some(0) {
            // Still an error for a repository that doesn't exist.
            self.meta
                .tags(repo, last, Some(0))
                .await?
                .ok_or_else(|| RegistryError::NameUnknown(repo.name.to_string()))?;
            return Ok(Page { items: Vec::new(), next_last: None });
        }
        let items = self
            .meta
            .tags(repo, last, n.map(|n| n.saturating_add(1)))
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.name.to_string()))?;
        Ok(page(items, n))
    }

    /// Repositories of a registry in lexical order, after `last`, at most `n`.
    pub async fn catalog(
        &self,
        registry: RegistryId,
        last: Option<&str>,
        n: Option<u32>,
    ) -> Result<Page, RegistryError> {
        if n == Some(0) {
            return Ok(Page { items: Vec::new(), next_last: None });
        }
        let items = self.meta.repositories(registry, last, n.map(|n| n.saturating_add(1))).await?;
        Ok(page(items, n))
    }

    /// Manifests in `repo` whose subject is `subject`, optionally only of one artifact type,
    /// oldest first from after the referrer `after`, at most `n` (within
    /// [`MAX_REFERRERS`]); the referrer to go on after when there are more.
    pub async fn referrers(
        &self,
        repo: &RepoKey,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        n: Option<u32>,
    ) -> Result<(Vec<Descriptor>, Option<Digest>), RegistryError> {
        let n = n.unwrap_or(MAX_REFERRERS).min(MAX_REFERRERS);
        let mut records =
            self.meta.referrers(repo, subject, artifact_type, after, n.saturating_add(1)).await?;
        let next = if records.len() > n as usize {
            records.truncate(n as usize);
            records.last().map(|r| r.digest.clone())
        } else {
            None
        };
        let descriptors = records
            .into_iter()
            .map(|r| Descriptor {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                urls: Vec::new(),
                platform: None,
                artifact_type: r.artifact_type,
                annotations: r
                    .annotations
                    .and_then(|a| serde_json::from_str::<BTreeMap<String, String>>(&a).ok()),
            })
            .collect();
        Ok((descriptors, next))
    }
}
