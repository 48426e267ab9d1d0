//! Reading a tar stream entry by entry, with bounded memory, the way Go's `archive/tar`
//! (and so `umoci`, containerd and Docker) reads layers.
//!
//! Formats: V7, ustar (with its name prefix), star, GNU (long names and links `L`/`K`, old
//! sparse files `S` with their extension blocks), PAX (`x` records: `path`, `linkpath`,
//! `size`, `uid`, `gid`, `mtime`, `SCHILY.xattr.*`, GNU sparse 0.0, 0.1 and 1.0); numeric
//! fields in octal or base-256. Global PAX headers (`g`) are skipped.
//!
//! Invariants:
//! - Header blocks are checksummed; paths and link targets are handed on *raw*, for the
//!   caller to clean and refuse ([`crate::fsutil::tree::clean`]). Nothing here touches the
//!   file system.
//! - Memory is bounded: each GNU long name, PAX header and sparse map is at most
//!   [`aci::MAX_EXTENDED_HEADER`] bytes, a sparse map at most [`MAX_SPARSE_FRAGMENTS`]
//!   runs; an archive has at most `max_entries` entries; the holes of a layer's sparse files
//!   add at most [`aci::DEFAULT_MAX_UNCOMPRESSED`] bytes to it.
//! - The end: two zero blocks, or the end of the stream at a header boundary or inside the
//!   padding after an entry's data (Go's reader stops there too; `umoci insert` writes no
//!   padding and no trailer). A lone zero block between entries is skipped. What follows
//!   the two zero blocks is left to the caller (which reads and hashes it, and ignores it,
//!   as runtimes do).
//! - Refused as malformed: a stream that ends inside a header or inside an entry's data; a
//!   bad checksum or number; sizes that disagree (a non-zero header size other than the PAX
//!   `size`; a sparse map whose runs do not add up to the data that follows, overlap, or
//!   pass the file's size; data after a header-only entry such as a link or directory,
//!   which tar readers disagree about); an extended header that describes no entry; entry
//!   types layers do not use (GNU volume labels, dump directories, multi-volume parts).

use std::io::{self, Read};

use crate::appc::aci::{self, PaxRecord};
use crate::fsutil::tree::show;

/// Whose fault a failed render is, for the error's wording and hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The layer tries to write outside the target or through a link.
    Hostile,
    /// The layer breaks the tar format or contradicts itself.
    Malformed,
    /// The layer needs more than this machine or imagelock allows: a name longer than the
    /// file system's limit, a full disk, more entries or bytes than imagelock renders.
    Limit,
    /// Writing failed here for another reason (permissions, I/O errors).
    Local,
}

/// A tar block.
const BLOCK: usize = 512;

/// Most runs a sparse map may have (GNU tar stores one per region of data, so real files
/// have a handful; this keeps the map's memory to a few MiB).
pub const MAX_SPARSE_FRAGMENTS: usize = 1 << 16;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (also "contiguous" and sparse files).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry.
    HardLink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::HardLink => "hard link",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
            Kind::Fifo => "fifo",
        }
    }
}

/// One run of data in a sparse file: where it goes in the file, and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset in the file.
    pub offset: u64,
    /// Bytes of data.
    pub length: u64,
}

/// One entry's header, with GNU and PAX extensions applied.
#[derive(Debug, Clone)]
pub struct Head {
    /// The path as written (not cleaned).
    pub path: Vec<u8>,
    /// Symlink target or hard-link target, as written.
    pub link: Vec<u8>,
    /// The entry type.
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time: seconds, nanoseconds.
    pub mtime: (i64, u32),
    /// The file's size (regular files; for sparse files, holes included).
    pub size: u64,
    /// For sparse files, where the data goes: the data handed to the visitor is these runs
    /// one after another, and the rest of the file (up to `size`) is holes.
    pub sparse: Option<Vec<Fragment>>,
    /// Device major and minor numbers (devices).
    pub device: (u32, u32),
    /// `SCHILY.xattr.*` PAX records: (attribute name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Head {
    /// The bytes of data the visitor is handed: the file's size, or a sparse file's runs.
    pub fn data_len(&self) -> u64 {
        match &self.sparse {
            Some(runs) => runs.iter().map(|r| r.length).sum(),
            None => self.size,
        }
    }
}

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or decompressing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The archive is malformed or asks for more than the limits allow.
    #[error("{at}: {reason}")]
    Refused {
        /// Where: "entry `PATH`", or a header's offset and the entry before it.
        at: String,
        /// Whose fault it is.
        fault: Fault,
        /// What is wrong.
        reason: String,
    },
    /// The visitor refused an entry.
    #[error(transparent)]
    Visit(anyhow::Error),
}

impl ArchiveError {
    /// Whose fault the error is, when the reader or visitor could tell.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            ArchiveError::Refused { fault, .. } => Some(*fault),
            ArchiveError::Io(_) | ArchiveError::Visit(_) => None,
        }
    }
}

fn entry_at(path: &[u8]) -> String {
    format!("entry `{}`", show(path))
}

fn malformed(at: String, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Refused {
        at,
        fault: Fault::Malformed,
        reason: reason.into(),
    }
}

fn limit(at: String, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Refused {
        at,
        fault: Fault::Limit,
        reason: reason.into(),
    }
}

