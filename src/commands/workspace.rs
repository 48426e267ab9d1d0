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
use crate::errors::hinted;
use crate::oci::registry::LazyClient;
use crate::project::lockfile::{Lock, Staleness, lock_path_for};
use crate::project::manifest::Manifest;
use crate::report::printer::Printer;
use crate::signing::trust::TrustStore;
use crate::store::Store;

use super::{
    check_trusted, existing_store, http_options, load_manifest, open_store, relock, resolver_for,
    stale_error,
};

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
        self.lock()?.ok_or_else(|| self.no_lock(hint))
    }

    /// The error for a lock that does not exist, with `hint` (how to make one).
    pub fn no_lock(&self, hint: &str) -> anyhow::Error {
        hinted(
            format!("no lock file at {}", self.lock_path.display()),
            hint.to_owned(),
        )
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
