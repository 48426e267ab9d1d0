//! appc name discovery, ACI fetching and OpenPGP verification, end to end:
//! a real nginx serves discovery pages, ACIs and signatures over HTTPS with a
//! certificate made at test time (trusted through `IMAGELOCK_CA_FILE`), names
//! are pointed at it with `IMAGELOCK_RESOLVE`, and real `gpg` makes the keys
//! and signatures.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::harness::{Project, peer};
use crate::peers::{Certs, Gpg, Nginx};

fn peers() -> bool {
    peer("nginx") && peer("gpg") && peer("openssl")
}

/// appc's name for this machine's architecture (what imagelock defaults `arch` to).
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "aarch64",
        "x86" => "i386",
        other => other,
    }
}

/// Labels as (name, value) pairs, in order.
type Labels = Vec<(String, String)>;

/// An ACI's parts.
pub struct Aci {
    pub name: String,
    pub labels: Labels,
    /// (imageName, labels, imageID)
    pub dependencies: Vec<(String, Labels, Option<String>)>,
    pub files: Vec<(String, Vec<u8>)>,
}

impl Aci {
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Aci {
        Aci {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            dependencies: Vec::new(),
            files: vec![(
                "hello.txt".into(),
                format!("hello from {name}\n").into_bytes(),
            )],
        }
    }

    pub fn depends_on(mut self, name: &str, labels: &[(&str, &str)], id: Option<&str>) -> Aci {
        self.dependencies.push((
            name.into(),
            labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            id.map(str::to_owned),
        ));
        self
    }

