//! `Lock::parse` (images.lock) on arbitrary text, plus the round-trip property
//! `lock` relies on: a parsed lock renders to text that parses to the same lock,
//! and rendering that again gives the same bytes.
#![no_main]

use std::path::Path;

use imagelock::project::lockfile::Lock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("project/images.lock");
    let Ok(lock) = Lock::parse(path, text) else {
        return;
    };
    // What sync, verify and gc do with every entry of a lock they read.
    for image in lock.images.values() {
        let _ = image.root();
        let _ = image.blobs();
        let _ = image.total_size();
        let _ = image.store_name();
    }
    let rendered = lock.render();
    match Lock::parse(path, &rendered) {
        Ok(again) => {
            assert_eq!(again, lock, "render/parse changed the lock:\n{rendered}");
            assert_eq!(again.render(), rendered, "rendering is not stable");
        }
        Err(e) => panic!("rendered lock does not parse: {e}\n{rendered}"),
    }
});
