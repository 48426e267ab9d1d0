//! `imagelock render`: OCI layers (gzip, zstd, plain) with whiteouts, opaque directories,
//! hard links and symlinks, compared with `umoci unpack --rootless` of the same layout;
//! hostile layers refused with nothing written outside the target; an ACI with a
//! dependency and a pathWhitelist, discovered from nginx; the render cache; a corrupt
//! store blob; ext4 output.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

use crate::harness::{Desc, LayoutBuilder, Project, peer};
use crate::peers::{Certs, Nginx};

/// One tar entry, header fields written raw so that hostile paths can be built.
#[derive(Clone)]
struct E {
    path: Vec<u8>,
    kind: tar::EntryType,
    mode: u32,
    data: Vec<u8>,
    link: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn file(path: &str, data: &[u8], mode: u32) -> E {
    E {
        path: path.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        mode,
        data: data.to_vec(),
        link: Vec::new(),
        xattrs: Vec::new(),
    }
}

fn dir(path: &str, mode: u32) -> E {
    E {
        kind: tar::EntryType::Directory,
        ..file(path, b"", mode)
    }
}

fn symlink(path: &str, target: &str) -> E {
    E {
        kind: tar::EntryType::Symlink,
        link: target.as_bytes().to_vec(),
        ..file(path, b"", 0o777)
    }
}

fn hardlink(path: &str, target: &str) -> E {
    E {
        kind: tar::EntryType::Link,
        link: target.as_bytes().to_vec(),
        ..file(path, b"", 0o644)
    }
}

/// The uncompressed tar of `entries`, with PAX headers for xattrs and long paths.
fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut pax: Vec<(String, Vec<u8>)> = e
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
            .collect();
        if e.path.len() > 99 {
            pax.push(("path".into(), e.path.clone()));
        }
        if !pax.is_empty() {
            builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .expect("pax");
        }
        let mut h = tar::Header::new_ustar();
        let name = &mut h.as_old_mut().name;
        let n = e.path.len().min(99);
        name[..n].copy_from_slice(&e.path[..n]);
        let link = &mut h.as_old_mut().linkname;
        link[..e.link.len()].copy_from_slice(&e.link);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        builder.append(&h, e.data.as_slice()).expect("append");
    }
    builder.into_inner().expect("tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A layer blob; its descriptor carries the uncompressed digest (`diffID`) under
/// `imagelock-test.diff-id` for [`image`], which removes it.
fn layer(layout: &LayoutBuilder, entries: &[E], media_type: &str) -> Desc {
    let raw = tar_of(entries);
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&raw)));
    let bytes = match media_type {
        GZIP => gzip(&raw),
        ZSTD => zstd::encode_all(raw.as_slice(), 1).expect("zstd"),
        _ => raw,
    };
    let mut desc = layout.blob(&bytes, media_type);
    desc["imagelock-test.diff-id"] = diff_id.into();
    desc
}

/// An image manifest for this machine's platform whose config lists the layers' diffIDs
/// (umoci checks them).
fn image(layout: &LayoutBuilder, layers: &[Desc]) -> Desc {
    let mut diff_ids = Vec::new();
    let mut clean = Vec::new();
    for layer in layers {
        let mut layer = layer.clone();
        let obj = layer.as_object_mut().expect("descriptor");
        diff_ids.push(obj.remove("imagelock-test.diff-id").expect("diff id"));
        clean.push(layer);
    }
    let config = serde_json::json!({
        "architecture": host_arch(), "os": "linux",
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
        "layers": clean,
    });
    layout.blob(
        manifest.to_string().as_bytes(),
        "application/vnd.oci.image.manifest.v1+json",
    )
}

