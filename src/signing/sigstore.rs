//! Sigstore bundles verified offline: keyed (a PEM public key) and keyless (a Fulcio
//! certificate for an OIDC identity), message-signature and DSSE content, bundle media
//! types v0.1 to v0.3, Rekor v1 and v2 log entries.
//!
//! The checks themselves are `sigstore-verify`'s (with the `ring` and RustCrypto
//! primitives of `backend`); this module decides what is trusted and says in plain words
//! what failed. For a keyless bundle: the certificate chains to a Fulcio CA of the trusted
//! root that was valid at the signing time (the log's integrated time, covered by its
//! signed entry timestamp, or an RFC 3161 timestamp from a trusted authority), its SCT
//! verifies against a CT log key, the log entry verifies (inclusion proof with a signed
//! checkpoint, or the signed entry timestamp) and describes this signature and content,
//! the signature verifies with the certificate's key over the content, and the
//! certificate's OIDC issuer and subject match one of the [`Policy`]'s identities. For
//! a keyed bundle the same, except that one of the policy's keys replaces the
//! certificate and the identity check.
//!
//! Invariants: nothing here touches the network or the filesystem (the caller reads
//! bundles, keys and roots; [`read_key_file`] is the one helper that reads a file); a
//! [`Verified`] exists only for a bundle that passed every check with a signer the
//! policy trusts; the log entry is always required — an unlogged keyed bundle is
//! refused here ([`verify_unlogged`] is the separate, explicit path for unlogged keyed
//! signatures). A subject regexp is searched, not anchored, as cosign's
//! `--certificate-identity-regexp` is: write `^…$` to match whole subjects.
//!
//! Formats: bundles are the Sigstore bundle JSON (`application/vnd.dev.sigstore.bundle*`),
//! trusted roots `trusted_root.json` (`application/vnd.dev.sigstore.trustedroot+json`);
//! a key's fingerprint is `sha256:` and the hex SHA-256 of its DER SubjectPublicKeyInfo,
//! a root's digest the `sha256:` digest of its JSON bytes as given.

mod backend;

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use sigstore_verify::trust_root::{SIGSTORE_PRODUCTION_TRUSTED_ROOT, TrustedRoot};
use sigstore_verify::types::bundle::VerificationMaterialContent;
use sigstore_verify::types::{ArtifactDigest, Bundle, DerPublicKey, HashAlgorithm};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

use crate::digest::{Algorithm, Digest};

/// A trusted root, ready to verify with.
pub struct TrustRoot {
    verifier: Verifier,
    digest: Digest,
    /// Lists neither a transparency log nor a certificate authority.
    lists_nothing: bool,
}

impl fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRoot")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl TrustRoot {
    /// The Sigstore public-good instance's root, as built into imagelock.
    pub fn public_good() -> Result<TrustRoot, Error> {
        TrustRoot::from_json(SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes())
    }

    /// A root from the bytes of a `trusted_root.json`.
    pub fn from_json(json: &[u8]) -> Result<TrustRoot, Error> {
        backend::install();
        let text = std::str::from_utf8(json)
            .map_err(|_| Error::TrustedRoot("it is not UTF-8 text".to_owned()))?;
        let root = TrustedRoot::from_json(text).map_err(|e| Error::TrustedRoot(e.to_string()))?;
        let verifier = Verifier::new(&root).map_err(|e| Error::TrustedRoot(e.to_string()))?;
        Ok(TrustRoot {
            verifier,
            digest: Digest::sha256_of(json),
            lists_nothing: root.tlogs.is_empty() && root.certificate_authorities.is_empty(),
        })
    }

    /// Whether the root lists no transparency log (`tlogs`) and no certificate
    /// authority (`certificateAuthorities`): the format allows it, and such a
    /// root verifies nothing.
    pub fn lists_nothing(&self) -> bool {
        self.lists_nothing
    }

    /// The digest of the root's JSON, to pin which root verified a signature.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// A public key trusted to sign bundles.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: DerPublicKey,
    fingerprint: String,
}

