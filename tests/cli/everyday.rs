//! The everyday commands (update, diff, list, inspect, trust, completions,
//! man), conflicted locks, stale-lock errors and usage errors: insta snapshots
//! of the real binary's exit code, stdout and stderr, with paths, digests,
//! fingerprints and times filtered so the snapshots are deterministic.
//!
//! Most cases start from a copy of the bundled example (a two-platform OCI
//! layout and a signed ACI with its TEST-ONLY key), so they need no network
//! and no peer; the moved-tag case runs against a real `docker-registry`.

use std::path::Path;
use std::process::Command;

use crate::harness::{
    LayoutBuilder, Project, Registry, RegistryOptions, Run, example, git, git_ok, peer, skopeo_push,
};

/// Snapshots `run` as `exit`, stdout and stderr, with everything that varies
/// between runs and machines replaced by a placeholder.
#[track_caller]
pub(crate) fn snapshot(name: &str, project: &Project, run: &Run) {
    snapshot_with(name, project, run, &[]);
}

/// [`snapshot`] with extra (regex, replacement) filters.
#[track_caller]
fn snapshot_with(name: &str, project: &Project, run: &Run, extra: &[(&str, &str)]) {
    let text = crate::harness::run_text(run);
    let root = project.root().display().to_string();
    let tmp = project.dir.path().display().to_string();
    let mut filters: Vec<(String, &str)> = vec![
        (crate::harness::regex_escape(&root), "[PROJECT]"),
        (crate::harness::regex_escape(&tmp), "[TMP]"),
        (r"127\.0\.0\.1:\d+".into(), "[REGISTRY]"),
        (r"(sha256|sha512):[0-9a-f]{64,128}".into(), "$1:[DIGEST]"),
        // As wide as what it replaces, so tables stay aligned.
        (r"(sha256|sha512):[0-9a-f]{12}\b".into(), "$1:[SHORT12HEX]"),
        (r"sha512-[0-9a-f]{128}".into(), "sha512-[IMAGE-ID]"),
        (
            r"([0-9A-F]{4} ){4}[0-9A-F]{4}  ([0-9A-F]{4} ){4}[0-9A-F]{4}".into(),
            "[FPR]",
        ),
        (r"\b[0-9A-F]{40}\b".into(), "[FPR]"),
        (r"\b[0-9A-F]{16}\b".into(), "[KEYID]"),
        (r"\b\d+(\.\d+)?m?s\b".into(), "[TIME]"),
    ];
    filters.extend(extra.iter().map(|(p, r)| ((*p).to_owned(), *r)));
    crate::harness::assert_snapshot_filtered(name, &text, &filters);
}

/// Re-tags `1.0` in the example layout to another image: a new index whose amd64
/// build is another manifest (the same image, with an annotation), arm64 unchanged.
fn move_the_tag(project: &Project) {
    use sha2::Digest as _;
    let layout = project.root().join("examples/hello");
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let write_blob = |bytes: &[u8]| {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let path = layout.join("index.json");
    let mut top: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let old_index = top["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&old_index)).expect("read index"))
            .expect("json");
    let entries = index["manifests"].as_array_mut().expect("manifests");
    let amd64 = entries
        .iter_mut()
        .find(|d| d["platform"]["architecture"] == "amd64")
        .expect("an amd64 entry");
    let old = amd64["digest"].as_str().expect("digest").to_owned();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&old)).expect("read manifest")).expect("json");
    manifest["annotations"] = serde_json::json!({"org.opencontainers.image.version": "1.0.1"});
    let (digest, size) = write_blob(manifest.to_string().as_bytes());
    amd64["digest"] = digest.into();
    amd64["size"] = size.into();
    let (digest, size) = write_blob(index.to_string().as_bytes());
    top["manifests"][0]["digest"] = digest.into();
    top["manifests"][0]["size"] = size.into();
    std::fs::write(&path, top.to_string()).expect("write");
}

fn git_repo(project: &Project) {
    git_ok(project, &["init", "-q"]);
    git_ok(project, &["add", "-A"]);
    git_ok(project, &["commit", "-qm", "example"]);
}

