//! What the manifest trusts, for `imagelock trust` / `trust list` and `trust remove`:
//! each `[trust."PREFIX"]` with its key files (fingerprint, user IDs, expiry)
//! and the locked images it covers, by the same most-specific-prefix rule that
//! `lock` and `verify` apply.
//!
//! Reading only: key files are parsed from the repository, nothing is fetched,
//! and a key file that cannot be read is reported in its place rather than
//! hiding the rest.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::project::lockfile::{Lock, LockedImage, SourceKind};
use crate::project::manifest::Manifest;
use crate::signing::openpgp::{self, PublicKey};

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

/// `YYYY-MM-DD` (UTC) of `time`; dates before 1970 print as 1970-01-01.
pub fn utc_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
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
}

/// One `[trust."PREFIX"]`, for humans and JSON.
#[derive(Debug, Clone, Serialize)]
pub struct PrefixView {
    /// The prefix, as written.
    pub prefix: String,
    /// Its keys, one per key in each file (or one entry for an unreadable file).
    pub keys: Vec<KeyView>,
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

impl TrustView {
    /// The view as text lines for stdout.
    pub fn render(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.prefixes {
            out.push(format!("[trust.\"{}\"]", p.prefix));
            if p.keys.is_empty() {
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

fn describe_covered(c: &Covered) -> String {
    // Only local OCI layouts have no name to match a prefix against.
    let name = c
        .name
        .as_deref()
        .map_or_else(|| " (a local OCI layout)".to_owned(), |n| format!(" ({n})"));
    let how = if c.signed_by.is_empty() {
        if c.verified {
            "verified".to_owned()
        } else {
            "unverified (insecure = true)".to_owned()
        }
    } else {
        format!("signed by {}", c.signed_by.join(", "))
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
}
