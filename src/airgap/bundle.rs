//! Airgap bundles: one file that carries a lock, every blob it pins (images,
//! ACIs and signatures) and the keys the manifest trusts, across an air gap.
//!
//! Format: a plain tar, compressed with zstd (`zstd -d < B | tar -t` lists it),
//! in this order:
//! ```text
//! oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! images.lock                the (possibly subset) lock the bundle satisfies
//! delta.json                 only in a delta: the base lock's digest and the
//!                            blobs left out because the base pins them
//! keys/<path>                key and trusted-root files, at their path relative to
//!                            images.toml without a leading `keys/` (`keys/a.asc` → `keys/a.asc`)
//! blobs/<alg>/<hex>          every blob the lock pins, largest first
//! index.json                 the OCI images' refs, so the bundle unpacked is an OCI layout
//! ```
//! A bundle is untrusted input. On import, a blob gets its name in the store
//! only after its bytes hashed to that name and matched the size the bundle's
//! lock pins; an entry the lock does not pin, a lock the blobs do not satisfy,
//! or a malformed archive is refused with the entry's name. The bundle's lock
//! only says which blobs the bundle carries: import names no image in the
//! store's `index.json` (names come from the project's own lock, when `sync`
//! has checked it) and reads neither the bundle's `index.json` nor its keys
//! (the keys trusted are those the project's `images.toml` names). The lock
//! comes before any blob so import streams: nothing is buffered but the lock.
//!
//! A delta (`export --since`) carries the whole new lock but only the blobs the
//! base lock does not pin; `delta.json` names the base (the digest of its lock as
//! a bundle carries it, so a chain's deltas name each other) and lists the blobs
//! left out. Import checks those against the store before it reads a blob, and
//! refuses naming them (and the base) when any is missing; the final check that
//! every blob the bundle's lock pins is in the store holds for deltas as for
//! full bundles, so a `delta.json` that leaves something off its list gains
//! nothing. Unpacked over its base's unpacked bundle, a delta makes the new
//! layout (its `index.json` replaces the base's).
//!
//! On export, every blob is hashed again as it is written, so a store file
//! whose bytes are not its name never enters a bundle; the bundle is written to
//! a temporary file beside the output and renamed over it only when the output
//! path is absent or a regular file (never a link, device, FIFO or directory).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::digest::{Digest, Hasher};
use crate::errors::hinted;
use crate::progress::{Phase, Reporter};
use crate::project::lockfile::{Blob, Lock, LockedImage};
use crate::store::Store;

/// zstd level for bundles: level 3 is zstd's default trade-off; most blobs are
/// already-compressed layers, so higher levels cost time and save little.
pub const BUNDLE_ZSTD_LEVEL: i32 = 3;
/// Largest lock accepted from a bundle (locks of thousands of images are a few MiB).
const MAX_BUNDLED_LOCK_BYTES: u64 = 64 * 1024 * 1024;
/// Copy buffer for blobs going in or out of a bundle.
const COPY_BUFFER: usize = 1024 * 1024;
/// The `delta.json` format this version writes and reads.
const DELTA_VERSION: u32 = 1;
/// Longest description of a delta's base accepted from a bundle (it is printed).
const MAX_BASE_LABEL: usize = 1024;

/// The lock a delta is cut against: the side that imports the delta holds its blobs.
#[derive(Debug)]
pub struct Base {
    /// The base lock (with the same `--image`/`--platform` subset as the delta).
    pub lock: Lock,
    /// Where it came from, for people: `HEAD~1:images.lock at commit 1a2b3c4d5e6f`.
    pub from: String,
}

/// The base a delta names in its `delta.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaBase {
    /// The digest of the base lock as a bundle carries it (the `images.lock`
    /// entry of the bundle cut from that lock, full or delta).
    pub lock: Digest,
    /// Where the exporting side read the base lock (text from the bundle: escape it
    /// before printing).
    pub from: String,
}

/// A blob a delta leaves out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assumed {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// A delta bundle's `delta.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeltaFile {
    delta_version: u32,
    base: DeltaBase,
    /// The blobs the bundle's lock pins that the bundle leaves out, because the base pins them.
    assumes: Vec<Assumed>,
}

/// Why a delta leaves a blob out.
pub const OMITTED_REASON: &str = "present in the base: its lock pins the same digest and size";

/// The one field of a `delta.json` that every format has.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaVersion {
    delta_version: u32,
}

/// What a delta export left out.
#[derive(Debug, serde::Serialize)]
pub struct DeltaExported {
    /// The base it was cut against.
    pub base: DeltaBase,
    /// Why the blobs were left out ([`OMITTED_REASON`]).
    pub reason: &'static str,
    /// How many blobs were left out.
    pub omitted_blobs: usize,
    /// Their total size, uncompressed: what the delta saves.
    pub omitted_bytes: u64,
    /// The blobs left out, largest first.
    pub omitted: Vec<Omitted>,
}

/// A blob a delta left out.
#[derive(Debug, serde::Serialize)]
pub struct Omitted {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The images of the lock that pin it.
    pub images: Vec<String>,
}

/// The digest a lock has in a bundle: that of its `images.lock` entry.
pub fn lock_digest(lock: &Lock) -> Digest {
    Digest::sha256_of(lock.render().as_bytes())
}

