//! Small filesystem helpers shared by the lock and the store.
//!
//! Invariant: a file written with [`write_atomic`] is either its old content or
//! its new content, never a mixture, even across a crash.

use std::io::Write;
use std::path::Path;

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
