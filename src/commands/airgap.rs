//! `export`, `import`, `push`: carrying the locked images across an air gap or to a mirror.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::airgap::bundle::Base;
use crate::cli::Settings;
use crate::digest::Digest;
use crate::errors::hinted;
use crate::project::lockfile::Lock;
use crate::project::manifest::Manifest;
use crate::store::Store;
use crate::text::{human_bytes, human_duration, plural};

use super::project::{Project, open_store, store_from_manifest_leniently};

/// `imagelock export`; with `since`, a delta against the lock in that file or git revision.
pub fn export(
    settings: &Settings,
    file: &Path,
    images: &[String],
    platforms: &[String],
    since: Option<&str>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let project = Project::load(settings)?;
    let lock = project.require_lock("run `imagelock lock` and `imagelock sync` first")?;
    let stale = project.staleness(&lock);
    if !stale.is_fresh() {
        return Err(project.stale_error(&lock, &stale, "`export`"));
    }
    let lock = crate::airgap::bundle::subset(&lock, images, platforms)?;
    let base = since
        .map(|since| delta_base(&project, since, images, platforms))
        .transpose()?;
    let (_, store) =
        project.required_store("run `imagelock sync` first, so the bundle can carry the images")?;
    let _shared = store.lock_shared()?;
    project.check_trusted(&lock, &store, "nothing was exported")?;
    let keys = key_files(&project.manifest);
    let reporter = printer.reporter();
    let exported =
        crate::airgap::bundle::export(&store, &lock, &keys, base.as_ref(), file, &*reporter)?;
    let omitted: BTreeSet<&Digest> = exported
        .delta
        .iter()
        .flat_map(|d| &d.omitted)
        .map(|o| &o.digest)
        .collect();
    for image in lock.images.values() {
        let (left_out, carried): (Vec<_>, Vec<_>) = image
            .blobs()
            .into_iter()
            .partition(|b| omitted.contains(&b.digest));
        let mut line = if carried.is_empty() {
            format!("  {}: nothing new", image.id)
        } else {
            format!(
                "  {}: {} ({})",
                image.id,
                plural(carried.len(), "blob"),
                human_bytes(carried.iter().map(|b| b.size).sum())
            )
        };
        if !left_out.is_empty() {
            line.push_str(&format!(
                "; {} ({}) left out, present in the base",
                plural(left_out.len(), "blob"),
                human_bytes(left_out.iter().map(|b| b.size).sum())
            ));
        }
        printer.detail(line);
    }
    let written = format!(
        "{} ({}) and {} to {} ({}) in {}",
        plural(exported.blobs, "blob"),
        human_bytes(exported.bytes),
        plural(exported.keys, "key file"),
        file.display(),
        human_bytes(exported.file_bytes),
        human_duration(started.elapsed())
    );
    match &exported.delta {
        None => {
            printer.status(format!(
                "Exported {}, {written}",
                plural(exported.images, "image")
            ));
            printer.status(format!("Bundle lock {}", exported.lock));
        }
        Some(delta) => {
            let whole = delta.omitted_bytes + exported.bytes;
            printer.status(format!(
                "Left out {} ({}), present in the base {}: saved {} of {} ({}%)",
                plural(delta.omitted_blobs, "blob"),
                human_bytes(delta.omitted_bytes),
                delta.base.from,
                human_bytes(delta.omitted_bytes),
                human_bytes(whole),
                (delta.omitted_bytes * 100).checked_div(whole).unwrap_or(0)
            ));
            printer.status(format!(
                "Exported a delta of {}: {written}",
                plural(exported.images, "image")
            ));
            printer.status(format!(
                "Bundle lock {}, cut against lock {}",
                exported.lock, delta.base.lock
            ));
        }
    }
    printer.json(&json!({ "bundle": file, "exported": exported }));
    Ok(())
}

/// The base of `export --since`: the lock in the file or git revision `since`,
/// with the same subset as the delta, and where it came from in words.
fn delta_base(
    project: &Project<'_>,
    since: &str,
    images: &[String],
    platforms: &[String],
) -> anyhow::Result<Base> {
    let old = crate::project::history::old_lock(
        &project.lock_path,
        Some(since),
        "`imagelock export --since OLD.lock FILE`",
    )?;
    if old.absent {
        return Err(hinted(
            format!(
                "{} does not exist, so a delta against it would carry every blob",
                old.label
            ),
            "export a full bundle (without --since), or name the revision whose lock the other side holds",
        ));
    }
    // A file name is the user's own, but may hold anything: escaped like bundle text.
    let label = crate::text::escape(&old.label).into_owned();
    let commit = old
        .revision
        .as_deref()
        .and_then(|rev| crate::project::history::commit_of(&project.lock_path, rev));
    let from = match commit {
        Some(commit) => format!("{label} at commit {}", &commit[..commit.len().min(12)]),
        None => label,
    };
    let lock = crate::airgap::bundle::base_subset(&old.lock, images, platforms)?;
    Ok(Base { lock, from })
}

