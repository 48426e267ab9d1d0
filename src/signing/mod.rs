//! Signatures and the keys trusted to make them.
//!
//! [`openpgp`] verifies detached OpenPGP signatures (ACIs, simple signing's payloads);
//! [`simple_signing`] is the containers/image signature format; [`sigstore`] verifies
//! Sigstore bundles (cosign's keyed and keyless signatures) offline against a trusted
//! root, and [`cosign`] finds what a cosign signature artifact in a registry vouches for;
//! [`trust`] holds the keys `images.toml` trusts per name prefix and decides, for an
//! image, whether it must be verified, may go unverified, or is refused; [`trust_list`]
//! tells what each prefix trusts and covers. New signature formats go here.

pub mod certificate;
pub mod cosign;
pub mod openpgp;
pub mod sigstore;
pub mod simple_signing;
pub mod trust;
pub mod trust_list;
