//! The content-addressed store: an OCI image layout that skopeo, podman and
//! umoci can read as it is.
//!
//! On disk:
//! ```text
//! STORE/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! STORE/index.json            one descriptor per synced image, named by
//!                             org.opencontainers.image.ref.name = canonical reference
//! STORE/blobs/<alg>/<hex>     content; always hashes to its name
//! STORE/ingest/               downloads in progress: `<alg>-<hex>.partial`
//!                             (resumable) and `tmp-*` private temporary files,
//!                             both locked by their writer; at open, unlocked
//!                             `tmp-*` files and week-old partials are removed
//! STORE/roots/<hash>.json     lockfiles registered by sync, for gc (see `gc`)
//! STORE/quarantine/           corrupt blobs moved aside by `fsck --repair`
//! STORE/imagelock.lock        shared by syncs, exclusive for maintenance
//! STORE/index.json.lock       held while index.json is read, changed and replaced
//! ```
//! Invariants: a blob is written to `ingest/`, hashed and size-counted while it
//! streams, and renamed into `blobs/` only when digest and size match, so no
//! file under `blobs/` ever holds bytes that don't hash to its name; "already
//! exists" is success because the name is the hash. `index.json` is only ever
//! replaced atomically, under its lock file, so concurrent processes never
//! corrupt it or lose each other's entries.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::fsutil::write_atomic;
use crate::lockfile::Blob;
use crate::oci::{self, Descriptor, ImageIndex};

/// A resumable partial download untouched this long is abandoned: a week
/// covers a laptop closed over a weekend and a long CI queue.
pub const STALE_PARTIAL_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How old an unlocked temporary file must be before it counts as a killed
/// process's leftover: its writer locks it microseconds after creating it.
pub const TEMP_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The `oci-layout` file's content.
const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

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
    /// Opens the store at `root`, creating the layout if needed.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_owned(),
        };
        for dir in [
            store.root.join("blobs/sha256"),
            store.root.join("blobs/sha512"),
            store.ingest_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        }
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, OCI_LAYOUT.as_bytes())
                .map_err(io_err("cannot write", &layout))?;
        }
        store.clean_stale_ingest();
        let index = store.index_path();
        if !index.exists() {
            let _guard = store.lock_file("index.json.lock", true)?;
            if !index.exists() {
                write_index(&index, &empty_index())?;
            }
        }
        Ok(store)
    }

    /// Removes leftovers of killed processes from `ingest/`: private temporary
    /// files no live process holds (their writers lock them), and resumable
    /// partial downloads untouched for [`STALE_PARTIAL_AGE`] and not in use.
    /// Best effort: a file that cannot be removed now is tried next time.
    fn clean_stale_ingest(&self) {
        let Ok(entries) = std::fs::read_dir(self.ingest_dir()) else {
            return;
        };
        let now = std::time::SystemTime::now();
        for entry in entries.flatten() {
            let path = entry.path();
            let temporary = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tmp-"));
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            // A temporary file is locked right after it is created; one that
            // young may simply not be locked yet.
            let stale = if temporary {
                age > TEMP_LOCK_GRACE
            } else {
                age > STALE_PARTIAL_AGE
            };
            if !stale {
                continue;
            }
            // Only if no process is writing it right now.
            if let Ok(file) = OpenOptions::new().write(true).open(&path)
                && file.try_lock().is_ok()
            {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Opens an existing store without creating anything; `None` if there is none.
    pub fn open_existing(root: &Path) -> Option<Store> {
        root.join("oci-layout").is_file().then(|| Store {
            root: root.to_owned(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn lock_file(&self, name: &str, exclusive: bool) -> Result<StoreLock, StoreError> {
        let path = self.root.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("cannot open lock file", &path))?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(io_err("cannot lock", &path))?;
        Ok(StoreLock { _file: file })
    }

    /// Takes the store lock shared (syncs, which may run side by side).
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        self.lock_file("imagelock.lock", false)
    }

    /// Takes the store lock exclusively (gc, prune, repair): waits for running syncs.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        self.lock_file("imagelock.lock", true)
    }

    /// Keeps only the `index.json` entries `keep` accepts; returns how many went.
    pub fn retain_refs(&self, keep: impl Fn(&Descriptor) -> bool) -> Result<usize, StoreError> {
        let _guard = self.lock_file("index.json.lock", true)?;
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

    /// Every file under `blobs/<alg>/`: its digest when the name is one
    /// (`None` for a stray file), and its path.
    pub fn blob_files(&self) -> std::io::Result<Vec<(Option<Digest>, PathBuf)>> {
        let mut out = Vec::new();
        for algorithm in [
            crate::digest::Algorithm::Sha256,
            crate::digest::Algorithm::Sha512,
        ] {
            let dir = self.root.join("blobs").join(algorithm.as_str());
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let path = entry?.path();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let digest = format!("{}:{name}", algorithm.as_str()).parse().ok();
                out.push((digest, path));
            }
        }
        Ok(out)
    }

    /// Whether the blob is present with the right size (the name vouches for the content).
    pub fn contains(&self, blob: &Blob) -> bool {
        std::fs::metadata(self.blob_path(&blob.digest))
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
        let dir = self.ingest_dir();
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
        let path = self.ingest_dir().join(format!(
            "{}-{}.partial",
            blob.digest.algorithm().as_str(),
            blob.digest.hex()
        ));
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err("cannot open", &path))?;
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
        let _guard = self.lock_file("index.json.lock", true)?;
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
        let bytes = std::fs::read(&path).map_err(io_err("cannot read", &path))?;
        oci::parse_index(&bytes).map_err(|e| StoreError::CorruptIndex {
            path: path.clone(),
            message: e.to_string(),
        })
    }
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
        let empty = std::fs::metadata(&self.path).is_ok_and(|m| m.len() == 0);
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
