//! What the manifest trusts, for `imagelock trust` / `trust list` and `trust remove`:
//! each `[trust."PREFIX"]` with its OpenPGP key files (fingerprint, user IDs, expiry),
//! its Sigstore keys (fingerprint: `sha256:` of the DER public key), keyless identities
//! and trusted root (a `trusted_root.json`, or the public-good root built in), and the
//! locked images it covers, by the same most-specific-prefix rule that `lock` and
//! `verify` apply.
//!
//! Reading only: key and root files are parsed from the repository, nothing is
//! fetched, and a file that cannot be read is reported in its place rather than
//! hiding the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::Serialize;

use crate::digest::Digest;
use crate::project::lockfile::{Lock, LockedImage, LockedSigstore, SourceKind};
use crate::project::manifest::{Manifest, SigstoreIdentity};
use crate::signing::openpgp::{self, PublicKey};
use crate::signing::sigstore;

/// One file listed under a prefix's `keys`, with what it holds.
#[derive(Debug, Clone)]
pub struct KeyFile {
    /// The path as written in images.toml.
    pub file: String,
    /// Its keys, or why it cannot be used.
    pub keys: Result<Vec<PublicKey>, String>,
}

/// Reads the key files of `[trust."PREFIX"]`.
pub fn key_files(manifest: &Manifest, prefix: &str) -> Vec<KeyFile> {
    let Some(table) = manifest.trust.get(prefix) else {
        return Vec::new();
    };
    table
        .keys
        .iter()
        .map(|file| KeyFile {
            file: file.clone(),
            keys: openpgp::load_key_file(&manifest.dir().join(file)).map_err(|e| e.to_string()),
        })
        .collect()
}

/// One file listed under a prefix's `sigstore-keys`, with the key it holds.
#[derive(Debug, Clone)]
pub struct SigstoreKeyFile {
    /// The path as written in images.toml.
    pub file: String,
    /// Its key, or why it cannot be used.
    pub key: Result<sigstore::TrustedKey, String>,
}

/// Reads the Sigstore key files of `[trust."PREFIX"]`.
pub fn sigstore_key_files(manifest: &Manifest, prefix: &str) -> Vec<SigstoreKeyFile> {
    let Some(table) = manifest.trust.get(prefix) else {
        return Vec::new();
    };
    table
        .sigstore_keys
        .iter()
        .map(|file| SigstoreKeyFile {
            file: file.clone(),
            key: sigstore::read_key_file(&manifest.dir().join(file)).map_err(|e| e.to_string()),
        })
        .collect()
}

/// The digest of the Sigstore public-good root built into imagelock.
pub fn public_good_root_digest() -> Option<Digest> {
    super::trust::public_good().ok().map(|r| r.digest().clone())
}

/// Reads and checks the `trusted_root.json` at `file` (relative to images.toml):
/// its digest, or why it cannot be used.
pub fn read_trusted_root(manifest: &Manifest, file: &str) -> Result<Digest, String> {
    let bytes =
        crate::fsutil::read_regular(&manifest.dir().join(file)).map_err(|e| e.to_string())?;
    sigstore::TrustRoot::from_json(&bytes)
        .map(|root| root.digest().clone())
        .map_err(|e| e.to_string())
}

/// Every readable key the manifest trusts, by primary fingerprint, for naming signers.
#[derive(Debug, Default)]
pub struct KnownKeys {
    keys: BTreeMap<String, PublicKey>,
}

impl KnownKeys {
    /// The keys of every `[trust]` table (unreadable files are skipped).
    pub fn from_manifest(manifest: &Manifest) -> KnownKeys {
        let mut keys = BTreeMap::new();
        for prefix in manifest.trust.keys() {
            for file in key_files(manifest, prefix) {
                for key in file.keys.unwrap_or_default() {
                    keys.insert(key.fingerprint().to_owned(), key);
                }
            }
        }
        KnownKeys { keys }
    }

    /// The key with primary fingerprint `fingerprint`, if the manifest trusts it.
    pub fn get(&self, fingerprint: &str) -> Option<&PublicKey> {
        self.keys.get(fingerprint)
    }

    /// A short name for a signer: the e-mail of its first user ID, else the user
    /// ID, else the long key ID (the fingerprint's last 16 digits).
    pub fn short_name(&self, fingerprint: &str) -> String {
        let uid = self
            .get(fingerprint)
            .and_then(|k| k.user_ids().first().cloned());
        match uid {
            Some(uid) => match (uid.rfind('<'), uid.rfind('>')) {
                (Some(start), Some(end)) if start < end => uid[start + 1..end].to_owned(),
                _ => uid,
            },
            None => long_key_id(fingerprint).to_owned(),
        }
    }
}

