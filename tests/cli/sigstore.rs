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
                "[trust.\"{}/acme/\"]\nsigstore-keys = [\"{key_file}\"]\n\n[images.app]\ndocker = \"{}:v1\"\nplatforms = [\"linux/amd64\"]\n",
                self.registry.host(),
                self.repository
            ),
        );
        self.project.allow_plain_http(&self.registry.host());
    }

    /// Pushes a cosign `.sig` manifest for the image, one layer per (payload, signature).
    fn push_signatures(&self, name: &str, signatures: &[(Vec<u8>, String)]) {
        let mut layout = LayoutBuilder::new(&self.work.join(name));
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (payload, signature) in signatures {
            let mut layer =
                layout.blob(payload, "application/vnd.dev.cosign.simplesigning.v1+json");
            layer["annotations"] =
                serde_json::json!({"dev.cosignproject.cosign/signature": signature});
            diff_ids.push(layer["digest"].clone());
            layers.push(layer);
        }
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
            "layers": layers,
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
    // Appended by a later signer: one good signature among bad ones suffices.
    let good = c.signed(&c.key.0, &c.repository, &c.digest);
    let bad = c.signed(&mallory.0, &c.repository, &c.digest);
    c.push_signatures("mixed", &[bad, good]);
    c.project.run(&["lock"]).success();
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
