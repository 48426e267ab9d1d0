//! The `identity` rule of a `[trust]` table in images.toml: how the `docker-reference` a
//! simple signature claims must match the image's reference (containers-policy.json
//! `signedIdentity`). This module is what images.toml may say and how it is read; what a rule
//! accepts is [`crate::signing::simple_signing::identity_matches`].

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::oci::reference::Reference;

/// The containers-policy.json `signedIdentity` rules imagelock supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IdentityRule {
    /// The signed reference equals a tagged intended reference, or names its repository when it is by digest (default).
    #[default]
    MatchRepoDigestOrExact,
    /// The signed reference equals the intended reference exactly.
    MatchExact,
    /// The signed reference names the intended repository; tags and digests are ignored.
    MatchRepository,
    /// Rewrites `prefix` in the intended reference to `signed_prefix`, then applies matchRepoDigestOrExact.
    RemapIdentity {
        /// A registry `host[:port]` or fully qualified repository namespace of the intended reference.
        prefix: String,
        /// What `prefix` is replaced with before comparing, e.g. the upstream a mirror copies.
        signed_prefix: String,
    },
}

impl IdentityRule {
    /// The containers-policy.json `type` of this rule.
    pub fn policy_name(&self) -> &'static str {
        match self {
            IdentityRule::MatchRepoDigestOrExact => "matchRepoDigestOrExact",
            IdentityRule::MatchExact => "matchExact",
            IdentityRule::MatchRepository => "matchRepository",
            IdentityRule::RemapIdentity { .. } => "remapIdentity",
        }
    }

    /// The rule named `name` when it takes no parameters; the error says what to write instead.
    fn from_plain_name(name: &str) -> Result<IdentityRule, String> {
        match name {
            "matchRepoDigestOrExact" => Ok(IdentityRule::MatchRepoDigestOrExact),
            "matchExact" => Ok(IdentityRule::MatchExact),
            "matchRepository" => Ok(IdentityRule::MatchRepository),
            "remapIdentity" => Err(format!(
                "the identity rule remapIdentity needs a prefix and a signed prefix; write {REMAP_EXAMPLE}"
            )),
            "exactReference" | "exactRepository" => Err(format!(
                "the identity rule `{name}` is not supported by imagelock; use {SUPPORTED_RULES}"
            )),
            _ => Err(format!(
                "unknown identity rule `{}`; use {SUPPORTED_RULES}",
                name.escape_debug()
            )),
        }
    }
}

/// The rules as users can write them, for error messages.
const SUPPORTED_RULES: &str =
    "matchRepoDigestOrExact (the default), matchExact, matchRepository or a remapIdentity table";
/// How a remapIdentity rule is written in images.toml.
const REMAP_EXAMPLE: &str = r#"{ type = "remapIdentity", prefix = "HOST[:PORT][/NAMESPACE]", signed-prefix = "HOST[:PORT][/NAMESPACE]" }"#;

impl fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.policy_name())
    }
}

/// Checks a remapIdentity `prefix` or `signed-prefix`: a registry `host[:port]` or a fully
/// qualified repository namespace (containers/image `validateIdentityRemappingPrefix`, except
/// that names without a registry, which could never match, are refused outright).
fn check_remap_prefix(key: &str, value: &str) -> Result<(), String> {
    // Two more components make any valid prefix a multi-component name that normalisation
    // leaves alone (no `library/`, no default registry), so it must come back unchanged.
    let probe = format!("{value}/x/y");
    let valid = Reference::parse(&probe).is_ok_and(|parsed| parsed.repository() == probe);
    if valid {
        return Ok(());
    }
    Err(format!(
        "remapIdentity `{key}` is `{}`; it must be a registry such as `registry.example.com:5000` or a fully qualified repository name such as `docker.io/library` (no tag or digest)",
        value.escape_debug()
    ))
}

impl<'de> Deserialize<'de> for IdentityRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IdentityRule, D::Error> {
        deserializer.deserialize_any(IdentityRuleVisitor)
    }
}

/// Reads `"matchExact"` etc., or a table `{ type = "...", prefix = "...", signed-prefix = "..." }`.
struct IdentityRuleVisitor;

impl<'de> Visitor<'de> for IdentityRuleVisitor {
    type Value = IdentityRule;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an identity rule: {SUPPORTED_RULES}")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<IdentityRule, E> {
        IdentityRule::from_plain_name(name).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdentityRule, A::Error> {
        const FIELDS: &[&str] = &["type", "prefix", "signed-prefix"];
        let (mut kind, mut prefix, mut signed_prefix) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            let (field, slot): (&'static str, &mut Option<String>) = match key.as_str() {
                "type" => ("type", &mut kind),
                "prefix" => ("prefix", &mut prefix),
                "signed-prefix" => ("signed-prefix", &mut signed_prefix),
                _ => return Err(de::Error::unknown_field(&key, FIELDS)),
            };
            if slot.is_some() {
                return Err(de::Error::duplicate_field(field));
            }
            *slot = Some(map.next_value::<String>()?);
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        match (kind.as_str(), prefix, signed_prefix) {
            ("remapIdentity", Some(prefix), Some(signed_prefix)) => {
                check_remap_prefix("prefix", &prefix).map_err(de::Error::custom)?;
                check_remap_prefix("signed-prefix", &signed_prefix).map_err(de::Error::custom)?;
                Ok(IdentityRule::RemapIdentity {
                    prefix,
                    signed_prefix,
                })
            }
            ("remapIdentity", None, _) => Err(de::Error::missing_field("prefix")),
            ("remapIdentity", _, None) => Err(de::Error::missing_field("signed-prefix")),
            (name, None, None) => IdentityRule::from_plain_name(name).map_err(de::Error::custom),
            (name, _, _) => Err(de::Error::custom(format!(
                "`prefix` and `signed-prefix` belong to remapIdentity, not to `{}`",
                name.escape_debug()
            ))),
        }
    }
}

impl schemars::JsonSchema for IdentityRule {
    fn schema_name() -> Cow<'static, str> {
        "IdentityRule".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "How a simple signature's docker-reference must match the image reference (containers-policy.json signedIdentity). Default: matchRepoDigestOrExact.",
            "oneOf": [
                {
                    "type": "string",
                    "enum": ["matchRepoDigestOrExact", "matchExact", "matchRepository"]
                },
                {
                    "type": "object",
                    "properties": {
                        "type": { "type": "string", "enum": ["matchRepoDigestOrExact", "matchExact", "matchRepository"] }
                    },
                    "required": ["type"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "properties": {
                        "type": { "const": "remapIdentity" },
                        "prefix": { "type": "string", "description": "Registry host[:port] or fully qualified repository name of the image reference." },
                        "signed-prefix": { "type": "string", "description": "What prefix is replaced with before comparing with the signed reference." }
                    },
                    "required": ["type", "prefix", "signed-prefix"],
                    "additionalProperties": false
                }
            ]
        })
    }
}
