//! The render cache: rendered trees in the store, named by what they were built from.
//!
//! On disk (see [`super`] for the whole format):
//! ```text
//! STORE/rendered/<hex>/rootfs/        the tree
//! STORE/rendered/<hex>/source.json    a [`Record`]: format, sources, tree listing digest
//! STORE/rendered/.tmp-*/              builds in progress (or abandoned by a crash)
//! ```
//! `<hex>` is the SHA-256 of [`key_text`]. Invariant: a `<hex>` directory is complete:
//! trees are built under `.tmp-*` and renamed into place with their record, and a tree
//! whose listing no longer matches its record (a file changed through a hard link) is
//! moved aside and rebuilt, never used.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;
use serde::{Deserialize, Serialize};

use super::tree;
use crate::digest::{Algorithm, Digest, Hasher};

/// The cache's directory name in the store.
pub const RENDERED_DIR: &str = "rendered";
/// The tree's directory name in a cache entry.
pub const TREE_DIR: &str = "rootfs";
/// The record's file name in a cache entry.
pub const RECORD_FILE: &str = "source.json";
/// Prefix of build and removal directories (not cache entries).
pub const TEMP_PREFIX: &str = ".tmp-";
/// Bump when a change to the renderer would render the same sources differently: old
/// trees then simply stop being found (and `gc` removes them).
pub const FORMAT: u32 = 1;

/// One source of a rendered tree, in render order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Source {
    /// The blob's digest (a layer, or an ACI as served).
    pub digest: Digest,
    /// Its media type as locked.
    pub media_type: String,
    /// OCI: 0; ACI: the image's depth in the dependency tree (0 = the image asked for).
    pub level: usize,
    /// For ACIs: name, labels and image ID checked against the image's manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// `STORE/rendered/<hex>/source.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// `oci` or `aci`.
    pub kind: String,
    /// Rendered as root (owners and device nodes kept) or not.
    pub privileged: bool,
    /// The blobs the tree was built from, in render order: `gc` may drop the tree once any
    /// of them is no longer wanted.
    pub sources: Vec<Source>,
    /// Digest of the tree's listing ([`listing_digest`]) when it was built.
    pub tree: Digest,
    /// Entries in the tree (for information).
    pub entries: u64,
    /// Bytes of regular files (for information).
    pub bytes: u64,
    /// The lock entry it was first rendered for (for information: trees are shared by
    /// content).
    pub image: String,
}

/// The text hashed into a cache key: everything that decides the tree's content.
pub fn key_text(kind: &str, privileged: bool, sources: &[Source]) -> String {
    let mut text = format!(
        "imagelock-render/{FORMAT}\n{kind}\n{}\n",
        if privileged { "privileged" } else { "rootless" }
    );
    for s in sources {
        text.push_str(&format!(
            "{} {} {} {}\n",
            s.level,
            s.media_type,
            s.digest,
            s.identity.as_deref().unwrap_or("-")
        ));
    }
    text
}

/// The cache key (hex) for `key_text`.
pub fn key(text: &str) -> String {
    Digest::sha256_of(text.as_bytes()).hex().to_owned()
}

/// A cache entry found in a store, for `gc` and inspection.
#[derive(Debug, Clone)]
pub struct Cached {
    /// `STORE/rendered/<hex>`.
    pub path: PathBuf,
    /// Its record; `None` if missing or unreadable (a damaged entry: safe to remove).
    pub record: Option<Record>,
}

