//! The manifest, `images.toml`: which images a project needs, how each is
//! verified, and where the store lives.
//!
//! Parsing is strict (unknown keys and bad values are errors that name the file,
//! line and key). Editing (`init`, `add`, `remove`) goes through `toml_edit` so
//! the user's comments, order and formatting survive byte for byte.
//!
//! Each image entry is reduced to an [`ImageSpec`] whose `entry_hash` is a
//! digest of the entry's meaning (not its formatting), which the lock records so
//! staleness is detectable per entry, offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::digest::Digest;
use crate::oci::platform::Platform;
use crate::oci::reference::Reference;
use crate::oci::tags::TagPolicy;

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "images.toml";

/// The manifest as written on disk (the wire schema; see [`Manifest`] for the model).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "images.toml",
    description = "imagelock manifest: the images a project needs and who is trusted to sign them."
)]
pub struct ManifestFile {
    /// Where the content-addressed store lives.
    #[serde(default)]
    pub store: Option<StoreTable>,
    /// Per-registry settings, keyed by `host[:port]`.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryTable>,
    /// Keys trusted for name prefixes; the most specific prefix wins.
    #[serde(default)]
    pub trust: BTreeMap<String, TrustTable>,
    /// Registries to read locked images from before their origin.
    #[serde(default)]
    pub mirrors: Option<MirrorsTable>,
    /// The images, keyed by a short ID of the user's choice.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ImageTable>")]
    pub images: BTreeMap<String, Spanned<ImageTable>>,
}

/// `[store]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreTable {
    /// Store directory, relative to images.toml. `--store` and `IMAGELOCK_STORE` override it.
    pub path: String,
}

/// `[registries."HOST[:PORT]"]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryTable {
    /// Talk plain HTTP to this registry (only because the user named it here).
    #[serde(default)]
    pub insecure_http: bool,
}

/// `[mirrors]`: where `imagelock push` put the locked images.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorsTable {
    /// Mirror locations (`HOST[:PORT][/PATH]`), tried in order before the origin.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Never fall back to the origin.
    #[serde(default)]
    pub only: bool,
    /// Base URL of a lookaside store holding the mirrors' simple signatures
    /// (what `imagelock push --lookaside-staging DIR` wrote, served over
    /// HTTPS); tried before each image's own lookaside.
    #[serde(default)]
    pub lookaside: Option<String>,
}

/// `[trust."PREFIX"]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustTable {
    /// OpenPGP public key files (armored or binary), relative to images.toml.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Sigstore / cosign public keys (PEM: ECDSA P-256/P-384, RSA, Ed25519), relative to
    /// images.toml: keyed cosign signatures and keyed Sigstore bundles.
    #[serde(default)]
    pub sigstore_keys: Vec<String>,
    /// Keyless Sigstore signers: a Fulcio certificate's OIDC issuer and subject.
    #[serde(default)]
    pub sigstore_identities: Vec<SigstoreIdentity>,
    /// A Sigstore `trusted_root.json` (Fulcio CAs, Rekor and CT log keys, timestamp
    /// authorities), relative to images.toml; default: the public-good root built in.
    #[serde(default)]
    pub trusted_root: Option<String>,
    /// Accept keyed cosign signatures that have no transparency-log entry, as cosign's
    /// `--insecure-ignore-tlog` does; keyless signatures always need one. Default false.
    #[serde(default)]
    pub insecure_ignore_tlog: bool,
    /// Base URL of a simple-signing lookaside store.
    #[serde(default)]
    pub lookaside: Option<String>,
    /// How a simple signature's identity must match the image reference
    /// (containers-policy.json `signedIdentity`; default `matchRepoDigestOrExact`).
    #[serde(default)]
    pub identity: Option<crate::project::identity::IdentityRule>,
}

/// One keyless signer of `sigstore-identities`: the certificate's OIDC issuer, and its
/// subject exactly or a regular expression searched in it (write `^…$` for whole subjects).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SigstoreIdentity {
    /// The OIDC issuer, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// The exact subject (the certificate's SAN: an email, a workflow URL).
    #[serde(default)]
    pub subject: Option<String>,
    /// A regular expression the subject must match, as cosign's `--certificate-identity-regexp`.
    #[serde(default)]
    pub subject_regexp: Option<String>,
}