/// The tar stream and how far into it we are.
struct Stream<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Stream<R> {
    /// Reads until `buf` is full or the stream ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += n as u64;
        Ok(n)
    }

    /// Skips up to `n` bytes; returns how many there were before the stream ended.
    fn skip(&mut self, mut n: u64) -> io::Result<u64> {
        let mut scratch = [0u8; 8192];
        let mut skipped = 0;
        while n > 0 {
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(scratch.len());
            let got = self.fill(&mut scratch[..want])?;
            skipped += got as u64;
            n -= got as u64;
            if got < want {
                break;
            }
        }
        Ok(skipped)
    }
}

/// An entry's data, for the visitor: exactly its length, or an `UnexpectedEof` error (and
/// `truncated` set) when the stream ends first.
struct Data<'s, R> {
    stream: &'s mut Stream<R>,
    left: u64,
    truncated: bool,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = loop {
            match self.stream.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n == 0 {
            self.truncated = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry's data",
            ));
        }
        self.left -= n as u64;
        self.stream.offset += n as u64;
        Ok(n)
    }
}

/// Extended headers waiting for the entry they describe.
#[derive(Default)]
struct Extended {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Vec<PaxRecord>,
}

impl Extended {
    fn pax(&self, key: &[u8]) -> Option<&[u8]> {
        self.pax
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    fn is_empty(&self) -> bool {
        self.path.is_none() && self.link.is_none() && self.pax.is_empty()
    }
}

/// Reads every entry of the tar stream `reader`, calling `visit` with its header and its data
/// (a regular file's bytes, a sparse file's runs; nothing for other kinds). Data the visitor
/// leaves unread is skipped.
pub fn for_each_entry<R: Read>(
    reader: R,
    max_entries: u64,
    mut visit: impl FnMut(&Head, &mut dyn Read) -> anyhow::Result<()>,
) -> Result<(), ArchiveError> {
    let mut stream = Stream {
        inner: reader,
        offset: 0,
    };
    let mut extended = Extended::default();
    let mut count = 0u64;
    let mut sparse_budget = aci::DEFAULT_MAX_UNCOMPRESSED;
    let mut previous: Option<Vec<u8>> = None;
    let mut zero_blocks = 0;
    let mut block = [0u8; BLOCK];
    loop {
        let start = stream.offset;
        let at = || match &previous {
            Some(path) => format!("the header at byte {start} (after entry `{}`)", show(path)),
            None => format!("the header at byte {start}"),
        };
        let n = stream.fill(&mut block)?;
        if n < BLOCK {
            if block[..n].iter().all(|&b| b == 0) {
                // The end of the stream, without end-of-archive blocks (or with short ones).
                break;
            }
            return Err(malformed(at(), "the archive ends inside it (truncated)"));
        }
        if block.iter().all(|&b| b == 0) {
            zero_blocks += 1;
            if zero_blocks == 2 {
                break;
            }
            continue;
        }
        zero_blocks = 0;
        let header = Header::parse(&block).map_err(|reason| malformed(at(), reason))?;
        match header.typeflag {
            b'L' | b'K' | b'x' => {
                let data = read_extended(&mut stream, &header).map_err(|e| e.at(at()))?;
                match header.typeflag {
                    b'x' => extended
                        .pax
                        .extend(aci::parse_pax(&data).map_err(|reason| malformed(at(), reason))?),
                    // A GNU name ends with a NUL that is not part of it.
                    kind => {
                        let value = data.split(|&b| b == 0).next().unwrap_or_default().to_vec();
                        if kind == b'L' {
                            extended.path = Some(value);
                        } else {
                            extended.link = Some(value);
                        }
                    }
                }
                continue;
            }
            b'g' => {
                // Archive-wide defaults (git archive's comment); they name no file.
                let size = header.size.map_err(|reason| malformed(at(), reason))?;
                skip_exactly(&mut stream, padded(size)).map_err(|e| e.at(at()))?;
                continue;
            }
            _ => {}
        }
        let described = std::mem::take(&mut extended);
        count += 1;
        if count > max_entries {
            return Err(limit(
                at(),
                format!("the archive has more than {max_entries} entries: refused"),
            ));
        }
        let (head, physical) = resolve(&block, &header, &described, &mut stream)?;
        if let Some(runs) = &head.sparse {
            let holes = head.size - runs.iter().map(|r| r.length).sum::<u64>();
            sparse_budget = sparse_budget.checked_sub(holes).ok_or_else(|| {
                limit(
                    entry_at(&head.path),
                    format!(
                        "the holes of this layer's sparse files add up to more than {} GiB: refused (a decompression bomb?)",
                        aci::DEFAULT_MAX_UNCOMPRESSED >> 30
                    ),
                )
            })?;
        }
        let data_len = head.data_len();
        let mut data = Data {
            stream: &mut stream,
            left: data_len,
            truncated: false,
        };
        let visited = visit(&head, &mut data);
        let truncated = |data: &Data<'_, R>| {
            malformed(
                entry_at(&head.path),
                format!(
                    "the archive ends inside its data ({} of {data_len} bytes are missing)",
                    data.left
                ),
            )
        };
        if data.truncated {
            return Err(truncated(&data));
        }
        visited.map_err(ArchiveError::Visit)?;
        io::copy(&mut data, &mut io::sink()).map_err(|e| {
            if data.truncated {
                truncated(&data)
            } else {
                e.into()
            }
        })?;
        // The padding to the next block; the stream may end inside it (then the next read
        // finds the end).
        stream.skip(padded(physical) - physical)?;
        previous = Some(head.path);
    }
    if !extended.is_empty() {
        return Err(malformed(
            match &previous {
                Some(path) => format!("after entry `{}`", show(path)),
                None => "the archive".to_owned(),
            },
            "the archive ends with an extended header that describes no entry",
        ));
    }
    Ok(())
}

