//! `gc`, `fsck`: the store itself.

use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::cli::{LockMode, Settings, SyncSettings};
use crate::digest::Digest;
use crate::errors::hinted;
use crate::project::lockfile::{Lock, lock_path_for};
use crate::report::printer::Printer;
use crate::store::Store;
use crate::store::fsck::Report;
use crate::store::gc::Collected;
use crate::store::render_cache::Condition;
use crate::text::{human_bytes, human_duration, plural};

use super::project::{existing_store, required_store, store_from_manifest_leniently};

/// `imagelock gc`.
pub fn gc(settings: &Settings, dry_run: bool) -> anyhow::Result<()> {
    let printer = settings.printer;
    let (store_path, store) =
        existing_store(settings, store_from_manifest_leniently(&settings.manifest))?;
    let Some(store) = store else {
        printer.status(format!(
            "There is no store at {}: nothing to collect",
            store_path.display()
        ));
        printer.json(&json!({ "store": store_path, "dry_run": dry_run, "bytes_freed": 0 }));
        return Ok(());
    };
    let _exclusive = store.lock_exclusive()?;
    let (keep, dead, live) = crate::store::gc::live_set(&store)?;
    let collected = crate::store::gc::collect(&store, &keep, &dead, dry_run)?;
    list_collected(printer, &store, &collected, dry_run);
    let verb = if dry_run { "Would remove" } else { "Removed" };
    printer.status(format!(
        "{verb} {} ({}), {}, {}, {} and {} from {}; {} live",
        plural(collected.blobs.len(), "blob"),
        human_bytes(collected.bytes()),
        plural(collected.refs.len(), "index ref"),
        plural(collected.rendered.len(), "rendered tree"),
        plural(collected.ingest, "download leftover"),
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

/// Every path and index entry `gc` removed (with `-v`), or would remove (a
/// dry run exists to show what would go: every path, at the normal level).
fn list_collected(printer: Printer, store: &Store, collected: &Collected, dry_run: bool) {
    let list = |line: String| {
        if dry_run {
            printer.status(line);
        } else {
            printer.detail(line);
        }
    };
    if !collected.paths.is_empty() || !collected.refs.is_empty() {
        list(format!(
            "{}:",
            if dry_run { "Would remove" } else { "Removed" }
        ));
    }
    for removed in &collected.paths {
        let size = match removed.bytes {
            0 => String::new(),
            n => format!(", {}", human_bytes(n)),
        };
        list(format!(
            "  {} ({}{size})",
            removed.path.display(),
            removed.what
        ));
    }
    for name in &collected.refs {
        list(format!(
            "  {} entry `{name}`",
            store.root().join("index.json").display()
        ));
    }
}

/// `imagelock fsck`.
pub async fn fsck(settings: &Settings, repair: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let (store_path, store) = required_store(
        settings,
        store_from_manifest_leniently(&settings.manifest),
        "`--store DIR` names another store",
    )?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = Lock::load(&lock_path).ok().flatten();
    let needed = lock
        .as_ref()
        .map(crate::store::fsck::needed_by)
        .unwrap_or_default();
    let report = check_store(printer, &store, &needed, repair).await?;
    print_findings(printer, &store, &report);
    print_checked(printer, &report, started);
    printer.json(&json!({ "store": store_path, "ok": report.ok(), "report": report }));
    if report.ok() {
        return Ok(());
    }
    let blobs_ok = report.corrupt.is_empty() && report.missing.is_empty();
    if repair && blobs_ok {
        printer.status("Repaired: the store is sound");
        return Ok(());
    }
    if repair && lock.is_some() {
        return fetch_again(settings, &store, &store_path, &lock_path, &needed).await;
    }
    Err(unsound(&store_path, &report))
}

/// Checks `store` under its lock, shared unless `repair`, which moves the
/// corrupt blobs and changed rendered trees to the quarantine (holding the
/// lock exclusively).
async fn check_store(
    printer: Printer,
    store: &Store,
    needed: &[(Digest, String)],
    repair: bool,
) -> anyhow::Result<Report> {
    let _lock = if repair {
        store.lock_exclusive()?
    } else {
        store.lock_shared()?
    };
    let report = crate::store::fsck::check(store, needed, printer.reporter()).await?;
    if repair && !report.corrupt.is_empty() {
        let moved = crate::store::fsck::quarantine(store, &report)?;
        printer.status(format!(
            "Moved {} to {}",
            plural(moved.len(), "corrupt blob"),
            store.root().join(crate::store::QUARANTINE_DIR).display()
        ));
    }
    if repair && !report.rendered_bad.is_empty() {
        let moved = crate::store::fsck::quarantine_rendered(store, &report)?;
        printer.status(format!(
            "Moved {} to {} (the next render builds {} anew)",
            plural(moved.len(), "changed rendered tree"),
            store.root().join(crate::store::QUARANTINE_DIR).display(),
            if moved.len() == 1 { "it" } else { "them" }
        ));
    }
    Ok(report)
}

/// One warning per corrupt or missing blob and per changed rendered tree.
fn print_findings(printer: Printer, store: &Store, report: &Report) {
    for (digest, why) in &report.corrupt {
        printer.warn(format!("  corrupt  {digest}: {why}"));
    }
    for (digest, who) in &report.missing {
        printer.warn(format!("  missing  {digest} (needed by {who})"));
    }
    for bad in &report.rendered_bad {
        let path = store.root().join(crate::store::RENDERED_DIR).join(&bad.key);
        let image = bad
            .image
            .as_deref()
            .map(|i| format!(" (rendered for `{i}`)"))
            .unwrap_or_default();
        let what = describe_condition(&bad.condition);
        printer.warn(format!("  changed  {}{image}: {what}", path.display()));
    }
}

/// What is wrong with a rendered tree, for its warning.
fn describe_condition(condition: &Condition) -> String {
    match condition {
        Condition::Modified { paths } if paths.is_empty() => {
            "its tree changed since it was rendered".to_owned()
        }
        Condition::Modified { paths } => format!(
            "its tree changed since it was rendered: {}",
            paths.join(", ")
        ),
        Condition::Damaged { problem } => format!("damaged: {problem}"),
        _ => "unusable".to_owned(),
    }
}

/// The summary line: what was checked, how fast, and what was found.
fn print_checked(printer: Printer, report: &Report, started: Instant) {
    let rate = report.bytes as f64 / started.elapsed().as_secs_f64().max(1e-9);
    printer.status(format!(
        "Checked {} ({}) and {} in {} ({}/s): {} corrupt, {} missing, {} changed",
        plural(report.blobs, "blob"),
        human_bytes(report.bytes),
        plural(report.rendered, "rendered tree"),
        human_duration(started.elapsed()),
        human_bytes(rate as u64),
        report.corrupt.len(),
        report.missing.len(),
        report.rendered_bad.len()
    ));
}

/// `fsck --repair` with a lock: a frozen sync fetches again what the lock
/// needs (the quarantine took the corrupt blobs out), then the blobs are
/// checked again.
async fn fetch_again(
    settings: &Settings,
    store: &Store,
    store_path: &Path,
    lock_path: &Path,
    needed: &[(Digest, String)],
) -> anyhow::Result<()> {
    let printer = settings.printer;
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
        printer: Printer {
            json: false,
            ..settings.printer
        },
        ..settings.clone()
    };
    super::sync(&quiet, options).await?;
    let again = crate::store::fsck::check(store, needed, printer.reporter()).await?;
    if again.corrupt.is_empty() && again.missing.is_empty() {
        printer.status("Repaired: the store is sound");
        return Ok(());
    }
    Err(hinted(
        format!(
            "{} still has {} corrupt and {} missing blobs after the repair",
            store_path.display(),
            again.corrupt.len(),
            again.missing.len()
        ),
        "blobs only index.json references (no lock needs them) cannot be fetched again; `imagelock gc` drops them",
    ))
}

/// The error for a store `fsck` found unsound and did not repair: bad blobs,
/// or else rendered trees that changed.
fn unsound(store_path: &Path, report: &Report) -> anyhow::Error {
    if !report.corrupt.is_empty() || !report.missing.is_empty() {
        return hinted(
            format!(
                "{} has {} corrupt and {} missing blobs{}",
                store_path.display(),
                report.corrupt.len(),
                report.missing.len(),
                match report.rendered_bad.len() {
                    0 => String::new(),
                    n => format!(", and {}", plural(n, "changed rendered tree")),
                }
            ),
            "`imagelock fsck --repair` quarantines corrupt blobs and changed rendered trees and fetches again what images.lock needs",
        );
    }
    let one = report.rendered_bad.len() == 1;
    let them = if one { "it" } else { "them" };
    hinted(
        format!(
            "{} has {} that changed since {} rendered: render never uses {them}, but directories rendered from {them} with hard links share the changed files",
            store_path.display(),
            plural(report.rendered_bad.len(), "rendered tree"),
            if one { "it was" } else { "they were" },
        ),
        "`imagelock fsck --repair` moves them to the quarantine (the next render builds them anew); render the directories made from them again (`imagelock render ID DIR`), with `--copy` for trees you will change in place",
    )
}
