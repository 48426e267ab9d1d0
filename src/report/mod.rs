//! Views of a lock for people and scripts: the table `list` prints, the
//! detail `inspect` prints, and what a lock change means per image (`diff`,
//! `update`).
//!
//! Everything here is a pure function of lock models (plus, for `inspect`,
//! which blobs the store holds and what the stored Sigstore certificates say,
//! passed in): deterministic output, the same order as the lock (sorted by ID),
//! short digests for people and full ones in JSON.

pub mod outdated;
pub mod printer;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Digest;
use crate::project::lockfile::{
    Blob, Lock, LockedImage, LockedSignature, LockedSigstore, SigstoreKind, SourceKind,
};
use crate::signing::certificate::CertificateDetails;
use crate::signing::trust_list::{KnownKeys, signers, sigstore_signers, utc_time};
use crate::text::human_bytes;

/// `sha256:` and the first 12 hex digits.
pub fn short(digest: &Digest) -> String {
    format!("{}:{}", digest.algorithm().as_str(), digest.short())
}

/// The version a person would name an image by: the tag of a registry
/// reference (or `@sha256:…` when pinned by digest), the ref of a layout, the
/// `version` label of an appc image (`latest` when not given).
pub fn version_of(image: &LockedImage) -> Option<String> {
    match image.source {
        SourceKind::Docker => {
            let reference = crate::oci::reference::Reference::parse(
                image.reference.as_deref().unwrap_or(&image.request),
            )
            .ok()?;
            match (reference.tag(), reference.digest()) {
                (Some(tag), _) => Some(tag.to_owned()),
                (None, Some(digest)) => Some(format!(
                    "@{}",
                    digest
                        .parse::<Digest>()
                        .map_or(digest.to_owned(), |d| short(&d))
                )),
                (None, None) => None,
            }
        }
        SourceKind::OciLayout => image.ref_name.clone(),
        SourceKind::Appc => Some(
            image
                .labels
                .get("version")
                .cloned()
                .unwrap_or_else(|| "latest".to_owned()),
        ),
        SourceKind::AciUrl | SourceKind::AciFile => image.labels.get("version").cloned(),
    }
}

/// The platforms an image is pinned for, in lock order (`os/arch` labels for ACIs).
pub fn platforms_of(image: &LockedImage) -> Vec<String> {
    if image.is_oci() {
        return image
            .manifests
            .iter()
            .filter_map(|m| m.platform.clone())
            .collect();
    }
    match (image.labels.get("os"), image.labels.get("arch")) {
        (Some(os), Some(arch)) => vec![format!("{os}/{arch}")],
        (Some(os), None) => vec![os.clone()],
        _ => Vec::new(),
    }
}

/// What a reviewer wants to know about one locked image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The lock entry ID.
    pub id: String,
    /// The source kind (`docker`, `oci-layout`, `appc`, `aci-url`, `aci-file`).
    pub source: String,
    /// The request as written in images.toml (normalised).
    pub request: String,
    /// Tag, layout ref or version label.
    pub version: Option<String>,
    /// The version policy that chose the tag (`semver ^1.2`, `tag-pattern RE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The digest of the image's root blob (index, manifest or ACI).
    pub digest: String,
    /// Platform → the digest of the manifest pinned for it (OCI images).
    pub platforms: BTreeMap<String, String>,
    /// The ACI image ID.
    pub image_id: Option<String>,
    /// Total bytes of every blob sync fetches for it.
    pub size: u64,
    /// Whether a trusted signature was verified.
    pub verified: bool,
    /// Fingerprints of the keys whose signatures are pinned.
    pub signed_by: Vec<String>,
    /// Who made the pinned Sigstore signatures: `key sha256:…` or `SUBJECT from ISSUER`.
    pub sigstore_signed_by: Vec<String>,
    /// The digests of the trusted roots that verified them.
    pub trusted_roots: Vec<String>,
    /// The entries this ACI depends on.
    pub dependencies: Vec<String>,
    /// For dependency entries: the entry that pulled it in.
    pub dependency_of: Option<String>,
}

