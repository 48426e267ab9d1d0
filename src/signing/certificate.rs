//! The signing certificate of a pinned Sigstore signature, read for people (`inspect`):
//! its OIDC issuer (Fulcio's extension 1.3.6.1.4.1.57264.1.8, or the legacy .1.1), its
//! subject (the SAN: an e-mail address or a URI) and its validity.
//!
//! Where the certificate is: for a cosign signature, PEM in the `dev.sigstore.cosign/certificate`
//! annotation of the signature's layer in the artifact manifest; for a bundle, the bundle
//! JSON's `verificationMaterial.certificate.rawBytes` (v0.3) or the first of
//! `verificationMaterial.x509CertificateChain.certificates` (v0.1, v0.2).
//!
//! Invariant: reading only. Pure functions over bytes the caller read and digest-checked;
//! nothing here verifies anything — `verify` and [`crate::signing::sigstore`] do, and a
//! certificate shown here is one the lock's checks accepted only if they ran.

use serde::Serialize;
use sigstore_verify::crypto::parse_certificate_info;
use sigstore_verify::types::{Bundle, DerCertificate};

use crate::digest::Digest;
use crate::oci::ImageManifest;
use crate::signing::cosign;

/// What a signing certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateDetails {
    /// The OIDC issuer that vouched for the subject, when the certificate names one.
    pub issuer: Option<String>,
    /// The subject: the first e-mail address or URI of the SAN.
    pub subject: Option<String>,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
}

/// The details of a DER certificate.
pub fn from_der(der: &[u8]) -> Result<CertificateDetails, String> {
    let info = parse_certificate_info(&DerCertificate::new(der.to_vec()))
        .map_err(|e| format!("the certificate cannot be read: {e}"))?;
    Ok(CertificateDetails {
        issuer: info.issuer,
        subject: info.identity.map(|san| san.as_str().to_owned()),
        not_before: info.not_before.as_second(),
        not_after: info.not_after.as_second(),
    })
}

/// The certificate of the cosign signature in layer `index` (digest `layer`) of the
/// artifact manifest `manifest` (its JSON bytes); `None` when the layer carries none
/// (a keyed signature). By index: cosign's layers may share a digest (equal payloads)
/// and differ in their certificates.
pub fn of_cosign_layer(
    manifest: &[u8],
    index: usize,
    layer: &Digest,
) -> Result<Option<CertificateDetails>, String> {
    let manifest: ImageManifest = serde_json::from_slice(manifest)
        .map_err(|e| format!("the signature manifest is not an OCI manifest: {e}"))?;
    let Some(descriptor) = manifest.layers.get(index).filter(|l| &l.digest == layer) else {
        return Err(format!(
            "the signature manifest has no layer {layer} at index {index}"
        ));
    };
    let Some(pem) = descriptor.annotations.get(cosign::CERTIFICATE_ANNOTATION) else {
        return Ok(None);
    };
    from_der(&cosign::pem_certificate(pem)?).map(Some)
}

/// The signing certificate of a Sigstore bundle (its JSON bytes); `None` for a bundle
/// signed with a key.
pub fn of_bundle(bundle: &[u8]) -> Result<Option<CertificateDetails>, String> {
    let text = std::str::from_utf8(bundle).map_err(|_| "the bundle is not UTF-8".to_owned())?;
    let bundle = Bundle::from_json(text).map_err(|e| format!("the bundle cannot be read: {e}"))?;
    match bundle.signing_certificate() {
        Some(der) => from_der(der.as_bytes()).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conformance suite's beacon identity, which signed the keyless fixtures.
    const BEACON: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
    const GITHUB: &str = "https://token.actions.githubusercontent.com";

    fn beacon_certificate(bundle: &[u8]) -> CertificateDetails {
        let details = of_bundle(bundle)
            .expect("a readable bundle")
            .expect("a keyless bundle");
        assert_eq!(details.issuer.as_deref(), Some(GITHUB));
        assert_eq!(details.subject.as_deref(), Some(BEACON));
        // Fulcio certificates live ten minutes.
        assert_eq!(details.not_after - details.not_before, 600);
        details
    }

    #[test]
    fn bundles_give_their_certificate_single_or_first_of_the_chain() {
        beacon_certificate(include_bytes!(
            "../../tests/sigstore/fixtures/keyless.sigstore.json"
        ));
        beacon_certificate(include_bytes!(
            "../../tests/sigstore/fixtures/keyless-v0.1.sigstore.json"
        ));
        assert_eq!(
            of_bundle(include_bytes!(
                "../../tests/sigstore/fixtures/keyed.sigstore.json"
            )),
            Ok(None)
        );
        assert!(
            of_bundle(b"{\"mediaType\": 1}")
                .expect_err("not a bundle")
                .contains("cannot be read")
        );
    }

    #[test]
    fn cosign_layers_give_their_certificate_annotation() {
        let bundle: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../tests/sigstore/fixtures/keyless.sigstore.json"
        ))
        .expect("JSON");
        let raw = bundle["verificationMaterial"]["certificate"]["rawBytes"]
            .as_str()
            .expect("a v0.3 certificate");
        let pem = format!("-----BEGIN CERTIFICATE-----\n{raw}\n-----END CERTIFICATE-----\n");
        let signed = Digest::sha256_of(b"payload");
        let keyed = Digest::sha256_of(b"keyed payload");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": Digest::sha256_of(b"{}").to_string(),
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": cosign::PAYLOAD_MEDIA_TYPE,
                    "digest": signed.to_string(),
                    "size": 7,
                    "annotations": {
                        cosign::SIGNATURE_ANNOTATION: "c2ln",
                        cosign::CERTIFICATE_ANNOTATION: pem,
                    },
                },
                {
                    "mediaType": cosign::PAYLOAD_MEDIA_TYPE,
                    "digest": keyed.to_string(),
                    "size": 13,
                    "annotations": { cosign::SIGNATURE_ANNOTATION: "c2ln" },
                },
            ],
        })
        .to_string();
        let details = of_cosign_layer(manifest.as_bytes(), 0, &signed)
            .expect("readable")
            .expect("a certificate");
        assert_eq!(details.subject.as_deref(), Some(BEACON));
        assert_eq!(of_cosign_layer(manifest.as_bytes(), 1, &keyed), Ok(None));
        for (index, digest) in [(0, Digest::sha256_of(b"other")), (1, signed.clone())] {
            assert!(
                of_cosign_layer(manifest.as_bytes(), index, &digest)
                    .expect_err("no such layer at that index")
                    .contains("has no layer")
            );
        }
        let broken = manifest.replace("-----BEGIN CERTIFICATE-----", "garbage");
        assert!(
            of_cosign_layer(broken.as_bytes(), 0, &signed)
                .expect_err("not PEM")
                .contains("not a PEM certificate")
        );
    }
}
