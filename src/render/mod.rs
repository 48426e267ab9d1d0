//! `imagelock render`: a locked image's root filesystem, from the store's verified blobs,
//! safely, and cached in the store so that rendering it again is near-instant.
//!
//! # What is rendered
//! - **OCI images**: the layers of the platform manifest the lock pins (`--platform`, else
//!   this machine's platform, chosen as `sync` chooses), base first. Media types `tar`,
//!   `tar+gzip` and `tar+zstd` (OCI, non-distributable and Docker spellings). Whiteouts
//!   `.wh.NAME` remove NAME from lower layers; `.wh..wh..opq` empties its directory of what
//!   lower layers put there; other `.wh..wh.*` names are ignored; whiteouts are never
//!   written. An entry replaces what lower layers had at its path, except that a directory
//!   over a directory merges.
//! - **ACIs**: the image and its dependencies as the lock pins them (each by image ID),
//!   in rkt's reference order: highest priority first, first wins (`appc` has the rules,
//!   including pathWhitelist). Before anything is written, each ACI's manifest is read and
//!   its name, labels, image ID and dependencies are checked against the lock. (So an ACI is
//!   read twice: once for its manifest, which may be its last entry, once to extract.)
//! - **Metadata**: modes; owners when running as root; modification times (directories'
//!   once their entries are in); extended attributes (PAX `SCHILY.xattr.*`) where the file
//!   system and our privileges allow — refusals are counted in the summary, not fatal.
//! - **Layers as real builders write them**, read the way Go's `archive/tar` reads them
//!   (what `umoci`, containerd and Docker use), each tolerance on purpose:
//!   - *A stream that ends right after its last entry's data* (no padding to 512 bytes, no
//!     end-of-archive blocks, or short ones) is complete: `umoci insert` writes such layers,
//!     Go's reader stops there without complaint, and the digest pins exactly these bytes.
//!     A stream that ends *inside* an entry's data or inside a header is truncated: refused.
//!   - *Root entries* (`/`, `.`, `./`) give the root directory their metadata, as `umoci`
//!     does (`umoci insert … /` writes `/`); a root entry that is not a directory is refused.
//!     Other absolute paths stay refused.
//!   - *Duplicate entries*: the last one wins, as in runtimes (each entry replaces what is
//!     at its path).
//!   - *PAX and GNU long names and links*, the ustar and star name prefixes, *base-256*
//!     sizes, ids and times (GNU tar and Go write them for values octal cannot hold).
//!   - *GNU sparse files* (old GNU `S` entries, PAX 0.0, 0.1 and 1.0) are expanded to their
//!     full size and written sparse (holes left unwritten where the file system allows);
//!     their holes count against the layer's 8 GiB cap. A sparse map that does not add up
//!     to the data that follows, overlaps or runs past the file is refused.
//!   - *A lone zero block between entries* is skipped; two end the archive, and what
//!     follows them is hashed but not applied (as Go's reader, which runtimes use, stops).
//!
//!   Still refused, because tools would disagree on what the layer holds: a header size
//!   other than its PAX `size`, data after a header-only entry (link, directory, device), a
//!   bad header checksum, an extended header that describes no entry, entry types layers do
//!   not use (GNU volume labels, dump directories, multi-volume parts).
//! - **Without root**: owners are not applied (files belong to the user), device nodes are
//!   skipped and counted in the summary (fifos are made), directories keep u+rwx and files
//!   u+r so that the tree can be copied and removed without privileges.
//!
//! # Safety
//! - Blobs are read only from the store and hashed as they are read; a blob whose bytes do
//!   not hash to its digest (or have another size) fails the render, and since trees are
//!   built in a private directory and published only when complete, nothing built from it
//!   is ever used. Rendering needs no network.
//! - Nothing is written outside the target: entry paths that are absolute or have a `..`
//!   component refuse the image; every directory is opened relative to its parent with
//!   `O_NOFOLLOW`, so an entry whose path goes through a symlink (a symlink to `/`, then a
//!   file under it) refuses the image, whatever the symlink points to — imagelock never
//!   writes through a symlink. (Docker would resolve such a symlink inside the root
//!   filesystem; layers built by Docker or BuildKit never need it, as they record real
//!   paths.) Hard links must point inside the image, not through a symlink, to an existing
//!   non-directory. Whiteouts for `.` or `..` refuse the image.
//! - Every failure names the image, the layer (index and digest) or ACI, and the entry, and
//!   its hint says whose fault it is: the layer is *hostile* (it would write outside the
//!   target or through a link), *malformed* (it breaks the tar format or contradicts
//!   itself), or it hit a *local limit* (a name longer than the file system allows, a full
//!   disk, the caps below), which is not the image's fault.
//! - Decompression is capped as for ACIs ([`crate::appc::aci::Limits`]): at most 8 GiB
//!   uncompressed per layer, 1 Mi entries per layer, 1 MiB per extended header, no xz or
//!   zstd window over 128 MiB.
//! - The target directory must be empty unless `--force`; with `--force` what the image has
//!   replaces what is in the way (a symlink there is removed, not followed) and everything
//!   else in the directory is left alone.
//!
//! # The render cache (on-disk format)
//! ```text
//! STORE/rendered/<key>/rootfs/       the rendered tree
//! STORE/rendered/<key>/listing       one line per entry of the tree (render_cache::Listing)
//! STORE/rendered/<key>/source.json   {"format": 2, "kind": "oci"|"aci", "privileged": bool,
//!                                      "sources": [{"digest", "media-type", "level",
//!                                                   "identity"?}...],   (render order)
//!                                      "tree": "sha256:…", "entries": n, "bytes": n,
//!                                      "image": "<lock ID it was first rendered for>"}
//! STORE/rendered/.tmp-*/             builds in progress, or left by a crash
//! ```
//! `<key>` is the SHA-256 of [`render_cache::key_text`]: the format version, the kind, whether it
//! was rendered as root, and each source's level, media type, digest (and for ACIs the
//! name, labels and image ID checked). Trees are shared by content: two lock entries with
//! the same layers share one tree. A tree is built under `.tmp-*`, its listing written
//! beside it and digested into `source.json`, and renamed into place, so `<key>`
//! directories are always complete.
//!
//! # A render is never served from a changed cache
//! Regular files are hard-linked out of the cache (below), so whoever can write a rendered
//! directory can rewrite a cached file in place, and restore its size and mtime. So before
//! a cached tree is used, its listing is computed again and must digest to the record's
//! `tree`: each entry's path, type, mode, owner, symlink target, and for regular files size,
//! mtime and the BLAKE3 hash of the content and of the extended attributes — every file is
//! read again, on all cores, each inode once ([`render_cache::listing`]). A tree that differs is
//! reported (naming the paths that changed) and rendered anew; `fsck` runs the same check
//! over every cached tree and `fsck --repair` moves changed trees to the quarantine.
//!
//! Why a check rather than an unchangeable cache: copying every file (or reflinking, which
//! ext4 cannot) on each render costs about as much as rendering afresh, and read-only modes
//! do not stop the files' owner or root. Checking costs one read of the tree's files and
//! BLAKE3 over their bytes (several GB/s per core, against SHA-256's ~1.4), so a warm
//! render stays about 5x faster than a cold one or better (`bench/render.sh` on two cores:
//! 56 ms against 0.28 s for 193 MiB in three files, 0.66 s against 12.7 s for 18,000 small
//! files) while hard links keep the disk space shared. What
//! the check does not cover: directories rendered earlier keep sharing inodes with the
//! cache, so an edit made in one of them *after* a render also shows in the trees rendered
//! from the same cache (render with `--copy` for trees you will change in place); an edit
//! racing a render, between the check and the link, is not seen; and whoever can write the
//! store itself can rewrite a tree together with its listing and record (the store is as
//! trusted as its writers, for blobs only up to their digests).
//!
//! For `gc` ([`render_cache::list`], [`render_cache::abandoned`], [`render_cache::remove`]): renders hold the
//! store's shared lock ([`crate::store::Store::lock_shared`]) from start to end, so under
//! the exclusive lock no render is running and every `.tmp-*` directory is abandoned. A
//! tree may be removed when any digest in its `sources` is no longer referenced by a lock
//! (or missing from `blobs/`), when its record is missing or unreadable, or when `format`
//! is not [`render_cache::FORMAT`]. [`render_cache::remove`] renames an entry aside before deleting it,
//! without following symlinks. The cache is reached from `STORE/rendered/` opened without
//! following links ([`crate::store::Store::open_dir`]), and only its own names (keys and
//! `.tmp-*`) are ever removed.
//!
//! # Output
//! Files are hard-linked from the cache into the target (so they share inodes with it:
//! edit them by replacing, not in place, or use `--copy`; a file changed in place is
//! noticed before the next reuse, above); `--copy` copies instead (the
//! kernel reflinks where the file system can). Hard links fall back to copies when the
//! target is on another file system. Directories, symlinks and device nodes are always made
//! anew. `--format ext4 --output FILE` builds an ext4 image of the tree with `mkfs.ext4 -d`
//! (e2fsprogs).

