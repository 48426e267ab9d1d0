//! Listing a repository's tags: `GET /v2/<name>/tags/list?n=N`, following the
//! `Link: <…>; rel="next"` header page by page (distribution's pagination), with
//! the registry's authentication.
//!
//! Bounded: at most [`MAX_TAG_PAGES`] pages and [`MAX_TAG_LIST_BYTES`] bytes in
//! all, so a registry with a huge (or endless) list cannot keep a `lock` busy or
//! exhaust memory. A `Link` may only lead to the same registry endpoint: the
//! request carries the registry's credentials.

use serde::Deserialize;

use super::limits::Transfer;
use super::{RegistryClient, RegistryError, Repository, env_number, header_str, read_capped};

/// Tags asked for per page (`?n=`); registries may send fewer, with a `Link` to the
/// next page. `IMAGELOCK_TAGS_PAGE_SIZE` overrides it (the tests page 2 at a time).
pub const TAGS_PAGE_SIZE: u64 = 1000;
/// Pages followed before giving up: 100 pages of 1,000 tags is beyond any repository
/// a version policy is useful for, and bounds a registry whose `Link`s never end.
pub const MAX_TAG_PAGES: usize = 100;
/// Bytes of tag list read over all pages: 16 MiB is some 300,000 typical tags.
pub const MAX_TAG_LIST_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RegistryClient {
    /// Every tag of `repo`, in the order the registry lists them, over all pages.
    pub async fn list_tags(&self, repo: &Repository) -> Result<Vec<String>, RegistryError> {
        let page_size = env_number("IMAGELOCK_TAGS_PAGE_SIZE")
            .ok()
            .flatten()
            .filter(|n| *n > 0)
            .unwrap_or(TAGS_PAGE_SIZE);
        let mut url = format!("{}/v2/{}/tags/list?n={page_size}", repo.base, repo.path);
        let mut tags = Vec::new();
        let mut budget = MAX_TAG_LIST_BYTES;
        for _ in 0..MAX_TAG_PAGES {
            let response = self
                .send(repo, Transfer::Document, &url, None, None)
                .await?;
            let next = header_str(response.headers(), "link").and_then(next_link);
            let bytes = read_capped(response, &url, budget)
                .await
                .map_err(|e| match e {
                    RegistryError::TooLarge { url, .. } => RegistryError::TooLarge {
                        url,
                        limit: MAX_TAG_LIST_BYTES,
                    },
                    other => other,
                })?;
            budget -= bytes.len() as u64;
            let page: TagPage =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Network {
                    url: url.clone(),
                    message: format!("the tag list is not the JSON of the distribution API: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            let Some(next) = next else {
                return Ok(tags);
            };
            url = same_endpoint(repo, &url, &next)?;
        }
        Err(RegistryError::TooManyPages {
            url,
            pages: MAX_TAG_PAGES,
        })
    }
}

/// The target of a `Link` header's `rel="next"` entry.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let (target, params) = entry.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .strip_prefix("rel=")
                .is_some_and(|rel| rel.trim_matches('"') == "next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

/// `next` resolved against the page it came from; it must stay on the repository's endpoint.
fn same_endpoint(repo: &Repository, current: &str, next: &str) -> Result<String, RegistryError> {
    let refused = |why: &str| RegistryError::Network {
        url: current.to_owned(),
        message: format!("the tag list's next page `{next}` {why}"),
    };
    let base = reqwest::Url::parse(current).map_err(|_| refused("follows an invalid URL"))?;
    let joined = base.join(next).map_err(|_| refused("is not a valid URL"))?;
    if joined.origin() != base.origin() {
        return Err(refused(&format!(
            "leaves the registry {} (the request carries its credentials)",
            repo.base
        )));
    }
    Ok(joined.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let cases = [
            (
                r#"</v2/a/tags/list?last=b&n=2>; rel="next""#,
                Some("/v2/a/tags/list?last=b&n=2"),
            ),
            (
                r#"<https://x/first>; rel="first", </v2/a/tags/list?last=c>; rel=next"#,
                Some("/v2/a/tags/list?last=c"),
            ),
            (r#"</v2/a/tags/list?last=b>; rel="prev""#, None),
            ("garbage", None),
        ];
        for (header, want) in cases {
            assert_eq!(next_link(header).as_deref(), want, "{header}");
        }
    }

    #[test]
    fn a_next_page_stays_on_the_endpoint() {
        let repo = Repository {
            base: "http://127.0.0.1:5000".into(),
            path: "a".into(),
        };
        let current = "http://127.0.0.1:5000/v2/a/tags/list?n=2";
        assert_eq!(
            same_endpoint(&repo, current, "/v2/a/tags/list?last=b&n=2").expect("relative"),
            "http://127.0.0.1:5000/v2/a/tags/list?last=b&n=2"
        );
        assert!(same_endpoint(&repo, current, "http://evil.example/v2/a/tags/list").is_err());
        assert!(same_endpoint(&repo, current, "https://127.0.0.1:5000/v2/a").is_err());
    }
}
