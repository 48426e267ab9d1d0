//! Sigstore / cosign signatures of registry images, end to end: signatures made outside
//! imagelock (keys and ECDSA signatures by `openssl`, artifacts pushed to a real
//! `docker-registry` by `skopeo`), found by `lock`, stored by `sync`, re-verified offline
//! by `verify`; and the refusals: an untrusted key, a payload for another digest or
//! repository, an artifact swapped on the registry after lock, a lock edited by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use sha2::Digest as _;

use crate::harness::{LayoutBuilder, Project, Registry, RegistryOptions, peer, skopeo_push};

fn peers() -> bool {
    peer("docker-registry") && peer("skopeo") && peer("openssl")
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An ECDSA P-256 key pair made by openssl: (private key path, public PEM path, fingerprint).
fn p256_key(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let p = |path: &Path| path.display().to_string();
    openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-noout",
        "-out",
        &p(&private),
    ]);
    openssl(&["ec", "-in", &p(&private), "-pubout", "-out", &p(&public)]);
    let der = openssl(&["pkey", "-pubin", "-in", &p(&public), "-outform", "DER"]);
    let fingerprint = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&der)));
    (private, public, fingerprint)
}

/// A cosign payload (specs/sigstore.md §1) for `digest` of `repository`.
fn payload(repository: &str, digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{repository}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

/// An ECDSA-SHA256 signature of `message` by openssl, base64 as cosign writes it.
fn sign(private: &Path, message: &[u8], work: &Path) -> String {
    let file = work.join("message");
    std::fs::write(&file, message).expect("write message");
    let der = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &private.display().to_string(),
        &file.display().to_string(),
    ]);
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// A registry holding `acme/app:v1` (one linux/amd64 manifest), and a work directory.
struct Cosign {
    project: Project,
    registry: Registry,
    work: PathBuf,
    /// The image's manifest digest.
    digest: String,
    /// `HOST/acme/app`.
    repository: String,
    /// The trusted key: (private, public, fingerprint).
    key: (PathBuf, PathBuf, String),
}

impl Cosign {
    fn new() -> Cosign {
        let project = Project::new();
        let work = project.dir.path().join("work");
        let registry = Registry::start(RegistryOptions::default());
        let mut layout = LayoutBuilder::new(&work.join("image"));
        let layer = layout.layer(&[("hello.txt", b"hello, cosign\n")]);
        let image = layout.image("linux", "amd64", &[layer]);
        layout.tag("v1", &image);
        let repository = format!("{}/acme/app", registry.host());
        skopeo_push(&layout.dir, "v1", &format!("{repository}:v1"), &[]);
        let digest = image["digest"].as_str().expect("digest").to_owned();
        let key = p256_key(&work.join("keys"), "release");
        std::fs::create_dir_all(project.root().join("keys")).expect("mkdir keys");
        std::fs::copy(&key.1, project.root().join("keys/cosign.pub")).expect("copy key");
        let cosign = Cosign {
            project,
            registry,
            work,
            digest,
            repository,
            key,
        };
        cosign.write_manifest("keys/cosign.pub");
        cosign
    }

    fn write_manifest(&self, key_file: &str) {
        self.project.write(
            "images.toml",
            &format!(
                "[trust.\"{}/acme/\"]\nsigstore-keys = [\"{key_file}\"]\ninsecure-ignore-tlog = true\n\n[images.app]\ndocker = \"{}:v1\"\nplatforms = [\"linux/amd64\"]\n",
                self.registry.host(),
                self.repository
            ),
        );
        self.project.allow_plain_http(&self.registry.host());
    }

    /// Pushes a cosign `.sig` manifest for the image, one layer per (payload, signature).
    fn push_signatures(&self, name: &str, signatures: &[(Vec<u8>, String)]) {
        let layers: Vec<(&[u8], serde_json::Value)> = signatures
            .iter()
            .map(|(payload, signature)| {
                let annotations =
                    serde_json::json!({"dev.cosignproject.cosign/signature": signature});
                (payload.as_slice(), annotations)
            })
            .collect();
        self.push_sig_manifest(name, &layers);
    }

    /// Pushes a `.sig` manifest with one layer: `payload` with `annotations`.
    fn push_layer(&self, name: &str, payload: &[u8], annotations: &serde_json::Value) {
        self.push_sig_manifest(name, &[(payload, annotations.clone())]);
    }

