//! Resolution: turning a manifest entry into a pinned lock entry.
//!
//! A reference is fetched once (the tag's target, over its exact bytes); an
//! index is narrowed to the wanted platforms with containerd's rules; every
//! pinned manifest is fetched by digest and re-hashed. Nothing is written to the
//! store here: `lock` pins, `sync` materialises.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::digest::Digest;
use crate::errors::hinted;
use crate::lockfile::{Blob, LockedImage, LockedManifest, SourceKind};
use crate::manifest::{ImageSpec, Manifest, Source};
use crate::oci::{self, ManifestKind};
use crate::platform::{self, Platform};
use crate::registry::{FetchedManifest, LazyClient, RegistryClient, Repository};
use crate::store::Store;
use crate::trust::TrustStore;

/// Where manifests and blobs of one image come from.
pub enum Origin {
    /// A registry repository.
    Registry {
        /// The shared client.
        client: Arc<RegistryClient>,
        /// Endpoint and path.
        repo: Repository,
    },
    /// A local OCI image layout directory.
    Layout {
        /// The layout's directory.
        dir: PathBuf,
    },
}

impl Origin {
    /// Fetches a manifest by digest, verifying the bytes.
    pub async fn manifest_by_digest(&self, digest: &Digest) -> anyhow::Result<FetchedManifest> {
        match self {
            Origin::Registry { client, repo } => {
                Ok(client.get_manifest(repo, &digest.to_string()).await?)
            }
            Origin::Layout { dir } => read_layout_manifest(dir, digest, None),
        }
    }
}

/// Reads a manifest blob from a layout, checking its digest and size.
fn read_layout_manifest(
    dir: &Path,
    digest: &Digest,
    size: Option<u64>,
) -> anyhow::Result<FetchedManifest> {
    let path = dir
        .join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex());
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("the layout has no blob {digest} ({})", path.display()))?;
    if meta.len() > oci::MAX_MANIFEST_BYTES || size.is_some_and(|s| s != meta.len()) {
        bail!(
            "blob {} has size {}, expected {}",
            path.display(),
            meta.len(),
            size.unwrap_or(oci::MAX_MANIFEST_BYTES)
        );
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = crate::digest::Hasher::new(digest.algorithm());
    hasher.update(&bytes);
    let actual = hasher.finish();
    if &actual != digest {
        bail!("{} is corrupt: it hashes to {actual}", path.display());
    }
    let media_type = oci::detect_media_type(None, &bytes)
        .with_context(|| format!("manifest {}", path.display()))?;
    Ok(FetchedManifest {
        bytes,
        media_type,
        digest: digest.clone(),
    })
}

/// The registry endpoint for `host`: HTTPS unless the manifest allows plain HTTP for it.
pub fn registry_base(manifest: &Manifest, api_host: &str) -> String {
    if manifest.insecure_http(api_host) {
        format!("http://{api_host}")
    } else {
        format!("https://{api_host}")
    }
}

/// Refuses OCI entries that would be pinned without the verification the
/// manifest asks for (simple-signing verification of OCI images comes later).
pub fn check_trust(manifest: &Manifest, spec: &ImageSpec) -> anyhow::Result<()> {
    if spec.insecure {
        return Ok(());
    }
    let name = match &spec.source {
        Source::Docker(reference) => reference.repository(),
        _ => String::new(),
    };
    let file = manifest.path.display();
    match manifest.trust_for(&name).filter(|_| !name.is_empty()) {
        Some((prefix, _)) => Err(hinted(
            format!(
                "image `{}` ({}) is covered by [trust.\"{prefix}\"] in {file}, but this version of imagelock cannot verify signatures of OCI images yet",
                spec.id,
                spec.request()
            ),
            format!(
                "to pin it unverified for now, add `insecure = true` under [images.{}] (line {}); the lock will record verified = false",
                spec.id, spec.line
            ),
        )),
        None => Err(hinted(
            format!(
                "image `{}` ({}) is not covered by any [trust] prefix in {file} and is not marked insecure",
                spec.id,
                spec.request()
            ),
            format!(
                "OCI signature verification is not available in this version yet, so OCI images need `insecure = true` under [images.{}] (line {}); the lock will record verified = false",
                spec.id, spec.line
            ),
        )),
    }
}

