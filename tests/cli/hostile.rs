//! A lying or broken registry: wrong bytes, wrong Docker-Content-Digest,
//! truncated bodies, 500s. Each is refused with a clear error and nothing
//! lands in `blobs/`.

use std::collections::BTreeMap;

use sha2::Digest as _;

use crate::harness::{Canned, HostileServer, Project};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

struct Fixture {
    project: Project,
    server: HostileServer,
    layer: Vec<u8>,
    layer_path: String,
    manifest: Vec<u8>,
}

/// A server that serves one good image at test/img:v1, and a project locked against it.
fn locked_fixture() -> Fixture {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        sha(&config),
        config.len(),
        sha(&layer),
        layer.len()
    )
    .into_bytes();
    let ct = [("Content-Type", OCI_MANIFEST)];
    let mut routes = BTreeMap::new();
    routes.insert(
        "/v2/test/img/manifests/v1".to_owned(),
        Canned::ok(&manifest, &ct),
    );
    routes.insert(
        format!("/v2/test/img/manifests/{}", sha(&manifest)),
        Canned::ok(&manifest, &ct),
    );
    routes.insert(
        format!("/v2/test/img/blobs/{}", sha(&config)),
        Canned::ok(&config, &[]),
    );
    let layer_path = format!("/v2/test/img/blobs/{}", sha(&layer));
    routes.insert(layer_path.clone(), Canned::ok(&layer, &[]));
    let server = HostileServer::start(routes);
    let project = Project::new();
    project.write(
        "images.toml",
        &format!(
            "[registries.\"{host}\"]\ninsecure-http = true\n\n[images.img]\ndocker = \"{host}/test/img:v1\"\ninsecure = true\n",
            host = server.host()
        ),
    );
    project.run(&["lock"]).success();
    Fixture {
        project,
        server,
        layer,
        layer_path,
        manifest,
    }
}

