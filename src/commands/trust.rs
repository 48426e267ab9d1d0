//! `trust add`, `trust list`, `trust remove`.

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::json;

use crate::cli::Settings;
use crate::errors::{hinted, with_hint};
use crate::oci::registry::LazyClient;
use crate::project::edit::{self};
use crate::project::lockfile::{Lock, lock_path_for};
use crate::project::manifest::Manifest;
use crate::text::plural;

use super::{http_options, load_manifest};

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
    use std::io::IsTerminal as _;
    let printer = settings.printer;
    crate::signing::trust::check_prefix(prefix)?;
    let manifest = load_manifest(&settings.manifest)?;
    let dir = manifest.dir().to_owned();
    let (keys, in_repo) = match &source {
        KeySource::File(path) => {
            let keys = crate::signing::openpgp::load_key_file(path).map_err(|e| {
                with_hint(
                    e,
                    "export the key with `gpg --armor --export FINGERPRINT > key.asc`",
                )
            })?;
            (keys, crate::signing::trust::repo_relative(&dir, path))
        }
        KeySource::Discover { fingerprint } => {
            let client = LazyClient::new(http_options(settings, manifest.insecure_http_hosts()));
            let found =
                crate::appc::discovery::discover_keys(&manifest, prefix, &client.get()?).await?;
            for (url, key) in &found {
                printer.status(format!("Found at {url}:"));
                printer.status(crate::signing::trust::describe_key(key));
            }
            let keys: Vec<crate::signing::openpgp::PublicKey> = match fingerprint {
                Some(wanted) => {
                    let wanted = crate::signing::trust::normalise_fingerprint(wanted);
                    let chosen: Vec<_> = found
                        .into_iter()
                        .map(|(_, k)| k)
                        .filter(|k| k.fingerprint() == wanted)
                        .collect();
                    if chosen.is_empty() {
                        return Err(hinted(
                            format!(
                                "none of the keys discovered for `{prefix}` has fingerprint {}",
                                crate::signing::openpgp::format_fingerprint(&wanted)
                            ),
                            "check the fingerprint with the image's publisher; the keys found are listed above",
                        ));
                    }
                    chosen
                }
                None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
                    eprint!(
                        "Trust {} for images under `{prefix}`? Only answer yes if you checked the fingerprints with the publisher. [yes/no] ",
                        plural(found.len(), "key")
                    );
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    if answer.trim() != "yes" {
                        return Err(hinted(
                            "nothing written: the keys were not confirmed",
                            format!(
                                "check a fingerprint above with the publisher, then run `imagelock trust add {prefix} --discover --fingerprint FPR`"
                            ),
                        ));
                    }
                    found.into_iter().map(|(_, k)| k).collect()
                }
                None => {
                    return Err(hinted(
                        format!(
                            "nothing written: {} found for `{prefix}` but not confirmed",
                            plural(found.len(), "key")
                        ),
                        format!(
                            "check a fingerprint above with the publisher, then run `imagelock trust add {prefix} --discover --fingerprint FPR`"
                        ),
                    ));
                }
            };
            (keys, None)
        }
    };
    for key in &keys {
        crate::signing::trust::check_usable(key)?;
    }
    let files = match in_repo {
        Some(relative) => vec![relative],
        None => keys
            .iter()
            .map(|key| crate::signing::trust::write_key_file(&dir, key))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let mut text = std::fs::read_to_string(&settings.manifest)
        .with_context(|| format!("cannot read {}", settings.manifest.display()))?;
    let mut changed = false;
    for file in &files {
        if let Some(updated) = edit::add_trust_key(&text, prefix, file)? {
            text = updated;
            changed = true;
        }
    }
    if changed {
        Manifest::parse(&settings.manifest, &text).context("the new trust entry is not valid")?;
        crate::fsutil::write_atomic(&settings.manifest, text.as_bytes())
            .with_context(|| format!("cannot write {}", settings.manifest.display()))?;
    }
    for key in &keys {
        printer.status(crate::signing::trust::describe_key(key));
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
    Ok(())
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
    let view = crate::signing::trust_list::view(&manifest, lock.as_ref());
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
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    if !manifest.trust.contains_key(prefix) {
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
        return Err(crate::errors::usage(
            format!(
                "{} has no [trust.\"{prefix}\"] table",
                manifest.path.display()
            ),
            hint,
        ));
    }
    let files = crate::signing::trust_list::key_files(&manifest, prefix);
    // The fingerprints that stop being trusted, and (with --key) the files to drop.
    let (removed_keys, removed_files): (Vec<String>, Option<Vec<String>>) = match key {
        None => (
            files
                .iter()
                .flat_map(|f| f.keys.iter().flatten())
                .map(|k| k.fingerprint().to_owned())
                .collect(),
            None,
        ),
        Some(wanted) => {
            let holding: Vec<&crate::signing::trust_list::KeyFile> = files
                .iter()
                .filter(|f| {
                    f.keys.as_ref().is_ok_and(|keys| {
                        keys.iter()
                            .any(|k| crate::signing::trust_list::fingerprint_matches(k, wanted))
                    })
                })
                .collect();
            if holding.is_empty() {
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
                return Err(crate::errors::usage(
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
                ));
            }
            (
                holding
                    .iter()
                    .flat_map(|f| f.keys.iter().flatten())
                    .map(|k| k.fingerprint().to_owned())
                    .collect(),
                Some(holding.iter().map(|f| f.file.clone()).collect()),
            )
        }
    };
    let text = std::fs::read_to_string(&settings.manifest)
        .with_context(|| format!("cannot read {}", settings.manifest.display()))?;
    let updated = match &removed_files {
        None => edit::remove_trust(&text, prefix)?,
        Some(files) => edit::remove_trust_keys(&text, prefix, files)?,
    };
    let after = Manifest::parse(&settings.manifest, &updated)
        .context("the edited manifest is not valid")?;
    crate::fsutil::write_atomic(&settings.manifest, updated.as_bytes())
        .with_context(|| format!("cannot write {}", settings.manifest.display()))?;
    match &removed_files {
        None => printer.status(format!(
            "Removed [trust.\"{prefix}\"] ({}) from {}",
            plural(removed_keys.len(), "key"),
            settings.manifest.display()
        )),
        Some(files) => {
            for fpr in &removed_keys {
                printer.status(format!(
                    "No longer trusted for `{prefix}`: {}",
                    crate::signing::openpgp::format_fingerprint(fpr)
                ));
            }
            printer.status(format!(
                "Removed {} from [trust.\"{prefix}\"] keys in {}",
                files.join(", "),
                settings.manifest.display()
            ));
            let still_used = |file: &String| after.trust.values().any(|t| t.keys.contains(file));
            let unused: Vec<&String> = files.iter().filter(|f| !still_used(f)).collect();
            if !unused.is_empty() {
                printer.status(format!(
                    "Left in the repository (delete if nothing else needs it): {}",
                    unused
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if after.trust.get(prefix).is_some_and(|t| t.keys.is_empty()) {
                printer.warn(format!(
                    "[trust.\"{prefix}\"] has no keys left: images under it cannot be locked until you add one (`imagelock trust add {prefix} --key FILE`) or remove the prefix (`imagelock trust remove {prefix}`)"
                ));
            }
        }
    }
    let lock_path = lock_path_for(&settings.manifest);
    if let Ok(Some(lock)) = Lock::load(&lock_path) {
        let affected: Vec<String> = lock
            .images
            .values()
            .filter(|image| {
                crate::signing::trust_list::signers(image)
                    .iter()
                    .any(|f| removed_keys.contains(f))
            })
            .map(|image| image.id.clone())
            .collect();
        if !affected.is_empty() {
            let roots: std::collections::BTreeSet<String> = affected
                .iter()
                .map(|id| {
                    lock.images[id]
                        .dependency_of
                        .clone()
                        .unwrap_or_else(|| id.clone())
                })
                .collect();
            printer.warn(format!(
                "signed by a key no longer trusted, in {}: {}; `imagelock verify` fails for these until a key that signed them is trusted again; then `imagelock update {}` re-pins them",
                lock_path.display(),
                affected.join(", "),
                roots.into_iter().collect::<Vec<_>>().join(" ")
            ));
        }
    }
    Ok(())
}
