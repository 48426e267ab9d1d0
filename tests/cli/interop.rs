//! Interop: images whose layers real builders wrote (`tests/corpus/make.sh`: buildah,
//! `umoci insert` and `umoci repack`, GNU tar, bsdtar, Python's tarfile), pushed to a real
//! `docker-registry` gzip-compressed and, to a second registry, recompressed to zstd by
//! skopeo, and kept uncompressed in an OCI layout; each locked, synced and rendered, and the
//! tree compared with `umoci unpack` of the same image (`tests/corpus/compare.py`: paths,
//! types, modes, sizes, contents, link targets, hard-link groups, xattrs, and owners as
//! root). The refused cases must say whose fault they are.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Project, Registry, RegistryOptions, peer, skopeo_push};

/// The tools the corpus is built and checked with.
const TOOLS: [&str; 7] = [
    "buildah",
    "umoci",
    "skopeo",
    "docker-registry",
    "tar",
    "bsdtar",
    "python3",
];

/// One line of `cases.tsv`.
struct Case {
    tag: String,
    builder: String,
    features: String,
    expect: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn run(program: &str, args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

#[track_caller]
fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the corpus into `out` and reads its cases.
fn make_corpus(out: &Path) -> Vec<Case> {
    let script = corpus_dir().join("make.sh");
    ok(
        run(
            "bash",
            &[script.to_str().expect("utf8"), out.to_str().expect("utf8")],
            out.parent().expect("parent"),
        ),
        "tests/corpus/make.sh",
    );
    let cases = std::fs::read_to_string(out.join("cases.tsv")).expect("cases.tsv");
    cases
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "cases.tsv: {line}");
            Case {
                tag: fields[0].into(),
                builder: fields[1].into(),
                features: fields[2].into(),
                expect: fields[3].into(),
            }
        })
        .collect()
}

/// `oci:LAYOUT:TAG` copied to `oci:RAW:TAG` with its layers uncompressed (by way of a `dir:`).
fn copy_uncompressed(layout: &Path, tag: &str, raw: &Path, scratch: &Path) {
    let dir = scratch.join(format!("dir-{tag}"));
    let from = format!("oci:{}:{tag}", layout.display());
    let via = format!("dir:{}", dir.display());
    let to = format!("oci:{}:{tag}", raw.display());
    let here = Path::new("/");
    ok(
        run(
            "skopeo",
            &["copy", "--quiet", "--dest-decompress", &from, &via],
            here,
        ),
        "skopeo copy --dest-decompress",
    );
    ok(
        run(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--dest-oci-accept-uncompressed-layers",
                &via,
                &to,
            ],
            here,
        ),
        "skopeo copy --dest-oci-accept-uncompressed-layers",
    );
}

