//! Output: data to stdout (`--json`), status and progress to stderr.
//!
//! Everything the commands print goes through a [`Printer`], so `-q`, `--json`
//! and non-TTY runs behave the same everywhere.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::lockfile::Blob;
use crate::progress::Reporter;

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

/// Decides what goes where.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// How chatty.
    pub verbosity: Verbosity,
    /// Whether stdout carries JSON.
    pub json: bool,
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
        let line = crate::errors::escape_lines(line.as_ref());
        let _ = writeln!(std::io::stderr(), "warning: {line}");
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

    /// Whether progress bars may be drawn.
    fn progress_enabled(&self) -> bool {
        self.verbosity != Verbosity::Quiet
            && std::io::stderr().is_terminal()
            && std::env::var_os("IMAGELOCK_NO_PROGRESS").is_none_or(|v| v.is_empty())
    }

    /// A reporter drawing a byte progress bar on stderr (or nothing).
    pub fn reporter(&self) -> Arc<dyn Reporter> {
        if !self.progress_enabled() {
            return Arc::new(crate::progress::Silent);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} Fetching {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        Arc::new(BarReporter { bar })
    }
}

struct BarReporter {
    bar: ProgressBar,
}

impl Reporter for BarReporter {
    fn start(&self, blobs: usize, bytes: u64) {
        self.bar.set_length(bytes);
        self.bar.set_message(format!("{blobs} blobs"));
        self.bar
            .enable_steady_tick(std::time::Duration::from_millis(100));
    }

    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    fn blob_done(&self, _blob: &Blob) {}

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `0.4s`, `12ms`.
pub fn human_duration(d: std::time::Duration) -> String {
    if d.as_millis() < 100 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// "1 image" / "3 images".
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}