/// The last 16 hex digits of a fingerprint (gpg's long key ID).
pub fn long_key_id(fingerprint: &str) -> &str {
    &fingerprint[fingerprint.len().saturating_sub(16)..]
}

/// The name a `[trust]` prefix is matched against for a locked image: the
/// repository of a registry image, the appc name of an ACI; none for local
/// OCI layouts (they carry no signature imagelock can check).
pub fn trust_name(image: &LockedImage) -> Option<String> {
    match image.source {
        SourceKind::Docker => image
            .reference
            .as_deref()
            .and_then(|r| crate::oci::reference::Reference::parse(r).ok())
            .map(|r| r.repository()),
        SourceKind::OciLayout => None,
        SourceKind::Appc | SourceKind::AciUrl | SourceKind::AciFile => image.name.clone(),
    }
}

/// The primary-key fingerprints whose signatures a locked image pins.
pub fn signers(image: &LockedImage) -> Vec<String> {
    let mut out: Vec<String> = image
        .signature
        .iter()
        .chain(image.manifests.iter().filter_map(|m| m.signature.as_ref()))
        .map(|s| s.signed_by.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Who signed a locked image's Sigstore signatures, in words (see
/// [`LockedSigstore::signer`]), once each.
pub fn sigstore_signers(image: &LockedImage) -> Vec<String> {
    let mut out: Vec<String> = image.sigstore.iter().map(LockedSigstore::signer).collect();
    out.sort();
    out.dedup();
    out
}

/// `YYYY-MM-DD` (UTC) of `time`; dates before 1970 print as 1970-01-01.
pub fn utc_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date(i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2))
}

/// `YYYY-MM-DD HH:MM:SS UTC` of `secs` seconds since the epoch (negative: before it).
pub fn utc_time(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        civil_date(days),
        rest / 3_600,
        rest / 60 % 60,
        rest % 60
    )
}

/// `YYYY-MM-DD` of the day `days` after 1970-01-01.
fn civil_date(days: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// One key, for humans and JSON.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// The key file, as written in images.toml.
    pub file: String,
    /// Primary-key fingerprint (40 hex digits), when the file could be read.
    pub fingerprint: Option<String>,
    /// User IDs with a valid self-signature.
    pub user_ids: Vec<String>,
    /// Expiry date (UTC, `YYYY-MM-DD`), if the key expires.
    pub expires: Option<String>,
    /// Whether the key has expired by now.
    pub expired: bool,
    /// Whether the key is revoked.
    pub revoked: bool,
    /// Why the file cannot be used, when it cannot.
    pub error: Option<String>,
}

/// One Sigstore key, for humans and JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SigstoreKeyView {
    /// The key file, as written in images.toml.
    pub file: String,
    /// `sha256:` and the hex SHA-256 of its DER public key, when the file could be read.
    pub fingerprint: Option<String>,
    /// Why the file cannot be used, when it cannot.
    pub error: Option<String>,
}

/// One keyless signer, for humans and JSON.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityView {
    /// The OIDC issuer.
    pub issuer: String,
    /// The exact subject, if given so.
    pub subject: Option<String>,
    /// The subject's regular expression, if given so.
    pub subject_regexp: Option<String>,
}

impl IdentityView {
    /// The view of a manifest's identity.
    pub fn of(identity: &SigstoreIdentity) -> IdentityView {
        IdentityView {
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            subject_regexp: identity.subject_regexp.clone(),
        }
    }

    /// `SUBJECT from ISSUER`, or `subject matching /RE/ from ISSUER`.
    pub fn describe(&self) -> String {
        match (&self.subject, &self.subject_regexp) {
            (Some(subject), _) => format!("{subject} from {}", self.issuer),
            (None, Some(pattern)) => format!("subject matching /{pattern}/ from {}", self.issuer),
            (None, None) => format!("no subject from {}", self.issuer),
        }
    }
}

/// The root that checks a prefix's keyless certificates and log entries.
#[derive(Debug, Clone, Serialize)]
pub struct RootView {
    /// The `trusted-root` file as written; `None` for the public-good root built in.
    pub file: Option<String>,
    /// The `sha256:` digest of its JSON (what the lock pins), when it could be read.
    pub digest: Option<String>,
    /// Why the file cannot be used, when it cannot.
    pub error: Option<String>,
}