impl SigstoreIdentity {
    /// Exactly one of `subject` and `subject-regexp`, and the expression compiles.
    pub fn check(&self) -> Result<(), String> {
        match (&self.subject, &self.subject_regexp) {
            (Some(_), None) => Ok(()),
            (None, Some(pattern)) if pattern.trim().is_empty() => Err(
                "an empty `subject-regexp` matches every subject of the issuer; write the subjects it may match, e.g. '^https://github\\.com/acme/'".to_owned(),
            ),
            // The same syntax `signing::sigstore::Subject::regexp` compiles later.
            (None, Some(pattern)) => regex_lite::Regex::new(pattern)
                .map(drop)
                .map_err(|e| format!("`subject-regexp` {pattern:?} is not a valid regular expression: {e}")),
            (Some(_), Some(_)) => Err("give `subject` or `subject-regexp`, not both".to_owned()),
            (None, None) => Err(
                "a keyless identity needs `subject = \"…\"` (exact) or `subject-regexp = '…'`"
                    .to_owned(),
            ),
        }
    }
}

/// `[images.ID]`: exactly one of `docker`, `name`, `url`, `path`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageTable {
    /// An OCI/Docker registry reference, e.g. `docker.io/library/alpine:3.20`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub docker: Option<Spanned<String>>,
    /// An appc image name, resolved by name discovery with `labels`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// Labels for appc discovery (version, os, arch, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A direct URL to an ACI.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    /// A local ACI file or OCI layout directory (`DIR` or `DIR:REF`), relative to images.toml.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// Where the detached signature is, when not beside the image.
    #[serde(default)]
    pub signature: Option<String>,
    /// Platforms to pin from a multi-platform image (`OS/ARCH[/VARIANT]`); default: the host's.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub platforms: Vec<Spanned<String>>,
    /// Accept this image without a signature; the lock records `verified = false`.
    #[serde(default)]
    pub insecure: bool,
    /// With a `docker` repository written without a tag: pin the newest tag that is a
    /// version this semver requirement matches (cargo's syntax, e.g. `^1.4`; a leading
    /// `v` in tags is accepted; pre-releases only when the requirement names one).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub semver: Option<Spanned<String>>,
    /// With a `docker` repository written without a tag: pin the newest tag this regular
    /// expression matches, searched as written (write `^…$` to match whole tags).
    #[serde(default, rename = "tag-pattern")]
    #[schemars(with = "Option<String>")]
    pub tag_pattern: Option<Spanned<String>>,
}

/// Where an image comes from, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An OCI distribution registry.
    Docker(Reference),
    /// appc name discovery.
    Appc {
        /// The appc name.
        name: String,
        /// Discovery labels.
        labels: BTreeMap<String, String>,
    },
    /// A direct ACI URL.
    Url {
        /// The ACI's URL.
        url: String,
        /// The signature's URL, if not `url + ".asc"`.
        signature: Option<String>,
    },
    /// A local OCI image layout directory.
    Layout {
        /// The directory as written (relative to images.toml).
        dir: String,
        /// The `org.opencontainers.image.ref.name` to pick; `None` when the layout holds one image.
        reference: Option<String>,
    },
    /// A local ACI file.
    AciFile {
        /// The file as written (relative to images.toml).
        file: String,
        /// The signature's path, if not `file + ".asc"`.
        signature: Option<String>,
    },
}

/// One validated image entry.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The entry's key under `[images]`.
    pub id: String,
    /// Where it comes from.
    pub source: Source,
    /// Platforms to pin; empty means the host's.
    pub platforms: Vec<Platform>,
    /// Explicitly unverified.
    pub insecure: bool,
    /// For `docker` entries naming a repository without a tag: how the tag is chosen
    /// (the source's reference then carries the placeholder tag `latest`, never fetched).
    pub policy: Option<TagPolicy>,
    /// Digest of the entry's meaning; the lock records it to detect staleness.
    pub entry_hash: Digest,
    /// The 1-based line the entry starts on, for messages.
    pub line: usize,
}

