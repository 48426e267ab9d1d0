//! Format-preserving edits of `images.toml` (`init`, `add`, `remove`,
//! `trust add`, `trust remove`).
//!
//! Invariant: everything the edit does not touch — comments, key order,
//! whitespace, quoting — is kept byte for byte, because the file is the user's.

use toml_edit::{DocumentMut, Item, Table, value};

/// The commented manifest `imagelock init` writes.
pub const INIT_TEMPLATE: &str = r#"#:schema https://imagelock.dev/schema/images.schema.json
# imagelock manifest: the container images this project needs.
# `imagelock lock` resolves them into images.lock (commit both files);
# `imagelock sync` fetches exactly the locked blobs into the store.

# [store]
# path = ".imagelock/store"      # default: --store, $IMAGELOCK_STORE, else the per-user data dir

# Registries that may be reached over plain HTTP (only those you name):
# [registries."127.0.0.1:5000"]
# insecure-http = true

# Keys trusted for a name prefix; the most specific prefix wins.
# [trust."registry.example.com/team/"]
# keys = ["keys/team.asc"]

# An image from an OCI registry; `platforms` defaults to this machine's.
# [images.alpine]
# docker = "docker.io/library/alpine:3.20"
# platforms = ["linux/amd64", "linux/arm64"]
# insecure = true                # no trusted key covers it: accept it unverified
"#;

/// What `add` puts into a new `[images.ID]` table, in key order.
#[derive(Debug, Default)]
pub struct NewImage {
    /// Source key (`docker`, `name`, `url` or `path`) and its value.
    pub source: (&'static str, String),
    /// appc labels.
    pub labels: Vec<(String, String)>,
    /// Platforms, as written.
    pub platforms: Vec<String>,
    /// `insecure = true`.
    pub insecure: bool,
}

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Not TOML.
    #[error("cannot edit: the manifest is not valid TOML\n{0}")]
    Parse(String),
    /// `[images]` is something other than a table.
    #[error("cannot edit: `images` is not a table")]
    ImagesNotTable,
    /// Some other key that must be a table (or array) is not.
    #[error("cannot edit: `{0}` is not a table")]
    NotTable(&'static str),
    /// `add` of an ID that exists.
    #[error("image `{0}` is already in the manifest")]
    Exists(String),
    /// `remove` of an ID that does not exist.
    #[error("image `{0}` is not in the manifest")]
    Unknown(String),
    /// `trust remove` of a prefix that has no `[trust."PREFIX"]` table.
    #[error("the manifest has no [trust.\"{0}\"] table")]
    UnknownTrust(String),
}

/// Parses the manifest for editing.
fn parse(text: &str) -> Result<DocumentMut, EditError> {
    text.parse()
        .map_err(|e: toml_edit::TomlError| EditError::Parse(e.to_string()))
}

/// The positions of every table, top level and one level down (implicit ones included).
fn table_positions(doc: &DocumentMut) -> Vec<isize> {
    doc.iter()
        .filter_map(|(_, item)| item.as_table())
        .flat_map(|t| {
            std::iter::once(t.position()).chain(
                t.iter()
                    .filter_map(|(_, i)| i.as_table())
                    .map(Table::position),
            )
        })
        .flatten()
        .collect()
}

/// The top-level table `key` (created implicit, i.e. without a `[key]` header,
/// when missing); `None` when `key` holds something else.
fn implicit_table<'d>(doc: &'d mut DocumentMut, key: &str) -> Option<&'d mut Table> {
    doc.entry(key)
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
}

