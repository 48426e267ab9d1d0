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
use crate::signing::sigstore::TrustRoot;
use crate::signing::trust::Trusted;

/// What the search for one digest's signatures found.
pub struct Search {
    /// The signature that was accepted, if any.
    pub accepted: Option<LockedSigstore>,
    /// Each candidate that was refused, with the reason (for the error).
    pub rejected: Vec<String>,
    /// Candidates still to be tried ([`cosign::MAX_SIGNATURES`] in all).
    candidates_left: usize,
    /// Bytes of signature layers still to be read ([`cosign::MAX_SIGNATURE_BYTES`]).
    bytes_left: u64,
    /// Candidates not tried because the budget ran out.
    skipped: usize,
}

impl Default for Search {
    fn default() -> Search {
        Search {
            accepted: None,
            rejected: Vec::new(),
            candidates_left: cosign::MAX_SIGNATURES,
            bytes_left: cosign::MAX_SIGNATURE_BYTES,
            skipped: 0,
        }
    }
}

impl Search {
    fn reject(&mut self, reason: String) {
        self.rejected.push(reason);
    }

    /// Counts a candidate against the budget, refused for `reason` before its
    /// signature could be read.
    fn refuse_candidate(&mut self, reason: String) {
        self.candidates_left = self.candidates_left.saturating_sub(1);
        self.reject(reason);
    }

    /// Whether the budget has no candidate left, or fewer than `bytes` bytes.
    fn spent(&self, bytes: u64) -> bool {
        self.candidates_left == 0 || self.bytes_left < bytes
    }

    /// The rejections for an error: repeated reasons once, with their count, and what
    /// the budget left untried.
    fn into_rejections(self) -> Vec<String> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for reason in self.rejected {
            match out.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => out.push((reason, 1)),
            }
        }
        let mut lines: Vec<String> = out
            .into_iter()
            .map(|(r, n)| if n > 1 { format!("{r} (×{n})") } else { r })
            .collect();
        if self.skipped > 0 {
            lines.push(format!(
                "{} more candidates were not tried (at most {} signatures and {} are read per manifest)",
                self.skipped,
                cosign::MAX_SIGNATURES,
                crate::text::human_bytes(cosign::MAX_SIGNATURE_BYTES)
            ));
        }
        lines
    }
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
        rejected_for_index = search
            .into_rejections()
            .into_iter()
            .map(|r| format!("(on the index) {r}"))
            .collect();
    }
    let mut pinned = Vec::new();
    for manifest in &image.manifests {
        let mut search = search(client, repo, repository, &manifest.digest, trusted).await?;
        match search.accepted.take() {
            Some(accepted) => pinned.push(accepted),
            None => {
                let mut rejected = search.into_rejections();
                rejected.extend(rejected_for_index);
                return Ok(Err((manifest.digest.clone(), rejected)));
            }
        }
    }
    Ok(Ok(pinned))
}

/// Looks for a signature of `signs` by a signer `trusted` (a prefix that trusts Sigstore
/// signers, so has a root) accepts: cosign's `.sig` tag
/// first, then bundles. Listing them (the tag, the referrers) must work; a listed
/// artifact or layer that cannot be read is a refused candidate, not a failure.
pub async fn search(
    client: &RegistryClient,
    repo: &Repository,
    repository: &str,
    signs: &Digest,
    trusted: &Trusted,
) -> anyhow::Result<Search> {
    let mut found = Search::default();
    let target = Target {
        client,
        repo,
        repository,
        signs,
        trusted,
        root: trusted
            .sigstore
            .root
            .as_deref()
            .expect("a prefix that trusts Sigstore signers has a root (TrustStore loads it)"),
    };
    let tag = cosign::signature_tag(signs);
    let legacy = client
        .get_manifest_if_exists(repo, &tag)
        .await
        .with_context(|| format!("cannot read the cosign signatures of {signs} ({tag})"))?;
    if let Some(artifact) = legacy {
        try_artifact(&target, Kind::Cosign, artifact, &mut found).await;
        if found.accepted.is_some() {
            return Ok(found);
        }
    }
    let referrers = bundle_referrers(client, repo, signs).await?;
    let count = referrers.len();
    for (n, referrer) in referrers.into_iter().enumerate() {
        if found.spent(1) {
            found.skipped += count - n;
            break;
        }
        let artifact = match client
            .get_manifest(repo, &referrer.digest.to_string())
            .await
        {
            Ok(artifact) => artifact,
            Err(e) => {
                found.refuse_candidate(format!(
                    "Sigstore bundle {}: cannot be read: {e}",
                    referrer.digest
                ));
                continue;
            }
        };
        try_artifact(&target, Kind::Bundle, artifact, &mut found).await;
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
        .collect())
}

