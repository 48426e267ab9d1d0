//! Version policies over a repository's tags: which tags an entry's `semver` or
//! `tag-pattern` allows, and which of them is the newest.
//!
//! Pure functions over tag names (the listing itself is
//! [`crate::oci::registry::RegistryClient::list_tags`]). The rules:
//!
//! - A tag is a *version* when it parses as a full semver version
//!   (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`), after dropping one leading `v`
//!   (`v1.2.3` is 1.2.3). `1.2`, `latest` or `3.20-alpine` are not versions.
//! - `semver = "REQ"` (cargo's requirement syntax, [`semver::VersionReq`])
//!   allows the versions REQ matches. Pre-releases only match when REQ names a
//!   pre-release of the same `MAJOR.MINOR.PATCH` (cargo's rule); tags that are
//!   not versions are never allowed. The newest is the highest version.
//! - `tag-pattern = 'RE'` allows the tags RE matches, searched as written
//!   ([`regex_lite::Regex::is_match`]: write `^…$` to match whole tags). The
//!   newest is the highest version among the allowed tags that are versions;
//!   when none is a version, the one the registry lists last.
//! - Two tags of the same version (`1.2.0` and `v1.2.0`) rank by name, so the
//!   choice never depends on the registry's order.
//!
//! Invariant: a [`TagPolicy`] is valid (its requirement parsed, its expression
//! compiled); its [`Display`](std::fmt::Display) form, `semver ^1.2` or
//! `tag-pattern ^3\.20\.\d+$`, is what the lock records as `policy`.

use std::fmt;

/// How an entry picks its tag among the repository's tags.
#[derive(Debug, Clone)]
pub enum TagPolicy {
    /// `semver = "REQ"`.
    Semver {
        /// The requirement as written.
        written: String,
        /// The parsed requirement.
        requirement: semver::VersionReq,
    },
    /// `tag-pattern = 'RE'`.
    Pattern {
        /// The expression as written.
        written: String,
        /// The compiled expression.
        regex: regex_lite::Regex,
    },
}

impl fmt::Display for TagPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key(), self.written())
    }
}

impl TagPolicy {
    /// A `semver` policy; the error says what is wrong with the requirement.
    pub fn semver(written: &str) -> Result<TagPolicy, String> {
        let requirement = semver::VersionReq::parse(written.trim()).map_err(|e| {
            format!(
                "`{written}` is not a semver requirement ({e}); write e.g. \"^1.4\", \"~1.4.2\" or \">=1.2, <2\""
            )
        })?;
        Ok(TagPolicy::Semver {
            written: written.to_owned(),
            requirement,
        })
    }

    /// A `tag-pattern` policy; the error says what is wrong with the expression.
    pub fn pattern(written: &str) -> Result<TagPolicy, String> {
        if written.trim().is_empty() {
            return Err(
                "an empty pattern matches every tag; write the tags it may match, e.g. '^3\\.20\\.\\d+$'"
                    .to_owned(),
            );
        }
        let regex = regex_lite::Regex::new(written)
            .map_err(|e| format!("`{written}` is not a regular expression: {e}"))?;
        Ok(TagPolicy::Pattern {
            written: written.to_owned(),
            regex,
        })
    }

    /// The manifest key it was written under: `semver` or `tag-pattern`.
    pub fn key(&self) -> &'static str {
        match self {
            TagPolicy::Semver { .. } => "semver",
            TagPolicy::Pattern { .. } => "tag-pattern",
        }
    }

    /// The requirement or expression as written.
    pub fn written(&self) -> &str {
        match self {
            TagPolicy::Semver { written, .. } | TagPolicy::Pattern { written, .. } => written,
        }
    }

    /// Whether the policy allows `tag`.
    pub fn allows(&self, tag: &str) -> bool {
        match self {
            TagPolicy::Semver { requirement, .. } => {
                version_of(tag).is_some_and(|v| requirement.matches(&v))
            }
            TagPolicy::Pattern { regex, .. } => regex.is_match(tag),
        }
    }

    /// The newest tag of `tags` (in the registry's order) the policy allows.
    pub fn newest<'t>(&self, tags: &'t [String]) -> Option<&'t str> {
        let allowed: Vec<&'t str> = tags
            .iter()
            .map(String::as_str)
            .filter(|t| self.allows(t))
            .collect();
        newest_version(allowed.iter().copied()).or_else(|| match self {
            TagPolicy::Semver { .. } => None,
            TagPolicy::Pattern { .. } => allowed.last().copied(),
        })
    }
}

