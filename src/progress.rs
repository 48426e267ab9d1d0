//! Progress reporting: the callbacks long operations make as they go.
//!
//! Library code reports through [`Reporter`]; the binary implements it with
//! indicatif (see [`crate::report::printer::Printer::reporter`]), and [`Silent`]
//! reports nothing (quiet runs, tests, operations nested in others).
//! No I/O here.

use crate::oci::Blob;

/// Progress callbacks; the binary implements them with indicatif.
pub trait Reporter: Send + Sync {
    /// Fetching is about to start: this many blobs and bytes.
    fn start(&self, _blobs: usize, _bytes: u64) {}
    /// `n` more bytes arrived.
    fn bytes(&self, _n: u64) {}
    /// One blob is verified and stored.
    fn blob_done(&self, _blob: &Blob) {}
    /// Fetching is over.
    fn finish(&self) {}
}

/// A reporter that reports nothing.
pub struct Silent;
impl Reporter for Silent {}
