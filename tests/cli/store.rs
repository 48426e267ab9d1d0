//! The store under stress: gc with roots, prune, fsck and repair, concurrent
//! syncs with a gc, and `kill -9` at random points during syncs against a
//! real `docker-registry`; and the store's borders: links planted for its
//! directories, files and partial downloads, a directory that is not a store,
//! and what `gc --dry-run` lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{LayoutBuilder, Project, Registry, RegistryOptions, peer, skopeo_push};

fn peers() -> bool {
    peer("docker-registry") && peer("skopeo")
}

/// Deterministic incompressible bytes (a xorshift stream), so layers keep their size.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A registry with `test/NAME:1` images: `shared` (one layer), `a` and `b`
/// (the shared layer plus their own), and `big` (four 6 MiB layers).
fn registry_with_images(work: &Path, big: bool) -> Registry {
    let registry = Registry::start(RegistryOptions::default());
    let mut layout = LayoutBuilder::new(&work.join("layout"));
    let shared = layout.layer(&[("shared", b"in every image")]);
    for name in ["a", "b"] {
        let own = layout.layer(&[(name, name.as_bytes())]);
        let image = layout.image("linux", "amd64", &[shared.clone(), own]);
        layout.tag(name, &image);
    }
    if big {
        let layers: Vec<_> = (0..4)
            .map(|i| layout.layer(&[("data", &noise(i, 6 * 1024 * 1024)[..])]))
            .collect();
        let image = layout.image("linux", "amd64", &layers);
        layout.tag("big", &image);
    }
    let names: &[&str] = if big { &["a", "b", "big"] } else { &["a", "b"] };
    for name in names {
        skopeo_push(
            &layout.dir,
            name,
            &format!("{}/test/{name}:1", registry.host()),
            &[],
        );
    }
    registry
}

/// A project locking `images` (names of `test/NAME:1`) into the shared `store`.
fn project(registry: &Registry, store: &Path, images: &[&str]) -> Project {
    let mut project = Project::new();
    project
        .env
        .insert("IMAGELOCK_STORE".into(), store.display().to_string());
    let mut manifest = format!(
        "[registries.\"{}\"]\ninsecure-http = true\n",
        registry.host()
    );
    for name in images {
        manifest.push_str(&format!(
            "\n[images.{name}]\ndocker = \"{}/test/{name}:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n",
            registry.host()
        ));
    }
    project.write("images.toml", &manifest);
    project.run(&["lock"]).success();
    project
}

fn blob_count(store: &Path) -> usize {
    ["sha256", "sha512"]
        .iter()
        .filter_map(|alg| std::fs::read_dir(store.join("blobs").join(alg)).ok())
        .map(|d| d.count())
        .sum()
}

