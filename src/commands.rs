//! The commands: thin wrappers that load files, call the core modules and
//! report through the [`Printer`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::cli::{LockMode, Settings, SyncSettings};
use crate::concurrency;
use crate::edit::{self, NewImage};
use crate::errors::{hinted, with_hint};
use crate::lockfile::{Lock, LockError, Staleness, lock_path_for};
use crate::manifest::{Manifest, ManifestError};
use crate::printer::{human_bytes, human_duration, plural};
use crate::registry::{HttpOptions, LazyClient};
use crate::resolve::Resolver;
use crate::store::Store;
use crate::trust::TrustStore;

fn load_manifest(path: &Path) -> anyhow::Result<Manifest> {
    match Manifest::load(path) {
        Ok(m) => Ok(m),
        Err(e @ ManifestError::Missing { .. }) => Err(with_hint(
            e,
            "create one with `imagelock init`, or point at one with `--manifest PATH`",
        )),
        Err(e @ (ManifestError::Syntax { .. } | ManifestError::Invalid { .. })) => {
            Err(with_hint(e, format!("fix the entry in {}", path.display())))
        }
        Err(e) => Err(e.into()),
    }
}

/// A stale lock (exit code 3), naming each stale entry and the keys that changed.
fn stale_error(
    lock_path: &Path,
    old: &Lock,
    manifest: &Manifest,
    stale: &Staleness,
    flag: &str,
) -> anyhow::Error {
    let details = crate::drift::explain(old, manifest, stale);
    crate::errors::stale(hinted(
        format!(
            "{} is out of date with {} ({}):\n  {}",
            lock_path.display(),
            manifest.path.display(),
            stale.describe(),
            details.join("\n  ")
        ),
        format!("run `imagelock lock` and commit the result; {flag} refuses to change the lock"),
    ))
}

