//! A CI fleet's mirror: push the locked images (OCI and ACI) to a second real
//! `docker-registry`, stop the origin, sync a fresh store from the mirror; a
//! mirror with a tampered blob is caught.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::appc::Aci;
use crate::harness::{
    Canned, Fault, FaultProxy, HostileServer, LayoutBuilder, Project, Registry, RegistryOptions,
    Run, TokenAuth, peer, skopeo_push,
};

fn peers() -> bool {
    peer("docker-registry") && peer("skopeo")
}

struct Fleet {
    origin: Registry,
    mirror: Registry,
    aci_server: HostileServer,
    project: Project,
    layer_digest: String,
}

fn fleet() -> Fleet {
    fleet_of(&["linux/amd64", "linux/arm64"])
}

/// The fleet with `multi` locked for `platforms` of its two.
fn fleet_of(platforms: &[&str]) -> Fleet {
    fleet_with(platforms, Registry::start(RegistryOptions::default()))
}

/// The fleet with `mirror` as its mirror.
fn fleet_with(platforms: &[&str], mirror: Registry) -> Fleet {
    let origin = Registry::start(RegistryOptions::default());
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.dir.path().join("layout"));
    let layer = layout.layer(&[("data", &[42u8; 100_000][..])]);
    let layer_digest = layer["digest"].as_str().expect("digest").to_owned();
    let amd = layout.image("linux", "amd64", std::slice::from_ref(&layer));
    // A layer over the one-request size, so it is streamed.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..17 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let arm = layout.image("linux", "arm64", &[layout.layer(&[("arm", &noise[..])])]);
    let index = layout.index(&[amd, arm]);
    layout.tag("multi", &index);
    skopeo_push(
        &layout.dir,
        "multi",
        &format!("{}/test/multi:1", origin.host()),
        &["--all"],
    );
    let aci = Aci::new("example.com/tool", &[("version", "1")]);
    let aci_server = HostileServer::start(BTreeMap::from([(
        "/tool.aci".to_owned(),
        Canned::ok(&aci.gz(), &[]),
    )]));
    let hosts = [origin.host(), mirror.host(), aci_server.host()];
    let mut manifest = String::new();
    for host in &hosts {
        manifest.push_str(&format!(
            "[registries.\"{host}\"]\ninsecure-http = true\n\n"
        ));
    }
    let platforms: Vec<String> = platforms.iter().map(|p| format!("\"{p}\"")).collect();
    manifest.push_str(&format!(
        "[images.multi]\ndocker = \"{}/test/multi:1\"\nplatforms = [{}]\ninsecure = true\n\n[images.tool]\nurl = \"http://{}/tool.aci\"\ninsecure = true\n",
        origin.host(),
        platforms.join(", "),
        aci_server.host()
    ));
    project.write("images.toml", &manifest);
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();
    Fleet {
        origin,
        mirror,
        aci_server,
        project,
        layer_digest,
    }
}

/// Runs `push PREFIX --json`, which must succeed; its report.
fn push_report(project: &Project, prefix: &str) -> serde_json::Value {
    let run = project.run(&["push", prefix, "--json"]).success();
    serde_json::from_str(&run.stdout).expect("json")
}

/// Pushing again uploads no blob and puts no manifest.
#[track_caller]
fn assert_push_transfers_nothing(project: &Project, prefix: &str) {
    let again = push_report(project, prefix);
    assert_eq!(again["pushed"]["uploaded"], 0, "{again}");
    assert_eq!(again["pushed"]["manifests"], 0, "{again}");
}

/// The origin and the ACI server go away; a fresh store syncs from the
/// mirror at `prefix` alone (`--mirror-only`) and verifies. Returns the sync
/// and the number of blobs in the fresh store (each checked against its name).
fn sync_from_the_mirror_alone(mut f: Fleet, prefix: &str) -> (Run, usize) {
    f.origin.stop();
    drop(f.aci_server);
    let fresh = f.project.dir.path().join("fresh");
    let fresh_arg = fresh.to_str().expect("utf8");
    let run = f
        .project
        .run(&[
            "sync",
            "--store",
            fresh_arg,
            "--mirror",
            prefix,
            "--mirror-only",
        ])
        .success();
    let blobs = f.project.assert_store_valid(&fresh);
    f.project.run(&["verify", "--store", fresh_arg]).success();
    (run, blobs)
}