mod appc;
pub mod apply;
mod archive;
pub mod output;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::appc::aci::{self, Compression, Limits};
use crate::digest::Hasher;
use crate::errors::{hinted, with_hint};
use crate::fsutil::tree;
use crate::oci::platform::Platform;
use crate::progress::{Phase, Reporter};
use crate::project::lockfile::{Blob, Lock, LockedImage, LockedManifest};
use crate::store::{Store, render_cache};
use crate::text::{human_bytes, plural};

pub use output::Method;

/// What to render and where.
#[derive(Debug, Clone)]
pub struct RenderRequest {
    /// The lock entry ID.
    pub id: String,
    /// `--platform`, for OCI images pinned for several platforms.
    pub platform: Option<String>,
    /// Where the result goes.
    pub output: Output,
    /// Render over a non-empty directory, or replace an existing output file.
    pub force: bool,
}

/// Where a render goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// A directory tree (created if missing).
    Dir {
        /// The directory.
        path: PathBuf,
        /// Hard links or copies.
        method: Method,
    },
    /// An ext4 file-system image made with `mkfs.ext4 -d`.
    Ext4 {
        /// The image file.
        path: PathBuf,
    },
}

/// What the lock says to render.
struct Planned<'a> {
    /// `oci` or `aci`.
    kind: &'static str,
    /// For messages: `big (linux/amd64, 3 layers)`.
    what: String,
    sources: Vec<render_cache::Source>,
    plan: Plan<'a>,
}

