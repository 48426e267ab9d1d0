//! `lock` and `update`: resolving images.toml into images.lock.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

use serde_json::json;

use crate::cli::Settings;
use crate::project::lockfile::{Lock, LockError, Staleness};
use crate::project::manifest::Manifest;
use crate::text::{human_duration, plural};

use super::project::Project;

/// `imagelock lock`.
pub async fn lock(settings: &Settings, check: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let project = Project::load(settings)?;
    let (old, conflicted) = current_lock(&project, check)?;
    let stale = project.staleness(&old);
    if check {
        return check_lock(&project, &old, &stale);
    }
    let relocked = project.relock(&old, &stale).await?;
    let written = project.write_lock(&relocked)?;
    refresh_schema(&project);
    let new = &relocked.lock;
    for (id, image) in &new.images {
        project.printer().detail(format!(
            "  {id}: {} {} ({})",
            image.request,
            image.root().digest,
            status_of(&stale, id)
        ));
    }
    print_locked(&project, new, &stale, conflicted, started);
    let mut images: Vec<serde_json::Value> = new
        .images
        .values()
        .map(|i| json!({ "id": i.id, "status": status_of(&stale, &i.id), "request": i.request, "digest": i.root().digest.to_string(), "verified": i.verified }))
        .collect();
    images.extend(
        stale
            .removed
            .iter()
            .map(|id| json!({ "id": id, "status": "removed" })),
    );
    project
        .printer()
        .json(&json!({ "lock": project.lock_path, "written": written, "images": images }));
    Ok(())
}

/// Writes the manifest's JSON Schema beside it again when its `#:schema` line names the
/// file `init` wrote and that is missing (not committed) or from another version.
fn refresh_schema(project: &Project<'_>) {
    use crate::project::schema;
    let path = &project.manifest.path;
    let names = std::fs::read_to_string(path).is_ok_and(|text| schema::names_schema_file(&text));
    if !names {
        return;
    }
    let file = project.manifest.dir().join(schema::MANIFEST_SCHEMA_FILE);
    match schema::write_beside(path) {
        Ok(true) => project.printer().detail(format!(
            "Wrote the manifest's JSON Schema to {}",
            file.display()
        )),
        Ok(false) => {}
        Err(e) => project
            .printer()
            .warn(format!("cannot write {}: {e}", file.display())),
    }
}

/// The lock as it is, or (unless checking) the pins both sides of a merge conflict agree
/// on; whether it was conflicted.
fn current_lock(project: &Project<'_>, check: bool) -> anyhow::Result<(Lock, bool)> {
    match Lock::load(&project.lock_path) {
        Err(e @ LockError::Conflicted { .. }) if check => Err(crate::errors::stale(e.into())),
        Err(LockError::Conflicted { .. }) => Ok((
            recover_conflicted(&project.lock_path, &project.manifest, project.printer())?,
            true,
        )),
        loaded => Ok((loaded?.unwrap_or_default(), false)),
    }
}

/// `lock --check`: the lock must be fresh, and agree with the pinned bytes the store
/// already holds.
fn check_lock(project: &Project<'_>, old: &Lock, stale: &Staleness) -> anyhow::Result<()> {
    if !stale.is_fresh() {
        return Err(project.stale_error(old, stale, "`lock --check`"));
    }
    if let (_, Some(store)) = project.existing_store()? {
        for image in old.images.values() {
            match crate::verify::pinned::check_image(image, old, &store) {
                Err(e) if !e.is_missing() => {
                    return Err(crate::verify::pinned::refusal(
                        &image.id,
                        &project.lock_path,
                        e,
                    ));
                }
                _ => {}
            }
        }
    }
    project.printer().status(format!(
        "{} is up to date ({})",
        project.lock_path.display(),
        plural(old.images.len(), "image")
    ));
    project
        .printer()
        .json(&json!({ "lock": project.lock_path, "fresh": true }));
    Ok(())
}

/// What `lock` did to entry `id`.
fn status_of(stale: &Staleness, id: &str) -> &'static str {
    if stale.added.iter().any(|a| a == id) {
        "added"
    } else if stale.changed.iter().any(|c| c == id) {
        "changed"
    } else {
        "unchanged"
    }
}

