//! Offline verification of what a lock pins: every locked blob is re-hashed
//! from the store, every ACI's image ID is recomputed, and every pinned
//! signature is re-verified against the keys in the repository (OpenPGP for ACIs and
//! simple signing; Sigstore keys, identities and trusted root for cosign signatures,
//! see [`sigstore`]).
//!
//! Nothing here touches the network. Blobs are hashed on blocking threads,
//! as many at once as the machine has cores.

pub mod pinned;
pub mod sigstore;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::concurrency;
use crate::digest::Digest;
use crate::progress::{Phase, Reporter, Silent};
use crate::project::lockfile::{Blob, Lock, LockedImage};
use crate::project::manifest::Manifest;
use crate::signing::openpgp;
use crate::signing::trust::TrustStore;
use crate::store::Store;

/// What verification found for one image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageReport {
    /// The lock entry ID.
    pub id: String,
    /// Blobs checked.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// Whether the lock records a verified signature.
    pub verified: bool,
    /// Who re-verified as signer: an OpenPGP fingerprint (hex), or a Sigstore signer in
    /// words (`key sha256:…`, `SUBJECT from ISSUER`).
    pub signed_by: Option<String>,
    /// The `[trust]` prefix whose keys were used.
    pub prefix: Option<String>,
    /// Everything that is wrong; empty means the image verified.
    pub problems: Vec<String>,
}

