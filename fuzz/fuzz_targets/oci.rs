//! OCI/Docker manifest bytes: `detect_media_type` (with a Content-Type chosen by
//! the first input byte), then `parse_image_manifest` or `parse_index` by the
//! kind detected, and both regardless.
#![no_main]

use imagelock::oci::{self, ManifestKind};
use libfuzzer_sys::fuzz_target;

/// Content-Types a registry may serve, including junk and parameters.
const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json"),
    Some(""),
    Some(";;"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    if let Ok(media_type) = oci::detect_media_type(content_type, body) {
        // Whatever is detected must be a media type imagelock can pin.
        match oci::manifest_kind(&media_type) {
            Some(ManifestKind::Index) => {
                let _ = oci::parse_index(body);
            }
            Some(_) => {
                let _ = oci::parse_image_manifest(body);
            }
            None => panic!("detected unsupported media type {media_type:?}"),
        }
    }
    let _ = oci::parse_image_manifest(body);
    let _ = oci::parse_index(body);
});
