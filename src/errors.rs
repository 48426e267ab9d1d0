//! Error presentation helpers: hints that tell the user what to do next.
//!
//! A [`Hinted`] error displays as its inner error; the binary prints the hint
//! after the cause chain as `hint: ...`.
//!
//! Text that came from a user or a server (a name, a registry's error message,
//! a discovery page) goes into messages through [`escape`], so it can neither
//! drive the terminal nor reorder what is shown around it.

use std::borrow::Cow;
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

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls and DEL
/// (terminal escapes, carriage returns that overwrite a line, newlines that
/// fake a `hint:` line) and the Unicode bidirectional controls (U+202A..U+202E,
/// U+2066..U+2069, and the marks U+200E, U+200F, U+061C) that make text display
/// in another order than it is read ("Trojan Source", CVE-2021-42574).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
}

/// `text` with every control and bidirectional-override character written as
/// a `\u{..}` escape (`\n`, `\r`, `\t` for those three), so untrusted input
/// shows as what it is. Borrowed when nothing needed escaping.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for a whole message about to be printed: each line escaped, the
/// line breaks kept (messages such as a TOML parse error span lines).
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split('\n').map(escape).collect::<Vec<_>>().join("\n"))
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

/// The hint to print for `error`: the first [`Hinted`] in its chain, else one
/// chosen by the error's type for errors raised where the fix was not known.
pub fn hint_for(error: &anyhow::Error) -> Option<String> {
    if let Some(hinted) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Hinted>())
    {
        return Some(hinted.hint.clone());
    }
    error.chain().find_map(typed_hint)
}

/// Hints for typed errors of the core modules.
fn typed_hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    use crate::lockfile::LockError;
    use crate::registry::{AuthFix, RegistryError};
    if let Some(lock) = cause.downcast_ref::<LockError>() {
        return Some(match lock {
            LockError::Read { path, .. } => format!(
                "check the permissions of {}; `imagelock lock` writes it anew",
                path.display()
            ),
            LockError::Invalid { path, .. } => format!(
                "images.lock is generated: restore it with `git checkout -- {}` and run `imagelock lock`, or delete it and run `imagelock lock` to pin everything again",
                path.display()
            ),
            LockError::FutureVersion { .. } => {
                "a newer imagelock wrote it: upgrade imagelock (`cargo install --locked imagelock`), or re-create the lock with this one (`imagelock lock` after deleting it)".to_owned()
            }
            LockError::Conflicted { .. } => {
                "run `imagelock lock`: it re-locks from images.toml and keeps every pin the two sides agree on".to_owned()
            }
        });
    }
    match cause.downcast_ref::<crate::store::StoreError>() {
        Some(crate::store::StoreError::CorruptIndex { path, .. }) => {
            return Some(format!(
                "move {} aside; `imagelock sync` writes a new one from images.lock",
                path.display()
            ));
        }
        Some(crate::store::StoreError::Unsafe { path, .. }) => {
            return Some(format!(
                "imagelock did not put it there: check what it is (`ls -l {path}`), then remove it (`rm {path}`; the store makes what it needs again). To keep the store on another disk, point `--store`, IMAGELOCK_STORE or `[store] path` at the real directory instead of linking part of it",
                path = path.display()
            ));
        }
        Some(crate::store::StoreError::NotAStore { .. }) => {
            return Some(
                "point `--store`, IMAGELOCK_STORE or `[store] path` at a new or empty directory (imagelock makes the store there) or at an existing imagelock store; it never adopts a directory it did not create, because `gc` removes whatever no lock needs".to_owned(),
            );
        }
        _ => {}
    }
    let registry = cause.downcast_ref::<RegistryError>();
    // A failure retried until the retries ran out has the hint of its last attempt.
    let registry = match registry {
        Some(RegistryError::Exhausted { last, .. }) => Some(&**last),
        other => other,
    };
    if let Some(RegistryError::TooSlow { .. }) = registry {
        return Some(
            "the server is stalling or the link is very slow; if it is only slow, raise the limits: IMAGELOCK_HTTP_DEADLINE_MS (a whole manifest, page, signature or key), IMAGELOCK_HTTP_MIN_RATE bytes/s over IMAGELOCK_HTTP_MIN_RATE_WINDOW_MS (blobs); 0 turns a limit off".to_owned(),
        );
    }
    if let Some(RegistryError::PlainHttpCredentials { host, .. }) = registry {
        return Some(format!(
            "if images.lock was edited to `http://` for {host}, restore it (`git checkout -- images.lock`) or run `imagelock lock`; if {host} really is plain HTTP, add `[registries.\"{host}\"]` with `insecure-http = true` to images.toml"
        ));
    }
    if let Some(RegistryError::PlainHttpRealm { realm_host, .. }) = registry {
        return Some(format!(
            "if the network to {realm_host} is trusted, add `[registries.\"{realm_host}\"]` with `insecure-http = true` to images.toml; otherwise the registry's token server must use HTTPS"
        ));
    }
    if let Some(RegistryError::Unauthorized { host, fix, .. }) = registry {
        let again = match fix {
            AuthFix::LogIn => "",
            AuthFix::LogInAgain => " again",
            AuthFix::None => return None,
        };
        return Some(format!(
            "log in{again} with `skopeo login {host}` or `docker login {host}`; the auth files searched are listed above"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{escape, escape_lines, hint_for};

    #[test]
    fn untrusted_text_is_escaped() {
        let cases = [
            ("example.com/app", "example.com/app"),
            ("caf\u{e9} \u{2014} ok", "caf\u{e9} \u{2014} ok"),
            ("a\u{202e}gpj.exe", "a\\u{202e}gpj.exe"),
            ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}"),
            ("\u{200f}", "\\u{200f}"),
            ("red \u{1b}[31m", "red \\u{1b}[31m"),
            ("line\nhint: run this", "line\\nhint: run this"),
            ("over\rwrite\ttab", "over\\rwrite\\ttab"),
            ("c1 \u{9b}31m del \u{7f}", "c1 \\u{9b}31m del \\u{7f}"),
        ];
        for (raw, shown) in cases {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            escape_lines("first\nsecond \u{202e}x\r"),
            "first\nsecond \\u{202e}x\\r"
        );
    }
    use crate::registry::{AuthFix, RegistryError};

    fn unauthorized(fix: AuthFix) -> anyhow::Error {
        RegistryError::Unauthorized {
            host: "r.example".into(),
            problem: "it said no".into(),
            fix,
        }
        .into()
    }

    #[test]
    fn authentication_hints_follow_what_went_wrong() {
        let log_in = hint_for(&unauthorized(AuthFix::LogIn)).expect("a hint");
        assert!(
            log_in.starts_with("log in with `skopeo login r.example`"),
            "{log_in}"
        );
        let again = hint_for(&unauthorized(AuthFix::LogInAgain)).expect("a hint");
        assert!(again.starts_with("log in again with"), "{again}");
        // A token server sending garbage is not fixed by logging in.
        assert_eq!(hint_for(&unauthorized(AuthFix::None)), None);
        // The message itself carries no hint text; the binary prints it once.
        let message = format!("{:#}", unauthorized(AuthFix::LogIn));
        assert!(!message.contains("hint"), "{message}");
    }
}
