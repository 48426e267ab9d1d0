//! Simple signing ("atomic container signature", specs/oci.md §5): what a signature claims and
//! whether that claim fits the image being locked.
//!
//! Invariant: every payload handed to this module has already been verified cryptographically
//! with a trusted key (the caller does that with [`crate::signing::openpgp::Keyring::verify_message`] and
//! passes only the literal data it releases). Even so, the payload is parsed as strictly as
//! containers/image parses it (`signature/simple.go`, `ParanoidUnmarshalJSONObject`): exact key
//! sets, no duplicate keys, no trailing data, only sha256/sha512 digests. A claim is then accepted
//! for one manifest only if its digest equals the manifest's digest and its `docker-reference`
//! satisfies the configured containers-policy.json `signedIdentity` rule (§5.4).
//!
//! The payload format (what Debian skopeo 1.9.3 writes, keys sorted, no trailing newline):
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"127.0.0.1:5123/test/img:v1"},
//!              "image":{"docker-manifest-digest":"sha256:…"},
//!              "type":"atomic container signature"},
//!  "optional":{"creator":"atomic 5.23.1","timestamp":1795393280}}
//! ```
//!
//! Everything here is a pure function over bytes and strings; nothing does I/O.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::digest::{Digest, DigestError};
use crate::oci::reference::{self, Reference, ReferenceError};

/// The only `critical.type` containers/image accepts.
const SIGNATURE_TYPE: &str = "atomic container signature";

/// The claim inside an "atomic container signature".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `critical.image.docker-manifest-digest`: the manifest the signer vouches for.
    pub manifest_digest: Digest,
    /// `critical.identity.docker-reference`, verbatim: the reference the signer vouches for.
    pub docker_reference: String,
    /// `optional.creator`, e.g. `atomic 5.23.1`; informational only.
    pub creator: Option<String>,
    /// `optional.timestamp` in seconds since the Unix epoch; informational only.
    pub timestamp: Option<i64>,
}

/// Why a verified payload is not an acceptable signature for an image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimError {
    /// The payload is not JSON of the required shape; the text starts with the JSON path.
    #[error("malformed simple-signing payload: {0}")]
    Malformed(String),
    /// `critical.type` is a string other than `atomic container signature`.
    #[error(
        "the signed payload has critical.type `{0}`, not `atomic container signature`, so it is not a simple-signing signature"
    )]
    WrongType(String),
    /// `critical.image.docker-manifest-digest` is malformed or uses an unsupported algorithm.
    #[error("malformed simple-signing payload: critical.image.docker-manifest-digest: {0}")]
    InvalidDigest(DigestError),
    /// The signature vouches for another manifest.
    #[error("the signature is for manifest {signed}, not {manifest}")]
    DigestMismatch {
        /// The digest the signature names.
        signed: Digest,
        /// The digest of the manifest being verified.
        manifest: Digest,
    },
    /// The signed `docker-reference` is not a valid image reference.
    #[error("the signature's identity `{}` is not a valid image reference", signed.escape_debug())]
    InvalidSignedReference {
        /// The signed reference as written.
        signed: String,
        /// Why it does not parse.
        source: ReferenceError,
    },
    /// The signed reference names neither tag nor digest, which the identity rule requires.
    #[error(
        "the signature is for {signed}, which names no tag or digest (identity rule {rule} requires one)"
    )]
    SignedReferenceNameOnly {
        /// The signed reference as written.
        signed: String,
        /// The identity rule's policy name.
        rule: String,
    },
    /// The signed reference does not match the intended one under the identity rule.
    #[error("the signature is for {signed}, not {intended} (identity rule {rule})")]
    IdentityMismatch {
        /// The signed reference as written.
        signed: String,
        /// The canonical reference it was compared with (after any remapping).
        intended: String,
        /// The identity rule's policy name.
        rule: String,
    },
    /// remapIdentity rewrote the intended reference into something that is not a canonical reference.
    #[error(
        "identity rule remapIdentity rewrites {intended} to `{rewritten}`, which is not a canonical image reference"
    )]
    RemapInvalid {
        /// The intended reference, canonical.
        intended: String,
        /// The rewritten string.
        rewritten: String,
    },
}

impl ClaimError {
    /// What the user can do about this error, for the binary's `hint:` line.
    pub fn hint(&self) -> &'static str {
        match self {
            ClaimError::Malformed(_)
            | ClaimError::WrongType(_)
            | ClaimError::InvalidDigest(_)
            | ClaimError::InvalidSignedReference { .. } => {
                "a trusted key signed something that is not a containers/image simple signing payload; re-sign the image with `skopeo copy --sign-by KEY` or `skopeo standalone-sign`"
            }
            ClaimError::DigestMismatch { .. } => {
                "the signature belongs to another manifest; sign the image version being locked, or remove the stale signature from the lookaside store"
            }
            ClaimError::SignedReferenceNameOnly { .. } | ClaimError::IdentityMismatch { .. } => {
                "re-sign the image for the reference being locked (`skopeo copy --sign-by KEY --sign-identity REF`), or set the `identity` rule of the matching [trust] entry to one that fits how the image is signed"
            }
            ClaimError::RemapInvalid { .. } => {
                "fix `prefix` / `signed-prefix` of the remapIdentity rule so the rewritten name is a fully qualified repository"
            }
        }
    }
}

/// Parses a verified payload strictly, as containers/image does (specs/oci.md §5.1).
///
/// Rejects anything but an object with exactly `critical` and `optional`; `critical` with
/// exactly `type`, `image`, `identity`; `image` with exactly a string `docker-manifest-digest`
/// (sha256 or sha512); `identity` with exactly a string `docker-reference`. `optional` may hold
/// any keys, but `creator` must be a string and `timestamp` a whole number in int64 range (like
/// containers/image, `1.0e9` is accepted as a whole number). Duplicate keys are rejected at
/// every depth and nothing but whitespace may follow the object.
///
/// `docker-reference` is not parsed here; [`identity_matches`] does that, as containers/image does.
pub fn parse_claim(payload: &[u8]) -> Result<Claim, ClaimError> {
    let document = parse_json_without_duplicates(payload)?;
    let [critical, optional] = exact_fields(&document, "", ["critical", "optional"])?;

    let [kind, image, identity] =
        exact_fields(critical, "critical", ["type", "image", "identity"])?;
    let kind = string(kind, "critical.type")?;
    if kind != SIGNATURE_TYPE {
        return Err(ClaimError::WrongType(kind.escape_debug().to_string()));
    }
    let [digest] = exact_fields(image, "critical.image", ["docker-manifest-digest"])?;
    let manifest_digest = string(digest, "critical.image.docker-manifest-digest")?
        .parse::<Digest>()
        .map_err(ClaimError::InvalidDigest)?;
    let [docker_reference] = exact_fields(identity, "critical.identity", ["docker-reference"])?;
    let docker_reference = string(docker_reference, "critical.identity.docker-reference")?;

    let optional = object(optional, "optional")?;
    let creator = optional
        .get("creator")
        .map(|creator| string(creator, "optional.creator").map(str::to_owned))
        .transpose()?;
    let timestamp = optional.get("timestamp").map(timestamp).transpose()?;

    Ok(Claim {
        manifest_digest,
        docker_reference: docker_reference.to_owned(),
        creator,
        timestamp,
    })
}

