//! Sync: materialise exactly the locked blobs in the store.
//!
//! A sync is a pure [`Plan`] (what is present, what is missing, how many bytes)
//! followed by [`execute`], the only step with side effects. Missing blobs are
//! deduplicated by digest across images and fetched largest first with bounded
//! parallelism, through [`crate::transfer`], which hashes and writes bytes on
//! blocking threads, never on the async reactor. A plan with nothing missing
//! touches no network at all. Ctrl-C ends [`execute`] with [`Interrupted`]:
//! stored blobs stay, and partial downloads stay in `ingest/` to be resumed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::concurrency;
use crate::oci;
use crate::oci::registry::{RegistryClient, RegistryError, Repository};
use crate::progress::Reporter;
use crate::project::lockfile::{Blob, Lock, LockedImage, SourceKind};
use crate::store::Store;
use crate::transfer::{Remote, copy_file, download_resumable};
use anyhow::Context as _;

/// Where a missing blob will be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSource {
    /// A registry repository.
    Registry(Repository),
    /// A local OCI layout directory.
    Layout(PathBuf),
    /// An http(s) URL (ACIs and their signatures).
    Url(String),
    /// A local file (ACIs and their signatures).
    File(PathBuf),
    /// The simple signature at `url` of manifest `manifest` of an image from
    /// `repo`: the mirrors' lookaside store, when there is one, is asked first.
    Lookaside {
        /// The signature's URL in the image's own lookaside store.
        url: String,
        /// The image's repository.
        repo: Repository,
        /// The signed manifest.
        manifest: crate::digest::Digest,
    },
}

/// A blob the store lacks, and where to get it.
#[derive(Debug, Clone)]
pub struct MissingBlob {
    /// The blob.
    pub blob: Blob,
    /// Where it comes from.
    pub source: BlobSource,
    /// IDs of the images that need it.
    pub images: Vec<String>,
}

/// What a sync would do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Images in the lock.
    pub images: usize,
    /// Distinct blobs the lock references.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// Blobs already present.
    pub present: usize,
    /// Blobs to fetch, largest first.
    pub missing: Vec<MissingBlob>,
    /// (store name, root blob) for every image, to record in index.json.
    pub refs: Vec<(String, Blob)>,
}

impl Plan {
    /// Bytes still to fetch.
    pub fn missing_bytes(&self) -> u64 {
        self.missing.iter().map(|m| m.blob.size).sum()
    }

    /// Missing blobs that need the network.
    pub fn needs_network(&self) -> impl Iterator<Item = &MissingBlob> {
        self.missing.iter().filter(|m| {
            matches!(
                m.source,
                BlobSource::Registry(_) | BlobSource::Url(_) | BlobSource::Lookaside { .. }
            )
        })
    }
}

/// Where a URL or path recorded in the lock points: network URLs as they
/// are, `file://` URLs and relative paths (relative to the lock) as files.
fn location(written: &str, lock_dir: &Path) -> BlobSource {
    if written.starts_with("https://") || written.starts_with("http://") {
        BlobSource::Url(written.to_owned())
    } else if let Some(path) = written.strip_prefix("file://") {
        BlobSource::File(PathBuf::from(path))
    } else {
        BlobSource::File(lock_dir.join(written))
    }
}

/// Each blob of `image` with where to get it.
fn blob_sources(image: &LockedImage, lock_dir: &Path) -> anyhow::Result<Vec<(Blob, BlobSource)>> {
    let everything_from = |source: BlobSource| {
        image
            .blobs()
            .into_iter()
            .map(|b| (b, source.clone()))
            .collect()
    };
    match image.source {
        SourceKind::Docker => {
            let (Some(base), Some(reference)) = (&image.registry, &image.reference) else {
                anyhow::bail!("lock entry `{}` lacks `registry` or `reference`", image.id);
            };
            let parsed = crate::oci::reference::Reference::parse(reference)
                .with_context(|| format!("lock entry `{}` has an invalid reference", image.id))?;
            let repository = Repository {
                base: base.clone(),
                path: parsed.path().to_owned(),
            };
            let registry = BlobSource::Registry(repository.clone());
            // Simple signatures live in a lookaside store, not in the registry.
            let signatures: Vec<(Blob, BlobSource)> = image
                .manifests
                .iter()
                .filter_map(|m| Some((m, m.signature.as_ref()?)))
                .map(|(m, sig)| {
                    let source = match location(&sig.url, lock_dir) {
                        BlobSource::Url(url) => BlobSource::Lookaside {
                            url,
                            repo: repository.clone(),
                            manifest: m.digest.clone(),
                        },
                        file => file,
                    };
                    (sig.blob(), source)
                })
                .collect();
            Ok(image
                .blobs()
                .into_iter()
                .map(
                    |blob| match signatures.iter().find(|(s, _)| s.digest == blob.digest) {
                        Some((_, source)) => (blob, source.clone()),
                        None => (blob, registry.clone()),
                    },
                )
                .collect())
        }
        SourceKind::OciLayout => {
            let dir = image
                .path
                .as_ref()
                .with_context(|| format!("lock entry `{}` lacks `path`", image.id))?;
            Ok(everything_from(BlobSource::Layout(lock_dir.join(dir))))
        }
        SourceKind::Appc | SourceKind::AciUrl | SourceKind::AciFile => {
            let (Some(aci), Some(url)) = (&image.aci, &image.url) else {
                anyhow::bail!("lock entry `{}` lacks `aci` or `url`", image.id);
            };
            let mut out = vec![(aci.clone(), location(url, lock_dir))];
            if let Some(sig) = &image.signature {
                out.push((sig.blob(), location(&sig.url, lock_dir)));
            }
            Ok(out)
        }
    }
}