/// Runs a sync that must fail, then checks the store holds only valid blobs,
/// not the layer, and no leftover temporary files.
#[track_caller]
fn sync_fails_cleanly(f: &Fixture, expected: &str) {
    let run = f.project.run(&["sync"]).failure(1);
    assert!(
        run.stderr.contains(expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("for image `img`"), "{}", run.stderr);
    let store = f.project.store();
    f.project.assert_store_valid(&store);
    let hex = sha(&f.layer).trim_start_matches("sha256:").to_owned();
    assert!(
        !store.join("blobs/sha256").join(hex).exists(),
        "the bad layer must not get a name"
    );
    let leftovers = std::fs::read_dir(store.join("ingest"))
        .expect("ingest")
        .count();
    assert_eq!(leftovers, 0, "no temporary files are left behind");
}

#[test]
fn wrong_bytes_are_refused() {
    let f = locked_fixture();
    let mut evil = f.layer.clone();
    evil[100] ^= 1;
    f.server.set(&f.layer_path, Canned::ok(&evil, &[]));
    sync_fails_cleanly(&f, "digest mismatch");
    // The honest server again: the same store syncs fine.
    f.server.set(&f.layer_path, Canned::ok(&f.layer, &[]));
    f.project.run(&["sync"]).success();
    assert_eq!(f.project.assert_store_valid(&f.project.store()), 3);
}

#[test]
fn wrong_docker_content_digest_on_a_blob_is_refused() {
    let f = locked_fixture();
    let lie = sha(b"something else");
    f.server.set(
        &f.layer_path,
        Canned::ok(&f.layer, &[("Docker-Content-Digest", &lie)]),
    );
    sync_fails_cleanly(&f, "digest mismatch");
}

#[test]
fn truncated_bodies_are_refused() {
    let f = locked_fixture();
    let mut canned = Canned::ok(&f.layer, &[]);
    canned.truncate_at = Some(f.layer.len() / 2);
    f.server.set(&f.layer_path, canned);
    let run = f.project.run(&["sync"]).failure(1);
    assert!(
        run.stderr.contains(&f.layer_path),
        "the error names the URL:\n{}",
        run.stderr
    );
    sync_fails_cleanly(&f, "cannot fetch blob");
}

#[test]
fn too_many_bytes_are_refused() {
    let f = locked_fixture();
    let mut longer = f.layer.clone();
    longer.extend_from_slice(b"extra");
    f.server.set(&f.layer_path, Canned::ok(&longer, &[]));
    sync_fails_cleanly(&f, "announced 200005 bytes, the lock says 200000");
}

#[test]
fn server_errors_are_reported_with_status() {
    let f = locked_fixture();
    f.server.set(
        &f.layer_path,
        Canned {
            status: 500,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#.to_vec(),
            truncate_at: None,
            auth: None,
        },
    );
    sync_fails_cleanly(&f, "500 Internal Server Error: UNKNOWN (disk on fire)");
}

#[test]
fn a_lying_manifest_digest_header_fails_the_lock() {
    let f = locked_fixture();
    let lie = sha(b"not the manifest");
    f.server.set(
        "/v2/test/img/manifests/v1",
        Canned::ok(
            &f.manifest,
            &[
                ("Content-Type", OCI_MANIFEST),
                ("Docker-Content-Digest", &lie),
            ],
        ),
    );
    std::fs::remove_file(f.project.root().join("images.lock")).expect("rm lock");
    let run = f.project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("digest mismatch") && run.stderr.contains("Docker-Content-Digest"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cannot lock image `img`"),
        "{}",
        run.stderr
    );
    assert!(!f.project.root().join("images.lock").exists());
}

#[test]
fn oversized_manifests_are_refused() {
    let f = locked_fixture();
    let huge = vec![b' '; 5 * 1024 * 1024];
    f.server.set(
        "/v2/test/img/manifests/v1",
        Canned::ok(&huge, &[("Content-Type", OCI_MANIFEST)]),
    );
    std::fs::remove_file(f.project.root().join("images.lock")).expect("rm lock");
    let run = f.project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("sent more than 4194304 bytes"),
        "{}",
        run.stderr
    );
}

#[test]
fn bearer_token_flow_with_credentials() {
    use base64::Engine as _;
    let f = locked_fixture();
    let host = f.server.host();
    let challenge = format!(
        r#"Bearer realm="http://{host}/token",service="test-registry",scope="repository:test/img:pull""#
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    );
    for path in ["/v2/test/img/manifests/v1".to_owned(), f.layer_path.clone()] {
        let mut canned = Canned::ok(
            if path == f.layer_path {
                &f.layer
            } else {
                &f.manifest
            },
            &[("Content-Type", OCI_MANIFEST)],
        );
        if path == f.layer_path {
            canned.headers.clear();
        }
        f.server
            .set(&path, canned.requiring("Bearer tok-123", &challenge));
    }
    f.server.set(
        "/token",
        Canned::ok(
            br#"{"access_token":"tok-123","expires_in":300}"#,
            &[("Content-Type", "application/json")],
        )
        .requiring(&basic, r#"Basic realm="token""#),
    );
    std::fs::remove_file(f.project.root().join("images.lock")).expect("rm lock");
    let run = f.project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("refused anonymous access")
            && run.stderr.contains(&format!("skopeo login {host}")),
        "{}",
        run.stderr
    );

    // Credentials from containers auth.json via REGISTRY_AUTH_FILE.
    let auth_file = f.project.dir.path().join("auth.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    std::fs::write(
        &auth_file,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("write");
    let mut project = f.project;
    project
        .env
        .insert("REGISTRY_AUTH_FILE".into(), auth_file.display().to_string());
    let before = f.server.hits("/token");
    project.run(&["lock"]).success();
    assert_eq!(
        f.server.hits("/token") - before,
        1,
        "one token per run and scope"
    );
    project.run(&["sync"]).success();
    assert_eq!(project.assert_store_valid(&project.store()), 3);
}