/// A project whose images.toml pins `tags` of the layout at `layout/` (insecure, local).
fn locked_project(project: &Project, tags: &[&str]) {
    let mut manifest = String::new();
    for tag in tags {
        manifest.push_str(&format!(
            "[images.{tag}]\npath = \"layout:{tag}\"\ninsecure = true\n\n"
        ));
    }
    project.write("images.toml", &manifest);
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A benign three-layer image tagged `tag`: gzip, `middle` (zstd or gzip: umoci 0.4 reads
/// no zstd) and plain layers with whiteouts, an opaque directory, a hard link, symlinks, a
/// setuid file, a long path and an xattr.
fn benign_image(layout: &mut LayoutBuilder, tag: &str, middle_type: &str) {
    let long = format!("deep/{}/leaf.txt", "d".repeat(120));
    let mut capped = file("usr/bin/capped", b"#!/bin/sh\necho capped\n", 0o755);
    capped
        .xattrs
        .push(("user.imagelock".into(), b"kept".to_vec()));
    let base = layer(
        layout,
        &[
            dir("etc", 0o755),
            file("etc/hostname", b"base\n", 0o644),
            file("etc/gone", b"whited out later\n", 0o600),
            dir("etc/conf.d", 0o750),
            file("etc/conf.d/old", b"old\n", 0o644),
            dir("usr", 0o755),
            dir("usr/bin", 0o755),
            file("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
            hardlink("usr/bin/tool-alias", "usr/bin/tool"),
            file("usr/bin/su", b"setuid\n", 0o4755),
            symlink("bin", "usr/bin"),
            symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
            dir("var", 0o755),
            dir("var/cache", 0o700),
            file("var/cache/a", b"a\n", 0o644),
            dir("var/cache/sub", 0o755),
            file("var/cache/sub/b", b"b\n", 0o644),
            file("replaced-by-dir", b"file first\n", 0o644),
            dir("deep", 0o755),
            file(&long, b"long path\n", 0o644),
        ],
        GZIP,
    );
    let middle = layer(
        layout,
        &[
            dir("etc", 0o755),
            file("etc/.wh.gone", b"", 0o644),
            file("etc/hostname", b"middle\n", 0o644),
            dir("var/cache", 0o711),
            file("var/cache/.wh..wh..opq", b"", 0o644),
            file("var/cache/fresh", b"fresh\n", 0o640),
            dir("replaced-by-dir", 0o755),
            file("replaced-by-dir/inside", b"inside\n", 0o644),
            file("etc/.wh..wh.plnk", b"", 0o644),
        ],
        middle_type,
    );
    let top = layer(
        layout,
        &[
            dir("etc/conf.d", 0o755),
            file("etc/conf.d/.wh.old", b"", 0o644),
            file("etc/conf.d/new", b"new\n", 0o644),
            symlink("etc/hostname", "hostname.real"),
            file("etc/hostname.real", b"top\n", 0o644),
            capped,
        ],
        TAR,
    );
    let image = image(layout, &[base, middle, top]);
    layout.tag(tag, &image);
}

/// (type and mode, content or link target) for every path under `root`, `lstat`-style.
fn snapshot(root: &Path) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(&rel))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let kind = meta.file_type();
            let mode = meta.permissions().mode() & 0o7777;
            let (tag, content) = if kind.is_dir() {
                stack.push(rel.clone());
                ("dir", String::new())
            } else if kind.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&path)
                        .expect("readlink")
                        .display()
                        .to_string(),
                )
            } else if kind.is_file() {
                (
                    "file",
                    hex::encode(sha2::Sha256::digest(std::fs::read(&path).expect("read"))),
                )
            } else {
                ("other", String::new())
            };
            // Symlink modes are not meaningful; compare types only.
            let mode = if kind.is_symlink() {
                String::new()
            } else {
                format!(" {mode:o}")
            };
            out.insert(rel.display().to_string(), (format!("{tag}{mode}"), content));
        }
    }
    out
}

fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).expect("lstat").ino()
}

/// The tree cached for lock entry `image` in `store` (named in its source.json).
fn cached_tree(store: &Path, image: &str) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(store.join("rendered"))
        .expect("rendered/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let record = std::fs::read(p.join("source.json")).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&record).is_ok_and(|r| r["image"] == image)
        })
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].join("rootfs")
}