/// Works out what is present and what must be fetched. Reads only file metadata. With no
/// store (a dry run before the first sync), every blob is missing.
pub fn plan(lock: &Lock, lock_dir: &Path, store: Option<&Store>) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        images: lock.images.len(),
        ..Plan::default()
    };
    let mut seen: BTreeMap<crate::digest::Digest, usize> = BTreeMap::new();
    for image in lock.images.values() {
        plan.refs.extend(image.refs());
        for (blob, source) in blob_sources(image, lock_dir)? {
            if let Some(&i) = seen.get(&blob.digest) {
                if let Some(m) = plan
                    .missing
                    .get_mut(i)
                    .filter(|m| m.blob.digest == blob.digest)
                {
                    m.images.push(image.id.clone());
                }
                continue;
            }
            plan.blobs += 1;
            plan.bytes += blob.size;
            if store.is_some_and(|store| store.contains(&blob)) {
                seen.insert(blob.digest.clone(), usize::MAX);
                plan.present += 1;
                continue;
            }
            seen.insert(blob.digest.clone(), plan.missing.len());
            plan.missing.push(MissingBlob {
                blob,
                source,
                images: vec![image.id.clone()],
            });
        }
    }
    plan.missing.sort_by(|a, b| {
        b.blob
            .size
            .cmp(&a.blob.size)
            .then_with(|| a.blob.digest.cmp(&b.blob.digest))
    });
    Ok(plan)
}

/// What [`execute`] stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Blobs fetched whole in this run.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Downloads that resumed from what an earlier, interrupted run left on disk.
    pub resumed: usize,
    /// The bytes those downloads fetched in this run (what was on disk is not counted).
    pub resumed_bytes: u64,
}

/// A sync stopped by Ctrl-C: what it stored stays, and so do partial downloads.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted: {stored} of {missing} missing blobs stored; partial downloads resume next time"
)]
pub struct Interrupted {
    /// Blobs stored before the interruption.
    pub stored: usize,
    /// Blobs the plan lacked.
    pub missing: usize,
}

/// Fetches every missing blob into the store (names nothing: see [`name_images`]).
/// When `interrupt` completes first (Ctrl-C), stops the downloads and returns
/// [`Interrupted`] (exit code 130): every blob already stored stays, and what
/// the downloads under way got stays in `ingest/` for the next run to resume.
pub async fn execute(
    plan: &Plan,
    store: &Store,
    client: impl FnOnce() -> anyhow::Result<Arc<RegistryClient>>,
    mirrors: &Mirrors,
    reporter: Arc<dyn Reporter>,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Fetched> {
    if plan.missing.is_empty() {
        return Ok(Fetched::default());
    }
    let client = if plan.needs_network().next().is_some() {
        Some(client()?)
    } else {
        None
    };
    reporter.start(plan.missing.len(), plan.missing_bytes());
    let stored = Arc::new(AtomicUsize::new(0));
    let jobs = plan.missing.iter().cloned().map(|missing| {
        let store = store.clone();
        let client = client.clone();
        let reporter = reporter.clone();
        let mirrors = mirrors.clone();
        let stored = stored.clone();
        async move {
            let one = OneBlob {
                reporter: reporter.as_ref(),
                kept: AtomicU64::new(0),
            };
            let result = fetch(&missing, &store, client.as_deref(), &mirrors, &one).await;
            result.with_context(|| {
                format!(
                    "cannot fetch blob {} ({}, {} bytes) for image `{}`",
                    missing.blob.digest,
                    missing.blob.media_type,
                    missing.blob.size,
                    missing.images.join("`, `")
                )
            })?;
            stored.fetch_add(1, Ordering::Relaxed);
            Ok((missing.blob.size, one.kept.into_inner()))
        }
    });
    let fetched = tokio::select! {
        biased;
        () = interrupt => {
            reporter.finish();
            let stopped = Interrupted {
                stored: stored.load(Ordering::Relaxed),
                missing: plan.missing.len(),
            };
            return Err(crate::errors::interrupted(crate::errors::with_hint(
                stopped,
                "run `imagelock sync` again: it fetches only what is still missing",
            )));
        }
        fetched = concurrency::run_bounded(concurrency::PARALLEL_DOWNLOADS, jobs) => fetched,
    };
    reporter.finish();
    let mut out = Fetched::default();
    for (size, kept) in fetched? {
        if kept > 0 {
            out.resumed += 1;
            out.resumed_bytes += size.saturating_sub(kept);
        } else {
            out.blobs += 1;
            out.bytes += size;
        }
    }
    Ok(out)
}

/// The reporter of one blob's fetch: forwards everything to the phase's
/// reporter and remembers the bytes the download resumed from.
struct OneBlob<'r> {
    reporter: &'r dyn Reporter,
    kept: AtomicU64,
}

