//! The lock's derived facts, checked against the pinned bytes in the store.
//!
//! `images.lock` arrives through pull requests, and a reviewer sees only
//! digests. A signature covers a manifest digest (or an ACI's bytes); every
//! other fact the lock records about an image is *derived* from those bytes:
//! an index's platform manifests (digest, size, media type, platform), a
//! manifest's config and its layers (digest, size, media type, order, count),
//! an ACI's name, labels, image ID and dependencies; a Sigstore signature
//! artifact's config and layers, and that what it signs is the pinned index or
//! one of the pinned manifests. This module re-derives
//! each of them from the stored bytes and refuses an image whose lock entry
//! says anything else, naming the field, the lock's value and the pinned one.
//!
//! Invariant: a command that acts on a derived fact (names an image in the
//! store, renders, exports, pushes, reports) calls [`check_image`] first, so
//! only a root digest (index, lone manifest or ACI) is ever taken from the
//! lock. Manifests are re-hashed here as they are read (they are small), so a
//! blob swapped in the store is caught too; ACIs are read whole (image ID).
//!
//! Pure over the store's bytes; no network, no writes.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::sync::{Arc, Mutex};

use crate::appc::aci;
use crate::digest::{Digest, Hasher};
use crate::oci::{self, ManifestKind};
use crate::project::lockfile::{Blob, Lock, LockedImage, LockedManifest, LockedSigstore};
use crate::store::Store;

/// Why a lock entry does not agree with the bytes it pins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactError {
    /// The lock records a derived fact the pinned bytes contradict.
    #[error("images.lock says {field} is {lock}, but the pinned bytes say {pinned}")]
    Disagrees {
        /// Which fact, e.g. `layers[0] of manifest sha256:…`.
        field: String,
        /// What the lock says.
        lock: String,
        /// What the pinned bytes say.
        pinned: String,
    },
    /// A pinned blob the check needs is not in the store (sync fetches it).
    #[error("{what} {digest} is not in the store")]
    Missing {
        /// What kind of blob.
        what: &'static str,
        /// Its digest.
        digest: Digest,
    },
    /// A pinned blob is in the store but is not what its name and the lock say.
    #[error("{what} {digest} in the store is unusable: {why}")]
    Unusable {
        /// What kind of blob.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        why: String,
    },
}

impl FactError {
    /// Whether the store simply lacks a blob (as opposed to the lock or store lying).
    pub fn is_missing(&self) -> bool {
        matches!(self, FactError::Missing { .. })
    }
}

fn disagrees(field: impl Into<String>, lock: impl ToString, pinned: impl ToString) -> FactError {
    FactError::Disagrees {
        field: field.into(),
        lock: lock.to_string(),
        pinned: pinned.to_string(),
    }
}

/// What the check re-derived for one image (for reports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The image's blobs that were read and re-hashed (manifests, index, ACI).
    pub read: usize,
    /// For a manifest pinned without an index: the platform its config names
    /// (nothing in the lock says it; the caller compares it with the entry's).
    pub lone_platform: Option<crate::oci::platform::Platform>,
}

/// Checks every fact `image`'s lock entry derives from its pinned root against
/// the bytes in `store`. `lock` is the whole lock (an ACI's dependencies are
/// other entries of it).
pub fn check_image(image: &LockedImage, lock: &Lock, store: &Store) -> Result<Checked, FactError> {
    Checker::new(store).check(image, lock)
}

/// Checks many entries against one store, reading and hashing each pinned
/// manifest once however many entries pin it (a lock of 1,000 entries often
/// pins a few dozen images). Shareable across threads.
pub struct Checker<'s> {
    store: &'s Store,
    read: Mutex<HashMap<Digest, ManifestRead>>,
}

/// A pinned manifest's bytes as read from the store, or why they could not be.
type ManifestRead = Result<Arc<Vec<u8>>, FactError>;

