//! Version policies (`semver`, `tag-pattern`) against a real `docker-registry`
//! with tags pushed by real `skopeo`: which tag `lock` picks, that it stays
//! until `update`, what `outdated` shows (insta snapshots), paging through the
//! tag list, a policy no tag matches, and `add --semver`.

use std::path::PathBuf;

use crate::harness::{LayoutBuilder, Project, Registry, RegistryOptions, Run, peer, skopeo_push};

fn peers() -> bool {
    peer("docker-registry") && peer("skopeo")
}

/// The tags the issue names: releases out of string order, a pre-release, `latest`
/// and a tag that is no version.
const TAGS: &[&str] = &[
    "1.2.0",
    "1.3.0",
    "1.10.0",
    "2.0.0",
    "1.11.0-rc.1",
    "latest",
    "nightly",
];

/// A layout with one distinct single-platform image per name in `TAGS` and `1.11.0`.
fn fixtures(project: &Project) -> PathBuf {
    let dir = project.dir.path().join("fixtures");
    let mut layout = LayoutBuilder::new(&dir);
    for tag in TAGS.iter().chain(&["1.11.0"]) {
        let layer = layout.layer(&[("version", tag.as_bytes())]);
        let image = layout.image("linux", "amd64", &[layer]);
        layout.tag(tag, &image);
    }
    dir
}

/// A project, a registry with `TAGS` pushed to `test/app`, and the fixture layout.
fn setup() -> (Project, Registry, PathBuf) {
    let project = Project::new();
    let registry = Registry::start(RegistryOptions::default());
    let layout = fixtures(&project);
    for tag in TAGS {
        push(&layout, &registry, tag);
    }
    (project, registry, layout)
}

fn push(layout: &std::path::Path, registry: &Registry, tag: &str) {
    skopeo_push(
        layout,
        tag,
        &format!("{}/test/app:{tag}", registry.host()),
        &[],
    );
}

/// images.toml with plain HTTP to the registry and `entries`, `{host}` filled in.
fn write_manifest(project: &Project, registry: &Registry, entries: &str) {
    let host = registry.host();
    project.write(
        "images.toml",
        &format!(
            "[registries.\"{host}\"]\ninsecure-http = true\n\n{}",
            entries.replace("{host}", &host)
        ),
    );
}

/// The value of `key = "…"` in the lock entry `id`.
fn locked(project: &Project, id: &str, key: &str) -> Option<String> {
    let lock = project.read("images.lock");
    let entry = lock
        .split("[[image]]")
        .find(|e| e.contains(&format!("id = \"{id}\"")))?
        .to_owned();
    let line = entry
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))?;
    Some(line.split_once(" = ")?.1.trim_matches('"').to_owned())
}

/// Snapshots `run` (exit code, stdout, stderr) with the registry's port filtered out.
#[track_caller]
fn snapshot(name: &str, run: &Run) {
    let filters: Vec<(String, &str)> = vec![
        (r"127\.0\.0\.1:\d+".into(), "[REGISTRY]"),
        (r"sha256:[0-9a-f]{64}".into(), "sha256:[DIGEST]"),
        (r"sha256:[0-9a-f]{12}\b".into(), "sha256:[SHORT12HEX]"),
        (r"\b\d+(\.\d+)?m?s\b".into(), "[TIME]"),
    ];
    crate::harness::assert_snapshot_filtered(name, &crate::harness::run_text(run), &filters);
}

