//! Error presentation helpers: hints that tell the user what to do next.
//!
//! A [`Hinted`] error displays as its inner error; the binary prints the hint
//! after the cause chain as `hint: ...`.
//!
//! The hint for an error raised where the fix was not known is chosen by the
//! error's type when it is printed ([`crate::report::printer::hint_for`]); this module
//! knows no other module, so every layer can raise hinted errors.

use std::fmt;

/// An error with a suggested fix.
#[derive(Debug)]
pub struct Hinted {
    /// The error itself.
    pub error: anyhow::Error,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Attaches `hint` to `error`.
pub fn with_hint(error: impl Into<anyhow::Error>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        error: error.into(),
        hint: hint.into(),
    })
}

/// Builds an error from a message with a hint.
pub fn hinted(message: impl fmt::Display, hint: impl Into<String>) -> anyhow::Error {
    with_hint(anyhow::anyhow!("{message}"), hint)
}

/// Exit code for failures (the default).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage errors: bad flags or arguments (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for "images.lock does not match images.toml" (`lock --check`,
/// `sync --locked`), so CI can tell a stale lock from a broken network.
pub const EXIT_STALE: u8 = 3;

/// An error that ends the process with a specific exit code. It displays as
/// the error it wraps, and that error stays in the chain (so its hint is found).
#[derive(Debug)]
pub struct Classified {
    /// The error itself.
    pub error: anyhow::Error,
    /// The process exit code it calls for.
    pub exit_code: u8,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Classified {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error.as_ref())
    }
}

/// Marks `error` as a stale lock (exit code [`EXIT_STALE`]).
pub fn stale(error: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Classified {
        error,
        exit_code: EXIT_STALE,
    })
}

/// A usage error (exit code [`EXIT_USAGE`]) with a hint.
pub fn usage(message: impl fmt::Display, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        error: hinted(message, hint),
        exit_code: EXIT_USAGE,
    })
}

/// The exit code `error` calls for: the first [`Classified`] in its chain, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Classified>())
        .map_or(EXIT_FAILURE, |c| c.exit_code)
}