    fn manifest_json(&self) -> Vec<u8> {
        let labels: Vec<serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
            .collect();
        let dependencies: Vec<serde_json::Value> = self
            .dependencies
            .iter()
            .map(|(name, labels, id)| {
                let mut d = serde_json::json!({
                    "imageName": name,
                    "labels": labels.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>(),
                });
                if let Some(id) = id {
                    d["imageID"] = id.clone().into();
                }
                d
            })
            .collect();
        let mut m = serde_json::json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": self.name,
            "labels": labels,
        });
        if !dependencies.is_empty() {
            m["dependencies"] = dependencies.into();
        }
        serde_json::to_vec_pretty(&m).expect("json")
    }

    /// The uncompressed tar (its SHA-512 is the image ID).
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        dir.set_mtime(1_600_000_000);
        builder
            .append_data(&mut dir, "rootfs", std::io::empty())
            .expect("tar dir");
        for (path, bytes) in &self.files {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(bytes.len() as u64);
            h.set_mtime(1_600_000_000);
            builder
                .append_data(&mut h, format!("rootfs/{path}"), bytes.as_slice())
                .expect("tar file");
        }
        let manifest = self.manifest_json();
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(manifest.len() as u64);
        h.set_mtime(1_600_000_000);
        builder
            .append_data(&mut h, "manifest", manifest.as_slice())
            .expect("tar manifest");
        builder.into_inner().expect("tar")
    }

    /// The ACI as served: gzip-compressed.
    pub fn gz(&self) -> Vec<u8> {
        gzip(&self.tar())
    }

    pub fn image_id(&self) -> String {
        format!("sha512-{}", hex::encode(sha2::Sha512::digest(self.tar())))
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// A project with nginx (HTTPS for `*.example.com`, plain HTTP for `plain.test`),
/// a trusted key (`release@example.com`) and an untrusted one (`mallory@example.com`).
struct World {
    project: Project,
    nginx: Nginx,
    gpg: Gpg,
    trusted: String,
    mallory: String,
    work: PathBuf,
}

const DISCOVERY: &str = r#"<!DOCTYPE html>
<html><head>
<meta name="ac-discovery" content="example.com https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.asc">
</head><body>images</body></html>
"#;

impl World {
    fn new() -> World {
        let project = Project::new();
        let work = project.dir.path().join("work");
        std::fs::create_dir_all(&work).expect("mkdir");
        let certs = Certs::generate(
            &work.join("certs"),
            &["example.com", "storage.example.com", "other.example.com"],
        );
        let nginx = Nginx::start(
            &work.join("nginx"),
            &certs,
            "    location = /loop.aci { return 302 /loop.aci; }\n    location = /loop.aci.asc { return 302 /loop.aci.asc; }\n    location = /downgrade.aci { return 302 http://plain.test/plain.test/app-1.aci; }",
        );
        let gpg = Gpg::new(&work.join("gnupg"));
        let trusted = gpg.generate("release@example.com", "rsa3072", "1y", None);
        let mallory = gpg.generate("mallory@example.com", "ed25519", "1y", None);
        let mut project = project;
        project
            .env
            .insert("IMAGELOCK_CA_FILE".into(), certs.ca.display().to_string());
        project.env.insert(
            "IMAGELOCK_RESOLVE".into(),
            nginx.resolve(
                &["example.com", "storage.example.com", "other.example.com"],
                &["plain.test"],
            ),
        );
        project.write("keys/release.asc", "");
        std::fs::write(
            project.root().join("keys/release.asc"),
            gpg.export("release@example.com"),
        )
        .expect("write key");
        nginx.put("pubkeys.asc", &gpg.export("release@example.com"));
        World {
            project,
            nginx,
            gpg,
            trusted,
            mallory,
            work,
        }
    }

    /// Serves `aci` at `path` (URL path on any host) with a signature by `signer`.
    fn serve(&self, path: &str, bytes: &[u8], signer: Option<&str>) {
        self.nginx.put(path, bytes);
        if let Some(signer) = signer {
            let file = self.nginx.root.join(path);
            let sig = self.nginx.root.join(format!("{path}.asc"));
            self.gpg.sign(signer, &file, &sig, None);
        }
    }

    /// The URL path an appc name + version resolves to with [`DISCOVERY`].
    fn aci_path(name: &str, version: &str) -> String {
        format!("{name}-{version}-linux-{}.aci", host_arch())
    }

    fn manifest(&self, images: &str) -> String {
        format!("[trust.\"example.com/\"]\nkeys = [\"keys/release.asc\"]\n\n{images}")
    }

    fn blobs(&self, store: &Path) -> Vec<String> {
        self.project
            .store_blobs(store)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }
}

fn lock_text(project: &Project) -> String {
    project.read("images.lock")
}

#[test]
fn discovered_signed_aci_locks_syncs_and_verifies_offline() {
    if !peers() {
        return;
    }
    let world = World::new();
    let project = &world.project;
    world.nginx.put("etcd/index.html", DISCOVERY.as_bytes());
    let arch = host_arch();
    let etcd = Aci::new(
        "example.com/etcd",
        &[("version", "3.1.0"), ("os", "linux"), ("arch", arch)],
    );
    let served = etcd.gz();
    world.serve(
        &World::aci_path("example.com/etcd", "3.1.0"),
        &served,
        Some("release@example.com"),
    );
    project.write(
        "images.toml",
        &world.manifest(
            "[images.etcd]\nname = \"example.com/etcd\"\nlabels = { version = \"3.1.0\" }\n",
        ),
    );
    let run = project.run(&["lock"]).success();
    assert!(run.stderr.contains("Locked 1 image"), "{}", run.stderr);
    let lock = lock_text(project);
    let aci_digest = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&served)));
    for needle in [
        "source = \"appc\"".to_owned(),
        "verified = true".to_owned(),
        "name = \"example.com/etcd\"".to_owned(),
        format!(
            "labels = {{ \"arch\" = \"{arch}\", \"os\" = \"linux\", \"version\" = \"3.1.0\" }}"
        ),
        "discovery = \"https://example.com/etcd?ac-discovery=1\"".to_owned(),
        format!("url = \"https://storage.example.com/example.com/etcd-3.1.0-linux-{arch}.aci\""),
        format!("image-id = \"{}\"", etcd.image_id()),
        format!(
            "aci = {{ digest = \"{aci_digest}\", size = {}",
            served.len()
        ),
        format!("signed-by = \"{}\"", world.trusted),
        "prefix = \"example.com/\"".to_owned(),
    ] {
        assert!(lock.contains(&needle), "missing {needle} in\n{lock}");
    }
    // Locking stored the verified ACI and its signature already.
    assert_eq!(project.assert_store_valid(&project.store()), 2);
    // A second lock changes nothing and fetches nothing.
    let hits = world.nginx.hits("/example.com/etcd");
    project.run(&["lock"]).success();
    assert_eq!(lock_text(project), lock);
    assert_eq!(world.nginx.hits("/example.com/etcd"), hits);
    // Locking it again from scratch revalidates the ACI: a 304, not a download.
    std::fs::remove_file(project.root().join("images.lock")).expect("rm lock");
    project.run(&["lock"]).success();
    assert_eq!(lock_text(project), lock);
    let log = std::fs::read_to_string(world.nginx.dir.join("access.log")).expect("log");
    assert!(
        log.contains(&format!("etcd-3.1.0-linux-{arch}.aci HTTP/1.1\" 304")),
        "{log}"
    );

    // A fresh store syncs from the server.
    let fresh = world.work.join("fresh-store");
    let fresh_arg = fresh.to_str().expect("utf8");
    project.run(&["sync", "--store", fresh_arg]).success();
    assert_eq!(project.assert_store_valid(&fresh), 2);
    let run = project.run(&["verify", "--store", fresh_arg]).success();
    assert!(run.stderr.contains("ok      etcd"), "{}", run.stderr);
    assert!(run.stderr.contains("signed by"), "{}", run.stderr);

    // With the server gone, everything still works from the store.
    drop(world.nginx);
    project
        .run(&["sync", "--frozen", "--offline", "--store", fresh_arg])
        .success();
    let run = project
        .run(&["verify", "--json", "--store", fresh_arg])
        .success();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(report["ok"], true);
    assert_eq!(report["images"][0]["signed_by"], world.trusted.as_str());

    // Replacing the trusted key, or dropping the prefix, fails verification.
    let manifest_text = project.read("images.toml");
    std::fs::write(
        project.root().join("keys/mallory.asc"),
        world.gpg.export("mallory@example.com"),
    )
    .expect("write key");
    project.write(
        "images.toml",
        &manifest_text.replace("keys/release.asc", "keys/mallory.asc"),
    );
    let run = project.run(&["verify", "--store", fresh_arg]).failure(1);
    assert!(
        run.stderr.contains("FAILED  etcd") && run.stderr.contains("not trusted here"),
        "{}",
        run.stderr
    );
    project.write(
        "images.toml",
        "[images.etcd]\nname = \"example.com/etcd\"\nlabels = { version = \"3.1.0\" }\ninsecure = true\n",
    );
    let run = project.run(&["verify", "--store", fresh_arg]).failure(1);
    assert!(
        run.stderr
            .contains("no [trust] prefix in the manifest covers"),
        "{}",
        run.stderr
    );
    project.write("images.toml", &manifest_text);

    // A corrupted blob is named.
    let blob = fresh
        .join("blobs/sha512")
        .join(&aci_digest["sha512:".len()..]);
    let mut bytes = std::fs::read(&blob).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&blob, bytes).expect("write");
    let run = project.run(&["verify", "--store", fresh_arg]).failure(1);
    assert!(
        run.stderr.contains("FAILED  etcd") && run.stderr.contains("corrupt"),
        "{}",
        run.stderr
    );
}

