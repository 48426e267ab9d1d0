//! The ACI archive as served (specs/appc.md §2.1, §2.2, §2.4): compression detection, streaming
//! decompression, the tar layout, and the image ID.
//!
//! Invariants:
//! - The image ID is `sha512-` + the lowercase hex SHA-512 of the *uncompressed* tar stream,
//!   computed over every byte of it: headers, data, padding, the end-of-archive blocks and anything
//!   after them. It equals `sha512sum image.tar` (§2.4), never the hash of the downloaded file.
//! - An archive is read once, as a stream, in [`READ_BUFFER`]-sized reads while it is hashed. It is
//!   never held in memory or written anywhere: only the manifest (at most [`Limits::max_manifest`])
//!   and tar extended headers (at most 1 MiB each) are buffered.
//! - Decompression is capped: a decoder produces at most [`Limits::max_uncompressed`] bytes and
//!   allocates no xz dictionary or zstd window above [`Limits::max_window`], and the tar holds at
//!   most [`Limits::max_entries`] entries, so a small "zip bomb" can exhaust neither memory, nor
//!   disk, nor much time.
//! - The layout is checked (§2.1): only a `manifest` regular file, an explicit `rootfs` directory
//!   entry and `rootfs/...`; no absolute paths, no `..` components, no duplicate paths (compared
//!   after dropping `.` components and repeated `/`); hard links stay inside `rootfs/`.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};

use sha2::Digest as _;

use super::manifest::{ImageManifest, parse_manifest};
use super::{AciError, human_size};
use crate::digest::{Algorithm, Hasher};

/// How an ACI's tar stream is compressed, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar archive.
    None,
    /// gzip, possibly several concatenated members.
    Gzip,
    /// bzip2, possibly several concatenated streams.
    Bzip2,
    /// xz, possibly several concatenated streams.
    Xz,
    /// zstd (not in the appc spec, accepted as well), possibly several frames.
    Zstd,
}

impl Compression {
    /// The lowercase name: `none`, `gzip`, `bzip2`, `xz` or `zstd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// How error messages name the decompressed body.
    pub(super) fn body(self) -> String {
        match self {
            Compression::None => "body".to_owned(),
            other => format!("decompressed {} body", other.as_str()),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes read for compression detection: Go's `DetectFileType` reads at most 512 (§2.2).
pub const DETECT_LEN: usize = 512;

/// Size of each read from the source and the decoder: large reads keep hashing and
/// decompression cheap per byte, and 256 KiB is still nothing next to the archive.
pub const READ_BUFFER: usize = 256 * 1024;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const TAR_MAGIC: &[u8] = b"ustar";
/// Offset of the `ustar` magic in a tar header.
const TAR_MAGIC_OFFSET: usize = 257;

/// Detects compression by magic bytes (§2.2): gzip `1f 8b`, bzip2 `BZh`, xz `fd 37 7a 58 5a 00`,
/// zstd `28 b5 2f fd`, tar `ustar` at offset 257 with more than 262 bytes; text and anything
/// else are errors.
pub fn detect_compression(head: &[u8]) -> Result<Compression, AciError> {
    if head.starts_with(GZIP_MAGIC) {
        return Ok(Compression::Gzip);
    }
    if head.starts_with(BZIP2_MAGIC) {
        return Ok(Compression::Bzip2);
    }
    if head.starts_with(XZ_MAGIC) {
        return Ok(Compression::Xz);
    }
    if head.starts_with(ZSTD_MAGIC) {
        return Ok(Compression::Zstd);
    }
    let magic_end = TAR_MAGIC_OFFSET + TAR_MAGIC.len();
    if head.len() > magic_end && &head[TAR_MAGIC_OFFSET..magic_end] == TAR_MAGIC {
        return Ok(Compression::None);
    }
    if head.is_empty() {
        return Err(AciError::Empty);
    }
    if looks_like_text(head) {
        return Err(AciError::Text {
            kind: text_kind(head),
            size: size_seen(head),
        });
    }
    if head.len() <= magic_end {
        return Err(AciError::TooShort { len: head.len() });
    }
    Err(AciError::UnknownFormat {
        size: size_seen(head),
    })
}

/// Go's `http.DetectContentType` calls data text unless it holds one of these control bytes.
fn looks_like_text(head: &[u8]) -> bool {
    !head
        .iter()
        .any(|&b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f))
}

/// What kind of text a body is, for the error message. Only the kind: the
/// text itself is never quoted, because a `path` or `url` entry can name any
/// file the user can read (a symlink to a password file, a private key).
fn text_kind(head: &[u8]) -> &'static str {
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => "HTML (an error page?)",
        Some(b'{' | b'[') => "JSON (an API error?)",
        _ => "plain text",
    }
}

/// How big a body that failed detection is, as far as detection read it.
fn size_seen(head: &[u8]) -> String {
    if head.len() < DETECT_LEN {
        format!("{} bytes", head.len())
    } else {
        format!("{DETECT_LEN} bytes or more")
    }
}

/// Default [`Limits::max_uncompressed`]: 8 GiB. Real ACIs are tens to hundreds of MiB, so this
/// refuses only bombs, after at most seconds of decompression.
pub const DEFAULT_MAX_UNCOMPRESSED: u64 = 8 << 30;
/// Most an archive may expand relative to its compressed size, once past
/// [`RATIO_GRACE`]: gzip of ordinary files stays under 20:1 and even runs of zeros
/// under ~1030:1 (deflate's ceiling), while bombs reach millions to one.
pub const MAX_RATIO: u64 = 2048;
/// Uncompressed bytes allowed before the ratio is checked, so tiny archives with
/// a compressible manifest never trip it.
pub const RATIO_GRACE: u64 = 64 << 20;
/// Default [`Limits::max_manifest`]: 1 MiB. Real manifests are a few KiB of JSON.
pub const DEFAULT_MAX_MANIFEST: u64 = 1 << 20;
/// Default [`Limits::max_window`]: 128 MiB, the zstd CLI's own default decoding limit (window
/// log 27), and twice the 64 MiB dictionary of `xz -9`.
pub const DEFAULT_MAX_WINDOW: u64 = 128 << 20;
/// Default [`Limits::max_entries`]: 1 Mi entries, several times the files of a full desktop
/// distribution, which keeps the duplicate check under ~100 MB.
pub const DEFAULT_MAX_ENTRIES: u64 = 1 << 20;

/// Largest GNU long name/link or PAX header buffered: these carry one path or a few xattrs
/// (Linux caps one xattr value at 64 KiB), and the tar crate itself would buffer any size.
pub const MAX_EXTENDED_HEADER: u64 = 1 << 20;

