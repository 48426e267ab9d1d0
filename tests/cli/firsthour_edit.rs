//! The first hour of a new user (issue 16), editing the project: `add` and `trust add`
//! after `init` keep the template on top; `add --insecure-http` and `trust add
//! --lookaside`; commands run from a subdirectory; `gc` after `remove`; `add` and `remove`
//! lock unless told not to; the `#:schema` file `init` writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::everyday::snapshot;
use crate::harness::{
    LayoutBuilder, Project, Registry, RegistryOptions, Run, example, free_port, peer, skopeo_push,
};

/// Runs the binary as [`Project::run`] does, but in `dir`.
fn run_in(project: &Project, dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagelock"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    for (k, v) in &project.env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run imagelock"))
}

/// Snapshots a file's text.
#[track_caller]
fn snapshot_file(name: &str, text: &str) {
    crate::harness::assert_snapshot_filtered(name, text, &[]);
}

/// The bundled example (two-platform layout, signed ACI, TEST-ONLY key) with its
/// manifest replaced by `init`'s template and no lock.
fn fresh_example() -> Project {
    let project = example();
    std::fs::remove_file(project.root().join("images.lock")).expect("rm lock");
    project.run(&["init", "--force"]).success();
    project
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("read")
}

/// Point 1: after `init`, `add`, `trust add` and `add --insecure-http` leave the template
/// (and its `#:schema` line) on top and put each table where the template shows it.
#[test]
fn edits_after_init_keep_the_template_on_top() {
    let project = fresh_example();
    let template = project.read("images.toml");
    project
        .run(&[
            "add",
            "hello",
            "--path",
            "examples/hello:1.0",
            "--platform",
            "linux/amd64",
            "--insecure",
        ])
        .success();
    project
        .run(&[
            "trust",
            "add",
            "imagelock.example/",
            "--key",
            "examples/keys/example-TEST-ONLY.asc",
        ])
        .success();
    project
        .run(&["add", "hello-aci", "--path", "examples/hello.aci"])
        .success();
    let run = project
        .run(&[
            "add",
            "app",
            "--docker",
            "registry.internal:5000/acme/app:1.0",
            "--insecure-http",
            "--insecure",
            "--no-lock",
        ])
        .success();
    snapshot("firsthour_add_insecure_http", &project, &run);
    let text = project.read("images.toml");
    assert!(text.starts_with(&template), "{text}");
    assert_eq!(
        text.lines().next(),
        Some("#:schema ./.imagelock/images.schema.json")
    );
    snapshot_file("firsthour_edits_after_init", &text);
}

/// Point 2: `add --insecure-http` writes the registry table and the lock reaches it over
/// plain HTTP; without it, the plain-HTTP answer names the flag, and the edit is kept.
#[test]
fn add_insecure_http_writes_the_registry_table() {
    if !(peer("docker-registry") && peer("skopeo")) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let host = registry.host();
    let project = Project::new();
    let layout = project.dir.path().join("layout");
    let mut builder = LayoutBuilder::new(&layout);
    let layer = builder.layer(&[("app", b"1")]);
    let image = builder.image("linux", "amd64", &[layer]);
    builder.tag("v1", &image);
    skopeo_push(&layout, "v1", &format!("{host}/acme/app:v1"), &[]);
    project.run(&["init"]).success();
    let reference = format!("{host}/acme/app:v1");

    let run = project
        .run(&["add", "plain", "--docker", &reference, "--insecure"])
        .failure(1);
    snapshot("firsthour_add_plain_http_unlisted", &project, &run);
    let template = project.read("images.toml");
    assert!(template.contains("[images.plain]"));
    assert!(!project.root().join("images.lock").exists());
    project.run(&["remove", "plain", "--no-lock"]).success();
    assert!(
        project
            .read("images.toml")
            .starts_with("#:schema ./.imagelock/images.schema.json\n"),
        "removing what was added keeps the template"
    );

    let run = project
        .run(&[
            "add",
            "app",
            "--docker",
            &reference,
            "--insecure-http",
            "--insecure",
            "--platform",
            "linux/amd64",
        ])
        .success();
    assert!(run.stderr.contains("Locked 1 image"), "{}", run.stderr);
    assert!(
        project.read("images.toml").contains(&format!(
            "\n[registries.\"{host}\"]\ninsecure-http = true\n\n[images.app]\n"
        )),
        "{}",
        project.read("images.toml")
    );
    assert!(
        project
            .read("images.lock")
            .contains(&format!("registry = \"http://{host}\"")),
        "{}",
        project.read("images.lock")
    );
    // A second image from the same registry leaves the table as it is.
    let before = project.read("images.toml");
    project
        .run(&[
            "add",
            "again",
            "--docker",
            &reference,
            "--insecure-http",
            "--insecure",
            "--platform",
            "linux/amd64",
        ])
        .success();
    assert_eq!(
        project
            .read("images.toml")
            .matches("\n[registries.")
            .count(),
        1,
        "{before}"
    );
    // A local layout has no host to reach over HTTP.
    project
        .run(&["add", "x", "--path", "layout:v1", "--insecure-http"])
        .failure(2);
}

