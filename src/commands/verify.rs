//! `verify`: hashes and signatures re-checked offline.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::cli::Settings;
use crate::errors::hinted;
use crate::project::lockfile::lock_path_for;
use crate::report::printer::Printer;
use crate::signing::trust::TrustStore;
use crate::text::{human_bytes, human_duration, plural};
use crate::verify::ImageReport;

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
    for report in &reports {
        print_image(printer, report);
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
        return Err(verification_failed(&failed, reports.len()));
    }
    printer.status(format!(
        "Verified {}, {} ({}) in {}",
        plural(reports.len(), "image"),
        plural(reports.iter().map(|r| r.blobs).sum(), "blob"),
        human_bytes(reports.iter().map(|r| r.bytes).sum()),
        human_duration(started.elapsed())
    ));
    Ok(())
}

/// One image's line: ok with its size and signer, or FAILED with its problems.
fn print_image(printer: Printer, report: &ImageReport) {
    if !report.ok() {
        printer.warn(format!("  FAILED  {}:", report.id));
        for problem in &report.problems {
            printer.warn(format!("          {problem}"));
        }
        return;
    }
    let how = match (&report.signed_by, &report.prefix) {
        (Some(fpr), Some(prefix)) => format!(
            "signed by {} ([trust.\"{prefix}\"])",
            crate::signing::openpgp::format_fingerprint(fpr)
        ),
        _ if report.verified => "signature not checked".to_owned(),
        _ => "unverified (insecure)".to_owned(),
    };
    printer.status(format!(
        "  ok      {}: {}, {}; {how}",
        report.id,
        plural(report.blobs, "blob"),
        human_bytes(report.bytes)
    ));
}

/// The error naming the images that failed, of `images`.
fn verification_failed(failed: &[&str], images: usize) -> anyhow::Error {
    hinted(
        format!(
            "verification failed for {} of {}: {}",
            failed.len(),
            plural(images, "image"),
            failed.join(", ")
        ),
        "missing or corrupt blobs: run `imagelock sync` to fetch them again; signature or key problems: check [trust] in images.toml and run `imagelock lock`",
    )
}