#[test]
fn list_shows_every_locked_image() {
    let project = example();
    let run = project.run(&["list"]).success();
    snapshot("list", &project, &run);
    let run = project.run(&["list", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(json["images"][0]["id"], "hello");
    assert_eq!(json["images"][0]["platforms"][1], "linux/arm64");
    assert_eq!(json["images"][1]["verified"], true);
    assert_eq!(
        json["images"][1]["signed_by"][0]["fingerprint"],
        "8836CD40C8B00F2B3BBE84E537F3026F530A8073"
    );
    snapshot("list_json", &project, &run);
}

#[test]
fn list_without_a_lock_says_how_to_make_one() {
    let project = example();
    std::fs::remove_file(project.root().join("images.lock")).expect("rm");
    let run = project.run(&["list"]).failure(1);
    snapshot("list_no_lock", &project, &run);
}

#[test]
fn inspect_shows_blobs_signatures_and_the_store() {
    let project = example();
    let run = project.run(&["inspect", "hello-aci"]).success();
    snapshot("inspect_aci_no_store", &project, &run);
    project.run(&["sync"]).success();
    let run = project.run(&["inspect", "hello"]).success();
    snapshot("inspect_layout_synced", &project, &run);
    // A blob gone from the store shows as missing.
    let lock = project.read("images.lock");
    let layer = lock
        .split("layers = [\n    { digest = \"sha256:")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("layer digest")
        .to_owned();
    std::fs::remove_file(
        project
            .root()
            .join(".imagelock/store/blobs/sha256")
            .join(&layer),
    )
    .expect("rm blob");
    let run = project.run(&["inspect", "hello"]).success();
    assert!(run.stdout.contains("MISSING"), "{}", run.stdout);
    assert!(
        run.stdout.contains("5 of 6 blobs present"),
        "{}",
        run.stdout
    );
    let run = project.run(&["inspect", "hello-aci", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(json["image"]["name"], "imagelock.example/hello");
    assert_eq!(json["blobs"][0]["role"], "aci");
    assert_eq!(json["blobs"][0]["present"], true);
    assert_eq!(json["keys"][0]["trusted"], true);
    snapshot("inspect_aci_json", &project, &run);
}

#[test]
fn inspect_errors_name_the_images() {
    let project = example();
    let run = project.run(&["inspect", "nope"]).failure(2);
    snapshot("inspect_unknown", &project, &run);
    project
        .run(&[
            "add",
            "later",
            "--path",
            "examples/hello:1.0",
            "--insecure",
            "--no-lock",
        ])
        .success();
    let run = project.run(&["inspect", "later"]).failure(1);
    snapshot("inspect_not_locked", &project, &run);
}

#[test]
fn trust_lists_prefixes_keys_and_what_they_cover() {
    let project = example();
    let run = project.run(&["trust"]).success();
    snapshot("trust_list", &project, &run);
    let list = project.run(&["trust", "list"]).success();
    assert_eq!(list.stdout, run.stdout, "`trust` and `trust list` agree");
    let run = project.run(&["trust", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let prefix = &json["trust"]["prefixes"][0];
    assert_eq!(prefix["prefix"], "imagelock.example/");
    assert_eq!(
        prefix["keys"][0]["fingerprint"],
        "8836CD40C8B00F2B3BBE84E537F3026F530A8073"
    );
    assert_eq!(prefix["covers"][0]["id"], "hello-aci");
    assert_eq!(json["trust"]["uncovered"][0]["id"], "hello");

    // An expired key shows its date; a missing key file fails, naming it.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openpgp");
    std::fs::copy(
        fixtures.join("expired.asc"),
        project.root().join("expired.asc"),
    )
    .expect("copy");
    let manifest = project.read("images.toml").replace(
        "[images.hello]",
        "[trust.\"old.example/\"]\nkeys = [\"expired.asc\", \"gone.asc\"]\n\n[images.hello]",
    );
    project.write("images.toml", &manifest);
    let run = project.run(&["trust"]).failure(1);
    assert!(
        run.stdout.contains("EXPIRED on 2020-01-02"),
        "{}",
        run.stdout
    );
    snapshot("trust_list_broken_key", &project, &run);
}

#[test]
fn trust_remove_edits_the_manifest_in_place() {
    let project = example();
    let before = project.read("images.toml");
    let run = project
        .run(&[
            "trust",
            "remove",
            "imagelock.example/",
            "--key",
            "37F3026F530A8073",
        ])
        .success();
    snapshot("trust_remove_key", &project, &run);
    assert_eq!(
        project.read("images.toml"),
        before.replace(
            "keys = [\"examples/keys/example-TEST-ONLY.asc\"]",
            "keys = []"
        )
    );
    project.write("images.toml", &before);
    let run = project
        .run(&["trust", "remove", "imagelock.example/"])
        .success();
    snapshot("trust_remove_prefix", &project, &run);
    assert_eq!(
        project.read("images.toml"),
        before.replace(
            "# TEST ONLY: a throwaway key whose secret half was deleted; it proves nothing\n# beyond this demo. Never trust it for real images.\n[trust.\"imagelock.example/\"]\nkeys = [\"examples/keys/example-TEST-ONLY.asc\"]\n\n",
            ""
        )
    );
    assert!(
        project
            .root()
            .join("examples/keys/example-TEST-ONLY.asc")
            .exists(),
        "the key file stays"
    );
}

#[test]
fn trust_remove_errors_say_what_exists() {
    let project = example();
    let before = project.read("images.toml");
    let run = project
        .run(&["trust", "remove", "imagelock.example"])
        .failure(2);
    snapshot("trust_remove_unknown_prefix", &project, &run);
    let run = project
        .run(&[
            "trust",
            "remove",
            "imagelock.example/",
            "--key",
            "0123456789ABCDEF",
        ])
        .failure(2);
    snapshot("trust_remove_unknown_key", &project, &run);
    assert_eq!(
        project.read("images.toml"),
        before,
        "refusals leave the file alone"
    );
}

#[test]
fn update_moves_a_moved_tag_and_dry_run_writes_nothing() {
    let project = example();
    let lock = project.read("images.lock");
    move_the_tag(&project);
    // `lock` keeps fresh pins: the entry did not change.
    let run = project.run(&["lock"]).success();
    assert!(run.stderr.contains("up to date"), "{}", run.stderr);
    let run = project.run(&["update", "--dry-run"]).success();
    snapshot("update_dry_run", &project, &run);
    assert_eq!(
        project.read("images.lock"),
        lock,
        "--dry-run writes nothing"
    );
    let run = project.run(&["update", "hello", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(json["written"], true);
    assert_eq!(json["images"][0]["status"], "updated");
    assert_eq!(json["images"][0]["changes"][0]["field"], "digest");
    assert!(project.read("images.lock") != lock);
    snapshot("update_hello", &project, &run);
    let run = project.run(&["update"]).success();
    snapshot("update_nothing_moved", &project, &run);
    project.run(&["lock", "--check"]).success();
}

#[test]
fn update_errors_name_the_entries() {
    let project = example();
    let run = project.run(&["update", "nope"]).failure(2);
    snapshot("update_unknown", &project, &run);
    // A dependency entry (as appc dependencies are locked) is updated with its root.
    let lock = project.read("images.lock");
    let aci_entry = lock
        .split("[[image]]\nid = \"hello-aci\"")
        .nth(1)
        .expect("entry");
    let dependency = format!(
        "\n[[image]]\nid = \"hello-aci/base\"{}",
        aci_entry.replacen(
            "verified = true\n",
            "verified = true\ndependency-of = \"hello-aci\"\n",
            1
        )
    );
    project.write("images.lock", &format!("{lock}{dependency}"));
    let run = project.run(&["update", "hello-aci/base"]).failure(2);
    snapshot("update_dependency", &project, &run);
}

#[test]
fn diff_against_head_a_revision_and_a_file() {
    let project = example();
    git_repo(&project);
    let run = project.run(&["diff"]).success();
    snapshot("diff_no_changes", &project, &run);
    move_the_tag(&project);
    project.run(&["update"]).success();
    let run = project.run(&["diff"]).success();
    snapshot("diff_moved_tag", &project, &run);
    let json = project.run(&["diff", "--json"]).success();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(value["old"], "HEAD:images.lock");
    assert_eq!(value["images"][0]["status"], "updated");
    assert_eq!(value["images"][1]["status"], "unchanged");
    assert_eq!(
        value["images"][0]["old"]["platforms"]
            .as_object()
            .map(|o| o.len()),
        Some(2)
    );

    // Removing an entry and comparing with a saved file.
    std::fs::copy(
        project.root().join("images.lock"),
        project.root().join("saved.lock"),
    )
    .expect("copy");
    project.run(&["remove", "hello-aci"]).success();
    project.run(&["lock"]).success();
    let run = project.run(&["diff", "saved.lock"]).success();
    snapshot("diff_file_removed", &project, &run);

    // A revision without a lock: everything is new.
    git_ok(&project, &["checkout", "-q", "--orphan", "fresh"]);
    git_ok(&project, &["rm", "-q", "--cached", "-f", "images.lock"]);
    git_ok(&project, &["commit", "-qm", "no lock"]);
    let run = project.run(&["diff"]).success();
    snapshot("diff_revision_without_lock", &project, &run);
}

#[test]
fn diff_errors_say_what_to_compare_with() {
    let project = example();
    let run = project.run(&["diff"]).failure(1);
    snapshot("diff_not_a_repository", &project, &run);
    git_repo(&project);
    let run = project.run(&["diff", "no-such-rev"]).failure(1);
    snapshot("diff_bad_revision", &project, &run);
}

/// A lock conflicted by a real `git merge`: one branch moved the tag and
/// updated, the other changed the entry's platforms.
fn conflicted(project: &Project) {
    git_repo(project);
    git_ok(project, &["checkout", "-q", "-b", "theirs"]);
    let manifest = project.read("images.toml").replace(
        "platforms = [\"linux/amd64\", \"linux/arm64\"]",
        "platforms = [\"linux/arm64\"]",
    );
    project.write("images.toml", &manifest);
    project.run(&["lock"]).success();
    git_ok(project, &["commit", "-qam", "arm64 only"]);
    git_ok(project, &["checkout", "-q", "main"]);
    move_the_tag(project);
    project.run(&["update"]).success();
    git_ok(project, &["commit", "-qam", "moved tag"]);
    let merge = git(project, &["merge", "theirs"]);
    assert!(
        merge.contains("CONFLICT (content): Merge conflict in images.lock"),
        "{merge}"
    );
}

#[test]
fn lock_recovers_a_conflicted_lock_from_gits_stages() {
    let project = example();
    conflicted(&project);
    let run = project.run(&["lock", "--check"]).failure(3);
    snapshot("lock_check_conflicted", &project, &run);
    let run = project.run(&["list"]).failure(1);
    snapshot("list_conflicted", &project, &run);
    let run = project.run(&["lock"]).success();
    snapshot("lock_conflicted_stages", &project, &run);
    let lock = project.read("images.lock");
    assert!(!lock.contains("<<<<<<<"), "{lock}");
    // theirs pinned the entry as it is now (arm64 only); that pin is kept as it was.
    assert!(lock.contains("platform = \"linux/arm64\""), "{lock}");
    assert!(!lock.contains("platform = \"linux/amd64\""), "{lock}");
    project.run(&["lock", "--check"]).success();
}

#[test]
fn lock_recovers_a_conflicted_lock_from_its_markers() {
    let project = example();
    conflicted(&project);
    let text = project.read("images.lock");
    // Without git's merge state, only the text with its markers is left.
    git_ok(&project, &["merge", "--abort"]);
    project.write(
        "images.toml",
        &project.read("images.toml").replace(
            "platforms = [\"linux/amd64\", \"linux/arm64\"]",
            "platforms = [\"linux/arm64\"]",
        ),
    );
    project.write("images.lock", &text);
    let run = project.run(&["lock"]).success();
    snapshot("lock_conflicted_markers", &project, &run);
    let lock = project.read("images.lock");
    assert!(!lock.contains("<<<<<<<"), "{lock}");
    project.run(&["lock", "--check"]).success();
}

#[test]
fn stale_lock_errors_name_entries_and_keys_and_exit_3() {
    let project = example();
    let manifest = project.read("images.toml").replace(
        "platforms = [\"linux/amd64\", \"linux/arm64\"]\ninsecure = true",
        "platforms = [\"linux/amd64\"]",
    );
    project.write(
        "images.toml",
        &format!("{manifest}\n[images.extra]\npath = \"examples/hello:1.0\"\ninsecure = true\n"),
    );
    let run = project.run(&["lock", "--check"]).failure(3);
    snapshot("lock_check_stale", &project, &run);
    let run = project.run(&["sync", "--locked"]).failure(3);
    snapshot("sync_locked_stale", &project, &run);
}

#[test]
fn appc_version_constraints_are_refused_with_the_reason() {
    let project = example();
    project.write(
        "images.toml",
        "[images.etcd]\nname = \"example.com/etcd\"\nlabels = { version = \"3.*\" }\n",
    );
    let run = project.run(&["lock"]).failure(1);
    snapshot("appc_version_constraint", &project, &run);
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    let project = example();
    let run = project
        .run(&["add", "x", "--name", "example.com/x", "--label", "version"])
        .failure(2);
    snapshot("usage_label", &project, &run);
    let run = project
        .run(&["--resolve", "example.com", "list"])
        .failure(2);
    snapshot("usage_resolve", &project, &run);
    let run = project
        .run(&["add", "a b", "--docker", "alpine"])
        .failure(2);
    snapshot("usage_bad_id", &project, &run);
    let run = project.run(&["man", "frobnicate"]).failure(2);
    assert!(
        run.stderr
            .contains("the commands are: init, add, remove, lock, sync"),
        "{}",
        run.stderr
    );
    // The list grows with every new command; the snapshot keeps the shape.
    snapshot_with(
        "usage_man",
        &project,
        &run,
        &[(
            r"the commands are: [a-z, -]+",
            "the commands are: [COMMANDS]",
        )],
    );
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let project = Project::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = project.run(&["completions", shell]).success();
        for word in ["update", "inspect", "diff", "completions", "dry-run"] {
            assert!(run.stdout.contains(word), "{shell} lacks {word}");
        }
        if shell == "bash" {
            let script = project.dir.path().join("imagelock.bash");
            std::fs::write(&script, &run.stdout).expect("write");
            let status = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .status()
                .expect("bash");
            assert!(status.success(), "bash -n rejects the script");
        }
    }
    project.run(&["completions", "tcsh"]).failure(2);
    let run = project.run(&["man"]).success();
    assert!(
        run.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &run.stdout[..80]
    );
    assert!(run.stdout.contains(".TH imagelock 1"), "{}", run.stdout);
    for command in ["update", "diff", "list", "inspect", "trust"] {
        assert!(run.stdout.contains(command), "the page lists {command}");
    }
    let run = project.run(&["man", "update"]).success();
    assert!(
        run.stdout.contains(".TH imagelock-update 1"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\\-\\-dry\\-run"), "{}", run.stdout);
    assert!(
        run.stdout.contains("\\-\\-manifest"),
        "global options are on each page"
    );
    let help = project.run(&["update", "--help"]).success();
    assert!(
        help.stdout.contains("Examples:\n  imagelock update"),
        "{}",
        help.stdout
    );
}

/// A tag moved in a real registry: `lock` keeps the pin, `update` moves it,
/// `diff` says so.
#[test]
fn update_follows_a_tag_moved_in_a_registry() {
    if !(peer("docker-registry") && peer("skopeo")) {
        return;
    }
    let project = Project::new();
    let registry = Registry::start(RegistryOptions::default());
    let host = registry.host();
    let mut layout = LayoutBuilder::new(&project.dir.path().join("layout"));
    let one = layout.image("linux", "amd64", &[layout.layer(&[("v", b"1")])]);
    layout.tag("one", &one);
    let two = layout.image("linux", "amd64", &[layout.layer(&[("v", b"2")])]);
    layout.tag("two", &two);
    skopeo_push(&layout.dir, "one", &format!("{host}/team/app:stable"), &[]);
    project.write(
        "images.toml",
        &format!(
            "[registries.\"{host}\"]\ninsecure-http = true\n\n[images.app]\ndocker = \"{host}/team/app:stable\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
        ),
    );
    project.run(&["lock"]).success();
    git_repo(&project);
    skopeo_push(&layout.dir, "two", &format!("{host}/team/app:stable"), &[]);
    let run = project.run(&["lock"]).success();
    assert!(run.stderr.contains("up to date"), "{}", run.stderr);
    let run = project.run(&["update", "app"]).success();
    snapshot("update_registry_moved_tag", &project, &run);
    let run = project.run(&["diff"]).success();
    snapshot("diff_registry_moved_tag", &project, &run);
    let run = project.run(&["list"]).success();
    snapshot("list_registry", &project, &run);
}
