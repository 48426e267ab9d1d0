//! `trust add`, `trust list`, `trust remove`: OpenPGP keys, and Sigstore keys, keyless
//! identities and trusted roots, per `[trust."PREFIX"]` of images.toml (edited in place).
//!
//! Key and root files named on the command line are checked, then listed where they are
//! when they are inside the repository, else copied beside images.toml under a name
//! derived from their content: `keys/<FINGERPRINT>.asc` (OpenPGP),
//! `keys/sigstore-<hex SHA-256 of the DER public key>.pub`,
//! `keys/trusted_root-<hex SHA-256 of the JSON>.json`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;

use crate::cli::Settings;
use crate::errors::{hinted, with_hint};
use crate::oci::registry::LazyClient;
use crate::project::edit::{self};
use crate::project::lockfile::{Lock, lock_path_for};
use crate::project::manifest::{Manifest, SigstoreIdentity};
use crate::signing::openpgp::{self, PublicKey};
use crate::signing::sigstore;
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

/// What `trust add` adds to one `[trust."PREFIX"]`.
pub struct TrustAddRequest {
    /// The name prefix.
    pub prefix: String,
    /// OpenPGP keys (`keys`), if any.
    pub openpgp: Option<KeySource>,
    /// Sigstore / cosign PEM public key files (`sigstore-keys`).
    pub sigstore_keys: Vec<PathBuf>,
    /// Keyless signers (`sigstore-identities`).
    pub identities: Vec<SigstoreIdentity>,
    /// A `trusted_root.json` (`trusted-root`).
    pub trusted_root: Option<PathBuf>,
    /// Where the prefix's simple signatures are published (`lookaside`).
    pub lookaside: Option<String>,
}