enum Plan<'a> {
    Oci {
        layers: Vec<Blob>,
    },
    Aci {
        list: Vec<appc::Node>,
        images: Vec<&'a LockedImage>,
    },
}

/// A render on its way: what the lock says to render, and the cache entry it is built
/// into or served from. The command ([`crate::commands::render`]) drives it: look the entry
/// up ([`Job::cached`]), build it when it is not intact ([`Job::build`]), then place the
/// tree ([`Job::place`]). The caller has checked the image's tree against the store, the
/// trust policy and the signatures, and holds the store's shared lock.
pub struct Job<'a> {
    store: &'a Store,
    request: &'a RenderRequest,
    planned: Planned<'a>,
    privileged: bool,
    key: String,
    rendered: crate::store::StoreDir,
}

/// Where a render put the tree.
pub struct Written {
    /// The directory or ext4 image written.
    pub output: PathBuf,
    /// `dir` or `ext4`.
    pub format: &'static str,
    /// How files were placed into a directory (`None` for ext4).
    pub placed: Option<output::Placed>,
}

impl<'a> Job<'a> {
    /// Plans rendering `request` from `lock`: the sources, the output checked, the cache key.
    pub fn new(
        store: &'a Store,
        lock: &'a Lock,
        request: &'a RenderRequest,
    ) -> anyhow::Result<Self> {
        let planned = plan(lock, request)?;
        check_output(&request.output, request.force)?;
        let privileged = rustix::process::geteuid().is_root();
        let key = render_cache::key(&render_cache::key_text(
            planned.kind,
            privileged,
            &planned.sources,
        ));
        let rendered_path = store.dir(render_cache::RENDERED_DIR)?;
        let rendered = store
            .open_dir(render_cache::RENDERED_DIR)?
            .ok_or_else(|| anyhow::anyhow!("{} vanished", rendered_path.display()))?;
        Ok(Job {
            store,
            request,
            planned,
            privileged,
            key,
            rendered,
        })
    }

    /// For messages: `big (linux/amd64, 3 layers)`.
    pub fn what(&self) -> &str {
        &self.planned.what
    }

    /// The entry of the lock being rendered.
    pub fn id(&self) -> &str {
        &self.request.id
    }

    /// `oci` or `aci`.
    pub fn kind(&self) -> &'static str {
        self.planned.kind
    }

    /// The cache key (the entry's directory name).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the tree is built as root (owners and device nodes kept).
    pub fn privileged(&self) -> bool {
        self.privileged
    }

    /// The cache entry's directory.
    pub fn entry(&self) -> PathBuf {
        self.rendered.path().join(&self.key)
    }

    /// The cached tree's directory.
    pub fn tree(&self) -> PathBuf {
        self.entry().join(render_cache::TREE_DIR)
    }

    /// The record of the cached tree when it is intact; a damaged or modified entry is
    /// removed (and `warn` told why), so that it gets rebuilt.
    pub fn cached(&self, warn: impl FnMut(String)) -> anyhow::Result<Option<render_cache::Record>> {
        lookup(&self.rendered, &self.key, warn, &self.request.id)
    }

    /// Builds the tree into the cache (every source blob must be in the store), reporting
    /// each layer (or ACI) applied.
    pub fn build(&self, reporter: &dyn Reporter) -> anyhow::Result<apply::Counts> {
        check_blobs_present(self.store, &self.planned, &self.request.id)?;
        reporter.begin(Phase::Rendering, self.planned.sources.len(), 0);
        let built = build(self, reporter);
        reporter.finish();
        built
    }

    /// Places the cached tree where the request says: hard-linked or copied into a
    /// directory, or made into an ext4 image.
    pub fn place(&self, tree: &CountsOrRecord) -> anyhow::Result<Written> {
        let request = self.request;
        match &request.output {
            Output::Dir { path, method } => {
                std::fs::create_dir_all(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                let source = render_cache::open_entry(&self.rendered, &self.key)
                    .and_then(|entry| render_cache::open_tree(std::os::fd::AsFd::as_fd(&entry)))
                    .with_context(|| {
                        format!("cannot open the cached tree {}", self.tree().display())
                    })?;
                let placed = output::materialize(source, path, *method, self.privileged)
                    .with_context(|| {
                        format!(
                            "cannot write the rendered tree of `{}` to {}",
                            request.id,
                            path.display()
                        )
                    })?;
                Ok(Written {
                    output: path.clone(),
                    format: "dir",
                    placed: Some(placed),
                })
            }
            Output::Ext4 { path } => {
                make_ext4(&self.tree(), path, tree).with_context(|| {
                    format!("cannot make {} for `{}`", path.display(), request.id)
                })?;
                Ok(Written {
                    output: path.clone(),
                    format: "ext4",
                    placed: None,
                })
            }
        }
    }
}

