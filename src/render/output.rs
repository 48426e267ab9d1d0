//! Copying a cached tree to the user's directory: hard links (the default), or copies
//! (`--copy`, which the kernel may turn into reflinks), by file descriptor on both sides.
//!
//! Invariants: the destination is walked like any tree here ([`crate::fsutil::tree`]): an existing
//! entry in the way (with `--force`) is removed, never followed, so a symlink left in the
//! destination cannot redirect a write. Only regular files are shared with the cache;
//! directories, symlinks and device nodes are always made anew. Hard links between files of
//! the image are kept in copy mode too.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};

use crate::fsutil::tree::{self, Meta};

/// How regular files get to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Hard links into the cache (near-instant; files share inodes with the cache).
    Link,
    /// Independent copies (reflinks where the file system can).
    Copy,
}

/// What materialising did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Placed {
    /// Files hard-linked to the cache.
    pub linked: u64,
    /// Files copied.
    pub copied: u64,
    /// Other entries made (directories, symlinks, nodes).
    pub made: u64,
    /// Entries that were in the destination and got replaced (`--force`).
    pub replaced: u64,
    /// Device nodes that could not be made.
    pub skipped_devices: u64,
    /// Whether hard links were impossible (another file system) and copies were made.
    pub fell_back_to_copy: bool,
}

struct Walk {
    method: Method,
    privileged: bool,
    placed: Placed,
    /// (dev, ino) in the cache → its first copy's path in the destination (copy mode).
    copies: HashMap<(u64, u64), Vec<u8>>,
    dest: tree::Tree,
}

/// Makes `dest` (an existing directory) hold the tree at `source` (an opened directory).
pub fn materialize(
    source: std::os::fd::OwnedFd,
    dest: &std::path::Path,
    method: Method,
    privileged: bool,
) -> io::Result<Placed> {
    let src = tree::Tree::from_fd(source);
    let mut walk = Walk {
        method,
        privileged,
        placed: Placed::default(),
        copies: HashMap::new(),
        dest: tree::Tree::open(dest)?,
    };
    let dest_root = rfs::openat(
        walk.dest.root(),
        c".",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let empty = tree::read_dir_names(dest_root.as_fd())?.is_empty();
    walk.dir(src.root(), dest_root.as_fd(), empty, &mut Vec::new(), 0)?;
    let st = rfs::fstat(src.root())?;
    apply_dir_meta(dest_root.as_fd(), &st, src.root(), privileged)?;
    Ok(walk.placed)
}

fn meta_of(st: &rfs::Stat, xattrs: Vec<(Vec<u8>, Vec<u8>)>) -> Meta {
    Meta {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: (st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0)),
        xattrs,
    }
}

fn apply_dir_meta(
    dest: BorrowedFd<'_>,
    st: &rfs::Stat,
    src: BorrowedFd<'_>,
    privileged: bool,
) -> io::Result<()> {
    let meta = meta_of(st, tree::read_xattrs_fd(src)?);
    tree::apply_meta_fd(dest, &meta, privileged)?;
    Ok(())
}

impl Walk {
    /// Copies the entries of `src` into `dest`; `empty`: `dest` is known to be empty (made
    /// by this walk), so nothing in it needs checking.
    fn dir(
        &mut self,
        src: BorrowedFd<'_>,
        dest: BorrowedFd<'_>,
        empty: bool,
        path: &mut Vec<u8>,
        depth: usize,
    ) -> io::Result<()> {
        if depth > tree::MAX_DEPTH {
            return Err(io::Error::other("directories nested too deep"));
        }
        for name in tree::read_dir_names(src)? {
            let Some(st) = tree::lstat(src, &name)? else {
                continue;
            };
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            self.entry((src, dest), empty, &name, &st, path, depth)?;
            path.truncate(len);
        }
        Ok(())
    }