/// `imagelock trust add`.
pub async fn trust_add(settings: &Settings, request: TrustAddRequest) -> anyhow::Result<()> {
    let TrustAddRequest {
        prefix,
        openpgp,
        sigstore_keys,
        identities,
        trusted_root,
        lookaside,
    } = request;
    let prefix = prefix.as_str();
    trust::check_prefix(prefix)?;
    if let Some(url) = &lookaside {
        check_lookaside(url)?;
    }
    let manifest = load_manifest(&settings.manifest)?;
    let dir = manifest.dir().to_owned();
    // Everything is read and checked before anything is written.
    let openpgp = match &openpgp {
        None => None,
        Some(source) => {
            let (keys, in_repo) = match source {
                KeySource::File(path) => (keys_from_file(path)?, trust::repo_relative(&dir, path)),
                KeySource::Discover { fingerprint } => {
                    let keys = discovered_keys(settings, &manifest, prefix, fingerprint.as_deref())
                        .await?;
                    (keys, None)
                }
            };
            for key in &keys {
                trust::check_usable(key)?;
            }
            Some((keys, in_repo))
        }
    };
    let sigstore_keys = sigstore_keys
        .iter()
        .map(|path| read_sigstore_key(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for identity in &identities {
        check_identity(identity)?;
    }
    let trusted_root = trusted_root.as_deref().map(read_trusted_root).transpose()?;

    let mut text = Edited {
        text: read_manifest_text(settings)?,
        changed: false,
    };
    let mut report = Vec::new();
    if let Some((keys, in_repo)) = openpgp {
        // A key file inside the repository is listed where it is; others are written to keys/.
        let files = match in_repo {
            Some(relative) => vec![relative],
            None => keys
                .iter()
                .map(|key| trust::write_key_file(&dir, key))
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        let added = text.apply(edit::add_trust_keys(&text.text, prefix, &files)?);
        report.push(Added::OpenPgp { keys, files, added });
    }
    let trusted_fingerprints: Vec<(String, String)> =
        trust_list::sigstore_key_files(&manifest, prefix)
            .into_iter()
            .filter_map(|f| Some((f.key.ok()?.fingerprint().to_owned(), f.file)))
            .collect();
    for key in sigstore_keys {
        let fingerprint = key.key.fingerprint().to_owned();
        if let Some((_, file)) = trusted_fingerprints.iter().find(|(f, _)| *f == fingerprint) {
            report.push(Added::SigstoreKey {
                fingerprint,
                file: file.clone(),
                added: false,
            });
            continue;
        }
        let file = match trust::repo_relative(&dir, &key.path) {
            Some(relative) => relative,
            None => {
                let hex = fingerprint.strip_prefix("sha256:").unwrap_or(&fingerprint);
                crate::signing::trust::write_beside_manifest(
                    &dir,
                    &format!("keys/sigstore-{hex}.pub"),
                    &key.bytes,
                )?
            }
        };
        let added = text.apply(edit::add_sigstore_key(&text.text, prefix, &file)?);
        report.push(Added::SigstoreKey {
            fingerprint,
            file,
            added,
        });
    }
    for identity in identities {
        let added = text.apply(edit::add_sigstore_identity(&text.text, prefix, &identity)?);
        report.push(Added::Identity { identity, added });
    }
    if let Some(root) = trusted_root {
        let current = manifest
            .trust
            .get(prefix)
            .and_then(|t| t.trusted_root.as_deref())
            .map(|file| (file, trust_list::read_trusted_root(&manifest, file)));
        let digest = root.digest.to_string();
        match current {
            Some((file, Ok(current))) if current == root.digest => {
                report.push(Added::Root {
                    file: file.to_owned(),
                    digest,
                    replaced: None,
                    added: false,
                });
            }
            _ => {
                let file = match trust::repo_relative(&dir, &root.path) {
                    Some(relative) => relative,
                    None => crate::signing::trust::write_beside_manifest(
                        &dir,
                        &format!("keys/trusted_root-{}.json", root.digest.hex()),
                        &root.bytes,
                    )?,
                };
                let (edited, replaced) = match edit::set_trusted_root(&text.text, prefix, &file)? {
                    Some((edited, replaced)) => (Some(edited), replaced),
                    None => (None, None),
                };
                let added = text.apply(edited);
                report.push(Added::Root {
                    file,
                    digest,
                    replaced,
                    added,
                });
            }
        }
    }
    if let Some(url) = lookaside {
        let (edited, replaced) = match edit::set_lookaside(&text.text, prefix, &url)? {
            Some((edited, replaced)) => (Some(edited), replaced),
            None => (None, None),
        };
        let added = text.apply(edited);
        report.push(Added::Lookaside {
            url,
            replaced,
            added,
        });
    }
    if text.changed {
        write_manifest(settings, &text.text, "the new trust entry is not valid")?;
    }
    report_added(settings, prefix, &report, text.changed);
    Ok(())
}

/// images.toml's text through a series of edits, each of which may change nothing.
struct Edited {
    text: String,
    changed: bool,
}

impl Edited {
    /// Takes the edit's result, if it changed the text; returns whether it did.
    fn apply(&mut self, edited: Option<String>) -> bool {
        match edited {
            Some(edited) => {
                self.text = edited;
                self.changed = true;
                true
            }
            None => false,
        }
    }
}

/// One thing `trust add` was asked to trust, and whether images.toml changed for it.
enum Added {
    /// OpenPGP keys and the files that hold them.
    OpenPgp {
        keys: Vec<PublicKey>,
        files: Vec<String>,
        added: bool,
    },
    /// A Sigstore key and the file listed for it.
    SigstoreKey {
        fingerprint: String,
        file: String,
        added: bool,
    },
    /// A keyless signer.
    Identity {
        identity: SigstoreIdentity,
        added: bool,
    },
    /// A trusted root, and the file it replaced.
    Root {
        file: String,
        digest: String,
        replaced: Option<String>,
        added: bool,
    },
    /// Where simple signatures are published, and the URL it replaced.
    Lookaside {
        url: String,
        replaced: Option<String>,
        added: bool,
    },
}

/// A file given to `trust add`, read and checked.
struct Checked<T> {
    /// What it holds.
    key: T,
    /// Where it was read from.
    path: PathBuf,
    /// Its bytes, to copy into the repository.
    bytes: Vec<u8>,
}

/// A root given to `trust add --trusted-root`, read and checked.
struct CheckedRoot {
    path: PathBuf,
    bytes: Vec<u8>,
    digest: crate::digest::Digest,
}

/// The PEM public key file `trust add --sigstore-key` names.
fn read_sigstore_key(path: &Path) -> anyhow::Result<Checked<sigstore::TrustedKey>> {
    let hint = "give the PEM public key (`-----BEGIN PUBLIC KEY-----`) that verifies the signatures: `cosign public-key --key cosign.key > cosign.pub`, or `openssl pkey -pubout` of the private key";
    let bytes = crate::fsutil::read_regular(path).map_err(|e| {
        hinted(
            format!("cannot read Sigstore key file {}: {e}", path.display()),
            hint,
        )
    })?;
    let key = sigstore::TrustedKey::from_pem(&bytes, &format!("key file {}", path.display()))
        .map_err(|e| with_hint(e, hint))?;
    Ok(Checked {
        key,
        path: path.to_owned(),
        bytes,
    })
}

/// The `trusted_root.json` `trust add --trusted-root` names.
fn read_trusted_root(path: &Path) -> anyhow::Result<CheckedRoot> {
    let hint = "give a Sigstore trusted_root.json (media type application/vnd.dev.sigstore.trustedroot+json), e.g. the one your Sigstore instance publishes through TUF";
    let bytes = crate::fsutil::read_regular(path).map_err(|e| {
        hinted(
            format!("cannot read trusted root {}: {e}", path.display()),
            hint,
        )
    })?;
    let root = sigstore::TrustRoot::from_json(&bytes).map_err(|e| {
        hinted(
            format!("{} is not a usable trusted root: {e}", path.display()),
            hint,
        )
    })?;
    if root.lists_nothing() {
        return Err(hinted(
            format!(
                "{} is not a usable trusted root: it lists no transparency log (`tlogs`) and no certificate authority (`certificateAuthorities`), so it would verify nothing",
                path.display()
            ),
            hint,
        ));
    }
    Ok(CheckedRoot {
        path: path.to_owned(),
        digest: root.digest().clone(),
        bytes,
    })
}

/// Refuses an identity that cannot match a Fulcio certificate: an issuer that is not a
/// URL (most often the two values swapped), an empty subject, a regexp that does not compile.
fn check_identity(identity: &SigstoreIdentity) -> anyhow::Result<()> {
    if !identity.issuer.contains("://") || identity.issuer.chars().any(char::is_whitespace) {
        return Err(crate::errors::usage(
            format!(
                "`{}` is not an OIDC issuer URL",
                crate::text::escape(&identity.issuer)
            ),
            "the issuer comes first: `--identity ISSUER SUBJECT`, e.g. `--identity https://token.actions.githubusercontent.com https://github.com/ORG/REPO/.github/workflows/release.yml@refs/heads/main`",
        ));
    }
    if identity.subject.as_deref() == Some("") || identity.subject_regexp.as_deref() == Some("") {
        return Err(crate::errors::usage(
            "the subject is empty",
            "give the certificate's subject (an e-mail address or a workflow URL), or `--identity-regexp ISSUER REGEXP`",
        ));
    }
    identity.check().map_err(|message| {
        crate::errors::usage(
            message,
            "the pattern is searched in the subject (write `^…$` to match all of it), with Go/RE2-like syntax as cosign's `--certificate-identity-regexp`",
        )
    })
}

/// Refuses a lookaside that is not a URL imagelock reads signatures from.
fn check_lookaside(url: &str) -> anyhow::Result<()> {
    let scheme_ok = ["https://", "http://", "file://"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty())
    });
    if scheme_ok && !url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Ok(());
    }
    Err(crate::errors::usage(
        format!("`{}` is not a lookaside URL", crate::text::escape(url)),
        "give the base URL signatures are published under (`<URL>/<repo>@sha256=<hex>/signature-1`), e.g. `--lookaside https://sigs.example.com/sigstore`; plain http:// only to hosts listed with `insecure-http = true`",
    ))
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

/// What `trust add` did, item by item, and whether images.toml changed.
fn report_added(settings: &Settings, prefix: &str, report: &[Added], changed: bool) {
    let printer = settings.printer;
    let manifest = settings.manifest.display();
    let trusted = |added: bool| if added { "Trusted" } else { "Already trusted:" };
    for item in report {
        match item {
            Added::OpenPgp { keys, files, added } => {
                for key in keys {
                    printer.status(trust::describe_key(key));
                }
                printer.status(format!(
                    "{} {} for `{prefix}` in {manifest} ({})",
                    trusted(*added),
                    plural(keys.len(), "key"),
                    files.join(", ")
                ));
            }
            Added::SigstoreKey {
                fingerprint,
                file,
                added,
            } => printer.status(format!(
                "{} Sigstore key {fingerprint} for `{prefix}` in {manifest} ({file})",
                trusted(*added)
            )),
            Added::Identity { identity, added } => printer.status(format!(
                "{} keyless signer {} for `{prefix}` in {manifest}",
                trusted(*added),
                describe_identity(identity)
            )),
            Added::Root {
                file,
                digest,
                replaced,
                added,
            } => printer.status(match (added, replaced) {
                (false, _) => {
                    format!("Already trusted: root {file} ({digest}) for `{prefix}` in {manifest}")
                }
                (true, None) => {
                    format!("Trusted root {file} ({digest}) for `{prefix}` in {manifest}")
                }
                (true, Some(old)) => format!(
                    "Trusted root {file} ({digest}) for `{prefix}` in {manifest}, replacing {old}"
                ),
            }),
            Added::Lookaside {
                url,
                replaced,
                added,
            } => printer.status(match (added, replaced) {
                (false, _) => format!("Already set: lookaside {url} for `{prefix}` in {manifest}"),
                (true, None) => format!("Set lookaside {url} for `{prefix}` in {manifest}"),
                (true, Some(old)) => {
                    format!("Set lookaside {url} for `{prefix}` in {manifest}, replacing {old}")
                }
            }),
        }
    }
    if changed {
        printer.status("Run `imagelock lock` to pin images signed with it.");
    }
}

/// `SUBJECT from ISSUER`, or `subject matching /RE/ from ISSUER`.
fn describe_identity(identity: &SigstoreIdentity) -> String {
    trust_list::IdentityView::of(identity).describe()
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
            p.broken_files()
                .into_iter()
                .map(|file| format!("`{file}` under [trust.\"{}\"]", p.prefix))
        })
        .collect();
    let sigstore_broken = view.prefixes.iter().any(|p| {
        p.sigstore_keys.iter().any(|k| k.error.is_some())
            || p.trusted_root.as_ref().is_some_and(|r| r.error.is_some())
    });
    if !broken.is_empty() {
        return Err(hinted(
            format!(
                "{} in {} cannot be used: {}",
                plural(
                    broken.len(),
                    if sigstore_broken { "file" } else { "key file" }
                ),
                manifest.path.display(),
                broken.join(", ")
            ),
            if sigstore_broken {
                "restore the file, or replace it with `imagelock trust add PREFIX --key FILE` (`--sigstore-key FILE`, `--trusted-root FILE`) and drop the old one from images.toml"
            } else {
                "restore the file, or replace it with `imagelock trust add PREFIX --key FILE` and drop the old one from `keys` in images.toml"
            },
        ));
    }
    Ok(())
}