fn ingest_files(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("ingest"))
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn gc_keeps_what_live_roots_need() {
    if !peers() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let store = work.path().join("store");
    let registry = registry_with_images(work.path(), false);
    let a = project(&registry, &store, &["a"]);
    let b = project(&registry, &store, &["b"]);
    a.run(&["sync"]).success();
    b.run(&["sync"]).success();
    // a: manifest, config (shared), shared layer, own layer; b adds manifest and own layer.
    assert_eq!(a.assert_store_valid(&store), 6);
    let run = a.run(&["gc", "--dry-run"]).success();
    assert!(
        run.stderr.contains("Would remove 0 blobs"),
        "{}",
        run.stderr
    );

    // b's lockfile goes away: its root is dead, its own blobs are garbage.
    std::fs::remove_file(b.root().join("images.lock")).expect("rm");
    let run = a.run(&["gc", "--dry-run", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(
        report["removed"]["blobs"].as_array().expect("blobs").len(),
        2
    );
    assert_eq!(blob_count(&store), 6, "a dry run removes nothing");
    let run = a.run(&["gc"]).success();
    assert!(
        run.stderr.contains("Removed 2 blobs")
            && run.stderr.contains("1 index ref")
            && run.stderr.contains("1 dead root"),
        "{}",
        run.stderr
    );
    assert_eq!(a.assert_store_valid(&store), 4);
    let index = std::fs::read_to_string(store.join("index.json")).expect("index");
    assert!(
        index.contains("test/a:1") && !index.contains("test/b:1"),
        "{index}"
    );
    a.run(&["sync", "--frozen", "--offline"]).success();
    a.run(&["fsck"]).success();

    // sync --prune keeps only what this lock needs.
    b.run(&["lock"]).success();
    b.run(&["sync", "--prune"]).success();
    assert_eq!(b.assert_store_valid(&store), 4);
    let run = a.run(&["sync", "--frozen", "--offline"]).failure(1);
    assert!(run.stderr.contains("--offline"), "{}", run.stderr);
}

#[test]
fn fsck_finds_corrupt_and_missing_blobs_and_repairs_them() {
    if !peers() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let store = work.path().join("store");
    let registry = registry_with_images(work.path(), false);
    let a = project(&registry, &store, &["a", "b"]);
    a.run(&["sync"]).success();
    let run = a.run(&["fsck"]).success();
    assert!(run.stderr.contains("Checked 6 blobs"), "{}", run.stderr);
    let mut blobs: Vec<PathBuf> = std::fs::read_dir(store.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .collect();
    blobs.sort();
    let mut bytes = std::fs::read(&blobs[0]).expect("read");
    bytes[0] ^= 0xff;
    std::fs::write(&blobs[0], bytes).expect("write");
    std::fs::remove_file(&blobs[1]).expect("rm");
    let name = |p: &Path| p.file_name().expect("name").to_string_lossy().into_owned();
    let run = a.run(&["fsck"]).failure(1);
    assert!(
        run.stderr
            .contains(&format!("corrupt  sha256:{}", name(&blobs[0])))
            && run
                .stderr
                .contains(&format!("missing  sha256:{}", name(&blobs[1])))
            && run.stderr.contains("fsck --repair"),
        "{}",
        run.stderr
    );
    let run = a.run(&["fsck", "--repair"]).success();
    assert!(run.stderr.contains("Repaired"), "{}", run.stderr);
    assert!(
        store
            .join("quarantine")
            .join(format!("sha256-{}", name(&blobs[0])))
            .is_file()
    );
    assert_eq!(a.assert_store_valid(&store), 6);
    a.run(&["fsck"]).success();
}

#[test]
fn concurrent_syncs_and_a_gc_leave_a_sound_store() {
    if !peers() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let store = work.path().join("store");
    let registry = registry_with_images(work.path(), false);
    let projects = [
        project(&registry, &store, &["a"]),
        project(&registry, &store, &["b"]),
        project(&registry, &store, &["a", "b"]),
    ];
    // One project synced first, so the gcs have a store and a root to honour.
    projects[0].run(&["sync"]).success();
    let children: Vec<_> = projects
        .iter()
        .map(|p| p.spawn(&["sync"]))
        .chain([projects[0].spawn(&["gc"]), projects[1].spawn(&["gc"])])
        .collect();
    for child in children {
        let run = crate::harness::Run::from(child.wait_with_output().expect("wait"));
        run.success();
    }
    for p in &projects {
        p.run(&["sync", "--frozen", "--offline"]).success();
    }
    projects[2].run(&["fsck"]).success();
    assert_eq!(projects[0].assert_store_valid(&store), 6);
    assert!(
        ingest_files(&store).is_empty(),
        "{:?}",
        ingest_files(&store)
    );
}

#[test]
fn syncs_killed_at_random_points_leave_a_valid_store_that_resumes() {
    if !peers() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let store = work.path().join("store");
    let registry = registry_with_images(work.path(), true);
    let p = project(&registry, &store, &["big", "a", "b"]);
    // How long a whole sync takes here; kill points are spread over it.
    let started = std::time::Instant::now();
    p.run(&["sync"]).success();
    let full = started.elapsed();
    std::fs::remove_dir_all(&store).expect("rm store");
    // Deterministic "random" kill points in [0, 60%] of a full sync (a sync
    // resuming earlier progress is faster than a full one).
    let points: Vec<Duration> = noise(7, 100)
        .iter()
        .map(|b| full.mul_f64(f64::from(*b) / 255.0 * 0.6))
        .collect();
    let mut killed = 0;
    for (i, point) in points.iter().enumerate() {
        if killed == 20 {
            break;
        }
        let mut child = p.spawn(&["sync"]);
        std::thread::sleep(*point);
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("kill -9");
            killed += 1;
        } else {
            // It finished: start over so the next kill hits downloads again.
            let _ = std::fs::remove_dir_all(&store);
        }
        let _ = child.wait();
        // Whatever was cut short, every named blob is right.
        p.assert_store_valid(&store);
        // Left behind: resumable partials, and the killed process's private
        // temporary files, which the next open removes.
        for name in ingest_files(&store) {
            assert!(
                (name.starts_with("sha256-") && name.ends_with(".partial"))
                    || name.starts_with("tmp-"),
                "iteration {i}: unexpected leftover {name}"
            );
        }
    }
    assert_eq!(killed, 20, "20 syncs killed mid-way within 100 tries");
    // Temporary files of the last killed syncs count as leftovers once they
    // are older than the store's grace period for locking them.
    std::thread::sleep(Duration::from_millis(2500));
    p.run(&["sync"]).success();
    // a and b (6 blobs, see above), big: its manifest and four layers (the config is shared).
    assert_eq!(p.assert_store_valid(&store), 11);
    assert!(
        ingest_files(&store).is_empty(),
        "{:?}",
        ingest_files(&store)
    );
    p.run(&["fsck"]).success();
}

// ---------------------------------------------------------------- links and foreign directories

/// A project pinning `img` (and `other`) from a local layout, synced and rendered, so that
/// every directory of its store exists and holds something.
fn local_project() -> Project {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    for (tag, text) in [("img", b"hello" as &[u8]), ("other", b"other")] {
        let layer = layout.layer(&[("hello.txt", text)]);
        let image = layout.image("linux", "amd64", &[layer]);
        layout.tag(tag, &image);
    }
    project.write(
        "images.toml",
        "[images.img]\npath = \"layout:img\"\ninsecure = true\n\n[images.other]\npath = \"layout:other\"\ninsecure = true\n",
    );
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();
    project.run(&["render", "img", "out"]).success();
    project
}

/// Sets `path`'s mtime 30 days back (older than any age the store waits for).
fn make_old(path: &Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(old)
        .expect("mtime");
}

/// Files outside the store named like the ones each store directory cleans up: a
/// directory a planted link points at.
fn victims(dir: &Path) {
    let hex = "ab".repeat(32);
    for sub in ["", "sha256", "http"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(d.join(&hex)).expect("mkdir");
        std::fs::create_dir_all(d.join(".tmp-build-victim")).expect("mkdir");
        for name in [
            "notes.txt".to_owned(),
            "tmp-victim".to_owned(),
            format!("sha256-{hex}.partial"),
            format!("{hex}.json"),
            hex.clone(),
            format!("{hex}/source.json"),
            ".tmp-build-victim/file".to_owned(),
        ] {
            if d.join(&name).is_dir() {
                continue;
            }
            std::fs::write(d.join(&name), format!("precious {name}\n")).expect("write");
            make_old(&d.join(&name));
        }
    }
}

/// Every path under `dir` (not following links) with its type, content and mtime.
fn tree_state(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let what = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if meta.file_type().is_symlink() {
                format!(
                    "link {}",
                    std::fs::read_link(&path).expect("readlink").display()
                )
            } else {
                format!(
                    "file {:?} {:?}",
                    std::fs::read(&path).expect("read"),
                    meta.modified().expect("mtime")
                )
            };
            let rel = path.strip_prefix(dir).expect("below").display().to_string();
            out.insert(rel, what);
        }
    }
    out
}

