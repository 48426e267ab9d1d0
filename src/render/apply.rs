//! Applying archives to a tree: OCI layers (whiteouts, overwrite) and ACI root filesystems
//! (first wins, pathWhitelist), through [`crate::fsutil::tree`] so nothing lands outside the tree.
//!
//! Rules (the module doc of [`super`] is the user-facing version):
//! - Entry paths are cleaned; an absolute path, a `..` component or a NUL byte refuses the
//!   image. Parents an archive does not list are created 0755. A path made only of `/` and
//!   `.` (`/`, `.`, `./`) is the root itself: a directory entry there gives the root its
//!   metadata (as `umoci` does), any other type refuses the image.
//! - An entry whose parent path goes through a symlink (or a file) refuses the image: nothing
//!   is written through a symlink, whatever it points to. Hard-link targets obey the same
//!   rule, must exist, and must not be directories.
//! - OCI: an entry replaces what is at its path, in a lower layer or earlier in the same
//!   layer (so of duplicate entries the last wins); a directory over a directory keeps the
//!   directory and takes the new metadata; `.wh.NAME` removes NAME from lower layers;
//!   `.wh..wh..opq` empties its directory of what lower layers put there; other `.wh..wh.*`
//!   names (AUFS bookkeeping) are ignored; whiteouts are never written.
//! - ACI: the images come highest priority first and the first to provide a path wins
//!   (see `render::appc`); a lower image's entry under a higher image's non-directory is
//!   skipped, as rkt's renderer does.
//! - Sparse files are written sparse: each run of data at its offset, holes left unwritten
//!   (the file system keeps them as holes where it can), the size set at the end.
//! - Metadata: mode always; owner only as root; times always (directories at the end of a
//!   layer, once their entries are in); extended attributes where the file system and our
//!   privileges allow (refusals are counted, not fatal). Device nodes are made only as root
//!   (counted and skipped otherwise, or when the kernel refuses); fifos always.
//! - Every failure to write an entry is a [`Refused`] naming the entry's path and its
//!   [`Fault`]: hostile, malformed, a local limit (a name longer than the file system
//!   allows, a full disk) or other local trouble.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use anyhow::Context as _;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode};

pub use super::archive::Fault;
use super::archive::{Head, Kind};
use crate::fsutil::tree::{self, Meta, PathError, Tree, show};

impl Fault {
    /// What a path problem says about the layer.
    fn of_path(error: &PathError) -> Fault {
        match error {
            PathError::Absolute | PathError::DotDot | PathError::ThroughSymlink(_) => {
                Fault::Hostile
            }
            PathError::Nul | PathError::NotADirectory(_) | PathError::Missing(_) => {
                Fault::Malformed
            }
            PathError::TooDeep => Fault::Limit,
            PathError::Io(_) => Fault::Local,
        }
    }

    /// What an I/O error while writing says about the layer.
    pub fn of_io(error: &io::Error) -> Fault {
        use rustix::io::Errno;
        let limits = [
            Errno::NAMETOOLONG,
            Errno::FBIG,
            Errno::NOSPC,
            Errno::DQUOT,
            Errno::MLINK,
            Errno::OVERFLOW,
        ];
        match error.raw_os_error() {
            Some(code) if limits.iter().any(|e| e.raw_os_error() == code) => Fault::Limit,
            _ if error.kind() == io::ErrorKind::UnexpectedEof => Fault::Malformed,
            _ => Fault::Local,
        }
    }
}

/// Why an entry could not be written (and so the whole image is not rendered).
#[derive(Debug, thiserror::Error)]
#[error("entry `{path}`: {problem}")]
pub struct Refused {
    /// The entry's path as written in the archive.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// Whose fault it is.
    pub fault: Fault,
}

fn refuse(path: &[u8], fault: Fault, problem: impl std::fmt::Display) -> anyhow::Error {
    Refused {
        path: show(path),
        problem: problem.to_string(),
        fault,
    }
    .into()
}

/// A path problem of the entry `path`.
fn refuse_path(path: &[u8], error: PathError) -> anyhow::Error {
    refuse(path, Fault::of_path(&error), error)
}

/// Any failure while applying the entry `path`, as a [`Refused`] that names it (kept as is
/// when it already is one).
fn named(path: &[u8], error: anyhow::Error) -> anyhow::Error {
    if error.downcast_ref::<Refused>().is_some() {
        return error;
    }
    let fault = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<io::Error>())
        .map_or(Fault::Local, Fault::of_io);
    refuse(path, fault, format!("{error:#}"))
}

