//! The commands: thin wrappers that load files, call the core modules and
//! report through the [`Printer`](crate::report::printer::Printer). One submodule per
//! group of commands; this module keeps what several of them share (loading
//! the manifest and lock, opening the store, re-locking stale entries).

mod airgap;
mod lock;
mod project;
mod render;
mod report;
mod store;
mod sync;
mod trust;
mod verify;
mod workspace;

pub use airgap::{export, import, push};
pub use lock::{lock, update};
pub use project::{AddRequest, add, init, remove};
pub use render::render;
pub use report::{diff, inspect, list};
pub use store::{fsck, gc};
pub use sync::sync;
pub use trust::{KeySource, trust_add, trust_list, trust_remove};
pub use verify::verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

use crate::cli::Settings;
use crate::concurrency;
use crate::errors::{hinted, with_hint};
use crate::oci::registry::{HttpOptions, LazyClient};
use crate::project::lockfile::{Lock, Staleness};
use crate::project::manifest::{Manifest, ManifestError};
use crate::resolve::Resolver;
use crate::signing::trust::TrustStore;
use crate::store::Store;
use crate::text::{human_bytes, human_duration, plural};

fn load_manifest(path: &Path) -> anyhow::Result<Manifest> {
    match Manifest::load(path) {
        Ok(m) => Ok(m),
        Err(e @ ManifestError::Missing { .. }) => Err(with_hint(
            e,
            "create one with `imagelock init`, or point at one with `--manifest PATH`",
        )),
        Err(e @ (ManifestError::Syntax { .. } | ManifestError::Invalid { .. })) => {
            Err(with_hint(e, format!("fix the entry in {}", path.display())))
        }
        Err(e) => Err(e.into()),
    }
}

/// A stale lock (exit code 3), naming each stale entry and the keys that changed.
fn stale_error(
    lock_path: &Path,
    old: &Lock,
    manifest: &Manifest,
    stale: &Staleness,
    flag: &str,
) -> anyhow::Error {
    let details = crate::resolve::drift::explain(old, manifest, stale);
    crate::errors::stale(hinted(
        format!(
            "{} is out of date with {} ({}):\n  {}",
            lock_path.display(),
            manifest.path.display(),
            stale.describe(),
            details.join("\n  ")
        ),
        format!("run `imagelock lock` and commit the result; {flag} refuses to change the lock"),
    ))
}

/// Resolves the stale entries of `old`; fresh entries are kept as they are.
/// Removed and re-resolved entries go together with the dependencies they pulled in.
async fn relock(resolver: Arc<Resolver>, old: &Lock, stale: &Staleness) -> anyhow::Result<Lock> {
    let redo: Vec<&String> = stale.added.iter().chain(&stale.changed).collect();
    let mut new = old.clone();
    new.images.retain(|id, image| {
        let root = image.dependency_of.as_ref().unwrap_or(id);
        !stale.removed.contains(root) && !redo.contains(&root)
    });
    let jobs = redo.into_iter().map(|id| {
        let resolver = resolver.clone();
        let id = id.clone();
        async move {
            let manifest = &resolver.manifest;
            let spec = &manifest.images[&id];
            let result = resolver.resolve(spec).await;
            result.with_context(|| {
                format!(
                    "cannot lock image `{id}` ({}, {}:{})",
                    crate::text::escape(&spec.request()),
                    manifest.path.display(),
                    spec.line
                )
            })
        }
    });
    for images in concurrency::run_bounded(concurrency::PARALLEL_RESOLVES, jobs).await? {
        for image in images {
            new.images.insert(image.id.clone(), image);
        }
    }
    Ok(new)
}

