//! The tamper matrix: `images.lock` edited by hand, field by field, against a
//! synced store. For every field a command acts on, each command either
//! refuses, naming the image and the field, or is provably unaffected (exit 0,
//! the store's names and blobs as they were, the same tree rendered).
//!
//! The project is the bundled example (a two-platform OCI layout and a signed
//! ACI, no network) plus a second layout, `other`, whose blobs sit in the same
//! store: the material an attacker swaps in.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::{LayoutBuilder, Project, Run, example};

/// What one command must do with one tampered lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A non-zero exit whose stderr names the image and the field.
    Refused,
    /// Exit 0, with the store and the rendered tree exactly as before.
    Unaffected,
}
use Outcome::{Refused, Unaffected};

/// The commands of the matrix, in its column order.
const COMMANDS: [&str; 8] = [
    "lock --check",
    "sync --locked",
    "sync --frozen",
    "verify",
    "render",
    "inspect",
    "export",
    "fsck",
];

/// One row: a field edited in the lock, the image it belongs to, a word every
/// refusal must contain, and what each command (in [`COMMANDS`] order) must do.
struct Row {
    field: &'static str,
    image: &'static str,
    names: &'static str,
    edit: fn(&mut toml::Table, &Facts),
    outcomes: [Outcome; 8],
}

/// Values of the `other` image the rows swap in.
struct Facts {
    other_layer: toml::Value,
    other_config: toml::Value,
    other_manifest: toml::Table,
}

fn image<'a>(lock: &'a mut toml::Table, id: &str) -> &'a mut toml::Table {
    lock["image"]
        .as_array_mut()
        .expect("[[image]]")
        .iter_mut()
        .map(|v| v.as_table_mut().expect("table"))
        .find(|t| t["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("no image {id}"))
}

fn manifest<'a>(lock: &'a mut toml::Table, id: &str, n: usize) -> &'a mut toml::Table {
    image(lock, id)["manifest"]
        .as_array_mut()
        .expect("manifests")[n]
        .as_table_mut()
        .expect("table")
}

fn signature(lock: &mut toml::Table) -> &mut toml::Table {
    image(lock, "hello-aci")["signature"]
        .as_table_mut()
        .expect("signature")
}

/// Stale against images.toml (lock --check, sync --locked refuse) but the pins
/// still agree with their bytes: the rest act on exactly what they did before.
const STALE_ONLY: [Outcome; 8] = [
    Refused, Refused, Unaffected, Unaffected, Unaffected, Unaffected, Refused, Unaffected,
];
/// Pins another location than images.toml asks for: stale, and `verify` refuses it too
/// (whatever its signatures say, they are not for the image asked for).
const ELSEWHERE: [Outcome; 8] = [
    Refused, Refused, Unaffected, Refused, Unaffected, Unaffected, Refused, Unaffected,
];
/// Disagrees with the pinned bytes: everything that reads the lock refuses;
/// fsck reads only the store, which no command changed.
const PINS: [Outcome; 8] = [
    Refused, Refused, Refused, Refused, Refused, Refused, Refused, Unaffected,
];
/// Refused by the trust policy or the signatures: every command that acts on
/// the lock applies them (render, inspect, export and push too).
const POLICY: [Outcome; 8] = PINS;