/// A locked image and how it relates to a prefix.
#[derive(Debug, Clone, Serialize)]
pub struct Covered {
    /// The lock entry ID.
    pub id: String,
    /// The name matched against prefixes (repository or appc name), if any.
    pub name: Option<String>,
    /// Whether the lock records a verified signature.
    pub verified: bool,
    /// Fingerprints of the keys whose signatures the lock pins.
    pub signed_by: Vec<String>,
    /// The signers of the Sigstore signatures the lock pins (`key sha256:…` or
    /// `SUBJECT from ISSUER`).
    pub sigstore_signed_by: Vec<String>,
}

/// One `[trust."PREFIX"]`, for humans and JSON.
#[derive(Debug, Clone, Serialize)]
pub struct PrefixView {
    /// The prefix, as written.
    pub prefix: String,
    /// Its keys, one per key in each file (or one entry for an unreadable file).
    pub keys: Vec<KeyView>,
    /// Its Sigstore keys (`sigstore-keys`).
    pub sigstore_keys: Vec<SigstoreKeyView>,
    /// Its keyless Sigstore signers (`sigstore-identities`).
    pub sigstore_identities: Vec<IdentityView>,
    /// The Sigstore root, when the prefix trusts a Sigstore signer or names a root.
    pub trusted_root: Option<RootView>,
    /// Where simple signatures are looked up, for OCI images.
    pub lookaside: Option<String>,
    /// The `signedIdentity` rule for OCI images.
    pub identity: String,
    /// The locked images whose most specific covering prefix this is.
    pub covers: Vec<Covered>,
}

/// The whole trust picture.
#[derive(Debug, Clone, Serialize)]
pub struct TrustView {
    /// Every prefix, sorted.
    pub prefixes: Vec<PrefixView>,
    /// Locked images that no prefix covers.
    pub uncovered: Vec<Covered>,
}

fn key_views(file: KeyFile, now: SystemTime) -> Vec<KeyView> {
    match file.keys {
        Err(error) => vec![KeyView {
            file: file.file,
            fingerprint: None,
            user_ids: Vec::new(),
            expires: None,
            expired: false,
            revoked: false,
            error: Some(error),
        }],
        Ok(keys) => keys
            .into_iter()
            .map(|key| KeyView {
                file: file.file.clone(),
                fingerprint: Some(key.fingerprint().to_owned()),
                user_ids: key.user_ids().to_vec(),
                expires: key.expires().map(utc_date),
                expired: key.expires().is_some_and(|at| at <= now),
                revoked: key.is_revoked(),
                error: None,
            })
            .collect(),
    }
}

/// What the manifest trusts and what each prefix covers in `lock`.
pub fn view(manifest: &Manifest, lock: Option<&Lock>) -> TrustView {
    let now = SystemTime::now();
    let mut covered: BTreeMap<String, Vec<Covered>> = BTreeMap::new();
    let mut uncovered = Vec::new();
    for image in lock.iter().flat_map(|l| l.images.values()) {
        let name = trust_name(image);
        let entry = Covered {
            id: image.id.clone(),
            name: name.clone(),
            verified: image.verified,
            signed_by: signers(image),
            sigstore_signed_by: sigstore_signers(image),
        };
        match name.as_deref().and_then(|n| manifest.trust_for(n)) {
            Some((prefix, _)) => covered.entry(prefix.to_owned()).or_default().push(entry),
            None => uncovered.push(entry),
        }
    }
    let prefixes = manifest
        .trust
        .iter()
        .map(|(prefix, table)| PrefixView {
            prefix: prefix.clone(),
            keys: key_files(manifest, prefix)
                .into_iter()
                .flat_map(|f| key_views(f, now))
                .collect(),
            sigstore_keys: sigstore_key_files(manifest, prefix)
                .into_iter()
                .map(|f| SigstoreKeyView {
                    file: f.file,
                    fingerprint: f.key.as_ref().ok().map(|k| k.fingerprint().to_owned()),
                    error: f.key.err(),
                })
                .collect(),
            sigstore_identities: table
                .sigstore_identities
                .iter()
                .map(IdentityView::of)
                .collect(),
            trusted_root: root_view(manifest, table),
            lookaside: table.lookaside.clone(),
            identity: table.identity.clone().unwrap_or_default().to_string(),
            covers: covered.remove(prefix).unwrap_or_default(),
        })
        .collect();
    TrustView {
        prefixes,
        uncovered,
    }
}