    /// Pushes, as cosign lays it out, a manifest tagged `sha256-<hex>.sig` with one
    /// payload layer per (payload, annotations) and the config of those layers.
    fn push_sig_manifest(&self, name: &str, layers: &[(&[u8], serde_json::Value)]) {
        let mut layout = LayoutBuilder::new(&self.work.join(name));
        let mut descriptors = Vec::new();
        for (payload, annotations) in layers {
            let mut layer =
                layout.blob(payload, "application/vnd.dev.cosign.simplesigning.v1+json");
            layer["annotations"] = annotations.clone();
            descriptors.push(layer);
        }
        let diff_ids: Vec<serde_json::Value> =
            descriptors.iter().map(|d| d["digest"].clone()).collect();
        let config = serde_json::json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = layout.blob(
            config.to_string().as_bytes(),
            "application/vnd.oci.image.config.v1+json",
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": descriptors,
        });
        let desc = layout.blob(
            manifest.to_string().as_bytes(),
            "application/vnd.oci.image.manifest.v1+json",
        );
        let tag = format!("sha256-{}.sig", &self.digest["sha256:".len()..]);
        layout.tag(&tag, &desc);
        skopeo_push(
            &layout.dir,
            &tag,
            &format!("{}:{tag}", self.repository),
            &["--preserve-digests"],
        );
    }

    fn signed(&self, key: &Path, repository: &str, digest: &str) -> (Vec<u8>, String) {
        let payload = payload(repository, digest);
        let signature = sign(key, &payload, &self.work);
        (payload, signature)
    }
}

