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

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::digest::Digest;
use crate::errors::hinted;
use crate::oci;
use crate::oci::registry::{RegistryClient, RegistryError, Repository};
use crate::progress::{Phase, Reporter};
use crate::project::lockfile::{Blob, LockedImage, SigstoreKind, SourceKind};
use crate::store::Store;

/// Blobs up to this size go up in one request, read into memory (most
/// configs, manifests and small layers); larger ones are streamed.
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
    /// repository names allow no colon; an IPv6 address `[a::b]` written
    /// `ipv6-a-b`).
    pub fn repository_for(&self, origin: &Repository) -> Repository {
        Repository {
            base: self.base.clone(),
            path: self.join(&format!(
                "{}/{}",
                host_component(origin.host()),
                origin.path
            )),
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

/// One image's share of a push: where it goes and what it needs there.
#[derive(Clone)]
struct Planned {
    id: String,
    repo: Repository,
    /// Blobs (configs, layers, ACIs, signatures) the manifests reference.
    blobs: Vec<Blob>,
    /// Manifests in push order (children before an index), with the tag for the last.
    manifests: Vec<Blob>,
    tag: Option<String>,
    /// Whether the last manifest references everything else (so its presence
    /// on the mirror means the image is complete there). Not so for an index
    /// pushed as a blob: the last manifest is then one platform's.
    top_covers_all: bool,
    /// (path in a lookaside store, signature blob) for the staging directory.
    signatures: Vec<(String, Blob)>,
    /// Sigstore signature artifacts, pushed after the image.
    sigstore: Vec<SignatureArtifact>,
}

/// A Sigstore signature artifact to put beside its image: its blobs, its manifest, and
/// how it is found (cosign's tag, or as a referrer of the digest it signs).
#[derive(Clone)]
struct SignatureArtifact {
    blobs: Vec<Blob>,
    manifest: Blob,
    /// cosign's `sha256-<hex>.sig` tag, for legacy signatures.
    tag: Option<String>,
    /// For bundles: the digest it refers to, for the referrers tag schema's index.
    subject: Option<Digest>,
}

/// Pushes every image in `images` from `store` to `mirror`; simple signatures
/// go to `staging` (a lookaside staging directory) when given.
///
/// Images go up concurrently, largest first, each putting its manifests as
/// soon as its own blobs are there (no image waits for the whole push). Blobs
/// move at most `PARALLEL_DOWNLOADS` at a time and each once: the first
/// repository that needs one gets it uploaded (or finds it there), the others
/// wait for that and mount it.
///
/// Reports the distinct blobs as one [`Phase::Pushing`] phase: a blob is done
/// once its first repository has it (uploaded, or found there).
pub async fn push(
    client: &std::sync::Arc<RegistryClient>,
    store: &Store,
    images: &[LockedImage],
    mirror: &Mirror,
    staging: Option<&Path>,
    reporter: std::sync::Arc<dyn Reporter>,
) -> anyhow::Result<Pushed> {
    let mut plans = Vec::new();
    for image in images {
        let plan = match image.source {
            SourceKind::Docker | SourceKind::OciLayout => plan_oci(store, image, mirror)?,
            _ => plan_aci(store, image, mirror)?,
        };
        plans.push(plan);
    }
    let mut report = Pushed {
        images: plans.len(),
        ..Pushed::default()
    };
    let mut placements = Placements {
        client: client.clone(),
        store: store.clone(),
        permits: tokio::sync::Semaphore::new(crate::concurrency::PARALLEL_DOWNLOADS),
        homes: HashMap::new(),
        placed: HashMap::new(),
        reporter,
    };
    let mut distinct_bytes = 0;
    for plan in &plans {
        let signature_blobs = plan.sigstore.iter().flat_map(|a| &a.blobs);
        for blob in plan.blobs.iter().chain(signature_blobs) {
            placements
                .homes
                .entry(blob.digest.clone())
                .or_insert_with(|| {
                    distinct_bytes += blob.size;
                    tokio::sync::OnceCell::new()
                });
            placements
                .placed
                .entry((blob.digest.clone(), plan.repo.path.clone()))
                .or_default();
        }
    }
    placements
        .reporter
        .begin(Phase::Pushing, placements.homes.len(), distinct_bytes);
    let placements = std::sync::Arc::new(placements);
    // Largest first: the longest uploads start while the small images fill
    // the other slots.
    let mut order: Vec<&Planned> = plans.iter().collect();
    order.sort_by_key(|plan| std::cmp::Reverse(plan.blobs.iter().map(|b| b.size).max()));
    let jobs = order.into_iter().map(|plan| {
        let (placements, plan) = (placements.clone(), plan.clone());
        async move {
            let mut pushed = push_image(&placements, &plan)
                .await
                .with_context(|| format!("cannot push image `{}`", plan.id))?;
            for artifact in &plan.sigstore {
                let (blobs, puts) = push_signature(&placements, &plan.repo, artifact)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot push signature {} of image `{}`",
                            artifact.manifest.digest, plan.id
                        )
                    })?;
                pushed.blobs.extend(blobs);
                pushed.manifests += puts;
            }
            anyhow::Ok(pushed)
        }
    });
    for image in crate::concurrency::run_bounded(plans.len().max(1), jobs).await? {
        for (outcome, size) in image.blobs {
            report.count(outcome, size);
        }
        report.manifests += image.manifests;
    }
    placements.reporter.finish();
    if let Some(staging) = staging {
        for plan in &plans {
            for (name, sig) in &plan.signatures {
                let file = staging.join(name);
                let dir = file.parent().expect("a lookaside path has a directory");
                let bytes = std::fs::read(store.blob_path(&sig.digest))
                    .with_context(|| format!("cannot read signature {}", sig.digest))?;
                if std::fs::read(&file).is_ok_and(|old| old == bytes) {
                    continue;
                }
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                crate::fsutil::write_atomic(&file, &bytes)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                report.signatures += 1;
            }
        }
    }
    Ok(report)
}