/// `size` rounded up to whole blocks.
fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// An error about a header, before its place in the archive is known.
enum HeaderError {
    Io(io::Error),
    Malformed(String),
    Limit(String),
}

impl HeaderError {
    fn at(self, at: String) -> ArchiveError {
        match self {
            HeaderError::Io(e) => ArchiveError::Io(e),
            HeaderError::Malformed(reason) => malformed(at, reason),
            HeaderError::Limit(reason) => limit(at, reason),
        }
    }
}

impl From<io::Error> for HeaderError {
    fn from(e: io::Error) -> Self {
        HeaderError::Io(e)
    }
}

/// Skips `n` bytes that must be there.
fn skip_exactly<R: Read>(stream: &mut Stream<R>, n: u64) -> Result<(), HeaderError> {
    if stream.skip(n)? < n {
        return Err(HeaderError::Malformed(
            "the archive ends inside its data (truncated)".into(),
        ));
    }
    Ok(())
}

/// The data of a GNU long name/link or PAX header (and its padding), capped.
fn read_extended<R: Read>(stream: &mut Stream<R>, header: &Header) -> Result<Vec<u8>, HeaderError> {
    let size = header.size.clone().map_err(HeaderError::Malformed)?;
    if size > aci::MAX_EXTENDED_HEADER {
        return Err(HeaderError::Limit(format!(
            "a {size}-byte extended header (more than {} KiB is refused)",
            aci::MAX_EXTENDED_HEADER >> 10
        )));
    }
    let mut data = vec![0; usize::try_from(size).expect("capped at 1 MiB")];
    if stream.fill(&mut data)? < data.len() {
        return Err(HeaderError::Malformed(
            "the archive ends inside this extended header (truncated)".into(),
        ));
    }
    // Its padding; if the stream ends here, no entry follows and the caller says so.
    stream.skip(padded(size) - size)?;
    Ok(data)
}

/// The fields of one header block, parsed but not yet merged with extended headers.
struct Header {
    typeflag: u8,
    /// The name, with the ustar or star prefix applied.
    name: Vec<u8>,
    link: Vec<u8>,
    /// The size field (`Err` when it is not a number).
    size: Result<u64, String>,
    /// Whether the size field was blank (all NULs or spaces), so a PAX `size` alone counts.
    size_blank: bool,
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

/// The bytes of a field up to its first NUL.
fn cstr(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or_default()
}

fn is_blank(field: &[u8]) -> bool {
    field.iter().all(|&b| b == 0 || b == b' ')
}

/// A numeric field as Go's `archive/tar` reads it: base-256 when the top bit of the first
/// byte is set (two's complement, possibly negative), else octal between NULs and spaces
/// (blank is 0).
fn numeric(field: &[u8]) -> Result<i64, String> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        let invert = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut value: u64 = 0;
        for (i, &byte) in field.iter().enumerate() {
            let mut byte = byte ^ invert;
            if i == 0 {
                byte &= 0x7f;
            }
            if value >> 56 != 0 {
                return Err("a base-256 number that overflows 64 bits".into());
            }
            value = value << 8 | u64::from(byte);
        }
        let value = i64::try_from(value).map_err(|_| "a base-256 number that overflows 64 bits")?;
        return Ok(if invert == 0xff { !value } else { value });
    }
    let start = field.iter().position(|&b| b != 0 && b != b' ');
    let Some(start) = start else { return Ok(0) };
    let end = field
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .expect("a non-blank byte")
        + 1;
    let digits = cstr(&field[start..end]);
    if digits.is_empty() || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(format!("`{}` is not an octal number", show(field)));
    }
    let text = std::str::from_utf8(digits).expect("octal digits are ASCII");
    u64::from_str_radix(text, 8)
        .ok()
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| format!("`{}` overflows 64 bits", show(field)))
}

/// A numeric field that must not be negative.
fn unsigned(field: &[u8], what: &str) -> Result<u64, String> {
    let value = numeric(field).map_err(|e| format!("invalid {what}: {e}"))?;
    u64::try_from(value).map_err(|_| format!("invalid {what}: {value} is negative"))
}

impl Header {
    fn parse(block: &[u8; BLOCK]) -> Result<Header, String> {
        let recorded = numeric(&block[148..156]).map_err(|e| format!("invalid checksum: {e}"))?;
        let (mut unsigned_sum, mut signed_sum) = (0i64, 0i64);
        for (i, &b) in block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned_sum += i64::from(b);
            signed_sum += i64::from(b as i8);
        }
        if recorded != unsigned_sum && recorded != signed_sum {
            return Err(format!(
                "its checksum is {recorded:o}, its bytes sum to {unsigned_sum:o}: not a tar header (or a damaged one)"
            ));
        }
        let format = match (&block[257..263], &block[263..265]) {
            (b"ustar\0", b"00") if &block[508..512] == b"tar\0" => Format::Star,
            (b"ustar\0", b"00") => Format::Ustar,
            (b"ustar ", b" \0") => Format::Gnu,
            _ => Format::V7,
        };
        let mut name = cstr(&block[0..100]).to_vec();
        let prefix = match format {
            Format::Ustar => cstr(&block[345..500]),
            Format::Star => cstr(&block[345..476]),
            Format::V7 | Format::Gnu => &[],
        };
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
        Ok(Header {
            typeflag: block[156],
            name,
            link: cstr(&block[157..257]).to_vec(),
            size: unsigned(&block[124..136], "size"),
            size_blank: is_blank(&block[124..136]),
            format,
        })
    }
}

