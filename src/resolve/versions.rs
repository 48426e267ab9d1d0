//! Version policies at resolution time: list a repository's tags and pick the
//! one an entry's `semver` or `tag-pattern` allows (the rules are
//! [`crate::oci::tags`]'s). `lock` and `update` pin the chosen tag like a fixed
//! one; `outdated` reads the same listing to say what `update` would move to.
//!
//! Tags a registry lists are untrusted: one outside the tag grammar is skipped.

use anyhow::Context as _;

use crate::errors::hinted;
use crate::oci::reference::Reference;
use crate::oci::registry::{RegistryClient, RegistryError};
use crate::oci::tags::{self, TagPolicy};
use crate::project::manifest::{ImageSpec, Manifest};

/// How many version tags an error names when no tag matches.
const NEAREST_SHOWN: usize = 8;

/// The tags of `reference`'s repository that are valid tags, in the registry's order.
pub async fn list_tags(
    manifest: &Manifest,
    client: &RegistryClient,
    spec: &ImageSpec,
    reference: &Reference,
) -> anyhow::Result<Vec<String>> {
    let repo = super::repository(manifest, reference);
    let listed = client.list_tags(&repo).await.map_err(|e| {
        let unsupported = matches!(&e, RegistryError::Status { status, .. }
            if matches!(status.as_u16(), 404 | 405 | 501));
        let why = if unsupported {
            "the registry does not list this repository's tags (no such repository, or no tag list API)"
        } else {
            "listing them failed"
        };
        hinted(
            format!(
                "image `{}` ({}, {}): cannot list the repository's tags to choose one: {why}\n  {e}",
                spec.id,
                reference.repository(),
                spec.policy
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
            ),
            format!(
                "check the repository's name; where tags cannot be listed, pin one under [images.{}] (line {}): `docker = \"{}:TAG\"` without `semver` / `tag-pattern`",
                spec.id,
                spec.line,
                reference.repository()
            ),
        )
    })?;
    Ok(listed
        .into_iter()
        .filter(|t| crate::oci::reference::is_valid_tag(t))
        .collect())
}

/// The newest tag of `tags` that `policy` allows; the error names the nearest tags.
pub fn choose<'t>(
    spec: &ImageSpec,
    reference: &Reference,
    policy: &TagPolicy,
    tags: &'t [String],
) -> anyhow::Result<&'t str> {
    if let Some(tag) = policy.newest(tags) {
        return Ok(tag);
    }
    let versions = tags::newest_versions(tags, NEAREST_SHOWN);
    let has = if versions.is_empty() {
        let shown: Vec<&str> = tags
            .iter()
            .take(NEAREST_SHOWN)
            .map(String::as_str)
            .collect();
        match shown.is_empty() {
            true => "it has no tags".to_owned(),
            false => format!(
                "it has no version tags; its tags include {}",
                shown.join(", ")
            ),
        }
    } else {
        format!("its newest versions are {}", versions.join(", "))
    };
    Err(hinted(
        format!(
            "image `{}`: no tag of {} matches `{policy}` ({} listed; {has})",
            spec.id,
            reference.repository(),
            crate::text::plural(tags.len(), "tag"),
        ),
        format!(
            "change `{}` under [images.{}] (line {}) so that one of those tags matches (`imagelock outdated` lists what each entry allows); `semver` ignores pre-releases unless the requirement names one",
            policy.key(),
            spec.id,
            spec.line
        ),
    ))
}

/// `reference` with the tag `policy` chooses among the repository's tags.
pub async fn resolve_tag(
    manifest: &Manifest,
    client: &RegistryClient,
    spec: &ImageSpec,
    reference: &Reference,
    policy: &TagPolicy,
) -> anyhow::Result<Reference> {
    let listed = list_tags(manifest, client, spec, reference).await?;
    let tag = choose(spec, reference, policy, &listed)?;
    reference
        .with_tag(tag)
        .with_context(|| format!("image `{}`: the chosen tag", spec.id))
}
