//! The first hour of a new user (issue 16), what the commands print: progress that fits
//! the terminal and counts only what this run fetched, Ctrl-C that says what was kept,
//! `-v` per image, `trust remove` naming exactly the images `verify` will refuse (and
//! `verify` reporting them as errors), exit code 2 with the IDs that exist for an
//! unknown image ID, and a closed stdout ending the run quietly.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::harness::{Canned, HostileServer, Project, Run, example, peer};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Snapshots `run` (exit code, stdout, stderr) with what varies between runs replaced:
/// paths, ports, digests, fingerprints, times, and (with `sizes`) byte counts and speeds.
#[track_caller]
fn snapshot(name: &str, project: &Project, run: &Run, sizes: bool) {
    let text = crate::harness::run_text(run);
    let mut filters: Vec<(String, &str)> = vec![
        (
            crate::harness::regex_escape(&project.root().display().to_string()),
            "[PROJECT]",
        ),
        (
            crate::harness::regex_escape(&project.dir.path().display().to_string()),
            "[TMP]",
        ),
        (r"127\.0\.0\.1:\d+".into(), "[REGISTRY]"),
        (r"sha256:[0-9a-f]{64}".into(), "sha256:[DIGEST]"),
        (
            r"([0-9A-F]{4} ){4}[0-9A-F]{4}  ([0-9A-F]{4} ){4}[0-9A-F]{4}".into(),
            "[FPR]",
        ),
        (r"\b\d+(\.\d+)?m?s\b".into(), "[TIME]"),
    ];
    if sizes {
        filters.push((r"\b\d+(\.\d+)? (B|KiB|MiB|GiB)\b".into(), "[SIZE]"));
    }
    crate::harness::assert_snapshot_filtered(name, &text, &filters);
}

/// `1536` -> `1.5 KiB`, as imagelock prints sizes.
fn human_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// A registry serving one image (`test/img:v1`: a config and two layers) and a project
/// locked against it; no minimum transfer rate, so a trickled layer is only slow.
struct Fixture {
    project: Project,
    server: HostileServer,
    small: Vec<u8>,
    large: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let small: Vec<u8> = (0..1_000u32).map(|i| (i * 3 % 251) as u8).collect();
        let large: Vec<u8> = (0..6_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let layer = |bytes: &[u8]| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                sha(bytes),
                bytes.len()
            )
        };
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{},{}]}}"#,
            sha(&config),
            config.len(),
            layer(&small),
            layer(&large)
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
        for blob in [&config, &small, &large] {
            routes.insert(
                format!("/v2/test/img/blobs/{}", sha(blob)),
                Canned::ok(blob, &[]).with_ranges(),
            );
        }
        let server = HostileServer::start(routes);
        let mut project = Project::new();
        project
            .env
            .insert("IMAGELOCK_HTTP_MIN_RATE".into(), "0".into());
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
            small,
            large,
        }
    }

    fn large_path(&self) -> String {
        format!("/v2/test/img/blobs/{}", sha(&self.large))
    }

    /// The large layer, one byte every `interval` (ranges honoured).
    fn trickle_large(&self, interval: Duration) {
        self.server.set(
            &self.large_path(),
            Canned::ok(&self.large, &[])
                .with_ranges()
                .trickled(interval),
        );
    }

    /// The partial download of the large layer in the store, if any.
    fn partial(&self) -> std::path::PathBuf {
        let hex = sha(&self.large).trim_start_matches("sha256:").to_owned();
        self.project
            .store()
            .join("ingest")
            .join(format!("sha256-{hex}.partial"))
    }
}

