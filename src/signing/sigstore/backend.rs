//! The cryptographic backend `sigstore-verify` calls through, installed as
//! `sigstore-crypto`'s process-wide provider: `ring` (already linked for TLS) checks
//! signatures over whole messages — certificate chains, SCTs, signed entry timestamps,
//! checkpoints, DSSE envelopes —, and the RustCrypto crates pgp already builds (`p256`,
//! `p384`, `rsa`, `sha2`) check signatures over digests (a message signature is always
//! verified from the content's digest) and hash.
//!
//! Why not the crates' default (`aws-lc-rs`): it compiles the AWS-LC C library (minutes
//! of build time here, megabytes of binary) to do what these already do. Why not
//! RustCrypto alone: its P-384 and P-256 arithmetic made one keyless verification about
//! 3 ms here; `ring` has no digest-input API, so each library does what it can. This file
//! is glue, not cryptography: it maps each [`SigningScheme`] to a verifier and passes keys
//! and signatures in the encodings `sigstore-crypto` hands over (see
//! [`CryptoProvider::verify_raw`]), which are the ones `ring` takes.
//!
//! Invariants: verification only — key generation and signing keep the trait's refusing
//! defaults; RSA keys must be 2048–8192 bits, as with AWS-LC; ML-DSA is refused (no
//! Sigstore instance issues it yet). ECDSA signatures are DER, as in X.509, Rekor and
//! bundles.

use std::sync::Once;

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use rsa::pkcs1::der::Decode as _;
use sha2::Digest as _;
use sigstore_verify::crypto::{CryptoProvider, Error, HashContext, Result, SigningScheme};
use sigstore_verify::types::HashAlgorithm;

/// Smallest and largest RSA modulus accepted, in bits (AWS-LC's `RSA_*_2048_8192_*`).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

static PROVIDER: Provider = Provider;
static INSTALL: Once = Once::new();

/// Makes [`Provider`] the one `sigstore-verify` uses. Idempotent; call before
/// anything that verifies or parses keys.
pub(super) fn install() {
    INSTALL.call_once(|| {
        // Err means a provider was installed already; nothing else in the process does,
        // and if something did, its checks are the ones that run.
        let _ = sigstore_verify::crypto::install_default_provider(&PROVIDER);
    });
}

/// `sigstore-crypto`'s provider over `ring` and the RustCrypto crates.
#[derive(Debug)]
struct Provider;

/// An incremental SHA-2 hash.
struct Sha2<D>(D);

impl<D: sha2::Digest + Send> HashContext for Sha2<D> {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self: Box<Self>) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

fn unsupported(what: String) -> Error {
    Error::UnsupportedAlgorithm(format!("{what} are not supported by imagelock"))
}

fn invalid(scheme: SigningScheme) -> Error {
    Error::Verification(format!("{} signature invalid", scheme.name()))
}

fn bad_key(scheme: SigningScheme, why: impl std::fmt::Display) -> Error {
    Error::InvalidKey(format!("not a {} public key: {why}", scheme.name()))
}

/// An RSA public key from PKCS#1 `RSAPublicKey` DER, within [`RSA_BITS`].
fn rsa_key(scheme: SigningScheme, der: &[u8]) -> Result<rsa::RsaPublicKey> {
    let parsed = rsa::pkcs1::RsaPublicKey::from_der(der).map_err(|e| bad_key(scheme, e))?;
    let n = rsa::BigUint::from_bytes_be(parsed.modulus.as_bytes());
    let e = rsa::BigUint::from_bytes_be(parsed.public_exponent.as_bytes());
    if !RSA_BITS.contains(&n.bits()) {
        return Err(bad_key(
            scheme,
            format!(
                "a {}-bit modulus (2048 to 8192 bits are accepted)",
                n.bits()
            ),
        ));
    }
    rsa::RsaPublicKey::new_with_max_size(n, e, *RSA_BITS.end()).map_err(|e| bad_key(scheme, e))
}

impl CryptoProvider for Provider {
    fn hash(&self, algorithm: HashAlgorithm) -> Result<Box<dyn HashContext>> {
        Ok(match algorithm {
            HashAlgorithm::Sha2256 => Box::new(Sha2(sha2::Sha256::new())),
            HashAlgorithm::Sha2384 => Box::new(Sha2(sha2::Sha384::new())),
            HashAlgorithm::Sha2512 => Box::new(Sha2(sha2::Sha512::new())),
            other => return Err(unsupported(format!("{other} digests"))),
        })
    }

    fn verify_raw(
        &self,
        scheme: SigningScheme,
        spki_pubkey_bytes: &[u8],
        data: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        use SigningScheme as S;
        use ring::signature as r;
        let algorithm: &dyn r::VerificationAlgorithm = match scheme {
            S::EcdsaP256Sha256 => &r::ECDSA_P256_SHA256_ASN1,
            S::EcdsaP256Sha384 => &r::ECDSA_P256_SHA384_ASN1,
            S::EcdsaP384Sha256 => &r::ECDSA_P384_SHA256_ASN1,
            S::EcdsaP384Sha384 => &r::ECDSA_P384_SHA384_ASN1,
            S::Ed25519 => &r::ED25519,
            S::RsaPkcs1Sha256 => &r::RSA_PKCS1_2048_8192_SHA256,
            S::RsaPkcs1Sha384 => &r::RSA_PKCS1_2048_8192_SHA384,
            S::RsaPkcs1Sha512 => &r::RSA_PKCS1_2048_8192_SHA512,
            S::RsaPssSha256 => &r::RSA_PSS_2048_8192_SHA256,
            S::RsaPssSha384 => &r::RSA_PSS_2048_8192_SHA384,
            S::RsaPssSha512 => &r::RSA_PSS_2048_8192_SHA512,
            other => return Err(unsupported(format!("{} signatures", other.name()))),
        };
        r::UnparsedPublicKey::new(algorithm, spki_pubkey_bytes)
            .verify(data, signature)
            .map_err(|_| invalid(scheme))
    }