/// Adds `[images.ID]` at the end of the images, keeping everything else as it is.
pub fn add_image(text: &str, id: &str, image: &NewImage) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let images = implicit_table(&mut doc, "images").ok_or(EditError::ImagesNotTable)?;
    if images.contains_key(id) {
        return Err(EditError::Exists(id.to_owned()));
    }
    let mut table = Table::new();
    table.insert(image.source.0, value(image.source.1.as_str()));
    if !image.labels.is_empty() {
        let mut labels = toml_edit::InlineTable::new();
        for (k, v) in &image.labels {
            labels.insert(k, v.as_str().into());
        }
        table.insert("labels", value(labels));
    }
    if !image.platforms.is_empty() {
        let platforms: toml_edit::Array = image.platforms.iter().map(String::as_str).collect();
        table.insert("platforms", value(platforms));
    }
    if image.insecure {
        table.insert("insecure", value(true));
    }
    // A blank line before the new table, unless the file is empty so far.
    if !text.trim().is_empty() {
        table.decor_mut().set_prefix("\n");
    }
    // Place it after every existing table so it lands at the end of the file.
    let position = table_positions(&doc).into_iter().max().map_or(0, |p| p + 1);
    table.set_position(position);
    doc["images"]
        .as_table_mut()
        .expect("images was just checked to be a table")
        .insert(id, Item::Table(table));
    Ok(doc.to_string())
}

/// Adds `key_file` to `[trust."PREFIX"] keys`, creating the table (before the
/// images, after any other trust table) when needed. Returns `None` when the
/// file is listed already.
pub fn add_trust_key(
    text: &str,
    prefix: &str,
    key_file: &str,
) -> Result<Option<String>, EditError> {
    let mut doc = parse(text)?;
    let trust = implicit_table(&mut doc, "trust").ok_or(EditError::NotTable("trust"))?;
    if let Some(existing) = trust.get_mut(prefix) {
        let table = existing
            .as_table_like_mut()
            .ok_or(EditError::NotTable("trust.PREFIX"))?;
        let keys = table
            .entry("keys")
            .or_insert(value(toml_edit::Array::new()))
            .as_array_mut()
            .ok_or(EditError::NotTable("trust.PREFIX.keys"))?;
        if keys.iter().any(|k| k.as_str() == Some(key_file)) {
            return Ok(None);
        }
        keys.push(key_file);
        return Ok(Some(doc.to_string()));
    }
    let mut table = Table::new();
    let keys: toml_edit::Array = std::iter::once(key_file).collect();
    table.insert("keys", value(keys));
    let position = new_trust_table_position(&doc);
    let decor = make_room_at(&mut doc, position, text.trim().is_empty());
    table.decor_mut().set_prefix(decor);
    table.set_position(position);
    doc["trust"]
        .as_table_mut()
        .expect("trust was just checked to be a table")
        .insert(prefix, Item::Table(table));
    Ok(Some(doc.to_string()))
}

/// Adds each of `key_files` to `[trust."PREFIX"] keys` (see [`add_trust_key`]).
/// Returns `None` when every file is listed already.
pub fn add_trust_keys(
    text: &str,
    prefix: &str,
    key_files: &[String],
) -> Result<Option<String>, EditError> {
    let mut edited: Option<String> = None;
    for file in key_files {
        let current = edited.as_deref().unwrap_or(text);
        if let Some(updated) = add_trust_key(current, prefix, file)? {
            edited = Some(updated);
        }
    }
    Ok(edited)
}

/// Where a new `[trust."PREFIX"]` goes: after the last trust table, else
/// before the first image, else at the end.
fn new_trust_table_position(doc: &DocumentMut) -> isize {
    let positions = |name: &str| -> Vec<isize> {
        doc.get(name)
            .and_then(Item::as_table)
            .map(|t| {
                t.iter()
                    .filter_map(|(_, i)| i.as_table())
                    .filter_map(Table::position)
                    .collect()
            })
            .unwrap_or_default()
    };
    match (
        positions("trust").iter().max(),
        positions("images").iter().min(),
    ) {
        (Some(last_trust), _) => last_trust + 1,
        (None, Some(first_image)) => *first_image,
        (None, None) => table_positions(doc).into_iter().max().map_or(0, |p| p + 1),
    }
}

