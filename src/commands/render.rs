//! `render`: an image of the lock unpacked into a directory or an ext4 image, from the
//! store only (like `sync --frozen --offline`, it never re-locks or downloads).

use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::cli::Settings;
use crate::errors::hinted;
use crate::project::lockfile::Lock;
use crate::render::{CountsOrRecord, Job, RenderRequest, Written};
use crate::report::printer::Printer;
use crate::store::Store;
use crate::text::{human_bytes, human_duration, plural};

use super::project::Project;

/// `imagelock render`.
pub async fn render(settings: &Settings, request: RenderRequest) -> anyhow::Result<()> {
    let started = Instant::now();
    let project = Project::load(settings)?;
    let lock = project.require_lock("run `imagelock lock` and `imagelock sync` first")?;
    if !lock.images.contains_key(&request.id) {
        return Err(super::report::not_locked(
            settings,
            &lock,
            &project.lock_path,
            Some(&project.manifest),
            &request.id,
        ));
    }
    let (store_path, store) = project.existing_store()?;
    if let Some(store) = &store {
        // Rendered, or served from the cache, only what sync would accept:
        // the pins, the trust policy and the signatures of the image's tree.
        let _shared = store.lock_shared()?;
        let tree = lock.tree_of(&request.id);
        project.check_trusted(&tree, store, "nothing was rendered")?;
    }
    warn_if_stale(&project, &lock, &request.id);
    let store = store.ok_or_else(|| {
        hinted(
            format!(
                "there is no store at {} to render `{}` from",
                store_path.display(),
                request.id
            ),
            "run `imagelock sync` to fill it (render itself never downloads)",
        )
    })?;
    let printer = project.printer();
    tokio::task::spawn_blocking(move || render_blocking(&store, &lock, &request, printer, started))
        .await
        .context("the renderer panicked")?
}

/// Warns when the lock is stale for the image's entry: render renders what it pins.
fn warn_if_stale(project: &Project<'_>, lock: &Lock, id: &str) {
    let root = lock
        .images
        .get(id)
        .and_then(|i| i.dependency_of.clone())
        .unwrap_or_else(|| id.to_owned());
    let stale = project.staleness(lock);
    if stale.changed.contains(&root) || stale.removed.contains(&root) {
        project.printer().warn(format!(
            "images.lock is out of date for `{root}` ({}); rendering what it pins. Run `imagelock lock` and `imagelock sync` to render the new entry",
            stale.describe()
        ));
    }
}

/// Serves the tree from the cache or builds it, places it, and prints the summary.
fn render_blocking(
    store: &Store,
    lock: &Lock,
    request: &RenderRequest,
    printer: Printer,
    started: Instant,
) -> anyhow::Result<()> {
    let _shared = store.lock_shared()?;
    let job = Job::new(store, lock, request)?;
    let tree = match job.cached(|warning| printer.warn(warning))? {
        Some(record) => CountsOrRecord::Record(record),
        None => {
            printer.status(format!("Rendering {}", job.what()));
            CountsOrRecord::Counts(Box::new(job.build(&*printer.reporter())?))
        }
    };
    let written = job.place(&tree)?;
    print_rendered(printer, &job, &tree, &written, started);
    Ok(())
}

/// The summary line and the `--json` record of a render.
fn print_rendered(
    printer: Printer,
    job: &Job<'_>,
    tree: &CountsOrRecord,
    written: &Written,
    started: Instant,
) {
    let took = started.elapsed();
    let (entries, bytes) = tree.entries_bytes();
    let cached = matches!(tree, CountsOrRecord::Record(_));
    let method = match &written.placed {
        Some(p) if p.copied > 0 && p.linked == 0 => "copies",
        Some(p) if p.copied > 0 => "hard links and copies",
        Some(_) => "hard links",
        None => "mkfs.ext4 -d",
    };
    let source = if cached {
        format!("from the render cache ({method})")
    } else {
        format!("({method}; cached as {})", job.entry().display())
    };
    let entries_text = if entries == 1 {
        "1 entry".to_owned()
    } else {
        format!("{entries} entries")
    };
    printer.status(format!(
        "Rendered {} into {} in {}: {entries_text}, {} {source}{}",
        job.what(),
        written.output.display(),
        human_duration(took),
        human_bytes(bytes),
        notes(job, tree, written),
    ));
    printer.json(&json!({
        "image": job.id(),
        "kind": job.kind(),
        "what": job.what(),
        "format": written.format,
        "output": written.output,
        "cache": if cached { "hit" } else { "built" },
        "tree": job.tree(),
        "key": job.key(),
        "privileged": job.privileged(),
        "entries": entries,
        "bytes": bytes,
        "counts": match tree { CountsOrRecord::Counts(c) => Some(**c), CountsOrRecord::Record(_) => None },
        "placed": written.placed,
        "seconds": took.as_secs_f64(),
    }));
}

/// What the summary adds about what was left out or done differently: `; 2 device nodes
/// skipped (not root); ...`, or nothing.
fn notes(job: &Job<'_>, tree: &CountsOrRecord, written: &Written) -> String {
    let mut notes = Vec::new();
    if let CountsOrRecord::Counts(c) = tree {
        if c.skipped_devices > 0 {
            let why = if job.privileged() {
                "the kernel refused"
            } else {
                "not root"
            };
            let nodes = plural(c.skipped_devices as usize, "device node");
            notes.push(format!("{nodes} skipped ({why})"));
        }
        if c.skipped_xattrs > 0 {
            let xattrs = plural(c.skipped_xattrs as usize, "extended attribute");
            notes.push(format!("{xattrs} not kept"));
        }
        if c.skipped_owners > 0 {
            let owners = plural(c.skipped_owners as usize, "owner");
            notes.push(format!("{owners} not applied"));
        }
    }
    if let Some(p) = &written.placed {
        if p.fell_back_to_copy {
            notes.push("copied: the target is on another file system than the store".into());
        }
        if p.skipped_devices > 0 {
            let nodes = plural(p.skipped_devices as usize, "device node");
            notes.push(format!("{nodes} not copied"));
        }
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join("; "))
    }
}