/// What resolving entries needs: the manifest, its trusted keys, the store
/// (verified ACIs are stored as they are pinned) and an HTTP client built on
/// first use.
pub struct Resolver {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    /// Its `[trust]` keys.
    pub trust: TrustStore,
    /// The store, when an entry to resolve is an ACI.
    pub store: Option<Store>,
    /// The HTTP client.
    pub client: LazyClient,
}

impl Resolver {
    /// Resolves one entry into lock entries: the entry itself, then (for ACIs) its dependencies.
    pub async fn resolve(&self, spec: &ImageSpec) -> anyhow::Result<Vec<LockedImage>> {
        match &spec.source {
            Source::Docker(_) | Source::Layout { .. } => Ok(vec![
                resolve_oci(&self.manifest, spec, || self.client.get()).await?,
            ]),
            Source::Appc { .. } | Source::Url { .. } | Source::AciFile { .. } => {
                let resolver = crate::appc::AciResolver {
                    manifest: &self.manifest,
                    trust: &self.trust,
                    client: self.client.get()?,
                    store: self
                        .store
                        .clone()
                        .expect("the store is opened whenever an ACI entry is resolved"),
                };
                resolver.resolve(spec).await
            }
        }
    }
}

/// Resolves an OCI entry (registry or layout) into a lock entry.
pub async fn resolve_oci(
    manifest: &Manifest,
    spec: &ImageSpec,
    client: impl FnOnce() -> anyhow::Result<Arc<RegistryClient>>,
) -> anyhow::Result<LockedImage> {
    check_trust(manifest, spec)?;
    let wanted = spec.wanted_platforms();
    let base = LockedImage::new(
        &spec.id,
        SourceKind::Docker,
        spec.request(),
        spec.entry_hash.clone(),
    );
    match &spec.source {
        Source::Docker(reference) => {
            let repo = Repository {
                base: registry_base(manifest, reference.api_host()),
                path: reference.path().to_owned(),
            };
            let client = client()?;
            let top = client
                .get_manifest(&repo, reference.tag_or_digest())
                .await
                .with_context(|| format!("cannot fetch the manifest of {reference}"))?;
            let origin = Origin::Registry {
                client,
                repo: repo.clone(),
            };
            let (index, manifests) = pin(&origin, top, &wanted).await?;
            Ok(LockedImage {
                registry: Some(repo.base),
                reference: Some(reference.to_string()),
                index,
                manifests,
                ..base
            })
        }
        Source::Layout { dir, reference } => {
            let layout = manifest.dir().join(dir);
            let top = layout_root(&layout, reference.as_deref())?;
            let origin = Origin::Layout { dir: layout };
            let (index, manifests) = pin(&origin, top, &wanted).await?;
            Ok(LockedImage {
                source: SourceKind::OciLayout,
                path: Some(dir.clone()),
                ref_name: reference.clone(),
                index,
                manifests,
                ..base
            })
        }
        Source::Appc { .. } | Source::Url { .. } | Source::AciFile { .. } => {
            unreachable!("ACI sources are resolved by appc::AciResolver")
        }
    }
}

/// Finds the manifest a layout's `index.json` names `reference` (or its only one).
fn layout_root(dir: &Path, reference: Option<&str>) -> anyhow::Result<FetchedManifest> {
    let index_path = dir.join("index.json");
    let bytes = std::fs::read(&index_path).with_context(|| {
        format!(
            "{} is not an OCI image layout (cannot read {})",
            dir.display(),
            index_path.display()
        )
    })?;
    let index =
        oci::parse_index(&bytes).with_context(|| format!("invalid {}", index_path.display()))?;
    let names: Vec<&str> = index
        .manifests
        .iter()
        .filter_map(|d| {
            d.annotations
                .get(oci::REF_NAME_ANNOTATION)
                .map(String::as_str)
        })
        .collect();
    let descriptor = match reference {
        Some(r) => index
            .manifests
            .iter()
            .find(|d| {
                d.annotations
                    .get(oci::REF_NAME_ANNOTATION)
                    .is_some_and(|n| n == r)
            })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no image named `{r}` (it has: {})",
                    index_path.display(),
                    names.join(", ")
                )
            })?,
        None => match index.manifests.as_slice() {
            [only] => only,
            _ => bail!(
                "{} holds {} images; name one as `path = \"{}:REF\"` (refs: {})",
                index_path.display(),
                index.manifests.len(),
                dir.display(),
                names.join(", ")
            ),
        },
    };
    let fetched = read_layout_manifest(dir, &descriptor.digest, Some(descriptor.size))?;
    if fetched.media_type != descriptor.media_type {
        bail!(
            "{}: descriptor says {} but the blob is {}",
            index_path.display(),
            descriptor.media_type,
            fetched.media_type
        );
    }
    Ok(fetched)
}

