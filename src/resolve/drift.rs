//! Why a lock entry is stale: which keys of its manifest entry changed.
//!
//! The lock records a hash of each entry's meaning (`entry-hash`), which says
//! *that* an entry changed, and, beside it, what the entry resolved from: the
//! request, the appc labels, the platforms pinned, the signature's location and
//! whether the image was verified. Comparing those with the entry as it is now
//! names the keys that changed, with their old and new values. Where the lock
//! keeps no trace of a key (e.g. `insecure` on an entry a `[trust]` prefix
//! covers), the explanation says so instead of guessing.
//!
//! The entry hash is not believed on its own: the lock is untrusted input and
//! anyone editing it can recompute a hash. [`staleness`] also compares what
//! the pins say (request, labels, platforms, locations, and the `[trust]`
//! prefix, keys, lookaside and identity rule that verified each signature)
//! with what `images.toml` asks for now. Whether the pins agree with the bytes
//! they pin is [`crate::verify::pinned`]'s question.
//!
//! Pure functions over the manifest and lock models; the only I/O is reading
//! the trusted key files (through [`TrustStore`]).

use std::collections::BTreeSet;
use std::fmt;

use crate::oci::platform::{self, Platform};
use crate::project::lockfile::{Lock, LockedImage, LockedSignature, SourceKind, Staleness};
use crate::project::manifest::{ImageSpec, Manifest, Source};
use crate::signing::trust::{TrustStore, Trusted};
use crate::signing::trust_list::SignedBy;

/// One key of a manifest entry whose value differs from what the lock was made from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyChange {
    /// The key, as written in images.toml (`docker`, `labels.version`, `platforms`, ...).
    pub key: String,
    /// What the lock was made from (`None`: the key was absent).
    pub old: Option<String>,
    /// What the entry says now (`None`: the key is absent).
    pub new: Option<String>,
}

impl fmt::Display for KeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".to_owned());
        write!(
            f,
            "`{}`: {} → {}",
            self.key,
            show(&self.old),
            show(&self.new)
        )
    }
}

fn change(key: &str, old: impl Into<Option<String>>, new: impl Into<Option<String>>) -> KeyChange {
    KeyChange {
        key: key.to_owned(),
        old: old.into(),
        new: new.into(),
    }
}

/// How a value the entry leaves to this machine (os/arch labels, platforms) is shown.
const HOST_DEFAULT: &str = " (this machine's, the entry sets none)";

/// Whether `change` only says this machine's default differs from the one the
/// lock was made on: a lock is shared across machines, so that alone does not
/// make it stale (the entry hash covers what the entry says).
fn only_a_host_default(change: &KeyChange) -> bool {
    change
        .new
        .as_deref()
        .is_some_and(|n| n.ends_with(HOST_DEFAULT))
}

/// The source key an entry uses, and the source kind the lock would record for it.
fn source_key(source: &Source) -> (&'static str, SourceKind) {
    match source {
        Source::Docker(_) => ("docker", SourceKind::Docker),
        Source::Appc { .. } => ("name", SourceKind::Appc),
        Source::Url { .. } => ("url", SourceKind::AciUrl),
        Source::Layout { .. } => ("path", SourceKind::OciLayout),
        Source::AciFile { .. } => ("path", SourceKind::AciFile),
    }
}

fn kind_key(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Docker => "docker",
        SourceKind::Appc => "name",
        SourceKind::AciUrl => "url",
        SourceKind::OciLayout | SourceKind::AciFile => "path",
    }
}

/// The keys of `spec` that differ from what `locked` (its lock entry) was resolved from.
/// Empty when the lock records no trace of the difference.
pub fn changed_keys(spec: &ImageSpec, locked: &LockedImage) -> Vec<KeyChange> {
    let mut out = request_changes(spec, locked);
    if out.is_empty() && locked.verified && spec.insecure {
        // Verified pins come from entries with or without `insecure`; when
        // nothing else differs, adding it is the change the hash saw.
        out.push(change("insecure", None, "true".to_owned()));
    }
    out
}

