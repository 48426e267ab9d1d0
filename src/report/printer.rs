//! Output: data to stdout (`--json`), status and progress to stderr.
//!
//! Everything the commands print goes through a [`Printer`], so `-q`, `--json`
//! and non-TTY runs behave the same everywhere. Progress is a bar that fits the
//! terminal's width on a terminal, or with `--progress plain` the same facts
//! as lines (for logs and tests). A reader that closes stdout early (`| head`)
//! ends the run quietly: writes that must reach stdout fail with
//! [`StdoutClosed`], which the binary treats as success.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::errors::Hinted;
use crate::progress::{Phase, Reporter};
use crate::text::{human_bytes, plural};

/// How chatty to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Summaries.
    Normal,
    /// Per-image detail.
    Verbose,
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal (and `IMAGELOCK_NO_PROGRESS` is unset), else nothing.
    #[default]
    Auto,
    /// A line per item done (and at least every [`PLAIN_INTERVAL`]), terminal or not.
    Plain,
    /// Nothing.
    Off,
}

/// Decides what goes where.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// How chatty.
    pub verbosity: Verbosity,
    /// Whether stdout carries JSON.
    pub json: bool,
    /// How progress is shown (`-q` shows none).
    pub progress: ProgressMode,
}

impl Printer {
    /// A status line on stderr (suppressed by `-q`).
    pub fn status(&self, line: impl AsRef<str>) {
        if self.verbosity != Verbosity::Quiet {
            let _ = writeln!(std::io::stderr(), "{}", line.as_ref());
        }
    }

    /// A detail line on stderr (only with `-v`).
    pub fn detail(&self, line: impl AsRef<str>) {
        if self.verbosity == Verbosity::Verbose {
            let _ = writeln!(std::io::stderr(), "{}", line.as_ref());
        }
    }

    /// A warning on stderr (always); controls and bidirectional overrides in
    /// it are escaped, as warnings quote what servers and files said.
    pub fn warn(&self, line: impl AsRef<str>) {
        let line = crate::text::escape_lines(line.as_ref());
        let _ = writeln!(std::io::stderr(), "warning: {line}");
    }

    /// An error on stderr (always), for failures a command reports and goes on
    /// past (its own error, printed by the binary, ends the run); escaped like
    /// [`Printer::warn`].
    pub fn error(&self, line: impl AsRef<str>) {
        let line = crate::text::escape_lines(line.as_ref());
        let _ = writeln!(std::io::stderr(), "error: {line}");
    }

    /// Data for people on stdout (a table, a diff): printed unless `--json`
    /// carries the data instead; `-q` does not silence what was asked for.
    pub fn out(&self, line: impl AsRef<str>) {
        if !self.json {
            let _ = writeln!(std::io::stdout(), "{}", line.as_ref());
        }
    }

    /// Data for scripts on stdout: pretty JSON when `--json`.
    pub fn json(&self, value: &serde_json::Value) {
        if self.json {
            let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
            let _ = writeln!(std::io::stdout(), "{text}");
        }
    }

    /// A reporter showing each phase on stderr as `progress` says (or nothing).
    pub fn reporter(&self) -> Arc<dyn Reporter> {
        if self.verbosity == Verbosity::Quiet {
            return Arc::new(crate::progress::Silent);
        }
        match self.progress {
            ProgressMode::Plain => Arc::new(PlainReporter::default()),
            ProgressMode::Auto
                if std::io::stderr().is_terminal()
                    && std::env::var_os("IMAGELOCK_NO_PROGRESS").is_none_or(|v| v.is_empty()) =>
            {
                Arc::new(BarReporter::default())
            }
            ProgressMode::Auto | ProgressMode::Off => Arc::new(crate::progress::Silent),
        }
    }
}

/// Writes `bytes` to stdout and flushes it; a reader that closed it early is
/// [`StdoutClosed`].
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
        Ok(()) => Ok(()),
    }
}

/// Stdout was closed by its reader (`imagelock man | head`): the run ends
/// quietly, with exit code 0, as other command-line tools do.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Whether `error` comes from a closed stdout ([`StdoutClosed`] in its chain).
pub fn stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// Draws the current phase as one bar on stderr: bytes when the phase
/// measures bytes (items done in the message), else items.
#[derive(Default)]
struct BarReporter {
    current: Mutex<Option<Bar>>,
}

