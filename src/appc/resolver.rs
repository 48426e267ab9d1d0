//! ACI resolution: appc name discovery, download, signature verification and
//! dependencies, producing lock entries.
//!
//! Invariants:
//! - An image whose name a `[trust]` prefix covers is pinned only after its
//!   detached signature verified, over the exact bytes as served, with one of
//!   that prefix's keys; `insecure = true` never overrides a covering prefix.
//!   An image no prefix covers is pinned only when its entry says
//!   `insecure = true`, and is recorded as unverified.
//! - The ACI is streamed into the store's ingest area while its SHA-512 is
//!   computed, then read back for the signature check and the archive check
//!   (image ID, manifest name and labels); only when every check passed is it
//!   renamed into `blobs/sha512/`. A refusal leaves nothing under `blobs/`.
//! - Dependencies are resolved by discovery the same way, each checked against
//!   the keys covering its own name; an `imageID` in the dependent's manifest
//!   must equal what was fetched; cycles and depth are bounded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context as _, bail};

use crate::appc::aci::{self, AciInfo};
use crate::appc::discovery;
use crate::digest::{Algorithm, Digest};
use crate::errors::hinted;
use crate::oci::registry::RegistryClient;
use crate::progress::Silent;
use crate::project::lockfile::{ACI_MEDIA_TYPE, Blob, LockedImage, LockedSignature, SourceKind};
use crate::project::manifest::{ImageSpec, Manifest, Source};
use crate::signing::openpgp::{self, SignatureError, Verified};
use crate::signing::trust::{Decision, TrustStore, Trusted};
use crate::store::{BlobWriter, Store};

/// Largest ACI accepted, as served: far above real images, low enough that a
/// hostile server cannot fill the disk.
pub const MAX_ACI_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Largest detached signature accepted; real ones are under 1 KiB.
pub const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;
/// How deep a dependency chain may go before it is treated as runaway.
pub const MAX_DEPENDENCY_DEPTH: usize = 16;

/// Everything resolution needs besides the entry itself.
pub struct AciResolver<'a> {
    /// The manifest (registries, paths).
    pub manifest: &'a Manifest,
    /// Trusted keys per prefix.
    pub trust: &'a TrustStore,
    /// The HTTP client.
    pub client: Arc<RegistryClient>,
    /// Where verified ACIs and signatures go.
    pub store: Store,
}

/// Where an ACI or a signature is.
#[derive(Debug, Clone)]
enum Location {
    /// An http(s) URL.
    Url(String),
    /// A local file; `written` is how the lock records it.
    File { path: PathBuf, written: String },
}

impl Location {
    fn recorded(&self) -> &str {
        match self {
            Location::Url(url) => url,
            Location::File { written, .. } => written,
        }
    }
}

/// One ACI to fetch and check.
struct Wanted {
    /// The lock entry ID it becomes.
    id: String,
    kind: SourceKind,
    /// The appc name asked for (discovery and dependencies); `None` for URLs and files.
    name: Option<String>,
    /// Labels the image's manifest must carry (as asked).
    labels: BTreeMap<String, String>,
    /// os/arch filled in from the host for discovery; the image must not
    /// contradict them, but may omit them (a noarch image).
    defaults: BTreeMap<String, String>,
    /// The discovery page the location came from.
    discovery: Option<String>,
    aci: Location,
    signature: Location,
    /// The image ID a dependent requires.
    image_id: Option<String>,
    /// The size a dependent requires (of the ACI as served).
    size: Option<u64>,
    /// The entry opted out of verification (applies only where no prefix covers the name).
    insecure: bool,
}

/// A verified (or explicitly unverified) ACI, not yet named in the store.
struct Fetched {
    /// The ACI as a blob (its digest is known; the bytes wait in `ingest/`).
    blob: Blob,
    info: AciInfo,
    signature: Option<LockedSignature>,
    pending: Pending,
}

/// Content that passed every check but gets its name in the store only once
/// the whole dependency tree resolved, so a refusal anywhere stores nothing.
struct Pending {
    /// The ACI's bytes, unless the store has them already (a 304).
    aci: Option<BlobWriter>,
    signature: Option<(Blob, Vec<u8>)>,
    /// What to remember about the URL once the blob has its name.
    revalidation: Option<Box<(std::path::PathBuf, Validators)>>,
}