impl ImageSpec {
    /// The request as the user wrote it, for messages and the lock.
    pub fn request(&self) -> String {
        match &self.source {
            Source::Docker(reference) if self.policy.is_some() => reference.repository(),
            Source::Docker(reference) => reference.to_string(),
            Source::Appc { name, .. } => name.clone(),
            Source::Url { url, .. } => url.clone(),
            Source::Layout { dir, reference } => match reference {
                Some(r) => format!("{dir}:{r}"),
                None => dir.clone(),
            },
            Source::AciFile { file, .. } => file.clone(),
        }
    }

    /// Whether the entry is an ACI (appc name, URL or `.aci` file).
    pub fn is_aci(&self) -> bool {
        matches!(
            self.source,
            Source::Appc { .. } | Source::Url { .. } | Source::AciFile { .. }
        )
    }

    /// The platforms to pin: those asked for, or the host's.
    pub fn wanted_platforms(&self) -> Vec<Platform> {
        if self.platforms.is_empty() {
            vec![Platform::host()]
        } else {
            self.platforms.clone()
        }
    }
}

/// A loaded, validated manifest.
#[derive(Debug)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[store] path`, resolved against the manifest's directory.
    pub store_path: Option<PathBuf>,
    /// `[registries]`.
    pub registries: BTreeMap<String, RegistryTable>,
    /// `[trust]`.
    pub trust: BTreeMap<String, TrustTable>,
    /// `[mirrors]`.
    pub mirrors: MirrorsTable,
    /// `[images]`, by ID.
    pub images: BTreeMap<String, ImageSpec>,
}

