//! The content-addressed store: an OCI image layout that skopeo, podman and
//! umoci can read as it is.
//!
//! On disk:
//! ```text
//! STORE/imagelock.lock        shared by syncs, exclusive for maintenance; also
//!                             what marks the directory as an imagelock store
//! STORE/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! STORE/index.json            one descriptor per synced image, named by
//!                             org.opencontainers.image.ref.name = canonical reference
//! STORE/index.json.lock       held while index.json is read, changed and replaced
//! STORE/blobs/<alg>/<hex>     content; always hashes to its name
//! STORE/ingest/               downloads in progress: `<alg>-<hex>.partial`
//!                             (resumable) and `tmp-*` private temporary files,
//!                             both locked by their writer; at open, unlocked
//!                             `tmp-*` files and week-old partials are removed
//! STORE/roots/<hash>.json     lockfiles registered by sync, for gc (see `gc`)
//! STORE/rendered/             the render cache (see `render`)
//! STORE/quarantine/           corrupt blobs and modified rendered trees moved
//!                             aside by `fsck --repair`
//! STORE/cache/http/           HTTP validators of discovered ACIs (see `appc`)
//! ```
//! Invariants: a blob is written to `ingest/`, hashed and size-counted while it
//! streams, and renamed into `blobs/` only when digest and size match, so no
//! file under `blobs/` ever holds bytes that don't hash to its name; "already
//! exists" is success because the name is the hash. `index.json` is only ever
//! replaced atomically, under its lock file, so concurrent processes never
//! corrupt it or lose each other's entries.
//!
//! # Which directory is a store, and what imagelock touches in it
//! The store's root is the path the user named (`--store`, `IMAGELOCK_STORE`,
//! `[store] path`, the per-user default); a symbolic link *there* is followed,
//! as the user chose it. imagelock adopts that directory only when it does not
//! exist, is empty, or holds a regular file `imagelock.lock` (which every store
//! imagelock makes gets first, and which every command that uses the store
//! locks). Any other directory — a project, a home directory, an OCI layout
//! written by skopeo or umoci — is refused ([`StoreError::NotAStore`]) and left
//! untouched: `gc` removes whatever no lock needs, so adopting a directory
//! imagelock did not create would delete someone else's files.
//!
//! Below the root nothing is followed. Every directory in [`DIRECTORIES`] must
//! be a real directory and the files `imagelock.lock`, `oci-layout`,
//! `index.json` and `index.json.lock` regular files; anything else there (a
//! symbolic link above all) makes the store refuse to open
//! ([`StoreError::Unsafe`], naming the path). Blobs are read with
//! `O_NOFOLLOW` and only when they are regular files; directories are listed
//! and emptied through descriptors opened with `O_NOFOLLOW`
//! ([`Store::open_dir`]), so a link swapped in after the store was opened is an
//! error, not a way out. A planted `ingest/<alg>-<hex>.partial` that is not a
//! regular file of its own (a symbolic link, a hard link to another file, a
//! fifo) is removed and replaced, never written through. Cleaning removes only
//! names the store itself makes (`tmp-*` and `<alg>-<hex>.partial` in
//! `ingest/`, digests in `blobs/<alg>/`, `<hash>.json` in `roots/`, cache keys
//! and `.tmp-*` in `rendered/`); anything else found there is left alone.

pub mod fsck;
pub mod gc;
pub mod render_cache;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::digest::{Digest, Hasher};
use crate::fsutil::write_atomic;
use crate::oci::Blob;
use crate::oci::{self, Descriptor, ImageIndex};

/// A resumable partial download untouched this long is abandoned: a week
/// covers a laptop closed over a weekend and a long CI queue.
pub const STALE_PARTIAL_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How old an unlocked temporary file must be before it counts as a killed
/// process's leftover: its writer locks it microseconds after creating it.
pub const TEMP_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The `oci-layout` file's content.
const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// The store's lock file, which also marks a directory as an imagelock store.
pub const MARKER_FILE: &str = "imagelock.lock";
/// The OCI layout marker.
const LAYOUT_FILE: &str = "oci-layout";
/// The image index.
const INDEX_FILE: &str = "index.json";
/// The lock file held while `index.json` changes.
const INDEX_LOCK_FILE: &str = "index.json.lock";
/// Downloads in progress.
pub const INGEST_DIR: &str = "ingest";
/// Registered lockfiles (see [`crate::store::gc`]).
pub const ROOTS_DIR: &str = "roots";
/// The render cache (see [`crate::render`]).
pub const RENDERED_DIR: &str = "rendered";
/// What `fsck --repair` moves aside.
pub const QUARANTINE_DIR: &str = "quarantine";
/// HTTP validators of discovered ACIs (see [`crate::appc`]).
pub const HTTP_CACHE_DIR: &str = "cache/http";

/// Every directory of a store, parents first: each must be a real directory.
pub const DIRECTORIES: &[&str] = &[
    "blobs",
    "blobs/sha256",
    "blobs/sha512",
    INGEST_DIR,
    ROOTS_DIR,
    RENDERED_DIR,
    QUARANTINE_DIR,
    "cache",
    HTTP_CACHE_DIR,
];

