//! Resolution: turning a manifest entry into a pinned lock entry.
//!
//! OCI entries are resolved here: a reference is fetched once (the tag's target,
//! over its exact bytes); an index is narrowed to the wanted platforms with
//! containerd's rules; every pinned manifest is fetched by digest and re-hashed,
//! and its signatures are checked against the signers [`TrustStore`] trusts
//! for the name: cosign / Sigstore signatures found in the registry ([`sigstore`]),
//! or simple signatures from the prefix's lookaside. appc entries go to [`crate::appc`] (discovery, OpenPGP
//! signatures, dependencies). [`drift`] says which entries of a lock are stale
//! for `images.toml` and its trust policy; [`conflict`] recovers the pins both
//! sides of a merge conflict agree on. An entry with a version policy (`semver`,
//! `tag-pattern`) first has its tag chosen from the repository's tags
//! ([`versions`]), then resolves as that fixed tag; the lock records the tag and
//! the policy.
//!
//! What reaches the store: nothing for OCI entries (`lock` pins, `sync`
//! materialises), but an ACI must be read whole to check its signature and
//! read its dependencies, so a verified ACI is stored by its hash during `lock`
//! (the caller holds the store's shared lock and registers the new lock as a
//! gc root, so the ACI outlives a concurrent `gc`).

pub mod conflict;
pub mod drift;
pub mod sigstore;
pub mod versions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::digest::Digest;
use crate::errors::hinted;
use crate::oci::platform::{self, Platform};
use crate::oci::reference::Reference;
use crate::oci::registry::{FetchedManifest, LazyClient, RegistryClient, Repository};
use crate::oci::{self, ManifestKind};
use crate::project::lockfile::{Blob, LockedImage, LockedManifest, LockedSignature, SourceKind};
use crate::project::manifest::{ImageSpec, Manifest, Source};
use crate::signing::simple_signing;
use crate::signing::trust::{Decision, TrustStore, Trusted};
use crate::store::Store;

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

    /// The platform an image's config names (`os`, `architecture`, `variant`).
    pub async fn config_platform(&self, config: &Blob) -> anyhow::Result<Platform> {
        let bytes = match self {
            Origin::Registry { client, repo } => {
                client
                    .get_blob_bytes(repo, &config.digest, oci::MAX_MANIFEST_BYTES)
                    .await?
            }
            Origin::Layout { dir } => read_layout_blob(dir, &config.digest, Some(config.size))?,
        };
        Platform::of_config(&bytes)
            .with_context(|| format!("config {} names no platform", config.digest))
    }
}

/// Reads a manifest blob from a layout, checking its digest and size.
fn read_layout_manifest(
    dir: &Path,
    digest: &Digest,
    size: Option<u64>,
) -> anyhow::Result<FetchedManifest> {
    let bytes = read_layout_blob(dir, digest, size)?;
    let media_type = oci::detect_media_type(None, &bytes)
        .with_context(|| format!("manifest {digest} in {}", dir.display()))?;
    Ok(FetchedManifest {
        bytes,
        media_type,
        digest: digest.clone(),
    })
}

/// Reads a small blob (at most a manifest's size) from a layout, checking its digest and size.
fn read_layout_blob(dir: &Path, digest: &Digest, size: Option<u64>) -> anyhow::Result<Vec<u8>> {
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
    Ok(bytes)
}

/// The repository `reference` names, at its registry's endpoint ([`registry_base`]).
pub fn repository(manifest: &Manifest, reference: &Reference) -> Repository {
    Repository {
        base: registry_base(manifest, reference.api_host()),
        path: reference.path().to_owned(),
    }
}

/// The registry endpoint for `host`: HTTPS unless the manifest allows plain HTTP for it.
pub fn registry_base(manifest: &Manifest, api_host: &str) -> String {
    if manifest.insecure_http(api_host) {
        format!("http://{api_host}")
    } else {
        format!("https://{api_host}")
    }
}

/// Local OCI layouts carry no signatures imagelock can check: they are pinned
/// only when the entry says `insecure = true`.
fn check_layout_trust(manifest: &Manifest, spec: &ImageSpec) -> anyhow::Result<()> {
    if spec.insecure {
        return Ok(());
    }
    Err(hinted(
        format!(
            "image `{}` ({}) is a local OCI layout, which carries no signature imagelock can verify, and its entry in {} is not marked insecure",
            spec.id,
            spec.request(),
            manifest.path.display()
        ),
        format!(
            "add `insecure = true` under [images.{}] (line {}); the lock will record verified = false",
            spec.id, spec.line
        ),
    ))
}