/// Whether `raw` names the root itself: only `/` and `.` components (`/`, `.`, `./`).
fn is_root_path(raw: &[u8]) -> bool {
    !raw.is_empty()
        && raw
            .split(|&b| b == b'/')
            .all(|component| component.is_empty() || component == b".")
}

/// An entry's path, cleaned ([`tree::clean`]); the root itself is `""`. A component longer
/// than the file system's `name_max` is a local limit, said before anything fails on it.
fn clean_entry(raw: &[u8], name_max: Option<u64>) -> anyhow::Result<Vec<u8>> {
    if is_root_path(raw) {
        return Ok(Vec::new());
    }
    let path = tree::clean(raw).map_err(|e| refuse_path(raw, e))?;
    if let Some(max) = name_max
        && let Some(long) = path.split(|&b| b == b'/').find(|c| c.len() as u64 > max)
    {
        return Err(refuse(
            raw,
            Fault::Limit,
            if long == path.as_slice() {
                format!(
                    "its name is {} bytes long, and this file system allows {max}",
                    long.len()
                )
            } else {
                format!(
                    "its component `{}` is {} bytes long, and this file system allows {max}",
                    show(long),
                    long.len()
                )
            },
        ));
    }
    Ok(path)
}

/// What was written and what was left out, for the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Regular files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Directories listed by the archives.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links.
    pub hardlinks: u64,
    /// Device nodes and fifos made.
    pub nodes: u64,
    /// Paths removed by whiteouts and opaque directories.
    pub whiteouts: u64,
    /// Device nodes not made (not root, or the kernel refused).
    pub skipped_devices: u64,
    /// Extended attributes the file system or our privileges refused.
    pub skipped_xattrs: u64,
    /// Ownership changes refused.
    pub skipped_owners: u64,
    /// ACI entries left out by a pathWhitelist or a higher-priority image.
    pub filtered: u64,
}

/// Size of the copy buffer for file data: big reads keep per-byte costs low.
const COPY_BUFFER: usize = 256 * 1024;

/// Writes archives into a tree.
pub struct Extractor {
    tree: Tree,
    /// Running as root: apply owners, make device nodes.
    privileged: bool,
    /// Counts so far.
    pub counts: Counts,
    buffer: Vec<u8>,
    /// Directories listed by the archives: path → (mode, mtime), applied by
    /// [`Extractor::finish`] once every entry is in (a directory is u+rwx until then, so
    /// that later entries can be written into it without privileges).
    dir_final: BTreeMap<Vec<u8>, (u32, (i64, u32))>,
    /// The longest file name the tree's file system takes (`statvfs`), when known.
    name_max: Option<u64>,
}

/// How an entry meets an existing one at its path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Remove it (OCI: later layers overwrite).
    Replace,
    /// Keep it (ACI: the higher-priority image came first).
    Keep,
}

impl Extractor {
    /// An extractor writing into `tree`.
    pub fn new(tree: Tree, privileged: bool) -> Extractor {
        let name_max = rfs::fstatvfs(tree.root())
            .ok()
            .map(|st| st.f_namemax)
            .filter(|&n| n > 0);
        Extractor {
            name_max,
            tree,
            privileged,
            counts: Counts::default(),
            buffer: vec![0; COPY_BUFFER],
            dir_final: BTreeMap::new(),
        }
    }

    fn meta(&mut self, head: &Head) -> Meta {
        let id = |n: u64, misses: &mut u64| {
            u32::try_from(n)
                .ok()
                .filter(|&n| n != u32::MAX)
                .unwrap_or_else(|| {
                    *misses += 1;
                    u32::MAX
                })
        };
        let mut misses = 0;
        let uid = id(head.uid, &mut misses);
        let gid = id(head.gid, &mut misses);
        if self.privileged {
            self.counts.skipped_owners += misses;
        }
        Meta {
            mode: head.mode,
            uid,
            gid,
            mtime: head.mtime,
            xattrs: head.xattrs.clone(),
        }
    }

    fn count_misses(&mut self, misses: tree::MetaMisses) {
        self.counts.skipped_xattrs += misses.xattrs;
        self.counts.skipped_owners += misses.owners;
    }

