//! The project a command works on (cargo's `Workspace` is the model): `images.toml`, the
//! lock beside it, the trust policy they imply, and the store they name — loaded once per
//! command, with every "how to fix this" hint for a missing or broken one in this file.
//!
//! Invariants: the lock path is always derived from the manifest path
//! ([`lock_path_for`]); the trust policy is always the one `images.toml` states (the lock
//! never decides who is trusted); the HTTP client allows plain HTTP only to the hosts
//! `images.toml` names; a re-locked lock is registered as a gc root of the store it stored
//! ACIs into before the command ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::cli::Settings;
use crate::concurrency;
use crate::errors::{hinted, with_hint};
use crate::oci::registry::{HttpOptions, LazyClient};
use crate::project::lockfile::{Lock, Staleness, lock_path_for};
use crate::project::manifest::{Manifest, ManifestError};
use crate::report::printer::Printer;
use crate::resolve::Resolver;
use crate::signing::trust::TrustStore;
use crate::store::Store;

/// `images.toml`, where its lock is, and the trust policy it states.
pub struct Project<'s> {
    /// The global settings the command was run with.
    pub settings: &'s Settings,
    /// `images.toml`, validated.
    pub manifest: Arc<Manifest>,
    /// `images.lock` beside it (which may not exist yet).
    pub lock_path: PathBuf,
    /// The keys `images.toml` trusts, per name prefix.
    pub trust: Arc<TrustStore>,
}

/// A lock resolved anew, and the store its ACIs were stored into (if any were resolved).
pub struct Relocked {
    /// The new lock (not yet written).
    pub lock: Lock,
    /// Where resolution stored verified ACIs.
    pub store: Option<Store>,
}