    fn verify_prehashed(
        &self,
        scheme: SigningScheme,
        spki_pubkey_bytes: &[u8],
        digest: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        use SigningScheme as S;
        match scheme {
            S::EcdsaP256Sha256 | S::EcdsaP256Sha384 => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki_pubkey_bytes)
                    .map_err(|e| bad_key(scheme, e))?;
                let signature =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| invalid(scheme))?;
                key.verify_prehash(digest, &signature)
                    .map_err(|_| invalid(scheme))
            }
            S::EcdsaP384Sha256 | S::EcdsaP384Sha384 => {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(spki_pubkey_bytes)
                    .map_err(|e| bad_key(scheme, e))?;
                let signature =
                    p384::ecdsa::Signature::from_der(signature).map_err(|_| invalid(scheme))?;
                key.verify_prehash(digest, &signature)
                    .map_err(|_| invalid(scheme))
            }
            S::RsaPkcs1Sha256 | S::RsaPkcs1Sha384 | S::RsaPkcs1Sha512 => {
                let padding = match scheme {
                    S::RsaPkcs1Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    S::RsaPkcs1Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    _ => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                rsa_key(scheme, spki_pubkey_bytes)?
                    .verify(padding, digest, signature)
                    .map_err(|_| invalid(scheme))
            }
            S::RsaPssSha256 | S::RsaPssSha384 | S::RsaPssSha512 => {
                // The salt is as long as the digest, as Sigstore clients and AWS-LC expect.
                let padding = match scheme {
                    S::RsaPssSha256 => rsa::Pss::new::<sha2::Sha256>(),
                    S::RsaPssSha384 => rsa::Pss::new::<sha2::Sha384>(),
                    _ => rsa::Pss::new::<sha2::Sha512>(),
                };
                rsa_key(scheme, spki_pubkey_bytes)?
                    .verify(padding, digest, signature)
                    .map_err(|_| invalid(scheme))
            }
            other => Err(unsupported(format!(
                "prehashed {} signatures",
                other.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;

    /// A signature by RustCrypto verifies through both paths (`ring` over the message,
    /// Provider over its digest), and not over other data.
    #[test]
    fn ecdsa_verifies_raw_and_prehashed_and_refuses_other_data() {
        let provider = Provider;
        let secret = p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("a valid scalar");
        let public = secret.verifying_key().to_encoded_point(false);
        let signature: p256::ecdsa::Signature = secret.sign(b"payload");
        let (key, der) = (public.as_bytes(), signature.to_der());
        let scheme = SigningScheme::EcdsaP256Sha256;
        provider
            .verify_raw(scheme, key, b"payload", der.as_bytes())
            .expect("verifies");
        let digest = sha2::Sha256::digest(b"payload");
        provider
            .verify_prehashed(scheme, key, &digest, der.as_bytes())
            .expect("verifies prehashed");
        assert!(
            provider
                .verify_raw(scheme, key, b"other", der.as_bytes())
                .is_err()
        );

        let secret = p384::ecdsa::SigningKey::from_slice(&[7; 48]).expect("a valid scalar");
        let public = secret.verifying_key().to_encoded_point(false);
        let signature: p384::ecdsa::Signature = secret.sign(b"payload");
        let scheme = SigningScheme::EcdsaP384Sha384;
        let digest = sha2::Sha384::digest(b"payload");
        let der = signature.to_der();
        provider
            .verify_raw(scheme, public.as_bytes(), b"payload", der.as_bytes())
            .expect("verifies");
        provider
            .verify_prehashed(scheme, public.as_bytes(), &digest, der.as_bytes())
            .expect("verifies prehashed");
    }

    #[test]
    fn ed25519_verifies_whole_messages_only() {
        use ring::signature::KeyPair as _;
        let pair =
            ring::signature::Ed25519KeyPair::from_seed_unchecked(&[9; 32]).expect("a valid seed");
        let signature = pair.sign(b"payload");
        let key = pair.public_key().as_ref();
        let scheme = SigningScheme::Ed25519;
        Provider
            .verify_raw(scheme, key, b"payload", signature.as_ref())
            .expect("verifies");
        assert!(
            Provider
                .verify_raw(scheme, key, b"other", signature.as_ref())
                .is_err()
        );
        assert!(
            Provider
                .verify_prehashed(scheme, key, &[0; 32], signature.as_ref())
                .is_err()
        );
    }

    #[test]
    fn short_rsa_keys_and_ml_dsa_are_refused() {
        // RSAPublicKey { modulus 0x00ff (8 bits), exponent 3 }.
        let tiny = [0x30, 0x07, 0x02, 0x02, 0x00, 0xff, 0x02, 0x01, 0x03];
        let error = Provider
            .verify_prehashed(SigningScheme::RsaPkcs1Sha256, &tiny, &[0; 32], &[0; 1])
            .expect_err("an 8-bit modulus");
        assert!(error.to_string().contains("8-bit modulus"), "{error}");
        assert!(
            Provider
                .verify_raw(SigningScheme::RsaPkcs1Sha256, &tiny, b"x", &[0; 1])
                .is_err()
        );
        assert!(
            Provider
                .verify_raw(SigningScheme::MlDsa65, &[], b"x", &[])
                .is_err()
        );
    }
}
