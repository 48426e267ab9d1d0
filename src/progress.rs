//! Progress reporting: the callbacks long operations make as they go.
//!
//! Library code reports through [`Reporter`]; the binary implements it with
//! indicatif (see [`crate::report::printer::Printer::reporter`]), and [`Silent`]
//! reports nothing (quiet runs, tests, operations nested in others).
//!
//! A long operation works in phases ([`Phase`]): it plans first, so each
//! phase begins with the exact number of items (blobs, images, trees) and
//! bytes it will go through, then reports bytes and finished items as they
//! go (bytes an earlier, interrupted run left on disk are reported apart, as
//! resumed), and finishes. Phases follow one another, never overlap, on one
//! reporter. No I/O here.

use crate::oci::Blob;

/// What a phase of a long operation does, for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Downloading blobs into the store (`sync`).
    Fetching,
    /// Reading a bundle's blobs into the store (`import`, `sync --from`).
    Importing,
    /// Writing blobs into a bundle (`export`).
    Exporting,
    /// Uploading blobs to a mirror (`push`).
    Pushing,
    /// Re-hashing blobs in the store (`verify`, `fsck`).
    Hashing,
    /// Checking each image's pins and signatures (`verify`).
    CheckingImages,
    /// Re-reading rendered trees against their listings (`fsck`).
    CheckingTrees,
    /// Applying an image's layers (or its ACIs, one layer each) to a tree (`render`).
    Rendering,
}

impl Phase {
    /// The verb that starts the progress line.
    pub fn verb(self) -> &'static str {
        match self {
            Phase::Fetching => "Fetching",
            Phase::Importing => "Importing",
            Phase::Exporting => "Exporting",
            Phase::Pushing => "Pushing",
            Phase::Hashing => "Hashing",
            Phase::Rendering => "Rendering",
            Phase::CheckingImages | Phase::CheckingTrees => "Checking",
        }
    }

    /// What one item of the phase is (singular).
    pub fn item(self) -> &'static str {
        match self {
            Phase::CheckingImages => "image",
            Phase::CheckingTrees => "rendered tree",
            Phase::Rendering => "layer",
            _ => "blob",
        }
    }
}

/// Progress callbacks; the binary implements them with indicatif.
pub trait Reporter: Send + Sync {
    /// Fetching is about to start: this many blobs and bytes.
    fn start(&self, blobs: usize, bytes: u64) {
        self.begin(Phase::Fetching, blobs, bytes);
    }
    /// A phase begins: this many items, totalling `bytes` (0 when its items
    /// have no size worth measuring; progress then counts items).
    fn begin(&self, _phase: Phase, _items: usize, _bytes: u64) {}
    /// `n` more bytes were processed.
    fn bytes(&self, _n: u64) {}
    /// A download picks up `n` bytes an earlier, interrupted run left on disk: the phase
    /// has that many fewer bytes to go, and they count toward no speed.
    fn resumed(&self, _n: u64) {}
    /// One more item of the phase is done.
    fn item_done(&self) {}
    /// One blob is verified and stored.
    fn blob_done(&self, _blob: &Blob) {
        self.item_done();
    }
    /// The phase is over.
    fn finish(&self) {}
}

/// A reporter that reports nothing.
pub struct Silent;
impl Reporter for Silent {}

/// A reporter that remembers what it was told, for tests.
#[cfg(test)]
#[derive(Default)]
pub struct Recording(std::sync::Mutex<Vec<Recorded>>);

/// One phase as a [`Recording`] saw it.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The phase.
    pub phase: Phase,
    /// The items announced.
    pub items: usize,
    /// The bytes announced.
    pub bytes: u64,
    /// The items reported done.
    pub items_done: usize,
    /// The bytes reported.
    pub bytes_done: u64,
    /// The bytes reported as resumed from an earlier run.
    pub bytes_resumed: u64,
    /// Whether the phase was finished.
    pub finished: bool,
}

#[cfg(test)]
impl Recorded {
    /// A finished phase that reported exactly what it announced.
    pub fn complete(phase: Phase, items: usize, bytes: u64) -> Recorded {
        Recorded {
            phase,
            items,
            bytes,
            items_done: items,
            bytes_done: bytes,
            bytes_resumed: 0,
            finished: true,
        }
    }
}

#[cfg(test)]
impl Recording {
    /// The phases reported so far, in order.
    pub fn phases(&self) -> Vec<Recorded> {
        self.0.lock().expect("no test panics holding it").clone()
    }

    fn current(&self, update: impl FnOnce(&mut Recorded)) {
        let mut phases = self.0.lock().expect("no test panics holding it");
        let current = phases.last_mut().expect("reported inside a phase");
        assert!(!current.finished, "reported after the phase finished");
        update(current);
    }
}

#[cfg(test)]
impl Reporter for Recording {
    fn begin(&self, phase: Phase, items: usize, bytes: u64) {
        let mut phases = self.0.lock().expect("no test panics holding it");
        assert!(
            phases.last().is_none_or(|p| p.finished),
            "a phase began before the last one finished"
        );
        phases.push(Recorded {
            phase,
            items,
            bytes,
            items_done: 0,
            bytes_done: 0,
            bytes_resumed: 0,
            finished: false,
        });
    }

    fn bytes(&self, n: u64) {
        self.current(|p| p.bytes_done += n);
    }

    fn resumed(&self, n: u64) {
        self.current(|p| p.bytes_resumed += n);
    }

    fn item_done(&self) {
        self.current(|p| p.items_done += 1);
    }

    fn finish(&self) {
        self.current(|p| p.finished = true);
    }
}
