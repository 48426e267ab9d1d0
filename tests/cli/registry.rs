//! Against a real `docker-registry serve`, with images pushed by real `skopeo`.

use std::process::Command;

use crate::harness::{LayoutBuilder, Project, Registry, RegistryOptions, peer, skopeo_push};

fn peers() -> bool {
    peer("docker-registry") && peer("skopeo")
}

/// A layout with a single-platform image `single`, a 3-platform index `multi`
/// (amd64, arm64/v8, an attestation-style unknown/unknown) and `other`.
fn fixtures(project: &Project) -> std::path::PathBuf {
    let dir = project.dir.path().join("fixtures");
    let mut layout = LayoutBuilder::new(&dir);
    let base = layout.layer(&[("etc/os-release", b"ID=test\n")]);
    let app = layout.layer(&[("app/bin", &[7u8; 4096][..])]);
    let single = layout.image("linux", "amd64", &[base.clone(), app.clone()]);
    layout.tag("single", &single);
    let amd = layout.image("linux", "amd64", std::slice::from_ref(&base));
    let mut arm = layout.image("linux", "arm64", &[base.clone(), app]);
    arm["platform"]["variant"] = "v8".into();
    let mut unknown = layout.image("unknown", "unknown", std::slice::from_ref(&base));
    unknown["platform"] = serde_json::json!({"os": "unknown", "architecture": "unknown"});
    let index = layout.index(&[amd, arm, unknown]);
    layout.tag("multi", &index);
    let other = layout.image("linux", "amd64", &[layout.layer(&[("other", b"2")])]);
    layout.tag("other", &other);
    dir
}

/// A project, a fresh registry, the fixture layout and the registry's host:port.
fn setup(options: RegistryOptions) -> (Project, Registry, std::path::PathBuf, String) {
    let project = Project::new();
    let registry = Registry::start(options);
    let layout = fixtures(&project);
    let host = registry.host();
    (project, registry, layout, host)
}

fn manifest(registry: &Registry, images: &str) -> String {
    format!(
        "[registries.\"{}\"]\ninsecure-http = true\n\n{images}",
        registry.host()
    )
}