/// A fresh build's counts, or the record of a cached tree.
pub enum CountsOrRecord {
    /// Built now.
    Counts(Box<apply::Counts>),
    /// Found intact in the cache.
    Record(render_cache::Record),
}

impl CountsOrRecord {
    /// How many entries the tree has, and the bytes of its regular files.
    pub fn entries_bytes(&self) -> (u64, u64) {
        match self {
            CountsOrRecord::Counts(c) => (
                c.files + c.dirs + c.symlinks + c.hardlinks + c.nodes,
                c.bytes,
            ),
            CountsOrRecord::Record(r) => (r.entries, r.bytes),
        }
    }
}

/// The platform manifest to render from an OCI entry.
fn select_manifest<'a>(
    image: &'a LockedImage,
    wanted: Option<&str>,
) -> anyhow::Result<&'a LockedManifest> {
    let pinned: Vec<String> = image
        .manifests
        .iter()
        .map(|m| {
            m.platform
                .clone()
                .unwrap_or_else(|| "(single platform)".into())
        })
        .collect();
    let wanted_platform = match wanted {
        Some(text) => Some(
            text.parse::<Platform>()
                .map_err(|e| with_hint(e, format!("`{}` pins: {}", image.id, pinned.join(", "))))?,
        ),
        None => None,
    };
    if wanted_platform.is_none() && image.manifests.len() == 1 {
        return Ok(&image.manifests[0]);
    }
    let platforms: Vec<Option<Platform>> = image
        .manifests
        .iter()
        .map(|m| m.platform.as_deref().and_then(|p| p.parse().ok()))
        .collect();
    let entries: Vec<Option<&Platform>> = platforms.iter().map(Option::as_ref).collect();
    let target = wanted_platform.clone().unwrap_or_else(Platform::host);
    match crate::oci::platform::select(&target, &entries) {
        Some(index) => Ok(&image.manifests[index]),
        None => Err(hinted(
            format!(
                "`{}` has no manifest for {} in images.lock (it pins {})",
                image.id,
                target,
                pinned.join(", ")
            ),
            match wanted_platform {
                Some(_) => "pick one of the pinned platforms, or add the platform to the entry's `platforms` in images.toml and run `imagelock lock`".to_owned(),
                None => format!("choose one with `--platform`, e.g. `imagelock render {} DIR --platform {}`", image.id, pinned[0]),
            },
        )),
    }
}

/// What the lock says to render for `request`.
fn plan<'a>(lock: &'a Lock, request: &RenderRequest) -> anyhow::Result<Planned<'a>> {
    let image = lock.images.get(&request.id).ok_or_else(|| {
        crate::errors::unknown_image(
            &request.id,
            "images.lock",
            lock.images.keys().map(String::as_str),
            Some("a new entry needs `imagelock lock` and `imagelock sync` first"),
        )
    })?;
    if image.is_oci() {
        let manifest = select_manifest(image, request.platform.as_deref())?;
        let mut sources = Vec::new();
        for layer in &manifest.layers {
            if layer_compression(&layer.media_type).is_none() {
                return Err(hinted(
                    format!(
                        "`{}`: layer {} has media type `{}`, which imagelock cannot render",
                        request.id, layer.digest, layer.media_type
                    ),
                    "render supports tar, tar+gzip and tar+zstd layers (OCI and Docker media types)",
                ));
            }
            sources.push(render_cache::Source {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                level: 0,
                identity: None,
            });
        }
        let platform = manifest
            .platform
            .as_deref()
            .map(|p| format!("{p}, "))
            .unwrap_or_default();
        return Ok(Planned {
            kind: "oci",
            what: format!(
                "`{}` ({platform}{})",
                request.id,
                plural(manifest.layers.len(), "layer")
            ),
            sources,
            plan: Plan::Oci {
                layers: manifest.layers.clone(),
            },
        });
    }
    if let Some(platform) = &request.platform {
        return Err(hinted(
            format!(
                "`--platform {platform}` applies to OCI images; `{}` is an ACI",
                request.id
            ),
            "an ACI is pinned for one platform (its os/arch labels): drop --platform",
        ));
    }
    let list = appc::render_list(&request.id, |id| match lock.images.get(id) {
        Some(image) if image.aci.is_some() => Ok(image.dependencies.clone()),
        Some(_) => Err(format!("`{id}` is not an ACI")),
        None => Err(format!("the lock has no entry `{id}`")),
    })
    .map_err(|problem| {
        hinted(
            format!("cannot render `{}`: {problem}", request.id),
            "images.lock is damaged: re-create it with `imagelock lock`",
        )
    })?;
    let mut images = Vec::new();
    let mut sources = Vec::new();
    for node in &list {
        let image = &lock.images[&node.id];
        let aci = image.aci.as_ref().expect("checked by render_list");
        let labels: Vec<String> = image
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        sources.push(render_cache::Source {
            digest: aci.digest.clone(),
            media_type: aci.media_type.clone(),
            level: node.level,
            identity: Some(format!(
                "{} {} {}",
                image.name.as_deref().unwrap_or("-"),
                labels.join(","),
                image.image_id.as_deref().unwrap_or("-")
            )),
        });
        images.push(image);
    }
    let deps = list.len() - 1;
    Ok(Planned {
        kind: "aci",
        what: if deps == 0 {
            format!("`{}` (ACI)", request.id)
        } else {
            format!(
                "`{}` (ACI with {})",
                request.id,
                count(deps as u64, "dependency", "dependencies")
            )
        },
        sources,
        plan: Plan::Aci { list, images },
    })
}

