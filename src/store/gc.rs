//! Garbage collection with roots, like Nix's gcroots.
//!
//! Every `sync` (and every `lock` that stores ACIs) registers its lockfile in
//! the store as a root: `STORE/roots/<sha256 of the lock's absolute path>.json`
//! holding `{"lock": "/abs/images.lock", "digests": ["sha256:…", …]}`, the
//! blobs that lock needed then, written atomically. A root whose lockfile no longer
//! exists is dead. A live root follows its lockfile: `gc` keeps what the lock names
//! now (after a `remove` and `lock`, a `git checkout`, ...), and the recorded digests
//! only when the lock cannot be read (merge conflict markers, a newer format). `gc`
//! keeps exactly the blobs live roots need and removes the rest, with the `index.json` refs pointing at removed content,
//! rendered trees built from removed content, and leftovers in `ingest/`.
//! Every path it removes (or, with `--dry-run`, would remove) is reported in
//! [`Collected::paths`].
//!
//! Invariants: collection runs under the store's exclusive lock, so no sync
//! (which holds it shared) is writing while blobs disappear; a sync started
//! afterwards fetches again whatever it needs. Only names the store makes are
//! removed — digests in `blobs/<alg>/`, `<hash>.json` in `roots/`, cache keys
//! and `.tmp-*` in `rendered/`, `tmp-*` and `<alg>-<hex>.partial` in `ingest/` —
//! from directories opened without following links
//! ([`crate::store::Store::open_dir`]); a link is removed, never its target,
//! and anything else found there is left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::write_atomic;
use crate::oci;
use crate::project::lockfile::Lock;
use crate::store::{INGEST_DIR, IngestName, ROOTS_DIR, Store};

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
    /// Every path removed (or that a dry run would remove), with what it is.
    pub paths: Vec<Removed>,
}

/// One path a collection removes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Removed {
    /// The file or directory.
    pub path: PathBuf,
    /// What it is: `blob`, `rendered tree`, `abandoned render`, `partial download`,
    /// `temporary file`, `dead root`.
    pub what: &'static str,
    /// Its size in bytes (blobs and files; 0 for directories).
    pub bytes: u64,
}

impl Collected {
    /// Bytes freed by the removed blobs.
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, size)| size).sum()
    }

    fn removed(&mut self, path: PathBuf, what: &'static str, bytes: u64) {
        self.paths.push(Removed { path, what, bytes });
    }
}

/// The name of the root file of the lock at `lock_path`.
fn root_name(lock_path: &Path) -> String {
    let key = Digest::sha256_of(lock_path.as_os_str().as_encoded_bytes());
    format!("{}.json", key.hex())
}

