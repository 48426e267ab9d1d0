//! `sync`: the lock materialised in the store, in three steps: the lock the mode allows
//! (as it is, or re-locked), the plan (what the store lacks), and its execution (fetch,
//! check every pin against the bytes, name the images, register the lock as a gc root).
//! `--dry-run` prints the plan and writes nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::cli::{LockMode, Settings, SyncSettings};
use crate::digest::Digest;
use crate::errors::hinted;
use crate::project::lockfile::Lock;
use crate::project::manifest::Manifest;
use crate::report::printer::{Printer, Verbosity};
use crate::store::Store;
use crate::sync::{Fetched, Plan};
use crate::text::{human_bytes, human_duration, plural};

use super::airgap::import_bundle;
use super::project::Project;

/// `imagelock sync`.
pub async fn sync(settings: &Settings, options: SyncSettings) -> anyhow::Result<()> {
    let started = Instant::now();
    // Every mode applies the trust policy of images.toml, --frozen included:
    // the lock alone never decides who is trusted.
    let project = Project::load(settings).map_err(|e| match options.mode {
        LockMode::Frozen => e.context(
            "`sync --frozen` does not re-lock, but still applies the [trust] policy of images.toml",
        ),
        _ => e,
    })?;
    let lock = lock_for_sync(&project, &options).await?;
    project.refuse_policy_problems(&lock)?;
    if options.dry_run {
        return dry_run(&project, &lock);
    }
    let (store_path, store) = project.store()?;
    let shared = store.lock_shared()?;
    if let Some(bundle) = &options.from {
        // Stores blobs by digest only; the names come from this project's lock, below.
        let imported = import_bundle(settings, &store, bundle).await?;
        super::airgap::warn_if_pinned_otherwise(settings, &lock, &project.lock_path, &imported);
    }
    let plan = crate::sync::plan(&lock, project.lock_dir(), Some(&store))?;
    if options.offline {
        refuse_network_needs(&plan, &store_path)?;
    }
    let (fetched, signatures) = execute(&project, &options, &lock, &plan, &store).await?;
    print_images(project.printer(), &lock, &plan);
    print_synced(&project, &plan, fetched, signatures, started);
    if options.prune {
        drop(shared);
        prune(&project, &lock, &store)?;
    }
    project.printer().json(&summary(&store_path, &plan, false));
    Ok(())
}

/// `sync --dry-run`: prints what a sync would fetch into the store and writes nothing (no
/// store is made, no bundle imported, no lock written).
fn dry_run(project: &Project<'_>, lock: &Lock) -> anyhow::Result<()> {
    let (store_path, store) = project.existing_store()?;
    let _shared = store.as_ref().map(Store::lock_shared).transpose()?;
    let plan = crate::sync::plan(lock, project.lock_dir(), store.as_ref())?;
    print_plan(project.printer(), &plan);
    project.printer().json(&summary(&store_path, &plan, true));
    Ok(())
}

/// The `--json` record of a sync.
fn summary(store_path: &Path, plan: &Plan, dry_run: bool) -> serde_json::Value {
    json!({
        "store": store_path,
        "images": plan.images,
        "blobs": plan.blobs,
        "bytes": plan.bytes,
        "present": plan.present,
        "fetch": plan.missing.len(),
        "fetch_bytes": plan.missing_bytes(),
        "dry_run": dry_run,
    })
}

/// The lock to sync, as `options.mode` allows: `--frozen` takes it as it is, `--locked`
/// refuses a stale one, and the default re-locks stale entries (and writes the lock,
/// unless it is a dry run).
async fn lock_for_sync(project: &Project<'_>, options: &SyncSettings) -> anyhow::Result<Lock> {
    let missing_lock = "run `imagelock lock` to create it (and commit it)";
    if options.mode == LockMode::Frozen {
        return project.require_lock(missing_lock);
    }
    let old = match project.lock()? {
        Some(old) => old,
        None if options.mode == LockMode::Locked => return Err(project.no_lock(missing_lock)),
        None => Lock::default(),
    };
    let stale = project.staleness(&old);
    if stale.is_fresh() {
        return Ok(old);
    }
    if options.mode == LockMode::Locked {
        return Err(project.stale_error(&old, &stale, "`sync --locked`"));
    }
    if options.offline {
        return Err(crate::errors::stale(hinted(
            format!(
                "{} is out of date ({}) and --offline forbids resolving:\n  {}",
                project.lock_path.display(),
                stale.describe(),
                crate::resolve::drift::explain(&old, &project.manifest, &stale).join("\n  ")
            ),
            "run `imagelock lock` with network access, or `imagelock sync --frozen --offline` to use the lock as it is",
        )));
    }
    let relocked = project.relock(&old, &stale).await?;
    let path = project.lock_path.display();
    if options.dry_run {
        // A dry run changes nothing: the plan is for the lock it would write.
        project
            .printer()
            .status(format!("Would update {path} ({})", stale.describe()));
    } else {
        project.write_lock(&relocked)?;
        project
            .printer()
            .status(format!("Updated {path} ({})", stale.describe()));
    }
    Ok(relocked.lock)
}

