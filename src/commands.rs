//! The commands: thin wrappers that load files, call the core modules and
//! report through the [`Printer`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::cli::{LockMode, Settings, SyncSettings};
use crate::concurrency;
use crate::edit::{self, NewImage};
use crate::errors::{hinted, with_hint};
use crate::lockfile::{Lock, Staleness, lock_path_for};
use crate::manifest::{Manifest, ManifestError};
use crate::printer::{human_bytes, human_duration, plural};
use crate::registry::{HttpOptions, RegistryClient};
use crate::store::Store;

/// A registry client built on first use, so runs that need no network never
/// pay for TLS setup.
#[derive(Clone)]
pub struct LazyClient {
    options: HttpOptions,
    cell: Arc<Mutex<Option<Arc<RegistryClient>>>>,
}

impl LazyClient {
    /// A client with these options, not built yet.
    pub fn new(options: HttpOptions) -> LazyClient {
        LazyClient {
            options,
            cell: Arc::new(Mutex::new(None)),
        }
    }

    /// The client, built now if needed.
    pub fn get(&self) -> anyhow::Result<Arc<RegistryClient>> {
        let mut cell = self.cell.lock().expect("client cell poisoned");
        if let Some(client) = cell.as_ref() {
            return Ok(client.clone());
        }
        let client = Arc::new(RegistryClient::new(&self.options)?);
        *cell = Some(client.clone());
        Ok(client)
    }
}

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

fn stale_error(lock_path: &Path, stale: &Staleness, flag: &str) -> anyhow::Error {
    hinted(
        format!(
            "{} is out of date with {} ({})",
            lock_path.display(),
            lock_path
                .with_file_name(crate::manifest::MANIFEST_FILE)
                .display(),
            stale.describe()
        ),
        format!("run `imagelock lock` and commit the result; {flag} refuses to change the lock"),
    )
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
        anyhow::bail!(
            "`{}` is not a valid image ID: use ASCII letters, digits, '-', '_' and '.'",
            request.id
        );
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
    let mut text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
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

/// Resolves the stale entries of `old` against `manifest`; fresh entries are kept as they are.
async fn relock(
    manifest: Arc<Manifest>,
    old: &Lock,
    stale: &Staleness,
    client: &LazyClient,
) -> anyhow::Result<Lock> {
    let mut new = old.clone();
    for id in &stale.removed {
        new.images.remove(id);
    }
    let jobs = stale.added.iter().chain(&stale.changed).map(|id| {
        let manifest = manifest.clone();
        let id = id.clone();
        let client = client.clone();
        async move {
            let spec = &manifest.images[&id];
            let result = crate::resolve::resolve(&manifest, spec, || client.get()).await;
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
    for image in concurrency::run_bounded(concurrency::PARALLEL_RESOLVES, jobs).await? {
        new.images.insert(image.id.clone(), image);
    }
    Ok(new)
}

fn http_options(settings: &Settings) -> HttpOptions {
    HttpOptions {
        ca_files: settings.ca_files.clone(),
        resolve: settings.resolve.clone(),
    }
}

/// `imagelock lock`.
pub async fn lock(settings: &Settings, check: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let manifest = Arc::new(load_manifest(&settings.manifest)?);
    let lock_path = lock_path_for(&settings.manifest);
    let old = Lock::load(&lock_path)?.unwrap_or_default();
    let stale = old.staleness(manifest.images.values());
    let printer = settings.printer;
    if check {
        if !stale.is_fresh() {
            return Err(stale_error(&lock_path, &stale, "`lock --check`"));
        }
        printer.status(format!(
            "{} is up to date ({})",
            lock_path.display(),
            plural(old.images.len(), "image")
        ));
        printer.json(&json!({ "lock": lock_path, "fresh": true }));
        return Ok(());
    }
    let client = LazyClient::new(http_options(settings));
    let new = relock(manifest.clone(), &old, &stale, &client).await?;
    let written = new
        .write_if_changed(&lock_path)
        .with_context(|| format!("cannot write {}", lock_path.display()))?;
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
    if stale.is_fresh() {
        printer.status(format!(
            "{} is up to date ({})",
            lock_path.display(),
            plural(new.images.len(), "image")
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
    let client = LazyClient::new(http_options(settings));
    let (lock, manifest_store) = match options.mode {
        LockMode::Frozen => (
            Lock::load(&lock_path)?.ok_or_else(missing_lock)?,
            store_from_manifest_leniently(&settings.manifest),
        ),
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
                return Err(stale_error(&lock_path, &stale, "`sync --locked`"));
            } else if options.offline {
                return Err(hinted(
                    format!(
                        "{} is out of date ({}) and --offline forbids resolving",
                        lock_path.display(),
                        stale.describe()
                    ),
                    "run `imagelock lock` with network access, or `imagelock sync --frozen --offline` to use the lock as it is",
                ));
            } else {
                let new = relock(manifest.clone(), &old, &stale, &client).await?;
                new.write_if_changed(&lock_path)
                    .with_context(|| format!("cannot write {}", lock_path.display()))?;
                printer.status(format!(
                    "Updated {} ({})",
                    lock_path.display(),
                    stale.describe()
                ));
                new
            };
            (lock, manifest.store_path.clone())
        }
    };
    let store_path = settings
        .store_override
        .clone()
        .or(manifest_store)
        .unwrap_or_else(crate::cli::default_store);
    let store = Store::open(&store_path)
        .with_context(|| format!("cannot open the store at {}", store_path.display()))?;
    let _shared = store.lock_shared()?;
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
    crate::sync::execute(&plan, &store, || client.get(), printer.reporter()).await?;
    let took = human_duration(started.elapsed());
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
    printer.json(&summary);
    Ok(())
}