#[test]
fn discovery_walks_up_and_takes_the_first_fillable_template() {
    if !peers() {
        return;
    }
    let world = World::new();
    let project = &world.project;
    // Only the host root has a page; its first template needs a label we don't give.
    world.nginx.put(
        "index.html",
        br#"<html><body>
<META NAME="ac-discovery" CONTENT="example.com https://storage.example.com/{channel}/{name}-{version}.{ext}"/>
<meta name="ac-discovery" content="example.com   https://other.example.com/{name}-{version}.{ext}">
</body></html>"#,
    );
    let tool = Aci::new(
        "example.com/tools/hello",
        &[("version", "1.0"), ("os", "linux"), ("arch", host_arch())],
    );
    world.serve(
        "example.com/tools/hello-1.0.aci",
        &tool.gz(),
        Some("release@example.com"),
    );
    project.write(
        "images.toml",
        &world.manifest(
            "[images.hello]\nname = \"example.com/tools/hello\"\nlabels = { version = \"1.0\" }\n",
        ),
    );
    project.run(&["lock"]).success();
    let lock = lock_text(project);
    assert!(
        lock.contains("url = \"https://other.example.com/example.com/tools/hello-1.0.aci\""),
        "{lock}"
    );
    assert!(
        lock.contains("discovery = \"https://example.com/?ac-discovery=1\""),
        "{lock}"
    );
    // The deeper levels were tried first.
    assert_eq!(world.nginx.hits("/tools/hello?ac-discovery=1"), 1);
    assert_eq!(world.nginx.hits("/tools?ac-discovery=1"), 1);
}