/// What the lock records for `spec` that the entry as written does not ask
/// for: source, request, labels, signature location, platforms, `insecure`.
fn request_changes(spec: &ImageSpec, locked: &LockedImage) -> Vec<KeyChange> {
    let mut out = Vec::new();
    let (key, kind) = source_key(&spec.source);
    if kind != locked.source {
        out.push(change(
            "source",
            format!("{} = \"{}\"", kind_key(locked.source), locked.request),
            format!("{key} = \"{}\"", spec.request()),
        ));
        return out;
    }
    if locked.request != spec.request() {
        out.push(change(key, locked.request.clone(), spec.request()));
    }
    let policy = spec.policy.as_ref().map(ToString::to_string);
    if locked.policy != policy {
        let key = spec
            .policy
            .as_ref()
            .map_or("semver / tag-pattern", |p| p.key());
        out.push(change(key, locked.policy.clone(), policy));
    }
    match &spec.source {
        Source::Appc { labels, .. } => out.extend(label_changes(labels, locked)),
        Source::Url { url, signature } => {
            let beside = crate::appc::signature_url(url);
            out.extend(signature_change(signature.as_deref(), &beside, locked));
        }
        Source::AciFile { file, signature } => {
            out.extend(signature_change(
                signature.as_deref(),
                &format!("{file}.asc"),
                locked,
            ));
        }
        Source::Docker(_) | Source::Layout { .. } => out.extend(platform_change(spec, locked)),
    }
    // Only `insecure = true` entries are pinned unverified (dependencies follow their root).
    if !locked.verified && !spec.insecure && locked.dependency_of.is_none() {
        out.push(change("insecure", "true".to_owned(), "false".to_owned()));
    }
    out
}

/// What a lock entry pins that its images.toml entry does not ask for: another source,
/// request, location, labels, signature location or platforms, whatever the entry hash
/// says (a hand-edited lock carries any hash it likes). `verify` refuses such an entry:
/// its signatures may be valid, but for another image than the one asked for.
pub fn pinned_otherwise(
    spec: &ImageSpec,
    locked: &LockedImage,
    manifest: &Manifest,
) -> Vec<KeyChange> {
    let mut out: Vec<KeyChange> = request_changes(spec, locked)
        .into_iter()
        .filter(|c| c.key != "insecure" && !only_a_host_default(c))
        .collect();
    if out.iter().all(|c| c.key != "source") {
        out.extend(location_changes(spec, locked, manifest));
    }
    out
}

/// Which manifest entries the lock does not reflect. An entry is stale when
/// its entry hash changed, and also when the hash still matches but the pins
/// say something the entry and the trust that covers it do not ask for (a
/// hand-edited lock carries whatever hash it likes): the request, the labels,
/// the platforms, where the image and its signatures come from, and, for the
/// entry and every dependency it pulled in, the `[trust]` prefix, key,
/// lookaside and identity rule that must have verified it.
pub fn staleness(lock: &Lock, manifest: &Manifest, trust: &TrustStore) -> Staleness {
    let mut out = lock.staleness(manifest.images.values());
    let known: BTreeSet<String> = out.added.iter().chain(&out.changed).cloned().collect();
    // Each entry with the dependencies it pulled in, found once (1,000 entries
    // are common); entries that claim to be dependencies must be reached from their root.
    let mut trees: std::collections::BTreeMap<&str, Vec<&LockedImage>> = Default::default();
    let mut stowaways: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for image in lock.images.values() {
        let root = image.dependency_of.as_deref().unwrap_or(&image.id);
        trees.entry(root).or_default().push(image);
        if image.dependency_of.is_some() && !lock.reaches(root, &image.id) {
            stowaways.entry(root).or_default().push(format!(
                "the lock holds `{}` as a dependency of `{root}`, but no dependency of `{root}` leads to it",
                image.id
            ));
        }
    }
    for root in stowaways.keys() {
        if !manifest.images.contains_key(*root) && !out.removed.iter().any(|r| r == root) {
            out.removed.push((*root).to_owned());
        }
    }
    for spec in manifest.images.values() {
        if known.contains(&spec.id) {
            continue;
        }
        let Some(locked) = lock.images.get(&spec.id) else {
            continue;
        };
        let mut reasons: Vec<String> = request_changes(spec, locked)
            .iter()
            .filter(|c| !only_a_host_default(c))
            .chain(&location_changes(spec, locked, manifest))
            .map(ToString::to_string)
            .collect();
        if let Some(root) = &locked.dependency_of {
            reasons.push(format!(
                "`dependency-of`: {root} → (not set): [images.{}] is an entry of {}",
                spec.id,
                manifest.path.display()
            ));
        }
        reasons.extend(stowaways.remove(spec.id.as_str()).into_iter().flatten());
        for image in trees.get(spec.id.as_str()).into_iter().flatten() {
            let whose = if image.id == spec.id {
                String::new()
            } else {
                format!("dependency `{}`: ", image.id)
            };
            for c in trust_changes(image, manifest, trust) {
                reasons.push(format!("{whose}{c}"));
            }
        }
        if !reasons.is_empty() {
            out.changed.push(spec.id.clone());
            out.reasons.insert(spec.id.clone(), reasons);
        }
    }
    out
}