#[test]
fn layers_from_real_builders_render_as_umoci_unpacks_them() {
    if !TOOLS.iter().all(|tool| peer(tool)) {
        return;
    }
    let as_root = rustix::process::geteuid().is_root();
    if !as_root {
        if std::env::var_os("IMAGELOCK_REQUIRE_PEERS").is_some_and(|v| v == "1") {
            panic!("the interop corpus needs root (buildah's vfs storage, owners, xattrs)");
        }
        eprintln!("SKIPPED: the interop corpus needs root (buildah's vfs storage)");
        return;
    }
    let project = Project::new();
    let root = project.root();
    let corpus = root.join("corpus");
    let cases = make_corpus(&corpus);
    let layout = corpus.join("layout");
    assert!(cases.len() >= 15, "{} cases", cases.len());

    let gzip_registry = Registry::start(RegistryOptions::default());
    let zstd_registry = Registry::start(RegistryOptions::default());
    let (gz, zst) = (gzip_registry.host(), zstd_registry.host());
    let raw = root.join("raw");
    let mut manifest = String::new();
    // (lock entry, case index, compression)
    let mut entries: Vec<(String, usize, &str)> = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let tag = &case.tag;
        skopeo_push(&layout, tag, &format!("{gz}/corpus/{tag}:latest"), &[]);
        manifest.push_str(&format!(
            "[images.{tag}-gz]\ndocker = \"{gz}/corpus/{tag}:latest\"\ninsecure = true\n\n"
        ));
        entries.push((format!("{tag}-gz"), index, "gzip"));
        if case.expect.starts_with("refused:") {
            continue;
        }
        skopeo_push(
            &layout,
            tag,
            &format!("{zst}/corpus/{tag}:latest"),
            &["--dest-compress-format", "zstd"],
        );
        manifest.push_str(&format!(
            "[images.{tag}-zst]\ndocker = \"{zst}/corpus/{tag}:latest\"\ninsecure = true\n\n"
        ));
        entries.push((format!("{tag}-zst"), index, "zstd"));
        copy_uncompressed(&layout, tag, &raw, &root);
        manifest.push_str(&format!(
            "[images.{tag}-raw]\npath = \"raw:{tag}\"\ninsecure = true\n\n"
        ));
        entries.push((format!("{tag}-raw"), index, "tar"));
    }
    project.write("images.toml", &manifest);
    project.allow_plain_http(&gz);
    project.allow_plain_http(&zst);
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();
    let lock = project.read("images.lock");
    for media_type in ["tar+gzip\"", "tar+zstd\"", "layer.v1.tar\""] {
        assert!(
            lock.contains(media_type),
            "no {media_type} layer in the lock"
        );
    }

    let mut problems = Vec::new();
    let mut table = Vec::new();
    for (id, index, compression) in &entries {
        let case = &cases[*index];
        let out = root.join("out").join(id);
        let rendered = project.run(&["render", id, out.to_str().expect("utf8")]);
        if let Some(fault) = case.expect.strip_prefix("refused:") {
            let verdict = check_refusal(&project, id, fault, &rendered);
            table.push(format!("{id}: refused ({fault})"));
            problems.extend(verdict.map(|p| format!("{id}: {p}")));
            continue;
        }
        if rendered.code != 0 {
            problems.push(format!("{id}: render failed:\n{}", rendered.stderr));
            continue;
        }
        let reference = case.expect.strip_prefix("umoci:").unwrap_or(&case.tag);
        if reference != case.tag && compression == &"gzip" {
            // The case itself is what umoci refuses (the table says so): check that it does.
            let own = root.join("umoci-refuses").join(&case.tag);
            let image = format!("{}:{}", layout.display(), case.tag);
            let refused = run(
                "umoci",
                &["unpack", "--image", &image, own.to_str().expect("utf8")],
                &root,
            );
            if refused.status.success() {
                problems.push(format!("{id}: umoci unpacks it after all"));
            }
        }
        let unpacked = unpack_once(&layout, reference, &root.join("umoci"));
        let compared = run(
            "python3",
            &[
                corpus_dir().join("compare.py").to_str().expect("utf8"),
                out.to_str().expect("utf8"),
                unpacked.to_str().expect("utf8"),
                "--owners",
            ],
            &root,
        );
        let report = String::from_utf8_lossy(&compared.stdout).into_owned();
        if compared.status.success() {
            table.push(format!(
                "{id}: identical to umoci unpack of {reference} ({compression}; {}: {}): {}",
                case.builder,
                case.features,
                report.trim()
            ));
        } else {
            problems.push(format!(
                "{id} ({}) differs from umoci unpack of {reference}:\n{report}{}",
                case.builder,
                String::from_utf8_lossy(&compared.stderr)
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// `umoci unpack` of `tag` into `dir/tag` (once), its rootfs.
fn unpack_once(layout: &Path, tag: &str, dir: &Path) -> PathBuf {
    let bundle = dir.join(tag);
    if !bundle.exists() {
        std::fs::create_dir_all(dir).expect("mkdir");
        let image = format!("{}:{tag}", layout.display());
        ok(
            run(
                "umoci",
                &["unpack", "--image", &image, bundle.to_str().expect("utf8")],
                dir,
            ),
            &format!("umoci unpack {tag}"),
        );
    }
    bundle.join("rootfs")
}

/// What is wrong with a refusal, if anything: it must fail, name the image, the layer
/// (index and digest) and say whose fault it is; a local limit is not "malformed or hostile".
fn check_refusal(
    project: &Project,
    id: &str,
    fault: &str,
    run: &crate::harness::Run,
) -> Option<String> {
    if run.code != 1 {
        return Some(format!(
            "expected a refusal, got exit {}:\n{}",
            run.code, run.stderr
        ));
    }
    let lock = project.read("images.lock");
    let named_layer = lock
        .lines()
        .filter(|l| l.contains("sha256:"))
        .filter_map(|l| l.split('"').find(|s| s.starts_with("sha256:")))
        .any(|digest| run.stderr.contains(&format!("layer 1 of 1 ({digest}")));
    let words = match fault {
        "limit" => "is not at fault: it needs more than this machine",
        "malformed" => "is malformed",
        "hostile" => "is hostile",
        other => panic!("unknown fault {other}"),
    };
    let blames = fault != "limit" || !run.stderr.contains("malformed or hostile");
    let ok = run.stderr.contains(&format!("`{id}`"))
        && named_layer
        && run.stderr.contains("entry `")
        && run.stderr.contains(words)
        && blames;
    (!ok).then(|| format!("the error does not name and classify it:\n{}", run.stderr))
}
