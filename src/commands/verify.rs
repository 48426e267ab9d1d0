//! `verify`: hashes and signatures re-checked offline.

use std::time::Instant;

use serde_json::json;

use crate::cli::Settings;
use crate::errors::hinted;
use crate::report::printer::Printer;
use crate::text::{human_bytes, human_duration, plural};
use crate::verify::ImageReport;

use super::project::Project;

/// `imagelock verify`.
pub async fn verify(settings: &Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let printer = settings.printer;
    let project = Project::load(settings)?;
    let lock = project.require_lock("run `imagelock lock` to create it")?;
    let (store_path, store) = project.required_store("run `imagelock sync` to fill it")?;
    let _shared = store.lock_shared()?;
    // index.json is how skopeo, podman and `sync` read the store: a corrupt one fails verify.
    store.read_index()?;
    let trust = project.trust.clone();
    let reports =
        crate::verify::verify(&lock, &store, &project.manifest, trust, printer.reporter()).await?;
    for report in &reports {
        print_image(printer, report);
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.id.as_str())
        .collect();
    printer.json(&json!({
        "lock": project.lock_path,
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

/// One image's line: ok with its size and signer, or FAILED with its problems (an
/// error, not a warning: verify fails for it).
fn print_image(printer: Printer, report: &ImageReport) {
    if !report.ok() {
        let problems: Vec<String> = report
            .problems
            .iter()
            .map(|problem| format!("\n        {problem}"))
            .collect();
        printer.error(format!("FAILED  {}:{}", report.id, problems.concat()));
        return;
    }
    let how = match (&report.signed_by, &report.prefix) {
        // An OpenPGP fingerprint (hex), or a Sigstore signer in words.
        (Some(signer), Some(prefix)) if signer.bytes().all(|b| b.is_ascii_hexdigit()) => format!(
            "signed by {} ([trust.\"{prefix}\"])",
            crate::signing::openpgp::format_fingerprint(signer)
        ),
        (Some(signer), Some(prefix)) => format!("signed by {signer} ([trust.\"{prefix}\"])"),
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