/// Point 2: `lock`'s hint for a signed-only prefix without a lookaside names
/// `trust add --lookaside`, which sets it.
#[test]
fn trust_add_lookaside_is_what_lock_asks_for() {
    if !(peer("docker-registry") && peer("skopeo")) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let host = registry.host();
    let project = example();
    let layout = project.dir.path().join("layout");
    let mut builder = LayoutBuilder::new(&layout);
    let layer = builder.layer(&[("app", b"1")]);
    let image = builder.image("linux", "amd64", &[layer]);
    builder.tag("v1", &image);
    skopeo_push(&layout, "v1", &format!("{host}/acme/app:v1"), &[]);
    project.write(
        "images.toml",
        &format!(
            "[registries.\"{host}\"]\ninsecure-http = true\n\n[trust.\"{host}/acme/\"]\nkeys = [\"examples/keys/example-TEST-ONLY.asc\"]  # release key\n\n[images.app]\ndocker = \"{host}/acme/app:v1\"\nplatforms = [\"linux/amd64\"]\n"
        ),
    );
    let run = project.run(&["lock"]).failure(1);
    let asked = format!("`imagelock trust add {host}/acme/ --lookaside https://...`");
    assert!(run.stderr.contains(&asked), "{}", run.stderr);

    let before = project.read("images.toml");
    let prefix = format!("{host}/acme/");
    let add_lookaside = || {
        project
            .run(&[
                "trust",
                "add",
                &prefix,
                "--lookaside",
                "https://sigs.example.com/sigstore",
            ])
            .success()
    };
    let run = add_lookaside();
    snapshot("firsthour_trust_add_lookaside", &project, &run);
    assert_eq!(
        project.read("images.toml"),
        before.replace(
            "  # release key\n",
            "  # release key\nlookaside = \"https://sigs.example.com/sigstore\"\n"
        )
    );
    let run = add_lookaside();
    assert!(
        run.stderr.contains("Already set: lookaside"),
        "{}",
        run.stderr
    );
    let run = project
        .run(&["trust", "add", &prefix, "--lookaside", "sigs.example.com"])
        .failure(2);
    assert!(
        run.stderr.contains("is not a lookaside URL"),
        "{}",
        run.stderr
    );
}

/// Point 8: from a subdirectory, commands use the nearest images.toml above (said with
/// `-v`), its paths stay relative to it; `init` still writes in the current directory.
#[test]
fn commands_find_the_manifest_in_a_parent_directory() {
    let project = example();
    let deeper: PathBuf = project.root().join("sub/deeper");
    std::fs::create_dir_all(&deeper).expect("mkdir");
    let run = run_in(&project, &deeper, &["list"]).success();
    assert!(run.stdout.contains("hello-aci"), "{}", run.stdout);
    assert!(!run.stderr.contains("Using"), "{}", run.stderr);
    let run = run_in(&project, &deeper, &["-v", "sync"]).success();
    assert!(
        run.stderr.contains(&format!(
            "Using {} (the nearest images.toml above {})",
            project.root().join("images.toml").display(),
            deeper.display()
        )),
        "{}",
        run.stderr
    );
    // `[store] path` and `path = "examples/..."` are relative to images.toml.
    assert!(project.root().join(".imagelock/store/index.json").is_file());
    assert!(!deeper.join(".imagelock").exists());
    run_in(&project, &deeper, &["verify"]).success();

    // `init` writes here, and from then on this one is the nearest.
    let run = run_in(&project, &deeper, &["init"]).success();
    assert!(run.stderr.contains("Created images.toml"), "{}", run.stderr);
    assert!(deeper.join("images.toml").is_file());
    let run = run_in(&project, &deeper, &["list"]).failure(1);
    assert!(
        run.stderr.contains("no lock file at images.lock"),
        "{}",
        run.stderr
    );
    // `--manifest` still wins.
    run_in(
        &project,
        &deeper,
        &["--manifest", "../../images.toml", "list"],
    )
    .success();
}