/// The compression a layer media type implies; `None` for types render does not know.
fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// Refuses a non-empty target directory or an existing output file without `--force`.
fn check_output(output: &Output, force: bool) -> anyhow::Result<()> {
    match output {
        Output::Dir { path, .. } => match std::fs::read_dir(path) {
            Ok(mut entries) => {
                if entries.next().is_some() && !force {
                    return Err(hinted(
                        format!("{} is not empty", path.display()),
                        "render into an empty or new directory, or pass `--force` to render over it (entries in the image's way are replaced; nothing else is removed)",
                    ));
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(hinted(
                format!("{} exists and is not a directory", path.display()),
                "render into a directory",
            )),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
        },
        Output::Ext4 { path } => {
            if path.symlink_metadata().is_ok() && !force {
                return Err(hinted(
                    format!("{} already exists", path.display()),
                    "pass `--force` to replace it",
                ));
            }
            Ok(())
        }
    }
}

/// The cached tree's record if the entry `key` of `rendered` holds an intact tree (its
/// listing, file contents included, digests to what the record says); a damaged or
/// modified one is removed (and reported) so that it gets rebuilt.
fn lookup(
    rendered: &crate::store::StoreDir,
    key: &str,
    mut warn: impl FnMut(String),
    id: &str,
) -> anyhow::Result<Option<render_cache::Record>> {
    if rendered.kind(key)?.is_none() {
        return Ok(None);
    }
    let entry = rendered.path().join(key);
    match render_cache::check(rendered, key) {
        (render_cache::Condition::Intact, Some(record)) => return Ok(Some(record)),
        (render_cache::Condition::Modified { paths }, _) => {
            let which = if paths.is_empty() {
                String::new()
            } else {
                format!(" ({})", paths.join(", "))
            };
            warn(format!(
                "the cached tree of `{id}` at {} changed since it was rendered{which}: it is not used, and is rendered again now. \
                 Directories rendered from it with hard links share the changed files (a file edited in place there changes the cache): render those again, and use `--copy` for trees you will change in place",
                entry.display()
            ));
        }
        (condition, _) => {
            let why = match condition {
                render_cache::Condition::Damaged { problem } => problem,
                _ => "its record is of another format".to_owned(),
            };
            warn(format!(
                "the render cache entry {} is damaged ({why}); rendering it again",
                entry.display()
            ));
        }
    }
    render_cache::remove(rendered, key)
        .with_context(|| format!("cannot remove {}", entry.display()))?;
    Ok(None)
}

/// Fails before any work when a source blob is not in the store.
fn check_blobs_present(store: &Store, planned: &Planned<'_>, id: &str) -> anyhow::Result<()> {
    let missing: Vec<String> = planned
        .sources
        .iter()
        .filter(|s| {
            !std::fs::symlink_metadata(store.blob_path(&s.digest)).is_ok_and(|m| m.is_file())
        })
        .map(|s| format!("  {} ({})", s.digest, s.media_type))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(hinted(
        format!(
            "cannot render `{id}`: {} not in the store at {}:\n{}",
            plural(missing.len(), "blob"),
            store.root().display(),
            missing.join("\n")
        ),
        "run `imagelock sync` first (render reads only the store, never the network)",
    ))
}

/// A blob file hashed as it is read.
struct HashingReader {
    file: File,
    hasher: Hasher,
    size: u64,
}

impl HashingReader {
    fn open(store: &Store, blob: &Blob) -> anyhow::Result<HashingReader> {
        let path = store.blob_path(&blob.digest);
        let file = store.open_blob(&blob.digest).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                hinted(
                    format!(
                        "blob {} is not in the store at {}",
                        blob.digest,
                        store.root().display()
                    ),
                    "run `imagelock sync` first",
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot read {}", path.display()))
            }
        })?;
        Ok(HashingReader {
            file,
            hasher: Hasher::new(blob.digest.algorithm()),
            size: 0,
        })
    }

    /// Reads what is left, then checks digest and size.
    fn verify(mut self, store: &Store, blob: &Blob) -> anyhow::Result<()> {
        io::copy(&mut self, &mut io::sink()).context("cannot read a blob")?;
        let actual = self.hasher.finish();
        if actual != blob.digest || self.size != blob.size {
            return Err(hinted(
                format!(
                    "blob {} in the store is corrupt: its {} bytes hash to {actual} (the lock says {} bytes); nothing rendered from it is kept",
                    blob.digest, self.size, blob.size
                ),
                format!(
                    "delete {} and run `imagelock sync` to fetch it again (`imagelock verify` checks the whole store)",
                    store.blob_path(&blob.digest).display()
                ),
            ));
        }
        Ok(())
    }
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// A decompressed stream capped at [`Limits::max_uncompressed`].
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX);
        let len = buf.len().min(room);
        let n = self.inner.read(&mut buf[..len]).map_err(|e| {
            if e.kind() == io::ErrorKind::OutOfMemory {
                io::Error::other(LimitExceeded(format!(
                    "the stream needs a decoder window over {}: refused",
                    human_bytes(aci::DEFAULT_MAX_WINDOW)
                )))
            } else {
                e
            }
        })?;
        if n as u64 > self.left {
            return Err(io::Error::other(LimitExceeded(format!(
                "more than {} uncompressed: refused (a decompression bomb?)",
                human_bytes(self.limit)
            ))));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads `blob` through `compression`, hands the tar stream to `apply`, drains it (so the
/// whole blob is hashed) and verifies the blob. When applying fails, a corrupt blob is
/// reported as such rather than as whatever its damage looked like.
fn with_blob_tar(
    store: &Store,
    blob: &Blob,
    compression: Compression,
    limits: &Limits,
    apply: impl FnOnce(&mut dyn Read) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut hashed = HashingReader::open(store, blob)?;
    let result = {
        let body = BufReader::with_capacity(aci::READ_BUFFER, &mut hashed);
        let mut stream = Capped {
            inner: aci::decoder(body, compression, limits.max_window),
            left: limits.max_uncompressed,
            limit: limits.max_uncompressed,
        };
        apply(&mut stream).and_then(|()| {
            // Padding after the end-of-archive blocks, and anything after it.
            io::copy(&mut stream, &mut io::sink())
                .map(drop)
                .context("cannot read to the end of the archive")
        })
    };
    match result {
        Ok(()) => hashed.verify(store, blob),
        Err(e) => match hashed.verify(store, blob) {
            Err(corrupt) => Err(corrupt),
            Ok(()) => Err(e),
        },
    }
}

/// Builds the tree in a private directory under `STORE/rendered/` and publishes it as the
/// job's cache entry.
fn build(job: &Job<'_>, reporter: &dyn Reporter) -> anyhow::Result<apply::Counts> {
    let (store, rendered, planned) = (job.store, job.rendered.path(), &job.planned);
    let (privileged, key, id) = (job.privileged, job.key.as_str(), job.request.id.as_str());
    let building = tempfile::Builder::new()
        .prefix(&format!("{}build-", render_cache::TEMP_PREFIX))
        .tempdir_in(rendered)
        .with_context(|| format!("cannot create a build directory in {}", rendered.display()))?;
    let rootfs = building.path().join(render_cache::TREE_DIR);
    std::fs::create_dir(&rootfs).with_context(|| format!("cannot create {}", rootfs.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755))?;
    }
    let limits = Limits::default();
    let mut extractor = apply::Extractor::new(tree::Tree::open(&rootfs)?, privileged);
    match &planned.plan {
        Plan::Oci { layers } => {
            for (index, layer) in layers.iter().enumerate() {
                let compression =
                    layer_compression(&layer.media_type).expect("checked when planning");
                with_blob_tar(store, layer, compression, &limits, |tar| {
                    extractor
                        .apply_oci_layer(tar, limits.max_entries)
                        .map_err(anyhow::Error::from)
                })
                .map_err(|e| {
                    let what = format!("layer {} of {}", index + 1, layers.len());
                    fault_hint(e, id, &what).context(format!(
                        "cannot render `{id}`: {what} ({}, {})",
                        layer.digest,
                        human_bytes(layer.size)
                    ))
                })?;
                reporter.item_done();
            }
        }
        Plan::Aci { list, images } => {
            render_acis(store, list, images, &limits, &mut extractor, id, reporter)?
        }
    }
    let (_, counts) = extractor
        .finish()
        .context("cannot finish the rendered tree")?;
    let tree = tree::Tree::open(&rootfs).context("cannot open the rendered tree")?;
    let listing = render_cache::listing(tree.root()).context("cannot list the rendered tree")?;
    drop(tree);
    let record = render_cache::Record {
        format: render_cache::FORMAT,
        kind: planned.kind.to_owned(),
        privileged,
        sources: planned.sources.clone(),
        tree: listing.digest,
        entries: listing.entries,
        bytes: listing.bytes,
        image: id.to_owned(),
    };
    std::fs::write(
        building.path().join(render_cache::LISTING_FILE),
        &listing.text,
    )
    .context("cannot write the cache listing")?;
    let mut text = serde_json::to_vec_pretty(&record).expect("a record serialises");
    text.push(b'\n');
    std::fs::write(building.path().join(render_cache::RECORD_FILE), text)
        .context("cannot write the cache record")?;
    let built = building.keep();
    let entry = rendered.join(key);
    if let Err(e) = std::fs::rename(&built, &entry) {
        // Another render of the same content won the race: use its tree.
        let _ = std::fs::remove_dir_all(&built);
        if !std::fs::symlink_metadata(entry.join(render_cache::RECORD_FILE))
            .is_ok_and(|m| m.is_file())
        {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot move the rendered tree to {}",
                entry.display()
            )));
        }
    }
    Ok(counts)
}