impl TrustedKey {
    /// A key from PEM (`-----BEGIN PUBLIC KEY-----`: ECDSA P-256/P-384, RSA or
    /// Ed25519, as `cosign generate-key-pair` and `openssl pkey -pubout` write).
    /// `origin` names where it came from, for messages.
    pub fn from_pem(pem: &[u8], origin: &str) -> Result<TrustedKey, Error> {
        let bad = |message: String| Error::Key {
            origin: origin.to_owned(),
            message,
        };
        let text = std::str::from_utf8(pem).map_err(|_| bad("it is not PEM text".to_owned()))?;
        let key = DerPublicKey::from_pem(text).map_err(|e| bad(e.to_string()))?;
        backend::install();
        sigstore_verify::crypto::KeyAlgorithm::from_spki(&key).map_err(|e| bad(e.to_string()))?;
        let fingerprint = Digest::sha256_of(key.as_bytes()).to_string();
        Ok(TrustedKey { key, fingerprint })
    }

    /// `sha256:` and the hex SHA-256 of the key's DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Largest PEM key file read: a public key is a few hundred bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Reads a PEM public key file (the one filesystem access of this module): a regular
/// file, not a link or device, of at most [`MAX_KEY_FILE_BYTES`].
pub fn read_key_file(path: &Path) -> Result<TrustedKey, Error> {
    let origin = format!("key file {}", path.display());
    let pem =
        crate::fsutil::read_regular_capped(path, MAX_KEY_FILE_BYTES).map_err(|e| Error::Key {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
    TrustedKey::from_pem(&pem, &origin)
}

/// How a certificate's subject (its SAN: an email address or a URI) must read.
#[derive(Debug, Clone)]
pub enum Subject {
    /// Exactly this string.
    Exact(String),
    /// Any subject the regular expression finds a match in (not anchored; use `^…$`).
    Regexp(regex_lite::Regex),
}

impl Subject {
    /// A subject pattern, checked for syntax now.
    pub fn regexp(pattern: &str) -> Result<Subject, Error> {
        regex_lite::Regex::new(pattern)
            .map(Subject::Regexp)
            .map_err(|e| Error::Pattern {
                pattern: pattern.to_owned(),
                message: e.to_string(),
            })
    }

    /// Whether `subject` is one this pattern accepts.
    pub fn matches(&self, subject: &str) -> bool {
        match self {
            Subject::Exact(expected) => expected == subject,
            Subject::Regexp(pattern) => pattern.is_match(subject),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Exact(subject) => f.write_str(subject),
            Subject::Regexp(pattern) => write!(f, "/{}/", pattern.as_str()),
        }
    }
}

/// A keyless signer trusted to sign: an OIDC issuer and the subject it vouches for.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The OIDC issuer URL, matched exactly.
    pub issuer: String,
    /// The certificate subject.
    pub subject: Subject,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.subject, self.issuer)
    }
}

/// Who may sign: any one of these keys or identities suffices.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Keys for keyed bundles.
    pub keys: Vec<TrustedKey>,
    /// Identities for keyless bundles.
    pub identities: Vec<Identity>,
    /// Whether a keyed cosign signature without a transparency-log entry is accepted
    /// (`insecure-ignore-tlog`; cosign's `--insecure-ignore-tlog`). Never a keyless one.
    pub allow_unlogged: bool,
}

/// The content a bundle must sign.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// The bytes themselves (a file, a payload).
    Bytes(&'a [u8]),
    /// Only their digest (for DSSE, a subject digest of the in-toto statement).
    Digest(&'a Digest),
}

/// Who made a verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// A trusted key, by fingerprint.
    Key {
        /// See [`TrustedKey::fingerprint`].
        fingerprint: String,
    },
    /// A keyless certificate's identity.
    Identity {
        /// The OIDC issuer.
        issuer: String,
        /// The certificate's subject (SAN).
        subject: String,
    },
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Key { fingerprint } => write!(f, "key {fingerprint}"),
            Signer::Identity { issuer, subject } => write!(f, "{subject} from {issuer}"),
        }
    }
}

