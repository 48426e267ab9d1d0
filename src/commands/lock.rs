//! `lock` and `update`: resolving images.toml into images.lock.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::cli::Settings;
use crate::project::lockfile::{Lock, LockError, Staleness, lock_path_for};
use crate::text::{human_duration, plural};

use super::{existing_store, load_manifest, recover_conflicted, relock, resolver_for, stale_error};

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
    let trust = crate::signing::trust::TrustStore::new(&manifest);
    let stale = crate::resolve::drift::staleness(&old, &manifest, &trust);
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
        // Where the store already holds the pinned bytes, the pins must agree with them.
        let (_, store) = existing_store(settings, manifest.store_path.clone())?;
        if let Some(store) = store {
            for image in old.images.values() {
                match crate::verify::pinned::check_image(image, &old, &store) {
                    Err(e) if !e.is_missing() => {
                        return Err(crate::verify::pinned::refusal(&image.id, &lock_path, e));
                    }
                    _ => {}
                }
            }
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
        crate::store::gc::register(&store, &lock_path, &new).with_context(|| {
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
    let stale = crate::resolve::drift::staleness(
        &old,
        &manifest,
        &crate::signing::trust::TrustStore::new(&manifest),
    );
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
        reasons: stale.reasons.clone(),
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
            crate::store::gc::register(store, &lock_path, &new).with_context(|| {
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
