//! Trust: which OpenPGP keys may sign images under which name prefixes.
//!
//! The manifest's `[trust."PREFIX"]` tables map a name prefix to key files kept
//! in the repository beside `images.toml`, so verification works offline. A
//! prefix covers a name when it equals the name or is a whole-path-component
//! prefix of it (`example.com/` covers `example.com/etcd`, not
//! `example.com.evil/x`); the most specific covering prefix alone decides, as
//! rkt's prefix keystore does. Key files are read once per run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::errors::hinted;
use crate::project::identity::IdentityRule;
use crate::project::manifest::{Manifest, TrustTable};
use crate::signing::openpgp::{self, Keyring};
use crate::signing::sigstore;

/// The keys of the manifest's trust prefixes, loaded on first use.
pub struct TrustStore {
    /// The manifest file (for messages).
    manifest_path: PathBuf,
    /// Directory key paths are relative to.
    dir: PathBuf,
    /// `[trust]`: prefix → its table.
    prefixes: Vec<(String, TrustTable)>,
    loaded: Mutex<HashMap<String, Loaded>>,
}

/// One prefix's keys, as loaded: OpenPGP and Sigstore.
type Loaded = (Arc<Keyring>, Arc<SigstoreTrust>);

/// The Sigstore side of one `[trust]` table: who may sign (keys, keyless identities) and
/// the trusted root that checks certificates, logs and timestamps.
#[derive(Debug)]
pub struct SigstoreTrust {
    /// `sigstore-keys` and `sigstore-identities`.
    pub policy: sigstore::Policy,
    /// The root: `trusted-root`'s file, or the public-good root built in. `None` when the
    /// table trusts no Sigstore signer (nothing is loaded then).
    pub root: Option<Arc<sigstore::TrustRoot>>,
    /// Where the root came from, for messages: the file as written, or "the built-in
    /// Sigstore public-good root".
    pub root_origin: String,
}

impl SigstoreTrust {
    /// Whether the table trusts any Sigstore signer.
    pub fn is_configured(&self) -> bool {
        !self.policy.keys.is_empty() || !self.policy.identities.is_empty()
    }

    /// The trusted signers, in words, for messages.
    pub fn describe(&self) -> String {
        let keys = self
            .policy
            .keys
            .iter()
            .map(|k| format!("key {}", k.fingerprint()));
        let identities = self.policy.identities.iter().map(ToString::to_string);
        keys.chain(identities).collect::<Vec<_>>().join("; ")
    }
}

/// What the trust policy says about one image (see [`TrustStore::decide`]).
pub enum Decision {
    /// Covered by a prefix: a signature by one of these keys is required.
    Verify(Trusted),
    /// Covered by no prefix, and its entry is marked `insecure = true`.
    Unverified,
    /// Covered by no prefix, and its entry is not marked insecure.
    Refused,
}

/// The keys that decide whether an image name is trusted.
#[derive(Clone)]
pub struct Trusted {
    /// The `[trust]` prefix, as written in the manifest.
    pub prefix: String,
    /// Its keys.
    pub keyring: Arc<Keyring>,
    /// Where simple signatures of OCI images under the prefix are published.
    pub lookaside: Option<String>,
    /// How a simple signature's identity must match the reference locked.
    pub identity: IdentityRule,
    /// Sigstore keys, identities and root.
    pub sigstore: Arc<SigstoreTrust>,
}