#[test]
fn oci_layers_render_like_umoci_and_are_cached() {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    benign_image(&mut layout, "big", ZSTD);
    benign_image(&mut layout, "big-gz", GZIP);
    locked_project(&project, &["big", "big-gz"]);
    let root = project.root();
    let rootfs = root.join("rootfs");

    let run = project.run(&["render", "big", "rootfs"]).success();
    assert!(run.stderr.contains("Rendered `big`"), "{}", run.stderr);
    assert!(run.stderr.contains("cached as"), "{}", run.stderr);
    let ours = snapshot(&rootfs);

    // What the layers say, checked directly.
    let read =
        |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert!(!rootfs.join("etc/gone").exists(), "whiteout");
    assert!(
        !rootfs.join("etc/.wh.gone").exists(),
        "whiteouts are never written"
    );
    assert!(!rootfs.join("etc/.wh..wh.plnk").exists());
    assert!(!rootfs.join("etc/conf.d/old").exists());
    assert_eq!(read("etc/conf.d/new"), "new\n");
    assert_eq!(read("etc/hostname"), "top\n", "symlink replaced a file");
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/hostname")).expect("link"),
        Path::new("hostname.real")
    );
    assert!(!rootfs.join("var/cache/a").exists(), "opaque directory");
    assert!(!rootfs.join("var/cache/sub").exists(), "opaque directory");
    assert_eq!(read("var/cache/fresh"), "fresh\n");
    assert_eq!(read("replaced-by-dir/inside"), "inside\n");
    assert_eq!(
        ino(&rootfs.join("usr/bin/tool")),
        ino(&rootfs.join("usr/bin/tool-alias")),
        "hard link kept"
    );
    assert_eq!(ours["usr/bin/su"].0, "file 4755");
    assert_eq!(ours["var/cache"].0, "dir 711");
    assert_eq!(ours["etc/conf.d"].0, "dir 755");
    assert_eq!(
        std::fs::metadata(rootfs.join("usr/bin/tool"))
            .expect("stat")
            .mtime(),
        1_600_000_000
    );
    assert!(
        ours.keys().any(|k| k.ends_with("leaf.txt")),
        "long PAX path"
    );
    let xattr = rustix::fs::getxattr(
        rootfs.join("usr/bin/capped"),
        "user.imagelock",
        &mut [0u8; 16],
    );
    // tmpfs and some overlay set-ups refuse user xattrs; where they work, the value is kept.
    if let Ok(n) = xattr {
        assert_eq!(n, 4);
    }

    // The reference implementation on the same layout (the gzip-only variant: umoci 0.4
    // reads no zstd), which renders to the same tree.
    project.run(&["render", "big-gz", "rootfs-gz"]).success();
    assert_eq!(snapshot(&root.join("rootfs-gz")), ours);
    if peer("umoci") {
        let bundle = root.join("bundle");
        let out = Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:big-gz", root.join("layout").display()))
            .arg(&bundle)
            .output()
            .expect("run umoci");
        assert!(
            out.status.success(),
            "umoci unpack failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = snapshot(&bundle.join("rootfs"));
        let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
        let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "file lists differ: only ours {only_ours:?}, only umoci's {only_theirs:?}"
        );
        for (path, entry) in &ours {
            assert_eq!(entry, &theirs[path], "{path} differs from umoci's");
        }
    }

    // A second render comes from the cache: hard links to the cached tree.
    let cache = cached_tree(&project.store(), "big");
    assert_eq!(
        ino(&rootfs.join("etc/conf.d/new")),
        ino(&cache.join("etc/conf.d/new"))
    );
    let again = project.run(&["render", "big", "again", "--json"]).success();
    assert!(
        again.stderr.contains("from the render cache"),
        "{}",
        again.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(json["cache"], "hit");
    assert_eq!(
        ino(&root.join("again/usr/bin/tool")),
        ino(&cache.join("usr/bin/tool"))
    );
    assert_eq!(snapshot(&root.join("again")), ours);

    // --copy: the same tree, independent files.
    project
        .run(&["render", "big", "copied", "--copy"])
        .success();
    assert_eq!(snapshot(&root.join("copied")), ours);
    assert_ne!(
        ino(&root.join("copied/usr/bin/tool")),
        ino(&cache.join("usr/bin/tool"))
    );
    assert_eq!(
        ino(&root.join("copied/usr/bin/tool")),
        ino(&root.join("copied/usr/bin/tool-alias")),
        "hard links inside the image survive copying"
    );

    // A non-empty target is refused; --force renders over it without following a symlink
    // left in it, and leaves unrelated files alone.
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let busy = root.join("busy");
    std::fs::create_dir_all(&busy).expect("mkdir");
    std::os::unix::fs::symlink(&outside, busy.join("etc")).expect("symlink");
    std::fs::write(busy.join("mine.txt"), "mine").expect("write");
    let refused = project.run(&["render", "big", "busy"]).failure(1);
    assert!(
        refused.stderr.contains("is not empty") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    project.run(&["render", "big", "busy", "--force"]).success();
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
    assert!(busy.join("etc").is_dir() && !busy.join("etc").is_symlink());
    assert_eq!(
        std::fs::read_to_string(busy.join("mine.txt")).expect("mine"),
        "mine"
    );

    // Editing a hard-linked file in place changes the cache: the next render notices,
    // rebuilds, and the new tree has the image's bytes again.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(rootfs.join("etc/conf.d/new"))
        .expect("open");
    f.write_all(b"edited in place\n").expect("append");
    drop(f);
    let rebuilt = project.run(&["render", "big", "fresh"]).success();
    assert!(
        rebuilt
            .stderr
            .contains("changed since it was rendered (etc/conf.d/new)"),
        "{}",
        rebuilt.stderr
    );
    assert_eq!(
        std::fs::read_to_string(root.join("fresh/etc/conf.d/new")).expect("read"),
        "new\n"
    );
}

/// A file rewritten in place through a hard-linked render, with the same size and its old
/// mtime restored, is never served again: `fsck` names the changed tree and file, the next
/// render builds the tree anew with the image's bytes, and `fsck --repair` moves a changed
/// tree to the quarantine.
#[test]
fn a_cached_file_changed_through_a_render_is_never_served() {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let descs = [layer(
        &layout,
        &[
            dir("etc", 0o755),
            file("etc/passwd", passwd, 0o644),
            file("etc/motd", b"hello\n", 0o644),
        ],
        GZIP,
    )];
    let image = image(&layout, &descs);
    layout.tag("img", &image);
    locked_project(&project, &["img"]);
    let root = project.root();
    project.run(&["render", "img", "first"]).success();
    let run = project.run(&["fsck"]).success();
    assert!(run.stderr.contains("1 rendered tree"), "{}", run.stderr);

    // What an attacker (or an editor) with the rendered directory can do: same size, old
    // mtime, the same inode as the cache's file.
    let tamper = |path: &Path, bytes: &[u8]| {
        let old = std::fs::metadata(path).expect("stat");
        assert_eq!(old.len(), bytes.len() as u64, "same size");
        std::fs::write(path, bytes).expect("rewrite in place");
        std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(old.modified().expect("mtime"))
            .expect("restore mtime");
        let new = std::fs::metadata(path).expect("stat");
        assert_eq!((new.ino(), new.mtime()), (old.ino(), old.mtime()));
    };
    tamper(
        &root.join("first/etc/passwd"),
        b"evil:x:0:0:root:/root:/bin/sh\n",
    );
    let cache = cached_tree(&project.store(), "img");
    assert_eq!(
        std::fs::read(cache.join("etc/passwd")).expect("read"),
        b"evil:x:0:0:root:/root:/bin/sh\n",
        "the hard link reached the cache"
    );

    let run = project.run(&["fsck"]).failure(1);
    assert!(
        run.stderr.contains("changed  ")
            && run.stderr.contains("rendered for `img`")
            && run.stderr.contains("etc/passwd")
            && run.stderr.contains("hard links share the changed files")
            && run.stderr.contains("fsck --repair"),
        "{}",
        run.stderr
    );

    let again = project.run(&["render", "img", "second"]).success();
    assert!(
        again
            .stderr
            .contains("changed since it was rendered (etc/passwd)")
            && !again.stderr.contains("from the render cache"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read(root.join("second/etc/passwd")).expect("read"),
        passwd
    );
    project.run(&["fsck"]).success();
    let third = project.run(&["render", "img", "third"]).success();
    assert!(
        third.stderr.contains("from the render cache"),
        "{}",
        third.stderr
    );
    assert_eq!(
        std::fs::read(root.join("third/etc/passwd")).expect("read"),
        passwd
    );

    // fsck --repair moves a changed tree aside (evidence) and the next render builds anew.
    tamper(&root.join("third/etc/motd"), b"HELLO\n");
    let key = cached_tree(&project.store(), "img")
        .parent()
        .expect("entry")
        .file_name()
        .expect("key")
        .to_string_lossy()
        .into_owned();
    let run = project.run(&["fsck", "--repair"]).success();
    assert!(
        run.stderr.contains("Moved 1 changed rendered tree") && run.stderr.contains("Repaired"),
        "{}",
        run.stderr
    );
    let quarantined = project
        .store()
        .join("quarantine")
        .join(format!("rendered-{key}"));
    assert_eq!(
        std::fs::read(quarantined.join("rootfs/etc/motd")).expect("kept as evidence"),
        b"HELLO\n"
    );
    project.run(&["fsck"]).success();
    let fourth = project.run(&["render", "img", "fourth"]).success();
    assert!(fourth.stderr.contains("cached as"), "{}", fourth.stderr);
    assert_eq!(
        std::fs::read(root.join("fourth/etc/motd")).expect("read"),
        b"hello\n"
    );
}

/// One hostile image per case: layers, the error's telling words, and paths that must not
/// exist afterwards.
#[test]
fn hostile_layers_are_refused_and_nothing_escapes() {
    let project = Project::new();
    let root = project.root();
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), "secret").expect("write");
    let outside_rel = outside.display().to_string();
    let outside_rel = outside_rel.trim_start_matches('/');
    let mut layout = LayoutBuilder::new(&root.join("layout"));
    let cases: Vec<(&str, Vec<Vec<E>>, &str)> = vec![
        (
            "dotdot",
            vec![vec![file("../../escaped-dotdot", b"x", 0o644)]],
            "a `..` component",
        ),
        (
            "deepdotdot",
            vec![vec![
                dir("etc", 0o755),
                file("etc/../../../escaped-deep", b"x", 0o644),
            ]],
            "a `..` component",
        ),
        (
            "absolute",
            vec![vec![file(
                &format!("{}/absolute", outside.display()),
                b"x",
                0o644,
            )]],
            "absolute path",
        ),
        (
            "rootlink",
            vec![vec![
                symlink("evil", "/"),
                file(&format!("evil/{outside_rel}/via-root-link"), b"x", 0o644),
            ]],
            "symbolic link",
        ),
        (
            "outlink",
            vec![vec![
                symlink("evil", &outside.display().to_string()),
                file("evil/via-link", b"x", 0o644),
            ]],
            "symbolic link",
        ),
        (
            "crosslayer",
            vec![
                vec![symlink("evil", &outside.display().to_string())],
                vec![
                    dir("evil/sub", 0o755),
                    file("evil/sub/via-layer", b"x", 0o644),
                ],
            ],
            "symbolic link",
        ),
        (
            "hardout",
            vec![vec![hardlink(
                "stolen",
                &format!("../../../../../../../../{outside_rel}/secret"),
            )]],
            "hard link",
        ),
        (
            "hardabs",
            vec![vec![hardlink(
                "stolen",
                &format!("{}/secret", outside.display()),
            )]],
            "hard link",
        ),
        (
            "hardvialink",
            vec![vec![
                symlink("evil", &outside.display().to_string()),
                hardlink("stolen", "evil/secret"),
            ]],
            "symbolic link",
        ),
        (
            "whiteoutup",
            vec![
                vec![dir("a", 0o755), file("a/x", b"x", 0o644)],
                vec![file("a/.wh...", b"", 0o644)],
            ],
            "whiteout",
        ),
    ];
    for (tag, layers, _) in &cases {
        let descs: Vec<Desc> = layers.iter().map(|l| layer(&layout, l, GZIP)).collect();
        let image = image(&layout, &descs);
        layout.tag(tag, &image);
    }
    let tags: Vec<&str> = cases.iter().map(|(t, _, _)| *t).collect();
    locked_project(&project, &tags);
    for (tag, _, words) in &cases {
        let target = root.join(format!("out-{tag}"));
        let run = project
            .run(&["render", tag, target.to_str().expect("utf8")])
            .failure(1);
        assert!(
            run.stderr.contains(words) && run.stderr.contains("malformed or hostile"),
            "{tag}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("`{tag}`")),
            "{tag}: {}",
            run.stderr
        );
        // Nothing in the target, nothing outside, nothing cached, no build left behind.
        let written = std::fs::read_dir(&target).map(|d| d.count()).unwrap_or(0);
        assert_eq!(written, 0, "{tag} wrote into the target");
        let mut outside_now: Vec<_> = std::fs::read_dir(&outside)
            .expect("outside")
            .map(|e| e.expect("entry").file_name())
            .collect();
        outside_now.sort();
        assert_eq!(outside_now, ["secret"], "{tag} wrote outside");
        assert_eq!(
            std::fs::metadata(outside.join("secret"))
                .expect("secret")
                .nlink(),
            1,
            "{tag} linked the secret"
        );
        let rendered: Vec<_> = std::fs::read_dir(project.store().join("rendered"))
            .map(|d| d.map(|e| e.expect("entry").file_name()).collect())
            .unwrap_or_default();
        assert!(rendered.is_empty(), "{tag} left {rendered:?} in the cache");
        for escaped in ["escaped-dotdot", "escaped-deep"] {
            for base in [&project.store(), &root, &project.store().join("rendered")] {
                assert!(
                    !base.join(escaped).exists(),
                    "{tag}: {escaped} in {}",
                    base.display()
                );
            }
        }
    }
}

