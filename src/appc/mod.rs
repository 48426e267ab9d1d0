//! appc (App Container) images: the ACI format ([`aci`]: archive and image manifest), name
//! discovery ([`discovery`]), and the resolver (`resolver.rs`) that fetches, verifies and pins
//! an `[images]` entry of kind aci and its dependencies.
//!
//! The resolver's items are re-exported here, so callers name `appc::AciResolver`,
//! `appc::signature_url` and so on.

pub mod aci;
pub mod discovery;
mod resolver;

pub use resolver::{
    AciResolver, MAX_ACI_BYTES, MAX_DEPENDENCY_DEPTH, MAX_SIGNATURE_BYTES, signature_url,
};