/// A limit imagelock keeps while reading a layer (decompressed size, decoder window), inside
/// an [`io::Error`] so that it reaches [`fault_of`] through the tar reader.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LimitExceeded(String);

/// Whose fault `error` is: the first classification found in its chain.
fn fault_of(error: &anyhow::Error) -> Option<apply::Fault> {
    error.chain().find_map(|cause| {
        if let Some(refused) = cause.downcast_ref::<apply::Refused>() {
            return Some(refused.fault);
        }
        if let Some(aci_error) = cause.downcast_ref::<aci::AciError>() {
            return Some(match aci_error {
                aci::AciError::Read(_) => apply::Fault::Local,
                aci::AciError::TooLarge { .. }
                | aci::AciError::WindowTooLarge { .. }
                | aci::AciError::TooManyEntries { .. }
                | aci::AciError::ManifestTooLarge { .. } => apply::Fault::Limit,
                aci::AciError::EscapingEntry { .. } | aci::AciError::EscapingLink { .. } => {
                    apply::Fault::Hostile
                }
                _ => apply::Fault::Malformed,
            });
        }
        if let Some(archive_error) = cause.downcast_ref::<archive::ArchiveError>() {
            return match archive_error {
                archive::ArchiveError::Visit(inner) => fault_of(inner),
                archive::ArchiveError::Io(e) => Some(io_fault(e)),
                refused => refused.fault(),
            };
        }
        cause.downcast_ref::<io::Error>().map(io_fault)
    })
}

