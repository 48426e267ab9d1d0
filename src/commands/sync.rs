//! `sync`: the lock materialised in the store.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::cli::{LockMode, Settings, SyncSettings};
use crate::errors::hinted;
use crate::oci::registry::LazyClient;
use crate::project::lockfile::{Lock, lock_path_for};
use crate::project::manifest::Manifest;
use crate::signing::trust::TrustStore;
use crate::text::{human_bytes, human_duration, plural};

use super::{
    check_trusted, http_options, import_bundle, load_manifest, open_store, relock, resolver_for,
    stale_error,
};

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
    // Every mode applies the trust policy of images.toml, --frozen included:
    // the lock alone never decides who is trusted.
    let manifest = match load_manifest(&settings.manifest) {
        Ok(manifest) => Arc::new(manifest),
        Err(e) if options.mode == LockMode::Frozen => {
            return Err(e.context(
                "`sync --frozen` does not re-lock, but still applies the [trust] policy of images.toml",
            ));
        }
        Err(e) => return Err(e),
    };
    let trust = Arc::new(TrustStore::new(&manifest));
    let lock = match options.mode {
        LockMode::Frozen => Lock::load(&lock_path)?.ok_or_else(missing_lock)?,
        LockMode::Locked | LockMode::Write => {
            let old = Lock::load(&lock_path)?;
            if old.is_none() && options.mode == LockMode::Locked {
                return Err(missing_lock());
            }
            let old = old.unwrap_or_default();
            let stale = crate::resolve::drift::staleness(&old, &manifest, &trust);
            if stale.is_fresh() {
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
                        crate::resolve::drift::explain(&old, &manifest, &stale).join("\n  ")
                    ),
                    "run `imagelock lock` with network access, or `imagelock sync --frozen --offline` to use the lock as it is",
                )));
            } else {
                let resolver = resolver_for(settings, manifest.clone(), &stale)?;
                let new = relock(resolver, &old, &stale).await?;
                if options.dry_run {
                    // A dry run changes nothing: the plan below is for the lock it would write.
                    printer.status(format!(
                        "Would update {} ({})",
                        lock_path.display(),
                        stale.describe()
                    ));
                } else {
                    new.write_if_changed(&lock_path)
                        .with_context(|| format!("cannot write {}", lock_path.display()))?;
                    printer.status(format!(
                        "Updated {} ({})",
                        lock_path.display(),
                        stale.describe()
                    ));
                }
                new
            }
        }
    };
    // Plain HTTP only for the hosts images.toml names, never for what the lock records.
    let client = LazyClient::new(http_options(settings, manifest.insecure_http_hosts()));
    let manifest_store = manifest.store_path.clone();
    let problems: Vec<String> = lock
        .images
        .values()
        .filter_map(|image| {
            crate::verify::policy_problem(image, &lock, &manifest)
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
    let (store_path, store) = open_store(settings, manifest_store)?;
    let shared = store.lock_shared()?;
    if let Some(bundle) = &options.from
        && !options.dry_run
    {
        // Stores blobs by digest only; the names come from this project's lock, below.
        import_bundle(settings, &store, bundle).await?;
    }
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
    let mirrors = sync_mirrors(&options, &manifest)?;
    crate::sync::execute(&plan, &store, || client.get(), &mirrors, printer.reporter()).await?;
    // Nothing is named in the store before every pin checks out against its bytes.
    let signatures = check_trusted(
        &lock,
        &lock_path,
        &store,
        &manifest,
        "nothing was named in the store",
    )?;
    crate::sync::name_images(&plan, &store).await?;
    crate::store::gc::register(&store, &lock_path, &lock).with_context(|| {
        format!(
            "cannot register {} as a root of the store",
            lock_path.display()
        )
    })?;
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
        let pruned = crate::store::gc::collect(&store, &keep, &[], false)?;
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

/// The mirrors a sync reads from: `--mirror` first, then `[mirrors]`.
fn sync_mirrors(
    options: &SyncSettings,
    manifest: &Manifest,
) -> anyhow::Result<crate::sync::Mirrors> {
    let from_manifest = manifest.mirrors.clone();
    let plain = |host: &str| manifest.insecure_http(host);
    let mirrors = options
        .mirrors
        .iter()
        .chain(&from_manifest.prefixes)
        .map(|p| crate::airgap::mirror::Mirror::parse(p, plain))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let only = options.mirror_only || from_manifest.only;
    if only && mirrors.is_empty() {
        return Err(hinted(
            "--mirror-only needs a mirror",
            "name one with `--mirror HOST[:PORT][/PATH]` or `[mirrors] prefixes` in images.toml",
        ));
    }
    let lookaside = options.mirror_lookaside.clone().or(from_manifest.lookaside);
    if let Some(url) = &lookaside {
        if mirrors.is_empty() {
            return Err(hinted(
                format!("the mirrors' lookaside `{url}` is set, but no mirror is"),
                "name the mirror with `--mirror HOST[:PORT][/PATH]` or `[mirrors] prefixes` in images.toml",
            ));
        }
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(hinted(
                format!("the mirrors' lookaside `{url}` is not an http(s) URL"),
                "write it as https://HOST/PATH, where `push --lookaside-staging DIR` is served",
            ));
        }
    }
    Ok(crate::sync::Mirrors {
        mirrors,
        only,
        lookaside,
    })
}