impl Reporter for OneBlob<'_> {
    fn begin(&self, phase: crate::progress::Phase, items: usize, bytes: u64) {
        self.reporter.begin(phase, items, bytes);
    }
    fn bytes(&self, n: u64) {
        self.reporter.bytes(n);
    }
    fn resumed(&self, n: u64) {
        self.kept.fetch_add(n, Ordering::Relaxed);
        self.reporter.resumed(n);
    }
    fn item_done(&self) {
        self.reporter.item_done();
    }
    fn blob_done(&self, blob: &Blob) {
        self.reporter.blob_done(blob);
    }
    fn finish(&self) {
        self.reporter.finish();
    }
}

/// Records every image's name in the store's `index.json`. Call it only
/// once the lock's pins are checked against the stored bytes
/// ([`crate::verify::check_pins`]): a name is what other tools trust.
pub async fn name_images(plan: &Plan, store: &Store) -> anyhow::Result<()> {
    let refs = plan.refs.clone();
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.set_refs(&refs))
        .await
        .context("the index writer panicked")??;
    Ok(())
}

/// Registries to read from before the origin (`sync --mirror`, `[mirrors]`).
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    /// Tried in order.
    pub mirrors: Vec<crate::airgap::mirror::Mirror>,
    /// Never fall back to the origin.
    pub only: bool,
    /// Base URL of the lookaside store of the mirrors' simple signatures.
    pub lookaside: Option<String>,
}

async fn fetch(
    missing: &MissingBlob,
    store: &Store,
    client: Option<&RegistryClient>,
    mirrors: &Mirrors,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let blob = &missing.blob;
    match &missing.source {
        BlobSource::Layout(_) | BlobSource::File(_) => {
            let path = match &missing.source {
                BlobSource::Layout(dir) => dir
                    .join("blobs")
                    .join(blob.digest.algorithm().as_str())
                    .join(blob.digest.hex()),
                BlobSource::File(path) => path.clone(),
                _ => unreachable!("matched by the outer arm"),
            };
            let store = store.clone();
            let blob = blob.clone();
            let copied = tokio::task::spawn_blocking(move || copy_file(&path, &blob, &store))
                .await
                .context("a copy task panicked")??;
            reporter.bytes(copied);
        }
        BlobSource::Registry(repo) => {
            let client = client.expect("a client exists whenever a registry blob is missing");
            let repos: Vec<Repository> = mirrors
                .mirrors
                .iter()
                .map(|m| m.repository_for(repo))
                .collect();
            let candidates: Vec<Remote> = repos.iter().map(Remote::Registry).collect();
            from_mirrors(
                client,
                &candidates,
                mirrors.only,
                blob,
                store,
                reporter,
                || fetch_from_registry(client, repo, blob, store, reporter),
            )
            .await?;
        }
        BlobSource::Url(url) => {
            let client = client.expect("a client exists whenever a URL blob is missing");
            // ACIs and their signatures are on mirrors by digest.
            let repos: Vec<Repository> =
                mirrors.mirrors.iter().map(|m| m.aci_repository()).collect();
            let candidates: Vec<Remote> = repos.iter().map(Remote::Registry).collect();
            let only = mirrors.only && !candidates.is_empty();
            let remote = Remote::Url(url);
            from_mirrors(client, &candidates, only, blob, store, reporter, || {
                download_resumable(client, &remote, blob, store, reporter)
            })
            .await?;
        }
        BlobSource::Lookaside {
            url,
            repo,
            manifest,
        } => {
            let client = client.expect("a client exists whenever a signature is missing");
            // The mirrors' lookaside store first, when there is one; without
            // one, signatures come from the image's own lookaside even under
            // --mirror-only (a lookaside is not the origin registry).
            let urls: Vec<String> = match &mirrors.lookaside {
                Some(base) => mirrors
                    .mirrors
                    .iter()
                    .map(|m| {
                        let path = crate::airgap::mirror::lookaside_path(
                            &m.repository_for(repo),
                            manifest,
                        );
                        format!("{}/{path}", base.trim_end_matches('/'))
                    })
                    .collect(),
                None => Vec::new(),
            };
            let candidates: Vec<Remote> = urls.iter().map(|u| Remote::Url(u)).collect();
            let only = mirrors.only && !candidates.is_empty();
            let hint = !mirrors.mirrors.is_empty() && mirrors.lookaside.is_none();
            from_mirrors(client, &candidates, only, blob, store, reporter, || async {
                let fetched = download_resumable(client, &Remote::Url(url), blob, store, reporter).await;
                fetched.map_err(|e| {
                    if hint {
                        crate::errors::with_hint(
                            e,
                            "signatures come from each image's own lookaside unless the mirrors have one: serve what `push --lookaside-staging DIR` wrote and set `[mirrors] lookaside` (or `--mirror-lookaside URL`)",
                        )
                    } else {
                        e
                    }
                })
            })
            .await?;
        }
    }
    reporter.blob_done(blob);
    Ok(())
}