/// Point 9: `gc` after `remove` (which locks) frees what the lock no longer pins; the
/// root follows the lock without another `sync`.
#[test]
fn gc_after_remove_frees_what_the_lock_no_longer_pins() {
    let project = example();
    project.run(&["sync"]).success();
    let aci = "sha512:4f63a29dca339ee06b4dd5c09f7a608d72304d322657cb74f81c0264e9a062b89f81fe0ca7001242769a8d173a381315a4668db6b592a46716f58ffbbf4a06ce";
    assert!(project.read("images.lock").contains(aci));
    let freed = |run: &Run| -> Vec<String> {
        let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        json["removed"]["blobs"]
            .as_array()
            .expect("blobs")
            .iter()
            .map(|b| b[0].as_str().expect("digest").to_owned())
            .collect()
    };
    let run = project.run(&["gc", "--dry-run", "--json"]).success();
    assert_eq!(freed(&run), Vec::<String>::new());

    project.run(&["remove", "hello-aci"]).success();
    assert!(!project.read("images.lock").contains("hello-aci"));
    let run = project.run(&["gc", "--json"]).success();
    let freed = freed(&run);
    assert!(freed.iter().any(|d| d == aci), "{freed:?}");
    assert_eq!(freed.len(), 2, "the ACI and its signature: {freed:?}");
    // What the lock still pins stays.
    project.run(&["sync", "--frozen", "--offline"]).success();
    project.run(&["verify"]).success();
}

/// Point 12: `add` and `remove` lock by default; `--no-lock` opts out; `--lock` is still
/// accepted; a lock that cannot be made keeps the edit and says what to run.
#[test]
fn add_and_remove_lock_unless_told_not_to() {
    let project = example();
    let run = project
        .run(&[
            "add",
            "later",
            "--path",
            "examples/hello:1.0",
            "--platform",
            "linux/amd64",
            "--insecure",
        ])
        .success();
    snapshot("firsthour_add_locks", &project, &run);
    assert!(project.read("images.lock").contains("id = \"later\""));

    let lock = project.read("images.lock");
    let run = project
        .run(&[
            "add",
            "more",
            "--path",
            "examples/hello:1.0",
            "--insecure",
            "--no-lock",
        ])
        .success();
    assert!(
        run.stderr.contains("Run `imagelock lock` to pin it."),
        "{}",
        run.stderr
    );
    assert_eq!(project.read("images.lock"), lock);
    project.run(&["remove", "more", "--no-lock"]).success();
    assert_eq!(project.read("images.lock"), lock);
    project
        .run(&[
            "add",
            "x",
            "--path",
            "examples/hello:1.0",
            "--insecure",
            "--lock",
        ])
        .success();
    assert!(project.read("images.lock").contains("id = \"x\""));
    project
        .run(&[
            "add",
            "y",
            "--path",
            "examples/hello:1.0",
            "--lock",
            "--no-lock",
        ])
        .failure(2);
    let help = project.run(&["add", "--help"]).success();
    assert!(help.stdout.contains("--no-lock"), "{}", help.stdout);
    assert!(!help.stdout.contains("--lock "), "{}", help.stdout);

    let run = project.run(&["remove", "later", "x"]).success();
    snapshot("firsthour_remove_locks", &project, &run);
    let lock = project.read("images.lock");
    assert!(!lock.contains("id = \"later\"") && !lock.contains("id = \"x\""));

    // Nothing listens there: the entry stays in images.toml, the lock as it was.
    let port = free_port();
    let reference = format!("127.0.0.1:{port}/acme/app:v1");
    let run = project
        .run(&[
            "add",
            "down",
            "--docker",
            &reference,
            "--insecure-http",
            "--insecure",
        ])
        .failure(1);
    assert!(
        run.stderr.starts_with(&format!("Added `down` (docker {reference}) to images.toml, with [registries.\"127.0.0.1:{port}\"] insecure-http = true\n")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "error: images.toml keeps the new entry `down`, but images.lock was not updated\n"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Caused by: cannot lock image `down`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "hint: once the cause above is fixed, run `imagelock lock` (`imagelock remove down --no-lock` undoes the edit)"
        ),
        "{}",
        run.stderr
    );
    assert!(project.read("images.toml").contains("[images.down]"));
    assert_eq!(project.read("images.lock"), lock);
}

/// Point 13: `init` writes the manifest's JSON Schema where its `#:schema` line points
/// (what `imagelock schema` prints, and schema/ in this repository holds); `lock` writes
/// it again when it is missing.
#[test]
fn init_writes_the_schema_its_first_line_names() {
    let project = fresh_example();
    let text = project.read("images.toml");
    assert_eq!(
        text.lines().next(),
        Some("#:schema ./.imagelock/images.schema.json")
    );
    let written = project.read(".imagelock/images.schema.json");
    assert_eq!(written, repo_file("schema/images.schema.json"));
    let run = project.run(&["schema"]).success();
    assert_eq!(run.stdout, written);
    let run = project.run(&["schema", "lock"]).success();
    assert_eq!(run.stdout, repo_file("schema/images.lock.schema.json"));

    std::fs::remove_dir_all(project.root().join(".imagelock")).expect("rm");
    project
        .run(&["add", "hello", "--path", "examples/hello:1.0", "--insecure"])
        .success();
    assert_eq!(project.read(".imagelock/images.schema.json"), written);
}