#[test]
fn keyed_cosign_signature_is_pinned_synced_and_verified_offline() {
    if !peers() {
        return;
    }
    let c = Cosign::new();
    let good = c.signed(&c.key.0, &c.repository, &c.digest);
    c.push_signatures("sig", &[good]);

    let run = c.project.run(&["lock"]).success();
    let lock = c.project.read("images.lock");
    assert!(
        lock.contains("[[image.sigstore]]"),
        "{lock}\n{}",
        run.stderr
    );
    assert!(lock.contains("kind = \"cosign\""), "{lock}");
    assert!(
        lock.contains(&format!("signs = \"{}\"", c.digest)),
        "{lock}"
    );
    assert!(lock.contains(&format!("key = \"{}\"", c.key.2)), "{lock}");
    assert!(lock.contains("verified = true"), "{lock}");

    c.project.run(&["sync"]).success();
    let index = std::fs::read_to_string(c.project.store().join("index.json")).expect("index");
    let sig_name = format!(
        "{}:sha256-{}.sig",
        c.repository,
        &c.digest["sha256:".len()..]
    );
    assert!(index.contains(&sig_name), "{index}");
    c.project.assert_store_valid(&c.project.store());
    // skopeo reads the stored signature artifact like any image of the layout.
    let out = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{sig_name}", c.project.store().display()))
        .output()
        .expect("skopeo inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("dev.cosignproject.cosign/signature"));

    let verify = if crate::harness::network_namespaces() {
        c.project.run_without_network(&["verify"])
    } else {
        c.project.run(&["verify"])
    };
    let verify = verify.success();
    assert!(
        verify.stdout.contains(&c.key.2) || verify.stderr.contains(&c.key.2),
        "{}{}",
        verify.stdout,
        verify.stderr
    );
}

#[test]
fn untrusted_keys_other_digests_and_other_repositories_are_refused_and_nothing_is_pinned() {
    if !peers() {
        return;
    }
    let c = Cosign::new();
    let mallory = p256_key(&c.work.join("keys"), "mallory");
    let other_digest = format!("sha256:{}", "ab".repeat(32));
    let other_repo = format!("{}/evil/app", c.registry.host());
    let cases = [
        (
            "untrusted",
            c.signed(&mallory.0, &c.repository, &c.digest),
            "not signed by a trusted key",
        ),
        (
            "digest",
            c.signed(&c.key.0, &c.repository, &other_digest),
            "is a signature of manifest",
        ),
        (
            "repository",
            c.signed(&c.key.0, &other_repo, &c.digest),
            "it is a signature for",
        ),
    ];
    for (name, signature, expected) in cases {
        c.push_signatures(name, &[signature]);
        let run = c.project.run(&["lock"]).failure(1);
        assert!(run.stderr.contains("image `app`"), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains("no Sigstore signature of manifest"),
            "{name}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(expected), "{name}: {}", run.stderr);
        assert!(run.stderr.contains("trust add"), "{name}: {}", run.stderr);
        assert!(
            !c.project.root().join("images.lock").exists(),
            "{name}: a lock was written"
        );
    }
    // Appended by a later signer: one good signature among bad ones suffices. Both
    // layers hold the same payload (so the same digest); the lock says which one verified.
    let good = c.signed(&c.key.0, &c.repository, &c.digest);
    let bad = c.signed(&mallory.0, &c.repository, &c.digest);
    assert_eq!(good.0, bad.0);
    let good_payload = good.0.clone();
    c.push_signatures("mixed", &[bad, good]);
    c.project.run(&["lock"]).success();
    assert!(c.project.read("images.lock").contains("layer-index = 1"));
    c.project.run(&["sync"]).success();
    c.project.run(&["verify"]).success();

    // Attacks on the result: the lock pointed at the other layer (same digest, the
    // untrusted signature), then the stored payload replaced by a link to a forged one.
    let lock = c.project.read("images.lock");
    c.project.write(
        "images.lock",
        &lock.replace("layer-index = 1", "layer-index = 0"),
    );
    for command in [&["verify"][..], &["sync", "--frozen", "--offline"]] {
        let run = c.project.run(command).failure(1);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            all.contains("not signed by a trusted key"),
            "{command:?}: {all}"
        );
    }
    c.project.write("images.lock", &lock);
    let stored = c
        .project
        .store()
        .join("blobs/sha256")
        .join(hex::encode(sha2::Sha256::digest(&good_payload)));
    let forged = c.work.join("forged-payload");
    std::fs::write(
        &forged,
        payload(&c.repository, &format!("sha256:{}", "ab".repeat(32))),
    )
    .expect("write");
    std::fs::remove_file(&stored).expect("rm payload");
    std::os::unix::fs::symlink(&forged, &stored).expect("plant a link");
    for command in [
        &["verify"][..],
        &["sync", "--frozen", "--offline"],
        &["export", "out.tar.zst"],
        &["render", "app", "rendered"],
    ] {
        let run = c.project.run(command);
        assert_ne!(
            run.code, 0,
            "{command:?} accepted a linked payload: {}",
            run.stderr
        );
    }
    assert!(!c.project.root().join("out.tar.zst").exists());
    assert!(!c.project.root().join("rendered").exists());
    // sync fetches the payload again, by its digest.
    std::fs::remove_file(&stored).expect("rm the link");
    c.project.run(&["sync"]).success();

    // Without `insecure-ignore-tlog`, a keyed signature needs a transparency-log entry.
    let manifest = c.project.read("images.toml");
    c.project.write(
        "images.toml",
        &manifest.replace("insecure-ignore-tlog = true\n", ""),
    );
    let run = c.project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("it has no transparency-log entry"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("insecure-ignore-tlog = true"),
        "{}",
        run.stderr
    );
    let run = c.project.run(&["verify"]).failure(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("it has no transparency-log entry"), "{all}");
}

#[test]
fn signature_swapped_on_the_registry_after_lock_is_refused_at_sync() {
    if !peers() {
        return;
    }
    let c = Cosign::new();
    let good = c.signed(&c.key.0, &c.repository, &c.digest);
    let payload_digest = hex::encode(sha2::Sha256::digest(&good.0));
    c.push_signatures("sig", &[good]);
    c.project.run(&["lock"]).success();
    // The registry's copy of the payload is replaced behind its back.
    let data = c
        .registry
        ._data
        .path()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&payload_digest[..2])
        .join(&payload_digest)
        .join("data");
    let forged = payload(&c.repository, &format!("sha256:{}", "cd".repeat(32)));
    std::fs::write(&data, &forged).expect("swap the payload");
    let run = c.project.run(&["sync"]).failure(1);
    assert!(run.stderr.contains(&payload_digest), "{}", run.stderr);
    // Nothing is stored under a name its bytes don't hash to.
    assert!(
        !c.project
            .store()
            .join("blobs/sha256")
            .join(&payload_digest)
            .exists()
    );
}

#[test]
fn a_hand_edited_signer_or_signed_digest_is_refused_offline() {
    if !peers() {
        return;
    }
    let c = Cosign::new();
    let good = c.signed(&c.key.0, &c.repository, &c.digest);
    c.push_signatures("sig", &[good]);
    c.project.run(&["lock"]).success();
    c.project.run(&["sync"]).success();
    let lock = c.project.read("images.lock");

    let other_key = format!("sha256:{}", "ee".repeat(32));
    c.project
        .write("images.lock", &lock.replace(&c.key.2, &other_key));
    let run = c.project.run(&["verify"]).failure(1);
    assert!(
        run.stdout.contains("but the lock says") || run.stderr.contains("but the lock says"),
        "{}{}",
        run.stdout,
        run.stderr
    );

    let signs = format!("signs = \"{}\"", c.digest);
    let other = format!("signs = \"sha256:{}\"", "ab".repeat(32));
    c.project
        .write("images.lock", &lock.replace(&signs, &other));
    let run = c.project.run(&["verify"]).failure(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("signs"), "{all}");

    // The trusted key replaced in images.toml: the pinned signature no longer verifies.
    let mallory = p256_key(&c.work.join("keys"), "mallory");
    std::fs::copy(&mallory.1, c.project.root().join("keys/cosign.pub")).expect("copy");
    c.project.write("images.lock", &lock);
    let run = c.project.run(&["verify"]).failure(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("not signed by a trusted key"), "{all}");
}

