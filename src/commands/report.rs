//! `diff`, `list`, `inspect`: reading the lock (and, for `inspect`, the store: which
//! blobs it holds, and the certificates of the pinned Sigstore signatures, read from
//! their stored bytes after a digest check).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::Settings;
use crate::digest::Digest;
use crate::errors::hinted;
use crate::project::lockfile::{
    Blob, Lock, LockedImage, LockedSigstore, SigstoreKind, lock_path_for,
};
use crate::project::manifest::Manifest;
use crate::report::{CertificateState, SigstoreView, StoreState};
use crate::signing::trust_list::KnownKeys;
use crate::store::Store;
use crate::text::plural;

use super::project::{
    check_trusted, existing_store, manifest_if_any, require_lock, store_from_manifest_leniently,
};

/// `imagelock diff`.
pub fn diff(settings: &Settings, against: Option<&str>) -> anyhow::Result<()> {
    let printer = settings.printer;
    let lock_path = lock_path_for(&settings.manifest);
    let new = match Lock::load(&lock_path)? {
        Some(lock) => lock,
        None => {
            printer.warn(format!(
                "there is no {}: comparing with an empty lock",
                lock_path.display()
            ));
            Lock::default()
        }
    };
    let old =
        crate::project::history::old_lock(&lock_path, against, "`imagelock diff OTHER.lock`")?;
    if old.absent {
        printer.status(format!("{} does not exist: every image is new", old.label));
    }
    let changes = crate::report::compare(&old.lock, &new);
    for line in crate::report::render_changes(&changes, false) {
        printer.out(line);
    }
    let (added, removed, updated, unchanged) = crate::report::counts(&changes);
    if added + removed + updated == 0 {
        printer.status(format!(
            "No changes: {} and {} pin the same {}",
            old.label,
            lock_path.display(),
            plural(unchanged, "image")
        ));
    } else {
        printer.status(format!(
            "{} → {}: {updated} updated, {added} added, {removed} removed, {unchanged} unchanged",
            old.label,
            lock_path.display()
        ));
    }
    printer.json(&json!({
        "old": old.label,
        "new": lock_path,
        "images": changes,
    }));
    Ok(())
}

/// `imagelock list`.
pub fn list(settings: &Settings) -> anyhow::Result<()> {
    let printer = settings.printer;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` to create it (and commit it)",
    )?;
    let keys = manifest_if_any(&settings.manifest)
        .map(|m| KnownKeys::from_manifest(&m))
        .unwrap_or_default();
    if lock.images.is_empty() {
        printer.status(format!("{} pins no images", lock_path.display()));
    } else {
        for line in crate::report::list_table(&lock, &keys) {
            printer.out(line);
        }
    }
    let images: Vec<serde_json::Value> = lock
        .images
        .values()
        .map(|i| crate::report::list_json(i, &keys))
        .collect();
    printer.json(&json!({ "lock": lock_path, "images": images }));
    Ok(())
}

/// `imagelock inspect`.
pub fn inspect(settings: &Settings, id: &str) -> anyhow::Result<()> {
    let printer = settings.printer;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` to create it (and commit it)",
    )?;
    let manifest = manifest_if_any(&settings.manifest);
    let Some(image) = lock.images.get(id) else {
        return Err(not_locked(
            settings,
            &lock,
            &lock_path,
            manifest.as_ref(),
            id,
        ));
    };
    let keys = manifest
        .as_ref()
        .map(KnownKeys::from_manifest)
        .unwrap_or_default();
    let manifest_store = match &manifest {
        Some(m) => m.store_path.clone(),
        None => store_from_manifest_leniently(&settings.manifest),
    };
    let (store_path, store) = existing_store(settings, manifest_store)?;
    if let Some(store) = &store
        && store.contains(&image.root())
    {
        check_before_showing(&lock, &lock_path, image, store, manifest.as_ref())?;
    }
    let state = store_state(image, store_path, store.as_ref());
    // Reading and parsing every trusted root only when a signature names one.
    let roots = if image.sigstore.iter().any(|s| s.trusted_root.is_some()) {
        root_origins(manifest.as_ref())
    } else {
        BTreeMap::new()
    };
    let sigstore: Vec<SigstoreView> = image
        .sigstore
        .iter()
        .map(|sig| {
            let origin = sig
                .trusted_root
                .as_ref()
                .and_then(|d| roots.get(d))
                .cloned();
            crate::report::sigstore_view(image, sig, certificate(sig, store.as_ref()), origin)
        })
        .collect();
    for line in crate::report::inspect_lines(image, &state, &keys, &sigstore) {
        printer.out(line);
    }
    printer.json(&json!({
        "image": image,
        "blobs": crate::report::blob_roles(image, &state),
        "store": state,
        "keys": signers_json(image, &keys),
        "sigstore": sigstore,
    }));
    Ok(())
}

/// Where each trusted root images.toml names is, by digest: the built-in public-good
/// root, and each readable `trusted-root` file (with its prefix).
fn root_origins(manifest: Option<&Manifest>) -> BTreeMap<Digest, String> {
    let mut out = BTreeMap::new();
    if let Some(digest) = crate::signing::trust_list::public_good_root_digest() {
        out.insert(digest, "the built-in Sigstore public-good root".to_owned());
    }
    for (prefix, table) in manifest.iter().flat_map(|m| &m.trust) {
        let Some(file) = &table.trusted_root else {
            continue;
        };
        if let Some(m) = manifest
            && let Ok(digest) = crate::signing::trust_list::read_trusted_root(m, file)
        {
            out.insert(digest, format!("{file} of [trust.\"{prefix}\"]"));
        }
    }
    out
}

