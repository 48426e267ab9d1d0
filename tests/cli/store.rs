//! The store under stress: gc with roots, prune, fsck and repair, concurrent
//! syncs with a gc, and `kill -9` at random points during syncs against a
//! real `docker-registry`.

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