/// Each refusal exits 1 with a message naming the problem, writes no lock and
/// leaves nothing under `blobs/`.
#[test]
fn refusals_name_the_problem_and_store_nothing() {
    if !peers() {
        return;
    }
    let world = World::new();
    let project = &world.project;
    let arch = host_arch();
    world.nginx.put("etcd/index.html", DISCOVERY.as_bytes());

    // An expired key, made and used in the past.
    world
        .gpg
        .generate("old@example.com", "ed25519", "1d", Some("20200101T000000"));
    let old_key = world.project.root().join("keys/old.asc");
    std::fs::write(&old_key, world.gpg.export("old@example.com")).expect("write");

    let entry = |version: &str| {
        format!(
            "[images.etcd]\nname = \"example.com/etcd\"\nlabels = {{ version = \"{version}\" }}\n"
        )
    };
    struct Case {
        what: &'static str,
        version: &'static str,
        manifest: Option<String>,
        expect: &'static [&'static str],
    }
    // Serve each case under its own version, with that version in its manifest.
    let at = |version: &str| {
        Aci::new(
            "example.com/etcd",
            &[("version", version), ("os", "linux"), ("arch", arch)],
        )
    };
    let serve_as = |version: &str, bytes: &[u8], signer: Option<&str>| {
        world.serve(&World::aci_path("example.com/etcd", version), bytes, signer);
    };
    serve_as("2.0", &at("2.0").gz(), Some("mallory@example.com"));
    // Signature over different bytes: sign something else, serve it as the .asc.
    serve_as("2.1", &at("2.1").gz(), None);
    let other = world.work.join("other.bin");
    std::fs::write(&other, b"other bytes").expect("write");
    world.gpg.sign(
        "release@example.com",
        &other,
        &world.nginx.root.join(format!(
            "{}.asc",
            World::aci_path("example.com/etcd", "2.1")
        )),
        None,
    );
    let path_22 = World::aci_path("example.com/etcd", "2.2");
    world.nginx.put(&path_22, &at("2.2").gz());
    world.gpg.sign(
        "old@example.com",
        &world.nginx.root.join(&path_22),
        &world.nginx.root.join(format!("{path_22}.asc")),
        Some("20200101T000100"),
    );
    serve_as(
        "2.3",
        &Aci::new(
            "example.com/other",
            &[("version", "2.3"), ("os", "linux"), ("arch", arch)],
        )
        .gz(),
        Some("release@example.com"),
    );
    serve_as("2.4", &at("9.9").gz(), Some("release@example.com"));
    let mut corrupt = at("2.5").gz();
    let middle = corrupt.len() / 2;
    for b in &mut corrupt[middle..middle + 16] {
        *b ^= 0x5a;
    }
    serve_as("2.5", &corrupt, Some("release@example.com"));
    serve_as(
        "2.6",
        b"<html><body>404 not here</body></html>\n",
        Some("release@example.com"),
    );
    serve_as("2.7", &at("2.7").gz(), None); // no signature at all

    let cases = [
        Case {
            what: "untrusted signer",
            version: "2.0",
            manifest: None,
            expect: &[
                "signature check failed",
                "not trusted here",
                "[trust.\"example.com/\"]",
                "trust add",
                "hint: ",
            ],
        },
        Case {
            what: "signature over other bytes",
            version: "2.1",
            manifest: None,
            expect: &["signature check failed"],
        },
        Case {
            what: "expired key",
            version: "2.2",
            manifest: Some(
                "[trust.\"example.com/\"]\nkeys = [\"keys/old.asc\"]\n\n".to_owned()
                    + &entry("2.2"),
            ),
            expect: &["expired"],
        },
        Case {
            what: "manifest name differs",
            version: "2.3",
            manifest: None,
            expect: &["example.com/other"],
        },
        Case {
            what: "labels differ",
            version: "2.4",
            manifest: None,
            expect: &["version", "9.9"],
        },
        Case {
            what: "corrupt gzip",
            version: "2.5",
            manifest: None,
            expect: &["gzip"],
        },
        Case {
            what: "not a tar",
            version: "2.6",
            manifest: None,
            expect: &["not an ACI"],
        },
        Case {
            what: "no signature",
            version: "2.7",
            manifest: None,
            expect: &["no signature at", "etcd-2.7-"],
        },
        Case {
            what: "insecure = true does not override a covering prefix",
            version: "2.7",
            manifest: Some(world.manifest(&(entry("2.7") + "insecure = true\n"))),
            expect: &["no signature at", "[trust.\"example.com/\"]"],
        },
        Case {
            what: "no trust prefix, not insecure",
            version: "1.0",
            manifest: Some(entry("1.0")),
            expect: &[
                "not covered by any [trust] prefix",
                "imagelock trust add example.com/",
            ],
        },
    ];
    for case in cases {
        let text = case
            .manifest
            .clone()
            .unwrap_or_else(|| world.manifest(&entry(case.version)));
        project.write("images.toml", &text);
        let run = project.run(&["lock"]).failure(1);
        if case.what == "untrusted signer" {
            assert!(run.stderr.contains(&world.mallory), "{}", run.stderr);
        }
        for needle in case.expect {
            assert!(
                run.stderr.to_lowercase().contains(&needle.to_lowercase()),
                "{}: expected `{needle}` in\n{}",
                case.what,
                run.stderr
            );
        }
        assert!(
            !project.root().join("images.lock").exists(),
            "{}: a lock was written",
            case.what
        );
        assert!(
            world.blobs(&project.store()).is_empty(),
            "{}: blobs stored: {:?}",
            case.what,
            world.blobs(&project.store())
        );
    }
}