#[test]
fn semver_pins_the_newest_release_until_update() {
    if !peers() {
        return;
    }
    let (project, registry, layout) = setup();
    write_manifest(
        &project,
        &registry,
        "[images.app]\ndocker = \"{host}/test/app\"\nsemver = \"^1.2\"\ninsecure = true\n\n\
         [images.fixed]\ndocker = \"{host}/test/app:latest\"\ninsecure = true\n",
    );
    project.run(&["lock"]).success();
    // Not 1.3.0 (string order) and not the pre-release 1.11.0-rc.1.
    assert_eq!(locked(&project, "app", "tag").as_deref(), Some("1.10.0"));
    assert_eq!(
        locked(&project, "app", "policy").as_deref(),
        Some("semver ^1.2")
    );
    assert_eq!(
        locked(&project, "app", "reference"),
        Some(format!("{}/test/app:1.10.0", registry.host()))
    );
    assert_eq!(
        locked(&project, "app", "request"),
        Some(format!("{}/test/app", registry.host()))
    );
    assert_eq!(locked(&project, "fixed", "tag"), None);
    let list = project.run(&["list"]).success();
    assert!(
        list.stdout.contains("1.10.0 (semver ^1.2)"),
        "{}",
        list.stdout
    );
    let inspect = project.run(&["inspect", "app"]).success();
    assert!(
        inspect.stdout.contains("  policy       semver ^1.2"),
        "{}",
        inspect.stdout
    );

    // A newer matching release appears, and `latest` moves: the lock keeps its pins.
    push(&layout, &registry, "1.11.0");
    skopeo_push(
        &layout,
        "1.11.0",
        &format!("{}/test/app:latest", registry.host()),
        &[],
    );
    let before = project.read("images.lock");
    let run = project.run(&["lock"]).success();
    assert!(run.stderr.contains("is up to date"), "{}", run.stderr);
    assert_eq!(project.read("images.lock"), before);
    snapshot("outdated", &project.run(&["outdated"]).success());
    let json = project.run(&["outdated", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let app = &report["images"][0];
    assert_eq!(app["id"], "app");
    assert_eq!(app["pinned"], "1.10.0");
    assert_eq!(app["allowed"], "1.11.0");
    assert_eq!(app["latest"], "2.0.0");
    assert_eq!(report["images"][1]["digest_moved"], true);
    assert_eq!(
        project.read("images.lock"),
        before,
        "outdated writes nothing"
    );

    // `update` moves the named entry to the newest matching tag.
    let run = project.run(&["update", "app"]).success();
    assert!(
        run.stderr.contains("version: 1.10.0 → 1.11.0"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("digest: sha256:"), "{}", run.stderr);
    assert_eq!(locked(&project, "app", "tag").as_deref(), Some("1.11.0"));
    project.write("old.lock", &before);
    let diff = project.run(&["diff", "old.lock"]).success();
    assert!(
        diff.stdout.contains(
            "~ app  [REGISTRY]/test/app:1.11.0 (semver ^1.2)\n    version: 1.10.0 → 1.11.0"
                .replace("[REGISTRY]", &registry.host())
                .as_str()
        ),
        "{}",
        diff.stdout
    );

    // Changing the policy makes the entry stale; `lock` resolves it again.
    let manifest = project.read("images.toml").replace("^1.2", "~1.3");
    project.write("images.toml", &manifest);
    let run = project.run(&["lock", "--check"]).failure(3);
    assert!(run.stderr.contains("app"), "{}", run.stderr);
    project.run(&["lock"]).success();
    assert_eq!(locked(&project, "app", "tag").as_deref(), Some("1.3.0"));
    assert_eq!(
        locked(&project, "app", "policy").as_deref(),
        Some("semver ~1.3")
    );
}

#[test]
fn a_tag_pattern_is_searched_as_written_and_ranked_by_version() {
    if !peers() {
        return;
    }
    let (project, registry, _layout) = setup();
    write_manifest(
        &project,
        &registry,
        "[images.app]\ndocker = \"{host}/test/app\"\ntag-pattern = '^1\\.\\d+\\.0$'\ninsecure = true\n\n\
         [images.words]\ndocker = \"{host}/test/app\"\ntag-pattern = '^(latest|nightly)$'\ninsecure = true\n",
    );
    project.run(&["lock"]).success();
    assert_eq!(locked(&project, "app", "tag").as_deref(), Some("1.10.0"));
    // No allowed tag is a version: the one the registry lists last.
    assert_eq!(locked(&project, "words", "tag").as_deref(), Some("nightly"));
    assert_eq!(
        locked(&project, "app", "policy").as_deref(),
        // TOML's basic string escapes the backslashes.
        Some(r"tag-pattern ^1\\.\\d+\\.0$")
    );
}

#[test]
fn the_tag_list_is_read_page_by_page() {
    if !peers() {
        return;
    }
    let (mut project, registry, _layout) = setup();
    // Two tags a page: 2.0.0 is on the third page of the registry's (lexical) list.
    project
        .env
        .insert("IMAGELOCK_TAGS_PAGE_SIZE".into(), "2".into());
    write_manifest(
        &project,
        &registry,
        "[images.app]\ndocker = \"{host}/test/app\"\nsemver = \"^2\"\ninsecure = true\n",
    );
    project.run(&["lock"]).success();
    assert_eq!(locked(&project, "app", "tag").as_deref(), Some("2.0.0"));
}

#[test]
fn no_matching_tag_names_the_nearest() {
    if !peers() {
        return;
    }
    let (project, registry, _layout) = setup();
    write_manifest(
        &project,
        &registry,
        "[images.app]\ndocker = \"{host}/test/app\"\nsemver = \"^3\"\ninsecure = true\n",
    );
    snapshot("no_matching_tag", &project.run(&["lock"]).failure(1));
    assert!(!project.root().join("images.lock").exists());

    write_manifest(
        &project,
        &registry,
        "[images.app]\ndocker = \"{host}/test/none\"\nsemver = \"^1\"\ninsecure = true\n",
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("cannot list the repository's tags"),
        "{}",
        run.stderr
    );
}

#[test]
fn add_semver_writes_the_entry_and_refuses_a_tag() {
    if !peers() {
        return;
    }
    let (project, registry, _layout) = setup();
    write_manifest(&project, &registry, "");
    let host = registry.host();
    project
        .run(&[
            "add",
            "app",
            "--docker",
            &format!("{host}/test/app"),
            "--semver",
            "^1.2",
            "--insecure",
            "--lock",
        ])
        .success();
    let manifest = project.read("images.toml");
    assert!(
        manifest.contains(&format!(
            "[images.app]\ndocker = \"{host}/test/app\"\nsemver = \"^1.2\"\ninsecure = true\n"
        )),
        "{manifest}"
    );
    assert_eq!(locked(&project, "app", "tag").as_deref(), Some("1.10.0"));

    project
        .run(&[
            "add",
            "base",
            "--docker",
            &format!("{host}/test/app"),
            "--tag-pattern",
            r"^1\.3\.\d+$",
            "--insecure",
        ])
        .success();
    assert!(
        project
            .read("images.toml")
            .contains(r"tag-pattern = '^1\.3\.\d+$'"),
        "{}",
        project.read("images.toml")
    );

    let run = project
        .run(&[
            "add",
            "pinned",
            "--docker",
            &format!("{host}/test/app:1.2.0"),
            "--semver",
            "^1",
            "--insecure",
        ])
        .failure(1);
    assert!(
        run.stderr.contains("names a tag or digest"),
        "{}",
        run.stderr
    );
    assert!(!project.read("images.toml").contains("[images.pinned]"));
}

/// The closing note's number: how long `lock` takes for 100 policy entries against
/// the test registry. `cargo test --test cli versions::lock_time -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn lock_time_for_100_policy_entries() {
    if !peers() {
        return;
    }
    let (project, registry, _layout) = setup();
    let entries: String = (0..100)
        .map(|n| {
            format!(
                "[images.app{n}]\ndocker = \"{{host}}/test/app\"\nsemver = \"^1.{}\"\ninsecure = true\n\n",
                n % 4
            )
        })
        .collect();
    write_manifest(&project, &registry, &entries);
    let started = std::time::Instant::now();
    project.run(&["lock"]).success();
    let cold = started.elapsed();
    let started = std::time::Instant::now();
    project.run(&["update"]).success();
    let update = started.elapsed();
    let started = std::time::Instant::now();
    project.run(&["lock"]).success();
    let fresh = started.elapsed();
    eprintln!(
        "lock, 100 semver entries: {cold:.2?}; update (all re-resolved): {update:.2?}; lock when fresh: {fresh:.2?}"
    );
}