/// The root of a `[trust]` table: its `trusted-root` file, else the built-in root when
/// the table trusts a Sigstore signer; `None` for a table of OpenPGP keys only.
fn root_view(
    manifest: &Manifest,
    table: &crate::project::manifest::TrustTable,
) -> Option<RootView> {
    match &table.trusted_root {
        Some(file) => {
            let read = read_trusted_root(manifest, file);
            Some(RootView {
                file: Some(file.clone()),
                digest: read.as_ref().ok().map(ToString::to_string),
                error: read.err(),
            })
        }
        None if !table.sigstore_keys.is_empty() || !table.sigstore_identities.is_empty() => {
            Some(RootView {
                file: None,
                digest: public_good_root_digest().map(|d| d.to_string()),
                error: None,
            })
        }
        None => None,
    }
}

impl PrefixView {
    /// Whether the prefix lists any signer (OpenPGP key, Sigstore key or identity).
    pub fn trusts_anyone(&self) -> bool {
        !(self.keys.is_empty()
            && self.sigstore_keys.is_empty()
            && self.sigstore_identities.is_empty())
    }

    /// The files listed under the prefix that cannot be used, as written.
    pub fn broken_files(&self) -> Vec<&str> {
        let keys = self
            .keys
            .iter()
            .filter(|k| k.error.is_some())
            .map(|k| k.file.as_str());
        let sigstore = self
            .sigstore_keys
            .iter()
            .filter(|k| k.error.is_some())
            .map(|k| k.file.as_str());
        let root = self
            .trusted_root
            .iter()
            .filter(|r| r.error.is_some())
            .filter_map(|r| r.file.as_deref());
        keys.chain(sigstore).chain(root).collect()
    }
}

impl TrustView {
    /// The view as text lines for stdout.
    pub fn render(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.prefixes {
            out.push(format!("[trust.\"{}\"]", p.prefix));
            if !p.trusts_anyone() {
                out.push("  no keys: images under this prefix cannot be locked".to_owned());
            }
            for key in &p.keys {
                match (&key.fingerprint, &key.error) {
                    (_, Some(error)) => {
                        out.push(format!("  key {}: CANNOT BE USED: {error}", key.file));
                    }
                    (Some(fpr), None) => {
                        out.push(format!(
                            "  key {}  ({})",
                            openpgp::format_fingerprint(fpr),
                            key.file
                        ));
                        for uid in &key.user_ids {
                            out.push(format!("      {uid}"));
                        }
                        let validity = match (&key.expires, key.expired, key.revoked) {
                            (_, _, true) => "REVOKED: signatures by it are refused".to_owned(),
                            (Some(date), true, _) => {
                                format!("EXPIRED on {date}: signatures by it are refused")
                            }
                            (Some(date), false, _) => format!("expires {date}"),
                            (None, _, _) => "does not expire".to_owned(),
                        };
                        out.push(format!("      {validity}"));
                    }
                    (None, None) => {}
                }
            }
            out.extend(sigstore_lines(p));
            if let Some(lookaside) = &p.lookaside {
                out.push(format!(
                    "  lookaside {lookaside} (identity rule {})",
                    p.identity
                ));
            }
            if p.covers.is_empty() {
                out.push("  covers no locked image".to_owned());
            }
            for c in &p.covers {
                out.push(format!("  covers {}", describe_covered(c)));
            }
        }
        if !self.uncovered.is_empty() {
            out.push("Not covered by any prefix:".to_owned());
            for c in &self.uncovered {
                out.push(format!("  {}", describe_covered(c)));
            }
        }
        out
    }
}

/// A prefix's Sigstore keys, keyless signers and root, one line each.
fn sigstore_lines(p: &PrefixView) -> Vec<String> {
    let mut out = Vec::new();
    for key in &p.sigstore_keys {
        match (&key.fingerprint, &key.error) {
            (_, Some(error)) => {
                out.push(format!(
                    "  sigstore key {}: CANNOT BE USED: {error}",
                    key.file
                ));
            }
            (Some(fpr), None) => out.push(format!("  sigstore key {fpr}  ({})", key.file)),
            (None, None) => {}
        }
    }
    for identity in &p.sigstore_identities {
        out.push(format!("  keyless signer {}", identity.describe()));
    }
    if let Some(root) = &p.trusted_root {
        let digest = root
            .digest
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        out.push(match (&root.file, &root.error) {
            (Some(file), Some(error)) => {
                format!("  trusted root {file}: CANNOT BE USED: {error}")
            }
            (Some(file), None) => format!("  trusted root {file}{digest}"),
            (None, _) => format!("  trusted root: the built-in Sigstore public-good root{digest}"),
        });
    }
    out
}

