//! Lock mutations against a small store: the bundled example (a two-platform
//! OCI layout and an ACI) stored once, and arbitrary lock text checked with
//! `pinned::check_image` against it.
//!
//! Property: whatever the text says, an entry the check accepts carries the
//! facts of the bytes it pins. Every manifest it names by a digest the example
//! pins has exactly that manifest's config, layers, size and media type (and,
//! when chosen from an index, its platform); an ACI it names by the example's
//! digest has the example's name, image ID and no dependencies. Seed with
//! `fuzz/seed.sh` (it copies images.lock).
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use imagelock::digest::{Algorithm, Digest, Hasher};
use imagelock::project::lockfile::{Blob, Lock, LockedImage, LockedManifest};
use imagelock::verify::pinned;
use imagelock::store::Store;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    manifests: BTreeMap<Digest, LockedManifest>,
    acis: BTreeMap<Digest, LockedImage>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let put = |bytes: &[u8], algorithm: Algorithm| {
            let mut hasher = Hasher::new(algorithm);
            hasher.update(bytes);
            let blob = Blob {
                digest: hasher.finish(),
                size: bytes.len() as u64,
                media_type: "application/octet-stream".into(),
            };
            store.insert_bytes(&blob, bytes).expect("insert");
        };
        let blobs = repo.join("examples/hello/blobs/sha256");
        for entry in std::fs::read_dir(blobs).expect("example blobs") {
            put(&std::fs::read(entry.expect("entry").path()).expect("read"), Algorithm::Sha256);
        }
        put(&std::fs::read(repo.join("examples/hello.aci")).expect("aci"), Algorithm::Sha512);
        let text = std::fs::read_to_string(repo.join("images.lock")).expect("images.lock");
        let pristine = Lock::parse(Path::new("images.lock"), &text).expect("the example lock");
        let mut manifests = BTreeMap::new();
        let mut acis = BTreeMap::new();
        for image in pristine.images.values() {
            for m in &image.manifests {
                manifests.insert(m.digest.clone(), m.clone());
            }
            if let Some(aci) = &image.aci {
                acis.insert(aci.digest.clone(), image.clone());
            }
        }
        Fixture { _dir: dir, store, manifests, acis }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(lock) = Lock::parse(Path::new("images.lock"), text) else {
        return;
    };
    let f = fixture();
    for image in lock.images.values() {
        if pinned::check_image(image, &lock, &f.store).is_err() {
            continue;
        }
        for m in &image.manifests {
            let Some(real) = f.manifests.get(&m.digest) else {
                continue;
            };
            assert_eq!(
                (&m.config, &m.layers, m.size, &m.media_type),
                (&real.config, &real.layers, real.size, &real.media_type),
                "accepted a manifest entry the bytes contradict: {image:?}"
            );
            if image.index.is_some() {
                assert_eq!(m.platform, real.platform, "accepted another platform: {image:?}");
            }
        }
        if let Some(real) = image.aci.as_ref().and_then(|a| f.acis.get(&a.digest)) {
            assert_eq!(
                (&image.name, &image.image_id, &image.dependencies),
                (&real.name, &real.image_id, &real.dependencies),
                "accepted ACI facts the bytes contradict: {image:?}"
            );
        }
    }
});