#[test]
fn plain_http_and_redirects_need_permission_and_limits() {
    if !peers() {
        return;
    }
    let world = World::new();
    let project = &world.project;
    let arch = host_arch();
    world.nginx.put(
        "app/index.html",
        b"<meta name=\"ac-discovery\" content=\"plain.test http://plain.test/{name}-{version}.{ext}\">",
    );
    let app = Aci::new(
        "plain.test/app",
        &[("version", "1"), ("os", "linux"), ("arch", arch)],
    );
    world.serve("plain.test/app-1.aci", &app.gz(), None);
    let entry =
        "[images.app]\nname = \"plain.test/app\"\nlabels = { version = \"1\" }\ninsecure = true\n";
    project.write("images.toml", entry);
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("https://plain.test/app?ac-discovery=1"),
        "the attempts are listed: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("http://plain.test/app?ac-discovery=1"),
        "no HTTP without permission: {}",
        run.stderr
    );
    project.write(
        "images.toml",
        &format!("[registries.\"plain.test\"]\ninsecure-http = true\n\n{entry}"),
    );
    project.run(&["lock"]).success();
    let lock = lock_text(project);
    assert!(
        lock.contains("discovery = \"http://plain.test/app?ac-discovery=1\"")
            && lock.contains("url = \"http://plain.test/plain.test/app-1.aci\"")
            && lock.contains("verified = false"),
        "{lock}"
    );

    // A redirect loop on the image itself is cut off (its signature exists).
    world.nginx.put("real.asc", b"not reached");
    let allow = "[registries.\"plain.test\"]\ninsecure-http = true\n\n";
    project.write(
        "images.toml",
        "[images.loop]\nurl = \"https://storage.example.com/loop.aci\"\nsignature = \"https://storage.example.com/real.asc\"\ninsecure = true\n",
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("loop.aci") && run.stderr.contains("more than 10 redirects"),
        "{}",
        run.stderr
    );
    // A redirect from HTTPS to plain HTTP is refused unless the host is allowed.
    let downgrade =
        "[images.down]\nurl = \"https://storage.example.com/downgrade.aci\"\ninsecure = true\n";
    project.write("images.toml", downgrade);
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("redirected to plain HTTP"),
        "{}",
        run.stderr
    );
    project.write("images.toml", &format!("{allow}{downgrade}"));
    project.run(&["lock"]).success();
    // A plain-HTTP URL source is refused unless the host is allowed.
    let plain =
        "[images.plain]\nurl = \"http://plain.test/plain.test/app-1.aci\"\ninsecure = true\n";
    std::fs::remove_file(project.root().join("images.lock")).expect("rm lock");
    project.write("images.toml", plain);
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("is plain HTTP") && run.stderr.contains("insecure-http = true"),
        "{}",
        run.stderr
    );
    project.write("images.toml", &format!("{allow}{plain}"));
    project.run(&["lock"]).success();
    // The same holds for sync, from what the lock says.
    project.write("images.toml", plain);
    let fresh = world.work.join("plain-store");
    let run = project
        .run(&["sync", "--store", fresh.to_str().expect("utf8")])
        .failure(1);
    assert!(run.stderr.contains("is plain HTTP"), "{}", run.stderr);
}