/// A bundle that passed every check, and what it proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who signed.
    pub signer: Signer,
    /// The index of the (first) transparency-log entry.
    pub log_index: Option<u64>,
    /// Rekor v1's integrated time, covered by a verified signed entry timestamp or
    /// checkpoint; `None` for Rekor v2, which has RFC 3161 timestamps instead.
    pub integrated_time: Option<SystemTime>,
    /// The earliest verified signing time (integrated time or RFC 3161 timestamp).
    pub signed_at: Option<SystemTime>,
    /// The digest of the trusted root that verified it ([`TrustRoot::digest`]).
    pub trusted_root: Digest,
}

/// Which check refused a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The bundle's structure, version or contents.
    Bundle,
    /// The signature over the content.
    Signature,
    /// Whether the bundle signs this content.
    Content,
    /// The signing certificate: chain, validity at signing time, SCT.
    Certificate,
    /// The transparency-log entry: inclusion proof, checkpoint, signed entry timestamp.
    TransparencyLog,
    /// An RFC 3161 timestamp, or the lack of any verified signing time.
    Timestamp,
    /// The trusted root cannot check this bundle.
    TrustedRoot,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Bundle => "the bundle is malformed or of an unsupported kind",
            Check::Signature => "the signature does not verify",
            Check::Content => "the bundle does not sign this content",
            Check::Certificate => "the signing certificate is not trusted",
            Check::TransparencyLog => "the transparency-log entry does not verify",
            Check::Timestamp => "the signing time cannot be established",
            Check::TrustedRoot => "the trusted root cannot check this bundle",
        })
    }
}

/// Why a bundle, key, pattern or root was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle is not a Sigstore bundle imagelock reads.
    #[error("the Sigstore bundle cannot be read: {0}")]
    MalformedBundle(String),
    /// The trusted root cannot be read or used.
    #[error(
        "the Sigstore trusted root cannot be used: {0} (use the trusted_root.json of the \
         Sigstore instance that made the signatures)"
    )]
    TrustedRoot(String),
    /// A key is not a usable PEM public key.
    #[error("{origin} is not a usable Sigstore public key: {message}")]
    Key {
        /// The key file or other source.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A subject pattern is not a regular expression.
    #[error("subject pattern {pattern:?} is not a valid regular expression: {message}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// A keyed bundle, and the policy trusts no keys.
    #[error(
        "the bundle is signed with a key, and no Sigstore keys are trusted here (trust the \
         signer's PEM public key to accept it)"
    )]
    NoTrustedKeys,
    /// A keyless bundle, and the policy trusts no identities.
    #[error(
        "the bundle is signed keyless by {}, and no Sigstore identities are trusted here \
         (trust an issuer and subject to accept it)",
        claimed(issuer, subject)
    )]
    NoTrustedIdentities {
        /// The certificate's OIDC issuer, if it names one.
        issuer: Option<String>,
        /// The certificate's subject, if it has one.
        subject: Option<String>,
    },
    /// A keyed bundle that none of the trusted keys signed.
    #[error(
        "the bundle was not signed by a trusted key (trusted: {})",
        trusted.join(", ")
    )]
    UntrustedKey {
        /// Fingerprints of the keys tried.
        trusted: Vec<String>,
    },
    /// A verified keyless bundle for an identity the policy does not trust.
    #[error(
        "the bundle was signed by {}, which is not a trusted identity (trusted: {})",
        claimed(issuer, subject),
        trusted.join("; ")
    )]
    UntrustedIdentity {
        /// The certificate's OIDC issuer, if it names one.
        issuer: Option<String>,
        /// The certificate's subject, if it has one.
        subject: Option<String>,
        /// The trusted identities, as written by [`Identity`]'s `Display`.
        trusted: Vec<String>,
    },
    /// A check failed.
    #[error("{check}: {detail}")]
    Refused {
        /// Which check.
        check: Check,
        /// `sigstore-verify`'s account of it.
        detail: String,
    },
}

