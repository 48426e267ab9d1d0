//! `Manifest::parse` (images.toml) on arbitrary text, and what callers do with
//! a manifest right after parsing it.
#![no_main]

use std::path::Path;

use imagelock::project::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(Path::new("project/images.toml"), text) else {
        return;
    };
    let _ = manifest.dir();
    let _ = manifest.insecure_http_hosts();
    for spec in manifest.images.values() {
        let _ = spec.request();
        let _ = spec.is_aci();
        let _ = spec.wanted_platforms();
        let _ = manifest.trust_for(&spec.request());
    }
});
