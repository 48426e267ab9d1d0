//! Concurrency knobs, in one place so they can be tuned together.

/// Blob downloads in flight at once. Registries and CDNs serve many streams
/// well; 8 keeps two cores busy hashing without tripping per-client limits
/// (skopeo uses 6 per image, hauler 16).
pub const PARALLEL_DOWNLOADS: usize = 8;
/// Images resolved at once by `lock`: manifest fetches are small and latency-bound.
pub const PARALLEL_RESOLVES: usize = 8;
/// Chunks buffered between a download and the thread hashing and writing it.
pub const CHUNKS_IN_FLIGHT: usize = 32;
/// Read size when copying blobs from a local OCI layout.
pub const COPY_BUFFER_BYTES: usize = 1024 * 1024;