/// What `trust remove` takes away from one `[trust."PREFIX"]`.
pub enum TrustRemoval {
    /// The whole table.
    Prefix,
    /// The OpenPGP key files holding this key (fingerprint or long key ID).
    Key(String),
    /// The Sigstore key files holding this key (`sha256:` fingerprint, or 12+ of its hex digits).
    SigstoreKey(String),
    /// A keyless signer, exactly as listed.
    Identity(SigstoreIdentity),
    /// `trusted-root`: back to the built-in public-good root.
    TrustedRoot,
}

/// `imagelock trust remove`.
pub fn trust_remove(settings: &Settings, prefix: &str, what: TrustRemoval) -> anyhow::Result<()> {
    let manifest = load_manifest(&settings.manifest)?;
    let Some(table) = manifest.trust.get(prefix) else {
        return Err(no_such_prefix(&manifest, prefix));
    };
    let text = read_manifest_text(settings)?;
    match what {
        TrustRemoval::Prefix | TrustRemoval::Key(_) => {
            let key = match &what {
                TrustRemoval::Key(key) => Some(key.as_str()),
                _ => None,
            };
            remove_openpgp(settings, &manifest, prefix, key, &text)
        }
        TrustRemoval::SigstoreKey(wanted) => {
            let files = trust_list::sigstore_key_files(&manifest, prefix);
            let holding = trust_list::sigstore_files_holding(&files, &wanted)
                .map_err(|keys| ambiguous_sigstore_key(prefix, &wanted, &keys))?;
            let Some((_, fingerprint)) = holding.first().cloned() else {
                return Err(no_such_sigstore_key(&manifest, prefix, &wanted, &files));
            };
            let dropped: Vec<String> = holding.into_iter().map(|(file, _)| file).collect();
            let updated = edit::remove_sigstore_keys(&text, prefix, &dropped)?;
            let after = write_manifest(settings, &updated, "the edited manifest is not valid")?;
            let printer = settings.printer;
            printer.status(format!(
                "No longer trusted for `{prefix}`: Sigstore key {fingerprint}"
            ));
            printer.status(format!(
                "Removed {} from [trust.\"{prefix}\"] sigstore-keys in {}",
                dropped.join(", "),
                settings.manifest.display()
            ));
            report_left_behind(settings, prefix, &dropped, &after);
            warn_losing_trust(
                settings,
                &manifest,
                &after,
                &format!("signed with a Sigstore key no longer trusted for `{prefix}`"),
            );
            Ok(())
        }
        TrustRemoval::Identity(identity) => {
            if !table.sigstore_identities.contains(&identity) {
                return Err(no_such_identity(&manifest, prefix, &identity));
            }
            let updated = edit::remove_sigstore_identity(&text, prefix, &identity)?;
            let after = write_manifest(settings, &updated, "the edited manifest is not valid")?;
            settings.printer.status(format!(
                "No longer trusted for `{prefix}`: keyless signer {} (removed from [trust.\"{prefix}\"] sigstore-identities in {})",
                describe_identity(&identity),
                settings.manifest.display()
            ));
            report_left_behind(settings, prefix, &[], &after);
            warn_losing_trust(
                settings,
                &manifest,
                &after,
                &format!("signed by a keyless signer no longer trusted for `{prefix}`"),
            );
            Ok(())
        }
        TrustRemoval::TrustedRoot => {
            let Some(file) = &table.trusted_root else {
                return Err(crate::errors::usage(
                    format!(
                        "[trust.\"{prefix}\"] in {} names no trusted root",
                        manifest.path.display()
                    ),
                    "it already uses the Sigstore public-good root built into imagelock",
                ));
            };
            let updated = edit::remove_trusted_root(&text, prefix)?;
            let after = write_manifest(settings, &updated, "the edited manifest is not valid")?;
            settings.printer.status(format!(
                "Removed trusted-root {file} from [trust.\"{prefix}\"] in {}: the built-in Sigstore public-good root checks its keyless signatures now",
                settings.manifest.display()
            ));
            report_left_behind(settings, prefix, std::slice::from_ref(file), &after);
            warn_losing_trust(
                settings,
                &manifest,
                &after,
                &format!("verified with the trusted root [trust.\"{prefix}\"] no longer names"),
            );
            Ok(())
        }
    }
}

