//! Air gap: export a bundle on the connected side, import it on the other with
//! the registry gone, then sync offline and verify; damaged and altered
//! bundles are refused by entry.

use std::io::{Read, Write};
use std::path::Path;

use crate::harness::{
    LayoutBuilder, Project, Registry, RegistryOptions, network_namespaces, peer, skopeo_push,
};

fn peers() -> bool {
    peer("docker-registry") && peer("skopeo")
}

/// A registry with `test/multi:1` (amd64 + arm64) and `test/one:1`, and a
/// manifest (text) pinning both.
fn setup(work: &Path) -> (Registry, String) {
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = LayoutBuilder::new(&work.join("layout"));
    let amd = layout.image("linux", "amd64", &[layout.layer(&[("m", b"amd64")])]);
    let arm = layout.image("linux", "arm64", &[layout.layer(&[("m", b"arm64")])]);
    let index = layout.index(&[amd, arm]);
    layout.tag("multi", &index);
    let one = layout.image("linux", "amd64", &[layout.layer(&[("one", b"1")])]);
    layout.tag("one", &one);
    let host = registry.host();
    skopeo_push(
        &layout.dir,
        "multi",
        &format!("{host}/test/multi:1"),
        &["--all"],
    );
    skopeo_push(&layout.dir, "one", &format!("{host}/test/one:1"), &[]);
    let manifest = format!(
        "[registries.\"{host}\"]\ninsecure-http = true\n\n[images.multi]\ndocker = \"{host}/test/multi:1\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\ninsecure = true\n\n[images.one]\ndocker = \"{host}/test/one:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
    );
    (registry, manifest)
}

fn unzstd(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::Decoder::new(std::fs::File::open(path).expect("open"))
        .expect("zstd")
        .read_to_end(&mut out)
        .expect("decompress");
    out
}

fn rezstd(tar: &[u8], path: &Path) {
    let mut encoder =
        zstd::Encoder::new(std::fs::File::create(path).expect("create"), 3).expect("zstd");
    encoder.write_all(tar).expect("write");
    encoder.finish().expect("finish");
}

/// The names of a bundle's entries.
fn entries(path: &Path) -> Vec<String> {
    let tar = unzstd(path);
    let mut archive = tar::Archive::new(&tar[..]);
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn a_bundle_carries_everything_across_the_air_gap() {
    if !peers() || !network_namespaces() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (mut registry, manifest) = setup(work.path());
    let connected = Project::new();
    connected.write("images.toml", &manifest);
    connected.run(&["lock"]).success();
    connected.run(&["sync"]).success();
    let bundle = work.path().join("bundle.tar.zst");
    let run = connected
        .run(&["export", bundle.to_str().expect("utf8")])
        .success();
    assert!(run.stderr.contains("Exported 2 images"), "{}", run.stderr);
    let names = entries(&bundle);
    assert_eq!(names[..2], ["oci-layout", "images.lock"]);
    assert_eq!(names.last().map(String::as_str), Some("index.json"));

    // The air-gapped side: the same manifest and lock, a fresh store, and no
    // network at all (a network namespace of its own); the registry still
    // runs, so reaching for it would be seen.
    let gapped = Project::new();
    gapped.write("images.toml", &manifest);
    gapped.write("images.lock", &connected.read("images.lock"));
    let run = gapped.run_without_network(&["sync"]).failure(1);
    assert!(run.stderr.contains(&registry.host()), "{}", run.stderr);
    let run = gapped
        .run_without_network(&["sync", "--offline"])
        .failure(1);
    assert!(run.stderr.contains("not in the store"), "{}", run.stderr);
    gapped
        .run_without_network(&[
            "sync",
            "--offline",
            "--from",
            bundle.to_str().expect("utf8"),
        ])
        .success();
    gapped.run_without_network(&["verify"]).success();
    registry.stop();
    assert_eq!(
        gapped.assert_store_valid(&gapped.store()),
        connected.assert_store_valid(&connected.store())
    );
    // The store is an OCI layout naming both images.
    let index = std::fs::read_to_string(gapped.store().join("index.json")).expect("index");
    assert!(
        index.contains("test/multi:1") && index.contains("test/one:1"),
        "{index}"
    );

    // Subsets: one image, one platform.
    let small = work.path().join("small.tar.zst");
    connected
        .run(&[
            "export",
            "--image",
            "multi",
            "--platform",
            "linux/arm64",
            small.to_str().expect("utf8"),
        ])
        .success();
    let tar = unzstd(&small);
    let mut archive = tar::Archive::new(&tar[..]);
    let mut lock = String::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == "images.lock" {
            entry.read_to_string(&mut lock).expect("read");
        }
    }
    assert!(
        lock.contains("id = \"multi\"") && !lock.contains("id = \"one\""),
        "{lock}"
    );
    assert!(
        lock.contains("linux/arm64") && !lock.contains("linux/amd64"),
        "{lock}"
    );
}

