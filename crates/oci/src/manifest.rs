//! Reading the references out of a pushed manifest.
//!
//! wharf never re-serialises a manifest: the bytes are stored and served as pushed. This
//! module only extracts what the registry must check and index — the blobs and child
//! manifests a manifest points to, its `subject`, its artifact type and annotations.
//! It is hand-written rather than built on `oci-spec`'s types because those are strict
//! models of the image spec, and a registry must accept (and index) manifests that only
//! roughly follow it: artifact types, unknown fields, Docker schema 2, the OCI 1.1-rc
//! artifact manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Digest;
use crate::media_type as mt;

/// A content descriptor, as found in manifests and indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The platform of an index entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What a manifest points to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant, reason = "built once per manifest PUT; boxing buys nothing")]
pub enum Content {
    /// An image manifest (or an artifact shaped like one): a config and layers, all blobs.
    Image { config: Option<Descriptor>, layers: Vec<Descriptor> },
    /// An index / manifest list: child manifests.
    Index { manifests: Vec<Descriptor> },
}

/// The parts of a manifest the registry checks and indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The media type it is stored and served with.
    pub media_type: String,
    pub content: Content,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without it, the config's media type
    /// (what the referrers API reports).
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Why bytes are not an acceptable manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest must be a JSON object")]
    NotObject,
    #[error("schemaVersion 1 manifests are not supported; push a schema 2 or OCI manifest")]
    Schema1,
    #[error("unsupported schemaVersion {0}")]
    SchemaVersion(String),
    #[error("mediaType {field:?} in the manifest does not match Content-Type {header:?}")]
    MediaTypeMismatch { field: String, header: String },
    #[error("{0} manifest needs a {1:?} field")]
    MissingField(String, &'static str),
    #[error("invalid descriptor in {field:?}: {reason}")]
    Descriptor { field: &'static str, reason: String },
}

impl Manifest {
    /// Parse a pushed manifest. `content_type` is the request's `Content-Type`, if any.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let obj = value.as_object().ok_or(ManifestError::NotObject)?;

        match obj.get("schemaVersion") {
            None => {}
            Some(v) if v.as_u64() == Some(2) => {}
            Some(v) if v.as_u64() == Some(1) => return Err(ManifestError::Schema1),
            Some(v) => return Err(ManifestError::SchemaVersion(v.to_string())),
        }
        let media_type = media_type(obj, content_type)?;
        let content = content(obj, &media_type)?;
        let subject = match obj.get("subject") {
            None | Some(Value::Null) => None,
            Some(v) => Some(descriptor(v, "subject")?),
        };
        let artifact_type = match obj.get("artifactType") {
            Some(Value::String(s)) => Some(s.clone()),
            None | Some(Value::Null) => match &content {
                Content::Image { config: Some(c), .. } => Some(c.media_type.clone()),
                _ => None,
            },
            Some(_) => {
                return Err(ManifestError::Descriptor {
                    field: "artifactType",
                    reason: "must be a string".into(),
                });
            }
        };
        let annotations = match obj.get("annotations") {
            None | Some(Value::Null) => None,
            Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                ManifestError::Descriptor { field: "annotations", reason: e.to_string() }
            })?),
        };
        Ok(Manifest { media_type, content, subject, artifact_type, annotations })
    }

    /// Every blob this manifest needs (config and layers); empty for an index.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        let (config, layers): (Option<&Descriptor>, &[Descriptor]) = match &self.content {
            Content::Image { config, layers } => (config.as_ref(), layers),
            Content::Index { .. } => (None, &[]),
        };
        config.into_iter().chain(layers.iter())
    }

    /// Every child manifest (for an index); empty for an image manifest.
    pub fn children(&self) -> &[Descriptor] {
        match &self.content {
            Content::Index { manifests } => manifests,
            Content::Image { .. } => &[],
        }
    }
}

/// A manifest's media type: its `mediaType` field and the request's Content-Type, which
/// must agree when both say something, else guessed from the body.
fn media_type(
    obj: &serde_json::Map<String, Value>,
    content_type: Option<&str>,
) -> Result<String, ManifestError> {
    let field_type = match obj.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ManifestError::Descriptor {
                field: "mediaType",
                reason: "must be a string".into(),
            });
        }
    };
    // A generic Content-Type says nothing about the manifest; fall back to the body.
    let header_type = content_type
        .map(mt::essence)
        .filter(|h| !h.is_empty() && h != "application/json" && h != "application/octet-stream");
    if let (Some(field), Some(header)) = (&field_type, &header_type)
        && !field.eq_ignore_ascii_case(header)
    {
        return Err(ManifestError::MediaTypeMismatch {
            field: field.clone(),
            header: header.clone(),
        });
    }
    if matches!(
        field_type.as_deref().or(header_type.as_deref()),
        Some(mt::DOCKER_SCHEMA1 | mt::DOCKER_SCHEMA1_SIGNED)
    ) {
        return Err(ManifestError::Schema1);
    }
    Ok(header_type.or(field_type).unwrap_or_else(|| {
        if obj.contains_key("manifests") { mt::OCI_INDEX } else { mt::OCI_MANIFEST }.to_owned()
    }))
}

