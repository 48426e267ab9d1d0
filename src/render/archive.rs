//! Reading a tar stream entry by entry, with bounded memory.
//!
//! Invariants: GNU long names and links and PAX headers are read by hand (the tar crate
//! would buffer any size), each at most [`aci::MAX_EXTENDED_HEADER`]; an archive has at most
//! `max_entries` entries; paths and link targets are handed on *raw*, for the caller to clean
//! and refuse ([`crate::fsutil::tree::clean`]). Nothing here touches the file system.

use std::io::{self, Read};

use crate::appc::aci::{self, PaxRecord};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (also "contiguous" files).
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
    /// Whether it is a device node or fifo (what `mknod` makes).
    pub fn is_node(self) -> bool {
        matches!(self, Kind::CharDevice | Kind::BlockDevice | Kind::Fifo)
    }
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
    /// Data bytes that follow (regular files).
    pub size: u64,
    /// Device major and minor numbers (devices).
    pub device: (u32, u32),
    /// `SCHILY.xattr.*` PAX records: (attribute name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or decompressing failed (or a limit was hit).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An entry this reader does not accept.
    #[error("entry `{path}`: {reason}")]
    Unsupported {
        /// The entry's path as far as known.
        path: String,
        /// What is refused and why.
        reason: String,
    },
    /// More entries than allowed.
    #[error("the archive has more than {0} entries: refused")]
    TooManyEntries(u64),
    /// The visitor refused an entry.
    #[error(transparent)]
    Visit(anyhow::Error),
}

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
}

fn unsupported(path: &[u8], reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Unsupported {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.into(),
    }
}

/// Reads every entry of the tar stream `reader`, calling `visit` with its header and its data
/// (a regular file's bytes; nothing for other kinds). Unread data is skipped.
pub fn for_each_entry<R: Read>(
    reader: R,
    max_entries: u64,
    mut visit: impl FnMut(&Head, &mut dyn Read) -> anyhow::Result<()>,
) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut extended = Extended::default();
    let mut count = 0u64;
    for entry in archive.entries()?.raw(true) {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
            let data = read_extended(&mut entry)?;
            if kind.is_pax_local_extensions() {
                let records = aci::parse_pax(&data)
                    .map_err(|reason| unsupported(&entry.path_bytes(), reason))?;
                extended.pax.extend(records);
            } else {
                // A GNU name ends with a NUL that is not part of it.
                let value = data.strip_suffix(&[0]).unwrap_or(&data).to_vec();
                if kind.is_gnu_longname() {
                    extended.path = Some(value);
                } else {
                    extended.link = Some(value);
                }
            }
            continue;
        }
        if kind.is_pax_global_extensions() {
            // Archive-wide defaults (git archive's comment); they name no file.
            continue;
        }
        let described = std::mem::take(&mut extended);
        count += 1;
        if count > max_entries {
            return Err(ArchiveError::TooManyEntries(max_entries));
        }
        let head = head_of(&entry, &described)?;
        visit(&head, &mut entry).map_err(ArchiveError::Visit)?;
    }
    if extended.path.is_some() || extended.link.is_some() || !extended.pax.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the archive ends with an extended header that describes no entry",
        )
        .into());
    }
    // The end-of-archive blocks and any padding after them are read by the caller's drain.
    Ok(())
}

fn read_extended<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>, ArchiveError> {
    let size = entry.size();
    if size > aci::MAX_EXTENDED_HEADER {
        return Err(unsupported(
            &entry.path_bytes(),
            format!("a {size}-byte extended header (more than 1 MiB is refused)"),
        ));
    }
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut data)?;
    if data.len() as u64 != size {
        return Err(
            io::Error::new(io::ErrorKind::UnexpectedEof, "the archive is truncated").into(),
        );
    }
    Ok(data)
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