/// Where the lock says the image comes from, against where the entry (and
/// `[registries]`) say it must: the reference and registry endpoint, the
/// layout's path and ref, the ACI's URL or file, the appc name.
fn location_changes(spec: &ImageSpec, locked: &LockedImage, manifest: &Manifest) -> Vec<KeyChange> {
    let mut out = Vec::new();
    let mut compare = |key: &str, old: &Option<String>, new: Option<String>| {
        if *old != new {
            out.push(change(key, old.clone(), new));
        }
    };
    match &spec.source {
        Source::Docker(reference) => {
            let (expected, tag_ok) = match &spec.policy {
                None => (Some(reference.to_string()), locked.tag.is_none()),
                // The tag the policy chose, which it must still allow.
                Some(policy) => {
                    let tagged = locked
                        .tag
                        .as_deref()
                        .and_then(|t| reference.with_tag(t).ok());
                    let allowed = locked.tag.as_deref().is_some_and(|t| policy.allows(t));
                    (tagged.map(|r| r.to_string()), allowed)
                }
            };
            compare("docker (the reference pinned)", &locked.reference, expected);
            if !tag_ok {
                let wanted = spec.policy.as_ref().map(|p| format!("a tag `{p}` allows"));
                compare("the tag pinned", &locked.tag, wanted);
            }
            let endpoint = crate::resolve::registry_base(manifest, reference.api_host());
            compare(
                "registries (the endpoint pinned)",
                &locked.registry,
                Some(endpoint),
            );
        }
        Source::Layout { dir, reference } => {
            compare("path (the layout pinned)", &locked.path, Some(dir.clone()));
            compare(
                "path (the layout's ref pinned)",
                &locked.ref_name,
                reference.clone(),
            );
        }
        Source::Url { url: written, .. } | Source::AciFile { file: written, .. } => {
            compare(
                "the ACI location pinned",
                &locked.url,
                Some(written.clone()),
            );
        }
        Source::Appc { name, .. } => {
            compare(
                "name (the appc name pinned)",
                &locked.name,
                Some(name.clone()),
            );
        }
    }
    out
}

/// The images of `lock` whose pinned signatures the trust of `before` accepts and that
/// of `after` does not (an edit of `[trust]`, e.g. `trust remove`): the rule [`staleness`]
/// applies and `verify` re-checks against the bytes — the most specific prefix covering
/// the image must be the one that verified it, and must still trust its signer.
/// Changes `before` already had do not count. With, for each, the entry to pass to
/// `imagelock update` (a dependency's root).
pub fn losing_trust(lock: &Lock, before: &Manifest, after: &Manifest) -> SignedBy {
    let (trust_before, trust_after) = (TrustStore::new(before), TrustStore::new(after));
    let mut out = SignedBy::default();
    for image in lock.images.values() {
        let was = trust_changes(image, before, &trust_before);
        if trust_changes(image, after, &trust_after)
            .iter()
            .any(|change| !was.contains(change))
        {
            out.ids.push(image.id.clone());
            out.roots.insert(
                image
                    .dependency_of
                    .clone()
                    .unwrap_or_else(|| image.id.clone()),
            );
        }
    }
    out
}