impl ImageReport {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Hashes one stored blob; `Err` says what is wrong with it.
fn check_blob(store: &Store, blob: &Blob) -> Result<(), String> {
    let path = store.blob_path(&blob.digest);
    let (size, actual) = match crate::digest::hash_file(&path, blob.digest.algorithm()) {
        Ok(hashed) => hashed,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "blob {} ({}, {} bytes) is missing from the store",
                blob.digest, blob.media_type, blob.size
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if actual != blob.digest {
        return Err(format!(
            "blob {} is corrupt: its bytes hash to {actual}",
            blob.digest
        ));
    }
    if size != blob.size {
        return Err(format!(
            "blob {} has {size} bytes, the lock says {}",
            blob.digest, blob.size
        ));
    }
    Ok(())
}

/// Re-checks the signatures the lock pins for `image`, recording the signer.
fn check_signatures(
    image: &LockedImage,
    store: &Store,
    trust: &TrustStore,
    verdicts: &SimpleVerdicts,
    sigstore_verdicts: &sigstore::SigstoreVerdicts,
    report: &mut ImageReport,
) {
    let pinned = if !image.sigstore.is_empty() {
        true
    } else if image.is_oci() {
        !image.manifests.is_empty() && image.manifests.iter().all(|m| m.signature.is_some())
    } else {
        image.signature.is_some()
    };
    if !pinned {
        if image.verified {
            report.problems.push(
                "the lock says verified but does not pin a signature for every manifest".into(),
            );
        }
        return;
    }
    let checked = if !image.sigstore.is_empty() {
        if image.manifests.iter().any(|m| m.signature.is_some()) {
            Err("the lock pins both Sigstore and simple signatures for it; `imagelock lock` pins one kind".to_owned())
        } else {
            sigstore::check(image, store, trust, sigstore_verdicts)
        }
    } else if image.is_oci() {
        check_simple_signatures(image, store, trust, verdicts)
    } else {
        check_signature(image, store, trust)
    };
    match checked {
        Ok((prefix, signer)) => {
            report.prefix = Some(prefix);
            report.signed_by = Some(signer);
        }
        Err(problem) => report.problems.push(problem),
    }
}

/// What verifying one simple signature found: the primary key, the key that
/// signed, and the identity the claim names; or why it was refused.
type Verdict = Result<(String, String, String), String>;

/// Verdicts already reached in this run, by everything a verdict depends on (for a
/// simple signature: its digest, the manifest digest, the reference and the `[trust]`
/// prefix). A lock often pins one image under many entries; each distinct signature is
/// verified once.
pub(crate) struct Verdicts<K, V>(Mutex<HashMap<K, V>>);

impl<K, V> Default for Verdicts<K, V> {
    fn default() -> Self {
        Verdicts(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Verdicts<K, V> {
    /// The verdict for `key`, reached by `verify` the first time it is asked for.
    pub(crate) fn get_or(&self, key: K, verify: impl FnOnce() -> V) -> V {
        let known = self
            .0
            .lock()
            .expect("no verdict is recorded while panicking")
            .get(&key)
            .cloned();
        known.unwrap_or_else(|| {
            let verdict = verify();
            self.0
                .lock()
                .expect("no verdict is recorded while panicking")
                .insert(key, verdict.clone());
            verdict
        })
    }
}

/// Simple signatures' verdicts: (signature, manifest, reference, prefix).
type SimpleVerdicts = Verdicts<(Digest, Digest, String, String), Verdict>;

/// The reference a registry entry was locked as, and the `[trust]` table that covers
/// its repository now.
pub(crate) fn covering_trust(
    image: &LockedImage,
    trust: &TrustStore,
) -> Result<
    (
        crate::oci::reference::Reference,
        crate::signing::trust::Trusted,
    ),
    String,
> {
    let written = image.reference.as_deref().unwrap_or(&image.request);
    let reference = crate::oci::reference::Reference::parse(written)
        .map_err(|e| format!("the lock's reference `{written}` is invalid: {e}"))?;
    let name = reference.repository();
    match trust.for_name(&name) {
        Ok(Some(trusted)) => Ok((reference, trusted)),
        Ok(None) => Err(format!(
            "no [trust] prefix in the manifest covers `{name}` any more"
        )),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Re-verifies the pinned simple signature of each manifest of an OCI image
/// from the store: a trusted key, this manifest's digest, an identity the
/// prefix's rule accepts for the locked reference, the signer the lock names.
fn check_simple_signatures(
    image: &LockedImage,
    store: &Store,
    trust: &TrustStore,
    verdicts: &SimpleVerdicts,
) -> Result<(String, String), String> {
    let (reference, trusted) = covering_trust(image, trust)?;
    let mut signer = String::new();
    for manifest in &image.manifests {
        let Some(sig) = &manifest.signature else {
            return Err(format!(
                "manifest {} has no pinned signature",
                manifest.digest
            ));
        };
        let key = (
            sig.digest.clone(),
            manifest.digest.clone(),
            reference.to_string(),
            trusted.prefix.clone(),
        );
        let verdict = verdicts.get_or(key, || {
            verify_simple_signature(store, sig, manifest, &reference, &trusted)
        });
        let (primary, signing_key, claimed) = verdict?;
        check_signer(sig, &trusted.prefix, &primary, &signing_key)?;
        if sig.identity.as_deref() != Some(claimed.as_str()) {
            return Err(format!(
                "signature {} claims the identity `{claimed}`, but the lock says `{}`",
                sig.digest,
                sig.identity.as_deref().unwrap_or("(none)")
            ));
        }
        signer = primary;
    }
    Ok((trusted.prefix, signer))
}

/// Verifies one pinned simple signature from the store for `manifest` of `reference`.
fn verify_simple_signature(
    store: &Store,
    sig: &crate::project::lockfile::LockedSignature,
    manifest: &crate::project::lockfile::LockedManifest,
    reference: &crate::oci::reference::Reference,
    trusted: &crate::signing::trust::Trusted,
) -> Verdict {
    let mut bytes = Vec::new();
    crate::fsutil::open_regular(&store.blob_path(&sig.digest))
        .and_then(|file| {
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, crate::resolve::MAX_SIMPLE_SIGNATURE_BYTES),
                &mut bytes,
            )
        })
        .map_err(|e| format!("cannot read signature blob {}: {e}", sig.digest))?;
    let (verified, claim) =
        crate::resolve::accept_simple_signature(trusted, &bytes, &manifest.digest, reference)
            .map_err(|e| {
                format!(
                    "signature {} of manifest {} is not accepted for [trust.\"{}\"]: {e}",
                    sig.digest, manifest.digest, trusted.prefix
                )
            })?;
    Ok((
        verified.primary,
        verified.signing_key,
        claim.docker_reference,
    ))
}

/// Re-verifies an ACI's pinned signature from the store with the keys the
/// manifest trusts for its name now; returns (prefix, signer fingerprint).
fn check_signature(
    image: &LockedImage,
    store: &Store,
    trust: &TrustStore,
) -> Result<(String, String), String> {
    let (Some(sig), Some(aci_blob)) = (&image.signature, &image.aci) else {
        return Err("the lock pins no signature for it".into());
    };
    let name = image.name.as_deref().unwrap_or(&image.id);
    let trusted = match trust.for_name(name) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(format!(
                "no [trust] prefix in the manifest covers `{name}` any more (it was verified under [trust.\"{}\"])",
                sig.prefix
            ));
        }
        Err(e) => return Err(format!("{e:#}")),
    };
    let signature = crate::fsutil::read_regular(&store.blob_path(&sig.digest))
        .map_err(|e| format!("cannot read signature blob {}: {e}", sig.digest))?;
    let path = store.blob_path(&aci_blob.digest);
    let file = crate::fsutil::open_regular(&path)
        .map(|f| std::io::BufReader::with_capacity(256 * 1024, f))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let verified = trusted
        .keyring
        .verify_detached(&signature, file, SystemTime::now())
        .map_err(|e| {
            format!(
                "signature {} does not verify with the keys of [trust.\"{}\"]: {e}",
                sig.digest, trusted.prefix
            )
        })?;
    check_signer(
        sig,
        &trusted.prefix,
        &verified.primary,
        &verified.signing_key,
    )?;
    if sig.identity.is_some() {
        return Err(format!(
            "the lock gives ACI signature {} a simple-signing identity",
            sig.digest
        ));
    }
    Ok((trusted.prefix, verified.primary))
}

/// The lock's record of who signed (`signed-by`, `key`, `prefix`) must be what
/// verification found: the signer is whoever the signature says, never the lock.
fn check_signer(
    sig: &crate::project::lockfile::LockedSignature,
    prefix: &str,
    primary: &str,
    signing_key: &str,
) -> Result<(), String> {
    if primary != sig.signed_by {
        return Err(format!(
            "signature {} verifies with key {}, but the lock says it was signed by {}",
            sig.digest,
            openpgp::format_fingerprint(primary),
            openpgp::format_fingerprint(&sig.signed_by)
        ));
    }
    if signing_key != sig.key {
        return Err(format!(
            "signature {} was made by key {}, but the lock says {}",
            sig.digest,
            openpgp::format_fingerprint(signing_key),
            openpgp::format_fingerprint(&sig.key)
        ));
    }
    if sig.prefix != prefix {
        return Err(format!(
            "signature {} is trusted through [trust.\"{prefix}\"], but the lock says [trust.\"{}\"]",
            sig.digest, sig.prefix
        ));
    }
    Ok(())
}

/// Verifies every image of `lock` against `store`, the trust policy of
/// `manifest` and the keys of `trust`; reports hashing the blobs
/// ([`Phase::Hashing`]) and checking the images ([`Phase::CheckingImages`]).
/// Reports come back sorted by image ID.
pub async fn verify(
    lock: &Lock,
    store: &Store,
    manifest: &Manifest,
    trust: Arc<TrustStore>,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<Vec<ImageReport>> {
    let hashed = hash_blobs(lock, store, &reporter).await?;
    let mut reports = check_images(
        lock,
        store,
        manifest,
        trust,
        Some(Arc::new(hashed)),
        reporter,
    )
    .await?;
    for report in &mut reports {
        let (Some(image), Some(spec)) =
            (lock.images.get(&report.id), manifest.images.get(&report.id))
        else {
            continue;
        };
        let changes = crate::resolve::drift::pinned_otherwise(spec, image, manifest);
        if !changes.is_empty() {
            let changes: Vec<String> = changes.iter().map(ToString::to_string).collect();
            report.problems.push(format!(
                "images.lock pins something else than [images.{}] asks for ({}); run `imagelock lock`",
                report.id,
                changes.join("; ")
            ));
        }
    }
    Ok(reports)
}

/// Re-hashes each distinct blob of `lock` once, however many images share
/// it: what is wrong with each, by digest.
async fn hash_blobs(
    lock: &Lock,
    store: &Store,
    reporter: &Arc<dyn Reporter>,
) -> anyhow::Result<BTreeMap<Digest, Result<(), String>>> {
    let distinct = lock.blobs();
    reporter.begin(
        Phase::Hashing,
        distinct.len(),
        distinct.values().map(|b| b.size).sum(),
    );
    let jobs = distinct.into_values().map(|blob| {
        let (store, reporter) = (store.clone(), reporter.clone());
        async move {
            let (digest, size) = (blob.digest.clone(), blob.size);
            let result = tokio::task::spawn_blocking(move || check_blob(&store, &blob)).await?;
            reporter.bytes(size);
            reporter.item_done();
            Ok((digest, result))
        }
    });
    let hashed = concurrency::run_bounded(concurrency::cpu_threads(), jobs)
        .await?
        .into_iter()
        .collect();
    reporter.finish();
    Ok(hashed)
}

/// What `sync` checks on every run, whatever it fetched, and what render,
/// inspect, export and push check before acting on the lock: the trust
/// policy, every derived fact against the pinned manifests and ACIs, and every
/// pinned signature, offline, from the store. Layers are not re-hashed (the
/// store named them by their digest when it wrote them; [`verify`] re-hashes).
/// Runs on the calling thread. Reports come back sorted by image ID.
pub fn check_pins(
    lock: &Lock,
    store: &Store,
    manifest: &Manifest,
    trust: &TrustStore,
) -> Vec<ImageReport> {
    check_each(&to_check(lock, manifest), lock, store, trust, None, &Silent)
}

/// The per-image checks of [`verify`]; `hashed` holds the
/// result of re-hashing each blob, when that was done.
async fn check_images(
    lock: &Lock,
    store: &Store,
    manifest: &Manifest,
    trust: Arc<TrustStore>,
    hashed: Option<Arc<BTreeMap<Digest, Result<(), String>>>>,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<Vec<ImageReport>> {
    let images = to_check(lock, manifest);
    let (lock, store) = (lock.clone(), store.clone());
    reporter.begin(Phase::CheckingImages, images.len(), 0);
    let reports = tokio::task::spawn_blocking(move || {
        let reports = check_each(
            &images,
            &lock,
            &store,
            &trust,
            hashed.as_deref(),
            &*reporter,
        );
        reporter.finish();
        reports
    })
    .await?;
    Ok(reports)
}

/// One entry to check, with what images.toml asks of it.
struct ToCheck {
    image: LockedImage,
    /// What the trust policy says is wrong with it, if anything.
    policy: Option<String>,
    /// The platforms the entry sets explicitly (none: this machine's, not binding).
    platforms: Vec<crate::oci::platform::Platform>,
}

fn to_check(lock: &Lock, manifest: &Manifest) -> Vec<ToCheck> {
    lock.images
        .values()
        .map(|image| ToCheck {
            image: image.clone(),
            policy: policy_problem(image, lock, manifest),
            platforms: manifest
                .images
                .get(&image.id)
                .map(|spec| spec.platforms.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// A manifest pinned alone (no index) must be for one of the platforms the
/// entry asks for: the lock could otherwise pin any signed platform manifest
/// of the image in place of the index.
fn lone_platform_problem(
    lone: Option<&crate::oci::platform::Platform>,
    wanted: &[crate::oci::platform::Platform],
) -> Option<String> {
    let lone = lone?;
    if wanted.is_empty()
        || wanted
            .iter()
            .any(|w| crate::oci::platform::select(w, &[Some(lone)]).is_some())
    {
        return None;
    }
    let wanted: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    Some(format!(
        "the lock pins one {lone} manifest without an index, but images.toml asks for platforms {}; if the image has no build for them, set `platforms` to what it provides",
        wanted.join(", ")
    ))
}

/// Checks each entry on scoped threads: the facts
/// against the pinned bytes, the blobs' hashes when `hashed` has them, and the
/// signatures. In the order given (the lock keeps its images sorted by ID);
/// each image checked is an item done for `reporter`.
fn check_each(
    images: &[ToCheck],
    lock: &Lock,
    store: &Store,
    trust: &TrustStore,
    hashed: Option<&BTreeMap<Digest, Result<(), String>>>,
    reporter: &dyn Reporter,
) -> Vec<ImageReport> {
    let checker = crate::verify::pinned::Checker::new(store);
    let verdicts = SimpleVerdicts::default();
    let sigstore_verdicts = sigstore::SigstoreVerdicts::default();
    concurrency::map_blocking(images, concurrency::cpu_threads(), |item| {
        let (image, policy) = (&item.image, &item.policy);
        let blobs = image.blobs();
        let mut report = ImageReport {
            id: image.id.clone(),
            blobs: blobs.len(),
            bytes: blobs.iter().map(|b| b.size).sum(),
            verified: image.verified,
            signed_by: None,
            prefix: None,
            problems: policy.iter().cloned().collect(),
        };
        // The facts first: a signature only counts for the bytes the lock really pins.
        match checker.check(image, lock) {
            Err(e) if hashed.is_none() || !e.is_missing() => report.problems.push(e.to_string()),
            Err(_) => {}
            Ok(checked) => report.problems.extend(lone_platform_problem(
                checked.lone_platform.as_ref(),
                &item.platforms,
            )),
        }
        for blob in &blobs {
            if let Some(Err(problem)) = hashed.and_then(|h| h.get(&blob.digest)) {
                report.problems.push(problem.clone());
            }
        }
        if report.problems.is_empty() {
            check_signatures(
                image,
                store,
                trust,
                &verdicts,
                &sigstore_verdicts,
                &mut report,
            );
        }
        reporter.item_done();
        report
    })
}

/// What is wrong with `image` under the manifest's trust policy now, if
/// anything: a name a `[trust]` prefix covers must be pinned verified; a name
/// no prefix covers must come from an entry marked `insecure = true` (for a
/// dependency: from a tree whose root was accepted unverified). This catches a
/// lock edited by hand and a prefix added after an image was locked.
pub fn policy_problem(image: &LockedImage, lock: &Lock, manifest: &Manifest) -> Option<String> {
    if let Some(root) = &image.dependency_of {
        if manifest.images.contains_key(&image.id) {
            return Some(format!(
                "it is an entry of {}, but the lock pins it as a dependency of `{root}`",
                manifest.path.display()
            ));
        }
        if !lock.reaches(root, &image.id) {
            return Some(format!(
                "the lock pins it as a dependency of `{root}`, but no dependency of `{root}` leads to it"
            ));
        }
    }
    let root_id = image.dependency_of.as_deref().unwrap_or(&image.id);
    let Some(spec) = manifest.images.get(root_id) else {
        return Some(format!(
            "the lock pins it for `{root_id}`, which {} no longer has",
            manifest.path.display()
        ));
    };
    let name = crate::signing::trust_list::trust_name(image);
    let covering = name.as_deref().and_then(|n| manifest.trust_for(n));
    match covering {
        Some((prefix, _)) if !image.verified => Some(format!(
            "[trust.\"{prefix}\"] covers `{}`, but the lock pins it unverified; run `imagelock lock` after removing the entry from the lock, or fix the lock",
            name.unwrap_or_default()
        )),
        Some(_) => None,
        None if image.verified => None,
        None => {
            let root_unverified = lock.images.get(root_id).is_some_and(|root| !root.verified);
            (!(spec.insecure && root_unverified)).then(|| {
                format!(
                    "it is pinned unverified, but no [trust] prefix covers it and [images.{root_id}] is not marked insecure"
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{Recorded, Recording};
    use crate::project::lockfile::{ACI_MEDIA_TYPE, SourceKind};

    #[tokio::test]
    async fn verify_reports_each_distinct_blob_it_hashes_and_each_image_it_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let blob = |bytes: &[u8]| Blob {
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
            media_type: ACI_MEDIA_TYPE.into(),
        };
        let (shared, own, absent) = (blob(&[3u8; 1024 * 1024]), blob(b"own"), blob(b"not stored"));
        store
            .insert_bytes(&shared, &[3u8; 1024 * 1024])
            .expect("insert");
        store.insert_bytes(&own, b"own").expect("insert");
        let mut lock = Lock::default();
        for (id, aci) in [("a", &shared), ("b", &shared), ("c", &own), ("d", &absent)] {
            let mut image = LockedImage::new(
                id,
                SourceKind::Appc,
                format!("example.com/{id}"),
                Digest::sha256_of(id.as_bytes()),
            );
            image.aci = Some(aci.clone());
            lock.images.insert(id.into(), image);
        }
        let manifest =
            Manifest::parse(&dir.path().join("images.toml"), "").expect("empty manifest");
        let trust = Arc::new(TrustStore::new(&manifest));
        let recording = Arc::new(Recording::default());
        let reports = verify(&lock, &store, &manifest, trust, recording.clone())
            .await
            .expect("verify");
        assert_eq!(reports.len(), 4);
        assert_eq!(
            recording.phases(),
            [
                Recorded::complete(Phase::Hashing, 3, shared.size + own.size + absent.size),
                Recorded::complete(Phase::CheckingImages, 4, 0),
            ]
        );
    }

    #[test]
    fn a_lone_manifest_must_be_for_a_platform_the_entry_asks_for() {
        let p = |s: &str| {
            s.parse::<crate::oci::platform::Platform>()
                .expect("platform")
        };
        let arm64 = p("linux/arm64");
        // The entry sets no platforms: this machine's default is not binding.
        assert_eq!(lone_platform_problem(Some(&arm64), &[]), None);
        assert_eq!(
            lone_platform_problem(Some(&arm64), &[p("linux/arm64/v8")]),
            None
        );
        assert_eq!(
            lone_platform_problem(Some(&arm64), &[p("linux/amd64"), p("linux/arm64")]),
            None
        );
        let problem = lone_platform_problem(Some(&arm64), &[p("linux/amd64")]).expect("refused");
        assert!(
            problem.contains("one linux/arm64 manifest without an index")
                && problem.contains("asks for platforms linux/amd64"),
            "{problem}"
        );
        // Chosen from an index: the index check covers the platform.
        assert_eq!(lone_platform_problem(None, &[p("linux/amd64")]), None);
    }
}