/// A resolver for `manifest`; the store is opened only when an entry to resolve is an ACI
/// (verified ACIs are stored as they are pinned).
fn resolver_for(
    settings: &Settings,
    manifest: Arc<Manifest>,
    stale: &Staleness,
) -> anyhow::Result<Arc<Resolver>> {
    let needs_store = stale
        .added
        .iter()
        .chain(&stale.changed)
        .any(|id| manifest.images[id].is_aci());
    let store = if needs_store {
        Some(open_store(settings, manifest.store_path.clone())?.1)
    } else {
        None
    };
    // Held for the whole resolution: gc must not run while ACIs are stored.
    let store_lock = store.as_ref().map(Store::lock_shared).transpose()?;
    Ok(Arc::new(Resolver {
        _store_lock: store_lock,
        trust: TrustStore::new(&manifest),
        client: LazyClient::new(http_options(settings, manifest.insecure_http_hosts())),
        manifest,
        store,
    }))
}

/// The store `--store` / `IMAGELOCK_STORE` / `[store] path` / the per-user default names, opened.
fn open_store(
    settings: &Settings,
    manifest_store: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, Store)> {
    let path = store_location(settings, manifest_store);
    let store = Store::open(&path)
        .with_context(|| format!("cannot open the store at {}", path.display()))?;
    Ok((path, store))
}

/// The store the settings name, if one exists there (nothing is created); an
/// error when the path holds something that is not a store (see [`Store::open_existing`]).
fn existing_store(
    settings: &Settings,
    manifest_store: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, Option<Store>)> {
    let path = store_location(settings, manifest_store);
    let store = Store::open_existing(&path)
        .with_context(|| format!("cannot open the store at {}", path.display()))?;
    Ok((path, store))
}

/// The store the settings name, which must exist: otherwise an error saying
/// where none was found, with `hint`.
fn required_store(
    settings: &Settings,
    manifest_store: Option<PathBuf>,
    hint: &str,
) -> anyhow::Result<(PathBuf, Store)> {
    match existing_store(settings, manifest_store)? {
        (path, Some(store)) => Ok((path, store)),
        (path, None) => Err(hinted(
            format!("there is no store at {}", path.display()),
            hint,
        )),
    }
}

/// Where the store is: `--store` / `IMAGELOCK_STORE`, `[store] path`, the per-user default.
fn store_location(settings: &Settings, manifest_store: Option<PathBuf>) -> PathBuf {
    settings
        .store_override
        .clone()
        .or(manifest_store)
        .unwrap_or_else(crate::cli::default_store)
}

fn http_options(settings: &Settings, insecure_http: Vec<String>) -> HttpOptions {
    HttpOptions {
        ca_files: settings.ca_files.clone(),
        resolve: settings.resolve.clone(),
        insecure_http,
        retry: settings.retry,
        limits: settings.limits,
    }
}

/// Reads `[store] path` from the manifest without validating the rest (for `--frozen`).
fn store_from_manifest_leniently(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let store = table.get("store")?.get("path")?.as_str()?;
    Some(path.parent().unwrap_or(Path::new("")).join(store))
}

/// Imports `bundle` into `store` on a blocking thread, reporting it.
async fn import_bundle(
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
    settings.printer.status(format!(
        "Imported {} from {}: {} ({}) stored, {} already present ({})",
        plural(imported.images, "image"),
        bundle.display(),
        plural(imported.stored, "blob"),
        human_bytes(imported.bytes),
        imported.present,
        human_duration(started.elapsed())
    ));
    Ok(imported)
}