/// How the trust that covers `image` now differs from the trust that verified
/// it: no prefix covers it any more (or one covers an unverified pin), a more
/// specific prefix decides, its signer's key is no longer listed, the
/// lookaside moved, or the identity rule no longer accepts the signed identity.
fn trust_changes(image: &LockedImage, manifest: &Manifest, trust: &TrustStore) -> Vec<KeyChange> {
    let signed = image.signature.is_some()
        || !image.sigstore.is_empty()
        || (!image.manifests.is_empty() && image.manifests.iter().all(|m| m.signature.is_some()));
    if image.verified && !signed {
        return vec![change(
            "verified",
            "true".to_owned(),
            "false: the lock pins no signature for it".to_owned(),
        )];
    }
    let Some(name) = crate::signing::trust_list::trust_name(image) else {
        return Vec::new();
    };
    let covering = manifest.trust_for(&name).map(|(p, _)| p.to_owned());
    let pins: Vec<(
        Option<&crate::project::lockfile::LockedManifest>,
        &LockedSignature,
    )> = image
        .signature
        .iter()
        .map(|s| (None, s))
        .chain(
            image
                .manifests
                .iter()
                .filter_map(|m| Some((Some(m), m.signature.as_ref()?))),
        )
        .collect();
    let quoted = |p: &str| format!("[trust.\"{p}\"]");
    let mut out = Vec::new();
    let prefix = match (image.verified, covering) {
        (false, None) => return out,
        (false, Some(prefix)) => {
            out.push(change(
                "trust",
                format!("no prefix covered `{name}` (pinned unverified)"),
                format!("{} covers it", quoted(&prefix)),
            ));
            return out;
        }
        (true, None) => {
            let was = pins
                .first()
                .map(|(_, s)| quoted(&s.prefix))
                .or_else(|| image.sigstore.first().map(|s| quoted(&s.prefix)));
            out.push(change("trust", was, format!("no prefix covers `{name}`")));
            return out;
        }
        (true, Some(prefix)) => prefix,
    };
    let trusted = match trust.for_prefix(&prefix) {
        Ok(trusted) => trusted,
        Err(e) => {
            out.push(change(
                &format!("trust.\"{prefix}\""),
                None,
                format!("unusable: {e:#}"),
            ));
            return out;
        }
    };
    out.extend(sigstore_changes(image, &prefix, &trusted));
    let fingerprints = trusted.keyring.fingerprints();
    let reference = image
        .reference
        .as_deref()
        .and_then(|r| crate::oci::reference::Reference::parse(r).ok());
    for (pinned_manifest, sig) in pins {
        if sig.prefix != prefix {
            out.push(change(
                "trust",
                quoted(&sig.prefix),
                format!(
                    "{} (the most specific prefix for `{name}`)",
                    quoted(&prefix)
                ),
            ));
        }
        if !fingerprints.contains(&sig.signed_by) {
            out.push(change(
                &format!("trust.\"{prefix}\".keys"),
                format!(
                    "signed by {}",
                    crate::signing::openpgp::format_fingerprint(&sig.signed_by)
                ),
                "that key is not listed".to_owned(),
            ));
        }
        let (Some(pinned_manifest), Some(reference)) = (pinned_manifest, &reference) else {
            continue;
        };
        match &trusted.lookaside {
            Some(base) => {
                let first = crate::signing::simple_signing::lookaside_url(
                    base,
                    reference,
                    &pinned_manifest.digest,
                    1,
                );
                let stem = first.strip_suffix('1').unwrap_or(&first);
                if !sig.url.starts_with(stem) {
                    out.push(change(
                        &format!("trust.\"{prefix}\".lookaside"),
                        sig.url.clone(),
                        first,
                    ));
                }
            }
            None => out.push(change(
                &format!("trust.\"{prefix}\".lookaside"),
                sig.url.clone(),
                None,
            )),
        }
        let accepted = sig.identity.as_deref().is_some_and(|signed| {
            crate::signing::simple_signing::identity_matches(&trusted.identity, reference, signed)
                .is_ok()
        });
        if !accepted {
            out.push(change(
                &format!("trust.\"{prefix}\".identity"),
                format!(
                    "signed for `{}`",
                    sig.identity.as_deref().unwrap_or("(nothing)")
                ),
                format!(
                    "{} does not accept it for {reference}",
                    trusted.identity.policy_name()
                ),
            ));
        }
    }
    out
}

