//! `diff`, `list`, `inspect`: reading the lock.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::Settings;
use crate::errors::hinted;
use crate::project::lockfile::{Lock, LockedImage, lock_path_for};
use crate::project::manifest::Manifest;
use crate::report::StoreState;
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
    let old = crate::project::history::old_lock(&lock_path, against)?;
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
    for line in crate::report::inspect_lines(image, &state, &keys) {
        printer.out(line);
    }
    printer.json(&json!({
        "image": image,
        "blobs": crate::report::blob_roles(image, &state),
        "store": state,
        "keys": signers_json(image, &keys),
    }));
    Ok(())
}

/// `inspect ID` of an ID the lock does not have: not locked yet, or unknown.
fn not_locked(
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
            "run `imagelock lock` to pin it",
        )
    } else {
        crate::errors::usage(
            format!("`{id}` is not in {}", lock_path.display()),
            format!(
                "the locked images are: {} (`imagelock list` shows them)",
                lock.images.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
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
