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
        !store.join("blobs/sha256").join(&hex).exists(),
        "the bad layer must not get a name"
    );
    // Downloads cut short by the failure may leave resumable partial files
    // (named after their blob, kept to resume); nothing else.
    let leftovers: Vec<String> = std::fs::read_dir(store.join("ingest"))
        .expect("ingest")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with("sha256-") && n.ends_with(".partial")))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files are left behind: {leftovers:?}"
    );
    assert!(
        !store
            .join("ingest")
            .join(format!("sha256-{hex}.partial"))
            .exists(),
        "the refused layer's bytes are not kept"
    );
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
fn truncated_bodies_are_refused_then_resumed() {
    let f = locked_fixture();
    let half = f.layer.len() / 2;
    f.server
        .set(&f.layer_path, Canned::ok(&f.layer, &[]).truncated(half));
    let run = f.project.run(&["sync"]).failure(1);
    assert!(
        run.stderr.contains(&f.layer_path) && run.stderr.contains("gave up after 5 attempts"),
        "the error names the URL and the attempts:\n{}",
        run.stderr
    );
    let store = f.project.store();
    f.project.assert_store_valid(&store);
    let hex = sha(&f.layer).trim_start_matches("sha256:").to_owned();
    assert!(!store.join("blobs/sha256").join(&hex).exists());
    // What arrived is kept, under the blob's name, to resume from.
    let partial = store.join("ingest").join(format!("sha256-{hex}.partial"));
    assert_eq!(
        std::fs::read(&partial).expect("partial kept"),
        f.layer[..half]
    );
    // The next sync asks only for the rest.
    f.server
        .set(&f.layer_path, Canned::ok(&f.layer, &[]).with_ranges());
    f.project.run(&["sync"]).success();
    assert_eq!(
        f.server.ranges(&f.layer_path).last().cloned().flatten(),
        Some(format!("bytes={half}-"))
    );
    assert_eq!(f.project.assert_store_valid(&store), 3);
    assert!(!partial.exists());
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
            ranges: false,
            stall: None,
            trickle: None,
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

#[test]
fn a_reset_mid_body_resumes_within_the_same_sync() {
    let f = locked_fixture();
    f.server.set_sequence(
        &f.layer_path,
        vec![
            Canned::ok(&f.layer, &[]).truncated(50_000),
            Canned::ok(&f.layer, &[]).with_ranges(),
        ],
    );
    f.project.run(&["sync"]).success();
    assert_eq!(
        f.server.ranges(&f.layer_path),
        vec![None, Some("bytes=50000-".to_owned())]
    );
    assert_eq!(f.project.assert_store_valid(&f.project.store()), 3);
    assert_eq!(
        std::fs::read_dir(f.project.store().join("ingest"))
            .expect("ingest")
            .count(),
        0
    );
}

#[test]
fn a_server_ignoring_range_restarts_from_zero() {
    let f = locked_fixture();
    f.server.set_sequence(
        &f.layer_path,
        vec![
            Canned::ok(&f.layer, &[]).truncated(50_000),
            Canned::ok(&f.layer, &[]),
        ],
    );
    f.project.run(&["sync"]).success();
    assert_eq!(
        f.server.ranges(&f.layer_path)[1],
        Some("bytes=50000-".to_owned())
    );
    assert_eq!(f.project.assert_store_valid(&f.project.store()), 3);
}

#[test]
fn wrong_bytes_after_a_resume_restart_the_download() {
    let f = locked_fixture();
    let mut evil = f.layer.clone();
    let last = evil.len() - 1;
    evil[last] ^= 1;
    f.server.set_sequence(
        &f.layer_path,
        vec![
            Canned::ok(&f.layer, &[]).truncated(50_000),
            Canned::ok(&evil, &[]).with_ranges(),
            Canned::ok(&f.layer, &[]).with_ranges(),
        ],
    );
    f.project.run(&["sync"]).success();
    // The resumed bytes were wrong: the last request started from zero.
    assert_eq!(
        f.server.ranges(&f.layer_path),
        vec![None, Some("bytes=50000-".to_owned()), None]
    );
    assert_eq!(f.project.assert_store_valid(&f.project.store()), 3);
}

#[test]
fn server_errors_and_throttling_are_retried() {
    let f = locked_fixture();
    f.server.set_sequence(
        &f.layer_path,
        vec![
            Canned::status(500, &[]),
            Canned::status(429, &[("Retry-After", "0")]),
            Canned::status(503, &[]),
            Canned::ok(&f.layer, &[]),
        ],
    );
    f.project.run(&["sync"]).success();
    assert_eq!(f.server.hits(&f.layer_path), 4);
    assert_eq!(f.project.assert_store_valid(&f.project.store()), 3);
}

#[test]
fn retries_are_bounded_and_counted() {
    let mut f = locked_fixture();
    f.project
        .env
        .insert("IMAGELOCK_HTTP_RETRIES".into(), "2".into());
    f.server.set(&f.layer_path, Canned::status(503, &[]));
    let run = f.project.run(&["sync"]).failure(1);
    assert!(
        run.stderr.contains("503 Service Unavailable")
            && run.stderr.contains("gave up after 3 attempts"),
        "{}",
        run.stderr
    );
    assert_eq!(f.server.hits(&f.layer_path), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let f = locked_fixture();
    f.server.set(&f.layer_path, Canned::status(403, &[]));
    let run = f.project.run(&["sync"]).failure(1);
    assert!(run.stderr.contains("403 Forbidden"), "{}", run.stderr);
    assert_eq!(f.server.hits(&f.layer_path), 1);
}

#[test]
fn a_stalled_body_is_retried_after_the_read_timeout() {
    let mut f = locked_fixture();
    f.project
        .env
        .insert("IMAGELOCK_HTTP_READ_TIMEOUT_MS".into(), "300".into());
    let mut stalled = Canned::ok(&f.layer, &[]);
    stalled.stall = Some(std::time::Duration::from_secs(3));
    f.server.set_sequence(
        &f.layer_path,
        vec![stalled, Canned::ok(&f.layer, &[]).with_ranges()],
    );
    f.project.run(&["sync"]).success();
    assert_eq!(f.server.hits(&f.layer_path), 2);
    assert_eq!(f.project.assert_store_valid(&f.project.store()), 3);
}

#[test]
fn a_manifest_claiming_an_absurd_layer_size_is_refused_at_lock() {
    let f = locked_fixture();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let huge = 1u64 << 62;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{huge}}}]}}"#,
        sha(config),
        config.len(),
        sha(&f.layer),
    );
    f.server.set(
        "/v2/test/img/manifests/v1",
        Canned::ok(manifest.as_bytes(), &[("Content-Type", OCI_MANIFEST)]),
    );
    std::fs::remove_file(f.project.root().join("images.lock")).expect("rm lock");
    let run = f.project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("cannot lock image `img`")
            && run.stderr.contains(&format!(
                "layer 1 {} claims {huge} bytes, more than the 1.0 TiB a blob may have",
                sha(&f.layer)
            ))
            && run.stderr.contains("hint: nothing was pinned"),
        "{}",
        run.stderr
    );
    assert!(!f.project.root().join("images.lock").exists());
}