    /// Gives the directories the archives listed their mode and times (deferred until every
    /// entry is written: writing into a directory changes its mtime) and returns the tree.
    pub fn finish(mut self) -> io::Result<(Tree, Counts)> {
        for (path, (mode, mtime)) in std::mem::take(&mut self.dir_final) {
            let fd = match self.tree.lookup_dir(&path) {
                Ok(fd) => fd,
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "directory `{}` vanished: {e}",
                        show(&path)
                    )));
                }
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(self.dir_mode(mode)))?;
            let t = rfs::Timespec {
                tv_sec: mtime.0,
                tv_nsec: i64::from(mtime.1),
            };
            rfs::futimens(
                &fd,
                &rfs::Timestamps {
                    last_access: t,
                    last_modification: t,
                },
            )?;
        }
        Ok((self.tree, self.counts))
    }

    /// Without privileges a directory stays u+rwx, so that the tree can be read, copied and
    /// removed by its owner.
    fn dir_mode(&self, mode: u32) -> u32 {
        if self.privileged { mode } else { mode | 0o700 }
    }

    /// Applies one OCI layer's tar stream (already decompressed).
    pub fn apply_oci_layer(
        &mut self,
        reader: impl Read,
        max_entries: u64,
    ) -> Result<(), super::archive::ArchiveError> {
        // Paths this layer wrote, with their ancestors: whiteouts and opaque markers only
        // hide what lower layers put there.
        let mut touched: HashSet<Vec<u8>> = HashSet::new();
        super::archive::for_each_entry(reader, max_entries, |head, data| {
            let path = clean_entry(&head.path, self.name_max)?;
            let Some((parent, name)) = tree::split_last(&path) else {
                return self.root_entry(head).map_err(|e| named(&head.path, e));
            };
            if let Some(hidden) = name.strip_prefix(b".wh.") {
                return self
                    .whiteout(&path, parent, hidden, &touched)
                    .map_err(|e| named(&head.path, e));
            }
            self.place(head, &path, data, Existing::Replace)
                .map_err(|e| named(&head.path, e))?;
            record_touched(&mut touched, &path);
            Ok(())
        })
    }

    /// Applies one ACI's `rootfs/` entries (already decompressed), skipping what `keep`
    /// rejects and what a higher-priority image provided (`all_files`: path → (is a
    /// directory, index of the image that provided it)).
    pub fn apply_aci(
        &mut self,
        reader: impl Read,
        max_entries: u64,
        image: usize,
        keep: &dyn Fn(&[u8], bool) -> bool,
        all_files: &mut HashMap<Vec<u8>, (bool, usize)>,
    ) -> Result<(), super::archive::ArchiveError> {
        super::archive::for_each_entry(reader, max_entries, |head, data| {
            self.aci_entry(head, data, image, keep, all_files)
                .map_err(|e| named(&head.path, e))
        })
    }

    /// One entry of an ACI (see [`Extractor::apply_aci`]).
    fn aci_entry(
        &mut self,
        head: &Head,
        data: &mut dyn Read,
        image: usize,
        keep: &dyn Fn(&[u8], bool) -> bool,
        all_files: &mut HashMap<Vec<u8>, (bool, usize)>,
    ) -> anyhow::Result<()> {
        let clean = clean_entry(&head.path, self.name_max)?;
        let rel: &[u8] = if clean == b"rootfs" {
            b""
        } else if let Some(rel) = clean.strip_prefix(b"rootfs/") {
            rel
        } else {
            // `manifest`, and `.`: not part of the root filesystem.
            return Ok(());
        };
        let is_dir = head.kind == Kind::Dir;
        if rel.is_empty() {
            if all_files.contains_key(rel) {
                return Ok(());
            }
            all_files.insert(Vec::new(), (true, image));
            return self.root_entry(head);
        }
        if !keep(rel, is_dir) || all_files.contains_key(rel) {
            self.counts.filtered += 1;
            return Ok(());
        }
        let mut prefix_end = 0;
        while let Some(slash) = rel[prefix_end..].iter().position(|&b| b == b'/') {
            prefix_end += slash;
            if let Some(&(false, owner)) = all_files.get(&rel[..prefix_end]) {
                if owner == image {
                    return Err(refuse(
                        &head.path,
                        Fault::Malformed,
                        format!(
                            "`{}` in the same image is not a directory",
                            show(&rel[..prefix_end])
                        ),
                    ));
                }
                // A higher-priority image replaced the directory with a file or link.
                self.counts.filtered += 1;
                return Ok(());
            }
            prefix_end += 1;
        }
        all_files.insert(rel.to_vec(), (is_dir, image));
        let head = Head {
            link: match head.kind {
                Kind::HardLink => {
                    let target = tree::clean(&head.link).map_err(|e| refuse_path(&head.path, e))?;
                    match target.strip_prefix(b"rootfs/") {
                        Some(t) => t.to_vec(),
                        None => {
                            return Err(refuse(
                                &head.path,
                                Fault::Hostile,
                                format!("hard link to `{}`, outside rootfs/", show(&head.link)),
                            ));
                        }
                    }
                }
                _ => head.link.clone(),
            },
            ..head.clone()
        };
        self.place(&head, rel, data, Existing::Keep)
    }

    /// The archive's entry for the root directory itself: its metadata only.
    fn root_entry(&mut self, head: &Head) -> anyhow::Result<()> {
        if head.kind != Kind::Dir {
            return Err(refuse(
                &head.path,
                Fault::Hostile,
                "an entry for the root that is not a directory",
            ));
        }
        let meta = self.meta(head);
        let misses = tree::apply_owner_xattrs(self.tree.root(), &meta, self.privileged)
            .context("cannot set the root directory's metadata")?;
        self.count_misses(misses);
        self.dir_final.insert(Vec::new(), (meta.mode, meta.mtime));
        Ok(())
    }

    fn whiteout(
        &mut self,
        path: &[u8],
        parent: &[u8],
        hidden: &[u8],
        touched: &HashSet<Vec<u8>>,
    ) -> anyhow::Result<()> {
        if hidden == b".wh..opq" {
            let dir = match self.tree.dir(parent, false) {
                Ok(dir) => dir,
                // Nothing below a path that is not a directory to hide.
                Err(PathError::Missing(_) | PathError::NotADirectory(_)) => return Ok(()),
                Err(e) => return Err(refuse_path(path, e)),
            };
            let mut removed = Vec::new();
            clear_lower(dir, parent, touched, 0, &mut removed)
                .with_context(|| format!("cannot empty opaque directory `{}`", show(parent)))?;
            self.counts.whiteouts += removed.len() as u64;
            for path in removed {
                forget(&mut self.dir_final, &path);
            }
            return Ok(());
        }
        if hidden.starts_with(b".wh.") {
            // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(refuse(path, Fault::Hostile, "a whiteout for `.` or `..`"));
        }
        let mut target = parent.to_vec();
        if !target.is_empty() {
            target.push(b'/');
        }
        target.extend_from_slice(hidden);
        if touched.contains(&target) {
            // Whiteouts hide lower layers only, never the same layer's entries.
            return Ok(());
        }
        let dir = match self.tree.dir(parent, false) {
            Ok(dir) => dir,
            Err(PathError::Missing(_) | PathError::NotADirectory(_)) => return Ok(()),
            Err(e) => return Err(refuse_path(path, e)),
        };
        if tree::lstat(dir, hidden)?.is_some() {
            tree::remove_all(dir, hidden)
                .with_context(|| format!("cannot remove `{}`", show(&target)))?;
            self.counts.whiteouts += 1;
            forget(&mut self.dir_final, &target);
        }
        Ok(())
    }

    /// Writes one entry at `path` (clean, not the root).
    fn place(
        &mut self,
        head: &Head,
        path: &[u8],
        data: &mut dyn Read,
        existing: Existing,
    ) -> anyhow::Result<()> {
        let (parent, name) = tree::split_last(path).expect("callers handle the root");
        let meta = self.meta(head);
        // A hard link's target is looked up first, from the root, away from the kept chain.
        let link_target = if head.kind == Kind::HardLink {
            Some(self.link_target(head, path)?)
        } else {
            None
        };
        let privileged = self.privileged;
        let dir = self
            .tree
            .dir(parent, true)
            .map_err(|e| refuse_path(&head.path, e))?;
        if let Some(st) = tree::lstat(dir, name)? {
            let is_dir = tree::file_type(&st) == FileType::Directory;
            if is_dir && head.kind == Kind::Dir {
                let fd = tree::open_dir(dir, name)?;
                let misses = tree::apply_owner_xattrs(fd.as_fd(), &meta, privileged)?;
                self.counts.dirs += 1;
                self.count_misses(misses);
                self.dir_final
                    .insert(path.to_vec(), (meta.mode, meta.mtime));
                return Ok(());
            }
            match existing {
                Existing::Keep => {
                    self.counts.filtered += 1;
                    return Ok(());
                }
                Existing::Replace => {
                    if let Some((tdir, tname)) = &link_target
                        && rfs::statat(tdir, tname.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                            .is_ok_and(|t| t.st_ino == st.st_ino && t.st_dev == st.st_dev)
                    {
                        // Already that very file (a link to itself, or re-linked).
                        return Ok(());
                    }
                    tree::remove_all(dir, name)
                        .with_context(|| format!("cannot replace `{}`", show(path)))?;
                    if is_dir {
                        forget(&mut self.dir_final, path);
                    }
                }
            }
        }
        let misses = match head.kind {
            Kind::Dir => {
                rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
                let fd = tree::open_dir(dir, name)?;
                rfs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
                self.counts.dirs += 1;
                self.dir_final
                    .insert(path.to_vec(), (meta.mode, meta.mtime));
                tree::apply_owner_xattrs(fd.as_fd(), &meta, privileged)?
            }
            Kind::File => {
                let mut file = tree::create_file(dir, name)?;
                let written = match &head.sparse {
                    None => copy_data(data, &mut file, &mut self.buffer)?,
                    Some(runs) => write_sparse(data, &mut file, runs, head.size, &mut self.buffer)?,
                };
                if written != head.data_len() {
                    return Err(refuse(
                        &head.path,
                        Fault::Malformed,
                        "the archive ends inside its data",
                    ));
                }
                self.counts.files += 1;
                self.counts.bytes += head.size;
                let meta = Meta {
                    // Without privileges the owner keeps read access (for copies and gc).
                    mode: if privileged {
                        meta.mode
                    } else {
                        meta.mode | 0o400
                    },
                    ..meta
                };
                tree::apply_meta_fd(file.as_fd(), &meta, privileged)?
            }
            Kind::Symlink => {
                if head.link.is_empty() || head.link.contains(&0) {
                    return Err(refuse(
                        &head.path,
                        Fault::Malformed,
                        "a symlink with an empty or NUL target",
                    ));
                }
                rfs::symlinkat(head.link.as_slice(), dir, name)?;
                self.counts.symlinks += 1;
                tree::apply_meta_at(dir, name, &meta, privileged, true)?
            }
            Kind::HardLink => {
                let (tdir, tname) = link_target.expect("looked up above");
                rfs::linkat(&tdir, tname.as_slice(), dir, name, AtFlags::empty())?;
                self.counts.hardlinks += 1;
                // A hard link shares its target's inode and metadata.
                tree::MetaMisses::default()
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                let file_type = match head.kind {
                    Kind::CharDevice => FileType::CharacterDevice,
                    Kind::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !privileged {
                    self.counts.skipped_devices += 1;
                    return Ok(());
                }
                let dev = rfs::makedev(head.device.0, head.device.1);
                match rfs::mknodat(dir, name, file_type, Mode::from_raw_mode(0o600), dev) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::PERM) if file_type != FileType::Fifo => {
                        self.counts.skipped_devices += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
                self.counts.nodes += 1;
                tree::apply_meta_at(dir, name, &meta, privileged, false)?
            }
        };
        self.count_misses(misses);
        Ok(())
    }

    /// The directory and name a hard link points to, checked: inside the tree, not through
    /// a symlink, existing, not a directory.
    fn link_target(
        &self,
        head: &Head,
        path: &[u8],
    ) -> anyhow::Result<(std::os::fd::OwnedFd, Vec<u8>)> {
        let target = tree::clean(&head.link).map_err(|e| {
            refuse(
                &head.path,
                Fault::of_path(&e),
                format!(
                    "hard link to `{}`, outside the image: {e}",
                    show(&head.link)
                ),
            )
        })?;
        let Some((tparent, tname)) = tree::split_last(&target) else {
            return Err(refuse(
                &head.path,
                Fault::Hostile,
                "a hard link to the root directory",
            ));
        };
        if target == path {
            return Err(refuse(
                &head.path,
                Fault::Malformed,
                "a hard link to itself",
            ));
        }
        let dir = self.tree.lookup_dir(tparent).map_err(|e| {
            refuse(
                &head.path,
                Fault::of_path(&e),
                format!("hard link to `{}`: {e}", show(&head.link)),
            )
        })?;
        match tree::lstat(dir.as_fd(), tname)? {
            None => Err(refuse(
                &head.path,
                Fault::Malformed,
                format!(
                    "hard link to `{}`, which does not exist (yet)",
                    show(&head.link)
                ),
            )),
            Some(st) if tree::file_type(&st) == FileType::Directory => Err(refuse(
                &head.path,
                Fault::Malformed,
                format!("hard link to directory `{}`", show(&head.link)),
            )),
            Some(_) => Ok((dir, tname.to_vec())),
        }
    }
}

/// Drops the deferred directory metadata of `path` and everything below it (just removed).
fn forget(dir_final: &mut BTreeMap<Vec<u8>, (u32, (i64, u32))>, path: &[u8]) {
    dir_final.remove(path);
    let mut start = path.to_vec();
    start.push(b'/');
    let mut end = path.to_vec();
    end.push(b'/' + 1);
    let below: Vec<Vec<u8>> = dir_final
        .range(start..end)
        .map(|(k, _)| k.clone())
        .collect();
    for key in below {
        dir_final.remove(&key);
    }
}

/// Adds `path` and its ancestors to `touched`.
fn record_touched(touched: &mut HashSet<Vec<u8>>, path: &[u8]) {
    let mut end = path.len();
    loop {
        if !touched.insert(path[..end].to_vec()) {
            return;
        }
        match path[..end].iter().rposition(|&b| b == b'/') {
            Some(slash) => end = slash,
            None => return,
        }
    }
}

/// Removes from `dir` (at `dir_path`) everything the current layer did not write, keeping
/// the directories it wrote into but emptying them of lower content too; the removed paths
/// are added to `removed`.
fn clear_lower(
    dir: BorrowedFd<'_>,
    dir_path: &[u8],
    touched: &HashSet<Vec<u8>>,
    depth: usize,
    removed: &mut Vec<Vec<u8>>,
) -> io::Result<()> {
    if depth > tree::MAX_DEPTH {
        return Err(io::Error::other("directories nested too deep"));
    }
    for name in tree::read_dir_names(dir)? {
        let mut child = dir_path.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(&name);
        if !touched.contains(&child) {
            tree::remove_all(dir, &name)?;
            removed.push(child);
            continue;
        }
        if let Some(st) = tree::lstat(dir, &name)?
            && tree::file_type(&st) == FileType::Directory
        {
            let sub = tree::open_dir(dir, &name)?;
            clear_lower(sub.as_fd(), &child, touched, depth + 1, removed)?;
        }
    }
    Ok(())
}

/// Writes a sparse file's runs at their offsets, leaving the holes unwritten, and sets its
/// size; returns the bytes of data written.
fn write_sparse(
    data: &mut dyn Read,
    out: &mut std::fs::File,
    runs: &[super::archive::Fragment],
    size: u64,
    buffer: &mut [u8],
) -> io::Result<u64> {
    use std::io::{Seek as _, SeekFrom};
    let mut written = 0;
    for run in runs {
        out.seek(SeekFrom::Start(run.offset))?;
        written += copy_data(&mut Read::take(&mut *data, run.length), out, buffer)?;
    }
    out.set_len(size)?;
    Ok(written)
}

fn copy_data(data: &mut dyn Read, out: &mut std::fs::File, buffer: &mut [u8]) -> io::Result<u64> {
    let mut written = 0u64;
    loop {
        let n = match data.read(buffer) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buffer[..n])?;
        written += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: tar::EntryType, data: &[u8]) -> (tar::Header, Vec<u8>) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_path(path).expect("path");
        h.set_cksum();
        (h, data.to_vec())
    }

    fn tar_of(entries: &[(tar::Header, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (h, data) in entries {
            b.append(h, data.as_slice()).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn extractor(dir: &std::path::Path, privileged: bool) -> Extractor {
        Extractor::new(Tree::open(dir).expect("open"), privileged)
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut out: Vec<String> = walk(dir, dir);
        out.sort();
        out
    }

    fn walk(root: &std::path::Path, dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let path = e.expect("entry").path();
            out.push(
                path.strip_prefix(root)
                    .expect("below")
                    .display()
                    .to_string(),
            );
            if path.is_dir() && !path.is_symlink() {
                out.extend(walk(root, &path));
            }
        }
        out
    }

    #[test]
    fn whiteouts_hide_lower_layers_only() {
        use tar::EntryType::{Directory as D, Regular as F};
        let dir = tempfile::tempdir().expect("tmp");
        let mut ex = extractor(dir.path(), false);
        let lower = tar_of(&[
            entry("a/", D, b""),
            entry("a/old", F, b"1"),
            entry("a/sub/", D, b""),
            entry("a/sub/old", F, b"1"),
            entry("b", F, b"1"),
        ]);
        ex.apply_oci_layer(lower.as_slice(), 100).expect("lower");
        // Entries before the opaque marker in the same layer survive it; a whiteout
        // after a same-layer entry does not remove it.
        let upper = tar_of(&[
            entry("a/sub/new", F, b"2"),
            entry("a/.wh..wh..opq", F, b""),
            entry("a/new", F, b"2"),
            entry("c", F, b"2"),
            entry(".wh.c", F, b""),
            entry(".wh.b", F, b""),
        ]);
        ex.apply_oci_layer(upper.as_slice(), 100).expect("upper");
        let (_, counts) = ex.finish().expect("finish");
        assert_eq!(names(dir.path()), ["a", "a/new", "a/sub", "a/sub/new", "c"]);
        assert_eq!(counts.whiteouts, 3, "a/old, a/sub/old, b");
    }

    #[test]
    fn devices_are_skipped_without_privileges_and_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut ex = extractor(dir.path(), false);
        let (mut null, _) = entry("dev/null", tar::EntryType::Char, b"");
        null.set_device_major(1).expect("major");
        null.set_device_minor(3).expect("minor");
        null.set_cksum();
        let layer = tar_of(&[
            (null, Vec::new()),
            entry("dev/pipe", tar::EntryType::Fifo, b""),
        ]);
        ex.apply_oci_layer(layer.as_slice(), 100).expect("layer");
        let (_, counts) = ex.finish().expect("finish");
        assert_eq!(counts.skipped_devices, 1);
        assert_eq!(counts.nodes, 1, "fifos need no privileges");
        assert!(!dir.path().join("dev/null").exists());
        assert!(dir.path().join("dev/pipe").exists());
    }

    #[test]
    fn entry_limits_and_dot_dot_whiteouts_refuse() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut ex = extractor(dir.path(), false);
        let layer = tar_of(&[
            entry("a", tar::EntryType::Regular, b""),
            entry("b", tar::EntryType::Regular, b""),
        ]);
        let err = ex.apply_oci_layer(layer.as_slice(), 1).expect_err("limit");
        assert!(err.to_string().contains("more than 1 entries"), "{err}");
        let mut ex = extractor(dir.path(), false);
        let (mut h, _) = entry("x", tar::EntryType::Regular, b"");
        h.as_old_mut().name[..6].copy_from_slice(b".wh..\0");
        h.set_cksum();
        let err = ex
            .apply_oci_layer(tar_of(&[(h, Vec::new())]).as_slice(), 10)
            .expect_err("refused");
        assert!(err.to_string().contains("whiteout for `.`"), "{err}");
    }

    /// A header whose name is written raw (absolute paths, `/`), checksummed.
    fn raw_entry(
        path: &[u8],
        kind: tar::EntryType,
        mode: u32,
        data: &[u8],
    ) -> (tar::Header, Vec<u8>) {
        let (mut h, data) = entry("placeholder", kind, data);
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        h.set_mode(mode);
        h.set_cksum();
        (h, data)
    }

    /// The [`Refused`] inside an archive error from applying.
    fn refused(err: &super::super::archive::ArchiveError) -> &Refused {
        match err {
            super::super::archive::ArchiveError::Visit(e) => {
                e.downcast_ref::<Refused>().expect("a Refused")
            }
            other => panic!("not a visitor error: {other}"),
        }
    }

    fn mode_of(path: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn root_entries_give_the_root_its_metadata() {
        use tar::EntryType::{Directory as D, Regular as F};
        let dir = tempfile::tempdir().expect("tmp");
        let mut ex = extractor(dir.path(), true);
        let layer = tar_of(&[
            raw_entry(b"/", D, 0o711, b""),
            raw_entry(b"./", D, 0o751, b""),
            raw_entry(b".", D, 0o750, b""),
            entry("a", F, b"a"),
        ]);
        ex.apply_oci_layer(layer.as_slice(), 100).expect("layer");
        ex.finish().expect("finish");
        assert_eq!(mode_of(dir.path()), 0o750, "the last root entry wins");
        assert_eq!(names(dir.path()), ["a"]);

        let mut ex = extractor(dir.path(), false);
        let layer = tar_of(&[raw_entry(b"/", F, 0o644, b"")]);
        let err = ex
            .apply_oci_layer(layer.as_slice(), 100)
            .expect_err("a file root");
        assert_eq!(refused(&err).fault, Fault::Hostile, "{err}");
        // Other absolute paths stay refused.
        let mut ex = extractor(dir.path(), false);
        let layer = tar_of(&[raw_entry(b"/etc/passwd", F, 0o644, b"x")]);
        let err = ex
            .apply_oci_layer(layer.as_slice(), 100)
            .expect_err("absolute");
        assert_eq!(refused(&err).fault, Fault::Hostile, "{err}");
        assert!(err.to_string().contains("absolute path"), "{err}");
    }

    #[test]
    fn of_duplicate_entries_the_last_wins() {
        use tar::EntryType::{Directory as D, Regular as F, Symlink as S};
        let dir = tempfile::tempdir().expect("tmp");
        let mut ex = extractor(dir.path(), true);
        let mut link = entry("y", S, b"");
        link.0.set_link_name("x").expect("link");
        link.0.set_cksum();
        let layer = tar_of(&[
            entry("x", F, b"first"),
            raw_entry(b"x", F, 0o600, b"last"),
            raw_entry(b"d", D, 0o700, b""),
            raw_entry(b"d", D, 0o751, b""),
            entry("y", F, b"a file first"),
            link,
            entry("z/", D, b""),
            entry("z/child", F, b"gone with z"),
            entry("z", F, b"z is a file now"),
        ]);
        ex.apply_oci_layer(layer.as_slice(), 100).expect("layer");
        ex.finish().expect("finish");
        let root = dir.path();
        assert_eq!(std::fs::read(root.join("x")).expect("x"), b"last");
        assert_eq!(mode_of(&root.join("x")), 0o600);
        assert_eq!(mode_of(&root.join("d")), 0o751);
        assert_eq!(
            std::fs::read_link(root.join("y")).expect("y"),
            std::path::Path::new("x")
        );
        assert_eq!(
            std::fs::read(root.join("z")).expect("z"),
            b"z is a file now"
        );
    }

    #[test]
    fn sparse_files_are_written_sparse() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let mut ex = extractor(dir.path(), false);
        const SIZE: u64 = 8 << 20;
        let mut b = tar::Builder::new(Vec::new());
        let map = format!("0,2,{},2", SIZE - 2);
        b.append_pax_extensions([
            ("GNU.sparse.size", SIZE.to_string().as_bytes()),
            ("GNU.sparse.map", map.as_bytes()),
        ])
        .expect("pax");
        let (h, data) = entry("sparse", tar::EntryType::Regular, b"ABYZ");
        b.append(&h, data.as_slice()).expect("append");
        let layer = b.into_inner().expect("tar");
        ex.apply_oci_layer(layer.as_slice(), 100).expect("layer");
        let (_, counts) = ex.finish().expect("finish");
        assert_eq!(counts.bytes, SIZE);
        let path = dir.path().join("sparse");
        let content = std::fs::read(&path).expect("read");
        assert_eq!(content.len() as u64, SIZE);
        assert_eq!(&content[..2], b"AB");
        assert_eq!(&content[content.len() - 2..], b"YZ");
        assert!(content[2..content.len() - 2].iter().all(|&b| b == 0));
        let allocated = std::fs::metadata(&path).expect("stat").blocks() * 512;
        assert!(
            allocated < 1 << 20,
            "{allocated} bytes allocated: not sparse"
        );
    }

    #[test]
    fn a_name_over_the_file_system_limit_is_a_local_limit() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut ex = extractor(dir.path(), false);
        let name = format!("dir/{}", "n".repeat(300));
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", name.as_bytes())])
            .expect("pax");
        let (h, data) = entry("short", tar::EntryType::Regular, b"x");
        b.append(&h, data.as_slice()).expect("append");
        let err = ex
            .apply_oci_layer(b.into_inner().expect("tar").as_slice(), 100)
            .expect_err("too long");
        let refused = refused(&err);
        assert_eq!(refused.fault, Fault::Limit, "{err}");
        assert_eq!(refused.path, name);
        assert!(err.to_string().contains("300 bytes long"), "{err}");
    }

    #[test]
    fn io_errors_are_classified() {
        let e = io::Error::from_raw_os_error(rustix::io::Errno::NAMETOOLONG.raw_os_error());
        assert_eq!(Fault::of_io(&e), Fault::Limit);
        let e = io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
        assert_eq!(Fault::of_io(&e), Fault::Limit);
        let e = io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error());
        assert_eq!(Fault::of_io(&e), Fault::Local);
        let named = named(b"a/b", anyhow::Error::new(e).context("cannot create `a/b`"));
        let refused = named.downcast_ref::<Refused>().expect("named");
        assert_eq!(
            (refused.path.as_str(), refused.fault),
            ("a/b", Fault::Local)
        );
        assert!(
            named.to_string().starts_with("entry `a/b`: cannot create"),
            "{named}"
        );
    }
}
