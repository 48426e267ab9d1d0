//! Mirrors: `push` copies every locked image to another registry (a CI
//! fleet's shared cache), and `sync` reads from mirrors before the origin.
//!
//! Naming: under a mirror prefix `HOST[:PORT]/PATH`, an OCI image from
//! `ORIGIN/REPO` lives at `HOST/PATH/ORIGIN/REPO` (ORIGIN is the registry host
//! the lock records, e.g. `registry-1.docker.io`, with `:PORT` written `_PORT`
//! because repository names allow no colon), so images from different
//! registries never collide; every ACI and its signature live as blobs of
//! `HOST/PATH/appc`, tagged per image by an OCI manifest whose `artifactType`
//! is `application/vnd.appc.aci` (config: the empty descriptor; layers: the
//! ACI as served, then its signature).
//!
//! Invariant: a mirror is only ever a source of bytes. Whatever comes from it
//! is checked against the lock's digests exactly as bytes from the origin are,
//! so a mirror cannot make a wrong image pass.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::digest::Digest;
use crate::errors::hinted;
use crate::lockfile::{Blob, LockedImage, SourceKind};
use crate::oci;
use crate::registry::{RegistryClient, Repository};
use crate::store::Store;

/// Upload chunk size: large enough that per-request overhead vanishes, small
/// enough that a broken connection costs little to resume.
pub const PUSH_CHUNK_BYTES: usize = 16 * 1024 * 1024;
/// The artifact type of an ACI pushed to a mirror.
pub const ACI_ARTIFACT_TYPE: &str = "application/vnd.appc.aci";
/// The OCI empty descriptor's media type (config of artifact manifests).
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The OCI empty JSON blob.
const EMPTY_JSON: &[u8] = b"{}";

/// A mirror location: `HOST[:PORT]` plus an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `https://HOST[:PORT]` or `http://…` when the manifest allows it.
    pub base: String,
    /// The path prefix, without slashes at either end (may be empty).
    pub path: String,
}

impl Mirror {
    /// Parses `HOST[:PORT][/PATH]`; plain HTTP when `insecure_http(host)`.
    pub fn parse(prefix: &str, insecure_http: impl Fn(&str) -> bool) -> anyhow::Result<Mirror> {
        let trimmed = prefix.trim_end_matches('/');
        if trimmed.is_empty() || trimmed.contains("://") {
            return Err(hinted(
                format!("`{prefix}` is not a mirror location"),
                "write it as HOST[:PORT][/PATH], e.g. registry.internal:5000/mirror",
            ));
        }
        let (host, path) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        let scheme = if insecure_http(host) { "http" } else { "https" };
        Ok(Mirror {
            base: format!("{scheme}://{host}"),
            path: path.to_owned(),
        })
    }

    fn join(&self, rest: &str) -> String {
        if self.path.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.path)
        }
    }

    /// Where the mirror keeps the images of `origin`: the origin's host becomes
    /// one path component (lowercase, `:` before a port written `_`, since
    /// repository names allow no colon).
    pub fn repository_for(&self, origin: &Repository) -> Repository {
        let host = origin.host().to_ascii_lowercase().replace(':', "_");
        Repository {
            base: self.base.clone(),
            path: self.join(&format!("{host}/{}", origin.path)),
        }
    }

    /// Where the mirror keeps ACIs and their signatures.
    pub fn aci_repository(&self) -> Repository {
        Repository {
            base: self.base.clone(),
            path: self.join("appc"),
        }
    }
}

/// What a push did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Pushed {
    /// Images pushed (or found complete).
    pub images: usize,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Blobs mounted from another repository of the mirror.
    pub mounted: usize,
    /// Blobs the mirror had.
    pub present: usize,
    /// Manifests put.
    pub manifests: usize,
    /// Signatures written to the lookaside staging directory.
    pub signatures: usize,
}