impl Summary {
    /// The summary of `image`.
    pub fn of(image: &LockedImage) -> Summary {
        let platforms = image
            .manifests
            .iter()
            .map(|m| {
                (
                    m.platform
                        .clone()
                        .unwrap_or_else(|| "(single manifest)".to_owned()),
                    m.digest.to_string(),
                )
            })
            .collect();
        Summary {
            id: image.id.clone(),
            source: image.source.as_str().to_owned(),
            request: image.request.clone(),
            version: version_of(image),
            policy: image.policy.clone(),
            digest: image.root().digest.to_string(),
            platforms,
            image_id: image.image_id.clone(),
            size: image.total_size(),
            verified: image.verified,
            signed_by: signers(image),
            sigstore_signed_by: sigstore_signers(image),
            trusted_roots: trusted_roots(image),
            dependencies: image.dependencies.clone(),
            dependency_of: image.dependency_of.clone(),
        }
    }
}

impl Summary {
    /// Who signed it, for people: OpenPGP fingerprints, then Sigstore signers (key
    /// fingerprints shortened); `verified` or `unverified` when no signature is pinned.
    pub fn signer(&self) -> String {
        let all: Vec<String> = self
            .signed_by
            .iter()
            .cloned()
            .chain(self.sigstore_signed_by.iter().map(|s| short_signer(s)))
            .collect();
        signer_text(&all, self.verified)
    }
}

/// The signers, joined; `verified` or `unverified` when there are none.
fn signer_text(signers: &[String], verified: bool) -> String {
    match (signers.is_empty(), verified) {
        (false, _) => signers.join(", "),
        (true, true) => "verified".to_owned(),
        (true, false) => "unverified".to_owned(),
    }
}

/// The trusted roots of an image's Sigstore signatures, once each.
fn trusted_roots(image: &LockedImage) -> Vec<String> {
    let mut out: Vec<String> = image
        .sigstore
        .iter()
        .filter_map(|s| s.trusted_root.as_ref().map(ToString::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A Sigstore signer for a table cell: `key sha256:` and 12 hex digits, or `SUBJECT from ISSUER`.
pub fn short_signer(signer: &str) -> String {
    match signer.strip_prefix("key ") {
        Some(fingerprint) => format!("key {}", short_str(fingerprint)),
        None => signer.to_owned(),
    }
}

/// How an image changed between two locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Only in the new lock.
    Added,
    /// Only in the old lock.
    Removed,
    /// In both, pinned differently.
    Updated,
    /// In both, pinned identically.
    Unchanged,
}

/// One changed fact about an image: `old → new`; a missing side means added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// What changed: `digest`, `platform linux/amd64`, `signed by`, ...
    pub field: String,
    /// Before.
    pub old: Option<String>,
    /// After.
    pub new: Option<String>,
}

/// What a lock change means for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageChange {
    /// The lock entry ID.
    pub id: String,
    /// Added, removed, updated or unchanged.
    pub status: Status,
    /// The image before (absent when added).
    pub old: Option<Summary>,
    /// The image after (absent when removed).
    pub new: Option<Summary>,
    /// For updated images: each fact that changed.
    pub changes: Vec<Field>,
}

fn field(name: impl Into<String>, old: Option<String>, new: Option<String>) -> Field {
    Field {
        field: name.into(),
        old,
        new,
    }
}

fn short_str(digest: &str) -> String {
    digest
        .parse::<Digest>()
        .map_or_else(|_| digest.to_owned(), |d| short(&d))
}

