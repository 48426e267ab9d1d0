//! The project: what the user wrote and what imagelock pinned for it.
//!
//! `images.toml` ([`manifest`], edited in place by [`edit`]) says which images and which
//! keys; `images.lock` ([`lockfile`]) pins them; [`history`] reads an older lock from git or
//! a file, and [`schema`] describes both files as JSON Schema. Nothing here touches the
//! network or the store.

pub mod edit;
pub mod history;
pub mod identity;
pub mod lockfile;
pub mod manifest;
pub mod schema;
