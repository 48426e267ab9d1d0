//! Air gap: export a bundle on the connected side, import it on the other with
//! the registry gone, then sync offline and verify; damaged and altered
//! bundles are refused by entry.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::harness::{
    LayoutBuilder, Project, Registry, RegistryOptions, network_namespaces, peer, skopeo_push,
};

fn peers() -> bool {
    peer("docker-registry") && peer("skopeo")
}

/// A registry with `test/multi:1` (amd64 + arm64) and `test/one:1`, and a
/// manifest (text) pinning both.
/// The connected side: a project locked and synced from `manifest`, and its
/// bundle exported to WORK/bundle.tar.zst (the export's run is returned too).
fn connected_with_bundle(work: &Path, manifest: &str) -> (Project, PathBuf, crate::harness::Run) {
    let connected = Project::new();
    connected.write("images.toml", manifest);
    connected.run(&["lock"]).success();
    connected.run(&["sync"]).success();
    let bundle = work.join("bundle.tar.zst");
    let run = connected
        .run(&["export", bundle.to_str().expect("utf8")])
        .success();
    (connected, bundle, run)
}

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
pub fn entries(path: &Path) -> Vec<String> {
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
    let (connected, bundle, run) = connected_with_bundle(work.path(), &manifest);
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
    let (_connected, bundle, _) = connected_with_bundle(work.path(), &manifest);
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

/// `bundle` rebuilt with `edit` applied to its own images.lock, as whoever
/// handles a bundle on its way across the gap could.
fn with_edited_lock(bundle: &Path, out: &Path, edit: impl Fn(&str) -> String) {
    let original = unzstd(bundle);
    let mut archive = tar::Archive::new(&original[..]);
    let mut rebuilt = tar::Builder::new(Vec::new());
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut header = entry.header().clone();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).expect("read");
        if entry.path().expect("path").to_string_lossy() == "images.lock" {
            body = edit(std::str::from_utf8(&body).expect("utf8")).into_bytes();
            header.set_size(body.len() as u64);
            header.set_cksum();
        }
        rebuilt.append(&header, &body[..]).expect("append");
    }
    rezstd(&rebuilt.into_inner().expect("tar"), out);
}

/// `skopeo inspect --raw oci:STORE:REF`: the bytes the store's name points at
/// for other tools, or `None` when the store does not have the name.
fn skopeo_raw(store: &Path, reference: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{reference}", store.display()))
        .output()
        .expect("run skopeo");
    out.status.success().then_some(out.stdout)
}

#[test]
fn a_bundle_whose_lock_repoints_a_name_never_renames_an_image_in_the_store() {
    if !peers() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let (registry, manifest) = setup(work.path());
    let host = registry.host();
    let (multi, one) = (format!("{host}/test/multi:1"), format!("{host}/test/one:1"));
    let (connected, bundle, _) = connected_with_bundle(work.path(), &manifest);
    // The bundle's lock now says that `one`'s manifest is `test/multi:1`, and
    // adds a name the project never asked for.
    let repointed = work.path().join("repointed.tar.zst");
    with_edited_lock(&bundle, &repointed, |lock| {
        let lock = lock.replace(
            &format!("reference = \"{one}\""),
            &format!("reference = \"{multi}\""),
        );
        assert_eq!(lock.matches(&format!("reference = \"{multi}\"")).count(), 2);
        lock
    });
    let genuine = skopeo_raw(&connected.store(), &multi).expect("the connected store names multi");
    assert!(skopeo_raw(&connected.store(), &one).is_some_and(|raw| raw != genuine));

    // A store that already names both images: the import adds blobs, no names.
    let victim = Project::new();
    victim.write("images.toml", &manifest);
    victim.write("images.lock", &connected.read("images.lock"));
    victim.run(&["sync"]).success();
    let index = std::fs::read(victim.store().join("index.json")).expect("index");
    let run = victim
        .run(&["import", repointed.to_str().expect("utf8")])
        .success();
    assert!(run.stderr.contains("sync --offline"), "{}", run.stderr);
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(victim.store().join("index.json")).expect("index")),
        String::from_utf8_lossy(&index)
    );
    assert_eq!(skopeo_raw(&victim.store(), &multi), Some(genuine.clone()));
    victim.run(&["verify"]).success();

    // A fresh store: import alone names nothing; sync names the project's
    // images, from the project's lock.
    let fresh = Project::new();
    fresh.write("images.toml", &manifest);
    fresh.write("images.lock", &connected.read("images.lock"));
    fresh
        .run(&["import", repointed.to_str().expect("utf8")])
        .success();
    let index = std::fs::read_to_string(fresh.store().join("index.json")).expect("index");
    assert!(!index.contains(&host), "{index}");
    assert_eq!(skopeo_raw(&fresh.store(), &multi), None);
    fresh.run(&["sync", "--offline"]).success();
    assert_eq!(skopeo_raw(&fresh.store(), &multi), Some(genuine.clone()));

    // `sync --from` the same bundle: the names are the project's.
    let synced = Project::new();
    synced.write("images.toml", &manifest);
    synced.write("images.lock", &connected.read("images.lock"));
    synced
        .run(&[
            "sync",
            "--offline",
            "--from",
            repointed.to_str().expect("utf8"),
        ])
        .success();
    assert_eq!(skopeo_raw(&synced.store(), &multi), Some(genuine));
    assert_eq!(
        std::fs::read_to_string(synced.store().join("index.json")).expect("index"),
        std::fs::read_to_string(connected.store().join("index.json")).expect("index")
    );
}