fn number(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A PAX time, `SECONDS[.FRACTION]`, possibly negative.
fn pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = whole.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    let mut nanos: u32 = digits.parse().ok()?;
    let mut seconds = seconds;
    // "-1.5" is 1.5 s before the epoch: -2 s + 0.5 s.
    if whole.starts_with('-') && nanos > 0 {
        seconds -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some((seconds, nanos))
}

/// The entry's [`Head`] from its header block and extended headers, and the bytes of data
/// that follow the header in the archive (before padding). Reads what belongs to the header
/// from the stream: old GNU sparse extension blocks, a GNU sparse 1.0 map.
fn resolve<R: Read>(
    block: &[u8; BLOCK],
    header: &Header,
    ext: &Extended,
    stream: &mut Stream<R>,
) -> Result<(Head, u64), ArchiveError> {
    let mut path = match (&ext.path, ext.pax(b"path")) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => path.to_vec(),
        (None, None) => header.name.clone(),
    };
    if let Some(name) = ext.pax(b"GNU.sparse.name") {
        path = name.to_vec();
    }
    let at = entry_at(&path);
    let bad = |reason: String| malformed(at.clone(), reason);
    // Old (V7) archives mark directories with a regular type and a trailing `/`.
    let kind = match header.typeflag {
        0 if path.ends_with(b"/") => Kind::Dir,
        0 | b'0' | b'7' | b'S' => Kind::File,
        b'1' => Kind::HardLink,
        b'2' => Kind::Symlink,
        b'3' => Kind::CharDevice,
        b'4' => Kind::BlockDevice,
        b'5' => Kind::Dir,
        b'6' => Kind::Fifo,
        other => {
            let what = match other {
                b'V' => "a GNU volume label",
                b'D' => "a GNU dump directory (incremental archives)",
                b'M' => "a GNU multi-volume continuation",
                b'N' => "an old GNU long-name entry",
                _ => "an unknown entry type",
            };
            return Err(bad(format!(
                "{what} (type `{}`), which image layers do not use",
                show(&[other])
            )));
        }
    };
    let header_size = header.size.clone().map_err(&bad)?;
    let physical = match ext.pax(b"size") {
        Some(size) => {
            let size = number(size).ok_or_else(|| bad("invalid PAX size".into()))?;
            // Writers put 0 (or nothing) in the header when the size needs PAX; a header
            // that says otherwise makes the archive parse differently elsewhere.
            if !header.size_blank && header_size != 0 && header_size != size {
                return Err(bad(format!(
                    "its PAX size ({size}) disagrees with its tar header ({header_size})"
                )));
            }
            size
        }
        None => header_size,
    };
    if kind != Kind::File && physical != 0 {
        return Err(bad(format!(
            "a {} whose header says {physical} bytes of data follow (tar readers disagree on whether they do)",
            kind.noun()
        )));
    }
    let (size, sparse, map_len) = if kind == Kind::File {
        sparse_map(block, header, ext, stream, physical).map_err(|e| e.at(at.clone()))?
    } else {
        (physical, None, 0)
    };
    if let Some(runs) = &sparse {
        check_runs(runs, size, physical - map_len).map_err(&bad)?;
    }
    let link = match (&ext.link, ext.pax(b"linkpath")) {
        (Some(link), _) => link.clone(),
        (None, Some(link)) => link.to_vec(),
        (None, None) => header.link.clone(),
    };
    let mode = u32::try_from(unsigned(&block[100..108], "mode").map_err(&bad)? & 0o7777)
        .expect("masked to 12 bits");
    let id = |key: &[u8], field: &[u8], what: &str| match ext.pax(key) {
        Some(v) => number(v).ok_or_else(|| bad(format!("invalid PAX {what}"))),
        None => unsigned(field, what).map_err(&bad),
    };
    let uid = id(b"uid", &block[108..116], "uid")?;
    let gid = id(b"gid", &block[116..124], "gid")?;
    let mtime = match ext.pax(b"mtime") {
        Some(v) => pax_time(v).ok_or_else(|| bad("invalid PAX mtime".into()))?,
        None => (
            numeric(&block[136..148]).map_err(|e| bad(format!("invalid mtime: {e}")))?,
            0,
        ),
    };
    let device = if kind == Kind::CharDevice || kind == Kind::BlockDevice {
        // ustar and GNU headers keep the numbers at the same offsets.
        let number = |field: &[u8]| {
            unsigned(field, "device number")
                .and_then(|n| {
                    u32::try_from(n).map_err(|_| format!("device number {n} is too large"))
                })
                .map_err(&bad)
        };
        (number(&block[329..337])?, number(&block[337..345])?)
    } else {
        (0, 0)
    };
    let xattrs = ext
        .pax
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(b"SCHILY.xattr.")
                .map(|name| (name.to_vec(), v.clone()))
        })
        .collect();
    let head = Head {
        path,
        link,
        kind,
        mode,
        uid,
        gid,
        mtime,
        size: if kind == Kind::File { size } else { 0 },
        sparse,
        device,
        xattrs,
    };
    // The 1.0 map was read from the data already.
    Ok((head, physical))
}