/// `trust remove PREFIX [--key FPR]`: the whole table, or the OpenPGP key files holding a key.
fn remove_openpgp(
    settings: &Settings,
    manifest: &Manifest,
    prefix: &str,
    key: Option<&str>,
    text: &str,
) -> anyhow::Result<()> {
    let files = trust_list::key_files(manifest, prefix);
    let removal = match key {
        None => Removal::whole_table(&files),
        Some(wanted) => Removal::files_holding(&files, wanted)
            .ok_or_else(|| no_such_key(manifest, prefix, wanted, &files))?,
    };
    let updated = match &removal.files {
        None => edit::remove_trust(text, prefix)?,
        Some(files) => edit::remove_trust_keys(text, prefix, files)?,
    };
    let after = write_manifest(settings, &updated, "the edited manifest is not valid")?;
    match &removal.files {
        None => {
            let table = &manifest.trust[prefix];
            let sigstore = [
                (table.sigstore_keys.len(), "Sigstore key"),
                (table.sigstore_identities.len(), "keyless signer"),
                (usize::from(table.trusted_root.is_some()), "trusted root"),
            ];
            let mut parts: Vec<String> = std::iter::once((removal.fingerprints.len(), "key"))
                .chain(sigstore)
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| plural(n, what))
                .collect();
            if parts.is_empty() {
                parts.push(plural(0, "key"));
            }
            settings.printer.status(format!(
                "Removed [trust.\"{prefix}\"] ({}) from {}",
                parts.join(", "),
                settings.manifest.display()
            ));
            warn_losing_trust(
                settings,
                manifest,
                &after,
                &format!("verified under the removed [trust.\"{prefix}\"]"),
            );
        }
        Some(files) => {
            report_removed_files(settings, prefix, &removal.fingerprints, files, &after);
            warn_losing_trust(
                settings,
                manifest,
                &after,
                &format!("signed by a key no longer trusted for `{prefix}`"),
            );
        }
    }
    Ok(())
}

