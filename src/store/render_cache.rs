//! The render cache: rendered trees in the store, named by what they were built from, and
//! checked against a listing of their content before every reuse.
//!
//! On disk (see [`super`] for the whole format):
//! ```text
//! STORE/rendered/<hex>/rootfs/        the tree
//! STORE/rendered/<hex>/listing        one line per entry of the tree ([`Listing`])
//! STORE/rendered/<hex>/source.json    a [`Record`]: format, sources, the listing's digest
//! STORE/rendered/.tmp-*/              builds in progress (or abandoned by a crash)
//! ```
//! `<hex>` is the SHA-256 of [`key_text`]. Invariants: a `<hex>` directory is complete:
//! trees are built under `.tmp-*` and renamed into place with their record and listing.
//! A tree is used only while its listing — every entry's path, type, mode, owner, and for
//! regular files size, mtime, BLAKE3 of the content and of the extended attributes —
//! still digests to the record's `tree`. Regular files are what a render shares with the
//! user's directories (hard links), so they are what a change through a render can reach:
//! rewriting one in place, even with the same size and the old mtime, changes its content
//! digest, and the tree is moved aside and rebuilt, never used. `fsck` runs the same check
//! over every entry ([`check`]).
//!
//! Everything here is reached by descriptor from `STORE/rendered/`, opened without following
//! links ([`crate::store::Store::open_dir`]): a link planted as a cache entry, its record or
//! its tree is never followed (the entry counts as damaged). Only names the cache makes are
//! listed: 64 hex digits (entries) and `.tmp-*` (builds).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, mpsc};

use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::fsutil::tree;
use crate::store::StoreDir;

/// The cache's directory name in the store.
pub const RENDERED_DIR: &str = crate::store::RENDERED_DIR;
/// The tree's directory name in a cache entry.
pub const TREE_DIR: &str = "rootfs";
/// The record's file name in a cache entry.
pub const RECORD_FILE: &str = "source.json";
/// The listing's file name in a cache entry.
pub const LISTING_FILE: &str = "listing";
/// Prefix of build and removal directories (not cache entries).
pub const TEMP_PREFIX: &str = ".tmp-";
/// Bump when a change to the renderer would render the same sources differently, or the
/// record or listing changes meaning: old trees then simply stop being found (and `gc`
/// removes them). 2: the listing covers file contents and lives beside the record.
pub const FORMAT: u32 = 2;

/// Records and listings larger than this are not the cache's (a listing line is ~150
/// bytes; 1 Mi entries per layer is the render limit).
const MAX_RECORD_BYTES: u64 = 1 << 20;
const MAX_LISTING_BYTES: u64 = 1 << 30;

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
    /// SHA-256 of the tree's listing ([`listing`]) when it was built.
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

/// Whether `name` is a cache key: 64 lower-case hex digits.
pub fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A cache entry found in a store, for `gc`, `fsck` and inspection.
#[derive(Debug, Clone)]
pub struct Cached {
    /// Its name in `STORE/rendered/` (the key).
    pub name: String,
    /// Its record; `None` if missing, unreadable or not reachable without following a link
    /// (a damaged entry: safe to remove).
    pub record: Option<Record>,
}

/// Every cache entry in `rendered` (names that are keys; builds and other names excluded).
pub fn list(rendered: &StoreDir) -> anyhow::Result<Vec<Cached>> {
    let mut out = Vec::new();
    for (name, _) in rendered.entries()? {
        if is_key(&name) {
            let record = open_entry(rendered, &name)
                .ok()
                .and_then(|entry| read_record(entry.as_fd()));
            out.push(Cached { name, record });
        }
    }
    Ok(out)
}

/// The `.tmp-*` names in `rendered`: builds in progress, or abandoned by a crash (all of
/// them, while the store's exclusive lock is held).
pub fn abandoned(rendered: &StoreDir) -> anyhow::Result<Vec<String>> {
    Ok(rendered
        .entries()?
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(TEMP_PREFIX))
        .collect())
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the entry `name` of `rendered` (a directory, not a link).
pub fn open_entry(rendered: &StoreDir, name: &str) -> io::Result<OwnedFd> {
    Ok(rfs::openat(rendered.fd(), name, DIR_FLAGS, Mode::empty())?)
}