/// Every cache entry under `store_root` (build directories excluded).
pub fn list(store_root: &Path) -> io::Result<Vec<Cached>> {
    let dir = store_root.join(RENDERED_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        out.push(Cached {
            record: read_record(&path),
            path,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The `.tmp-*` directories under `store_root`'s cache: builds in progress, or abandoned by
/// a crash (all of them, while the store's exclusive lock is held).
pub fn abandoned(store_root: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = store_root.join(RENDERED_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The record of the entry at `entry`, if present and readable.
pub fn read_record(entry: &Path) -> Option<Record> {
    let bytes = std::fs::read(entry.join(RECORD_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes a cache entry (or build directory) safely: it is first renamed to a `.tmp-`
/// name, so no reader ever sees half of it under its key, then deleted without following
/// symlinks.
pub fn remove(entry: &Path) -> io::Result<()> {
    let Some(parent) = entry.parent() else {
        return Err(io::Error::other("a cache entry has a parent"));
    };
    let aside = parent.join(format!(
        "{TEMP_PREFIX}removing-{}-{}",
        std::process::id(),
        entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let target = match std::fs::rename(entry, &aside) {
        Ok(()) => aside,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Already a .tmp- name, or a rename refused: delete it where it is.
        Err(_) => entry.to_owned(),
    };
    let parent_fd = tree::Tree::open(parent)?;
    let name = target
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    tree::remove_all(parent_fd.root(), &name)
}

/// What [`listing_digest`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// SHA-256 over one line per entry, in sorted walk order: path, type, mode, owner, and
    /// for regular files size and mtime (what changes when a hard-linked copy is edited).
    pub digest: Digest,
    /// Entries below the root.
    pub entries: u64,
    /// Bytes of regular files.
    pub bytes: u64,
}

/// Digests the listing of the tree at `root` (stat only, no content), walking it by file
/// descriptor without following symlinks.
pub fn listing_digest(root: &Path) -> io::Result<Listing> {
    let tree = tree::Tree::open(root)?;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut listing = (0u64, 0u64);
    let st = rustix::fs::fstat(tree.root())?;
    hasher.update(format!("/ {:o} {} {}\n", st.st_mode, st.st_uid, st.st_gid).as_bytes());
    walk_listing(tree.root(), &mut Vec::new(), &mut hasher, &mut listing, 0)?;
    Ok(Listing {
        digest: hasher.finish(),
        entries: listing.0,
        bytes: listing.1,
    })
}

fn walk_listing(
    dir: BorrowedFd<'_>,
    path: &mut Vec<u8>,
    hasher: &mut Hasher,
    counts: &mut (u64, u64),
    depth: usize,
) -> io::Result<()> {
    if depth > tree::MAX_DEPTH {
        return Err(io::Error::other("directories nested too deep"));
    }
    for name in tree::read_dir_names(dir)? {
        let Some(st) = tree::lstat(dir, &name)? else {
            continue;
        };
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        counts.0 += 1;
        hasher.update(path);
        let file_type = tree::file_type(&st);
        let line = match file_type {
            FileType::RegularFile => {
                counts.1 += st.st_size as u64;
                format!(
                    "\0f {:o} {} {} {} {}.{}\n",
                    st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime, st.st_mtime_nsec
                )
            }
            FileType::Directory => format!("\0d {:o} {} {}\n", st.st_mode, st.st_uid, st.st_gid),
            FileType::Symlink => format!("\0l {} {} {}\n", st.st_uid, st.st_gid, st.st_size),
            _ => format!(
                "\0n {:o} {} {} {}\n",
                st.st_mode, st.st_uid, st.st_gid, st.st_rdev
            ),
        };
        hasher.update(line.as_bytes());
        if file_type == FileType::Directory {
            let sub = tree::open_dir(dir, &name)?;
            walk_listing(sub.as_fd(), path, hasher, counts, depth + 1)?;
        }
        path.truncate(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cover_every_source_field_and_privileges() {
        let source = Source {
            digest: Digest::sha256_of(b"layer"),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            level: 0,
            identity: None,
        };
        let base = key(&key_text("oci", true, std::slice::from_ref(&source)));
        assert_eq!(base.len(), 64);
        assert_ne!(
            base,
            key(&key_text("oci", false, std::slice::from_ref(&source)))
        );
        let other_type = Source {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            ..source.clone()
        };
        assert_ne!(base, key(&key_text("oci", true, &[other_type])));
        let twice = [source.clone(), source.clone()];
        assert_ne!(base, key(&key_text("oci", true, &twice)));
    }

    #[test]
    fn list_remove_and_abandoned() {
        let store = tempfile::tempdir().expect("tmp");
        let rendered = store.path().join(RENDERED_DIR);
        let entry = rendered.join("ab".repeat(32));
        std::fs::create_dir_all(entry.join(TREE_DIR).join("sub")).expect("mkdir");
        std::os::unix::fs::symlink("/", entry.join(TREE_DIR).join("sub/root")).expect("ln");
        std::fs::create_dir_all(rendered.join(".tmp-build-x")).expect("mkdir");
        let listed = list(store.path()).expect("list");
        assert_eq!(listed.len(), 1);
        assert!(listed[0].record.is_none(), "no source.json: damaged");
        assert_eq!(abandoned(store.path()).expect("tmp").len(), 1);
        remove(&entry).expect("remove");
        assert!(!entry.exists());
        assert!(
            Path::new("/").exists(),
            "symlinks are removed, not followed"
        );
        assert_eq!(list(store.path()).expect("list").len(), 0);
    }
}
