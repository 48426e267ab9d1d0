//! Store integrity: re-hash every blob, walk what `index.json` names, and check
//! every rendered tree against its listing.
//!
//! Every file under `blobs/<alg>/` is hashed (in parallel, one file per core)
//! and compared with its name; an entry there that is not a regular file (a
//! link is never followed) is corrupt. `index.json` is walked index →
//! manifests → configs and layers, and whatever it references must be present.
//! Every tree of the render cache is re-read and compared with the listing it
//! was built with ([`crate::store::render_cache::check`]): a tree changed through a
//! hard-linked render is reported as modified, with the paths that changed.
//! `repair` moves corrupt blobs to `STORE/quarantine/<alg>-<hex>` and modified
//! or damaged trees to `STORE/quarantine/rendered-<key>` (never deletes them:
//! they are evidence), after which a sync fetches what the lock needs again
//! and the next render builds the tree anew.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::FileType;
use serde::Serialize;

use crate::concurrency;
use crate::digest::Digest;
use crate::progress::{Phase, Reporter};

use crate::oci::{self, ManifestKind};
use crate::store::render_cache;
use crate::store::{QUARANTINE_DIR, RENDERED_DIR, Store};

/// What `fsck` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Blob files hashed.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// Blobs whose bytes do not hash to their name: (name, what they hash to).
    pub corrupt: Vec<(Digest, String)>,
    /// Blobs something references but the store lacks: (digest, referenced by).
    pub missing: Vec<(Digest, String)>,
    /// Files under `blobs/` whose name is not a digest.
    pub strays: Vec<PathBuf>,
    /// Rendered trees checked.
    pub rendered: usize,
    /// Rendered trees that changed since they were built, or are damaged.
    pub rendered_bad: Vec<BadTree>,
}

/// A rendered tree that is not what was built.
#[derive(Debug, Clone, Serialize)]
pub struct BadTree {
    /// Its cache key (`STORE/rendered/<key>`).
    pub key: String,
    /// The lock entry it was first rendered for, if its record says.
    pub image: Option<String>,
    /// What is wrong.
    pub condition: render_cache::Condition,
}

impl Report {
    /// Whether the store is sound.
    pub fn ok(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.rendered_bad.is_empty()
    }
}

/// Checks every blob of `store` and what `index.json` references; `needed`
/// adds digests that must be present (a lock's), labelled with who needs them.
/// Reports hashing the blob files ([`Phase::Hashing`]) and checking the
/// rendered trees ([`Phase::CheckingTrees`]).
pub async fn check(
    store: &Store,
    needed: &[(Digest, String)],
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut files = Vec::new();
    for blob in store.blob_files()? {
        match blob.digest {
            Some(digest) if blob.kind != FileType::RegularFile => {
                report.blobs += 1;
                report.corrupt.push((
                    digest,
                    format!(
                        "it is {}, not a file (imagelock never follows a link in its store)",
                        crate::store::describe(blob.kind)
                    ),
                ));
            }
            Some(digest) => files.push((digest, blob.path)),
            None => report.strays.push(blob.path),
        }
    }
    // Sizes as listed, for the progress total; what is hashed is reported.
    let listed: u64 = files
        .iter()
        .filter_map(|(_, path)| std::fs::symlink_metadata(path).ok())
        .map(|m| m.len())
        .sum();
    reporter.begin(Phase::Hashing, files.len(), listed);
    let cores = concurrency::cpu_threads();
    let jobs = files.into_iter().map(|(digest, path)| {
        let reporter = reporter.clone();
        async move {
            let algorithm = digest.algorithm();
            let hashed =
                tokio::task::spawn_blocking(move || crate::digest::hash_file(&path, algorithm))
                    .await?;
            if let Ok((size, _)) = &hashed {
                reporter.bytes(*size);
            }
            reporter.item_done();
            Ok((digest, hashed))
        }
    });
    let mut present: BTreeSet<Digest> = BTreeSet::new();
    for (digest, hashed) in concurrency::run_bounded(cores, jobs).await? {
        report.blobs += 1;
        match hashed {
            Ok((size, actual)) => {
                report.bytes += size;
                if actual == digest {
                    present.insert(digest);
                } else {
                    report
                        .corrupt
                        .push((digest, format!("its bytes hash to {actual}")));
                }
            }
            Err(e) => report
                .corrupt
                .push((digest, format!("cannot be read: {e}"))),
        }
    }
    reporter.finish();
    report.corrupt.sort();
    // Walk index.json: index → manifests → configs and layers.
    let index = store.read_index()?;
    let mut referenced: BTreeMap<Digest, String> = BTreeMap::new();
    let mut queue: Vec<(oci::Descriptor, String)> = index
        .manifests
        .iter()
        .map(|d| {
            let name = d
                .annotations
                .get(oci::REF_NAME_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| d.digest.to_string());
            (d.clone(), name)
        })
        .collect();
    while let Some((descriptor, name)) = queue.pop() {
        if referenced
            .insert(descriptor.digest.clone(), name.clone())
            .is_some()
        {
            continue;
        }
        if !present.contains(&descriptor.digest) {
            continue;
        }
        let Some(kind) = oci::manifest_kind(&descriptor.media_type) else {
            continue;
        };
        let bytes = crate::fsutil::read_regular(&store.blob_path(&descriptor.digest))?;
        match kind {
            ManifestKind::Index => {
                if let Ok(child) = oci::parse_index(&bytes) {
                    queue.extend(child.manifests.into_iter().map(|d| (d, name.clone())));
                }
            }
            ManifestKind::Image => {
                if let Ok(manifest) = oci::parse_image_manifest(&bytes) {
                    queue.push((manifest.config, name.clone()));
                    queue.extend(manifest.layers.into_iter().map(|d| (d, name.clone())));
                }
            }
        }
    }
    for (digest, who) in needed {
        referenced
            .entry(digest.clone())
            .or_insert_with(|| who.clone());
    }
    let corrupt: BTreeSet<&Digest> = report.corrupt.iter().map(|(d, _)| d).collect();
    report.missing = referenced
        .into_iter()
        .filter(|(d, _)| !present.contains(d) && !corrupt.contains(d))
        .collect();
    check_rendered(store, &mut report, &*reporter).await?;
    Ok(report)
}