/// A manifest that cannot be used, with where and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file is missing.
    #[error("no manifest at {}", path.display())]
    Missing {
        /// Where we looked.
        path: PathBuf,
    },
    /// Reading failed.
    #[error("could not read {}", path.display())]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("invalid manifest {}\n{message}", path.display())]
    Syntax {
        /// The manifest path.
        path: PathBuf,
        /// toml's message, which shows the line and the key.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{}:{line}: `{key}`: {message}", path.display())]
    Invalid {
        /// The manifest path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Dotted key, e.g. `images.big.docker`.
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ManifestError::Missing {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(ManifestError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Manifest::parse(path, &text)
    }

    /// Validates manifest text read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let file: ManifestFile = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid =
            |span: std::ops::Range<usize>, key: String, message: String| ManifestError::Invalid {
                path: path.to_owned(),
                line: line_of(text, span.start),
                key,
                message,
            };
        let dir = path.parent().unwrap_or(Path::new(""));
        // Where each line starts, once: counting newlines afresh for every entry
        // was quadratic (40% of a no-op sync of 1,000 entries).
        let newlines: Vec<usize> = text
            .bytes()
            .enumerate()
            .filter_map(|(i, b)| (b == b'\n').then_some(i))
            .collect();
        let line_at = |offset: usize| newlines.partition_point(|&n| n < offset) + 1;
        let mut images = BTreeMap::new();
        for (id, table) in file.images {
            let span = table.span();
            let spec = validate_image(&id, table.into_inner(), line_at(span.start)).map_err(
                |(span, key, message)| {
                    invalid(span.unwrap_or(span_fallback(&id, text)), key, message)
                },
            )?;
            images.insert(id, spec);
        }
        for prefix in file.registries.keys() {
            if prefix.contains('/') || prefix.is_empty() {
                let start = text.find(prefix.as_str()).unwrap_or(0);
                return Err(invalid(
                    start..start,
                    format!("registries.\"{prefix}\""),
                    "registry keys are HOST or HOST:PORT, without a scheme or path".into(),
                ));
            }
        }
        for (prefix, table) in &file.trust {
            for (n, identity) in table.sigstore_identities.iter().enumerate() {
                if let Err(message) = identity.check() {
                    let start = text.find("sigstore-identities").unwrap_or(0);
                    return Err(invalid(
                        start..start,
                        format!("trust.\"{prefix}\".sigstore-identities[{n}]"),
                        message,
                    ));
                }
            }
        }
        Ok(Manifest {
            path: path.to_owned(),
            store_path: file.store.map(|s| dir.join(s.path)),
            registries: file.registries,
            trust: file.trust,
            mirrors: file.mirrors.unwrap_or_default(),
            images,
        })
    }

    /// The directory relative paths in the manifest are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// The most specific `[trust]` prefix covering `name`, if any.
    pub fn trust_for(&self, name: &str) -> Option<(&str, &TrustTable)> {
        let prefix = most_specific_prefix(self.trust.keys().map(String::as_str), name)?;
        self.trust
            .get_key_value(prefix)
            .map(|(p, t)| (p.as_str(), t))
    }

    /// The `host[:port]`s the user allowed plain HTTP for.
    pub fn insecure_http_hosts(&self) -> Vec<String> {
        self.registries
            .iter()
            .filter(|(_, r)| r.insecure_http)
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// Whether the user allowed plain HTTP for `host` (`host[:port]`).
    pub fn insecure_http(&self, host: &str) -> bool {
        self.registries.get(host).is_some_and(|r| r.insecure_http)
    }
}

/// A validation failure inside one entry: (span of the bad value, dotted key, message).
type EntryError = (Option<std::ops::Range<usize>>, String, String);

fn validate_image(id: &str, table: ImageTable, line: usize) -> Result<ImageSpec, EntryError> {
    let key = |k: &str| format!("images.{id}.{k}");
    if !is_valid_id(id) {
        return Err((
            None,
            format!("images.{}", crate::text::escape(id)),
            "image IDs may contain only ASCII letters, digits, '-', '_' and '.'".into(),
        ));
    }
    let given: Vec<&str> = [
        ("docker", table.docker.is_some()),
        ("name", table.name.is_some()),
        ("url", table.url.is_some()),
        ("path", table.path.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, present)| present.then_some(k))
    .collect();
    if given.len() != 1 {
        let message = if given.is_empty() {
            "the entry names no source: add exactly one of `docker = \"REF\"`, `name = \"NAME\"`, `url = \"URL\"` or `path = \"PATH\"`".to_owned()
        } else {
            format!(
                "the entry names {} sources ({}); keep exactly one",
                given.len(),
                given.join(", ")
            )
        };
        return Err((None, format!("images.{id}"), message));
    }
    let mut hash_input = BTreeMap::new();
    let policy = tag_policy(id, &table)?;
    let source = if let Some(docker) = &table.docker {
        let reference = Reference::parse(docker.get_ref())
            .map_err(|e| (Some(docker.span()), key("docker"), format!("{e}")))?;
        if let Some(policy) = &policy {
            if !crate::oci::reference::is_name_only(docker.get_ref()) {
                return Err((
                    Some(docker.span()),
                    key("docker"),
                    format!(
                        "`{}` names a tag or digest, but the entry's `{}` chooses the tag; write the repository alone (`docker = \"{}\"`), or drop `{}` to pin this tag",
                        docker.get_ref(),
                        policy.key(),
                        reference.repository(),
                        policy.key()
                    ),
                ));
            }
            hash_input.insert("docker", serde_json::json!(reference.repository()));
            hash_input.insert(policy.key(), serde_json::json!(policy.written()));
        } else {
            hash_input.insert("docker", serde_json::json!(reference.to_string()));
        }
        Source::Docker(reference)
    } else if let Some(name) = &table.name {
        hash_input.insert("name", serde_json::json!(name.get_ref()));
        hash_input.insert("labels", serde_json::json!(table.labels));
        Source::Appc {
            name: name.get_ref().clone(),
            labels: table.labels.clone(),
        }
    } else if let Some(url) = &table.url {
        let u = url.get_ref();
        if !(u.starts_with("https://") || u.starts_with("http://") || u.starts_with("file://")) {
            return Err((
                Some(url.span()),
                key("url"),
                format!("`{u}` is not an https://, http:// or file:// URL"),
            ));
        }
        hash_input.insert("url", serde_json::json!(u));
        Source::Url {
            url: u.clone(),
            signature: table.signature.clone(),
        }
    } else {
        let path = table.path.as_ref().expect("exactly one source is set");
        let written = path.get_ref();
        if written.is_empty() {
            return Err((Some(path.span()), key("path"), "the path is empty".into()));
        }
        hash_input.insert("path", serde_json::json!(written));
        if written.ends_with(".aci") {
            Source::AciFile {
                file: written.clone(),
                signature: table.signature.clone(),
            }
        } else {
            let (dir, reference) = split_layout_path(written);
            Source::Layout { dir, reference }
        }
    };
    if !table.labels.is_empty() && table.name.is_none() {
        return Err((
            None,
            key("labels"),
            "`labels` only applies to appc `name` entries".into(),
        ));
    }
    if let Some((label, value)) = table.labels.iter().find(|(k, v)| is_constraint(k, v)) {
        return Err((
            None,
            key(&format!("labels.{label}")),
            format!(
                "`{value}` is a version constraint, but appc discovery cannot list an image's versions: \
                 it fills the label into the publisher's URL templates as written, so labels must be exact. \
                 Write an exact value (e.g. `{label} = \"1.2.0\"`), or, for `version`, leave it out to get \
                 what the server publishes as latest (`imagelock update {id}` picks up a newer one)"
            ),
        ));
    }
    if table.signature.is_some() && table.url.is_none() && !matches!(source, Source::AciFile { .. })
    {
        return Err((
            None,
            key("signature"),
            "`signature` only applies to `url` and ACI `path` entries".into(),
        ));
    }
    let mut platforms = Vec::new();
    for p in &table.platforms {
        if !matches!(source, Source::Docker(_) | Source::Layout { .. }) {
            return Err((
                Some(p.span()),
                key("platforms"),
                "`platforms` only applies to `docker` and OCI layout `path` entries".into(),
            ));
        }
        let platform: Platform = p
            .get_ref()
            .parse()
            .map_err(|e| (Some(p.span()), key("platforms"), format!("{e}")))?;
        if platforms.contains(&platform) {
            return Err((
                Some(p.span()),
                key("platforms"),
                format!("`{platform}` is listed twice"),
            ));
        }
        platforms.push(platform);
    }
    if !platforms.is_empty() {
        let names: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
        hash_input.insert("platforms", serde_json::json!(names));
    }
    if let Some(sig) = &table.signature {
        hash_input.insert("signature", serde_json::json!(sig));
    }
    hash_input.insert("insecure", serde_json::json!(table.insecure));
    let canonical = serde_json::to_vec(&hash_input).expect("a map of JSON values serialises");
    Ok(ImageSpec {
        id: id.to_owned(),
        source,
        platforms,
        insecure: table.insecure,
        policy,
        entry_hash: Digest::sha256_of(&canonical),
        line,
    })
}

/// The entry's `semver` or `tag-pattern`, checked: at most one, only on `docker` entries.
fn tag_policy(id: &str, table: &ImageTable) -> Result<Option<TagPolicy>, EntryError> {
    let key = |k: &str| format!("images.{id}.{k}");
    let (written, name) = match (&table.semver, &table.tag_pattern) {
        (None, None) => return Ok(None),
        (Some(_), Some(pattern)) => {
            return Err((
                Some(pattern.span()),
                key("tag-pattern"),
                "give `semver` or `tag-pattern`, not both".into(),
            ));
        }
        (Some(req), None) => (req, "semver"),
        (None, Some(pattern)) => (pattern, "tag-pattern"),
    };
    if table.docker.is_none() {
        return Err((
            Some(written.span()),
            key(name),
            format!("`{name}` only applies to `docker` entries (a registry lists their tags)"),
        ));
    }
    let parsed = if name == "semver" {
        TagPolicy::semver(written.get_ref())
    } else {
        TagPolicy::pattern(written.get_ref())
    };
    parsed
        .map(Some)
        .map_err(|message| (Some(written.span()), key(name), message))
}

/// Whether an appc label value is a constraint (`1.*`, `>=1.2`, `^1`, `~1.2`)
/// rather than an exact value: globs in any label, range operators in `version`.
fn is_constraint(label: &str, value: &str) -> bool {
    value.contains('*')
        || (label == "version"
            && (value.starts_with(['^', '~', '<', '>', '=']) || value.contains("||")))
}

/// The most specific of `prefixes` that covers `name` (see [`prefix_covers`]).
pub fn most_specific_prefix<'p>(
    prefixes: impl Iterator<Item = &'p str>,
    name: &str,
) -> Option<&'p str> {
    prefixes
        .filter(|prefix| prefix_covers(prefix, name))
        .max_by_key(|prefix| prefix.trim_end_matches('/').len())
}