use crate::project::identity::IdentityRule;

/// Decides whether a signature for `signed` is acceptable for `intended` under `rule`, with the
/// semantics of containers/image `policy_reference_match.go` (specs/oci.md §5.4).
///
/// `intended` is the reference being locked as the user wrote it (normalised), NOT with the
/// locked digest appended: as in containers/image, a reference with both tag and digest only
/// matches a signature naming that exact tag and digest. `signed` is parsed like
/// `ParseNormalizedNamed`, so familiar forms such as `busybox:1.36` are accepted, but no tag is
/// defaulted: rules other than matchRepository reject a signed reference without tag or digest.
///
/// remapIdentity applies only when the intended repository name equals `prefix` or continues it
/// with `/`; otherwise the intended reference is compared unchanged (as containers/image does).
pub fn identity_matches(
    rule: &IdentityRule,
    intended: &Reference,
    signed: &str,
) -> Result<(), ClaimError> {
    let signed_reference =
        Reference::parse(signed).map_err(|source| ClaimError::InvalidSignedReference {
            signed: signed.to_owned(),
            source,
        })?;
    let signed = SignedIdentity {
        written: signed,
        reference: signed_reference,
        name_only: reference::is_name_only(signed),
        rule,
    };
    match rule {
        IdentityRule::MatchExact => {
            signed.require_tag_or_digest()?;
            signed.require(
                signed.reference.to_string() == intended.to_string(),
                intended,
            )
        }
        IdentityRule::MatchRepoDigestOrExact => signed.match_repo_digest_or_exact(intended),
        IdentityRule::MatchRepository => signed.require(
            signed.reference.repository() == intended.repository(),
            intended,
        ),
        IdentityRule::RemapIdentity {
            prefix,
            signed_prefix,
        } => match remap(intended, prefix, signed_prefix)? {
            Some(remapped) => signed.match_repo_digest_or_exact(&remapped),
            None => signed.match_repo_digest_or_exact(intended),
        },
    }
}

/// Accepts a verified payload as a signature of the manifest `manifest_digest` for `intended`.
///
/// Parses with [`parse_claim`], then checks the digest (first, as containers/image does) and the
/// identity with [`identity_matches`]. The digests must be equal, algorithm included: a claim
/// naming a sha512 digest does not match a manifest identified by its sha256 digest.
pub fn accept(
    payload: &[u8],
    manifest_digest: &Digest,
    intended: &Reference,
    rule: &IdentityRule,
) -> Result<Claim, ClaimError> {
    let claim = parse_claim(payload)?;
    if claim.manifest_digest != *manifest_digest {
        return Err(ClaimError::DigestMismatch {
            signed: claim.manifest_digest,
            manifest: manifest_digest.clone(),
        });
    }
    identity_matches(rule, intended, &claim.docker_reference)?;
    Ok(claim)
}

/// The lookaside URL of signature number `n` (1-based) of a manifest (specs/oci.md §5.3a).
///
/// `<base>/<repository path without host>@<alg>=<hex>/signature-<n>`, e.g.
/// `https://sigs.example/library/busybox@sha256=<hex>/signature-1`. One trailing `/` of `base`
/// is dropped (containers/image would produce `//` there); `file:///` stays a valid root.
pub fn lookaside_url(
    base: &str,
    reference: &Reference,
    manifest_digest: &Digest,
    n: usize,
) -> String {
    debug_assert!(n >= 1, "signature numbers start at 1");
    let base = base.strip_suffix('/').unwrap_or(base);
    format!(
        "{base}/{}@{}={}/signature-{n}",
        reference.path(),
        manifest_digest.algorithm().as_str(),
        manifest_digest.hex()
    )
}

/// A parsed signed identity and the rule it is judged by.
struct SignedIdentity<'a> {
    /// The reference as the signature wrote it.
    written: &'a str,
    /// The same, normalised (with `latest` defaulted when `name_only`).
    reference: Reference,
    /// Whether the signature wrote neither tag nor digest.
    name_only: bool,
    /// The rule being applied, for error messages.
    rule: &'a IdentityRule,
}

impl SignedIdentity<'_> {
    /// `matchRepoDigestOrExactReferenceValues`: a tagged intended reference (even with a digest
    /// too) needs string equality; a digest-only one needs the same repository, because the
    /// digest itself is checked against the manifest separately.
    fn match_repo_digest_or_exact(&self, intended: &Reference) -> Result<(), ClaimError> {
        self.require_tag_or_digest()?;
        let matches = if intended.tag().is_some() {
            self.reference.to_string() == intended.to_string()
        } else {
            self.reference.repository() == intended.repository()
        };
        self.require(matches, intended)
    }

    /// containers/image never defaults a signed reference's tag, so a bare name is refused.
    fn require_tag_or_digest(&self) -> Result<(), ClaimError> {
        if self.name_only {
            return Err(ClaimError::SignedReferenceNameOnly {
                signed: self.written.to_owned(),
                rule: self.rule.to_string(),
            });
        }
        Ok(())
    }

    /// `Ok` when `matches`, else the mismatch error naming `intended`.
    fn require(&self, matches: bool, intended: &Reference) -> Result<(), ClaimError> {
        if matches {
            return Ok(());
        }
        Err(ClaimError::IdentityMismatch {
            signed: self.written.to_owned(),
            intended: intended.to_string(),
            rule: self.rule.to_string(),
        })
    }
}

/// remapIdentity's rewrite: `Some` when `intended`'s repository name is `prefix` or lies under
/// `prefix/`. The first occurrence of `prefix` in the canonical string is replaced and the result
/// must parse back to exactly itself (containers/image `ParseNamed`).
fn remap(
    intended: &Reference,
    prefix: &str,
    signed_prefix: &str,
) -> Result<Option<Reference>, ClaimError> {
    let name = intended.repository();
    let applies = match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    };
    if !applies {
        return Ok(None);
    }
    let original = intended.to_string();
    let rewritten = original.replacen(prefix, signed_prefix, 1);
    match Reference::parse(&rewritten) {
        Ok(remapped) if remapped.to_string() == rewritten => Ok(Some(remapped)),
        _ => Err(ClaimError::RemapInvalid {
            intended: original,
            rewritten,
        }),
    }
}

/// Parses `payload` as one JSON value followed only by whitespace, refusing duplicate keys at
/// any depth (serde_json's own `Value` keeps the last duplicate silently).
fn parse_json_without_duplicates(payload: &[u8]) -> Result<Value, ClaimError> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let value = StrictValue { path: "" }
        .deserialize(&mut deserializer)
        .map_err(|e| ClaimError::Malformed(e.to_string()))?;
    deserializer.end().map_err(|e| {
        ClaimError::Malformed(format!("unexpected data after the JSON object ({e})"))
    })?;
    Ok(value)
}

