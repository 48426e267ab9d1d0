//! Delta bundles (`export --since`): against the real registry, 31 images
//! locked in git, a full bundle carried to an air-gapped store, then deltas
//! that carry only the blobs the previous lock did not pin, imported in a
//! network namespace of their own; a delta whose base the store lacks, and a
//! chain applied out of order, are refused naming the missing blobs and the base.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::harness::{
    LayoutBuilder, Project, Registry, RegistryOptions, Run, example, git_ok, network_namespaces,
    peer, skopeo_push,
};

const IMAGES: usize = 31;

/// Pushes version `version` of image `n` (one layer of its own) to `host` as `test/img-N:1`.
fn push_image(work: &Path, host: &str, n: usize, version: usize) {
    let mut layout = LayoutBuilder::new(&work.join(format!("layout-{n}-{version}")));
    let content = format!("image {n}, version {version}\n").repeat(64 * (n + 1));
    let image = layout.image(
        "linux",
        "amd64",
        &[layout.layer(&[("content.txt", content.as_bytes())])],
    );
    layout.tag("v", &image);
    skopeo_push(&layout.dir, "v", &format!("{host}/test/img-{n}:1"), &[]);
}

/// The blob entries of a bundle (digest → size), and whether it has `delta.json`.
fn bundle_blobs(path: &Path) -> (BTreeSet<(String, u64)>, Option<serde_json::Value>) {
    let mut tar = Vec::new();
    zstd::Decoder::new(std::fs::File::open(path).expect("open"))
        .expect("zstd")
        .read_to_end(&mut tar)
        .expect("decompress");
    let mut archive = tar::Archive::new(&tar[..]);
    let mut blobs = BTreeSet::new();
    let mut delta = None;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("blobs/") {
            blobs.insert((rest.replacen('/', ":", 1), entry.size()));
        } else if name == "delta.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("read");
            delta = Some(serde_json::from_str(&text).expect("delta.json is JSON"));
        }
    }
    (blobs, delta)
}

/// Every blob digest in a lock's text (the `digest` keys; not `entry-hash`).
fn digests(lock: &str) -> BTreeSet<String> {
    lock.split("digest = \"")
        .skip(1)
        .map(|rest| rest.split('"').next().expect("a quoted digest").to_owned())
        .collect()
}

/// `export` with `args` and `--json`, into `work/name`: the bundle's path and the JSON report.
fn export(
    project: &Project,
    work: &Path,
    name: &str,
    args: &[&str],
) -> (PathBuf, serde_json::Value) {
    let path = work.join(name);
    let mut all = vec!["export", "--json"];
    all.extend_from_slice(args);
    all.push(path.to_str().expect("utf8"));
    let run = project.run(&all).success();
    let json = serde_json::from_str(&run.stdout).expect("export --json prints JSON");
    (path, json)
}

/// Imports `delta` into `project`'s store, which must refuse it for lacking its
/// base: the bundle whose `export --json` report is `base`, named by its lock.
#[track_caller]
fn refused_for_its_base(project: &Project, delta: &Path, base: &serde_json::Value) -> Run {
    let run = project
        .run_without_network(&["import", delta.to_str().expect("utf8")])
        .failure(1);
    let base_lock = base["exported"]["lock"].as_str().expect("lock");
    assert!(
        run.stderr
            .contains(&format!("is a delta cut against lock {base_lock}")),
        "{}",
        run.stderr
    );
    run
}

/// `sync --offline --from BUNDLE` in `project`, with no network; it must succeed.
#[track_caller]
fn sync_from(project: &Project, bundle: &Path) -> Run {
    project
        .run_without_network(&[
            "sync",
            "--offline",
            "--from",
            bundle.to_str().expect("utf8"),
        ])
        .success()
}

/// An air-gapped project: the connected side's manifest and current lock, and a store of its own.
fn gapped(connected: &Project) -> Project {
    let project = Project::new();
    project.write("images.toml", &connected.read("images.toml"));
    project.write("images.lock", &connected.read("images.lock"));
    project
}

