//! `trust add`, `trust list`, `trust remove`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;

use crate::cli::Settings;
use crate::errors::{hinted, with_hint};
use crate::oci::registry::LazyClient;
use crate::project::edit::{self};
use crate::project::lockfile::{Lock, lock_path_for};
use crate::project::manifest::Manifest;
use crate::signing::openpgp::{self, PublicKey};
use crate::signing::trust;
use crate::signing::trust_list::{self, KeyFile, Removal};
use crate::text::plural;

use super::project::{http_options, load_manifest};

/// Where `trust add` gets keys from.
pub enum KeySource {
    /// A key file.
    File(PathBuf),
    /// The prefix's `ac-discovery-pubkeys`; write only the key with this fingerprint
    /// (or, interactively, what the user confirms).
    Discover {
        /// The fingerprint verified out of band.
        fingerprint: Option<String>,
    },
}

/// `imagelock trust add`.
pub async fn trust_add(settings: &Settings, prefix: &str, source: KeySource) -> anyhow::Result<()> {
    trust::check_prefix(prefix)?;
    let manifest = load_manifest(&settings.manifest)?;
    let dir = manifest.dir().to_owned();
    let (keys, in_repo) = match &source {
        KeySource::File(path) => (keys_from_file(path)?, trust::repo_relative(&dir, path)),
        KeySource::Discover { fingerprint } => {
            let keys = discovered_keys(settings, &manifest, prefix, fingerprint.as_deref()).await?;
            (keys, None)
        }
    };
    for key in &keys {
        trust::check_usable(key)?;
    }
    // A key file inside the repository is listed where it is; others are written to keys/.
    let files = match in_repo {
        Some(relative) => vec![relative],
        None => keys
            .iter()
            .map(|key| trust::write_key_file(&dir, key))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let text = read_manifest_text(settings)?;
    let updated = edit::add_trust_keys(&text, prefix, &files)?;
    if let Some(updated) = &updated {
        write_manifest(settings, updated, "the new trust entry is not valid")?;
    }
    report_added(settings, prefix, &keys, &files, updated.is_some());
    Ok(())
}

/// The keys in the file `trust add --key` names.
fn keys_from_file(path: &Path) -> anyhow::Result<Vec<PublicKey>> {
    openpgp::load_key_file(path).map_err(|e| {
        with_hint(
            e,
            "export the key with `gpg --armor --export FINGERPRINT > key.asc`",
        )
    })
}

/// The keys `trust add --discover` finds for `prefix` (listed on stderr) and
/// may write: the one with `fingerprint`, else all of them once confirmed at a terminal.
async fn discovered_keys(
    settings: &Settings,
    manifest: &Manifest,
    prefix: &str,
    fingerprint: Option<&str>,
) -> anyhow::Result<Vec<PublicKey>> {
    use std::io::IsTerminal as _;
    let client = LazyClient::new(http_options(settings, manifest.insecure_http_hosts()));
    let found = crate::appc::discovery::discover_keys(manifest, prefix, &client.get()?).await?;
    for (url, key) in &found {
        settings.printer.status(format!("Found at {url}:"));
        settings.printer.status(trust::describe_key(key));
    }
    let found: Vec<PublicKey> = found.into_iter().map(|(_, k)| k).collect();
    match fingerprint {
        Some(wanted) => {
            let chosen = trust::keys_with_fingerprint(found, wanted);
            if chosen.is_empty() {
                return Err(no_key_with_fingerprint(prefix, wanted));
            }
            Ok(chosen)
        }
        None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
            confirm_discovered(prefix, found.len())?;
            Ok(found)
        }
        None => Err(hinted(
            format!(
                "nothing written: {} found for `{prefix}` but not confirmed",
                plural(found.len(), "key")
            ),
            check_then_pass_fingerprint(prefix),
        )),
    }
}

fn no_key_with_fingerprint(prefix: &str, wanted: &str) -> anyhow::Error {
    hinted(
        format!(
            "none of the keys discovered for `{prefix}` has fingerprint {}",
            openpgp::format_fingerprint(&trust::normalise_fingerprint(wanted))
        ),
        "check the fingerprint with the image's publisher; the keys found are listed above",
    )
}

