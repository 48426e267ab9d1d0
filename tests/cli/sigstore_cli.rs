//! The Sigstore side of the everyday commands: `trust add` / `trust` / `trust remove`
//! with Sigstore keys (PEM public keys made by `openssl` at test time: P-256, Ed25519,
//! RSA 2048), keyless identities and a trusted root; their refusals; and `list`,
//! `inspect` and `diff` over a hand-written lock holding `[[image.sigstore]]` entries
//! (inspect reads the certificates from blobs written into a store by hand: the
//! conformance suite's keyless bundle, and a cosign artifact manifest carrying that
//! bundle's certificate in its annotation). No network and no registry: insta snapshots
//! of the real binary, with paths, digests and fingerprints filtered.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

use crate::harness::{Project, Run, peer};

const GITHUB: &str = "https://token.actions.githubusercontent.com";
/// The conformance suite's beacon workflow, which signed `keyless.sigstore.json`.
const BEACON: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sigstore/fixtures");

/// Snapshots `run` (exit code, stdout, stderr) with what varies between runs replaced.
#[track_caller]
fn snapshot(name: &str, project: &Project, run: &Run) {
    let text = crate::harness::run_text(run);
    let filters = [
        (
            crate::harness::regex_escape(&project.root().display().to_string()),
            "[PROJECT]",
        ),
        (
            crate::harness::regex_escape(&project.dir.path().display().to_string()),
            "[TMP]",
        ),
        (r"sha256:[0-9a-f]{64}".to_owned(), "sha256:[DIGEST]"),
        (r"sha256:[0-9a-f]{12}\b".to_owned(), "sha256:[SHORT12HEX]"),
        (r"\b[0-9a-f]{64}\b".to_owned(), "[HEX]"),
    ];
    crate::harness::assert_snapshot_filtered(name, &text, &filters);
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// A throwaway TEST-ONLY key pair made by openssl in `dir`; returns the PEM public key's path.
fn openssl_key(dir: &Path, name: &str, genkey: &[&str]) -> PathBuf {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut args = genkey.to_vec();
    let private_arg = private.display().to_string();
    args.extend(["-out", &private_arg]);
    run(&args);
    run(&[
        "pkey",
        "-in",
        &private_arg,
        "-pubout",
        "-out",
        &public.display().to_string(),
    ]);
    public
}

/// P-256, Ed25519 and RSA 2048 public keys, outside the project.
fn openssl_keys(project: &Project) -> [PathBuf; 3] {
    let dir = project.dir.path().join("made-by-openssl");
    std::fs::create_dir_all(&dir).expect("mkdir");
    [
        openssl_key(
            &dir,
            "p256",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
        openssl_key(&dir, "ed25519", &["genpkey", "-algorithm", "ed25519"]),
        openssl_key(
            &dir,
            "rsa",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
    ]
}

/// The fingerprint imagelock gives a PEM public key: `sha256:` of its DER form.
fn fingerprint(public: &Path) -> String {
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-in"])
        .arg(public)
        .args(["-outform", "DER"])
        .output()
        .expect("run openssl");
    assert!(out.status.success());
    sha256(&out.stdout)
}

const MANIFEST: &str =
    "# Images for the acme app.\n\n[images.app]  # the app\ndocker = \"ghcr.io/acme/app:1.2.0\"\n";

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn trust_add_list_and_remove_sigstore_signers() {
    if !peer("openssl") {
        return;
    }
    let project = Project::new();
    project.write("images.toml", MANIFEST);
    let [p256, ed25519, rsa] = openssl_keys(&project);

    let run = project
        .run(&[
            "trust",
            "add",
            "ghcr.io/acme/",
            "--sigstore-key",
            path(&p256),
        ])
        .success();
    snapshot("sigstore_trust_add_key", &project, &run);
    let hex = fingerprint(&p256)
        .strip_prefix("sha256:")
        .expect("sha256")
        .to_owned();
    let copied = format!("keys/sigstore-{hex}.pub");
    assert_eq!(
        project.read(&copied),
        std::fs::read_to_string(&p256).expect("read"),
        "the key file is copied into the repository as it was"
    );
    assert_eq!(
        project.read("images.toml"),
        format!(
            "# Images for the acme app.\n\n[trust.\"ghcr.io/acme/\"]\nsigstore-keys = [\"{copied}\"]\n\n[images.app]  # the app\ndocker = \"ghcr.io/acme/app:1.2.0\"\n"
        )
    );

    // The same key again, from the copy or from the original: nothing changes.
    let before = project.read("images.toml");
    for again in [path(&p256), copied.as_str()] {
        let run = project
            .run(&["trust", "add", "ghcr.io/acme/", "--sigstore-key", again])
            .success();
        assert!(
            run.stderr.contains("Already trusted: Sigstore key"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("imagelock lock"), "{}", run.stderr);
    }
    assert_eq!(project.read("images.toml"), before);

    let regexp = r"^[a-z]+@acme\.com$";
    let root = format!("{FIXTURES}/custom.trusted_root.json");
    let add = ["trust", "add", "ghcr.io/acme/"];
    let keys = [
        "--sigstore-key",
        path(&ed25519),
        "--sigstore-key",
        path(&rsa),
    ];
    let signers = [
        "--identity",
        GITHUB,
        BEACON,
        "--identity-regexp",
        "https://accounts.google.com",
        regexp,
        "--trusted-root",
        &root,
    ];
    let run = project.run(&[&add[..], &keys, &signers].concat()).success();
    snapshot("sigstore_trust_add_more", &project, &run);
    let after = project.read("images.toml");
    let again = project.run(&[&add[..], &signers].concat()).success();
    assert_eq!(project.read("images.toml"), after, "{}", again.stderr);
    assert_eq!(
        again.stderr.matches("Already trusted").count(),
        3,
        "{}",
        again.stderr
    );

    // The manifest reads as written by hand, and a second prefix trusts the built-in root.
    let run = project
        .run(&[
            "trust",
            "add",
            "docker.io/acme/",
            "--identity",
            GITHUB,
            BEACON,
        ])
        .success();
    assert!(
        run.stderr.contains("Trusted keyless signer"),
        "{}",
        run.stderr
    );
    let run = project.run(&["trust"]).success();
    snapshot("sigstore_trust_list", &project, &run);
    let run = project.run(&["trust", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let acme = &json["trust"]["prefixes"][1];
    assert_eq!(acme["prefix"], "ghcr.io/acme/");
    assert_eq!(acme["sigstore_keys"].as_array().map(Vec::len), Some(3));
    assert_eq!(acme["sigstore_keys"][0]["fingerprint"], fingerprint(&p256));
    assert_eq!(acme["sigstore_identities"][0]["subject"], BEACON);
    assert_eq!(acme["sigstore_identities"][1]["subject_regexp"], regexp);
    let custom = std::fs::read(format!("{FIXTURES}/custom.trusted_root.json")).expect("read");
    assert_eq!(acme["trusted_root"]["digest"], sha256(&custom));
    let builtin = &json["trust"]["prefixes"][0]["trusted_root"];
    assert_eq!(builtin["file"], serde_json::Value::Null);
    assert!(
        builtin["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );

    // Another root, inside the repository: listed where it is, replacing the first.
    let pretty: serde_json::Value = serde_json::from_slice(&custom).expect("JSON");
    project.write(
        "roots/custom.json",
        &serde_json::to_string_pretty(&pretty).expect("JSON"),
    );
    let run = project
        .run(&[
            "trust",
            "add",
            "ghcr.io/acme/",
            "--trusted-root",
            "roots/custom.json",
        ])
        .success();
    snapshot("sigstore_trust_replace_root", &project, &run);
    assert!(
        project
            .read("images.toml")
            .contains("trusted-root = \"roots/custom.json\"\n")
    );
    let run = project
        .run(&[
            "trust",
            "add",
            "ghcr.io/acme/",
            "--trusted-root",
            &format!("{FIXTURES}/custom.trusted_root.json"),
        ])
        .success();
    assert!(
        run.stderr.contains("replacing roots/custom.json"),
        "{}",
        run.stderr
    );

    // A lock pinning images signed under the prefix: `trust` shows who signed them, and
    // removals name them.
    project.write(
        "images.lock",
        &signed_lock(&fingerprint(&ed25519), &sha256(&custom)),
    );
    let run = project.run(&["trust"]).success();
    assert!(
        run.stdout.contains(&format!(
            "  covers app (ghcr.io/acme/app): signed by {BEACON} from {GITHUB}, key {}\n",
            fingerprint(&ed25519)
        )),
        "{}",
        run.stdout
    );
    let short = &fingerprint(&ed25519)["sha256:".len().."sha256:".len() + 12];
    let run = project
        .run(&["trust", "remove", "ghcr.io/acme/", "--sigstore-key", short])
        .success();
    snapshot("sigstore_trust_remove_key", &project, &run);
    let run = project
        .run(&[
            "trust",
            "remove",
            "ghcr.io/acme/",
            "--identity",
            GITHUB,
            BEACON,
        ])
        .success();
    snapshot("sigstore_trust_remove_identity", &project, &run);
    let run = project
        .run(&["trust", "remove", "ghcr.io/acme/", "--trusted-root"])
        .success();
    snapshot("sigstore_trust_remove_root", &project, &run);
    let manifest = project.read("images.toml");
    assert!(!manifest.contains("trusted-root"), "{manifest}");
    let run = project.run(&["trust", "remove", "ghcr.io/acme/"]).success();
    snapshot("sigstore_trust_remove_prefix", &project, &run);
    assert_eq!(
        project.read("images.toml"),
        format!(
            "# Images for the acme app.\n\n[trust.\"docker.io/acme/\"]\nsigstore-identities = [\n    {{ issuer = \"{GITHUB}\", subject = \"{BEACON}\" }},\n]\n\n[images.app]  # the app\ndocker = \"ghcr.io/acme/app:1.2.0\"\n"
        )
    );
}

#[test]
fn trust_add_refuses_what_cannot_verify_anything() {
    let project = Project::new();
    project.write("images.toml", MANIFEST);
    project.write(
        "not-a-key.pub",
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    );
    project.write("plain.txt", "hello\n");
    project.write(
        "root.json",
        "{\"mediaType\": \"application/vnd.dev.sigstore.trustedroot+json;version=0.1\"}\n",
    );
    project.write("broken.json", "{\"mediaType\": ");
    let cases: [(&str, &[&str]); 7] = [
        (
            "sigstore_refuse_bad_pem",
            &["--sigstore-key", "not-a-key.pub"],
        ),
        ("sigstore_refuse_not_pem", &["--sigstore-key", "plain.txt"]),
        (
            "sigstore_refuse_missing_key",
            &["--sigstore-key", "nowhere.pub"],
        ),
        (
            "sigstore_refuse_bad_regexp",
            &[
                "--identity-regexp",
                "https://accounts.google.com",
                "^(dev@acme.com",
            ],
        ),
        (
            "sigstore_refuse_swapped_identity",
            &[
                "--identity",
                BEACON
                    .split('@')
                    .next()
                    .expect("x")
                    .trim_start_matches("https://"),
                GITHUB,
            ],
        ),
        (
            "sigstore_refuse_empty_root",
            &["--trusted-root", "root.json"],
        ),
        (
            "sigstore_refuse_bad_root",
            &["--trusted-root", "broken.json"],
        ),
    ];
    for (name, flags) in cases {
        let mut args = vec!["trust", "add", "ghcr.io/acme/"];
        args.extend(flags);
        let run = project.run(&args);
        assert_ne!(run.code, 0, "{name}");
        snapshot(name, &project, &run);
        assert_eq!(
            project.read("images.toml"),
            MANIFEST,
            "{name}: nothing written"
        );
        assert!(
            !project.root().join("keys").exists(),
            "{name}: nothing copied"
        );
    }
    // A good key with a bad one: nothing at all is written.
    if peer("openssl") {
        let [p256, _, _] = openssl_keys(&project);
        let run = project.run(&[
            "trust",
            "add",
            "ghcr.io/acme/",
            "--sigstore-key",
            path(&p256),
            "--trusted-root",
            "root.json",
        ]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(project.read("images.toml"), MANIFEST);
        assert!(!project.root().join("keys").exists());
    }
    // Removing what is not there says what is.
    project.write(
        "images.toml",
        &format!("[trust.\"ghcr.io/acme/\"]\nsigstore-identities = [{{ issuer = \"{GITHUB}\", subject = \"{BEACON}\" }}]\n\n{MANIFEST}"),
    );
    let run = project
        .run(&[
            "trust",
            "remove",
            "ghcr.io/acme/",
            "--identity",
            GITHUB,
            "someone-else",
        ])
        .failure(2);
    snapshot("sigstore_remove_unknown_identity", &project, &run);
    let run = project
        .run(&[
            "trust",
            "remove",
            "ghcr.io/acme/",
            "--sigstore-key",
            "sha256:0123456789ab",
        ])
        .failure(2);
    snapshot("sigstore_remove_unknown_key", &project, &run);
    let run = project
        .run(&["trust", "remove", "ghcr.io/acme/", "--trusted-root"])
        .failure(2);
    snapshot("sigstore_remove_no_root", &project, &run);
}

/// The conformance suite's keyless bundle, its certificate (base64 DER) and log entry.
fn keyless_bundle() -> (Vec<u8>, String, u64, i64) {
    let bytes = std::fs::read(format!("{FIXTURES}/keyless.sigstore.json")).expect("read");
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    let material = &json["verificationMaterial"];
    let certificate = material["certificate"]["rawBytes"]
        .as_str()
        .expect("a v0.3 bundle")
        .to_owned();
    let entry = &material["tlogEntries"][0];
    let number = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .expect("a number")
    };
    let log_index = u64::try_from(number(&entry["logIndex"])).expect("positive");
    (
        bytes,
        certificate,
        log_index,
        number(&entry["integratedTime"]),
    )
}

/// A cosign `.sig` manifest whose one layer carries `certificate` (base64 DER) as PEM, if given.
fn cosign_manifest(payload: &[u8], certificate: Option<&str>) -> Vec<u8> {
    let mut annotations =
        serde_json::json!({ "dev.cosignproject.cosign/signature": "c2lnbmF0dXJl" });
    if let Some(certificate) = certificate {
        annotations["dev.sigstore.cosign/certificate"] =
            format!("-----BEGIN CERTIFICATE-----\n{certificate}\n-----END CERTIFICATE-----\n")
                .into();
    }
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(b"{}"),
            "size": 2,
        },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": sha256(payload),
            "size": payload.len(),
            "annotations": annotations,
        }],
    })
    .to_string()
    .into_bytes()
}

const PAYLOAD: &[u8] = b"{\"critical\":{\"type\":\"cosign container image signature\"}}";

fn blob(bytes: &[u8], media_type: &str) -> String {
    format!(
        "{{ digest = \"{}\", size = {}, media-type = \"{media_type}\" }}",
        sha256(bytes),
        bytes.len()
    )
}

/// A lock pinning `app` (an index of two platform manifests) with Sigstore signatures:
/// a keyless bundle on the index (the conformance bundle), a keyless cosign signature
/// on linux/arm64 and a keyed one (by `key`) on linux/amd64; `root` verified them.
fn signed_lock(key: &str, root: &str) -> String {
    lock_with(&[
        bundle_entry(root),
        cosign_entry("linux/arm64", None),
        cosign_entry("linux/amd64", Some(key)),
    ])
}

fn lock_with(sigstore: &[String]) -> String {
    let mut out = String::from(
        "# This file is @generated by imagelock. It is not intended for manual editing.\n# Change images.toml and run `imagelock lock` instead.\nversion = 1\n\n[[image]]\nid = \"app\"\nsource = \"docker\"\nrequest = \"ghcr.io/acme/app:1.2.0\"\n",
    );
    out.push_str(&format!(
        "entry-hash = \"{}\"\nverified = true\nregistry = \"https://ghcr.io\"\nreference = \"ghcr.io/acme/app:1.2.0\"\nindex = {}\n",
        sha256(b"entry"),
        blob(b"index", "application/vnd.oci.image.index.v1+json")
    ));
    for platform in ["linux/amd64", "linux/arm64"] {
        out.push_str(&format!(
            "\n[[image.manifest]]\nplatform = \"{platform}\"\ndigest = \"{}\"\nsize = 400\nmedia-type = \"application/vnd.oci.image.manifest.v1+json\"\nconfig = {}\nlayers = [\n    {},\n]\n",
            sha256(platform.as_bytes()),
            blob(format!("config {platform}").as_bytes(), "application/vnd.oci.image.config.v1+json"),
            blob(format!("layer {platform}").as_bytes(), "application/vnd.oci.image.layer.v1.tar+gzip"),
        ));
    }
    for entry in sigstore {
        out.push_str(entry);
    }
    out
}

fn bundle_entry(root: &str) -> String {
    let (bundle, _, log_index, integrated_time) = keyless_bundle();
    let manifest = b"the bundle's referrer manifest";
    format!(
        "\n[[image.sigstore]]\nkind = \"bundle\"\nsigns = \"{}\"\nprefix = \"ghcr.io/acme/\"\nmanifest = {}\nconfig = {}\nlayers = [\n    {},\n]\nlayer = \"{}\"\nissuer = \"{GITHUB}\"\nsubject = \"{BEACON}\"\nlog-index = {log_index}\nintegrated-time = {integrated_time}\ntrusted-root = \"{root}\"\n",
        sha256(b"index"),
        blob(manifest, "application/vnd.oci.image.manifest.v1+json"),
        blob(b"{}", "application/vnd.oci.empty.v1+json"),
        blob(&bundle, "application/vnd.dev.sigstore.bundle.v0.3+json"),
        sha256(&bundle),
    )
}

fn cosign_entry(platform: &str, key: Option<&str>) -> String {
    let (_, certificate, _, _) = keyless_bundle();
    let manifest = cosign_manifest(PAYLOAD, key.is_none().then_some(certificate.as_str()));
    let signer = match key {
        Some(key) => format!("key = \"{key}\"\n"),
        None => format!(
            "issuer = \"{GITHUB}\"\nsubject = \"{BEACON}\"\nlog-index = 7\nintegrated-time = 1710869186\ntrusted-root = \"{}\"\n",
            sha256(b"another root")
        ),
    };
    format!(
        "\n[[image.sigstore]]\nkind = \"cosign\"\nsigns = \"{}\"\nprefix = \"ghcr.io/acme/\"\nmanifest = {}\nconfig = {}\nlayers = [\n    {},\n]\nlayer = \"{}\"\n{signer}",
        sha256(platform.as_bytes()),
        blob(&manifest, "application/vnd.oci.image.manifest.v1+json"),
        blob(b"{}", "application/vnd.oci.image.config.v1+json"),
        blob(PAYLOAD, "application/vnd.dev.cosign.simplesigning.v1+json"),
        sha256(PAYLOAD),
    )
}

/// Writes `bytes` into the project's default store under their digest (a store made by hand).
fn store_blob(project: &Project, bytes: &[u8]) {
    let store = project.store();
    std::fs::create_dir_all(store.join("blobs/sha256")).expect("mkdir");
    std::fs::write(store.join("imagelock.lock"), b"").expect("marker");
    let hex = sha256(bytes)["sha256:".len()..].to_owned();
    std::fs::write(store.join("blobs/sha256").join(hex), bytes).expect("write blob");
}

#[test]
fn list_inspect_and_diff_name_sigstore_signers() {
    let project = Project::new();
    let key = format!("sha256:{}", "ab".repeat(32));
    project.write(
        "images.toml",
        &format!("[trust.\"ghcr.io/acme/\"]\nsigstore-identities = [{{ issuer = \"{GITHUB}\", subject = \"{BEACON}\" }}]\n\n{MANIFEST}"),
    );
    // The built-in root's digest, as `trust --json` gives it.
    let run = project.run(&["trust", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let public_good = json["trust"]["prefixes"][0]["trusted_root"]["digest"]
        .as_str()
        .expect("the built-in root's digest")
        .to_owned();
    project.write("images.lock", &signed_lock(&key, &public_good));

    let run = project.run(&["list"]).success();
    snapshot("sigstore_list", &project, &run);
    let run = project.run(&["list", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let signers = &json["images"][0]["sigstore_signed_by"];
    assert_eq!(signers.as_array().map(Vec::len), Some(2), "{signers}");
    assert_eq!(signers[0]["issuer"], GITHUB);
    assert_eq!(signers[0]["subject"], BEACON);
    assert_eq!(signers[1]["key"], key.as_str());

    let run = project.run(&["inspect", "app"]).success();
    snapshot("sigstore_inspect_not_synced", &project, &run);

    let (bundle, certificate, _, _) = keyless_bundle();
    store_blob(&project, &bundle);
    store_blob(&project, &cosign_manifest(PAYLOAD, Some(&certificate)));
    let run = project.run(&["inspect", "app"]).success();
    snapshot("sigstore_inspect", &project, &run);
    let run = project.run(&["inspect", "app", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let sigstore = &json["sigstore"];
    assert_eq!(sigstore[0]["kind"], "bundle");
    assert_eq!(sigstore[0]["signs_what"], "index");
    assert_eq!(sigstore[0]["certificate"]["state"], "present");
    assert_eq!(sigstore[0]["certificate"]["issuer"], GITHUB);
    assert_eq!(sigstore[0]["certificate"]["subject"], BEACON);
    assert_eq!(
        sigstore[0]["trusted_root_origin"],
        "the built-in Sigstore public-good root"
    );
    assert_eq!(sigstore[1]["signs_what"], "manifest linux/arm64");
    assert_eq!(sigstore[1]["certificate"]["subject"], BEACON);
    assert_eq!(sigstore[2]["certificate"]["state"], "none");

    // A stored blob that is not what its name says is not read.
    let manifest = cosign_manifest(PAYLOAD, Some(&certificate));
    let name = &sha256(&manifest)["sha256:".len()..];
    let mut swapped = manifest.clone();
    swapped.reverse();
    std::fs::write(project.store().join("blobs/sha256").join(name), &swapped).expect("write");
    let run = project.run(&["inspect", "app"]).success();
    assert!(
        run.stdout.contains("UNREADABLE: the stored sha256:")
            && run.stdout.contains("does not match its digest"),
        "{}",
        run.stdout
    );

    // The index was signed with a key before; the lock now pins a keyless signature.
    let old = lock_with(&[format!(
        "{}key = \"{key}\"\n",
        bundle_entry(&public_good)
            .split("issuer = ")
            .next()
            .expect("the entry up to its signer")
    )]);
    project.write("old.lock", &old);
    project.write("images.lock", &lock_with(&[bundle_entry(&public_good)]));
    let run = project.run(&["diff", "old.lock"]).success();
    snapshot("sigstore_diff_signer", &project, &run);
    let run = project.run(&["diff", "old.lock", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let changes = &json["images"][0]["changes"];
    assert_eq!(changes[0]["field"], "signed by");
    assert_eq!(changes[0]["new"], format!("{BEACON} from {GITHUB}"));
}