#[test]
fn deltas_carry_only_what_changed_across_the_air_gap_and_apply_in_order() {
    if !(peer("docker-registry") && peer("skopeo") && peer("git") && network_namespaces()) {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let work = work.path();
    let registry = Registry::start(RegistryOptions::default());
    let host = registry.host();
    let mut manifest = format!("[registries.\"{host}\"]\ninsecure-http = true\n");
    for n in 0..IMAGES {
        push_image(work, &host, n, 1);
        manifest.push_str(&format!(
            "\n[images.img-{n}]\ndocker = \"{host}/test/img-{n}:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
        ));
    }
    let connected = Project::new();
    connected.write("images.toml", &manifest);
    connected.run(&["lock"]).success();
    connected.run(&["sync"]).success();
    git_ok(&connected, &["init", "-q"]);
    git_ok(&connected, &["add", "images.toml", "images.lock"]);
    git_ok(&connected, &["commit", "-qm", "31 images"]);
    let (full, full_json) = export(&connected, work, "full.tar.zst", &[]);
    let lock0 = connected.read("images.lock");
    assert_eq!(full_json["exported"]["delta"], serde_json::Value::Null);
    let (full_blobs, no_delta) = bundle_blobs(&full);
    assert!(no_delta.is_none());
    assert_eq!(
        full_blobs
            .iter()
            .map(|(d, _)| d.clone())
            .collect::<BTreeSet<_>>(),
        digests(&lock0),
        "a full bundle carries every blob the lock pins"
    );

    // The air-gapped side takes the full bundle with no network at all.
    let site = gapped(&connected);
    sync_from(&site, &full);
    site.run_without_network(&["verify"]).success();

    // One image updated and committed; the delta carries its new blobs only.
    push_image(work, &host, 7, 2);
    connected.run(&["update", "img-7"]).success();
    connected.run(&["sync"]).success();
    git_ok(&connected, &["commit", "-qam", "img-7 v2"]);
    let lock1 = connected.read("images.lock");
    let (delta1, delta1_json) = export(&connected, work, "delta1.tar.zst", &["--since", "HEAD~1"]);
    let new1: BTreeSet<String> = digests(&lock1)
        .difference(&digests(&lock0))
        .cloned()
        .collect();
    assert_eq!(
        new1.len(),
        2,
        "img-7's new manifest and layer (the config is shared)"
    );
    let (delta1_blobs, delta1_file) = bundle_blobs(&delta1);
    assert_eq!(
        delta1_blobs
            .iter()
            .map(|(d, _)| d.clone())
            .collect::<BTreeSet<_>>(),
        new1
    );
    let exported = &delta1_json["exported"];
    assert_eq!(exported["blobs"], 2);
    assert_eq!(
        exported["bytes"],
        delta1_blobs.iter().map(|(_, size)| size).sum::<u64>()
    );
    assert_eq!(
        exported["delta"]["base"]["lock"], full_json["exported"]["lock"],
        "the delta names the full bundle's lock as its base"
    );
    let omitted = exported["delta"]["omitted_blobs"].as_u64().expect("count");
    assert_eq!(omitted as usize, digests(&lock1).len() - 2);
    assert_eq!(
        exported["delta"]["omitted"]
            .as_array()
            .expect("omitted")
            .iter()
            .map(|o| o["size"].as_u64().expect("size"))
            .sum::<u64>(),
        exported["delta"]["omitted_bytes"].as_u64().expect("bytes")
    );
    let delta1_file = delta1_file.expect("a delta has delta.json");
    assert_eq!(delta1_file["base"]["lock"], full_json["exported"]["lock"]);
    assert_eq!(
        delta1_file["assumes"].as_array().expect("assumes").len() as u64,
        omitted
    );
    assert!(
        exported["bytes"].as_u64().expect("bytes") * 10
            < full_json["exported"]["bytes"].as_u64().expect("bytes"),
        "the delta carries a small fraction of the full bundle's bytes"
    );
    // Without --json, it says what it left out, why, and what that saved.
    let run = connected
        .run(&[
            "export",
            "--since",
            "HEAD~1",
            work.join("again.tar.zst").to_str().expect("utf8"),
        ])
        .success();
    assert!(
        run.stderr.contains(&format!("Left out {omitted} blobs ("))
            && run
                .stderr
                .contains("present in the base HEAD~1:images.lock at commit ")
            && run.stderr.contains("saved "),
        "{}",
        run.stderr
    );

    // The site takes the delta before the new lock: the blobs are stored, and
    // it is told that sync named what its own (old) lock pins.
    let run = sync_from(&site, &delta1);
    assert!(
        run.stderr.contains(
            "warning: the bundle's lock pins 1 image otherwise than images.lock: img-7 (bundle "
        ) && run
            .stderr
            .contains("If the bundle is newer, bring the images.lock it was exported with"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("2 blobs (") && run.stderr.contains(" stored, 0 already present"),
        "{}",
        run.stderr
    );
    // With the new lock (as it would take the commit), the same again names img-7's new pin.
    site.write("images.lock", &lock1);
    let run = sync_from(&site, &delta1);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let index = std::fs::read_to_string(site.store().join("index.json")).expect("index.json");
    assert!(
        new1.iter().any(|digest| index.contains(digest.as_str())),
        "the store names img-7's new manifest: {index}"
    );
    assert!(
        run.stderr.contains("Imported a delta of 31 images"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("0 blobs (0 B) stored, 2 already present"),
        "{}",
        run.stderr
    );
    site.run_without_network(&["verify"]).success();
    site.assert_store_valid(&site.store());

    // A store without the base: refused before anything is stored, naming the
    // missing blobs with their images, and the base lock.
    let bare = gapped(&connected);
    let run = refused_for_its_base(&bare, &delta1, &full_json);
    assert!(run.stderr.contains("image img-30)"), "{}", run.stderr);
    let first_assumed = delta1_file["assumes"][0]["digest"]
        .as_str()
        .expect("digest");
    assert!(run.stderr.contains(first_assumed), "{}", run.stderr);
    assert_eq!(bare.store_blobs(&bare.store()), [], "nothing was imported");
    let run = bare.run_without_network(&["sync", "--offline"]).failure(1);
    assert!(run.stderr.contains("not in the store"), "{}", run.stderr);

    // A second delta, cut against the first's lock: img-12 updated.
    push_image(work, &host, 12, 2);
    connected.run(&["update", "img-12"]).success();
    connected.run(&["sync"]).success();
    git_ok(&connected, &["commit", "-qam", "img-12 v2"]);
    let lock2 = connected.read("images.lock");
    let (delta2, delta2_json) = export(&connected, work, "delta2.tar.zst", &["--since", "HEAD~1"]);
    assert_eq!(
        delta2_json["exported"]["delta"]["base"]["lock"],
        delta1_json["exported"]["lock"]
    );
    let (delta2_blobs, _) = bundle_blobs(&delta2);
    assert_eq!(
        delta2_blobs
            .iter()
            .map(|(d, _)| d.clone())
            .collect::<BTreeSet<_>>(),
        digests(&lock2)
            .difference(&digests(&lock1))
            .cloned()
            .collect::<BTreeSet<_>>()
    );

    // Out of order (the full bundle, then the second delta): refused, naming
    // the first delta's lock and img-7's blobs it brought.
    let behind = gapped(&connected);
    let run = behind
        .run_without_network(&["import", "--json", full.to_str().expect("utf8")])
        .success();
    // Its lock is two updates ahead of the full bundle's: told so, with what to do.
    assert!(
        run.stderr.contains(
            "the bundle's lock pins 2 images otherwise than images.lock: img-12 (bundle "
        ) && run
            .stderr
            .contains("if it is older (a chain being caught up), import the bundles after it"),
        "{}",
        run.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(json["pinned_otherwise"][1]["id"], "img-7");
    let run = refused_for_its_base(&behind, &delta2, &delta1_json);
    assert!(run.stderr.contains("lacks 2 of the"), "{}", run.stderr);
    assert!(run.stderr.contains("image img-7"), "{}", run.stderr);
    for digest in &new1 {
        assert!(run.stderr.contains(digest.as_str()), "{}", run.stderr);
    }
    // In order, it applies: the full bundle, the first delta, the second.
    behind
        .run_without_network(&["import", delta1.to_str().expect("utf8")])
        .success();
    behind.write("images.lock", &lock2);
    sync_from(&behind, &delta2);
    behind.run_without_network(&["verify"]).success();
    // And the site that took the first delta takes the second.
    site.write("images.lock", &lock2);
    sync_from(&site, &delta2);
    site.run_without_network(&["verify"]).success();
    drop(registry);
}

#[test]
fn since_names_a_lock_never_an_option_and_never_ambiguously() {
    if !peer("git") {
        return;
    }
    let project = example();
    project.run(&["sync"]).success();
    git_ok(&project, &["init", "-q"]);
    git_ok(&project, &["add", "images.toml", "images.lock"]);
    git_ok(&project, &["commit", "-qm", "example"]);
    git_ok(
        &project,
        &["commit", "-q", "--allow-empty", "-m", "nothing"],
    );
    let out = project.root().join("delta.tar.zst");
    let out = out.to_str().expect("utf8");

    // A revision that git would read as an option never reaches git.
    std::fs::create_dir_all(project.root().join("x:.")).expect("mkdir");
    let run = project
        .run(&["export", "--since=--output=x", out])
        .failure(1);
    assert!(
        run.stderr
            .contains("`--output=x` is neither a lock file nor a git revision"),
        "{}",
        run.stderr
    );
    assert!(!project.root().join("x:./images.lock").exists());
    assert!(!Path::new(out).exists());

    // A file named like a revision is refused as ambiguous, unless named as a path.
    project.write("HEAD~1", &project.read("images.lock"));
    let run = project
        .run(&["export", "--since", "HEAD~1", out])
        .failure(1);
    assert!(
        run.stderr
            .contains("`HEAD~1` is both a file and a git revision")
            && run.stderr.contains("write `./HEAD~1` for the file"),
        "{}",
        run.stderr
    );
    let run = project
        .run(&["export", "--since", "./HEAD~1", out])
        .success();
    assert!(
        run.stderr.contains("present in the base ./HEAD~1: saved"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(project.root().join("HEAD~1")).expect("rm");

    // A revision names its commit; nothing changed since, so nothing is carried.
    let run = project
        .run(&["export", "--json", "--since", "HEAD~1", out])
        .success();
    assert!(
        run.stderr
            .contains("present in the base HEAD~1:images.lock at commit "),
        "{}",
        run.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(json["exported"]["blobs"], 0);
    assert_eq!(
        json["exported"]["delta"]["omitted_blobs"],
        digests(&project.read("images.lock")).len()
    );

    // Not a lock: the hint says what --since takes.
    let run = project.run(&["export", "--since", out, out]).failure(1);
    assert!(
        run.stderr
            .contains("must be a lock imagelock wrote: name another git revision, or a lock file (`imagelock export --since OLD.lock FILE`)"),
        "{}",
        run.stderr
    );
    // A revision without a lock: a delta would carry everything.
    git_ok(&project, &["checkout", "-q", "--orphan", "empty"]);
    git_ok(
        &project,
        &["rm", "-q", "--cached", "-f", "images.lock", "images.toml"],
    );
    git_ok(&project, &["commit", "-q", "--allow-empty", "-m", "empty"]);
    let run = project.run(&["export", "--since", "HEAD", out]).failure(1);
    assert!(
        run.stderr.contains(
            "HEAD:images.lock does not exist, so a delta against it would carry every blob"
        ),
        "{}",
        run.stderr
    );
}
