//! `outdated`: what `update` would move, without moving it. For each entry of
//! images.toml: the tag the lock pins, the newest tag the entry's version policy
//! allows, the newest release in the repository, and for a fixed tag whether its
//! digest moved on the registry. Reads registries only; writes nothing; exit 0.

use std::sync::Arc;

use serde_json::json;

use crate::cli::Settings;
use crate::oci::registry::RegistryClient;
use crate::oci::tags;
use crate::project::lockfile::LockedImage;
use crate::project::manifest::{ImageSpec, Manifest, Source};
use crate::report::outdated::{OutdatedRow, outdated_table};

use super::project::Project;

/// `imagelock outdated`.
pub async fn outdated(settings: &Settings) -> anyhow::Result<()> {
    let project = Project::load(settings)?;
    let printer = project.printer();
    let lock = Arc::new(project.lock()?.unwrap_or_default());
    let client = project.client();
    let jobs = project.manifest.images.keys().map(|id| {
        let (manifest, lock, client, id) = (
            project.manifest.clone(),
            lock.clone(),
            client.clone(),
            id.clone(),
        );
        async move {
            let spec = &manifest.images[&id];
            let locked = lock.images.get(&id);
            Ok(row(&manifest, spec, locked, || client.get()).await)
        }
    });
    let mut rows: Vec<(OutdatedRow, Option<String>)> =
        crate::concurrency::run_bounded(crate::concurrency::PARALLEL_RESOLVES, jobs).await?;
    // By id, not in the order the registries answered.
    rows.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    for (row, warning) in &rows {
        if let Some(warning) = warning {
            printer.warn(format!("{}: {warning}", row.id));
        }
    }
    let rows: Vec<OutdatedRow> = rows.into_iter().map(|(row, _)| row).collect();
    for line in outdated_table(&rows) {
        printer.out(line);
    }
    let behind = rows
        .iter()
        .filter(|r| r.status == "update available" || r.status == "digest moved")
        .count();
    printer.status(format!(
        "{} of {} can move (`imagelock update` moves them)",
        crate::text::plural(behind, "image"),
        rows.len()
    ));
    printer.json(&json!({ "lock": project.lock_path, "images": rows }));
    Ok(())
}

/// The row for one entry, and a warning when a registry could not be read.
async fn row(
    manifest: &Manifest,
    spec: &ImageSpec,
    locked: Option<&LockedImage>,
    client: impl FnOnce() -> anyhow::Result<Arc<RegistryClient>>,
) -> (OutdatedRow, Option<String>) {
    let mut row = OutdatedRow {
        id: spec.id.clone(),
        policy: spec
            .policy
            .as_ref()
            .map_or_else(|| "fixed".to_owned(), ToString::to_string),
        pinned: locked.and_then(crate::report::version_of),
        allowed: None,
        latest: None,
        digest_moved: None,
        status: String::new(),
    };
    let Source::Docker(reference) = &spec.source else {
        row.status = format!(
            "not checked ({})",
            locked.map_or("not a registry image", |l| l.source.as_str())
        );
        return (row, None);
    };
    let client = match client() {
        Ok(client) => client,
        Err(e) => {
            row.status = "not checked (no HTTP client)".to_owned();
            return (row, Some(format!("{e:#}")));
        }
    };
    let listed = crate::resolve::versions::list_tags(manifest, &client, spec, reference).await;
    let mut warning = None;
    match &listed {
        Ok(listed) => {
            row.latest = tags::newest_release(listed).map(str::to_owned);
            row.allowed = spec
                .policy
                .as_ref()
                .and_then(|p| p.newest(listed))
                .map(str::to_owned);
        }
        Err(e) => warning = Some(format!("{e:#}")),
    }
    let Some(locked) = locked else {
        row.status = "not locked".to_owned();
        return (row, warning);
    };
    row.status = match (&spec.policy, &listed) {
        (Some(_), Err(_)) => "tags not listed".to_owned(),
        (Some(_), Ok(_)) if row.allowed.is_none() => "no tag matches".to_owned(),
        (Some(_), Ok(_)) if row.allowed == locked.tag => "up to date".to_owned(),
        (Some(_), Ok(_)) => "update available".to_owned(),
        (None, _) if reference.digest().is_some() => "pinned by digest".to_owned(),
        (None, _) => {
            let repo = crate::resolve::repository(manifest, reference);
            match client.get_manifest(&repo, reference.tag_or_digest()).await {
                Ok(now) => {
                    let moved = now.digest != locked.root().digest;
                    row.digest_moved = Some(moved);
                    if moved { "digest moved" } else { "up to date" }.to_owned()
                }
                Err(e) => {
                    warning.get_or_insert(format!("cannot read {reference}: {e}"));
                    "not checked (registry unreadable)".to_owned()
                }
            }
        }
    };
    (row, warning)
}