impl<'s> Checker<'s> {
    /// A checker over `store`, with nothing read yet.
    pub fn new(store: &'s Store) -> Checker<'s> {
        Checker {
            store,
            read: Mutex::new(HashMap::new()),
        }
    }

    /// [`check_image`], reusing what this checker already read.
    pub fn check(&self, image: &LockedImage, lock: &Lock) -> Result<Checked, FactError> {
        check_with(self, image, lock)
    }

    /// The bytes of a pinned manifest or index, read and checked once.
    fn manifest_bytes(&self, blob: &Blob, what: &'static str) -> Result<Arc<Vec<u8>>, FactError> {
        let known = self
            .read
            .lock()
            .expect("no read is recorded while panicking")
            .get(&blob.digest)
            .cloned();
        let bytes = match known {
            Some(bytes) => bytes?,
            None => {
                let result = read_manifest_blob(self.store, blob, what).map(Arc::new);
                self.read
                    .lock()
                    .expect("no read is recorded while panicking")
                    .insert(blob.digest.clone(), result.clone());
                result?
            }
        };
        // The digest names the bytes; the size is the lock's claim about them.
        if bytes.len() as u64 != blob.size {
            return Err(disagrees(
                format!("the size of {what} {}", blob.digest),
                blob.size,
                bytes.len(),
            ));
        }
        Ok(bytes)
    }
}

fn check_with(
    checker: &Checker<'_>,
    image: &LockedImage,
    lock: &Lock,
) -> Result<Checked, FactError> {
    // Lock::parse refuses these already; a lock built in code gets the same rule.
    if let Some(field) = image.foreign_fields().first() {
        return Err(disagrees(
            format!("`{field}`"),
            format!("set on a {} entry", image.source.as_str()),
            format!("{} entries never have it", image.source.as_str()),
        ));
    }
    if image.is_oci() {
        check_oci(image, checker)
    } else {
        check_aci(image, lock, checker.store)
    }
}

/// The error a command gives for an entry that disagrees with its pinned bytes.
pub fn refusal(id: &str, lock_path: &std::path::Path, error: FactError) -> anyhow::Error {
    let hint = if error.is_missing() {
        "run `imagelock sync` to fetch it".to_owned()
    } else if matches!(error, FactError::Unusable { .. }) {
        "the store's copy is damaged: `imagelock fsck --repair` moves it aside, then `imagelock sync` fetches it again".to_owned()
    } else {
        format!(
            "{} was edited by hand or is corrupt: review who changed it (`git log -p {}`), then remove image `{id}` from it and run `imagelock lock`",
            lock_path.display(),
            lock_path.display()
        )
    };
    crate::errors::hinted(
        format!(
            "image `{id}`: {error} ({} against the store)",
            lock_path.display()
        ),
        hint,
    )
}

/// Reads a manifest, index or other small pinned blob (at most a manifest's size) from
/// the store, checking its digest.
pub(crate) fn read_manifest_blob(
    store: &Store,
    blob: &Blob,
    what: &'static str,
) -> Result<Vec<u8>, FactError> {
    let unusable = |why: String| FactError::Unusable {
        what,
        digest: blob.digest.clone(),
        why,
    };
    if blob.size > oci::MAX_MANIFEST_BYTES {
        return Err(disagrees(
            format!("the size of {what} {}", blob.digest),
            blob.size,
            format!(
                "at most {} (no registry serves larger manifests)",
                oci::MAX_MANIFEST_BYTES
            ),
        ));
    }
    let path = store.blob_path(&blob.digest);
    let file = match crate::fsutil::open_regular(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FactError::Missing {
                what,
                digest: blob.digest.clone(),
            });
        }
        Err(e) => return Err(unusable(format!("cannot read {}: {e}", path.display()))),
    };
    let mut bytes = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0) + 1);
    file.take(oci::MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unusable(format!("cannot read {}: {e}", path.display())))?;
    let mut hasher = Hasher::new(blob.digest.algorithm());
    hasher.update(&bytes);
    let actual = hasher.finish();
    if actual != blob.digest {
        return Err(unusable(format!("its bytes hash to {actual}")));
    }
    Ok(bytes)
}