#[test]
fn damaged_or_altered_bundles_are_refused_by_entry() {
    if !peers() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (_registry, manifest) = setup(work.path());
    let connected = Project::new();
    connected.write("images.toml", &manifest);
    connected.run(&["lock"]).success();
    connected.run(&["sync"]).success();
    let bundle = work.path().join("bundle.tar.zst");
    connected
        .run(&["export", bundle.to_str().expect("utf8")])
        .success();
    let import = |path: &Path| {
        let fresh = Project::new();
        let run = fresh.run(&["import", path.to_str().expect("utf8")]);
        (fresh, run)
    };

    // Truncated.
    let truncated = work.path().join("truncated.tar.zst");
    let bytes = std::fs::read(&bundle).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let (fresh, run) = import(&truncated);
    let run = run.failure(1);
    assert!(
        run.stderr.contains("damaged") || run.stderr.contains("lacks"),
        "{}",
        run.stderr
    );
    fresh.assert_store_valid(&fresh.store());

    // A blob's bytes altered inside the tar: named, and not stored.
    let mut tar = unzstd(&bundle);
    let mut archive = tar::Archive::new(&tar[..]);
    let (name, offset, size) = archive
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry"))
        .find_map(|e| {
            let name = e.path().expect("path").to_string_lossy().into_owned();
            name.starts_with("blobs/sha256/")
                .then(|| (name, e.raw_file_position() as usize, e.size() as usize))
        })
        .expect("a blob");
    tar[offset + size / 2] ^= 0x55;
    let altered = work.path().join("altered.tar.zst");
    rezstd(&tar, &altered);
    let (fresh, run) = import(&altered);
    let run = run.failure(1);
    assert!(
        run.stderr.contains(&format!("entry `{name}`")) && run.stderr.contains("digest mismatch"),
        "{}",
        run.stderr
    );
    let hex = name.trim_start_matches("blobs/sha256/");
    assert!(!fresh.store().join("blobs/sha256").join(hex).exists());
    fresh.assert_store_valid(&fresh.store());

    // An entry the bundle's lock does not pin.
    let mut extra = tar::Builder::new(Vec::new());
    let original = unzstd(&bundle);
    let mut archive = tar::Archive::new(&original[..]);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).expect("read");
        extra.append(&header, &body[..]).expect("append");
    }
    let stranger = b"not pinned";
    let mut header = tar::Header::new_gnu();
    header.set_size(stranger.len() as u64);
    header.set_mode(0o644);
    let stranger_name = format!(
        "blobs/sha256/{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(stranger))
    );
    extra
        .append_data(&mut header, &stranger_name, &stranger[..])
        .expect("append");
    let with_extra = work.path().join("extra.tar.zst");
    rezstd(&extra.into_inner().expect("tar"), &with_extra);
    let (_, run) = import(&with_extra);
    let run = run.failure(1);
    assert!(
        run.stderr.contains(&stranger_name) && run.stderr.contains("does not pin"),
        "{}",
        run.stderr
    );
}

#[test]
fn trusted_key_files_go_into_the_bundle_once_each_wherever_they_live() {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    let image = layout.image(
        "linux",
        "amd64",
        &[layout.layer(&[("hello.txt", &b"hi\n"[..])])],
    );
    layout.tag("1", &image);
    // A key beside the project, not under it, named twice (two spellings).
    let shared = project.root().parent().expect("parent").join("shared-keys");
    std::fs::create_dir_all(&shared).expect("mkdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/keys/example-TEST-ONLY.asc"),
        shared.join("team.asc"),
    )
    .expect("copy key");
    project.write(
        "images.toml",
        "[trust.\"imagelock.example/\"]\nkeys = [\"../shared-keys/team.asc\"]\n\n[trust.\"imagelock.example/other/\"]\nkeys = [\"./../shared-keys/team.asc\"]\n\n[images.hello]\npath = \"layout:1\"\ninsecure = true\n",
    );
    project.run(&["sync"]).success();
    let bundle = project.root().join("bundle.tar.zst");
    let run = project
        .run(&["export", bundle.to_str().expect("utf8")])
        .success();
    assert!(run.stderr.contains("1 key file"), "{}", run.stderr);
    let names = entries(&bundle);
    let keys: Vec<&String> = names.iter().filter(|n| n.starts_with("keys/")).collect();
    assert_eq!(keys, ["keys/shared-keys/team.asc"], "{names:?}");
}
