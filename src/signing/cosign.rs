//! cosign's OCI conventions: where an image's Sigstore signatures live in a registry, and
//! what one signature layer must say to vouch for one manifest (specs/sigstore.md §1–§2).
//!
//! Two kinds of signature artifact exist, and both are OCI manifests in the image's own
//! repository:
//! - **cosign** (legacy, cosign ≤ 2): a manifest tagged `sha256-<hex>.sig`, one layer per
//!   signature. A layer's blob is the *payload*, a JSON claim naming the signed manifest
//!   digest (`critical.image.docker-manifest-digest`) and repository
//!   (`critical.identity.docker-reference`); its annotations hold the base64 signature over
//!   the payload and, when made keyless or logged, the Fulcio certificate and the Rekor
//!   entry (`dev.sigstore.cosign/bundle`). A logged signature is turned into the Sigstore
//!   bundle it is equivalent to (a v0.1 message signature over the payload) and checked by
//!   [`crate::signing::sigstore`]; an unlogged keyed one is checked against the trusted
//!   keys directly, as `cosign verify --insecure-ignore-tlog` would.
//! - **bundle** (cosign v3): an OCI 1.1 manifest whose `subject` is the signed manifest,
//!   `artifactType` a Sigstore bundle media type, and one layer holding the bundle JSON.
//!   Its signed content is the manifest digest (a DSSE statement's subject, or a message
//!   signature's digest).
//!
//! Invariants: pure functions over bytes already fetched and digest-checked by the caller;
//! a signature is accepted only when the cryptography verifies for a signer the policy
//! trusts *and* the claim names exactly the digest being verified *and* a
//! `docker-reference`, where the signature states one, names the image's repository.
//! Nothing here decides which digests need signatures; the caller does.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::digest::Digest;
use crate::oci::{Descriptor, ImageManifest};
use crate::signing::sigstore::{self, Content, Policy, Signer, TrustRoot};

/// The media type of a cosign payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// What Sigstore bundle media types (artifact types and layers) start with.
pub const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// The artifact type cosign v3 gives the bundles it attaches.
pub const BUNDLE_ARTIFACT_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Annotation: the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Annotation: the PEM Fulcio leaf certificate (keyless).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation: the PEM intermediates and root (keyless; informational, the trusted root decides).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Annotation: the Rekor entry (`SignedEntryTimestamp` and `Payload`).
pub const REKOR_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Annotation: an RFC 3161 timestamp over the signature.
pub const RFC3161_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";
/// The one `critical.type` a cosign payload may have.
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The predicate type of cosign v3's image signatures (an in-toto statement in DSSE); any
/// other predicate is an attestation (an SBOM, a scan, provenance), not a signature.
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The DSSE payload type of an in-toto statement.
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Largest payload or bundle layer read.
pub const MAX_LAYER_BYTES: u64 = 4 * 1024 * 1024;
/// Signature layers (cosign) and referrers (bundles) tried per signed manifest, in all.
pub const MAX_SIGNATURES: usize = 64;
/// Bytes of signature layers read per signed manifest, in all.
pub const MAX_SIGNATURE_BYTES: u64 = 16 * 1024 * 1024;

/// The kinds of signature artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A `sha256-<hex>.sig` manifest of payload layers.
    Cosign,
    /// An OCI 1.1 referrer holding a Sigstore bundle.
    Bundle,
}

impl Kind {
    /// The name the lock and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cosign => "cosign",
            Kind::Bundle => "bundle",
        }
    }
}

/// cosign's tag for the signatures of `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm().as_str(), digest.hex())
}

/// The OCI referrers tag schema's tag for the referrers of `digest`: `sha256-<hex>`.
pub fn referrers_tag(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().as_str(), digest.hex())
}

/// Whether a referrer descriptor (or a manifest's `artifactType`) is a Sigstore bundle.
pub fn is_bundle_type(artifact_type: Option<&str>) -> bool {
    artifact_type.is_some_and(|t| t.starts_with(BUNDLE_MEDIA_TYPE_PREFIX))
}