/// `alice:pw` for `host`, in a containers auth.json the project's runs read.
fn log_in(project: &mut Project, host: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw");
    let file = project.dir.path().join("auth.json");
    std::fs::write(
        &file,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("write auth.json");
    project
        .env
        .insert("REGISTRY_AUTH_FILE".into(), file.display().to_string());
    format!("Basic {auth}")
}

#[test]
fn a_token_server_on_plain_http_elsewhere_never_gets_the_credentials() {
    let mut f = locked_fixture();
    // The registry (plain HTTP, listed) sends clients for a token to another
    // port, which nobody listed as insecure-http: the credentials would cross
    // the network in clear.
    let tokens = HostileServer::start(BTreeMap::new());
    let realm = format!("http://{}/token", tokens.host());
    let challenge = format!(r#"Bearer realm="{realm}",service="test-registry""#);
    f.server.set(
        "/v2/test/img/manifests/v1",
        Canned::ok(&f.manifest, &[("Content-Type", OCI_MANIFEST)])
            .requiring("Bearer tok-1", &challenge),
    );
    let basic = log_in(&mut f.project, &f.server.host());
    std::fs::remove_file(f.project.root().join("images.lock")).expect("rm lock");
    let run = f.project.run(&["lock"]).failure(1);
    assert!(
        tokens.requests().is_empty(),
        "the token server was contacted: {:?}",
        tokens.requests()
    );
    assert!(
        run.stderr.contains(&format!(
            "sends clients for a token to {realm}, which is plain HTTP"
        )) && run.stderr.contains("nothing was sent"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "`[registries.\"{}\"] insecure-http = true`",
            tokens.host()
        )) && run.stderr.contains("\nhint: if the network to "),
        "{}",
        run.stderr
    );
    assert!(!f.project.root().join("images.lock").exists());

    // Listed, as the hint says, the token server gets them (and issues a token).
    tokens.set(
        "/token",
        Canned::ok(
            br#"{"token":"tok-1"}"#,
            &[("Content-Type", "application/json")],
        )
        .requiring(&basic, r#"Basic realm="token""#),
    );
    f.project.allow_plain_http(&tokens.host());
    f.project.run(&["lock"]).success();
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.contains(&format!("authorization: {basic}"))),
        "{:?}",
        tokens.requests()
    );
}

