//! Sigstore / cosign signatures of a registry image, found and verified at lock time.
//!
//! For each digest that needs a signature, two places are read in the image's own
//! repository (specs/sigstore.md §1–§2): cosign's `sha256-<hex>.sig` tag, and the
//! Sigstore bundles referring to the digest — through the OCI 1.1 referrers API, or,
//! when the registry has none (it answers 404), the referrers tag schema's
//! `sha256-<hex>` index. Every manifest and blob read is digest-checked, and every
//! candidate is checked by [`crate::signing::cosign`]; the first that a trusted signer
//! made for this digest and repository is pinned.
//!
//! Coverage: a signature on the index (cosign's default for a multi-platform tag) covers
//! the platform manifests the pinned index lists; otherwise every pinned platform manifest
//! needs its own. What was found and why each was refused is kept, so the error says it.

use anyhow::Context as _;

use crate::digest::Digest;
use crate::oci::registry::{FetchedManifest, RegistryClient, Repository};
use crate::oci::{self, Descriptor};
use crate::project::lockfile::{Blob, LockedImage, LockedSigstore, SigstoreKind};
use crate::signing::cosign::{self, Accepted, Kind};
use crate::signing::trust::Trusted;

/// What the search for one digest's signatures found.
#[derive(Default)]
pub struct Search {
    /// The signature that was accepted, if any.
    pub accepted: Option<LockedSigstore>,
    /// Each candidate that was refused, with the reason (for the error).
    pub rejected: Vec<String>,
}

/// Finds, verifies and pins Sigstore signatures covering every pinned manifest of
/// `image` (from `repo`): one on the index, or one per platform manifest. `Err` holds
/// the digest left uncovered and what was found for it.
pub async fn pin(
    client: &RegistryClient,
    repo: &Repository,
    repository: &str,
    image: &LockedImage,
    trusted: &Trusted,
) -> anyhow::Result<Result<Vec<LockedSigstore>, (Digest, Vec<String>)>> {
    let mut rejected_for_index = Vec::new();
    if let Some(index) = &image.index {
        let search = search(client, repo, repository, &index.digest, trusted).await?;
        if let Some(accepted) = search.accepted {
            return Ok(Ok(vec![accepted]));
        }
        rejected_for_index = search.rejected;
    }
    let mut pinned = Vec::new();
    for manifest in &image.manifests {
        let mut search = search(client, repo, repository, &manifest.digest, trusted).await?;
        match search.accepted {
            Some(accepted) => pinned.push(accepted),
            None => {
                search.rejected.extend(rejected_for_index);
                return Ok(Err((manifest.digest.clone(), search.rejected)));
            }
        }
    }
    Ok(Ok(pinned))
}

/// Looks for a signature of `signs` by a signer `trusted` accepts: cosign's `.sig` tag
/// first, then bundles.
pub async fn search(
    client: &RegistryClient,
    repo: &Repository,
    repository: &str,
    signs: &Digest,
    trusted: &Trusted,
) -> anyhow::Result<Search> {
    let mut found = Search::default();
    let tag = cosign::signature_tag(signs);
    let legacy = client
        .get_manifest_if_exists(repo, &tag)
        .await
        .with_context(|| format!("cannot read the cosign signatures of {signs} ({tag})"))?;
    if let Some(artifact) = legacy {
        try_artifact(
            client,
            repo,
            repository,
            Kind::Cosign,
            artifact,
            signs,
            trusted,
            &mut found,
        )
        .await?;
        if found.accepted.is_some() {
            return Ok(found);
        }
    }
    for referrer in bundle_referrers(client, repo, signs).await? {
        let artifact = client
            .get_manifest(repo, &referrer.digest.to_string())
            .await
            .with_context(|| {
                format!(
                    "cannot read the Sigstore bundle {} of {signs}",
                    referrer.digest
                )
            })?;
        try_artifact(
            client,
            repo,
            repository,
            Kind::Bundle,
            artifact,
            signs,
            trusted,
            &mut found,
        )
        .await?;
        if found.accepted.is_some() {
            break;
        }
    }
    Ok(found)
}

