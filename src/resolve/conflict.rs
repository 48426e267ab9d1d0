//! Recovering an `images.lock` that a git merge left with conflict markers.
//!
//! Git writes a conflicted hunk as `<<<<<<< ours`, (with diff3: `||||||| base`
//! and the base's lines), `=======`, `>>>>>>> theirs`. Taking the lines outside
//! the hunks plus one side's lines gives that side's file; each side is parsed
//! on its own, and where it parses, its pins are candidates.
//!
//! Invariant: a pin survives only when it was made from the manifest entry as
//! it is now (its `entry-hash` matches) and the sides do not disagree about it;
//! everything else is resolved again. So recovery never keeps a pin that a
//! fresh `imagelock lock` on either side would not have kept.

use std::collections::BTreeMap;
use std::path::Path;

use crate::project::lockfile::{Lock, LockedImage};
use crate::project::lockfile::{Marker, marker};
use crate::project::manifest::ImageSpec;

/// The two sides of a conflicted file: (ours, theirs). Lines outside the
/// hunks go to both; the merge base's lines to neither.
pub fn sides(text: &str) -> (String, String) {
    let mut ours = String::new();
    let mut theirs = String::new();
    let mut state = None;
    for line in text.split_inclusive('\n') {
        let without_newline = line.strip_suffix('\n').unwrap_or(line);
        match (marker(without_newline), state) {
            (Some(Marker::Ours), _) => state = Some(Marker::Ours),
            (Some(Marker::Base), Some(_)) => state = Some(Marker::Base),
            (Some(Marker::Theirs), Some(_)) => state = Some(Marker::Theirs),
            (Some(Marker::End), _) => state = None,
            (_, None) => {
                ours.push_str(line);
                theirs.push_str(line);
            }
            (_, Some(Marker::Ours)) => ours.push_str(line),
            (_, Some(Marker::Theirs)) => theirs.push_str(line),
            (_, Some(_)) => {}
        }
    }
    (ours, theirs)
}

/// What became of one manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both sides pinned it identically from the current entry: kept.
    Agreed,
    /// Only one side pinned it from the current entry: that pin is kept.
    OneSide(&'static str),
    /// Both sides pinned it from the current entry, differently: resolved again.
    Disagreed,
    /// No side pinned it from the current entry: resolved again.
    Unpinned,
}

/// The result of [`recover`].
#[derive(Debug)]
pub struct Recovered {
    /// The pins kept (with their dependency entries); the rest is to be resolved.
    pub lock: Lock,
    /// Per manifest entry ID, what happened to it.
    pub outcomes: BTreeMap<String, Outcome>,
    /// The sides that did not parse as a lock, with why (their pins are not used).
    pub unreadable: Vec<(&'static str, String)>,
}

impl Recovered {
    /// The IDs with `outcome`.
    pub fn ids(&self, wanted: impl Fn(&Outcome) -> bool) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|(_, o)| wanted(o))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Builds the lock to start from when `text` (the lock at `path`) is
/// conflicted, from the two sides split at its markers (see [`recover_sides`]).
///
/// Prefer [`recover_sides`] with the sides as committed (git's merge stages)
/// when they are available: lines git merged cleanly outside the hunks can
/// mix the two sides within one entry, and a split at the markers cannot undo
/// that (the consistency check in [`recover_sides`] catches most such mixes).
pub fn recover<'a>(
    path: &Path,
    text: &str,
    specs: impl IntoIterator<Item = &'a ImageSpec>,
) -> Recovered {
    let (ours, theirs) = sides(text);
    recover_sides(path, &ours, &theirs, specs)
}