/// The version a tag names: the tag after one leading `v`, when that is a full semver version.
pub fn version_of(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// The tags among `tags` that name versions, each with its version, parsed once.
fn versions<'t>(
    tags: impl Iterator<Item = &'t str>,
) -> impl Iterator<Item = (semver::Version, &'t str)> {
    tags.filter_map(|t| Some((version_of(t)?, t)))
}

/// The tag naming the highest version among `tags`; ties (`1.2.0`, `v1.2.0`) by name.
pub fn newest_version<'t>(tags: impl Iterator<Item = &'t str>) -> Option<&'t str> {
    versions(tags).max().map(|(_, t)| t)
}

/// The newest release overall: the highest version among `tags` that is not a pre-release.
pub fn newest_release(tags: &[String]) -> Option<&str> {
    versions(tags.iter().map(String::as_str))
        .filter(|(v, _)| v.pre.is_empty())
        .max()
        .map(|(_, t)| t)
}

/// Up to `n` version tags, newest first, for an error that names what the repository has.
pub fn newest_versions(tags: &[String], n: usize) -> Vec<&str> {
    let mut found: Vec<(semver::Version, &str)> =
        versions(tags.iter().map(String::as_str)).collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().take(n).map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    const PUSHED: &[&str] = &[
        "1.10.0",
        "1.11.0-rc.1",
        "1.2.0",
        "1.3.0",
        "2.0.0",
        "latest",
        "nightly",
    ];

    #[test]
    fn semver_picks_the_highest_matching_release() {
        let cases = [
            ("^1.2", Some("1.10.0")),
            ("~1.2", Some("1.2.0")),
            // A bare version is a caret requirement, as in Cargo.toml.
            ("1.3", Some("1.10.0")),
            ("=1.3", Some("1.3.0")),
            (">=1.2, <2", Some("1.10.0")),
            ("*", Some("2.0.0")),
            ("^1.11.0-rc.1", Some("1.11.0-rc.1")),
            ("^3", None),
        ];
        for (requirement, want) in cases {
            let policy = TagPolicy::semver(requirement).expect(requirement);
            assert_eq!(policy.newest(&tags(PUSHED)), want, "{requirement}");
        }
    }

    #[test]
    fn a_leading_v_is_a_version_and_ties_break_by_name() {
        let policy = TagPolicy::semver("^1").expect("valid");
        assert_eq!(policy.newest(&tags(&["v1.9.0", "1.10.0"])), Some("1.10.0"));
        assert_eq!(policy.newest(&tags(&["v1.2.0", "1.2.0"])), Some("v1.2.0"));
        assert_eq!(policy.newest(&tags(&["1.2.0", "v1.2.0"])), Some("v1.2.0"));
        assert!(!policy.allows("1.2"));
        assert!(!policy.allows("vv1.2.0"));
    }

    #[test]
    fn patterns_are_searched_as_written_and_ranked_by_version() {
        let anchored = TagPolicy::pattern(r"^3\.20\.\d+$").expect("valid");
        let list = tags(&["3.20.10", "3.20.9", "3.20.1-alpine", "3.21.0", "x3.20.11"]);
        assert_eq!(anchored.newest(&list), Some("3.20.10"));
        let unanchored = TagPolicy::pattern(r"3\.20\.\d+").expect("valid");
        assert!(unanchored.allows("x3.20.11"));
        assert_eq!(unanchored.newest(&list), Some("3.20.10"));
        let alpine = TagPolicy::pattern(r"^3\.20\.\d+-alpine$").expect("valid");
        let list = tags(&["3.20.2-alpine", "3.20.10-alpine", "3.20.9-alpine"]);
        assert_eq!(alpine.newest(&list), Some("3.20.10-alpine"));
        // No allowed tag is a version: the registry's last.
        let words = TagPolicy::pattern(r"^stable-").expect("valid");
        let list = tags(&["stable-b", "stable-a", "edge"]);
        assert_eq!(words.newest(&list), Some("stable-a"));
    }

    #[test]
    fn invalid_policies_say_why() {
        assert!(TagPolicy::semver("not a version").is_err());
        assert!(TagPolicy::pattern("(").is_err());
        assert!(TagPolicy::pattern(" ").is_err());
        assert_eq!(
            TagPolicy::semver("^1.2").expect("valid").to_string(),
            "semver ^1.2"
        );
    }

    #[test]
    fn newest_release_and_the_nearest_versions() {
        let list = tags(PUSHED);
        assert_eq!(newest_release(&list), Some("2.0.0"));
        assert_eq!(
            newest_versions(&list, 3),
            vec!["2.0.0", "1.11.0-rc.1", "1.10.0"]
        );
    }
}