/// `trust remove PREFIX --sigstore-key FPR` when the digits given start several keys.
fn ambiguous_sigstore_key(prefix: &str, wanted: &str, keys: &[String]) -> anyhow::Error {
    crate::errors::usage(
        format!(
            "`{}` starts the fingerprints of {} trusted for `{prefix}`",
            crate::text::escape(wanted),
            plural(keys.len(), "Sigstore key")
        ),
        format!("give more digits: {}", keys.join(", ")),
    )
}

/// `trust remove PREFIX --sigstore-key FPR` when no Sigstore key file of the prefix holds that key.
fn no_such_sigstore_key(
    manifest: &Manifest,
    prefix: &str,
    wanted: &str,
    files: &[trust_list::SigstoreKeyFile],
) -> anyhow::Error {
    let listed: Vec<String> = files
        .iter()
        .map(|f| match &f.key {
            Ok(key) => format!("{} ({})", key.fingerprint(), f.file),
            Err(_) => format!("{} (unreadable)", f.file),
        })
        .collect();
    crate::errors::usage(
        format!(
            "no Sigstore key with fingerprint `{}` is trusted for `{prefix}` in {}",
            crate::text::escape(wanted),
            manifest.path.display()
        ),
        if listed.is_empty() {
            format!("[trust.\"{prefix}\"] lists no Sigstore keys")
        } else {
            format!(
                "give its fingerprint (`sha256:` and 64 hex digits, or the first 12 or more of them); the Sigstore keys are: {}",
                listed.join(", ")
            )
        },
    )
}