/// Polls `done` every 20 ms for up to 30 s.
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--progress plain` prints what the bar shows, a line per blob: the count done, the
/// bytes, the speed and the time left; `-v` a line per image synced.
#[test]
fn plain_progress_counts_blobs_with_bytes_speed_and_eta() {
    let f = Fixture::new();
    let run = f
        .project
        .run(&["sync", "--progress", "plain", "-v"])
        .success();
    snapshot("firsthour_sync_plain_progress", &f.project, &run, true);
    assert!(
        run.stderr.contains("Fetching: 4/4 blobs, "),
        "{}",
        run.stderr
    );
    // -q shows no progress, whatever --progress says.
    std::fs::remove_dir_all(f.project.store()).expect("rm store");
    let run = f
        .project
        .run(&["-q", "sync", "--progress", "plain"])
        .success();
    assert_eq!(run.stderr, "");
}

/// Ctrl-C during a sync exits 130 saying what was kept; the next sync resumes the
/// partial download and counts only what it fetched, in its progress and its summary.
#[test]
fn an_interrupted_sync_says_what_it_kept_and_the_next_counts_only_new_bytes() {
    let f = Fixture::new();
    f.trickle_large(Duration::from_millis(2));
    let child = f.project.spawn(&["sync", "--progress", "plain"]);
    let small = f
        .project
        .store()
        .join("blobs/sha256")
        .join(sha(&f.small).trim_start_matches("sha256:"));
    wait_for("the small layer and part of the large one", || {
        small.exists() && std::fs::metadata(f.partial()).is_ok_and(|m| m.len() >= 100)
    });
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let run = Run::from(child.wait_with_output().expect("wait for sync"));
    let run = run.failure(130);
    assert!(
        run.stderr.contains(
            "\ninterrupted: 3 of 4 missing blobs stored; partial downloads resume next time\nhint: run `imagelock sync` again"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("error:"), "{}", run.stderr);
    let kept = std::fs::metadata(f.partial())
        .expect("the partial stays")
        .len();
    assert!(kept > 0 && kept < f.large.len() as u64);

    // The rest comes at once; only it counts as fetched.
    f.server
        .set(&f.large_path(), Canned::ok(&f.large, &[]).with_ranges());
    let run = f
        .project
        .run(&["sync", "--progress", "plain", "-v"])
        .success();
    let rest = human_bytes(f.large.len() as u64 - kept);
    assert!(
        run.stderr.contains(&format!(
            "Fetching: resuming a partial download ({} already on disk)\nFetching: 1/1 blob, {rest}/{rest}, ",
            human_bytes(kept)
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "Synced 1 image, resumed 1 partial download ({rest} more) in "
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        f.server.ranges(&f.large_path()).last().cloned().flatten(),
        Some(format!("bytes={kept}-"))
    );
    snapshot("firsthour_sync_resumed", &f.project, &run, true);
    assert_eq!(f.project.assert_store_valid(&f.project.store()), 4);
}

/// On a terminal the bar fits 80 columns (it never wraps) and shows the blobs done,
/// the bytes and the time left. Driven through a PTY by util-linux `script`.
#[test]
fn the_progress_bar_fits_an_80_column_terminal() {
    if !peer("script") {
        return;
    }
    let f = Fixture::new();
    f.trickle_large(Duration::from_millis(1));
    let binary = env!("CARGO_BIN_EXE_imagelock");
    let mut script = Command::new("script");
    script
        .args([
            "-qfec",
            &format!("stty cols 80 rows 24; exec {binary} sync"),
            "/dev/null",
        ])
        .current_dir(f.project.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .stdin(Stdio::null());
    for (k, v) in f
        .project
        .env
        .iter()
        .filter(|(k, _)| *k != "IMAGELOCK_NO_PROGRESS")
    {
        script.env(k, v);
    }
    let out = script.output().expect("run script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let lines: Vec<String> = text
        .split(['\r', '\n'])
        .map(strip_ansi)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let bars: Vec<&String> = lines.iter().filter(|l| l.contains("Fetching")).collect();
    assert!(!bars.is_empty(), "no bar drawn:\n{text}");
    for line in &lines {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns ({}): {line:?}",
            line.chars().count()
        );
    }
    assert!(
        bars.iter()
            .any(|l| l.contains("/4 blobs [") && l.contains(" ETA ")),
        "{bars:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Synced 1 image, 4 blobs")),
        "{lines:#?}"
    );
}

/// `text` without ANSI escape sequences (CSI: ESC [ parameters final-byte).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The example with a second, more specific prefix trusting the same key for
/// `imagelock.example/hello` (hello-aci's name), locked and synced.
fn two_prefixes() -> Project {
    let project = example();
    let manifest = project.read("images.toml").replacen(
        "[images.hello]",
        "[trust.\"imagelock.example/hello\"]\nkeys = [\"examples/keys/example-TEST-ONLY.asc\"]\n\n[images.hello]",
        1,
    );
    project.write("images.toml", &manifest);
    project.run(&["lock"]).success();
    project.run(&["sync"]).success();
    project
}

/// `trust remove` names the images `verify` will refuse, by verify's rule: removing
/// the broader prefix leaves hello-aci covered by its own, with the same key (no
/// warning, verify passes); removing its own prefix names it, and verify fails with
/// an error, not a warning.
#[test]
fn trust_remove_names_exactly_the_images_verify_refuses() {
    let project = two_prefixes();
    let manifest = project.read("images.toml");
    let run = project
        .run(&["trust", "remove", "imagelock.example/"])
        .success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert!(!run.stderr.contains("hello-aci"), "{}", run.stderr);
    project.run(&["verify"]).success();

    project.write("images.toml", &manifest);
    let run = project
        .run(&["trust", "remove", "imagelock.example/hello"])
        .success();
    snapshot("firsthour_trust_remove_own_prefix", &project, &run, false);
    let run = project.run(&["verify"]).failure(1);
    snapshot("firsthour_verify_failed", &project, &run, false);
    assert!(
        run.stderr.contains("error: FAILED  hello-aci:"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("warning:"), "{}", run.stderr);
}

/// Every command that takes an image ID exits 2 for one that does not exist, and the
/// hint lists the IDs that do.
#[test]
fn unknown_image_ids_exit_2_listing_the_ids() {
    let project = example();
    let bundle = project.root().join("b.tar.zst");
    let bundle = bundle.to_str().expect("utf-8 path");
    let commands: [&[&str]; 5] = [
        &["inspect", "nope"],
        &["update", "nope"],
        &["render", "nope", "out"],
        &["remove", "nope"],
        &["export", bundle, "--image", "nope"],
    ];
    let mut text = String::new();
    for args in commands {
        let run = project.run(args).failure(2);
        assert!(
            run.stderr
                .contains("hint: the images are: hello, hello-aci"),
            "{args:?}: {}",
            run.stderr
        );
        text.push_str(&format!("$ imagelock {}\n{}", args.join(" "), run.stderr));
    }
    let all = Run {
        code: 2,
        stdout: String::new(),
        stderr: text,
    };
    snapshot("firsthour_unknown_image_ids", &project, &all, false);
    assert!(!Path::new(bundle).exists());
}

/// A reader that closed stdout before anything was written (`| head` done early):
/// every command writing to stdout ends quietly, with 0.
#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let project = example();
    project.run(&["lock"]).success();
    for args in [
        &["completions", "bash"][..],
        &["man", "sync"],
        &["man"],
        &["list"],
        &["list", "--json"],
        &["inspect", "hello"],
        &["trust"],
        &["--help"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_imagelock"))
            .args(args)
            .current_dir(project.root())
            .env_clear()
            .envs(&project.env)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run imagelock");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}