#[test]
fn lock_and_sync_from_a_registry_then_offline() {
    if !peers() {
        return;
    }
    let (project, mut registry, layout, host) = setup(RegistryOptions::default());
    skopeo_push(&layout, "single", &format!("{host}/test/big:v1"), &[]);

    project.run(&["init"]).success();
    let init = project.read("images.toml");
    project.write(
        "images.toml",
        &format!("{init}\n{}", manifest(&registry, "")),
    );
    let run = project
        .run(&[
            "add",
            "big",
            "--docker",
            &format!("{host}/test/big:v1"),
            "--platform",
            "linux/amd64",
            "--insecure",
        ])
        .success();
    // `add` locks, as `uv add` does.
    assert!(run.stderr.contains("Locked 1 image"), "{}", run.stderr);
    let run = project.run(&["lock"]).success();
    assert!(run.stderr.contains("is up to date"), "{}", run.stderr);
    let lock = project.read("images.lock");
    assert!(
        lock.contains(&format!("registry = \"http://{host}\"")),
        "{lock}"
    );
    assert!(
        lock.contains(&format!("reference = \"{host}/test/big:v1\"")),
        "{lock}"
    );
    assert!(
        lock.contains("media-type = \"application/vnd.oci.image.manifest.v1+json\""),
        "{lock}"
    );
    assert_eq!(
        lock.matches("application/vnd.oci.image.layer.v1.tar+gzip")
            .count(),
        2,
        "{lock}"
    );

    let run = project.run(&["sync", "--json"]).success();
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(
        summary["fetch"], 4,
        "manifest, config, two layers: {summary}"
    );
    let store = project.store();
    assert_eq!(project.assert_store_valid(&store), 4);

    // The store is an OCI layout skopeo reads as it is.
    let out = Command::new("skopeo")
        .args([
            "inspect",
            &format!("oci:{}:{host}/test/big:v1", store.display()),
        ])
        .output()
        .expect("skopeo inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let digest = lock
        .split("[[image.manifest]]")
        .nth(1)
        .expect("manifest")
        .split("digest = \"")
        .nth(1)
        .expect("d")
        .split('"')
        .next()
        .expect("d");
    assert_eq!(inspected["Digest"], digest);

    // Nothing to do: no network needed at all.
    registry.stop();
    let run = project.run(&["sync"]).success();
    assert!(
        run.stderr.contains("all 4 blobs already in the store"),
        "{}",
        run.stderr
    );
    project.run(&["sync", "--frozen", "--offline"]).success();
    let fresh_store = project.dir.path().join("fresh-store");
    let run = project
        .run(&[
            "sync",
            "--offline",
            "--store",
            fresh_store.to_str().expect("utf8"),
        ])
        .failure(1);
    assert!(
        run.stderr
            .contains("--offline: 4 blobs needed by the lock are not in the store"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("for big"), "{}", run.stderr);
}

#[test]
fn multi_platform_index_pins_each_platform_and_skips_attestations() {
    if !peers() {
        return;
    }
    let (project, registry, layout, host) = setup(RegistryOptions::default());
    skopeo_push(
        &layout,
        "multi",
        &format!("{host}/test/multi:all"),
        &["--all"],
    );
    project.write(
        "images.toml",
        &manifest(
            &registry,
            &format!("[images.multi]\ndocker = \"{host}/test/multi:all\"\nplatforms = [\"linux/amd64\", \"linux/aarch64\"]\ninsecure = true\n"),
        ),
    );
    project.run(&["lock"]).success();
    let lock = project.read("images.lock");
    assert!(lock.contains("index = { digest = \"sha256:"), "{lock}");
    assert!(
        lock.contains("platform = \"linux/amd64\"")
            && lock.contains("platform = \"linux/arm64/v8\""),
        "{lock}"
    );
    assert!(!lock.contains("unknown"), "{lock}");
    let run = project.run(&["sync", "--json"]).success();
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    // index + 2 manifests + 2 configs + 2 distinct layers
    assert_eq!(summary["fetch"], 7, "{summary}");
    let store = project.store();
    assert_eq!(project.assert_store_valid(&store), 7);
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--override-arch",
            "arm64",
            &format!("oci:{}:{host}/test/multi:all", store.display()),
        ])
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    project.write(
        "images.toml",
        &manifest(&registry, &format!("[images.multi]\ndocker = \"{host}/test/multi:all\"\nplatforms = [\"linux/s390x\"]\ninsecure = true\n")),
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("no manifest for platform linux/s390x"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("linux/amd64, linux/arm64/v8"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cannot lock image `multi`"),
        "{}",
        run.stderr
    );
}

#[test]
fn docker_schema2_images_lock_and_sync() {
    if !peers() {
        return;
    }
    let (project, registry, layout, host) = setup(RegistryOptions::default());
    skopeo_push(
        &layout,
        "single",
        &format!("{host}/test/docker:v2"),
        &["--format", "v2s2"],
    );
    project.write(
        "images.toml",
        &manifest(
            &registry,
            &format!("[images.d]\ndocker = \"{host}/test/docker:v2\"\ninsecure = true\n"),
        ),
    );
    project.run(&["lock"]).success();
    let lock = project.read("images.lock");
    assert!(
        lock.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{lock}"
    );
    assert!(
        lock.contains("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{lock}"
    );
    project.run(&["sync"]).success();
    assert_eq!(project.assert_store_valid(&project.store()), 4);
}

#[test]
fn lock_is_identical_whatever_the_entry_order() {
    if !peers() {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let first = Project::new();
    let layout = fixtures(&first);
    let host = registry.host();
    skopeo_push(&layout, "single", &format!("{host}/test/a:1"), &[]);
    skopeo_push(&layout, "other", &format!("{host}/test/b:1"), &[]);
    let a = format!("[images.a]\ndocker = \"{host}/test/a:1\"\ninsecure = true\n");
    let b = format!("# b first\n[images.b]\ndocker = \"{host}/test/b:1\"\ninsecure   = true\n");
    first.write("images.toml", &manifest(&registry, &format!("{a}\n{b}")));
    let second = Project::new();
    second.write("images.toml", &manifest(&registry, &format!("{b}\n{a}")));
    first.run(&["lock"]).success();
    second.run(&["lock"]).success();
    assert_eq!(first.read("images.lock"), second.read("images.lock"));
    // Adding an entry resolves only that one and keeps the rest byte for byte.
    let lock_a_only = {
        let p = Project::new();
        p.write("images.toml", &manifest(&registry, &a));
        p.run(&["lock"]).success();
        p.read("images.lock")
    };
    let p = Project::new();
    p.write("images.toml", &manifest(&registry, &a));
    p.run(&["lock"]).success();
    assert_eq!(p.read("images.lock"), lock_a_only);
    p.write("images.toml", &manifest(&registry, &format!("{a}\n{b}")));
    let run = p.run(&["lock", "-v"]).success();
    assert!(run.stderr.contains("(added: b)"), "{}", run.stderr);
    assert_eq!(p.read("images.lock"), first.read("images.lock"));
}

#[test]
fn basic_auth_uses_docker_config_credentials() {
    if !(peers() && peer("htpasswd")) {
        return;
    }
    let (project, registry, layout, host) = setup(RegistryOptions {
        users: vec![("alice", "s3cret")],
        ..RegistryOptions::default()
    });
    skopeo_push(
        &layout,
        "single",
        &format!("{host}/team/app:1"),
        &["--dest-creds", "alice:s3cret"],
    );
    project.write(
        "images.toml",
        &manifest(
            &registry,
            &format!("[images.app]\ndocker = \"{host}/team/app:1\"\ninsecure = true\n"),
        ),
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr
            .contains(&format!("{host} requires authentication")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("config.json") && run.stderr.contains(&format!("skopeo login {host}")),
        "{}",
        run.stderr
    );

    // Wrong password: refused, and the message says so.
    let docker_config = std::path::PathBuf::from(&project.env["DOCKER_CONFIG"]);
    std::fs::create_dir_all(&docker_config).expect("mkdir");
    let write_auth = |user_pass: &str| {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
        std::fs::write(
            docker_config.join("config.json"),
            format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
        )
        .expect("write");
    };
    write_auth("alice:wrong");
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("refused the credentials"),
        "{}",
        run.stderr
    );
    write_auth("alice:s3cret");
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();
    assert_eq!(project.assert_store_valid(&project.store()), 4);
}

#[test]
fn https_registry_trusted_through_the_ca_option() {
    if !(peers() && peer("openssl")) {
        return;
    }
    let project = Project::new();
    let certs = crate::peers::Certs::generate(&project.dir.path().join("certs"), &[]);
    let registry = Registry::start(RegistryOptions {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..RegistryOptions::default()
    });
    let layout = fixtures(&project);
    let host = registry.host();
    skopeo_push(&layout, "single", &format!("{host}/test/tls:1"), &[]);
    project.write(
        "images.toml",
        &format!("[images.tls]\ndocker = \"{host}/test/tls:1\"\ninsecure = true\n"),
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );
    let ca = certs.ca.clone();
    project
        .run(&["lock", "--ca-file", ca.to_str().expect("utf8")])
        .success();
    assert!(
        project
            .read("images.lock")
            .contains(&format!("registry = \"https://{host}\""))
    );
    project
        .run(&["sync", "--ca-file", ca.to_str().expect("utf8")])
        .success();
    assert_eq!(project.assert_store_valid(&project.store()), 4);
}

/// Asking a single-platform image for a platform it does not have is an error naming what
/// it has (not a lock that silently pins the one manifest).
#[test]
fn a_platform_a_single_manifest_image_lacks_is_refused_naming_its_platform() {
    if !peers() {
        return;
    }
    let (project, registry, layout, host) = setup(RegistryOptions::default());
    skopeo_push(&layout, "single", &format!("{host}/test/single:v1"), &[]);
    let entry = |platforms: &str| {
        manifest(
            &registry,
            &format!(
                "[images.single]\ndocker = \"{host}/test/single:v1\"\nplatforms = [{platforms}]\ninsecure = true\n"
            ),
        )
    };
    project.write("images.toml", &entry("\"linux/arm64\""));
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains(
            "image `single`: the image has no manifest for platform linux/arm64 (it is a single-platform image, for linux/amd64)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("set `platforms = [\"linux/amd64\"]` under [images.single] (line 4)"),
        "{}",
        run.stderr
    );
    assert!(!project.root().join("images.lock").exists());
    project.write("images.toml", &entry("\"linux/amd64\""));
    project.run(&["lock"]).success();
}
