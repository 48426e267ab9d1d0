//! OpenPGP keys and signature verification for image signatures: detached
//! signatures over ACIs (`.aci.asc`) and simple-signing signed messages.
//!
//! Invariant: a signature is accepted only if it verifies cryptographically
//! with a key from the caller's [`Keyring`] (a primary key, or a signing subkey
//! validly bound to it) that is valid — not expired, not revoked, allowed to
//! sign — both at the signature's creation time and at the verification time
//! `now`. There is no web of trust: third-party certifications are ignored,
//! and a key is trusted only because the caller put it in the keyring. Only the
//! first signature of a detached signature file is checked (as rkt does); a
//! signed message must carry exactly one signature. Only version 4 keys and
//! signatures over binary or text documents with SHA-2 hashes are accepted.
//!
//! Key files (ASCII-armored or binary, one or more keys each) are parsed,
//! never executed. Everything here is a pure function over bytes except
//! [`load_key_file`]; the signed data is streamed, never held in memory.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgp::composed::{
    ArmorOptions, Deserializable, DetachedSignature, Message, PublicOrSecret, SignedPublicKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{self, Signature, SignatureType, SignatureVersion};
use pgp::types::{Fingerprint, KeyDetails, KeyId, KeyVersion, Tag, Timestamp, VerifyingKey};

/// Largest literal payload [`Keyring::verify_message`] returns. c/image refuses
/// whole signatures above 4 MiB (`iolimits.MaxSignatureBodySize`); a
/// simple-signing payload is a few hundred bytes, so this only stops
/// decompression bombs.
const MAX_MESSAGE_PAYLOAD: usize = 4 * 1024 * 1024;

/// How many compression layers a signed message may have. gpg writes one.
const MAX_COMPRESSION_LAYERS: usize = 2;

/// Why a key file or key data cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("could not read key file {}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not a usable OpenPGP public key.
    #[error("{} {message}", origin(path.as_deref()))]
    Invalid {
        /// The key file, when the bytes came from one.
        path: Option<PathBuf>,
        /// What is wrong, phrased to follow "key file PATH".
        message: String,
    },
}

/// rpgp's description of a parse failure without the bytes it stopped at: its
/// armor reader quotes the rest of the input (`Error { input: [114, 111, ...] }`),
/// and a key or signature path can name any file the user can read.
fn parse_failure(e: &dyn fmt::Display) -> String {
    let text = e.to_string();
    let quoted = text.find(" Error(").into_iter().chain(
        text.char_indices()
            .zip(text.chars().skip(1))
            .find(|((_, c), next)| *c == '[' && next.is_ascii_digit())
            .map(|((at, _), _)| at),
    );
    match quoted.min() {
        Some(at) => format!(
            "{} (the bytes it stopped at are not shown)",
            text[..at].trim_end()
        ),
        None => text,
    }
}

fn origin(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("key file {}", path.display()),
        None => "the key data".to_owned(),
    }
}

/// Why a signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// Not a parseable OpenPGP signature or message.
    #[error("malformed OpenPGP signature: {0}")]
    Malformed(String),
    /// Made by a key that is not in the keyring.
    #[error(
        "the signature was made by key {}, which is not trusted here (trusted keys: {})",
        list_or(issuer, "unknown"),
        list_or(trusted, "none")
    )]
    UnknownKey {
        /// Issuer fingerprints (or 16-digit key IDs when the signature names no fingerprint).
        issuer: Vec<String>,
        /// Fingerprints of the trusted primary keys.
        trusted: Vec<String>,
    },
    /// The signature does not match the signed data.
    #[error("the signature by key {key} does not match the signed data")]
    BadSignature {
        /// Fingerprint of the key that supposedly signed.
        key: String,
    },
    /// The signing key (or its primary key) has expired.
    #[error("key {key} expired on {}", format_utc(*at))]
    Expired {
        /// Fingerprint of the expired key.
        key: String,
        /// When it expired.
        at: SystemTime,
    },
    /// The signing key (or its primary key) has been revoked.
    #[error("key {key} has been revoked by its owner")]
    Revoked {
        /// Fingerprint of the revoked key.
        key: String,
    },
    /// The key's flags do not allow it to sign data.
    #[error("key {key} is not allowed to sign data (its key flags lack the signing capability)")]
    NotSigningKey {
        /// Fingerprint of the key.
        key: String,
    },
    /// The signature claims a creation time before its key existed.
    #[error("the signature claims to be made on {}, before key {key} was created", format_utc(*signed))]
    MadeBeforeKey {
        /// Fingerprint of the key.
        key: String,
        /// The claimed signature creation time.
        signed: SystemTime,
    },
    /// The signature itself carries an expiration time that has passed.
    #[error("the signature expired on {}", format_utc(*at))]
    SignatureExpired {
        /// When it expired.
        at: SystemTime,
    },
    /// A message with literal data but no signature.
    #[error("the message is not signed (it holds only literal data)")]
    NotSigned,
    /// An encrypted message.
    #[error("the message is encrypted; only signed, unencrypted messages are accepted")]
    Encrypted,
    /// A message with more than one signature.
    #[error("the message carries several signatures; exactly one is accepted")]
    MultipleSignatures,
    /// A signature or algorithm imagelock refuses or cannot check.
    #[error("unsupported signature: {0}")]
    Unsupported(String),
    /// Reading the signed data failed.
    #[error("could not read the signed data")]
    Read(#[source] io::Error),
}

fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(", ")
    }
}

/// One trusted public key (a primary key with its subkeys) as read from a key file.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: SignedPublicKey,
    fingerprint: String,
    created: SystemTime,
    user_ids: Vec<String>,
    expires: Option<SystemTime>,
    revoked: bool,
    can_sign: bool,
    subkeys: Vec<Subkey>,
}