/// Makes room for a table at `position`: tables at or after it move down by
/// one. The table that was at `position` hands over the file-header part of
/// the comments above it (everything up to its last blank line) so the header
/// stays on top; returns the comments to put above the new table.
fn make_room_at(doc: &mut DocumentMut, position: isize, empty_file: bool) -> String {
    let mut decor = if empty_file { "" } else { "\n" }.to_owned();
    let mut shift = |t: &mut Table| {
        let Some(p) = t.position().filter(|p| *p >= position) else {
            return;
        };
        if p == position {
            let above = t
                .decor()
                .prefix()
                .and_then(|r| r.as_str())
                .unwrap_or_default()
                .to_owned();
            if let Some(split) = above.rfind("\n\n") {
                let (header, own) = above.split_at(split + 2);
                decor = header.to_owned();
                t.decor_mut().set_prefix(format!("\n{own}"));
            } else if !above.starts_with('\n') {
                t.decor_mut().set_prefix(format!("\n{above}"));
            }
        }
        t.set_position(p + 1);
    };
    for (_, item) in doc.iter_mut() {
        if let Some(t) = item.as_table_mut() {
            for (_, child) in t.iter_mut() {
                if let Some(c) = child.as_table_mut() {
                    shift(c);
                }
            }
            shift(t);
        }
    }
    decor
}

/// Removes `[images.ID]` (with the comments attached above it).
pub fn remove_image(text: &str, id: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let images = doc
        .get_mut("images")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::Unknown(id.to_owned()))?;
    if images.remove(id).is_none() {
        return Err(EditError::Unknown(id.to_owned()));
    }
    Ok(doc.to_string())
}

/// Removes `[trust."PREFIX"]` with the comments attached above it. A file
/// header above the table (the comments before its last blank line) is kept
/// and moves to whatever follows.
pub fn remove_trust(text: &str, prefix: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let unknown = || EditError::UnknownTrust(prefix.to_owned());
    let trust = doc
        .get_mut("trust")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(unknown)?;
    let removed = trust.remove(prefix).ok_or_else(unknown)?;
    let Some(table) = removed.as_table() else {
        return Ok(doc.to_string());
    };
    let above = table
        .decor()
        .prefix()
        .and_then(|r| r.as_str())
        .unwrap_or_default();
    let Some(split) = above.rfind("\n\n") else {
        return Ok(doc.to_string());
    };
    let header = above[..split + 1].to_owned();
    let removed_at = table.position();
    // The next table in file order inherits the header; at the end of the file, the trailer.
    let next = header_positions(&doc)
        .into_iter()
        .filter(|p| Some(*p) > removed_at)
        .min();
    let moved = next.is_some_and(|next| {
        with_table_at(&mut doc, next, |t| {
            let own = t
                .decor()
                .prefix()
                .and_then(|r| r.as_str())
                .unwrap_or_default()
                .to_owned();
            t.decor_mut().set_prefix(format!("{header}{own}"));
        })
    });
    if !moved {
        let trailing = doc.trailing().as_str().unwrap_or_default().to_owned();
        doc.set_trailing(format!("{header}{trailing}"));
    }
    Ok(doc.to_string())
}

/// The positions of the tables written with a `[header]` (top level and one level down).
fn header_positions(doc: &DocumentMut) -> Vec<isize> {
    let mut out = Vec::new();
    for (_, item) in doc.iter() {
        let Some(t) = item.as_table() else { continue };
        out.extend(t.position().filter(|_| !t.is_implicit()));
        for (_, child) in t.iter() {
            if let Some(c) = child.as_table() {
                out.extend(c.position().filter(|_| !c.is_implicit()));
            }
        }
    }
    out
}

/// Runs `f` on the table written at `position`; returns whether there is one.
fn with_table_at(doc: &mut DocumentMut, position: isize, f: impl FnOnce(&mut Table)) -> bool {
    let mut f = Some(f);
    for (_, item) in doc.iter_mut() {
        let Some(t) = item.as_table_mut() else {
            continue;
        };
        if !t.is_implicit() && t.position() == Some(position) {
            if let Some(f) = f.take() {
                f(t);
            }
            return true;
        }
        for (_, child) in t.iter_mut() {
            if let Some(c) = child.as_table_mut()
                && !c.is_implicit()
                && c.position() == Some(position)
            {
                if let Some(f) = f.take() {
                    f(c);
                }
                return true;
            }
        }
    }
    false
}

