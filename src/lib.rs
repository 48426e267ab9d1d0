//! imagelock: pin container images in a lockfile and sync exactly those blobs
//! into a content-addressed OCI image layout.
//!
//! The binary (`src/main.rs`) parses arguments into settings and calls
//! [`commands`]; everything else is library code with strict module borders.

// The pipeline, in the order an image goes through it:
// images.toml and images.lock (project) -> resolve, over OCI registries (oci) and appc
// discovery (appc), checking signatures (signing) -> images.lock -> sync, downloading
// (transfer) into the store (store) -> verify / render / the air gap (airgap).
pub mod airgap;
pub mod appc;
pub mod oci;
pub mod project;
pub mod render;
pub mod report;
pub mod resolve;
pub mod signing;
pub mod store;
pub mod sync;
pub mod transfer;
pub mod verify;

// The binary's side: argument parsing and one function per command.
pub mod cli;
pub mod commands;

// Shared by every stage; none of these knows another module of the crate.
pub mod concurrency;
pub mod digest;
pub mod errors;
pub mod fsutil;
pub mod interrupt;
pub mod progress;
pub mod text;
