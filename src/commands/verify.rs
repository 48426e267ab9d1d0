//! `verify`: hashes and signatures re-checked offline.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::cli::Settings;
use crate::errors::hinted;
use crate::project::lockfile::lock_path_for;
use crate::signing::trust::TrustStore;
use crate::text::{human_bytes, human_duration, plural};

use super::{load_manifest, require_lock, required_store};

/// `imagelock verify`.
pub async fn verify(settings: &Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let manifest = load_manifest(&settings.manifest)?;
    let lock_path = lock_path_for(&settings.manifest);
    let lock = require_lock(&lock_path, "run `imagelock lock` to create it")?;
    let (store_path, store) = required_store(
        settings,
        manifest.store_path.clone(),
        "run `imagelock sync` to fill it",
    )?;
    let _shared = store.lock_shared()?;
    // index.json is how skopeo, podman and `sync` read the store: a corrupt one fails verify.
    store.read_index()?;
    let trust = Arc::new(TrustStore::new(&manifest));
    let reports =
        crate::verify::verify(&lock, &store, &manifest, trust, printer.reporter()).await?;
    let mut blobs = 0;
    let mut bytes = 0;
    for report in &reports {
        blobs += report.blobs;
        bytes += report.bytes;
        let how = match (&report.signed_by, &report.prefix) {
            (Some(fpr), Some(prefix)) => format!(
                "signed by {} ([trust.\"{prefix}\"])",
                crate::signing::openpgp::format_fingerprint(fpr)
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