/// How the trust of `prefix` now differs from what verified `image`'s Sigstore
/// signatures: another prefix decides, the signer is no longer trusted, or the trusted
/// root is not the one pinned.
fn sigstore_changes(image: &LockedImage, prefix: &str, trusted: &Trusted) -> Vec<KeyChange> {
    let mut out = Vec::new();
    let policy = &trusted.sigstore.policy;
    for sig in &image.sigstore {
        if sig.prefix != prefix {
            out.push(change(
                "trust",
                format!("[trust.\"{}\"]", sig.prefix),
                format!("[trust.\"{prefix}\"] (the most specific prefix)"),
            ));
        }
        let still_trusted = match (&sig.key, &sig.issuer, &sig.subject) {
            (Some(key), _, _) => policy.keys.iter().any(|k| k.fingerprint() == key),
            (None, Some(issuer), Some(subject)) => policy
                .identities
                .iter()
                .any(|i| &i.issuer == issuer && i.subject.matches(subject)),
            _ => false,
        };
        if !still_trusted {
            out.push(change(
                &format!("trust.\"{prefix}\".sigstore"),
                format!("signed by {}", sig.signer()),
                "that signer is not trusted".to_owned(),
            ));
        }
        if sig.log_index.is_none() && sig.key.is_some() && !policy.allow_unlogged {
            out.push(change(
                &format!("trust.\"{prefix}\".insecure-ignore-tlog"),
                "true (an unlogged keyed signature was accepted)".to_owned(),
                "false".to_owned(),
            ));
        }
        let root = trusted.sigstore.root.as_ref().map(|r| r.digest());
        if let Some(pinned) = &sig.trusted_root
            && root != Some(pinned)
        {
            out.push(change(
                &format!("trust.\"{prefix}\".trusted-root"),
                pinned.to_string(),
                root.map_or_else(|| "none".to_owned(), ToString::to_string),
            ));
        }
    }
    out
}

/// Label differences for an appc entry. The lock records the labels used,
/// including os/arch defaulted from the machine that locked.
fn label_changes(
    labels: &std::collections::BTreeMap<String, String>,
    locked: &LockedImage,
) -> Vec<KeyChange> {
    let (host_os, host_arch) = crate::appc::aci::host_os_arch();
    let defaults = [("os", host_os), ("arch", host_arch)];
    let keys: BTreeSet<&String> = labels.keys().chain(locked.labels.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let old = locked.labels.get(key);
        let new = labels.get(key);
        let default = defaults
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str());
        let differs = match (old, new) {
            (Some(o), Some(n)) => o != n,
            // A defaulted os/arch the entry does not set: stale only if this machine differs.
            (Some(o), None) => default != Some(o.as_str()),
            (None, Some(_)) => true,
            (None, None) => false,
        };
        if differs {
            let new = new
                .cloned()
                .or_else(|| default.map(|d| format!("{d}{HOST_DEFAULT}")));
            out.push(change(&format!("labels.{key}"), old.cloned(), new));
        }
    }
    out
}

/// A changed `signature` location, when the lock recorded where the signature
/// was; `beside` is where it is when the entry names none (rkt's rule for URLs).
fn signature_change(
    written: Option<&str>,
    beside: &str,
    locked: &LockedImage,
) -> Option<KeyChange> {
    let recorded = &locked.signature.as_ref()?.url;
    let now = written.map_or_else(|| beside.to_owned(), str::to_owned);
    (recorded != &now).then(|| change("signature", recorded.clone(), now))
}

/// Whether the platforms pinned are the ones the entry asks for (the lock
/// records the platform of each manifest chosen from an index).
fn platform_change(spec: &ImageSpec, locked: &LockedImage) -> Option<KeyChange> {
    let pinned: Vec<Platform> = locked
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_deref()?.parse().ok())
        .collect();
    if pinned.len() != locked.manifests.len() {
        // A single-manifest image records no platform: nothing to compare.
        return None;
    }
    let wanted = spec.wanted_platforms();
    let entries: Vec<Option<&Platform>> = pinned.iter().map(Some).collect();
    let mut chosen = BTreeSet::new();
    let mut all_found = true;
    for platform in &wanted {
        match platform::select(platform, &entries) {
            Some(i) => {
                chosen.insert(i);
            }
            None => all_found = false,
        }
    }
    let same = all_found && chosen.len() == pinned.len();
    if same {
        return None;
    }
    let list = |ps: &[Platform]| {
        ps.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let new = if spec.platforms.is_empty() {
        format!("{}{HOST_DEFAULT}", list(&wanted))
    } else {
        list(&wanted)
    };
    Some(change("platforms", list(&pinned), new))
}