/// How one blob reached the mirror.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Present,
    Mounted,
    Uploaded,
}

impl Pushed {
    fn count(&mut self, outcome: Outcome, size: u64) {
        match outcome {
            Outcome::Present => self.present += 1,
            Outcome::Mounted => self.mounted += 1,
            Outcome::Uploaded => {
                self.uploaded += 1;
                self.bytes += size;
            }
        }
    }
}

/// The repository an OCI image of the lock came from.
pub fn origin_of(image: &LockedImage) -> anyhow::Result<Repository> {
    match (&image.registry, &image.reference) {
        (Some(base), Some(reference)) => {
            let parsed = crate::oci::reference::Reference::parse(reference)?;
            Ok(Repository {
                base: base.clone(),
                path: parsed.path().to_owned(),
            })
        }
        // Local layouts (which every checkout has; sync reads them there, not
        // from mirrors): under `local/`, the ID made a valid repository name.
        _ => Ok(Repository {
            base: "https://imagelock.local".into(),
            path: format!("local/{}", repository_component(&image.id)),
        }),
    }
}

/// A registry `host[:port]` as one repository path component.
fn host_component(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let Some(bracketed) = host.strip_prefix('[') else {
        return host.replace(':', "_");
    };
    let (address, port) = bracketed.split_once(']').unwrap_or((bracketed, ""));
    let words: Vec<&str> = address.split(':').filter(|w| !w.is_empty()).collect();
    format!("ipv6-{}{}", words.join("-"), port.replace(':', "_"))
}

/// `id` as one repository path component (`[a-z0-9]+(-[a-z0-9]+)*`): lowercase,
/// every run of other characters one `-`.
fn repository_component(id: &str) -> String {
    let lower = id.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        "image".to_owned()
    } else {
        words.join("-")
    }
}

/// Where the mirror's lookaside store keeps the simple signature of manifest
/// `manifest` of mirror repository `repo` (the layout `push
/// --lookaside-staging` writes and `sync` reads through `[mirrors] lookaside`;
/// one signature per manifest, the one the lock pins).
pub fn lookaside_path(repo: &Repository, manifest: &Digest) -> String {
    format!(
        "{}@{}={}/signature-1",
        repo.path,
        manifest.algorithm().as_str(),
        manifest.hex()
    )
}