/// Pushes every image of `lock` from `store` to `mirror`; simple signatures go
/// to `staging` (a lookaside staging directory) when given.
pub async fn push(
    client: &RegistryClient,
    store: &Store,
    images: &[LockedImage],
    mirror: &Mirror,
    staging: Option<&Path>,
) -> anyhow::Result<Pushed> {
    let mut report = Pushed::default();
    // Where each blob already is on the mirror during this push, for mounts.
    let mut placed: BTreeMap<Digest, String> = BTreeMap::new();
    for image in images {
        let pushed = match image.source {
            SourceKind::Docker | SourceKind::OciLayout => {
                push_oci(
                    client,
                    store,
                    image,
                    mirror,
                    staging,
                    &mut placed,
                    &mut report,
                )
                .await
            }
            _ => push_aci(client, store, image, mirror, &mut placed, &mut report).await,
        };
        pushed.with_context(|| format!("cannot push image `{}` to {}", image.id, mirror.base))?;
        report.images += 1;
    }
    Ok(report)
}

/// The repository an OCI image of the lock came from.
pub fn origin_of(image: &LockedImage) -> anyhow::Result<Repository> {
    match (&image.registry, &image.reference) {
        (Some(base), Some(reference)) => {
            let parsed = crate::reference::Reference::parse(reference)?;
            Ok(Repository {
                base: base.clone(),
                path: parsed.path().to_owned(),
            })
        }
        // Local layouts: named after the store's name for them.
        _ => Ok(Repository {
            base: "https://imagelock.local".into(),
            path: format!("local/{}", image.id.to_ascii_lowercase()),
        }),
    }
}

async fn push_oci(
    client: &RegistryClient,
    store: &Store,
    image: &LockedImage,
    mirror: &Mirror,
    staging: Option<&Path>,
    placed: &mut BTreeMap<Digest, String>,
    report: &mut Pushed,
) -> anyhow::Result<()> {
    let repo = mirror.repository_for(&origin_of(image)?);
    for manifest in &image.manifests {
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            push_blob(client, store, &repo, blob, placed, report).await?;
        }
    }
    // Children before the index, each as its exact bytes.
    for manifest in &image.manifests {
        put_manifest(
            client,
            store,
            &repo,
            &manifest.manifest_blob(),
            None,
            report,
        )
        .await?;
    }
    let tag = image
        .reference
        .as_deref()
        .and_then(|r| crate::reference::Reference::parse(r).ok())
        .and_then(|r| r.tag().map(str::to_owned));
    if let Some(index) = &image.index {
        put_manifest(client, store, &repo, index, tag.as_deref(), report).await?;
    } else if let Some(manifest) = image.manifests.first() {
        put_manifest(
            client,
            store,
            &repo,
            &manifest.manifest_blob(),
            tag.as_deref(),
            report,
        )
        .await?;
    }
    if let Some(staging) = staging {
        for manifest in &image.manifests {
            let Some(sig) = &manifest.signature else {
                continue;
            };
            let dir = staging.join(format!(
                "{}@{}={}",
                repo.path,
                manifest.digest.algorithm().as_str(),
                manifest.digest.hex()
            ));
            let file = dir.join("signature-1");
            let bytes = std::fs::read(store.blob_path(&sig.digest))
                .with_context(|| format!("cannot read signature {}", sig.digest))?;
            if std::fs::read(&file).is_ok_and(|old| old == bytes) {
                continue;
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            crate::fsutil::write_atomic(&file, &bytes)
                .with_context(|| format!("cannot write {}", file.display()))?;
            report.signatures += 1;
        }
    }
    Ok(())
}

async fn push_aci(
    client: &RegistryClient,
    store: &Store,
    image: &LockedImage,
    mirror: &Mirror,
    placed: &mut BTreeMap<Digest, String>,
    report: &mut Pushed,
) -> anyhow::Result<()> {
    let Some(aci) = &image.aci else {
        bail!("the lock pins no ACI for it");
    };
    let repo = mirror.aci_repository();
    let empty = Blob {
        digest: Digest::sha256_of(EMPTY_JSON),
        size: EMPTY_JSON.len() as u64,
        media_type: EMPTY_MEDIA_TYPE.to_owned(),
    };
    store.insert_bytes(&empty, EMPTY_JSON)?;
    let mut layers = vec![aci.clone()];
    layers.extend(image.signature.iter().map(|s| s.blob()));
    for blob in std::iter::once(&empty).chain(&layers) {
        push_blob(client, store, &repo, blob, placed, report).await?;
    }
    let descriptor = |b: &Blob| serde_json::json!({"mediaType": b.media_type, "digest": b.digest.to_string(), "size": b.size});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "artifactType": ACI_ARTIFACT_TYPE,
        "config": descriptor(&empty),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        "annotations": {
            "org.opencontainers.image.title": image.name.clone().unwrap_or_default(),
            "io.imagelock.aci.image-id": image.image_id.clone().unwrap_or_default(),
        },
    });
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serialises");
    let blob = Blob {
        digest: Digest::sha256_of(&bytes),
        size: bytes.len() as u64,
        media_type: oci::OCI_MANIFEST.to_owned(),
    };
    store.insert_bytes(&blob, &bytes)?;
    let tag = format!(
        "{}-{}",
        aci.digest.algorithm().as_str(),
        &aci.digest.hex()[..64]
    );
    put_manifest(client, store, &repo, &blob, Some(&tag), report).await
}