/// Asks at the terminal whether to trust the `count` keys listed above; an error unless `yes`.
fn confirm_discovered(prefix: &str, count: usize) -> anyhow::Result<()> {
    eprint!(
        "Trust {} for images under `{prefix}`? Only answer yes if you checked the fingerprints with the publisher. [yes/no] ",
        plural(count, "key")
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        return Err(hinted(
            "nothing written: the keys were not confirmed",
            check_then_pass_fingerprint(prefix),
        ));
    }
    Ok(())
}

fn check_then_pass_fingerprint(prefix: &str) -> String {
    format!(
        "check a fingerprint above with the publisher, then run `imagelock trust add {prefix} --discover --fingerprint FPR`"
    )
}

/// What `trust add` did: the keys, and whether images.toml changed.
fn report_added(
    settings: &Settings,
    prefix: &str,
    keys: &[PublicKey],
    files: &[String],
    changed: bool,
) {
    let printer = settings.printer;
    for key in keys {
        printer.status(trust::describe_key(key));
    }
    printer.status(format!(
        "{} {} for `{prefix}` in {} ({})",
        if changed {
            "Trusted"
        } else {
            "Already trusted:"
        },
        plural(keys.len(), "key"),
        settings.manifest.display(),
        files.join(", ")
    ));
    if changed {
        printer.status("Run `imagelock lock` to pin images signed with it.");
    }
}

/// images.toml's text, for editing.
fn read_manifest_text(settings: &Settings) -> anyhow::Result<String> {
    std::fs::read_to_string(&settings.manifest)
        .with_context(|| format!("cannot read {}", settings.manifest.display()))
}

/// Writes the edited images.toml once it parses (`invalid` says what is wrong
/// when not); returns the manifest it now is.
fn write_manifest(
    settings: &Settings,
    text: &str,
    invalid: &'static str,
) -> anyhow::Result<Manifest> {
    let manifest = Manifest::parse(&settings.manifest, text).context(invalid)?;
    crate::fsutil::write_atomic(&settings.manifest, text.as_bytes())
        .with_context(|| format!("cannot write {}", settings.manifest.display()))?;
    Ok(manifest)
}

/// `imagelock trust` / `imagelock trust list`.
pub fn trust_list(settings: &Settings) -> anyhow::Result<()> {
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = match Lock::load(&lock_path) {
        Ok(lock) => lock,
        Err(e) => {
            printer.warn(format!("{e}: the images each prefix covers are not shown"));
            None
        }
    };
    let view = trust_list::view(&manifest, lock.as_ref());
    if view.prefixes.is_empty() {
        printer.status(format!(
            "{} trusts no keys: no [trust.\"PREFIX\"] tables",
            manifest.path.display()
        ));
        printer.status("Add one with `imagelock trust add PREFIX --key FILE`.");
    }
    for line in view.render() {
        printer.out(line);
    }
    printer.json(&json!({ "manifest": manifest.path, "trust": view }));
    let broken: Vec<String> = view
        .prefixes
        .iter()
        .flat_map(|p| {
            p.keys
                .iter()
                .filter(|k| k.error.is_some())
                .map(|k| format!("`{}` under [trust.\"{}\"]", k.file, p.prefix))
        })
        .collect();
    if !broken.is_empty() {
        return Err(hinted(
            format!(
                "{} in {} cannot be used: {}",
                plural(broken.len(), "key file"),
                manifest.path.display(),
                broken.join(", ")
            ),
            "restore the file, or replace it with `imagelock trust add PREFIX --key FILE` and drop the old one from `keys` in images.toml",
        ));
    }
    Ok(())
}

/// `imagelock trust remove`.
pub fn trust_remove(settings: &Settings, prefix: &str, key: Option<&str>) -> anyhow::Result<()> {
    let manifest = load_manifest(&settings.manifest)?;
    if !manifest.trust.contains_key(prefix) {
        return Err(no_such_prefix(&manifest, prefix));
    }
    let files = trust_list::key_files(&manifest, prefix);
    let removal = match key {
        None => Removal::whole_table(&files),
        Some(wanted) => Removal::files_holding(&files, wanted)
            .ok_or_else(|| no_such_key(&manifest, prefix, wanted, &files))?,
    };
    let text = read_manifest_text(settings)?;
    let updated = match &removal.files {
        None => edit::remove_trust(&text, prefix)?,
        Some(files) => edit::remove_trust_keys(&text, prefix, files)?,
    };
    let after = write_manifest(settings, &updated, "the edited manifest is not valid")?;
    match &removal.files {
        None => settings.printer.status(format!(
            "Removed [trust.\"{prefix}\"] ({}) from {}",
            plural(removal.fingerprints.len(), "key"),
            settings.manifest.display()
        )),
        Some(files) => report_removed_files(settings, prefix, &removal.fingerprints, files, &after),
    }
    warn_signed_by_removed(settings, &removal.fingerprints);
    Ok(())
}

