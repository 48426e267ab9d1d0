//! The ACI image manifest (specs/appc.md §2.3) and the names around it: AC identifiers, the
//! identity check against a requested name and labels, appc's os/arch names, image IDs.
//!
//! Invariant: the manifest is validated strictly: what rkt's Go code would refuse is refused, and
//! where Go is loose (identifiers, hashes, semver) the spec's stricter rule applies. Keys are
//! matched case-insensitively, as Go's `encoding/json` does.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::AciError;
use crate::oci::platform::Platform;

/// The image manifest (§2.3), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// `acVersion`, a semantic version other than 0.0.0, as written.
    pub ac_version: String,
    /// The image name, an AC identifier.
    pub name: String,
    /// Labels by name (names unique, none called `name`, os/arch whitelisted).
    pub labels: BTreeMap<String, String>,
    /// The `app` object, kept opaque.
    pub app: Option<Value>,
    /// Annotations in document order (names unique AC identifiers).
    pub annotations: Vec<(String, String)>,
    /// Dependencies in order (order matters for rendering).
    pub dependencies: Vec<Dependency>,
    /// Absolute paths; empty means no filtering.
    pub path_whitelist: Vec<String>,
}

/// An image this image is layered on (§2.3 `dependencies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The dependency's name, an AC identifier.
    pub image_name: String,
    /// `sha512-` + lowercase hex, possibly shortened (rkt resolves ID prefixes).
    pub image_id: Option<String>,
    /// Labels selecting the dependency.
    pub labels: BTreeMap<String, String>,
    /// Expected size in bytes.
    pub size: Option<u64>,
}

const IMAGE_MANIFEST_KIND: &str = "ImageManifest";

/// `types.ValidOSArch` (§1.4): the os values appc knows, each with its arch values.
const VALID_OS_ARCH: &[(&str, &[&str])] = &[
    (
        "linux",
        &[
            "amd64",
            "i386",
            "aarch64",
            "aarch64_be",
            "armv6l",
            "armv7l",
            "armv7b",
            "ppc64",
            "ppc64le",
            "s390x",
        ],
    ),
    ("freebsd", &["amd64", "i386", "arm"]),
    ("darwin", &["x86_64", "i386"]),
];

/// Parses and validates an image manifest (§2.3): `acKind` is `ImageManifest`; `acVersion` is
/// semver and not 0.0.0; `name` and label names are AC identifiers; labels are unique, none is
/// called `name`, and os/arch are whitelisted; dependencies and annotations are checked too.
pub fn parse_manifest(bytes: &[u8]) -> Result<ImageManifest, AciError> {
    manifest_from_json(bytes).map_err(AciError::InvalidManifest)
}

fn manifest_from_json(bytes: &[u8]) -> Result<ImageManifest, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|error| format!("not valid JSON: {error}"))?;
    // Unknown top-level keys are ignored, as Go's encoding/json (and so rkt) ignores them:
    // later spec versions may add fields.
    let fields = Fields::new(&value, "the manifest")?;

    match fields.string("acKind")? {
        Some(IMAGE_MANIFEST_KIND) => {}
        Some(other) => {
            return Err(format!(
                "acKind is `{other}`, expected `{IMAGE_MANIFEST_KIND}`"
            ));
        }
        None => {
            return Err(format!(
                "acKind is missing (expected `{IMAGE_MANIFEST_KIND}`)"
            ));
        }
    }
    let ac_version = fields.required_string("acVersion")?;
    match parse_semver(ac_version) {
        None => {
            return Err(format!(
                "acVersion `{ac_version}` is not a semantic version (MAJOR.MINOR.PATCH)"
            ));
        }
        Some(SemVer::Zero) => return Err("acVersion 0.0.0 is not allowed".to_owned()),
        Some(SemVer::Valid) => {}
    }
    let name = fields.required_string("name")?;
    check_identifier(name, "name")?;
    let labels = parse_labels(fields.array("labels")?, "labels")?;
    let app = match fields.get("app")? {
        None => None,
        Some(app @ Value::Object(_)) => Some(app.clone()),
        Some(_) => return Err("app is not an object".to_owned()),
    };
    let annotations = parse_annotations(fields.array("annotations")?)?;
    let dependencies = fields
        .array("dependencies")?
        .iter()
        .enumerate()
        .map(|(index, value)| parse_dependency(value, index))
        .collect::<Result<_, _>>()?;
    let path_whitelist = fields
        .array("pathWhitelist")?
        .iter()
        .map(|value| match value.as_str() {
            Some(path) if path.starts_with('/') => Ok(path.to_owned()),
            Some(path) => Err(format!(
                "pathWhitelist entry `{path}` is not an absolute path"
            )),
            None => Err(format!("pathWhitelist entry {value} is not a string")),
        })
        .collect::<Result<_, _>>()?;
    Ok(ImageManifest {
        ac_version: ac_version.to_owned(),
        name: name.to_owned(),
        labels,
        app,
        annotations,
        dependencies,
        path_whitelist,
    })
}

