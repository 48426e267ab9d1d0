//! File-system operations confined to one directory, by file descriptor.
//!
//! Invariant: nothing here ever follows a symbolic link or a `..`. Paths are split into
//! components that [`clean`] has checked (relative, no `..`, no NUL), every directory on the
//! way is opened with `O_DIRECTORY | O_NOFOLLOW` relative to its parent's descriptor, and
//! every entry is created, replaced or removed with an `*at` call on its parent's
//! descriptor. A symlink in the middle of a path is therefore an error
//! ([`PathError::ThroughSymlink`]), never a way out of the tree, whatever it points to and
//! however the tree changes under us.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

/// Paths deeper than this are refused: real images stay under a few dozen components, and
/// the bound keeps recursive removal and copying shallow.
pub const MAX_DEPTH: usize = 1024;

/// Why an archive path or a path in the tree cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Starts with `/`.
    #[error("it is an absolute path")]
    Absolute,
    /// Has a `..` component.
    #[error("it has a `..` component")]
    DotDot,
    /// Has a NUL byte (possible in a PAX path).
    #[error("it contains a NUL byte")]
    Nul,
    /// Too many components.
    #[error("it has more than {MAX_DEPTH} components")]
    TooDeep,
    /// A component on the way is a symbolic link.
    #[error("`{}` on its way is a symbolic link, and imagelock never writes through one", show(.0))]
    ThroughSymlink(Vec<u8>),
    /// A component on the way is a file or device, not a directory.
    #[error("`{}` on its way is not a directory", show(.0))]
    NotADirectory(Vec<u8>),
    /// A component on the way does not exist (and is not to be created).
    #[error("`{}` does not exist", show(.0))]
    Missing(Vec<u8>),
    /// The kernel refused.
    #[error("{0}")]
    Io(String),
}

/// Bytes of a path, for messages.
pub fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// `raw` as a clean relative path: `.` components, empty components and trailing `/` dropped
/// (`""` is the root itself). Absolute paths, `..` components and NUL bytes are refused, not
/// repaired: an archive that contains them is malformed or hostile.
pub fn clean(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    if raw.starts_with(b"/") {
        return Err(PathError::Absolute);
    }
    if raw.contains(&0) {
        return Err(PathError::Nul);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut depth = 0;
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(PathError::DotDot),
            name => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(PathError::TooDeep);
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
    Ok(out)
}

/// A clean path's parent and last component (`None` for the root).
pub fn split_last(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.is_empty() {
        return None;
    }
    Some(match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[][..], path),
    })
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the directory `name` in `parent` without following a symlink.
pub fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rfs::openat(parent, name, DIR_FLAGS, Mode::empty())?)
}