/// What an ACI download produced.
enum Content {
    /// New bytes, waiting in `ingest/`.
    Fresh {
        writer: Box<BlobWriter>,
        validators: Option<Box<(std::path::PathBuf, Validators)>>,
    },
    /// The server said the URL is unchanged (304): the stored blob.
    Stored {
        blob: Blob,
        path: std::path::PathBuf,
    },
}

impl Content {
    fn path(&self) -> &Path {
        match self {
            Content::Fresh { writer, .. } => writer.path(),
            Content::Stored { path, .. } => path,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Content::Fresh { writer, .. } => writer.written(),
            Content::Stored { blob, .. } => blob.size,
        }
    }

    fn blob(&self) -> Blob {
        match self {
            Content::Fresh { writer, .. } => Blob {
                digest: writer.digest(),
                size: writer.written(),
                media_type: ACI_MEDIA_TYPE.to_owned(),
            },
            Content::Stored { blob, .. } => blob.clone(),
        }
    }
}

/// A URL's `ETag` and `Last-Modified`, and the blob they described, kept in
/// `STORE/cache/http/<sha256 of the URL>.json` so that re-locking an unchanged
/// URL costs a 304, not a download (rkt's `Remote`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Validators {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    digest: Option<Digest>,
    size: Option<u64>,
}

/// Why a signature was refused, for choosing the hint.
enum Refused {
    /// The OpenPGP check failed.
    Signature(SignatureError),
    /// Reading the data failed.
    Other(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Signature(e) => e.fmt(f),
            Refused::Other(e) => f.write_str(e),
        }
    }
}