/// `imagelock init`.
pub fn init(settings: &Settings, force: bool) -> anyhow::Result<()> {
    let path = &settings.manifest;
    if path.exists() && !force {
        return Err(hinted(
            format!("{} already exists", path.display()),
            "edit it, or pass `--force` to replace it with the template",
        ));
    }
    crate::fsutil::write_atomic(path, edit::INIT_TEMPLATE.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    settings
        .printer
        .status(format!("Created {}", path.display()));
    Ok(())
}

/// What `add` was asked to add.
pub struct AddRequest {
    /// The new ID.
    pub id: String,
    /// The new entry.
    pub image: NewImage,
    /// Lock right away.
    pub lock: bool,
}

/// `imagelock add`.
pub async fn add(settings: &Settings, request: AddRequest) -> anyhow::Result<()> {
    let path = &settings.manifest;
    let text = std::fs::read_to_string(path).map_err(|e| {
        with_hint(
            anyhow::anyhow!("cannot read {}: {e}", path.display()),
            "create it with `imagelock init`",
        )
    })?;
    if !crate::manifest::is_valid_id(&request.id) {
        let suggestion: String = request
            .id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        return Err(crate::errors::usage(
            format!(
                "`{}` is not a valid image ID: use ASCII letters, digits, '-', '_' and '.'",
                request.id
            ),
            format!("e.g. `imagelock add {suggestion} ...`"),
        ));
    }
    let updated = edit::add_image(&text, &request.id, &request.image).map_err(|e| match e {
        edit::EditError::Exists(_) => with_hint(
            e,
            format!("remove it first with `imagelock remove {}`", request.id),
        ),
        e => e.into(),
    })?;
    // Validate the result before writing, so a bad reference never lands in the file.
    Manifest::parse(path, &updated).context("the new entry is not valid")?;
    crate::fsutil::write_atomic(path, updated.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let (kind, value) = &request.image.source;
    settings.printer.status(format!(
        "Added `{}` ({kind} {value}) to {}",
        request.id,
        path.display()
    ));
    if request.lock {
        lock(settings, false).await
    } else {
        settings.printer.status("Run `imagelock lock` to pin it.");
        Ok(())
    }
}

/// `imagelock remove`.
pub fn remove(settings: &Settings, ids: &[String]) -> anyhow::Result<()> {
    let path = &settings.manifest;
    let mut text = std::fs::read_to_string(path).map_err(|e| {
        with_hint(
            anyhow::anyhow!("cannot read {}: {e}", path.display()),
            "run it where images.toml is, point at it with `--manifest PATH`, or create one with `imagelock init`",
        )
    })?;
    for id in ids {
        text = edit::remove_image(&text, id).map_err(|e| match e {
            edit::EditError::Unknown(_) => with_hint(
                e,
                format!(
                    "the images in {} are the [images.ID] tables",
                    path.display()
                ),
            ),
            e => e.into(),
        })?;
    }
    crate::fsutil::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    settings.printer.status(format!(
        "Removed {} from {}",
        ids.join(", "),
        path.display()
    ));
    settings
        .printer
        .status("Run `imagelock lock` to update images.lock.");
    Ok(())
}

/// Resolves the stale entries of `old`; fresh entries are kept as they are.
/// Removed and re-resolved entries go together with the dependencies they pulled in.
async fn relock(resolver: Arc<Resolver>, old: &Lock, stale: &Staleness) -> anyhow::Result<Lock> {
    let redo: Vec<&String> = stale.added.iter().chain(&stale.changed).collect();
    let mut new = old.clone();
    new.images.retain(|id, image| {
        let root = image.dependency_of.as_ref().unwrap_or(id);
        !stale.removed.contains(root) && !redo.contains(&root)
    });
    let jobs = redo.into_iter().map(|id| {
        let resolver = resolver.clone();
        let id = id.clone();
        async move {
            let manifest = &resolver.manifest;
            let spec = &manifest.images[&id];
            let result = resolver.resolve(spec).await;
            result.with_context(|| {
                format!(
                    "cannot lock image `{id}` ({}, {}:{})",
                    spec.request(),
                    manifest.path.display(),
                    spec.line
                )
            })
        }
    });
    for images in concurrency::run_bounded(concurrency::PARALLEL_RESOLVES, jobs).await? {
        for image in images {
            new.images.insert(image.id.clone(), image);
        }
    }
    Ok(new)
}

/// A resolver for `manifest`; the store is opened only when an entry to resolve is an ACI
/// (verified ACIs are stored as they are pinned).
fn resolver_for(
    settings: &Settings,
    manifest: Arc<Manifest>,
    stale: &Staleness,
) -> anyhow::Result<Arc<Resolver>> {
    let needs_store = stale
        .added
        .iter()
        .chain(&stale.changed)
        .any(|id| manifest.images[id].is_aci());
    let store = if needs_store {
        Some(open_store(settings, manifest.store_path.clone())?.1)
    } else {
        None
    };
    // Held for the whole resolution: gc must not run while ACIs are stored.
    let store_lock = store.as_ref().map(Store::lock_shared).transpose()?;
    Ok(Arc::new(Resolver {
        _store_lock: store_lock,
        trust: TrustStore::new(&manifest),
        client: LazyClient::new(http_options(settings, manifest.insecure_http_hosts())),
        manifest,
        store,
    }))
}

/// The store `--store` / `IMAGELOCK_STORE` / `[store] path` / the per-user default names, opened.
fn open_store(
    settings: &Settings,
    manifest_store: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, Store)> {
    let path = store_location(settings, manifest_store);
    let store = Store::open(&path)
        .with_context(|| format!("cannot open the store at {}", path.display()))?;
    Ok((path, store))
}

/// The store the settings name, if one exists there (nothing is created).
fn existing_store(
    settings: &Settings,
    manifest_store: Option<PathBuf>,
) -> (PathBuf, Option<Store>) {
    let path = store_location(settings, manifest_store);
    let store = Store::open_existing(&path);
    (path, store)
}

/// Where the store is: `--store` / `IMAGELOCK_STORE`, `[store] path`, the per-user default.
fn store_location(settings: &Settings, manifest_store: Option<PathBuf>) -> PathBuf {
    settings
        .store_override
        .clone()
        .or(manifest_store)
        .unwrap_or_else(crate::cli::default_store)
}

fn http_options(settings: &Settings, insecure_http: Vec<String>) -> HttpOptions {
    HttpOptions {
        ca_files: settings.ca_files.clone(),
        resolve: settings.resolve.clone(),
        insecure_http,
        retry: settings.retry,
    }
}

/// `imagelock lock`.
pub async fn lock(settings: &Settings, check: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let manifest = Arc::new(load_manifest(&settings.manifest)?);
    let lock_path = lock_path_for(&settings.manifest);
    let printer = settings.printer;
    let (old, conflicted) = match Lock::load(&lock_path) {
        Err(e @ LockError::Conflicted { .. }) if check => {
            return Err(crate::errors::stale(e.into()));
        }
        Err(LockError::Conflicted { .. }) => {
            (recover_conflicted(&lock_path, &manifest, printer)?, true)
        }
        loaded => (loaded?.unwrap_or_default(), false),
    };
    let stale = old.staleness(manifest.images.values());
    if check {
        if !stale.is_fresh() {
            return Err(stale_error(
                &lock_path,
                &old,
                &manifest,
                &stale,
                "`lock --check`",
            ));
        }
        printer.status(format!(
            "{} is up to date ({})",
            lock_path.display(),
            plural(old.images.len(), "image")
        ));
        printer.json(&json!({ "lock": lock_path, "fresh": true }));
        return Ok(());
    }
    let resolver = resolver_for(settings, manifest.clone(), &stale)?;
    let store = resolver.store.clone();
    let new = relock(resolver, &old, &stale).await?;
    let written = new
        .write_if_changed(&lock_path)
        .with_context(|| format!("cannot write {}", lock_path.display()))?;
    if let Some(store) = store {
        // The ACIs just stored stay alive for gc until the next sync.
        crate::gc::register(&store, &lock_path, &new).with_context(|| {
            format!(
                "cannot register {} as a root of the store",
                lock_path.display()
            )
        })?;
    }
    let status_of = |id: &str| {
        if stale.added.iter().any(|a| a == id) {
            "added"
        } else if stale.changed.iter().any(|c| c == id) {
            "changed"
        } else {
            "unchanged"
        }
    };
    for (id, image) in &new.images {
        printer.detail(format!(
            "  {id}: {} {} ({})",
            image.request,
            image.root().digest,
            status_of(id)
        ));
    }
    if stale.is_fresh() && conflicted {
        printer.status(format!(
            "Resolved the merge conflict in {} ({}, none to resolve again)",
            lock_path.display(),
            plural(new.images.len(), "image")
        ));
    } else if stale.is_fresh() {
        printer.status(format!(
            "{} is up to date ({})",
            lock_path.display(),
            plural(new.images.len(), "image")
        ));
    } else if conflicted {
        let redone: Vec<&str> = stale
            .added
            .iter()
            .chain(&stale.changed)
            .map(String::as_str)
            .collect();
        printer.status(format!(
            "Resolved the merge conflict in {}: locked {} in {} (resolved again: {})",
            lock_path.display(),
            plural(new.images.len(), "image"),
            human_duration(started.elapsed()),
            redone.join(", ")
        ));
    } else {
        printer.status(format!(
            "Locked {} in {} ({})",
            plural(new.images.len(), "image"),
            human_duration(started.elapsed()),
            stale.describe()
        ));
    }
    let mut images: Vec<serde_json::Value> = new
        .images
        .values()
        .map(|i| json!({ "id": i.id, "status": status_of(&i.id), "request": i.request, "digest": i.root().digest.to_string(), "verified": i.verified }))
        .collect();
    images.extend(
        stale
            .removed
            .iter()
            .map(|id| json!({ "id": id, "status": "removed" })),
    );
    printer.json(&json!({ "lock": lock_path, "written": written, "images": images }));
    Ok(())
}

/// Reads `[store] path` from the manifest without validating the rest (for `--frozen`).
fn store_from_manifest_leniently(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let store = table.get("store")?.get("path")?.as_str()?;
    Some(path.parent().unwrap_or(Path::new("")).join(store))
}

/// `imagelock sync`.
pub async fn sync(settings: &Settings, options: SyncSettings) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let lock_path = lock_path_for(&settings.manifest);
    let missing_lock = || {
        hinted(
            format!("no lock file at {}", lock_path.display()),
            "run `imagelock lock` to create it (and commit it)",
        )
    };
    let (lock, manifest, insecure_http) = match options.mode {
        LockMode::Frozen => {
            let lock = Lock::load(&lock_path)?.ok_or_else(missing_lock)?;
            // Without the manifest, plain HTTP is allowed only for the hosts the lock was made with.
            let hosts = lock.plain_http_hosts();
            (lock, None, hosts)
        }
        LockMode::Locked | LockMode::Write => {
            let manifest = Arc::new(load_manifest(&settings.manifest)?);
            let old = Lock::load(&lock_path)?;
            if old.is_none() && options.mode == LockMode::Locked {
                return Err(missing_lock());
            }
            let old = old.unwrap_or_default();
            let stale = old.staleness(manifest.images.values());
            let lock = if stale.is_fresh() {
                old
            } else if options.mode == LockMode::Locked {
                return Err(stale_error(
                    &lock_path,
                    &old,
                    &manifest,
                    &stale,
                    "`sync --locked`",
                ));
            } else if options.offline {
                return Err(crate::errors::stale(hinted(
                    format!(
                        "{} is out of date ({}) and --offline forbids resolving:\n  {}",
                        lock_path.display(),
                        stale.describe(),
                        crate::drift::explain(&old, &manifest, &stale).join("\n  ")
                    ),
                    "run `imagelock lock` with network access, or `imagelock sync --frozen --offline` to use the lock as it is",
                )));
            } else {
                let resolver = resolver_for(settings, manifest.clone(), &stale)?;
                let new = relock(resolver, &old, &stale).await?;
                new.write_if_changed(&lock_path)
                    .with_context(|| format!("cannot write {}", lock_path.display()))?;
                printer.status(format!(
                    "Updated {} ({})",
                    lock_path.display(),
                    stale.describe()
                ));
                new
            };
            let hosts = manifest.insecure_http_hosts();
            (lock, Some(manifest), hosts)
        }
    };
    let client = LazyClient::new(http_options(settings, insecure_http));
    let manifest_store = match &manifest {
        Some(m) => m.store_path.clone(),
        None => store_from_manifest_leniently(&settings.manifest),
    };
    if let Some(manifest) = &manifest {
        let problems: Vec<String> = lock
            .images
            .values()
            .filter_map(|image| {
                crate::verify::policy_problem(image, &lock, manifest)
                    .map(|p| format!("  {}: {p}", image.id))
            })
            .collect();
        if !problems.is_empty() {
            return Err(hinted(
                format!(
                    "{} does not satisfy the trust policy of {}:\n{}",
                    lock_path.display(),
                    manifest.path.display(),
                    problems.join("\n")
                ),
                "re-lock the named images (remove them from images.lock, then `imagelock lock`), or change [trust] / `insecure` in images.toml",
            ));
        }
    }
    let (store_path, store) = open_store(settings, manifest_store)?;
    let shared = store.lock_shared()?;
    let imported = match &options.from {
        Some(bundle) => import_bundle(settings, &store, bundle).await?.digests,
        None => Vec::new(),
    };
    let lock_dir = lock_path.parent().unwrap_or(Path::new("")).to_owned();
    let plan = crate::sync::plan(&lock, &lock_dir, &store)?;
    let summary = json!({
        "store": store_path,
        "images": plan.images,
        "blobs": plan.blobs,
        "bytes": plan.bytes,
        "present": plan.present,
        "fetch": plan.missing.len(),
        "fetch_bytes": plan.missing_bytes(),
        "dry_run": options.dry_run,
    });
    if options.dry_run {
        for m in &plan.missing {
            printer.status(format!(
                "Would fetch {} ({}) for {}",
                m.blob.digest,
                human_bytes(m.blob.size),
                m.images.join(", ")
            ));
        }
        printer.status(format!(
            "Would fetch {} ({}) for {}; {} already present",
            plural(plan.missing.len(), "blob"),
            human_bytes(plan.missing_bytes()),
            plural(plan.images, "image"),
            plan.present
        ));
        printer.json(&summary);
        return Ok(());
    }
    if options.offline {
        let offline_missing: Vec<String> = plan
            .needs_network()
            .map(|m| {
                format!(
                    "  {} ({}) for {}",
                    m.blob.digest,
                    human_bytes(m.blob.size),
                    m.images.join(", ")
                )
            })
            .collect();
        if !offline_missing.is_empty() {
            return Err(hinted(
                format!(
                    "--offline: {} needed by the lock are not in the store at {}:\n{}",
                    plural(offline_missing.len(), "blob"),
                    store_path.display(),
                    offline_missing.join("\n")
                ),
                "run `imagelock sync` once with network access to fill the store",
            ));
        }
    }
    let mirrors = sync_mirrors(&options, manifest.as_deref(), &lock)?;
    crate::sync::execute(&plan, &store, || client.get(), &mirrors, printer.reporter()).await?;
    crate::gc::register(&store, &lock_path, &lock).with_context(|| {
        format!(
            "cannot register {} as a root of the store",
            lock_path.display()
        )
    })?;
    let signatures = match &manifest {
        Some(manifest) => {
            let fetched = plan
                .missing
                .iter()
                .map(|m| m.blob.digest.clone())
                .chain(imported)
                .collect();
            check_new_signatures(&lock, &fetched, &store, manifest).await?
        }
        None => {
            let fetched_signed = plan.missing.iter().any(|m| {
                m.images
                    .iter()
                    .any(|id| lock.images.get(id).is_some_and(|i| i.verified))
            });
            if fetched_signed {
                printer.status(
                    "Signatures not re-checked: --frozen does not read images.toml, where the keys are; run `imagelock verify`",
                );
            }
            0
        }
    };
    let took = human_duration(started.elapsed());
    if signatures > 0 {
        printer.status(format!(
            "Verified {} with the keys in {}",
            plural(signatures, "signature"),
            settings.manifest.display()
        ));
    }
    if plan.missing.is_empty() {
        printer.status(format!(
            "Synced {}: all {} already in the store ({took})",
            plural(plan.images, "image"),
            plural(plan.blobs, "blob")
        ));
    } else {
        printer.status(format!(
            "Synced {}, {} ({}) in {took}{}",
            plural(plan.images, "image"),
            plural(plan.missing.len(), "blob"),
            human_bytes(plan.missing_bytes()),
            if plan.present > 0 {
                format!("; {} already present", plan.present)
            } else {
                String::new()
            }
        ));
    }
    if options.prune {
        drop(shared);
        let _exclusive = store.lock_exclusive()?;
        let keep = lock.blobs().into_keys().collect();
        let pruned = crate::gc::collect(&store, &keep, &[], false)?;
        printer.status(format!(
            "Pruned {} ({}) that {} does not need",
            plural(pruned.blobs.len(), "blob"),
            human_bytes(pruned.bytes()),
            lock_path.display()
        ));
    }
    printer.json(&summary);
    Ok(())
}

/// Imports `bundle` into `store` on a blocking thread, reporting it.
async fn import_bundle(
    settings: &Settings,
    store: &Store,
    bundle: &Path,
) -> anyhow::Result<crate::bundle::Imported> {
    let started = Instant::now();
    let (store, path) = (store.clone(), bundle.to_owned());
    let (_, imported) = tokio::task::spawn_blocking(move || crate::bundle::import(&store, &path))
        .await
        .context("the bundle reader panicked")??;
    settings.printer.status(format!(
        "Imported {} from {}: {} ({}) stored, {} already present ({})",
        plural(imported.images, "image"),
        bundle.display(),
        plural(imported.stored, "blob"),
        human_bytes(imported.bytes),
        imported.present,
        human_duration(started.elapsed())
    ));
    Ok(imported)
}

/// The lock at `lock_path`, or an error saying how to make one (`hint`).
fn require_lock(lock_path: &Path, hint: &str) -> anyhow::Result<Lock> {
    Lock::load(lock_path)?.ok_or_else(|| {
        hinted(
            format!("no lock file at {}", lock_path.display()),
            hint.to_owned(),
        )
    })
}

/// `imagelock export`.
pub fn export(
    settings: &Settings,
    file: &Path,
    images: &[String],
    platforms: &[String],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` and `imagelock sync` first",
    )?;
    let stale = lock.staleness(manifest.images.values());
    if !stale.is_fresh() {
        return Err(stale_error(
            &lock_path, &lock, &manifest, &stale, "`export`",
        ));
    }
    let lock = crate::bundle::subset(&lock, images, platforms)?;
    let (store_path, store) = existing_store(settings, manifest.store_path.clone());
    let store = store.ok_or_else(|| {
        hinted(
            format!("there is no store at {}", store_path.display()),
            "run `imagelock sync` first, so the bundle can carry the images",
        )
    })?;
    let _shared = store.lock_shared()?;
    // Each key file once, named by its path under the manifest's directory
    // (`..` and root components dropped: a tar entry may not climb out).
    let keys: Vec<(String, PathBuf)> = manifest
        .trust
        .values()
        .flat_map(|t| t.keys.iter())
        .map(|k| {
            let name: PathBuf = Path::new(k)
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            (name.to_string_lossy().into_owned(), manifest.dir().join(k))
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let exported = crate::bundle::export(&store, &lock, &keys, file)?;
    printer.status(format!(
        "Exported {}, {} ({}) and {} to {} ({}) in {}",
        plural(exported.images, "image"),
        plural(exported.blobs, "blob"),
        human_bytes(exported.bytes),
        plural(exported.keys, "key file"),
        file.display(),
        human_bytes(exported.file_bytes),
        human_duration(started.elapsed())
    ));
    printer.json(&json!({ "bundle": file, "exported": exported }));
    Ok(())
}

/// `imagelock import`.
pub async fn import(settings: &Settings, file: &Path) -> anyhow::Result<()> {
    let (_, store) = open_store(settings, store_from_manifest_leniently(&settings.manifest))?;
    let _shared = store.lock_shared()?;
    let imported = import_bundle(settings, &store, file).await?;
    settings
        .printer
        .status("Run `imagelock sync --offline` to check that the project's lock is satisfied.");
    settings
        .printer
        .json(&json!({ "bundle": file, "imported": imported }));
    Ok(())
}

/// The mirrors a sync reads from: `--mirror` first, then `[mirrors]`.
fn sync_mirrors(
    options: &SyncSettings,
    manifest: Option<&Manifest>,
    lock: &Lock,
) -> anyhow::Result<crate::sync::Mirrors> {
    let from_manifest = manifest.map(|m| m.mirrors.clone()).unwrap_or_default();
    let plain = |host: &str| {
        manifest.map_or_else(
            || lock.plain_http_hosts().iter().any(|h| h == host),
            |m| m.insecure_http(host),
        )
    };
    let mirrors = options
        .mirrors
        .iter()
        .chain(&from_manifest.prefixes)
        .map(|p| crate::mirror::Mirror::parse(p, plain))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let only = options.mirror_only || from_manifest.only;
    if only && mirrors.is_empty() {
        return Err(hinted(
            "--mirror-only needs a mirror",
            "name one with `--mirror HOST[:PORT][/PATH]` or `[mirrors] prefixes` in images.toml",
        ));
    }
    Ok(crate::sync::Mirrors {
        mirrors,
        only,
        lookaside: options.mirror_lookaside.clone().or(from_manifest.lookaside),
    })
}

/// `imagelock push`.
pub async fn push(settings: &Settings, prefix: &str, staging: Option<&Path>) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` and `imagelock sync` first",
    )?;
    let mirror = crate::mirror::Mirror::parse(prefix, |h| manifest.insecure_http(h))?;
    let (store_path, store) = existing_store(settings, manifest.store_path.clone());
    let store = store.ok_or_else(|| {
        hinted(
            format!("there is no store at {}", store_path.display()),
            "run `imagelock sync` first: push copies from the store",
        )
    })?;
    let _shared = store.lock_shared()?;
    let missing: Vec<String> = lock
        .blobs()
        .into_values()
        .filter(|b| !store.contains(b))
        .map(|b| b.digest.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(hinted(
            format!(
                "the store lacks {} the lock pins (first: {})",
                plural(missing.len(), "blob"),
                missing[0]
            ),
            "run `imagelock sync` first: push copies from the store",
        ));
    }
    let mut hosts = manifest.insecure_http_hosts();
    hosts.extend(lock.plain_http_hosts());
    let client = LazyClient::new(http_options(settings, hosts)).get()?;
    let images: Vec<_> = lock.images.values().cloned().collect();
    let pushed = crate::mirror::push(&client, &store, &images, &mirror, staging).await?;
    printer.status(format!(
        "Pushed {} to {}/{}: {} uploaded ({}), {} mounted, {} already there, {}{} in {}",
        plural(pushed.images, "image"),
        mirror.base,
        mirror.path,
        plural(pushed.uploaded, "blob"),
        human_bytes(pushed.bytes),
        pushed.mounted,
        pushed.present,
        plural(pushed.manifests, "manifest"),
        if pushed.signatures > 0 {
            format!(", {}", plural(pushed.signatures, "signature"))
        } else {
            String::new()
        },
        human_duration(started.elapsed())
    ));
    printer.json(&json!({ "mirror": prefix, "pushed": pushed }));
    Ok(())
}

