//! `export`, `import`, `push`: carrying the locked images across an air gap or to a mirror.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::cli::Settings;
use crate::errors::hinted;
use crate::oci::registry::LazyClient;
use crate::project::lockfile::{Lock, lock_path_for};
use crate::project::manifest::Manifest;
use crate::store::Store;
use crate::text::{human_bytes, human_duration, plural};

use super::{
    check_trusted, http_options, import_bundle, load_manifest, open_store, require_lock,
    required_store, stale_error, store_from_manifest_leniently,
};

/// `imagelock export`.
pub fn export(
    settings: &Settings,
    file: &Path,
    images: &[String],
    platforms: &[String],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` and `imagelock sync` first",
    )?;
    let stale = crate::resolve::drift::staleness(
        &lock,
        &manifest,
        &crate::signing::trust::TrustStore::new(&manifest),
    );
    if !stale.is_fresh() {
        return Err(stale_error(
            &lock_path, &lock, &manifest, &stale, "`export`",
        ));
    }
    let lock = crate::airgap::bundle::subset(&lock, images, platforms)?;
    let (_, store) = required_store(
        settings,
        manifest.store_path.clone(),
        "run `imagelock sync` first, so the bundle can carry the images",
    )?;
    let _shared = store.lock_shared()?;
    check_trusted(&lock, &lock_path, &store, &manifest, "nothing was exported")?;
    let keys = key_files(&manifest);
    let reporter = printer.reporter();
    let exported = crate::airgap::bundle::export(&store, &lock, &keys, file, &*reporter)?;
    printer.status(format!(
        "Exported {}, {} ({}) and {} to {} ({}) in {}",
        plural(exported.images, "image"),
        plural(exported.blobs, "blob"),
        human_bytes(exported.bytes),
        plural(exported.keys, "key file"),
        file.display(),
        human_bytes(exported.file_bytes),
        human_duration(started.elapsed())
    ));
    printer.json(&json!({ "bundle": file, "exported": exported }));
    Ok(())
}

/// The key files `manifest` trusts, each once, as (name in the bundle, path):
/// named by the path under the manifest's directory (`..` and root components
/// dropped: a tar entry may not climb out).
fn key_files(manifest: &Manifest) -> Vec<(String, PathBuf)> {
    manifest
        .trust
        .values()
        .flat_map(|t| t.keys.iter())
        .map(|k| {
            let name: PathBuf = Path::new(k)
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            (name.to_string_lossy().into_owned(), manifest.dir().join(k))
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect()
}

/// `imagelock import`.
pub async fn import(settings: &Settings, file: &Path) -> anyhow::Result<()> {
    let (_, store) = open_store(settings, store_from_manifest_leniently(&settings.manifest))?;
    let _shared = store.lock_shared()?;
    let imported = import_bundle(settings, &store, file).await?;
    // A bundle's own lock names nothing in the store: names come from the
    // project's lock, when sync has checked it against images.toml.
    settings.printer.status(
        "Import names no image: run `imagelock sync --offline` to check the project's images.lock against the store and name its images.",
    );
    settings
        .printer
        .json(&json!({ "bundle": file, "imported": imported }));
    Ok(())
}

/// `imagelock push`.
pub async fn push(settings: &Settings, prefix: &str, staging: Option<&Path>) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` and `imagelock sync` first",
    )?;
    let mirror = crate::airgap::mirror::Mirror::parse(prefix, |h| manifest.insecure_http(h))?;
    let (_, store) = required_store(
        settings,
        manifest.store_path.clone(),
        "run `imagelock sync` first: push copies from the store",
    )?;
    let _shared = store.lock_shared()?;
    require_every_blob(&lock, &store)?;
    check_trusted(&lock, &lock_path, &store, &manifest, "nothing was pushed")?;
    // Plain HTTP only for the hosts images.toml names, never for what the lock records.
    let client = LazyClient::new(http_options(settings, manifest.insecure_http_hosts())).get()?;
    let images: Vec<_> = lock.images.values().cloned().collect();
    let reporter = printer.reporter();
    let pushed =
        crate::airgap::mirror::push(&client, &store, &images, &mirror, staging, reporter).await?;
    printer.status(format!(
        "Pushed {} to {}/{}: {} uploaded ({}), {} mounted, {} already there, {}{} in {}",
        plural(pushed.images, "image"),
        mirror.base,
        mirror.path,
        plural(pushed.uploaded, "blob"),
        human_bytes(pushed.bytes),
        pushed.mounted,
        pushed.present,
        plural(pushed.manifests, "manifest"),
        if pushed.signatures > 0 {
            format!(", {}", plural(pushed.signatures, "signature"))
        } else {
            String::new()
        },
        human_duration(started.elapsed())
    ));
    printer.json(&json!({ "mirror": prefix, "pushed": pushed }));
    Ok(())
}

/// Push copies from the store: it must hold every blob the lock pins.
fn require_every_blob(lock: &Lock, store: &Store) -> anyhow::Result<()> {
    let missing: Vec<String> = lock
        .blobs()
        .into_values()
        .filter(|b| !store.contains(b))
        .map(|b| b.digest.to_string())
        .collect();
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(hinted(
            format!(
                "the store lacks {} the lock pins (first: {first})",
                plural(missing.len(), "blob"),
            ),
            "run `imagelock sync` first: push copies from the store",
        )),
    }
}