#[test]
fn a_corrupt_store_blob_is_refused() {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    let descs = [layer(&layout, &[file("a.txt", b"hello\n", 0o644)], GZIP)];
    let image = image(&layout, &descs);
    layout.tag("small", &image);
    locked_project(&project, &["small"]);
    let digest = descs[0]["digest"].as_str().expect("digest").to_owned();
    let blob = project
        .store()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).expect("blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // the gzip trailer's size byte: same length, wrong content
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&blob, &bytes).expect("corrupt");
    let run = project.run(&["render", "small", "rootfs"]).failure(1);
    assert!(
        run.stderr
            .contains(&format!("blob {digest} in the store is corrupt")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("imagelock sync"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_dir(project.root().join("rootfs"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    let cached = std::fs::read_dir(project.store().join("rendered"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cached, 0, "nothing built from a corrupt blob is kept");

    // A missing blob: the error says to sync, before any work.
    std::fs::remove_file(&blob).expect("rm");
    let run = project.run(&["render", "small", "rootfs"]).failure(1);
    assert!(
        run.stderr.contains("not in the store") && run.stderr.contains("imagelock sync"),
        "{}",
        run.stderr
    );
    let run = project.run(&["render", "nope", "rootfs"]).failure(2);
    assert!(
        run.stderr.contains("`nope` is not an image in images.lock"),
        "{}",
        run.stderr
    );
}

#[test]
fn ext4_images_via_mkfs() {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    let descs = [layer(
        &layout,
        &[dir("etc", 0o755), file("etc/motd", b"from ext4\n", 0o644)],
        GZIP,
    )];
    let image = image(&layout, &descs);
    layout.tag("small", &image);
    locked_project(&project, &["small"]);
    let run = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagelock"));
        cmd.args([
            "render",
            "small",
            "--format",
            "ext4",
            "--output",
            "small.ext4",
        ])
        .current_dir(project.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("IMAGELOCK_MKFS_EXT4", "/nonexistent/mkfs.ext4");
        for (k, v) in &project.env {
            cmd.env(k, v);
        }
        cmd.output().expect("run")
    };
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("e2fsprogs"), "{stderr}");
    if !(peer("mkfs.ext4") && peer("debugfs")) {
        return;
    }
    project
        .run(&[
            "render",
            "small",
            "--format",
            "ext4",
            "--output",
            "small.ext4",
        ])
        .success();
    let image = project.root().join("small.ext4");
    let out = Command::new("debugfs")
        .args(["-R", "cat /etc/motd"])
        .arg(&image)
        .output()
        .expect("debugfs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from ext4\n");
    let again = project
        .run(&[
            "render",
            "small",
            "--format",
            "ext4",
            "--output",
            "small.ext4",
        ])
        .failure(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    project
        .run(&[
            "render",
            "small",
            "--format",
            "ext4",
            "--output",
            "small.ext4",
            "--force",
        ])
        .success();
    // Usage errors exit 2.
    let usage = project
        .run(&["render", "small", "--format", "ext4"])
        .failure(2);
    assert!(
        usage.stderr.contains("needs `--output FILE`"),
        "{}",
        usage.stderr
    );
    let usage = project.run(&["render", "small"]).failure(2);
    assert!(
        usage.stderr.contains("give the directory"),
        "{}",
        usage.stderr
    );
}

/// An ACI: name, labels, dependencies, pathWhitelist and files under rootfs/.
struct Aci {
    name: String,
    labels: Vec<(String, String)>,
    dependencies: Vec<String>,
    whitelist: Vec<String>,
    entries: Vec<E>,
}

impl Aci {
    fn manifest(&self) -> Vec<u8> {
        let labels: Vec<_> = self
            .labels
            .iter()
            .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
            .collect();
        let mut m = serde_json::json!({
            "acKind": "ImageManifest", "acVersion": "0.8.11",
            "name": self.name, "labels": labels,
        });
        if !self.dependencies.is_empty() {
            m["dependencies"] = self
                .dependencies
                .iter()
                .map(|d| serde_json::json!({"imageName": d, "labels": [{"name": "version", "value": "1"}]}))
                .collect::<Vec<_>>()
                .into();
        }
        if !self.whitelist.is_empty() {
            m["pathWhitelist"] = self.whitelist.clone().into();
        }
        serde_json::to_vec(&m).expect("json")
    }

    fn gz(&self) -> Vec<u8> {
        let mut entries = vec![dir("rootfs", 0o755)];
        for e in &self.entries {
            let mut e = e.clone();
            e.path = [b"rootfs/".as_slice(), &e.path].concat();
            if e.kind == tar::EntryType::Link {
                e.link = [b"rootfs/".as_slice(), &e.link].concat();
            }
            entries.push(e);
        }
        entries.push(file("manifest", &self.manifest(), 0o644));
        gzip(&tar_of(&entries))
    }
}

#[test]
fn aci_with_a_dependency_and_a_path_whitelist() {
    if !(peer("nginx") && peer("openssl")) {
        return;
    }
    let mut project = Project::new();
    let work = project.dir.path().join("work");
    let certs = Certs::generate(&work.join("certs"), &["example.com", "storage.example.com"]);
    let nginx = Nginx::start(&work.join("nginx"), &certs, "");
    project
        .env
        .insert("IMAGELOCK_CA_FILE".into(), certs.ca.display().to_string());
    project.env.insert(
        "IMAGELOCK_RESOLVE".into(),
        nginx.resolve(&["example.com", "storage.example.com"], &[]),
    );
    nginx.put(
        "index.html",
        b"<meta name=\"ac-discovery\" content=\"example.com https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}\">",
    );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        other => other,
    };
    let labels = vec![
        ("version".to_owned(), "1".to_owned()),
        ("os".to_owned(), "linux".to_owned()),
        ("arch".to_owned(), arch.to_owned()),
    ];
    let base = Aci {
        name: "example.com/base".into(),
        labels: labels.clone(),
        dependencies: Vec::new(),
        whitelist: Vec::new(),
        entries: vec![
            dir("bin", 0o755),
            file("bin/sh", b"base shell\n", 0o755),
            dir("lib", 0o755),
            file("lib/libc.so", b"base libc\n", 0o644),
            dir("etc", 0o755),
            file("etc/os-release", b"base\n", 0o644),
            file("etc/base.conf", b"base conf\n", 0o644),
            hardlink("bin/sh-alias", "bin/sh"),
        ],
    };
    let app = Aci {
        name: "example.com/app".into(),
        labels: labels.clone(),
        dependencies: vec!["example.com/base".into()],
        whitelist: vec![
            "/bin/sh".into(),
            "/bin/sh-alias".into(),
            "/etc/os-release".into(),
            "/app/run".into(),
            "/etc".into(),
        ],
        entries: vec![
            dir("etc", 0o700),
            file("etc/os-release", b"app\n", 0o644),
            dir("app", 0o755),
            file("app/run", b"app runs\n", 0o755),
            file("app/not-listed", b"filtered by the app's own list\n", 0o644),
            symlink("app/sh", "/bin/sh"),
        ],
    };
    for aci in [&base, &app] {
        nginx.put(&format!("{}-1-linux-{arch}.aci", aci.name), &aci.gz());
    }
    project.write(
        "images.toml",
        "[images.app]\nname = \"example.com/app\"\nlabels = { version = \"1\" }\ninsecure = true\n",
    );
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();
    let run = project.run(&["render", "app", "rootfs"]).success();
    assert!(
        run.stderr.contains("ACI with 1 dependency"),
        "{}",
        run.stderr
    );
    let rootfs = project.root().join("rootfs");
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).ok();
    // The app wins over its dependency; the app's whitelist filters both.
    assert_eq!(read("etc/os-release").as_deref(), Some("app\n"));
    assert_eq!(read("bin/sh").as_deref(), Some("base shell\n"));
    assert_eq!(
        ino(&rootfs.join("bin/sh")),
        ino(&rootfs.join("bin/sh-alias"))
    );
    assert_eq!(read("app/run").as_deref(), Some("app runs\n"));
    assert_eq!(
        read("etc/base.conf"),
        None,
        "not in the app's pathWhitelist"
    );
    assert_eq!(
        read("app/not-listed"),
        None,
        "the app's own files are filtered"
    );
    assert!(
        !rootfs.join("lib").exists(),
        "the app's list filters the base's directories"
    );
    assert!(!rootfs.join("app/sh").is_symlink(), "not whitelisted");
    let etc_mode = std::fs::metadata(rootfs.join("etc"))
        .expect("etc")
        .permissions()
        .mode();
    assert_eq!(
        etc_mode & 0o7777,
        0o700,
        "the app's directory comes first and wins"
    );
    // The dependency entry alone renders too (its own, unfiltered tree).
    project
        .run(&["render", "app/example.com/base", "base"])
        .success();
    assert_eq!(
        std::fs::read_to_string(project.root().join("base/etc/base.conf")).expect("read"),
        "base conf\n"
    );
    let again = project.run(&["render", "app", "again"]).success();
    assert!(
        again.stderr.contains("from the render cache"),
        "{}",
        again.stderr
    );

    // The manifest inside the ACI is checked against what the lock says.
    let lock = project.read("images.lock");
    let tampered = lock.replacen("\"version\" = \"1\"", "\"version\" = \"2\"", 1);
    assert_ne!(tampered, lock);
    project.write("images.lock", &tampered);
    let run = project.run(&["render", "app", "tampered"]).failure(1);
    assert!(
        run.stderr
            .contains("app: images.lock says labels.version is 2, but the pinned bytes say 1")
            && !project.root().join("tampered").exists(),
        "{}",
        run.stderr
    );
    project.write("images.lock", &lock);
    let refused = project
        .run(&["render", "app", "x", "--platform", "linux/amd64"])
        .failure(1);
    assert!(
        refused.stderr.contains("applies to OCI images"),
        "{}",
        refused.stderr
    );
}

/// Without root: owners are the user's, device nodes are skipped and counted, directories
/// stay u+rwx so the user can remove the tree, and the cached tree is not shared with root's.
#[test]
fn rootless_render_skips_devices_and_keeps_trees_removable() {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    let mut null = file("dev/null", b"", 0o666);
    null.kind = tar::EntryType::Char;
    let mut fifo = file("run/pipe", b"", 0o600);
    fifo.kind = tar::EntryType::Fifo;
    let descs = [layer(
        &layout,
        &[
            dir("dev", 0o755),
            null,
            dir("run", 0o755),
            fifo,
            dir("ro", 0o555),
            file("ro/f", b"read only\n", 0o444),
        ],
        GZIP,
    )];
    let image = image(&layout, &descs);
    layout.tag("small", &image);
    locked_project(&project, &["small"]);
    let root = project.root();
    let as_root = rustix::process::geteuid().is_root();
    if as_root {
        project.run(&["render", "small", "as-root"]).success();
        assert!(
            root.join("as-root/dev/null").exists(),
            "root makes device nodes"
        );
        let mode = std::fs::metadata(root.join("as-root/ro"))
            .expect("ro")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o555);
        if !peer("setpriv") {
            return;
        }
        // Hand the project (store included) to nobody, and let it into the temp dir.
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(project.dir.path())
            .status()
            .expect("chown");
        assert!(status.success());
        std::fs::set_permissions(project.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    // As an unprivileged user: nobody, when the tests run as root.
    let unprivileged = |program: &str, args: &[&std::ffi::OsStr]| {
        let mut cmd = if as_root {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
            ])
            .arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args).current_dir(&root).env_clear();
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in &project.env {
            cmd.env(k, v);
        }
        cmd.output().expect("run")
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let out = unprivileged(
        env!("CARGO_BIN_EXE_imagelock"),
        &[os("render"), os("small"), os("rootless")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1 device node skipped (not root)"),
        "{stderr}"
    );
    let rootless = root.join("rootless");
    assert!(!rootless.join("dev/null").exists());
    assert!(
        rootless.join("run/pipe").exists(),
        "fifos need no privileges"
    );
    let mode = std::fs::metadata(rootless.join("ro"))
        .expect("ro")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o755,
        "directories stay u+rwx without privileges"
    );
    assert_eq!(
        std::fs::read_to_string(rootless.join("ro/f")).expect("read"),
        "read only\n"
    );
    let cached: Vec<_> = std::fs::read_dir(project.store().join("rendered"))
        .expect("rendered")
        .filter_map(|e| {
            let name = e.expect("entry").file_name();
            (!name.to_string_lossy().starts_with('.')).then_some(name)
        })
        .collect();
    assert_eq!(cached.len(), if as_root { 2 } else { 1 }, "{cached:?}");
    // The user can remove what it rendered, its cached tree included.
    let mine = std::fs::read_dir(project.store().join("rendered"))
        .expect("rendered")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            let record = std::fs::read(p.join("source.json")).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&record)
                .is_ok_and(|r| r["privileged"] == false)
        })
        .expect("the rootless tree is cached");
    let rm = unprivileged("rm", &[os("-rf"), rootless.as_os_str(), mine.as_os_str()]);
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
}