/// `imagelock gc`.
pub fn gc(settings: &Settings, dry_run: bool) -> anyhow::Result<()> {
    let printer = settings.printer;
    let (store_path, store) =
        existing_store(settings, store_from_manifest_leniently(&settings.manifest));
    let Some(store) = store else {
        printer.status(format!(
            "There is no store at {}: nothing to collect",
            store_path.display()
        ));
        printer.json(&json!({ "store": store_path, "dry_run": dry_run, "bytes_freed": 0 }));
        return Ok(());
    };
    let _exclusive = store.lock_exclusive()?;
    let (keep, dead, live) = crate::gc::live_set(&store)?;
    let collected = crate::gc::collect(&store, &keep, &dead, dry_run)?;
    for (digest, size) in &collected.blobs {
        printer.detail(format!("  {digest} ({})", human_bytes(*size)));
    }
    for root in &collected.dead_roots {
        printer.detail(format!("  dead root {}", root.display()));
    }
    let verb = if dry_run { "Would remove" } else { "Removed" };
    printer.status(format!(
        "{verb} {} ({}), {}, {} and {} from {}; {} live",
        plural(collected.blobs.len(), "blob"),
        human_bytes(collected.bytes()),
        plural(collected.refs.len(), "index ref"),
        plural(collected.rendered.len(), "rendered tree"),
        plural(collected.dead_roots.len(), "dead root"),
        store_path.display(),
        plural(live, "root")
    ));
    printer.json(&json!({
        "store": store_path,
        "dry_run": dry_run,
        "live_roots": live,
        "removed": collected,
        "bytes_freed": collected.bytes(),
    }));
    Ok(())
}