/// `trust remove PREFIX` of a prefix the manifest does not have.
fn no_such_prefix(manifest: &Manifest, prefix: &str) -> anyhow::Error {
    let known: Vec<&String> = manifest.trust.keys().collect();
    let close = known
        .iter()
        .find(|p| p.trim_end_matches('/') == prefix.trim_end_matches('/'));
    let hint = match (close, known.is_empty()) {
        (Some(p), _) => format!("the prefix is written `{p}`: `imagelock trust remove {p}`"),
        (None, true) => "it trusts no prefixes at all".to_owned(),
        (None, false) => format!(
            "its prefixes are: {} (`imagelock trust` lists them with their keys)",
            known
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    crate::errors::usage(
        format!(
            "{} has no [trust.\"{prefix}\"] table",
            manifest.path.display()
        ),
        hint,
    )
}

/// `trust remove PREFIX --key FPR` when no key file of the prefix holds that key.
fn no_such_key(
    manifest: &Manifest,
    prefix: &str,
    wanted: &str,
    files: &[KeyFile],
) -> anyhow::Error {
    let listed: Vec<String> = files
        .iter()
        .flat_map(|f| match &f.keys {
            Ok(keys) => keys
                .iter()
                .map(|k| format!("{} ({})", k.fingerprint(), f.file))
                .collect(),
            Err(_) => vec![format!("{} (unreadable)", f.file)],
        })
        .collect();
    crate::errors::usage(
        format!(
            "no key with fingerprint `{wanted}` is trusted for `{prefix}` in {}",
            manifest.path.display()
        ),
        if listed.is_empty() {
            format!(
                "[trust.\"{prefix}\"] lists no keys; remove it with `imagelock trust remove {prefix}`"
            )
        } else {
            format!(
                "give a full fingerprint or a long key ID (its last 16 digits); the keys are: {}",
                listed.join(", ")
            )
        },
    )
}

/// What `trust remove --key` did: the keys no longer trusted, the files
/// dropped (and left on disk), and a prefix left without keys.
fn report_removed_files(
    settings: &Settings,
    prefix: &str,
    fingerprints: &[String],
    files: &[String],
    after: &Manifest,
) {
    let printer = settings.printer;
    for fpr in fingerprints {
        printer.status(format!(
            "No longer trusted for `{prefix}`: {}",
            openpgp::format_fingerprint(fpr)
        ));
    }
    printer.status(format!(
        "Removed {} from [trust.\"{prefix}\"] keys in {}",
        files.join(", "),
        settings.manifest.display()
    ));
    let unused = trust_list::unreferenced(after, files);
    if !unused.is_empty() {
        printer.status(format!(
            "Left in the repository (delete if nothing else needs it): {}",
            unused.join(", ")
        ));
    }
    if after.trust.get(prefix).is_some_and(|t| t.keys.is_empty()) {
        printer.warn(format!(
            "[trust.\"{prefix}\"] has no keys left: images under it cannot be locked until you add one (`imagelock trust add {prefix} --key FILE`) or remove the prefix (`imagelock trust remove {prefix}`)"
        ));
    }
}

/// Warns about locked images signed by a key no longer trusted (a lock that
/// cannot be read is left to the commands that need it).
fn warn_signed_by_removed(settings: &Settings, fingerprints: &[String]) {
    let lock_path = lock_path_for(&settings.manifest);
    let Ok(Some(lock)) = Lock::load(&lock_path) else {
        return;
    };
    let affected = trust_list::signed_by_any(&lock, fingerprints);
    if !affected.ids.is_empty() {
        settings.printer.warn(format!(
            "signed by a key no longer trusted, in {}: {}; `imagelock verify` fails for these until a key that signed them is trusted again; then `imagelock update {}` re-pins them",
            lock_path.display(),
            affected.ids.join(", "),
            affected.roots.into_iter().collect::<Vec<_>>().join(" ")
        ));
    }
}