/// A subkey with a valid binding signature from its primary key.
#[derive(Debug, Clone)]
struct Subkey {
    key: packet::PublicSubkey,
    fingerprint: String,
    created: SystemTime,
    expires: Option<SystemTime>,
    revoked: bool,
    can_sign: bool,
}

impl PublicKey {
    /// The primary key's v4 fingerprint: 40 uppercase hex digits.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// User IDs with a valid, unrevoked self-signature (lossily decoded as UTF-8).
    pub fn user_ids(&self) -> &[String] {
        &self.user_ids
    }

    /// When the primary key was created.
    pub fn created(&self) -> SystemTime {
        self.created
    }

    /// When the primary key expires, per its newest self-signature; `None` if never.
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires
    }

    /// Whether the primary key carries a valid revocation signature by itself.
    pub fn is_revoked(&self) -> bool {
        self.revoked
    }

    /// Fingerprints of the subkeys validly bound to this key (signing or not).
    pub fn subkey_fingerprints(&self) -> Vec<&str> {
        self.subkeys
            .iter()
            .map(|s| s.fingerprint.as_str())
            .collect()
    }

    /// The key as an ASCII-armored public key block, for writing a key file.
    pub fn armored(&self) -> Result<String, KeyError> {
        self.key
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| KeyError::Invalid {
                path: None,
                message: format!(
                    "holds key {} that cannot be re-encoded: {e}",
                    self.fingerprint
                ),
            })
    }

    /// Checks the self-signatures of `key` and records what they say.
    fn from_signed(key: SignedPublicKey) -> Result<PublicKey, String> {
        let primary = &key.primary_key;
        let fingerprint = fingerprint_hex(&primary.fingerprint());
        if primary.version() != KeyVersion::V4 {
            return Err(format!(
                "holds key {fingerprint} of OpenPGP version {}; only version 4 keys are supported",
                u8::from(primary.version())
            ));
        }

        // Revocations by designated third-party revokers cannot be checked
        // without their key, so only self-revocations count.
        let revoked = key
            .details
            .revocation_signatures
            .iter()
            .any(|sig| sig.verify_key(primary).is_ok());

        let mut newest: Option<&Signature> = None;
        for sig in &key.details.direct_signatures {
            if sig.typ() == Some(SignatureType::Key) && sig.verify_key(primary).is_ok() {
                newest = newer(newest, sig);
            }
        }
        let mut user_ids = Vec::new();
        for user in &key.details.users {
            let verifies = |sig: &&Signature| {
                sig.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
            };
            let uid_revoked = user
                .signatures
                .iter()
                .filter(|sig| sig.typ() == Some(SignatureType::CertRevocation))
                .any(|sig| verifies(&sig));
            if uid_revoked {
                continue;
            }
            let mut certified = false;
            for sig in user
                .signatures
                .iter()
                .filter(|sig| is_certification(sig))
                .filter(verifies)
            {
                certified = true;
                newest = newer(newest, sig);
            }
            if certified {
                user_ids.push(String::from_utf8_lossy(user.id.id()).into_owned());
            }
        }
        let Some(self_signature) = newest else {
            return Err(format!(
                "holds key {fingerprint} without a valid self-signature (no user ID or direct-key signature by the key itself)"
            ));
        };

        let mut subkeys = Vec::new();
        for subkey in &key.public_subkeys {
            let binding = subkey
                .signatures
                .iter()
                .filter(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
                .filter(|sig| sig.verify_subkey_binding(primary, &subkey.key).is_ok())
                .fold(None, newer);
            let Some(binding) = binding else {
                continue;
            };
            let revoked = subkey
                .signatures
                .iter()
                .filter(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation))
                .any(|sig| sig.verify_subkey_binding(primary, &subkey.key).is_ok());
            // A signing subkey must also sign the primary back, or anyone
            // could bind someone else's signing key to their primary.
            let can_sign = binding.key_flags().sign()
                && binding.embedded_signature().is_some_and(|back| {
                    back.verify_primary_key_binding(&subkey.key, primary)
                        .is_ok()
                });
            subkeys.push(Subkey {
                fingerprint: fingerprint_hex(&subkey.key.fingerprint()),
                created: subkey.key.created_at().into(),
                expires: expiry(subkey.key.created_at(), binding),
                revoked,
                can_sign,
                key: subkey.key.clone(),
            });
        }

        Ok(PublicKey {
            fingerprint,
            created: primary.created_at().into(),
            user_ids,
            expires: expiry(primary.created_at(), self_signature),
            revoked,
            can_sign: primary_can_sign(self_signature),
            subkeys,
            key,
        })
    }
}

fn is_certification(sig: &Signature) -> bool {
    matches!(
        sig.typ(),
        Some(
            SignatureType::CertGeneric
                | SignatureType::CertPersona
                | SignatureType::CertCasual
                | SignatureType::CertPositive
        )
    )
}

/// The newer of two self-signatures; on a tie the later one in the key wins.
fn newer<'s>(best: Option<&'s Signature>, candidate: &'s Signature) -> Option<&'s Signature> {
    let time = |sig: &Signature| sig.created().map_or(0, Timestamp::as_secs);
    match best {
        Some(best) if time(best) > time(candidate) => Some(best),
        _ => Some(candidate),
    }
}

/// Key expiration per a self- or binding signature; zero means "never".
fn expiry(created: Timestamp, signature: &Signature) -> Option<SystemTime> {
    let secs = signature.key_expiration_time()?.as_secs();
    (secs != 0).then(|| SystemTime::from(created) + Duration::from_secs(secs.into()))
}

/// Whether the newest self-signature lets the primary key sign data. Keys
/// from before key flags existed carry none; their primary is assumed to sign
/// (an encryption-only algorithm would fail verification anyway).
fn primary_can_sign(self_signature: &Signature) -> bool {
    let has_flags = self_signature.config().is_some_and(|config| {
        config
            .hashed_subpackets()
            .any(|p| matches!(p.data, packet::SubpacketData::KeyFlags(_)))
    });
    !has_flags || self_signature.key_flags().sign()
}