fn head_of<R: Read>(entry: &tar::Entry<'_, R>, ext: &Extended) -> Result<Head, ArchiveError> {
    let header = entry.header();
    let path = match (&ext.path, ext.pax(b"path")) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => path.to_vec(),
        (None, None) => header.path_bytes().into_owned(),
    };
    let bad = |what: &str, e: io::Error| unsupported(&path, format!("invalid {what}: {e}"));
    let raw_kind = header.entry_type();
    // Old (V7) archives mark directories with a regular type and a trailing `/`.
    let v7_dir = header.as_old().linkflag[0] == 0 && path.ends_with(b"/");
    let kind = if raw_kind.is_dir() || v7_dir {
        Kind::Dir
    } else if raw_kind.is_file() || raw_kind.is_contiguous() {
        Kind::File
    } else if raw_kind.is_symlink() {
        Kind::Symlink
    } else if raw_kind.is_hard_link() {
        Kind::HardLink
    } else if raw_kind.is_character_special() {
        Kind::CharDevice
    } else if raw_kind.is_block_special() {
        Kind::BlockDevice
    } else if raw_kind.is_fifo() {
        Kind::Fifo
    } else if raw_kind.is_gnu_sparse() {
        return Err(unsupported(&path, "GNU sparse files are not supported"));
    } else {
        return Err(unsupported(
            &path,
            format!("unsupported entry type `{}`", raw_kind.as_byte() as char),
        ));
    };
    if let Some(size) = ext.pax(b"size") {
        // The tar crate skips by the header's size; a PAX size that disagrees would make
        // this archive parse differently elsewhere.
        if number(size) != Some(entry.size()) {
            return Err(unsupported(
                &path,
                "its PAX size disagrees with its tar header",
            ));
        }
    }
    if ext.pax.iter().any(|(k, _)| k.starts_with(b"GNU.sparse.")) {
        return Err(unsupported(&path, "GNU sparse files are not supported"));
    }
    let link = match (&ext.link, ext.pax(b"linkpath")) {
        (Some(link), _) => link.clone(),
        (None, Some(link)) => link.to_vec(),
        (None, None) => header.link_name_bytes().unwrap_or_default().into_owned(),
    };
    let mode = header.mode().map_err(|e| bad("mode", e))? & 0o7777;
    // An empty numeric field (all NULs or spaces) reads as 0, as in Go's archive/tar.
    let blank = |field: &[u8]| field.iter().all(|&b| b == 0 || b == b' ');
    let old = header.as_old();
    let uid = match ext.pax(b"uid") {
        Some(v) => number(v).ok_or_else(|| unsupported(&path, "invalid PAX uid"))?,
        None if blank(&old.uid) => 0,
        None => header.uid().map_err(|e| bad("uid", e))?,
    };
    let gid = match ext.pax(b"gid") {
        Some(v) => number(v).ok_or_else(|| unsupported(&path, "invalid PAX gid"))?,
        None if blank(&old.gid) => 0,
        None => header.gid().map_err(|e| bad("gid", e))?,
    };
    let mtime = match ext.pax(b"mtime") {
        Some(v) => pax_time(v).ok_or_else(|| unsupported(&path, "invalid PAX mtime"))?,
        None if blank(&old.mtime) => (0, 0),
        None => {
            let seconds = header.mtime().map_err(|e| bad("mtime", e))?;
            (i64::try_from(seconds).unwrap_or(i64::MAX), 0)
        }
    };
    let device = if kind.is_node() {
        let device = |field: &[u8], read: fn(&tar::Header) -> io::Result<Option<u32>>| {
            if blank(field) {
                Ok(0)
            } else {
                read(header)
                    .map(Option::unwrap_or_default)
                    .map_err(|e| bad("device number", e))
            }
        };
        // ustar and GNU headers keep the numbers at the same offsets (329 and 337).
        let raw = header.as_bytes();
        (
            device(&raw[329..337], tar::Header::device_major)?,
            device(&raw[337..345], tar::Header::device_minor)?,
        )
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
    Ok(Head {
        path,
        link,
        kind,
        mode,
        uid,
        gid,
        mtime,
        size: if kind == Kind::File { entry.size() } else { 0 },
        device,
        xattrs,
    })
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

    #[test]
    fn reads_heads_long_names_and_data() {
        let long = format!("{}/file", "d".repeat(200));
        let bytes = tar_of(&[
            ("dir/", tar::EntryType::Directory, b"", ""),
            (&long, tar::EntryType::Regular, b"hello", ""),
            ("ln", tar::EntryType::Symlink, b"", &"t".repeat(150)),
        ]);
        let mut seen = Vec::new();
        for_each_entry(bytes.as_slice(), 10, |head, data| {
            let mut content = Vec::new();
            data.read_to_end(&mut content)?;
            seen.push((head.clone(), content));
            Ok(())
        })
        .expect("reads");
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
        assert!(matches!(err, ArchiveError::TooManyEntries(2)), "{err}");
    }
}