/// The store's own files other than blobs: each must be a regular file.
const FILES: &[&str] = &[MARKER_FILE, LAYOUT_FILE, INDEX_FILE, INDEX_LOCK_FILE];

/// A store failure, naming the file or digest.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// More or fewer bytes than the descriptor says.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}{more}", more = if *.actual > *.expected { " or more" } else { "" })]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// From the lock.
        expected: u64,
        /// Counted.
        actual: u64,
    },
    /// The bytes hash to something else.
    #[error("digest mismatch: expected {expected}, the bytes received hash to {actual}")]
    DigestMismatch {
        /// From the lock.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// New content over its size limit.
    #[error("more than {limit} bytes: refused (the size limit for this kind of content)")]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// index.json is not an image index.
    #[error("{} is corrupt: {message}", path.display())]
    CorruptIndex {
        /// The index path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A path the store keeps is a symbolic link, or another kind of file than
    /// the store makes there.
    #[error("{} is {found} where the store keeps {expected}: refused (imagelock never follows a link out of its store)", path.display())]
    Unsafe {
        /// The path.
        path: PathBuf,
        /// What is there ("a symbolic link").
        found: &'static str,
        /// What the store keeps there ("a directory").
        expected: &'static str,
    },
    /// The store path names a directory imagelock did not create.
    #[error("{} is not an imagelock store: {why}", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
}

/// "a symbolic link", "a directory", ... for messages.
pub fn describe(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Symlink => "a symbolic link",
        FileType::Directory => "a directory",
        FileType::RegularFile => "a regular file",
        FileType::Fifo => "a fifo",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device node",
        FileType::Unknown => "a file of unknown type",
    }
}

fn file_type_of(meta: &std::fs::Metadata) -> FileType {
    use std::os::unix::fs::MetadataExt as _;
    FileType::from_raw_mode(meta.mode())
}

/// What a file in `ingest/` is, by its name; `None` for names the store never makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestName {
    /// `tmp-*`: a private temporary file.
    Temp,
    /// `<alg>-<hex>.partial`: a resumable download of this blob.
    Partial(Digest),
}

impl IngestName {
    /// Recognises `name`.
    pub fn parse(name: &str) -> Option<IngestName> {
        if name.starts_with("tmp-") {
            return Some(IngestName::Temp);
        }
        let (alg, hex) = name.strip_suffix(".partial")?.split_once('-')?;
        format!("{alg}:{hex}").parse().ok().map(IngestName::Partial)
    }
}