fn claimed(issuer: &Option<String>, subject: &Option<String>) -> String {
    format!(
        "{} from {}",
        subject
            .as_deref()
            .unwrap_or("a certificate without a subject"),
        issuer.as_deref().unwrap_or("no named issuer")
    )
}

impl Error {
    fn refused(error: sigstore_verify::Error) -> Error {
        use sigstore_verify::Error as E;
        let check = match &error {
            E::SignatureInvalid(_) | E::Crypto(_) => Check::Signature,
            E::ArtifactMismatch(_) | E::UnsupportedArtifact(_) | E::ArtifactRead(_) => {
                Check::Content
            }
            E::Certificate(_) => Check::Certificate,
            E::TransparencyLog(_) => Check::TransparencyLog,
            E::Timestamp(_) => Check::Timestamp,
            E::InvalidTrustRoot(_) | E::TrustRoot(_) | E::TrustedCertificate(_) => {
                Check::TrustedRoot
            }
            _ => Check::Bundle,
        };
        Error::Refused {
            check,
            detail: error.to_string(),
        }
    }

    /// The check that refused the bundle, for errors raised by one.
    pub fn check(&self) -> Option<Check> {
        match self {
            Error::Refused { check, .. } => Some(*check),
            _ => None,
        }
    }
}

/// Verifies a signature made with a key and never logged (cosign's `--tlog-upload=false`)
/// over `message`: any of `policy`'s keys, with the key's default scheme (ECDSA with the
/// curve's hash, RSA PKCS#1 v1.5 with SHA-256, Ed25519), as `cosign verify --key
/// --insecure-ignore-tlog` checks it. No trusted root is involved, and no signing time is
/// known.
pub fn verify_unlogged(message: &[u8], signature: &[u8], policy: &Policy) -> Result<Signer, Error> {
    backend::install();
    if policy.keys.is_empty() {
        return Err(Error::NoTrustedKeys);
    }
    let signature = sigstore_verify::types::SignatureBytes::from_bytes(signature);
    for key in &policy.keys {
        let verifies = sigstore_verify::crypto::VerificationKey::from_spki(&key.key)
            .and_then(|k| k.verify(message, &signature));
        if verifies.is_ok() {
            return Ok(Signer::Key {
                fingerprint: key.fingerprint.clone(),
            });
        }
    }
    Err(Error::UntrustedKey {
        trusted: policy.keys.iter().map(|k| k.fingerprint.clone()).collect(),
    })
}

/// Verifies the Sigstore bundle `bundle_json` over `content` with `root`, and that its
/// signer is one `policy` trusts.
pub fn verify(
    bundle_json: &[u8],
    content: Content<'_>,
    policy: &Policy,
    root: &TrustRoot,
) -> Result<Verified, Error> {
    backend::install();
    let text = std::str::from_utf8(bundle_json)
        .map_err(|_| Error::MalformedBundle("it is not UTF-8 text".to_owned()))?;
    let bundle = Bundle::from_json(text).map_err(|e| Error::MalformedBundle(e.to_string()))?;
    let digest;
    let artifact = match content {
        Content::Bytes(bytes) => sigstore_verify::types::Artifact::Blob(bytes),
        Content::Digest(d) => {
            let algorithm = match d.algorithm() {
                Algorithm::Sha256 => HashAlgorithm::Sha2256,
                Algorithm::Sha512 => HashAlgorithm::Sha2512,
            };
            let bytes = hex::decode(d.hex()).expect("a Digest's hex is valid");
            digest = ArtifactDigest::new(algorithm, bytes).expect("a Digest has the right length");
            sigstore_verify::types::Artifact::Digest(digest)
        }
    };

    let signer =
        if let VerificationMaterialContent::PublicKey(_) = bundle.verification_material.content {
            verify_keyed(&bundle, artifact, policy, root)?
        } else {
            verify_keyless(&bundle, artifact, policy, root)?
        };
    Ok(signer)
}