/// Tries each mirror source in turn (a repository of a mirror, or a URL in
/// the mirrors' lookaside store), then `origin` unless `only`.
async fn from_mirrors<F, Fut>(
    client: &RegistryClient,
    candidates: &[Remote<'_>],
    only: bool,
    blob: &Blob,
    store: &Store,
    reporter: &dyn Reporter,
    origin: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Blob>>,
{
    let mut misses = Vec::new();
    for candidate in candidates {
        let (fetched, place) = match candidate {
            Remote::Registry(repo) => (
                fetch_from_mirror(client, repo, blob, store, reporter).await,
                format!("{}/{}", repo.base, repo.path),
            ),
            Remote::Url(url) => (
                download_resumable(client, candidate, blob, store, reporter).await,
                (*url).to_owned(),
            ),
        };
        match fetched {
            Ok(_) => return Ok(()),
            Err(e) => misses.push(format!("  {place}: {e:#}")),
        }
    }
    if only {
        return Err(no_mirror_has(blob, &misses));
    }
    origin().await.map(drop)
}

/// The error of a `--mirror-only` sync when no mirror served `blob`.
fn no_mirror_has(blob: &Blob, misses: &[String]) -> anyhow::Error {
    crate::errors::hinted(
        format!(
            "no mirror has blob {} (--mirror-only):\n{}",
            blob.digest,
            misses.join("\n")
        ),
        "push the locked images to the mirror with `imagelock push PREFIX` (signatures: `--lookaside-staging DIR`, served at `[mirrors] lookaside`), or sync without --mirror-only",
    )
}

/// Fetches `blob` from a mirror repository like [`fetch_from_registry`], and
/// a manifest the mirror lacks as a manifest from its blobs: `push` stores an
/// index there as a plain blob when the lock pins only some of its platforms
/// (a registry refuses an index whose children it lacks). The bytes are
/// checked against the lock's digest either way.
async fn fetch_from_mirror(
    client: &RegistryClient,
    repo: &Repository,
    blob: &Blob,
    store: &Store,
    reporter: &dyn Reporter,
) -> anyhow::Result<Blob> {
    match fetch_from_registry(client, repo, blob, store, reporter).await {
        Err(e)
            if oci::manifest_kind(&blob.media_type).is_some()
                && matches!(
                    e.downcast_ref::<RegistryError>(),
                    Some(RegistryError::Status { status, .. }) if *status == reqwest::StatusCode::NOT_FOUND
                ) =>
        {
            download_resumable(client, &Remote::Registry(repo), blob, store, reporter)
                .await
                .map_err(|blob_error| {
                    anyhow::anyhow!("not as a manifest ({e:#}) nor as a blob ({blob_error:#})")
                })
        }
        fetched => fetched,
    }
}

/// Fetches `blob` from a registry repository: manifests by digest (capped,
/// hashed), other blobs resumably.
async fn fetch_from_registry(
    client: &RegistryClient,
    repo: &Repository,
    blob: &Blob,
    store: &Store,
    reporter: &dyn Reporter,
) -> anyhow::Result<Blob> {
    if oci::manifest_kind(&blob.media_type).is_some() {
        let fetched = client.get_manifest(repo, &blob.digest.to_string()).await?;
        reporter.bytes(fetched.bytes.len() as u64);
        store.insert_bytes(blob, &fetched.bytes)?;
        Ok(blob.clone())
    } else {
        download_resumable(client, &Remote::Registry(repo), blob, store, reporter).await
    }
}
