//! The import request: ACR's `ImportImageParameters`, checked and with its defaults applied.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wharf_oci::{Digest, Reference, RepositoryName, Tag};

use crate::ImportError;

/// `NoForce` fails before copying when a target tag exists; `Force` moves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportMode {
    NoForce,
    Force,
}

/// Source registry credentials. Kept in memory only; `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// Where the image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceLocation {
    /// Any registry speaking the distribution API, by address.
    Remote { registry_uri: String, credentials: Option<Credentials> },
    /// A registry on this server, by ARM resource ID (read on behalf of the caller).
    Registry { resource_id: String },
}

/// A checked import request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRequest {
    pub source: SourceLocation,
    /// `sourceImage` as given, for messages.
    pub source_image: String,
    /// The repository in the source (Docker Hub's `library/` added where implied).
    pub source_repo: RepositoryName,
    pub source_reference: Reference,
    pub target_tags: Vec<(RepositoryName, Tag)>,
    pub untagged_repositories: Vec<RepositoryName>,
    pub mode: ImportMode,
    /// Copy signatures, SBOMs and other referrers along (wharf's default; not in ACR).
    pub include_referrers: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Parameters {
    source: Option<SourceParameters>,
    target_tags: Option<Vec<String>>,
    untagged_target_repositories: Option<Vec<String>>,
    mode: Option<String>,
    include_referrers: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SourceParameters {
    resource_id: Option<String>,
    registry_uri: Option<String>,
    credentials: Option<CredentialParameters>,
    source_image: Option<String>,
}

#[derive(Deserialize)]
struct CredentialParameters {
    username: Option<String>,
    password: Option<String>,
}

fn invalid(msg: impl Into<String>) -> ImportError {
    ImportError::InvalidParameters(msg.into())
}

/// The names Docker Hub answers to.
pub(crate) fn is_docker_hub(host: &str) -> bool {
    let host = host.trim_end_matches('/').to_ascii_lowercase();
    let host = host.trim_start_matches("https://").trim_start_matches("http://");
    matches!(
        host,
        "docker.io" | "registry.hub.docker.com" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `repo`, `repo:tag`, `repo@sha256:…` (or `repo:tag@sha256:…`, where the digest wins).
pub(crate) fn split_image(image: &str) -> Result<(String, Option<Reference>), ImportError> {
    let bad = |why: String| invalid(format!("Invalid source image '{image}': {why}"));
    if let Some((name, digest)) = image.split_once('@') {
        let digest: Digest = digest.parse().map_err(|e| bad(format!("{e}")))?;
        if !digest.is_supported() {
            return Err(bad("only sha256 digests are supported".into()));
        }
        let name = match name.rsplit_once(':') {
            Some((n, tag)) if !tag.contains('/') => n,
            _ => name,
        };
        return Ok((name.to_owned(), Some(Reference::Digest(digest))));
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => {
            let tag = Tag::parse(tag).map_err(|e| bad(e.to_string()))?;
            Ok((name.to_owned(), Some(Reference::Tag(tag))))
        }
        _ => Ok((image.to_owned(), None)),
    }
}

fn repo_name(s: &str, what: &str) -> Result<RepositoryName, ImportError> {
    RepositoryName::parse(s).map_err(|e| invalid(format!("Invalid {what} '{s}': {e}")))
}

/// Check an `importImage` body and apply ACR's defaults.
pub fn parse_parameters(body: &Value) -> Result<ImportRequest, ImportError> {
    let p: Parameters = serde_json::from_value(body.clone()).map_err(|e| {
        invalid(format!("The request body is not valid ImportImageParameters: {e}"))
    })?;
    let src = p.source.ok_or_else(|| invalid("The 'source' property is required."))?;
    let source_image = src
        .source_image
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid("The 'source.sourceImage' property is required."))?;
    let source = match (
        src.registry_uri.filter(|s| !s.is_empty()),
        src.resource_id.filter(|s| !s.is_empty()),
    ) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "Give either 'source.registryUri' or 'source.resourceId', not both.",
            ));
        }
        (None, None) => {
            return Err(invalid("One of 'source.registryUri' or 'source.resourceId' is required."));
        }
        (Some(uri), None) => {
            let credentials = match src.credentials {
                None => None,
                Some(c) => Some(Credentials {
                    username: c.username.filter(|u| !u.is_empty()),
                    password: c.password.filter(|p| !p.is_empty()).ok_or_else(|| {
                        invalid("'source.credentials.password' is required with credentials.")
                    })?,
                }),
            };
            SourceLocation::Remote { registry_uri: uri, credentials }
        }
        (None, Some(id)) => {
            if src.credentials.is_some() {
                return Err(invalid(
                    "'source.credentials' apply to 'source.registryUri' only; a registry on this server is read on behalf of the caller.",
                ));
            }
            SourceLocation::Registry { resource_id: id }
        }
    };

    let (name, reference) = split_image(source_image.trim())?;
    let given_repo = repo_name(&name, "source repository")?;
    let hub = matches!(&source, SourceLocation::Remote { registry_uri, .. } if is_docker_hub(registry_uri));
    let source_repo = if hub && !name.contains('/') {
        repo_name(&format!("library/{name}"), "source repository")?
    } else {
        given_repo.clone()
    };
    let source_tag = match &reference {
        Some(Reference::Tag(t)) => Some(t.clone()),
        _ => None,
    };
    let latest = || Tag::parse("latest").map_err(ImportError::internal);

    let mut target_tags = Vec::new();
    for t in p.target_tags.unwrap_or_default() {
        if t.contains('@') {
            return Err(invalid(format!(
                "Invalid target tag '{t}': a target is repo[:tag], not a digest."
            )));
        }
        let (repo, tag) = match t.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => (
                r.to_owned(),
                Tag::parse(tag).map_err(|e| invalid(format!("Invalid target tag '{t}': {e}")))?,
            ),
            _ => (
                t.clone(),
                match &source_tag {
                    Some(s) => s.clone(),
                    None => latest()?,
                },
            ),
        };
        target_tags.push((repo_name(&repo, "target repository")?, tag));
    }
    let mut untagged_repositories = Vec::new();
    for r in p.untagged_target_repositories.unwrap_or_default() {
        untagged_repositories.push(repo_name(&r, "untagged target repository")?);
    }
    if target_tags.is_empty() && untagged_repositories.is_empty() {
        match &reference {
            Some(Reference::Digest(_)) => untagged_repositories.push(given_repo),
            Some(Reference::Tag(t)) => target_tags.push((given_repo, t.clone())),
            None => target_tags.push((given_repo, latest()?)),
        }
    }
    target_tags.dedup();
    untagged_repositories.dedup();

    let mode = match p.mode.as_deref() {
        None => ImportMode::NoForce,
        Some(m) if m.eq_ignore_ascii_case("NoForce") => ImportMode::NoForce,
        Some(m) if m.eq_ignore_ascii_case("Force") => ImportMode::Force,
        Some(m) => return Err(invalid(format!("Invalid mode '{m}': use NoForce or Force."))),
    };
    Ok(ImportRequest {
        source,
        source_image,
        source_repo,
        source_reference: reference.unwrap_or(Reference::Tag(latest()?)),
        target_tags,
        untagged_repositories,
        mode,
        include_referrers: p.include_referrers.unwrap_or(true),
    })
}