fn plan_oci(store: &Store, image: &LockedImage, mirror: &Mirror) -> anyhow::Result<Planned> {
    let repo = mirror.repository_for(&origin_of(image)?);
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut signatures = Vec::new();
    for manifest in &image.manifests {
        blobs.push(manifest.config.clone());
        blobs.extend(manifest.layers.iter().cloned());
        manifests.push(manifest.manifest_blob());
        if let Some(sig) = &manifest.signature {
            signatures.push((lookaside_path(&repo, &manifest.digest), sig.blob()));
        }
    }
    let mut tag = image
        .reference
        .as_deref()
        .and_then(|r| crate::oci::reference::Reference::parse(r).ok())
        .and_then(|r| r.tag().map(str::to_owned));
    if let Some(index) = &image.index {
        // A registry refuses an index whose children it lacks: an index of
        // which the lock pins only some platforms goes up as a plain blob
        // (`sync --mirror` reads it by digest) and the tag is left alone.
        if pins_every_child(store, index, image)? {
            manifests.push(index.clone());
        } else {
            blobs.push(index.clone());
            tag = None;
        }
    }
    // One manifest covers everything only when it is the index pushed as
    // a manifest or the image's only manifest (an index pushed as a blob is
    // referenced by nothing on the mirror).
    let top_covers_all = image.index.is_none() || manifests.len() > image.manifests.len();
    let sigstore = image
        .sigstore
        .iter()
        .map(|sig| {
            let legacy = sig.kind == SigstoreKind::Cosign;
            SignatureArtifact {
                blobs: std::iter::once(sig.config.clone())
                    .chain(sig.layers.iter().cloned())
                    .collect(),
                manifest: sig.manifest.clone(),
                tag: legacy.then(|| crate::signing::cosign::signature_tag(&sig.signs)),
                subject: (!legacy).then(|| sig.signs.clone()),
            }
        })
        .collect();
    Ok(Planned {
        id: image.id.clone(),
        repo,
        blobs,
        manifests,
        tag,
        top_covers_all,
        signatures,
        sigstore,
    })
}

/// Whether the lock pins every manifest `index` lists.
fn pins_every_child(store: &Store, index: &Blob, image: &LockedImage) -> anyhow::Result<bool> {
    let bytes = std::fs::read(store.blob_path(&index.digest))
        .with_context(|| format!("cannot read index {} from the store", index.digest))?;
    let parsed = oci::parse_index(&bytes)
        .with_context(|| format!("index {} of image `{}`", index.digest, image.id))?;
    Ok(parsed
        .manifests
        .iter()
        .all(|child| image.manifests.iter().any(|m| m.digest == child.digest)))
}

/// An ACI goes up as an OCI artifact: the empty config, the ACI and its
/// signature as layers; the manifest is written to the store first so it is
/// pushed like any other.
fn plan_aci(store: &Store, image: &LockedImage, mirror: &Mirror) -> anyhow::Result<Planned> {
    let Some(aci) = &image.aci else {
        bail!("image `{}`: the lock pins no ACI", image.id);
    };
    let empty = Blob {
        digest: Digest::sha256_of(EMPTY_JSON),
        size: EMPTY_JSON.len() as u64,
        media_type: EMPTY_MEDIA_TYPE.to_owned(),
    };
    store.insert_bytes(&empty, EMPTY_JSON)?;
    let mut layers = vec![aci.clone()];
    layers.extend(image.signature.iter().map(|s| s.blob()));
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
    let mut blobs = vec![empty];
    blobs.extend(layers);
    Ok(Planned {
        id: image.id.clone(),
        repo: mirror.aci_repository(),
        blobs,
        manifests: vec![blob],
        tag: Some(format!(
            "{}-{}",
            aci.digest.algorithm().as_str(),
            &aci.digest.hex()[..64]
        )),
        top_covers_all: true,
        signatures: Vec::new(),
        sigstore: Vec::new(),
    })
}