/// What an export wrote.
#[derive(Debug, serde::Serialize)]
pub struct Exported {
    /// The digest of the bundle's images.lock: what a delta cut from this lock names as its base.
    pub lock: Digest,
    /// For a delta: its base and what it left out.
    pub delta: Option<DeltaExported>,
    /// Images in the bundle's lock.
    pub images: usize,
    /// Blobs written.
    pub blobs: usize,
    /// Their total size, uncompressed.
    pub bytes: u64,
    /// Key files written.
    pub keys: usize,
    /// The bundle's size on disk.
    pub file_bytes: u64,
}

/// A store blob whose bytes are not the ones its name (the lock's pin) promises.
#[derive(Debug, thiserror::Error)]
#[error("the store's file {} {problem}", path.display())]
pub struct AlteredBlob {
    /// The pinned digest.
    pub digest: Digest,
    /// The store file.
    pub path: PathBuf,
    /// What differs: the size or the hash.
    pub problem: String,
}

/// What a delta of `lock` against `base` leaves out: the blobs `base` pins
/// (same digest and size), largest first, each with the images that pin it.
fn delta_plan(lock: &Lock, base: &Base) -> DeltaExported {
    let in_base = base.lock.blobs();
    let mut images = images_by_blob(lock);
    let mut omitted: Vec<Omitted> = lock
        .blobs()
        .into_values()
        .filter(|blob| {
            in_base
                .get(&blob.digest)
                .is_some_and(|b| b.size == blob.size)
        })
        .map(|blob| Omitted {
            images: images.remove(&blob.digest).unwrap_or_default(),
            digest: blob.digest,
            size: blob.size,
        })
        .collect();
    omitted.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.digest.cmp(&b.digest)));
    DeltaExported {
        base: DeltaBase {
            lock: lock_digest(&base.lock),
            from: base.from.clone(),
        },
        reason: OMITTED_REASON,
        omitted_blobs: omitted.len(),
        omitted_bytes: omitted.iter().map(|b| b.size).sum(),
        omitted,
    }
}

/// The ids of the images of `lock` that pin each blob.
fn images_by_blob(lock: &Lock) -> BTreeMap<Digest, Vec<String>> {
    let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for image in lock.images.values() {
        for blob in image.blobs() {
            out.entry(blob.digest).or_default().push(image.id.clone());
        }
    }
    out
}

/// Writes `lock`'s blobs from `store` (each hashed again on the way), the lock
/// and `keys` (manifest-relative path, absolute path) to `out` as a
/// zstd-compressed tar, atomically; `out` must be absent or a regular file.
/// With a `base`, writes a delta: the blobs `base` pins (same digest and size)
/// are left out and listed in `delta.json`. Reports the blobs written as one
/// [`Phase::Exporting`] phase to `reporter`.
pub fn export(
    store: &Store,
    lock: &Lock,
    keys: &[(String, PathBuf)],
    base: Option<&Base>,
    out: &Path,
    reporter: &dyn Reporter,
) -> anyhow::Result<Exported> {
    output_exists(out)?;
    let mut blobs = lock.blobs();
    let delta = base.map(|base| delta_plan(lock, base));
    for left_out in delta.iter().flat_map(|d| &d.omitted) {
        blobs.remove(&left_out.digest);
    }
    let missing: Vec<String> = blobs
        .values()
        .filter(|b| !store.contains(b))
        .map(|b| format!("  {} ({} bytes)", b.digest, b.size))
        .collect();
    if !missing.is_empty() {
        return Err(hinted(
            format!(
                "the store at {} lacks {} blobs the lock pins:\n{}",
                store.root().display(),
                missing.len(),
                missing.join("\n")
            ),
            "run `imagelock sync` first, so the bundle can carry everything",
        ));
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // 0o666 less the umask, as for any file the user writes (tempfile's default is 0o600).
    let temp = tempfile::Builder::new()
        .prefix(".imagelock-bundle-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut encoder = zstd::Encoder::new(
        std::io::BufWriter::with_capacity(COPY_BUFFER, temp.as_file()),
        BUNDLE_ZSTD_LEVEL,
    )?;
    let workers = u32::try_from(crate::concurrency::cpu_threads()).unwrap_or(u32::MAX);
    encoder.multithread(workers)?;
    let mut tar = tar::Builder::new(encoder);
    let rendered = lock.render();
    let mut report = Exported {
        lock: Digest::sha256_of(rendered.as_bytes()),
        delta: None,
        images: lock.images.len(),
        blobs: 0,
        bytes: 0,
        keys: 0,
        file_bytes: 0,
    };
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_bytes(&mut tar, "images.lock", rendered.as_bytes())?;
    if let Some(delta) = &delta {
        let file = DeltaFile {
            delta_version: DELTA_VERSION,
            base: delta.base.clone(),
            assumes: delta
                .omitted
                .iter()
                .map(|b| Assumed {
                    digest: b.digest.clone(),
                    size: b.size,
                })
                .collect(),
        };
        let json = serde_json::to_vec(&file).context("cannot write delta.json")?;
        append_bytes(&mut tar, "delta.json", &json)?;
    }
    for (relative, path) in keys {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let name = relative.strip_prefix("keys/").unwrap_or(relative);
        append_bytes(&mut tar, &format!("keys/{name}"), &bytes)?;
        report.keys += 1;
    }
    let mut ordered: Vec<&Blob> = blobs.values().collect();
    ordered.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.digest.cmp(&b.digest)));
    reporter.begin(
        Phase::Exporting,
        ordered.len(),
        ordered.iter().map(|b| b.size).sum(),
    );
    for blob in ordered {
        let path = store.blob_path(&blob.digest);
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let checked = CheckedBlob {
            file,
            blob,
            path: &path,
            hasher: Some(Hasher::new(blob.digest.algorithm())),
            read: 0,
            reporter,
        };
        let mut header = header(blob.size);
        tar.append_data(
            &mut header,
            format!(
                "blobs/{}/{}",
                blob.digest.algorithm().as_str(),
                blob.digest.hex()
            ),
            std::io::BufReader::with_capacity(COPY_BUFFER, checked),
        )
        .map_err(|e| blob_error(blob, e))?;
        reporter.item_done();
        report.blobs += 1;
        report.bytes += blob.size;
    }
    reporter.finish();
    let refs: Vec<serde_json::Value> = lock
        .images
        .values()
        .flat_map(LockedImage::refs)
        .map(|(name, root)| {
            serde_json::json!({
                "mediaType": root.media_type,
                "digest": root.digest.to_string(),
                "size": root.size,
                "annotations": { crate::oci::REF_NAME_ANNOTATION: name },
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::OCI_INDEX,
        "manifests": refs,
    });
    append_bytes(&mut tar, "index.json", index.to_string().as_bytes())?;
    let encoder = tar.into_inner().context("cannot finish the tar stream")?;
    let mut buffered = encoder.finish().context("cannot finish the zstd stream")?;
    buffered.flush()?;
    drop(buffered);
    temp.as_file().sync_all()?;
    report.file_bytes = temp.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    // Checked again (the export took a while): a regular file is replaced by
    // rename, which never writes through a link or into a device; an absent
    // path stays absent until the rename, or the export fails.
    let persisted = if output_exists(out)? {
        temp.persist(out)
    } else {
        temp.persist_noclobber(out)
    };
    persisted
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", out.display()))?;
    report.delta = delta;
    Ok(report)
}

/// Whether `out` exists; an error unless it is absent or a regular file, so
/// an export never replaces a device, a FIFO, a directory or a symbolic link
/// (nor what a link points at).
fn output_exists(out: &Path) -> anyhow::Result<bool> {
    use std::os::unix::fs::FileTypeExt as _;
    let metadata = match std::fs::symlink_metadata(out) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot inspect {}", out.display())));
        }
    };
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(true);
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(hinted(
        format!(
            "{} is {what}: export writes a bundle only to a new path or over a regular file",
            out.display()
        ),
        "name a new file for the bundle (or remove what is at that path first)",
    ))
}