/// Removes `files` from `[trust."PREFIX"] keys`, keeping the array's layout
/// (and its comments) for the keys that stay.
pub fn remove_trust_keys(text: &str, prefix: &str, files: &[String]) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let unknown = || EditError::UnknownTrust(prefix.to_owned());
    let table = doc
        .get_mut("trust")
        .and_then(Item::as_table_like_mut)
        .and_then(|t| t.get_mut(prefix))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(unknown)?;
    let keys = table
        .get_mut("keys")
        .and_then(Item::as_array_mut)
        .ok_or(EditError::NotTable("trust.PREFIX.keys"))?;
    let first_prefix = keys
        .get(0)
        .and_then(|v| v.decor().prefix())
        .and_then(|r| r.as_str())
        .map(str::to_owned);
    keys.retain(|v| v.as_str().is_none_or(|f| !files.iter().any(|r| r == f)));
    // The new first element takes the old first's leading space (`[ "b"]` → `["b"]`).
    if let (Some(prefix), Some(first)) = (first_prefix, keys.get_mut(0)) {
        first.decor_mut().set_prefix(prefix);
    }
    if keys.is_empty() {
        keys.set_trailing("");
        keys.set_trailing_comma(false);
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_keys_are_added_in_place() {
        let cases = [
            ("", "[trust.\"a/\"]\nkeys = [\"k.asc\"]\n"),
            (
                "# header\n\n# about x\n[images.x]\npath = \"x\"\n",
                "# header\n\n[trust.\"a/\"]\nkeys = [\"k.asc\"]\n\n# about x\n[images.x]\npath = \"x\"\n",
            ),
            (
                "[store]\npath = \"s\"\n\n[trust.\"b/\"]  # b\nkeys = [\"b.asc\"]\n\n[images.x]\npath = \"x\"\n",
                "[store]\npath = \"s\"\n\n[trust.\"b/\"]  # b\nkeys = [\"b.asc\"]\n\n[trust.\"a/\"]\nkeys = [\"k.asc\"]\n\n[images.x]\npath = \"x\"\n",
            ),
            (
                "[trust.\"a/\"]\nkeys = [\"old.asc\"]  # keep\n",
                "[trust.\"a/\"]\nkeys = [\"old.asc\", \"k.asc\"]  # keep\n",
            ),
        ];
        for (before, after) in cases {
            let edited = add_trust_key(before, "a/", "k.asc")
                .expect("edits")
                .expect("changes");
            assert_eq!(edited, after, "from {before:?}");
            assert_eq!(
                add_trust_key(&edited, "a/", "k.asc").expect("edits"),
                None,
                "a second add changes nothing"
            );
        }
    }

    #[test]
    fn several_trust_keys_change_the_file_only_when_one_is_new() {
        let files = ["a.asc".to_owned(), "b.asc".to_owned()];
        let listed = "[trust.\"p/\"]\nkeys = [\"a.asc\"]\n";
        assert_eq!(
            add_trust_keys(listed, "p/", &files).expect("edits"),
            Some("[trust.\"p/\"]\nkeys = [\"a.asc\", \"b.asc\"]\n".to_owned())
        );
        assert_eq!(
            add_trust_keys("", "p/", &files).expect("edits"),
            Some("[trust.\"p/\"]\nkeys = [\"a.asc\", \"b.asc\"]\n".to_owned())
        );
        let both = "[trust.\"p/\"]\nkeys = [\"b.asc\", \"a.asc\"]\n";
        assert_eq!(add_trust_keys(both, "p/", &files).expect("edits"), None);
        assert_eq!(add_trust_keys(both, "p/", &[]).expect("edits"), None);
    }

    const USER_FILE: &str = "# my images\n[store]\npath   =   \"store\"   # odd spacing kept\n\n[images.zeta]  # last alphabetically, first in file\ndocker = 'zeta:1'\ninsecure = true\n\n# the base image\n[images.alpha]\ndocker = \"alpine:3.20\"\ninsecure = true\n";

    fn docker(reference: &str) -> NewImage {
        NewImage {
            source: ("docker", reference.to_owned()),
            platforms: vec!["linux/amd64".into()],
            insecure: true,
            ..NewImage::default()
        }
    }

    #[test]
    fn add_appends_and_keeps_everything_else() {
        let out = add_image(USER_FILE, "big", &docker("127.0.0.1:5000/test/big:v1")).expect("add");
        let expected = format!(
            "{USER_FILE}\n[images.big]\ndocker = \"127.0.0.1:5000/test/big:v1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn add_to_empty_and_unterminated_files() {
        let out = add_image("", "a", &docker("a:1")).expect("add");
        assert_eq!(
            out,
            "[images.a]\ndocker = \"a:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
        );
        let out = add_image("[store]\npath = \"s\"", "a", &docker("a:1")).expect("add");
        assert!(
            out.starts_with("[store]\npath = \"s\"\n\n[images.a]\n"),
            "{out}"
        );
    }

    #[test]
    fn add_refuses_duplicates_and_remove_round_trips() {
        assert!(matches!(
            add_image(USER_FILE, "alpha", &docker("x")),
            Err(EditError::Exists(_))
        ));
        let added = add_image(USER_FILE, "big", &docker("b:1")).expect("add");
        assert_eq!(remove_image(&added, "big").expect("remove"), USER_FILE);
        let removed = remove_image(USER_FILE, "zeta").expect("remove");
        assert_eq!(
            removed,
            "# my images\n[store]\npath   =   \"store\"   # odd spacing kept\n\n# the base image\n[images.alpha]\ndocker = \"alpine:3.20\"\ninsecure = true\n"
        );
        assert!(matches!(
            remove_image(USER_FILE, "nope"),
            Err(EditError::Unknown(_))
        ));
    }

    #[test]
    fn trust_tables_and_keys_are_removed_in_place() {
        let file = "# header\n\n# team keys\n[trust.\"a/\"]  # a\nkeys = [\"a.asc\", \"b.asc\"]  # keep\n\n[trust.\"b/\"]\nkeys = [\n    \"x.asc\",  # first\n    \"y.asc\",\n]\n\n[images.x]\npath = \"x\"\n";
        let out = remove_trust_keys(file, "a/", &["a.asc".into()]).expect("edit");
        assert_eq!(out, file.replace("[\"a.asc\", \"b.asc\"]", "[\"b.asc\"]"));
        let out = remove_trust_keys(file, "b/", &["x.asc".into()]).expect("edit");
        assert_eq!(out, file.replace("    \"x.asc\",  # first\n", ""));
        let out = remove_trust_keys(file, "a/", &["a.asc".into(), "b.asc".into()]).expect("edit");
        assert!(out.contains("keys = []  # keep\n"), "{out}");

        let out = remove_trust(file, "a/").expect("edit");
        assert_eq!(
            out,
            "# header\n\n[trust.\"b/\"]\nkeys = [\n    \"x.asc\",  # first\n    \"y.asc\",\n]\n\n[images.x]\npath = \"x\"\n"
        );
        let out = remove_trust(file, "b/").expect("edit");
        assert_eq!(
            out,
            "# header\n\n# team keys\n[trust.\"a/\"]  # a\nkeys = [\"a.asc\", \"b.asc\"]  # keep\n\n[images.x]\npath = \"x\"\n"
        );
        assert!(matches!(
            remove_trust(file, "c/"),
            Err(EditError::UnknownTrust(_))
        ));
        assert!(matches!(
            remove_trust_keys(file, "c/", &[]),
            Err(EditError::UnknownTrust(_))
        ));
    }

    #[test]
    fn init_template_is_a_valid_empty_manifest() {
        let m = crate::project::manifest::Manifest::parse(
            std::path::Path::new("images.toml"),
            INIT_TEMPLATE,
        )
        .expect("valid");
        assert!(m.images.is_empty());
    }
}