/// The file the registry keeps `digest` in.
fn registry_blob(registry: &Registry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    registry
        ._data
        .path()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[test]
fn push_is_idempotent_and_a_fresh_store_syncs_from_the_mirror_alone() {
    if !peers() {
        return;
    }
    let f = fleet();
    let prefix = format!("{}/mirror", f.mirror.host());
    let report = push_report(&f.project, &prefix);
    // 2 layers + 1 config + 2 ACI-side blobs (empty config, ACI) at least.
    assert!(
        report["pushed"]["uploaded"].as_u64().expect("n") >= 5,
        "{report}"
    );
    assert_eq!(report["pushed"]["images"], 2);
    // Pushing again transfers nothing.
    assert_push_transfers_nothing(&f.project, &prefix);
    // The mirrored image is a normal image skopeo can read.
    let origin_host = f.origin.host().replace(':', "_");
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{prefix}/{origin_host}/test/multi:1"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The origin (and the ACI's server) go away; a fresh store syncs from the mirror.
    let (run, blobs) = sync_from_the_mirror_alone(f, &prefix);
    assert!(run.stderr.contains("Synced 2 images"), "{}", run.stderr);
    // index, 2 manifests, 2 configs, 2 layers; the ACI; nothing else.
    assert_eq!(blobs, 8);
}

#[test]
fn uploads_broken_off_mid_body_go_up_again_and_the_push_completes() {
    if !peers() {
        return;
    }
    let f = fleet();
    // The real mirror behind a proxy that breaks off the first streamed
    // PATCH (the 17 MiB layer) after 4 MiB and the first one-request blob PUT
    // after 20 bytes. distribution then drops the session (a later request on
    // it answers 404 BLOB_UPLOAD_INVALID), so the push must start new ones.
    let proxy = FaultProxy::start(
        &f.mirror.host(),
        vec![
            Fault {
                method: "PATCH",
                path_contains: "/blobs/uploads/",
                cut_after: 4 * 1024 * 1024,
            },
            // Then the retry's PATCH before its first byte: the session
            // survives (status `Range: 0-0`) and is resumed from byte 0.
            Fault {
                method: "PATCH",
                path_contains: "/blobs/uploads/",
                cut_after: 0,
            },
            Fault {
                method: "PUT",
                path_contains: "/blobs/uploads/",
                cut_after: 20,
            },
        ],
    );
    f.project.allow_plain_http(&proxy.host());
    let via_proxy = format!("{}/mirror", proxy.host());
    let report = push_report(&f.project, &via_proxy);
    assert_eq!(proxy.fired(), 3, "every fault must have fired");
    assert_eq!(report["pushed"]["images"], 2, "{report}");
    assert_eq!(report["pushed"]["manifests"], 4, "{report}");
    assert_push_transfers_nothing(&f.project, &via_proxy);

    // What reached the registry is whole: a fresh store syncs from it alone.
    let direct = format!("{}/mirror", f.mirror.host());
    let (_, blobs) = sync_from_the_mirror_alone(f, &direct);
    assert_eq!(blobs, 8);
}

#[test]
fn an_index_locked_for_some_platforms_goes_up_and_comes_back() {
    if !peers() {
        return;
    }
    // The registry would refuse the index as a manifest (its arm64 child is
    // not pinned, so not pushed): it goes up as a blob, read back by digest.
    let f = fleet_of(&["linux/amd64"]);
    let prefix = format!("{}/mirror", f.mirror.host());
    let report = push_report(&f.project, &prefix);
    // The amd64 manifest and the ACI's artifact manifest.
    assert_eq!(report["pushed"]["manifests"], 2, "{report}");
    assert_push_transfers_nothing(&f.project, &prefix);
    // Nothing on the mirror references that blob, so a registry's garbage
    // collection may take it: the amd64 manifest being there does not mean
    // the index is, and the next push puts it back.
    let lock = f.project.read("images.lock");
    let index = lock
        .split("index = { digest = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the lock pins an index")
        .to_owned();
    std::fs::remove_file(registry_blob(&f.mirror, &index)).expect("remove the index blob");
    let repaired = push_report(&f.project, &prefix);
    assert_eq!(repaired["pushed"]["uploaded"], 1, "{repaired}");
    assert_eq!(repaired["pushed"]["manifests"], 0, "{repaired}");

    let (_, blobs) = sync_from_the_mirror_alone(f, &prefix);
    // index, the amd64 manifest, its config and layer; the ACI.
    assert_eq!(blobs, 5);
}

#[test]
fn a_mirror_behind_token_authentication() {
    use base64::Engine as _;
    if !peers() || !peer("openssl") {
        return;
    }
    // distribution with token auth; the token server (in-test) hands out a
    // token signed by a test CA, to alice only.
    let work = tempfile::tempdir().expect("tempdir");
    let certs = crate::peers::Certs::generate(&work.path().join("certs"), &[]);
    let tokens = HostileServer::start(BTreeMap::new());
    let mirror = Registry::start(RegistryOptions {
        token: Some(TokenAuth {
            realm: format!("http://{}/token", tokens.host()),
            service: "test-registry".into(),
            issuer: "test-issuer".into(),
            rootcertbundle: certs.ca.clone(),
        }),
        ..RegistryOptions::default()
    });
    let mut f = fleet_with(&["linux/amd64", "linux/arm64"], mirror);
    let origin_host = f.origin.host().replace(':', "_");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let access: Vec<serde_json::Value> = [
        format!("mirror/{origin_host}/test/multi"),
        "mirror/appc".into(),
    ]
    .iter()
    .map(
        |name| serde_json::json!({"type": "repository", "name": name, "actions": ["pull", "push"]}),
    )
    .collect();
    let token = crate::peers::signed_token(
        &certs,
        &serde_json::json!({
            "iss": "test-issuer", "sub": "alice", "aud": "test-registry",
            "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "imagelock-test",
            "access": access,
        }),
    );
    let alice = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    );
    tokens.set(
        "/token",
        Canned::ok(
            serde_json::json!({"token": token, "expires_in": 3600})
                .to_string()
                .as_bytes(),
            &[("Content-Type", "application/json")],
        )
        .requiring(&alice, r#"Basic realm="token""#),
    );
    f.project.allow_plain_http(&tokens.host());
    let prefix = format!("{}/mirror", f.mirror.host());

    // Anonymous: the token server refuses, and the hint says to log in.
    let run = f.project.run(&["push", &prefix]).failure(1);
    assert!(
        run.stderr.contains("refused anonymous access")
            && run.stderr.contains(&format!(
                "hint: log in with `skopeo login {}`",
                f.mirror.host()
            )),
        "{}",
        run.stderr
    );

    // alice's credentials (containers auth.json) for the mirror.
    let auth_file = f.project.dir.path().join("auth.json");
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {f.mirror.host(): {"auth": base64::engine::general_purpose::STANDARD.encode("alice:pw")}}}).to_string(),
    )
    .expect("write auth.json");
    f.project
        .env
        .insert("REGISTRY_AUTH_FILE".into(), auth_file.display().to_string());
    // One token per repository and scope, reused: the HEADs (challenged for
    // pull) and the uploads after them (push) share it.
    let before = tokens.hits("/token");
    f.project.run(&["push", &prefix]).success();
    let asked = tokens.hits("/token") - before;
    assert!(asked <= 4, "{asked} token requests for 2 repositories");
    assert_push_transfers_nothing(&f.project, &prefix);
    // The second push asks each repository once (its top manifest) and
    // reuses each token: at most one token per repository.
    let before = tokens.hits("/token");
    f.project.run(&["push", &prefix]).success();
    assert!(
        tokens.hits("/token") - before <= 2,
        "{} token requests",
        tokens.hits("/token") - before
    );

    let (_, blobs) = sync_from_the_mirror_alone(f, &prefix);
    assert_eq!(blobs, 8);
}

