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

/// The source image, read: the repository as given and as the source names it (Docker
/// Hub's `library/` added where implied), and the reference if one was given.
struct SourceImage {
    given_repo: RepositoryName,
    repo: RepositoryName,
    reference: Option<Reference>,
}

impl SourceImage {
    fn read(image: &str, source: &SourceLocation) -> Result<SourceImage, ImportError> {
        let (name, reference) = split_image(image.trim())?;
        let given_repo = repo_name(&name, "source repository")?;
        let hub = matches!(source, SourceLocation::Remote { registry_uri, .. } if is_docker_hub(registry_uri));
        let repo = if hub && !name.contains('/') {
            repo_name(&format!("library/{name}"), "source repository")?
        } else {
            given_repo.clone()
        };
        Ok(SourceImage { given_repo, repo, reference })
    }

    /// As [`SourceImage::read`], with the reference defaulted (`latest`).
    fn resolve(image: &str, source: &SourceLocation) -> Result<Resolved, ImportError> {
        let read = SourceImage::read(image, source)?;
        Ok(Resolved {
            repo: read.repo,
            reference: read.reference.unwrap_or(Reference::Tag(latest()?)),
        })
    }
}

struct Resolved {
    repo: RepositoryName,
    reference: Reference,
}

fn latest() -> Result<Tag, ImportError> {
    Tag::parse("latest").map_err(ImportError::internal)
}

/// Check an `importImage` body and apply ACR's defaults.
pub fn parse_parameters(body: &Value) -> Result<ImportRequest, ImportError> {
    let p: Parameters = serde_json::from_value(body.clone()).map_err(|e| {
        invalid(format!("The request body is not valid ImportImageParameters: {e}"))
    })?;
    let src = p.source.ok_or_else(|| invalid("The 'source' property is required."))?;
    let source_image = src
        .source_image
        .clone()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid("The 'source.sourceImage' property is required."))?;
    let source = source_location(src)?;
    let image = SourceImage::read(&source_image, &source)?;
    let (target_tags, untagged_repositories) =
        targets(p.target_tags, p.untagged_target_repositories, &image)?;
    Ok(ImportRequest {
        source,
        source_image,
        source_repo: image.repo,
        source_reference: image.reference.unwrap_or(Reference::Tag(latest()?)),
        target_tags,
        untagged_repositories,
        mode: mode(p.mode.as_deref())?,
        include_referrers: p.include_referrers.unwrap_or(true),
    })
}

/// `registryUri` (with its credentials) or `resourceId`: exactly one.
fn source_location(src: SourceParameters) -> Result<SourceLocation, ImportError> {
    match (src.registry_uri.filter(|s| !s.is_empty()), src.resource_id.filter(|s| !s.is_empty())) {
        (Some(_), Some(_)) => {
            Err(invalid("Give either 'source.registryUri' or 'source.resourceId', not both."))
        }
        (None, None) => {
            Err(invalid("One of 'source.registryUri' or 'source.resourceId' is required."))
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
            Ok(SourceLocation::Remote { registry_uri: uri, credentials })
        }
        (None, Some(_)) if src.credentials.is_some() => Err(invalid(
            "'source.credentials' apply to 'source.registryUri' only; a registry on this server is read on behalf of the caller.",
        )),
        (None, Some(id)) => Ok(SourceLocation::Registry { resource_id: id }),
    }
}

/// Target tags, and untagged target repositories.
type Targets = (Vec<(RepositoryName, Tag)>, Vec<RepositoryName>);

/// The target tags (`repo` takes the source's tag, or `latest`) and untagged repositories;
/// without either, the source's own repository (tagged as the source is, if it is).
fn targets(
    tags: Option<Vec<String>>,
    untagged: Option<Vec<String>>,
    image: &SourceImage,
) -> Result<Targets, ImportError> {
    let source_tag = match &image.reference {
        Some(Reference::Tag(t)) => Some(t.clone()),
        _ => None,
    };
    let mut target_tags = Vec::new();
    for t in tags.unwrap_or_default() {
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
            _ => (t.clone(), source_tag.clone().map_or_else(latest, Ok)?),
        };
        target_tags.push((repo_name(&repo, "target repository")?, tag));
    }
    let mut untagged_repositories = Vec::new();
    for r in untagged.unwrap_or_default() {
        untagged_repositories.push(repo_name(&r, "untagged target repository")?);
    }
    if target_tags.is_empty() && untagged_repositories.is_empty() {
        let given = image.given_repo.clone();
        match &image.reference {
            Some(Reference::Digest(_)) => untagged_repositories.push(given),
            Some(Reference::Tag(t)) => target_tags.push((given, t.clone())),
            None => target_tags.push((given, latest()?)),
        }
    }
    target_tags.dedup();
    untagged_repositories.dedup();
    Ok((target_tags, untagged_repositories))
}

fn mode(mode: Option<&str>) -> Result<ImportMode, ImportError> {
    match mode {
        None => Ok(ImportMode::NoForce),
        Some(m) if m.eq_ignore_ascii_case("NoForce") => Ok(ImportMode::NoForce),
        Some(m) if m.eq_ignore_ascii_case("Force") => Ok(ImportMode::Force),
        Some(m) => Err(invalid(format!("Invalid mode '{m}': use NoForce or Force."))),
    }
}