fn verify_keyed(
    bundle: &Bundle,
    artifact: sigstore_verify::types::Artifact<'_>,
    policy: &Policy,
    root: &TrustRoot,
) -> Result<Verified, Error> {
    if policy.keys.is_empty() {
        return Err(Error::NoTrustedKeys);
    }
    // The bundle's key hint is unauthenticated, so every trusted key is tried. A failure
    // other than a signature mismatch (a log entry, a timestamp) does not depend on the
    // key and is reported as it is.
    let mut refusal = None;
    for key in &policy.keys {
        let key_policy = PublicKeyVerificationPolicy::new(key.key.clone());
        match root.verifier.verify(artifact.clone(), bundle, &key_policy) {
            Ok(result) => {
                let fingerprint = key.fingerprint.clone();
                return Ok(verified(bundle, &result, Signer::Key { fingerprint }, root));
            }
            Err(sigstore_verify::Error::SignatureInvalid(_)) => {}
            Err(other) => {
                refusal.get_or_insert(other);
            }
        }
    }
    Err(match refusal {
        Some(error) => Error::refused(error),
        None => Error::UntrustedKey {
            trusted: policy.keys.iter().map(|k| k.fingerprint.clone()).collect(),
        },
    })
}

fn verify_keyless(
    bundle: &Bundle,
    artifact: sigstore_verify::types::Artifact<'_>,
    policy: &Policy,
    root: &TrustRoot,
) -> Result<Verified, Error> {
    if policy.identities.is_empty() {
        let (issuer, subject) = bundle
            .signing_certificate()
            .and_then(|cert| sigstore_verify::crypto::parse_certificate_info(cert).ok())
            .map_or((None, None), |info| {
                (info.issuer, info.identity.map(|s| s.as_str().to_owned()))
            });
        return Err(Error::NoTrustedIdentities { issuer, subject });
    }
    // Every cryptographic check runs first, then the identity is matched against the
    // policy's list here (sigstore-verify matches one exact identity, not a list or a
    // pattern).
    let result = root
        .verifier
        .verify(artifact, bundle, &VerificationPolicy::any_identity())
        .map_err(Error::refused)?;
    let issuer = result.issuer().map(str::to_owned);
    let subject = result.identity().map(|s| s.as_str().to_owned());
    let trusted = match (&issuer, &subject) {
        (Some(issuer), Some(subject)) => policy
            .identities
            .iter()
            .any(|identity| identity.issuer == *issuer && identity.subject.matches(subject)),
        _ => false,
    };
    match (trusted, issuer, subject) {
        (true, Some(issuer), Some(subject)) => Ok(verified(
            bundle,
            &result,
            Signer::Identity { issuer, subject },
            root,
        )),
        (_, issuer, subject) => Err(Error::UntrustedIdentity {
            issuer,
            subject,
            trusted: policy.identities.iter().map(ToString::to_string).collect(),
        }),
    }
}

