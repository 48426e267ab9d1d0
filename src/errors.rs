//! Error presentation helpers: hints that tell the user what to do next.
//!
//! A [`Hinted`] error displays as its inner error; the binary prints the hint
//! after the cause chain as `hint: ...`.

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
