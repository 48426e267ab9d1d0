//! imagelock: pin container images in a lockfile and sync exactly those blobs
//! into a content-addressed OCI image layout.
//!
//! The binary (`src/main.rs`) parses arguments into settings and calls
//! [`commands`]; everything else is library code with strict module borders.

pub mod aci;
pub mod appc;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod concurrency;
pub mod conflict;
pub mod credentials;
pub mod digest;
pub mod discovery;
pub mod drift;
pub mod edit;
pub mod errors;
pub mod fsck;
pub mod fsutil;
pub mod gc;
pub mod history;
pub mod lockfile;
pub mod manifest;
pub mod mirror;
pub mod oci;
pub mod openpgp;
pub mod pinned;
pub mod platform;
pub mod printer;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod render;
pub mod report;
pub mod resolve;
pub mod schema;
pub mod simple_signing;
pub mod store;
pub mod sync;
pub mod text;
pub mod trust;
pub mod trust_list;
pub mod verify;