/// `trust remove PREFIX --identity…` of an identity the prefix does not list.
fn no_such_identity(
    manifest: &Manifest,
    prefix: &str,
    identity: &SigstoreIdentity,
) -> anyhow::Error {
    let listed: Vec<String> = manifest.trust[prefix]
        .sigstore_identities
        .iter()
        .map(|i| {
            let flag = if i.subject.is_some() {
                "--identity"
            } else {
                "--identity-regexp"
            };
            let subject = i
                .subject
                .as_deref()
                .or(i.subject_regexp.as_deref())
                .unwrap_or_default();
            format!("`{flag} {} '{subject}'`", i.issuer)
        })
        .collect();
    crate::errors::usage(
        format!(
            "[trust.\"{prefix}\"] in {} does not list the keyless signer {}",
            manifest.path.display(),
            crate::text::escape(&describe_identity(identity))
        ),
        if listed.is_empty() {
            format!("[trust.\"{prefix}\"] lists no keyless signers")
        } else {
            format!(
                "write it as listed (issuer first, the subject or pattern exactly): {}",
                listed.join(", ")
            )
        },
    )
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
    report_left_behind(settings, prefix, files, after);
}

/// After a removal from `[trust."PREFIX"]`: the `files` dropped that nothing lists any
/// more (they stay on disk), and a prefix left trusting no one.
fn report_left_behind(settings: &Settings, prefix: &str, files: &[String], after: &Manifest) {
    let printer = settings.printer;
    let unused = trust_list::unreferenced(after, files);
    if !unused.is_empty() {
        printer.status(format!(
            "Left in the repository (delete if nothing else needs it): {}",
            unused.join(", ")
        ));
    }
    if after.trust.get(prefix).is_some_and(|t| {
        t.keys.is_empty() && t.sigstore_keys.is_empty() && t.sigstore_identities.is_empty()
    }) {
        printer.warn(format!(
            "[trust.\"{prefix}\"] has no keys left: images under it cannot be locked until you add one (`imagelock trust add {prefix} --key FILE`) or remove the prefix (`imagelock trust remove {prefix}`)"
        ));
    }
}