/// Deserialises any JSON value like `serde_json::Value` but fails on a duplicate object key,
/// naming the JSON path of the object (`""` is the top level).
struct StrictValue<'p> {
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            E::custom(format!(
                "{}: {v} is not a finite number",
                location(self.path)
            ))
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(StrictValue { path: &path })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "{}: duplicate key {}",
                    location(self.path),
                    quoted(&key)
                )));
            }
            let path = child_path(self.path, &key);
            let value = map.next_value_seed(StrictValue { path: &path })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// The values of exactly the keys `names` of the object at `path`, in that order.
fn exact_fields<'v, const N: usize>(
    value: &'v Value,
    path: &str,
    names: [&str; N],
) -> Result<[&'v Value; N], ClaimError> {
    let object = object(value, path)?;
    if let Some(unknown) = object.keys().find(|key| !names.contains(&key.as_str())) {
        return Err(malformed(path, format!("unknown key {}", quoted(unknown))));
    }
    let mut values = [&Value::Null; N];
    for (slot, name) in values.iter_mut().zip(names) {
        *slot = object
            .get(name)
            .ok_or_else(|| malformed(path, format!("missing key `{name}`")))?;
    }
    Ok(values)
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, ClaimError> {
    value.as_object().ok_or_else(|| {
        malformed(
            path,
            format!("expected a JSON object, found {}", kind(value)),
        )
    })
}

fn string<'v>(value: &'v Value, path: &str) -> Result<&'v str, ClaimError> {
    value
        .as_str()
        .ok_or_else(|| malformed(path, format!("expected a string, found {}", kind(value))))
}

/// `optional.timestamp`: containers/image decodes it as a float64 and accepts it only when it
/// converts to an int64 exactly, so `1e3` is 1000 but `1.5` and `1e19` are refused.
fn timestamp(value: &Value) -> Result<i64, ClaimError> {
    const PATH: &str = "optional.timestamp";
    let Value::Number(number) = value else {
        return Err(malformed(
            PATH,
            format!("expected an integer, found {}", kind(value)),
        ));
    };
    if let Some(seconds) = number.as_i64() {
        return Ok(seconds);
    }
    // i64::MIN and 2^63 are exact in f64; the range is every f64 that fits an i64.
    let int64_range = (i64::MIN as f64)..(i64::MAX as f64);
    match number.as_f64() {
        Some(seconds) if seconds.fract() == 0.0 && int64_range.contains(&seconds) => {
            Ok(seconds as i64)
        }
        _ => Err(malformed(
            PATH,
            format!("{number} is not an integer in the int64 range"),
        )),
    }
}

fn malformed(path: &str, problem: String) -> ClaimError {
    ClaimError::Malformed(format!("{}: {problem}", location(path)))
}

/// A JSON path for messages; the empty path is the top level.
fn location(path: &str) -> &str {
    if path.is_empty() { "top level" } else { path }
}

/// The path of `key` inside the object at `parent`, with control characters escaped.
fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.escape_debug().to_string()
    } else {
        format!("{parent}.{}", key.escape_debug())
    }
}

/// A key in backquotes with control characters escaped, safe to print on a terminal.
fn quoted(key: &str) -> String {
    format!("`{}`", key.escape_debug())
}