/// A store blob being read into a bundle, hashed on the way: its reader fails
/// (with an [`AlteredBlob`] inside the I/O error) instead of reaching the end
/// when the bytes run past or stop short of the pinned size or hash to another
/// digest, so a bundle never carries other bytes under a pinned name.
struct CheckedBlob<'a> {
    file: std::fs::File,
    blob: &'a Blob,
    path: &'a Path,
    /// Taken when the end is reached and the digest compared.
    hasher: Option<Hasher>,
    read: u64,
    reporter: &'a dyn Reporter,
}

impl CheckedBlob<'_> {
    fn altered(&self, problem: String) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            AlteredBlob {
                digest: self.blob.digest.clone(),
                path: self.path.to_owned(),
                problem,
            },
        )
    }
}

impl Read for CheckedBlob<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if self.read > self.blob.size {
            return Err(self.altered(format!(
                "is longer than the {} bytes the lock pins",
                self.blob.size
            )));
        }
        if n > 0 {
            if let Some(hasher) = &mut self.hasher {
                hasher.update(&buf[..n]);
            }
            self.reporter.bytes(n as u64);
            return Ok(n);
        }
        if self.read < self.blob.size {
            return Err(self.altered(format!(
                "is {} bytes, the lock pins {}",
                self.read, self.blob.size
            )));
        }
        if let Some(hasher) = self.hasher.take() {
            let actual = hasher.finish();
            if actual != self.blob.digest {
                return Err(self.altered(format!("hashes to {actual}")));
            }
        }
        Ok(0)
    }
}

/// The error for a blob that could not go into the bundle: an altered store
/// blob says how to repair the store.
fn blob_error(blob: &Blob, error: std::io::Error) -> anyhow::Error {
    if !error
        .get_ref()
        .is_some_and(|inner| inner.is::<AlteredBlob>())
    {
        return anyhow::Error::new(error)
            .context(format!("cannot write blob {} to the bundle", blob.digest));
    }
    let altered = error
        .into_inner()
        .and_then(|inner| inner.downcast::<AlteredBlob>().ok())
        .expect("checked above: the error wraps an AlteredBlob");
    crate::errors::with_hint(
        anyhow::Error::new(*altered).context(format!(
            "cannot export blob {}: the store holds other bytes under its name, so no bundle was written",
            blob.digest
        )),
        "run `imagelock fsck --repair` to set the blob aside and fetch it again, then export again",
    )
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let mut header = header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
        .with_context(|| format!("cannot write {name} to the bundle"))
}

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Imported {
    /// The digest of the bundle's images.lock (a later delta names it as its base).
    pub lock: Option<Digest>,
    /// For a delta: its base, and the blobs it left out (all found in the store).
    pub delta: Option<DeltaImported>,
    /// Images in the bundle's lock.
    pub images: usize,
    /// Blobs verified and stored.
    pub stored: usize,
    /// Blobs the store had already.
    pub present: usize,
    /// Bytes stored.
    pub bytes: u64,
    /// The blobs stored (their signatures are worth re-checking).
    #[serde(skip)]
    pub digests: Vec<Digest>,
    /// The root digest the bundle's lock pins for each of its images (its claim,
    /// to compare with the project's lock).
    #[serde(skip)]
    pub roots: BTreeMap<String, Digest>,
}