/// Where each blob has gone during one push, shared by the image jobs.
struct Placements {
    client: std::sync::Arc<RegistryClient>,
    store: Store,
    /// Bounds the blob transfers (and the checks before them) in flight.
    permits: tokio::sync::Semaphore,
    /// Per blob: the repository path it was first placed in (its home).
    homes: HashMap<Digest, tokio::sync::OnceCell<String>>,
    /// Per blob and repository path: how it got there.
    placed: HashMap<(Digest, String), tokio::sync::OnceCell<Outcome>>,
    /// Told of each blob once, when its home is settled.
    reporter: std::sync::Arc<dyn Reporter>,
}

impl Placements {
    /// Where `blob` was first placed (every planned blob has its cell).
    fn home_cell(&self, blob: &Blob) -> &tokio::sync::OnceCell<String> {
        self.homes
            .get(&blob.digest)
            .expect("every planned blob has a home cell")
    }

    /// How `blob` got into `repo` (every planned pair has its cell).
    fn placed_cell(&self, repo: &Repository, blob: &Blob) -> &tokio::sync::OnceCell<Outcome> {
        self.placed
            .get(&(blob.digest.clone(), repo.path.clone()))
            .expect("every planned blob has a placement cell")
    }

    /// `blob` is in its first repository: one blob of the push done.
    fn settled(&self, blob: &Blob) {
        self.reporter.bytes(blob.size);
        self.reporter.item_done();
    }
}

/// What one image's job did: an outcome and size per blob it placed (blobs
/// another image placed in the same repository are not counted twice), and
/// the manifests it put.
struct ImagePushed {
    blobs: Vec<(Outcome, u64)>,
    manifests: usize,
}

/// Places an image's blobs in `repo` concurrently, then puts its manifests in
/// order, the last one under `tag`.
///
/// A registry refuses a manifest whose blobs or children it lacks, so when the
/// top manifest is there already, so is everything under it (nothing is asked
/// blob by blob), and when any blob was missing, the manifests are missing
/// too (they are put without asking first).
async fn push_image(
    placements: &std::sync::Arc<Placements>,
    plan: &Planned,
) -> anyhow::Result<ImagePushed> {
    let (repo, blobs, tag) = (&plan.repo, &plan.blobs, plan.tag.as_deref());
    let Some((top, children)) = plan.manifests.split_last() else {
        bail!("the lock pins no manifest");
    };
    let top_digest = top.digest.to_string();
    let there = plan.top_covers_all && {
        let _permit = placements.permits.acquire().await?;
        let reference = tag.unwrap_or(&top_digest);
        let found = placements.client.manifest_digest(repo, reference).await?;
        found.is_some_and(|d| d == top.digest)
    };
    if there {
        let mut counted = Vec::new();
        for blob in blobs {
            if mark_present(placements, repo, blob).await {
                counted.push((Outcome::Present, blob.size));
            }
        }
        return Ok(ImagePushed {
            blobs: counted,
            manifests: 0,
        });
    }
    let jobs = blobs.iter().map(|blob| {
        let (placements, repo, blob) = (placements.clone(), repo.clone(), blob.clone());
        async move {
            let (outcome, placed_here) = place(&placements, &repo, &blob)
                .await
                .with_context(|| format!("cannot push blob {}", blob.digest))?;
            // An index pushed as a blob is referenced by no manifest.
            let referenced = oci::manifest_kind(&blob.media_type).is_none();
            anyhow::Ok((outcome, placed_here.then_some(blob.size), referenced))
        }
    });
    let placed = crate::concurrency::run_bounded(blobs.len().max(1), jobs).await?;
    let absent = placed
        .iter()
        .any(|(outcome, _, referenced)| *referenced && !matches!(outcome, Outcome::Present));
    let (client, store) = (&placements.client, &placements.store);
    let mut puts = 0;
    for child in children {
        puts += put_manifest(client, store, repo, child, None, absent).await?;
    }
    // Asked above already when it covers everything (and it was missing).
    let top_absent = plan.top_covers_all || absent;
    puts += put_manifest(client, store, repo, top, tag, top_absent).await?;
    Ok(ImagePushed {
        blobs: placed
            .into_iter()
            .filter_map(|(outcome, size, _)| Some((outcome, size?)))
            .collect(),
        manifests: puts,
    })
}