#[test]
fn pushes_killed_part_way_are_finished_by_the_next_push() {
    if !peers() {
        return;
    }
    let f = fleet();
    // How long a whole push takes here (into other repositories of the
    // mirror); kill points are spread over the first 80% of it.
    let started = std::time::Instant::now();
    f.project
        .run(&["push", &format!("{}/probe", f.mirror.host())])
        .success();
    let full = started.elapsed();
    let prefix = format!("{}/mirror", f.mirror.host());
    let mut killed = 0;
    for fraction in [0.05, 0.15, 0.3, 0.45, 0.6, 0.8] {
        let mut child = f.project.spawn(&["push", &prefix]);
        std::thread::sleep(full.mul_f64(fraction));
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("kill -9");
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(killed >= 3, "only {killed} pushes were killed part-way");
    let report = push_report(&f.project, &prefix);
    assert_eq!(report["pushed"]["images"], 2, "{report}");
    assert_push_transfers_nothing(&f.project, &prefix);

    let (_, blobs) = sync_from_the_mirror_alone(f, &prefix);
    assert_eq!(blobs, 8);
}

#[test]
fn a_tampered_mirror_cannot_make_a_wrong_image_pass() {
    if !peers() {
        return;
    }
    let f = fleet();
    let prefix = format!("{}/mirror", f.mirror.host());
    f.project.run(&["push", &prefix]).success();
    // The mirror's copy of the big layer is altered on its disk.
    let file = registry_blob(&f.mirror, &f.layer_digest);
    let mut bytes = std::fs::read(&file).expect("mirror blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&file, bytes).expect("write");
    let store = f.project.dir.path().join("fresh");
    let store_arg = store.to_str().expect("utf8");
    let run = f
        .project
        .run(&[
            "sync",
            "--store",
            store_arg,
            "--mirror",
            &prefix,
            "--mirror-only",
        ])
        .failure(1);
    assert!(
        run.stderr.contains(&f.layer_digest) && run.stderr.contains("digest mismatch"),
        "{}",
        run.stderr
    );
    let hex = f.layer_digest.trim_start_matches("sha256:");
    assert!(!store.join("blobs/sha256").join(hex).exists());
    // Without --mirror-only the origin supplies the right bytes.
    f.project
        .run(&["sync", "--store", store_arg, "--mirror", &prefix])
        .success();
    f.project.assert_store_valid(&store);
    f.project.run(&["verify", "--store", store_arg]).success();
}

#[test]
fn shared_blobs_go_up_once_and_are_mounted_into_other_repositories() {
    if !peers() {
        return;
    }
    let origin = Registry::start(RegistryOptions::default());
    let mirror = Registry::start(RegistryOptions::default());
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.dir.path().join("layout"));
    let shared = layout.layer(&[("shared", &[7u8; 300_000][..])]);
    let only_a = layout.layer(&[("a", &[1u8; 1000][..])]);
    let only_b = layout.layer(&[("b", &[2u8; 1000][..])]);
    let a = layout.image("linux", "amd64", &[shared.clone(), only_a]);
    let b = layout.image("linux", "amd64", &[shared, only_b]);
    layout.tag("a", &a).tag("b", &b);
    // a:1 and a:2 are the same image in one repository; b shares a layer with it.
    for (tag, target) in [("a", "test/a:1"), ("a", "test/a:2"), ("b", "test/b:1")] {
        skopeo_push(
            &layout.dir,
            tag,
            &format!("{}/{target}", origin.host()),
            &[],
        );
    }
    let mut manifest = String::new();
    for host in [origin.host(), mirror.host()] {
        manifest.push_str(&format!(
            "[registries.\"{host}\"]\ninsecure-http = true\n\n"
        ));
    }
    for (id, reference) in [("a1", "test/a:1"), ("a2", "test/a:2"), ("b", "test/b:1")] {
        manifest.push_str(&format!(
            "[images.{id}]\ndocker = \"{}/{reference}\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n\n",
            origin.host()
        ));
    }
    project.write("images.toml", &manifest);
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();

    let prefix = format!("{}/m", mirror.host());
    let report = push_report(&project, &prefix);
    // The config (the test layouts' configs are all alike) and the shared
    // layer go up once and are mounted into the second repository; each
    // image's own layer goes up; a:2 adds nothing to a:1's repository.
    assert_eq!(report["pushed"]["uploaded"], 4, "{report}");
    assert_eq!(report["pushed"]["mounted"], 2, "{report}");
    assert_eq!(report["pushed"]["present"], 0, "{report}");
    // a:1, a:2 (same manifest, two tags) and b:1.
    assert_eq!(report["pushed"]["manifests"], 3, "{report}");
    let again = push_report(&project, &prefix);
    assert_eq!(again["pushed"]["uploaded"], 0, "{again}");
    assert_eq!(again["pushed"]["mounted"], 0, "{again}");
    assert_eq!(again["pushed"]["present"], 6, "{again}");
    assert_eq!(again["pushed"]["manifests"], 0, "{again}");
    // Every tag resolves on the mirror to the locked digest.
    let origin_host = origin.host().replace(':', "_");
    for (reference, desc) in [("test/a:1", &a), ("test/a:2", &a), ("test/b:1", &b)] {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{prefix}/{origin_host}/{reference}"))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "{reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&out.stdout))
        );
        assert_eq!(
            digest,
            desc["digest"].as_str().expect("digest"),
            "{reference}"
        );
    }
}