/// `gc` drops rendered trees whose source blobs no lock needs any more, and keeps the rest.
#[test]
fn gc_removes_rendered_trees_of_unlocked_images() {
    let project = Project::new();
    let mut layout = LayoutBuilder::new(&project.root().join("layout"));
    for (tag, text) in [("keep", b"kept\n"), ("drop", b"gone\n")] {
        let descs = [layer(&layout, &[file("a.txt", text, 0o644)], GZIP)];
        let image = image(&layout, &descs);
        layout.tag(tag, &image);
    }
    locked_project(&project, &["keep", "drop"]);
    project.run(&["render", "keep", "k"]).success();
    project.run(&["render", "drop", "d"]).success();
    let kept = cached_tree(&project.store(), "keep");
    let dropped = cached_tree(&project.store(), "drop");
    // An abandoned build (a crash mid-render) is cleaned up too.
    let abandoned = project.store().join("rendered/.tmp-build-crashed/rootfs");
    std::fs::create_dir_all(&abandoned).expect("mkdir");

    locked_project(&project, &["keep"]);
    let run = project.run(&["gc"]).success();
    assert!(run.stderr.contains("1 rendered tree"), "{}", run.stderr);
    assert!(kept.join("a.txt").is_file(), "a live tree stays");
    assert!(!dropped.exists(), "the tree of an unlocked image goes");
    assert!(!abandoned.exists(), "abandoned builds go");
    assert_eq!(
        std::fs::read_to_string(project.root().join("d/a.txt")).expect("read"),
        "gone\n",
        "rendered directories are the user's: gc leaves them alone"
    );
    let again = project.run(&["render", "keep", "k2"]).success();
    assert!(
        again.stderr.contains("from the render cache"),
        "{}",
        again.stderr
    );
}