fn fingerprint_hex(fingerprint: &Fingerprint) -> String {
    format!("{fingerprint:X}")
}

fn key_id_hex(key_id: &KeyId) -> String {
    hex::encode_upper(key_id)
}

/// Parses every public key in `bytes` (ASCII-armored or binary; a file may hold several keys).
pub fn parse_public_keys(bytes: &[u8]) -> Result<Vec<PublicKey>, KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        path: None,
        message,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("is empty".to_owned()));
    }
    let mut parsed = Vec::new();
    let not_a_key = |e: pgp::errors::Error| {
        invalid(format!(
            "is not an OpenPGP public key: {}",
            parse_failure(&e)
        ))
    };
    // Binary OpenPGP data starts with a packet tag, whose high bit is set.
    if bytes[0] & 0x80 != 0 {
        parsed.extend(PublicOrSecret::from_bytes_many(bytes).map_err(not_a_key)?);
    } else {
        let blocks = armor_blocks(bytes);
        if blocks.is_empty() {
            return Err(invalid(
                "is neither binary OpenPGP data nor ASCII-armored (no `-----BEGIN PGP PUBLIC KEY BLOCK-----` line)"
                    .to_owned(),
            ));
        }
        for block in blocks {
            let (keys, _headers) = PublicOrSecret::from_armor_many_buf(block).map_err(not_a_key)?;
            parsed.extend(keys);
        }
    }

    let mut keys = Vec::new();
    for key in parsed {
        match key.map_err(not_a_key)? {
            PublicOrSecret::Public(key) => keys.push(PublicKey::from_signed(key).map_err(invalid)?),
            PublicOrSecret::Secret(_) => {
                return Err(invalid(
                    "holds a secret key; give the public key instead (`gpg --armor --export FINGERPRINT`)"
                        .to_owned(),
                ));
            }
        }
    }
    if keys.is_empty() {
        return Err(invalid("holds no OpenPGP public key".to_owned()));
    }
    Ok(keys)
}

/// Splits ASCII-armored text into its `-----BEGIN PGP ...` blocks. rpgp reads
/// one armor block at a time, but key files are often concatenations.
fn armor_blocks(text: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN PGP ";
    let starts: Vec<usize> = (0..text.len())
        .filter(|&i| (i == 0 || text[i - 1] == b'\n') && text[i..].starts_with(BEGIN))
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| &text[start..starts.get(n + 1).copied().unwrap_or(text.len())])
        .collect()
}

/// Reads and parses a key file; errors name the path.
pub fn load_key_file(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_public_keys(&bytes).map_err(|error| match error {
        KeyError::Invalid {
            path: None,
            message,
        } => KeyError::Invalid {
            path: Some(path.to_owned()),
            message,
        },
        other => other,
    })
}

/// Groups a fingerprint for humans as gpg does: "8B86 DE38 890D DB72 9186  7B02 5210 BD88 8818 2190".
pub fn format_fingerprint(fpr: &str) -> String {
    let digits: Vec<char> = fpr
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let mut out = String::with_capacity(digits.len() + digits.len() / 4 + 1);
    for (n, group) in digits.chunks(4).enumerate() {
        if n > 0 {
            // gpg puts a double space between the two halves of a v4 fingerprint.
            out.push_str(if n == 5 && digits.len() == 40 {
                "  "
            } else {
                " "
            });
        }
        out.extend(group);
    }
    out
}

/// A signature that verified, and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Fingerprint of the trusted primary key.
    pub primary: String,
    /// Fingerprint of the key that made the signature (a signing subkey or the primary).
    pub signing_key: String,
    /// The signature's creation time.
    pub created: SystemTime,
}

/// The keys trusted for one prefix.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<PublicKey>,
}

/// The trusted key a signature names: a primary key or one of its subkeys.
struct Signer<'k> {
    key: &'k PublicKey,
    subkey: Option<&'k Subkey>,
}

impl Signer<'_> {
    fn fingerprint(&self) -> &str {
        self.subkey
            .map_or(&self.key.fingerprint, |s| &s.fingerprint)
    }

    /// Validity of the key (and its primary) at `signed` and at `now`.
    fn check_usable(&self, signed: SystemTime, now: SystemTime) -> Result<(), SignatureError> {
        let primary = self.key;
        check_validity(
            &primary.fingerprint,
            primary.created,
            primary.expires,
            primary.revoked,
            signed,
            now,
        )?;
        let can_sign = match self.subkey {
            Some(subkey) => {
                check_validity(
                    &subkey.fingerprint,
                    subkey.created,
                    subkey.expires,
                    subkey.revoked,
                    signed,
                    now,
                )?;
                subkey.can_sign
            }
            None => primary.can_sign,
        };
        if !can_sign {
            return Err(SignatureError::NotSigningKey {
                key: self.fingerprint().to_owned(),
            });
        }
        Ok(())
    }

    fn verifying_key(&self) -> &dyn VerifyingKey {
        match self.subkey {
            Some(subkey) => &subkey.key,
            None => &self.key.key.primary_key,
        }
    }

    fn verified(&self, created: SystemTime) -> Verified {
        Verified {
            primary: self.key.fingerprint.clone(),
            signing_key: self.fingerprint().to_owned(),
            created,
        }
    }

    /// Maps a failed cryptographic check to an error.
    fn failure(&self, error: pgp::errors::Error) -> SignatureError {
        match error {
            pgp::errors::Error::Unsupported { .. } | pgp::errors::Error::Unimplemented { .. } => {
                SignatureError::Unsupported(error.to_string())
            }
            _ => SignatureError::BadSignature {
                key: self.fingerprint().to_owned(),
            },
        }
    }
}