/// What an I/O error while reading a layer says about it: a limit imagelock keeps, a
/// malformed stream (the blob hashes to its digest, so a decoder that fails on it reads
/// malformed data), or local trouble.
fn io_fault(error: &io::Error) -> apply::Fault {
    if error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<LimitExceeded>().is_some())
    {
        return apply::Fault::Limit;
    }
    match error.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            apply::Fault::Malformed
        }
        _ => apply::Fault::of_io(error),
    }
}

/// Says whose fault a failed layer (or ACI) is, in the hint: `what` names it ("layer 2 of
/// 3 (sha256:…)").
fn fault_hint(error: anyhow::Error, id: &str, what: &str) -> anyhow::Error {
    let refused = "imagelock refuses malformed or hostile layers, and nothing was written";
    let hint = match fault_of(&error) {
        Some(apply::Fault::Hostile) => format!(
            "{what} of `{id}` is hostile: it would write outside the target or through a link. {refused} (do not use this image; tell its publisher)"
        ),
        Some(apply::Fault::Malformed) => format!(
            "{what} of `{id}` is malformed: it breaks the tar format or contradicts itself. {refused} (ask its publisher to rebuild it)"
        ),
        Some(apply::Fault::Limit) => format!(
            "{what} of `{id}` is not at fault: it needs more than this machine or imagelock allows (above: a longer file name or more space than this file system has, or more than imagelock renders per layer); nothing was written. Render onto a file system that allows it"
        ),
        Some(apply::Fault::Local) => format!(
            "{what} of `{id}` is not at fault: writing the tree failed on this machine; nothing was written"
        ),
        None => return error,
    };
    with_hint(error, hint)
}

/// Pass 1: each ACI's manifest, checked against the lock; pass 2: extraction in render
/// order, first wins.
fn render_acis(
    store: &Store,
    list: &[appc::Node],
    images: &[&LockedImage],
    limits: &Limits,
    extractor: &mut apply::Extractor,
    id: &str,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let mut infos: HashMap<&str, aci::AciInfo> = HashMap::new();
    for image in images {
        if infos.contains_key(image.id.as_str()) {
            continue;
        }
        let blob = image.aci.as_ref().expect("planned ACIs have a blob");
        let mut hashed = HashingReader::open(store, blob)?;
        let read = aci::read_aci(
            BufReader::with_capacity(aci::READ_BUFFER, &mut hashed),
            limits,
        );
        hashed
            .verify(store, blob)
            .with_context(|| format!("cannot render `{id}`: ACI `{}`", image.id))?;
        let info = read
            .map_err(|e| fault_hint(e.into(), id, &format!("ACI `{}`", image.id)))
            .with_context(|| {
                format!("cannot render `{id}`: ACI `{}` ({})", image.id, blob.digest)
            })?;
        check_aci_identity(image, &info, images).map_err(|problem| {
            hinted(
                format!("cannot render `{id}`: ACI `{}` does not match images.lock: {problem}", image.id),
                "images.lock or the store is damaged: run `imagelock verify`, then `imagelock lock` and `imagelock sync`",
            )
        })?;
        infos.insert(image.id.as_str(), info);
    }
    let whitelists: Vec<_> = list
        .iter()
        .map(|node| appc::whitelist(&infos[node.id.as_str()].manifest.path_whitelist))
        .collect();
    let mut all_files = HashMap::new();
    for (index, image) in images.iter().enumerate() {
        let blob = image.aci.as_ref().expect("planned ACIs have a blob");
        let compression = infos[image.id.as_str()].compression;
        let keep = |path: &[u8], is_dir: bool| appc::keeps(list, &whitelists, index, path, is_dir);
        with_blob_tar(store, blob, compression, limits, |tar| {
            extractor
                .apply_aci(tar, limits.max_entries, index, &keep, &mut all_files)
                .map_err(anyhow::Error::from)
        })
        .map_err(|e| fault_hint(e, id, &format!("ACI `{}`", image.id)))
        .with_context(|| format!("cannot render `{id}`: ACI `{}` ({})", image.id, blob.digest))?;
        reporter.item_done();
    }
    Ok(())
}