/// `imagelock fsck`.
pub async fn fsck(settings: &Settings, repair: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let (store_path, store) =
        existing_store(settings, store_from_manifest_leniently(&settings.manifest));
    let store = store.ok_or_else(|| {
        hinted(
            format!("there is no store at {}", store_path.display()),
            "`--store DIR` names another store",
        )
    })?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = Lock::load(&lock_path).ok().flatten();
    let needed = lock
        .as_ref()
        .map(crate::fsck::needed_by)
        .unwrap_or_default();
    let report = {
        let _lock = if repair {
            store.lock_exclusive()?
        } else {
            store.lock_shared()?
        };
        let report = crate::fsck::check(&store, &needed).await?;
        if repair && !report.corrupt.is_empty() {
            let moved = crate::fsck::quarantine(&store, &report)?;
            printer.status(format!(
                "Moved {} to {}",
                plural(moved.len(), "corrupt blob"),
                store.root().join("quarantine").display()
            ));
        }
        report
    };
    for (digest, why) in &report.corrupt {
        printer.warn(format!("  corrupt  {digest}: {why}"));
    }
    for (digest, who) in &report.missing {
        printer.warn(format!("  missing  {digest} (needed by {who})"));
    }
    let rate = report.bytes as f64 / started.elapsed().as_secs_f64().max(1e-9);
    printer.status(format!(
        "Checked {} ({}) in {} ({}/s): {} corrupt, {} missing",
        plural(report.blobs, "blob"),
        human_bytes(report.bytes),
        human_duration(started.elapsed()),
        human_bytes(rate as u64),
        report.corrupt.len(),
        report.missing.len()
    ));
    printer.json(&json!({ "store": store_path, "ok": report.ok(), "report": report }));
    if report.ok() {
        return Ok(());
    }
    if repair && lock.is_some() {
        printer.status(format!("Fetching again what {} needs", lock_path.display()));
        let options = SyncSettings {
            mode: LockMode::Frozen,
            offline: false,
            dry_run: false,
            prune: false,
            from: None,
            mirrors: Vec::new(),
            mirror_only: false,
            mirror_lookaside: None,
        };
        let quiet = Settings {
            printer: crate::printer::Printer {
                json: false,
                ..settings.printer
            },
            ..settings.clone()
        };
        sync(&quiet, options).await?;
        let again = crate::fsck::check(&store, &needed).await?;
        if again.corrupt.is_empty() && again.missing.is_empty() {
            printer.status("Repaired: the store is sound");
            return Ok(());
        }
        return Err(hinted(
            format!(
                "{} still has {} corrupt and {} missing blobs after the repair",
                store_path.display(),
                again.corrupt.len(),
                again.missing.len()
            ),
            "blobs only index.json references (no lock needs them) cannot be fetched again; `imagelock gc` drops them",
        ));
    }
    Err(hinted(
        format!(
            "{} has {} corrupt and {} missing blobs",
            store_path.display(),
            report.corrupt.len(),
            report.missing.len()
        ),
        "`imagelock fsck --repair` quarantines corrupt blobs and fetches again what images.lock needs",
    ))
}