/// What a signature must be of, and who may have made it.
struct Target<'a> {
    client: &'a RegistryClient,
    repo: &'a Repository,
    repository: &'a str,
    signs: &'a Digest,
    trusted: &'a Trusted,
    /// The prefix's trusted root.
    root: &'a TrustRoot,
}

/// Checks each signature layer of one artifact, within the search's budget; records
/// the first accepted, or why each was refused.
async fn try_artifact(t: &Target<'_>, kind: Kind, artifact: FetchedManifest, found: &mut Search) {
    let what = match kind {
        Kind::Cosign => format!("cosign signature manifest {}", artifact.digest),
        Kind::Bundle => format!("Sigstore bundle {}", artifact.digest),
    };
    let parsed = match oci::parse_image_manifest(&artifact.bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            found.refuse_candidate(format!("{what}: {e}"));
            return;
        }
    };
    let layers = match cosign::signature_layers(kind, &parsed, t.signs) {
        Ok(layers) => layers,
        Err(e) => {
            found.refuse_candidate(format!("{what}: {e}"));
            return;
        }
    };
    let count = layers.len();
    for (n, (index, layer)) in layers.into_iter().enumerate() {
        let what = match kind {
            Kind::Cosign => format!("{what}, layer {index} ({})", layer.digest),
            Kind::Bundle => what.clone(),
        };
        if found.spent(layer.size.min(cosign::MAX_LAYER_BYTES)) {
            found.skipped += count - n;
            return;
        }
        found.candidates_left -= 1;
        if layer.size > cosign::MAX_LAYER_BYTES {
            found.reject(format!(
                "{what}: {} bytes is more than a signature may have",
                layer.size
            ));
            continue;
        }
        found.bytes_left -= layer.size;
        let bytes = match t
            .client
            .get_blob_bytes(t.repo, &layer.digest, layer.size)
            .await
        {
            Ok(bytes) => bytes,
            Err(e) => {
                found.reject(format!("{what}: cannot be read: {e}"));
                continue;
            }
        };
        if bytes.len() as u64 != layer.size {
            found.reject(format!(
                "{what}: the manifest says {} bytes, the blob has {}",
                layer.size,
                bytes.len()
            ));
            continue;
        }
        let policy = &t.trusted.sigstore.policy;
        match cosign::check_layer(kind, layer, &bytes, t.signs, t.repository, policy, t.root) {
            Ok(accepted) => {
                let pinned = locked(kind, &artifact, &parsed, index, t, accepted);
                found.accepted = Some(pinned);
                return;
            }
            Err(reason) => found.reject(format!("{what}: {reason}")),
        }
    }
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
    layer_index: usize,
    t: &Target<'_>,
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
        signs: t.signs.clone(),
        prefix: t.trusted.prefix.clone(),
        manifest: Blob {
            digest: artifact.digest.clone(),
            size: artifact.bytes.len() as u64,
            media_type: artifact.media_type.clone(),
        },
        config: blob(&parsed.config),
        layers: parsed.layers.iter().map(blob).collect(),
        layer: parsed.layers[layer_index].digest.clone(),
        layer_index,
        key,
        issuer,
        subject,
        log_index: accepted.log_index,
        integrated_time: accepted.integrated_time,
        trusted_root: accepted.trusted_root,
    }
}