/// The key files `manifest` trusts, each once, as (name in the bundle, path):
/// named by the path under the manifest's directory (`..` and root components
/// dropped: a tar entry may not climb out).
fn key_files(manifest: &Manifest) -> Vec<(String, PathBuf)> {
    manifest
        .trust
        .values()
        .flat_map(|t| {
            t.keys
                .iter()
                .chain(&t.sigstore_keys)
                .chain(t.trusted_root.iter())
        })
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
    let lock_path = crate::project::lockfile::lock_path_for(&settings.manifest);
    let pinned_otherwise = match Lock::load(&lock_path) {
        Ok(Some(lock)) => warn_if_pinned_otherwise(settings, &lock, &lock_path, &imported),
        _ => Vec::new(),
    };
    // A bundle's own lock names nothing in the store: names come from the
    // project's lock, when sync has checked it against images.toml.
    settings.printer.status(
        "Import names no image: run `imagelock sync --offline` to check the project's images.lock against the store and name its images.",
    );
    settings.printer.json(
        &json!({ "bundle": file, "imported": imported, "pinned_otherwise": pinned_otherwise }),
    );
    Ok(())
}

/// `imagelock push`.
pub async fn push(settings: &Settings, prefix: &str, staging: Option<&Path>) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let project = Project::load(settings)?;
    let lock = project.require_lock("run `imagelock lock` and `imagelock sync` first")?;
    let manifest = &project.manifest;
    let mirror = crate::airgap::mirror::Mirror::parse(prefix, |h| manifest.insecure_http(h))?;
    let (_, store) =
        project.required_store("run `imagelock sync` first: push copies from the store")?;
    let _shared = store.lock_shared()?;
    require_every_blob(&lock, &store)?;
    project.check_trusted(&lock, &store, "nothing was pushed")?;
    // Plain HTTP only for the hosts images.toml names, never for what the lock records.
    let client = project.client().get()?;
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

/// Warns when the bundle's lock pins images at other root digests than the
/// project's `lock` does, or pins images `lock` lacks: the store got the
/// bundle's blobs, but `sync` names what `lock` pins. That is expected while a
/// chain of bundles is caught up (the bundle is older than the lock), and a
/// mistake when the bundle is newer and its lock has not arrived. Returns the
/// differences, for `--json`.
pub(super) fn warn_if_pinned_otherwise(
    settings: &Settings,
    lock: &Lock,
    lock_path: &Path,
    imported: &crate::airgap::bundle::Imported,
) -> Vec<serde_json::Value> {
    let lock_name = lock_path.file_name().map_or_else(
        || lock_path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut words = Vec::new();
    let mut differences = Vec::new();
    for (id, root) in &imported.roots {
        let pinned = lock.images.get(id).map(|image| image.root().digest);
        if pinned.as_ref() == Some(root) {
            continue;
        }
        let id_text = crate::text::escape(id);
        words.push(match &pinned {
            None => format!("{id_text} (not in {lock_name})"),
            Some(pinned) => format!(
                "{id_text} (bundle {}, {lock_name} {})",
                root.short(),
                pinned.short()
            ),
        });
        differences.push(json!({ "id": id, "bundle": root, "lock": pinned }));
    }
    if !words.is_empty() {
        settings.printer.warn(format!(
            "the bundle's lock pins {} otherwise than {}: {}; sync names what {lock_name} pins. If the bundle is newer, bring the {lock_name} it was exported with; if it is older (a chain being caught up), import the bundles after it",
            plural(words.len(), "image"),
            lock_path.display(),
            words.join(", ")
        ));
    }
    differences
}

/// Imports `bundle` into `store` on a blocking thread, reporting it.
pub(super) async fn import_bundle(
    settings: &Settings,
    store: &Store,
    bundle: &Path,
) -> anyhow::Result<crate::airgap::bundle::Imported> {
    let started = Instant::now();
    let (store, path) = (store.clone(), bundle.to_owned());
    let reporter = settings.printer.reporter();
    let imported = tokio::task::spawn_blocking(move || {
        crate::airgap::bundle::import(&store, &path, &*reporter)
    })
    .await
    .context("the bundle reader panicked")??;
    let lock = imported
        .lock
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), ToString::to_string);
    let (what, assumed, lock_line) = match &imported.delta {
        None => (
            plural(imported.images, "image"),
            String::new(),
            format!("Bundle lock {lock}"),
        ),
        Some(delta) => (
            format!("a delta of {}", plural(imported.images, "image")),
            format!(
                "; {} ({}) left out, already in the store",
                plural(delta.assumed, "blob"),
                human_bytes(delta.assumed_bytes)
            ),
            format!(
                "Bundle lock {lock}, cut against lock {} ({})",
                delta.base.lock,
                crate::text::escape(&delta.base.from)
            ),
        ),
    };
    settings.printer.status(format!(
        "Imported {what} from {}: {} ({}) stored, {} already present{assumed} ({})",
        bundle.display(),
        plural(imported.stored, "blob"),
        human_bytes(imported.bytes),
        imported.present,
        human_duration(started.elapsed()),
    ));
    settings.printer.status(lock_line);
    Ok(imported)
}