/// What a delta import relied on.
#[derive(Debug, serde::Serialize)]
pub struct DeltaImported {
    /// The base the delta names.
    pub base: DeltaBase,
    /// The blobs it left out, each found in the store before any blob was read.
    pub assumed: usize,
    /// Their total size.
    pub assumed_bytes: u64,
}

/// A bundle's metadata entries, read before its first blob.
#[derive(Default)]
struct Header {
    /// The bundle's lock and the digest of its entry.
    lock: Option<(Lock, Digest)>,
    delta: Option<DeltaFile>,
}

/// What the blobs of a bundle are checked against, once its metadata is read.
struct Expected {
    /// Every blob the bundle's lock pins.
    pinned: BTreeMap<Digest, Blob>,
    /// The blobs a delta leaves out (found in the store already).
    assumed: BTreeSet<Digest>,
}

/// Streams the bundle at `path` into `store`, verifying every blob against the
/// bundle's lock before it gets its name. Names no image: the bundle's lock
/// is the bundle's own claim, so `index.json` is left to `sync`, which names
/// the images of the project's lock once its checks pass. A delta is refused
/// before any blob is stored when the store lacks a blob it leaves out for its
/// base to provide. Reports the blobs the bundle carries as one
/// [`Phase::Importing`] phase to `reporter`.
pub fn import(store: &Store, path: &Path, reporter: &dyn Reporter) -> anyhow::Result<Imported> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the bundle {}", path.display()))?;
    let decoder = zstd::Decoder::new(file)
        .with_context(|| format!("{} is not a zstd-compressed bundle", path.display()))?;
    let mut archive = tar::Archive::new(decoder);
    let mut header = Header::default();
    // Set at the first blob (or the end): which entries may be stored, nothing more.
    let mut expected: Option<Expected> = None;
    let mut report = Imported::default();
    // Entry names and what parsers say about the bundle's bytes are the bundle's
    // text: escaped, so a newline can't make a line of its own (a fake `hint:`).
    let bad = |entry: &str, problem: String| {
        hinted(
            format!(
                "bundle {}: entry `{}`: {}",
                path.display(),
                crate::text::escape(entry),
                crate::text::escape(&problem)
            ),
            "the bundle is damaged or was altered; export it again on the connected side",
        )
    };
    let entries = archive
        .entries()
        .with_context(|| format!("{} is not a bundle (not a tar stream)", path.display()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            hinted(
                format!("bundle {} is damaged: {e}", path.display()),
                "the file is truncated or corrupt; copy it again",
            )
        })?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.as_str() {
            "oci-layout" | "index.json" => {
                std::io::copy(&mut entry, &mut std::io::sink())
                    .map_err(|e| bad(&name, e.to_string()))?;
            }
            "images.lock" => {
                if header.lock.is_some() {
                    return Err(bad(&name, "a second images.lock".into()));
                }
                let text = read_small(&mut entry).map_err(|e| bad(&name, e))?;
                // What the parser says quotes the bundle's text: through `bad`, escaped.
                // A lock from a newer imagelock keeps its own error (and hint: upgrade).
                let parsed =
                    Lock::parse(Path::new("images.lock (in the bundle)"), &text).map_err(|e| {
                        match e {
                            crate::project::lockfile::LockError::FutureVersion { .. } => e.into(),
                            other => bad(&name, other.to_string()),
                        }
                    })?;
                header.lock = Some((parsed, Digest::sha256_of(text.as_bytes())));
            }
            "delta.json" => {
                if header.delta.is_some() {
                    return Err(bad(&name, "a second delta.json".into()));
                }
                if expected.is_some() {
                    return Err(bad(&name, "after the bundle's first blob".into()));
                }
                let text = read_small(&mut entry).map_err(|e| bad(&name, e))?;
                let not_delta =
                    |e: serde_json::Error| bad(&name, format!("not a delta description: {e}"));
                // The version first: a later format may have fields this one refuses.
                let version: DeltaVersion = serde_json::from_str(&text).map_err(not_delta)?;
                if version.delta_version != DELTA_VERSION {
                    return Err(hinted(
                        format!(
                            "bundle {} is a delta of format {}; this imagelock reads format {DELTA_VERSION}",
                            path.display(),
                            version.delta_version
                        ),
                        "import it with the imagelock version that exported it, or export a full bundle",
                    ));
                }
                let delta: DeltaFile = serde_json::from_str(&text).map_err(not_delta)?;
                if delta.base.from.len() > MAX_BASE_LABEL {
                    return Err(bad(
                        &name,
                        format!("its base is described in more than {MAX_BASE_LABEL} bytes"),
                    ));
                }
                header.delta = Some(delta);
            }
            _ if name.starts_with("keys/") => {
                std::io::copy(&mut entry, &mut std::io::sink())
                    .map_err(|e| bad(&name, e.to_string()))?;
            }
            _ => {
                let Some(rest) = name.strip_prefix("blobs/") else {
                    return Err(bad(&name, "not part of a bundle".into()));
                };
                let expected = match &mut expected {
                    Some(expected) => expected,
                    None => expected.insert(seal(store, path, &header, &mut report, reporter)?),
                };
                let digest: Digest = rest
                    .replacen('/', ":", 1)
                    .parse()
                    .map_err(|e| bad(&name, format!("not named by a digest: {e}")))?;
                let Some(blob) = expected.pinned.get(&digest) else {
                    return Err(bad(
                        &name,
                        "the bundle's lock does not pin this blob".into(),
                    ));
                };
                if expected.assumed.contains(&digest) {
                    return Err(bad(
                        &name,
                        "delta.json lists this blob as one the base provides".into(),
                    ));
                }
                if entry.size() != blob.size {
                    return Err(bad(
                        &name,
                        format!("{} bytes, the lock pins {}", entry.size(), blob.size),
                    ));
                }
                if store.contains(blob) {
                    let skipped = std::io::copy(&mut entry, &mut std::io::sink())
                        .map_err(|e| bad(&name, e.to_string()))?;
                    reporter.bytes(skipped);
                    reporter.item_done();
                    report.present += 1;
                    continue;
                }
                let mut writer = store.ingest(blob)?;
                let mut buffer = vec![0u8; COPY_BUFFER];
                loop {
                    let n = entry
                        .read(&mut buffer)
                        .map_err(|e| bad(&name, e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    writer
                        .write(&buffer[..n])
                        .map_err(|e| bad(&name, e.to_string()))?;
                    reporter.bytes(n as u64);
                }
                writer.commit().map_err(|e| bad(&name, e.to_string()))?;
                reporter.item_done();
                report.digests.push(digest);
                report.stored += 1;
                report.bytes += blob.size;
            }
        }
    }
    let expected = match expected {
        Some(expected) => expected,
        None => seal(store, path, &header, &mut report, reporter)?,
    };
    reporter.finish();
    let missing: Vec<String> = expected
        .pinned
        .values()
        .filter(|b| !store.contains(b))
        .map(|b| format!("  {}", b.digest))
        .collect();
    if !missing.is_empty() {
        return Err(hinted(
            format!(
                "bundle {} lacks {} its own lock pins:\n{}",
                path.display(),
                crate::text::plural(missing.len(), "blob"),
                missing.join("\n")
            ),
            "the bundle is incomplete; export it again on the connected side",
        ));
    }
    Ok(report)
}