/// The media type `bytes` have when the lock says `locked`: the body's own
/// `mediaType` must agree, and the document's shape must be `kind`.
fn check_media_type(
    field: String,
    locked: &str,
    bytes: &[u8],
    kind: ManifestKind,
) -> Result<(), FactError> {
    let detected = oci::detect_media_type(Some(locked), bytes)
        .or_else(|_| oci::detect_media_type(None, bytes))
        .map_err(|e| disagrees(field.clone(), locked, e))?;
    if detected != locked {
        return Err(disagrees(field, locked, detected));
    }
    if oci::manifest_kind(&detected) != Some(kind) {
        let want = match kind {
            ManifestKind::Index => "an image index",
            ManifestKind::Image => "an image manifest",
        };
        return Err(disagrees(
            field,
            locked,
            format!("the bytes are not {want}"),
        ));
    }
    Ok(())
}

fn check_oci(image: &LockedImage, checker: &Checker<'_>) -> Result<Checked, FactError> {
    let mut checked = Checked::default();
    let mut seen = BTreeSet::new();
    for manifest in &image.manifests {
        if !seen.insert(&manifest.digest) {
            return Err(disagrees(
                "the pinned manifests",
                format!("{} twice", manifest.digest),
                "each manifest once",
            ));
        }
    }
    match &image.index {
        Some(index) => {
            let bytes = checker.manifest_bytes(index, "index")?;
            checked.read += 1;
            check_media_type(
                format!("the media type of index {}", index.digest),
                &index.media_type,
                &bytes,
                ManifestKind::Index,
            )?;
            let parsed = oci::parse_index(&bytes).map_err(|e| FactError::Unusable {
                what: "index",
                digest: index.digest.clone(),
                why: e.to_string(),
            })?;
            for manifest in &image.manifests {
                check_index_entry(&parsed, &index.digest, manifest)?;
            }
        }
        None => {
            if image.manifests.len() != 1 {
                return Err(disagrees(
                    "the number of manifests pinned without an index",
                    image.manifests.len(),
                    1,
                ));
            }
            if let Some(platform) = &image.manifests[0].platform {
                return Err(disagrees(
                    format!("the platform of manifest {}", image.manifests[0].digest),
                    platform,
                    "none (a single manifest, not chosen from an index)",
                ));
            }
        }
    }
    for manifest in &image.manifests {
        check_manifest(checker, manifest)?;
        checked.read += 1;
    }
    for sig in &image.sigstore {
        check_sigstore_artifact(checker, image, sig)?;
        checked.read += 1;
    }
    if image.index.is_none() {
        let config = &image.manifests[0].config;
        let bytes = checker.manifest_bytes(config, "config")?;
        let platform =
            crate::oci::platform::Platform::of_config(&bytes).map_err(|e| FactError::Unusable {
                what: "config",
                digest: config.digest.clone(),
                why: format!("it names no platform (os, architecture): {e}"),
            })?;
        checked.lone_platform = Some(platform);
    }
    Ok(checked)
}

/// A manifest the lock pins from an index must be one of the index's entries,
/// with the entry's size, media type and platform.
fn check_index_entry(
    index: &oci::ImageIndex,
    index_digest: &Digest,
    manifest: &LockedManifest,
) -> Result<(), FactError> {
    let Some(entry) = index.manifests.iter().find(|d| d.digest == manifest.digest) else {
        return Err(disagrees(
            format!("manifest {}", manifest.digest),
            "an entry of the pinned index",
            format!("index {index_digest} lists no such manifest"),
        ));
    };
    let field = |what: &str| format!("the {what} of manifest {}", manifest.digest);
    if entry.size != manifest.size {
        return Err(disagrees(field("size"), manifest.size, entry.size));
    }
    if entry.media_type != manifest.media_type {
        return Err(disagrees(
            field("media type"),
            &manifest.media_type,
            &entry.media_type,
        ));
    }
    let platform = entry.platform.as_ref().map(ToString::to_string);
    if platform != manifest.platform {
        let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "(none)".to_owned());
        return Err(disagrees(
            field("platform"),
            show(&manifest.platform),
            show(&platform),
        ));
    }
    Ok(())
}