/// The request as stored with its job: everything but the credentials, plus who submitted
/// it. Its JSON is the shape of `ImportImageParameters` (as the previous release stored
/// it, which is read as is): `source` holds `registryUri` or `resourceId` and
/// `sourceImage`, targets are `repo:tag`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredRequest {
    pub(crate) source: StoredSource,
    pub(crate) target_tags: Vec<TargetTag>,
    pub(crate) untagged_target_repositories: Vec<RepositoryName>,
    pub(crate) mode: ImportMode,
    pub(crate) include_referrers: bool,
    /// Who submitted it (to read a `resourceId` source on their behalf when resumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) caller: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredSource {
    #[serde(flatten)]
    location: StoredLocation,
    source_image: String,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum StoredLocation {
    RegistryUri(String),
    ResourceId(String),
}

/// A target `repo:tag`, stored as that text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub(crate) struct TargetTag(RepositoryName, Tag);

impl From<TargetTag> for String {
    fn from(t: TargetTag) -> String {
        format!("{}:{}", t.0, t.1)
    }
}

impl TryFrom<String> for TargetTag {
    type Error = String;

    fn try_from(s: String) -> Result<TargetTag, String> {
        let (repo, tag) = s.rsplit_once(':').ok_or_else(|| format!("'{s}' has no tag"))?;
        let repo = RepositoryName::parse(repo).map_err(|e| format!("'{s}': {e}"))?;
        Ok(TargetTag(repo, Tag::parse(tag).map_err(|e| format!("'{s}': {e}"))?))
    }
}

impl ImportRequest {
    /// The request as stored: without credentials, with its caller.
    pub(crate) fn stored(&self, caller: Option<String>) -> StoredRequest {
        let location = match &self.source {
            SourceLocation::Remote { registry_uri, .. } => {
                StoredLocation::RegistryUri(registry_uri.clone())
            }
            SourceLocation::Registry { resource_id } => {
                StoredLocation::ResourceId(resource_id.clone())
            }
        };
        StoredRequest {
            source: StoredSource { location, source_image: self.source_image.clone() },
            target_tags: self
                .target_tags
                .iter()
                .map(|(r, t)| TargetTag(r.clone(), t.clone()))
                .collect(),
            untagged_target_repositories: self.untagged_repositories.clone(),
            mode: self.mode,
            include_referrers: self.include_referrers,
            caller,
        }
    }

    pub(crate) fn has_credentials(&self) -> bool {
        matches!(&self.source, SourceLocation::Remote { credentials: Some(_), .. })
    }
}

impl StoredRequest {
    /// The request again (without credentials: only a job without them is resumed).
    pub(crate) fn request(&self) -> Result<ImportRequest, ImportError> {
        let source = match &self.source.location {
            StoredLocation::RegistryUri(uri) => {
                SourceLocation::Remote { registry_uri: uri.clone(), credentials: None }
            }
            StoredLocation::ResourceId(id) => SourceLocation::Registry { resource_id: id.clone() },
        };
        let image = SourceImage::resolve(&self.source.source_image, &source)?;
        Ok(ImportRequest {
            source,
            source_image: self.source.source_image.clone(),
            source_repo: image.repo,
            source_reference: image.reference,
            target_tags: self.target_tags.iter().map(|t| (t.0.clone(), t.1.clone())).collect(),
            untagged_repositories: self.untagged_target_repositories.clone(),
            mode: self.mode,
            include_referrers: self.include_referrers,
        })
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
        assert!(!serde_json::to_string(&r.stored(None)).unwrap().contains("s3cret"));
        assert!(r.has_credentials());
    }

    #[test]
    fn stored_requests_read_back() {
        // As the previous release (c6b6334) stored a job's request.
        let old = r#"{"source":{"resourceId":"/subscriptions/s/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries/default","sourceImage":"harness/multiarch:oci"},"targetTags":["imported/multiarch:oci","imported/multiarch:latest"],"untaggedTargetRepositories":[],"mode":"NoForce","includeReferrers":true,"caller":"f7d7d72e-abbf-4aad-b9a0-84419f892e71"}"#;
        let stored: StoredRequest = serde_json::from_str(old).unwrap();
        assert_eq!(stored.caller.as_deref(), Some("f7d7d72e-abbf-4aad-b9a0-84419f892e71"));
        let req = stored.request().unwrap();
        assert_eq!(req.source_repo.as_str(), "harness/multiarch");
        assert_eq!(req.source_reference.to_string(), "oci");
        assert_eq!(req.target_tags.len(), 2);
        // Written in the same shape, and read back to the same request.
        assert_eq!(serde_json::to_string(&req.stored(stored.caller.clone())).unwrap(), old);
        for body in [
            json!({"source": {"registryUri": "docker.io", "sourceImage": "hello-world"}, "mode": "Force"}),
            json!({"source": {"registryUri": "r.io", "sourceImage": format!("a@sha256:{}", "b".repeat(64))}}),
        ] {
            let req = parse(body).unwrap();
            let text = serde_json::to_string(&req.stored(None)).unwrap();
            let back = serde_json::from_str::<StoredRequest>(&text).unwrap().request().unwrap();
            assert_eq!(back, req, "{text}");
        }
        assert!(serde_json::from_str::<StoredRequest>(&old.replace(":oci\"", "\"")).is_err());
    }
}