fn rows() -> Vec<Row> {
    vec![
        Row {
            field: "layer digest swapped for another image's layer",
            image: "hello",
            names: "layers[0]",
            edit: |lock, facts| {
                manifest(lock, "hello", 0)["layers"] =
                    toml::Value::Array(vec![facts.other_layer.clone()]);
            },
            outcomes: PINS,
        },
        Row {
            field: "layers = []",
            image: "hello",
            names: "layers",
            edit: |lock, _| {
                manifest(lock, "hello", 0)["layers"] = toml::Value::Array(vec![]);
            },
            outcomes: PINS,
        },
        Row {
            field: "layer appended",
            image: "hello",
            names: "layers",
            edit: |lock, facts| {
                let layers = manifest(lock, "hello", 0)["layers"]
                    .as_array_mut()
                    .expect("layers");
                layers.push(facts.other_layer.clone());
            },
            outcomes: PINS,
        },
        Row {
            field: "layer media type",
            image: "hello",
            names: "layers[0]",
            edit: |lock, _| {
                manifest(lock, "hello", 0)["layers"][0]["media-type"] =
                    "application/vnd.oci.image.layer.v1.tar".into();
            },
            outcomes: PINS,
        },
        Row {
            field: "config digest",
            image: "hello",
            names: "config",
            edit: |lock, facts| {
                manifest(lock, "hello", 0)["config"] = facts.other_config.clone();
            },
            outcomes: PINS,
        },
        Row {
            field: "manifest media type",
            image: "hello",
            names: "media type",
            edit: |lock, _| {
                manifest(lock, "hello", 0)["media-type"] =
                    "application/vnd.docker.distribution.manifest.v2+json".into();
            },
            outcomes: PINS,
        },
        Row {
            field: "manifest swapped for another image's",
            image: "hello",
            names: "manifest",
            edit: |lock, facts| {
                let platform = manifest(lock, "hello", 0)["platform"].clone();
                let mut other = facts.other_manifest.clone();
                other.insert("platform".into(), platform);
                *manifest(lock, "hello", 0) = other;
            },
            outcomes: PINS,
        },
        Row {
            field: "manifest platform",
            image: "hello",
            names: "platform",
            edit: |lock, _| {
                manifest(lock, "hello", 0)["platform"] = "linux/s390x".into();
            },
            outcomes: PINS,
        },
        Row {
            field: "index removed (manifests pinned without it)",
            image: "hello",
            names: "index",
            edit: |lock, _| {
                image(lock, "hello").remove("index");
            },
            outcomes: PINS,
        },
        Row {
            field: "index media type",
            image: "hello",
            names: "media type",
            edit: |lock, _| {
                image(lock, "hello")["index"]["media-type"] =
                    "application/vnd.docker.distribution.manifest.list.v2+json".into();
            },
            outcomes: PINS,
        },
        Row {
            field: "verified = true without a signature",
            image: "hello",
            names: "verified",
            edit: |lock, _| {
                image(lock, "hello")["verified"] = true.into();
            },
            outcomes: POLICY,
        },
        Row {
            field: "layout path",
            image: "hello",
            names: "path",
            edit: |lock, _| {
                image(lock, "hello")["path"] = "examples/other".into();
            },
            outcomes: ELSEWHERE,
        },
        Row {
            field: "entry-hash",
            image: "hello",
            names: "hello",
            edit: |lock, _| {
                image(lock, "hello")["entry-hash"] = format!("sha256:{}", "0".repeat(64)).into();
            },
            outcomes: STALE_ONLY,
        },
        Row {
            field: "ACI image-id",
            image: "hello-aci",
            names: "image-id",
            edit: |lock, _| {
                image(lock, "hello-aci")["image-id"] = format!("sha512-{}", "1".repeat(128)).into();
            },
            outcomes: PINS,
        },
        Row {
            field: "ACI name",
            image: "hello-aci",
            names: "name",
            edit: |lock, _| {
                image(lock, "hello-aci")["name"] = "imagelock.example/other".into();
            },
            outcomes: PINS,
        },
        Row {
            field: "ACI labels",
            image: "hello-aci",
            names: "labels.version",
            edit: |lock, _| {
                let labels = toml::Table::from_iter([("version".into(), "9.9.9".into())]);
                image(lock, "hello-aci").insert("labels".into(), labels.into());
            },
            outcomes: PINS,
        },
        Row {
            field: "ACI dependencies",
            image: "hello-aci",
            names: "dependencies",
            edit: |lock, _| {
                image(lock, "hello-aci").insert(
                    "dependencies".into(),
                    toml::Value::Array(vec!["hello-aci/imagelock.example/base".into()]),
                );
            },
            outcomes: PINS,
        },
        Row {
            field: "ACI location",
            image: "hello-aci",
            names: "location",
            edit: |lock, _| {
                image(lock, "hello-aci")["url"] = "examples/elsewhere.aci".into();
            },
            outcomes: ELSEWHERE,
        },
        Row {
            field: "signature signed-by",
            image: "hello-aci",
            names: "signed",
            edit: |lock, _| {
                signature(lock)["signed-by"] = "A".repeat(40).into();
            },
            outcomes: ALL_BUT_STORE_READERS,
        },
        Row {
            field: "signature key",
            image: "hello-aci",
            names: "key",
            edit: |lock, _| {
                signature(lock)["key"] = "A".repeat(40).into();
            },
            outcomes: SIGNATURE,
        },
        Row {
            field: "signature prefix",
            image: "hello-aci",
            names: "trust",
            edit: |lock, _| {
                signature(lock)["prefix"] = "imagelock.example/hello".into();
            },
            outcomes: ALL_BUT_STORE_READERS,
        },
        Row {
            field: "signature removed, verified = false",
            image: "hello-aci",
            names: "trust",
            edit: |lock, _| {
                let aci = image(lock, "hello-aci");
                aci.remove("signature");
                aci["verified"] = false.into();
            },
            outcomes: POLICY,
        },
        Row {
            field: "ACI media type",
            image: "hello-aci",
            names: "media type",
            edit: |lock, _| {
                image(lock, "hello-aci")["aci"]["media-type"] =
                    "application/vnd.oci.image.layer.v1.tar".into();
            },
            outcomes: PINS,
        },
        Row {
            field: "reference on a layout entry (another image's store name)",
            image: "hello",
            names: "reference",
            edit: |lock, _| {
                image(lock, "hello")
                    .insert("reference".into(), "docker.io/library/alpine:3.20".into());
            },
            outcomes: PINS,
        },
        Row {
            field: "dependency-of on an images.toml entry",
            image: "hello-aci",
            names: "dependency",
            edit: |lock, _| {
                image(lock, "hello-aci").insert("dependency-of".into(), "other".into());
            },
            outcomes: PINS,
        },
        Row {
            field: "an extra entry posing as a dependency",
            image: "zz-stowaway",
            names: "dependency",
            edit: |lock, _| {
                let mut stowaway = image(lock, "hello-aci").clone();
                stowaway.insert("id".into(), "zz-stowaway".into());
                stowaway.insert("source".into(), "appc".into());
                stowaway.insert("dependency-of".into(), "hello-aci".into());
                lock["image"]
                    .as_array_mut()
                    .expect("images")
                    .push(stowaway.into());
            },
            outcomes: PINS,
        },
    ]
}