/// A project with one local OCI image, synced: exports need no peers. One
/// layer does not compress, so it takes several reads to copy (3 MiB).
fn local_project() -> Project {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let image = layout.image(
        "linux",
        "amd64",
        &[
            layout.layer(&[("hello.txt", &b"hi\n"[..])]),
            layout.layer(&[("noise.bin", &noise[..])]),
        ],
    );
    layout.tag("1", &image);
    project.write(
        "images.toml",
        "[images.hello]\npath = \"layout:1\"\ninsecure = true\n",
    );
    project.run(&["sync"]).success();
    project
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn export_replaces_only_a_regular_file_never_a_link_device_fifo_or_directory() {
    use std::os::unix::fs::FileTypeExt as _;
    let project = local_project();
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path();
    let export = |path: &Path| project.run(&["export", path.to_str().expect("utf8")]);

    // A symbolic link, to a file and to nowhere: neither is followed or replaced.
    std::fs::write(dir.join("victim.txt"), "keep me").expect("write");
    std::os::unix::fs::symlink(dir.join("victim.txt"), dir.join("link.tar.zst")).expect("ln");
    std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling.tar.zst")).expect("ln");
    for link in ["link.tar.zst", "dangling.tar.zst"] {
        let run = export(&dir.join(link)).failure(1);
        assert!(
            run.stderr.contains("is a symbolic link") && run.stderr.contains("hint:"),
            "{}",
            run.stderr
        );
        let metadata = std::fs::symlink_metadata(dir.join(link)).expect("still there");
        assert!(metadata.file_type().is_symlink(), "{link} was replaced");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("victim.txt")).expect("read"),
        "keep me"
    );
    assert!(!dir.join("nowhere").exists());

    // A FIFO and a directory.
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let run = export(&dir.join("fifo")).failure(1);
    assert!(run.stderr.contains("is a FIFO"), "{}", run.stderr);
    assert!(
        std::fs::symlink_metadata(dir.join("fifo"))
            .expect("still there")
            .file_type()
            .is_fifo()
    );
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    let run = export(&dir.join("sub")).failure(1);
    assert!(run.stderr.contains("is a directory"), "{}", run.stderr);
    assert!(listing(&dir.join("sub")).is_empty());

    // A device node (as /dev/full is), where this user may make one: a node of
    // our own, so a failure replaces nothing the machine needs.
    let device = std::process::Command::new("mknod")
        .arg(dir.join("full"))
        .args(["c", "1", "7"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if device {
        let run = export(&dir.join("full")).failure(1);
        assert!(run.stderr.contains("is a device"), "{}", run.stderr);
        assert!(
            std::fs::symlink_metadata(dir.join("full"))
                .expect("still there")
                .file_type()
                .is_char_device()
        );
    } else {
        eprintln!("SKIPPED (device case): mknod needs root");
    }

    // Nothing left beside them; a regular file is replaced by the bundle.
    let mut expected = vec![
        "dangling.tar.zst",
        "fifo",
        "link.tar.zst",
        "sub",
        "victim.txt",
    ];
    if device {
        expected.push("full");
        expected.sort_unstable();
    }
    assert_eq!(listing(dir), expected);
    std::fs::write(dir.join("old.tar.zst"), "an old bundle").expect("write");
    export(&dir.join("old.tar.zst")).success();
    assert!(entries(&dir.join("old.tar.zst")).contains(&"images.lock".to_owned()));
}

#[test]
fn a_blob_swapped_in_the_store_fails_the_export_by_name_and_writes_no_bundle() {
    use std::os::unix::fs::PermissionsExt as _;
    let project = local_project();
    let out = tempfile::tempdir().expect("tempdir");
    let bundle = out.path().join("bundle.tar.zst");
    project
        .run(&["export", bundle.to_str().expect("utf8")])
        .success();
    let before = std::fs::read(&bundle).expect("read");
    // Every blob in turn: the same name and size, one byte different.
    for (name, _) in project.store_blobs(&project.store()) {
        let path = project.store().join("blobs/sha256").join(&name);
        let genuine = std::fs::read(&path).expect("read");
        let mut swapped = genuine.clone();
        swapped[genuine.len() / 2] ^= 0x20;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::write(&path, &swapped).expect("swap");

        let run = project
            .run(&["export", bundle.to_str().expect("utf8")])
            .failure(1);
        assert!(
            run.stderr.contains(&format!("sha256:{name}")) && run.stderr.contains("fsck --repair"),
            "{}",
            run.stderr
        );
        assert_eq!(std::fs::read(&bundle).expect("read"), before);
        let fresh = out.path().join("fresh.tar.zst");
        project
            .run(&["export", fresh.to_str().expect("utf8")])
            .failure(1);
        assert_eq!(listing(out.path()), ["bundle.tar.zst"]);
        std::fs::write(&path, &genuine).expect("restore");
    }
    project
        .run(&["export", bundle.to_str().expect("utf8")])
        .success();
}