/// Checks every tree of the render cache (one at a time: each check hashes on all cores).
async fn check_rendered(
    store: &Store,
    report: &mut Report,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let Some(rendered) = store.open_dir(RENDERED_DIR)? else {
        return Ok(());
    };
    let rendered = Arc::new(rendered);
    let entries = render_cache::list(&rendered)?;
    reporter.begin(Phase::CheckingTrees, entries.len(), 0);
    for entry in entries {
        let (dir, name) = (rendered.clone(), entry.name.clone());
        let (condition, record) =
            tokio::task::spawn_blocking(move || render_cache::check(&dir, &name)).await?;
        match condition {
            render_cache::Condition::Intact => report.rendered += 1,
            // Never used again; `gc` removes it.
            render_cache::Condition::Outdated => {}
            condition => {
                report.rendered += 1;
                report.rendered_bad.push(BadTree {
                    key: entry.name,
                    image: record.map(|r| r.image),
                    condition,
                });
            }
        }
        reporter.item_done();
    }
    reporter.finish();
    Ok(())
}

/// Moves the modified and damaged trees of `report` to
/// `STORE/quarantine/rendered-<key>`; returns where they went. The caller holds
/// the exclusive store lock.
pub fn quarantine_rendered(store: &Store, report: &Report) -> anyhow::Result<Vec<PathBuf>> {
    let Some(rendered) = store.open_dir(RENDERED_DIR)? else {
        return Ok(Vec::new());
    };
    let dir = store.dir(QUARANTINE_DIR)?;
    let quarantine = store
        .open_dir(QUARANTINE_DIR)?
        .ok_or_else(|| anyhow::anyhow!("{} vanished", dir.display()))?;
    let mut moved = Vec::new();
    for bad in &report.rendered_bad {
        let mut name = format!("rendered-{}", bad.key);
        let mut n = 1;
        while quarantine.kind(&name)?.is_some() {
            n += 1;
            name = format!("rendered-{}.{n}", bad.key);
        }
        rustix::fs::renameat(
            rendered.fd(),
            bad.key.as_str(),
            quarantine.fd(),
            name.as_str(),
        )
        .map_err(std::io::Error::from)?;
        moved.push(dir.join(name));
    }
    Ok(moved)
}

/// Moves the corrupt blobs of `report` to `STORE/quarantine/<alg>-<hex>`;
/// returns where they went. The caller holds the exclusive store lock.
pub fn quarantine(store: &Store, report: &Report) -> anyhow::Result<Vec<PathBuf>> {
    let dir = store.dir(QUARANTINE_DIR)?;
    let mut moved = Vec::new();
    for (digest, _) in &report.corrupt {
        let from = store.blob_path(digest);
        let mut to = dir.join(format!("{}-{}", digest.algorithm().as_str(), digest.hex()));
        let mut n = 1;
        while std::fs::symlink_metadata(&to).is_ok() {
            n += 1;
            to = dir.join(format!(
                "{}-{}.{n}",
                digest.algorithm().as_str(),
                digest.hex()
            ));
        }
        std::fs::rename(&from, &to)?;
        moved.push(to);
    }
    Ok(moved)
}

/// The digests a lock needs, labelled by image, for [`check`].
pub fn needed_by(lock: &crate::project::lockfile::Lock) -> Vec<(Digest, String)> {
    lock.images
        .values()
        .flat_map(|i| {
            let who = format!("image `{}` in the lock", i.id);
            i.blobs().into_iter().map(move |b| (b.digest, who.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::digest::Digest;
    use crate::progress::{Phase, Recorded, Recording};
    use crate::project::lockfile::Blob;
    use crate::store::{RENDERED_DIR, Store};

    #[tokio::test]
    async fn check_reports_every_file_it_hashes_and_every_tree_it_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let contents: [&[u8]; 2] = [b"config", &[1u8; 2 * 1024 * 1024]];
        for bytes in contents {
            let blob = Blob {
                digest: Digest::sha256_of(bytes),
                size: bytes.len() as u64,
                media_type: crate::oci::OCI_MANIFEST.into(),
            };
            store.insert_bytes(&blob, bytes).expect("insert");
        }
        // Corrupt: hashed and reported like the others.
        let named = Digest::sha256_of(b"promised");
        std::fs::write(store.blob_path(&named), b"altered!").expect("write");
        let key = "ab".repeat(32);
        std::fs::create_dir_all(store.root().join(RENDERED_DIR).join(&key)).expect("mkdir");

        let recording = Arc::new(Recording::default());
        let report = super::check(&store, &[], recording.clone())
            .await
            .expect("check");
        let total = contents.iter().map(|c| c.len() as u64).sum::<u64>() + 8;
        assert_eq!((report.blobs, report.bytes), (3, total));
        assert_eq!((report.corrupt.len(), report.rendered), (1, 1));
        assert_eq!(
            recording.phases(),
            [
                Recorded::complete(Phase::Hashing, 3, total),
                Recorded::complete(Phase::CheckingTrees, 1, 0),
            ]
        );
    }
}
