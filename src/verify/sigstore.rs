//! Pinned Sigstore / cosign signatures re-verified offline, from the store.
//!
//! For a registry image whose lock entry pins Sigstore signatures: the signatures must
//! cover every pinned manifest (one on the index covers them all), and each is verified
//! again from its stored bytes — the artifact manifest (for its layer's annotations) and
//! the layer (the payload or the bundle) — with the signers and the trusted root that
//! images.toml trusts *now* for the image's name. Everything the lock records about a
//! signature (prefix, signer, log index, integrated time, root digest) must be what this
//! verification finds; a lock that says otherwise was edited, and is refused. A root
//! whose digest differs from the one pinned (an edited `trusted_root.json`, or another
//! `trusted-root`) is refused before anything is verified with it.
//!
//! Invariants: no network; reads only pinned blobs, by digest, re-hashed as read (see
//! [`crate::verify::pinned`], which has already checked the artifact's layer list).

use crate::digest::Digest;
use crate::project::lockfile::{Blob, LockedImage, LockedSigstore, SigstoreKind};
use crate::signing::cosign::{self, Accepted, Kind};
use crate::signing::sigstore::Signer;
use crate::signing::trust::{TrustStore, Trusted};
use crate::store::Store;

/// Verdicts reached in this run, by everything one depends on: (artifact manifest,
/// layer, signed digest, repository, prefix).
pub(crate) type SigstoreVerdicts =
    super::Verdicts<(Digest, Digest, Digest, String, String), Result<Accepted, String>>;

/// Re-verifies `image`'s pinned Sigstore signatures; returns the prefix and the signer.
pub(crate) fn check(
    image: &LockedImage,
    store: &Store,
    trust: &TrustStore,
    verdicts: &SigstoreVerdicts,
) -> Result<(String, String), String> {
    let (reference, trusted) = super::covering_trust(image, trust)?;
    let repository = reference.repository();
    check_coverage(image)?;
    let mut signer = String::new();
    for sig in &image.sigstore {
        if sig.prefix != trusted.prefix {
            return Err(format!(
                "signature {} is trusted through [trust.\"{}\"], but the lock says [trust.\"{}\"]",
                sig.manifest.digest, trusted.prefix, sig.prefix
            ));
        }
        let key = (
            sig.manifest.digest.clone(),
            sig.layer.clone(),
            sig.signs.clone(),
            repository.clone(),
            trusted.prefix.clone(),
        );
        let accepted = verdicts.get_or(key, || verify_one(store, sig, &repository, &trusted))?;
        check_recorded(sig, &accepted)?;
        signer = sig.signer();
    }
    Ok((trusted.prefix, signer))
}

/// One signature on the pinned index, or one per pinned manifest.
fn check_coverage(image: &LockedImage) -> Result<(), String> {
    let signed = |d: &Digest| image.sigstore.iter().any(|s| &s.signs == d);
    if image.index.as_ref().is_some_and(|i| signed(&i.digest)) {
        return Ok(());
    }
    match image.manifests.iter().find(|m| !signed(&m.digest)) {
        None => Ok(()),
        Some(m) => Err(format!(
            "the lock pins no Sigstore signature covering manifest {}{}",
            m.digest,
            m.platform
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        )),
    }
}

/// Verifies one pinned signature from the store's bytes.
fn verify_one(
    store: &Store,
    sig: &LockedSigstore,
    repository: &str,
    trusted: &Trusted,
) -> Result<Accepted, String> {
    let what = format!("signature {}", sig.manifest.digest);
    let Some(root) = trusted.sigstore.root.as_deref() else {
        return Err(format!(
            "{what} is a Sigstore signature, and [trust.\"{}\"] trusts no Sigstore key or identity any more",
            trusted.prefix
        ));
    };
    if let Some(pinned) = &sig.trusted_root
        && pinned != root.digest()
    {
        return Err(format!(
            "{what} was verified with the trusted root {pinned} when it was locked, but [trust.\"{}\"]'s root ({}) is now {}: the root was edited or replaced since",
            trusted.prefix,
            trusted.sigstore.root_origin,
            root.digest()
        ));
    }
    let read = |blob: &Blob, kind: &'static str| {
        crate::verify::pinned::read_manifest_blob(store, blob, kind).map_err(|e| e.to_string())
    };
    let manifest = crate::oci::parse_image_manifest(&read(&sig.manifest, "signature manifest")?)
        .map_err(|e| format!("{what}: {e}"))?;
    let kind = match sig.kind {
        SigstoreKind::Cosign => Kind::Cosign,
        SigstoreKind::Bundle => Kind::Bundle,
    };
    let layers = cosign::signature_layers(kind, &manifest, &sig.signs)
        .map_err(|e| format!("{what}: {e}"))?;
    let (_, layer) = layers
        .into_iter()
        .find(|(i, l)| *i == sig.layer_index && l.digest == sig.layer)
        .ok_or_else(|| {
            format!(
                "{what} has no signature layer {} at position {}",
                sig.layer, sig.layer_index
            )
        })?;
    let layer_blob = Blob {
        digest: layer.digest.clone(),
        size: layer.size,
        media_type: layer.media_type.clone(),
    };
    let bytes = read(&layer_blob, "signature layer")?;
    cosign::check_layer(
        kind,
        layer,
        &bytes,
        &sig.signs,
        repository,
        &trusted.sigstore.policy,
        root,
    )
    .map_err(|e| {
        format!(
            "{what} of {} is not accepted for [trust.\"{}\"]: {e}",
            sig.signs, trusted.prefix
        )
    })
}

/// What the lock records about a signature must be what verifying it found.
fn check_recorded(sig: &LockedSigstore, found: &Accepted) -> Result<(), String> {
    let (key, issuer, subject) = match &found.signer {
        Signer::Key { fingerprint } => (Some(fingerprint), None, None),
        Signer::Identity { issuer, subject } => (None, Some(issuer), Some(subject)),
    };
    let fields: [(&str, Option<String>, Option<String>); 6] = [
        ("key", sig.key.clone(), key.cloned()),
        ("issuer", sig.issuer.clone(), issuer.cloned()),
        ("subject", sig.subject.clone(), subject.cloned()),
        (
            "log-index",
            sig.log_index.map(|i| i.to_string()),
            found.log_index.map(|i| i.to_string()),
        ),
        (
            "integrated-time",
            sig.integrated_time.map(|t| t.to_string()),
            found.integrated_time.map(|t| t.to_string()),
        ),
        (
            "trusted-root",
            sig.trusted_root.as_ref().map(ToString::to_string),
            found.trusted_root.as_ref().map(ToString::to_string),
        ),
    ];
    for (field, locked, verified) in fields {
        if locked != verified {
            let show = |v: Option<String>| v.unwrap_or_else(|| "(none)".to_owned());
            return Err(format!(
                "signature {} verifies with {field} {}, but the lock says {}",
                sig.manifest.digest,
                show(verified),
                show(locked)
            ));
        }
    }
    Ok(())
}
