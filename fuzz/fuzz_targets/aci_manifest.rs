//! `aci::parse_manifest`: the `manifest` entry of an ACI, JSON validated the way
//! appc/rkt do.
#![no_main]

use imagelock::appc::aci;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match aci::parse_manifest(data) {
        Ok(manifest) => {
            assert!(aci::is_ac_identifier(&manifest.name), "{:?}", manifest.name);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