/// Whether `name` is one the store gives root files: `<64 hex>.json`.
fn is_root_name(name: &str) -> bool {
    name.strip_suffix(".json").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
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
pub fn register(store: &Store, lock_path: &Path, lock: &Lock) -> anyhow::Result<()> {
    let lock_path = absolute(lock_path)?;
    let root = Root {
        lock: lock_path.clone(),
        digests: lock.blobs().into_keys().collect(),
    };
    let file = store.dir(ROOTS_DIR)?.join(root_name(&lock_path));
    if read_root(&file).is_some_and(|old| old == root) {
        return Ok(());
    }
    let mut bytes = serde_json::to_vec_pretty(&root).expect("a root serialises");
    bytes.push(b'\n');
    Ok(write_atomic(&file, &bytes)?)
}

/// A root file's content; `None` when it is unreadable, not JSON, or not a
/// regular file (a link is never followed).
fn read_root(file: &Path) -> Option<Root> {
    serde_json::from_slice(&crate::fsutil::read_regular(file).ok()?).ok()
}

/// Every registered root, with its file: the `<hash>.json` names of `roots/`
/// (other names there are not the store's and are left alone).
pub fn roots(store: &Store) -> anyhow::Result<Vec<(PathBuf, Option<Root>)>> {
    let Some(dir) = store.open_dir(ROOTS_DIR)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, kind) in dir.entries()? {
        if is_root_name(&name) && kind != FileType::Directory {
            let path = dir.path().join(&name);
            let root = read_root(&path);
            out.push((path, root));
        }
    }
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
    for blob in store.blob_files()? {
        // A stray file (not named by a digest) is not ours: leave it. Nor is a
        // directory under a digest's name (`fsck` reports it).
        let Some(digest) = blob.digest.filter(|d| !keep.contains(d)) else {
            continue;
        };
        if blob.kind == FileType::Directory {
            continue;
        }
        let size = match blob.kind {
            FileType::RegularFile => std::fs::symlink_metadata(&blob.path).map_or(0, |m| m.len()),
            _ => 0,
        };
        if !dry_run {
            store.remove_blob(&digest)?;
        }
        out.removed(blob.path, "blob", size);
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
    collect_rendered(store, keep, dry_run, &mut out)?;
    collect_ingest(store, keep, dry_run, &mut out)?;
    let roots_dir = store.open_dir(ROOTS_DIR)?;
    for root in dead_roots {
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_root_name(n));
        if !dry_run && let (Some(dir), Some(name)) = (&roots_dir, name) {
            let _ = dir.remove_file(name);
        }
        out.removed(root.clone(), "dead root", 0);
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
    out: &mut Collected,
) -> anyhow::Result<()> {
    use crate::store::render_cache;
    let Some(dir) = store.open_dir(crate::store::RENDERED_DIR)? else {
        return Ok(());
    };
    for entry in render_cache::list(&dir)? {
        let live = entry.record.as_ref().is_some_and(|record| {
            record.format == render_cache::FORMAT
                && record.sources.iter().all(|s| keep.contains(&s.digest))
        });
        if live {
            continue;
        }
        if !dry_run {
            render_cache::remove(&dir, &entry.name)?;
        }
        out.removed(dir.path().join(&entry.name), "rendered tree", 0);
        out.rendered.push(entry.name);
    }
    for build in render_cache::abandoned(&dir)? {
        if !dry_run {
            render_cache::remove(&dir, &build)?;
        }
        out.removed(dir.path().join(&build), "abandoned render", 0);
    }
    out.rendered.sort();
    Ok(())
}

/// Files in `ingest/`: partial downloads of blobs no longer needed, and
/// temporary files left by killed processes (nobody writes during gc). Only
/// names the store makes; anything else there is left alone.
fn collect_ingest(
    store: &Store,
    keep: &BTreeSet<Digest>,
    dry_run: bool,
    out: &mut Collected,
) -> anyhow::Result<()> {
    let Some(dir) = store.open_dir(INGEST_DIR)? else {
        return Ok(());
    };
    for (name, kind) in dir.entries()? {
        let what = match IngestName::parse(&name) {
            None => continue,
            Some(IngestName::Partial(digest)) if keep.contains(&digest) => continue,
            Some(IngestName::Partial(_)) => "partial download",
            Some(IngestName::Temp) => "temporary file",
        };
        if kind == FileType::Directory {
            continue;
        }
        let bytes = if kind == FileType::RegularFile {
            dir.size(&name)
        } else {
            0
        };
        if !dry_run {
            dir.remove_file(&name)?;
        }
        out.removed(dir.path().join(&name), what, bytes);
        out.ingest += 1;
    }
    Ok(())
}

/// The live set: the blobs every root whose lockfile still exists needs (what the lock
/// names now; what the root recorded when the lock cannot be read), and the dead roots.
pub fn live_set(store: &Store) -> anyhow::Result<(BTreeSet<Digest>, Vec<PathBuf>, usize)> {
    let mut keep = BTreeSet::new();
    let mut dead = Vec::new();
    let mut live = 0;
    for (file, root) in roots(store)? {
        match root {
            Some(root) if root.lock.is_file() => {
                live += 1;
                match Lock::load(&root.lock) {
                    Ok(Some(lock)) => keep.extend(lock.blobs().into_keys()),
                    _ => keep.extend(root.digests),
                }
            }
            // A root whose lockfile is gone, or an unreadable root file.
            _ => dead.push(file),
        }
    }
    Ok((keep, dead, live))
}