/// What is at the store's root path.
enum Found {
    /// Nothing: the store is created there.
    Missing,
    /// An empty directory: adopted.
    Empty,
    /// An imagelock store.
    Store,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// An opened store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held store lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Opens the store at `root`, creating the layout if needed. Refuses a
    /// non-empty directory that is not an imagelock store, and a store whose
    /// own directories or files are symbolic links (see the module doc).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_owned(),
        };
        match store.recognise()? {
            Found::Store => {}
            Found::Missing | Found::Empty => {
                std::fs::create_dir_all(root).map_err(io_err("cannot create", root))?;
                // The marker first: a directory holding anything of ours is a store.
                drop(store.lock_file(MARKER_FILE, None)?);
            }
        }
        store.check_layout(true)?;
        let layout = store.root.join(LAYOUT_FILE);
        if std::fs::symlink_metadata(&layout).is_err() {
            write_atomic(&layout, OCI_LAYOUT.as_bytes())
                .map_err(io_err("cannot write", &layout))?;
        }
        store.clean_stale_ingest();
        let index = store.index_path();
        if std::fs::symlink_metadata(&index).is_err() {
            let _guard = store.lock_file(INDEX_LOCK_FILE, Some(true))?;
            if std::fs::symlink_metadata(&index).is_err() {
                write_index(&index, &empty_index())?;
            }
        }
        Ok(store)
    }

    /// Opens an existing store without creating anything: `None` when there is
    /// none (no directory, or an empty one); an error for a directory that is
    /// not an imagelock store or whose own paths are links (see [`Store::open`]).
    pub fn open_existing(root: &Path) -> Result<Option<Store>, StoreError> {
        let store = Store {
            root: root.to_owned(),
        };
        match store.recognise()? {
            Found::Missing | Found::Empty => Ok(None),
            Found::Store => {
                store.check_layout(false)?;
                Ok(Some(store))
            }
        }
    }

    /// What is at the root path (see the module doc for the rule).
    fn recognise(&self) -> Result<Found, StoreError> {
        let root = &self.root;
        match std::fs::metadata(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(e) => return Err(io_err("cannot read", root)(e)),
            Ok(meta) if !meta.is_dir() => {
                return Err(StoreError::NotAStore {
                    path: root.clone(),
                    why: format!("it is {}, not a directory", describe(file_type_of(&meta))),
                });
            }
            Ok(_) => {}
        }
        let marker = root.join(MARKER_FILE);
        match std::fs::symlink_metadata(&marker) {
            Ok(meta) if meta.is_file() => return Ok(Found::Store),
            Ok(meta) => {
                return Err(StoreError::Unsafe {
                    path: marker,
                    found: describe(file_type_of(&meta)),
                    expected: "a regular file",
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot read", &marker)(e)),
        }
        let mut entries = std::fs::read_dir(root).map_err(io_err("cannot read", root))?;
        if entries.next().is_none() {
            return Ok(Found::Empty);
        }
        // Another process may have just adopted it: the marker is the first thing it makes.
        if std::fs::symlink_metadata(&marker).is_ok_and(|meta| meta.is_file()) {
            return Ok(Found::Store);
        }
        let why = if root.join(LAYOUT_FILE).exists() {
            format!(
                "it is an OCI image layout that imagelock did not create (it has no {MARKER_FILE})"
            )
        } else {
            format!(
                "the directory is not empty and has no {MARKER_FILE}, the file every imagelock store has"
            )
        };
        Err(StoreError::NotAStore {
            path: root.clone(),
            why,
        })
    }

    /// Checks that every directory of [`DIRECTORIES`] is a real directory and
    /// every file of the layout a regular file (or missing); with `create`,
    /// missing directories are made.
    fn check_layout(&self, create: bool) -> Result<(), StoreError> {
        for dir in DIRECTORIES {
            let path = self.root.join(dir);
            if create {
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    // Whatever is there is checked below (mkdir never follows a link).
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("cannot create", &path)(e)),
                }
            }
            self.check_kind(&path, FileType::Directory)?;
        }
        for file in FILES {
            self.check_kind(&self.root.join(file), FileType::RegularFile)?;
        }
        Ok(())
    }

    /// `path` is missing or (not following a link) of kind `wanted`.
    fn check_kind(&self, path: &Path, wanted: FileType) -> Result<(), StoreError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if file_type_of(&meta) == wanted => Ok(()),
            Ok(meta) => Err(StoreError::Unsafe {
                path: path.to_owned(),
                found: describe(file_type_of(&meta)),
                expected: match wanted {
                    FileType::Directory => "a directory",
                    _ => "a regular file",
                },
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("cannot read", path)(e)),
        }
    }

    /// The store directory `relative` (one of [`DIRECTORIES`]), made if missing
    /// and checked to be a real directory, for writing into by path.
    pub fn dir(&self, relative: &str) -> Result<PathBuf, StoreError> {
        let mut path = self.root.clone();
        for component in relative.split('/') {
            path.push(component);
            match std::fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("cannot create", &path)(e)),
            }
            self.check_kind(&path, FileType::Directory)?;
        }
        Ok(path)
    }

    /// Opens the store directory `relative` without following a link at any
    /// component below the root, for listing and removing what is in it;
    /// `None` when it does not exist.
    pub fn open_dir(&self, relative: &str) -> Result<Option<StoreDir>, StoreError> {
        let path = self.root.join(relative);
        match crate::fsutil::open_dir_beneath(&self.root, Path::new(relative)) {
            Ok(fd) => Ok(Some(StoreDir { fd, path })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                // Name the component that is not a directory, if one is not.
                let mut prefix = self.root.clone();
                for component in relative.split('/') {
                    prefix.push(component);
                    self.check_kind(&prefix, FileType::Directory)?;
                }
                Err(io_err("cannot open", &path)(e))
            }
        }
    }

    /// Removes leftovers of killed processes from `ingest/`: private temporary
    /// files no live process holds (their writers lock them), and resumable
    /// partial downloads untouched for [`STALE_PARTIAL_AGE`] and not in use.
    /// Only names the store makes are considered; one that is not a regular
    /// file of its own (a planted link, a second name of another file) is
    /// removed, never followed or written. Best effort: a file
    /// that cannot be removed now is tried next time.
    fn clean_stale_ingest(&self) {
        let Ok(Some(dir)) = self.open_dir(INGEST_DIR) else {
            return;
        };
        let Ok(entries) = dir.entries() else {
            return;
        };
        let now = std::time::SystemTime::now();
        for (name, kind) in entries {
            let Some(what) = IngestName::parse(&name) else {
                continue;
            };
            let Ok(st) = rfs::statat(dir.fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            // A link, or a second name of some other file: never the store's own.
            if kind != FileType::RegularFile || st.st_nlink != 1 {
                let _ = dir.remove_file(&name);
                continue;
            }
            let age = u64::try_from(st.st_mtime)
                .ok()
                .and_then(|secs| {
                    now.duration_since(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                        .ok()
                })
                .unwrap_or_default();
            // A temporary file is locked right after it is created; one that
            // young may simply not be locked yet.
            let stale = match what {
                IngestName::Temp => age > TEMP_LOCK_GRACE,
                IngestName::Partial(_) => age > STALE_PARTIAL_AGE,
            };
            if !stale {
                continue;
            }
            // Only if no process is writing it right now.
            let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            if let Ok(fd) = rfs::openat(dir.fd(), name.as_str(), flags, Mode::empty())
                && File::from(fd).try_lock().is_ok()
            {
                let _ = dir.remove_file(&name);
            }
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ingest/`, checked (see [`Store::dir`]).
    fn ingest_dir(&self) -> Result<PathBuf, StoreError> {
        self.dir(INGEST_DIR)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// Opens (creating) the lock file `name` without following a link, and
    /// locks it: shared, exclusive, or (`None`) not at all.
    fn lock_file(&self, name: &str, exclusive: Option<bool>) -> Result<StoreLock, StoreError> {
        let path = self.root.join(name);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rfs::open(&path, flags, Mode::from_raw_mode(0o644)) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) => {
                return Err(StoreError::Unsafe {
                    path,
                    found: "a symbolic link",
                    expected: "a regular file",
                });
            }
            Err(e) => return Err(io_err("cannot open lock file", &path)(e.into())),
        };
        let st = rfs::fstat(&fd).map_err(|e| io_err("cannot stat", &path)(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(StoreError::Unsafe {
                found: describe(FileType::from_raw_mode(st.st_mode)),
                path,
                expected: "a regular file",
            });
        }
        let file = File::from(fd);
        let locked = match exclusive {
            Some(true) => file.lock(),
            Some(false) => file.lock_shared(),
            None => Ok(()),
        };
        locked.map_err(io_err("cannot lock", &path))?;
        Ok(StoreLock { _file: file })
    }

    /// Takes the store lock shared (syncs, which may run side by side).
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        self.lock_file(MARKER_FILE, Some(false))
    }

    /// Takes the store lock exclusively (gc, prune, repair): waits for running syncs.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        self.lock_file(MARKER_FILE, Some(true))
    }

    /// Keeps only the `index.json` entries `keep` accepts; returns how many went.
    pub fn retain_refs(&self, keep: impl Fn(&Descriptor) -> bool) -> Result<usize, StoreError> {
        let _guard = self.lock_file(INDEX_LOCK_FILE, Some(true))?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| keep(d));
        let removed = before - index.manifests.len();
        if removed > 0 {
            write_index(&self.index_path(), &index)?;
        }
        Ok(removed)
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Every entry under `blobs/<alg>/`, listed without following links.
    pub fn blob_files(&self) -> Result<Vec<BlobFile>, StoreError> {
        let mut out = Vec::new();
        for algorithm in [
            crate::digest::Algorithm::Sha256,
            crate::digest::Algorithm::Sha512,
        ] {
            let Some(dir) = self.open_dir(&format!("blobs/{}", algorithm.as_str()))? else {
                continue;
            };
            for (name, kind) in dir.entries()? {
                out.push(BlobFile {
                    digest: format!("{}:{name}", algorithm.as_str()).parse().ok(),
                    path: dir.path().join(&name),
                    kind,
                });
            }
        }
        Ok(out)
    }

    /// Removes the blob `digest` (a file or a link under its name, never what a
    /// link points to; a directory there is left alone). Returns whether
    /// something was removed.
    pub fn remove_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let Some(dir) = self.open_dir(&format!("blobs/{}", digest.algorithm().as_str()))? else {
            return Ok(false);
        };
        match dir.kind(digest.hex())? {
            None | Some(FileType::Directory) => Ok(false),
            Some(_) => dir.remove_file(digest.hex()).map(|()| true),
        }
    }

    /// Opens the blob `digest` for reading: a regular file, never a link.
    pub fn open_blob(&self, digest: &Digest) -> std::io::Result<File> {
        crate::fsutil::open_regular(&self.blob_path(digest))
    }

    /// Whether the blob is present with the right size (the name vouches for
    /// the content); a link under its name is not the blob.
    pub fn contains(&self, blob: &Blob) -> bool {
        std::fs::symlink_metadata(self.blob_path(&blob.digest))
            .is_ok_and(|m| m.is_file() && m.len() == blob.size)
    }

    /// Starts writing `blob`; bytes go to a temporary file until [`BlobWriter::commit`].
    pub fn ingest(&self, blob: &Blob) -> Result<BlobWriter, StoreError> {
        let file = self.temp_file(&format!("tmp-{}-", blob.digest.short()))?;
        Ok(BlobWriter {
            file: IngestFile::Temp(file),
            hasher: Hasher::new(blob.digest.algorithm()),
            written: 0,
            expected: Expected::Known(blob.clone()),
            store: self.clone(),
        })
    }

    /// A private temporary file in `ingest/`, locked while it lives so that
    /// [`Store::open`] can tell a killed process's leftovers from files in use.
    fn temp_file(&self, prefix: &str) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.ingest_dir()?;
        let file = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(&dir)
            .map_err(io_err("cannot create a temporary file in", &dir))?;
        file.as_file()
            .lock()
            .map_err(io_err("cannot lock", file.path()))?;
        Ok(file)
    }

    /// Starts or resumes writing `blob`: bytes an interrupted download left in
    /// `ingest/<alg>-<hex>.partial` are re-hashed and kept, so the download
    /// continues from [`BlobWriter::written`]. When another process is
    /// downloading the same blob right now, a private temporary file is used.
    pub fn ingest_resumable(&self, blob: &Blob) -> Result<BlobWriter, StoreError> {
        use std::io::Read;
        let path = self.ingest_dir()?.join(format!(
            "{}-{}.partial",
            blob.digest.algorithm().as_str(),
            blob.digest.hex()
        ));
        let mut file = open_partial(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return self.ingest(blob),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", &path)(e)),
        }
        let mut hasher = Hasher::new(blob.digest.algorithm());
        let mut written = 0u64;
        let length = file.metadata().map_err(io_err("cannot stat", &path))?.len();
        if length > blob.size {
            file.set_len(0).map_err(io_err("cannot truncate", &path))?;
        } else {
            let mut buffer = vec![0u8; 1024 * 1024];
            loop {
                let n = file
                    .read(&mut buffer)
                    .map_err(io_err("cannot read", &path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                written += n as u64;
            }
        }
        Ok(BlobWriter {
            file: IngestFile::Partial {
                file,
                guard: PartialGuard {
                    path,
                    poisoned: false,
                },
            },
            hasher,
            written,
            expected: Expected::Known(blob.clone()),
            store: self.clone(),
        })
    }

    /// Starts writing content whose digest is not known yet (an ACI found by
    /// discovery): it is hashed with `algorithm` as it streams, capped at
    /// `limit` bytes, and named by its digest on commit.
    pub fn ingest_new(
        &self,
        algorithm: crate::digest::Algorithm,
        media_type: &str,
        limit: u64,
    ) -> Result<BlobWriter, StoreError> {
        let file = self.temp_file("tmp-new-")?;
        Ok(BlobWriter {
            file: IngestFile::Temp(file),
            hasher: Hasher::new(algorithm),
            written: 0,
            expected: Expected::Unknown {
                media_type: media_type.to_owned(),
                limit,
            },
            store: self.clone(),
        })
    }

    /// Stores bytes already in memory (manifests), verifying digest and size.
    pub fn insert_bytes(&self, blob: &Blob, bytes: &[u8]) -> Result<(), StoreError> {
        if self.contains(blob) {
            return Ok(());
        }
        let mut writer = self.ingest(blob)?;
        writer.write(bytes)?;
        writer.commit().map(drop)
    }

    /// Names images in `index.json`: each (ref name, root blob) replaces any entry
    /// with that ref name. Returns whether the file changed.
    pub fn set_refs(&self, refs: &[(String, Blob)]) -> Result<bool, StoreError> {
        let path = self.index_path();
        let current = self.read_index()?;
        if refs
            .iter()
            .all(|(name, blob)| has_ref(&current, name, blob))
        {
            return Ok(false);
        }
        let _guard = self.lock_file(INDEX_LOCK_FILE, Some(true))?;
        let mut index = self.read_index()?;
        let mut named: BTreeMap<String, Descriptor> = BTreeMap::new();
        let mut unnamed = Vec::new();
        for d in index.manifests.drain(..) {
            match d.annotations.get(oci::REF_NAME_ANNOTATION) {
                Some(name) => {
                    named.insert(name.clone(), d);
                }
                None => unnamed.push(d),
            }
        }
        for (name, blob) in refs {
            let descriptor = Descriptor {
                media_type: blob.media_type.clone(),
                digest: blob.digest.clone(),
                size: blob.size,
                platform: None,
                annotations: BTreeMap::from([(oci::REF_NAME_ANNOTATION.to_owned(), name.clone())]),
                urls: Vec::new(),
                artifact_type: None,
            };
            named.insert(name.clone(), descriptor);
        }
        index.manifests = unnamed.into_iter().chain(named.into_values()).collect();
        write_index(&path, &index)?;
        Ok(true)
    }

    /// Reads `index.json`.
    pub fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.index_path();
        let bytes = crate::fsutil::read_regular(&path).map_err(io_err("cannot read", &path))?;
        oci::parse_index(&bytes).map_err(|e| StoreError::CorruptIndex {
            path: path.clone(),
            message: e.to_string(),
        })
    }
}

/// An entry of `blobs/<alg>/`.
#[derive(Debug, Clone)]
pub struct BlobFile {
    /// Its digest when the name is one (`None` for a stray file).
    pub digest: Option<Digest>,
    /// Its path.
    pub path: PathBuf,
    /// What it is (not following a link).
    pub kind: FileType,
}

/// A directory of the store opened without following links ([`Store::open_dir`]):
/// what is listed, inspected and removed is in it, whatever happens to its path.
#[derive(Debug)]
pub struct StoreDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl StoreDir {
    /// Its path, for messages and for files made by path in it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its descriptor, for `*at` calls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Its entries (names that are not UTF-8 are skipped: the store never makes
    /// them) with their kind, not following links, sorted by name.
    pub fn entries(&self) -> Result<Vec<(String, FileType)>, StoreError> {
        let failed = |e: rustix::io::Errno| io_err("cannot read", &self.path)(e.into());
        let mut out = Vec::new();
        for entry in rfs::Dir::read_from(self.fd()).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            if let Some(kind) = self.kind(name)? {
                out.push((name.to_owned(), kind));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The kind of `name` in this directory (a link is a link); `None` if missing.
    pub fn kind(&self, name: &str) -> Result<Option<FileType>, StoreError> {
        match rfs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err("cannot stat", &self.path.join(name))(e.into())),
        }
    }

    /// The size of the file `name` (not following a link); 0 if missing.
    pub fn size(&self, name: &str) -> u64 {
        rfs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW)
            .map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0))
    }

    /// Removes the file or link `name` from this directory (never a link's
    /// target); a missing one is not an error.
    pub fn remove_file(&self, name: &str) -> Result<(), StoreError> {
        match rfs::unlinkat(self.fd(), name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err("cannot remove", &self.path.join(name))(e.into())),
        }
    }
}

/// Opens (or creates) a resumable partial download for appending, never
/// through a link: whatever is at `path` that is not a regular file of its own
/// (a symbolic link, a second name of another file, a fifo, a device node) was
/// not made by the store and is removed first, without being opened; a
/// directory there is refused.
fn open_partial(path: &Path) -> Result<File, StoreError> {
    use std::os::unix::fs::MetadataExt as _;
    let flags = OFlags::RDWR
        | OFlags::APPEND
        | OFlags::CREATE
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK
        | OFlags::CLOEXEC;
    let remove = || match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path)(e)),
    };
    for _attempt in 0..3 {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(StoreError::Unsafe {
                    path: path.to_owned(),
                    found: "a directory",
                    expected: "a partial download (a regular file)",
                });
            }
            Ok(meta) if !meta.is_file() || meta.nlink() != 1 => {
                remove()?;
                continue;
            }
            _ => {}
        }
        match rfs::open(path, flags, Mode::from_raw_mode(0o644)) {
            Ok(fd) => {
                let file = File::from(fd);
                let meta = file.metadata().map_err(io_err("cannot stat", path))?;
                if meta.is_file() && meta.nlink() == 1 {
                    rfs::fcntl_setfl(&file, OFlags::APPEND)
                        .map_err(|e| io_err("cannot open", path)(e.into()))?;
                    return Ok(file);
                }
                // Swapped in between: removed, never written.
                remove()?;
            }
            // A symbolic link swapped in between: removed, never followed.
            Err(rustix::io::Errno::LOOP) => remove()?,
            Err(e) => return Err(io_err("cannot open", path)(e.into())),
        }
    }
    Err(StoreError::Unsafe {
        path: path.to_owned(),
        found: "something that keeps being replaced",
        expected: "a partial download of its own",
    })
}

fn has_ref(index: &ImageIndex, name: &str, blob: &Blob) -> bool {
    index.manifests.iter().any(|d| {
        d.digest == blob.digest
            && d.annotations
                .get(oci::REF_NAME_ANNOTATION)
                .is_some_and(|n| n == name)
    })
}

fn empty_index() -> ImageIndex {
    ImageIndex {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.to_owned()),
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
    }
}

fn write_index(path: &Path, index: &ImageIndex) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(index).expect("an index serialises");
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(io_err("cannot write", path))
}

/// A blob being written: hashed and counted as it streams.
pub struct BlobWriter {
    file: IngestFile,
    hasher: Hasher,
    written: u64,
    expected: Expected,
    store: Store,
}

/// Where a [`BlobWriter`]'s bytes wait.
enum IngestFile {
    /// A private temporary file, deleted unless committed.
    Temp(tempfile::NamedTempFile),
    /// `ingest/<alg>-<hex>.partial`, locked while this writer lives; kept when
    /// a download is interrupted so the next attempt resumes, deleted when its
    /// content proved wrong.
    Partial { file: File, guard: PartialGuard },
    /// Moved into `blobs/`.
    Committed,
}

impl IngestFile {
    fn path(&self) -> &Path {
        match self {
            IngestFile::Temp(t) => t.path(),
            IngestFile::Partial { guard, .. } => &guard.path,
            IngestFile::Committed => Path::new(""),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            IngestFile::Temp(t) => t.write_all(bytes),
            IngestFile::Partial { file, .. } => file.write_all(bytes),
            IngestFile::Committed => Err(std::io::Error::other("the blob is committed already")),
        }
    }

    fn poison(&mut self) {
        if let IngestFile::Partial { guard, .. } = self {
            guard.poisoned = true;
        }
    }
}

/// Deletes a partial file whose content proved wrong, when its writer goes away.
struct PartialGuard {
    path: PathBuf,
    /// Set when the content cannot be right.
    poisoned: bool,
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        // An empty partial holds nothing worth resuming.
        let empty = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.len() == 0);
        if self.poisoned || empty {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a [`BlobWriter`] checks on commit.
enum Expected {
    /// A pinned blob: digest and size must match.
    Known(Blob),
    /// New content: at most `limit` bytes, named by what it hashes to.
    Unknown { media_type: String, limit: u64 },
}

impl BlobWriter {
    /// Appends bytes, refusing more than the descriptor's size (or the limit).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let written = self.written + bytes.len() as u64;
        match &self.expected {
            Expected::Known(blob) if written > blob.size => {
                self.file.poison();
                return Err(StoreError::SizeMismatch {
                    digest: blob.digest.clone(),
                    expected: blob.size,
                    actual: written,
                });
            }
            Expected::Unknown { limit, .. } if written > *limit => {
                return Err(StoreError::TooLarge { limit: *limit });
            }
            _ => {}
        }
        self.hasher.update(bytes);
        if let Err(e) = self.file.write_all(bytes) {
            return Err(io_err("cannot write", self.file.path())(e));
        }
        self.written = written;
        Ok(())
    }

    /// The size the content must have, when it is a pinned blob.
    pub fn expected_size(&self) -> Option<u64> {
        match &self.expected {
            Expected::Known(blob) => Some(blob.size),
            Expected::Unknown { .. } => None,
        }
    }

    /// The digest of the bytes written so far (for content not yet committed).
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The temporary file, for checks that must read the content back before
    /// it is committed (signatures, archive validation).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Forgets everything written (a server answered a resumed request with
    /// the whole body): the file is emptied and hashing starts over.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        let algorithm = match &self.expected {
            Expected::Known(blob) => blob.digest.algorithm(),
            Expected::Unknown { .. } => self.hasher.clone().finish().algorithm(),
        };
        let truncated = match &mut self.file {
            IngestFile::Temp(t) => t.as_file().set_len(0).and_then(|()| {
                use std::io::Seek;
                t.as_file_mut().seek(std::io::SeekFrom::Start(0)).map(drop)
            }),
            IngestFile::Partial { file, .. } => file.set_len(0),
            IngestFile::Committed => Ok(()),
        };
        truncated.map_err(io_err("cannot truncate", self.file.path()))?;
        self.hasher = Hasher::new(algorithm);
        self.written = 0;
        Ok(())
    }

    /// Checks size and digest (for a pinned blob), then gives the blob its
    /// name and returns its descriptor. On any mismatch the temporary file is
    /// deleted and nothing lands in `blobs/`.
    pub fn commit(mut self) -> Result<Blob, StoreError> {
        let actual = self.hasher.clone().finish();
        let blob = match &self.expected {
            Expected::Known(blob) => {
                let blob = blob.clone();
                if self.written != blob.size {
                    // Too few bytes is an interrupted download: a partial file
                    // keeps them to resume. Too many can never become right.
                    if self.written > blob.size {
                        self.file.poison();
                    }
                    return Err(StoreError::SizeMismatch {
                        digest: blob.digest,
                        expected: blob.size,
                        actual: self.written,
                    });
                }
                if actual != blob.digest {
                    self.file.poison();
                    return Err(StoreError::DigestMismatch {
                        expected: blob.digest,
                        actual,
                    });
                }
                blob
            }
            Expected::Unknown { media_type, .. } => Blob {
                digest: actual,
                size: self.written,
                media_type: media_type.clone(),
            },
        };
        let dest = self.store.blob_path(&blob.digest);
        match std::mem::replace(&mut self.file, IngestFile::Committed) {
            IngestFile::Temp(mut temp) => {
                temp.flush().map_err(io_err("cannot write", temp.path()))?;
                temp.persist(&dest)
                    .map_err(|e| e.error)
                    .map_err(io_err("cannot move a verified blob to", &dest))?;
            }
            IngestFile::Partial { mut file, guard } => {
                file.flush().map_err(io_err("cannot write", &guard.path))?;
                // The lock on the partial file is released when `file` drops,
                // after the rename: nobody resumes a file that became a blob.
                std::fs::rename(&guard.path, &dest)
                    .map_err(io_err("cannot move a verified blob to", &dest))?;
                drop(file);
            }
            IngestFile::Committed => unreachable!("a writer is committed once, by value"),
        }
        Ok(blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_of(bytes: &[u8]) -> Blob {
        Blob {
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
            media_type: oci::OCI_MANIFEST.into(),
        }
    }

    #[test]
    fn only_verified_bytes_get_a_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let good = blob_of(b"hello");
        store.insert_bytes(&good, b"hello").expect("stores");
        assert!(store.contains(&good));
        let wrong = blob_of(b"world");
        assert!(matches!(
            store.insert_bytes(&wrong, b"WORLD"),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.insert_bytes(&wrong, b"worl"),
            Err(StoreError::SizeMismatch { .. })
        ));
        assert!(matches!(
            store.insert_bytes(&wrong, b"world!"),
            Err(StoreError::SizeMismatch { .. })
        ));
        assert!(!store.blob_path(&wrong.digest).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .expect("ingest")
                .count(),
            0
        );
    }

    #[test]
    fn only_new_empty_or_marked_directories_are_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = dir.path().join("new/store");
        Store::open(&fresh).expect("a new directory becomes a store");
        assert!(fresh.join(MARKER_FILE).is_file());
        assert!(Store::open_existing(&fresh).expect("open").is_some());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        assert!(Store::open_existing(&empty).expect("no store").is_none());
        assert_eq!(
            std::fs::read_dir(&empty).expect("ls").count(),
            0,
            "untouched"
        );
        Store::open(&empty).expect("an empty directory becomes a store");

        let mine = dir.path().join("mine");
        std::fs::create_dir(&mine).expect("mkdir");
        std::fs::write(mine.join("oci-layout"), OCI_LAYOUT).expect("write");
        for result in [
            Store::open(&mine).map(drop),
            Store::open_existing(&mine).map(drop),
        ] {
            assert!(matches!(result, Err(StoreError::NotAStore { .. })));
        }
        assert_eq!(
            std::fs::read_dir(&mine).expect("ls").count(),
            1,
            "untouched"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        assert!(matches!(
            Store::open(&file),
            Err(StoreError::NotAStore { .. })
        ));
    }

    #[test]
    fn links_in_the_layout_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        Store::open(&root).expect("open");
        for name in DIRECTORIES.iter().chain(FILES) {
            let path = root.join(name);
            let aside = dir.path().join("aside");
            std::fs::rename(&path, &aside).expect("move aside");
            std::os::unix::fs::symlink(outside.path(), &path).expect("symlink");
            for result in [
                Store::open(&root).map(drop),
                Store::open_existing(&root).map(drop),
            ] {
                assert!(
                    matches!(&result, Err(StoreError::Unsafe { path: p, .. }) if *p == path),
                    "{name}: {result:?}"
                );
            }
            std::fs::remove_file(&path).expect("rm link");
            std::fs::rename(&aside, &path).expect("move back");
        }
        assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 0);
        // A link swapped in after opening: listings and removals refuse it too.
        let store = Store::open(&root).expect("open");
        std::fs::remove_dir(root.join(ROOTS_DIR)).expect("rm");
        std::os::unix::fs::symlink(outside.path(), root.join(ROOTS_DIR)).expect("symlink");
        assert!(matches!(
            store.open_dir(ROOTS_DIR),
            Err(StoreError::Unsafe { .. })
        ));
        assert!(matches!(
            store.dir(ROOTS_DIR),
            Err(StoreError::Unsafe { .. })
        ));
    }

    #[test]
    fn planted_partials_are_replaced_not_written_through() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("open");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        let blob = blob_of(b"registry bytes");
        let partial = dir
            .path()
            .join("store/ingest")
            .join(format!("sha256-{}.partial", blob.digest.hex()));
        let plant: [&dyn Fn(&Path); 4] = [
            &|p| std::os::unix::fs::symlink(outside.join("victim"), p).expect("ln"),
            &|p| std::fs::hard_link(outside.join("victim"), p).expect("ln"),
            &|p| std::os::unix::fs::symlink(outside.join("never-made"), p).expect("ln"),
            &|p| {
                rfs::mknodat(rfs::CWD, p, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .expect("mkfifo")
            },
        ];
        for plant in plant {
            std::fs::write(outside.join("victim"), "precious").expect("write");
            plant(&partial);
            let mut writer = store.ingest_resumable(&blob).expect("ingest");
            assert_eq!(writer.written(), 0, "nothing planted is resumed");
            writer.write(b"registry bytes").expect("write");
            writer.commit().expect("commit");
            let mut stored = String::new();
            store
                .open_blob(&blob.digest)
                .expect("blob")
                .read_to_string(&mut stored)
                .expect("read");
            assert_eq!(stored, "registry bytes");
            assert_eq!(
                std::fs::read_to_string(outside.join("victim")).expect("victim"),
                "precious"
            );
            assert!(!outside.join("never-made").exists());
            std::fs::remove_file(store.blob_path(&blob.digest)).expect("rm");
        }
        // A directory under the name is not the store's to remove: refused, named.
        std::fs::create_dir(&partial).expect("mkdir");
        assert!(matches!(
            store.ingest_resumable(&blob),
            Err(StoreError::Unsafe { path, .. }) if path == partial
        ));
    }

    #[test]
    fn refs_replace_by_name_and_keep_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = blob_of(b"a");
        let b = blob_of(b"b");
        assert!(
            store
                .set_refs(&[("r/x:1".into(), a.clone()), ("r/y:1".into(), a.clone())])
                .expect("set")
        );
        assert!(!store.set_refs(&[("r/x:1".into(), a.clone())]).expect("set"));
        assert!(store.set_refs(&[("r/x:1".into(), b.clone())]).expect("set"));
        let index = store.read_index().expect("read");
        let names: Vec<(&str, &Digest)> = index
            .manifests
            .iter()
            .map(|d| (d.annotations[oci::REF_NAME_ANNOTATION].as_str(), &d.digest))
            .collect();
        assert_eq!(names, vec![("r/x:1", &b.digest), ("r/y:1", &a.digest)]);
    }
}