fn blob_of(fetched: &FetchedManifest) -> Blob {
    Blob {
        digest: fetched.digest.clone(),
        size: fetched.bytes.len() as u64,
        media_type: fetched.media_type.clone(),
    }
}

/// Pins `top`: an image manifest as it is, an index narrowed to `wanted`.
async fn pin(
    origin: &Origin,
    top: FetchedManifest,
    wanted: &[Platform],
) -> anyhow::Result<(Option<Blob>, Vec<LockedManifest>)> {
    match oci::manifest_kind(&top.media_type) {
        Some(ManifestKind::Image) => Ok((None, vec![image_manifest(&top, None)?])),
        Some(ManifestKind::Index) => {
            let index = oci::parse_index(&top.bytes)?;
            let platforms: Vec<Option<&Platform>> = index
                .manifests
                .iter()
                .map(|d| d.platform.as_ref())
                .collect();
            let mut pinned: Vec<LockedManifest> = Vec::new();
            for platform in wanted {
                let Some(i) = platform::select(platform, &platforms) else {
                    let available: Vec<String> = platforms
                        .iter()
                        .flatten()
                        .filter(|p| !p.is_unknown())
                        .map(|p| p.to_string())
                        .collect();
                    return Err(hinted(
                        format!(
                            "the image has no manifest for platform {platform} (it has: {})",
                            available.join(", ")
                        ),
                        "set `platforms = [...]` in the entry to platforms the image provides",
                    ));
                };
                let descriptor = &index.manifests[i];
                if pinned.iter().any(|m| m.digest == descriptor.digest) {
                    continue;
                }
                if oci::manifest_kind(&descriptor.media_type) != Some(ManifestKind::Image) {
                    bail!(
                        "index entry {} for {platform} is a {}, not an image manifest (nested indexes are not supported)",
                        descriptor.digest,
                        descriptor.media_type
                    );
                }
                let child = origin
                    .manifest_by_digest(&descriptor.digest)
                    .await
                    .with_context(|| {
                        format!("cannot fetch the {platform} manifest {}", descriptor.digest)
                    })?;
                if child.bytes.len() as u64 != descriptor.size
                    || child.media_type != descriptor.media_type
                {
                    bail!(
                        "manifest {} does not match its index entry (size {} vs {}, type {} vs {})",
                        descriptor.digest,
                        child.bytes.len(),
                        descriptor.size,
                        child.media_type,
                        descriptor.media_type
                    );
                }
                let label = descriptor.platform.as_ref().map(ToString::to_string);
                pinned.push(image_manifest(&child, label)?);
            }
            Ok((Some(blob_of(&top)), pinned))
        }
        None => bail!("unsupported manifest type {}", top.media_type),
    }
}

fn image_manifest(
    fetched: &FetchedManifest,
    platform: Option<String>,
) -> anyhow::Result<LockedManifest> {
    let parsed = oci::parse_image_manifest(&fetched.bytes)?;
    let blob = |d: &oci::Descriptor| Blob {
        digest: d.digest.clone(),
        size: d.size,
        media_type: d.media_type.clone(),
    };
    Ok(LockedManifest {
        platform,
        digest: fetched.digest.clone(),
        size: fetched.bytes.len() as u64,
        media_type: fetched.media_type.clone(),
        config: blob(&parsed.config),
        layers: parsed.layers.iter().map(blob).collect(),
    })
}
