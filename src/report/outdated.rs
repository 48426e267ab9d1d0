//! `outdated`'s report: per entry, the pinned tag, the newest tag its version
//! policy allows, the newest release overall, and whether a fixed tag moved.
//! Pure: the command gathers the facts (tag lists, a fixed tag's digest now),
//! this renders them as a table for people and rows for `--json`.

use serde::Serialize;

/// What `outdated` found for one manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutdatedRow {
    /// The entry's ID.
    pub id: String,
    /// `semver REQ`, `tag-pattern RE`, or `fixed` for a written tag or digest.
    pub policy: String,
    /// The tag (or `@digest`) the lock pins; `None` when the entry is not locked.
    pub pinned: Option<String>,
    /// The newest tag the policy allows now (policy entries).
    pub allowed: Option<String>,
    /// The newest release among the repository's tags (pre-releases left out).
    pub latest: Option<String>,
    /// For a fixed tag: whether it now points at another digest than the one pinned.
    pub digest_moved: Option<bool>,
    /// In words: `up to date`, `update available`, `digest moved`, `not locked`, ...
    pub status: String,
}

/// The table `outdated` prints: a header and one aligned row per entry.
pub fn outdated_table(rows: &[OutdatedRow]) -> Vec<String> {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let header = ["ID", "POLICY", "PINNED", "ALLOWED", "LATEST", "STATUS"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.policy.clone(),
                dash(&r.pinned),
                dash(&r.allowed),
                dash(&r.latest),
                r.status.clone(),
            ]
        })
        .collect();
    super::aligned(header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_aligned_with_dashes_for_unknowns() {
        let rows = [
            OutdatedRow {
                id: "app".into(),
                policy: "semver ^1.2".into(),
                pinned: Some("1.10.0".into()),
                allowed: Some("1.11.0".into()),
                latest: Some("2.0.0".into()),
                digest_moved: None,
                status: "update available".into(),
            },
            OutdatedRow {
                id: "hello".into(),
                policy: "fixed".into(),
                pinned: Some("1.0".into()),
                allowed: None,
                latest: None,
                digest_moved: None,
                status: "not checked (oci-layout)".into(),
            },
        ];
        assert_eq!(
            outdated_table(&rows),
            [
                "ID     POLICY       PINNED  ALLOWED  LATEST  STATUS",
                "app    semver ^1.2  1.10.0  1.11.0   2.0.0   update available",
                "hello  fixed        1.0     -        -       not checked (oci-layout)",
            ]
        );
    }
}
