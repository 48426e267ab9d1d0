//! Small filesystem helpers shared by the lock and the store.
//!
//! Invariants: a file written with [`write_atomic`] is either its old content or
//! its new content, never a mixture, even across a crash. The `*_nofollow`
//! helpers never follow a symbolic link at the components they are given
//! ([`open_regular`] at the last one, [`open_dir_beneath`] at every component
//! below the root the caller chose) and never open anything but what they
//! name (a fifo or a device would block or never end): they are how the store
//! reads and removes its own files.

pub mod tree;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// synced and renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Reads a small file such as a signature: `None` when it does not exist, an
/// error naming the file when it is larger than `limit` bytes.
pub fn read_if_exists(path: &Path, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
    use anyhow::Context as _;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        Ok(meta) if meta.len() > limit => anyhow::bail!(
            "{} is {} bytes, more than the {limit} bytes allowed for it",
            path.display(),
            meta.len()
        ),
        Ok(_) => {
            Ok(Some(std::fs::read(path).with_context(|| {
                format!("cannot read {}", path.display())
            })?))
        }
    }
}

/// The error for a symbolic link where a file or directory of the store belongs.
fn link_refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "it is a symbolic link, which imagelock does not follow here (copy the file itself in)",
    )
}

/// Opens the regular file `path` for reading without following a symbolic link
/// at its last component; a link, fifo, device or directory there is an error.
pub fn open_regular(path: &Path) -> io::Result<File> {
    // Looked at before it is opened: opening a device node can have effects of its own.
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(link_refused());
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rfs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => return Err(link_refused()),
        Err(e) => return Err(e.into()),
    };
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    // Reads of a regular file never block: the flag only mattered for the open.
    rfs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok(File::from(fd))
}

/// Reads the regular file `path` (see [`open_regular`]) when it has at most `limit`
/// bytes; a larger one is an error saying so (nothing past the limit is read).
pub fn read_regular_capped(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is larger than {}, more than such a file ever is",
                crate::text::human_bytes(limit)
            ),
        ));
    }
    Ok(bytes)
}

/// Reads the regular file `path` (see [`open_regular`]).
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_regular(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens the directory `root.join(relative)`: `root` as given (the caller chose
/// it, so a link there is followed), then each component of `relative` with
/// `O_DIRECTORY | O_NOFOLLOW`, so that a symbolic link below `root` is refused
/// (`ELOOP` or `ENOTDIR`), never followed. `relative` must be plain names.
pub fn open_dir_beneath(root: &Path, relative: &Path) -> io::Result<OwnedFd> {
    const DIR: OFlags = OFlags::RDONLY
        .union(OFlags::DIRECTORY)
        .union(OFlags::CLOEXEC);
    let mut fd = rfs::open(root, DIR, Mode::empty())?;
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", relative.display()),
            ));
        };
        fd = match rfs::openat(&fd, name, DIR | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(next) => next,
            Err(rustix::io::Errno::LOOP) => return Err(link_refused()),
            Err(e) => return Err(e.into()),
        };
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_directories_are_not_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), "secret").expect("write");
        std::fs::write(dir.path().join("file"), "mine").expect("write");
        std::os::unix::fs::symlink(outside.join("secret"), dir.path().join("link"))
            .expect("symlink");
        std::os::unix::fs::symlink(&outside, dir.path().join("dirlink")).expect("symlink");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");

        assert_eq!(
            read_regular(&dir.path().join("file")).expect("read"),
            b"mine"
        );
        for name in ["link", "fifo", "dirlink"] {
            assert!(open_regular(&dir.path().join(name)).is_err(), "{name}");
        }
        assert!(open_dir_beneath(dir.path(), Path::new("dirlink")).is_err());
        assert!(open_dir_beneath(dir.path(), Path::new("../outside")).is_err());
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        assert!(open_dir_beneath(dir.path(), Path::new("a/b")).is_ok());
        std::os::unix::fs::symlink(&outside, dir.path().join("a/c")).expect("symlink");
        assert!(open_dir_beneath(dir.path(), Path::new("a/c")).is_err());
    }
}