/// Each directory and file the store keeps, replaced by a symbolic link to a directory of
/// look-alike files (or by a file where a directory belongs): every command that opens the
/// store refuses, naming the path and what to do, and nothing outside the store changes.
#[test]
fn store_paths_that_are_links_are_refused_and_nothing_outside_changes() {
    let dirs = [
        "blobs",
        "blobs/sha256",
        "blobs/sha512",
        "ingest",
        "roots",
        "rendered",
        "quarantine",
        "cache",
        "cache/http",
    ];
    let files = [
        "imagelock.lock",
        "index.json",
        "oci-layout",
        "index.json.lock",
    ];
    let commands: &[&[&str]] = &[
        &["sync"],
        &["sync", "--frozen", "--offline"],
        &["gc", "--dry-run"],
        &["gc"],
        &["fsck"],
        &["fsck", "--repair"],
        &["verify"],
        &["render", "img", "again"],
    ];
    let cases = dirs
        .iter()
        .map(|d| (*d, "link"))
        .chain(files.iter().map(|f| (*f, "link")))
        .chain([("roots", "file"), ("ingest", "file")]);
    for (name, kind) in cases {
        let project = local_project();
        let store = project.store();
        let outside = tempfile::tempdir().expect("tempdir");
        victims(outside.path());
        let planted = store.join(name);
        if planted.is_dir() {
            std::fs::remove_dir_all(&planted).expect("rm");
        } else {
            let _ = std::fs::remove_file(&planted);
        }
        let found = if kind == "link" {
            let target = if files.contains(&name) {
                outside.path().join("notes.txt")
            } else {
                outside.path().to_owned()
            };
            std::os::unix::fs::symlink(&target, &planted).expect("symlink");
            "a symbolic link"
        } else {
            std::fs::write(&planted, "a file").expect("write");
            "a regular file"
        };
        let before = tree_state(outside.path());
        for command in commands {
            let run = project.run(command).failure(1);
            assert!(
                run.stderr
                    .contains(&format!("{} is {found}", planted.display()))
                    && run.stderr.contains("never follows a link out of its store")
                    && run.stderr.contains("hint: imagelock did not put it there"),
                "{name} ({kind}), `{}`:\n{}",
                command.join(" "),
                run.stderr
            );
            assert_eq!(
                tree_state(outside.path()),
                before,
                "{name} ({kind}), `{}` changed files outside the store",
                command.join(" ")
            );
        }
        assert!(!project.root().join("again").exists());
    }
}