/// Caps that keep a hostile archive from exhausting memory, disk or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the decompressed tar stream may have; one more is refused.
    pub max_uncompressed: u64,
    /// Largest `manifest` entry read into memory.
    pub max_manifest: u64,
    /// Largest xz dictionary or zstd window a decoder may allocate (for zstd, rounded down to a
    /// power of two: libzstd takes the limit as a window log).
    pub max_window: u64,
    /// Most tar entries (extended headers not counted); bounds the duplicate check's memory.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_uncompressed: DEFAULT_MAX_UNCOMPRESSED,
            max_manifest: DEFAULT_MAX_MANIFEST,
            max_window: DEFAULT_MAX_WINDOW,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What reading an ACI yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AciInfo {
    /// `sha512-` + 128 lowercase hex digits: the SHA-512 of the uncompressed tar stream.
    pub image_id: String,
    /// The compression detected.
    pub compression: Compression,
    /// Bytes in the uncompressed tar stream, every one of which went into the image ID.
    pub uncompressed_size: u64,
    /// The parsed and validated manifest.
    pub manifest: ImageManifest,
    /// The manifest exactly as stored in the archive.
    pub manifest_bytes: Vec<u8>,
}

/// Reads a whole ACI stream as served (possibly compressed): detects the compression,
/// decompresses, hashes every byte of the tar stream into the image ID, validates the layout,
/// and finds and parses the manifest, which may be the last entry.
pub fn read_aci(reader: impl Read, limits: &Limits) -> Result<AciInfo, AciError> {
    let consumed = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut source = Source {
        inner: reader,
        failure: None,
        consumed: consumed.clone(),
    };
    let mut head = Vec::with_capacity(DETECT_LEN);
    if let Err(error) = (&mut source).take(DETECT_LEN as u64).read_to_end(&mut head) {
        return Err(AciError::Read(error));
    }
    let compression = detect_compression(&head)?;

    let body = BufReader::with_capacity(READ_BUFFER, Cursor::new(head).chain(&mut source));
    let decoder = decoder(body, compression, limits.max_window);
    let mut stream = HashedStream {
        inner: decoder,
        hasher: Hasher::new(Algorithm::Sha512),
        size: 0,
        limit: limits.max_uncompressed,
        failure: None,
        consumed,
    };
    let scanned = scan_archive(BufReader::with_capacity(READ_BUFFER, &mut stream), limits);
    // Dropping the decoder releases its borrow of `source`, whose failure decides how to report.
    let (hasher, size, failure) = stream.finish();
    let found = match scanned {
        Ok(found) => found,
        Err(ScanError::Layout(error)) => return Err(error),
        Err(ScanError::Io(error)) => {
            return Err(classify(
                error,
                source.failure,
                failure,
                compression,
                limits,
            ));
        }
    };
    Ok(AciInfo {
        image_id: format!("sha512-{}", hasher.finish().hex()),
        compression,
        uncompressed_size: size,
        manifest: found.manifest,
        manifest_bytes: found.manifest_bytes,
    })
}

/// A streaming decoder for `compression` over `body`, as [`read_aci`] uses: concatenated gzip
/// members, bzip2 and xz streams and zstd frames are all read, zstd frame checksums are verified,
/// and no xz dictionary or zstd window above `max_window` is allocated (such a stream fails a
/// read with [`io::ErrorKind::OutOfMemory`]). The output size is *not* capped: callers count
/// what they read against [`Limits::max_uncompressed`].
pub fn decoder<'a>(
    body: impl BufRead + 'a,
    compression: Compression,
    max_window: u64,
) -> Box<dyn Read + 'a> {
    match compression {
        Compression::None => Box::new(body),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(body)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(body)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            body,
            true,
            xz_memory_limit_kib(max_window),
        )),
        Compression::Zstd => Box::new(ZstdReader::new(body, max_window)),
    }
}

/// Names an I/O error by its origin: the source, the size cap, the decoder, or else the tar reader.
fn classify(
    error: io::Error,
    source_failure: Option<io::Error>,
    stream_failure: Option<StreamFailure>,
    compression: Compression,
    limits: &Limits,
) -> AciError {
    if let Some(source_error) = source_failure {
        return AciError::Read(source_error);
    }
    match stream_failure {
        Some(StreamFailure::TooLarge) => AciError::TooLarge {
            limit: limits.max_uncompressed,
        },
        Some(StreamFailure::Ratio) => AciError::Corrupt {
            compression,
            detail: format!(
                "it expands more than {MAX_RATIO} times its compressed size (a decompression bomb?): refused"
            ),
        },
        // The xz and zstd decoders report a window above the limit as OutOfMemory.
        Some(StreamFailure::Decoder) if error.kind() == io::ErrorKind::OutOfMemory => {
            AciError::WindowTooLarge {
                compression,
                limit: limits.max_window,
            }
        }
        Some(StreamFailure::Decoder) if is_truncation(&error) => AciError::Corrupt {
            compression,
            detail: "the stream ends early (a truncated download?)".to_owned(),
        },
        Some(StreamFailure::Decoder) => AciError::Corrupt {
            compression,
            detail: error.to_string(),
        },
        None => AciError::NotTar {
            compression,
            detail: error.to_string(),
        },
    }
}

/// True when the input ended before the decoder was done: an `UnexpectedEof` anywhere in the
/// error's chain (a decoder may wrap it in an error type of its own).
fn is_truncation(error: &io::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(io_error) = error.downcast_ref::<io::Error>()
            && io_error.kind() == io::ErrorKind::UnexpectedEof
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// lzma-rust2 limits decoder memory in KiB: the dictionary plus ~104 KiB of its own buffers.
fn xz_memory_limit_kib(max_window: u64) -> u32 {
    const DECODER_OVERHEAD_KIB: u64 = 128;
    u32::try_from(max_window / 1024 + DECODER_OVERHEAD_KIB).unwrap_or(u32::MAX)
}

/// The caller's reader, remembering its first error so that a failing network or file is
/// reported as such rather than as a corrupt archive.
struct Source<R> {
    inner: R,
    failure: Option<io::Error>,
    /// Compressed bytes read so far, shared with [`HashedStream`] for the ratio check.
    consumed: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        if let Ok(n) = &result {
            self.consumed.set(self.consumed.get() + *n as u64);
        }
        if let Err(error) = &result
            && error.kind() != io::ErrorKind::Interrupted
            && self.failure.is_none()
        {
            self.failure = Some(io::Error::new(error.kind(), error.to_string()));
        }
        result
    }
}