#[test]
fn authorization_is_not_carried_across_a_redirect_to_another_host() {
    let mut f = locked_fixture();
    // The registry wants Basic credentials, then redirects manifests and
    // blobs to another host (a CDN), which must not see them.
    let cdn = HostileServer::start(BTreeMap::new());
    let basic = log_in(&mut f.project, &f.server.host());
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_path = format!("/v2/test/img/blobs/{}", sha(config));
    let manifest_path = "/v2/test/img/manifests/v1".to_owned();
    for path in [manifest_path.clone(), f.layer_path.clone(), config_path] {
        let location = format!("http://{}{path}", cdn.host());
        let body = if path == manifest_path {
            Canned::ok(&f.manifest, &[("Content-Type", OCI_MANIFEST)])
        } else if path == f.layer_path {
            Canned::ok(&f.layer, &[])
        } else {
            Canned::ok(config, &[])
        };
        cdn.set(&path, body);
        f.server.set(
            &path,
            Canned::status(307, &[("Location", &location)])
                .requiring(&basic, r#"Basic realm="registry""#),
        );
    }
    f.project.allow_plain_http(&cdn.host());
    std::fs::remove_file(f.project.root().join("images.lock")).expect("rm lock");
    f.project.run(&["lock"]).success();
    f.project.run(&["sync"]).success();
    assert_eq!(f.project.assert_store_valid(&f.project.store()), 3);
    // The registry got the credentials; the other host got every request, without them.
    assert!(
        f.server
            .requests()
            .iter()
            .any(|r| r.contains(&format!("authorization: {basic}"))),
        "{:?}",
        f.server.requests()
    );
    let to_cdn = cdn.requests();
    assert!(to_cdn.len() >= 3, "{to_cdn:?}");
    for request in &to_cdn {
        assert!(
            !request.to_ascii_lowercase().contains("authorization"),
            "{request}"
        );
    }
}

#[test]
fn a_lock_naming_plain_http_never_gets_credentials_sent_in_clear() {
    let mut f = locked_fixture();
    let basic = log_in(&mut f.project, &f.server.host());
    f.server.set(
        &f.layer_path,
        Canned::ok(&f.layer, &[]).requiring(&basic, r#"Basic realm="registry""#),
    );
    // images.toml does not list the host as insecure-http (think of a lock
    // edited from https:// to http://): `sync --frozen` reads only the lock.
    f.project.write(
        "images.toml",
        &format!(
            "[images.img]\ndocker = \"{}/test/img:v1\"\ninsecure = true\n",
            f.server.host()
        ),
    );
    let run = f.project.run(&["sync", "--frozen"]).failure(1);
    let sent: Vec<String> = f
        .server
        .requests()
        .into_iter()
        .filter(|r| r.contains("authorization"))
        .collect();
    assert!(
        sent.is_empty(),
        "credentials went over plain HTTP: {sent:?}"
    );
    // `sync --frozen` takes plain-HTTP hosts from images.toml, never from the
    // lock: the request is refused before anything is sent.
    assert!(
        run.stderr.contains(&format!(
            "is plain HTTP, which is used only for hosts listed in images.toml as `[registries.\"{}\"] insecure-http = true`",
            f.server.host()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_trickling_manifest_fails_the_lock_at_the_deadline() {
    let mut f = locked_fixture();
    f.project
        .env
        .insert("IMAGELOCK_HTTP_DEADLINE_MS".into(), "1500".into());
    // One byte every 100 ms, each well within the read timeout: without a
    // deadline the manifest alone would take a minute.
    let path = "/v2/test/img/manifests/v1";
    f.server.set(
        path,
        Canned::ok(&f.manifest, &[("Content-Type", OCI_MANIFEST)])
            .trickled(std::time::Duration::from_millis(100)),
    );
    std::fs::remove_file(f.project.root().join("images.lock")).expect("rm lock");
    let before = f.server.hits(path);
    let started = std::time::Instant::now();
    let run = f.project.run(&["lock"]).failure(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let url = format!("http://{}{path}", f.server.host());
    assert!(
        run.stderr.contains(&format!(
            "{url} is too slow: no complete answer within 1.5s (the deadline for one request)"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: ") && run.stderr.contains("IMAGELOCK_HTTP_DEADLINE_MS"),
        "{}",
        run.stderr
    );
    assert_eq!(
        f.server.hits(path) - before,
        1,
        "a deadline missed is not retried"
    );
}

#[test]
fn a_trickling_blob_fails_the_sync_under_the_minimum_rate() {
    let mut f = locked_fixture();
    for (k, v) in [
        ("IMAGELOCK_HTTP_MIN_RATE", "1000"),
        ("IMAGELOCK_HTTP_MIN_RATE_WINDOW_MS", "500"),
        ("IMAGELOCK_HTTP_RETRIES", "1"),
    ] {
        f.project.env.insert(k.into(), v.into());
    }
    f.server.set(
        &f.layer_path,
        Canned::ok(&f.layer, &[]).trickled(std::time::Duration::from_millis(20)),
    );
    let started = std::time::Instant::now();
    let run = f.project.run(&["sync"]).failure(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let url = format!("http://{}{}", f.server.host(), f.layer_path);
    assert!(
        run.stderr.contains(&format!("{url} is too slow: "))
            && run
                .stderr
                .contains("bytes in 0.5s, under the minimum rate of 1000 bytes/s")
            && run.stderr.contains("(gave up after 2 attempts)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("IMAGELOCK_HTTP_MIN_RATE"),
        "{}",
        run.stderr
    );
    assert_eq!(f.server.hits(&f.layer_path), 2);
    let hex = sha(&f.layer).trim_start_matches("sha256:").to_owned();
    assert!(!f.project.store().join("blobs/sha256").join(hex).exists());
    f.project.assert_store_valid(&f.project.store());
    // A server at full speed again: the same store syncs.
    f.server.set(&f.layer_path, Canned::ok(&f.layer, &[]));
    f.project.run(&["sync"]).success();
}