fn verified(
    bundle: &Bundle,
    result: &sigstore_verify::VerificationResult,
    signer: Signer,
    root: &TrustRoot,
) -> Verified {
    Verified {
        signer,
        log_index: bundle
            .verification_material
            .tlog_entries
            .first()
            .map(|entry| entry.log_index.get()),
        integrated_time: result.integrated_time().map(SystemTime::from),
        signed_at: result
            .verified_timestamps()
            .iter()
            .min()
            .copied()
            .map(SystemTime::from),
        trusted_root: root.digest.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    // From the Sigstore conformance suite; see tests/sigstore/fixtures/README.md.
    const CONTENT: &[u8] = include_bytes!("../../tests/sigstore/fixtures/a.txt");
    const KEYLESS: &[u8] = include_bytes!("../../tests/sigstore/fixtures/keyless.sigstore.json");
    const KEYLESS_DSSE: &[u8] =
        include_bytes!("../../tests/sigstore/fixtures/keyless-dsse.sigstore.json");
    const KEYED: &[u8] = include_bytes!("../../tests/sigstore/fixtures/keyed.sigstore.json");
    const KEYED_PUB: &[u8] = include_bytes!("../../tests/sigstore/fixtures/keyed.pub");
    const OTHER_PUB: &[u8] = include_bytes!("../../tests/sigstore/fixtures/other.pub");

    const ISSUER: &str = "https://token.actions.githubusercontent.com";
    const SUBJECT: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";

    fn root() -> TrustRoot {
        TrustRoot::public_good().expect("the built-in root loads")
    }

    fn identity(issuer: &str, subject: Subject) -> Policy {
        Policy {
            allow_unlogged: false,
            keys: Vec::new(),
            identities: vec![Identity {
                issuer: issuer.to_owned(),
                subject,
            }],
        }
    }

    fn exact() -> Policy {
        identity(ISSUER, Subject::Exact(SUBJECT.to_owned()))
    }

    fn keys(pems: &[&[u8]]) -> Policy {
        Policy {
            allow_unlogged: false,
            keys: pems
                .iter()
                .map(|pem| TrustedKey::from_pem(pem, "test key").expect("a PEM key"))
                .collect(),
            identities: Vec::new(),
        }
    }

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn keyless_bundle_verifies_for_its_identity() {
        let root = root();
        let verified = verify(KEYLESS, Content::Bytes(CONTENT), &exact(), &root).expect("verifies");
        assert_eq!(
            verified,
            Verified {
                signer: Signer::Identity {
                    issuer: ISSUER.to_owned(),
                    subject: SUBJECT.to_owned(),
                },
                log_index: Some(79_571_823),
                integrated_time: at(1_710_869_186),
                signed_at: at(1_710_869_186),
                trusted_root: Digest::sha256_of(SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes()),
            }
        );
        // The same by digest, and with a subject pattern.
        let digest = Digest::sha256_of(CONTENT);
        let pattern = identity(
            ISSUER,
            Subject::regexp(r"^https://github\.com/sigstore-conformance/").expect("a regexp"),
        );
        verify(KEYLESS, Content::Digest(&digest), &pattern, &root).expect("verifies");
    }

    #[test]
    fn keyless_dsse_bundle_verifies_over_its_subject_digest() {
        let digest = Digest::sha256_of(CONTENT);
        let verified =
            verify(KEYLESS_DSSE, Content::Digest(&digest), &exact(), &root()).expect("verifies");
        assert_eq!(verified.log_index, Some(155_690_850));
        let other = Digest::sha256_of(b"other content");
        let error = verify(KEYLESS_DSSE, Content::Digest(&other), &exact(), &root())
            .expect_err("not its subject");
        assert_eq!(error.check(), Some(Check::Content), "{error}");
    }

    #[test]
    fn keyless_bundle_for_another_subject_is_refused() {
        let policy = identity(
            ISSUER,
            Subject::Exact("https://github.com/acme/app".to_owned()),
        );
        let error =
            verify(KEYLESS, Content::Bytes(CONTENT), &policy, &root()).expect_err("refused");
        assert!(
            matches!(error, Error::UntrustedIdentity { .. }),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains(SUBJECT) && text.contains("https://github.com/acme/app"),
            "{text}"
        );
        // A pattern is searched, so it must match somewhere in the subject.
        let policy = identity(ISSUER, Subject::regexp("^acme$").expect("a regexp"));
        verify(KEYLESS, Content::Bytes(CONTENT), &policy, &root()).expect_err("refused");
    }

    #[test]
    fn keyless_bundle_from_another_issuer_is_refused() {
        let policy = identity(
            "https://accounts.google.com",
            Subject::Exact(SUBJECT.to_owned()),
        );
        let error =
            verify(KEYLESS, Content::Bytes(CONTENT), &policy, &root()).expect_err("refused");
        assert!(
            matches!(error, Error::UntrustedIdentity { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(ISSUER), "{error}");
    }

    #[test]
    fn tampered_content_is_refused() {
        let mut tampered = CONTENT.to_vec();
        tampered[0] ^= 1;
        for bundle in [KEYLESS, KEYED] {
            let policy = if bundle == KEYED {
                keys(&[KEYED_PUB])
            } else {
                exact()
            };
            let error =
                verify(bundle, Content::Bytes(&tampered), &policy, &root()).expect_err("tampered");
            assert_eq!(error.check(), Some(Check::Content), "{error}");
        }
    }

    #[test]
    fn tampered_signature_is_refused() {
        let mut bundle: serde_json::Value = serde_json::from_slice(KEYLESS).expect("JSON");
        let signature = &mut bundle["messageSignature"]["signature"];
        let flipped = signature
            .as_str()
            .expect("a base64 signature")
            .replacen('M', "N", 1);
        *signature = serde_json::Value::String(flipped);
        let json = serde_json::to_vec(&bundle).expect("JSON");
        let error =
            verify(&json, Content::Bytes(CONTENT), &exact(), &root()).expect_err("tampered");
        assert_eq!(error.check(), Some(Check::Signature), "{error}");
    }

    #[test]
    fn keyed_bundle_verifies_with_its_key_among_others() {
        let policy = keys(&[OTHER_PUB, KEYED_PUB]);
        let verified = verify(KEYED, Content::Bytes(CONTENT), &policy, &root()).expect("verifies");
        assert_eq!(
            verified.signer,
            Signer::Key {
                fingerprint: policy.keys[1].fingerprint().to_owned()
            }
        );
        assert!(verified.signer.to_string().starts_with("key sha256:"));
        assert_eq!(verified.log_index, Some(771_488_337));
        assert_eq!(verified.integrated_time, at(1_766_077_479));
    }

    #[test]
    fn keyed_bundle_by_an_untrusted_key_is_refused() {
        let policy = keys(&[OTHER_PUB]);
        let error = verify(KEYED, Content::Bytes(CONTENT), &policy, &root()).expect_err("refused");
        match &error {
            Error::UntrustedKey { trusted } => {
                assert_eq!(trusted, &[policy.keys[0].fingerprint().to_owned()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bundles_of_a_kind_the_policy_does_not_trust_are_refused() {
        let error = verify(KEYED, Content::Bytes(CONTENT), &exact(), &root()).expect_err("keyed");
        assert!(matches!(error, Error::NoTrustedKeys), "{error:?}");
        let error = verify(
            KEYLESS,
            Content::Bytes(CONTENT),
            &keys(&[KEYED_PUB]),
            &root(),
        )
        .expect_err("keyless");
        assert!(
            matches!(error, Error::NoTrustedIdentities { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(SUBJECT), "{error}");
    }

    #[test]
    fn a_root_without_the_signers_authorities_refuses() {
        let empty =
            br#"{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#;
        let root = TrustRoot::from_json(empty).expect("an empty root loads");
        assert_eq!(root.digest(), &Digest::sha256_of(empty));
        let error =
            verify(KEYLESS, Content::Bytes(CONTENT), &exact(), &root).expect_err("no authorities");
        assert_eq!(error.check(), Some(Check::TransparencyLog), "{error}");
    }

    #[test]
    fn malformed_inputs_say_what_is_wrong() {
        let error = verify(b"{", Content::Bytes(CONTENT), &exact(), &root()).expect_err("bad");
        assert!(matches!(error, Error::MalformedBundle(_)), "{error:?}");
        let error = TrustRoot::from_json(b"[]").expect_err("bad root");
        assert!(error.to_string().contains("trusted root"), "{error}");
        let error = TrustedKey::from_pem(b"not a key", "key file k.pub").expect_err("bad key");
        assert!(
            error.to_string().starts_with("key file k.pub is not"),
            "{error}"
        );
        let error = Subject::regexp("(").expect_err("bad pattern");
        assert!(matches!(error, Error::Pattern { .. }), "{error:?}");
    }
}