/// A pinned image manifest's config and layers are exactly those its bytes list.
fn check_manifest(checker: &Checker<'_>, manifest: &LockedManifest) -> Result<(), FactError> {
    let parsed = read_image_manifest(checker, &manifest.manifest_blob(), "manifest")?;
    let of = format!("of manifest {}", manifest.digest);
    check_listed(&parsed, &of, &manifest.config, &manifest.layers)
}

/// A pinned Sigstore signature artifact lists exactly the config and layers the lock
/// says, the layer that verified is one of them, and what it signs is the pinned index
/// or one of the pinned manifests.
fn check_sigstore_artifact(
    checker: &Checker<'_>,
    image: &LockedImage,
    sig: &LockedSigstore,
) -> Result<(), FactError> {
    let mut signed = image
        .index
        .iter()
        .map(|i| &i.digest)
        .chain(image.manifests.iter().map(|m| &m.digest));
    if !signed.any(|d| d == &sig.signs) {
        return Err(disagrees(
            format!("what signature {} signs", sig.manifest.digest),
            &sig.signs,
            "none of the pinned index and manifests",
        ));
    }
    let parsed = read_image_manifest(checker, &sig.manifest, "signature manifest")?;
    let of = format!("of signature manifest {}", sig.manifest.digest);
    check_listed(&parsed, &of, &sig.config, &sig.layers)?;
    let at = sig.layers.get(sig.layer_index).map(|l| &l.digest);
    if at != Some(&sig.layer) {
        return Err(disagrees(
            format!("layer {} {of} (the one that verified)", sig.layer_index),
            &sig.layer,
            at.map_or_else(|| "no such layer".to_owned(), ToString::to_string),
        ));
    }
    Ok(())
}

/// Reads a pinned image manifest (of an image or a signature artifact) and parses it.
fn read_image_manifest(
    checker: &Checker<'_>,
    blob: &Blob,
    what: &'static str,
) -> Result<oci::ImageManifest, FactError> {
    let bytes = checker.manifest_bytes(blob, what)?;
    check_media_type(
        format!("the media type of {what} {}", blob.digest),
        &blob.media_type,
        &bytes,
        ManifestKind::Image,
    )?;
    oci::parse_image_manifest(&bytes).map_err(|e| FactError::Unusable {
        what,
        digest: blob.digest.clone(),
        why: e.to_string(),
    })
}

/// The config and layers the lock pins for a manifest are exactly those it lists.
fn check_listed(
    parsed: &oci::ImageManifest,
    of: &str,
    locked_config: &Blob,
    locked_layers: &[Blob],
) -> Result<(), FactError> {
    let blob = |d: &oci::Descriptor| Blob {
        digest: d.digest.clone(),
        size: d.size,
        media_type: d.media_type.clone(),
    };
    let config = blob(&parsed.config);
    if &config != locked_config {
        return Err(disagrees(
            format!("the config {of}"),
            describe(locked_config),
            describe(&config),
        ));
    }
    let layers: Vec<Blob> = parsed.layers.iter().map(blob).collect();
    if layers.len() != locked_layers.len() {
        return Err(disagrees(
            format!("the number of layers {of}"),
            locked_layers.len(),
            layers.len(),
        ));
    }
    for (i, (locked, pinned)) in locked_layers.iter().zip(&layers).enumerate() {
        if locked != pinned {
            return Err(disagrees(
                format!("layers[{i}] {of}"),
                describe(locked),
                describe(pinned),
            ));
        }
    }
    Ok(())
}

fn describe(blob: &Blob) -> String {
    format!("{} ({} bytes, {})", blob.digest, blob.size, blob.media_type)
}