/// What kind of JSON value `value` is, for "expected X, found Y" messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The exact 282 bytes Debian skopeo 1.9.3 signed (specs/oci.md §5.1).
    const SKOPEO_PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5123/test/img:v1"},"image":{"docker-manifest-digest":"sha256:10a3acc8a460da1cf219a79892de3d484d0c2b6e69d90420b7a51719f6a051c3"},"type":"atomic container signature"},"optional":{"creator":"atomic 5.23.1","timestamp":1795393280}}"#;
    const SKOPEO_DIGEST: &str =
        "sha256:10a3acc8a460da1cf219a79892de3d484d0c2b6e69d90420b7a51719f6a051c3";
    const OTHER_DIGEST: &str =
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const IMAGE: &str = r#"{"docker-manifest-digest":"sha256:10a3acc8a460da1cf219a79892de3d484d0c2b6e69d90420b7a51719f6a051c3"}"#;
    const IDENTITY: &str = r#"{"docker-reference":"127.0.0.1:5123/test/img:v1"}"#;
    const TYPE: &str = r#""atomic container signature""#;

    fn digest(text: &str) -> Digest {
        text.parse().expect("valid test digest")
    }

    fn reference(text: &str) -> Reference {
        Reference::parse(text).expect("valid test reference")
    }

    /// A payload with the given `critical` members (JSON text) and `optional` object.
    fn payload(kind: &str, image: &str, identity: &str, optional: &str) -> String {
        format!(
            r#"{{"critical":{{"type":{kind},"image":{image},"identity":{identity}}},"optional":{optional}}}"#
        )
    }

    fn with_optional(optional: &str) -> String {
        payload(TYPE, IMAGE, IDENTITY, optional)
    }

    fn with_critical(critical: &str) -> String {
        format!(r#"{{"critical":{critical},"optional":{{}}}}"#)
    }

    #[test]
    fn skopeo_payload_parses() {
        assert_eq!(SKOPEO_PAYLOAD.len(), 282);
        let claim = parse_claim(SKOPEO_PAYLOAD.as_bytes()).expect("skopeo's payload is valid");
        assert_eq!(
            claim,
            Claim {
                manifest_digest: digest(SKOPEO_DIGEST),
                docker_reference: "127.0.0.1:5123/test/img:v1".to_owned(),
                creator: Some("atomic 5.23.1".to_owned()),
                timestamp: Some(1795393280),
            }
        );
    }

    #[test]
    fn accepted_variations() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let cases: Vec<(String, Option<&str>, Option<i64>)> = vec![
            (with_optional("{}"), None, None),
            (
                with_optional(r#"{"extra":[1,{"a":null}],"x":true,"creator":"me"}"#),
                Some("me"),
                None,
            ),
            // Key order, whitespace and a trailing newline are irrelevant.
            (
                format!(
                    " {{ \"optional\" : {{ \"timestamp\" : -5 }} ,\n \"critical\" : {{ \"identity\" : {IDENTITY}, \"type\" : {TYPE}, \"image\" : {IMAGE} }} }}\n"
                ),
                None,
                Some(-5),
            ),
            // containers/image reads the timestamp as a float64 and accepts whole numbers.
            (
                with_optional(r#"{"timestamp":1795393280.0}"#),
                None,
                Some(1795393280),
            ),
            (with_optional(r#"{"timestamp":1e3}"#), None, Some(1000)),
            (
                with_optional(r#"{"timestamp":-9223372036854775808}"#),
                None,
                Some(i64::MIN),
            ),
            (
                payload(
                    TYPE,
                    &format!(r#"{{"docker-manifest-digest":"{sha512}"}}"#),
                    IDENTITY,
                    "{}",
                ),
                None,
                None,
            ),
        ];
        for (input, creator, timestamp) in cases {
            let claim = parse_claim(input.as_bytes())
                .unwrap_or_else(|e| panic!("{input} should parse: {e}"));
            assert_eq!(claim.creator.as_deref(), creator, "{input}");
            assert_eq!(claim.timestamp, timestamp, "{input}");
            assert_eq!(claim.docker_reference, "127.0.0.1:5123/test/img:v1");
        }
    }

    /// Which [`ClaimError`] variant a rejection produced.
    #[derive(Debug, PartialEq)]
    enum Kind {
        Malformed,
        WrongType,
        InvalidDigest,
    }

    #[test]
    fn strictness_rules_each_reject() {
        let image_digest = |d: &str| format!(r#"{{"docker-manifest-digest":{d}}}"#);
        let identity_ref = |r: &str| format!(r#"{{"docker-reference":{r}}}"#);
        let cases: Vec<(String, Kind, &str)> = vec![
            // Not an object at all.
            (String::new(), Kind::Malformed, "EOF while parsing"),
            ("   ".to_owned(), Kind::Malformed, "EOF while parsing"),
            (
                "[]".to_owned(),
                Kind::Malformed,
                "top level: expected a JSON object, found an array",
            ),
            (
                "null".to_owned(),
                Kind::Malformed,
                "top level: expected a JSON object, found null",
            ),
            (r#""x""#.to_owned(), Kind::Malformed, "found a string"),
            ("{".to_owned(), Kind::Malformed, "EOF while parsing"),
            // Trailing data.
            (
                format!("{SKOPEO_PAYLOAD} x"),
                Kind::Malformed,
                "unexpected data after the JSON object",
            ),
            (
                format!("{SKOPEO_PAYLOAD}{{}}"),
                Kind::Malformed,
                "unexpected data after the JSON object",
            ),
            (
                format!("{SKOPEO_PAYLOAD}\0"),
                Kind::Malformed,
                "unexpected data after the JSON object",
            ),
            // Top level: missing, extra, duplicate keys.
            (
                r#"{"optional":{}}"#.to_owned(),
                Kind::Malformed,
                "top level: missing key `critical`",
            ),
            (
                format!(
                    r#"{{"critical":{{"type":{TYPE},"image":{IMAGE},"identity":{IDENTITY}}}}}"#
                ),
                Kind::Malformed,
                "top level: missing key `optional`",
            ),
            (
                SKOPEO_PAYLOAD.replacen(r#"{"critical""#, r#"{"extra":1,"critical""#, 1),
                Kind::Malformed,
                "top level: unknown key `extra`",
            ),
            (
                SKOPEO_PAYLOAD.replacen(r#"{"critical""#, r#"{"critical":{},"critical""#, 1),
                Kind::Malformed,
                "top level: duplicate key `critical`",
            ),
            (
                with_optional(r#"{},"optional":{}"#),
                Kind::Malformed,
                "top level: duplicate key `optional`",
            ),
            // critical: not an object, missing, extra, duplicate keys.
            (
                with_critical("[]"),
                Kind::Malformed,
                "critical: expected a JSON object, found an array",
            ),
            (
                with_critical("null"),
                Kind::Malformed,
                "critical: expected a JSON object, found null",
            ),
            (
                with_critical(&format!(r#"{{"image":{IMAGE},"identity":{IDENTITY}}}"#)),
                Kind::Malformed,
                "critical: missing key `type`",
            ),
            (
                with_critical(&format!(r#"{{"type":{TYPE},"identity":{IDENTITY}}}"#)),
                Kind::Malformed,
                "critical: missing key `image`",
            ),
            (
                with_critical(&format!(r#"{{"type":{TYPE},"image":{IMAGE}}}"#)),
                Kind::Malformed,
                "critical: missing key `identity`",
            ),
            (
                with_critical(&format!(
                    r#"{{"type":{TYPE},"image":{IMAGE},"identity":{IDENTITY},"Type":{TYPE}}}"#
                )),
                Kind::Malformed,
                "critical: unknown key `Type`",
            ),
            (
                with_critical(&format!(
                    r#"{{"type":{TYPE},"type":{TYPE},"image":{IMAGE},"identity":{IDENTITY}}}"#
                )),
                Kind::Malformed,
                "critical: duplicate key `type`",
            ),
            // critical.type.
            (
                payload(r#""atomic container signature ""#, IMAGE, IDENTITY, "{}"),
                Kind::WrongType,
                "`atomic container signature `",
            ),
            (
                payload(r#""Atomic container signature""#, IMAGE, IDENTITY, "{}"),
                Kind::WrongType,
                "`Atomic container signature`",
            ),
            (
                payload(
                    r#""cosign container image signature""#,
                    IMAGE,
                    IDENTITY,
                    "{}",
                ),
                Kind::WrongType,
                "not a simple-signing signature",
            ),
            (
                payload("1", IMAGE, IDENTITY, "{}"),
                Kind::Malformed,
                "critical.type: expected a string, found a number",
            ),
            (
                payload("null", IMAGE, IDENTITY, "{}"),
                Kind::Malformed,
                "critical.type: expected a string, found null",
            ),
            // critical.image.
            (
                payload(TYPE, "{}", IDENTITY, "{}"),
                Kind::Malformed,
                "critical.image: missing key `docker-manifest-digest`",
            ),
            (
                payload(TYPE, r#""sha256:x""#, IDENTITY, "{}"),
                Kind::Malformed,
                "critical.image: expected a JSON object, found a string",
            ),
            (
                payload(
                    TYPE,
                    &IMAGE.replacen('}', r#","foo":1}"#, 1),
                    IDENTITY,
                    "{}",
                ),
                Kind::Malformed,
                "critical.image: unknown key `foo`",
            ),
            (
                payload(
                    TYPE,
                    &IMAGE.replacen(
                        '{',
                        &format!(r#"{{"docker-manifest-digest":"{OTHER_DIGEST}","#),
                        1,
                    ),
                    IDENTITY,
                    "{}",
                ),
                Kind::Malformed,
                "critical.image: duplicate key `docker-manifest-digest`",
            ),
            (
                payload(TYPE, &image_digest("1"), IDENTITY, "{}"),
                Kind::Malformed,
                "critical.image.docker-manifest-digest: expected a string, found a number",
            ),
            (
                payload(TYPE, &image_digest("null"), IDENTITY, "{}"),
                Kind::Malformed,
                "critical.image.docker-manifest-digest: expected a string, found null",
            ),
            (
                payload(TYPE, &image_digest(r#""""#), IDENTITY, "{}"),
                Kind::InvalidDigest,
                "is not a digest",
            ),
            (
                payload(TYPE, &image_digest(r#""sha256:abc""#), IDENTITY, "{}"),
                Kind::InvalidDigest,
                "invalid hex part",
            ),
            (
                payload(
                    TYPE,
                    &image_digest(&format!(
                        "\"{}\"",
                        SKOPEO_DIGEST.to_uppercase().replacen("SHA256", "sha256", 1)
                    )),
                    IDENTITY,
                    "{}",
                ),
                Kind::InvalidDigest,
                "invalid hex part",
            ),
            (
                payload(
                    TYPE,
                    &image_digest(&format!("\"sha384:{}\"", "ab".repeat(48))),
                    IDENTITY,
                    "{}",
                ),
                Kind::InvalidDigest,
                "unsupported algorithm",
            ),
            (
                payload(
                    TYPE,
                    &image_digest(&format!("\"md5:{}\"", "ab".repeat(16))),
                    IDENTITY,
                    "{}",
                ),
                Kind::InvalidDigest,
                "unsupported algorithm",
            ),
            // critical.identity.
            (
                payload(TYPE, IMAGE, "{}", "{}"),
                Kind::Malformed,
                "critical.identity: missing key `docker-reference`",
            ),
            (
                payload(TYPE, IMAGE, "[]", "{}"),
                Kind::Malformed,
                "critical.identity: expected a JSON object, found an array",
            ),
            (
                payload(
                    TYPE,
                    IMAGE,
                    &IDENTITY.replacen('}', r#","foo":"bar"}"#, 1),
                    "{}",
                ),
                Kind::Malformed,
                "critical.identity: unknown key `foo`",
            ),
            (
                payload(
                    TYPE,
                    IMAGE,
                    &IDENTITY.replacen('}', r#","docker-reference":"busybox:1"}"#, 1),
                    "{}",
                ),
                Kind::Malformed,
                "critical.identity: duplicate key `docker-reference`",
            ),
            (
                payload(TYPE, IMAGE, &identity_ref("5"), "{}"),
                Kind::Malformed,
                "critical.identity.docker-reference: expected a string, found a number",
            ),
            (
                payload(TYPE, IMAGE, &identity_ref("null"), "{}"),
                Kind::Malformed,
                "critical.identity.docker-reference: expected a string, found null",
            ),
            // optional.
            (
                with_optional("[]"),
                Kind::Malformed,
                "optional: expected a JSON object, found an array",
            ),
            (
                with_optional("null"),
                Kind::Malformed,
                "optional: expected a JSON object, found null",
            ),
            (
                with_optional(r#"{"creator":5}"#),
                Kind::Malformed,
                "optional.creator: expected a string, found a number",
            ),
            (
                with_optional(r#"{"creator":null}"#),
                Kind::Malformed,
                "optional.creator: expected a string, found null",
            ),
            (
                with_optional(r#"{"creator":["a"]}"#),
                Kind::Malformed,
                "optional.creator: expected a string, found an array",
            ),
            (
                with_optional(r#"{"timestamp":"1795393280"}"#),
                Kind::Malformed,
                "optional.timestamp: expected an integer, found a string",
            ),
            (
                with_optional(r#"{"timestamp":null}"#),
                Kind::Malformed,
                "optional.timestamp: expected an integer, found null",
            ),
            (
                with_optional(r#"{"timestamp":true}"#),
                Kind::Malformed,
                "optional.timestamp: expected an integer, found a boolean",
            ),
            (
                with_optional(r#"{"timestamp":1795393280.5}"#),
                Kind::Malformed,
                "optional.timestamp: 1795393280.5 is not an integer",
            ),
            (
                with_optional(r#"{"timestamp":9223372036854775808}"#),
                Kind::Malformed,
                "is not an integer in the int64 range",
            ),
            (
                with_optional(r#"{"timestamp":1e19}"#),
                Kind::Malformed,
                "is not an integer in the int64 range",
            ),
            (
                with_optional(r#"{"timestamp":1,"timestamp":1}"#),
                Kind::Malformed,
                "optional: duplicate key `timestamp`",
            ),
            (
                with_optional(r#"{"creator":"a","creator":"b"}"#),
                Kind::Malformed,
                "optional: duplicate key `creator`",
            ),
            // Duplicates are refused at any depth, even inside ignored optional values.
            (
                with_optional(r#"{"x":[{"a":1,"a":2}]}"#),
                Kind::Malformed,
                "optional.x[0]: duplicate key `a`",
            ),
            // Not JSON.
            (
                with_optional("{,}"),
                Kind::Malformed,
                "key must be a string",
            ),
            (
                with_optional(r#"{"timestamp":NaN}"#),
                Kind::Malformed,
                "expected value",
            ),
            ("\u{feff}{}".to_owned(), Kind::Malformed, "expected value"),
        ];
        for (input, expected_kind, expected_text) in cases {
            let error =
                parse_claim(input.as_bytes()).expect_err(&format!("{input:?} must be rejected"));
            let actual_kind = match &error {
                ClaimError::Malformed(_) => Kind::Malformed,
                ClaimError::WrongType(_) => Kind::WrongType,
                ClaimError::InvalidDigest(_) => Kind::InvalidDigest,
                other => panic!("{input:?}: unexpected error variant {other:?}"),
            };
            assert_eq!(actual_kind, expected_kind, "{input:?}: {error}");
            let message = error.to_string();
            assert!(
                message.contains(expected_text),
                "{input:?}: `{message}` should contain `{expected_text}`"
            );
        }
    }

    #[test]
    fn invalid_utf8_and_control_characters_are_handled() {
        let mut bytes = with_optional(r#"{"creator":"x"}"#).into_bytes();
        let at = bytes.iter().position(|&b| b == b'x').expect("x is present");
        bytes[at] = 0xff;
        assert!(matches!(parse_claim(&bytes), Err(ClaimError::Malformed(_))));

        let escaped = with_optional(r#"{"\u001b[31m":1,"\u001b[31m":2}"#);
        let error = parse_claim(escaped.as_bytes()).expect_err("duplicate key");
        assert!(!error.to_string().contains('\u{1b}'), "{error}");
        assert!(error.to_string().contains(r"`\u{1b}[31m`"), "{error}");
    }

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Expected outcome of an identity check.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Ok,
        Mismatch,
        NameOnly,
        BadSigned,
        BadRemap,
    }

    fn outcome(result: Result<(), ClaimError>) -> Outcome {
        match result {
            Ok(()) => Outcome::Ok,
            Err(ClaimError::IdentityMismatch { .. }) => Outcome::Mismatch,
            Err(ClaimError::SignedReferenceNameOnly { .. }) => Outcome::NameOnly,
            Err(ClaimError::InvalidSignedReference { .. }) => Outcome::BadSigned,
            Err(ClaimError::RemapInvalid { .. }) => Outcome::BadRemap,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    fn check_identity_table(rule: &IdentityRule, cases: &[(&str, &str, Outcome)]) {
        for (intended, signed, expected) in cases {
            let intended_ref = reference(intended);
            let result = identity_matches(rule, &intended_ref, signed);
            let shown = format!("{result:?}");
            assert_eq!(
                outcome(result),
                *expected,
                "{rule}: intended {intended}, signed {signed}: {shown}"
            );
        }
    }

    #[test]
    fn match_repo_digest_or_exact() {
        let by_digest = format!("127.0.0.1:5000/test/img@{SHA}");
        let other_digest = format!("127.0.0.1:5000/test/img@{SKOPEO_DIGEST}");
        let tag_and_digest = format!("127.0.0.1:5000/test/img:v1@{SHA}");
        let busybox_by_digest = format!("busybox@{SHA}");
        use Outcome::*;
        let cases: &[(&str, &str, Outcome)] = &[
            // Tagged intended reference: exact canonical equality.
            (
                "127.0.0.1:5000/test/img:v1",
                "127.0.0.1:5000/test/img:v1",
                Ok,
            ),
            (
                "127.0.0.1:5000/test/img:v2",
                "127.0.0.1:5000/test/img:v1",
                Mismatch,
            ),
            (
                "127.0.0.1:5000/test/img:v1",
                "127.0.0.1:5000/test/other:v1",
                Mismatch,
            ),
            (
                "127.0.0.1:5000/test/img:v1",
                "127.0.0.1:5001/test/img:v1",
                Mismatch,
            ),
            (
                "127.0.0.1:5000/test/img:v1",
                "127.0.0.1/test/img:v1",
                Mismatch,
            ),
            (
                "127.0.0.1:5000/test/img:v1",
                "localhost:5000/test/img:v1",
                Mismatch,
            ),
            ("127.0.0.1:5000/test/img:v1", &by_digest, Mismatch),
            ("127.0.0.1:5000/test/img:v1", &tag_and_digest, Mismatch),
            (
                "127.0.0.1:5000/test/img:v1",
                "127.0.0.1:5000/test/img",
                NameOnly,
            ),
            // Tag and digest intended: the signature must name both (containers/image NamedTagged).
            (&tag_and_digest, "127.0.0.1:5000/test/img:v1", Mismatch),
            (&tag_and_digest, &tag_and_digest, Ok),
            // By-digest intended reference: same repository, any tag or digest.
            (&by_digest, "127.0.0.1:5000/test/img:v1", Ok),
            (&by_digest, &by_digest, Ok),
            (&by_digest, &other_digest, Ok),
            (&by_digest, "127.0.0.1:5000/test/other:v1", Mismatch),
            (&by_digest, "127.0.0.1:5001/test/img:v1", Mismatch),
            (&by_digest, "127.0.0.1:5000/test/img", NameOnly),
            // Familiar forms are normalised on both sides; the signed one needs a tag.
            ("busybox", "docker.io/library/busybox:latest", Ok),
            ("busybox", "busybox:latest", Ok),
            ("busybox", "index.docker.io/library/busybox:latest", Ok),
            ("busybox", "busybox", NameOnly),
            ("busybox", "docker.io/library/busybox", NameOnly),
            ("busybox:1.36", "docker.io/library/busybox:1.36", Ok),
            ("busybox:1.36", "busybox:1.35", Mismatch),
            ("busybox:1.36", "docker.io/busybox/busybox:1.36", Mismatch),
            (&busybox_by_digest, "busybox:1.36", Ok),
            (&busybox_by_digest, "library/busybox:1.36", Ok),
            (&busybox_by_digest, "alpine:1.36", Mismatch),
            // A signed identity that is not a reference never matches.
            ("busybox:1.36", "", BadSigned),
            ("busybox:1.36", "Busybox:1.36", BadSigned),
            ("busybox:1.36", "busybox:1.36 ", BadSigned),
        ];
        check_identity_table(&IdentityRule::MatchRepoDigestOrExact, cases);
        check_identity_table(&IdentityRule::default(), cases);
    }

    #[test]
    fn match_exact() {
        let by_digest = format!("127.0.0.1:5000/test/img@{SHA}");
        let other_digest = format!("127.0.0.1:5000/test/img@{SKOPEO_DIGEST}");
        use Outcome::*;
        check_identity_table(
            &IdentityRule::MatchExact,
            &[
                (
                    "127.0.0.1:5000/test/img:v1",
                    "127.0.0.1:5000/test/img:v1",
                    Ok,
                ),
                (
                    "127.0.0.1:5000/test/img:v2",
                    "127.0.0.1:5000/test/img:v1",
                    Mismatch,
                ),
                (
                    "127.0.0.1:5000/test/img:v1",
                    "127.0.0.1:5000/test/img",
                    NameOnly,
                ),
                (
                    "127.0.0.1:5000/test/img:v1",
                    "127.0.0.1:5001/test/img:v1",
                    Mismatch,
                ),
                // Pulling by digest fails against a tag signature.
                (&by_digest, "127.0.0.1:5000/test/img:v1", Mismatch),
                (&by_digest, &by_digest, Ok),
                (&by_digest, &other_digest, Mismatch),
                ("busybox", "busybox:latest", Ok),
                ("busybox", "docker.io/library/busybox:latest", Ok),
                ("busybox", "busybox", NameOnly),
                ("busybox:1.36", "busybox:latest", Mismatch),
                ("busybox:1.36", "not a reference", BadSigned),
            ],
        );
    }

    #[test]
    fn match_repository() {
        let by_digest = format!("127.0.0.1:5000/test/img@{SHA}");
        use Outcome::*;
        check_identity_table(
            &IdentityRule::MatchRepository,
            &[
                (
                    "127.0.0.1:5000/test/img:v1",
                    "127.0.0.1:5000/test/img:v1",
                    Ok,
                ),
                (
                    "127.0.0.1:5000/test/img:v2",
                    "127.0.0.1:5000/test/img:v1",
                    Ok,
                ),
                ("127.0.0.1:5000/test/img:v1", "127.0.0.1:5000/test/img", Ok),
                ("127.0.0.1:5000/test/img:v1", &by_digest, Ok),
                (&by_digest, "127.0.0.1:5000/test/img:v9", Ok),
                (
                    "127.0.0.1:5000/test/img:v1",
                    "127.0.0.1:5000/test/other:v1",
                    Mismatch,
                ),
                (
                    "127.0.0.1:5000/test/img:v1",
                    "127.0.0.1:5000/test/img/sub:v1",
                    Mismatch,
                ),
                (
                    "127.0.0.1:5000/test/img:v1",
                    "127.0.0.1:5001/test/img:v1",
                    Mismatch,
                ),
                (
                    "127.0.0.1:5000/test/img:v1",
                    "127.0.0.1/test/img:v1",
                    Mismatch,
                ),
                ("busybox:1.36", "busybox", Ok),
                ("docker.io/library/busybox:1.36", "busybox:1.35", Ok),
                ("busybox:1.36", "docker.io/busybox/busybox:1.36", Mismatch),
                ("busybox:1.36", "@", BadSigned),
            ],
        );
    }

    fn remap_rule(prefix: &str, signed_prefix: &str) -> IdentityRule {
        IdentityRule::RemapIdentity {
            prefix: prefix.to_owned(),
            signed_prefix: signed_prefix.to_owned(),
        }
    }

    #[test]
    fn remap_identity() {
        use Outcome::*;
        let mirror = remap_rule("127.0.0.1:5000/mirror", "registry.example.com/upstream");
        let by_digest = format!("127.0.0.1:5000/mirror/img@{SHA}");
        check_identity_table(
            &mirror,
            &[
                // Hit: the intended name lies under the prefix.
                (
                    "127.0.0.1:5000/mirror/img:v1",
                    "registry.example.com/upstream/img:v1",
                    Ok,
                ),
                (
                    "127.0.0.1:5000/mirror/a/b:v1",
                    "registry.example.com/upstream/a/b:v1",
                    Ok,
                ),
                (
                    "127.0.0.1:5000/mirror:v1",
                    "registry.example.com/upstream:v1",
                    Ok,
                ),
                (
                    "127.0.0.1:5000/mirror/img:v1",
                    "127.0.0.1:5000/mirror/img:v1",
                    Mismatch,
                ),
                (
                    "127.0.0.1:5000/mirror/img:v1",
                    "registry.example.com/upstream/img:v2",
                    Mismatch,
                ),
                (
                    "127.0.0.1:5000/mirror/img:v1",
                    "registry.example.com/upstream/img",
                    NameOnly,
                ),
                (&by_digest, "registry.example.com/upstream/img:v9", Ok),
                (&by_digest, "127.0.0.1:5000/mirror/img:v9", Mismatch),
                // Miss: the prefix must end at a '/' boundary; then matchRepoDigestOrExact as is.
                (
                    "127.0.0.1:5000/mirrored/img:v1",
                    "127.0.0.1:5000/mirrored/img:v1",
                    Ok,
                ),
                (
                    "127.0.0.1:5000/mirrored/img:v1",
                    "registry.example.com/upstreamed/img:v1",
                    Mismatch,
                ),
                (
                    "127.0.0.1:5000/other/img:v1",
                    "127.0.0.1:5000/other/img:v1",
                    Ok,
                ),
                (
                    "127.0.0.1:5000/other/img:v1",
                    "registry.example.com/upstream/img:v1",
                    Mismatch,
                ),
                (
                    "127.0.0.1:5000/other/img:v1",
                    "127.0.0.1:5000/other/img",
                    NameOnly,
                ),
            ],
        );

        // A registry-only prefix, and a port-less prefix that does not match a port-qualified host.
        check_identity_table(
            &remap_rule("127.0.0.1:5000", "quay.io"),
            &[
                ("127.0.0.1:5000/a/b:v1", "quay.io/a/b:v1", Ok),
                ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1", Mismatch),
                ("127.0.0.1:5001/a/b:v1", "127.0.0.1:5001/a/b:v1", Ok),
            ],
        );
        check_identity_table(
            &remap_rule("127.0.0.1", "quay.io"),
            &[
                ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1", Ok),
                ("127.0.0.1:5000/a/b:v1", "quay.io/a/b:v1", Mismatch),
                ("127.0.0.1/a/b:v1", "quay.io/a/b:v1", Ok),
            ],
        );

        // Remapping onto Docker Hub: the rewritten string must be canonical.
        check_identity_table(
            &remap_rule("127.0.0.1:5000/hub", "docker.io/library"),
            &[
                ("127.0.0.1:5000/hub/busybox:1.36", "busybox:1.36", Ok),
                (
                    "127.0.0.1:5000/hub/busybox:1.36",
                    "docker.io/library/busybox:1.36",
                    Ok,
                ),
                ("127.0.0.1:5000/hub/busybox:1.36", "busybox:1.35", Mismatch),
            ],
        );
        check_identity_table(
            &remap_rule("127.0.0.1:5000/hub", "docker.io"),
            &[("127.0.0.1:5000/hub/busybox:1.36", "busybox:1.36", BadRemap)],
        );
    }

    #[test]
    fn identity_errors_say_why() {
        let intended = reference("127.0.0.1:5000/test/img:v2");
        let error = identity_matches(
            &IdentityRule::MatchRepoDigestOrExact,
            &intended,
            "127.0.0.1:5000/test/img:v1",
        )
        .expect_err("other tag");
        assert_eq!(
            error.to_string(),
            "the signature is for 127.0.0.1:5000/test/img:v1, not 127.0.0.1:5000/test/img:v2 (identity rule matchRepoDigestOrExact)"
        );
        let error = identity_matches(
            &IdentityRule::MatchExact,
            &intended,
            "127.0.0.1:5000/test/img",
        )
        .expect_err("name only");
        assert_eq!(
            error.to_string(),
            "the signature is for 127.0.0.1:5000/test/img, which names no tag or digest (identity rule matchExact requires one)"
        );
        let mirror = reference("127.0.0.1:5000/mirror/img:v1");
        let error = identity_matches(
            &remap_rule("127.0.0.1:5000/mirror", "quay.io/up"),
            &mirror,
            "quay.io/up/img:v2",
        )
        .expect_err("remapped mismatch");
        assert_eq!(
            error,
            ClaimError::IdentityMismatch {
                signed: "quay.io/up/img:v2".to_owned(),
                intended: "quay.io/up/img:v1".to_owned(),
                rule: "remapIdentity".to_owned(),
            }
        );
        let error = identity_matches(&IdentityRule::MatchRepository, &intended, "a//b")
            .expect_err("invalid signed reference");
        assert!(error.to_string().contains("`a//b`"), "{error}");
        assert!(!error.hint().is_empty());
    }

    #[test]
    fn accept_checks_digest_then_identity() {
        let manifest = digest(SKOPEO_DIGEST);
        let intended = reference("127.0.0.1:5123/test/img:v1");
        let rule = IdentityRule::default();

        let claim = accept(SKOPEO_PAYLOAD.as_bytes(), &manifest, &intended, &rule)
            .expect("matching signature");
        assert_eq!(claim.docker_reference, "127.0.0.1:5123/test/img:v1");
        assert_eq!(claim.manifest_digest, manifest);

        let other = digest(OTHER_DIGEST);
        assert_eq!(
            accept(SKOPEO_PAYLOAD.as_bytes(), &other, &intended, &rule),
            Err(ClaimError::DigestMismatch {
                signed: manifest.clone(),
                manifest: other.clone(),
            })
        );
        // The digest is checked before the identity.
        let elsewhere = reference("127.0.0.1:5123/test/img:v2");
        assert!(matches!(
            accept(SKOPEO_PAYLOAD.as_bytes(), &other, &elsewhere, &rule),
            Err(ClaimError::DigestMismatch { .. })
        ));
        assert_eq!(
            accept(SKOPEO_PAYLOAD.as_bytes(), &manifest, &elsewhere, &rule),
            Err(ClaimError::IdentityMismatch {
                signed: "127.0.0.1:5123/test/img:v1".to_owned(),
                intended: "127.0.0.1:5123/test/img:v2".to_owned(),
                rule: "matchRepoDigestOrExact".to_owned(),
            })
        );
        // Another tag is fine when only the repository has to match.
        assert!(
            accept(
                SKOPEO_PAYLOAD.as_bytes(),
                &manifest,
                &elsewhere,
                &IdentityRule::MatchRepository
            )
            .is_ok()
        );
        // Same hash value under another algorithm name is another digest.
        let sha512_payload = payload(
            TYPE,
            &format!(
                r#"{{"docker-manifest-digest":"sha512:{}"}}"#,
                "ab".repeat(64)
            ),
            IDENTITY,
            "{}",
        );
        assert!(matches!(
            accept(sha512_payload.as_bytes(), &manifest, &intended, &rule),
            Err(ClaimError::DigestMismatch { .. })
        ));
        // Parse errors come first.
        assert!(matches!(
            accept(b"{}", &manifest, &intended, &rule),
            Err(ClaimError::Malformed(_))
        ));
        let message = accept(SKOPEO_PAYLOAD.as_bytes(), &other, &intended, &rule)
            .expect_err("mismatch")
            .to_string();
        assert_eq!(
            message,
            format!("the signature is for manifest {SKOPEO_DIGEST}, not {OTHER_DIGEST}")
        );
    }

    #[test]
    fn lookaside_urls() {
        let manifest = digest(SKOPEO_DIGEST);
        let hex = manifest.hex();
        let cases = [
            (
                "https://sigs.example.com/sigstore",
                "busybox",
                1,
                format!(
                    "https://sigs.example.com/sigstore/library/busybox@sha256={hex}/signature-1"
                ),
            ),
            (
                "https://sigs.example.com/sigstore/",
                "docker.io/library/busybox:1.36",
                2,
                format!(
                    "https://sigs.example.com/sigstore/library/busybox@sha256={hex}/signature-2"
                ),
            ),
            (
                "file:///var/lib/containers/sigstore",
                "127.0.0.1:5123/test/img:v1",
                10,
                format!("file:///var/lib/containers/sigstore/test/img@sha256={hex}/signature-10"),
            ),
            (
                "file:///",
                "127.0.0.1:5123/test/img:v1",
                1,
                format!("file:///test/img@sha256={hex}/signature-1"),
            ),
            (
                "http://127.0.0.1:8080",
                "localhost:5000/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                3,
                format!("http://127.0.0.1:8080/a/b/c@sha256={hex}/signature-3"),
            ),
        ];
        for (base, image, n, expected) in cases {
            assert_eq!(
                lookaside_url(base, &reference(image), &manifest, n),
                expected,
                "{base} {image}"
            );
        }
        let sha512 = digest(&format!("sha512:{}", "ab".repeat(64)));
        assert_eq!(
            lookaside_url("https://s", &reference("busybox"), &sha512, 1),
            format!(
                "https://s/library/busybox@sha512={}/signature-1",
                "ab".repeat(64)
            )
        );
    }

    /// A struct shaped like the manifest's `[trust."PREFIX"]` table.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Trust {
        #[serde(default)]
        identity: IdentityRule,
    }

    fn rule_from_toml(text: &str) -> Result<IdentityRule, String> {
        toml::from_str::<Trust>(text)
            .map(|t| t.identity)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn identity_rule_deserialises_from_toml() {
        let accepted = [
            ("", IdentityRule::MatchRepoDigestOrExact),
            (
                r#"identity = "matchRepoDigestOrExact""#,
                IdentityRule::MatchRepoDigestOrExact,
            ),
            (r#"identity = "matchExact""#, IdentityRule::MatchExact),
            (
                r#"identity = "matchRepository""#,
                IdentityRule::MatchRepository,
            ),
            (
                r#"identity = { type = "matchExact" }"#,
                IdentityRule::MatchExact,
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "127.0.0.1:5000/mirror", signed-prefix = "docker.io/library" }"#,
                remap_rule("127.0.0.1:5000/mirror", "docker.io/library"),
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "localhost:5000", signed-prefix = "quay.io" }"#,
                remap_rule("localhost:5000", "quay.io"),
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "mirror.example.com/hub", signed-prefix = "docker.io" }"#,
                remap_rule("mirror.example.com/hub", "docker.io"),
            ),
        ];
        for (text, expected) in accepted {
            assert_eq!(rule_from_toml(text), Ok(expected), "{text}");
        }
        let rejected = [
            (
                r#"identity = "matchexact""#,
                "unknown identity rule `matchexact`",
            ),
            (
                r#"identity = "exactReference""#,
                "`exactReference` is not supported",
            ),
            (
                r#"identity = "remapIdentity""#,
                "needs a prefix and a signed prefix",
            ),
            ("identity = 1", "an identity rule"),
            (
                r#"identity = { prefix = "quay.io", signed-prefix = "quay.io" }"#,
                "missing field `type`",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "quay.io" }"#,
                "missing field `signed-prefix`",
            ),
            (
                r#"identity = { type = "remapIdentity", signed-prefix = "quay.io" }"#,
                "missing field `prefix`",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "quay.io", signed_prefix = "quay.io" }"#,
                "unknown field `signed_prefix`",
            ),
            (
                r#"identity = { type = "matchExact", prefix = "quay.io" }"#,
                "belong to remapIdentity, not to `matchExact`",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "library", signed-prefix = "quay.io" }"#,
                "remapIdentity `prefix` is `library`",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "index.docker.io", signed-prefix = "quay.io" }"#,
                "remapIdentity `prefix` is `index.docker.io`",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "quay.io", signed-prefix = "busybox/x" }"#,
                "remapIdentity `signed-prefix` is `busybox/x`",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "quay.io/a:v1", signed-prefix = "quay.io" }"#,
                "remapIdentity `prefix` is `quay.io/a:v1`",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "", signed-prefix = "quay.io" }"#,
                "remapIdentity `prefix` is ``",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "quay.io/", signed-prefix = "quay.io" }"#,
                "remapIdentity `prefix` is `quay.io/`",
            ),
            (
                r#"identity = { type = "remapIdentity", prefix = "quay.io", signed-prefix = "quay.io", prefix = "x.io" }"#,
                "duplicate key",
            ),
        ];
        for (text, expected) in rejected {
            let error = rule_from_toml(text).expect_err(text);
            assert!(
                error.contains(expected),
                "{text}: `{error}` should contain `{expected}`"
            );
        }
    }

    #[test]
    fn identity_rule_deserialises_from_json_and_displays_its_name() {
        for rule in [
            IdentityRule::MatchRepoDigestOrExact,
            IdentityRule::MatchExact,
            IdentityRule::MatchRepository,
        ] {
            let name = rule.to_string();
            assert_eq!(
                serde_json::from_value::<IdentityRule>(Value::String(name.clone())).ok(),
                Some(rule.clone())
            );
            let table = serde_json::json!({ "type": name });
            assert_eq!(
                serde_json::from_value::<IdentityRule>(table).ok(),
                Some(rule)
            );
        }
        let remap = serde_json::json!({ "type": "remapIdentity", "prefix": "a.io", "signed-prefix": "b.io/x" });
        let rule = serde_json::from_value::<IdentityRule>(remap).expect("valid remap");
        assert_eq!(rule, remap_rule("a.io", "b.io/x"));
        assert_eq!(rule.to_string(), "remapIdentity");
        assert_eq!(
            IdentityRule::default().to_string(),
            "matchRepoDigestOrExact"
        );
    }

    #[test]
    fn identity_rule_schema_lists_every_form() {
        let schema =
            serde_json::to_value(schemars::schema_for!(IdentityRule)).expect("schema serialises");
        let forms = schema["oneOf"].as_array().expect("oneOf");
        assert_eq!(forms.len(), 3);
        let text = schema.to_string();
        for name in [
            "matchRepoDigestOrExact",
            "matchExact",
            "matchRepository",
            "remapIdentity",
            "signed-prefix",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
    }
}