/// The independent producer (tests/sigstore/producer: sigstore-js with its mock Fulcio and
/// Rekor), when Node.js and its `npm ci` are there; fatal in CI when they are not.
fn producer() -> Option<PathBuf> {
    if !peer("node") {
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore/producer");
    if !dir.join("node_modules").is_dir() {
        assert!(
            std::env::var_os("IMAGELOCK_REQUIRE_PEERS").is_none_or(|v| v != "1"),
            "the Sigstore producer's packages are required (IMAGELOCK_REQUIRE_PEERS=1): run `npm ci --prefix tests/sigstore/producer` (.ci/run does)"
        );
        eprintln!("SKIPPED: run `npm ci --prefix tests/sigstore/producer` first");
        return None;
    }
    Some(dir.join("produce.mjs"))
}

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const SUBJECT: &str = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.0";

impl Cosign {
    /// Runs the producer on a job for this image; returns its summary (specs in its README).
    fn produce(
        &self,
        script: &Path,
        out: &str,
        signatures: serde_json::Value,
    ) -> serde_json::Value {
        self.produce_for(script, out, "acme/app", &self.digest, signatures)
    }

    fn produce_for(
        &self,
        script: &Path,
        out: &str,
        repository: &str,
        digest: &str,
        signatures: serde_json::Value,
    ) -> serde_json::Value {
        let job = serde_json::json!({
            "out": self.work.join(out),
            "registry": format!("http://{}", self.registry.host()),
            "repository": repository,
            "manifest": {"digest": digest},
            "signatures": signatures,
        });
        let file = self.work.join(format!("{out}.job.json"));
        std::fs::write(&file, job.to_string()).expect("write job");
        let run = Command::new("node")
            .arg(script)
            .arg(&file)
            .output()
            .expect("run node");
        assert!(
            run.status.success(),
            "producer: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        serde_json::from_slice(&run.stdout).expect("the producer's summary")
    }

    /// images.toml trusting `identities` (inline TOML) with the producer's root of `out`.
    fn trust_identities(&self, out: &str, identities: &str) {
        std::fs::copy(
            self.work.join(out).join("trusted_root.json"),
            self.project.root().join("keys/trusted_root.json"),
        )
        .expect("copy root");
        self.project.write(
            "images.toml",
            &format!(
                "[trust.\"{}/acme/\"]\nsigstore-identities = [{identities}]\ntrusted-root = \"keys/trusted_root.json\"\n\n[images.app]\ndocker = \"{}:v1\"\nplatforms = [\"linux/amd64\"]\n",
                self.registry.host(),
                self.repository
            ),
        );
        self.project.allow_plain_http(&self.registry.host());
    }
}

fn identity(subject: &str) -> serde_json::Value {
    serde_json::json!({"subject": subject, "issuer": ISSUER})
}

fn exact(subject: &str) -> String {
    format!("{{ issuer = \"{ISSUER}\", subject = \"{subject}\" }}")
}

#[test]
fn keyless_signatures_legacy_and_bundle_are_pinned_and_verified_offline_after_export() {
    let Some(script) = producer() else { return };
    if !peers() || !crate::harness::network_namespaces() {
        return;
    }
    let c = Cosign::new();
    // A legacy `.sig` keyless signature, logged in the (mock) Rekor.
    c.produce(
        &script,
        "legacy",
        serde_json::json!([{"name": "sig", "kind": "legacy", "identity": identity(SUBJECT)}]),
    );
    c.trust_identities("legacy", &exact(SUBJECT));
    c.project.run(&["lock"]).success();
    let lock = c.project.read("images.lock");
    assert!(lock.contains("kind = \"cosign\""), "{lock}");
    assert!(lock.contains(&format!("issuer = \"{ISSUER}\"")), "{lock}");
    assert!(lock.contains(&format!("subject = \"{SUBJECT}\"")), "{lock}");
    assert!(lock.contains("log-index = "), "{lock}");
    assert!(lock.contains("integrated-time = "), "{lock}");
    let root = hex::encode(sha2::Sha256::digest(
        std::fs::read(c.project.root().join("keys/trusted_root.json")).expect("root"),
    ));
    assert!(
        lock.contains(&format!("trusted-root = \"sha256:{root}\"")),
        "{lock}"
    );

    // cosign v3: a DSSE bundle attached as a referrer (the registry has no referrers API,
    // so the producer wrote the referrers tag schema's index too). A subject pattern.
    let mut layout = LayoutBuilder::new(&c.work.join("multi"));
    let amd = layout.layer(&[("arch", b"amd64\n")]);
    let arm = layout.layer(&[("arch", b"arm64\n")]);
    let amd = layout.image("linux", "amd64", &[amd]);
    let arm = layout.image("linux", "arm64", &[arm]);
    let index = layout.index(&[amd, arm]);
    layout.tag("v1", &index);
    let other = format!("{}/acme/multi", c.registry.host());
    skopeo_push(
        &layout.dir,
        "v1",
        &format!("{other}:v1"),
        &["--all", "--preserve-digests"],
    );
    let index_digest = index["digest"].as_str().expect("digest");
    c.produce_for(
        &script,
        "bundle",
        "acme/multi",
        index_digest,
        serde_json::json!([{"name": "b", "kind": "dsse", "identity": identity(SUBJECT)}]),
    );
    // Both runs' roots differ (the mock's keys live in one process): the bundle image's
    // prefix is the more specific one, with its own root.
    std::fs::copy(
        c.work.join("bundle/trusted_root.json"),
        c.project.root().join("keys/bundle_root.json"),
    )
    .expect("copy root");
    let manifest = c.project.read("images.toml");
    c.project.write(
        "images.toml",
        &format!(
            "{manifest}\n[trust.\"{other}\"]\nsigstore-identities = [{{ issuer = \"{ISSUER}\", subject-regexp = '^https://github\\.com/acme/.*@refs/tags/v' }}]\ntrusted-root = \"keys/bundle_root.json\"\n\n[images.multi]\ndocker = \"{other}:v1\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n"
        ),
    );
    c.project.run(&["lock"]).success();
    let lock = c.project.read("images.lock");
    assert!(lock.contains("kind = \"bundle\""), "{lock}");
    assert!(
        lock.contains(&format!("signs = \"{index_digest}\"")),
        "{lock}"
    );
    assert_eq!(lock.matches("[[image.sigstore]]").count(), 2, "{lock}");

    c.project.run(&["sync"]).success();
    c.project.run_without_network(&["verify"]).success();
    let bundle = c.work.join("images.tar.zst");
    c.project
        .run(&["export", bundle.to_str().expect("utf8")])
        .success();
    // The bundle carries the Sigstore roots, at their path under keys/ (not keys/keys/).
    let names = crate::bundle::entries(&bundle);
    for root in ["keys/trusted_root.json", "keys/bundle_root.json"] {
        assert!(names.iter().any(|n| n == root), "{names:?}");
    }

    // The air-gapped side: a fresh store, no network at all.
    let gapped = Project::new();
    gapped.write("images.toml", &c.project.read("images.toml"));
    gapped.write("images.lock", &c.project.read("images.lock"));
    for key in ["trusted_root.json", "bundle_root.json"] {
        gapped.write(
            &format!("keys/{key}"),
            &c.project.read(&format!("keys/{key}")),
        );
    }
    gapped
        .run_without_network(&[
            "sync",
            "--offline",
            "--from",
            bundle.to_str().expect("utf8"),
        ])
        .success();
    let run = gapped.run_without_network(&["verify"]).success();
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains(&format!("signed by {SUBJECT} from {ISSUER}")),
        "{all}"
    );
    assert_eq!(
        gapped.assert_store_valid(&gapped.store()),
        c.project.assert_store_valid(&c.project.store())
    );
}

#[test]
fn keyless_refusals_name_the_check_and_pin_nothing() {
    let Some(script) = producer() else { return };
    if !peers() {
        return;
    }
    let c = Cosign::new();
    let other_digest = format!("sha256:{}", "ab".repeat(32));
    let evil = "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main";
    let cases = [
        (
            serde_json::json!({"name": "s", "kind": "dsse", "identity": identity(evil)}),
            "which is not a trusted identity",
        ),
        (
            serde_json::json!({"name": "s", "kind": "dsse",
                "identity": {"subject": SUBJECT, "issuer": "https://accounts.example.com"}}),
            "which is not a trusted identity",
        ),
        (
            serde_json::json!({"name": "s", "kind": "dsse", "identity": identity(SUBJECT),
                "certificate_clock_offset": -3600}),
            "certificate",
        ),
        (
            serde_json::json!({"name": "s", "kind": "legacy", "identity": identity(SUBJECT),
                "digest": other_digest}),
            "is a signature of manifest",
        ),
    ];
    for (n, (signature, expected)) in cases.into_iter().enumerate() {
        // A fresh repository each time: signatures accumulate under one digest.
        let out = format!("case{n}");
        c.produce(&script, &out, serde_json::json!([signature]));
        c.trust_identities(&out, &exact(SUBJECT));
        let run = c.project.run(&["lock"]).failure(1);
        assert!(
            run.stderr.to_lowercase().contains(&expected.to_lowercase()),
            "case {n}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("image `app`"),
            "case {n}: {}",
            run.stderr
        );
        assert!(!c.project.root().join("images.lock").exists(), "case {n}");
        // Remove what was pushed: the next case starts with no signatures.
        delete_tag(&c, &format!("sha256-{}.sig", &c.digest["sha256:".len()..]));
        delete_tag(&c, &format!("sha256-{}", &c.digest["sha256:".len()..]));
    }
}

/// Deletes a tag's manifest from the test registry (its API allows deletes).
fn delete_tag(c: &Cosign, tag: &str) {
    let url = format!("http://{}/v2/acme/app/manifests/{tag}", c.registry.host());
    let head = Command::new("curl")
        .args(["-sfI", "-H", "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"])
        .arg(&url)
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&head.stdout);
    let Some(digest) = headers.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("docker-content-digest: ")
            .map(|d| d.trim().to_owned())
    }) else {
        return;
    };
    let status = Command::new("curl")
        .args(["-sf", "-X", "DELETE"])
        .arg(format!(
            "http://{}/v2/acme/app/manifests/{digest}",
            c.registry.host()
        ))
        .status()
        .expect("curl");
    assert!(status.success(), "delete {tag}");
}