/// The summary line of `lock`.
fn print_locked(
    project: &Project<'_>,
    new: &Lock,
    stale: &Staleness,
    conflicted: bool,
    started: Instant,
) {
    let path = project.lock_path.display();
    let images = plural(new.images.len(), "image");
    let took = human_duration(started.elapsed());
    let line = match (stale.is_fresh(), conflicted) {
        (true, true) => {
            format!("Resolved the merge conflict in {path} ({images}, none to resolve again)")
        }
        (true, false) => format!("{path} is up to date ({images})"),
        (false, true) => {
            let redone: Vec<&str> = stale
                .added
                .iter()
                .chain(&stale.changed)
                .map(String::as_str)
                .collect();
            format!(
                "Resolved the merge conflict in {path}: locked {images} in {took} (resolved again: {})",
                redone.join(", ")
            )
        }
        (false, false) => format!("Locked {images} in {took} ({})", stale.describe()),
    };
    project.printer().status(line);
}

/// `imagelock update`.
pub async fn update(settings: &Settings, ids: &[String], dry_run: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let project = Project::load(settings)?;
    let printer = project.printer();
    let old = project.lock()?.unwrap_or_default();
    for id in ids {
        refuse_unknown_id(&project, &old, id)?;
    }
    let plan = update_plan(&project, &old, ids);
    let relocked = project.relock(&old, &plan).await?;
    let changes = update_changes(&old, &relocked.lock, &plan);
    for line in crate::report::render_changes(&changes, true) {
        printer.status(line);
    }
    let (added, removed, updated, unchanged) = crate::report::counts(&changes);
    let summary =
        format!("{updated} updated, {added} added, {removed} removed, {unchanged} unchanged");
    let path = project.lock_path.display();
    let written = if dry_run {
        printer.status(format!("Dry run: {path} not written ({summary})"));
        false
    } else {
        let written = project.write_lock(&relocked)?;
        printer.status(format!(
            "{} {path} in {} ({summary})",
            if written { "Updated" } else { "Checked" },
            human_duration(started.elapsed())
        ));
        written
    };
    printer.json(&json!({
        "lock": project.lock_path,
        "dry_run": dry_run,
        "written": written,
        "images": changes,
    }));
    Ok(())
}

/// A usage error unless `id` is an entry of images.toml (a dependency is updated with
/// the image that needs it).
fn refuse_unknown_id(project: &Project<'_>, old: &Lock, id: &str) -> anyhow::Result<()> {
    let manifest = &project.manifest;
    if manifest.images.contains_key(id) {
        return Ok(());
    }
    Err(
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
            None => crate::errors::unknown_image(
                id,
                manifest.path.display(),
                manifest.images.keys().map(String::as_str),
                Some(&format!("add one with `imagelock add {id} --docker REF`")),
            ),
        },
    )
}

/// Everything `lock` would resolve, plus the named entries (all when none are named)
/// even though they did not change.
fn update_plan(project: &Project<'_>, old: &Lock, ids: &[String]) -> Staleness {
    let stale = project.staleness(old);
    let named: Vec<String> = if ids.is_empty() {
        project.manifest.images.keys().cloned().collect()
    } else {
        ids.to_vec()
    };
    let mut changed: Vec<String> = stale
        .changed
        .iter()
        .chain(named.iter().filter(|id| !stale.added.contains(id)))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    Staleness { changed, ..stale }
}

/// What `update` changed: every entry that changed, and every entry it resolved again.
fn update_changes(old: &Lock, new: &Lock, plan: &Staleness) -> Vec<crate::report::ImageChange> {
    let redone: Vec<&String> = plan.added.iter().chain(&plan.changed).collect();
    crate::report::compare(old, new)
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
        .collect()
}

/// Starts `lock` from a lock with git conflict markers: the pins both sides
/// agree on (see [`crate::resolve::conflict`]); says what it kept and what it resolves again.
fn recover_conflicted(
    lock_path: &Path,
    manifest: &Manifest,
    printer: crate::report::printer::Printer,
) -> anyhow::Result<Lock> {
    use crate::resolve::conflict::Outcome;
    let text = std::fs::read_to_string(lock_path)
        .with_context(|| format!("cannot read {}", lock_path.display()))?;
    // The sides as committed, when git still has them, are exact; the text split at its
    // markers may mix the sides where git merged lines cleanly.
    let (recovered, from) = match crate::project::history::merge_stages(lock_path) {
        Some((ours, theirs)) => (
            crate::resolve::conflict::recover_sides(
                lock_path,
                &ours,
                &theirs,
                manifest.images.values(),
            ),
            "git's record of both sides",
        ),
        None => (
            crate::resolve::conflict::recover(lock_path, &text, manifest.images.values()),
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