/// Opens the tree of an opened entry (a directory, not a link).
pub fn open_tree(entry: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rfs::openat(entry, TREE_DIR, DIR_FLAGS, Mode::empty())?)
}

/// Reads the regular file `name` of `dir` (never through a link), up to `limit` bytes.
fn read_small(dir: BorrowedFd<'_>, name: &str, limit: u64) -> io::Result<Vec<u8>> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::other(format!("{name} is not a regular file")));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other(format!("{name} is over {limit} bytes")));
    }
    Ok(bytes)
}

/// The record of an opened entry, if present and readable.
pub fn read_record(entry: BorrowedFd<'_>) -> Option<Record> {
    let bytes = read_small(entry, RECORD_FILE, MAX_RECORD_BYTES).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The listing stored beside the tree of an opened entry, if readable.
pub fn read_listing(entry: BorrowedFd<'_>) -> Option<Vec<u8>> {
    read_small(entry, LISTING_FILE, MAX_LISTING_BYTES).ok()
}

/// Removes the entry (or build directory) `name` of `rendered` safely: it is first renamed
/// to a `.tmp-` name, so no reader ever sees half of it under its key, then deleted without
/// following symlinks. A missing entry is not an error.
pub fn remove(rendered: &StoreDir, name: &str) -> io::Result<()> {
    let aside = if name.starts_with(TEMP_PREFIX) {
        name.to_owned()
    } else {
        let aside = format!("{TEMP_PREFIX}removing-{}-{name}", std::process::id());
        match rfs::renameat(rendered.fd(), name, rendered.fd(), aside.as_str()) {
            Ok(()) => aside,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            // A rename refused: delete it where it is.
            Err(_) => name.to_owned(),
        }
    };
    tree::remove_all(rendered.fd(), aside.as_bytes())
}

/// A tree's listing: what [`Record::tree`] digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// One line per entry below the root (and one for the root), in sorted walk order:
    /// `<path> <type> <mode> <uid> <gid>` and, for regular files, `<size> <mtime>
    /// b3:<BLAKE3 of the content> <b3:BLAKE3 of the xattrs, or ->`; for symlinks the
    /// target; for device nodes the device number. Paths are escaped (`escape`), so lines
    /// split on `\n` and fields on ` `. (BLAKE3 rather than SHA-256, the store's digest, for
    /// speed: every warm render reads the whole tree again.)
    pub text: Vec<u8>,
    /// SHA-256 of `text`.
    pub digest: Digest,
    /// Entries below the root.
    pub entries: u64,
    /// Bytes of regular files.
    pub bytes: u64,
}