#[test]
fn a_log_entry_for_other_content_and_an_edited_trusted_root_are_refused() {
    let Some(script) = producer() else { return };
    if !peers() {
        return;
    }
    let c = Cosign::new();
    // Two logged signatures by the trusted identity over different payloads; the layer
    // pushed carries one's signature and certificate with the other's Rekor entry.
    let summary = c.produce(
        &script,
        "pair",
        serde_json::json!([
            {"name": "a", "kind": "legacy", "identity": identity(SUBJECT), "push": false},
            {"name": "b", "kind": "legacy", "identity": identity(SUBJECT), "push": false,
             "optional": {"n": 2}},
        ]),
    );
    let read = |name: &str, what: &str| {
        std::fs::read(c.work.join("pair").join(format!("{name}.{what}"))).expect("producer file")
    };
    let annotations = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&read(name, "annotations.json")).expect("annotations")
    };
    let (a, b) = (annotations("a"), annotations("b"));
    let mut mixed = b.clone();
    mixed["dev.sigstore.cosign/bundle"] = a["dev.sigstore.cosign/bundle"].clone();
    assert!(
        summary["signatures"]
            .as_array()
            .is_some_and(|s| s.len() == 2)
    );
    c.push_layer("mixed", &read("b", "payload.json"), &mixed);
    c.trust_identities("pair", &exact(SUBJECT));
    let run = c.project.run(&["lock"]).failure(1);
    assert!(
        run.stderr
            .contains("artifact hash mismatch for hashedrekord entry"),
        "{}",
        run.stderr
    );

    // The honest signature verifies; then the root is edited after lock.
    c.push_layer("honest", &read("b", "payload.json"), &b);
    c.project.run(&["lock"]).success();
    c.project.run(&["sync"]).success();
    // Edited: the CA's validity widened (a root that would still verify the signature;
    // only the pin tells it from the one locked with).
    let root = c.project.read("keys/trusted_root.json");
    let mut parsed: serde_json::Value = serde_json::from_str(&root).expect("json");
    parsed["certificateAuthorities"][0]["validFor"]["start"] =
        serde_json::json!("2020-01-01T00:00:00Z");
    c.project.write(
        "keys/trusted_root.json",
        &serde_json::to_string(&parsed).expect("json"),
    );
    let run = c.project.run(&["verify"]).failure(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("the root was edited or replaced"), "{all}");
    // sync sees the lock as stale for the trust now, naming the root's two digests;
    // --frozen takes the lock as it is, and the pinned check refuses it.
    let run = c.project.run(&["sync", "--offline"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("trusted-root`: sha256:"),
        "{}",
        run.stderr
    );
    let run = c.project.run(&["sync", "--offline", "--frozen"]).failure(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("the root was edited or replaced"), "{all}");
}