impl<'s> Project<'s> {
    /// Loads `images.toml` from `--manifest`; an error with a hint when it is missing or
    /// invalid.
    pub fn load(settings: &'s Settings) -> anyhow::Result<Project<'s>> {
        let manifest = Arc::new(load_manifest(&settings.manifest)?);
        Ok(Project {
            settings,
            lock_path: lock_path_for(&settings.manifest),
            trust: Arc::new(TrustStore::new(&manifest)),
            manifest,
        })
    }

    /// Where output goes.
    pub fn printer(&self) -> Printer {
        self.settings.printer
    }

    /// The directory the lock's relative paths are relative to.
    pub fn lock_dir(&self) -> &Path {
        self.lock_path.parent().unwrap_or(Path::new(""))
    }

    /// The lock, if there is one.
    pub fn lock(&self) -> anyhow::Result<Option<Lock>> {
        Ok(Lock::load(&self.lock_path)?)
    }

    /// The lock, which must exist: otherwise an error with `hint`.
    pub fn require_lock(&self, hint: &str) -> anyhow::Result<Lock> {
        require_lock(&self.lock_path, hint)
    }

    /// The error for a lock that does not exist, with `hint` (how to make one).
    pub fn no_lock(&self, hint: &str) -> anyhow::Error {
        no_lock(&self.lock_path, hint)
    }

    /// Which entries of `lock` `images.toml` no longer asks for as they are pinned.
    pub fn staleness(&self, lock: &Lock) -> Staleness {
        crate::resolve::drift::staleness(lock, &self.manifest, &self.trust)
    }

    /// A stale-lock error (exit code 3) for `flag`, naming each stale entry.
    pub fn stale_error(&self, old: &Lock, stale: &Staleness, flag: &str) -> anyhow::Error {
        stale_error(&self.lock_path, old, &self.manifest, stale, flag)
    }

    /// The store, created when missing.
    pub fn store(&self) -> anyhow::Result<(PathBuf, Store)> {
        open_store(self.settings, self.manifest.store_path.clone())
    }

    /// The store if one exists (nothing is created).
    pub fn existing_store(&self) -> anyhow::Result<(PathBuf, Option<Store>)> {
        existing_store(self.settings, self.manifest.store_path.clone())
    }

    /// The store, which must exist: otherwise an error with `hint`.
    pub fn required_store(&self, hint: &str) -> anyhow::Result<(PathBuf, Store)> {
        required_store(self.settings, self.manifest.store_path.clone(), hint)
    }

    /// An HTTP client (made on first use) that allows plain HTTP only to the hosts
    /// `images.toml` names.
    pub fn client(&self) -> LazyClient {
        LazyClient::new(http_options(
            self.settings,
            self.manifest.insecure_http_hosts(),
        ))
    }

    /// Resolves the stale entries of `old` again; fresh entries are kept as they are.
    pub async fn relock(&self, old: &Lock, stale: &Staleness) -> anyhow::Result<Relocked> {
        let resolver = resolver_for(self.settings, self.manifest.clone(), stale)?;
        let store = resolver.store.clone();
        let lock = relock(resolver, old, stale).await?;
        Ok(Relocked { lock, store })
    }

    /// Writes `relocked` to the lock path when it changed, and registers it as a root of
    /// the store it stored ACIs into (they stay alive for gc until the next sync). Whether
    /// the file was written.
    pub fn write_lock(&self, relocked: &Relocked) -> anyhow::Result<bool> {
        let written = relocked
            .lock
            .write_if_changed(&self.lock_path)
            .with_context(|| format!("cannot write {}", self.lock_path.display()))?;
        if let Some(store) = &relocked.store {
            self.register_root(store, &relocked.lock)?;
        }
        Ok(written)
    }

    /// Records the lock as a gc root of `store`.
    pub fn register_root(&self, store: &Store, lock: &Lock) -> anyhow::Result<()> {
        crate::store::gc::register(store, &self.lock_path, lock).with_context(|| {
            format!(
                "cannot register {} as a root of the store",
                self.lock_path.display()
            )
        })
    }

    /// Every pin of `lock` against the bytes in `store`, the trust policy and the
    /// signatures (see [`check_trusted`]); how many signatures verified.
    pub fn check_trusted(
        &self,
        lock: &Lock,
        store: &Store,
        consequence: &str,
    ) -> anyhow::Result<usize> {
        check_trusted(lock, &self.lock_path, store, &self.manifest, consequence)
    }

    /// Refuses a lock whose entries the trust policy does not allow as they are pinned
    /// (an unsigned entry under a trusted prefix, a stowaway dependency, ...), before
    /// anything is fetched for it.
    pub fn refuse_policy_problems(&self, lock: &Lock) -> anyhow::Result<()> {
        let problems: Vec<String> = lock
            .images
            .values()
            .filter_map(|image| {
                crate::verify::policy_problem(image, lock, &self.manifest)
                    .map(|p| format!("  {}: {p}", image.id))
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(hinted(
            format!(
                "{} does not satisfy the trust policy of {}:\n{}",
                self.lock_path.display(),
                self.manifest.path.display(),
                problems.join("\n")
            ),
            "re-lock the named images (remove them from images.lock, then `imagelock lock`), or change [trust] / `insecure` in images.toml",
        ))
    }
}

// What the Project is made of, and what commands that work without a valid images.toml
// (the read-only views, gc, fsck, import) use directly.

pub(super) fn load_manifest(path: &Path) -> anyhow::Result<Manifest> {
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
pub(super) fn open_store(
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
pub(super) fn existing_store(
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
pub(super) fn required_store(
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

pub(super) fn http_options(settings: &Settings, insecure_http: Vec<String>) -> HttpOptions {
    HttpOptions {
        ca_files: settings.ca_files.clone(),
        resolve: settings.resolve.clone(),
        insecure_http,
        retry: settings.retry,
        limits: settings.limits,
        on_retry: Some(retry_notice(settings.printer)),
    }
}

/// Says on stderr what is being retried and when the next attempt comes (not with `-q`).
fn retry_notice(printer: crate::report::printer::Printer) -> crate::oci::registry::RetryNotice {
    crate::oci::registry::RetryNotice(std::sync::Arc::new(
        move |retry: &crate::oci::registry::Retrying| {
            printer.status(format!(
                "retrying {} in {} (attempt {} of {} failed: {})",
                retry.url,
                crate::text::human_duration(retry.wait),
                retry.attempt,
                retry.attempts,
                crate::text::escape_lines(&retry.reason)
            ));
        },
    ))
}

/// Reads `[store] path` from the manifest without validating the rest (for `--frozen`).
pub(super) fn store_from_manifest_leniently(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let store = table.get("store")?.get("path")?.as_str()?;
    Some(path.parent().unwrap_or(Path::new("")).join(store))
}

/// The manifest if it can be read (for key names and the store path), else `None`.
pub(super) fn manifest_if_any(path: &Path) -> Option<Manifest> {
    Manifest::load(path).ok()
}

/// Every pin of `lock` (the whole lock, or the part a command acts on)
/// against the bytes in `store`, the trust policy of `manifest` and the
/// signatures, offline: what `sync` checks on every run, and what `render`,
/// `export`, `push` and `inspect` check before acting on the lock. Returns how
/// many signatures verified; refuses, naming every entry that failed, with
/// `consequence` (what did not happen) in the message.
pub(super) fn check_trusted(
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

/// The lock at `lock_path`, or an error saying how to make one (`hint`).
pub(super) fn require_lock(lock_path: &Path, hint: &str) -> anyhow::Result<Lock> {
    Lock::load(lock_path)?.ok_or_else(|| no_lock(lock_path, hint))
}

/// The error for a lock that does not exist, with `hint` (how to make one).
fn no_lock(lock_path: &Path, hint: &str) -> anyhow::Error {
    hinted(
        format!("no lock file at {}", lock_path.display()),
        hint.to_owned(),
    )
}