/// What a dry run would fetch.
fn print_plan(printer: Printer, plan: &Plan) {
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
}

/// `--offline`: refuses when a blob the plan lacks can only come from the network.
fn refuse_network_needs(plan: &Plan, store_path: &Path) -> anyhow::Result<()> {
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
    if offline_missing.is_empty() {
        return Ok(());
    }
    Err(hinted(
        format!(
            "--offline: {} needed by the lock are not in the store at {}:\n{}",
            plural(offline_missing.len(), "blob"),
            store_path.display(),
            offline_missing.join("\n")
        ),
        "run `imagelock sync` once with network access to fill the store, or, across an air gap, `imagelock sync --offline --from BUNDLE` with a bundle made by `imagelock export` on the connected side",
    ))
}

/// Fetches what the plan lacks (until Ctrl-C), checks every pin against the bytes, then
/// names the images and registers the lock as a gc root. What was fetched, and how many
/// signatures verified.
async fn execute(
    project: &Project<'_>,
    options: &SyncSettings,
    lock: &Lock,
    plan: &Plan,
    store: &Store,
) -> anyhow::Result<(Fetched, usize)> {
    let mirrors = sync_mirrors(options, &project.manifest)?;
    let client = project.client();
    let reporter = project.printer().reporter();
    let interrupt = crate::interrupt::interrupted();
    let fetched =
        crate::sync::execute(plan, store, || client.get(), &mirrors, reporter, interrupt).await?;
    // Nothing is named in the store before every pin checks out against its bytes.
    let signatures = project.check_trusted(lock, store, "nothing was named in the store")?;
    crate::sync::name_images(plan, store).await?;
    project.register_root(store, lock)?;
    Ok((fetched, signatures))
}

/// `-v`: a line per image synced, with its blobs fetched and already present.
fn print_images(printer: Printer, lock: &Lock, plan: &Plan) {
    if printer.verbosity != Verbosity::Verbose {
        return;
    }
    let missing: BTreeSet<&Digest> = plan.missing.iter().map(|m| &m.blob.digest).collect();
    for image in lock.images.values() {
        let blobs = image.blobs();
        let fetched = blobs.iter().filter(|b| missing.contains(&b.digest)).count();
        printer.detail(format!(
            "  {}: {} ({}), {fetched} fetched, {} already present",
            image.id,
            plural(blobs.len(), "blob"),
            human_bytes(blobs.iter().map(|b| b.size).sum()),
            blobs.len() - fetched
        ));
    }
}

/// The summary lines of a sync: blobs fetched whole apart from downloads resumed from
/// an earlier run, whose bytes on disk were not fetched now.
fn print_synced(
    project: &Project<'_>,
    plan: &Plan,
    fetched: Fetched,
    signatures: usize,
    started: Instant,
) {
    let printer = project.printer();
    let took = human_duration(started.elapsed());
    if signatures > 0 {
        printer.status(format!(
            "Verified {} with the keys in {}",
            plural(signatures, "signature"),
            project.settings.manifest.display()
        ));
    }
    if plan.missing.is_empty() {
        printer.status(format!(
            "Synced {}: all {} already in the store ({took})",
            plural(plan.images, "image"),
            plural(plan.blobs, "blob")
        ));
        return;
    }
    let present = if plan.present > 0 {
        format!("; {} already present", plan.present)
    } else {
        String::new()
    };
    let mut done = Vec::new();
    if fetched.blobs > 0 || fetched.resumed == 0 {
        done.push(format!(
            "{} ({})",
            plural(fetched.blobs, "blob"),
            human_bytes(fetched.bytes)
        ));
    }
    if fetched.resumed > 0 {
        done.push(format!(
            "resumed {} ({} more)",
            plural(fetched.resumed, "partial download"),
            human_bytes(fetched.resumed_bytes)
        ));
    }
    printer.status(format!(
        "Synced {}, {} in {took}{present}",
        plural(plan.images, "image"),
        done.join(" and "),
    ));
}

/// `--prune`: removes from the store every blob this lock does not need.
fn prune(project: &Project<'_>, lock: &Lock, store: &Store) -> anyhow::Result<()> {
    let _exclusive = store.lock_exclusive()?;
    let keep = lock.blobs().into_keys().collect();
    let pruned = crate::store::gc::collect(store, &keep, &[], false)?;
    project.printer().status(format!(
        "Pruned {} ({}) that {} does not need",
        plural(pruned.blobs.len(), "blob"),
        human_bytes(pruned.bytes()),
        project.lock_path.display()
    ));
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