/// A JSON object's fields, looked up case-insensitively as Go's `encoding/json` does.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    what: &'a str,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, what: &'a str) -> Result<Fields<'a>, String> {
        match value {
            Value::Object(object) => Ok(Fields { object, what }),
            other => Err(format!("{what} is {}, not an object", json_kind(other))),
        }
    }

    /// The value of `key`, `None` when absent or `null`. Two keys that differ only in case are
    /// refused: Go would silently keep the last, and other readers may keep the first.
    fn get(&self, key: &str) -> Result<Option<&'a Value>, String> {
        let mut matches = self
            .object
            .iter()
            .filter(|(candidate, _)| candidate.eq_ignore_ascii_case(key));
        let found = matches.next();
        if let Some((second, _)) = matches.next() {
            let first = found.map(|(k, _)| k.as_str()).unwrap_or_default();
            return Err(format!(
                "{} has both `{first}` and `{second}` (keys are case-insensitive)",
                self.what
            ));
        }
        Ok(found
            .map(|(_, value)| value)
            .filter(|value| !value.is_null()))
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "{}: `{key}` is {}, not a string",
                self.what,
                json_kind(other)
            )),
        }
    }

    fn required_string(&self, key: &str) -> Result<&'a str, String> {
        self.string(key)?
            .ok_or_else(|| format!("{}: `{key}` is missing", self.what))
    }

    /// The array at `key`; absent or `null` is empty.
    fn array(&self, key: &str) -> Result<&'a [Value], String> {
        match self.get(key)? {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(format!(
                "{}: `{key}` is {}, not an array",
                self.what,
                json_kind(other)
            )),
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_identifier(value: &str, what: &str) -> Result<(), String> {
    if is_ac_identifier(value) {
        Ok(())
    } else {
        Err(format!(
            "{what} `{value}` is not an AC identifier (lowercase letters and digits joined by single `-._~/`, e.g. example.com/app)"
        ))
    }
}

/// A `[{name, value}]` list: names unique AC identifiers, values strings.
fn parse_pairs(items: &[Value], what: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(items.len());
    for item in items {
        let fields = Fields::new(item, what)?;
        let name = fields.required_string("name")?;
        check_identifier(name, &format!("{what} name"))?;
        let value = fields.required_string("value")?;
        if pairs.iter().any(|(seen, _)| seen == name) {
            return Err(format!("{what}: `{name}` appears twice"));
        }
        pairs.push((name.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

fn parse_labels(items: &[Value], what: &str) -> Result<BTreeMap<String, String>, String> {
    let labels: BTreeMap<String, String> = parse_pairs(items, what)?.into_iter().collect();
    if labels.contains_key("name") {
        return Err(format!(
            "{what}: a label may not be called `name` (the name is a field of its own)"
        ));
    }
    check_os_arch(&labels).map_err(|problem| format!("{what}: {problem}"))?;
    Ok(labels)
}

/// Go's `IsValidOSArch`: an unknown os is refused; arch is checked only under a known os.
fn check_os_arch(labels: &BTreeMap<String, String>) -> Result<(), String> {
    let Some(os) = labels.get("os") else {
        return Ok(());
    };
    let Some((_, arches)) = VALID_OS_ARCH.iter().find(|(known, _)| known == os) else {
        let known: Vec<&str> = VALID_OS_ARCH.iter().map(|(os, _)| *os).collect();
        return Err(format!("os `{os}` is not one of {}", known.join(", ")));
    };
    match labels.get("arch") {
        Some(arch) if !arches.contains(&arch.as_str()) => Err(format!(
            "arch `{arch}` is not valid for os {os} (one of {})",
            arches.join(", ")
        )),
        _ => Ok(()),
    }
}

fn parse_annotations(items: &[Value]) -> Result<Vec<(String, String)>, String> {
    let annotations = parse_pairs(items, "annotations")?;
    for (name, value) in &annotations {
        match name.as_str() {
            "created" if !is_rfc3339(value) => {
                return Err(format!(
                    "annotation created `{value}` is not an RFC 3339 date (e.g. 2014-10-27T19:32:27Z)"
                ));
            }
            "homepage" | "documentation" if !is_http_url(value) => {
                return Err(format!("annotation {name} `{value}` is not an http(s) URL"));
            }
            _ => {}
        }
    }
    Ok(annotations)
}

fn parse_dependency(value: &Value, index: usize) -> Result<Dependency, String> {
    let what = format!("dependency {}", index + 1);
    let fields = Fields::new(value, &what)?;
    let image_name = fields.required_string("imageName")?;
    check_identifier(image_name, &format!("{what} imageName"))?;
    let image_id = fields
        .string("imageID")?
        .map(|id| {
            if is_image_id_prefix(id) {
                Ok(id.to_owned())
            } else {
                Err(format!(
                    "{what} imageID `{id}` is not sha512- followed by up to 128 lowercase hex digits"
                ))
            }
        })
        .transpose()?;
    let labels = parse_labels(fields.array("labels")?, &format!("{what} labels"))?;
    let size = match fields.get("size")? {
        None => None,
        Some(size) => Some(
            size.as_u64()
                .ok_or_else(|| format!("{what} size {size} is not a whole number of bytes"))?,
        ),
    };
    Ok(Dependency {
        image_name: image_name.to_owned(),
        image_id,
        labels,
        size,
    })
}

/// Result of parsing a semantic version.
enum SemVer {
    /// 0.0.0 exactly, which appc refuses.
    Zero,
    Valid,
}

/// Semantic Versioning 2.0.0, strictly: no leading zeros, no `v` prefix, non-empty identifiers.
fn parse_semver(s: &str) -> Option<SemVer> {
    fn numeric(part: &str) -> Option<u64> {
        let no_leading_zero = part == "0" || !part.starts_with('0');
        let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        (digits && no_leading_zero)
            .then(|| part.parse().ok())
            .flatten()
    }
    fn identifiers(s: &str, numeric_rule: bool) -> bool {
        s.split('.').all(|id| {
            let allowed =
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let is_number = id.bytes().all(|b| b.is_ascii_digit());
            allowed && !(numeric_rule && is_number && id.len() > 1 && id.starts_with('0'))
        })
    }
    let (rest, build) = match s.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let mut parts = core.split('.');
    let (major, minor, patch) = (
        numeric(parts.next()?)?,
        numeric(parts.next()?)?,
        numeric(parts.next()?)?,
    );
    if parts.next().is_some()
        || !pre.is_none_or(|pre| identifiers(pre, true))
        || !build.is_none_or(|build| identifiers(build, false))
    {
        return None;
    }
    if (major, minor, patch) == (0, 0, 0) && pre.is_none() && build.is_none() {
        Some(SemVer::Zero)
    } else {
        Some(SemVer::Valid)
    }
}

/// Go's `time.Parse(time.RFC3339, s)`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` with real dates.
fn is_rfc3339(s: &str) -> bool {
    fn number(s: &str, range: std::ops::RangeInclusive<u32>) -> Option<u32> {
        let value = s
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())??;
        range.contains(&value).then_some(value)
    }
    let check = || -> Option<()> {
        let (date, rest) = (s.get(..10)?, s.get(10..)?);
        let (time, rest) = (rest.strip_prefix('T')?.get(..8)?, rest.get(9..)?);
        let year = number(date.get(0..4)?, 0..=9999)?;
        let month = number(date.get(5..7)?, 1..=12)?;
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        number(date.get(8..10)?, 1..=days)?;
        (date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-').then_some(())?;
        number(time.get(0..2)?, 0..=23)?;
        number(time.get(3..5)?, 0..=59)?;
        number(time.get(6..8)?, 0..=59)?;
        (time.as_bytes()[2] == b':' && time.as_bytes()[5] == b':').then_some(())?;
        let zone = match rest.strip_prefix('.') {
            Some(fraction) => {
                let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
                (digits > 0).then_some(&fraction[digits..])?
            }
            None => rest,
        };
        if zone == "Z" {
            return Some(());
        }
        let offset = zone.strip_prefix(['+', '-'])?;
        (offset.len() == 5 && offset.as_bytes()[2] == b':').then_some(())?;
        number(&offset[0..2], 0..=23)?;
        number(&offset[3..5], 0..=59)?;
        Some(())
    };
    s.is_ascii() && check().is_some()
}

/// An http or https URL with a host, without spaces or control characters.
fn is_http_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let host_present = rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    host_present && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks that the manifest is the image that was asked for: the name must equal `name`, and
/// every requested label must be present with the same value (extra manifest labels are fine).
pub fn check_identity(
    manifest: &ImageManifest,
    name: &str,
    requested: &BTreeMap<String, String>,
) -> Result<(), AciError> {
    if manifest.name != name {
        return Err(AciError::NameMismatch {
            requested: name.to_owned(),
            actual: manifest.name.clone(),
        });
    }
    let problems: Vec<String> = requested
        .iter()
        .filter_map(|(label, wanted)| match manifest.labels.get(label) {
            Some(actual) if actual == wanted => None,
            Some(actual) => Some(format!(
                "requested label {label}={wanted} but the image has {label}={actual}"
            )),
            None => Some(format!(
                "requested label {label}={wanted} but the image has no `{label}` label"
            )),
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AciError::LabelMismatch {
            problems,
            requested: requested.clone(),
            available: manifest.labels.clone(),
        })
    }
}

/// True for an AC identifier: the spec's regex `^[a-z0-9]+([-._~/][a-z0-9]+)*$`, plus `~` at the
/// start of a path component, which the spec's own examples use (`example.com/~bob/database`).
///
/// Stricter than Go's code, which allows `a//b` and `a/../b`: identifiers become paths.
pub fn is_ac_identifier(s: &str) -> bool {
    let mut previous: Option<u8> = None;
    for b in s.bytes() {
        let alphanumeric =
            |b: Option<u8>| b.is_some_and(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'));
        let allowed = match b {
            b'a'..=b'z' | b'0'..=b'9' => true,
            b'~' if previous == Some(b'/') => true,
            b'-' | b'.' | b'_' | b'~' | b'/' => alphanumeric(previous),
            _ => false,
        };
        if !allowed {
            return false;
        }
        previous = Some(b);
    }
    // Refuses the empty string and a trailing separator.
    previous.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The host's os and arch in appc's names (linux/amd64 → `linux`, `amd64`; linux/arm64 →
/// `aarch64`; 386 → `i386`; arm v7 → `armv7l`; darwin/amd64 → `x86_64`).
pub fn host_os_arch() -> (String, String) {
    let host = Platform::host();
    appc_os_arch(&host.os, &host.architecture, host.variant.as_deref())
}

/// Maps an OCI-style platform (os, arch, variant) to appc's names, as Go's `ToAppcOSArch`;
/// pairs appc has no name for come back normalised but otherwise unchanged.
///
/// The input is normalised first (so `x86_64`, `aarch64` and `i386` are accepted too), which
/// makes `arm` without a variant `armv7l` (containerd's reading) where Go's GOARM default gave
/// `armv6l`.
pub fn appc_os_arch(os: &str, arch: &str, variant: Option<&str>) -> (String, String) {
    let platform = Platform::new(os, arch, variant).normalized();
    let os = platform.os.as_str();
    let appc_arch = match (
        os,
        platform.architecture.as_str(),
        platform.variant.as_deref(),
    ) {
        ("linux", "386", _) | ("freebsd", "386", _) | ("darwin", "386", _) => "i386",
        ("linux", "arm64", _) => "aarch64",
        ("linux", "arm", Some("v6")) => "armv6l",
        ("linux", "arm", Some("v7")) => "armv7l",
        ("freebsd", "arm", _) => "arm",
        ("darwin", "amd64", _) => "x86_64",
        (_, other, _) => other,
    };
    (os.to_owned(), appc_arch.to_owned())
}

const IMAGE_ID_PREFIX: &str = "sha512-";
const IMAGE_ID_HEX_LEN: usize = 128;

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `sha512-` and 1 to 128 lowercase hex digits: how dependencies may name an image.
fn is_image_id_prefix(s: &str) -> bool {
    s.strip_prefix(IMAGE_ID_PREFIX)
        .is_some_and(|hex| !hex.is_empty() && hex.len() <= IMAGE_ID_HEX_LEN && is_lower_hex(hex))
}

/// Checks a full image ID: `sha512-` + 128 lowercase hex digits (strict: IDs here are computed).
pub fn parse_image_id(s: &str) -> Result<String, AciError> {
    match s.strip_prefix(IMAGE_ID_PREFIX) {
        Some(hex) if hex.len() == IMAGE_ID_HEX_LEN && is_lower_hex(hex) => Ok(s.to_owned()),
        _ => Err(AciError::InvalidImageId {
            id: s.to_owned(),
            expected: "128 lowercase hex digits",
        }),
    }
}

#[cfg(test)]
pub(in crate::appc::aci) mod tests {
    use sha2::Digest as _;

    use super::*;

    /// A small valid manifest; the archive tests build their images with it.
    pub(in crate::appc::aci) const MANIFEST: &str = r#"{
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "labels": [
            {"name": "version", "value": "1.0.0"},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": "amd64"}
        ]
    }"#;

    /// A manifest like the spec's `examples/image.json`, with every field this module reads.
    const FULL_MANIFEST: &str = r#"{
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/reduce-worker",
        "labels": [
            {"name": "version", "value": "1.0.0"},
            {"name": "arch", "value": "amd64"},
            {"name": "os", "value": "linux"}
        ],
        "app": {
            "exec": ["/usr/bin/reduce-worker", "--quiet"],
            "user": "100",
            "group": "300",
            "supplementaryGids": [400, 500],
            "eventHandlers": [{"exec": ["/usr/bin/data-downloader"], "name": "pre-start"}],
            "workingDirectory": "/opt/work",
            "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}],
            "mountPoints": [{"name": "work", "path": "/var/lib/work", "readOnly": false}],
            "ports": [{"name": "health", "port": 4000, "protocol": "tcp", "socketActivated": true}]
        },
        "dependencies": [
            {
                "imageName": "example.com/reduce-worker-base",
                "imageID": "sha512-8d3fffddf79e9a232ffd19f9ccaa4d6b37a6a243dbe0f23137b108a043d9da13121a9b505c804956b22e93c7f93969f4a7ba8ddea45bf4aab0bebc8f814e0990",
                "labels": [
                    {"name": "os", "value": "linux"},
                    {"name": "env", "value": "canary"}
                ],
                "size": 7340032
            },
            {"imageName": "example.com/tools"}
        ],
        "pathWhitelist": [
            "/etc/ca/example.com/crt",
            "/usr/bin/map-reduce-worker",
            "/opt/libs/reduce-toolkit.so",
            "/etc/reduce-worker.conf",
            "/etc/systemd/system/"
        ],
        "annotations": [
            {"name": "authors", "value": "Carly Container <carly@example.com>"},
            {"name": "created", "value": "2014-10-27T19:32:27.67021798Z"},
            {"name": "documentation", "value": "https://example.com/docs"},
            {"name": "homepage", "value": "https://example.com"},
            {"name": "appc.io/executor/supports-systemd-notify", "value": "true"}
        ],
        "futureField": {"ignored": true}
    }"#;

    #[test]
    fn parses_a_full_manifest() {
        let manifest = parse_manifest(FULL_MANIFEST.as_bytes()).expect("valid manifest");
        assert_eq!(manifest.ac_version, "0.8.11");
        assert_eq!(manifest.name, "example.com/reduce-worker");
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            manifest.labels,
            labels(&[("arch", "amd64"), ("os", "linux"), ("version", "1.0.0")])
        );
        let app = manifest.app.as_ref().expect("app present");
        assert_eq!(app["exec"][0], "/usr/bin/reduce-worker");
        assert_eq!(app["supplementaryGids"][1], 500);
        assert_eq!(
            manifest.dependencies,
            vec![
                Dependency {
                    image_name: "example.com/reduce-worker-base".into(),
                    image_id: Some("sha512-8d3fffddf79e9a232ffd19f9ccaa4d6b37a6a243dbe0f23137b108a043d9da13121a9b505c804956b22e93c7f93969f4a7ba8ddea45bf4aab0bebc8f814e0990".into()),
                    labels: labels(&[("env", "canary"), ("os", "linux")]),
                    size: Some(7_340_032),
                },
                Dependency {
                    image_name: "example.com/tools".into(),
                    image_id: None,
                    labels: BTreeMap::new(),
                    size: None,
                },
            ]
        );
        assert_eq!(manifest.path_whitelist.len(), 5);
        assert_eq!(manifest.path_whitelist[4], "/etc/systemd/system/");
        let names: Vec<&str> = manifest
            .annotations
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "authors",
                "created",
                "documentation",
                "homepage",
                "appc.io/executor/supports-systemd-notify"
            ]
        );
        assert_eq!(manifest.annotations[1].1, "2014-10-27T19:32:27.67021798Z");
    }

    #[test]
    fn manifest_keys_are_case_insensitive() {
        let manifest = parse_manifest(
            br#"{"ACKIND": "ImageManifest", "ackind_not": 1, "AcVersion": "0.8.11", "NAME": "app",
                "Labels": [{"NAME": "os", "vAlUe": "linux"}],
                "dependencies": [{"imagename": "base", "IMAGEID": "sha512-abc", "SIZE": 1}],
                "pathwhitelist": ["/x"], "ANNOTATIONS": [{"Name": "authors", "Value": "me"}]}"#,
        )
        .expect("keys in any case");
        assert_eq!(manifest.name, "app");
        assert_eq!(manifest.labels["os"], "linux");
        assert_eq!(manifest.dependencies[0].image_name, "base");
        assert_eq!(
            manifest.dependencies[0].image_id.as_deref(),
            Some("sha512-abc")
        );
        assert_eq!(manifest.dependencies[0].size, Some(1));
        assert_eq!(manifest.path_whitelist, ["/x"]);
        assert_eq!(
            manifest.annotations,
            [("authors".to_owned(), "me".to_owned())]
        );
    }

    #[test]
    fn invalid_manifests_are_refused() {
        let with = |fields: &str| {
            format!(
                r#"{{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "app"{fields}}}"#
            )
        };
        let label =
            |name: &str, value: &str| format!(r#"{{"name": "{name}", "value": "{value}"}}"#);
        let cases: Vec<(&str, String, &str)> = vec![
            ("not json", "{".into(), "not valid JSON"),
            ("not an object", "[]".into(), "the manifest is an array, not an object"),
            ("no acKind", r#"{"acVersion": "0.8.11", "name": "app"}"#.into(), "acKind is missing"),
            (
                "bad acKind",
                r#"{"acKind": "PodManifest", "acVersion": "0.8.11", "name": "app"}"#.into(),
                "acKind is `PodManifest`, expected `ImageManifest`",
            ),
            (
                "acKind twice",
                r#"{"acKind": "ImageManifest", "ACKIND": "ImageManifest", "acVersion": "0.8.11", "name": "app"}"#.into(),
                "the manifest has both `acKind` and `ACKIND`",
            ),
            ("no version", r#"{"acKind": "ImageManifest", "name": "app"}"#.into(), "`acVersion` is missing"),
            (
                "zero version",
                r#"{"acKind": "ImageManifest", "acVersion": "0.0.0", "name": "app"}"#.into(),
                "acVersion 0.0.0 is not allowed",
            ),
            (
                "bad version",
                r#"{"acKind": "ImageManifest", "acVersion": "v1.0", "name": "app"}"#.into(),
                "acVersion `v1.0` is not a semantic version",
            ),
            (
                "numeric version",
                r#"{"acKind": "ImageManifest", "acVersion": 1, "name": "app"}"#.into(),
                "`acVersion` is a number, not a string",
            ),
            ("no name", r#"{"acKind": "ImageManifest", "acVersion": "0.8.11"}"#.into(), "`name` is missing"),
            ("uppercase name", with("").replace("\"app\"", "\"BAR\""), "name `BAR` is not an AC identifier"),
            ("absolute name", with("").replace("\"app\"", "\"/app\""), "name `/app` is not an AC identifier"),
            ("trailing slash", with("").replace("\"app\"", "\"app/\""), "name `app/` is not an AC identifier"),
            ("leading dash", with("").replace("\"app\"", "\"-app\""), "name `-app` is not an AC identifier"),
            ("double slash", with("").replace("\"app\"", "\"a//b\""), "name `a//b` is not an AC identifier"),
            (
                "duplicate label",
                with(&format!(r#", "labels": [{}, {}]"#, label("version", "1"), label("version", "2"))),
                "labels: `version` appears twice",
            ),
            (
                "label called name",
                with(&format!(r#", "labels": [{}]"#, label("name", "x"))),
                "a label may not be called `name`",
            ),
            (
                "bad label name",
                with(&format!(r#", "labels": [{}]"#, label("Version", "1"))),
                "labels name `Version` is not an AC identifier",
            ),
            (
                "label without value",
                with(r#", "labels": [{"name": "version"}]"#),
                "`value` is missing",
            ),
            (
                "unknown os",
                with(&format!(r#", "labels": [{}]"#, label("os", "plan9"))),
                "os `plan9` is not one of linux, freebsd, darwin",
            ),
            (
                "arch for another os",
                with(&format!(r#", "labels": [{}, {}]"#, label("os", "darwin"), label("arch", "amd64"))),
                "arch `amd64` is not valid for os darwin",
            ),
            (
                "go arch name",
                with(&format!(r#", "labels": [{}, {}]"#, label("os", "linux"), label("arch", "arm64"))),
                "arch `arm64` is not valid for os linux",
            ),
            ("app not an object", with(r#", "app": []"#), "app is not an object"),
            (
                "dependency without name",
                with(r#", "dependencies": [{"imageID": "sha512-abc"}]"#),
                "dependency 1: `imageName` is missing",
            ),
            (
                "dependency with bad name",
                with(r#", "dependencies": [{"imageName": "Base"}]"#),
                "dependency 1 imageName `Base` is not an AC identifier",
            ),
            (
                "dependency with example imageID",
                with(r#", "dependencies": [{"imageName": "base", "imageID": "sha512-..."}]"#),
                "dependency 1 imageID `sha512-...` is not sha512-",
            ),
            (
                "dependency with sha256 imageID",
                with(r#", "dependencies": [{"imageName": "base", "imageID": "sha256-abc"}]"#),
                "imageID `sha256-abc`",
            ),
            (
                "dependency with uppercase imageID",
                with(r#", "dependencies": [{"imageName": "base", "imageID": "sha512-ABC"}]"#),
                "imageID `sha512-ABC`",
            ),
            (
                "dependency with a bad label",
                with(r#", "dependencies": [{"imageName": "base", "labels": [{"name": "os", "value": "beos"}]}]"#),
                "dependency 1 labels: os `beos`",
            ),
            (
                "dependency with a negative size",
                with(r#", "dependencies": [{"imageName": "base", "size": -1}]"#),
                "dependency 1 size -1 is not a whole number",
            ),
            ("relative whitelist", with(r#", "pathWhitelist": ["etc/x"]"#), "`etc/x` is not an absolute path"),
            (
                "duplicate annotation",
                with(r#", "annotations": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]"#),
                "annotations: `a` appears twice",
            ),
            (
                "bad created",
                with(r#", "annotations": [{"name": "created", "value": "2014-02-30T00:00:00Z"}]"#),
                "annotation created `2014-02-30T00:00:00Z` is not an RFC 3339 date",
            ),
            (
                "bad homepage",
                with(r#", "annotations": [{"name": "homepage", "value": "ftp://example.com"}]"#),
                "annotation homepage `ftp://example.com` is not an http(s) URL",
            ),
            ("labels not a list", with(r#", "labels": {"os": "linux"}"#), "`labels` is an object, not an array"),
        ];
        for (name, json, expected) in cases {
            let error = parse_manifest(json.as_bytes()).expect_err(name);
            assert!(matches!(error, AciError::InvalidManifest(_)), "{name}");
            let message = error.to_string();
            assert!(
                message.starts_with("invalid image manifest: "),
                "{name}: {message}"
            );
            assert!(message.contains(expected), "{name}: {message}");
        }
    }

    #[test]
    fn null_and_empty_optional_fields_are_absent() {
        let manifest = parse_manifest(
            br#"{"acKind": "ImageManifest", "acVersion": "1.0.0-rc.1+build.5", "name": "app",
                "labels": null, "app": null, "dependencies": [], "pathWhitelist": null}"#,
        )
        .expect("null means absent");
        assert!(manifest.labels.is_empty() && manifest.app.is_none());
        assert!(manifest.dependencies.is_empty() && manifest.path_whitelist.is_empty());
    }

    #[test]
    fn semantic_versions() {
        for good in [
            "0.8.11",
            "1.0.0",
            "0.0.1",
            "0.0.0-alpha",
            "1.2.3-rc.1+build.007",
            "10.20.30-0a",
        ] {
            assert!(matches!(parse_semver(good), Some(SemVer::Valid)), "{good}");
        }
        assert!(matches!(parse_semver("0.0.0"), Some(SemVer::Zero)));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "v1.2.3",
            "01.2.3",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3+",
            "1.2.3-a..b",
            "1.2.x",
        ] {
            assert!(parse_semver(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        for good in [
            "2014-10-27T19:32:27Z",
            "2014-10-27T19:32:27.67021798Z",
            "2016-02-29T00:00:00+01:00",
            "2000-02-29T23:59:59-23:59",
        ] {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "",
            "2014-10-27",
            "2014-10-27 19:32:27Z",
            "2014-10-27t19:32:27Z",
            "2014-10-27T19:32:27",
            "2014-13-01T00:00:00Z",
            "2015-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2014-10-27T24:00:00Z",
            "2014-10-27T19:32:60Z",
            "2014-10-27T19:32:27.Z",
            "2014-10-27T19:32:27+0100",
            "2014-10-27T19:32:27+24:00",
            "2014-10-27T19:32:27Zjunk",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn checks_name_and_requested_labels() {
        let manifest = parse_manifest(MANIFEST.as_bytes()).expect("valid manifest");
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // (case, requested name, requested labels, expected error)
        type Case<'a> = (&'a str, &'a str, BTreeMap<String, String>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "exact",
                "example.com/app",
                labels(&[("version", "1.0.0"), ("os", "linux"), ("arch", "amd64")]),
                None,
            ),
            ("no labels requested", "example.com/app", labels(&[]), None),
            (
                "extra manifest labels are fine",
                "example.com/app",
                labels(&[("os", "linux")]),
                None,
            ),
            (
                "name",
                "example.com/other",
                labels(&[]),
                Some("manifest name is `example.com/app`, but `example.com/other` was requested"),
            ),
            (
                "prefix of the name",
                "example.com/ap",
                labels(&[]),
                Some("manifest name is `example.com/app`, but `example.com/ap` was requested"),
            ),
            (
                "different value",
                "example.com/app",
                labels(&[("version", "2.0.0")]),
                Some(
                    "requested label version=2.0.0 but the image has version=1.0.0; requested version=2.0.0, the image has arch=amd64,os=linux,version=1.0.0",
                ),
            ),
            (
                "missing label",
                "example.com/app",
                labels(&[("env", "prod"), ("os", "linux")]),
                Some(
                    "requested label env=prod but the image has no `env` label; requested env=prod,os=linux",
                ),
            ),
            (
                "latest is a real value",
                "example.com/app",
                labels(&[("version", "latest"), ("arch", "arm64")]),
                Some(
                    "requested label arch=arm64 but the image has arch=amd64; requested label version=latest but the image has version=1.0.0",
                ),
            ),
        ];
        for (name, wanted_name, wanted_labels, expected) in cases {
            let result = check_identity(&manifest, wanted_name, &wanted_labels);
            match (result, expected) {
                (Ok(()), None) => {}
                (Err(error), Some(expected)) => {
                    assert!(error.to_string().starts_with(expected), "{name}: {error}")
                }
                (result, expected) => panic!("{name}: got {result:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn ac_identifiers_follow_the_spec_regex() {
        for good in [
            "asdf",
            "zab_rab_oof",
            "my~database",
            "example.com/~bob/database",
            "sub-domain.example.com/org/product/~alice/release-1.0.0",
            "a",
            "0",
        ] {
            assert!(is_ac_identifier(good), "{good}");
        }
        for bad in [
            "",
            "BAR",
            "foo#",
            "EXAMPLE.com",
            "/app",
            "app/",
            "-app",
            "app.",
            "_app",
            "~app",
            "a//b",
            "a/../b",
            "a--b",
            "a b",
            "ä",
            "a/~",
            "a/~~b",
            "a/~/b",
            "a-~b",
        ] {
            assert!(!is_ac_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn maps_platforms_to_appc_names() {
        let cases = [
            (("linux", "amd64", None), ("linux", "amd64")),
            (("linux", "386", None), ("linux", "i386")),
            (("linux", "arm64", None), ("linux", "aarch64")),
            (("linux", "arm64", Some("v8")), ("linux", "aarch64")),
            (("linux", "arm", Some("v6")), ("linux", "armv6l")),
            (("linux", "arm", Some("v7")), ("linux", "armv7l")),
            (("linux", "arm", None), ("linux", "armv7l")),
            (("linux", "ppc64le", None), ("linux", "ppc64le")),
            (("linux", "s390x", None), ("linux", "s390x")),
            (("freebsd", "amd64", None), ("freebsd", "amd64")),
            (("freebsd", "386", None), ("freebsd", "i386")),
            (("freebsd", "arm", Some("v6")), ("freebsd", "arm")),
            (("darwin", "amd64", None), ("darwin", "x86_64")),
            (("darwin", "386", None), ("darwin", "i386")),
            // appc and uname spellings map to themselves.
            (("linux", "x86_64", None), ("linux", "amd64")),
            (("linux", "aarch64", None), ("linux", "aarch64")),
            (("linux", "i386", None), ("linux", "i386")),
            (("macos", "x86_64", None), ("darwin", "x86_64")),
            // No appc name: normalised, otherwise unchanged.
            (("linux", "riscv64", None), ("linux", "riscv64")),
            (("windows", "amd64", None), ("windows", "amd64")),
        ];
        for ((os, arch, variant), (appc_os, appc_arch)) in cases {
            assert_eq!(
                appc_os_arch(os, arch, variant),
                (appc_os.to_owned(), appc_arch.to_owned()),
                "{os}/{arch}/{variant:?}"
            );
        }
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(host_os_arch(), ("linux".to_owned(), "amd64".to_owned()));
        }
        if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
            assert_eq!(host_os_arch(), ("linux".to_owned(), "aarch64".to_owned()));
        }
    }

    #[test]
    fn image_ids_are_full_sha512() {
        // The SHA-512 of nothing: the ID of an empty tar stream.
        let id = format!("sha512-{}", hex::encode(sha2::Sha512::digest(b"")));
        assert_eq!(parse_image_id(&id).expect("computed ID"), id);
        for bad in [
            "sha512-".to_owned(),
            "sha512-abc".to_owned(),
            id.to_uppercase(),
            id.replace("sha512-", "sha256-"),
            id.replace("sha512-", "sha512:"),
            format!("{id}0"),
            id[..id.len() - 1].to_owned(),
        ] {
            let error = parse_image_id(&bad).expect_err(&bad);
            assert!(
                error.to_string().ends_with(
                    "is not an image ID: expected sha512- followed by 128 lowercase hex digits"
                ),
                "{error}"
            );
        }
    }
}