/// `lstat` of `name` in `parent`; `None` when it does not exist.
pub fn lstat(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file type of a stat result.
pub fn file_type(st: &rfs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// A directory tree, opened once; paths below it are resolved component by component.
///
/// The chain of directories opened for the last path is kept, so that the archive order
/// (a directory, then its entries) costs one `openat` per new directory, not per entry.
/// Entries are only ever removed *below* the last directory of that chain, so the chain
/// never holds a descriptor of a removed directory.
pub struct Tree {
    root: OwnedFd,
    chain: Vec<(Vec<u8>, OwnedFd)>,
}

impl Tree {
    /// Opens `root` (which the caller chose, so a symlink there is followed).
    pub fn open(root: &std::path::Path) -> io::Result<Tree> {
        let fd = rfs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Tree {
            root: fd,
            chain: Vec::new(),
        })
    }

    /// A tree rooted at an already opened directory.
    pub fn from_fd(root: OwnedFd) -> Tree {
        Tree {
            root,
            chain: Vec::new(),
        }
    }

    /// The root directory's descriptor.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The directory `dir` (a clean path), each component opened without following symlinks.
    /// With `create`, missing directories are made (mode 0755, as tar and rkt do for parents
    /// an archive does not list); otherwise a missing one is [`PathError::Missing`].
    pub fn dir(&mut self, dir: &[u8], create: bool) -> Result<BorrowedFd<'_>, PathError> {
        let wanted: Vec<&[u8]> = components(dir).collect();
        let common = self
            .chain
            .iter()
            .zip(&wanted)
            .take_while(|((have, _), want)| have.as_slice() == **want)
            .count();
        self.chain.truncate(common);
        for index in common..wanted.len() {
            let parent = match self.chain.last() {
                Some((_, fd)) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            let prefix = || wanted[..=index].join(&b'/');
            let fd = open_or_create_dir(parent, wanted[index], create, prefix)?;
            self.chain.push((wanted[index].to_vec(), fd));
        }
        Ok(match self.chain.last() {
            Some((_, fd)) => fd.as_fd(),
            None => self.root.as_fd(),
        })
    }

    /// Like [`Tree::dir`] without creating anything and without touching the kept chain
    /// (for hard-link targets, looked up while the chain points at the link's directory).
    pub fn lookup_dir(&self, dir: &[u8]) -> Result<OwnedFd, PathError> {
        let mut current = rfs::openat(self.root.as_fd(), c".", DIR_FLAGS, Mode::empty())
            .map_err(|e| PathError::Io(e.to_string()))?;
        let wanted: Vec<&[u8]> = components(dir).collect();
        for index in 0..wanted.len() {
            let prefix = || wanted[..=index].join(&b'/');
            current = open_or_create_dir(current.as_fd(), wanted[index], false, prefix)?;
        }
        Ok(current)
    }
}

fn open_or_create_dir(
    parent: BorrowedFd<'_>,
    name: &[u8],
    create: bool,
    prefix: impl Fn() -> Vec<u8>,
) -> Result<OwnedFd, PathError> {
    let io = |e: rustix::io::Errno| PathError::Io(format!("`{}`: {e}", show(&prefix())));
    match rfs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::NOENT) if create => {
            match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io(e)),
            }
            let fd = rfs::openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(io)?;
            // mkdirat's mode is filtered by the umask; a parent the archive does not list is 0755.
            rfs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(io)?;
            Ok(fd)
        }
        Err(rustix::io::Errno::NOENT) => Err(PathError::Missing(prefix())),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            match lstat(parent, name).map_err(|e| PathError::Io(e.to_string()))? {
                Some(st) if file_type(&st) == FileType::Symlink => {
                    Err(PathError::ThroughSymlink(prefix()))
                }
                Some(_) => Err(PathError::NotADirectory(prefix())),
                None => Err(PathError::Missing(prefix())),
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// Removes `name` in `parent` and, if it is a directory, everything below it, without
/// following symlinks (a symlink is removed, never its target).
pub fn remove_all(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    remove_all_depth(parent, name, 0)
}

fn remove_all_depth(parent: BorrowedFd<'_>, name: &[u8], depth: usize) -> io::Result<()> {
    let Some(st) = lstat(parent, name)? else {
        return Ok(());
    };
    if file_type(&st) != FileType::Directory {
        return Ok(rfs::unlinkat(parent, name, AtFlags::empty())?);
    }
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "more than {MAX_DEPTH} nested directories"
        )));
    }
    let dir = open_dir(parent, name)?;
    for child in read_dir_names(dir.as_fd())? {
        remove_all_depth(dir.as_fd(), &child, depth + 1)?;
    }
    Ok(rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

/// The names in a directory (without `.` and `..`), sorted, so walks are deterministic.
pub fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// Creates the regular file `name` in `parent` (it must not exist), private until its
/// metadata is applied.
pub fn create_file(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let fd = rfs::openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// Opens the regular file `name` in `parent` for reading, refusing a symlink.
pub fn open_file(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let fd = rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Owner, mode, times and extended attributes to give an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, including setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    /// Owner, applied only when running as root.
    pub uid: u32,
    /// Group, applied only when running as root.
    pub gid: u32,
    /// Modification time (also used as the access time).
    pub mtime: (i64, u32),
    /// Extended attributes (name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What applying metadata could not do (counted, not fatal: see the module rules).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MetaMisses {
    /// Extended attributes the file system or our privileges refused.
    pub xattrs: u64,
    /// Ownership changes refused (e.g. an unmapped ID in a user namespace).
    pub owners: u64,
}

fn timestamps(mtime: (i64, u32)) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime.0,
        tv_nsec: i64::from(mtime.1),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn uid_gid(meta: &Meta) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    // u32::MAX is (uid_t)-1, "leave unchanged" to the kernel; rustix refuses to build it.
    let uid = (meta.uid != u32::MAX).then(|| rustix::fs::Uid::from_raw(meta.uid));
    let gid = (meta.gid != u32::MAX).then(|| rustix::fs::Gid::from_raw(meta.gid));
    (uid, gid)
}

fn owner_refused(e: rustix::io::Errno) -> bool {
    matches!(e, rustix::io::Errno::PERM | rustix::io::Errno::INVAL)
}

fn xattr_refused(e: rustix::io::Errno) -> bool {
    matches!(
        e,
        rustix::io::Errno::PERM
            | rustix::io::Errno::NOTSUP
            | rustix::io::Errno::ACCESS
            | rustix::io::Errno::INVAL
            | rustix::io::Errno::RANGE
            | rustix::io::Errno::NOSPC
            | rustix::io::Errno::TOOBIG
    )
}

/// Applies `meta`'s owner (when `chown`) and extended attributes to an open file or
/// directory, leaving mode and times for later (directories get them once filled).
pub fn apply_owner_xattrs(fd: BorrowedFd<'_>, meta: &Meta, chown: bool) -> io::Result<MetaMisses> {
    let mut misses = MetaMisses::default();
    if chown {
        let (uid, gid) = uid_gid(meta);
        match rfs::fchown(fd, uid, gid) {
            Ok(()) => {}
            Err(e) if owner_refused(e) => misses.owners += 1,
            Err(e) => return Err(e.into()),
        }
    }
    for (name, value) in &meta.xattrs {
        match rfs::fsetxattr(fd, name.as_slice(), value, rfs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(e) if xattr_refused(e) => misses.xattrs += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(misses)
}

/// Applies `meta` to an open file or directory: owner (when `chown`), then mode (after the
/// owner, since chown clears setuid bits), extended attributes, times.
pub fn apply_meta_fd(fd: BorrowedFd<'_>, meta: &Meta, chown: bool) -> io::Result<MetaMisses> {
    let mut misses = MetaMisses::default();
    if chown {
        let (uid, gid) = uid_gid(meta);
        match rfs::fchown(fd, uid, gid) {
            Ok(()) => {}
            Err(e) if owner_refused(e) => misses.owners += 1,
            Err(e) => return Err(e.into()),
        }
    }
    rfs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))?;
    for (name, value) in &meta.xattrs {
        match rfs::fsetxattr(fd, name.as_slice(), value, rfs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(e) if xattr_refused(e) => misses.xattrs += 1,
            Err(e) => return Err(e.into()),
        }
    }
    rfs::futimens(fd, &timestamps(meta.mtime))?;
    Ok(misses)
}

/// Applies `meta` to `name` in `parent` without following it (symlinks, devices, fifos):
/// owner, mode (not for symlinks, which have none), extended attributes, times.
pub fn apply_meta_at(
    parent: BorrowedFd<'_>,
    name: &[u8],
    meta: &Meta,
    chown: bool,
    is_symlink: bool,
) -> io::Result<MetaMisses> {
    let mut misses = MetaMisses::default();
    if chown {
        let (uid, gid) = uid_gid(meta);
        match rfs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(()) => {}
            Err(e) if owner_refused(e) => misses.owners += 1,
            Err(e) => return Err(e.into()),
        }
    }
    if !is_symlink {
        rfs::chmodat(
            parent,
            name,
            Mode::from_raw_mode(meta.mode & 0o7777),
            AtFlags::empty(),
        )?;
    }
    if !meta.xattrs.is_empty() {
        // l*xattr calls take a path: the parent's /proc/self/fd link (a directory we hold
        // open) and the name; the last component is not followed.
        let path = proc_path(parent, name)?;
        for (xname, value) in &meta.xattrs {
            match rfs::lsetxattr(&path, xname.as_slice(), value, rfs::XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if xattr_refused(e) => misses.xattrs += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
    rfs::utimensat(
        parent,
        name,
        &timestamps(meta.mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(misses)
}

/// `/proc/self/fd/<parent>/<name>`, for the calls that only take paths.
pub fn proc_path(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<CString> {
    use std::os::fd::AsRawFd;
    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    CString::new(path).map_err(|_| io::Error::other("a NUL byte in a file name"))
}

/// The extended attributes of an open file (name, value), for copies.
pub fn read_xattrs_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    read_xattrs(
        || rfs::flistxattr_query(fd),
        |buf| rfs::flistxattr(fd, buf),
        |name| rfs::fgetxattr_query(fd, name),
        |name, buf| rfs::fgetxattr(fd, name, buf),
    )
}

/// The extended attributes of `name` in `parent`, not following it.
pub fn read_xattrs_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = proc_path(parent, name)?;
    read_xattrs(
        || rfs::llistxattr_query(&path),
        |buf| rfs::llistxattr(&path, buf),
        |xname| rfs::lgetxattr_query(&path, xname),
        |xname, buf| rfs::lgetxattr(&path, xname, buf),
    )
}

/// Sizes can change between a query and the read (ERANGE): a few attempts with fresh sizes.
const XATTR_ATTEMPTS: usize = 3;

fn fill(
    query: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut Vec<u8>) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut last = rustix::io::Errno::RANGE;
    for _ in 0..XATTR_ATTEMPTS {
        let size = query()?;
        let mut buf = vec![0; size];
        if size == 0 {
            return Ok(buf);
        }
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e @ rustix::io::Errno::RANGE) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn read_xattrs(
    list_query: impl Fn() -> rustix::io::Result<usize>,
    list: impl Fn(&mut Vec<u8>) -> rustix::io::Result<usize>,
    get_query: impl Fn(&CString) -> rustix::io::Result<usize>,
    get: impl Fn(&CString, &mut Vec<u8>) -> rustix::io::Result<usize>,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match fill(&list_query, &list) {
        Ok(names) => names,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname =
            CString::new(name).map_err(|_| io::Error::other("a NUL byte in an xattr name"))?;
        match fill(|| get_query(&cname), |buf| get(&cname, buf)) {
            Ok(value) => out.push((name.to_vec(), value)),
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}