/// Puts a Sigstore signature artifact in `repo` after its image: its blobs, then its
/// manifest (under cosign's tag, or by digest), then, for a bundle on a registry without
/// the referrers API, an entry in the referrers tag schema's index (`sha256-<hex>`).
async fn push_signature(
    placements: &Placements,
    repo: &Repository,
    artifact: &SignatureArtifact,
) -> anyhow::Result<(Vec<(Outcome, u64)>, usize)> {
    let mut counted = Vec::new();
    for blob in &artifact.blobs {
        let (outcome, placed_here) = place(placements, repo, blob)
            .await
            .with_context(|| format!("cannot push blob {}", blob.digest))?;
        if placed_here {
            counted.push((outcome, blob.size));
        }
    }
    let (client, store) = (&placements.client, &placements.store);
    let mut puts = put_manifest(
        client,
        store,
        repo,
        &artifact.manifest,
        artifact.tag.as_deref(),
        false,
    )
    .await?;
    if let Some(subject) = &artifact.subject
        && client.get_referrers(repo, subject).await?.is_none()
    {
        let bytes =
            std::fs::read(store.blob_path(&artifact.manifest.digest)).with_context(|| {
                format!(
                    "cannot read manifest {} from the store",
                    artifact.manifest.digest
                )
            })?;
        let artifact_type = oci::parse_image_manifest(&bytes)?.artifact_type;
        puts +=
            add_to_referrers_tag(client, repo, subject, &artifact.manifest, artifact_type).await?;
    }
    Ok((counted, puts))
}

/// Adds `referrer` (a bundle artifact) to the referrers tag schema's index of `subject`,
/// creating it when absent; returns how many PUTs it made.
async fn add_to_referrers_tag(
    client: &RegistryClient,
    repo: &Repository,
    subject: &Digest,
    referrer: &Blob,
    artifact_type: Option<String>,
) -> anyhow::Result<usize> {
    let tag = crate::signing::cosign::referrers_tag(subject);
    let mut index = match client.get_manifest_if_exists(repo, &tag).await? {
        Some(fetched) => oci::parse_index(&fetched.bytes)
            .with_context(|| format!("the referrers index tagged {tag} is invalid"))?,
        None => oci::ImageIndex {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            annotations: std::collections::BTreeMap::new(),
        },
    };
    if index.manifests.iter().any(|d| d.digest == referrer.digest) {
        return Ok(0);
    }
    index.manifests.push(oci::Descriptor {
        media_type: referrer.media_type.clone(),
        digest: referrer.digest.clone(),
        size: referrer.size,
        platform: None,
        annotations: std::collections::BTreeMap::new(),
        urls: Vec::new(),
        artifact_type,
    });
    let bytes = serde_json::to_vec(&index).expect("an index serialises");
    client
        .put_manifest(repo, &tag, oci::OCI_INDEX, bytes.into())
        .await?;
    Ok(1)
}

/// Records `blob` as present in `repo` (unless another image is placing it
/// there); whether this call recorded it.
async fn mark_present(placements: &Placements, repo: &Repository, blob: &Blob) -> bool {
    let cell = placements.placed_cell(repo, blob);
    let mut marked = false;
    cell.get_or_init(|| async {
        marked = true;
        Outcome::Present
    })
    .await;
    let home = placements.home_cell(blob);
    home.get_or_init(|| async {
        placements.settled(blob);
        repo.path.clone()
    })
    .await;
    marked
}

/// Makes `blob` exist in `repo`: the first image needing it anywhere uploads
/// it (unless present), later repositories mount it from there, and images
/// sharing a repository wait for whichever placed it. Returns how it got
/// there and whether this call placed it (so each placement counts once).
async fn place(
    placements: &Placements,
    repo: &Repository,
    blob: &Blob,
) -> anyhow::Result<(Outcome, bool)> {
    let (client, store) = (&placements.client, &placements.store);
    let cell = placements.placed_cell(repo, blob);
    let mut placed_here = false;
    let outcome = cell
        .get_or_try_init(|| async {
            placed_here = true;
            let home = placements.home_cell(blob);
            let mut first = None;
            let home = home
                .get_or_try_init(|| async {
                    let _permit = placements.permits.acquire().await?;
                    first = Some(push_blob(client, store, repo, blob).await?);
                    placements.settled(blob);
                    anyhow::Ok(repo.path.clone())
                })
                .await?;
            if let Some(outcome) = first {
                return anyhow::Ok(outcome);
            }
            let _permit = placements.permits.acquire().await?;
            mount_or_push(client, store, repo, blob, home).await
        })
        .await?;
    Ok((*outcome, placed_here))
}