/// The signer the lock names is judged against the keys (staleness) and
/// against the signature (everything that acts on the lock).
const ALL_BUT_STORE_READERS: [Outcome; 8] = POLICY;
/// Only re-verifying the signature can tell which of the key's subkeys made
/// it: `lock --check` compares the lock with images.toml and the bytes it pins.
const SIGNATURE: [Outcome; 8] = [
    Unaffected, Refused, Refused, Refused, Refused, Refused, Refused, Unaffected,
];

/// Every file under `dir` with its bytes (symlinks by target), for comparing trees.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let name = path
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            let kind = entry.file_type().expect("type");
            if kind.is_dir() {
                out.insert(format!("{name}/"), Vec::new());
                stack.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                out.insert(name, target.display().to_string().into_bytes());
            } else {
                out.insert(name, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// What a command may not change: the store's names and blobs.
fn store_state(project: &Project, store: &Path) -> (String, Vec<(String, String)>) {
    let index = std::fs::read_to_string(store.join("index.json")).expect("index.json");
    (index, project.store_blobs(store))
}

fn setup() -> (Project, Facts) {
    let project = example();
    let mut other = LayoutBuilder::new(&project.root().join("examples/other"));
    let layer = other.layer(&[("evil", b"the attacker's file\n")]);
    let manifest = other.image("linux", "amd64", &[layer]);
    other.tag("1.0", &manifest);
    let mut toml_text = project.read("images.toml");
    toml_text.push_str("\n[images.other]\npath = \"examples/other:1.0\"\ninsecure = true\n");
    project.write("images.toml", &toml_text);
    project.run(&["lock"]).success();
    project.run(&["sync", "--locked"]).success();
    let lock: toml::Table = toml::from_str(&project.read("images.lock")).expect("lock");
    let mut scratch = lock.clone();
    let other_manifest = manifest_of(&mut scratch, "other");
    let facts = Facts {
        other_layer: other_manifest["layers"][0].clone(),
        other_config: other_manifest["config"].clone(),
        other_manifest,
    };
    (project, facts)
}

fn manifest_of(lock: &mut toml::Table, id: &str) -> toml::Table {
    manifest(lock, id, 0).clone()
}

fn run_command(project: &Project, command: &str, image: &str, out: &Path) -> Run {
    let out = out.to_str().expect("utf8");
    match command {
        "lock --check" => project.run(&["lock", "--check"]),
        "sync --locked" => project.run(&["sync", "--locked", "--offline"]),
        "sync --frozen" => project.run(&["sync", "--frozen", "--offline"]),
        "verify" => project.run(&["verify"]),
        "render" => project.run(&["render", image, out]),
        "inspect" => project.run(&["inspect", image]),
        "export" => project.run(&["export", out]),
        "fsck" => project.run(&["fsck"]),
        other => panic!("no command {other}"),
    }
}

#[test]
fn every_lock_field_a_command_acts_on_is_refused_or_has_no_effect() {
    let (project, facts) = setup();
    let store = project.root().join(".imagelock/store");
    let pristine = project.read("images.lock");
    let before = store_state(&project, &store);
    let scratch = project.dir.path().join("scratch");
    // The trees each image renders to from the pristine lock.
    let mut rendered = BTreeMap::new();
    for id in ["hello", "hello-aci"] {
        let out = scratch.join(format!("baseline-{id}"));
        project
            .run(&["render", id, out.to_str().expect("utf8")])
            .success();
        rendered.insert(id, tree(&out));
    }
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (n, row) in rows().iter().enumerate() {
        let mut lock: toml::Table = toml::from_str(&pristine).expect("lock");
        (row.edit)(&mut lock, &facts);
        let text = toml::to_string(&lock).expect("serialise");
        assert_ne!(
            text.trim(),
            pristine.trim(),
            "{}: the edit changed nothing",
            row.field
        );
        project.write("images.lock", &text);
        let mut cells = Vec::new();
        for (command, want) in COMMANDS.iter().zip(row.outcomes) {
            let out = scratch.join(format!("{n}-{}", command.replace(' ', "-")));
            let run = run_command(&project, command, row.image, &out);
            let got = if run.code == 0 { Unaffected } else { Refused };
            let mut problem = None;
            if got != want {
                problem = Some(format!("expected {want:?}, got exit {}", run.code));
            } else if got == Refused {
                let named = run.stderr.contains(&format!("`{}`", row.image))
                    || run.stderr.contains(&format!("{}:", row.image));
                if !named || !run.stderr.contains(row.names) {
                    problem = Some(format!(
                        "the refusal does not name `{}` and `{}`",
                        row.image, row.names
                    ));
                }
                if *command == "render" && out.exists() && !tree(&out).is_empty() {
                    problem = Some("a refused render wrote files".into());
                }
                if *command == "export" && out.exists() {
                    problem = Some("a refused export wrote a bundle".into());
                }
            } else if *command == "render" && tree(&out) != rendered[row.image] {
                problem = Some("rendered another tree".into());
            }
            if store_state(&project, &store) != before {
                problem = Some("changed the store's names or blobs".into());
            }
            if let Some(problem) = problem {
                failures.push(format!(
                    "{} × {command}: {problem}\n  stderr: {}",
                    row.field,
                    run.stderr.trim().replace('\n', "\n          ")
                ));
            }
            cells.push(format!("{got:?}"));
        }
        table.push(format!("| {} | {} |", row.field, cells.join(" | ")));
    }
    project.write("images.lock", &pristine);
    project.run(&["verify"]).success();
    eprintln!("| field | {} |\n{}", COMMANDS.join(" | "), table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn trust_changes_in_images_toml_make_the_lock_stale() {
    let project = example();
    project.run(&["lock", "--check"]).success();
    project.run(&["sync", "--locked"]).success();
    let manifest = project.read("images.toml");
    let other_key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openpgp/ed25519.asc");
    std::fs::copy(other_key, project.root().join("examples/other-key.asc")).expect("copy key");
    let cases = [
        (
            "the prefix removed",
            manifest.replace(
                "[trust.\"imagelock.example/\"]",
                "[trust.\"unrelated.example/\"]",
            ),
            "no prefix covers `imagelock.example/hello`",
        ),
        (
            "its key replaced by another",
            manifest.replace(
                "keys = [\"examples/keys/example-TEST-ONLY.asc\"]",
                "keys = [\"examples/other-key.asc\"]",
            ),
            "that key is not listed",
        ),
        (
            "a more specific prefix",
            format!(
                "{manifest}\n[trust.\"imagelock.example/hello\"]\nkeys = [\"examples/keys/example-TEST-ONLY.asc\"]\n"
            ),
            "[trust.\"imagelock.example/hello\"] (the most specific prefix",
        ),
    ];
    for (what, text, says) in cases {
        project.write("images.toml", &text);
        for args in [&["lock", "--check"][..], &["sync", "--locked"]] {
            let run = project.run(args).failure(3);
            assert!(
                run.stderr.contains("changed `hello-aci`") && run.stderr.contains(says),
                "{what}: {args:?}: {}",
                run.stderr
            );
        }
    }
    project.write("images.toml", &manifest);
    project.run(&["lock", "--check"]).success();
}