/// Why [`HashedStream`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamFailure {
    /// The decoder (or the source under it) returned an error.
    Decoder,
    /// The stream went past [`Limits::max_uncompressed`].
    TooLarge,
    /// The stream expanded more than [`MAX_RATIO`] times its compressed size.
    Ratio,
}

/// The decompressed tar stream: every byte read through it is counted and hashed exactly once.
struct HashedStream<'a> {
    inner: Box<dyn Read + 'a>,
    hasher: Hasher,
    size: u64,
    limit: u64,
    failure: Option<StreamFailure>,
    /// Compressed bytes the source has given, for the ratio check.
    consumed: std::rc::Rc<std::cell::Cell<u64>>,
}

impl HashedStream<'_> {
    /// Drops the decoder, returning the hasher, the byte count and any failure.
    fn finish(self) -> (Hasher, u64, Option<StreamFailure>) {
        (self.hasher, self.size, self.failure)
    }
}

impl Read for HashedStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for at most one byte past the limit: enough to know it is exceeded.
        let room = self.limit.saturating_sub(self.size).saturating_add(1);
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let read = match self.inner.read(&mut buf[..len]) {
            Ok(read) => read,
            Err(error) => {
                if error.kind() != io::ErrorKind::Interrupted {
                    self.failure.get_or_insert(StreamFailure::Decoder);
                }
                return Err(error);
            }
        };
        self.size += read as u64;
        if self.size > self.limit {
            self.failure = Some(StreamFailure::TooLarge);
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        if self.size > RATIO_GRACE && self.size / self.consumed.get().max(1) > MAX_RATIO {
            self.failure = Some(StreamFailure::Ratio);
            return Err(io::Error::other("decompression ratio limit exceeded"));
        }
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}

/// zstd through libzstd (the `zstd` crate, as bundles use it): concatenated frames and
/// skippable frames are read and every frame checksum is verified, all by libzstd. A frame whose
/// header asks for a window above the limit fails from its header, before any window is
/// allocated, with [`io::ErrorKind::OutOfMemory`].
///
/// libzstd takes the limit as a power of two ([`zstd_window_log_max`]); for a `max_window` that
/// is one, as [`DEFAULT_MAX_WINDOW`] is, the limit is exact.
struct ZstdReader<R: BufRead> {
    /// The decoder, or why libzstd could not set one up (reported by every read).
    decoder: io::Result<zstd::stream::read::Decoder<'static, R>>,
}

/// The smallest window log libzstd accepts as a limit: 1 KiB, the smallest window there is
/// (RFC 8878 §3.1.1.1.2).
const ZSTD_MIN_WINDOW_LOG: u32 = 10;
/// The largest window log libzstd decodes on 64-bit hosts (2 GiB).
const ZSTD_MAX_WINDOW_LOG: u32 = 31;

impl<R: BufRead> ZstdReader<R> {
    fn new(body: R, max_window: u64) -> ZstdReader<R> {
        let decoder = zstd::stream::read::Decoder::with_buffer(body).and_then(|mut decoder| {
            decoder.window_log_max(zstd_window_log_max(max_window))?;
            Ok(decoder)
        });
        ZstdReader { decoder }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let decoder = match &mut self.decoder {
            Ok(decoder) => decoder,
            Err(error) => return Err(io::Error::new(error.kind(), error.to_string())),
        };
        decoder.read(buf).map_err(|error| {
            if is_zstd_window_too_large(&error) {
                io::Error::new(io::ErrorKind::OutOfMemory, error.to_string())
            } else {
                error
            }
        })
    }
}

/// `max_window` as libzstd's window log limit: rounded down to a power of two, within the
/// range libzstd accepts (0 would mean libzstd's own default).
fn zstd_window_log_max(max_window: u64) -> u32 {
    max_window
        .checked_ilog2()
        .unwrap_or(0)
        .clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_MAX_WINDOW_LOG)
}

/// True for libzstd's "frame requires too much memory" error. The `zstd` crate reports libzstd
/// errors by libzstd's name for the code, so the name is asked of libzstd, not spelled here.
fn is_zstd_window_too_large(error: &io::Error) -> bool {
    use zstd::zstd_safe::{self, zstd_sys::ZSTD_ErrorCode};
    // libzstd returns error code `c` as the size_t `-c`.
    let code = (ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge as usize).wrapping_neg();
    error.kind() == io::ErrorKind::Other && error.to_string() == zstd_safe::get_error_name(code)
}

fn invalid_data(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// A layout error (already an [`AciError`]) or an I/O error to classify by origin.
enum ScanError {
    Layout(AciError),
    Io(io::Error),
}

impl From<io::Error> for ScanError {
    fn from(error: io::Error) -> ScanError {
        ScanError::Io(error)
    }
}

impl From<AciError> for ScanError {
    fn from(error: AciError) -> ScanError {
        ScanError::Layout(error)
    }
}

/// The manifest found while scanning.
struct Found {
    manifest: ImageManifest,
    manifest_bytes: Vec<u8>,
}

/// What GNU long name/link and PAX headers say about the entry that follows them.
#[derive(Default)]
struct Extended {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Option<Vec<PaxRecord>>,
}

impl Extended {
    fn is_empty(&self) -> bool {
        self.path.is_none() && self.link.is_none() && self.pax.is_none()
    }

    fn pax_value(&self, key: &[u8]) -> Option<&[u8]> {
        self.pax.as_ref().and_then(|records| {
            records
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_slice())
        })
    }
}