/// Puts a manifest (by digest, and under `tag`) unless the mirror has it.
async fn put_manifest(
    client: &RegistryClient,
    store: &Store,
    repo: &Repository,
    blob: &Blob,
    tag: Option<&str>,
    report: &mut Pushed,
) -> anyhow::Result<()> {
    let tagged_already = match tag {
        Some(tag) => client
            .manifest_digest(repo, tag)
            .await?
            .is_some_and(|d| d == blob.digest),
        None => true,
    };
    let present = client
        .manifest_digest(repo, &blob.digest.to_string())
        .await?
        .is_some();
    if present && tagged_already {
        return Ok(());
    }
    let bytes = bytes::Bytes::from(
        std::fs::read(store.blob_path(&blob.digest))
            .with_context(|| format!("cannot read manifest {} from the store", blob.digest))?,
    );
    if !present {
        client
            .put_manifest(
                repo,
                &blob.digest.to_string(),
                &blob.media_type,
                bytes.clone(),
            )
            .await?;
        report.manifests += 1;
    }
    if let Some(tag) = tag.filter(|_| !tagged_already) {
        client
            .put_manifest(repo, tag, &blob.media_type, bytes)
            .await?;
        report.manifests += 1;
    }
    Ok(())
}

/// Makes `blob` exist in `repo`: present already, mounted from where this push
/// put it, or uploaded from the store in resumable chunks.
async fn push_blob(
    client: &RegistryClient,
    store: &Store,
    repo: &Repository,
    blob: &Blob,
    placed: &mut BTreeMap<Digest, String>,
    report: &mut Pushed,
) -> anyhow::Result<()> {
    if client.has_blob(repo, &blob.digest).await? {
        report.present += 1;
        placed
            .entry(blob.digest.clone())
            .or_insert_with(|| repo.path.clone());
        return Ok(());
    }
    let mut location = None;
    if let Some(from) = placed.get(&blob.digest).filter(|from| **from != repo.path) {
        match client.mount_blob(repo, &blob.digest, from).await? {
            None => {
                report.mounted += 1;
                return Ok(());
            }
            // Not mounted: the registry opened an upload session instead.
            Some(session) => location = Some(session),
        }
    }
    let mut location = match location {
        Some(l) => l,
        None => client.start_upload(repo).await?,
    };
    let path = store.blob_path(&blob.digest);
    let mut offset = 0u64;
    let mut stalls = 0;
    while offset < blob.size {
        let length = (blob.size - offset).min(PUSH_CHUNK_BYTES as u64);
        let chunk = read_chunk(&path, offset, length).await?;
        match client.upload_chunk(repo, &location, offset, chunk).await {
            Ok(next) => {
                location = next;
                offset += length;
                stalls = 0;
            }
            Err(e) => {
                // Resume where the registry says the upload stands.
                stalls += 1;
                if stalls > client.retry_policy().retries {
                    return Err(e.into());
                }
                offset = client.upload_offset(repo, &location).await?;
            }
        }
    }
    client.finish_upload(repo, &location, &blob.digest).await?;
    placed.insert(blob.digest.clone(), repo.path.clone());
    report.uploaded += 1;
    report.bytes += blob.size;
    Ok(())
}

/// Reads `length` bytes at `offset` of a store file, off the async reactor.
async fn read_chunk(path: &Path, offset: u64, length: u64) -> anyhow::Result<bytes::Bytes> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<bytes::Bytes> {
        use std::io::{Read, Seek};
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        let mut buffer = vec![0u8; usize::try_from(length).expect("chunks are small")];
        file.read_exact(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(bytes::Bytes::from(buffer))
    })
    .await
    .context("a chunk reader panicked")?
}