fn check_validity(
    key: &str,
    created: SystemTime,
    expires: Option<SystemTime>,
    revoked: bool,
    signed: SystemTime,
    now: SystemTime,
) -> Result<(), SignatureError> {
    // Any self-revocation counts, whatever its reason and date: imagelock
    // cannot tell a compromised key's old signatures from forged ones.
    if revoked {
        return Err(SignatureError::Revoked {
            key: key.to_owned(),
        });
    }
    if let Some(at) = expires
        && (signed >= at || now >= at)
    {
        return Err(SignatureError::Expired {
            key: key.to_owned(),
            at,
        });
    }
    if signed < created {
        return Err(SignatureError::MadeBeforeKey {
            key: key.to_owned(),
            signed,
        });
    }
    Ok(())
}

impl Keyring {
    /// A keyring trusting exactly `keys`.
    pub fn new(keys: Vec<PublicKey>) -> Keyring {
        Keyring { keys }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Fingerprints of the trusted primary keys.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.fingerprint.clone()).collect()
    }

    /// Cheap pre-check before downloading a large image: the issuer of a
    /// detached signature is one of our keys (a primary or a validly bound
    /// subkey). Err(UnknownKey) otherwise; validity is checked only later.
    pub fn check_issuer(&self, signature: &[u8]) -> Result<(), SignatureError> {
        let signature = first_detached_signature(signature)?;
        self.find_signer(&signature).map(|_| ())
    }

    /// Verifies a detached signature (armored or binary) over the bytes read
    /// from `data`, which is streamed through the hash.
    pub fn verify_detached(
        &self,
        signature: &[u8],
        data: impl Read,
        now: SystemTime,
    ) -> Result<Verified, SignatureError> {
        let signature = first_detached_signature(signature)?;
        let created = check_signature_packet(&signature, now)?;
        let signer = self.find_signer(&signature)?;
        // Checked before hashing: an unusable key fails without reading a
        // possibly huge image.
        signer.check_usable(created, now)?;

        let mut data = ErrorKeepingReader {
            inner: data,
            error: None,
        };
        let result = match signer.subkey {
            Some(subkey) => signature.verify(&subkey.key, &mut data),
            None => signature.verify(&signer.key.key.primary_key, &mut data),
        };
        if let Some(error) = data.error {
            return Err(SignatureError::Read(error));
        }
        result.map_err(|e| signer.failure(e))?;
        Ok(signer.verified(created))
    }

    /// Verifies an OpenPGP signed message (compressed or not, binary or
    /// armored, as `gpg --sign` and `skopeo copy --sign-by` write them) and
    /// returns its literal payload. Refuses unsigned, encrypted or multiply
    /// signed messages.
    pub fn verify_message(
        &self,
        message: &[u8],
        now: SystemTime,
    ) -> Result<(Verified, Vec<u8>), SignatureError> {
        if message.iter().all(u8::is_ascii_whitespace) {
            return Err(SignatureError::Malformed(
                "the signed message is empty".to_owned(),
            ));
        }
        let malformed = |e: &dyn fmt::Display| {
            SignatureError::Malformed(format!(
                "not an OpenPGP signed message: {}",
                parse_failure(e)
            ))
        };
        let (mut msg, _headers) = Message::from_reader(message).map_err(|e| malformed(&e))?;

        // gpg writes compressed{one-pass signature, literal, signature}; the
        // compression may also sit inside the signed part.
        for _ in 0..MAX_COMPRESSION_LAYERS {
            let compressed = match &msg {
                Message::Compressed { .. } => true,
                Message::Signed { reader, .. } => {
                    matches!(reader.get_ref(), Message::Compressed { .. })
                }
                _ => false,
            };
            if !compressed {
                break;
            }
            msg = msg.decompress().map_err(|e| malformed(&e))?;
        }
        let inner = match &msg {
            Message::Signed { reader, .. } => {
                if reader.num_signatures() != 1 {
                    return Err(SignatureError::MultipleSignatures);
                }
                reader.get_ref()
            }
            other => other,
        };
        match inner {
            Message::Literal { .. } if !msg.is_signed() => return Err(SignatureError::NotSigned),
            Message::Literal { .. } => {}
            Message::Signed { .. } => return Err(SignatureError::MultipleSignatures),
            Message::Encrypted { .. } => return Err(SignatureError::Encrypted),
            Message::Compressed { .. } => {
                return Err(SignatureError::Malformed(format!(
                    "more than {MAX_COMPRESSION_LAYERS} layers of compression"
                )));
            }
        }

        let mut payload = Vec::new();
        (&mut msg)
            .take(MAX_MESSAGE_PAYLOAD as u64 + 1)
            .read_to_end(&mut payload)
            .map_err(|e| malformed(&e))?;
        if payload.len() > MAX_MESSAGE_PAYLOAD {
            return Err(SignatureError::Malformed(format!(
                "the signed payload is larger than {MAX_MESSAGE_PAYLOAD} bytes"
            )));
        }

        let signature = match &msg {
            Message::Signed { reader, .. } => reader.signature(0),
            _ => None,
        }
        .ok_or_else(|| SignatureError::Malformed("the signature packet is missing".to_owned()))?;
        let created = check_signature_packet(signature, now)?;
        let signer = self.find_signer(signature)?;
        signer.check_usable(created, now)?;
        msg.verify_nested_explicit(0, signer.verifying_key())
            .map_err(|e| signer.failure(e))?;
        Ok((signer.verified(created), payload))
    }

    /// The trusted key the signature names. Issuer fingerprints are matched
    /// when present; the 64-bit key ID only when the signature names no
    /// fingerprint.
    fn find_signer(&self, signature: &Signature) -> Result<Signer<'_>, SignatureError> {
        let fingerprints = signature.issuer_fingerprint();
        let key_ids = signature.issuer_key_id();
        if fingerprints.is_empty() && key_ids.is_empty() {
            return Err(SignatureError::Malformed(
                "the signature does not name the key that made it (no issuer subpacket)".to_owned(),
            ));
        }
        let names = |key: &dyn KeyDetails| {
            if fingerprints.is_empty() {
                key_ids.contains(&&key.legacy_key_id())
            } else {
                fingerprints.contains(&&key.fingerprint())
            }
        };
        for key in &self.keys {
            if names(&key.key.primary_key) {
                return Ok(Signer { key, subkey: None });
            }
            if let Some(subkey) = key.subkeys.iter().find(|s| names(&s.key)) {
                return Ok(Signer {
                    key,
                    subkey: Some(subkey),
                });
            }
        }
        let issuer = if fingerprints.is_empty() {
            key_ids.into_iter().map(key_id_hex).collect()
        } else {
            fingerprints.into_iter().map(fingerprint_hex).collect()
        };
        Err(SignatureError::UnknownKey {
            issuer,
            trusted: self.fingerprints(),
        })
    }
}