/// A regular file's size, its sparse map if it is sparse, and the bytes of the data a GNU
/// sparse 1.0 map took (read here).
fn sparse_map<R: Read>(
    block: &[u8; BLOCK],
    header: &Header,
    ext: &Extended,
    stream: &mut Stream<R>,
    physical: u64,
) -> Result<(u64, Option<Vec<Fragment>>, u64), HeaderError> {
    let bad = |reason: &str| HeaderError::Malformed(reason.to_owned());
    if header.typeflag == b'S' {
        if header.format != Format::Gnu {
            return Err(bad("a GNU sparse entry in a non-GNU header"));
        }
        let size =
            unsigned(&block[483..495], "sparse file size").map_err(HeaderError::Malformed)?;
        let mut runs = Vec::new();
        old_gnu_runs(&block[386..482], &mut runs)?;
        let mut extended = block[482] != 0;
        let mut more = [0u8; BLOCK];
        while extended {
            if stream.fill(&mut more)? < BLOCK {
                return Err(bad(
                    "the archive ends inside the sparse map's extension blocks (truncated)",
                ));
            }
            old_gnu_runs(&more[..504], &mut runs)?;
            extended = more[504] != 0;
        }
        return Ok((size, Some(runs), 0));
    }
    let major = ext.pax(b"GNU.sparse.major");
    let minor = ext.pax(b"GNU.sparse.minor");
    let map = ext.pax(b"GNU.sparse.map");
    let has_pairs = ext.pax(b"GNU.sparse.offset").is_some();
    let version = match (major, minor) {
        (Some(b"1"), Some(b"0")) => 10,
        (Some(b"0"), Some(b"0" | b"1")) | (None, None) if map.is_some() || has_pairs => 0,
        (None, None) => return Ok((physical, None, 0)),
        (major, minor) => {
            return Err(HeaderError::Malformed(format!(
                "GNU sparse format {}.{}, which no tar reader knows",
                show(major.unwrap_or(b"?")),
                show(minor.unwrap_or(b"?"))
            )));
        }
    };
    let size = ext
        .pax(b"GNU.sparse.size")
        .or_else(|| ext.pax(b"GNU.sparse.realsize"))
        .map(|v| number(v).ok_or_else(|| bad("invalid GNU.sparse.size")))
        .transpose()?
        .unwrap_or(physical);
    if version == 10 {
        let (runs, map_len) = read_map_1_0(stream, physical)?;
        return Ok((size, Some(runs), map_len));
    }
    // 0.1: "offset,length,offset,length..."; 0.0: repeated offset and numbytes records.
    let numbers: Vec<&[u8]> = match map {
        Some([]) => Vec::new(),
        Some(map) => map.split(|&b| b == b',').collect(),
        None => ext
            .pax
            .iter()
            .filter(|(k, _)| k == b"GNU.sparse.offset" || k == b"GNU.sparse.numbytes")
            .map(|(_, v)| v.as_slice())
            .collect(),
    };
    let runs = pairs(&numbers)?;
    if let Some(count) = ext.pax(b"GNU.sparse.numblocks")
        && number(count) != Some(runs.len() as u64)
    {
        return Err(bad("GNU.sparse.numblocks disagrees with its sparse map"));
    }
    Ok((size, Some(runs), 0))
}

/// Runs from decimal `offset, length` pairs.
fn pairs(numbers: &[&[u8]]) -> Result<Vec<Fragment>, HeaderError> {
    if !numbers.len().is_multiple_of(2) {
        return Err(HeaderError::Malformed(
            "a sparse map with an odd count of numbers".into(),
        ));
    }
    if numbers.len() / 2 > MAX_SPARSE_FRAGMENTS {
        return Err(HeaderError::Limit(format!(
            "a sparse map of more than {MAX_SPARSE_FRAGMENTS} runs"
        )));
    }
    numbers
        .chunks(2)
        .map(|pair| match (number(pair[0]), number(pair[1])) {
            (Some(offset), Some(length)) => Ok(Fragment { offset, length }),
            _ => Err(HeaderError::Malformed(
                "a sparse map with an invalid number".into(),
            )),
        })
        .collect()
}

/// Appends the runs of one old GNU sparse array (24-byte offset/length entries) up to its
/// first empty entry; extension blocks are read whatever the previous one held, as GNU tar,
/// bsdtar and Go do.
fn old_gnu_runs(array: &[u8], runs: &mut Vec<Fragment>) -> Result<(), HeaderError> {
    for entry in array.chunks_exact(24) {
        if entry[0] == 0 {
            break;
        }
        let field = |f: &[u8], what| unsigned(f, what).map_err(HeaderError::Malformed);
        if runs.len() == MAX_SPARSE_FRAGMENTS {
            return Err(HeaderError::Limit(format!(
                "a sparse map of more than {MAX_SPARSE_FRAGMENTS} runs"
            )));
        }
        runs.push(Fragment {
            offset: field(&entry[..12], "sparse offset")?,
            length: field(&entry[12..], "sparse length")?,
        });
    }
    Ok(())
}