/// The layers of a signature artifact that hold signatures of `signs`, with their
/// positions in the manifest, in order (a bundle artifact holds one); an artifact of the
/// wrong shape is refused with the reason.
pub fn signature_layers<'m>(
    kind: Kind,
    manifest: &'m ImageManifest,
    signs: &Digest,
) -> Result<Vec<(usize, &'m Descriptor)>, String> {
    let layers: Vec<(usize, &Descriptor)> = match kind {
        Kind::Cosign => manifest
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.media_type == PAYLOAD_MEDIA_TYPE
                    && l.annotations.contains_key(SIGNATURE_ANNOTATION)
            })
            .collect(),
        Kind::Bundle => {
            let artifact_type = manifest
                .artifact_type
                .as_deref()
                .or(Some(manifest.config.media_type.as_str()));
            if !is_bundle_type(artifact_type) {
                return Err(format!(
                    "its artifact type is `{}`, not a Sigstore bundle",
                    artifact_type.unwrap_or_default()
                ));
            }
            match &manifest.subject {
                Some(subject) if &subject.digest == signs => {}
                Some(subject) => {
                    return Err(format!(
                        "it refers to manifest {}, not {signs}",
                        subject.digest
                    ));
                }
                None => return Err("it names no subject manifest".to_owned()),
            }
            manifest
                .layers
                .iter()
                .enumerate()
                .filter(|(_, l)| l.media_type.starts_with(BUNDLE_MEDIA_TYPE_PREFIX))
                .take(1)
                .collect()
        }
    };
    if layers.is_empty() {
        return Err(match kind {
            Kind::Cosign => format!("it has no `{PAYLOAD_MEDIA_TYPE}` layer with a signature"),
            Kind::Bundle => "it has no Sigstore bundle layer".to_owned(),
        });
    }
    Ok(layers.into_iter().take(MAX_SIGNATURES).collect())
}

/// What an accepted signature proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Who signed.
    pub signer: Signer,
    /// The transparency-log index, when logged.
    pub log_index: Option<u64>,
    /// The log's integrated time, seconds since the epoch, when logged in Rekor v1.
    pub integrated_time: Option<i64>,
    /// The digest of the trusted root used; `None` for an unlogged keyed signature,
    /// which needs none.
    pub trusted_root: Option<Digest>,
    /// The `docker-reference` the signature claims, when it states one.
    pub docker_reference: Option<String>,
}

/// Checks one signature layer (`layer`, whose blob is `bytes`) of a `kind` artifact as a
/// signature of manifest `signs` of repository `repository` (e.g. `ghcr.io/acme/app`).
pub fn check_layer(
    kind: Kind,
    layer: &Descriptor,
    bytes: &[u8],
    signs: &Digest,
    repository: &str,
    policy: &Policy,
    root: &TrustRoot,
) -> Result<Accepted, String> {
    match kind {
        Kind::Cosign => check_cosign(layer, bytes, signs, repository, policy, root),
        Kind::Bundle => check_bundle(bytes, signs, repository, policy, root),
    }
}

fn check_cosign(
    layer: &Descriptor,
    payload: &[u8],
    signs: &Digest,
    repository: &str,
    policy: &Policy,
    root: &TrustRoot,
) -> Result<Accepted, String> {
    let annotations = &layer.annotations;
    let signature = annotations
        .get(SIGNATURE_ANNOTATION)
        .ok_or("the layer has no signature annotation")?;
    let signature_bytes = BASE64
        .decode(signature.trim())
        .map_err(|e| format!("its signature annotation is not base64: {e}"))?;
    let accepted = match annotations.get(REKOR_ANNOTATION) {
        Some(rekor) => {
            let bundle = legacy_bundle(annotations, rekor, signature, payload)?;
            let verified = sigstore::verify(&bundle, Content::Bytes(payload), policy, root)
                .map_err(|e| e.to_string().replacen("the bundle", "the signature", 1))?;
            Accepted {
                signer: verified.signer,
                log_index: verified.log_index,
                integrated_time: verified.integrated_time.map(epoch_seconds),
                trusted_root: Some(verified.trusted_root),
                docker_reference: None,
            }
        }
        None if annotations.contains_key(CERTIFICATE_ANNOTATION) => {
            return Err(
                "it is a keyless signature without a transparency-log entry, which cannot show \
                 when it was made (the certificate lives minutes): it is not accepted"
                    .to_owned(),
            );
        }
        None if !policy.allow_unlogged => {
            return Err(
                "it has no transparency-log entry (no `dev.sigstore.cosign/bundle` annotation), \
                 and keyed signatures are accepted without one only where the [trust] table \
                 says `insecure-ignore-tlog = true` (as `cosign verify --insecure-ignore-tlog`)"
                    .to_owned(),
            );
        }
        None => Accepted {
            signer: sigstore::verify_unlogged(payload, &signature_bytes, policy)
                .map_err(|e| e.to_string())?,
            log_index: None,
            integrated_time: None,
            trusted_root: None,
            docker_reference: None,
        },
    };
    let claim = parse_payload(payload)?;
    if &claim.digest != signs {
        return Err(format!(
            "its payload is a signature of manifest {}, not {signs}",
            claim.digest
        ));
    }
    check_reference(claim.reference.as_deref(), repository)?;
    Ok(Accepted {
        docker_reference: claim.reference,
        ..accepted
    })
}