impl AciResolver<'_> {
    /// Resolves an ACI entry: the entry itself first, then its dependencies.
    /// Nothing is stored unless the whole tree verified.
    pub async fn resolve(&self, spec: &ImageSpec) -> anyhow::Result<Vec<LockedImage>> {
        let root = self.root_request(spec).await?;
        let mut out: Vec<LockedImage> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut chain: Vec<String> = Vec::new();
        self.resolve_tree(spec, root, &mut chain, &mut out, &mut pending)
            .await?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for p in pending {
                if let Some((blob, bytes)) = &p.signature {
                    store.insert_bytes(blob, bytes)?;
                }
                let blob = match p.aci {
                    Some(writer) => Some(writer.commit()?),
                    None => None,
                };
                if let (Some(blob), Some(remembered)) = (blob, p.revalidation) {
                    let (file, mut validators) = *remembered;
                    validators.digest = Some(blob.digest);
                    validators.size = Some(blob.size);
                    // Only an optimisation: a cache that cannot be written costs a download later.
                    let _ = write_validators(&file, &validators);
                }
            }
            Ok::<_, crate::store::StoreError>(())
        })
        .await
        .context("the blob writer panicked")??;
        Ok(out)
    }

    async fn root_request(&self, spec: &ImageSpec) -> anyhow::Result<Wanted> {
        let dir = self.manifest.dir();
        match &spec.source {
            Source::Appc { name, labels } => {
                self.discover(&spec.id, name, labels, spec.insecure).await
            }
            Source::Url { url, signature } => {
                let aci = url_location(url);
                let signature = match signature {
                    Some(s) => url_location(s),
                    None => url_location(&signature_url(url)),
                };
                Ok(Wanted {
                    id: spec.id.clone(),
                    kind: SourceKind::AciUrl,
                    name: None,
                    labels: BTreeMap::new(),
                    defaults: BTreeMap::new(),
                    discovery: None,
                    aci,
                    signature,
                    image_id: None,
                    size: None,
                    insecure: spec.insecure,
                })
            }
            Source::AciFile { file, signature } => {
                let sig_written = signature.clone().unwrap_or_else(|| format!("{file}.asc"));
                Ok(Wanted {
                    id: spec.id.clone(),
                    kind: SourceKind::AciFile,
                    name: None,
                    labels: BTreeMap::new(),
                    defaults: BTreeMap::new(),
                    discovery: None,
                    aci: Location::File {
                        path: dir.join(file),
                        written: file.clone(),
                    },
                    signature: Location::File {
                        path: dir.join(&sig_written),
                        written: sig_written,
                    },
                    image_id: None,
                    size: None,
                    insecure: spec.insecure,
                })
            }
            Source::Docker(_) | Source::Layout { .. } => {
                unreachable!("OCI sources are resolved by resolve::resolve")
            }
        }
    }

    /// Discovers `name` with `labels` (os/arch defaulted to the host's, in appc's names).
    async fn discover(
        &self,
        id: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        insecure: bool,
    ) -> anyhow::Result<Wanted> {
        discovery::check_labels(labels)?;
        let (os, arch) = aci::host_os_arch();
        let defaults: BTreeMap<String, String> = [("os", os), ("arch", arch)]
            .into_iter()
            .filter(|(k, _)| !labels.contains_key(*k))
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let all: BTreeMap<String, String> = labels
            .iter()
            .chain(&defaults)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let allow_http = |host: &str| self.manifest.insecure_http(host);
        let fetch = crate::appc::discovery::page_fetcher(self.client.clone());
        let found = discovery::discover_endpoints(name, &all, allow_http, fetch).await?;
        let Some(endpoint) = discovery::first_fetchable(&found.found, allow_http) else {
            let listed: Vec<&str> = found.found.iter().map(|e| e.aci.as_str()).collect();
            return Err(hinted(
                format!(
                    "discovery of `{name}` at {} found only templates imagelock may not fetch: {}",
                    found.url,
                    listed.join(", ")
                ),
                "plain HTTP is used only for hosts listed in images.toml as `[registries.\"HOST\"] insecure-http = true`",
            ));
        };
        Ok(Wanted {
            id: id.to_owned(),
            kind: SourceKind::Appc,
            name: Some(name.to_owned()),
            labels: labels.clone(),
            defaults,
            discovery: Some(found.url.clone()),
            aci: Location::Url(endpoint.aci.clone()),
            signature: Location::Url(endpoint.asc.clone()),
            image_id: None,
            size: None,
            insecure,
        })
    }

    /// Fetches `wanted` and, depth first, its dependencies; pushes lock entries
    /// to `out` and the content to store to `pending`.
    fn resolve_tree<'s>(
        &'s self,
        spec: &'s ImageSpec,
        wanted: Wanted,
        chain: &'s mut Vec<String>,
        out: &'s mut Vec<LockedImage>,
        pending: &'s mut Vec<Pending>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send + 's>>
    {
        Box::pin(async move {
            let what = match &wanted.name {
                Some(name) => format!("`{name}` from {}", wanted.aci.recorded()),
                None => wanted.aci.recorded().to_owned(),
            };
            let fetched = self
                .fetch_verified(&wanted)
                .await
                .with_context(|| format!("cannot pin {what}"))?;
            let mut entry = LockedImage::new(
                &wanted.id,
                wanted.kind,
                wanted
                    .name
                    .clone()
                    .unwrap_or_else(|| wanted.aci.recorded().to_owned()),
                spec.entry_hash.clone(),
            );
            let verified = fetched.signature.is_some();
            entry.verified = verified;
            entry.name = Some(fetched.info.manifest.name.clone());
            entry.labels = wanted
                .labels
                .iter()
                .chain(&wanted.defaults)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            entry.discovery = wanted.discovery.clone();
            entry.url = Some(wanted.aci.recorded().to_owned());
            entry.image_id = Some(fetched.info.image_id.clone());
            entry.aci = Some(fetched.blob.clone());
            entry.signature = fetched.signature.clone();
            if wanted.id != spec.id {
                entry.dependency_of = Some(spec.id.clone());
            }
            let index = out.len();
            out.push(entry);
            pending.push(fetched.pending);

            let manifest = &fetched.info.manifest;
            chain.push(manifest.name.clone());
            let mut dependency_ids = Vec::new();
            for dependency in &manifest.dependencies {
                let next = || format!("{} → {}", chain.join(" → "), dependency.image_name);
                if chain.len() >= MAX_DEPENDENCY_DEPTH {
                    return Err(hinted(
                        format!(
                            "the dependency chain {} is deeper than {MAX_DEPENDENCY_DEPTH} images",
                            next()
                        ),
                        "this is almost certainly a publishing mistake; ask the image's publisher",
                    ));
                }
                if chain.contains(&dependency.image_name) {
                    return Err(hinted(
                        format!("dependency cycle: {}", next()),
                        "an image cannot depend on itself; ask the image's publisher to fix the dependencies in its manifest",
                    ));
                }
                let id = format!("{}/{}", spec.id, dependency.image_name);
                if let Some(done) = out.iter().find(|e| e.id == id) {
                    check_dependency_pin(dependency, done)?;
                    dependency_ids.push(id);
                    continue;
                }
                // A dependency is trusted on its own: only a tree that is
                // unverified from its root may hold unverified dependencies.
                let insecure = wanted.insecure && !verified;
                let child = self
                    .discover(&id, &dependency.image_name, &dependency.labels, insecure)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot resolve dependency `{}` of `{}`",
                            dependency.image_name, manifest.name
                        )
                    })?;
                let child_id = self
                    .resolve_tree(
                        spec,
                        Wanted {
                            image_id: dependency.image_id.clone(),
                            size: dependency.size,
                            ..child
                        },
                        chain,
                        out,
                        pending,
                    )
                    .await
                    .with_context(|| {
                        format!(
                            "dependency `{}` of `{}`",
                            dependency.image_name, manifest.name
                        )
                    })?;
                dependency_ids.push(child_id);
            }
            chain.pop();
            out[index].dependencies = dependency_ids;
            Ok(wanted.id)
        })
    }

    /// Downloads and checks one ACI and its signature; nothing is named in
    /// the store yet (see [`Pending`]).
    async fn fetch_verified(&self, wanted: &Wanted) -> anyhow::Result<Fetched> {
        // Decide up front when the name is known, so an untrusted or unsigned
        // image is refused before its (possibly large) download.
        let early = match &wanted.name {
            Some(name) => Some(self.decide(name, wanted)?),
            None => None,
        };
        let mut signature = match &early {
            Some(None) => None,
            Some(Some(trusted)) => {
                let name = wanted.name.as_deref().unwrap_or_default();
                let Some(signature) = self.fetch_signature(&wanted.signature).await? else {
                    return Err(no_signature(name, trusted, wanted));
                };
                trusted
                    .keyring
                    .check_issuer(&signature.1)
                    .map_err(|e| refusal(wanted, trusted, &Refused::Signature(e), name))?;
                Some(signature)
            }
            // Whether a signature is needed depends on the name inside the
            // archive: a signature that cannot be fetched only matters then.
            None => self
                .fetch_signature(&wanted.signature)
                .await
                .unwrap_or(None),
        };
        let content = self.download(&wanted.aci).await?;
        // When the signer is known before the archive is read (appc names), the
        // signature is checked first, so a forged archive is never parsed.
        let mut checked = match &early {
            Some(Some(trusted)) => {
                let name = wanted.name.as_deref().unwrap_or_default();
                Some(
                    self.check_signature(wanted, trusted, signature.take(), content.path(), name)
                        .await?,
                )
            }
            _ => None,
        };
        let path = content.path().to_owned();
        let info = tokio::task::spawn_blocking(move || -> anyhow::Result<AciInfo> {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot read back {}", path.display()))?;
            Ok(aci::read_aci(
                std::io::BufReader::with_capacity(256 * 1024, file),
                &aci::Limits::default(),
            )?)
        })
        .await
        .context("the ACI reader panicked")??;
        if let Some(name) = &wanted.name {
            aci::check_identity(&info.manifest, name, &wanted.labels).map_err(|e| {
                hinted(
                    e,
                    "the server published another image under this name or version; check the entry's `name` and `labels`, or tell the publisher",
                )
            })?;
            for (key, value) in &wanted.defaults {
                if let Some(has) = info.manifest.labels.get(key).filter(|has| *has != value) {
                    return Err(hinted(
                        format!(
                            "`{name}` resolved to an image for {key}={has}, but this machine is {key}={value}"
                        ),
                        format!(
                            "to pin that image anyway, set `labels = {{ {key} = \"{has}\" }}` in the entry"
                        ),
                    ));
                }
            }
        }
        if let Some(id) = &wanted.image_id
            && !info.image_id.starts_with(id.as_str())
        {
            return Err(hinted(
                format!(
                    "the dependent image requires image ID {id}, but {} has image ID {}",
                    wanted.aci.recorded(),
                    info.image_id
                ),
                "the dependency was republished since its dependent was built; the dependent's publisher must rebuild it",
            ));
        }
        if let Some(size) = wanted.size
            && size != content.size()
        {
            return Err(hinted(
                format!(
                    "the dependent image requires a size of {size} bytes, but {} has {} bytes",
                    wanted.aci.recorded(),
                    content.size()
                ),
                "the dependency was republished since its dependent was built; the dependent's publisher must rebuild it",
            ));
        }
        if early.is_none()
            && let Some(trusted) = self.decide(&info.manifest.name, wanted)?
        {
            checked = Some(
                self.check_signature(
                    wanted,
                    &trusted,
                    signature.take(),
                    content.path(),
                    &info.manifest.name,
                )
                .await?,
            );
        }
        let (locked, signature) = match checked {
            Some((locked, bytes)) => (Some(locked.clone()), Some((locked.blob(), bytes))),
            None => (None, None),
        };
        let blob = content.blob();
        let (aci, revalidation) = match content {
            Content::Fresh { writer, validators } => (Some(*writer), validators),
            Content::Stored { .. } => (None, None),
        };
        Ok(Fetched {
            blob,
            info,
            signature: locked,
            pending: Pending {
                aci,
                signature,
                revalidation,
            },
        })
    }

    /// Verifies the detached signature of the downloaded ACI with `trusted`'s
    /// keys; returns what the lock pins and the signature's bytes.
    async fn check_signature(
        &self,
        wanted: &Wanted,
        trusted: &Trusted,
        signature: Option<(String, Vec<u8>)>,
        aci: &Path,
        name: &str,
    ) -> anyhow::Result<(LockedSignature, Vec<u8>)> {
        let Some((url, bytes)) = signature else {
            return Err(no_signature(name, trusted, wanted));
        };
        let verified = self
            .verify(trusted, &bytes, aci)
            .await
            .map_err(|e| refusal(wanted, trusted, &e, name))?;
        let locked = LockedSignature {
            url,
            digest: Digest::sha256_of(&bytes),
            size: bytes.len() as u64,
            prefix: trusted.prefix.clone(),
            signed_by: verified.primary,
            key: verified.signing_key,
            identity: None,
        };
        Ok((locked, bytes))
    }

    /// Who must have signed `name`: `Some(keys)`, or `None` when the entry is
    /// explicitly insecure and no prefix covers the name. Refuses otherwise.
    fn decide(&self, name: &str, wanted: &Wanted) -> anyhow::Result<Option<Trusted>> {
        match self.trust.decide(name, wanted.insecure)? {
            Decision::Verify(trusted) => return Ok(Some(trusted)),
            Decision::Unverified => return Ok(None),
            Decision::Refused => {}
        }
        Err(hinted(
            format!(
                "image `{name}` is not covered by any [trust] prefix in {} and its entry is not marked insecure",
                self.manifest.path.display()
            ),
            format!(
                "trust its publisher's key with `imagelock trust add {} --key FILE` (or `--discover`), or accept it unverified with `insecure = true` under [images.{}]",
                suggested_prefix(name),
                wanted.id.split('/').next().unwrap_or(&wanted.id)
            ),
        ))
    }

    /// Reads the detached signature; `None` when it does not exist (404 / no file).
    async fn fetch_signature(
        &self,
        location: &Location,
    ) -> anyhow::Result<Option<(String, Vec<u8>)>> {
        let found = match location {
            Location::Url(url) => self
                .client
                .get_url_if_exists(url, MAX_SIGNATURE_BYTES)
                .await
                .with_context(|| format!("cannot fetch the signature {url}"))?,
            Location::File { path, .. } => {
                crate::fsutil::read_if_exists(path, MAX_SIGNATURE_BYTES)?
            }
        };
        Ok(found.map(|bytes| (location.recorded().to_owned(), bytes)))
    }

    /// Streams the ACI into the store's ingest area, hashing it; not committed
    /// yet. A URL fetched before is revalidated: when the server answers 304
    /// and the store still has the blob, that blob is the content.
    async fn download(&self, location: &Location) -> anyhow::Result<Content> {
        let writer = self
            .store
            .ingest_new(Algorithm::Sha512, ACI_MEDIA_TYPE, MAX_ACI_BYTES)?;
        match location {
            Location::Url(url) => {
                let file = self.validators_file(url);
                let known = read_validators(&file)
                    .filter(|v| v.url == *url)
                    .and_then(|v| {
                        let blob = Blob {
                            digest: v.digest.clone()?,
                            size: v.size?,
                            media_type: ACI_MEDIA_TYPE.to_owned(),
                        };
                        self.store.contains(&blob).then_some((v, blob))
                    });
                let conditions = crate::oci::registry::Conditions {
                    from: None,
                    etag: known.as_ref().and_then(|(v, _)| v.etag.clone()),
                    last_modified: known.as_ref().and_then(|(v, _)| v.last_modified.clone()),
                };
                let response = self.client.get_url_if(url, &conditions).await?;
                if response.status() == reqwest::StatusCode::NOT_MODIFIED {
                    let Some((_, blob)) = known else {
                        bail!(
                            "{url} answered 304 Not Modified to a request that was not conditional"
                        );
                    };
                    let path = self.store.blob_path(&blob.digest);
                    return Ok(Content::Stored { blob, path });
                }
                let header = |name: reqwest::header::HeaderName| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let validators = Validators {
                    url: url.clone(),
                    etag: header(reqwest::header::ETAG),
                    last_modified: header(reqwest::header::LAST_MODIFIED),
                    digest: None,
                    size: None,
                };
                let remember = (validators.etag.is_some() || validators.last_modified.is_some())
                    .then(|| Box::new((file, validators)));
                let writer = crate::transfer::stream_into(response, url, writer, &Silent).await?;
                Ok(Content::Fresh {
                    writer: Box::new(writer),
                    validators: remember,
                })
            }
            Location::File { path, .. } => {
                let path = path.clone();
                let writer =
                    tokio::task::spawn_blocking(move || crate::transfer::copy_into(&path, writer))
                        .await
                        .context("a copy task panicked")??;
                Ok(Content::Fresh {
                    writer: Box::new(writer),
                    validators: None,
                })
            }
        }
    }

    /// Where the validators of `url` are kept.
    fn validators_file(&self, url: &str) -> std::path::PathBuf {
        self.store
            .root()
            .join("cache/http")
            .join(format!("{}.json", Digest::sha256_of(url.as_bytes()).hex()))
    }

    async fn verify(
        &self,
        trusted: &Trusted,
        signature: &[u8],
        aci: &Path,
    ) -> Result<Verified, Refused> {
        let keyring = trusted.keyring.clone();
        let signature = signature.to_vec();
        let aci = aci.to_owned();
        let verdict = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&aci)
                .map_err(|e| Refused::Other(format!("cannot read {}: {e}", aci.display())))?;
            keyring
                .verify_detached(
                    &signature,
                    std::io::BufReader::with_capacity(256 * 1024, file),
                    SystemTime::now(),
                )
                .map_err(Refused::Signature)
        })
        .await;
        verdict.map_err(|e| Refused::Other(format!("the signature checker panicked: {e}")))?
    }
}