/// The facts that differ between two pins of the same ID.
fn compare_images(old: &LockedImage, new: &LockedImage) -> Vec<Field> {
    let (a, b) = (Summary::of(old), Summary::of(new));
    let mut out = Vec::new();
    let mut differ = |name: &str, x: Option<String>, y: Option<String>| {
        if x != y {
            out.push(field(name, x, y));
        }
    };
    differ("request", Some(a.request.clone()), Some(b.request.clone()));
    differ("source", Some(a.source.clone()), Some(b.source.clone()));
    differ("version", a.version.clone(), b.version.clone());
    differ("policy", a.policy.clone(), b.policy.clone());
    differ(
        "digest",
        Some(short_str(&a.digest)),
        Some(short_str(&b.digest)),
    );
    let platforms: std::collections::BTreeSet<&String> =
        a.platforms.keys().chain(b.platforms.keys()).collect();
    for platform in platforms {
        let (x, y) = (a.platforms.get(platform), b.platforms.get(platform));
        // A single-manifest image's manifest is its root: the digest line says it all.
        if x.is_some_and(|x| *x == a.digest) && y.is_some_and(|y| *y == b.digest) {
            continue;
        }
        differ(
            &format!("platform {platform}"),
            x.map(|d| short_str(d)),
            y.map(|d| short_str(d)),
        );
    }
    differ("image ID", a.image_id.clone(), b.image_id.clone());
    differ("signed by", Some(a.signer()), Some(b.signer()));
    let roots = |s: &Summary| {
        (!s.trusted_roots.is_empty()).then(|| {
            s.trusted_roots
                .iter()
                .map(|r| short_str(r))
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    differ("trusted root", roots(&a), roots(&b));
    let list = |v: &[String]| (!v.is_empty()).then(|| v.join(", "));
    differ("dependencies", list(&a.dependencies), list(&b.dependencies));
    differ(
        "dependency of",
        a.dependency_of.clone(),
        b.dependency_of.clone(),
    );
    let size_changed = a.size != b.size;
    let nothing_visible = out.is_empty();
    if size_changed {
        out.push(field(
            "size",
            Some(human_bytes(a.size)),
            Some(human_bytes(b.size)),
        ));
    } else if nothing_visible && old != new {
        // Content moved without a visible change above (e.g. a layer's media type).
        out.push(field("pinned blobs", None, Some("changed".to_owned())));
    }
    out
}

/// Every image of `old` and `new`, sorted by ID, with what changed.
pub fn compare(old: &Lock, new: &Lock) -> Vec<ImageChange> {
    let ids: std::collections::BTreeSet<&String> =
        old.images.keys().chain(new.images.keys()).collect();
    ids.into_iter()
        .map(|id| {
            let (o, n) = (old.images.get(id), new.images.get(id));
            let (status, changes) = match (o, n) {
                (None, Some(_)) => (Status::Added, Vec::new()),
                (Some(_), None) => (Status::Removed, Vec::new()),
                (Some(o), Some(n)) if o == n => (Status::Unchanged, Vec::new()),
                (Some(o), Some(n)) => (Status::Updated, compare_images(o, n)),
                (None, None) => unreachable!("the ID comes from one of the locks"),
            };
            ImageChange {
                id: id.clone(),
                status,
                old: o.map(Summary::of),
                new: n.map(Summary::of),
                changes,
            }
        })
        .collect()
}

/// Counts per status: (added, removed, updated, unchanged).
pub fn counts(changes: &[ImageChange]) -> (usize, usize, usize, usize) {
    let count = |s: Status| changes.iter().filter(|c| c.status == s).count();
    (
        count(Status::Added),
        count(Status::Removed),
        count(Status::Updated),
        count(Status::Unchanged),
    )
}

/// A one-line description of a pinned image: request, digest, platforms, signer.
fn one_line(s: &Summary) -> String {
    let mut parts = vec![requested(s), short_str(&s.digest)];
    let platforms: Vec<&String> = s
        .platforms
        .keys()
        .filter(|p| *p != "(single manifest)")
        .collect();
    if !platforms.is_empty() {
        parts.push(
            platforms
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    parts.push(
        if s.signed_by.is_empty() && s.sigstore_signed_by.is_empty() {
            s.signer()
        } else {
            format!("signed by {}", s.signer())
        },
    );
    if let Some(root) = &s.dependency_of {
        parts.push(format!("dependency of {root}"));
    }
    parts.join("  ")
}

/// The request, and for a version policy the tag it chose and the policy:
/// `host/app:1.10.0 (semver ^1.2)`.
fn requested(s: &Summary) -> String {
    match (&s.policy, &s.version) {
        (Some(policy), Some(tag)) => format!("{}:{tag} ({policy})", s.request),
        (Some(policy), None) => format!("{} ({policy})", s.request),
        (None, _) => s.request.clone(),
    }
}

/// Text lines for a list of changes; unchanged images only when `show_unchanged`.
pub fn render_changes(changes: &[ImageChange], show_unchanged: bool) -> Vec<String> {
    let mut out = Vec::new();
    for change in changes {
        match (change.status, &change.old, &change.new) {
            (Status::Added, _, Some(new)) => {
                out.push(format!("+ {}  {}", change.id, one_line(new)));
            }
            (Status::Removed, Some(old), _) => {
                out.push(format!("- {}  {}", change.id, one_line(old)));
            }
            (Status::Updated, _, Some(new)) => {
                out.push(format!("~ {}  {}", change.id, requested(new)));
                for f in &change.changes {
                    let what = match (&f.old, &f.new) {
                        (Some(o), Some(n)) => format!("{o} → {n}"),
                        (None, Some(n)) => format!("added ({n})"),
                        (Some(o), None) => format!("removed (was {o})"),
                        (None, None) => String::new(),
                    };
                    out.push(format!("    {}: {what}", f.field));
                }
            }
            (Status::Unchanged, _, Some(new)) if show_unchanged => {
                out.push(format!(
                    "= {}  {} (unchanged)",
                    change.id,
                    short_str(&new.digest)
                ));
            }
            _ => {}
        }
    }
    out
}

/// The `list` table: one row per locked image (dependencies included).
pub fn list_table(lock: &Lock, keys: &KnownKeys) -> Vec<String> {
    let header = [
        "ID",
        "SOURCE",
        "VERSION",
        "DIGEST",
        "PLATFORMS",
        "SIZE",
        "SIGNED BY",
    ];
    let rows: Vec<[String; 7]> = lock
        .images
        .values()
        .map(|image| {
            let signed_by: Vec<String> = signers(image)
                .iter()
                .map(|f| keys.short_name(f))
                .chain(sigstore_signers(image).iter().map(|s| short_signer(s)))
                .collect();
            let signer = signer_text(&signed_by, image.verified);
            let platforms = platforms_of(image);
            [
                image.id.clone(),
                image.source.as_str().to_owned(),
                match (version_of(image), &image.policy) {
                    (Some(tag), Some(policy)) => format!("{tag} ({policy})"),
                    (version, _) => version.unwrap_or_else(|| "-".to_owned()),
                },
                short(&image.root().digest),
                if platforms.is_empty() {
                    "-".to_owned()
                } else {
                    platforms.join(",")
                },
                human_bytes(image.total_size()),
                signer,
            ]
        })
        .collect();
    aligned(header, &rows)
}

/// A table: `header` and `rows` in columns as wide as their widest cell, two
/// spaces apart, with no trailing blanks.
pub(crate) fn aligned<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> Vec<String> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    std::iter::once(line(&header.map(str::to_owned)))
        .chain(rows.iter().map(line))
        .collect()
}

/// The `list --json` entry for one image.
pub fn list_json(image: &LockedImage, keys: &KnownKeys) -> serde_json::Value {
    let summary = Summary::of(image);
    let signers: Vec<serde_json::Value> = summary
        .signed_by
        .iter()
        .map(|f| {
            serde_json::json!({
                "fingerprint": f,
                "user_ids": keys.get(f).map(|k| k.user_ids().to_vec()).unwrap_or_default(),
            })
        })
        .collect();
    let mut entry = serde_json::json!({
        "id": summary.id,
        "source": summary.source,
        "request": summary.request,
        "version": summary.version,
        "digest": summary.digest,
        "platforms": platforms_of(image),
        "size": summary.size,
        "verified": summary.verified,
        "signed_by": signers,
        "sigstore_signed_by": sigstore_signers_json(image),
        "dependencies": summary.dependencies,
        "dependency_of": summary.dependency_of,
    });
    if let Some(policy) = summary.policy {
        entry["policy"] = serde_json::json!(policy);
    }
    entry
}

/// The signers of an image's Sigstore signatures, once each, for JSON: the key's
/// fingerprint, or the certificate's issuer and subject.
fn sigstore_signers_json(image: &LockedImage) -> Vec<serde_json::Value> {
    let mut seen = std::collections::BTreeSet::new();
    image
        .sigstore
        .iter()
        .filter(|sig| seen.insert(sig.signer()))
        .map(|sig| {
            serde_json::json!({
                "signer": sig.signer(),
                "key": sig.key,
                "issuer": sig.issuer,
                "subject": sig.subject,
            })
        })
        .collect()
}

/// What `inspect` knows about the store an image is synced into.
#[derive(Debug, Clone, Serialize)]
pub struct StoreState {
    /// The store directory.
    pub path: std::path::PathBuf,
    /// Whether a store exists there.
    pub exists: bool,
    /// Digests of the image's blobs that are present (with the right size).
    pub present: Vec<String>,
    /// For OCI images: whether `index.json` names the image (so skopeo/podman find it).
    pub named: Option<bool>,
}

/// One blob of an image, with its role, for `inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct BlobRole {
    /// What it is: `index`, `manifest linux/amd64`, `config`, `layer 1`, `aci`, `signature`.
    pub role: String,
    /// The blob.
    #[serde(flatten)]
    pub blob: Blob,
    /// Whether the store holds it.
    pub present: bool,
}

/// Every blob of `image` with its role, in sync order.
pub fn blob_roles(image: &LockedImage, store: &StoreState) -> Vec<BlobRole> {
    let present = |b: &Blob| store.present.contains(&b.digest.to_string());
    let mut out = Vec::new();
    let mut push = |role: String, blob: Blob| {
        let present = present(&blob);
        out.push(BlobRole {
            role,
            blob,
            present,
        });
    };
    if let Some(index) = &image.index {
        push("index".to_owned(), index.clone());
    }
    for m in &image.manifests {
        let platform = m
            .platform
            .as_deref()
            .map(|p| format!(" {p}"))
            .unwrap_or_default();
        push(format!("manifest{platform}"), m.manifest_blob());
        push(format!("config{platform}"), m.config.clone());
        for (n, layer) in m.layers.iter().enumerate() {
            push(format!("layer {}{platform}", n + 1), layer.clone());
        }
        if let Some(sig) = &m.signature {
            push(format!("signature{platform}"), sig.blob());
        }
    }
    if let Some(aci) = &image.aci {
        push("aci".to_owned(), aci.clone());
    }
    if let Some(sig) = &image.signature {
        push("signature".to_owned(), sig.blob());
    }
    for sig in &image.sigstore {
        let on = match signed_part(image, sig) {
            Signed::Manifest(Some(platform)) => format!(" {platform}"),
            _ => String::new(),
        };
        push(format!("sigstore manifest{on}"), sig.manifest.clone());
        push(format!("sigstore config{on}"), sig.config.clone());
        for (n, layer) in sig.layers.iter().enumerate() {
            push(format!("sigstore layer {}{on}", n + 1), layer.clone());
        }
    }
    out
}

/// What a pinned Sigstore signature signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// The image index (covering its platform manifests).
    Index,
    /// A pinned platform manifest (its platform, when the image has an index).
    Manifest(Option<String>),
    /// Nothing the image pins (a lock `verify` refuses).
    Other,
}

/// What `sig` signs among `image`'s pins.
pub fn signed_part(image: &LockedImage, sig: &LockedSigstore) -> Signed {
    if image.index.as_ref().is_some_and(|i| i.digest == sig.signs) {
        return Signed::Index;
    }
    match image.manifests.iter().find(|m| m.digest == sig.signs) {
        Some(m) => Signed::Manifest(m.platform.clone()),
        None => Signed::Other,
    }
}

/// The certificate of a pinned keyless signature, as far as the store tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum CertificateState {
    /// Signed with a key: there is no certificate.
    None,
    /// The blob holding it is not in the store.
    NotInStore,
    /// Read from the stored artifact.
    Present {
        /// What it says.
        #[serde(flatten)]
        details: CertificateDetails,
    },
    /// The stored bytes do not give one.
    Unreadable {
        /// Why.
        error: String,
    },
}

/// One pinned Sigstore signature, for `inspect` (text and JSON).
#[derive(Debug, Clone, Serialize)]
pub struct SigstoreView {
    /// `cosign` or `bundle`.
    pub kind: &'static str,
    /// The digest of the manifest or index it signs.
    pub signs: String,
    /// What that is: `index`, `manifest linux/amd64`, `manifest`.
    pub signs_what: String,
    /// The `[trust]` prefix that accepted it.
    pub prefix: String,
    /// `key sha256:…` or `SUBJECT from ISSUER`.
    pub signer: String,
    /// The transparency-log index.
    pub log_index: Option<u64>,
    /// The log's integrated time, seconds since the epoch.
    pub integrated_time: Option<i64>,
    /// The same, `YYYY-MM-DD HH:MM:SS UTC`.
    pub integrated_time_utc: Option<String>,
    /// The digest of the trusted root that verified it.
    pub trusted_root: Option<String>,
    /// Where that root is: a `trusted-root` file of images.toml, or the built-in root.
    pub trusted_root_origin: Option<String>,
    /// Its certificate.
    pub certificate: CertificateState,
}

/// The view of `image`'s pinned Sigstore signature `sig`, with its `certificate` (read
/// from the store by the caller) and `root_origin` (where its trusted root is, if known).
pub fn sigstore_view(
    image: &LockedImage,
    sig: &LockedSigstore,
    certificate: CertificateState,
    root_origin: Option<String>,
) -> SigstoreView {
    SigstoreView {
        kind: match sig.kind {
            SigstoreKind::Cosign => "cosign",
            SigstoreKind::Bundle => "bundle",
        },
        signs: sig.signs.to_string(),
        signs_what: match signed_part(image, sig) {
            Signed::Index => "index".to_owned(),
            Signed::Manifest(Some(platform)) => format!("manifest {platform}"),
            Signed::Manifest(None) => "manifest".to_owned(),
            Signed::Other => "a manifest the image does not pin".to_owned(),
        },
        prefix: sig.prefix.clone(),
        signer: sig.signer(),
        log_index: sig.log_index,
        integrated_time: sig.integrated_time,
        integrated_time_utc: sig.integrated_time.map(utc_time),
        trusted_root: sig.trusted_root.as_ref().map(ToString::to_string),
        trusted_root_origin: root_origin,
        certificate,
    }
}

/// `inspect`'s lines for one pinned Sigstore signature.
fn sigstore_lines(view: &SigstoreView) -> Vec<String> {
    let kind = match view.kind {
        "cosign" => "cosign (a .sig manifest)",
        _ => "bundle (an OCI referrer)",
    };
    let mut out = vec![format!("  sigstore signature of the {}", view.signs_what)];
    let mut kv = |k: &str, v: String| out.push(format!("    {k:<13}{v}"));
    kv("kind", kind.to_owned());
    kv("signs", view.signs.clone());
    kv("prefix", format!("[trust.\"{}\"]", view.prefix));
    kv("signer", view.signer.clone());
    kv(
        "log entry",
        match (view.log_index, &view.integrated_time_utc) {
            (Some(index), Some(time)) => format!("index {index}, integrated {time}"),
            (Some(index), None) => format!("index {index}"),
            (None, Some(time)) => format!("integrated {time}"),
            (None, None) => "none (a keyed signature not logged)".to_owned(),
        },
    );
    if let Some(root) = &view.trusted_root {
        let origin = view
            .trusted_root_origin
            .as_deref()
            .map(|o| format!(" ({o})"))
            .unwrap_or_default();
        kv("trusted root", format!("{root}{origin}"));
    }
    match &view.certificate {
        CertificateState::None => kv("certificate", "none (signed with a key)".to_owned()),
        CertificateState::NotInStore => kv(
            "certificate",
            "(not in the store; run `imagelock sync`)".to_owned(),
        ),
        CertificateState::Unreadable { error } => kv("certificate", format!("UNREADABLE: {error}")),
        CertificateState::Present { details } => {
            let escape = |s: &Option<String>| {
                s.as_deref().map_or_else(
                    || "(none)".to_owned(),
                    |s| crate::text::escape(s).into_owned(),
                )
            };
            kv(
                "certificate",
                format!("issuer  {}", escape(&details.issuer)),
            );
            kv("", format!("subject {}", escape(&details.subject)));
            kv(
                "",
                format!(
                    "valid   {} to {}",
                    utc_time(details.not_before),
                    utc_time(details.not_after)
                ),
            );
        }
    }
    out
}

/// `inspect`'s text: everything the lock knows about `image`, its Sigstore signatures
/// (see [`sigstore_view`]), and the store's view of it.
pub fn inspect_lines(
    image: &LockedImage,
    store: &StoreState,
    keys: &KnownKeys,
    sigstore: &[SigstoreView],
) -> Vec<String> {
    let mut out = vec![image.id.clone()];
    out.extend(entry_lines(image));
    out.push("  blobs".to_owned());
    out.extend(blob_lines(image, store));
    let signatures = image.signature.iter().map(|s| (None, s)).chain(
        image
            .manifests
            .iter()
            .filter_map(|m| m.signature.as_ref().map(|s| (m.platform.as_deref(), s))),
    );
    for (platform, sig) in signatures {
        out.extend(signature_lines(platform, sig, keys));
    }
    for view in sigstore {
        out.extend(sigstore_lines(view));
    }
    out.push(format!("  store        {}", store_line(image, store)));
    out
}

/// The facts of the lock entry: source, request, where it comes from, labels, size.
fn entry_lines(image: &LockedImage) -> Vec<String> {
    let mut out = Vec::new();
    let mut kv = |k: &str, v: String| out.push(format!("  {k:<13}{v}"));
    kv("source", image.source.as_str().to_owned());
    kv("request", image.request.clone());
    if let Some(root) = &image.dependency_of {
        kv("dependency of", root.clone());
    }
    kv(
        "verified",
        if image.verified {
            "yes".to_owned()
        } else {
            "no (insecure = true)".to_owned()
        },
    );
    for (k, v) in [
        ("registry", &image.registry),
        ("reference", &image.reference),
        ("tag", &image.tag),
        ("policy", &image.policy),
        ("path", &image.path),
        ("ref", &image.ref_name),
        ("name", &image.name),
        ("discovery", &image.discovery),
        ("url", &image.url),
        ("image ID", &image.image_id),
    ] {
        if let Some(v) = v {
            kv(k, v.clone());
        }
    }
    if !image.labels.is_empty() {
        let labels: Vec<String> = image
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        kv("labels", labels.join(", "));
    }
    if !image.dependencies.is_empty() {
        kv("dependencies", image.dependencies.join(", "));
    }
    kv("entry hash", image.entry_hash.to_string());
    kv(
        "size",
        format!(
            "{} in {}",
            human_bytes(image.total_size()),
            crate::text::plural(image.blobs().len(), "blob")
        ),
    );
    out
}

/// One line per blob: role, digest, size, media type, and whether the store has it.
fn blob_lines(image: &LockedImage, store: &StoreState) -> Vec<String> {
    let roles = blob_roles(image, store);
    let width = roles
        .iter()
        .map(|r| r.role.chars().count())
        .max()
        .unwrap_or(0);
    roles
        .iter()
        .map(|r| {
            let state = match (store.exists, r.present) {
                (false, _) => "",
                (true, true) => "  present",
                (true, false) => "  MISSING",
            };
            format!(
                "    {:<width$}  {}  {}  {}{state}",
                r.role,
                r.blob.digest,
                human_bytes(r.blob.size),
                r.blob.media_type
            )
        })
        .collect()
}

/// A pinned signature (of the image, or of its manifest for `platform`) and
/// what images.toml's keys say about its signer.
fn signature_lines(platform: Option<&str>, sig: &LockedSignature, keys: &KnownKeys) -> Vec<String> {
    let mut out = vec![
        platform
            .map(|p| format!("  signature ({p})"))
            .unwrap_or_else(|| "  signature".to_owned()),
        format!("    url        {}", sig.url),
        format!("    prefix     [trust.\"{}\"]", sig.prefix),
        format!(
            "    signed by  {}",
            crate::signing::openpgp::format_fingerprint(&sig.signed_by)
        ),
    ];
    match keys.get(&sig.signed_by) {
        Some(key) => {
            for uid in key.user_ids() {
                out.push(format!("               {uid}"));
            }
            if let Some(expires) = key.expires() {
                out.push(format!(
                    "               expires {}",
                    crate::signing::trust_list::utc_date(expires)
                ));
            }
        }
        None => out.push(
            "               (no key with this fingerprint in images.toml's [trust] tables)"
                .to_owned(),
        ),
    }
    if sig.key != sig.signed_by {
        out.push(format!(
            "    subkey     {}",
            crate::signing::openpgp::format_fingerprint(&sig.key)
        ));
    }
    if let Some(identity) = &sig.identity {
        out.push(format!("    identity   {identity}"));
    }
    out
}

/// Where the store is, how many of the image's blobs it holds, and whether it names the image.
fn store_line(image: &LockedImage, store: &StoreState) -> String {
    if !store.exists {
        return format!(
            "{} (no store there yet: `imagelock sync` creates it)",
            store.path.display()
        );
    }
    let blobs = image.blobs();
    let all = blobs.len();
    let have = blobs
        .iter()
        .filter(|b| store.present.contains(&b.digest.to_string()))
        .count();
    let mut line = format!("{}: {have} of {all} blobs present", store.path.display());
    match store.named {
        Some(true) => line.push_str(&format!(
            "; named {} in index.json (oci:{}:{})",
            image.store_name(),
            store.path.display(),
            image.store_name()
        )),
        Some(false) => line.push_str("; not named in index.json yet (`imagelock sync` names it)"),
        None => {}
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::lockfile::LockedManifest;

    fn blob(n: u8) -> Blob {
        Blob {
            digest: Digest::sha256_of(&[n]),
            size: u64::from(n),
            media_type: "m".into(),
        }
    }

    fn image(id: &str, platforms: &[(&str, u8)]) -> LockedImage {
        let mut image = LockedImage::new(
            id,
            SourceKind::Docker,
            format!("registry.example/{id}:1"),
            Digest::sha256_of(id.as_bytes()),
        );
        image.reference = Some(format!("registry.example/{id}:1"));
        image.index = Some(blob(100));
        image.manifests = platforms
            .iter()
            .map(|(p, n)| LockedManifest {
                platform: Some((*p).into()),
                digest: Digest::sha256_of(&[*n]),
                size: 1,
                media_type: "m".into(),
                config: blob(*n),
                layers: vec![blob(n + 1)],
                signature: None,
            })
            .collect();
        image
    }

    fn lock(images: &[LockedImage]) -> Lock {
        Lock {
            images: images.iter().map(|i| (i.id.clone(), i.clone())).collect(),
        }
    }

    #[test]
    fn compare_names_added_removed_updated_and_platforms() {
        let a = image("a", &[("linux/amd64", 1), ("linux/arm64", 3)]);
        let mut a2 = image("a", &[("linux/amd64", 5), ("linux/386", 7)]);
        a2.index = Some(blob(101));
        let old = lock(&[a, image("gone", &[("linux/amd64", 9)]), image("same", &[])]);
        let new = lock(&[a2, image("new", &[("linux/amd64", 11)]), image("same", &[])]);
        let changes = compare(&old, &new);
        let statuses: Vec<(&str, Status)> =
            changes.iter().map(|c| (c.id.as_str(), c.status)).collect();
        assert_eq!(
            statuses,
            [
                ("a", Status::Updated),
                ("gone", Status::Removed),
                ("new", Status::Added),
                ("same", Status::Unchanged)
            ]
        );
        let fields: Vec<&str> = changes[0]
            .changes
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "digest",
                "platform linux/386",
                "platform linux/amd64",
                "platform linux/arm64",
                "size"
            ]
        );
        let text = render_changes(&changes, false);
        assert_eq!(text[0], "~ a  registry.example/a:1");
        assert!(text[1].starts_with("    digest: sha256:"), "{text:?}");
        assert!(
            text[2].starts_with("    platform linux/386: added (sha256:"),
            "{text:?}"
        );
        assert!(
            text[4].starts_with("    platform linux/arm64: removed (was sha256:"),
            "{text:?}"
        );
        assert!(text.iter().any(|l| l.starts_with("- gone  ")), "{text:?}");
        assert!(text.iter().any(|l| l.starts_with("+ new  ")), "{text:?}");
        assert!(!text.iter().any(|l| l.contains("same")), "{text:?}");
        assert!(
            render_changes(&changes, true)
                .iter()
                .any(|l| l.starts_with("= same"))
        );
    }

    #[test]
    fn versions_by_source() {
        let a = image("a", &[]);
        assert_eq!(version_of(&a).as_deref(), Some("1"));
        let mut by_digest = a.clone();
        by_digest.reference = Some(format!("registry.example/a@{}", Digest::sha256_of(b"x")));
        assert_eq!(
            version_of(&by_digest),
            Some(format!("@sha256:{}", &Digest::sha256_of(b"x").hex()[..12]))
        );
        let mut appc = LockedImage::new(
            "e",
            SourceKind::Appc,
            "example.com/e".into(),
            Digest::sha256_of(b"e"),
        );
        assert_eq!(version_of(&appc).as_deref(), Some("latest"));
        appc.labels.insert("version".into(), "3.1.0".into());
        assert_eq!(version_of(&appc).as_deref(), Some("3.1.0"));
    }

    #[test]
    fn the_table_is_aligned() {
        let table = list_table(
            &lock(&[image("a", &[("linux/amd64", 1)]), image("longer-id", &[])]),
            &KnownKeys::default(),
        );
        assert!(
            table[0].starts_with("ID         SOURCE  VERSION  DIGEST"),
            "{table:?}"
        );
        assert!(
            table[1].starts_with("a          docker  1        sha256:"),
            "{table:?}"
        );
        assert!(table[1].ends_with("unverified"), "{table:?}");
    }
}