fn check_bundle(
    bundle: &[u8],
    signs: &Digest,
    repository: &str,
    policy: &Policy,
    root: &TrustRoot,
) -> Result<Accepted, String> {
    let reference = check_statement(bundle)?;
    let verified = sigstore::verify(bundle, Content::Digest(signs), policy, root)
        .map_err(|e| e.to_string())?;
    check_reference(reference.as_deref(), repository)?;
    Ok(Accepted {
        signer: verified.signer,
        log_index: verified.log_index,
        integrated_time: verified.integrated_time.map(epoch_seconds),
        trusted_root: Some(verified.trusted_root),
        docker_reference: reference,
    })
}

fn epoch_seconds(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A cosign payload's claim.
#[derive(Debug)]
struct Claim {
    digest: Digest,
    reference: Option<String>,
}

/// Parses a cosign payload (`critical.type`, `critical.image.docker-manifest-digest`,
/// `critical.identity.docker-reference`); `optional` is free-form and ignored.
fn parse_payload(payload: &[u8]) -> Result<Claim, String> {
    #[derive(Deserialize)]
    struct Payload {
        critical: Critical,
    }
    #[derive(Deserialize)]
    struct Critical {
        identity: Identity,
        image: Image,
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct Identity {
        #[serde(rename = "docker-reference", default)]
        docker_reference: Option<String>,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        docker_manifest_digest: String,
    }
    let parsed: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("its payload is not a cosign signature payload: {e}"))?;
    if parsed.critical.kind != PAYLOAD_TYPE {
        return Err(format!(
            "its payload has critical.type `{}`, not `{PAYLOAD_TYPE}`",
            parsed.critical.kind.escape_debug()
        ));
    }
    let digest = parsed
        .critical
        .image
        .docker_manifest_digest
        .parse()
        .map_err(|e| format!("its payload's docker-manifest-digest is invalid: {e}"))?;
    Ok(Claim {
        digest,
        reference: parsed
            .critical
            .identity
            .docker_reference
            .filter(|r| !r.is_empty()),
    })
}

/// A DSSE bundle must hold an in-toto statement of cosign's signature predicate: a
/// trusted signer's SBOM, vulnerability scan or provenance attestation for the same digest
/// is a statement *about* the image, not a signature *of* it. Returns the predicate's
/// `docker-reference`, if it carries cosign's claim with one. A message-signature bundle
/// signs the manifest digest itself and has no statement.
fn check_statement(bundle: &[u8]) -> Result<Option<String>, String> {
    let value: serde_json::Value = serde_json::from_slice(bundle)
        .map_err(|e| format!("the Sigstore bundle cannot be read: {e}"))?;
    let Some(envelope) = value.get("dsseEnvelope") else {
        return Ok(None);
    };
    let payload_type = envelope.get("payloadType").and_then(|t| t.as_str());
    if payload_type != Some(IN_TOTO_PAYLOAD_TYPE) {
        return Err(format!(
            "its DSSE envelope holds `{}`, not an in-toto statement",
            payload_type.unwrap_or_default().escape_debug()
        ));
    }
    let statement: serde_json::Value = envelope
        .get("payload")
        .and_then(|p| p.as_str())
        .and_then(|p| BASE64.decode(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("its DSSE envelope's payload is not a JSON in-toto statement")?;
    let predicate_type = statement
        .get("predicateType")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    if predicate_type != SIGN_PREDICATE_TYPE {
        return Err(format!(
            "it is an attestation of type `{}`, not a signature (predicate type `{SIGN_PREDICATE_TYPE}`)",
            predicate_type.escape_debug()
        ));
    }
    Ok(statement
        .pointer("/predicate/critical/identity/docker-reference")
        .and_then(|r| r.as_str())
        .filter(|r| !r.is_empty())
        .map(str::to_owned))
}

/// A signature's `docker-reference`, where stated, must name the image's repository (a
/// tag or digest in it is ignored, as cosign signs the repository).
fn check_reference(claimed: Option<&str>, repository: &str) -> Result<(), String> {
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let named = crate::oci::reference::Reference::parse(claimed)
        .map(|r| r.repository())
        .map_err(|e| {
            format!(
                "its docker-reference `{}` is not an image reference: {e}",
                claimed.escape_debug()
            )
        })?;
    if named != repository {
        return Err(format!(
            "it is a signature for {}, not for {repository}",
            claimed.escape_debug()
        ));
    }
    Ok(())
}

/// The Sigstore bundle (v0.1, message signature over the payload) that a logged cosign
/// signature layer is equivalent to: the same signature, certificate or key, Rekor entry
/// and timestamp, rearranged. Every value comes from the layer; nothing is invented.
fn legacy_bundle(
    annotations: &BTreeMap<String, String>,
    rekor: &str,
    signature: &str,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RekorBundle {
        signed_entry_timestamp: String,
        payload: RekorPayload,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RekorPayload {
        body: String,
        integrated_time: i64,
        log_index: i64,
        #[serde(rename = "logID")]
        log_id: String,
    }
    #[derive(Deserialize)]
    struct Body {
        kind: String,
        #[serde(rename = "apiVersion")]
        api_version: String,
    }
    let rekor: RekorBundle = serde_json::from_str(rekor)
        .map_err(|e| format!("its Rekor bundle annotation is malformed: {e}"))?;
    let body_json = BASE64
        .decode(&rekor.payload.body)
        .map_err(|e| format!("its Rekor entry body is not base64: {e}"))?;
    let body: Body = serde_json::from_slice(&body_json)
        .map_err(|e| format!("its Rekor entry body is malformed: {e}"))?;
    let log_id = hex::decode(&rekor.payload.log_id)
        .map_err(|e| format!("its Rekor log ID is not hex: {e}"))?;
    let material = match annotations.get(CERTIFICATE_ANNOTATION) {
        Some(pem) => {
            let der = pem_certificate(pem)?;
            serde_json::json!({"x509CertificateChain": {"certificates": [{"rawBytes": BASE64.encode(der)}]}})
        }
        None => serde_json::json!({"publicKey": {"hint": ""}}),
    };
    let mut material = material
        .as_object()
        .cloned()
        .expect("a JSON object literal");
    material.insert(
        "tlogEntries".to_owned(),
        serde_json::json!([{
            "logIndex": rekor.payload.log_index.to_string(),
            "logId": {"keyId": BASE64.encode(log_id)},
            "kindVersion": {"kind": body.kind, "version": body.api_version},
            "integratedTime": rekor.payload.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": rekor.signed_entry_timestamp},
            "canonicalizedBody": rekor.payload.body,
        }]),
    );
    if let Some(timestamp) = annotations.get(RFC3161_ANNOTATION) {
        #[derive(Deserialize)]
        struct Rfc3161 {
            #[serde(rename = "SignedRFC3161Timestamp")]
            signed: String,
        }
        let parsed: Rfc3161 = serde_json::from_str(timestamp)
            .map_err(|e| format!("its RFC 3161 timestamp annotation is malformed: {e}"))?;
        material.insert(
            "timestampVerificationData".to_owned(),
            serde_json::json!({"rfc3161Timestamps": [{"signedTimestamp": parsed.signed}]}),
        );
    }
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": BASE64.encode(hex::decode(Digest::sha256_of(payload).hex()).expect("a digest's hex is valid")),
            },
            "signature": signature.trim(),
        },
    });
    Ok(serde_json::to_vec(&bundle).expect("a JSON value serialises"))
}