/// The manifest inside an ACI against its lock entry: image ID, name, labels (os/arch may
/// be absent: the lock defaulted them for discovery), and dependencies in order.
fn check_aci_identity(
    image: &LockedImage,
    info: &aci::AciInfo,
    images: &[&LockedImage],
) -> Result<(), String> {
    if image.image_id.as_deref() != Some(info.image_id.as_str()) {
        return Err(format!(
            "its image ID is {}, the lock says {}",
            info.image_id,
            image.image_id.as_deref().unwrap_or("nothing")
        ));
    }
    let manifest = &info.manifest;
    if image.name.as_deref() != Some(manifest.name.as_str()) {
        return Err(format!(
            "it is named `{}`, the lock says `{}`",
            manifest.name,
            image.name.as_deref().unwrap_or("nothing")
        ));
    }
    let wrong: Vec<String> = image
        .labels
        .iter()
        .filter_map(|(key, value)| {
            let has = manifest.labels.get(key);
            let optional = matches!(key.as_str(), "os" | "arch");
            match has {
                Some(h) if h == value => None,
                None if optional => None,
                _ => Some(format!(
                    "label {key}={value} in the lock, {key}={} in the image",
                    has.map_or("(none)", String::as_str)
                )),
            }
        })
        .collect();
    if !wrong.is_empty() {
        return Err(wrong.join("; "));
    }
    let names: BTreeMap<&str, &LockedImage> = images.iter().map(|i| (i.id.as_str(), *i)).collect();
    if manifest.dependencies.len() != image.dependencies.len() {
        return Err(format!(
            "it has {} and the lock {}",
            count(
                manifest.dependencies.len() as u64,
                "dependency",
                "dependencies"
            ),
            image.dependencies.len()
        ));
    }
    for (dependency, locked_id) in manifest.dependencies.iter().zip(&image.dependencies) {
        let Some(locked) = names.get(locked_id.as_str()) else {
            return Err(format!("the lock has no entry `{locked_id}`"));
        };
        if locked.name.as_deref() != Some(dependency.image_name.as_str()) {
            return Err(format!(
                "its dependency `{}` is locked as `{locked_id}` named `{}`",
                dependency.image_name,
                locked.name.as_deref().unwrap_or("nothing")
            ));
        }
        if let Some(required) = &dependency.image_id
            && !locked
                .image_id
                .as_deref()
                .is_some_and(|have| have.starts_with(required.as_str()))
        {
            return Err(format!(
                "its dependency `{}` must have image ID {required}, the lock pins {}",
                dependency.image_name,
                locked.image_id.as_deref().unwrap_or("nothing")
            ));
        }
    }
    Ok(())
}

/// Where `mkfs.ext4` is: `$IMAGELOCK_MKFS_EXT4` if set, else on `PATH` or in the sbin
/// directories (not on most users' `PATH`).
fn find_mkfs() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("IMAGELOCK_MKFS_EXT4").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|candidate| candidate.is_file())
}

/// Size headroom over the tree's data for ext4's own metadata and journal.
const EXT4_OVERHEAD: u64 = 32 << 20;
/// Block size of the images made.
const EXT4_BLOCK: u64 = 4096;

/// `mkfs.ext4 -d TREE` into a temporary file beside `output`, renamed into place.
fn make_ext4(tree: &Path, output: &Path, counts: &CountsOrRecord) -> anyhow::Result<()> {
    let mkfs = find_mkfs().ok_or_else(|| {
        hinted(
            "`mkfs.ext4` was not found (IMAGELOCK_MKFS_EXT4, PATH, /usr/sbin, /sbin)",
            "install e2fsprogs (Debian/Ubuntu: `apt-get install e2fsprogs`; Fedora: `dnf install e2fsprogs`)",
        )
    })?;
    let (entries, bytes) = counts.entries_bytes();
    // Every entry may take a block (directories, long symlinks, partial last blocks).
    let data = bytes + (entries + 1) * EXT4_BLOCK;
    let inodes = entries + 1024;
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut size = data + data / 8 + inodes * 256 + EXT4_OVERHEAD;
    for _attempt in 0..3 {
        let tmp = tempfile::Builder::new()
            .prefix(".imagelock-ext4-")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        let blocks = size.div_ceil(EXT4_BLOCK);
        let out = std::process::Command::new(&mkfs)
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-N"])
            .arg(inodes.to_string())
            .arg("-d")
            .arg(tree)
            .arg(tmp.path())
            .arg(blocks.to_string())
            .output()
            .with_context(|| format!("cannot run {}", mkfs.display()))?;
        if out.status.success() {
            tmp.persist(output)
                .map_err(|e| e.error)
                .with_context(|| format!("cannot write {}", output.display()))?;
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("Could not allocate") || stderr.contains("No space left") {
            size *= 2;
            continue;
        }
        anyhow::bail!("{} failed: {}", mkfs.display(), stderr.trim());
    }
    anyhow::bail!("{} kept running out of space", mkfs.display())
}

/// "1 entry" / "3 entries".
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
