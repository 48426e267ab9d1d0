//! The older lock that `imagelock diff` compares with and `imagelock export
//! --since` cuts a delta against: another lock file, or the lock as committed
//! in a git revision (`git show REV:./images.lock`, run in
//! the lock's directory so the path is resolved relative to it).
//!
//! Git is run as a subprocess (the user's git, with their configuration);
//! nothing here writes anything.

use std::path::Path;
use std::process::Command;

use crate::errors::hinted;
use crate::project::lockfile::{LOCK_FILE, Lock, LockError};

/// The old side of a diff, or the base of a delta.
#[derive(Debug)]
pub struct OldLock {
    /// How to name it in messages: `HEAD:images.lock` or the file's path.
    pub label: String,
    /// The git revision it was read from; `None` for a lock file.
    pub revision: Option<String>,
    /// The lock (empty when the revision has no lock file).
    pub lock: Lock,
    /// Set when the revision has no lock file at that path.
    pub absent: bool,
}

/// Reads the lock to compare `lock_path` against: `against` as a file when
/// such a file exists, else as a git revision (default `HEAD`). A name that is
/// both a file and a revision is refused (as git refuses it) unless it has a
/// `/`; a revision starting with `-` is refused too, so it never reaches git
/// as an option. `instead` is the command line to suggest with a lock file.
pub fn old_lock(lock_path: &Path, against: Option<&str>, instead: &str) -> anyhow::Result<OldLock> {
    // Text that is no lock (a bundle, say) gets a hint about what is expected
    // here; a lock from a newer imagelock, or with merge markers, keeps its own.
    let not_a_lock = |label: &str, error: LockError| -> anyhow::Error {
        let no_lock_text = match &error {
            LockError::Invalid { .. } => true,
            LockError::Read { source, .. } => source.kind() == std::io::ErrorKind::InvalidData,
            _ => false,
        };
        if !no_lock_text {
            return error.into();
        }
        crate::errors::with_hint(
            error,
            format!(
                "{label} must be a lock imagelock wrote: name another git revision, or a lock file ({instead})"
            ),
        )
    };
    if let Some(name) = against.filter(|a| Path::new(a).is_file()) {
        if !name.contains('/') && commit_of(lock_path, name).is_some() {
            return Err(hinted(
                format!("`{name}` is both a file and a git revision"),
                format!(
                    "write `./{name}` for the file, or a less ambiguous revision (`{name}^0`, a commit id) for git"
                ),
            ));
        }
        let label = Path::new(name).display().to_string();
        let lock = Lock::load(Path::new(name))
            .map_err(|e| not_a_lock(&label, e))?
            .unwrap_or_default();
        return Ok(OldLock {
            label,
            revision: None,
            lock,
            absent: false,
        });
    }
    let rev = against.unwrap_or("HEAD");
    if rev.starts_with('-') {
        return Err(hinted(
            format!(
                "`{}` is neither a lock file nor a git revision",
                crate::text::escape(rev)
            ),
            format!("name a commit or branch (`HEAD~1`, `main`), or a lock file ({instead})"),
        ));
    }
    let file_name = lock_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(LOCK_FILE);
    let label = format!("{rev}:{file_name}");
    let spec = format!("{rev}:./{file_name}");
    let output = git_in(lock_path)
        .args(["show", "--no-textconv", "--end-of-options", &spec])
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            return Err(hinted(
                format!("cannot run git to read {label}: {e}"),
                format!("install git, or name a lock file: {instead}"),
            ));
        }
    };
    if output.status.success() {
        let text = String::from_utf8(output.stdout)
            .map_err(|_| anyhow::anyhow!("{label} is not UTF-8 text"))?;
        let lock = Lock::parse(Path::new(&label), &text).map_err(|e| not_a_lock(&label, e))?;
        return Ok(OldLock {
            label,
            revision: Some(rev.to_owned()),
            lock,
            absent: false,
        });
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    if stderr.contains("not a git repository") {
        return Err(hinted(
            format!(
                "{} is not in a git repository, so there is no {label} to compare with",
                lock_path.display()
            ),
            format!("name a lock file instead: {instead}"),
        ));
    }
    // "exists on disk, but not in 'REV'" / "does not exist in 'REV'": the revision is
    // fine and simply has no lock yet, so every image is new.
    if stderr.contains("exists on disk, but not in") || stderr.contains("does not exist in") {
        return Ok(OldLock {
            label,
            revision: Some(rev.to_owned()),
            lock: Lock::default(),
            absent: true,
        });
    }
    Err(hinted(
        format!("cannot read {label} with git: {stderr}"),
        format!(
            "`{rev}` is neither a file nor a git revision: give a commit or branch (`HEAD~1`, `main`), or a lock file ({instead})"
        ),
    ))
}

/// `git -C DIR`, DIR being the lock's directory (so `./images.lock` and
/// revisions are resolved there).
fn git_in(lock_path: &Path) -> Command {
    let dir = match lock_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut git = Command::new("git");
    git.arg("-C").arg(dir);
    git
}

/// The commit `rev` names in the git repository holding `lock_path` (full hex),
/// or `None` when `rev` is no git revision there.
pub fn commit_of(lock_path: &Path, rev: &str) -> Option<String> {
    let output = git_in(lock_path)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{rev}^{{commit}}"))
        .output()
        .ok()?;
    let hex = String::from_utf8(output.stdout).ok()?;
    let hex = hex.trim();
    (output.status.success() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_owned())
}

/// The two sides of a lock that a git merge (or rebase, cherry-pick) left
/// conflicted, as committed: index stages 2 ("ours") and 3 ("theirs").
/// `None` when git is unavailable or the lock is not in a conflicted merge.
pub fn merge_stages(lock_path: &Path) -> Option<(String, String)> {
    let file_name = lock_path.file_name()?.to_str()?;
    let stage = |n: u8| -> Option<String> {
        let output = git_in(lock_path)
            .args(["show", "--no-textconv", &format!(":{n}:./{file_name}")])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8(output.stdout).ok())
            .flatten()
    };
    Some((stage(2)?, stage(3)?))
}