/// A per-entry account of a stale lock, one line per entry, for error messages:
/// added entries with their source, changed ones with the keys that changed,
/// removed ones.
pub fn explain(old: &Lock, manifest: &Manifest, stale: &Staleness) -> Vec<String> {
    let mut lines = Vec::new();
    for id in &stale.added {
        if let Some(spec) = manifest.images.get(id) {
            let (key, _) = source_key(&spec.source);
            lines.push(format!(
                "added `{id}` ({key} = \"{}\"), not in the lock yet",
                spec.request()
            ));
        }
    }
    for id in &stale.changed {
        let (Some(spec), Some(locked)) = (manifest.images.get(id), old.images.get(id)) else {
            continue;
        };
        if let Some(reasons) = stale.reasons.get(id) {
            lines.push(format!(
                "changed `{id}` (line {}): {}",
                spec.line,
                reasons.join("; ")
            ));
            continue;
        }
        let keys = changed_keys(spec, locked);
        if keys.is_empty() {
            lines.push(format!(
                "changed `{id}` (line {}): the entry differs from the one locked in a key the lock keeps no old value of",
                spec.line
            ));
        } else {
            let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
            lines.push(format!(
                "changed `{id}` (line {}): {}",
                spec.line,
                keys.join("; ")
            ));
        }
    }
    for id in &stale.removed {
        lines.push(format!(
            "removed `{id}`: pinned in the lock, no longer in {}",
            manifest.path.display()
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse(Path::new("images.toml"), text).expect("valid manifest")
    }

    fn locked_layout(request: &str, platforms: &[&str], verified: bool) -> LockedImage {
        let blob = |n: u8| crate::project::lockfile::Blob {
            digest: crate::digest::Digest::sha256_of(&[n]),
            size: 1,
            media_type: "m".into(),
        };
        let mut image = LockedImage::new(
            "hello",
            SourceKind::OciLayout,
            request.into(),
            crate::digest::Digest::sha256_of(b"old"),
        );
        image.verified = verified;
        image.manifests = platforms
            .iter()
            .map(|p| crate::project::lockfile::LockedManifest {
                platform: Some((*p).into()),
                digest: crate::digest::Digest::sha256_of(p.as_bytes()),
                size: 1,
                media_type: "m".into(),
                config: blob(1),
                layers: vec![],
                signature: None,
            })
            .collect();
        image
    }

    #[test]
    fn names_changed_platforms_paths_and_insecure() {
        let m = manifest("[images.hello]\npath = \"layout:2.0\"\nplatforms = [\"linux/amd64\"]\n");
        let spec = &m.images["hello"];
        let locked = locked_layout("layout:1.0", &["linux/arm64", "linux/amd64"], false);
        let changes: Vec<String> = changed_keys(spec, &locked)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            changes,
            [
                "`path`: layout:1.0 → layout:2.0",
                "`platforms`: linux/arm64, linux/amd64 → linux/amd64",
                "`insecure`: true → false",
            ]
        );
    }

    #[test]
    fn platform_variants_chosen_from_an_index_are_not_a_change() {
        let m = manifest(
            "[images.hello]\npath = \"layout:1.0\"\nplatforms = [\"linux/arm64\", \"linux/amd64\"]\ninsecure = true\n",
        );
        let locked = locked_layout("layout:1.0", &["linux/arm64/v8", "linux/amd64"], false);
        assert_eq!(changed_keys(&m.images["hello"], &locked), []);
    }

    #[test]
    fn source_kind_and_label_changes() {
        let m = manifest(
            "[images.etcd]\nname = \"example.com/etcd\"\nlabels = { version = \"3.2.0\", channel = \"beta\" }\n",
        );
        let mut locked = LockedImage::new(
            "etcd",
            SourceKind::Appc,
            "example.com/etcd".into(),
            crate::digest::Digest::sha256_of(b"old"),
        );
        locked.verified = true;
        let (os, arch) = crate::appc::aci::host_os_arch();
        locked.labels = [
            ("version", "3.1.0"),
            ("os", os.as_str()),
            ("arch", arch.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let changes: Vec<String> = changed_keys(&m.images["etcd"], &locked)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            changes,
            [
                "`labels.channel`: (not set) → beta",
                "`labels.version`: 3.1.0 → 3.2.0"
            ]
        );

        let m = manifest("[images.etcd]\ndocker = \"alpine:3.20\"\ninsecure = true\n");
        let changes = changed_keys(&m.images["etcd"], &locked);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].to_string(),
            "`source`: name = \"example.com/etcd\" → docker = \"docker.io/library/alpine:3.20\""
        );
    }

    #[test]
    fn insecure_added_to_a_verified_entry_is_deduced() {
        let m = manifest(
            "[images.hello]\npath = \"layout:1.0\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n",
        );
        let locked = locked_layout("layout:1.0", &["linux/amd64"], true);
        let changes = changed_keys(&m.images["hello"], &locked);
        assert_eq!(changes, [change("insecure", None, "true".to_owned())]);
    }

    /// A hand-edited lock can carry whatever entry hash it likes: the pins
    /// themselves are compared with the entry.
    #[test]
    fn pins_edited_behind_a_matching_entry_hash_are_stale() {
        let m = manifest(
            "[registries.\"127.0.0.1:5000\"]\ninsecure-http = true\n\
             [images.a]\ndocker = \"127.0.0.1:5000/test/a:v1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n\
             [images.etcd]\nname = \"example.com/etcd\"\nlabels = { version = \"1.0.0\" }\ninsecure = true\n",
        );
        let trust = TrustStore::new(&m);
        let spec = &m.images["a"];
        let mut docker = locked_layout("127.0.0.1:5000/test/a:v1", &["linux/amd64"], false);
        docker.id = "a".into();
        docker.source = SourceKind::Docker;
        docker.entry_hash = spec.entry_hash.clone();
        docker.registry = Some("http://127.0.0.1:5000".into());
        docker.reference = Some("127.0.0.1:5000/test/a:v1".into());
        let (os, arch) = crate::appc::aci::host_os_arch();
        let mut etcd = LockedImage::new(
            "etcd",
            SourceKind::Appc,
            "example.com/etcd".into(),
            m.images["etcd"].entry_hash.clone(),
        );
        etcd.name = Some("example.com/etcd".into());
        etcd.labels = [("version", "1.0.0"), ("os", &os), ("arch", &arch)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut lock = Lock::default();
        lock.images.insert("a".into(), docker);
        lock.images.insert("etcd".into(), etcd);
        assert!(staleness(&lock, &m, &trust).is_fresh());
        // A lock made on another machine defaulted os/arch there: shared, not stale.
        let mut elsewhere = lock.clone();
        let etcd = elsewhere.images.get_mut("etcd").expect("etcd");
        etcd.labels.insert("arch".into(), "s390x".into());
        assert!(staleness(&elsewhere, &m, &trust).is_fresh());

        type Edit = fn(&mut Lock);
        let edits: [(Edit, &str, &str); 5] = [
            (
                |l| {
                    l.images
                        .get_mut("etcd")
                        .expect("etcd")
                        .labels
                        .insert("version".into(), "1.1.0".into())
                        .map(drop)
                        .unwrap_or(())
                },
                "etcd",
                "`labels.version`: 1.1.0 → 1.0.0",
            ),
            (
                |l| {
                    l.images.get_mut("a").expect("a").reference =
                        Some("127.0.0.1:5000/test/evil:v1".into())
                },
                "a",
                "the reference pinned",
            ),
            (
                |l| {
                    l.images.get_mut("a").expect("a").registry =
                        Some("http://127.0.0.1:6000".into())
                },
                "a",
                "the endpoint pinned",
            ),
            (
                |l| {
                    l.images.get_mut("a").expect("a").manifests[0].platform =
                        Some("linux/arm64".into())
                },
                "a",
                "`platforms`",
            ),
            (
                |l| l.images.get_mut("a").expect("a").verified = true,
                "a",
                "`verified`",
            ),
        ];
        for (edit, id, says) in edits {
            let mut edited = lock.clone();
            edit(&mut edited);
            let stale = staleness(&edited, &m, &trust);
            assert_eq!(stale.changed, [id], "{says}");
            let why = explain(&edited, &m, &stale).join("\n");
            assert!(why.contains(says), "{says}: {why}");
        }
    }
}