/// Every pin of `lock` (the whole lock, or the part a command acts on)
/// against the bytes in `store`, the trust policy of `manifest` and the
/// signatures, offline: what `sync` checks on every run, and what `render`,
/// `export`, `push` and `inspect` check before acting on the lock. Returns how
/// many signatures verified; refuses, naming every entry that failed, with
/// `consequence` (what did not happen) in the message.
fn check_trusted(
    lock: &Lock,
    lock_path: &Path,
    store: &Store,
    manifest: &Manifest,
    consequence: &str,
) -> anyhow::Result<usize> {
    let trust = TrustStore::new(manifest);
    let reports = crate::verify::check_pins(lock, store, manifest, &trust);
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("  {}: {}", r.id, r.problems.join("; ")))
        .collect();
    if !failed.is_empty() {
        return Err(hinted(
            format!(
                "{} pins what its bytes, signatures or the keys in {} do not vouch for; {consequence}:\n{}",
                lock_path.display(),
                manifest.path.display(),
                failed.join("\n")
            ),
            format!(
                "if {} was edited by hand or came from an untrusted change, review it (`git log -p {}`); remove the named images from it and run `imagelock lock`. A store file that is damaged: `imagelock fsck --repair`, then `imagelock sync`",
                lock_path.display(),
                lock_path.display()
            ),
        ));
    }
    let signatures = reports
        .iter()
        .filter(|r| r.signed_by.is_some())
        .filter_map(|r| lock.images.get(&r.id))
        .map(|image| {
            image.signature.iter().count()
                + image
                    .manifests
                    .iter()
                    .filter(|m| m.signature.is_some())
                    .count()
        })
        .sum();
    Ok(signatures)
}

/// The entry `id` with the dependencies it pulled in (what rendering it reads).
fn tree_of(lock: &Lock, id: &str) -> Lock {
    let root = lock
        .images
        .get(id)
        .and_then(|i| i.dependency_of.as_deref())
        .unwrap_or(id);
    Lock {
        images: lock
            .images
            .iter()
            .filter(|(_, i)| i.id == root || i.dependency_of.as_deref() == Some(root))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The lock at `lock_path`, or an error saying how to make one (`hint`).
fn require_lock(lock_path: &Path, hint: &str) -> anyhow::Result<Lock> {
    Lock::load(lock_path)?.ok_or_else(|| {
        hinted(
            format!("no lock file at {}", lock_path.display()),
            hint.to_owned(),
        )
    })
}

/// Starts `lock` from a lock with git conflict markers: the pins both sides
/// agree on (see [`crate::resolve::conflict`]); says what it kept and what it resolves again.
fn recover_conflicted(
    lock_path: &Path,
    manifest: &Manifest,
    printer: crate::report::printer::Printer,
) -> anyhow::Result<Lock> {
    use crate::resolve::conflict::Outcome;
    let text = std::fs::read_to_string(lock_path)
        .with_context(|| format!("cannot read {}", lock_path.display()))?;
    // The sides as committed, when git still has them, are exact; the text split at its
    // markers may mix the sides where git merged lines cleanly.
    let (recovered, from) = match crate::project::history::merge_stages(lock_path) {
        Some((ours, theirs)) => (
            crate::resolve::conflict::recover_sides(
                lock_path,
                &ours,
                &theirs,
                manifest.images.values(),
            ),
            "git's record of both sides",
        ),
        None => (
            crate::resolve::conflict::recover(lock_path, &text, manifest.images.values()),
            "the two sides between the conflict markers",
        ),
    };
    printer.status(format!(
        "{} has merge conflicts: re-locking it from {}, keeping the pins (read from {from}) that still match it",
        lock_path.display(),
        manifest.path.display()
    ));
    for (side, why) in &recovered.unreadable {
        printer.warn(format!(
            "the {side} side of the conflict is not a valid lock, so none of its pins are kept: {why}"
        ));
    }
    let report = |label: &str, ids: Vec<String>| {
        if !ids.is_empty() {
            printer.status(format!("  {label}: {}", ids.join(", ")));
        }
    };
    report(
        "kept (both sides agree)",
        recovered.ids(|o| *o == Outcome::Agreed),
    );
    for side in ["ours", "theirs"] {
        report(
            &format!("kept (pinned only on {side})"),
            recovered.ids(|o| *o == Outcome::OneSide(side)),
        );
    }
    report(
        "resolving again (the sides pinned it differently)",
        recovered.ids(|o| *o == Outcome::Disagreed),
    );
    report(
        "resolving (no side pinned the entry as it is now)",
        recovered.ids(|o| *o == Outcome::Unpinned),
    );
    Ok(recovered.lock)
}

/// The manifest if it can be read (for key names and the store path), else `None`.
fn manifest_if_any(path: &Path) -> Option<Manifest> {
    Manifest::load(path).ok()
}
