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
/// Exit code after Ctrl-C: 128 + SIGINT, what shells report for a process the signal ended.
pub const EXIT_INTERRUPTED: u8 = 130;

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

/// Marks `error` as the end of a run the user interrupted (exit code
/// [`EXIT_INTERRUPTED`]); its message starts with `interrupted` and says what was kept.
pub fn interrupted(error: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Classified {
        error,
        exit_code: EXIT_INTERRUPTED,
    })
}

/// How many image IDs [`unknown_image`] lists before it points at `imagelock list`.
const LISTED_IDS: usize = 20;

/// A usage error (exit code [`EXIT_USAGE`]) for an image ID that `file` (images.toml or
/// images.lock) does not have. The hint lists the IDs it has, then `next` (what else to
/// do, e.g. how to add the image), when given.
pub fn unknown_image<'a>(
    id: &str,
    file: impl fmt::Display,
    known: impl IntoIterator<Item = &'a str>,
    next: Option<&str>,
) -> anyhow::Error {
    let known: Vec<&str> = known.into_iter().collect();
    let listed = match known.len() {
        0 => format!("{file} has no images"),
        n if n > LISTED_IDS => format!(
            "the images are: {}, and {} more (`imagelock list` shows them all)",
            known[..LISTED_IDS].join(", "),
            n - LISTED_IDS
        ),
        _ => format!("the images are: {}", known.join(", ")),
    };
    let hint = match next {
        Some(next) => format!("{listed}; {next}"),
        None => listed,
    };
    usage(format!("`{id}` is not an image in {file}"), hint)
}

/// The exit code `error` calls for: the first [`Classified`] in its chain, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Classified>())
        .map_or(EXIT_FAILURE, |c| c.exit_code)
}

#[cfg(test)]
mod tests {
    use super::{EXIT_USAGE, Hinted, exit_code, unknown_image};

    fn hint(error: &anyhow::Error) -> String {
        error
            .chain()
            .find_map(|c| c.downcast_ref::<Hinted>())
            .map(|h| h.hint.clone())
            .expect("a hint")
    }

    #[test]
    fn unknown_image_ids_list_what_exists_and_exit_2() {
        let error = unknown_image("nope", "images.lock", ["a", "b"], Some("add it"));
        assert_eq!(exit_code(&error), EXIT_USAGE);
        assert_eq!(error.to_string(), "`nope` is not an image in images.lock");
        assert_eq!(hint(&error), "the images are: a, b; add it");
        let none = unknown_image("nope", "images.toml", [], None);
        assert_eq!(hint(&none), "images.toml has no images");
        // A long list is cut short, pointing at `imagelock list`.
        let ids: Vec<String> = (0..25).map(|i| format!("i{i:02}")).collect();
        let many = unknown_image("nope", "images.lock", ids.iter().map(String::as_str), None);
        let hint = hint(&many);
        assert!(
            hint.contains("i19, and 5 more (`imagelock list` shows them all)"),
            "{hint}"
        );
        assert!(!hint.contains("i20"), "{hint}");
    }
}