/// Reads a GNU sparse 1.0 map from the start of the data: decimal numbers, one a line (the
/// count of runs, then offset and length of each), padded to a block. Returns the runs and
/// the bytes the map took.
fn read_map_1_0<R: Read>(
    stream: &mut Stream<R>,
    physical: u64,
) -> Result<(Vec<Fragment>, u64), HeaderError> {
    let mut text = Vec::new();
    let mut block = [0u8; BLOCK];
    let mut lines_needed = 1usize;
    loop {
        if text.len() as u64 + BLOCK as u64 > physical {
            return Err(HeaderError::Malformed(
                "the sparse map is longer than the entry's data".into(),
            ));
        }
        if text.len() as u64 >= aci::MAX_EXTENDED_HEADER {
            return Err(HeaderError::Limit(format!(
                "a sparse map of more than {} KiB",
                aci::MAX_EXTENDED_HEADER >> 10
            )));
        }
        if stream.fill(&mut block)? < BLOCK {
            return Err(HeaderError::Malformed(
                "the archive ends inside the sparse map (truncated)".into(),
            ));
        }
        text.extend_from_slice(&block);
        let lines = text.iter().filter(|&&b| b == b'\n').count();
        if lines_needed == 1 && lines >= 1 {
            let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
            let count = number(first)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| HeaderError::Malformed("an invalid sparse map".into()))?;
            if count > MAX_SPARSE_FRAGMENTS {
                return Err(HeaderError::Limit(format!(
                    "a sparse map of more than {MAX_SPARSE_FRAGMENTS} runs"
                )));
            }
            lines_needed = 1 + 2 * count;
        }
        if lines >= lines_needed {
            break;
        }
    }
    let numbers: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .skip(1)
        .take(lines_needed - 1)
        .collect();
    Ok((pairs(&numbers)?, text.len() as u64))
}