/// Puts a manifest under `tag` (which also stores it by digest) or, for
/// an untagged child, by its digest, unless the mirror has it so already
/// (not asked when `absent`: known missing); returns how many PUTs it made.
async fn put_manifest(
    client: &RegistryClient,
    store: &Store,
    repo: &Repository,
    blob: &Blob,
    tag: Option<&str>,
    absent: bool,
) -> anyhow::Result<usize> {
    let digest = blob.digest.to_string();
    let reference = tag.unwrap_or(&digest);
    if !absent
        && client
            .manifest_digest(repo, reference)
            .await?
            .is_some_and(|d| d == blob.digest)
    {
        return Ok(0);
    }
    let bytes = bytes::Bytes::from(
        std::fs::read(store.blob_path(&blob.digest))
            .with_context(|| format!("cannot read manifest {} from the store", blob.digest))?,
    );
    client
        .put_manifest(repo, reference, &blob.media_type, bytes)
        .await?;
    Ok(1)
}

/// Makes `blob` exist in `repo` when it already is in repository `from` of the
/// same mirror: present, mounted, or (when the registry declines) uploaded.
async fn mount_or_push(
    client: &RegistryClient,
    store: &Store,
    repo: &Repository,
    blob: &Blob,
    from: &str,
) -> anyhow::Result<Outcome> {
    if client.has_blob(repo, &blob.digest).await? {
        return Ok(Outcome::Present);
    }
    match client.mount_blob(repo, &blob.digest, from).await? {
        None => Ok(Outcome::Mounted),
        Some(session) => {
            upload(client, store, repo, blob, session).await?;
            Ok(Outcome::Uploaded)
        }
    }
}

/// Makes `blob` exist in `repo`: present already, or uploaded from the store.
async fn push_blob(
    client: &RegistryClient,
    store: &Store,
    repo: &Repository,
    blob: &Blob,
) -> anyhow::Result<Outcome> {
    if client.has_blob(repo, &blob.digest).await? {
        return Ok(Outcome::Present);
    }
    let session = client.start_upload(repo).await?;
    upload(client, store, repo, blob, session).await?;
    Ok(Outcome::Uploaded)
}

/// Uploads a store blob into an open session: in one request when it fits a
/// chunk, else streamed in one `PATCH`. After a failure, a large upload goes
/// on from where the registry says the session stands; when the registry has
/// dropped the session (distribution does once a request broke off mid-body),
/// the blob is small, or a resumed upload came out wrong, a new session starts
/// from the first byte. Failures are bounded by the client's retry policy.
async fn upload(
    client: &RegistryClient,
    store: &Store,
    repo: &Repository,
    blob: &Blob,
    mut location: String,
) -> anyhow::Result<()> {
    let path = store.blob_path(&blob.digest);
    std::fs::metadata(&path)
        .with_context(|| format!("cannot read {} from the store", blob.digest))?;
    let policy = client.retry_policy();
    let mut offset = 0u64;
    let mut resumed = false;
    let mut failures = 0;
    loop {
        let error = match send_from(client, repo, &path, blob, &mut location, offset).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let (retry, start_over) = match worth_another_session(&error) {
            Retry::No => (false, false),
            Retry::Yes => (true, false),
            Retry::StartOver => (true, true),
            // A registry that takes bytes at whatever offset they claim ends
            // up with the wrong blob when a resume misjudged it: start over.
            Retry::IfResumed => (resumed, true),
        };
        if !retry || failures >= policy.retries {
            return Err(error);
        }
        failures += 1;
        tokio::time::sleep(policy.backoff(failures, None)).await;
        // The last answer may have been lost with the blob already whole.
        if client.has_blob(repo, &blob.digest).await? {
            return Ok(());
        }
        let status = if blob.size > PUSH_CHUNK_BYTES as u64 && !start_over {
            client
                .upload_status(repo, &location)
                .await
                .ok()
                .filter(|(held, _)| *held <= blob.size)
        } else {
            None
        };
        resumed = status.is_some();
        (offset, location) = match status {
            Some(status) => status,
            None => (0, client.start_upload(repo).await?),
        };
    }
}