/// Re-verifies, with the manifest's keys, the signatures of the images whose
/// blobs this sync fetched or imported (blobs already in the store were
/// verified when they were stored).
async fn check_new_signatures(
    lock: &Lock,
    fetched: &std::collections::BTreeSet<crate::digest::Digest>,
    store: &Store,
    manifest: &Manifest,
) -> anyhow::Result<usize> {
    let images: Vec<crate::lockfile::LockedImage> = lock
        .images
        .values()
        .filter(|i| i.signature.is_some() || i.manifests.iter().any(|m| m.signature.is_some()))
        .filter(|i| i.blobs().iter().any(|b| fetched.contains(&b.digest)))
        .cloned()
        .collect();
    if images.is_empty() {
        return Ok(0);
    }
    let trust = TrustStore::new(manifest);
    let store = store.clone();
    let count = images.len();
    tokio::task::spawn_blocking(move || {
        for image in &images {
            crate::verify::check_pinned_signatures(image, &store, &trust).map_err(|problem| {
                hinted(
                    format!("image `{}`: {problem}", image.id),
                    "check [trust] in images.toml; `imagelock verify` re-checks the whole store",
                )
            })?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("the signature checker panicked")??;
    Ok(count)
}

/// `imagelock verify`.
pub async fn verify(settings: &Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(&lock_path, "run `imagelock lock` to create it")?;
    let (store_path, store) = existing_store(settings, manifest.store_path.clone());
    let store = store.ok_or_else(|| {
        hinted(
            format!("there is no store at {}", store_path.display()),
            "run `imagelock sync` to fill it",
        )
    })?;
    let _shared = store.lock_shared()?;
    let trust = Arc::new(TrustStore::new(&manifest));
    let reports = crate::verify::verify(&lock, &store, &manifest, trust).await?;
    let mut blobs = 0;
    let mut bytes = 0;
    for report in &reports {
        blobs += report.blobs;
        bytes += report.bytes;
        let how = match (&report.signed_by, &report.prefix) {
            (Some(fpr), Some(prefix)) => format!(
                "signed by {} ([trust.\"{prefix}\"])",
                crate::openpgp::format_fingerprint(fpr)
            ),
            _ if report.verified => "signature not checked".to_owned(),
            _ => "unverified (insecure)".to_owned(),
        };
        if report.ok() {
            printer.status(format!(
                "  ok      {}: {}, {}; {how}",
                report.id,
                plural(report.blobs, "blob"),
                human_bytes(report.bytes)
            ));
        } else {
            printer.warn(format!("  FAILED  {}:", report.id));
            for problem in &report.problems {
                printer.warn(format!("          {problem}"));
            }
        }
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.id.as_str())
        .collect();
    printer.json(&json!({
        "lock": lock_path,
        "store": store_path,
        "ok": failed.is_empty(),
        "images": reports,
    }));
    if !failed.is_empty() {
        return Err(hinted(
            format!(
                "verification failed for {} of {}: {}",
                failed.len(),
                plural(reports.len(), "image"),
                failed.join(", ")
            ),
            "missing or corrupt blobs: run `imagelock sync` to fetch them again; signature or key problems: check [trust] in images.toml and run `imagelock lock`",
        ));
    }
    printer.status(format!(
        "Verified {}, {} ({}) in {}",
        plural(reports.len(), "image"),
        plural(blobs, "blob"),
        human_bytes(bytes),
        human_duration(started.elapsed())
    ));
    Ok(())
}

/// `imagelock render`: the lock as written (like `sync --frozen`), the store only.
pub async fn render(
    settings: &Settings,
    request: crate::render::RenderRequest,
) -> anyhow::Result<()> {
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` and `imagelock sync` first",
    )?;
    let store_path = store_location(settings, store_from_manifest_leniently(&settings.manifest));
    let (manifest, printer) = (settings.manifest.clone(), settings.printer);
    tokio::task::spawn_blocking(move || {
        crate::render::run(&manifest, &lock, &store_path, &request, printer)
    })
    .await
    .context("the renderer panicked")?
}

/// Where `trust add` gets keys from.
pub enum KeySource {
    /// A key file.
    File(PathBuf),
    /// The prefix's `ac-discovery-pubkeys`; write only the key with this fingerprint
    /// (or, interactively, what the user confirms).
    Discover {
        /// The fingerprint verified out of band.
        fingerprint: Option<String>,
    },
}

/// `imagelock trust add`.
pub async fn trust_add(settings: &Settings, prefix: &str, source: KeySource) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let printer = settings.printer;
    crate::trust::check_prefix(prefix)?;
    let manifest = load_manifest(&settings.manifest)?;
    let dir = manifest.dir().to_owned();
    let (keys, in_repo) = match &source {
        KeySource::File(path) => {
            let keys = crate::openpgp::load_key_file(path).map_err(|e| {
                with_hint(
                    e,
                    "export the key with `gpg --armor --export FINGERPRINT > key.asc`",
                )
            })?;
            (keys, crate::trust::repo_relative(&dir, path))
        }
        KeySource::Discover { fingerprint } => {
            let client = LazyClient::new(http_options(settings, manifest.insecure_http_hosts()));
            let found = crate::trust::discover_keys(&manifest, prefix, &client.get()?).await?;
            for (url, key) in &found {
                printer.status(format!("Found at {url}:"));
                printer.status(crate::trust::describe_key(key));
            }
            let keys: Vec<crate::openpgp::PublicKey> = match fingerprint {
                Some(wanted) => {
                    let wanted = crate::trust::normalise_fingerprint(wanted);
                    let chosen: Vec<_> = found
                        .into_iter()
                        .map(|(_, k)| k)
                        .filter(|k| k.fingerprint() == wanted)
                        .collect();
                    if chosen.is_empty() {
                        return Err(hinted(
                            format!(
                                "none of the keys discovered for `{prefix}` has fingerprint {}",
                                crate::openpgp::format_fingerprint(&wanted)
                            ),
                            "check the fingerprint with the image's publisher; the keys found are listed above",
                        ));
                    }
                    chosen
                }
                None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
                    eprint!(
                        "Trust {} for images under `{prefix}`? Only answer yes if you checked the fingerprints with the publisher. [yes/no] ",
                        plural(found.len(), "key")
                    );
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    if answer.trim() != "yes" {
                        return Err(hinted(
                            "nothing written: the keys were not confirmed",
                            format!(
                                "check a fingerprint above with the publisher, then run `imagelock trust add {prefix} --discover --fingerprint FPR`"
                            ),
                        ));
                    }
                    found.into_iter().map(|(_, k)| k).collect()
                }
                None => {
                    return Err(hinted(
                        format!(
                            "nothing written: {} found for `{prefix}` but not confirmed",
                            plural(found.len(), "key")
                        ),
                        format!(
                            "check a fingerprint above with the publisher, then run `imagelock trust add {prefix} --discover --fingerprint FPR`"
                        ),
                    ));
                }
            };
            (keys, None)
        }
    };
    for key in &keys {
        crate::trust::check_usable(key)?;
    }
    let files = match in_repo {
        Some(relative) => vec![relative],
        None => keys
            .iter()
            .map(|key| crate::trust::write_key_file(&dir, key))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let mut text = std::fs::read_to_string(&settings.manifest)
        .with_context(|| format!("cannot read {}", settings.manifest.display()))?;
    let mut changed = false;
    for file in &files {
        if let Some(updated) = edit::add_trust_key(&text, prefix, file)? {
            text = updated;
            changed = true;
        }
    }
    if changed {
        Manifest::parse(&settings.manifest, &text).context("the new trust entry is not valid")?;
        crate::fsutil::write_atomic(&settings.manifest, text.as_bytes())
            .with_context(|| format!("cannot write {}", settings.manifest.display()))?;
    }
    for key in &keys {
        printer.status(crate::trust::describe_key(key));
    }
    printer.status(format!(
        "{} {} for `{prefix}` in {} ({})",
        if changed {
            "Trusted"
        } else {
            "Already trusted:"
        },
        plural(keys.len(), "key"),
        settings.manifest.display(),
        files.join(", ")
    ));
    if changed {
        printer.status("Run `imagelock lock` to pin images signed with it.");
    }
    Ok(())
}

/// Starts `lock` from a lock with git conflict markers: the pins both sides
/// agree on (see [`crate::conflict`]); says what it kept and what it resolves again.
fn recover_conflicted(
    lock_path: &Path,
    manifest: &Manifest,
    printer: crate::printer::Printer,
) -> anyhow::Result<Lock> {
    use crate::conflict::Outcome;
    let text = std::fs::read_to_string(lock_path)
        .with_context(|| format!("cannot read {}", lock_path.display()))?;
    // The sides as committed, when git still has them, are exact; the text split at its
    // markers may mix the sides where git merged lines cleanly.
    let (recovered, from) = match crate::history::merge_stages(lock_path) {
        Some((ours, theirs)) => (
            crate::conflict::recover_sides(lock_path, &ours, &theirs, manifest.images.values()),
            "git's record of both sides",
        ),
        None => (
            crate::conflict::recover(lock_path, &text, manifest.images.values()),
            "the two sides between the conflict markers",
        ),
    };
    printer.status(format!(
        "{} has merge conflicts: re-locking it from {}, keeping the pins (read from {from}) that still match it",
        lock_path.display(),
        manifest.path.display()
    ));
    for (side, why) in &recovered.unreadable {
        printer.warn(format!(
            "the {side} side of the conflict is not a valid lock, so none of its pins are kept: {why}"
        ));
    }
    let report = |label: &str, ids: Vec<String>| {
        if !ids.is_empty() {
            printer.status(format!("  {label}: {}", ids.join(", ")));
        }
    };
    report(
        "kept (both sides agree)",
        recovered.ids(|o| *o == Outcome::Agreed),
    );
    for side in ["ours", "theirs"] {
        report(
            &format!("kept (pinned only on {side})"),
            recovered.ids(|o| *o == Outcome::OneSide(side)),
        );
    }
    report(
        "resolving again (the sides pinned it differently)",
        recovered.ids(|o| *o == Outcome::Disagreed),
    );
    report(
        "resolving (no side pinned the entry as it is now)",
        recovered.ids(|o| *o == Outcome::Unpinned),
    );
    Ok(recovered.lock)
}

/// The manifest if it can be read (for key names and the store path), else `None`.
fn manifest_if_any(path: &Path) -> Option<Manifest> {
    Manifest::load(path).ok()
}

/// `imagelock update`.
pub async fn update(settings: &Settings, ids: &[String], dry_run: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let manifest = Arc::new(load_manifest(&settings.manifest)?);
    let lock_path = lock_path_for(&settings.manifest);
    let old = Lock::load(&lock_path)?.unwrap_or_default();
    for id in ids {
        if manifest.images.contains_key(id) {
            continue;
        }
        return Err(
            match old.images.get(id).and_then(|i| i.dependency_of.clone()) {
                Some(root) => crate::errors::usage(
                    format!(
                        "`{id}` is a dependency of `{root}`, not an entry of {}",
                        manifest.path.display()
                    ),
                    format!(
                        "dependencies are re-resolved with the image that needs them: `imagelock update {root}`"
                    ),
                ),
                None => crate::errors::usage(
                    format!("`{id}` is not an image in {}", manifest.path.display()),
                    format!(
                        "the images are: {}; add one with `imagelock add {id} --docker REF`",
                        manifest
                            .images
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            },
        );
    }
    let stale = old.staleness(manifest.images.values());
    let named: Vec<String> = if ids.is_empty() {
        manifest.images.keys().cloned().collect()
    } else {
        ids.to_vec()
    };
    // Everything `lock` would do, plus the named entries even though they did not change.
    let mut changed: Vec<String> = stale
        .changed
        .iter()
        .chain(named.iter().filter(|id| !stale.added.contains(id)))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    let plan = Staleness {
        added: stale.added.clone(),
        changed,
        removed: stale.removed.clone(),
    };
    let resolver = resolver_for(settings, manifest.clone(), &plan)?;
    let store = resolver.store.clone();
    let new = relock(resolver, &old, &plan).await?;
    let redone: Vec<&String> = plan.added.iter().chain(&plan.changed).collect();
    let changes: Vec<crate::report::ImageChange> = crate::report::compare(&old, &new)
        .into_iter()
        .filter(|c| {
            let root = c
                .new
                .as_ref()
                .or(c.old.as_ref())
                .and_then(|s| s.dependency_of.clone())
                .unwrap_or_else(|| c.id.clone());
            c.status != crate::report::Status::Unchanged || redone.contains(&&root)
        })
        .collect();
    for line in crate::report::render_changes(&changes, true) {
        printer.status(line);
    }
    let (added, removed, updated, unchanged) = crate::report::counts(&changes);
    let summary =
        format!("{updated} updated, {added} added, {removed} removed, {unchanged} unchanged");
    let written = if dry_run {
        printer.status(format!(
            "Dry run: {} not written ({summary})",
            lock_path.display()
        ));
        false
    } else {
        let written = new
            .write_if_changed(&lock_path)
            .with_context(|| format!("cannot write {}", lock_path.display()))?;
        if let Some(store) = &store {
            crate::gc::register(store, &lock_path, &new).with_context(|| {
                format!(
                    "cannot register {} as a root of the store",
                    lock_path.display()
                )
            })?;
        }
        printer.status(format!(
            "{} {} in {} ({summary})",
            if written { "Updated" } else { "Checked" },
            lock_path.display(),
            human_duration(started.elapsed())
        ));
        written
    };
    printer.json(&json!({
        "lock": lock_path,
        "dry_run": dry_run,
        "written": written,
        "images": changes,
    }));
    Ok(())
}

/// `imagelock diff`.
pub fn diff(settings: &Settings, against: Option<&str>) -> anyhow::Result<()> {
    let printer = settings.printer;
    let lock_path = lock_path_for(&settings.manifest);
    let new = match Lock::load(&lock_path)? {
        Some(lock) => lock,
        None => {
            printer.warn(format!(
                "there is no {}: comparing with an empty lock",
                lock_path.display()
            ));
            Lock::default()
        }
    };
    let old = crate::history::old_lock(&lock_path, against)?;
    if old.absent {
        printer.status(format!("{} does not exist: every image is new", old.label));
    }
    let changes = crate::report::compare(&old.lock, &new);
    for line in crate::report::render_changes(&changes, false) {
        printer.out(line);
    }
    let (added, removed, updated, unchanged) = crate::report::counts(&changes);
    if added + removed + updated == 0 {
        printer.status(format!(
            "No changes: {} and {} pin the same {}",
            old.label,
            lock_path.display(),
            plural(unchanged, "image")
        ));
    } else {
        printer.status(format!(
            "{} → {}: {updated} updated, {added} added, {removed} removed, {unchanged} unchanged",
            old.label,
            lock_path.display()
        ));
    }
    printer.json(&json!({
        "old": old.label,
        "new": lock_path,
        "images": changes,
    }));
    Ok(())
}

/// `imagelock list`.
pub fn list(settings: &Settings) -> anyhow::Result<()> {
    let printer = settings.printer;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` to create it (and commit it)",
    )?;
    let keys = manifest_if_any(&settings.manifest)
        .map(|m| crate::trust_list::KnownKeys::from_manifest(&m))
        .unwrap_or_default();
    if lock.images.is_empty() {
        printer.status(format!("{} pins no images", lock_path.display()));
    } else {
        for line in crate::report::list_table(&lock, &keys) {
            printer.out(line);
        }
    }
    let images: Vec<serde_json::Value> = lock
        .images
        .values()
        .map(|i| crate::report::list_json(i, &keys))
        .collect();
    printer.json(&json!({ "lock": lock_path, "images": images }));
    Ok(())
}

/// `imagelock inspect`.
pub fn inspect(settings: &Settings, id: &str) -> anyhow::Result<()> {
    let printer = settings.printer;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(
        &lock_path,
        "run `imagelock lock` to create it (and commit it)",
    )?;
    let manifest = manifest_if_any(&settings.manifest);
    let Some(image) = lock.images.get(id) else {
        let in_manifest = manifest.as_ref().is_some_and(|m| m.images.contains_key(id));
        return Err(if in_manifest {
            hinted(
                format!(
                    "`{id}` is in {} but not locked yet",
                    settings.manifest.display()
                ),
                "run `imagelock lock` to pin it",
            )
        } else {
            crate::errors::usage(
                format!("`{id}` is not in {}", lock_path.display()),
                format!(
                    "the locked images are: {} (`imagelock list` shows them)",
                    lock.images.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        });
    };
    let keys = manifest
        .as_ref()
        .map(crate::trust_list::KnownKeys::from_manifest)
        .unwrap_or_default();
    let manifest_store = match &manifest {
        Some(m) => m.store_path.clone(),
        None => store_from_manifest_leniently(&settings.manifest),
    };
    let (store_path, store) = existing_store(settings, manifest_store);
    let state = crate::report::StoreState {
        path: store_path,
        exists: store.is_some(),
        present: store
            .as_ref()
            .map(|s| {
                image
                    .blobs()
                    .iter()
                    .filter(|b| s.contains(b))
                    .map(|b| b.digest.to_string())
                    .collect()
            })
            .unwrap_or_default(),
        named: match &store {
            Some(s) if image.is_oci() => {
                let root = image.root();
                let name = image.store_name();
                Some(s.read_index().is_ok_and(|index| {
                    index.manifests.iter().any(|d| {
                        d.digest == root.digest
                            && d.annotations
                                .get(crate::oci::REF_NAME_ANNOTATION)
                                .is_some_and(|n| *n == name)
                    })
                }))
            }
            _ => None,
        },
    };
    for line in crate::report::inspect_lines(image, &state, &keys) {
        printer.out(line);
    }
    let signers: Vec<serde_json::Value> = crate::trust_list::signers(image)
        .iter()
        .map(|f| {
            let key = keys.get(f);
            json!({
                "fingerprint": f,
                "user_ids": key.map(|k| k.user_ids().to_vec()).unwrap_or_default(),
                "expires": key.and_then(|k| k.expires()).map(crate::trust_list::utc_date),
                "trusted": key.is_some(),
            })
        })
        .collect();
    printer.json(&json!({
        "image": image,
        "blobs": crate::report::blob_roles(image, &state),
        "store": state,
        "keys": signers,
    }));
    Ok(())
}

/// `imagelock trust` / `imagelock trust list`.
pub fn trust_list(settings: &Settings) -> anyhow::Result<()> {
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = match Lock::load(&lock_path) {
        Ok(lock) => lock,
        Err(e) => {
            printer.warn(format!("{e}: the images each prefix covers are not shown"));
            None
        }
    };
    let view = crate::trust_list::view(&manifest, lock.as_ref());
    if view.prefixes.is_empty() {
        printer.status(format!(
            "{} trusts no keys: no [trust.\"PREFIX\"] tables",
            manifest.path.display()
        ));
        printer.status("Add one with `imagelock trust add PREFIX --key FILE`.");
    }
    for line in view.render() {
        printer.out(line);
    }
    printer.json(&json!({ "manifest": manifest.path, "trust": view }));
    let broken: Vec<String> = view
        .prefixes
        .iter()
        .flat_map(|p| {
            p.keys
                .iter()
                .filter(|k| k.error.is_some())
                .map(|k| format!("`{}` under [trust.\"{}\"]", k.file, p.prefix))
        })
        .collect();
    if !broken.is_empty() {
        return Err(hinted(
            format!(
                "{} in {} cannot be used: {}",
                plural(broken.len(), "key file"),
                manifest.path.display(),
                broken.join(", ")
            ),
            "restore the file, or replace it with `imagelock trust add PREFIX --key FILE` and drop the old one from `keys` in images.toml",
        ));
    }
    Ok(())
}

/// `imagelock trust remove`.
pub fn trust_remove(settings: &Settings, prefix: &str, key: Option<&str>) -> anyhow::Result<()> {
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    if !manifest.trust.contains_key(prefix) {
        let known: Vec<&String> = manifest.trust.keys().collect();
        let close = known
            .iter()
            .find(|p| p.trim_end_matches('/') == prefix.trim_end_matches('/'));
        let hint = match (close, known.is_empty()) {
            (Some(p), _) => format!("the prefix is written `{p}`: `imagelock trust remove {p}`"),
            (None, true) => "it trusts no prefixes at all".to_owned(),
            (None, false) => format!(
                "its prefixes are: {} (`imagelock trust` lists them with their keys)",
                known
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Err(crate::errors::usage(
            format!(
                "{} has no [trust.\"{prefix}\"] table",
                manifest.path.display()
            ),
            hint,
        ));
    }
    let files = crate::trust_list::key_files(&manifest, prefix);
    // The fingerprints that stop being trusted, and (with --key) the files to drop.
    let (removed_keys, removed_files): (Vec<String>, Option<Vec<String>>) = match key {
        None => (
            files
                .iter()
                .flat_map(|f| f.keys.iter().flatten())
                .map(|k| k.fingerprint().to_owned())
                .collect(),
            None,
        ),
        Some(wanted) => {
            let holding: Vec<&crate::trust_list::KeyFile> = files
                .iter()
                .filter(|f| {
                    f.keys.as_ref().is_ok_and(|keys| {
                        keys.iter()
                            .any(|k| crate::trust_list::fingerprint_matches(k, wanted))
                    })
                })
                .collect();
            if holding.is_empty() {
                let listed: Vec<String> = files
                    .iter()
                    .flat_map(|f| match &f.keys {
                        Ok(keys) => keys
                            .iter()
                            .map(|k| format!("{} ({})", k.fingerprint(), f.file))
                            .collect(),
                        Err(_) => vec![format!("{} (unreadable)", f.file)],
                    })
                    .collect();
                return Err(crate::errors::usage(
                    format!(
                        "no key with fingerprint `{wanted}` is trusted for `{prefix}` in {}",
                        manifest.path.display()
                    ),
                    if listed.is_empty() {
                        format!(
                            "[trust.\"{prefix}\"] lists no keys; remove it with `imagelock trust remove {prefix}`"
                        )
                    } else {
                        format!(
                            "give a full fingerprint or a long key ID (its last 16 digits); the keys are: {}",
                            listed.join(", ")
                        )
                    },
                ));
            }
            (
                holding
                    .iter()
                    .flat_map(|f| f.keys.iter().flatten())
                    .map(|k| k.fingerprint().to_owned())
                    .collect(),
                Some(holding.iter().map(|f| f.file.clone()).collect()),
            )
        }
    };
    let text = std::fs::read_to_string(&settings.manifest)
        .with_context(|| format!("cannot read {}", settings.manifest.display()))?;
    let updated = match &removed_files {
        None => edit::remove_trust(&text, prefix)?,
        Some(files) => edit::remove_trust_keys(&text, prefix, files)?,
    };
    let after = Manifest::parse(&settings.manifest, &updated)
        .context("the edited manifest is not valid")?;
    crate::fsutil::write_atomic(&settings.manifest, updated.as_bytes())
        .with_context(|| format!("cannot write {}", settings.manifest.display()))?;
    match &removed_files {
        None => printer.status(format!(
            "Removed [trust.\"{prefix}\"] ({}) from {}",
            plural(removed_keys.len(), "key"),
            settings.manifest.display()
        )),
        Some(files) => {
            for fpr in &removed_keys {
                printer.status(format!(
                    "No longer trusted for `{prefix}`: {}",
                    crate::openpgp::format_fingerprint(fpr)
                ));
            }
            printer.status(format!(
                "Removed {} from [trust.\"{prefix}\"] keys in {}",
                files.join(", "),
                settings.manifest.display()
            ));
            let still_used = |file: &String| after.trust.values().any(|t| t.keys.contains(file));
            let unused: Vec<&String> = files.iter().filter(|f| !still_used(f)).collect();
            if !unused.is_empty() {
                printer.status(format!(
                    "Left in the repository (delete if nothing else needs it): {}",
                    unused
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if after.trust.get(prefix).is_some_and(|t| t.keys.is_empty()) {
                printer.warn(format!(
                    "[trust.\"{prefix}\"] has no keys left: images under it cannot be locked until you add one (`imagelock trust add {prefix} --key FILE`) or remove the prefix (`imagelock trust remove {prefix}`)"
                ));
            }
        }
    }
    let lock_path = lock_path_for(&settings.manifest);
    if let Ok(Some(lock)) = Lock::load(&lock_path) {
        let affected: Vec<String> = lock
            .images
            .values()
            .filter(|image| {
                crate::trust_list::signers(image)
                    .iter()
                    .any(|f| removed_keys.contains(f))
            })
            .map(|image| image.id.clone())
            .collect();
        if !affected.is_empty() {
            let roots: std::collections::BTreeSet<String> = affected
                .iter()
                .map(|id| {
                    lock.images[id]
                        .dependency_of
                        .clone()
                        .unwrap_or_else(|| id.clone())
                })
                .collect();
            printer.warn(format!(
                "signed by a key no longer trusted, in {}: {}; `imagelock verify` fails for these until a key that signed them is trusted again; then `imagelock update {}` re-pins them",
                lock_path.display(),
                affected.join(", "),
                roots.into_iter().collect::<Vec<_>>().join(" ")
            ));
        }
    }
    Ok(())
}
