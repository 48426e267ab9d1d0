//! ACI files (App Container Images, specs/appc.md §2), in two parts:
//! - `archive.rs`: the archive as served: compression detection, streaming decompression under
//!   [`Limits`], the tar walk that checks the layout, and the image ID ([`read_aci`]);
//! - `manifest.rs`: the image manifest (§2.3) parsed and validated ([`parse_manifest`]), AC
//!   identifiers, the identity check, appc's os/arch names and image IDs as strings.
//!
//! Both report [`AciError`], defined here. Everything is re-exported, so callers name
//! `aci::read_aci`, `aci::ImageManifest` and so on, never the parts.
//!
//! Everything here is a pure function over readers and bytes: no network, no store.

use std::collections::BTreeMap;
use std::io;

mod archive;
mod manifest;

pub use archive::{
    AciInfo, Compression, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_MANIFEST, DEFAULT_MAX_UNCOMPRESSED,
    DEFAULT_MAX_WINDOW, DETECT_LEN, Limits, MAX_EXTENDED_HEADER, MAX_RATIO, PaxRecord, RATIO_GRACE,
    READ_BUFFER, decoder, detect_compression, parse_pax, read_aci,
};
pub use manifest::{
    Dependency, ImageManifest, appc_os_arch, check_identity, host_os_arch, is_ac_identifier,
    parse_image_id, parse_manifest,
};

/// Why an ACI, its manifest, an identity or an image ID was refused.
#[derive(Debug, thiserror::Error)]
pub enum AciError {
    /// The body is empty.
    #[error("not an ACI: the body is empty")]
    Empty,
    /// The body is text, typically an error page served with status 200. The
    /// message describes it and never quotes it.
    #[error("not an ACI: the body is {kind}, {size}; an ACI is a tar archive")]
    Text {
        /// What kind of text it looks like.
        kind: &'static str,
        /// How many bytes detection saw (`N bytes` or `512 bytes or more`).
        size: String,
    },
    /// Too few bytes to hold a tar header.
    #[error("not an ACI: only {len} bytes, too short for a tar archive")]
    TooShort {
        /// The body's length.
        len: usize,
    },
    /// No known magic bytes. The bytes are not shown, for the reason [`AciError::Text`] gives.
    #[error(
        "not an ACI: unknown binary format, {size}; expected a tar archive, plain or compressed with gzip, bzip2, xz or zstd"
    )]
    UnknownFormat {
        /// How many bytes detection saw.
        size: String,
    },
    /// Reading the source failed (network or file), as opposed to bad content.
    #[error("reading the ACI failed")]
    Read(#[source] io::Error),
    /// The compressed stream is damaged or truncated.
    #[error("corrupt {compression} stream: {detail}")]
    Corrupt {
        /// The compression in use.
        compression: Compression,
        /// The decoder's description.
        detail: String,
    },
    /// The (decompressed) body is not a tar archive, or is a damaged one.
    #[error("not an ACI: the {} is not a valid tar archive: {detail}", compression.body())]
    NotTar {
        /// The compression in use.
        compression: Compression,
        /// What the tar reader found.
        detail: String,
    },
    /// Decompression would exceed [`Limits::max_uncompressed`].
    #[error("more than {} uncompressed: refused (a decompression bomb, or a limit too low)", human_size(*limit))]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The stream asks for a decoder window above [`Limits::max_window`].
    #[error("the {compression} stream needs a decoder window over {}: refused", human_size(*limit))]
    WindowTooLarge {
        /// The compression in use.
        compression: Compression,
        /// The limit in bytes.
        limit: u64,
    },
    /// More entries than [`Limits::max_entries`].
    #[error("the archive has more than {limit} entries: refused")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// No `manifest` entry.
    #[error("the archive has no manifest")]
    NoManifest,
    /// No explicit `rootfs` directory entry.
    #[error("the archive has no `rootfs` directory entry (an ACI must list `rootfs/` itself)")]
    NoRootfs,
    /// The manifest entry is above [`Limits::max_manifest`].
    #[error("the manifest is {size} bytes, more than the {} limit: refused", human_size(*limit))]
    ManifestTooLarge {
        /// The entry's size.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// An absolute path or a `..` component.
    #[error("entry `{path}` escapes the image")]
    EscapingEntry {
        /// The path as written in the archive.
        path: String,
    },
    /// A hard link whose target is outside `rootfs/`.
    #[error("hard link `{path}` points to `{target}`, outside `rootfs/`")]
    EscapingLink {
        /// The link's path.
        path: String,
        /// The target as written in the archive.
        target: String,
    },
    /// A path that is neither `manifest`, `rootfs` nor under `rootfs/`.
    #[error("entry `{path}` is outside `rootfs/`: an ACI holds only `manifest` and `rootfs/...`")]
    UnexpectedEntry {
        /// The path as written in the archive.
        path: String,
    },
    /// A path seen twice.
    #[error("duplicate entry `{path}` in the archive")]
    DuplicateEntry {
        /// The path as written in the archive, the second time.
        path: String,
    },
    /// `manifest` that is not a regular file, or `rootfs` that is not a directory.
    #[error("`{path}` must be a {expected}, but the archive has a {found}")]
    WrongEntryType {
        /// `manifest` or `rootfs`.
        path: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// Tar features refused because they are ambiguous or would need unbounded memory.
    #[error("entry `{path}`: {reason}")]
    UnsupportedEntry {
        /// The entry's path as far as known.
        path: String,
        /// What is refused and why.
        reason: String,
    },
    /// The manifest violates the schema.
    #[error("invalid image manifest: {0}")]
    InvalidManifest(String),
    /// The manifest's name is not the one asked for.
    #[error("manifest name is `{actual}`, but `{requested}` was requested")]
    NameMismatch {
        /// The name asked for.
        requested: String,
        /// The manifest's name.
        actual: String,
    },
    /// Requested labels missing from the manifest or with other values.
    #[error(
        "{}; requested {}, the image has {}",
        problems.join("; "),
        format_labels(requested),
        format_labels(available)
    )]
    LabelMismatch {
        /// One sentence per requested label that does not match.
        problems: Vec<String>,
        /// The labels asked for.
        requested: BTreeMap<String, String>,
        /// The manifest's labels.
        available: BTreeMap<String, String>,
    },
    /// Not `sha512-` followed by hex.
    #[error("`{id}` is not an image ID: expected sha512- followed by {expected}")]
    InvalidImageId {
        /// The string as given.
        id: String,
        /// What the hex part must be.
        expected: &'static str,
    },
}

fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

fn format_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "no labels".to_owned();
    }
    labels
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_read_well() {
        let cases = [
            (
                AciError::EscapingEntry {
                    path: "../x".into(),
                },
                "entry `../x` escapes the image",
            ),
            (
                AciError::TooLarge {
                    limit: DEFAULT_MAX_UNCOMPRESSED,
                },
                "more than 8 GiB uncompressed: refused (a decompression bomb, or a limit too low)",
            ),
            (
                AciError::Corrupt {
                    compression: Compression::Gzip,
                    detail: "invalid gzip header".into(),
                },
                "corrupt gzip stream: invalid gzip header",
            ),
            (
                AciError::NotTar {
                    compression: Compression::None,
                    detail: "x".into(),
                },
                "not an ACI: the body is not a valid tar archive: x",
            ),
            (AciError::NoManifest, "the archive has no manifest"),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }
}