/// A blob whose name is a link (here to an outside copy of the right bytes) is not the
/// blob: fsck reports it, sync replaces the link with the blob, the outside file stays.
#[test]
fn a_blob_that_is_a_link_is_replaced_not_followed() {
    let project = local_project();
    let store = project.store();
    let outside = tempfile::tempdir().expect("tempdir");
    let mut blobs: Vec<PathBuf> = std::fs::read_dir(store.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .collect();
    blobs.sort();
    let copy = outside.path().join("copy");
    std::fs::rename(&blobs[0], &copy).expect("move out");
    std::os::unix::fs::symlink(&copy, &blobs[0]).expect("symlink");
    let before = tree_state(outside.path());
    let run = project.run(&["fsck"]).failure(1);
    assert!(
        run.stderr.contains("is a symbolic link, not a file"),
        "{}",
        run.stderr
    );
    project.run(&["sync"]).success();
    assert!(!blobs[0].is_symlink(), "sync stored the blob itself");
    project.assert_store_valid(&store);
    project.run(&["fsck"]).success();
    assert_eq!(tree_state(outside.path()), before);
}

/// Partial downloads planted in `ingest/` under the names of the blobs a sync is about to
/// fetch — symbolic links to outside files, a dangling link, a second hard link to an
/// outside file — are replaced, never written through: the sync succeeds, the store is
/// valid and the outside files are untouched (and the dangling link's target never made).
#[test]
fn planted_partial_downloads_are_replaced_never_written_through() {
    if !peers() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let store = work.path().join("store");
    let registry = registry_with_images(work.path(), false);
    let p = project(&registry, &store, &["a"]);
    p.run(&["sync"]).success();
    let hexes: Vec<String> = std::fs::read_dir(store.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(hexes.len(), 4);
    for hex in &hexes {
        std::fs::remove_file(store.join("blobs/sha256").join(hex)).expect("rm");
    }
    std::fs::write(
        store.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .expect("reset index");
    let outside = work.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    for (i, hex) in hexes.iter().enumerate() {
        let partial = store.join("ingest").join(format!("sha256-{hex}.partial"));
        let victim = outside.join(format!("victim-{i}"));
        match i {
            0 => std::os::unix::fs::symlink(outside.join("never-made"), &partial).expect("ln"),
            1 => {
                std::fs::write(&victim, "precious").expect("write");
                std::fs::hard_link(&victim, &partial).expect("hard link");
            }
            _ => {
                std::fs::write(&victim, "precious").expect("write");
                std::os::unix::fs::symlink(&victim, &partial).expect("ln");
            }
        }
    }
    let before = tree_state(&outside);
    p.run(&["sync"]).success();
    assert_eq!(p.assert_store_valid(&store), 4);
    assert_eq!(
        tree_state(&outside),
        before,
        "nothing outside the store changed"
    );
    assert!(!outside.join("never-made").exists());
    assert!(
        ingest_files(&store).is_empty(),
        "{:?}",
        ingest_files(&store)
    );
    p.run(&["fsck"]).success();
}

/// `[store] path` naming a directory imagelock did not create — a project directory, or an
/// OCI layout written by another tool — is refused by every command and left exactly as
/// it was; an empty directory is adopted.
#[test]
fn a_directory_that_is_not_a_store_is_refused_and_left_alone() {
    let project = local_project();
    let root = project.root();
    let manifest = project.read("images.toml");
    let foreign = root.join("documents");
    std::fs::create_dir_all(foreign.join("blobs/sha256")).expect("mkdir");
    std::fs::write(foreign.join("thesis.txt"), "years of work").expect("write");
    std::fs::write(
        foreign.join("blobs/sha256").join("cd".repeat(32)),
        "not a blob",
    )
    .expect("write");
    std::fs::create_dir_all(foreign.join("ingest")).expect("mkdir");
    std::fs::write(foreign.join("ingest/tmp-draft"), "draft").expect("write");
    make_old(&foreign.join("ingest/tmp-draft"));
    // An OCI layout written by another tool: the project's own source layout.
    let layout = root.join("layout");
    let commands: &[&[&str]] = &[
        &["sync"],
        &["gc", "--dry-run"],
        &["gc"],
        &["fsck"],
        &["verify"],
        &["render", "img", "rendered"],
        &["inspect", "img"],
    ];
    for (dir, why) in [
        (
            &foreign,
            "the directory is not empty and has no imagelock.lock",
        ),
        (
            &layout,
            "it is an OCI image layout that imagelock did not create",
        ),
    ] {
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        project.write(
            "images.toml",
            &format!("[store]\npath = \"{name}\"\n\n{manifest}"),
        );
        let before = tree_state(dir);
        for command in commands {
            let run = project.run(command).failure(1);
            assert!(
                run.stderr
                    .contains(&format!("{name} is not an imagelock store: {why}"))
                    && run.stderr.contains("hint: point `--store`"),
                "`{}` with {name}:\n{}",
                command.join(" "),
                run.stderr
            );
            assert_eq!(
                tree_state(dir),
                before,
                "`{}` changed {name}",
                command.join(" ")
            );
        }
    }
    // An empty directory becomes a store.
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    project.write(
        "images.toml",
        &format!("[store]\npath = \"empty\"\n\n{manifest}"),
    );
    project.run(&["sync"]).success();
    assert!(root.join("empty/imagelock.lock").is_file());
    assert!(root.join("empty/oci-layout").is_file());
    project.run(&["gc"]).success();
    project.run(&["fsck"]).success();
}

/// `gc --dry-run` lists every path it would remove (blobs, rendered trees, download
/// leftovers, dead roots, index refs) and removes nothing; `gc` then removes exactly those
/// and leaves alone what the store did not make.
#[test]
fn gc_dry_run_lists_every_path_it_would_remove() {
    let project = local_project();
    let store = project.store();
    project.run(&["render", "other", "out-other"]).success();
    // `other` leaves the lock: its manifest, layer and rendered tree are garbage.
    project.write(
        "images.toml",
        "[images.img]\npath = \"layout:img\"\ninsecure = true\n",
    );
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();
    let hex = "ef".repeat(32);
    let ingest = store.join("ingest");
    std::fs::write(ingest.join("tmp-leftover"), "x").expect("write");
    make_old(&ingest.join("tmp-leftover"));
    std::fs::write(ingest.join(format!("sha256-{hex}.partial")), "x").expect("write");
    std::fs::write(ingest.join("notes.txt"), "mine").expect("write");
    let dead_root = store
        .join("roots")
        .join(format!("{}.json", "12".repeat(32)));
    std::fs::write(
        &dead_root,
        r#"{"lock": "/nonexistent/images.lock", "digests": []}"#,
    )
    .expect("write");
    std::fs::write(store.join("roots/notes.json"), "mine").expect("write");
    let blobs_before = tree_state(&store.join("blobs"));
    let rendered: Vec<PathBuf> = std::fs::read_dir(store.join("rendered"))
        .expect("rendered")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            std::fs::read_to_string(p.join("source.json")).is_ok_and(|r| r.contains("\"other\""))
        })
        .collect();
    assert_eq!(rendered.len(), 1);

    let run = project.run(&["gc", "--dry-run"]).success();
    let mut expected = vec![
        rendered[0].clone(),
        ingest.join("tmp-leftover"),
        ingest.join(format!("sha256-{hex}.partial")),
        dead_root.clone(),
    ];
    let json = project.run(&["gc", "--dry-run", "--json"]).success().stdout;
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    let blobs: Vec<PathBuf> = report["removed"]["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .map(|b| {
            let digest = b[0].as_str().expect("digest");
            store
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        })
        .collect();
    assert_eq!(blobs.len(), 2, "other's manifest and layer: {json}");
    expected.extend(blobs);
    for path in &expected {
        assert!(
            run.stderr.contains(&format!("  {} (", path.display())),
            "{} not listed:\n{}",
            path.display(),
            run.stderr
        );
        assert!(path.exists(), "a dry run removes nothing");
    }
    let listed: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" ("))
        .collect();
    assert_eq!(listed.len(), expected.len(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("index.json entry `imagelock.local/other`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        report["removed"]["paths"].as_array().expect("paths").len(),
        expected.len()
    );
    assert_eq!(tree_state(&store.join("blobs")), blobs_before);

    project.run(&["gc"]).success();
    for path in &expected {
        assert!(!path.exists(), "{} removed", path.display());
    }
    assert!(
        ingest.join("notes.txt").is_file(),
        "not the store's: left alone"
    );
    assert!(
        store.join("roots/notes.json").is_file(),
        "not the store's: left alone"
    );
    project.run(&["fsck"]).success();
    let again = project.run(&["render", "img", "again"]).success();
    assert!(
        again.stderr.contains("from the render cache"),
        "{}",
        again.stderr
    );
}