#[test]
fn dependencies_are_pinned_and_image_ids_checked() {
    if !peers() {
        return;
    }
    let world = World::new();
    let project = &world.project;
    let arch = host_arch();
    world.nginx.put(
        "index.html",
        b"<meta name=\"ac-discovery\" content=\"example.com https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}\">",
    );
    let labels = |v: &'static str| [("version", v), ("os", "linux"), ("arch", arch)];
    let base = Aci::new("example.com/base", &labels("1"));
    let middle = Aci::new("example.com/middle", &labels("1")).depends_on(
        "example.com/base",
        &[("version", "1")],
        Some(&base.image_id()),
    );
    let app = Aci::new("example.com/app", &labels("1")).depends_on(
        "example.com/middle",
        &[("version", "1")],
        None,
    );
    for aci in [&base, &middle, &app] {
        world.serve(
            &World::aci_path(&aci.name, "1"),
            &aci.gz(),
            Some("release@example.com"),
        );
    }
    project.write(
        "images.toml",
        &world.manifest("[images.app]\nname = \"example.com/app\"\nlabels = { version = \"1\" }\n"),
    );
    project.run(&["lock"]).success();
    let lock = lock_text(project);
    for needle in [
        "id = \"app\"",
        "dependencies = [\"app/example.com/middle\"]",
        "id = \"app/example.com/middle\"",
        "dependency-of = \"app\"",
        "dependencies = [\"app/example.com/base\"]",
        "id = \"app/example.com/base\"",
    ] {
        assert!(lock.contains(needle), "missing {needle} in\n{lock}");
    }
    assert!(lock.contains(&base.image_id()), "{lock}");
    assert_eq!(project.assert_store_valid(&project.store()), 6);
    project.run(&["verify"]).success();

    // Version 2 of the chain pins a base image ID that does not match.
    let base2 = Aci::new("example.com/base", &labels("2"));
    let middle2 = Aci::new("example.com/middle", &labels("2")).depends_on(
        "example.com/base",
        &[("version", "2")],
        Some(&base.image_id()),
    );
    let app2 = Aci::new("example.com/app", &labels("2")).depends_on(
        "example.com/middle",
        &[("version", "2")],
        None,
    );
    for aci in [&base2, &middle2, &app2] {
        world.serve(
            &World::aci_path(&aci.name, "2"),
            &aci.gz(),
            Some("release@example.com"),
        );
    }
    let store = world.work.join("store2");
    project.write(
        "images.toml",
        &world.manifest("[images.app]\nname = \"example.com/app\"\nlabels = { version = \"2\" }\n"),
    );
    let run = project
        .run(&["lock", "--store", store.to_str().expect("utf8")])
        .failure(1);
    assert!(
        run.stderr.contains("image ID") && run.stderr.contains(&base.image_id()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("example.com/base"), "{}", run.stderr);
    // The lock is untouched, and the refusal stored nothing of the tree.
    assert_eq!(lock_text(project), lock);
    assert!(world.blobs(&store).is_empty(), "{:?}", world.blobs(&store));

    // A cycle is refused.
    let ping = Aci::new("example.com/ping", &labels("1")).depends_on(
        "example.com/pong",
        &[("version", "1")],
        None,
    );
    let pong = Aci::new("example.com/pong", &labels("1")).depends_on(
        "example.com/ping",
        &[("version", "1")],
        None,
    );
    for aci in [&ping, &pong] {
        world.serve(
            &World::aci_path(&aci.name, "1"),
            &aci.gz(),
            Some("release@example.com"),
        );
    }
    project.write(
        "images.toml",
        &world
            .manifest("[images.ping]\nname = \"example.com/ping\"\nlabels = { version = \"1\" }\n"),
    );
    let run = project
        .run(&["lock", "--store", store.to_str().expect("utf8")])
        .failure(1);
    assert!(
        run.stderr
            .contains("dependency cycle: example.com/ping → example.com/pong → example.com/ping"),
        "{}",
        run.stderr
    );
    assert!(world.blobs(&store).is_empty());
}

#[test]
fn url_and_path_sources_with_signatures_beside_them() {
    if !peers() {
        return;
    }
    let world = World::new();
    let project = &world.project;
    let arch = host_arch();
    let tool = Aci::new(
        "example.com/tool",
        &[("version", "1.2"), ("os", "linux"), ("arch", arch)],
    );
    world.serve("tool-1.2.aci", &tool.gz(), Some("release@example.com"));
    let base = Aci::new("example.com/base", &[("version", "1")]);
    let vendor = project.root().join("vendor");
    std::fs::create_dir_all(&vendor).expect("mkdir");
    std::fs::write(vendor.join("base.aci"), base.tar()).expect("write");
    world.gpg.sign(
        "release@example.com",
        &vendor.join("base.aci"),
        &vendor.join("base.aci.asc"),
        None,
    );
    project.write(
        "images.toml",
        &world.manifest(
            "[images.tool]\nurl = \"https://storage.example.com/tool-1.2.aci\"\n\n[images.base]\npath = \"vendor/base.aci\"\n",
        ),
    );
    project.run(&["lock"]).success();
    let lock = lock_text(project);
    assert!(
        lock.contains("url = \"https://storage.example.com/tool-1.2.aci.asc\""),
        "{lock}"
    );
    assert!(lock.contains("url = \"vendor/base.aci.asc\""), "{lock}");
    assert!(lock.contains(&base.image_id()) && lock.contains(&tool.image_id()));
    let fresh = world.work.join("fresh");
    let fresh_arg = fresh.to_str().expect("utf8");
    project.run(&["sync", "--store", fresh_arg]).success();
    project.run(&["verify", "--store", fresh_arg]).success();
    // Re-signing the local file with another key is caught at the next lock.
    world.gpg.sign(
        "mallory@example.com",
        &vendor.join("base.aci"),
        &vendor.join("base.aci.asc"),
        None,
    );
    std::fs::remove_file(project.root().join("images.lock")).expect("rm");
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("signature check failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn trust_add_pins_key_files_and_discovered_keys_only_when_confirmed() {
    if !peers() {
        return;
    }
    let world = World::new();
    let project = &world.project;
    let original = "# my images\n\n[images.x]  # keep\npath = \"x.aci\"\ninsecure = true\n";
    project.write("images.toml", original);
    let outside = world.work.join("release.asc");
    std::fs::write(&outside, world.gpg.export("release@example.com")).expect("write");
    let run = project
        .run(&[
            "trust",
            "add",
            "example.com/",
            "--key",
            outside.to_str().expect("utf8"),
        ])
        .success();
    let grouped: String = world
        .trusted
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        run.stderr.contains(&grouped[..24]) && run.stderr.contains("release@example.com"),
        "{}",
        run.stderr
    );
    let key_file = format!("keys/{}.asc", world.trusted);
    assert_eq!(
        project.read("images.toml"),
        format!(
            "# my images\n\n[trust.\"example.com/\"]\nkeys = [\"{key_file}\"]\n\n[images.x]  # keep\npath = \"x.aci\"\ninsecure = true\n"
        )
    );
    assert!(project.root().join(&key_file).is_file());
    // Adding it again changes nothing.
    project
        .run(&[
            "trust",
            "add",
            "example.com/",
            "--key",
            outside.to_str().expect("utf8"),
        ])
        .success();
    assert!(project.read("images.toml").matches(&key_file).count() == 1);

    // Discovery shows the keys but writes nothing without a confirmation.
    world.nginx.put("index.html", DISCOVERY.as_bytes());
    project.write("images.toml", original);
    let run = project
        .run(&["trust", "add", "example.com/", "--discover"])
        .failure(1);
    assert!(
        run.stderr.contains(&grouped[..24]) && run.stderr.contains("--fingerprint"),
        "{}",
        run.stderr
    );
    assert_eq!(project.read("images.toml"), original);
    let run = project
        .run(&[
            "trust",
            "add",
            "example.com/",
            "--discover",
            "--fingerprint",
            "0000 0000 0000 0000 0000  0000 0000 0000 0000 0000",
        ])
        .failure(1);
    assert!(run.stderr.contains("none of the keys"), "{}", run.stderr);
    project
        .run(&[
            "trust",
            "add",
            "example.com/",
            "--discover",
            "--fingerprint",
            &grouped,
        ])
        .success();
    assert!(project.read("images.toml").contains(&key_file));
    let run = project
        .run(&["trust", "add", "https://example.com/", "--key", "k"])
        .failure(1);
    assert!(run.stderr.contains("without a scheme"), "{}", run.stderr);
}