/// The Sigstore client conformance suite (tests/sigstore/conformance-suite), its
/// verification cases, against imagelock's verifier (the `sigstore-conformance` example,
/// which `cargo test` builds), inside a network namespace: every case passes, including
/// those that rely on the built-in public-good root; the suite's venv comes from
/// `tests/sigstore/run.sh --install` (.ci/run).
#[test]
fn conformance_suite_verify_cases_pass_offline() {
    if !crate::harness::network_namespaces() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = std::env::var_os("SIGSTORE_CONFORMANCE").map_or_else(
        || repo.join("tests/sigstore/conformance-suite"),
        PathBuf::from,
    );
    // target/debug/imagelock → target/
    let binary = Path::new(env!("CARGO_BIN_EXE_imagelock"));
    let profile = binary.parent().expect("the profile directory");
    let target = profile.parent().expect("the target directory");
    let pytest = target.join("sigstore-conformance-venv/bin/pytest");
    let entrypoint = profile.join("examples/sigstore-conformance");
    if !pytest.is_file() {
        assert!(
            std::env::var_os("IMAGELOCK_REQUIRE_PEERS").is_none_or(|v| v != "1"),
            "the conformance suite's venv is required (IMAGELOCK_REQUIRE_PEERS=1): run `tests/sigstore/run.sh --install` (.ci/run does)"
        );
        eprintln!("SKIPPED: run `tests/sigstore/run.sh --install` first");
        return;
    }
    assert!(
        entrypoint.is_file(),
        "cargo test builds the example: {}",
        entrypoint.display()
    );
    let out = Command::new("unshare")
        .arg("--net")
        .arg(&pytest)
        .args([
            "test",
            "--skip-signing",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
        ])
        .arg(format!("--entrypoint={}", entrypoint.display()))
        .current_dir(&suite)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "conformance suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The summary line, e.g. "140 passed, 6 skipped in 30.1s": nothing failed, and the
    // skips are the signing cases (and the one needing a GitHub workspace), never a
    // verification case.
    let summary = stdout.lines().last().unwrap_or_default();
    let count = |what: &str| -> usize {
        summary
            .split(", ")
            .find_map(|part| part.trim_start_matches('=').trim().strip_suffix(what))
            .and_then(|n| n.split_whitespace().last()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(count(" passed") >= 140, "{summary}\n{stdout}");
    assert_eq!(count(" failed"), 0, "{summary}");
    for line in stdout.lines().filter(|l| l.starts_with("SKIPPED")) {
        assert!(
            line.contains("sign") || line.contains("GITHUB"),
            "a verification case was skipped: {line}"
        );
    }
}

/// `push` puts the pinned signature artifacts beside their images on a mirror (cosign's
/// tag; a bundle as a referrer, through the referrers tag schema's index on a registry
/// without the API), and a fresh store syncs them back from the mirror alone.
#[test]
fn signatures_go_to_a_mirror_and_a_fresh_store_syncs_them_from_it() {
    let Some(script) = producer() else { return };
    if !peers() {
        return;
    }
    let mut c = Cosign::new();
    let mirror = Registry::start(RegistryOptions::default());
    // `acme/app`: a keyless DSSE bundle (cosign v3) by the producer.
    c.produce(
        &script,
        "bundle",
        serde_json::json!([{"name": "b", "kind": "dsse", "identity": identity(SUBJECT)}]),
    );
    c.trust_identities("bundle", &exact(SUBJECT));
    // `other/tool`: a keyed cosign `.sig` signature by openssl.
    let mut layout = LayoutBuilder::new(&c.work.join("tool"));
    let layer = layout.layer(&[("tool", b"tool\n")]);
    let image = layout.image("linux", "amd64", &[layer]);
    layout.tag("v1", &image);
    let tool = format!("{}/other/tool", c.registry.host());
    skopeo_push(&layout.dir, "v1", &format!("{tool}:v1"), &[]);
    let tool_digest = image["digest"].as_str().expect("digest").to_owned();
    let (payload, signature) = c.signed(&c.key.0, &tool, &tool_digest);
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "dev.cosignproject.cosign/signature".into(),
        signature.into(),
    );
    let saved = (c.repository.clone(), c.digest.clone());
    (c.repository, c.digest) = (tool.clone(), tool_digest.clone());
    c.push_layer("toolsig", &payload, &serde_json::Value::Object(annotations));
    (c.repository, c.digest) = saved;
    let manifest = c.project.read("images.toml");
    c.project.write(
        "images.toml",
        &format!(
            "{manifest}\n[trust.\"{tool}\"]\nsigstore-keys = [\"keys/cosign.pub\"]\ninsecure-ignore-tlog = true\n\n[images.tool]\ndocker = \"{tool}:v1\"\nplatforms = [\"linux/amd64\"]\n\n[registries.\"{}\"]\ninsecure-http = true\n",
            mirror.host()
        ),
    );
    c.project.run(&["lock"]).success();
    let lock = c.project.read("images.lock");
    assert!(
        lock.contains("kind = \"bundle\"") && lock.contains("kind = \"cosign\""),
        "{lock}"
    );
    c.project.run(&["sync"]).success();

    let prefix = format!("{}/mirror", mirror.host());
    c.project.run(&["push", &prefix]).success();
    let origin = c.registry.host().replace(':', "_");
    let inspect = |reference: &str| {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{prefix}/{origin}/{reference}"))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "{reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sig = inspect(&format!("other/tool:sha256-{}.sig", &tool_digest[7..]));
    assert!(sig.contains("dev.cosignproject.cosign/signature"), "{sig}");
    let referrers = inspect(&format!("acme/app:sha256-{}", &c.digest[7..]));
    assert!(
        referrers.contains("application/vnd.dev.sigstore.bundle.v0.3+json"),
        "{referrers}"
    );
    // Pushing again puts nothing new.
    let again = c.project.run(&["push", &prefix, "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(report["pushed"]["uploaded"], 0, "{report}");
    assert_eq!(report["pushed"]["manifests"], 0, "{report}");

    c.registry.stop();
    let fresh = c.project.dir.path().join("fresh");
    let fresh_arg = fresh.to_str().expect("utf8");
    c.project
        .run(&[
            "sync",
            "--store",
            fresh_arg,
            "--mirror",
            &prefix,
            "--mirror-only",
        ])
        .success();
    assert_eq!(
        c.project.assert_store_valid(&fresh),
        c.project.assert_store_valid(&c.project.store())
    );
    let run = c.project.run(&["verify", "--store", fresh_arg]).success();
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains(&format!("signed by {SUBJECT} from {ISSUER}")),
        "{all}"
    );
    assert!(all.contains(&format!("signed by key {}", c.key.2)), "{all}");
}

/// A lock entry rewritten to another signed image of the same prefix (its reference,
/// digests and signature, under the first entry's id, request and entry hash): every
/// signature is valid, and `verify` still refuses it, naming what images.toml asks for.
#[test]
fn a_lock_entry_moved_to_another_signed_image_is_refused_by_verify() {
    if !peers() {
        return;
    }
    let c = Cosign::new();
    let good = c.signed(&c.key.0, &c.repository, &c.digest);
    c.push_signatures("sig", &[good]);
    // A second signed image under the same prefix.
    let mut layout = LayoutBuilder::new(&c.work.join("other"));
    let layer = layout.layer(&[("other", b"other\n")]);
    let image = layout.image("linux", "amd64", &[layer]);
    layout.tag("v1", &image);
    let other = format!("{}/acme/other", c.registry.host());
    skopeo_push(&layout.dir, "v1", &format!("{other}:v1"), &[]);
    let other_digest = image["digest"].as_str().expect("digest").to_owned();
    let (payload, signature) = c.signed(&c.key.0, &other, &other_digest);
    let annotations = serde_json::json!({"dev.cosignproject.cosign/signature": signature});
    let tagged = Cosign {
        repository: other.clone(),
        digest: other_digest,
        ..c
    };
    tagged.push_layer("othersig", &payload, &annotations);
    let c = tagged;
    let manifest = c.project.read("images.toml");
    c.project.write(
        "images.toml",
        &format!(
            "{manifest}\n[images.other]\ndocker = \"{other}:v1\"\nplatforms = [\"linux/amd64\"]\n"
        ),
    );
    c.project.run(&["lock"]).success();
    c.project.run(&["sync"]).success();
    c.project.run(&["verify"]).success();

    // `app`'s block becomes `other`'s pins under `app`'s id, request and entry hash.
    let lock = c.project.read("images.lock");
    let blocks: Vec<&str> = lock.split("\n[[image]]\n").collect();
    let app = blocks
        .iter()
        .find(|b| b.starts_with("id = \"app\""))
        .expect("app");
    let theirs = blocks
        .iter()
        .find(|b| b.starts_with("id = \"other\""))
        .expect("other");
    let keep = |block: &str, key: &str| {
        block
            .lines()
            .find(|l| l.starts_with(key))
            .expect("key")
            .to_owned()
    };
    let mut forged = theirs.to_string();
    for key in ["id = ", "request = ", "entry-hash = "] {
        forged = forged.replace(&keep(theirs, key), &keep(app, key));
    }
    let edited = lock.replace(app, &forged);
    c.project.write("images.lock", &edited);
    let run = c.project.run(&["verify"]).failure(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("images.lock pins something else than [images.app] asks for"),
        "{all}"
    );
    assert!(all.contains(&format!("{other}:v1")), "{all}");
}