/// An index's children, or an image manifest's config and layers.
fn content(
    obj: &serde_json::Map<String, Value>,
    media_type: &str,
) -> Result<Content, ManifestError> {
    let missing = |field| ManifestError::MissingField(media_type.to_owned(), field);
    if mt::is_index(media_type)
        || (!mt::is_image_manifest(media_type) && obj.contains_key("manifests"))
    {
        let manifests = obj.get("manifests").ok_or_else(|| missing("manifests"))?;
        return Ok(Content::Index { manifests: descriptors(manifests, "manifests")? });
    }
    let config = match obj.get("config") {
        Some(v) => Some(descriptor(v, "config")?),
        None if mt::is_image_manifest(media_type) => return Err(missing("config")),
        None => None,
    };
    let mut layers = match obj.get("layers") {
        Some(Value::Null) | None => Vec::new(),
        Some(v) => descriptors(v, "layers")?,
    };
    // The OCI 1.1-rc artifact manifest names its blobs `blobs`.
    if let Some(v) = obj.get("blobs") {
        layers.extend(descriptors(v, "blobs")?);
    }
    Ok(Content::Image { config, layers })
}

fn descriptors(v: &Value, field: &'static str) -> Result<Vec<Descriptor>, ManifestError> {
    match v {
        Value::Array(items) => items.iter().map(|i| descriptor(i, field)).collect(),
        _ => Err(ManifestError::Descriptor { field, reason: "must be an array".into() }),
    }
}

/// The largest size a descriptor may give: what storage can record (a signed 64-bit count).
pub const MAX_DESCRIPTOR_SIZE: u64 = i64::MAX as u64;

fn descriptor(v: &Value, field: &'static str) -> Result<Descriptor, ManifestError> {
    let d = Descriptor::deserialize(v)
        .map_err(|e| ManifestError::Descriptor { field, reason: e.to_string() })?;
    if d.size > MAX_DESCRIPTOR_SIZE {
        return Err(ManifestError::Descriptor {
            field,
            reason: format!("size {} is out of range", d.size),
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_i64_are_refused() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"a/b","digest":"{d}","size":2}},"layers":[{{"mediaType":"a/b","digest":"{d}","size":9223372036854775808}}]}}"#
        );
        assert!(matches!(
            Manifest::parse(m.as_bytes(), None),
            Err(ManifestError::Descriptor { field: "layers", .. })
        ));
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":10}}]{extra}}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_CONFIG
        )
    }

    #[test]
    fn image_manifest_references() {
        let m = Manifest::parse(image("").as_bytes(), Some(mt::OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
        let blobs: Vec<String> = m.blobs().map(|d| d.digest.to_string()).collect();
        assert_eq!(blobs, [D1, D2]);
        assert_eq!(m.artifact_type.as_deref(), Some(mt::OCI_CONFIG));
        assert!(m.subject.is_none());
    }

    #[test]
    fn subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/vnd.example.sbom","subject":{{"mediaType":"{}","digest":"{D1}","size":5}},"annotations":{{"a":"b"}}"#,
            mt::OCI_MANIFEST
        );
        let m = Manifest::parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/vnd.example.sbom"));
        assert_eq!(m.subject.unwrap().digest.to_string(), D1);
        assert_eq!(m.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn index_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":7,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}]}}"#,
            mt::DOCKER_LIST,
            mt::DOCKER_MANIFEST
        );
        let m = Manifest::parse(body.as_bytes(), Some(mt::DOCKER_LIST)).unwrap();
        assert_eq!(m.children().len(), 1);
        assert_eq!(m.children()[0].platform.as_ref().unwrap().to_string(), "linux/arm/v7");
        assert_eq!(m.blobs().count(), 0);
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(matches!(Manifest::parse(b"{", None), Err(ManifestError::Json(_))));
        assert!(matches!(Manifest::parse(b"[]", None), Err(ManifestError::NotObject)));
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::Schema1)
        ));
        assert!(matches!(
            Manifest::parse(image("").as_bytes(), Some(mt::DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let no_config =
            format!(r#"{{"schemaVersion":2,"mediaType":"{}","layers":[]}}"#, mt::OCI_MANIFEST);
        assert!(matches!(
            Manifest::parse(no_config.as_bytes(), None),
            Err(ManifestError::MissingField(..))
        ));
        let bad_digest = image("").replace(D2, "sha256:nothex");
        assert!(matches!(
            Manifest::parse(bad_digest.as_bytes(), None),
            Err(ManifestError::Descriptor { field: "layers", .. })
        ));
    }

    #[test]
    fn artifact_types_are_kept() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{D1}","size":2}},"layers":[]}}"#
        );
        let m = Manifest::parse(
            body.as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
        assert_eq!(m.artifact_type.as_deref(), Some("application/vnd.cncf.helm.config.v1+json"));
        let custom =
            Manifest::parse(br#"{"hello":"world"}"#, Some("application/vnd.example.thing+json"))
                .unwrap();
        assert_eq!(custom.media_type, "application/vnd.example.thing+json");
        assert_eq!(custom.blobs().count(), 0);
    }
}