/// Walks the tar entries, validating the layout and reading the manifest, then drains the
/// stream so that trailing blocks are hashed too.
///
/// Entries are read raw: the tar crate would buffer GNU long names and PAX headers of any size,
/// so they are handled here with [`MAX_EXTENDED_HEADER`].
fn scan_archive(reader: impl Read, limits: &Limits) -> Result<Found, ScanError> {
    let mut archive = tar::Archive::new(reader);
    let mut found = None;
    let mut rootfs = false;
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let mut extended = Extended::default();
    for entry in archive.entries()?.raw(true) {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
            let data = read_extended(&mut entry)?;
            let (slot, name) = if kind.is_gnu_longname() {
                (&mut extended.path, "GNU long name")
            } else if kind.is_gnu_longlink() {
                (&mut extended.link, "GNU long link")
            } else {
                let records = parse_pax(&data).map_err(|reason| unsupported(&entry, reason))?;
                if extended.pax.replace(records).is_some() {
                    return Err(unsupported(&entry, "two PAX headers for one entry".into()).into());
                }
                continue;
            };
            // A GNU name ends with a NUL that is not part of the path.
            let value = data.strip_suffix(&[0]).unwrap_or(&data).to_vec();
            if slot.replace(value).is_some() {
                return Err(
                    unsupported(&entry, format!("two {name} headers for one entry")).into(),
                );
            }
            continue;
        }
        if kind.is_pax_global_extensions() {
            // Archive-wide metadata (git archive writes one); it names no file.
            continue;
        }
        let described = std::mem::take(&mut extended);
        let role = admit_entry(&entry, &described, &mut seen, &mut rootfs, limits)?;
        if role == Role::Manifest {
            let manifest_bytes = read_manifest(&mut entry, limits)?;
            let manifest = parse_manifest(&manifest_bytes)?;
            found = Some(Found {
                manifest,
                manifest_bytes,
            });
        }
    }
    if !extended.is_empty() {
        return Err(ScanError::Io(invalid_data(
            "the archive ends with an extended header that describes no entry",
        )));
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())?;
    let found = found.ok_or(AciError::NoManifest)?;
    if !rootfs {
        return Err(AciError::NoRootfs.into());
    }
    Ok(found)
}

/// Where an entry sits in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Manifest,
    Rootfs,
    InRootfs,
    /// `.` (an archive made with `tar -C dir .` starts with `./`).
    CurrentDir,
}

fn admit_entry<R: Read>(
    entry: &tar::Entry<'_, R>,
    extended: &Extended,
    seen: &mut HashSet<[u8; 32]>,
    rootfs: &mut bool,
    limits: &Limits,
) -> Result<Role, AciError> {
    let header = entry.header();
    // GNU long names win over PAX paths, as in Go's archive/tar and the tar crate.
    let raw_path = match (&extended.path, extended.pax_value(b"path")) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => path.to_vec(),
        (None, None) => header.path_bytes().into_owned(),
    };
    let path = String::from_utf8_lossy(&raw_path).into_owned();

    if let Some(size) = extended.pax_value(b"size") {
        // The tar crate skips by the header's size in raw mode; an archive whose PAX size
        // disagrees would parse differently elsewhere, so it is refused.
        let size = std::str::from_utf8(size)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        if size != Some(entry.size()) {
            return Err(AciError::UnsupportedEntry {
                path,
                reason: "its PAX size disagrees with its tar header".to_owned(),
            });
        }
    }
    let kind = header.entry_type();
    if kind.is_gnu_sparse() && header.as_gnu().is_some_and(|gnu| gnu.is_extended()) {
        return Err(AciError::UnsupportedEntry {
            path,
            reason: "GNU sparse files with extended sparse headers are not supported".to_owned(),
        });
    }

    let clean =
        clean_path(&raw_path).ok_or_else(|| AciError::EscapingEntry { path: path.clone() })?;
    let role = match clean.as_slice() {
        b"" => return Ok(Role::CurrentDir),
        b"manifest" => Role::Manifest,
        b"rootfs" => Role::Rootfs,
        other if other.starts_with(b"rootfs/") => Role::InRootfs,
        _ => return Err(AciError::UnexpectedEntry { path }),
    };
    // Old (V7) archives mark directories with a regular type and a trailing `/`.
    let is_dir = kind.is_dir() || (header.as_old().linkflag[0] == 0 && raw_path.ends_with(b"/"));
    match role {
        Role::Manifest if is_dir || !(kind.is_file() || kind.is_contiguous()) => {
            return Err(AciError::WrongEntryType {
                path: "manifest",
                expected: "regular file",
                found: kind_name(kind, is_dir),
            });
        }
        Role::Rootfs if !is_dir => {
            return Err(AciError::WrongEntryType {
                path: "rootfs",
                expected: "directory",
                found: kind_name(kind, is_dir),
            });
        }
        Role::Rootfs => *rootfs = true,
        _ => {}
    }
    if kind.is_hard_link() {
        let target = match (&extended.link, extended.pax_value(b"linkpath")) {
            (Some(link), _) => link.clone(),
            (None, Some(link)) => link.to_vec(),
            (None, None) => header.link_name_bytes().unwrap_or_default().into_owned(),
        };
        let inside = clean_path(&target).is_some_and(|clean| clean.starts_with(b"rootfs/"));
        if !inside {
            return Err(AciError::EscapingLink {
                path,
                target: String::from_utf8_lossy(&target).into_owned(),
            });
        }
    }
    if seen.len() as u64 >= limits.max_entries {
        return Err(AciError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    // Paths are kept as SHA-256 fingerprints: 32 bytes each, however long the names.
    if !seen.insert(sha2::Sha256::digest(&clean).into()) {
        return Err(AciError::DuplicateEntry { path });
    }
    Ok(role)
}

fn kind_name(kind: tar::EntryType, is_dir: bool) -> &'static str {
    if is_dir {
        "directory"
    } else if kind.is_file() || kind.is_contiguous() {
        "regular file"
    } else if kind.is_symlink() {
        "symlink"
    } else if kind.is_hard_link() {
        "hard link"
    } else if kind.is_character_special() || kind.is_block_special() {
        "device"
    } else if kind.is_fifo() {
        "fifo"
    } else {
        "special entry"
    }
}

/// The path without `.` components and repeated or trailing `/` (`""` for `.`); `None` when it
/// is absolute or has a `..` component.
fn clean_path(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.starts_with(b"/") {
        return None;
    }
    let mut clean = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return None,
            name => {
                if !clean.is_empty() {
                    clean.push(b'/');
                }
                clean.extend_from_slice(name);
            }
        }
    }
    Some(clean)
}

fn unsupported<R: Read>(entry: &tar::Entry<'_, R>, reason: String) -> AciError {
    AciError::UnsupportedEntry {
        path: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        reason,
    }
}

/// The whole data of a GNU long name/link or PAX entry, capped at [`MAX_EXTENDED_HEADER`].
fn read_extended<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>, ScanError> {
    let size = entry.size();
    if size > MAX_EXTENDED_HEADER {
        return Err(unsupported(
            entry,
            format!(
                "a {size}-byte extended header (more than {} is refused)",
                human_size(MAX_EXTENDED_HEADER)
            ),
        )
        .into());
    }
    read_entry(entry, size)
}

fn read_manifest<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    limits: &Limits,
) -> Result<Vec<u8>, ScanError> {
    let size = entry.size();
    if size > limits.max_manifest {
        return Err(AciError::ManifestTooLarge {
            size,
            limit: limits.max_manifest,
        }
        .into());
    }
    read_entry(entry, size)
}