fn check_aci(image: &LockedImage, lock: &Lock, store: &Store) -> Result<Checked, FactError> {
    let Some(aci_blob) = &image.aci else {
        return Err(disagrees(
            "the kind of pin",
            "an ACI without `aci`",
            "an ACI",
        ));
    };
    let unusable = |why: String| FactError::Unusable {
        what: "ACI",
        digest: aci_blob.digest.clone(),
        why,
    };
    let path = store.blob_path(&aci_blob.digest);
    let file = match crate::fsutil::open_regular(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FactError::Missing {
                what: "ACI",
                digest: aci_blob.digest.clone(),
            });
        }
        Err(e) => return Err(unusable(format!("cannot read {}: {e}", path.display()))),
    };
    if aci_blob.media_type != crate::project::lockfile::ACI_MEDIA_TYPE {
        return Err(disagrees(
            format!("the media type of ACI {}", aci_blob.digest),
            &aci_blob.media_type,
            crate::project::lockfile::ACI_MEDIA_TYPE,
        ));
    }
    let stored = file
        .metadata()
        .map_err(|e| unusable(format!("cannot read {}: {e}", path.display())))?
        .len();
    if stored != aci_blob.size {
        return Err(disagrees(
            format!("the size of ACI {}", aci_blob.digest),
            aci_blob.size,
            stored,
        ));
    }
    let info = aci::read_aci(
        std::io::BufReader::with_capacity(256 * 1024, file),
        &aci::Limits::default(),
    )
    .map_err(|e| unusable(format!("not a valid ACI: {e}")))?;
    check_aci_facts(image, lock, &info.image_id, &info.manifest)?;
    Ok(Checked {
        read: 1,
        lone_platform: None,
    })
}

/// An ACI entry's name, labels, image ID and dependencies against its manifest.
fn check_aci_facts(
    image: &LockedImage,
    lock: &Lock,
    image_id: &str,
    manifest: &aci::ImageManifest,
) -> Result<(), FactError> {
    let show = |v: Option<&String>| v.map_or_else(|| "(none)".to_owned(), Clone::clone);
    if image.image_id.as_deref() != Some(image_id) {
        return Err(disagrees(
            "image-id",
            show(image.image_id.as_ref()),
            image_id,
        ));
    }
    if image.name.as_deref() != Some(manifest.name.as_str()) {
        return Err(disagrees("name", show(image.name.as_ref()), &manifest.name));
    }
    for (key, value) in &image.labels {
        let has = manifest.labels.get(key);
        // os/arch were defaulted for discovery; a noarch image may omit them.
        let optional = matches!(key.as_str(), "os" | "arch");
        if has.is_some_and(|h| h != value) || (has.is_none() && !optional) {
            return Err(disagrees(format!("labels.{key}"), value, show(has)));
        }
    }
    let root = image.dependency_of.as_deref().unwrap_or(&image.id);
    if image.dependencies.len() != manifest.dependencies.len() {
        return Err(disagrees(
            "the number of dependencies",
            image.dependencies.len(),
            manifest.dependencies.len(),
        ));
    }
    for (i, (id, dependency)) in image
        .dependencies
        .iter()
        .zip(&manifest.dependencies)
        .enumerate()
    {
        let field = format!("dependencies[{i}]");
        let expected_id = format!("{root}/{}", dependency.image_name);
        if *id != expected_id {
            return Err(disagrees(field, id, expected_id));
        }
        let Some(entry) = lock.images.get(id) else {
            return Err(disagrees(field, id, "an entry images.lock does not have"));
        };
        if entry.dependency_of.as_deref() != Some(root) {
            return Err(disagrees(
                format!("dependency-of of `{id}`"),
                show(entry.dependency_of.as_ref()),
                root,
            ));
        }
        if entry.name.as_deref() != Some(dependency.image_name.as_str()) {
            return Err(disagrees(
                format!("the name of dependency `{id}`"),
                show(entry.name.as_ref()),
                &dependency.image_name,
            ));
        }
        if let Some(want) = &dependency.image_id
            && !entry
                .image_id
                .as_deref()
                .is_some_and(|have| have.starts_with(want.as_str()))
        {
            return Err(disagrees(
                format!("the image-id of dependency `{id}`"),
                show(entry.image_id.as_ref()),
                format!("{want} (required by `{}`)", manifest.name),
            ));
        }
        for (key, value) in &dependency.labels {
            if entry.labels.get(key) != Some(value) {
                return Err(disagrees(
                    format!("labels.{key} of dependency `{id}`"),
                    show(entry.labels.get(key)),
                    format!("{value} (required by `{}`)", manifest.name),
                ));
            }
        }
    }
    Ok(())
}
