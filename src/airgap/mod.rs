//! Crossing an air gap: [`bundle`] writes and reads one file that carries a lock's images
//! (`export`, `sync --from`); [`mirror`] copies images to a registry on the other side and
//! names them there (`push`, `[[mirrors]]`).

pub mod bundle;
pub mod mirror;