    fn entry(
        &mut self,
        (src, dest): (BorrowedFd<'_>, BorrowedFd<'_>),
        dest_empty: bool,
        name: &[u8],
        st: &rfs::Stat,
        path: &mut Vec<u8>,
        depth: usize,
    ) -> io::Result<()> {
        let file_type = tree::file_type(st);
        let existing = if dest_empty {
            None
        } else {
            tree::lstat(dest, name)?
        };
        let keep_dir = file_type == FileType::Directory
            && existing
                .as_ref()
                .is_some_and(|e| tree::file_type(e) == FileType::Directory);
        if existing.is_some() && !keep_dir {
            tree::remove_all(dest, name)?;
            self.placed.replaced += 1;
        }
        match file_type {
            FileType::Directory => {
                if !keep_dir {
                    rfs::mkdirat(dest, name, Mode::from_raw_mode(0o700))?;
                }
                let sub_src = tree::open_dir(src, name)?;
                let sub_dest = tree::open_dir(dest, name)?;
                // Writable while it is filled; its own mode and times come last.
                rfs::fchmod(&sub_dest, Mode::from_raw_mode(0o700))?;
                self.dir(
                    sub_src.as_fd(),
                    sub_dest.as_fd(),
                    !keep_dir,
                    path,
                    depth + 1,
                )?;
                apply_dir_meta(sub_dest.as_fd(), st, sub_src.as_fd(), self.privileged)?;
                self.placed.made += 1;
            }
            FileType::RegularFile => self.file(src, dest, name, st, path)?,
            FileType::Symlink => {
                let target = rfs::readlinkat(src, name, Vec::new())?;
                rfs::symlinkat(target.as_c_str(), dest, name)?;
                let meta = meta_of(st, tree::read_xattrs_at(src, name)?);
                tree::apply_meta_at(dest, name, &meta, self.privileged, true)?;
                self.placed.made += 1;
            }
            other => {
                match rfs::mknodat(
                    dest,
                    name,
                    other,
                    Mode::from_raw_mode(0o600),
                    st.st_rdev as rfs::Dev,
                ) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::PERM) if other != FileType::Fifo => {
                        self.placed.skipped_devices += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
                let meta = meta_of(st, tree::read_xattrs_at(src, name)?);
                tree::apply_meta_at(dest, name, &meta, self.privileged, false)?;
                self.placed.made += 1;
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        src: BorrowedFd<'_>,
        dest: BorrowedFd<'_>,
        name: &[u8],
        st: &rfs::Stat,
        path: &[u8],
    ) -> io::Result<()> {
        if self.method == Method::Link {
            match rfs::linkat(src, name, dest, name, AtFlags::empty()) {
                Ok(()) => {
                    self.placed.linked += 1;
                    return Ok(());
                }
                // Another file system: copy everything from now on.
                Err(rustix::io::Errno::XDEV) => {
                    self.method = Method::Copy;
                    self.placed.fell_back_to_copy = true;
                }
                // Too many links to this inode (ext4 allows 65,000): copy this one.
                Err(rustix::io::Errno::MLINK) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let inode = (st.st_dev, st.st_ino);
        if st.st_nlink > 1
            && let Some(first) = self.copies.get(&inode)
        {
            // Another name of a file already copied: link to that copy.
            let (parent, first_name) = tree::split_last(first).expect("files are not the root");
            let parent_fd = self
                .dest
                .lookup_dir(parent)
                .map_err(|e| io::Error::other(e.to_string()))?;
            rfs::linkat(&parent_fd, first_name, dest, name, AtFlags::empty())?;
            self.placed.linked += 1;
            return Ok(());
        }
        let mut input = tree::open_file(src, name)?;
        let mut output = tree::create_file(dest, name)?;
        if rfs::ioctl_ficlone(&output, &input).is_err() {
            io::copy(&mut input, &mut output)?;
        }
        let meta = meta_of(st, tree::read_xattrs_fd(input.as_fd())?);
        tree::apply_meta_fd(output.as_fd(), &meta, self.privileged)?;
        self.placed.copied += 1;
        if st.st_nlink > 1 {
            self.copies.insert(inode, path.to_vec());
        }
        Ok(())
    }
}
