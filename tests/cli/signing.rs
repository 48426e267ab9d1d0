//! Signed OCI images: simple signatures made by real `skopeo copy --sign-by`
//! with real gpg keys, into a real `docker-registry`, published from the
//! lookaside directory skopeo writes by nginx over HTTPS; and a cross-check
//! against what skopeo itself accepts with a `signedBy` policy.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{LayoutBuilder, Project, Registry, RegistryOptions, peer};
use crate::peers::{Certs, Gpg, Nginx};

fn peers() -> bool {
    peer("docker-registry") && peer("skopeo") && peer("nginx") && peer("gpg") && peer("openssl")
}

/// A registry, a lookaside store skopeo writes and nginx serves at
/// `https://sigs.example.com/sigstore`, and gpg keys: `release` (RSA),
/// `edkey` (Ed25519), `mallory` (untrusted).
struct Signing {
    project: Project,
    registry: Registry,
    nginx: Nginx,
    gpg: Gpg,
    layout: PathBuf,
    registries_d: PathBuf,
    sigstore: PathBuf,
    release: String,
    edkey: String,
    mallory: String,
    work: PathBuf,
}

impl Signing {
    fn new() -> Signing {
        let mut project = Project::new();
        let work = project.dir.path().join("work");
        let certs = Certs::generate(&work.join("certs"), &["sigs.example.com"]);
        let nginx = Nginx::start(&work.join("nginx"), &certs, "");
        let registry = Registry::start(RegistryOptions::default());
        let gpg = Gpg::new(&work.join("gnupg"));
        let release = gpg.generate("release@example.com", "rsa3072", "1y", None);
        let edkey = gpg.generate("edkey@example.com", "ed25519", "1y", None);
        let mallory = gpg.generate("mallory@example.com", "ed25519", "1y", None);
        let sigstore = nginx.root.join("sigstore");
        std::fs::create_dir_all(&sigstore).expect("mkdir sigstore");
        let registries_d = work.join("registries.d");
        std::fs::create_dir_all(&registries_d).expect("mkdir registries.d");
        std::fs::write(
            registries_d.join("test.yaml"),
            format!(
                "docker:\n  {}:\n    lookaside: file://{}\n",
                registry.host(),
                sigstore.display()
            ),
        )
        .expect("write registries.d");
        for (name, email) in [
            ("release", "release@example.com"),
            ("edkey", "edkey@example.com"),
            ("mallory", "mallory@example.com"),
        ] {
            let path = project.root().join(format!("keys/{name}.asc"));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, gpg.export(email)).expect("write key");
        }
        let layout = work.join("layout");
        let mut builder = LayoutBuilder::new(&layout);
        let base = builder.layer(&[("etc/os-release", b"ID=signed\n")]);
        let one = builder.image("linux", "amd64", std::slice::from_ref(&base));
        builder.tag("one", &one);
        let two = builder.image("linux", "amd64", &[builder.layer(&[("two", b"2")])]);
        builder.tag("two", &two);
        let amd = builder.image("linux", "amd64", &[builder.layer(&[("m", b"amd64")])]);
        let arm = builder.image("linux", "arm64", &[builder.layer(&[("m", b"arm64")])]);
        let index = builder.index(&[amd, arm]);
        builder.tag("multi", &index);
        project
            .env
            .insert("IMAGELOCK_CA_FILE".into(), certs.ca.display().to_string());
        project.env.insert(
            "IMAGELOCK_RESOLVE".into(),
            nginx.resolve(&["sigs.example.com"], &[]),
        );
        Signing {
            project,
            registry,
            nginx,
            gpg,
            layout,
            registries_d,
            sigstore,
            release,
            edkey,
            mallory,
            work,
        }
    }

    fn skopeo(&self, args: &[&str]) -> std::process::Output {
        Command::new("skopeo")
            .env("GNUPGHOME", &self.gpg.home)
            .arg("--registries.d")
            .arg(&self.registries_d)
            .args(args)
            .output()
            .expect("run skopeo")
    }

    /// Pushes layout image `src` to `test/REPO_TAG`, signed by `signer` (if any).
    fn push(&self, src: &str, repo_tag: &str, signer: Option<&str>, extra: &[&str]) {
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        if let Some(fpr) = signer {
            args.extend(["--sign-by", fpr]);
        }
        args.extend(extra);
        let from = format!("oci:{}:{src}", self.layout.display());
        let to = format!("docker://{}/test/{repo_tag}", self.registry.host());
        args.extend([from.as_str(), to.as_str()]);
        let out = self.skopeo(&args);
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The lookaside directory of the manifest `test/REPO@digest`.
    fn sig_dir(&self, repo: &str, digest: &str) -> PathBuf {
        self.sigstore
            .join("test")
            .join(format!("{repo}@{}", digest.replace(':', "=")))
    }

    fn manifest(&self, keys: &[&str], identity: Option<&str>, images: &str) -> String {
        let keys: Vec<String> = keys.iter().map(|k| format!("\"keys/{k}.asc\"")).collect();
        let identity = identity
            .map(|i| format!("identity = \"{i}\"\n"))
            .unwrap_or_default();
        format!(
            "[registries.\"{host}\"]\ninsecure-http = true\n\n[trust.\"{host}/test/\"]\nkeys = [{}]\nlookaside = \"https://sigs.example.com/sigstore\"\n{identity}\n{images}",
            keys.join(", "),
            host = self.registry.host()
        )
    }

    fn image(&self, id: &str, repo_tag: &str, platforms: &[&str]) -> String {
        let platforms: Vec<String> = platforms.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            "[images.{id}]\ndocker = \"{}/test/{repo_tag}\"\nplatforms = [{}]\n",
            self.registry.host(),
            platforms.join(", ")
        )
    }

    /// The manifest digests the lock pins (in order).
    fn locked_manifests(&self) -> Vec<String> {
        let lock: toml::Table = toml::from_str(&self.project.read("images.lock")).expect("toml");
        lock["image"]
            .as_array()
            .expect("images")
            .iter()
            .flat_map(|i| i["manifest"].as_array().cloned().unwrap_or_default())
            .map(|m| m["digest"].as_str().expect("digest").to_owned())
            .collect()
    }

    /// Whether skopeo, with a policy requiring a signature by `key` under
    /// `matchRepoDigestOrExact`, accepts pulling `test/REPO_TAG`.
    fn skopeo_accepts(&self, key: &str, repo_tag: &str, platform_arch: &str) -> bool {
        let policy = self.work.join(format!("policy-{key}.json"));
        let key_path = self.project.root().join(format!("keys/{key}.asc"));
        std::fs::write(
            &policy,
            serde_json::json!({
                "default": [{"type": "reject"}],
                "transports": {"docker": {format!("{}/test", self.registry.host()): [{
                    "type": "signedBy", "keyType": "GPGKeys",
                    "keyPath": key_path,
                    "signedIdentity": {"type": "matchRepoDigestOrExact"},
                }]}},
            })
            .to_string(),
        )
        .expect("write policy");
        let dest = self
            .work
            .join(format!("pulled-{}", repo_tag.replace([':', '/'], "-")));
        let _ = std::fs::remove_dir_all(&dest);
        let out = self.skopeo(&[
            "--policy",
            policy.to_str().expect("utf8"),
            "--override-arch",
            platform_arch,
            "copy",
            "--quiet",
            "--remove-signatures",
            "--src-tls-verify=false",
            &format!("docker://{}/test/{repo_tag}", self.registry.host()),
            &format!("oci:{}:x", dest.display()),
        ]);
        if !out.status.success() {
            eprintln!(
                "skopeo refused {repo_tag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }
}

/// Flips a byte in the middle of a file: inside the signature's compressed
/// packet, so the change matters to every reader (the last byte can be
/// deflate padding some decompressors ignore).
fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn signed_images_lock_sync_and_verify_offline() {
    if !peers() {
        return;
    }
    let mut s = Signing::new();
    s.push("one", "img:v1", Some(&s.release.clone()), &[]);
    s.push("two", "ed:v1", Some(&s.edkey.clone()), &[]);
    let project = &s.project;
    let images = s.image("img", "img:v1", &["linux/amd64"])
        + "\n"
        + &s.image("ed", "ed:v1", &["linux/amd64"]);
    project.write(
        "images.toml",
        &s.manifest(&["release", "edkey"], None, &images),
    );
    project.run(&["lock"]).success();
    let lock = project.read("images.lock");
    assert_eq!(lock.matches("verified = true").count(), 2, "{lock}");
    let host = s.registry.host();
    for (fpr, identity) in [
        (&s.release, format!("{host}/test/img:v1")),
        (&s.edkey, format!("{host}/test/ed:v1")),
    ] {
        assert!(
            lock.contains(&format!(
                "signed-by = \"{fpr}\", key = \"{fpr}\", identity = \"{identity}\""
            )),
            "{lock}"
        );
    }
    assert!(
        lock.contains("url = \"https://sigs.example.com/sigstore/test/img@sha256="),
        "{lock}"
    );
    // Sync stores the signatures beside the image; verify re-checks them.
    let run = project.run(&["sync"]).success();
    assert!(
        run.stderr.contains("Verified 2 signatures"),
        "{}",
        run.stderr
    );
    let blobs = project.assert_store_valid(&project.store());
    // 2 manifests, 1 config (both images have the same one), 2 layers, 2 signatures.
    assert_eq!(blobs, 7);
    let run = project.run(&["verify"]).success();
    assert!(
        run.stderr.contains("ok      img") && run.stderr.contains("ok      ed"),
        "{}",
        run.stderr
    );
    // With the registry and the lookaside gone, everything still verifies.
    s.registry.stop();
    drop(s.nginx);
    let project = &s.project;
    project.run(&["sync", "--frozen", "--offline"]).success();
    // A hand-edited signature pin is refused by every mode of sync, by verify
    // and by lock --check, whatever the lock claims about who signed.
    let pristine = project.read("images.lock");
    type Edit = (&'static str, &'static [&'static str], fn(&mut toml::Table));
    let edits: [Edit; 3] = [
        ("identity", &["identity"], |lock| {
            let sig = &mut lock["image"][1]["manifest"][0]["signature"];
            let claimed = sig["identity"]
                .as_str()
                .expect("identity")
                .replace("img:v1", "other:v1");
            sig["identity"] = claimed.into();
        }),
        (
            "img's signature swapped for ed's",
            &["not accepted", "lookaside"],
            |lock| {
                let theirs = lock["image"][0]["manifest"][0]["signature"].clone();
                lock["image"][1]["manifest"][0]["signature"] = theirs;
            },
        ),
        ("verified without a signature", &["verified"], |lock| {
            let manifest = lock["image"][1]["manifest"][0]
                .as_table_mut()
                .expect("table");
            manifest.remove("signature");
        }),
    ];
    for (what, names, edit) in edits {
        let mut lock: toml::Table = toml::from_str(&pristine).expect("toml");
        assert_eq!(lock["image"][1]["id"].as_str(), Some("img"));
        edit(&mut lock);
        project.write("images.lock", &toml::to_string(&lock).expect("toml"));
        for args in [
            &["sync", "--frozen", "--offline"][..],
            &["sync", "--locked", "--offline"],
            &["verify"],
        ] {
            let run = project.run(args);
            assert!(
                run.code != 0
                    && run.stderr.contains("img")
                    && names.iter().any(|n| run.stderr.contains(n)),
                "{what}: {args:?} exit {}: {}",
                run.code,
                run.stderr
            );
        }
        let run = project.run(&["lock", "--check"]);
        assert!(
            run.code != 0 && run.stderr.contains("img"),
            "{what}: lock --check exit {}: {}",
            run.code,
            run.stderr
        );
    }
    project.write("images.lock", &pristine);
    let run = project.run(&["verify", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(report["ok"], true, "{report}");
    // A tampered signature in the store is named.
    let lock_toml: toml::Table = toml::from_str(&project.read("images.lock")).expect("toml");
    let sig = lock_toml["image"][1]["manifest"][0]["signature"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let sig_path = project
        .store()
        .join("blobs/sha256")
        .join(sig.trim_start_matches("sha256:"));
    flip_middle_byte(&sig_path);
    let run = project.run(&["verify"]).failure(1);
    assert!(
        run.stderr.contains("FAILED  img") && run.stderr.contains(&sig),
        "{}",
        run.stderr
    );
}

#[test]
fn refusals_match_what_skopeo_refuses() {
    if !peers() {
        return;
    }
    let s = Signing::new();
    let release = s.release.clone();
    // Accepted, for comparison.
    s.push("one", "good:v1", Some(&release), &[]);
    // Signed by a key nobody trusts.
    s.push("one", "evil:v1", Some(&s.mallory.clone()), &[]);
    // Identity of another tag: copy a signed image without re-signing.
    s.push("two", "moved:v1", Some(&release), &[]);
    let out = s.skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/test/moved:v1", s.registry.host()),
        &format!("docker://{}/test/moved:v2", s.registry.host()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A signature for another digest: good:v1's signature served for `other`.
    s.push("two", "other:v1", None, &[]);
    // A tampered signature.
    s.push("multi", "tampered:v1", Some(&release), &["--all"]);
    // No signature at all.
    s.push("two", "unsigned:v1", None, &[]);

    let project = &s.project;
    let digest_of = |repo_tag: &str| {
        project.write(
            "images.toml",
            &format!(
                "[registries.\"{}\"]\ninsecure-http = true\n\n{}insecure = true\n",
                s.registry.host(),
                s.image("x", repo_tag, &["linux/amd64"])
            ),
        );
        let _ = std::fs::remove_file(project.root().join("images.lock"));
        project.run(&["lock"]).success();
        s.locked_manifests().remove(0)
    };
    let good = digest_of("good:v1");
    let other = digest_of("other:v1");
    let other_dir = s.sig_dir("other", &other);
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    std::fs::copy(
        s.sig_dir("good", &good).join("signature-1"),
        other_dir.join("signature-1"),
    )
    .expect("copy signature");
    let tampered = digest_of("tampered:v1");
    flip_middle_byte(&s.sig_dir("tampered", &tampered).join("signature-1"));

    let cases: [(&str, bool, &[&str]); 6] = [
        ("good:v1", true, &[]),
        (
            "evil:v1",
            false,
            &["no signature of manifest", "trusted keys", "trust add"],
        ),
        ("moved:v2", false, &["moved:v1", "matchRepoDigestOrExact"]),
        ("other:v1", false, &[&good]),
        ("tampered:v1", false, &["signature-1"]),
        ("unsigned:v1", false, &["no signature exists at"]),
    ];
    for (repo_tag, accept, needles) in cases {
        project.write(
            "images.toml",
            &s.manifest(
                &["release"],
                None,
                &s.image("x", repo_tag, &["linux/amd64"]),
            ),
        );
        let _ = std::fs::remove_file(project.root().join("images.lock"));
        let run = project.run(&["lock"]);
        assert_eq!(
            run.code == 0,
            accept,
            "{repo_tag}: imagelock exit {}\n{}",
            run.code,
            run.stderr
        );
        for needle in needles {
            assert!(
                run.stderr.contains(needle),
                "{repo_tag}: `{needle}` in\n{}",
                run.stderr
            );
        }
        if !accept {
            assert!(run.stderr.contains("hint: "), "{}", run.stderr);
            assert!(!project.root().join("images.lock").exists());
        }
        assert_eq!(
            s.skopeo_accepts("release", repo_tag, "amd64"),
            accept,
            "skopeo disagrees with imagelock on {repo_tag}"
        );
    }

    // matchRepository accepts the moved tag, as skopeo's would.
    project.write(
        "images.toml",
        &s.manifest(
            &["release"],
            Some("matchRepository"),
            &s.image("x", "moved:v2", &["linux/amd64"]),
        ),
    );
    project.run(&["lock"]).success();
}

#[test]
fn multi_platform_images_need_a_signature_per_platform() {
    if !peers() {
        return;
    }
    let s = Signing::new();
    s.push("multi", "multi:v1", Some(&s.release.clone()), &["--all"]);
    let project = &s.project;
    project.write(
        "images.toml",
        &s.manifest(
            &["release"],
            None,
            &s.image("multi", "multi:v1", &["linux/amd64", "linux/arm64"]),
        ),
    );
    project.run(&["lock"]).success();
    let lock = project.read("images.lock");
    assert_eq!(
        lock.matches(&format!(
            "identity = \"{}/test/multi:v1\"",
            s.registry.host()
        ))
        .count(),
        2,
        "{lock}"
    );
    let manifests = s.locked_manifests();
    assert_eq!(manifests.len(), 2);
    // The index's own signature is not needed; one platform's is.
    let lock_toml: toml::Table = toml::from_str(&lock).expect("toml");
    let index = lock_toml["image"][0]["index"]["digest"]
        .as_str()
        .expect("index")
        .to_owned();
    std::fs::remove_dir_all(s.sig_dir("multi", &index)).expect("rm index signature");
    let _ = std::fs::remove_file(project.root().join("images.lock"));
    project.run(&["lock"]).success();
    std::fs::remove_dir_all(s.sig_dir("multi", &manifests[1])).expect("rm arm64 signature");
    let _ = std::fs::remove_file(project.root().join("images.lock"));
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains(&manifests[1]) && run.stderr.contains("linux/arm64"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_fleet_syncs_signed_images_from_the_mirror_and_its_lookaside_alone() {
    if !peers() {
        return;
    }
    let mut s = Signing::new();
    s.push("one", "img:v1", Some(&s.release.clone()), &[]);
    let mirror = Registry::start(RegistryOptions::default());
    let images = s.image("img", "img:v1", &["linux/amd64"]);
    let with_mirror = format!(
        "{}\n[registries.\"{}\"]\ninsecure-http = true\n",
        s.manifest(&["release"], None, &images),
        mirror.host()
    );
    s.project.write("images.toml", &with_mirror);
    s.project.run(&["lock"]).success();
    s.project.run(&["sync"]).success();

    // push writes the signature into a staging directory nginx serves.
    let staging = s.nginx.root.join("mirror-sigs");
    let prefix = format!("{}/m", mirror.host());
    let run = s
        .project
        .run(&[
            "push",
            &prefix,
            "--lookaside-staging",
            staging.to_str().expect("utf8"),
            "--json",
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(report["pushed"]["signatures"], 1, "{report}");
    let manifest = s.locked_manifests()[0].clone();
    let staged = staging.join(format!(
        "m/{}/test/img@{}/signature-1",
        s.registry.host().replace(':', "_"),
        manifest.replace(':', "=")
    ));
    assert!(staged.is_file(), "{} is missing", staged.display());

    // The origin registry and its lookaside store go away.
    s.registry.stop();
    std::fs::remove_dir_all(&s.sigstore).expect("remove the origin's lookaside");
    let mirrors_only =
        format!("{with_mirror}\n[mirrors]\nprefixes = [\"{prefix}\"]\nonly = true\n");
    let store = |name: &str| s.project.dir.path().join(name);

    // Without the mirrors' lookaside the signature has nowhere to come from.
    s.project.write("images.toml", &mirrors_only);
    let fresh = store("fresh-1");
    let run = s
        .project
        .run(&["sync", "--store", fresh.to_str().expect("utf8")])
        .failure(1);
    assert!(
        run.stderr.contains("sigs.example.com/sigstore/test/img@")
            && run
                .stderr
                .contains("hint: signatures come from each image's own lookaside"),
        "{}",
        run.stderr
    );
    // A mirrors' lookaside without a mirror is a mistake, said so.
    s.project.write("images.toml", &with_mirror);
    let run = s
        .project
        .run(&[
            "sync",
            "--store",
            fresh.to_str().expect("utf8"),
            "--mirror-lookaside",
            "https://sigs.example.com/mirror-sigs",
        ])
        .failure(1);
    assert!(run.stderr.contains("but no mirror is"), "{}", run.stderr);

    // With it, the fleet syncs and verifies from the mirror alone.
    s.project.write(
        "images.toml",
        &format!("{mirrors_only}lookaside = \"https://sigs.example.com/mirror-sigs\"\n"),
    );
    let fresh = store("fresh-2");
    let fresh_arg = fresh.to_str().expect("utf8");
    let run = s.project.run(&["sync", "--store", fresh_arg]).success();
    assert!(
        run.stderr.contains("Verified 1 signature"),
        "{}",
        run.stderr
    );
    // manifest, config, layer, signature
    assert_eq!(s.project.assert_store_valid(&fresh), 4);
    s.project.run(&["verify", "--store", fresh_arg]).success();

    // The mirror's lookaside cannot swap the signature: the lock pins its
    // digest (the lookaside named by the flag this time).
    flip_middle_byte(&staged);
    s.project.write("images.toml", &mirrors_only);
    let fresh = store("fresh-3");
    let run = s
        .project
        .run(&[
            "sync",
            "--store",
            fresh.to_str().expect("utf8"),
            "--mirror-lookaside",
            "https://sigs.example.com/mirror-sigs",
        ])
        .failure(1);
    assert!(
        run.stderr.contains("no mirror has blob") && run.stderr.contains("digest mismatch"),
        "{}",
        run.stderr
    );
}