/// Runs must be in order, not overlap, end within the file, and hold exactly the data.
fn check_runs(runs: &[Fragment], size: u64, data: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for run in runs {
        let run_end = run
            .offset
            .checked_add(run.length)
            .ok_or("a sparse run past 2^64 bytes")?;
        if run.offset < end {
            return Err("its sparse map has runs out of order or overlapping".into());
        }
        if run_end > size {
            return Err(format!(
                "its sparse map has a run ending at byte {run_end}, past the file's size {size}"
            ));
        }
        end = run_end;
        total += run.length;
    }
    if total != data {
        return Err(format!(
            "its sparse map holds {total} bytes but {data} bytes of data follow"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            pax_time(b"1700000000.25"),
            Some((1_700_000_000, 250_000_000))
        );
        assert_eq!(pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(pax_time(b"1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(pax_time(b"x"), None);
        assert_eq!(pax_time(b"1.2x"), None);
    }

    #[test]
    fn numbers_octal_and_base_256() {
        assert_eq!(numeric(b"0000644\0"), Ok(0o644));
        assert_eq!(numeric(b"  644 \0"), Ok(0o644));
        assert_eq!(numeric(b"\0\0\0\0"), Ok(0));
        assert_eq!(
            numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Ok(1 << 32)
        );
        assert_eq!(numeric(&[0xff; 8]), Ok(-1));
        assert_eq!(numeric(&[0xff, 0xff, 0xff, 0xfe]), Ok(-2));
        assert!(numeric(b"0009\0").is_err());
        assert!(
            numeric(&[0x80, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "overflow"
        );
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o4755);
            h.set_uid(7);
            h.set_gid(8);
            h.set_mtime(1_600_000_000);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                builder
                    .append_link(&mut h, path, link)
                    .expect("append link");
            } else {
                builder.append_data(&mut h, path, *data).expect("append");
            }
        }
        builder.into_inner().expect("tar")
    }

    /// Every entry's head and data.
    fn read_all(bytes: &[u8]) -> Result<Vec<(Head, Vec<u8>)>, ArchiveError> {
        let mut seen = Vec::new();
        for_each_entry(bytes, 100, |head, data| {
            let mut content = Vec::new();
            data.read_to_end(&mut content)?;
            seen.push((head.clone(), content));
            Ok(())
        })?;
        Ok(seen)
    }

    /// A header block: ustar (or GNU when `gnu`), with the checksum set.
    fn header(name: &str, typeflag: u8, size: u64, gnu: bool) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = typeflag;
        if gnu {
            h[257..265].copy_from_slice(b"ustar  \0");
        } else {
            h[257..265].copy_from_slice(b"ustar\x0000");
        }
        checksum(&mut h);
        h
    }

    fn checksum(h: &mut [u8; BLOCK]) {
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    /// `data` and its padding to a block.
    fn padded_data(data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        out.resize(padded(data.len() as u64) as usize, 0);
        out
    }

    fn pax_header(records: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            let mut len = rest.len() + 1;
            while format!("{len}{rest}").len() != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len}{rest}").as_bytes());
        }
        let mut out = header("PaxHeaders/x", b'x', body.len() as u64, false).to_vec();
        out.extend(padded_data(&body));
        out
    }

    #[test]
    fn reads_heads_long_names_and_data() {
        let long = format!("{}/file", "d".repeat(200));
        let bytes = tar_of(&[
            ("dir/", tar::EntryType::Directory, b"", ""),
            (&long, tar::EntryType::Regular, b"hello", ""),
            ("ln", tar::EntryType::Symlink, b"", &"t".repeat(150)),
        ]);
        let seen = read_all(&bytes).expect("reads");
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0.kind, Kind::Dir);
        assert_eq!(seen[1].0.path, long.as_bytes());
        assert_eq!(seen[1].1, b"hello");
        assert_eq!(
            (seen[1].0.mode, seen[1].0.uid, seen[1].0.gid),
            (0o4755, 7, 8)
        );
        assert_eq!(seen[2].0.kind, Kind::Symlink);
        assert_eq!(seen[2].0.link, "t".repeat(150).as_bytes());

        let err = for_each_entry(bytes.as_slice(), 2, |_, _| Ok(())).expect_err("limit");
        assert_eq!(err.fault(), Some(Fault::Limit), "{err}");
        assert!(err.to_string().contains("more than 2 entries"), "{err}");
    }

    #[test]
    fn pax_long_names_links_and_ustar_prefix() {
        let name = format!("{}/leaf", "p".repeat(300));
        let target = "t".repeat(300);
        let mut bytes = pax_header(&[("path", &name), ("linkpath", &target)]);
        bytes.extend(header("short", b'2', 0, false));
        let mut prefixed = header("leaf", b'0', 2, false);
        prefixed[345..351].copy_from_slice(b"a/b/cc");
        checksum(&mut prefixed);
        bytes.extend(prefixed);
        bytes.extend(padded_data(b"hi"));
        let seen = read_all(&bytes).expect("reads");
        assert_eq!(seen[0].0.path, name.as_bytes());
        assert_eq!(seen[0].0.link, target.as_bytes());
        assert_eq!(seen[1].0.path, b"a/b/cc/leaf");
        assert_eq!(seen[1].1, b"hi");
    }

    #[test]
    fn a_stream_may_end_after_its_last_entry_without_padding_or_trailer() {
        // What `umoci insert` writes: the last file's data, then nothing.
        let mut bytes = header("a", b'0', 3, false).to_vec();
        bytes.extend(padded_data(b"one"));
        bytes.extend(header("b", b'0', 5, false));
        bytes.extend(b"two!!");
        let seen = read_all(&bytes).expect("reads");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].1, b"two!!");
        // Cut inside the padding, or with one (partial) zero block of trailer: the same.
        for extra in [100, 512 - 5 + 200, 512 - 5 + 512] {
            let mut longer = bytes.clone();
            longer.resize(bytes.len() + extra, 0);
            assert_eq!(read_all(&longer).expect("reads").len(), 2, "{extra}");
        }
    }

    #[test]
    fn truncation_inside_an_entry_or_a_header_is_refused() {
        let mut bytes = header("a", b'0', 3, false).to_vec();
        bytes.extend(padded_data(b"one"));
        bytes.extend(header("big", b'0', 1000, false));
        bytes.extend([7u8; 600]);
        let err = read_all(&bytes).expect_err("truncated data");
        assert_eq!(err.fault(), Some(Fault::Malformed), "{err}");
        assert!(
            err.to_string()
                .contains("entry `big`: the archive ends inside its data (400 of 1000"),
            "{err}"
        );
        // The same when the visitor does not read the data itself.
        let err = for_each_entry(bytes.as_slice(), 10, |_, _| Ok(())).expect_err("skipped");
        assert!(err.to_string().contains("400 of 1000"), "{err}");
        let mut cut = header("a", b'0', 3, false).to_vec();
        cut.extend(padded_data(b"one"));
        cut.extend(&header("b", b'0', 0, false)[..300]);
        let err = read_all(&cut).expect_err("truncated header");
        assert!(
            err.to_string()
                .contains("the header at byte 1024 (after entry `a`): the archive ends inside it"),
            "{err}"
        );
    }

    #[test]
    fn zero_blocks_between_entries_are_skipped_and_two_end_the_archive() {
        let mut bytes = header("a", b'0', 0, false).to_vec();
        bytes.extend([0u8; BLOCK]);
        bytes.extend(header("b", b'0', 0, false));
        bytes.extend([0u8; 2 * BLOCK]);
        // After the end: not read (as in Go's reader).
        bytes.extend(header("after-the-end", b'0', 0, false));
        let seen = read_all(&bytes).expect("reads");
        let names: Vec<&[u8]> = seen.iter().map(|(h, _)| h.path.as_slice()).collect();
        assert_eq!(names, [b"a".as_slice(), b"b"]);
    }

    #[test]
    fn base_256_sizes_and_ids() {
        let mut h = header("big-ids", b'0', 4, true);
        // uid 2^32 + 1, gid 3, size 4: base-256.
        h[108..116].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 1]);
        h[116..124].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 3]);
        h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
        h[136..148].copy_from_slice(&[0xff; 12]);
        checksum(&mut h);
        let mut bytes = h.to_vec();
        bytes.extend(padded_data(b"data"));
        let seen = read_all(&bytes).expect("reads");
        assert_eq!((seen[0].0.uid, seen[0].0.gid), ((1 << 32) + 1, 3));
        assert_eq!(seen[0].0.mtime, (-1, 0));
        assert_eq!(seen[0].1, b"data");
    }

    #[test]
    fn sizes_that_disagree_are_refused() {
        // A PAX size other than the header's.
        let mut bytes = pax_header(&[("size", "5")]);
        bytes.extend(header("f", b'0', 3, false));
        bytes.extend(padded_data(b"abc"));
        let err = read_all(&bytes).expect_err("disagree");
        assert!(err.to_string().contains("PAX size (5) disagrees"), "{err}");
        // ... but a PAX size over a zero header size is how big files are written.
        let mut bytes = pax_header(&[("size", "3")]);
        bytes.extend(header("f", b'0', 0, false));
        bytes.extend(padded_data(b"abc"));
        assert_eq!(read_all(&bytes).expect("reads")[0].1, b"abc");
        // Data after a symlink header.
        let mut bytes = header("l", b'2', 3, false).to_vec();
        bytes.extend(padded_data(b"abc"));
        let err = read_all(&bytes).expect_err("symlink with data");
        assert!(
            err.to_string()
                .contains("symlink whose header says 3 bytes"),
            "{err}"
        );
        // A bad checksum.
        let mut h = header("f", b'0', 0, false);
        h[0] = b'g';
        let err = read_all(&h).expect_err("checksum");
        assert!(err.to_string().contains("checksum"), "{err}");
        // An extended header that describes nothing.
        let err = read_all(&pax_header(&[("path", "x")])).expect_err("dangling");
        assert!(err.to_string().contains("describes no entry"), "{err}");
    }

    /// A 10-byte file with "AB" at 0 and "CD" at 8.
    fn assert_sparse(seen: &[(Head, Vec<u8>)], name: &str) {
        let (head, data) = seen.last().expect("an entry");
        assert_eq!(head.path, name.as_bytes());
        assert_eq!(head.size, 10);
        assert_eq!(
            head.sparse.as_deref(),
            Some(
                &[
                    Fragment {
                        offset: 0,
                        length: 2
                    },
                    Fragment {
                        offset: 8,
                        length: 2
                    }
                ][..]
            )
        );
        assert_eq!(data, b"ABCD");
    }

    #[test]
    fn gnu_old_sparse_files() {
        let mut h = header("sparse", b'S', 4, true);
        h[386..398].copy_from_slice(b"00000000000\0");
        h[398..410].copy_from_slice(b"00000000002\0");
        h[483..495].copy_from_slice(b"00000000012\0");
        // The second run in an extension block.
        h[482] = 1;
        checksum(&mut h);
        let mut ext = [0u8; BLOCK];
        ext[..12].copy_from_slice(b"00000000010\0");
        ext[12..24].copy_from_slice(b"00000000002\0");
        let mut bytes = h.to_vec();
        bytes.extend(ext);
        bytes.extend(padded_data(b"ABCD"));
        assert_sparse(&read_all(&bytes).expect("reads"), "sparse");
    }

    #[test]
    fn pax_sparse_files_0_0_0_1_and_1_0() {
        let mut v00 = pax_header(&[
            ("GNU.sparse.size", "10"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.offset", "0"),
            ("GNU.sparse.numbytes", "2"),
            ("GNU.sparse.offset", "8"),
            ("GNU.sparse.numbytes", "2"),
        ]);
        v00.extend(header("s00", b'0', 4, false));
        v00.extend(padded_data(b"ABCD"));
        assert_sparse(&read_all(&v00).expect("0.0"), "s00");

        let mut v01 = pax_header(&[
            ("GNU.sparse.size", "10"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.name", "s01"),
            ("GNU.sparse.map", "0,2,8,2"),
        ]);
        v01.extend(header("GNUSparseFile.1/s01", b'0', 4, false));
        v01.extend(padded_data(b"ABCD"));
        assert_sparse(&read_all(&v01).expect("0.1"), "s01");

        let mut v10 = pax_header(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "s10"),
            ("GNU.sparse.realsize", "10"),
        ]);
        v10.extend(header("GNUSparseFile.1/s10", b'0', 512 + 4, false));
        v10.extend(padded_data(b"2\n0\n2\n8\n2\n"));
        v10.extend(padded_data(b"ABCD"));
        assert_sparse(&read_all(&v10).expect("1.0"), "s10");

        // A map that holds more data than follows, or runs past the size, is refused.
        let mut bad = pax_header(&[("GNU.sparse.size", "10"), ("GNU.sparse.map", "0,2,8,3")]);
        bad.extend(header("s", b'0', 4, false));
        bad.extend(padded_data(b"ABCD"));
        let err = read_all(&bad).expect_err("past the end");
        assert!(err.to_string().contains("past the file's size"), "{err}");
        let mut bad = pax_header(&[("GNU.sparse.size", "10"), ("GNU.sparse.map", "0,2,8,1")]);
        bad.extend(header("s", b'0', 4, false));
        bad.extend(padded_data(b"ABCD"));
        let err = read_all(&bad).expect_err("disagree");
        assert!(
            err.to_string().contains("holds 3 bytes but 4 bytes"),
            "{err}"
        );
        let mut bomb = pax_header(&[
            ("GNU.sparse.size", "99999999999999"),
            ("GNU.sparse.map", "0,1"),
        ]);
        bomb.extend(header("s", b'0', 1, false));
        bomb.extend(padded_data(b"A"));
        let err = read_all(&bomb).expect_err("bomb");
        assert_eq!(err.fault(), Some(Fault::Limit), "{err}");
    }
}