/// The first signature packet of a detached signature (armored or binary).
fn first_detached_signature(bytes: &[u8]) -> Result<Signature, SignatureError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SignatureError::Malformed(
            "the signature is empty".to_owned(),
        ));
    }
    let not_a_signature = |e: pgp::errors::Error| {
        SignatureError::Malformed(format!("not a detached signature: {}", parse_failure(&e)))
    };
    let (mut signatures, _headers) =
        DetachedSignature::from_reader_many(bytes).map_err(not_a_signature)?;
    match signatures.next() {
        Some(Ok(detached)) => Ok(detached.signature),
        Some(Err(e)) => Err(not_a_signature(e)),
        None => Err(SignatureError::Malformed(
            "the signature file holds no signature packet".to_owned(),
        )),
    }
}

/// Checks what can be checked on the signature packet alone; returns its
/// creation time.
fn check_signature_packet(
    signature: &Signature,
    now: SystemTime,
) -> Result<SystemTime, SignatureError> {
    if signature.version() != SignatureVersion::V4 {
        return Err(SignatureError::Unsupported(format!(
            "OpenPGP version {} signature; only version 4 signatures are accepted",
            u8::from(signature.version())
        )));
    }
    match signature.typ() {
        // Text-mode signatures hash the data with line endings normalised, so
        // they would not bind the exact bytes as served: binary only.
        Some(SignatureType::Binary) => {}
        other => {
            return Err(SignatureError::Unsupported(format!(
                "a {} signature does not bind exact bytes; only binary document signatures are accepted (`gpg --detach-sign` without --textmode)",
                other.map_or_else(
                    || "typeless".to_owned(),
                    |t| format!("{t:?} (0x{:02x})", u8::from(t))
                )
            )));
        }
    }
    match signature.hash_alg() {
        Some(
            HashAlgorithm::Sha224
            | HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512,
        ) => {}
        other => {
            return Err(SignatureError::Unsupported(format!(
                "the signature uses the {} hash; only SHA-224, SHA-256, SHA-384 and SHA-512 are accepted",
                other.map_or_else(|| "unknown".to_owned(), |h| h.to_string())
            )));
        }
    }
    let created: SystemTime = signature
        .created()
        .ok_or_else(|| SignatureError::Malformed("the signature has no creation time".to_owned()))?
        .into();
    if let Some(lifetime) = signature.signature_expiration_time()
        && lifetime.as_secs() != 0
    {
        let at = created + Duration::from_secs(lifetime.as_secs().into());
        if now >= at {
            return Err(SignatureError::SignatureExpired { at });
        }
    }
    Ok(created)
}

/// Passes reads through and keeps the first real I/O error, so that a
/// failing data source is reported as such and not as a bad signature.
struct ErrorKeepingReader<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R: Read> Read for ErrorKeepingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                let kind = e.kind();
                self.error.get_or_insert(e);
                Err(io::Error::new(kind, "reading the signed data failed"))
            }
            other => other,
        }
    }
}

