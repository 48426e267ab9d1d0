//! ACIs: `read_aci` (compression detection, decompression, tar layout checks,
//! manifest) on arbitrary bytes with small limits, so that bombs hit a limit
//! rather than the fuzzer's memory cap. `aci_manifest` fuzzes the manifest JSON
//! on its own.
#![no_main]

use imagelock::appc::aci::{self, Limits};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_uncompressed: 4 << 20,
    max_manifest: 64 << 10,
    max_window: 1 << 20,
    max_entries: 256,
};

fuzz_target!(|data: &[u8]| {
    match aci::read_aci(data, &LIMITS) {
        Ok(info) => {
            assert!(info.uncompressed_size <= LIMITS.max_uncompressed);
            assert!(info.manifest_bytes.len() as u64 <= LIMITS.max_manifest);
            assert_eq!(
                aci::parse_image_id(&info.image_id).ok(),
                Some(info.image_id.clone())
            );
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