/// The bar of the phase under way.
struct Bar {
    bar: ProgressBar,
    phase: Phase,
    items: usize,
    done: usize,
    by_bytes: bool,
}

impl Bar {
    fn message(&self) -> String {
        let items = plural(self.items, self.phase.item());
        if self.by_bytes {
            format!("{}/{items}", self.done)
        } else {
            items
        }
    }
}

impl BarReporter {
    /// The phase under way, if any (a panic elsewhere does not stop the bar).
    fn current(&self) -> std::sync::MutexGuard<'_, Option<Bar>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An operation that failed mid-phase leaves no bar behind its error.
impl Drop for BarReporter {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Reporter for BarReporter {
    fn begin(&self, phase: Phase, items: usize, bytes: u64) {
        let by_bytes = bytes > 0;
        // The bar takes what the terminal's width leaves, so the line does not wrap
        // (the rest takes under 80 columns up to thousands of blobs and GiB sizes).
        let (length, template) = if by_bytes {
            (
                bytes,
                "{spinner} {prefix} {msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
        } else {
            (
                items as u64,
                "{spinner} {prefix} {msg} [{wide_bar}] {pos}/{len}",
            )
        };
        // Drawn only once the style, prefix and message are all set.
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("the templates are valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(phase.verb());
        let state = Bar {
            bar,
            phase,
            items,
            done: 0,
            by_bytes,
        };
        state.bar.set_message(state.message());
        state.bar.set_draw_target(ProgressDrawTarget::stderr());
        state
            .bar
            .enable_steady_tick(std::time::Duration::from_millis(100));
        if let Some(previous) = self.current().replace(state) {
            previous.bar.finish_and_clear();
        }
    }

    fn bytes(&self, n: u64) {
        if let Some(current) = self.current().as_ref().filter(|c| c.by_bytes) {
            current.bar.inc(n);
        }
    }

    fn resumed(&self, n: u64) {
        if let Some(current) = self.current().as_ref().filter(|c| c.by_bytes) {
            let length = current.bar.length().unwrap_or_default();
            current.bar.set_length(length.saturating_sub(n));
        }
    }

    fn item_done(&self) {
        if let Some(current) = self.current().as_mut() {
            current.done += 1;
            if current.by_bytes {
                current.bar.set_message(current.message());
            } else {
                current.bar.inc(1);
            }
        }
    }

    fn finish(&self) {
        if let Some(current) = self.current().take() {
            current.bar.finish_and_clear();
        }
    }
}

/// How often a plain progress line comes while bytes flow but no item finishes
/// (one large layer): often enough to show it is alive, rarely enough for a log.
pub const PLAIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Shows each phase as lines on stderr: the phase and its size when it begins,
/// then the items done, bytes, speed and time left after each item.
#[derive(Default)]
struct PlainReporter {
    current: Mutex<Option<PlainPhase>>,
}

/// The phase under way, as a [`PlainReporter`] counts it.
struct PlainPhase {
    phase: Phase,
    items: usize,
    done: usize,
    /// Bytes to process in this run (less what downloads resumed from).
    bytes: u64,
    bytes_done: u64,
    started: Instant,
    last_line: Instant,
}

impl PlainPhase {
    /// `Fetching: 12/31 blobs, 12.0 MiB/1.2 GiB, 3.4 MiB/s, ETA 6m`, or for a
    /// phase without bytes `Checking: 2/3 images`.
    fn line(&self) -> String {
        let done = format!(
            "{}: {}/{}",
            self.phase.verb(),
            self.done,
            plural(self.items, self.phase.item())
        );
        if self.bytes == 0 {
            return done;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            self.bytes_done as f64 / elapsed
        } else {
            0.0
        };
        let left = self.bytes.saturating_sub(self.bytes_done);
        let eta = if left == 0 {
            "0s".to_owned()
        } else if rate >= 1.0 {
            format!(
                "{:#}",
                indicatif::HumanDuration(std::time::Duration::from_secs_f64(left as f64 / rate))
            )
        } else {
            "unknown".to_owned()
        };
        format!(
            "{done}, {}/{}, {}/s, ETA {eta}",
            human_bytes(self.bytes_done),
            human_bytes(self.bytes),
            human_bytes(rate as u64)
        )
    }
}

impl PlainReporter {
    /// The phase under way, if any (a panic elsewhere does not stop the lines).
    fn current(&self) -> std::sync::MutexGuard<'_, Option<PlainPhase>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes one progress line on stderr.
fn plain_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

impl Reporter for PlainReporter {
    fn begin(&self, phase: Phase, items: usize, bytes: u64) {
        let what = plural(items, phase.item());
        plain_line(&if bytes > 0 {
            format!("{} {what} ({})", phase.verb(), human_bytes(bytes))
        } else {
            format!("{} {what}", phase.verb())
        });
        let now = Instant::now();
        *self.current() = Some(PlainPhase {
            phase,
            items,
            done: 0,
            bytes,
            bytes_done: 0,
            started: now,
            last_line: now,
        });
    }

    fn bytes(&self, n: u64) {
        if let Some(current) = self.current().as_mut() {
            current.bytes_done += n;
            if current.bytes > 0 && current.last_line.elapsed() >= PLAIN_INTERVAL {
                current.last_line = Instant::now();
                plain_line(&current.line());
            }
        }
    }

    fn resumed(&self, n: u64) {
        if let Some(current) = self.current().as_mut() {
            current.bytes = current.bytes.saturating_sub(n);
            plain_line(&format!(
                "{}: resuming a partial download ({} already on disk)",
                current.phase.verb(),
                human_bytes(n)
            ));
        }
    }

    fn item_done(&self) {
        if let Some(current) = self.current().as_mut() {
            current.done += 1;
            current.last_line = Instant::now();
            plain_line(&current.line());
        }
    }

    fn finish(&self) {
        self.current().take();
    }
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
    use crate::oci::registry::{AuthFix, RegistryError};
    use crate::project::lockfile::LockError;
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
    if let Some(RegistryError::PlainHttpServer { host, .. }) = registry {
        return Some(format!(
            "if {host} is meant to be reached over plain HTTP, add `[registries.\"{host}\"]` with `insecure-http = true` to images.toml (`imagelock add ID --docker {host}/REPO:TAG --insecure-http` writes it with a new image); otherwise use its HTTPS address"
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
    use super::{BarReporter, PlainReporter, hint_for};

    use crate::progress::{Phase, Reporter};

    use crate::oci::registry::{AuthFix, RegistryError};

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

    /// The bar's templates are checked only when one is drawn (on a terminal,
    /// which the CLI tests never are): every kind of phase builds one here.
    #[test]
    fn every_kind_of_phase_gets_a_bar() {
        let bars = BarReporter::default();
        for (phase, items, bytes) in [(Phase::Exporting, 2, 10), (Phase::CheckingTrees, 3, 0)] {
            bars.begin(phase, items, bytes);
            bars.bytes(bytes);
            bars.item_done();
            let current = bars.current();
            let bar = current.as_ref().expect("a bar per phase");
            assert_eq!(bar.done, 1);
            assert_eq!(bar.bar.position(), if bytes > 0 { bytes } else { 1 });
            drop(current);
            bars.finish();
        }
        assert!(bars.current().is_none());
    }

    /// Bytes an earlier run left shorten the phase: the bar, the plain lines, and so
    /// the speed and time left, count only what this run fetches.
    #[test]
    fn resumed_bytes_are_not_counted_as_fetched() {
        let bars = BarReporter::default();
        bars.begin(Phase::Fetching, 2, 100);
        bars.resumed(40);
        bars.bytes(60);
        let current = bars.current();
        let bar = &current.as_ref().expect("a bar").bar;
        assert_eq!((bar.position(), bar.length()), (60, Some(60)));
        drop(current);
        bars.finish();

        let plain = PlainReporter::default();
        plain.begin(Phase::Fetching, 2, 100);
        plain.resumed(40);
        plain.bytes(60);
        plain.item_done();
        let line = plain.current().as_ref().expect("a phase").line();
        assert!(
            line.starts_with("Fetching: 1/2 blobs, 60 B/60 B, ") && line.ends_with(", ETA 0s"),
            "{line}"
        );
        plain.finish();
        plain.begin(Phase::CheckingImages, 3, 0);
        plain.item_done();
        let line = plain.current().as_ref().expect("a phase").line();
        assert_eq!(line, "Checking: 1/3 images");
    }
}