/// `2020-01-02 00:00:00 UTC`, for error messages.
fn format_utc(time: SystemTime) -> String {
    let Ok(since_epoch) = time.duration_since(UNIX_EPOCH) else {
        return "a date before 1970".to_owned();
    };
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_date(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01,
/// by counting 400-year eras that start on March 1st (so leap days fall last).
fn civil_date(days_since_epoch: u64) -> (u64, u64, u64) {
    // 1970-01-01 is day 719_468 counted from 0000-03-01.
    let days = days_since_epoch + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_based_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_based_month + 2) / 5 + 1;
    let month = if march_based_month < 10 {
        march_based_month + 3
    } else {
        march_based_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            &include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/openpgp/",
                $name
            ))[..]
        };
    }

    /// (fixture name, fingerprint) as gpg reported them to make.sh.
    fn gpg_fingerprints() -> Vec<(&'static str, &'static str)> {
        include_str!("../../tests/fixtures/openpgp/fingerprints.txt")
            .lines()
            .map(|line| line.split_once(' ').expect("NAME FINGERPRINT"))
            .collect()
    }

    fn fpr(name: &str) -> String {
        gpg_fingerprints()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not in fingerprints.txt"))
            .1
            .to_owned()
    }

    /// Maps a fingerprint or key ID back to its fixture name.
    fn name_of(hex: &str) -> String {
        gpg_fingerprints()
            .into_iter()
            .find(|(_, f)| *f == hex || (hex.len() == 16 && f.ends_with(hex)))
            .map_or_else(|| hex.to_owned(), |(n, _)| n.to_owned())
    }

    fn names(hexes: &[String]) -> String {
        hexes
            .iter()
            .map(|h| name_of(h))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The key files a test case trusts.
    type KeyFiles<'a> = &'a [&'a [u8]];

    /// (case name, trusted key files, signature, signed data, now, expected outcome).
    type DetachedCase<'a> = (
        &'a str,
        KeyFiles<'a>,
        &'a [u8],
        &'a [u8],
        SystemTime,
        &'a str,
    );

    fn ring(files: KeyFiles<'_>) -> Keyring {
        Keyring::new(
            files
                .iter()
                .flat_map(|f| parse_public_keys(f).unwrap())
                .collect(),
        )
    }

    /// A short, comparable description of a verification outcome.
    fn outcome(result: &Result<Verified, SignatureError>) -> String {
        use SignatureError::*;
        match result {
            Ok(v) => format!("ok {} {}", name_of(&v.primary), name_of(&v.signing_key)),
            Err(UnknownKey { issuer, trusted }) => {
                format!("UnknownKey [{}] [{}]", names(issuer), names(trusted))
            }
            Err(BadSignature { key }) => format!("BadSignature {}", name_of(key)),
            Err(Expired { key, at }) => format!("Expired {} {}", name_of(key), format_utc(*at)),
            Err(Revoked { key }) => format!("Revoked {}", name_of(key)),
            Err(NotSigningKey { key }) => format!("NotSigningKey {}", name_of(key)),
            Err(MadeBeforeKey { key, .. }) => format!("MadeBeforeKey {}", name_of(key)),
            Err(SignatureExpired { .. }) => "SignatureExpired".to_owned(),
            Err(Malformed(_)) => "Malformed".to_owned(),
            Err(Unsupported(_)) => "Unsupported".to_owned(),
            Err(NotSigned) => "NotSigned".to_owned(),
            Err(Encrypted) => "Encrypted".to_owned(),
            Err(MultipleSignatures) => "MultipleSignatures".to_owned(),
            Err(Read(_)) => "Read".to_owned(),
        }
    }

    fn utc(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    // The expired key was made at 2020-01-01 00:00 UTC with a one-day expiry.
    const JAN_1_2020_NOON: u64 = 1_577_880_000;
    const JAN_2_2020: u64 = 1_577_923_200;
    const JAN_3_2020: u64 = 1_578_009_600;

    #[test]
    fn keys_parse_with_gpg_fingerprints() {
        let cases: &[(&str, &[u8], &[&str])] = &[
            ("rsa armored", fixture!("rsa.asc"), &["rsa"]),
            ("rsa binary", fixture!("rsa.gpg"), &["rsa"]),
            ("ed25519", fixture!("ed25519.asc"), &["ed25519"]),
            (
                "two keys in one block",
                fixture!("rsa-and-ed25519.asc"),
                &["rsa", "ed25519"],
            ),
            (
                "with signing subkey",
                fixture!("subkey.asc"),
                &["subkey-primary"],
            ),
        ];
        for (name, bytes, want) in cases {
            let keys = parse_public_keys(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got: Vec<String> = keys.iter().map(|k| k.fingerprint().to_owned()).collect();
            let want: Vec<String> = want.iter().map(|n| fpr(n)).collect();
            assert_eq!(got, want, "{name}");
            for key in &keys {
                assert_eq!(key.user_ids().len(), 1, "{name}");
                assert!(
                    key.user_ids()[0].contains("(TEST ONLY, not secret)"),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn concatenated_armor_blocks_are_all_read() {
        let both = [fixture!("rsa.asc"), b"\n", fixture!("ed25519.asc")].concat();
        let got: Vec<String> = parse_public_keys(&both)
            .unwrap()
            .iter()
            .map(|k| k.fingerprint().to_owned())
            .collect();
        assert_eq!(got, [fpr("rsa"), fpr("ed25519")]);
    }

    #[test]
    fn key_properties() {
        let one = |bytes: &[u8]| parse_public_keys(bytes).unwrap().remove(0);

        let rsa = one(fixture!("rsa.asc"));
        assert_eq!(rsa.expires(), None);
        assert!(!rsa.is_revoked());
        assert!(rsa.subkey_fingerprints().is_empty());
        assert!(rsa.user_ids()[0].ends_with("<test-rsa@imagelock.invalid>"));

        let subkey = one(fixture!("subkey.asc"));
        assert_eq!(subkey.subkey_fingerprints(), [fpr("subkey-signing")]);

        let expired = one(fixture!("expired.asc"));
        assert_eq!(expired.created(), utc(JAN_2_2020 - 86_400));
        assert_eq!(expired.expires(), Some(utc(JAN_2_2020)));
        assert!(!expired.is_revoked());

        assert!(one(fixture!("revoked.asc")).is_revoked());
        assert!(!one(fixture!("subkey-revoked.asc")).is_revoked());
    }

    #[test]
    fn armored_export_round_trips() {
        let key = parse_public_keys(fixture!("subkey.asc")).unwrap().remove(0);
        let armored = key.armored().unwrap();
        assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        let again = parse_public_keys(armored.as_bytes()).unwrap().remove(0);
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert_eq!(again.subkey_fingerprints(), key.subkey_fingerprints());
        assert_eq!(again.user_ids(), key.user_ids());
    }

    #[test]
    fn non_keys_are_refused() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty", b"", "is empty"),
            ("blank", b" \n\t", "is empty"),
            (
                "text",
                b"hello",
                "neither binary OpenPGP data nor ASCII-armored",
            ),
            (
                "signature",
                fixture!("rsa.data.asc"),
                "is not an OpenPGP public key",
            ),
            (
                "binary signature",
                fixture!("rsa.data.sig"),
                "holds no OpenPGP public key",
            ),
            ("binary garbage", &[0xff; 32], "the key data"),
            // The armor reader's error quotes what follows the header; not shown.
            (
                "armored secret",
                b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nroot:$6$s3cr3t:1\n-----END PGP PUBLIC KEY BLOCK-----\n",
                "(the bytes it stopped at are not shown)",
            ),
        ];
        for (name, bytes, want) in cases {
            let error = parse_public_keys(bytes).expect_err(name).to_string();
            assert!(error.contains(want), "{name}: {error}");
            assert!(error.starts_with("the key data "), "{name}: {error}");
            assert!(
                !error.contains("114, 111") && !error.contains("s3cr3t"),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn load_key_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.asc");
        std::fs::write(&good, fixture!("ed25519.asc")).unwrap();
        let keys = load_key_file(&good).unwrap();
        assert_eq!(keys[0].fingerprint(), fpr("ed25519"));

        let bad = dir.path().join("bad.asc");
        std::fs::write(&bad, b"not a key").unwrap();
        let error = load_key_file(&bad).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("key file {} ", bad.display())),
            "{error}"
        );

        let missing = dir.path().join("missing.asc");
        let error = load_key_file(&missing).unwrap_err();
        assert!(matches!(error, KeyError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.asc"), "{error}");
    }

    #[test]
    fn detached_signatures() {
        let data = fixture!("data.bin");
        let now = SystemTime::now();
        let rsa = fixture!("rsa.asc");
        let ed = fixture!("ed25519.asc");
        #[rustfmt::skip]
        let cases: &[DetachedCase] = &[
            ("rsa armored", &[rsa], fixture!("rsa.data.asc"), data, now, "ok rsa rsa"),
            ("rsa binary, binary key", &[fixture!("rsa.gpg")], fixture!("rsa.data.sig"), data, now, "ok rsa rsa"),
            ("ed25519 armored", &[ed], fixture!("ed25519.data.asc"), data, now, "ok ed25519 ed25519"),
            ("ed25519 binary", &[ed], fixture!("ed25519.data.sig"), data, now, "ok ed25519 ed25519"),
            ("text mode", &[ed], fixture!("ed25519-text.data.asc"), data, now, "Unsupported"),
            ("several trusted keys", &[fixture!("rsa-and-ed25519.asc")], fixture!("ed25519.data.asc"), data, now, "ok ed25519 ed25519"),
            ("signing subkey", &[fixture!("subkey.asc")], fixture!("subkey.data.asc"), data, now, "ok subkey-primary subkey-signing"),
            ("other data", &[rsa], fixture!("rsa.data.asc"), b"imagelock test data?\n", now, "BadSignature rsa"),
            ("no data", &[ed], fixture!("ed25519.data.asc"), b"", now, "BadSignature ed25519"),
            ("untrusted key", &[rsa, ed], fixture!("untrusted.data.asc"), data, now, "UnknownKey [untrusted] [rsa,ed25519]"),
            ("nothing trusted", &[], fixture!("rsa.data.asc"), data, now, "UnknownKey [rsa] []"),
            ("subkey of an untrusted key", &[ed], fixture!("subkey.data.asc"), data, now, "UnknownKey [subkey-signing] [ed25519]"),
            ("expired key", &[fixture!("expired.asc")], fixture!("expired.data.asc"), data, now, "Expired expired 2020-01-02 00:00:00 UTC"),
            ("expired key, checked while valid", &[fixture!("expired.asc")], fixture!("expired.data.asc"), data, utc(JAN_1_2020_NOON), "ok expired expired"),
            ("revoked key", &[fixture!("revoked.asc")], fixture!("revoked.data.asc"), data, now, "Revoked revoked"),
            ("revoked subkey", &[fixture!("subkey-revoked.asc")], fixture!("subkey-revoked.data.asc"), data, now, "Revoked subkey-revoked-signing"),
            ("signing capability removed", &[fixture!("cert-only.asc")], fixture!("cert-only.data.asc"), data, now, "NotSigningKey cert-only"),
            ("sha1", &[rsa], fixture!("rsa-sha1.data.sig"), data, now, "Unsupported"),
            ("empty signature", &[rsa], b"", data, now, "Malformed"),
            ("text garbage", &[rsa], b"not a signature", data, now, "Malformed"),
            ("binary garbage", &[rsa], &[0xff; 16], data, now, "Malformed"),
            ("a key, not a signature", &[rsa], rsa, data, now, "Malformed"),
            ("a signed message, not a detached signature", &[rsa], fixture!("rsa.payload.msg"), data, now, "Malformed"),
        ];
        for (name, keys, signature, data, now, want) in cases {
            let result = ring(keys).verify_detached(signature, *data, *now);
            assert_eq!(outcome(&result), *want, "{name}: {result:?}");
        }
    }

    #[test]
    fn verified_carries_the_creation_time() {
        let verified = ring(&[fixture!("expired.asc")])
            .verify_detached(
                fixture!("expired.data.asc"),
                fixture!("data.bin"),
                utc(JAN_1_2020_NOON),
            )
            .unwrap();
        // make.sh signs at 2020-01-01 01:00 UTC.
        assert_eq!(verified.created, utc(JAN_2_2020 - 86_400 + 3600));
    }

    #[test]
    fn key_validity_at_signature_time() {
        let keys = ring(&[fixture!("expired.asc")]);
        let signature = first_detached_signature(fixture!("expired.data.asc")).unwrap();
        let signer = keys.find_signer(&signature).unwrap();
        let created = |secs| -> Result<Verified, SignatureError> {
            signer
                .check_usable(utc(secs), utc(JAN_1_2020_NOON))
                .map(|()| signer.verified(utc(secs)))
        };
        assert_eq!(outcome(&created(JAN_1_2020_NOON)), "ok expired expired");
        assert_eq!(
            outcome(&created(JAN_3_2020)),
            "Expired expired 2020-01-02 00:00:00 UTC",
            "signed after the key expired, checked while it was valid"
        );
        assert_eq!(
            outcome(&created(JAN_2_2020 - 2 * 86_400)),
            "MadeBeforeKey expired"
        );
    }

    #[test]
    fn only_data_signature_types_are_accepted() {
        // A real signature packet of the wrong type: the key's own self-signature.
        let key = parse_public_keys(fixture!("rsa.asc")).unwrap().remove(0);
        let self_signature = &key.key.details.users[0].signatures[0];
        assert_eq!(self_signature.typ(), Some(SignatureType::CertPositive));
        let mut bytes = Vec::new();
        packet::PacketTrait::to_writer_with_header(self_signature, &mut bytes).unwrap();
        let error = ring(&[fixture!("rsa.asc")])
            .verify_detached(&bytes, &b""[..], SystemTime::now())
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("CertPositive (0x13) signature does not bind exact bytes"),
            "{error}"
        );
    }

    #[test]
    fn read_errors_are_not_bad_signatures() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let result = ring(&[fixture!("rsa.asc")]).verify_detached(
            fixture!("rsa.data.asc"),
            fixture!("data.bin").chain(Failing),
            SystemTime::now(),
        );
        match result {
            Err(SignatureError::Read(e)) => assert_eq!(e.to_string(), "disk on fire"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signed_messages() {
        let now = SystemTime::now();
        let payload = fixture!("payload.json");
        let rsa = fixture!("rsa.asc");
        let ed = fixture!("ed25519.asc");
        let uncompressed = fixture!("ed25519-uncompressed.payload.msg");
        let at = uncompressed
            .windows(payload.len())
            .position(|w| w == payload)
            .expect("the uncompressed message holds the payload");
        let mut tampered = uncompressed.to_vec();
        tampered[at + 2] ^= 0x20;

        #[rustfmt::skip]
        let cases: &[(&str, KeyFiles, &[u8], &str)] = &[
            ("gpg --sign (compressed)", &[rsa], fixture!("rsa.payload.msg"), "ok rsa rsa"),
            ("gpg --sign --armor", &[ed], fixture!("ed25519.payload.asc"), "ok ed25519 ed25519"),
            ("uncompressed", &[ed], uncompressed, "ok ed25519 ed25519"),
            ("signing subkey", &[fixture!("subkey.asc")], fixture!("subkey.payload.msg"), "ok subkey-primary subkey-signing"),
            ("tampered payload", &[ed], &tampered, "BadSignature ed25519"),
            ("two signers", &[rsa, ed], fixture!("two-signers.payload.msg"), "MultipleSignatures"),
            ("untrusted key", &[rsa], fixture!("untrusted.payload.msg"), "UnknownKey [untrusted] [rsa]"),
            ("literal only (gpg --store)", &[rsa], fixture!("literal.payload.msg"), "NotSigned"),
            ("encrypted (gpg --symmetric)", &[rsa], fixture!("symmetric.payload.msg"), "Encrypted"),
            ("detached signature", &[rsa], fixture!("rsa.data.sig"), "Malformed"),
            ("empty", &[rsa], b"", "Malformed"),
            ("garbage", &[rsa], b"garbage", "Malformed"),
            ("a key", &[rsa], rsa, "Malformed"),
        ];
        for (name, keys, message, want) in cases {
            let result = ring(keys).verify_message(message, now);
            let (result, got_payload) = match result {
                Ok((verified, got)) => (Ok(verified), Some(got)),
                Err(e) => (Err(e), None),
            };
            assert_eq!(outcome(&result), *want, "{name}: {result:?}");
            if let Some(got) = got_payload {
                assert_eq!(got, payload, "{name}");
            }
        }
    }

    #[test]
    fn check_issuer() {
        let trusted = ring(&[fixture!("rsa.asc"), fixture!("subkey.asc")]);
        let cases: &[(&str, &[u8], &str)] = &[
            ("primary", fixture!("rsa.data.asc"), "ok"),
            ("subkey", fixture!("subkey.data.asc"), "ok"),
            (
                "untrusted",
                fixture!("untrusted.data.asc"),
                "UnknownKey [untrusted] [rsa,subkey-primary]",
            ),
            ("garbage", b"garbage", "Malformed"),
        ];
        for (name, signature, want) in cases {
            let got = match trusted.check_issuer(signature) {
                Ok(()) => "ok".to_owned(),
                Err(e) => outcome(&Err(e)),
            };
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn error_messages_read_well() {
        let error = ring(&[fixture!("rsa.asc")])
            .verify_detached(
                fixture!("untrusted.data.asc"),
                fixture!("data.bin"),
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the signature was made by key {}, which is not trusted here (trusted keys: {})",
                fpr("untrusted"),
                fpr("rsa")
            )
        );
        let error = ring(&[fixture!("expired.asc")])
            .verify_detached(
                fixture!("expired.data.asc"),
                fixture!("data.bin"),
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("key {} expired on 2020-01-02 00:00:00 UTC", fpr("expired"))
        );
    }

    #[test]
    fn fingerprints_are_grouped_like_gpg() {
        let cases = [
            (
                "8B86DE38890DDB7291867B025210BD8888182190",
                "8B86 DE38 890D DB72 9186  7B02 5210 BD88 8818 2190",
            ),
            (
                "8b86de38890ddb7291867b025210bd8888182190",
                "8B86 DE38 890D DB72 9186  7B02 5210 BD88 8818 2190",
            ),
            (
                "8B86 DE38 890D DB72 9186  7B02 5210 BD88 8818 2190",
                "8B86 DE38 890D DB72 9186  7B02 5210 BD88 8818 2190",
            ),
            ("5210BD8888182190", "5210 BD88 8818 2190"),
            ("ABCDEF", "ABCD EF"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(format_fingerprint(input), want, "{input}");
        }
    }

    #[test]
    fn dates_are_formatted_in_utc() {
        let cases = [
            (0, "1970-01-01 00:00:00 UTC"),
            (JAN_2_2020, "2020-01-02 00:00:00 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (4_107_542_399, "2100-02-28 23:59:59 UTC"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_utc(utc(secs)), want, "{secs}");
        }
    }
}
