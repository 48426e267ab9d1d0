//! The order ACIs are rendered in and which of their paths are kept (specs/appc.md §5):
//! pure functions over the lock's dependency graph and the images' pathWhitelists.
//!
//! Convention: rkt's reference renderer (`acirenderer`), *highest priority first, first
//! wins*. The list starts with the image asked for; each image's dependencies are inserted
//! right after it, which reverses sibling order: `A→[B,C], C→[D]` renders `[A, C, D, B]`,
//! the spec's override order `B, D, C, A` read backwards, so the results are the same. An
//! image reached twice (a diamond) is listed twice, with different ancestors.
//!
//! pathWhitelist: exact paths (no prefixes, no globs). An image's own whitelist filters its
//! files but never its directories; the whitelist of every image *above it on its path to
//! the root* filters all its entries, directories included (the intersection along the
//! ancestor path — the spec's intent, where rkt's code scans siblings too).

use std::collections::HashSet;

/// Most images in one render list: a diamond-heavy graph doubles at each level, and real
/// dependency trees have a handful of images.
pub const MAX_NODES: usize = 256;

/// One image in the render list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The lock entry ID.
    pub id: String,
    /// 0 for the image asked for, 1 for its dependencies, ...
    pub level: usize,
    /// Index in the list of the image that depends on this one.
    pub parent: Option<usize>,
}

/// The render list for `root`, highest priority first; `dependencies` gives an entry's
/// dependency IDs in manifest order (an error string when it cannot).
pub fn render_list(
    root: &str,
    dependencies: impl Fn(&str) -> Result<Vec<String>, String>,
) -> Result<Vec<Node>, String> {
    let mut list = vec![Node {
        id: root.to_owned(),
        level: 0,
        parent: None,
    }];
    let mut index = 0;
    while index < list.len() {
        let current = list[index].clone();
        // An image cannot be its own ancestor (the lock refuses cycles; a hand-edited one
        // must not loop).
        let mut ancestors = HashSet::new();
        let mut up = Some(index);
        while let Some(i) = up {
            ancestors.insert(list[i].id.clone());
            up = list[i].parent;
        }
        let deps = dependencies(&current.id)?;
        for dep in deps.iter() {
            if ancestors.contains(dep) {
                return Err(format!("dependency cycle through `{dep}` in the lock"));
            }
        }
        // Inserting each right after its dependent reverses their order.
        for dep in deps {
            list.insert(
                index + 1,
                Node {
                    id: dep,
                    level: current.level + 1,
                    parent: Some(index),
                },
            );
            // Later nodes moved one place down: fix their parents.
            for node in list.iter_mut().skip(index + 2) {
                if let Some(p) = node.parent.as_mut()
                    && *p > index
                {
                    *p += 1;
                }
            }
            if list.len() > MAX_NODES {
                return Err(format!(
                    "the dependency graph expands to more than {MAX_NODES} images"
                ));
            }
        }
        index += 1;
    }
    Ok(list)
}

/// A pathWhitelist as clean paths relative to the root (`/etc/x/` → `etc/x`).
pub fn whitelist(paths: &[String]) -> HashSet<Vec<u8>> {
    paths
        .iter()
        .filter_map(|p| crate::fsutil::tree::clean(p.trim_start_matches('/').as_bytes()).ok())
        .collect()
}

/// Whether an entry (clean relative path, is it a directory) of the image at `index` is
/// kept, given each list entry's whitelist (empty: no filtering).
pub fn keeps(
    list: &[Node],
    whitelists: &[HashSet<Vec<u8>>],
    index: usize,
    path: &[u8],
    is_dir: bool,
) -> bool {
    let own = &whitelists[index];
    if !is_dir && !own.is_empty() && !own.contains(path) {
        return false;
    }
    let mut up = list[index].parent;
    while let Some(i) = up {
        if !whitelists[i].is_empty() && !whitelists[i].contains(path) {
            return false;
        }
        up = list[i].parent;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> impl Fn(&str) -> Result<Vec<String>, String> {
        let edges: Vec<(String, Vec<String>)> = edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        move |id: &str| {
            Ok(edges
                .iter()
                .find(|(k, _)| k == id)
                .map(|(_, v)| v.clone())
                .unwrap_or_default())
        }
    }

    fn ids(list: &[Node]) -> Vec<(&str, usize)> {
        list.iter().map(|n| (n.id.as_str(), n.level)).collect()
    }

    #[test]
    fn reference_renderer_order() {
        // specs/appc.md §5.2: A→[B,C], C→[D] gives [A, C, D, B].
        let list = render_list("A", graph(&[("A", &["B", "C"]), ("C", &["D"])])).expect("ok");
        assert_eq!(ids(&list), [("A", 0), ("C", 1), ("D", 2), ("B", 1)]);
        assert_eq!(list[2].parent, Some(1));
        assert_eq!(list[3].parent, Some(0));
        // A diamond lists D twice, under each dependent.
        let list = render_list(
            "A",
            graph(&[("A", &["B", "C"]), ("B", &["D"]), ("C", &["D"])]),
        )
        .expect("ok");
        assert_eq!(
            ids(&list),
            [("A", 0), ("C", 1), ("D", 2), ("B", 1), ("D", 2)]
        );
        assert_eq!(list[2].parent, Some(1));
        assert_eq!(list[4].parent, Some(3));
        let cycle = render_list("A", graph(&[("A", &["B"]), ("B", &["A"])])).expect_err("cycle");
        assert!(cycle.contains("cycle"), "{cycle}");
    }

    #[test]
    fn whitelists_filter_own_files_and_all_lower_entries() {
        let list = render_list("A", graph(&[("A", &["B"])])).expect("ok");
        let wl = vec![
            whitelist(&["/bin/sh".into(), "/etc/".into()]),
            whitelist(&["/lib/x".into()]),
        ];
        // A's own whitelist: files filtered, directories never.
        assert!(keeps(&list, &wl, 0, b"bin/sh", false));
        assert!(!keeps(&list, &wl, 0, b"bin/ls", false));
        assert!(keeps(&list, &wl, 0, b"var", true));
        // B under A: its own list and A's, directories included for A's.
        assert!(!keeps(&list, &wl, 1, b"lib/x", false), "not in A's list");
        assert!(keeps(&list, &wl, 1, b"etc", true));
        assert!(
            !keeps(&list, &wl, 1, b"var", true),
            "A's list filters B's dirs"
        );
        // `/etc/` names the directory only, not what is in it.
        assert!(!keeps(&list, &wl, 0, b"etc/passwd", false));
    }
}
