//! OCI and Docker manifest formats: media types, descriptors, image manifests
//! and indexes, parsed leniently from the exact bytes a registry or layout served.
//!
//! Invariant: these types are only ever *read*; manifests are stored and pushed
//! as their original bytes, because re-serialising would change their digest.
//! An image manifest describing a blob over [`MAX_BLOB_BYTES`] is refused.

pub mod credentials;
pub mod platform;
pub mod reference;
pub mod registry;
pub mod tags;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::oci::platform::Platform;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The one `Accept` value sent for manifests: all four modern types, because the
/// registry decides what a tag resolves to from it (specs/oci.md §2.2).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";
/// Annotation naming a manifest in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Registries and clients cap manifests at 4 MiB; so do we, so a hostile server
/// cannot make us buffer an unbounded body.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// The largest config or layer an image manifest may describe: 1 TiB, far
/// beyond any layer a registry accepts (they refuse a few tens of GiB), so only
/// a lie is refused. It also keeps every sum over a lock in range: a 4 MiB
/// manifest holds under 2^15 descriptors, so one image stays under 2^55 bytes,
/// where sizes near 2^63 would make a lock every later command refuses.
pub const MAX_BLOB_BYTES: u64 = 1 << 40;

/// What kind of document a manifest's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An index or manifest list: points at per-platform manifests.
    Index,
    /// A single image manifest: config plus layers.
    Image,
}

/// Classifies a manifest media type, or `None` for one imagelock cannot pin.
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        _ => None,
    }
}

/// A pinned blob: digest, size and media type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Blob {
    /// Content digest of the exact bytes.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// The digest of the referenced content.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform, on index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Alternate download locations (foreign layers); recorded, never followed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// OCI 1.1: the artifact type of a referrer (in a referrers index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Must be 2.
    pub schema_version: u32,
    /// The manifest's own media type, when it states one.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The image configuration blob.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// OCI 1.1: what kind of artifact this manifest is (signatures, bundles), if it says.
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// OCI 1.1: the manifest this one refers to (a signature's signed image).
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Must be 2.
    pub schema_version: u32,
    /// The index's own media type, when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The referenced manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Why manifest bytes could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the expected shape.
    #[error("invalid {kind} JSON: {source}")]
    Json {
        /// "image manifest" or "image index".
        kind: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A schema version other than 2.
    #[error("unsupported schemaVersion {0} (only schema 2 manifests can be pinned)")]
    SchemaVersion(u32),
    /// The body's `mediaType` disagrees with the Content-Type it was served with.
    #[error("manifest says mediaType `{body}` but was served as `{served}`")]
    MediaTypeMismatch {
        /// From the JSON body.
        body: String,
        /// From Content-Type or the referencing descriptor.
        served: String,
    },
    /// A descriptor claims a size over [`MAX_BLOB_BYTES`].
    #[error(
        "{what} {digest} claims {size} bytes, more than the {} a blob may have: the manifest lies about sizes",
        crate::text::human_bytes(MAX_BLOB_BYTES)
    )]
    BlobTooLarge {
        /// "config" or "layer N".
        what: String,
        /// The blob's digest.
        digest: Digest,
        /// The size claimed.
        size: u64,
    },
    /// A media type imagelock cannot pin.
    #[error(
        "unsupported manifest media type `{0}` (expected an OCI or Docker schema 2 manifest or index)"
    )]
    UnsupportedMediaType(String),
}

/// Works out the media type of manifest bytes served with `content_type`
/// (parameters stripped), falling back to the body's `mediaType` and shape
/// the way containers/image's GuessMIMEType does.
pub fn detect_media_type(
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<String, ManifestError> {
    let served = content_type
        .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_owned())
        .filter(|ct| manifest_kind(ct).is_some());
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        kind: "manifest",
        source,
    })?;
    if let Some(version) = probe.schema_version.filter(|v| *v != 2) {
        return Err(ManifestError::SchemaVersion(version));
    }
    match (served, probe.media_type) {
        (Some(served), Some(body)) if served != body => {
            Err(ManifestError::MediaTypeMismatch { body, served })
        }
        (Some(served), _) => Ok(served),
        (None, Some(body)) if manifest_kind(&body).is_some() => Ok(body),
        (None, Some(body)) => Err(ManifestError::UnsupportedMediaType(body)),
        (None, None) if probe.manifests.is_some() => Ok(OCI_INDEX.to_owned()),
        (None, None) => Ok(OCI_MANIFEST.to_owned()),
    }
}

/// Parses an image manifest and checks its schema version and that no blob
/// claims more than [`MAX_BLOB_BYTES`].
pub fn parse_image_manifest(bytes: &[u8]) -> Result<ImageManifest, ManifestError> {
    let manifest: ImageManifest =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            kind: "image manifest",
            source,
        })?;
    if manifest.schema_version != 2 {
        return Err(ManifestError::SchemaVersion(manifest.schema_version));
    }
    let described = std::iter::once(("config".to_owned(), &manifest.config)).chain(
        manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| (format!("layer {}", i + 1), layer)),
    );
    for (what, descriptor) in described {
        if descriptor.size > MAX_BLOB_BYTES {
            return Err(ManifestError::BlobTooLarge {
                what,
                digest: descriptor.digest.clone(),
                size: descriptor.size,
            });
        }
    }
    Ok(manifest)
}

/// Parses an image index and checks its schema version.
pub fn parse_index(bytes: &[u8]) -> Result<ImageIndex, ManifestError> {
    let index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            kind: "image index",
            source,
        })?;
    if index.schema_version != 2 {
        return Err(ManifestError::SchemaVersion(index.schema_version));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_blob_sizes_are_refused() {
        let manifest = |config: u64, layer: u64| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"sha256:{c}","size":{config}}},"layers":[{{"mediaType":"l","digest":"sha256:{l}","size":{layer}}}]}}"#,
                c = "c".repeat(64),
                l = "1".repeat(64),
            )
        };
        assert!(parse_image_manifest(manifest(1, MAX_BLOB_BYTES).as_bytes()).is_ok());
        let error = parse_image_manifest(manifest(1, 1 << 62).as_bytes()).expect_err("refused");
        assert!(
            error.to_string().contains("layer 1 sha256:1111")
                && error.to_string().contains(&(1u64 << 62).to_string()),
            "{error}"
        );
        let error = parse_image_manifest(manifest(u64::MAX, 1).as_bytes()).expect_err("refused");
        assert!(error.to_string().starts_with("config "), "{error}");
    }

    #[test]
    fn media_type_detection() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let image = br#"{"schemaVersion":2,"config":{}}"#;
        let typed = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        // (Content-Type, body, expected media type or None for an error)
        let cases: &[(Option<&str>, &[u8], Option<&str>)] = &[
            (
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                index,
                Some(OCI_INDEX),
            ),
            (None, index, Some(OCI_INDEX)),
            (None, image, Some(OCI_MANIFEST)),
            (Some("application/json"), typed, Some(DOCKER_MANIFEST)),
            (Some(OCI_MANIFEST), typed, None),
            (None, br#"{"schemaVersion":1}"#, None),
            (None, b"not json", None),
        ];
        for (content_type, bytes, want) in cases {
            let got = detect_media_type(*content_type, bytes).ok();
            assert_eq!(got.as_deref(), *want, "{content_type:?}");
        }
    }
}