/// Warns about the locked images whose signatures the trust of `before` accepts and the
/// trust of `after` (the edited manifest) does not, by the rule `lock` and `verify` apply
/// (a lock that cannot be read is left to the commands that need it); `what` says what the
/// edit took away.
fn warn_losing_trust(settings: &Settings, before: &Manifest, after: &Manifest, what: &str) {
    let lock_path = lock_path_for(&settings.manifest);
    let Ok(Some(lock)) = Lock::load(&lock_path) else {
        return;
    };
    let affected = crate::resolve::drift::losing_trust(&lock, before, after);
    if !affected.ids.is_empty() {
        settings.printer.warn(format!(
            "{what}, in {}: {}; `imagelock verify` fails for these, and `imagelock update {}` re-pins them with what images.toml trusts now",
            lock_path.display(),
            affected.ids.join(", "),
            affected.roots.into_iter().collect::<Vec<_>>().join(" ")
        ));
    }
}

// What the `trust add` and `trust remove` flags ask for, built here so that `cli` (the
// flags) does not depend on `commands` (what they do).

impl crate::cli::TrustAddArgs {
    /// The additions these flags ask for.
    pub fn request(self) -> crate::commands::TrustAddRequest {
        let crate::cli::TrustAddArgs {
            prefix,
            key,
            discover,
            fingerprint,
            sigstore_keys,
            identities,
            identity_regexps,
            trusted_root,
            lookaside,
        } = self;
        let openpgp = match (key, discover) {
            (Some(file), _) => Some(crate::commands::KeySource::File(file)),
            (None, true) => Some(crate::commands::KeySource::Discover { fingerprint }),
            (None, false) => None,
        };
        let pairs = |values: Vec<String>| -> Vec<(String, String)> {
            values
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect()
        };
        let exact = pairs(identities)
            .into_iter()
            .map(|(issuer, subject)| SigstoreIdentity {
                issuer,
                subject: Some(subject),
                subject_regexp: None,
            });
        let regexps = pairs(identity_regexps)
            .into_iter()
            .map(|(issuer, pattern)| SigstoreIdentity {
                issuer,
                subject: None,
                subject_regexp: Some(pattern),
            });
        crate::commands::TrustAddRequest {
            prefix,
            openpgp,
            sigstore_keys,
            identities: exact.chain(regexps).collect(),
            trusted_root,
            lookaside,
        }
    }
}

impl crate::cli::TrustRemoveArgs {
    /// The prefix and what to remove from it.
    pub fn request(self) -> (String, crate::commands::TrustRemoval) {
        use crate::commands::TrustRemoval;
        let crate::cli::TrustRemoveArgs {
            prefix,
            key,
            sigstore_key,
            identity: exact,
            identity_regexp,
            trusted_root,
        } = self;
        let identity = |issuer: &String, subject: Option<&String>, pattern: Option<&String>| {
            TrustRemoval::Identity(SigstoreIdentity {
                issuer: issuer.clone(),
                subject: subject.cloned(),
                subject_regexp: pattern.cloned(),
            })
        };
        // The group allows one of them; each identity flag takes exactly two values, once.
        let removal = if let Some(key) = key {
            TrustRemoval::Key(key)
        } else if let Some(key) = sigstore_key {
            TrustRemoval::SigstoreKey(key)
        } else if let [issuer, subject] = exact.as_slice() {
            identity(issuer, Some(subject), None)
        } else if let [issuer, pattern] = identity_regexp.as_slice() {
            identity(issuer, None, Some(pattern))
        } else if trusted_root {
            TrustRemoval::TrustedRoot
        } else {
            TrustRemoval::Prefix
        };
        (prefix, removal)
    }
}