fn read_validators(file: &Path) -> Option<Validators> {
    serde_json::from_slice(&std::fs::read(file).ok()?).ok()
}

fn write_validators(file: &Path, validators: &Validators) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(validators).expect("validators serialise");
    crate::fsutil::write_atomic(file, &bytes)
}

/// The refusal for a signed-only image whose signature does not exist.
fn no_signature(name: &str, trusted: &Trusted, wanted: &Wanted) -> anyhow::Error {
    hinted(
        format!(
            "image `{name}` is covered by [trust.\"{}\"], but there is no signature at {}",
            trusted.prefix,
            wanted.signature.recorded()
        ),
        "publish the detached signature (`gpg --armor --detach-sign IMAGE.aci`) beside the image, or name it with `signature = \"...\"` in the entry",
    )
}

/// A signature refusal naming the image, the prefix, the keys trusted and
/// what was seen, with a hint that fits the reason.
fn refusal(wanted: &Wanted, trusted: &Trusted, problem: &Refused, name: &str) -> anyhow::Error {
    let prefix = &trusted.prefix;
    let hint = match problem {
        Refused::Signature(SignatureError::UnknownKey { .. }) => format!(
            "if the image's publisher really signs with that key, check its fingerprint with them out of band, then add it with `imagelock trust add {prefix} --key FILE`"
        ),
        Refused::Signature(SignatureError::BadSignature { .. }) => "the image or its signature changed after signing: do not use it; re-publish or ask the publisher".to_owned(),
        Refused::Signature(
            SignatureError::Expired { .. }
            | SignatureError::Revoked { .. }
            | SignatureError::SignatureExpired { .. }
            | SignatureError::MadeBeforeKey { .. }
            | SignatureError::NotSigningKey { .. },
        ) => format!(
            "the signing key is not valid for this signature: the publisher must re-sign with a valid key, which you then add with `imagelock trust add {prefix} --key FILE`"
        ),
        _ => "the signature file must be a binary-mode OpenPGP detached signature of the image as served (`gpg --armor --detach-sign IMAGE.aci`)".to_owned(),
    };
    // UnknownKey already lists the trusted keys.
    let trusted_keys = if matches!(
        problem,
        Refused::Signature(SignatureError::UnknownKey { .. })
    ) {
        String::new()
    } else {
        let keys: Vec<String> = trusted
            .keyring
            .fingerprints()
            .iter()
            .map(|f| openpgp::format_fingerprint(f))
            .collect();
        format!("\n  trusted for [trust.\"{prefix}\"]: {}", keys.join("; "))
    };
    hinted(
        format!(
            "signature check failed for image `{name}` (signature {}, [trust.\"{prefix}\"]): {problem}{trusted_keys}",
            wanted.signature.recorded(),
        ),
        hint,
    )
}

