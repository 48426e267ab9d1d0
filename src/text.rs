//! Text for people: untrusted text made safe to print, sizes, durations, counts.
//!
//! Text that came from a user or a server (a name, a registry's error message,
//! a discovery page) goes into messages through [`escape`], so it can neither
//! drive the terminal nor reorder what is shown around it. This module knows no
//! other module of the crate.

use std::borrow::Cow;

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

#[cfg(test)]
mod tests {
    use super::{escape, escape_lines};

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
}
