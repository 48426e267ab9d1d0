//! Garbage collection with roots, like Nix's gcroots.
//!
//! Every `sync` (and every `lock` that stores ACIs) registers its lockfile in
//! the store as a root: `STORE/roots/<sha256 of the lock's absolute path>.json`
//! holding `{"lock": "/abs/images.lock", "digests": ["sha256:…", …]}`, the
//! blobs that lock needs, written atomically. A root whose lockfile no longer
//! exists is dead. `gc` keeps exactly the blobs some live root names and
//! removes the rest, with the `index.json` refs pointing at removed content,
//! rendered trees built from removed content, and leftovers in `ingest/`.
//!
//! Invariant: collection runs under the store's exclusive lock, so no sync
//! (which holds it shared) is writing while blobs disappear; a sync started
//! afterwards fetches again whatever it needs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::write_atomic;
use crate::lockfile::Lock;
use crate::oci;
use crate::store::Store;

/// One registered root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Root {
    /// The lockfile's absolute path.
    pub lock: PathBuf,
    /// The blobs it needs.
    pub digests: BTreeSet<Digest>,
}

/// What a collection removes (or would remove, for a dry run).
#[derive(Debug, Default, Serialize)]
pub struct Collected {
    /// Blobs removed, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Roots whose lockfile is gone.
    pub dead_roots: Vec<PathBuf>,
    /// Live roots.
    pub live_roots: usize,
    /// `index.json` refs removed.
    pub refs: Vec<String>,
    /// Rendered trees removed.
    pub rendered: Vec<String>,
    /// Files removed from `ingest/`.
    pub ingest: usize,
}

impl Collected {
    /// Bytes freed by the removed blobs.
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, size)| size).sum()
    }
}

fn roots_dir(store: &Store) -> PathBuf {
    store.root().join("roots")
}

fn root_file(store: &Store, lock_path: &Path) -> PathBuf {
    let key = Digest::sha256_of(lock_path.as_os_str().as_encoded_bytes());
    roots_dir(store).join(format!("{}.json", key.hex()))
}

/// The absolute form of `lock_path` (roots must not depend on the working directory).
fn absolute(lock_path: &Path) -> std::io::Result<PathBuf> {
    match lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => {
            Ok(std::fs::canonicalize(dir)?.join(lock_path.file_name().unwrap_or_default()))
        }
        None => Ok(std::env::current_dir()?.join(lock_path)),
    }
}

/// Registers `lock` (read from `lock_path`) as a root of `store`; rewrites the
/// root file only when the set of digests changed.
pub fn register(store: &Store, lock_path: &Path, lock: &Lock) -> std::io::Result<()> {
    let lock_path = absolute(lock_path)?;
    let root = Root {
        lock: lock_path.clone(),
        digests: lock.blobs().into_keys().collect(),
    };
    let file = root_file(store, &lock_path);
    if read_root(&file).is_some_and(|old| old == root) {
        return Ok(());
    }
    std::fs::create_dir_all(roots_dir(store))?;
    let mut bytes = serde_json::to_vec_pretty(&root).expect("a root serialises");
    bytes.push(b'\n');
    write_atomic(&file, &bytes)
}

fn read_root(file: &Path) -> Option<Root> {
    serde_json::from_slice(&std::fs::read(file).ok()?).ok()
}

/// Every registered root, with its file.
pub fn roots(store: &Store) -> std::io::Result<Vec<(PathBuf, Option<Root>)>> {
    let dir = roots_dir(store);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let root = read_root(&path);
            out.push((path, root));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Removes from `store` every blob not in `keep` (and what depends on removed
/// content). With `dry_run`, only reports. The caller holds the exclusive lock.
pub fn collect(
    store: &Store,
    keep: &BTreeSet<Digest>,
    dead_roots: &[PathBuf],
    dry_run: bool,
) -> anyhow::Result<Collected> {
    let mut out = Collected::default();
    for (digest, path) in store.blob_files()? {
        // A stray file (not named by a digest) is not ours: leave it.
        let Some(digest) = digest.filter(|d| !keep.contains(d)) else {
            continue;
        };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if !dry_run {
            std::fs::remove_file(&path)?;
        }
        out.blobs.push((digest, size));
    }
    out.blobs.sort();
    // index.json refs whose content is gone.
    let index = store.read_index()?;
    out.refs = index
        .manifests
        .iter()
        .filter(|d| !keep.contains(&d.digest))
        .map(|d| {
            d.annotations
                .get(oci::REF_NAME_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| d.digest.to_string())
        })
        .collect();
    if !dry_run && !out.refs.is_empty() {
        store.retain_refs(|d| keep.contains(&d.digest))?;
    }
    out.rendered = collect_rendered(store, keep, dry_run)?;
    out.ingest = collect_ingest(store, keep, dry_run)?;
    for root in dead_roots {
        if !dry_run {
            let _ = std::fs::remove_file(root);
        }
    }
    out.dead_roots = dead_roots.to_vec();
    Ok(out)
}

/// Rendered trees (`STORE/rendered/<key>/`, format in [`crate::render`]) built from
/// content that is not kept, or damaged (no readable `source.json`, another format); and
/// abandoned builds (`.tmp-*`: renders hold the shared lock, so none is running now).
fn collect_rendered(
    store: &Store,
    keep: &BTreeSet<Digest>,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    use crate::render::cache;
    let mut removed = Vec::new();
    for entry in cache::list(store.root())? {
        let live = entry.record.as_ref().is_some_and(|record| {
            record.format == cache::FORMAT
                && record.sources.iter().all(|s| keep.contains(&s.digest))
        });
        if live {
            continue;
        }
        removed.push(
            entry
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        if !dry_run {
            cache::remove(&entry.path)?;
        }
    }
    if !dry_run {
        for build in cache::abandoned(store.root())? {
            cache::remove(&build)?;
        }
    }
    removed.sort();
    Ok(removed)
}

/// Files in `ingest/`: partial downloads of blobs no longer needed, and
/// temporary files left by killed processes (nobody writes during gc).
fn collect_ingest(store: &Store, keep: &BTreeSet<Digest>, dry_run: bool) -> anyhow::Result<usize> {
    let dir = store.root().join("ingest");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let resumable_for_kept = name
            .strip_suffix(".partial")
            .and_then(|stem| stem.split_once('-'))
            .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok())
            .is_some_and(|d| keep.contains(&d));
        if resumable_for_kept {
            continue;
        }
        if !dry_run {
            std::fs::remove_file(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// The live set: digests of every root whose lockfile still exists, and the dead roots.
pub fn live_set(store: &Store) -> anyhow::Result<(BTreeSet<Digest>, Vec<PathBuf>, usize)> {
    let mut keep = BTreeSet::new();
    let mut dead = Vec::new();
    let mut live = 0;
    for (file, root) in roots(store)? {
        match root {
            Some(root) if root.lock.is_file() => {
                live += 1;
                keep.extend(root.digests);
            }
            // A root whose lockfile is gone, or an unreadable root file.
            _ => dead.push(file),
        }
    }
    Ok((keep, dead, live))
}