/// The certificate of the keyless signature `sig`, read from the artifact's stored bytes.
fn certificate(sig: &LockedSigstore, store: Option<&Store>) -> CertificateState {
    if sig.key.is_some() {
        return CertificateState::None;
    }
    // A cosign certificate is an annotation of the layer in the manifest; a bundle's is
    // inside the bundle, the layer itself.
    let holder = match sig.kind {
        SigstoreKind::Cosign => Some(sig.manifest.clone()),
        SigstoreKind::Bundle => sig.layers.iter().find(|l| l.digest == sig.layer).cloned(),
    };
    let Some(holder) = holder else {
        return CertificateState::Unreadable {
            error: format!("the lock pins no layer {}", sig.layer),
        };
    };
    let bytes = match store.map(|s| read_pinned(s, &holder)) {
        None | Some(Ok(None)) => return CertificateState::NotInStore,
        Some(Ok(Some(bytes))) => bytes,
        Some(Err(error)) => return CertificateState::Unreadable { error },
    };
    let read = match sig.kind {
        SigstoreKind::Cosign => {
            crate::signing::certificate::of_cosign_layer(&bytes, sig.layer_index, &sig.layer)
        }
        SigstoreKind::Bundle => crate::signing::certificate::of_bundle(&bytes),
    };
    match read {
        Ok(Some(details)) => CertificateState::Present { details },
        Ok(None) => CertificateState::Unreadable {
            error: "the signature carries no certificate, though the lock names no key".to_owned(),
        },
        Err(error) => CertificateState::Unreadable { error },
    }
}

/// The stored bytes of `blob`, checked against its digest; `None` when the store lacks it.
fn read_pinned(store: &Store, blob: &Blob) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read as _;
    if !store.contains(blob) {
        return Ok(None);
    }
    if blob.size > crate::signing::cosign::MAX_LAYER_BYTES {
        return Err(format!(
            "{} is {} bytes, more than a signature artifact holds",
            blob.digest, blob.size
        ));
    }
    let mut bytes = Vec::new();
    store
        .open_blob(&blob.digest)
        .and_then(|file| file.take(blob.size).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", blob.digest))?;
    let mut hasher = crate::digest::Hasher::new(blob.digest.algorithm());
    hasher.update(&bytes);
    if hasher.finish() != blob.digest {
        return Err(format!(
            "the stored {} does not match its digest (`imagelock fsck` finds such blobs)",
            blob.digest
        ));
    }
    Ok(Some(bytes))
}

/// The error for an `id` the lock does not have (`inspect`, `render`): in `manifest`
/// but not locked yet (`imagelock lock` pins it), or unknown (a usage error, exit 2,
/// listing the locked images).
pub(super) fn not_locked(
    settings: &Settings,
    lock: &Lock,
    lock_path: &Path,
    manifest: Option<&Manifest>,
    id: &str,
) -> anyhow::Error {
    if manifest.is_some_and(|m| m.images.contains_key(id)) {
        hinted(
            format!(
                "`{id}` is in {} but not locked yet",
                settings.manifest.display()
            ),
            "run `imagelock lock` to pin it (and `imagelock sync` to fetch it)",
        )
    } else {
        crate::errors::unknown_image(
            id,
            lock_path.display(),
            lock.images.keys().map(String::as_str),
            None,
        )
    }
}

/// What inspect shows (layers, labels, "verified", the signer) must be what
/// the pinned bytes, the signatures and the keys say: checks `image`, which
/// `store` holds, against the keys when there is a manifest.
fn check_before_showing(
    lock: &Lock,
    lock_path: &Path,
    image: &LockedImage,
    store: &Store,
    manifest: Option<&Manifest>,
) -> anyhow::Result<()> {
    match manifest {
        Some(manifest) => {
            check_trusted(
                &lock.tree_of(&image.id),
                lock_path,
                store,
                manifest,
                "nothing is shown",
            )?;
        }
        None => {
            if let Err(e) = crate::verify::pinned::check_image(image, lock, store) {
                return Err(crate::verify::pinned::refusal(&image.id, lock_path, e));
            }
        }
    }
    Ok(())
}

/// Which of `image`'s blobs the store at `path` holds, and whether its index names the image.
fn store_state(image: &LockedImage, path: PathBuf, store: Option<&Store>) -> StoreState {
    StoreState {
        path,
        exists: store.is_some(),
        present: store
            .map(|s| {
                image
                    .blobs()
                    .iter()
                    .filter(|b| s.contains(b))
                    .map(|b| b.digest.to_string())
                    .collect()
            })
            .unwrap_or_default(),
        named: match store {
            Some(s) if image.is_oci() => Some(names_image(s, image)),
            _ => None,
        },
    }
}

/// Whether the store's `index.json` names `image` (its root under its store name).
fn names_image(store: &Store, image: &LockedImage) -> bool {
    let root = image.root();
    let name = image.store_name();
    store.read_index().is_ok_and(|index| {
        index.manifests.iter().any(|d| {
            d.digest == root.digest
                && d.annotations
                    .get(crate::oci::REF_NAME_ANNOTATION)
                    .is_some_and(|n| *n == name)
        })
    })
}

/// `inspect --json`'s `keys`: each signer, and what images.toml's keys say about it.
fn signers_json(image: &LockedImage, keys: &KnownKeys) -> Vec<serde_json::Value> {
    crate::signing::trust_list::signers(image)
        .iter()
        .map(|f| {
            let key = keys.get(f);
            json!({
                "fingerprint": f,
                "user_ids": key.map(|k| k.user_ids().to_vec()).unwrap_or_default(),
                "expires": key.and_then(|k| k.expires()).map(crate::signing::trust_list::utc_date),
                "trusted": key.is_some(),
            })
        })
        .collect()
}