/// Sends `blob` from `offset` on into the session at `location` (which follows
/// the session) and completes it.
async fn send_from(
    client: &RegistryClient,
    repo: &Repository,
    path: &Path,
    blob: &Blob,
    location: &mut String,
    offset: u64,
) -> anyhow::Result<()> {
    if offset == 0 && blob.size <= PUSH_CHUNK_BYTES as u64 {
        let body = read_chunk(path, 0, blob.size).await?;
        client
            .finish_upload_with(repo, location, &blob.digest, body)
            .await?;
        return Ok(());
    }
    if offset < blob.size {
        let body = reqwest::Body::wrap_stream(FileStream::open(path, offset));
        *location = client
            .upload_stream(repo, location, offset, blob.size - offset, body)
            .await?;
    }
    client.finish_upload(repo, location, &blob.digest).await?;
    Ok(())
}

/// Whether an upload failure may go away in a resumed or new session.
enum Retry {
    No,
    /// In the same session where the registry still has it, else a new one.
    Yes,
    /// In a new session (the registry disputes the offset).
    StartOver,
    /// In a new session, only when the failed attempt resumed one.
    IfResumed,
}

/// The connection broke, the registry failed for a moment, or it no longer
/// knows the session: yes. A 401 on a streamed body (sent with the cached
/// token, which may have just expired): yes, the check before the next
/// attempt authenticates again and fails for good if credentials are refused.
/// A 416 (the registry disputes the offset): in a new session. A 400 (a wrong
/// digest or size): only after a resume. Refusals and failures already
/// retried: no.
fn worth_another_session(error: &anyhow::Error) -> Retry {
    match error.downcast_ref::<RegistryError>() {
        Some(RegistryError::Network { .. }) => Retry::Yes,
        Some(RegistryError::Status { status, .. }) => match status.as_u16() {
            _ if crate::oci::registry::is_transient(*status) => Retry::Yes,
            401 | 404 => Retry::Yes,
            416 => Retry::StartOver,
            400 => Retry::IfResumed,
            _ => Retry::No,
        },
        _ => Retry::No,
    }
}

/// A store file from an offset, as a stream of chunks read on a blocking
/// thread (memory stays at a few chunks whatever the file's size).
struct FileStream(tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>);

impl FileStream {
    fn open(path: &Path, offset: u64) -> FileStream {
        let (tx, rx) = tokio::sync::mpsc::channel(crate::concurrency::CHUNKS_IN_FLIGHT);
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek};
            let opened = std::fs::File::open(&path).and_then(|mut f| {
                f.seek(std::io::SeekFrom::Start(offset))?;
                Ok(f)
            });
            let mut file = match opened {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            loop {
                let mut buffer = vec![0u8; crate::concurrency::COPY_BUFFER_BYTES];
                match file.read(&mut buffer) {
                    Ok(0) => return,
                    Ok(n) => {
                        buffer.truncate(n);
                        if tx.blocking_send(Ok(bytes::Bytes::from(buffer))).is_err() {
                            return; // the request was dropped
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        FileStream(rx)
    }
}

impl futures_core::Stream for FileStream {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn origin_hosts_become_valid_repository_components() {
        for (host, component) in [
            ("registry-1.docker.io", "registry-1.docker.io"),
            ("Registry.Example.COM:5000", "registry.example.com_5000"),
            ("[::1]:5000", "ipv6-1_5000"),
            ("[FE80::1]", "ipv6-fe80-1"),
        ] {
            assert_eq!(super::host_component(host), component, "{host}");
        }
    }

    #[test]
    fn local_image_ids_become_valid_repository_names() {
        for (id, name) in [
            ("hello", "hello"),
            ("My_App", "my-app"),
            ("a..b", "a-b"),
            ("-x_", "x"),
            ("__", "image"),
            ("v1.2", "v1-2"),
        ] {
            assert_eq!(super::repository_component(id), name, "{id}");
        }
    }
}