fn describe_covered(c: &Covered) -> String {
    // Only local OCI layouts have no name to match a prefix against.
    let name = c
        .name
        .as_deref()
        .map_or_else(|| " (a local OCI layout)".to_owned(), |n| format!(" ({n})"));
    let signed_by: Vec<&str> = c
        .signed_by
        .iter()
        .chain(&c.sigstore_signed_by)
        .map(String::as_str)
        .collect();
    let how = if signed_by.is_empty() {
        if c.verified {
            "verified".to_owned()
        } else {
            "unverified (insecure = true)".to_owned()
        }
    } else {
        format!("signed by {}", signed_by.join(", "))
    };
    format!("{}{name}: {how}", c.id)
}

/// Whether `fingerprint` (any case, spaces allowed) names `key`: its full
/// fingerprint, or its long key ID (the last 16 digits).
pub fn fingerprint_matches(key: &PublicKey, fingerprint: &str) -> bool {
    let wanted = crate::signing::trust::normalise_fingerprint(fingerprint);
    let have = key.fingerprint();
    wanted.len() >= 16 && (have == wanted || (wanted.len() == 16 && have.ends_with(&wanted)))
}

/// What `trust remove` takes away from one `[trust."PREFIX"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Primary fingerprints that stop being trusted for the prefix, file by file.
    pub fingerprints: Vec<String>,
    /// The key files dropped from its `keys`; `None` when the whole table goes.
    pub files: Option<Vec<String>>,
}

impl Removal {
    /// Dropping the whole table: every key its readable files hold stops being trusted.
    pub fn whole_table(files: &[KeyFile]) -> Removal {
        Removal {
            fingerprints: fingerprints_in(files),
            files: None,
        }
    }

    /// Dropping the files that hold the key `fingerprint` names (see
    /// [`fingerprint_matches`]), with every key they hold: a file is listed
    /// whole, so its other keys go too. `None` when no readable file holds it.
    pub fn files_holding(files: &[KeyFile], fingerprint: &str) -> Option<Removal> {
        let holding: Vec<&KeyFile> = files
            .iter()
            .filter(|f| {
                f.keys
                    .as_ref()
                    .is_ok_and(|keys| keys.iter().any(|k| fingerprint_matches(k, fingerprint)))
            })
            .collect();
        if holding.is_empty() {
            return None;
        }
        Some(Removal {
            fingerprints: fingerprints_in(holding.iter().copied()),
            files: Some(holding.iter().map(|f| f.file.clone()).collect()),
        })
    }
}

/// The primary fingerprints of every key in the readable `files`, in order.
fn fingerprints_in<'f>(files: impl IntoIterator<Item = &'f KeyFile>) -> Vec<String> {
    files
        .into_iter()
        .flat_map(|f| f.keys.iter().flatten())
        .map(|k| k.fingerprint().to_owned())
        .collect()
}

/// Of `files`, those no `[trust]` table of `manifest` lists any more (as a key,
/// Sigstore key or trusted root).
pub fn unreferenced<'f>(manifest: &Manifest, files: &'f [String]) -> Vec<&'f str> {
    files
        .iter()
        .filter(|file| {
            !manifest.trust.values().any(|t| {
                t.keys.contains(file)
                    || t.sigstore_keys.contains(file)
                    || t.trusted_root.as_ref() == Some(*file)
            })
        })
        .map(String::as_str)
        .collect()
}

/// The files of `sigstore_files` whose key `written` names: its full fingerprint
/// (`sha256:` optional, any case) or the first 12 or more hex digits of it. `Err`
/// with the fingerprints matched when they are different keys.
pub fn sigstore_files_holding(
    files: &[SigstoreKeyFile],
    written: &str,
) -> Result<Vec<(String, String)>, Vec<String>> {
    let wanted = written.trim().to_ascii_lowercase();
    let wanted = wanted.strip_prefix("sha256:").unwrap_or(&wanted);
    let matched: Vec<(String, String)> = files
        .iter()
        .filter_map(|f| {
            let fpr = f.key.as_ref().ok()?.fingerprint();
            let hex = fpr.strip_prefix("sha256:").unwrap_or(fpr);
            (wanted.len() >= 12 && hex.starts_with(wanted))
                .then(|| (f.file.clone(), fpr.to_owned()))
        })
        .collect();
    let mut keys: Vec<String> = matched.iter().map(|(_, f)| f.clone()).collect();
    keys.sort();
    keys.dedup();
    if keys.len() > 1 {
        return Err(keys);
    }
    Ok(matched)
}