/// The referrers of `signs` that are Sigstore bundles: from the referrers API, else
/// from the referrers tag schema's index.
async fn bundle_referrers(
    client: &RegistryClient,
    repo: &Repository,
    signs: &Digest,
) -> anyhow::Result<Vec<Descriptor>> {
    let index = match client
        .get_referrers(repo, signs)
        .await
        .with_context(|| format!("cannot list the referrers of {signs}"))?
    {
        Some(index) => index,
        None => {
            let tag = cosign::referrers_tag(signs);
            match client
                .get_manifest_if_exists(repo, &tag)
                .await
                .with_context(|| format!("cannot read the referrers of {signs} ({tag})"))?
            {
                Some(fetched) => oci::parse_index(&fetched.bytes)
                    .with_context(|| format!("the referrers index tagged {tag} is invalid"))?,
                None => return Ok(Vec::new()),
            }
        }
    };
    Ok(index
        .manifests
        .into_iter()
        .filter(|d| cosign::is_bundle_type(d.artifact_type.as_deref()))
        .take(cosign::MAX_SIGNATURES)
        .collect())
}

/// Checks each signature layer of one artifact; records the first accepted, or why
/// each was refused.
#[allow(clippy::too_many_arguments)]
async fn try_artifact(
    client: &RegistryClient,
    repo: &Repository,
    repository: &str,
    kind: Kind,
    artifact: FetchedManifest,
    signs: &Digest,
    trusted: &Trusted,
    found: &mut Search,
) -> anyhow::Result<()> {
    let what = match kind {
        Kind::Cosign => format!("cosign signature manifest {}", artifact.digest),
        Kind::Bundle => format!("Sigstore bundle {}", artifact.digest),
    };
    let parsed = match oci::parse_image_manifest(&artifact.bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            found.rejected.push(format!("{what}: {e}"));
            return Ok(());
        }
    };
    let layers = match cosign::signature_layers(kind, &parsed, signs) {
        Ok(layers) => layers,
        Err(e) => {
            found.rejected.push(format!("{what}: {e}"));
            return Ok(());
        }
    };
    let Some(root) = trusted.sigstore.root.as_deref() else {
        found.rejected.push(format!(
            "{what}: [trust.\"{}\"] trusts no Sigstore key or identity",
            trusted.prefix
        ));
        return Ok(());
    };
    for layer in layers {
        if layer.size > cosign::MAX_LAYER_BYTES {
            found.rejected.push(format!(
                "{what}, layer {}: {} bytes is more than a signature may have",
                layer.digest, layer.size
            ));
            continue;
        }
        let bytes = client
            .get_blob_bytes(repo, &layer.digest, cosign::MAX_LAYER_BYTES)
            .await
            .with_context(|| format!("cannot read layer {} of {what}", layer.digest))?;
        if bytes.len() as u64 != layer.size {
            found.rejected.push(format!(
                "{what}, layer {}: the manifest says {} bytes, the blob has {}",
                layer.digest,
                layer.size,
                bytes.len()
            ));
            continue;
        }
        let policy = &trusted.sigstore.policy;
        match cosign::check_layer(kind, layer, &bytes, signs, repository, policy, root) {
            Ok(accepted) => {
                found.accepted = Some(locked(
                    kind, &artifact, &parsed, layer, signs, trusted, accepted,
                ));
                return Ok(());
            }
            Err(reason) => found.rejected.push(format!("{what}: {reason}")),
        }
    }
    Ok(())
}

fn blob(d: &Descriptor) -> Blob {
    Blob {
        digest: d.digest.clone(),
        size: d.size,
        media_type: d.media_type.clone(),
    }
}

fn locked(
    kind: Kind,
    artifact: &FetchedManifest,
    parsed: &oci::ImageManifest,
    layer: &Descriptor,
    signs: &Digest,
    trusted: &Trusted,
    accepted: Accepted,
) -> LockedSigstore {
    let (key, issuer, subject) = match accepted.signer {
        crate::signing::sigstore::Signer::Key { fingerprint } => (Some(fingerprint), None, None),
        crate::signing::sigstore::Signer::Identity { issuer, subject } => {
            (None, Some(issuer), Some(subject))
        }
    };
    LockedSigstore {
        kind: match kind {
            Kind::Cosign => SigstoreKind::Cosign,
            Kind::Bundle => SigstoreKind::Bundle,
        },
        signs: signs.clone(),
        prefix: trusted.prefix.clone(),
        manifest: Blob {
            digest: artifact.digest.clone(),
            size: artifact.bytes.len() as u64,
            media_type: artifact.media_type.clone(),
        },
        config: blob(&parsed.config),
        layers: parsed.layers.iter().map(blob).collect(),
        layer: layer.digest.clone(),
        key,
        issuer,
        subject,
        log_index: accepted.log_index,
        integrated_time: accepted.integrated_time,
        trusted_root: accepted.trusted_root,
    }
}