/// The request as stored with its job: everything but the credentials.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredRequest {
    pub(crate) source: Value,
    pub(crate) target_tags: Vec<String>,
    pub(crate) untagged_target_repositories: Vec<String>,
    pub(crate) mode: ImportMode,
    pub(crate) include_referrers: bool,
    /// Who submitted it (to read a `resourceId` source on their behalf when resumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) caller: Option<String>,
}

impl ImportRequest {
    /// The request without credentials, in `ImportImageParameters` form (re-parseable).
    pub(crate) fn stored(&self) -> StoredRequest {
        let source = match &self.source {
            SourceLocation::Remote { registry_uri, .. } => {
                serde_json::json!({"registryUri": registry_uri, "sourceImage": self.source_image})
            }
            SourceLocation::Registry { resource_id } => {
                serde_json::json!({"resourceId": resource_id, "sourceImage": self.source_image})
            }
        };
        StoredRequest {
            source,
            target_tags: self.target_tags.iter().map(|(r, t)| format!("{r}:{t}")).collect(),
            untagged_target_repositories: self
                .untagged_repositories
                .iter()
                .map(|r| r.to_string())
                .collect(),
            mode: self.mode,
            include_referrers: self.include_referrers,
            caller: None,
        }
    }

    pub(crate) fn has_credentials(&self) -> bool {
        matches!(&self.source, SourceLocation::Remote { credentials: Some(_), .. })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<ImportRequest, ImportError> {
        parse_parameters(&v)
    }

    #[test]
    fn defaults_follow_acr() {
        let r =
            parse(json!({"source": {"registryUri": "docker.io", "sourceImage": "hello-world"}}))
                .unwrap();
        assert_eq!(r.source_repo.as_str(), "library/hello-world");
        assert_eq!(r.source_reference.to_string(), "latest");
        assert_eq!(
            r.target_tags,
            vec![(RepositoryName::parse("hello-world").unwrap(), Tag::parse("latest").unwrap())]
        );
        assert_eq!(r.mode, ImportMode::NoForce);
        assert!(r.include_referrers);

        let r = parse(json!({"source": {"registryUri": "r.example.com", "sourceImage": "a/b:v1"}, "targetTags": ["x/y", "z:t"], "mode": "force"})).unwrap();
        let tags: Vec<String> = r.target_tags.iter().map(|(r, t)| format!("{r}:{t}")).collect();
        assert_eq!(tags, ["x/y:v1", "z:t"]);
        assert_eq!(r.mode, ImportMode::Force);

        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(
            json!({"source": {"registryUri": "r.example.com", "sourceImage": format!("a/b@{d}")}}),
        )
        .unwrap();
        assert!(r.target_tags.is_empty());
        assert_eq!(r.untagged_repositories[0].as_str(), "a/b");
        assert_eq!(r.source_reference.to_string(), d);
    }

    #[test]
    fn rejects_bad_requests() {
        for (body, needle) in [
            (json!({}), "'source'"),
            (json!({"source": {"registryUri": "x.io"}}), "sourceImage"),
            (json!({"source": {"sourceImage": "a"}}), "One of"),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "x.io", "resourceId": "/subscriptions/s"}}),
                "not both",
            ),
            (
                json!({"source": {"sourceImage": "A", "registryUri": "x.io"}}),
                "Invalid source repository",
            ),
            (
                json!({"source": {"sourceImage": "a@sha256:xyz", "registryUri": "x.io"}}),
                "Invalid source image",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "x.io", "credentials": {"username": "u"}}}),
                "password",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "x.io"}, "mode": "Sometimes"}),
                "mode",
            ),
            (
                json!({"source": {"sourceImage": "a", "registryUri": "x.io"}, "targetTags": ["a@sha256:00"]}),
                "not a digest",
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert!(matches!(e, ImportError::InvalidParameters(_)), "{body}");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn credentials_are_never_shown() {
        let r = parse(json!({"source": {"registryUri": "x.io", "sourceImage": "a", "credentials": {"username": "u", "password": "s3cret"}}})).unwrap();
        assert!(!format!("{r:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&r.stored()).unwrap().contains("s3cret"));
        assert!(r.has_credentials());
    }
}