/// Whether a dependency already pinned in this tree satisfies another dependent's pin.
fn check_dependency_pin(dependency: &aci::Dependency, done: &LockedImage) -> anyhow::Result<()> {
    if let (Some(want), Some(have)) = (&dependency.image_id, &done.image_id)
        && !have.starts_with(want.as_str())
    {
        return Err(hinted(
            format!(
                "dependency `{}` is required with image ID {want}, but was pinned as {have}",
                dependency.image_name
            ),
            "two images in this tree need different builds of one dependency; their publishers must agree on one",
        ));
    }
    if let Some(want) = &dependency
        .labels
        .iter()
        .find(|(k, v)| done.labels.get(*k) != Some(*v))
    {
        return Err(hinted(
            format!(
                "dependency `{}` is required with {}={}, but was pinned with other labels",
                dependency.image_name, want.0, want.1
            ),
            "two images in this tree need different versions of one dependency; their publishers must agree on one",
        ));
    }
    Ok(())
}

/// The host part of an appc name with a trailing slash: the usual trust prefix.
fn suggested_prefix(name: &str) -> String {
    format!("{}/", name.split('/').next().unwrap_or(name))
}

fn url_location(written: &str) -> Location {
    match written.strip_prefix("file://") {
        Some(path) => Location::File {
            path: PathBuf::from(path),
            written: written.to_owned(),
        },
        None => Location::Url(written.to_owned()),
    }
}

/// rkt's rule: the signature of `…/x.aci?q` is `…/x.aci.asc?q`; a URL not
/// ending in `.aci` gets `.aci.asc`.
pub fn signature_url(url: &str) -> String {
    let (base, rest) = match url.find(['?', '#']) {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let base = base.strip_suffix(".aci").unwrap_or(base);
    format!("{base}.aci.asc{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_urls_follow_rkt() {
        for (url, want) in [
            (
                "https://example.com/image.aci",
                "https://example.com/image.aci.asc",
            ),
            (
                "http://example.com/image.aci?foo=bar&baz=quux#blah",
                "http://example.com/image.aci.asc?foo=bar&baz=quux#blah",
            ),
            (
                "https://example.com/image",
                "https://example.com/image.aci.asc",
            ),
        ] {
            assert_eq!(signature_url(url), want, "{url}");
        }
    }

    #[test]
    fn suggested_prefixes_are_the_host() {
        assert_eq!(suggested_prefix("example.com/etcd"), "example.com/");
        assert_eq!(suggested_prefix("example.com"), "example.com/");
    }
}
