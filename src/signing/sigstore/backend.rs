//! The cryptographic backend `sigstore-verify` calls through: hashing and signature checks
//! done by the RustCrypto crates imagelock already builds for OpenPGP (`sha2`, `p256`,
//! `p384`, `rsa`, `ed25519-dalek`), installed as `sigstore-crypto`'s process-wide
//! provider.
//!
//! Why not the crates' default (`aws-lc-rs`): it compiles the AWS-LC C library (a
//! C toolchain, minutes of build time on this machine, megabytes of binary) to do
//! what these crates already do here. This file is glue, not cryptography: it maps
//! each [`SigningScheme`] to a RustCrypto verifier and decodes keys and signatures in
//! the encodings `sigstore-crypto` hands over (see [`CryptoProvider::verify_raw`]).
//!
//! Invariants: verification only — key generation and signing keep the trait's
//! refusing defaults; RSA keys must be 2048–8192 bits, as in the default backend;
//! ML-DSA is refused (no Sigstore instance issues it yet). ECDSA signatures are DER,
//! as in X.509, Rekor and bundles.

use std::sync::Once;

use ed25519_dalek::Verifier as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use rsa::pkcs1::der::Decode as _;
use sha2::Digest as _;
use sigstore_verify::crypto::{CryptoProvider, Error, HashContext, Result, SigningScheme};
use sigstore_verify::types::HashAlgorithm;

/// Smallest and largest RSA modulus accepted, in bits (AWS-LC's `RSA_*_2048_8192_*`).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

static PROVIDER: RustCrypto = RustCrypto;
static INSTALL: Once = Once::new();

/// Makes [`RustCrypto`] the provider `sigstore-verify` uses. Idempotent; call before
/// anything that verifies or parses keys.
pub(super) fn install() {
    INSTALL.call_once(|| {
        // Err means a provider was installed already; nothing else in the process does,
        // and if something did, its checks are the ones that run.
        let _ = sigstore_verify::crypto::install_default_provider(&PROVIDER);
    });
}

/// `sigstore-crypto`'s provider over the RustCrypto crates.
#[derive(Debug)]
struct RustCrypto;

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

fn digest_of(algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>> {
    Ok(match algorithm {
        HashAlgorithm::Sha2256 => sha2::Sha256::digest(data).to_vec(),
        HashAlgorithm::Sha2384 => sha2::Sha384::digest(data).to_vec(),
        HashAlgorithm::Sha2512 => sha2::Sha512::digest(data).to_vec(),
        other => return Err(unsupported(format!("{other} digests"))),
    })
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

impl CryptoProvider for RustCrypto {
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
        if scheme == SigningScheme::Ed25519 {
            let key = <[u8; 32]>::try_from(spki_pubkey_bytes)
                .map_err(|_| bad_key(scheme, "not 32 bytes"))?;
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|e| bad_key(scheme, e))?;
            let signature =
                ed25519_dalek::Signature::from_slice(signature).map_err(|_| invalid(scheme))?;
            return key.verify(data, &signature).map_err(|_| invalid(scheme));
        }
        let Some(algorithm) = scheme.hash_algorithm() else {
            return Err(unsupported(format!("{} signatures", scheme.name())));
        };
        self.verify_prehashed(
            scheme,
            spki_pubkey_bytes,
            &digest_of(algorithm, data)?,
            signature,
        )
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

    #[test]
    fn ecdsa_p256_verifies_raw_and_prehashed_and_refuses_other_data() {
        let secret = p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("a valid scalar");
        let public = secret.verifying_key().to_encoded_point(false);
        let signature: p256::ecdsa::Signature = secret.sign(b"payload");
        let der = signature.to_der();
        let scheme = SigningScheme::EcdsaP256Sha256;
        let provider = RustCrypto;
        provider
            .verify_raw(scheme, public.as_bytes(), b"payload", der.as_bytes())
            .expect("verifies");
        let digest = sha2::Sha256::digest(b"payload");
        provider
            .verify_prehashed(scheme, public.as_bytes(), &digest, der.as_bytes())
            .expect("verifies prehashed");
        assert!(
            provider
                .verify_raw(scheme, public.as_bytes(), b"other", der.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn short_rsa_keys_and_ml_dsa_are_refused() {
        // RSAPublicKey { modulus 0x00ff (8 bits), exponent 3 }.
        let tiny = [0x30, 0x07, 0x02, 0x02, 0x00, 0xff, 0x02, 0x01, 0x03];
        let error = RustCrypto
            .verify_prehashed(SigningScheme::RsaPkcs1Sha256, &tiny, &[0; 32], &[0; 1])
            .expect_err("an 8-bit modulus");
        assert!(error.to_string().contains("8-bit modulus"), "{error}");
        assert!(
            RustCrypto
                .verify_raw(SigningScheme::MlDsa65, &[], b"x", &[])
                .is_err()
        );
    }
}