/// The DER bytes of the one certificate in a PEM text.
pub(crate) fn pem_certificate(pem: &str) -> Result<Vec<u8>, String> {
    sigstore_verify::types::DerCertificate::from_pem(pem.trim())
        .map(|der| der.as_bytes().to_vec())
        .map_err(|e| format!("its certificate annotation is not a PEM certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[test]
    fn tags_follow_cosign_and_the_referrers_tag_schema() {
        let d: Digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            .parse()
            .expect("valid");
        assert_eq!(
            signature_tag(&d),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
        assert_eq!(
            referrers_tag(&d),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn payloads_are_read_strictly_enough() {
        let d = digest(1);
        let good = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"ghcr.io/acme/app"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        let claim = parse_payload(good.as_bytes()).expect("a cosign payload");
        assert_eq!(claim.digest, d);
        assert_eq!(claim.reference.as_deref(), Some("ghcr.io/acme/app"));
        let other = good.replace(
            "cosign container image signature",
            "atomic container signature",
        );
        assert!(
            parse_payload(other.as_bytes())
                .unwrap_err()
                .contains("critical.type")
        );
        assert!(parse_payload(b"{}").is_err());
    }

    #[test]
    fn a_stated_reference_must_name_the_repository() {
        assert!(check_reference(None, "ghcr.io/acme/app").is_ok());
        assert!(check_reference(Some("ghcr.io/acme/app"), "ghcr.io/acme/app").is_ok());
        assert!(check_reference(Some("ghcr.io/acme/app:v1"), "ghcr.io/acme/app").is_ok());
        let err = check_reference(Some("ghcr.io/evil/app"), "ghcr.io/acme/app").unwrap_err();
        assert!(err.contains("not for ghcr.io/acme/app"), "{err}");
    }

    #[test]
    fn a_bundle_referrer_must_refer_to_the_signed_manifest() {
        let layer = Descriptor {
            media_type: "application/vnd.dev.sigstore.bundle.v0.3+json".to_owned(),
            digest: digest(9),
            size: 10,
            platform: None,
            annotations: BTreeMap::new(),
            urls: Vec::new(),
            artifact_type: None,
        };
        let subject = Descriptor {
            media_type: crate::oci::OCI_MANIFEST.to_owned(),
            digest: digest(1),
            ..layer.clone()
        };
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(crate::oci::OCI_MANIFEST.to_owned()),
            config: Descriptor {
                media_type: "application/vnd.oci.empty.v1+json".to_owned(),
                ..layer.clone()
            },
            layers: vec![layer],
            artifact_type: Some(BUNDLE_ARTIFACT_TYPE.to_owned()),
            subject: Some(subject),
            annotations: BTreeMap::new(),
        };
        assert_eq!(
            signature_layers(Kind::Bundle, &manifest, &digest(1))
                .expect("a bundle referrer")
                .len(),
            1
        );
        let err = signature_layers(Kind::Bundle, &manifest, &digest(2)).unwrap_err();
        assert!(err.contains("refers to manifest"), "{err}");
        assert!(signature_layers(Kind::Cosign, &manifest, &digest(1)).is_err());
    }

    #[test]
    fn only_cosign_sign_statements_are_signatures() {
        let bundle = |payload_type: &str, statement: serde_json::Value| {
            serde_json::json!({"dsseEnvelope": {
                "payloadType": payload_type,
                "payload": BASE64.encode(statement.to_string()),
                "signatures": [],
            }})
            .to_string()
        };
        let sign = serde_json::json!({"predicateType": SIGN_PREDICATE_TYPE, "predicate": {}});
        assert_eq!(
            check_statement(bundle(IN_TOTO_PAYLOAD_TYPE, sign.clone()).as_bytes()),
            Ok(None)
        );
        let scan =
            serde_json::json!({"predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1"});
        let err = check_statement(bundle(IN_TOTO_PAYLOAD_TYPE, scan).as_bytes()).unwrap_err();
        assert!(err.contains("is an attestation of type"), "{err}");
        let err = check_statement(bundle("text/plain", sign).as_bytes()).unwrap_err();
        assert!(err.contains("not an in-toto statement"), "{err}");
        assert_eq!(check_statement(b"{\"messageSignature\": {}}"), Ok(None));
    }
}