/// Builds the lock to start from, given the texts of the two sides: the pins
/// of `specs` that the sides agree on, as described in the module
/// documentation. A pin is a candidate only when it was made from the entry as
/// it is now and does not contradict it (its request, labels and platforms).
pub fn recover_sides<'a>(
    path: &Path,
    ours: &str,
    theirs: &str,
    specs: impl IntoIterator<Item = &'a ImageSpec>,
) -> Recovered {
    let (ours, theirs) = (ours.to_owned(), theirs.to_owned());
    let mut unreadable = Vec::new();
    let mut parsed: Vec<(&'static str, Lock)> = Vec::new();
    for (side, text) in [("ours", ours), ("theirs", theirs)] {
        match Lock::parse(path, &text) {
            Ok(lock) => parsed.push((side, lock)),
            Err(e) => unreadable.push((side, e.to_string())),
        }
    }
    let mut lock = Lock::default();
    let mut outcomes = BTreeMap::new();
    for spec in specs {
        // The entry and its dependency entries, from one side, if pinned from this entry.
        let pinned: Vec<(&'static str, Vec<&LockedImage>)> = parsed
            .iter()
            .filter_map(|(side, lock)| {
                let root = lock.images.get(&spec.id)?;
                let consistent = root.entry_hash == spec.entry_hash
                    && root.dependency_of.is_none()
                    && crate::resolve::drift::changed_keys(spec, root).is_empty();
                consistent.then(|| {
                    let tree = lock
                        .images
                        .values()
                        .filter(|i| i.id == spec.id || i.dependency_of.as_ref() == Some(&spec.id))
                        .collect();
                    (*side, tree)
                })
            })
            .collect();
        let outcome = match pinned.as_slice() {
            [] => Outcome::Unpinned,
            // Only one side pinned it from this entry (or only one side parsed).
            [(side, tree)] => {
                keep(&mut lock, tree);
                Outcome::OneSide(side)
            }
            [(_, a), (_, b)] if a == b => {
                keep(&mut lock, a);
                Outcome::Agreed
            }
            _ => Outcome::Disagreed,
        };
        outcomes.insert(spec.id.clone(), outcome);
    }
    Recovered {
        lock,
        outcomes,
        unreadable,
    }
}

fn keep(lock: &mut Lock, tree: &[&LockedImage]) {
    for image in tree {
        lock.images.insert(image.id.clone(), (*image).clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::lockfile::has_markers;

    #[test]
    fn sides_split_hunks_and_drop_the_base() {
        let text = "a\n<<<<<<< HEAD\nours\n||||||| base\nold\n=======\ntheirs\n>>>>>>> branch\nz\n";
        let (ours, theirs) = sides(text);
        assert_eq!(ours, "a\nours\nz\n");
        assert_eq!(theirs, "a\ntheirs\nz\n");
        assert!(has_markers(text));
        assert!(!has_markers(
            "a = \"<<<<<<< not at the start\"\n======== eight\n"
        ));
    }

    #[test]
    fn crlf_markers_are_recognised() {
        let text = "a\r\n<<<<<<< HEAD\r\nx\r\n=======\r\ny\r\n>>>>>>> b\r\n";
        let (ours, theirs) = sides(text);
        assert_eq!(
            (ours.as_str(), theirs.as_str()),
            ("a\r\nx\r\n", "a\r\ny\r\n")
        );
    }

    fn spec(id: &str, hash: &str) -> ImageSpec {
        ImageSpec {
            id: id.into(),
            source: crate::project::manifest::Source::AciFile {
                file: format!("{id}.aci"),
                signature: None,
            },
            platforms: Vec::new(),
            insecure: true,
            policy: None,
            entry_hash: crate::digest::Digest::sha256_of(hash.as_bytes()),
            line: 1,
        }
    }

    fn entry(id: &str, hash: &str, digest: u8) -> String {
        format!(
            "\n[[image]]\nid = \"{id}\"\nsource = \"aci-file\"\nrequest = \"{id}.aci\"\nentry-hash = \"{}\"\nverified = false\naci = {{ digest = \"{}\", size = 1, media-type = \"m\" }}\n",
            crate::digest::Digest::sha256_of(hash.as_bytes()),
            crate::digest::Digest::sha256_of(&[digest]),
        )
    }

    #[test]
    fn keeps_what_the_sides_agree_on_and_what_only_one_side_pinned() {
        let text = format!(
            "version = 1\n{same}<<<<<<< HEAD\n{ours_b}{ours_c}=======\n{theirs_b}{theirs_d}>>>>>>> other\n",
            same = entry("a", "a", 1),
            ours_b = entry("b", "b", 2),
            ours_c = entry("c", "c-old", 3),
            theirs_b = entry("b", "b", 4),
            theirs_d = entry("d", "d", 5),
        );
        let specs = [
            spec("a", "a"),
            spec("b", "b"),
            spec("c", "c-new"),
            spec("d", "d"),
            spec("e", "e"),
        ];
        let recovered = recover(Path::new("images.lock"), &text, &specs);
        assert!(
            recovered.unreadable.is_empty(),
            "{:?}",
            recovered.unreadable
        );
        assert_eq!(recovered.outcomes["a"], Outcome::Agreed);
        assert_eq!(recovered.outcomes["b"], Outcome::Disagreed);
        assert_eq!(
            recovered.outcomes["c"],
            Outcome::Unpinned,
            "pinned from an older entry"
        );
        assert_eq!(recovered.outcomes["d"], Outcome::OneSide("theirs"));
        assert_eq!(recovered.outcomes["e"], Outcome::Unpinned);
        let kept: Vec<&String> = recovered.lock.images.keys().collect();
        assert_eq!(kept, ["a", "d"]);
    }

    #[test]
    fn a_pin_that_contradicts_its_entry_is_not_kept() {
        // The entry hash matches, but the pin is of another file: a line-merge mix.
        let text = format!(
            "version = 1\n{}",
            entry("a", "a", 1).replace("request = \"a.aci\"", "request = \"b.aci\"")
        );
        let recovered = recover_sides(Path::new("images.lock"), &text, &text, &[spec("a", "a")]);
        assert_eq!(recovered.outcomes["a"], Outcome::Unpinned);
        assert!(recovered.lock.images.is_empty());
    }

    #[test]
    fn an_unparsable_side_is_reported_and_the_other_used() {
        let text = format!(
            "version = 1\n{a}<<<<<<< HEAD\nnot toml at all [\n=======\n{b}>>>>>>> other\n",
            a = entry("a", "a", 1),
            b = entry("b", "b", 2),
        );
        let recovered = recover(
            Path::new("images.lock"),
            &text,
            &[spec("a", "a"), spec("b", "b")],
        );
        assert_eq!(recovered.unreadable.len(), 1);
        assert_eq!(recovered.unreadable[0].0, "ours");
        assert_eq!(recovered.outcomes["a"], Outcome::OneSide("theirs"));
        assert_eq!(recovered.outcomes["b"], Outcome::OneSide("theirs"));
    }
}