/// Locked images a trust edit concerns (see [`crate::resolve::drift::losing_trust`]),
/// and how to re-pin them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SignedBy {
    /// Their lock entry IDs, in lock order.
    pub ids: Vec<String>,
    /// What to pass to `imagelock update`: each image's ID, or for a
    /// dependency the entry that pulled it in.
    pub roots: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_dates() {
        let day = |d: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(d * 86_400 + 3_600);
        assert_eq!(utc_date(day(0)), "1970-01-01");
        assert_eq!(utc_date(day(1)), "1970-01-02");
        assert_eq!(utc_date(day(18_262)), "2020-01-01");
        assert_eq!(utc_date(day(19_417)), "2023-03-01");
        assert_eq!(utc_date(day(11_016)), "2000-02-29");
        assert_eq!(
            utc_date(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01"
        );
    }

    #[test]
    fn long_key_ids() {
        assert_eq!(
            long_key_id("8836CD40C8B00F2B3BBE84E537F3026F530A8073"),
            "37F3026F530A8073"
        );
        assert_eq!(long_key_id("ABC"), "ABC");
    }

    const RSA: &str = "25E0F3245AAF759DF15C3A5855EEC7572F25FF56";
    const ED25519: &str = "8B631622BF67A56E9D3903409720537BC3B714B8";
    const SUBKEY_PRIMARY: &str = "914180C6FA437457DFFD712FF4F2F3EDEDCADCBD";

    fn key_file(file: &str, armored: &[u8]) -> KeyFile {
        KeyFile {
            file: file.to_owned(),
            keys: Ok(openpgp::parse_public_keys(armored).expect("a test key")),
        }
    }

    /// `both.asc` (rsa + ed25519), `broken.asc` (unreadable), `subkey.asc`.
    fn files() -> Vec<KeyFile> {
        vec![
            key_file(
                "both.asc",
                include_bytes!("../../tests/fixtures/openpgp/rsa-and-ed25519.asc"),
            ),
            KeyFile {
                file: "broken.asc".to_owned(),
                keys: Err("not a key".to_owned()),
            },
            key_file(
                "subkey.asc",
                include_bytes!("../../tests/fixtures/openpgp/subkey.asc"),
            ),
        ]
    }

    #[test]
    fn removals_name_the_keys_that_stop_being_trusted() {
        let files = files();
        let mut whole = Removal::whole_table(&files);
        whole.fingerprints.sort();
        assert_eq!(whole.fingerprints, [RSA, ED25519, SUBKEY_PRIMARY]);
        assert_eq!(whole.files, None);

        // A long key ID, written any way, drops its file and the other key in it.
        let mut by_key_id = Removal::files_holding(&files, "0x9720 537b c3b7 14b8")
            .expect("ed25519 is in both.asc");
        by_key_id.fingerprints.sort();
        assert_eq!(by_key_id.fingerprints, [RSA, ED25519]);
        assert_eq!(by_key_id.files, Some(vec!["both.asc".to_owned()]));

        let by_fingerprint =
            Removal::files_holding(&files, SUBKEY_PRIMARY).expect("subkey.asc holds it");
        assert_eq!(by_fingerprint.fingerprints, [SUBKEY_PRIMARY]);
        assert_eq!(by_fingerprint.files, Some(vec!["subkey.asc".to_owned()]));

        // Too short to name a key, or a key no file holds.
        assert_eq!(Removal::files_holding(&files, "C3B714B8"), None);
        assert_eq!(
            Removal::files_holding(&files, "8EC4EC85F507F076FD2A1366B2ADA44D573E04C7"),
            None
        );
        assert_eq!(Removal::whole_table(&[]).fingerprints, Vec::<String>::new());
    }

    #[test]
    fn unreferenced_files_are_those_no_prefix_lists() {
        let manifest = Manifest::parse(
            std::path::Path::new("images.toml"),
            "[trust.\"a.example/\"]\nkeys = [\"shared.asc\"]\n",
        )
        .expect("a valid manifest");
        let files = ["shared.asc".to_owned(), "gone.asc".to_owned()];
        assert_eq!(unreferenced(&manifest, &files), ["gone.asc"]);
    }
}