/// Whether trust prefix `prefix` covers `name`, path component by path
/// component: `example.com/app` (or `example.com/app/`) covers
/// `example.com/app` and `example.com/app/x`, not `example.com/apple`. An
/// empty prefix covers everything.
pub fn prefix_covers(prefix: &str, name: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Splits `DIR:REF` into its parts; a path without `:` names the whole layout.
pub fn split_layout_path(written: &str) -> (String, Option<String>) {
    match written.rsplit_once(':') {
        Some((dir, reference))
            if !dir.is_empty() && !reference.is_empty() && !reference.contains('/') =>
        {
            (dir.to_owned(), Some(reference.to_owned()))
        }
        _ => (written.to_owned(), None),
    }
}

/// Whether `id` is usable as an image ID (a bare TOML key, a file-name-safe word).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn span_fallback(id: &str, text: &str) -> std::ops::Range<usize> {
    let needle = format!("[images.{id}]");
    let start = text.find(&needle).unwrap_or(0);
    start..start
}

/// The 1-based line number of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("dir/images.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_every_source_kind() {
        let m = parse(
            r#"
[store]
path = ".imagelock/store"

[registries."127.0.0.1:5000"]
insecure-http = true

[trust."example.com/"]
keys = ["keys/example.asc"]

[images.etcd]
name = "coreos.com/etcd"
labels = { version = "v3.1.0", os = "linux", arch = "amd64" }

[images.alpine]
docker = "alpine:3.20"
platforms = ["linux/amd64", "linux/arm64"]

[images.tool]
url = "https://example.com/tool-1.2.aci"

[images.hello]
path = "examples/hello:1.0"
insecure = true
"#,
        )
        .expect("valid manifest");
        assert_eq!(m.store_path, Some(PathBuf::from("dir/.imagelock/store")));
        assert!(m.insecure_http("127.0.0.1:5000"));
        assert!(!m.insecure_http("127.0.0.1:5001"));
        let alpine = &m.images["alpine"];
        assert_eq!(alpine.request(), "docker.io/library/alpine:3.20");
        assert_eq!(alpine.platforms.len(), 2);
        assert_eq!(
            m.images["hello"].source,
            Source::Layout {
                dir: "examples/hello".into(),
                reference: Some("1.0".into())
            }
        );
        assert_eq!(
            m.trust_for("example.com/etcd").map(|t| t.0),
            Some("example.com/")
        );
        assert_eq!(m.images["etcd"].line, 11);
    }

    #[test]
    fn trust_prefixes_match_whole_path_components() {
        let cases = [
            ("example.com/", "example.com/etcd", true),
            ("example.com/app", "example.com/app", true),
            ("example.com/app/", "example.com/app/x", true),
            ("example.com/app", "example.com/apple", false),
            ("example.com/etc/", "example.com/etcd", false),
            ("", "anything.org/x", true),
            (
                "registry.example.com/team/",
                "registry.example.com/teamx/api",
                false,
            ),
        ];
        for (prefix, name, want) in cases {
            assert_eq!(
                prefix_covers(prefix, name),
                want,
                "{prefix:?} covers {name:?}"
            );
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases = [
            ("[images.a]\ndocker = \"alpine\"\ncolour = 1\n", "colour"),
            (
                "[images.a]\ndocker = \"Alpine:UPPER\"\n",
                "dir/images.toml:2: `images.a.docker`",
            ),
            (
                "[images.a]\ndocker = \"alpine\"\nplatforms = [\"linux\"]\n",
                "dir/images.toml:3: `images.a.platforms`",
            ),
            (
                "[images.a]\ndocker = \"alpine\"\npath = \"x\"\n",
                "2 sources (docker, path)",
            ),
            ("[images.a]\ninsecure = true\n", "names no source"),
            (
                "[images.a]\ndocker = \"alpine\"\nlabels = { a = \"b\" }\n",
                "images.a.labels",
            ),
            (
                "[trust.\"x/\"]\nkeys = []\nidentity = \"matchAnything\"\n",
                "matchAnything",
            ),
            ("[registries.\"https://x\"]\n", "registries.\"https://x\""),
            (
                "[images.e]\nname = \"example.com/e\"\nlabels = { version = \"1.*\" }\n",
                "`images.e.labels.version`: `1.*` is a version constraint",
            ),
            (
                "[images.e]\nname = \"example.com/e\"\nlabels = { version = \">=1.2\" }\n",
                "appc discovery cannot list",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn version_policies_choose_the_tag_of_a_bare_repository() {
        let m = parse(
            "[images.a]\ndocker = \"ghcr.io/acme/app\"\nsemver = \"^1.4\"\n\n[images.b]\ndocker = \"alpine\"\ntag-pattern = '^3\\.20\\.\\d+$'\n",
        )
        .expect("valid");
        assert_eq!(m.images["a"].request(), "ghcr.io/acme/app");
        assert_eq!(
            m.images["a"].policy.as_ref().map(ToString::to_string),
            Some("semver ^1.4".to_owned())
        );
        assert_eq!(
            m.images["b"].policy.as_ref().map(ToString::to_string),
            Some("tag-pattern ^3\\.20\\.\\d+$".to_owned())
        );
        let cases = [
            (
                "[images.a]\ndocker = \"alpine:3.20\"\nsemver = \"^3\"\n",
                "dir/images.toml:2: `images.a.docker`: `alpine:3.20` names a tag or digest",
            ),
            (
                "[images.a]\ndocker = \"alpine\"\nsemver = \"^3\"\ntag-pattern = \"x\"\n",
                "give `semver` or `tag-pattern`, not both",
            ),
            (
                "[images.a]\ndocker = \"alpine\"\nsemver = \"three\"\n",
                "`images.a.semver`: `three` is not a semver requirement",
            ),
            (
                "[images.a]\ndocker = \"alpine\"\ntag-pattern = \"(\"\n",
                "`images.a.tag-pattern`",
            ),
            (
                "[images.a]\npath = \"x\"\nsemver = \"^1\"\n",
                "`semver` only applies to `docker` entries",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let hash = |text: &str| parse(text).expect("valid").images["a"].entry_hash.clone();
        let caret = hash("[images.a]\ndocker = \"alpine\"\nsemver = \"^3\"\n");
        assert_ne!(
            caret,
            hash("[images.a]\ndocker = \"alpine\"\nsemver = \"~3\"\n")
        );
        assert_ne!(caret, hash("[images.a]\ndocker = \"alpine\"\n"));
        assert_ne!(
            caret,
            hash("[images.a]\ndocker = \"alpine\"\ntag-pattern = \"^3\"\n")
        );
    }

    #[test]
    fn entry_hash_tracks_meaning_not_formatting() {
        let a = parse("[images.a]\ndocker = \"alpine\"\n").expect("valid");
        let b = parse("# comment\n[images.a]\ndocker   =   \"docker.io/library/alpine:latest\"\ninsecure = false\n").expect("valid");
        let c = parse("[images.a]\ndocker = \"alpine\"\ninsecure = true\n").expect("valid");
        assert_eq!(a.images["a"].entry_hash, b.images["a"].entry_hash);
        assert_ne!(a.images["a"].entry_hash, c.images["a"].entry_hash);
    }
}