/// Largest simple signature accepted (containers/image's limit).
pub const MAX_SIMPLE_SIGNATURE_BYTES: u64 = 4 * 1024 * 1024;
/// Lookaside signatures read per manifest before giving up (`signature-1` … this).
pub const MAX_SIMPLE_SIGNATURES: usize = 64;

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
    /// The store's shared lock, held while the resolver lives.
    pub _store_lock: Option<crate::store::StoreLock>,
    /// The HTTP client.
    pub client: LazyClient,
}

impl Resolver {
    /// Resolves one entry into lock entries: the entry itself, then (for ACIs) its dependencies.
    pub async fn resolve(&self, spec: &ImageSpec) -> anyhow::Result<Vec<LockedImage>> {
        match &spec.source {
            Source::Docker(written) => {
                // Decide before any request, so an untrusted image costs nothing.
                let trusted = self.oci_trust(spec, written)?;
                let chosen;
                let (spec, reference) = match &spec.policy {
                    None => (spec, written),
                    Some(policy) => {
                        let client = self.client.get()?;
                        let tagged =
                            versions::resolve_tag(&self.manifest, &client, spec, written, policy)
                                .await?;
                        chosen = ImageSpec {
                            source: Source::Docker(tagged),
                            ..spec.clone()
                        };
                        let Source::Docker(reference) = &chosen.source else {
                            unreachable!("just built as a docker source")
                        };
                        (&chosen, reference)
                    }
                };
                let mut image = resolve_oci(&self.manifest, spec, || self.client.get()).await?;
                if let Some(trusted) = trusted {
                    self.verify_signatures(spec, reference, &trusted, &mut image)
                        .await?;
                    image.verified = true;
                }
                Ok(vec![image])
            }
            Source::Layout { .. } => {
                check_layout_trust(&self.manifest, spec)?;
                Ok(vec![
                    resolve_oci(&self.manifest, spec, || self.client.get()).await?,
                ])
            }
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

impl Resolver {
    /// The keys that must have signed `reference`, or `None` when the entry is
    /// explicitly insecure and no prefix covers it. Refuses otherwise.
    fn oci_trust(
        &self,
        spec: &ImageSpec,
        reference: &Reference,
    ) -> anyhow::Result<Option<Trusted>> {
        match self.trust.decide(&reference.repository(), spec.insecure)? {
            Decision::Verify(trusted) => return Ok(Some(trusted)),
            Decision::Unverified => return Ok(None),
            Decision::Refused => {}
        }
        Err(hinted(
            format!(
                "image `{}` ({reference}) is not covered by any [trust] prefix in {} and is not marked insecure",
                spec.id,
                self.manifest.path.display()
            ),
            format!(
                "trust the key that signs it and where its signatures are published (`imagelock trust add {}/ --key FILE --lookaside URL`), or accept it unverified with `insecure = true` under [images.{}] (line {})",
                reference.domain(),
                spec.id,
                spec.line
            ),
        ))
    }

    /// Pins signatures by `trusted`'s signers covering every pinned manifest: Sigstore /
    /// cosign signatures when the prefix trusts Sigstore signers, else (or when none is
    /// accepted and the prefix also names a lookaside) simple signatures.
    async fn verify_signatures(
        &self,
        spec: &ImageSpec,
        reference: &Reference,
        trusted: &Trusted,
        image: &mut LockedImage,
    ) -> anyhow::Result<()> {
        if !trusted.sigstore.is_configured() {
            return self
                .verify_simple_signatures(spec, reference, trusted, image)
                .await;
        }
        let repo = Repository {
            base: image
                .registry
                .clone()
                .expect("a resolved registry image names its registry"),
            path: reference.path().to_owned(),
        };
        let client = self.client.get()?;
        let found = sigstore::pin(&client, &repo, &reference.repository(), image, trusted).await?;
        let (digest, rejected) = match found {
            Ok(pinned) => {
                image.sigstore = pinned;
                return Ok(());
            }
            Err(uncovered) => uncovered,
        };
        let error = self.sigstore_refusal(spec, reference, trusted, image, &digest, &rejected);
        if trusted.lookaside.is_some() && !trusted.keyring.fingerprints().is_empty() {
            return self
                .verify_simple_signatures(spec, reference, trusted, image)
                .await
                .map_err(|simple| simple.context(format!("{error:#}")));
        }
        Err(error)
    }

    /// The error for a manifest no trusted Sigstore signature covers.
    fn sigstore_refusal(
        &self,
        spec: &ImageSpec,
        reference: &Reference,
        trusted: &Trusted,
        image: &LockedImage,
        digest: &Digest,
        rejected: &[String],
    ) -> anyhow::Error {
        let platform = image
            .manifests
            .iter()
            .find(|m| &m.digest == digest)
            .and_then(|m| m.platform.as_deref())
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let found = if rejected.is_empty() {
            format!(
                "no signature exists: no {} tag and no Sigstore bundle referring to it{}",
                crate::signing::cosign::signature_tag(digest),
                image
                    .index
                    .as_ref()
                    .map(|i| format!(" (nor to the index {})", i.digest))
                    .unwrap_or_default()
            )
        } else {
            rejected.join("\n    ")
        };
        hinted(
            format!(
                "image `{}` ({reference}): no Sigstore signature of manifest {digest}{platform} is accepted for [trust.\"{}\"]\n  trusted signers: {}\n  trusted root: {}\n    {found}",
                spec.id,
                trusted.prefix,
                trusted.sigstore.describe(),
                trusted.sigstore.root_origin,
            ),
            format!(
                "sign it with `cosign sign` as a trusted signer; if its publisher signs with another key or identity, check it with them and add it with `imagelock trust add {} --sigstore-key FILE` or `--identity ISSUER SUBJECT`",
                trusted.prefix
            ),
        )
    }

    /// Finds, for every pinned platform manifest, a lookaside signature that
    /// verifies with `trusted`'s keys and claims this manifest's digest and an
    /// identity `trusted.identity` accepts for `reference` (as skopeo does:
    /// per platform instance, with the top-level reference as identity; an
    /// index's own signature is not required). Pins the first that passes.
    async fn verify_simple_signatures(
        &self,
        spec: &ImageSpec,
        reference: &Reference,
        trusted: &Trusted,
        image: &mut LockedImage,
    ) -> anyhow::Result<()> {
        let Some(base) = trusted.lookaside.as_deref() else {
            return Err(hinted(
                format!(
                    "image `{}` ({reference}) must be signed by a key of [trust.\"{}\"], but that table names no `lookaside` to find signatures in",
                    spec.id, trusted.prefix
                ),
                format!(
                    "name where `skopeo copy --sign-by` signatures are published: `imagelock trust add {} --lookaside https://...` (sets `lookaside` under [trust.\"{}\"] in {})",
                    trusted.prefix,
                    trusted.prefix,
                    self.manifest.path.display()
                ),
            ));
        };
        // A plain-HTTP lookaside is refused by the client unless the manifest names its host.
        let client = self.client.get()?;
        for manifest in &mut image.manifests {
            let mut rejected: Vec<String> = Vec::new();
            let mut accepted = None;
            for n in 1..=MAX_SIMPLE_SIGNATURES {
                let url = simple_signing::lookaside_url(base, reference, &manifest.digest, n);
                let Some(bytes) = fetch_lookaside(&client, &url).await? else {
                    break;
                };
                match accept_simple_signature(trusted, &bytes, &manifest.digest, reference) {
                    Ok((verified, claim)) => {
                        accepted = Some(LockedSignature {
                            url,
                            digest: Digest::sha256_of(&bytes),
                            size: bytes.len() as u64,
                            prefix: trusted.prefix.clone(),
                            signed_by: verified.primary,
                            key: verified.signing_key,
                            identity: Some(claim.docker_reference),
                        });
                        break;
                    }
                    Err(reason) => rejected.push(format!("signature-{n} ({url}): {reason}")),
                }
            }
            let Some(signature) = accepted else {
                let platform = manifest
                    .platform
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default();
                let trusted_keys: Vec<String> = trusted
                    .keyring
                    .fingerprints()
                    .iter()
                    .map(|f| crate::signing::openpgp::format_fingerprint(f))
                    .collect();
                let found = if rejected.is_empty() {
                    format!(
                        "no signature exists at {}",
                        simple_signing::lookaside_url(base, reference, &manifest.digest, 1)
                    )
                } else {
                    rejected.join("\n    ")
                };
                return Err(hinted(
                    format!(
                        "image `{}` ({reference}): no signature of manifest {}{platform} is accepted for [trust.\"{}\"]\n  trusted keys: {}\n  identity rule: {}\n    {found}",
                        spec.id,
                        manifest.digest,
                        trusted.prefix,
                        trusted_keys.join("; "),
                        trusted.identity
                    ),
                    format!(
                        "sign it with `skopeo copy --sign-by FINGERPRINT ... docker://{reference}` and publish the signature under {base}; if its publisher signs with another key, check that key's fingerprint with them and add it with `imagelock trust add {} --key FILE`",
                        trusted.prefix
                    ),
                ));
            };
            manifest.signature = Some(signature);
        }
        Ok(())
    }
}

/// Checks one lookaside signature: a signed message by a trusted key whose
/// claim names `digest` and an identity acceptable for `reference`.
pub fn accept_simple_signature(
    trusted: &Trusted,
    bytes: &[u8],
    digest: &Digest,
    reference: &Reference,
) -> Result<(crate::signing::openpgp::Verified, simple_signing::Claim), String> {
    let (verified, payload) = trusted
        .keyring
        .verify_message(bytes, std::time::SystemTime::now())
        .map_err(|e| e.to_string())?;
    let claim = simple_signing::accept(&payload, digest, reference, &trusted.identity)
        .map_err(|e| e.to_string())?;
    Ok((verified, claim))
}

/// Reads one lookaside signature; `None` when it does not exist (404 / no file),
/// which ends the `signature-N` sequence.
async fn fetch_lookaside(client: &RegistryClient, url: &str) -> anyhow::Result<Option<Vec<u8>>> {
    match url.strip_prefix("file://") {
        Some(path) => crate::fsutil::read_if_exists(Path::new(path), MAX_SIMPLE_SIGNATURE_BYTES),
        None => client
            .get_url_if_exists(url, MAX_SIMPLE_SIGNATURE_BYTES)
            .await
            .with_context(|| format!("cannot fetch the signature {url}")),
    }
}

/// Resolves an OCI entry (registry or layout) into a lock entry; signatures are the caller's.
/// An entry with a version policy must come with its tag chosen (see [`versions`]).
pub async fn resolve_oci(
    manifest: &Manifest,
    spec: &ImageSpec,
    client: impl FnOnce() -> anyhow::Result<Arc<RegistryClient>>,
) -> anyhow::Result<LockedImage> {
    let wanted = spec.wanted_platforms();
    let base = LockedImage::new(
        &spec.id,
        SourceKind::Docker,
        spec.request(),
        spec.entry_hash.clone(),
    );
    match &spec.source {
        Source::Docker(reference) => {
            let repo = repository(manifest, reference);
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
            check_lone_platform(&origin, spec, index.as_ref(), &manifests).await?;
            let policy = spec.policy.as_ref().map(ToString::to_string);
            Ok(LockedImage {
                registry: Some(repo.base),
                reference: Some(reference.to_string()),
                tag: policy
                    .is_some()
                    .then(|| reference.tag().map(str::to_owned))
                    .flatten(),
                policy,
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
            check_lone_platform(&origin, spec, index.as_ref(), &manifests).await?;
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

/// An image that is one manifest, not an index, has one platform (its config's): when the
/// entry asks for platforms explicitly, each must be that one, or the entry asks for a
/// build the image does not have (which `verify` would refuse later anyway).
async fn check_lone_platform(
    origin: &Origin,
    spec: &ImageSpec,
    index: Option<&Blob>,
    manifests: &[LockedManifest],
) -> anyhow::Result<()> {
    let ([manifest], None, false) = (manifests, index, spec.platforms.is_empty()) else {
        return Ok(());
    };
    let has = origin
        .config_platform(&manifest.config)
        .await
        .with_context(|| format!("cannot read the config of manifest {}", manifest.digest))?;
    let missing: Vec<String> = spec
        .platforms
        .iter()
        .filter(|wanted| platform::select(wanted, &[Some(&has)]).is_none())
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(hinted(
        format!(
            "image `{}`: the image has no manifest for platform {} (it is a single-platform image, for {has})",
            spec.id,
            missing.join(", ")
        ),
        format!(
            "set `platforms = [\"{has}\"]` under [images.{}] (line {}), or remove `platforms` to take the image as it is",
            spec.id, spec.line
        ),
    ))
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
    let parsed = oci::parse_image_manifest(&fetched.bytes).map_err(|e| match e {
        // Pinned, it would make an images.lock every later command refuses.
        e @ oci::ManifestError::BlobTooLarge { .. } => hinted(
            format!("manifest {}: {e}", fetched.digest),
            "nothing was pinned; pin another tag or digest, or tell the image's publisher",
        ),
        other => other.into(),
    })?;
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
        signature: None,
    })
}