/// Reads a metadata entry (a lock or `delta.json`), bounded.
fn read_small(entry: &mut impl Read) -> Result<String, String> {
    let mut text = String::new();
    entry
        .take(MAX_BUNDLED_LOCK_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_BUNDLED_LOCK_BYTES {
        return Err(format!("larger than {MAX_BUNDLED_LOCK_BYTES} bytes"));
    }
    Ok(text)
}

/// Ends a bundle's metadata: what its blobs are checked against. For a delta,
/// every blob it leaves out must be pinned by its lock and already be in
/// `store`; the error names the missing ones, their images and the base.
fn seal(
    store: &Store,
    path: &Path,
    header: &Header,
    report: &mut Imported,
    reporter: &dyn Reporter,
) -> anyhow::Result<Expected> {
    let Some((lock, lock_digest)) = &header.lock else {
        return Err(hinted(
            format!(
                "bundle {} holds no images.lock ahead of its blobs",
                path.display()
            ),
            "the bundle is damaged or was not made by `imagelock export`; export it again on the connected side",
        ));
    };
    let pinned = lock.blobs();
    let mut assumed = BTreeSet::new();
    if let Some(delta) = &header.delta {
        let mut absent: Vec<&Blob> = Vec::new();
        let mut assumed_bytes = 0;
        for blob in &delta.assumes {
            let pin = pinned.get(&blob.digest);
            let Some(pin) = pin.filter(|p| p.size == blob.size) else {
                let problem = match pin {
                    Some(pin) => format!("which the bundle's lock pins at {} bytes", pin.size),
                    None => "which the bundle's lock does not pin".to_owned(),
                };
                return Err(hinted(
                    format!(
                        "bundle {}: entry `delta.json`: lists {} ({} bytes), {problem}",
                        path.display(),
                        blob.digest,
                        blob.size
                    ),
                    "the bundle is damaged or was altered; export it again on the connected side",
                ));
            };
            if !assumed.insert(blob.digest.clone()) {
                continue;
            }
            if !store.contains(pin) {
                absent.push(pin);
            }
            assumed_bytes += pin.size;
        }
        if !absent.is_empty() {
            return Err(missing_base(
                store,
                path,
                lock,
                &delta.base,
                &absent,
                assumed.len(),
            ));
        }
        report.delta = Some(DeltaImported {
            base: delta.base.clone(),
            assumed: assumed.len(),
            assumed_bytes,
        });
    }
    report.lock = Some(lock_digest.clone());
    report.images = lock.images.len();
    report.roots = lock
        .images
        .iter()
        .map(|(id, image)| (id.clone(), image.root().digest))
        .collect();
    let carried: Vec<&Blob> = pinned
        .values()
        .filter(|b| !assumed.contains(&b.digest))
        .collect();
    reporter.begin(
        Phase::Importing,
        carried.len(),
        carried.iter().map(|b| b.size).sum(),
    );
    Ok(Expected { pinned, assumed })
}

/// The error for a delta whose base the store does not hold: names the base,
/// and each missing blob with its size and the images of the bundle's lock
/// that pin it.
fn missing_base(
    store: &Store,
    path: &Path,
    lock: &Lock,
    base: &DeltaBase,
    absent: &[&Blob],
    assumed: usize,
) -> anyhow::Error {
    /// Missing blobs named one by one; the rest are counted.
    const LISTED: usize = 20;
    let images_of = images_by_blob(lock);
    let mut lines: Vec<String> = absent
        .iter()
        .take(LISTED)
        .map(|blob| {
            let images: Vec<std::borrow::Cow<'_, str>> = images_of
                .get(&blob.digest)
                .into_iter()
                .flatten()
                .map(|id| crate::text::escape(id))
                .collect();
            format!(
                "  {} ({}, {})",
                blob.digest,
                crate::text::human_bytes(blob.size),
                match images.as_slice() {
                    [one] => format!("image {one}"),
                    [first, second, third, rest @ ..] if !rest.is_empty() => {
                        format!("images {first}, {second}, {third} and {} more", rest.len())
                    }
                    all => format!("images {}", all.join(", ")),
                }
            )
        })
        .collect();
    if absent.len() > LISTED {
        lines.push(format!("  … and {} more", absent.len() - LISTED));
    }
    hinted(
        format!(
            "bundle {} is a delta cut against lock {} ({}): the store at {} lacks {} of the {} it leaves out for that base to provide, so nothing was imported:\n{}",
            path.display(),
            base.lock,
            crate::text::escape(&base.from),
            store.root().display(),
            absent.len(),
            crate::text::plural(assumed, "blob"),
            lines.join("\n")
        ),
        format!(
            "import the bundle whose lock is {} first (a full bundle, or the deltas before this one, in order: `imagelock import` prints each bundle's lock), or carry a full bundle (`imagelock export` without --since); a delta cut with other --image/--platform filters than the bundles before it names a lock none of them had",
            base.lock
        ),
    )
}

/// The part of `lock` an export was asked for: the images named in `images`
/// (with their dependencies; all when empty) and, for multi-platform OCI
/// images, only the manifests of `platforms` (all when empty). An image left
/// with no manifest is dropped.
pub fn subset(lock: &Lock, images: &[String], platforms: &[String]) -> anyhow::Result<Lock> {
    for id in images {
        if !lock.images.contains_key(id) {
            return Err(crate::errors::unknown_image(
                id,
                "images.lock",
                lock.images.keys().map(String::as_str),
                None,
            ));
        }
    }
    base_subset(lock, images, platforms)
}

/// [`subset`] of a delta's base lock: the same filters, where an image named in
/// `images` may be absent (new since the base).
pub fn base_subset(lock: &Lock, images: &[String], platforms: &[String]) -> anyhow::Result<Lock> {
    let wanted: Vec<crate::oci::platform::Platform> = platforms
        .iter()
        .map(|p| {
            p.parse::<crate::oci::platform::Platform>()
                .map(|p| p.normalized())
                .map_err(|e| anyhow::anyhow!("--platform `{p}`: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut out = Lock::default();
    for (id, image) in &lock.images {
        let root = image.dependency_of.as_ref().unwrap_or(id);
        if !images.is_empty() && !images.contains(root) && !images.contains(id) {
            continue;
        }
        let mut image = image.clone();
        if !wanted.is_empty() && image.is_oci() {
            image.manifests.retain(|m| {
                m.platform.as_deref().is_none_or(|p| {
                    p.parse::<crate::oci::platform::Platform>()
                        .is_ok_and(|p| wanted.contains(&p.normalized()))
                })
            });
            if image.manifests.is_empty() {
                continue;
            }
        }
        out.images.insert(id.clone(), image);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::digest::Digest;
    use crate::progress::{Phase, Recorded, Recording};
    use crate::project::lockfile::{ACI_MEDIA_TYPE, Blob, Lock, LockedImage, SourceKind};
    use crate::store::Store;

    /// A lock of ACIs with these contents, and a store holding them.
    fn stored(dir: &std::path::Path, contents: &[&[u8]]) -> (Lock, Store) {
        let store = Store::open(&dir.join("store")).expect("store");
        let mut lock = Lock::default();
        for (n, bytes) in contents.iter().enumerate() {
            let blob = Blob {
                digest: Digest::sha256_of(bytes),
                size: bytes.len() as u64,
                media_type: ACI_MEDIA_TYPE.into(),
            };
            store.insert_bytes(&blob, bytes).expect("insert");
            let id = format!("aci{n}");
            let mut image = LockedImage::new(
                &id,
                SourceKind::Appc,
                format!("example.com/{id}"),
                Digest::sha256_of(id.as_bytes()),
            );
            image.aci = Some(blob);
            lock.images.insert(id, image);
        }
        (lock, store)
    }

    #[test]
    fn export_and_import_report_every_blob_and_byte_they_carry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let contents: [&[u8]; 3] = [b"first layer", &[7u8; 3 * 1024 * 1024], b""];
        let total: u64 = contents.iter().map(|c| c.len() as u64).sum();
        let (lock, store) = stored(dir.path(), &contents);
        let out = dir.path().join("out.bundle");
        let exporting = Recording::default();
        let exported = super::export(&store, &lock, &[], None, &out, &exporting).expect("export");
        assert_eq!((exported.blobs, exported.bytes), (3, total));
        assert_eq!(
            exporting.phases(),
            [Recorded::complete(Phase::Exporting, 3, total)]
        );

        let empty = Store::open(&dir.path().join("empty")).expect("store");
        let importing = Recording::default();
        let imported = super::import(&empty, &out, &importing).expect("import");
        assert_eq!((imported.stored, imported.bytes), (3, total));
        assert_eq!(
            importing.phases(),
            [Recorded::complete(Phase::Importing, 3, total)]
        );
        // Blobs the store has already are read through, and reported too.
        let again = Recording::default();
        let imported = super::import(&empty, &out, &again).expect("import");
        assert_eq!(imported.present, 3);
        assert_eq!(
            again.phases(),
            [Recorded::complete(Phase::Importing, 3, total)]
        );
    }

    #[test]
    fn subsets_by_image_keep_roots_with_their_dependencies_and_named_dependencies() {
        let mut lock = Lock::default();
        for (id, parent) in [("app", None), ("base", Some("app")), ("other", None)] {
            let mut image = LockedImage::new(
                id,
                SourceKind::Appc,
                format!("example.com/{id}"),
                Digest::sha256_of(id.as_bytes()),
            );
            image.dependency_of = parent.map(str::to_owned);
            lock.images.insert(id.into(), image);
        }
        let ids = |images: &[&str]| -> Vec<String> {
            let wanted: Vec<String> = images.iter().map(|s| (*s).to_owned()).collect();
            let subset = super::subset(&lock, &wanted, &[]).expect("subset");
            subset.images.keys().cloned().collect()
        };
        assert_eq!(ids(&["app"]), ["app", "base"]);
        assert_eq!(ids(&["base"]), ["base"]);
        assert_eq!(ids(&["other"]), ["other"]);
        assert_eq!(ids(&[]), ["app", "base", "other"]);
    }

    /// A base lock of `a` and `b`, a new lock of `a`, `c` and `d` (all stored
    /// in one store), and the delta of the new lock against the base.
    fn delta_of(dir: &std::path::Path) -> (Lock, Lock, Store, std::path::PathBuf) {
        let (base, _) = stored(dir, &[b"a", b"b"]);
        let (new, store) = stored(dir, &[b"a", b"c", b"dd"]);
        let out = dir.join("delta.bundle");
        let base_ref = super::Base {
            lock: base.clone(),
            from: "the test's base".into(),
        };
        let exported = super::export(
            &store,
            &new,
            &[],
            Some(&base_ref),
            &out,
            &Recording::default(),
        )
        .expect("export");
        let delta = exported.delta.expect("a delta");
        assert_eq!((exported.blobs, exported.bytes), (2, 3));
        assert_eq!((delta.omitted_blobs, delta.omitted_bytes), (1, 1));
        assert_eq!(delta.omitted[0].digest, Digest::sha256_of(b"a"));
        assert_eq!(delta.omitted[0].images, ["aci0"]);
        assert_eq!(delta.base.lock, super::lock_digest(&base));
        (base, new, store, out)
    }

    /// A bundle's entries, as name and bytes.
    type Entries = Vec<(String, Vec<u8>)>;

    /// Rewrites the bundle at `path` through `edit`.
    fn rewrite(path: &std::path::Path, edit: impl FnOnce(&mut Entries)) {
        use std::io::Read as _;
        let mut tar = Vec::new();
        zstd::Decoder::new(std::fs::File::open(path).expect("open"))
            .expect("zstd")
            .read_to_end(&mut tar)
            .expect("read");
        let mut entries: Entries = tar::Archive::new(&tar[..])
            .entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let name = e.path().expect("path").to_string_lossy().into_owned();
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).expect("read entry");
                (name, bytes)
            })
            .collect();
        edit(&mut entries);
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in &entries {
            super::append_bytes(&mut builder, name, bytes).expect("append");
        }
        let tar = builder.into_inner().expect("tar");
        std::fs::write(path, zstd::encode_all(&tar[..], 3).expect("zstd")).expect("write");
    }

    fn import_error(store: &Store, path: &std::path::Path) -> String {
        let error = super::import(store, path, &Recording::default()).expect_err("refused");
        format!("{error:#}")
    }

    /// Every blob file in `store`.
    fn blob_files(store: &Store) -> usize {
        ["sha256", "sha512"]
            .iter()
            .filter_map(|alg| std::fs::read_dir(store.root().join("blobs").join(alg)).ok())
            .map(Iterator::count)
            .sum()
    }

    #[test]
    fn a_delta_imports_onto_its_base_and_is_refused_whole_without_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, _, store, delta) = delta_of(dir.path());
        let full = dir.path().join("base.bundle");
        super::export(&store, &base, &[], None, &full, &Recording::default()).expect("export");

        let empty = Store::open(&dir.path().join("empty")).expect("store");
        let error = import_error(&empty, &delta);
        assert!(
            error.contains(&format!(
                "is a delta cut against lock {} (the test's base)",
                super::lock_digest(&base)
            )) && error.contains(&format!("{} (1 B, image aci0)", Digest::sha256_of(b"a"))),
            "{error}"
        );
        assert_eq!(blob_files(&empty), 0, "nothing was stored");

        let imported = super::import(&empty, &full, &Recording::default()).expect("base");
        assert!(imported.delta.is_none());
        assert_eq!(imported.lock, Some(super::lock_digest(&base)));
        let importing = Recording::default();
        let imported = super::import(&empty, &delta, &importing).expect("delta");
        let assumed = imported.delta.expect("a delta");
        assert_eq!((assumed.assumed, assumed.assumed_bytes), (1, 1));
        assert_eq!((imported.stored, imported.bytes), (2, 3));
        // Progress counts the blobs the delta carries, not those it assumes.
        assert_eq!(
            importing.phases(),
            [Recorded::complete(Phase::Importing, 2, 3)]
        );
    }

    #[test]
    fn a_delta_json_that_lies_gains_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, _, _, delta) = delta_of(dir.path());
        // Holds the base's blobs, and `dd`, the first blob the delta carries:
        // the attempts on it are all refused before any blob is stored.
        let holder = Store::open(&dir.path().join("holder")).expect("store");
        for bytes in [&b"a"[..], b"b", b"dd"] {
            let blob = Blob {
                digest: Digest::sha256_of(bytes),
                size: bytes.len() as u64,
                media_type: ACI_MEDIA_TYPE.into(),
            };
            holder.insert_bytes(&blob, bytes).expect("insert");
        }
        let empty = Store::open(&dir.path().join("empty")).expect("store");
        let attempt_on = |store: &Store, name: &str, edit: &dyn Fn(&mut Entries)| {
            let copy = dir.path().join(name);
            std::fs::copy(&delta, &copy).expect("copy");
            rewrite(&copy, edit);
            import_error(store, &copy)
        };
        let attempt = |name: &str, edit: &dyn Fn(&mut Entries)| attempt_on(&holder, name, edit);
        let with_delta = |edit: fn(&mut serde_json::Value)| {
            move |entries: &mut Entries| {
                let entry = entries
                    .iter_mut()
                    .find(|(name, _)| name == "delta.json")
                    .expect("a delta.json");
                let mut json: serde_json::Value = serde_json::from_slice(&entry.1).expect("json");
                edit(&mut json);
                entry.1 = json.to_string().into_bytes();
            }
        };
        // It claims the base provides a blob the bundle's lock does not pin.
        let error = attempt(
            "unpinned",
            &with_delta(|json| {
                json["assumes"][0]["digest"] = Digest::sha256_of(b"b").to_string().into();
            }),
        );
        assert!(
            error.contains("which the bundle's lock does not pin"),
            "{error}"
        );
        // It leaves the assumed blob off its list, and does not carry it either:
        // the store lacks a blob the bundle's lock pins, so the import fails.
        let error = attempt_on(
            &empty,
            "silent",
            &with_delta(|json| json["assumes"] = serde_json::json!([])),
        );
        assert!(
            error.contains("lacks 1 blob its own lock pins")
                && error.contains(&Digest::sha256_of(b"a").to_string()),
            "{error}"
        );
        // It lists a blob it carries as one the base provides.
        let error = attempt(
            "both",
            &with_delta(|json| {
                json["assumes"] = serde_json::json!([
                    {"digest": Digest::sha256_of(b"a").to_string(), "size": 1},
                    {"digest": Digest::sha256_of(b"dd").to_string(), "size": 2},
                ]);
            }),
        );
        assert!(
            error.contains("lists this blob as one the base provides"),
            "{error}"
        );
        // A format from the future.
        let error = attempt(
            "future",
            &with_delta(|json| {
                json["deltaVersion"] = 2.into();
                json["base"]["signedBy"] = "a field format 1 does not have".into();
            }),
        );
        assert!(error.contains("a delta of format 2"), "{error}");
        // delta.json after a blob, or twice. A late one is refused at that entry:
        // the blobs before it, read as a full bundle's, were hashed and stored
        // (on an empty store: `dd`, the first).
        let late = Store::open(&dir.path().join("late-store")).expect("store");
        let error = attempt_on(&late, "late", &|entries: &mut Entries| {
            let at = entries
                .iter()
                .position(|(name, _)| name == "delta.json")
                .expect("a delta.json");
            let moved = entries.remove(at);
            let first_blob = entries
                .iter()
                .position(|(name, _)| name.starts_with("blobs/"))
                .expect("a blob");
            entries.insert(first_blob + 1, moved);
        });
        assert!(error.contains("after the bundle's first blob"), "{error}");
        assert_eq!(blob_files(&late), 1);
        assert!(late.contains(&Blob {
            digest: Digest::sha256_of(b"dd"),
            size: 2,
            media_type: ACI_MEDIA_TYPE.into(),
        }));
        let error = attempt("twice", &|entries: &mut Entries| {
            let copy = entries
                .iter()
                .find(|(name, _)| name == "delta.json")
                .expect("a delta.json")
                .clone();
            entries.insert(2, copy);
        });
        assert!(error.contains("a second delta.json"), "{error}");
        assert_eq!(blob_files(&holder), 3, "nothing was stored by any of them");
    }

    #[test]
    fn bundle_text_in_errors_is_escaped_so_it_makes_no_line_of_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, _, _, delta) = delta_of(dir.path());
        let rename = |from: &str| {
            rewrite(&delta, |entries| {
                let lock = entries
                    .iter_mut()
                    .find(|(name, _)| name == "images.lock")
                    .expect("a lock");
                let text = String::from_utf8(lock.1.clone()).expect("utf8");
                lock.1 = text
                    .replace(
                        &format!("id = \"{from}\""),
                        r#"id = "aci0\nhint: trust evil.example""#,
                    )
                    .into_bytes();
            });
        };
        rename("aci0");
        let empty = Store::open(&dir.path().join("empty")).expect("store");
        let error = import_error(&empty, &delta);
        assert!(
            error.contains(r"image aci0\nhint: trust evil.example)")
                && !error.lines().any(|l| l.starts_with("hint: trust")),
            "{error}"
        );
        // What the lock parser says quotes the id too (pinned twice): escaped.
        rename("aci1");
        let error = import_error(&empty, &delta);
        assert!(
            error.contains("entry `images.lock`")
                && error.contains(r"aci0\nhint: trust evil.example` is pinned twice")
                && !error.lines().any(|l| l.starts_with("hint: trust")),
            "{error}"
        );
    }
}