impl TrustStore {
    /// The trust configuration of `manifest`.
    pub fn new(manifest: &Manifest) -> TrustStore {
        TrustStore {
            manifest_path: manifest.path.clone(),
            dir: manifest.dir().to_owned(),
            prefixes: manifest
                .trust
                .iter()
                .map(|(prefix, table)| (prefix.clone(), table.clone()))
                .collect(),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The most specific prefix covering `name`, with its keys; `None` when no prefix covers it.
    pub fn for_name(&self, name: &str) -> anyhow::Result<Option<Trusted>> {
        match crate::project::manifest::most_specific_prefix(
            self.prefixes.iter().map(|(p, _)| p.as_str()),
            name,
        ) {
            None => Ok(None),
            Some(prefix) => Ok(Some(self.for_prefix(prefix)?)),
        }
    }

    /// The one rule for both source kinds: an image called `name` is verified
    /// with the keys of the most specific prefix covering it; else accepted
    /// unverified only when its entry says `insecure = true`; else refused
    /// (a covering prefix always wins over `insecure`).
    pub fn decide(&self, name: &str, insecure: bool) -> anyhow::Result<Decision> {
        Ok(match self.for_name(name)? {
            Some(trusted) => Decision::Verify(trusted),
            None if insecure => Decision::Unverified,
            None => Decision::Refused,
        })
    }

    /// The keys of the `[trust]` table `prefix` (exactly as written).
    pub fn for_prefix(&self, prefix: &str) -> anyhow::Result<Trusted> {
        let Some((_, table)) = self.prefixes.iter().find(|(p, _)| p == prefix) else {
            return Err(hinted(
                format!(
                    "{} has no [trust.\"{prefix}\"] table",
                    self.manifest_path.display()
                ),
                format!("add the keys for it with `imagelock trust add {prefix} --key FILE`"),
            ));
        };
        let trusted = |(keyring, sigstore): Loaded| Trusted {
            prefix: prefix.to_owned(),
            keyring,
            lookaside: table.lookaside.clone(),
            identity: table.identity.clone().unwrap_or_default(),
            sigstore,
        };
        if let Some(loaded) = self
            .loaded
            .lock()
            .expect("keyring cache poisoned")
            .get(prefix)
        {
            return Ok(trusted(loaded.clone()));
        }
        let mut keys = Vec::new();
        for file in &table.keys {
            let path = self.dir.join(file);
            let found = openpgp::load_key_file(&path).map_err(|e| {
                hinted(
                    format!(
                        "[trust.\"{prefix}\"] in {}: cannot use key file `{file}`: {e}",
                        self.manifest_path.display()
                    ),
                    "key files are OpenPGP public keys (armored or binary), relative to images.toml; re-add one with `imagelock trust add PREFIX --key FILE`",
                )
            })?;
            keys.extend(found);
        }
        let sigstore = Arc::new(self.load_sigstore(prefix, table)?);
        if keys.is_empty() && !sigstore.is_configured() {
            return Err(hinted(
                format!(
                    "[trust.\"{prefix}\"] in {} lists no keys",
                    self.manifest_path.display()
                ),
                format!("add one with `imagelock trust add {prefix} --key FILE`"),
            ));
        }
        let loaded = (Arc::new(Keyring::new(keys)), sigstore);
        self.loaded
            .lock()
            .expect("keyring cache poisoned")
            .insert(prefix.to_owned(), loaded.clone());
        Ok(trusted(loaded))
    }

    /// Reads `[trust."PREFIX"]`'s Sigstore keys, identities and trusted root.
    fn load_sigstore(&self, prefix: &str, table: &TrustTable) -> anyhow::Result<SigstoreTrust> {
        let in_table = |what: String| {
            format!(
                "[trust.\"{prefix}\"] in {}: {what}",
                self.manifest_path.display()
            )
        };
        let mut policy = sigstore::Policy {
            allow_unlogged: table.insecure_ignore_tlog,
            ..sigstore::Policy::default()
        };
        for file in &table.sigstore_keys {
            let key = sigstore::read_key_file(&self.dir.join(file)).map_err(|e| {
                hinted(
                    in_table(format!("cannot use Sigstore key file `{file}`: {e}")),
                    "Sigstore keys are PEM public keys (`cosign public-key`, `openssl pkey -pubout`), relative to images.toml; re-add one with `imagelock trust add PREFIX --sigstore-key FILE`",
                )
            })?;
            policy.keys.push(key);
        }
        for identity in &table.sigstore_identities {
            let subject = match (&identity.subject, &identity.subject_regexp) {
                (Some(exact), _) => sigstore::Subject::Exact(exact.clone()),
                (None, Some(pattern)) => sigstore::Subject::regexp(pattern)
                    .map_err(|e| anyhow::anyhow!(in_table(e.to_string())))?,
                (None, None) => unreachable!("Manifest::parse checks every identity"),
            };
            policy.identities.push(sigstore::Identity {
                issuer: identity.issuer.clone(),
                subject,
            });
        }
        let configured = !policy.keys.is_empty() || !policy.identities.is_empty();
        let (root, root_origin) = match &table.trusted_root {
            Some(file) => {
                let path = self.dir.join(file);
                let bytes = crate::fsutil::read_regular(&path).map_err(|e| {
                    hinted(
                        in_table(format!("cannot read trusted root `{file}`: {e}")),
                        "`trusted-root` is a Sigstore trusted_root.json, relative to images.toml",
                    )
                })?;
                let root = sigstore::TrustRoot::from_json(&bytes).map_err(|e| {
                    hinted(
                        in_table(format!("trusted root `{file}`: {e}")),
                        "`trusted-root` is a Sigstore trusted_root.json, relative to images.toml",
                    )
                })?;
                (Some(Arc::new(root)), file.clone())
            }
            None if configured => (
                Some(public_good()?),
                "the built-in Sigstore public-good root".to_owned(),
            ),
            None => (None, "the built-in Sigstore public-good root".to_owned()),
        };
        Ok(SigstoreTrust {
            policy,
            root,
            root_origin,
        })
    }
}

/// The public-good root, parsed once per process.
pub(crate) fn public_good() -> anyhow::Result<Arc<sigstore::TrustRoot>> {
    static ROOT: std::sync::OnceLock<Arc<sigstore::TrustRoot>> = std::sync::OnceLock::new();
    if let Some(root) = ROOT.get() {
        return Ok(root.clone());
    }
    let root = Arc::new(sigstore::TrustRoot::public_good()?);
    Ok(ROOT.get_or_init(|| root).clone())
}

/// Largest key file accepted from the network: key bundles are a few KiB.
pub const MAX_KEY_BYTES: u64 = 1024 * 1024;

/// Refuses prefixes that cannot be name prefixes (a URL, whitespace, empty).
pub fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    if prefix.trim_end_matches('/').is_empty() {
        return Err(hinted(
            "the prefix is empty: trusting a key for every image is not supported",
            "name the part of the namespace the key signs, e.g. `example.com/`",
        ));
    }
    if prefix.contains("://") || prefix.chars().any(char::is_whitespace) {
        return Err(hinted(
            format!("`{prefix}` is not a name prefix"),
            "write it as image names are written, without a scheme: e.g. `example.com/` or `registry.example.com/team/`",
        ));
    }
    Ok(())
}

/// `path` relative to the manifest directory `dir`, when the file is inside it.
pub fn repo_relative(dir: &Path, path: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .ok()?;
    let file = std::fs::canonicalize(path).ok()?;
    let relative = file.strip_prefix(&dir).ok()?;
    relative.to_str().map(|s| s.replace('\\', "/"))
}

/// Uppercase hex without spaces, as [`openpgp::PublicKey::fingerprint`] gives it.
pub fn normalise_fingerprint(written: &str) -> String {
    written
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_start_matches("0x")
        .to_ascii_uppercase()
}

/// The keys among `found` whose primary fingerprint is `written` (spaces,
/// `0x` and any case allowed), for `trust add --discover --fingerprint`: the
/// whole fingerprint must match, a key ID picks nothing.
pub fn keys_with_fingerprint(
    found: impl IntoIterator<Item = openpgp::PublicKey>,
    written: &str,
) -> Vec<openpgp::PublicKey> {
    let wanted = normalise_fingerprint(written);
    found
        .into_iter()
        .filter(|k| k.fingerprint() == wanted)
        .collect()
}

/// A key for humans: grouped fingerprint, user IDs, expiry.
pub fn describe_key(key: &openpgp::PublicKey) -> String {
    let mut out = format!("  {}", openpgp::format_fingerprint(key.fingerprint()));
    for uid in key.user_ids() {
        out.push_str(&format!("\n    {uid}"));
    }
    if let Some(expires) = key.expires() {
        let days = expires
            .duration_since(std::time::SystemTime::now())
            .map(|d| d.as_secs() / 86_400);
        match days {
            Ok(days) => out.push_str(&format!("\n    expires in {days} days")),
            Err(_) => out.push_str("\n    EXPIRED"),
        }
    }
    if key.is_revoked() {
        out.push_str("\n    REVOKED");
    }
    out
}

/// Refuses keys that could not verify anything now: revoked or expired.
pub fn check_usable(key: &openpgp::PublicKey) -> anyhow::Result<()> {
    let fpr = openpgp::format_fingerprint(key.fingerprint());
    if key.is_revoked() {
        return Err(hinted(
            format!("key {fpr} has been revoked by its owner"),
            "ask the publisher for their current key",
        ));
    }
    if key
        .expires()
        .is_some_and(|at| at <= std::time::SystemTime::now())
    {
        return Err(hinted(
            format!("key {fpr} has expired"),
            "ask the publisher for a key with a current expiry date (`gpg --quick-set-expire`), exported again",
        ));
    }
    Ok(())
}

/// Writes `key` to `keys/<FINGERPRINT>.asc` beside the manifest; returns that relative path.
pub fn write_key_file(dir: &Path, key: &openpgp::PublicKey) -> anyhow::Result<String> {
    let armored = key.armored()?;
    write_beside_manifest(
        dir,
        &format!("keys/{}.asc", key.fingerprint()),
        armored.as_bytes(),
    )
}

/// Writes `bytes` to `relative` under the manifest's directory `dir` (creating
/// its directory), atomically; returns `relative`.
pub fn write_beside_manifest(dir: &Path, relative: &str, bytes: &[u8]) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    crate::fsutil::write_atomic(&path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(relative.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovered_keys_are_picked_by_whole_fingerprint() {
        let found = || {
            openpgp::parse_public_keys(include_bytes!(
                "../../tests/fixtures/openpgp/rsa-and-ed25519.asc"
            ))
            .expect("two test keys")
        };
        let fingerprints = |keys: Vec<openpgp::PublicKey>| -> Vec<String> {
            keys.iter().map(|k| k.fingerprint().to_owned()).collect()
        };
        let ed25519 = "8B631622BF67A56E9D3903409720537BC3B714B8";
        assert_eq!(
            fingerprints(keys_with_fingerprint(
                found(),
                "0x8b63 1622 bf67 a56e 9d39  0340 9720 537b c3b7 14b8"
            )),
            [ed25519]
        );
        assert_eq!(
            fingerprints(keys_with_fingerprint(found(), ed25519)),
            [ed25519]
        );
        assert!(keys_with_fingerprint(found(), "9720537BC3B714B8").is_empty());
        assert!(
            keys_with_fingerprint(found(), "8EC4EC85F507F076FD2A1366B2ADA44D573E04C7").is_empty()
        );
    }
}