/// Bytes of a path as printable ASCII: `%`, space, control and non-ASCII bytes as `%XX`.
fn escape(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Regular files of one directory to hash, by the directory's descriptor: handed to the
/// hashing threads in batches, so that a tree of small files costs few wake-ups.
struct Batch {
    dir: Arc<OwnedFd>,
    files: Vec<Queued>,
}

/// One file of a [`Batch`]: its slot in the listing, name, and what the walk saw.
struct Queued {
    slot: usize,
    name: Vec<u8>,
    ino: u64,
    size: u64,
}

/// Read size when hashing cached files: small enough that the hash reads what was just
/// copied from the cache of the CPU (64 KiB measured ~12% faster than 256 KiB).
const HASH_BUFFER: usize = 64 * 1024;
/// Files per batch (a directory's files go in one batch up to this many)...
const BATCH_FILES: usize = 64;
/// ...or up to about this many bytes, so that large files spread over the threads.
const BATCH_BYTES: u64 = 1 << 20;
/// Batches queued ahead of the hashing threads (each holds its directory open).
const QUEUED_BATCHES: usize = 16;

/// `b3:<BLAKE3 of the content> <b3:BLAKE3 of the xattrs, or ->` of the regular file
/// `file` of `dir`. A file that is no longer what the walk saw (another inode, another
/// size: replaced or written while we looked) gets a hash nothing matches.
fn hash_one(dir: BorrowedFd<'_>, file: &Queued, buffer: &mut [u8]) -> io::Result<String> {
    const CHANGED: &str = "changed-while-read -";
    let fd = rfs::openat(
        dir,
        file.name.as_slice(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_ino != file.ino
        || st.st_size as u64 != file.size
    {
        return Ok(CHANGED.to_owned());
    }
    let xattrs = tree::read_xattrs_fd(fd.as_fd())?;
    let mut reader = std::fs::File::from(fd);
    let mut hasher = blake3::Hasher::new();
    // Exactly the size seen (no read just to meet the end of the file).
    let mut left = file.size;
    while left > 0 {
        let want = usize::try_from(left).map_or(buffer.len(), |l| l.min(buffer.len()));
        let n = reader.read(&mut buffer[..want])?;
        if n == 0 {
            return Ok(CHANGED.to_owned());
        }
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    let xattrs = if xattrs.is_empty() {
        "-".to_owned()
    } else {
        let mut sorted = xattrs;
        sorted.sort();
        let mut h = blake3::Hasher::new();
        for (name, value) in &sorted {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name);
            h.update(&(value.len() as u64).to_le_bytes());
            h.update(value);
        }
        format!("b3:{}", h.finalize().to_hex())
    };
    Ok(format!("b3:{} {xattrs}", hasher.finalize().to_hex()))
}

/// The listing of the tree `root` (an opened directory): a walk by descriptor that never
/// follows a link, with every regular file's content hashed on all cores (one read of
/// each distinct inode).
pub fn listing(root: BorrowedFd<'_>) -> io::Result<Listing> {
    let threads = crate::concurrency::cpu_threads();
    let (batches, queue) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
    let queue = Mutex::new(queue);
    let (done, results) = mpsc::channel::<Vec<(usize, io::Result<String>)>>();
    let mut walk = Walk::default();
    let walked = std::thread::scope(|scope| {
        for _ in 0..threads {
            let (queue, done) = (&queue, done.clone());
            scope.spawn(move || {
                let mut buffer = vec![0u8; HASH_BUFFER];
                loop {
                    let batch = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(batch) = batch else { return };
                    let hashed = batch
                        .files
                        .iter()
                        .map(|f| (f.slot, hash_one(batch.dir.as_fd(), f, &mut buffer)))
                        .collect();
                    if done.send(hashed).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done);
        let st = rfs::fstat(root)?;
        walk.lines.push(Line {
            text: format!("/ d {:o} {} {}", st.st_mode, st.st_uid, st.st_gid),
            slot: None,
        });
        let root = Arc::new(rfs::openat(root, c".", DIR_FLAGS, Mode::empty())?);
        let result = walk.dir(&root, &mut Vec::new(), &batches, 0);
        drop(batches);
        result
    });
    walked?;
    let mut hashes: Vec<Option<String>> = vec![None; walk.slots];
    for batch in results {
        for (slot, hashed) in batch {
            hashes[slot] = Some(hashed?);
        }
    }
    let mut text = Vec::new();
    for line in &walk.lines {
        text.extend_from_slice(line.text.as_bytes());
        if let Some(slot) = line.slot {
            let hash = hashes[slot]
                .as_deref()
                .ok_or_else(|| io::Error::other("a file of the tree was not hashed"))?;
            text.push(b' ');
            text.extend_from_slice(hash.as_bytes());
        }
        text.push(b'\n');
    }
    let mut hasher = Hasher::new(Algorithm::Sha256);
    hasher.update(&text);
    Ok(Listing {
        digest: hasher.finish(),
        text,
        entries: walk.entries,
        bytes: walk.bytes,
    })
}

/// One listing line; `slot`: the hash of a regular file still to be appended.
struct Line {
    text: String,
    slot: Option<usize>,
}

#[derive(Default)]
struct Walk {
    lines: Vec<Line>,
    /// (dev, ino) of regular files already queued → their slot (hard links hash once).
    seen: std::collections::HashMap<(u64, u64), usize>,
    slots: usize,
    entries: u64,
    bytes: u64,
}

fn send(batches: &mpsc::SyncSender<Batch>, batch: Batch) -> io::Result<()> {
    batches
        .send(batch)
        .map_err(|_| io::Error::other("the hashing threads stopped"))
}

impl Walk {
    fn dir(
        &mut self,
        dir: &Arc<OwnedFd>,
        path: &mut Vec<u8>,
        batches: &mpsc::SyncSender<Batch>,
        depth: usize,
    ) -> io::Result<()> {
        if depth > tree::MAX_DEPTH {
            return Err(io::Error::other("directories nested too deep"));
        }
        let (mut files, mut batch_bytes) = (Vec::new(), 0u64);
        for name in tree::read_dir_names(dir.as_fd())? {
            let Some(st) = tree::lstat(dir.as_fd(), &name)? else {
                continue;
            };
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            self.entries += 1;
            let shown = escape(path);
            let file_type = tree::file_type(&st);
            let (text, slot) = match file_type {
                FileType::RegularFile => {
                    let size = st.st_size as u64;
                    self.bytes += size;
                    let inode = (st.st_dev, st.st_ino);
                    let slot = match self.seen.get(&inode) {
                        Some(slot) => *slot,
                        None => {
                            let slot = self.slots;
                            self.slots += 1;
                            self.seen.insert(inode, slot);
                            files.push(Queued {
                                slot,
                                name: name.clone(),
                                ino: st.st_ino,
                                size,
                            });
                            batch_bytes += size;
                            if files.len() == BATCH_FILES || batch_bytes >= BATCH_BYTES {
                                batch_bytes = 0;
                                let full = std::mem::take(&mut files);
                                send(
                                    batches,
                                    Batch {
                                        dir: dir.clone(),
                                        files: full,
                                    },
                                )?;
                            }
                            slot
                        }
                    };
                    let text = format!(
                        "{shown} f {:o} {} {} {size} {}.{}",
                        st.st_mode, st.st_uid, st.st_gid, st.st_mtime, st.st_mtime_nsec
                    );
                    (text, Some(slot))
                }
                FileType::Directory => (
                    format!("{shown} d {:o} {} {}", st.st_mode, st.st_uid, st.st_gid),
                    None,
                ),
                FileType::Symlink => {
                    let target = rfs::readlinkat(dir.as_fd(), name.as_slice(), Vec::new())?;
                    let text = format!(
                        "{shown} l {} {} {}",
                        st.st_uid,
                        st.st_gid,
                        escape(target.as_bytes())
                    );
                    (text, None)
                }
                _ => (
                    format!(
                        "{shown} n {:o} {} {} {}",
                        st.st_mode, st.st_uid, st.st_gid, st.st_rdev
                    ),
                    None,
                ),
            };
            self.lines.push(Line { text, slot });
            if file_type == FileType::Directory {
                let sub = Arc::new(tree::open_dir(dir.as_fd(), &name)?);
                self.dir(&sub, path, batches, depth + 1)?;
            }
            path.truncate(len);
        }
        if !files.is_empty() {
            send(
                batches,
                Batch {
                    dir: dir.clone(),
                    files,
                },
            )?;
        }
        Ok(())
    }
}

/// The paths whose lines differ between a stored listing and a fresh one (at most `limit`,
/// sorted; changed, added and removed alike), for messages.
pub fn changed_paths(stored: &[u8], fresh: &[u8], limit: usize) -> Vec<String> {
    let lines = |text: &[u8]| -> std::collections::BTreeMap<String, String> {
        String::from_utf8_lossy(text)
            .lines()
            .filter_map(|line| {
                let (path, rest) = line.split_once(' ')?;
                Some((path.to_owned(), rest.to_owned()))
            })
            .collect()
    };
    let (old, new) = (lines(stored), lines(fresh));
    let mut changed: Vec<String> = old
        .iter()
        .filter(|(path, rest)| new.get(*path) != Some(*rest))
        .map(|(path, _)| path.clone())
        .chain(new.keys().filter(|p| !old.contains_key(*p)).cloned())
        .collect();
    changed.sort();
    changed.dedup();
    changed.truncate(limit);
    changed
}

/// What [`check`] found about one cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Condition {
    /// The tree is what was built.
    Intact,
    /// An entry of an older format (never used; `gc` removes it).
    Outdated,
    /// No readable record, tree or listing (never used; rebuilt on the next render).
    Damaged {
        /// What is wrong.
        problem: String,
    },
    /// The tree changed since it was built (never used; rebuilt on the next render).
    Modified {
        /// The paths that changed (the first few), relative to the tree.
        paths: Vec<String>,
    },
}

/// How many changed paths messages name.
pub const PATHS_SHOWN: usize = 5;

/// Checks the entry `name` of `rendered` (see [`check_entry`]).
pub fn check(rendered: &StoreDir, name: &str) -> (Condition, Option<Record>) {
    match open_entry(rendered, name) {
        Ok(entry) => check_entry(entry.as_fd()),
        Err(e) => (
            Condition::Damaged {
                problem: format!("it cannot be opened as a directory: {e}"),
            },
            None,
        ),
    }
}

/// Checks an opened cache entry: its record, and its tree against the record's listing
/// digest (reading every file), naming changed paths when the stored listing says what they
/// were. Returns the condition and the record.
pub fn check_entry(entry: BorrowedFd<'_>) -> (Condition, Option<Record>) {
    let Some(record) = read_record(entry) else {
        let problem = format!("it has no readable {RECORD_FILE}");
        return (Condition::Damaged { problem }, None);
    };
    if record.format != FORMAT {
        return (Condition::Outdated, Some(record));
    }
    let fresh = match open_tree(entry).and_then(|tree| listing(tree.as_fd())) {
        Ok(fresh) => fresh,
        Err(e) => {
            let problem = format!("its tree cannot be read: {e}");
            return (Condition::Damaged { problem }, Some(record));
        }
    };
    if fresh.digest == record.tree {
        return (Condition::Intact, Some(record));
    }
    let paths = read_listing(entry)
        .map(|stored| changed_paths(&stored, &fresh.text, PATHS_SHOWN))
        .unwrap_or_default();
    (Condition::Modified { paths }, Some(record))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

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
        let dir = tempfile::tempdir().expect("tmp");
        let store = crate::store::Store::open(dir.path()).expect("store");
        let rendered = store.open_dir(RENDERED_DIR).expect("open").expect("made");
        let entry = rendered.path().join("ab".repeat(32));
        std::fs::create_dir_all(entry.join(TREE_DIR).join("sub")).expect("mkdir");
        std::os::unix::fs::symlink("/", entry.join(TREE_DIR).join("sub/root")).expect("ln");
        std::fs::create_dir_all(rendered.path().join(".tmp-build-x")).expect("mkdir");
        std::fs::create_dir_all(rendered.path().join("not-ours")).expect("mkdir");
        let outside = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path(), rendered.path().join("cd".repeat(32)))
            .expect("ln");
        let listed = list(&rendered).expect("list");
        assert_eq!(listed.len(), 2, "keys only: {listed:?}");
        assert!(listed.iter().all(|c| c.record.is_none()), "damaged");
        assert_eq!(abandoned(&rendered).expect("tmp").len(), 1);
        for cached in &listed {
            remove(&rendered, &cached.name).expect("remove");
        }
        assert!(!entry.exists());
        assert!(
            outside.path().is_dir(),
            "a planted link is removed, not followed"
        );
        assert!(
            Path::new("/").exists(),
            "symlinks are removed, not followed"
        );
        assert_eq!(list(&rendered).expect("list").len(), 0);
        assert!(rendered.path().join("not-ours").is_dir());
    }

    #[test]
    fn listings_cover_content_and_name_what_changed() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/passwd"), "root:x:0:0\n").expect("write");
        std::fs::hard_link(root.join("etc/passwd"), root.join("etc/alias")).expect("link");
        std::os::unix::fs::symlink("etc/passwd", root.join("link")).expect("ln");
        let open = || tree::Tree::open(&root).expect("open");
        let before = listing(open().root()).expect("listing");
        assert_eq!(before.entries, 4);
        assert_eq!(before.bytes, 22);
        assert_eq!(listing(open().root()).expect("listing"), before);
        // Same size, old mtime: only the content differs.
        let mtime = std::fs::metadata(root.join("etc/passwd"))
            .expect("stat")
            .mtime();
        std::fs::write(root.join("etc/passwd"), "evil:x:0:0\n").expect("write");
        let file = std::fs::File::options()
            .write(true)
            .open(root.join("etc/passwd"))
            .expect("open");
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64))
            .expect("mtime");
        drop(file);
        let after = listing(open().root()).expect("listing");
        assert_ne!(after.digest, before.digest);
        assert_eq!(after.bytes, before.bytes);
        assert_eq!(
            changed_paths(&before.text, &after.text, 5),
            vec!["etc/alias".to_owned(), "etc/passwd".to_owned()]
        );
    }
}