/// Reads an entry's `size` bytes; fewer means the archive is truncated.
fn read_entry<R: Read>(entry: &mut tar::Entry<'_, R>, size: u64) -> Result<Vec<u8>, ScanError> {
    // `size` is within a limit already; the capacity is only a hint.
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut data)?;
    if data.len() as u64 != size {
        return Err(ScanError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the archive ends inside entry `{}`",
                String::from_utf8_lossy(&entry.path_bytes())
            ),
        )));
    }
    Ok(data)
}

/// One PAX record: key and value, as bytes.
pub type PaxRecord = (Vec<u8>, Vec<u8>);

/// PAX records, `"<length> <key>=<value>\n"` each, in order (POSIX pax "Extended Header");
/// `Err` describes a malformed header.
pub fn parse_pax(mut data: &[u8]) -> Result<Vec<PaxRecord>, String> {
    let malformed = || "malformed PAX header".to_owned();
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
        let digits = &data[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(malformed());
        }
        let length: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(malformed)?;
        if length <= space + 1 || length > data.len() || data[length - 1] != b'\n' {
            return Err(malformed());
        }
        let record = &data[space + 1..length - 1];
        let equals = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(malformed)?;
        records.push((record[..equals].to_vec(), record[equals + 1..].to_vec()));
        data = &data[length..];
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::appc::aci::manifest::tests::MANIFEST;

    /// One tar entry, its path written raw into the header so that hostile paths can be built.
    #[derive(Clone)]
    struct Item {
        path: Vec<u8>,
        kind: u8,
        data: Vec<u8>,
        link: Vec<u8>,
    }

    fn item(path: &str, kind: u8, data: &[u8]) -> Item {
        Item {
            path: path.as_bytes().to_vec(),
            kind,
            data: data.to_vec(),
            link: Vec::new(),
        }
    }

    fn file(path: &str, data: &[u8]) -> Item {
        item(path, b'0', data)
    }

    fn dir(path: &str) -> Item {
        item(path, b'5', b"")
    }

    fn link(path: &str, kind: u8, target: &str) -> Item {
        Item {
            link: target.as_bytes().to_vec(),
            ..item(path, kind, b"")
        }
    }

    fn manifest() -> Item {
        file("manifest", MANIFEST.as_bytes())
    }

    /// A GNU long-name header naming the entry after it.
    fn long_name(path: &str) -> Item {
        let mut data = path.as_bytes().to_vec();
        data.push(0);
        item("././@LongLink", b'L', &data)
    }

    /// A PAX header with these records.
    fn pax(records: &[(&str, &[u8])]) -> Item {
        let mut data = Vec::new();
        for (key, value) in records {
            let rest = key.len() + value.len() + 3;
            let mut length = rest + 1;
            while rest + length.to_string().len() != length {
                length = rest + length.to_string().len();
            }
            data.extend_from_slice(format!("{length} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        item("PaxHeaders/entry", b'x', &data)
    }

    /// Deterministic incompressible bytes.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn tar_of(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_ustar();
            let old = header.as_old_mut();
            old.name[..item.path.len()].copy_from_slice(&item.path);
            old.linkname[..item.link.len()].copy_from_slice(&item.link);
            old.linkflag = [item.kind];
            header.set_size(item.data.len() as u64);
            header.set_mode(0o755);
            header.set_mtime(1_700_000_000);
            header.set_cksum();
            builder
                .append(&header, item.data.as_slice())
                .expect("writing to a Vec");
        }
        builder.into_inner().expect("writing to a Vec")
    }

    /// A valid image whose 200 KiB binary spans several read buffers of every decoder.
    fn image_items(manifest_first: bool) -> Vec<Item> {
        let mut items = vec![
            dir("rootfs"),
            dir("rootfs/usr/"),
            dir("rootfs/usr/bin"),
            file("rootfs/usr/bin/app", &noise(200 * 1024, 7)),
            file("rootfs/etc/motd", &b"hello\n".repeat(5000)),
            link("rootfs/bin", b'2', "/usr/bin"),
        ];
        if manifest_first {
            items.insert(0, manifest());
        } else {
            items.push(manifest());
        }
        items
    }

    fn image_tar() -> Vec<u8> {
        let mut tar = tar_of(&image_items(false));
        // GNU tar pads to a 10 KiB record: trailing zeros are part of the image ID.
        tar.resize(tar.len().next_multiple_of(10240) + 10240, 0);
        tar
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("writing to a Vec");
        encoder.finish().expect("writing to a Vec")
    }

    fn bzip2(data: &[u8]) -> Vec<u8> {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        encoder.write_all(data).expect("writing to a Vec");
        encoder.finish().expect("writing to a Vec")
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let options = lzma_rust2::XzOptions::with_preset(1);
        let mut encoder = lzma_rust2::XzWriter::new(Vec::new(), options).expect("xz options");
        encoder.write_all(data).expect("writing to a Vec");
        encoder.finish().expect("writing to a Vec")
    }

    /// zstd as the `zstd` CLI writes it: a frame with a checksum.
    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd_with(data, |_| Ok(()))
    }

    /// zstd with a checksum and whatever else `configure` sets, streamed (so the frame header
    /// declares a window, not a content size).
    fn zstd_with(
        data: &[u8],
        configure: impl FnOnce(&mut zstd::Encoder<'static, Vec<u8>>) -> io::Result<()>,
    ) -> Vec<u8> {
        let mut encoder = zstd::Encoder::new(Vec::new(), 1).expect("zstd level 1");
        encoder.include_checksum(true).expect("checksum flag");
        configure(&mut encoder).expect("zstd parameters");
        encoder.write_all(data).expect("writing to a Vec");
        encoder.finish().expect("writing to a Vec")
    }

    fn plain(data: &[u8]) -> Vec<u8> {
        data.to_vec()
    }

    type Encoder = fn(&[u8]) -> Vec<u8>;

    const ENCODERS: [(Compression, Encoder); 5] = [
        (Compression::None, plain),
        (Compression::Gzip, gzip),
        (Compression::Bzip2, bzip2),
        (Compression::Xz, xz),
        (Compression::Zstd, zstd),
    ];

    /// The image ID as `sha512sum` computes it, without going through this module's hasher.
    fn expected_id(tar: &[u8]) -> String {
        format!("sha512-{}", hex::encode(sha2::Sha512::digest(tar)))
    }

    fn read(body: &[u8]) -> Result<AciInfo, AciError> {
        read_aci(body, &Limits::default())
    }

    #[test]
    fn image_id_is_the_sha512_of_the_uncompressed_tar() {
        // Bytes after the end-of-archive blocks count too, also beyond what the tar reader
        // buffers ahead.
        let mut long_tail = image_tar();
        long_tail.resize(long_tail.len() + 3 * READ_BUFFER, 0);
        for tar in [image_tar(), long_tail] {
            for (compression, encode) in ENCODERS {
                let body = encode(&tar);
                let info = read(&body).unwrap_or_else(|e| panic!("{compression}: {e}"));
                assert_eq!(info.image_id, expected_id(&tar), "{compression}");
                assert_eq!(info.compression, compression);
                assert_eq!(info.uncompressed_size, tar.len() as u64, "{compression}");
                assert_eq!(info.manifest.name, "example.com/app");
                assert_eq!(info.manifest_bytes, MANIFEST.as_bytes());
            }
        }
    }

    #[test]
    fn manifest_may_be_the_first_or_the_last_entry() {
        for manifest_first in [true, false] {
            let tar = tar_of(&image_items(manifest_first));
            let info = read(&gzip(&tar)).expect("valid image");
            assert_eq!(info.image_id, expected_id(&tar));
            assert_eq!(info.manifest.labels["version"], "1.0.0");
        }
    }

    #[test]
    fn concatenated_streams_form_one_archive() {
        let tar = image_tar();
        let (first, second) = tar.split_at(tar.len() / 3);
        // A zstd skippable frame (magic 0x184d2a5e, 3 bytes of payload) between the frames.
        let skippable = [0x5e, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
        for (compression, encode) in ENCODERS.into_iter().skip(1) {
            let mut body = encode(first);
            if compression == Compression::Zstd {
                body.extend_from_slice(&skippable);
            }
            body.extend(encode(second));
            let info = read(&body).unwrap_or_else(|e| panic!("{compression}: {e}"));
            assert_eq!(info.image_id, expected_id(&tar), "{compression}");
        }
    }

    #[test]
    fn detects_compression_by_magic_bytes() {
        let mut tar_head = vec![0u8; 512];
        tar_head[257..262].copy_from_slice(b"ustar");
        let html = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>";
        let cases: Vec<(&str, Vec<u8>, Result<Compression, &str>)> = vec![
            ("gzip", vec![0x1f, 0x8b, 8, 0], Ok(Compression::Gzip)),
            ("bzip2", b"BZh91AY&SY".to_vec(), Ok(Compression::Bzip2)),
            (
                "xz",
                vec![0xfd, b'7', b'z', b'X', b'Z', 0, 0, 4],
                Ok(Compression::Xz),
            ),
            (
                "zstd",
                vec![0x28, 0xb5, 0x2f, 0xfd, 0x24],
                Ok(Compression::Zstd),
            ),
            ("tar", tar_head.clone(), Ok(Compression::None)),
            (
                "tar, 263 bytes",
                tar_head[..263].to_vec(),
                Ok(Compression::None),
            ),
            (
                "tar, 262 bytes",
                tar_head[..262].to_vec(),
                Err("only 262 bytes"),
            ),
            (
                "html",
                html.to_vec(),
                Err("the body is HTML (an error page?), "),
            ),
            (
                "json",
                br#"{"errors":[]}"#.to_vec(),
                Err("the body is JSON (an API error?), 13 bytes"),
            ),
            (
                "text",
                b"Not Found\n".to_vec(),
                Err("the body is plain text, 10 bytes; an ACI is a tar archive"),
            ),
            ("bzip2 magic cut short", b"BZ".to_vec(), Err("plain text")),
            ("empty", Vec::new(), Err("the body is empty")),
            ("short binary", vec![0u8; 100], Err("only 100 bytes")),
            (
                "v7 tar (no ustar magic)",
                vec![0u8; 512],
                Err("unknown binary format, 512 bytes or more"),
            ),
            ("noise", noise(4096, 3), Err("unknown binary format")),
        ];
        for (name, head, expected) in cases {
            match (detect_compression(&head), expected) {
                (Ok(found), Ok(expected)) => assert_eq!(found, expected, "{name}"),
                (Err(error), Err(expected)) => {
                    let message = error.to_string();
                    assert!(message.starts_with("not an ACI"), "{name}: {message}");
                    assert!(message.contains(expected), "{name}: {message}");
                }
                (found, expected) => panic!("{name}: got {found:?}, expected {expected:?}"),
            }
        }
        // What was found is described, never quoted: the body may be any file.
        for secret in [
            &b"root:$6$s3cr3tHash:19000:0:99999:7:::\n"[..],
            b"<p>s3cr3tHash</p>",
        ] {
            let message = detect_compression(secret).expect_err("text").to_string();
            assert!(!message.contains("s3cr3t"), "{message}");
        }
    }

    #[test]
    fn damaged_streams_are_corrupt_not_tar() {
        let tar = image_tar();
        for (compression, encode) in ENCODERS {
            let body = encode(&tar);
            let truncated = &body[..body.len() / 2];
            let mut flipped = body.clone();
            let middle = flipped.len() / 2;
            for byte in &mut flipped[middle..middle + 4] {
                *byte ^= 0x55;
            }
            let mut cases = vec![("truncated", truncated.to_vec())];
            // Flipped bytes in a plain tar's file data only change the ID (tested below).
            if compression != Compression::None {
                cases.push(("flipped", flipped));
            }
            for (damage, damaged) in cases {
                let error = read(&damaged).expect_err(damage);
                match (compression, &error) {
                    (Compression::None, AciError::NotTar { .. }) => {}
                    (
                        _,
                        AciError::Corrupt {
                            compression: c,
                            detail,
                        },
                    ) if *c == compression => {
                        if damage == "truncated" {
                            assert_eq!(detail, "the stream ends early (a truncated download?)");
                        }
                    }
                    _ => panic!("{compression} {damage}: {error:?}"),
                }
            }
        }
    }

    #[test]
    fn flipped_bytes_in_a_plain_tar_change_the_id() {
        let tar = image_tar();
        let mut flipped = tar.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        let info = read(&flipped).expect("file data is not validated");
        assert_ne!(info.image_id, expected_id(&tar));
        assert_eq!(info.image_id, expected_id(&flipped));
    }

    #[test]
    fn zstd_checksums_are_verified() {
        let mut body = zstd(&image_tar());
        let last = body.len() - 1;
        body[last] ^= 1;
        let error = read(&body).expect_err("checksum mismatch");
        assert_eq!(
            error.to_string(),
            "corrupt zstd stream: Restored data doesn't match checksum"
        );
    }

    #[test]
    fn a_zstd_window_over_the_limit_is_refused_from_the_frame_header() {
        // What `zstd --long=28` writes: a 256 MiB window, twice the default limit.
        let body = zstd_with(&image_tar(), |encoder| {
            encoder.long_distance_matching(true)?;
            encoder.window_log(28)
        });
        // Magic, descriptor (checksum flag only), window descriptor (exponent 28 - 10, no mantissa).
        let header: [u8; 6] = [0x28, 0xb5, 0x2f, 0xfd, 0x04, 18 << 3];
        assert_eq!(body[..header.len()], header);
        let expected = "the zstd stream needs a decoder window over 128 MiB: refused";
        let error = read(&body).expect_err("window over the limit");
        assert!(
            matches!(error, AciError::WindowTooLarge { .. }),
            "{error:?}"
        );
        assert_eq!(error.to_string(), expected);
        // The header alone is refused alike: the window is judged before any block is decoded,
        // so before it is allocated.
        let error = read(&header).expect_err("window over the limit");
        assert_eq!(error.to_string(), expected);
        // Within the limit the same frame decodes.
        let roomy = Limits {
            max_window: 256 << 20,
            ..Limits::default()
        };
        let info = read_aci(body.as_slice(), &roomy).expect("window within the limit");
        assert_eq!(info.image_id, expected_id(&image_tar()));
    }

    #[test]
    fn non_tar_bodies_are_refused() {
        let html = b"<html><body><h1>Service Unavailable</h1></body></html>\n".repeat(20);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "html",
                html.clone(),
                "not an ACI: the body is HTML (an error page?), 512 bytes or more",
            ),
            (
                "noise",
                noise(100_000, 11),
                "not an ACI: unknown binary format",
            ),
            (
                "gzipped html",
                gzip(&html),
                "not an ACI: the decompressed gzip body is not a valid tar archive",
            ),
            (
                "xz noise",
                xz(&noise(10_000, 5)),
                "not an ACI: the decompressed xz body is not a valid tar archive",
            ),
            ("gzipped nothing", gzip(b""), "the archive has no manifest"),
        ];
        for (name, body, expected) in cases {
            let error = read(&body).expect_err(name);
            assert!(error.to_string().starts_with(expected), "{name}: {error}");
        }
    }

    /// A reader that fails after `len` bytes, like a dropped connection.
    struct FailingAfter<'a>(&'a [u8]);

    impl Read for FailingAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection reset",
                ));
            }
            let len = buf.len().min(self.0.len()).min(1000);
            buf[..len].copy_from_slice(&self.0[..len]);
            self.0 = &self.0[len..];
            Ok(len)
        }
    }

    #[test]
    fn a_failing_source_is_a_read_error_not_corruption() {
        let tar = image_tar();
        for (compression, encode) in ENCODERS {
            let body = encode(&tar);
            let error = read_aci(FailingAfter(&body[..body.len() / 2]), &Limits::default())
                .expect_err("the source fails");
            match &error {
                AciError::Read(cause) => assert_eq!(cause.kind(), io::ErrorKind::ConnectionReset),
                other => panic!("{compression}: {other:?}"),
            }
        }
        let error = read_aci(FailingAfter(b""), &Limits::default()).expect_err("fails at once");
        assert!(matches!(error, AciError::Read(_)), "{error:?}");
    }

    #[test]
    fn layout_rules_are_enforced() {
        let rootfs = || dir("rootfs");
        let cases: Vec<(&str, Vec<Item>, &str)> = vec![
            (
                "no manifest",
                vec![rootfs(), file("rootfs/a", b"a")],
                "the archive has no manifest",
            ),
            (
                "no rootfs entry",
                vec![manifest(), file("rootfs/a", b"a")],
                "the archive has no `rootfs` directory entry",
            ),
            (
                "rootfs is a file",
                vec![manifest(), file("rootfs", b"")],
                "`rootfs` must be a directory, but the archive has a regular file",
            ),
            (
                "manifest is a directory",
                vec![rootfs(), dir("manifest")],
                "`manifest` must be a regular file, but the archive has a directory",
            ),
            (
                "manifest is a symlink",
                vec![rootfs(), link("manifest", b'2', "rootfs/m")],
                "`manifest` must be a regular file, but the archive has a symlink",
            ),
            (
                "duplicate file",
                vec![
                    manifest(),
                    rootfs(),
                    file("rootfs/a", b"1"),
                    file("rootfs/a", b"2"),
                ],
                "duplicate entry `rootfs/a` in the archive",
            ),
            (
                "duplicate spelled differently",
                vec![manifest(), rootfs(), dir("rootfs/a"), dir("./rootfs//a/.")],
                "duplicate entry `./rootfs//a/.` in the archive",
            ),
            (
                "two manifests",
                vec![manifest(), rootfs(), manifest()],
                "duplicate entry `manifest` in the archive",
            ),
            (
                "parent",
                vec![manifest(), rootfs(), file("../x", b"")],
                "entry `../x` escapes the image",
            ),
            (
                "absolute",
                vec![manifest(), rootfs(), file("/abs", b"")],
                "entry `/abs` escapes the image",
            ),
            (
                "parent inside rootfs",
                vec![manifest(), rootfs(), file("rootfs/../manifest", b"")],
                "entry `rootfs/../manifest` escapes the image",
            ),
            (
                "lookalike prefix",
                vec![manifest(), rootfs(), file("rootfsX/y", b"")],
                "entry `rootfsX/y` is outside `rootfs/`",
            ),
            (
                "other top level",
                vec![manifest(), rootfs(), dir("etc")],
                "entry `etc` is outside `rootfs/`",
            ),
            (
                "hard link out",
                vec![
                    manifest(),
                    rootfs(),
                    link("rootfs/l", b'1', "../etc/shadow"),
                ],
                "hard link `rootfs/l` points to `../etc/shadow`, outside `rootfs/`",
            ),
            (
                "hard link to the manifest",
                vec![manifest(), rootfs(), link("rootfs/l", b'1', "manifest")],
                "hard link `rootfs/l` points to `manifest`",
            ),
            (
                "GNU long name escapes",
                vec![
                    manifest(),
                    rootfs(),
                    long_name(&format!("../{}", "x".repeat(200))),
                    file("short", b""),
                ],
                "entry `../xxxxxxxx",
            ),
            (
                "PAX path escapes",
                vec![
                    manifest(),
                    rootfs(),
                    pax(&[("path", b"../pax")]),
                    file("rootfs/benign", b""),
                ],
                "entry `../pax` escapes the image",
            ),
            (
                "PAX size disagrees",
                vec![
                    manifest(),
                    rootfs(),
                    pax(&[("size", b"5")]),
                    file("rootfs/a", b"abc"),
                ],
                "entry `rootfs/a`: its PAX size disagrees with its tar header",
            ),
            (
                "huge PAX header",
                vec![
                    manifest(),
                    rootfs(),
                    pax(&[("comment", &vec![b'a'; 2 << 20])]),
                    dir("rootfs/a"),
                ],
                "extended header (more than 1 MiB is refused)",
            ),
            (
                "malformed PAX header",
                vec![
                    manifest(),
                    rootfs(),
                    item("PaxHeaders/x", b'x', b"99 path=x\n"),
                    dir("rootfs/a"),
                ],
                "malformed PAX header",
            ),
            (
                "dangling extended header",
                vec![manifest(), rootfs(), long_name("rootfs/never")],
                "extended header that describes no entry",
            ),
            (
                "invalid manifest",
                vec![file("manifest", b"{}"), rootfs()],
                "invalid image manifest: acKind is missing",
            ),
        ];
        for (name, items, expected) in cases {
            let error = read(&tar_of(&items)).expect_err(name);
            assert!(error.to_string().contains(expected), "{name}: {error}");
        }
    }

    #[test]
    fn accepted_layouts() {
        let long = format!("rootfs/{}/file", "d".repeat(150));
        let cases: Vec<(&str, Vec<Item>)> = vec![
            (
                "./ prefixes",
                vec![
                    dir("./"),
                    dir("./rootfs/"),
                    file("./rootfs/a", b"a"),
                    file("./manifest", MANIFEST.as_bytes()),
                ],
            ),
            (
                "links inside rootfs",
                vec![
                    manifest(),
                    dir("rootfs"),
                    file("rootfs/a", b"a"),
                    link("rootfs/hard", b'1', "./rootfs/a"),
                    link("rootfs/abs", b'2', "/etc/passwd"),
                    link("rootfs/up", b'2', "../../x"),
                ],
            ),
            (
                "GNU long name and PAX path inside rootfs",
                vec![
                    manifest(),
                    dir("rootfs"),
                    long_name(&long),
                    file("truncated", b"x"),
                    pax(&[("path", format!("{long}2").as_bytes()), ("size", b"1")]),
                    file("rootfs/short", b"y"),
                ],
            ),
            (
                "PAX global header",
                vec![
                    pax(&[("comment", b"git")]).kind_as(b'g'),
                    manifest(),
                    dir("rootfs"),
                ],
            ),
            ("v7 directory", vec![manifest(), item("rootfs/", 0, b"")]),
            (
                "devices and fifos",
                vec![
                    manifest(),
                    dir("rootfs"),
                    item("rootfs/null", b'3', b""),
                    item("rootfs/fifo", b'6', b""),
                ],
            ),
        ];
        for (name, items) in cases {
            let tar = tar_of(&items);
            let info = read(&tar).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(info.image_id, expected_id(&tar), "{name}");
        }
    }

    impl Item {
        fn kind_as(self, kind: u8) -> Item {
            Item { kind, ..self }
        }
    }

    #[test]
    fn limits_are_enforced() {
        let tar = image_tar();
        let exact = Limits {
            max_uncompressed: tar.len() as u64,
            ..Limits::default()
        };
        for (compression, encode) in ENCODERS {
            let body = encode(&tar);
            read_aci(body.as_slice(), &exact).unwrap_or_else(|e| panic!("{compression}: {e}"));
            let one_less = Limits {
                max_uncompressed: tar.len() as u64 - 1,
                ..Limits::default()
            };
            let error = read_aci(body.as_slice(), &one_less).expect_err("over the cap");
            assert!(
                matches!(error, AciError::TooLarge { .. }),
                "{compression}: {error:?}"
            );
        }

        let small = |limits: Limits| move |body: &[u8]| read_aci(body, &limits);
        let manifest_message = format!(
            "the manifest is {} bytes, more than the 100 bytes limit: refused",
            MANIFEST.len()
        );
        let cases: Vec<(&str, Result<AciInfo, AciError>, &str)> = vec![
            (
                "manifest",
                small(Limits {
                    max_manifest: 100,
                    ..Limits::default()
                })(&tar),
                &manifest_message,
            ),
            (
                "entries",
                small(Limits {
                    max_entries: 3,
                    ..Limits::default()
                })(&tar),
                "the archive has more than 3 entries: refused",
            ),
            (
                "xz dictionary",
                small(Limits {
                    max_window: 64 << 10,
                    ..Limits::default()
                })(&xz(&tar)),
                "the xz stream needs a decoder window over 64 KiB: refused",
            ),
            (
                "zstd window",
                small(Limits {
                    max_window: 1 << 10,
                    ..Limits::default()
                })(&zstd(&tar)),
                "the zstd stream needs a decoder window over 1 KiB: refused",
            ),
            (
                "gzip bomb",
                small(Limits {
                    max_uncompressed: 1 << 20,
                    ..Limits::default()
                })(&gzip(&tar_of(&[
                    manifest(),
                    dir("rootfs"),
                    file("rootfs/zeros", &vec![0; 64 << 20]),
                ]))),
                "more than 1 MiB uncompressed: refused",
            ),
        ];
        for (name, result, expected) in cases {
            let error = result.expect_err(name);
            assert_eq!(
                error.to_string().split(" (").next(),
                expected.split(" (").next(),
                "{name}"
            );
            assert!(error.to_string().starts_with(expected), "{name}: {error}");
        }
    }

    #[test]
    fn an_archive_expanding_past_the_ratio_cap_is_refused() {
        // 80 MiB of zeros in one file: bzip2 squeezes it thousands of times,
        // past MAX_RATIO once the first RATIO_GRACE bytes are out.
        let zeros = vec![0u8; 80 << 20];
        let archive = tar_of(&[dir("rootfs"), file("rootfs/zeros", &zeros), manifest()]);
        let error = read_aci(&bzip2(&archive)[..], &Limits::default()).expect_err("refused");
        assert!(error.to_string().contains("decompression bomb"), "{error}");
        // The same file gzip-compressed stays under the cap (deflate tops out near 1030:1).
        assert!(read_aci(&gzip(&archive)[..], &Limits::default()).is_ok());
    }
}
