//! Format-preserving edits of `images.toml` (`init`, `add`, `remove`,
//! `trust add`, `trust remove`).
//!
//! Invariant: everything the edit does not touch — comments, key order,
//! whitespace, quoting — is kept byte for byte, because the file is the user's.
//! New tables go where a person would put them (`Place`): never above the comments
//! that open the file (`init`'s template, whose first line is the `#:schema`
//! directive), and removing a table hands that header on, so removing what was added
//! gives the file back.

use toml_edit::{DocumentMut, Item, Table, value};

use crate::project::manifest::SigstoreIdentity;

/// The commented manifest `imagelock init` writes. Its first line points editors that read
/// taplo's `#:schema` directive at the schema `init` writes beside it
/// ([`crate::project::schema::MANIFEST_SCHEMA_FILE`], relative to images.toml).
pub const INIT_TEMPLATE: &str = r#"#:schema ./.imagelock/images.schema.json
# imagelock manifest: the container images this project needs.
# `imagelock lock` resolves them into images.lock (commit both files);
# `imagelock sync` fetches exactly the locked blobs into the store.

# [store]
# path = ".imagelock/store"      # default: --store, $IMAGELOCK_STORE, else the per-user data dir

# Registries reached over plain HTTP, only those named (`imagelock add ... --insecure-http`):
# [registries."127.0.0.1:5000"]
# insecure-http = true

# Keys trusted for a name prefix (`imagelock trust add PREFIX --key FILE`); the most
# specific prefix wins.
# [trust."registry.example.com/team/"]
# keys = ["keys/team.asc"]
# lookaside = "https://sigs.example.com/sigstore"   # where its simple signatures are published

# An image from an OCI registry (`imagelock add ID --docker REF`); `platforms` defaults
# to this machine's.
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
    /// A version policy: `("semver", REQ)` or `("tag-pattern", RE)`.
    pub policy: Option<(&'static str, String)>,
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
    /// A `[trust."PREFIX"]` key that must be an array is not.
    #[error("cannot edit: `trust.\"{prefix}\".{key}` is not an array")]
    NotArray {
        /// The prefix.
        prefix: String,
        /// The key, e.g. `sigstore-keys`.
        key: &'static str,
    },
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

/// The positions of the `[group.KEY]` tables (e.g. every `[images.ID]`).
fn group_positions(doc: &DocumentMut, group: &str) -> Vec<isize> {
    doc.get(group)
        .and_then(Item::as_table)
        .map(|t| {
            t.iter()
                .filter_map(|(_, i)| i.as_table())
                .filter_map(Table::position)
                .collect()
        })
        .unwrap_or_default()
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

/// Where a new `[group.KEY]` table goes in the file: where a person would put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Right below the table at this position (the tables after it move down).
    After(isize),
    /// At this position, above the table there, which hands over the file header
    /// above it (its comments up to their last blank line) so the header stays on top.
    Before(isize),
    /// At the end of the file, below the comments that end it (the commented
    /// examples of `init`'s template, which must stay under its `#:schema` line).
    End,
}

/// Below the last table of the first of `groups` that has one, else above the first
/// table of the first of `before` that has one, else at the end. `init`'s template
/// reads store, registries, trust, images: a new registry goes after the registries,
/// else before the trust tables, else before the images.
fn place_in(doc: &DocumentMut, group: &str, before: &[&str]) -> Place {
    if let Some(last) = group_positions(doc, group).into_iter().max() {
        return Place::After(last);
    }
    before
        .iter()
        .find_map(|g| group_positions(doc, g).into_iter().min())
        .map_or(Place::End, Place::Before)
}

/// Inserts `table` as `[group.key]` at `place`, with a blank line above it unless the
/// file is empty. `group` must be a table (see [`implicit_table`]).
fn insert_table(doc: &mut DocumentMut, group: &str, key: &str, mut table: Table, place: Place) {
    let empty_file = doc.to_string().trim().is_empty();
    let last = table_positions(doc).into_iter().max();
    // Below the last table is the end of the file.
    let place = match place {
        Place::After(p) if last.is_none_or(|last| last <= p) => Place::End,
        place => place,
    };
    let blank = if empty_file { "" } else { "\n" };
    let (position, prefix) = match place {
        Place::After(p) => {
            shift_tables(doc, p + 1, false);
            (p + 1, blank.to_owned())
        }
        Place::Before(p) => (p, shift_tables(doc, p, true).unwrap_or(blank.to_owned())),
        Place::End => {
            let trailing = doc.trailing().as_str().unwrap_or_default().to_owned();
            let prefix = if trailing.trim().is_empty() {
                blank.to_owned()
            } else {
                // The comments that end the file stay above the new table.
                doc.set_trailing("");
                let newline = if trailing.ends_with('\n') { "" } else { "\n" };
                format!("{trailing}{newline}\n")
            };
            (last.map_or(0, |p| p + 1), prefix)
        }
    };
    table.decor_mut().set_prefix(prefix);
    table.set_position(position);
    doc[group]
        .as_table_mut()
        .expect("the caller made the group a table")
        .insert(key, Item::Table(table));
}

/// Moves the tables at or after `position` down by one. With `take_header`, the table
/// that was at `position` hands over the file-header part of the comments above it
/// (everything up to their last blank line), returned as the new table's comments.
fn shift_tables(doc: &mut DocumentMut, position: isize, take_header: bool) -> Option<String> {
    let mut header = None;
    let mut shift = |t: &mut Table| {
        let Some(p) = t.position().filter(|p| *p >= position) else {
            return;
        };
        if take_header && p == position {
            let above = t
                .decor()
                .prefix()
                .and_then(|r| r.as_str())
                .unwrap_or_default()
                .to_owned();
            if let Some(split) = above.rfind("\n\n") {
                let (top, own) = above.split_at(split + 2);
                header = Some(top.to_owned());
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
    header
}

/// Adds `[images.ID]` below the last image (at the end of the file when there is none),
/// keeping everything else as it is.
pub fn add_image(text: &str, id: &str, image: &NewImage) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let images = implicit_table(&mut doc, "images").ok_or(EditError::ImagesNotTable)?;
    if images.contains_key(id) {
        return Err(EditError::Exists(id.to_owned()));
    }
    let mut table = Table::new();
    table.insert(image.source.0, value(image.source.1.as_str()));
    if let Some((key, written)) = &image.policy {
        table.insert(key, value(written.as_str()));
    }
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
    let place = place_in(&doc, "images", &[]);
    insert_table(&mut doc, "images", id, table, place);
    Ok(doc.to_string())
}

/// Sets `[registries."HOST"] insecure-http = true` (a new table goes below the other
/// registries, else above the trust tables and images). `None` when it is set already.
pub fn allow_plain_http(text: &str, host: &str) -> Result<Option<String>, EditError> {
    let mut doc = parse(text)?;
    let registries =
        implicit_table(&mut doc, "registries").ok_or(EditError::NotTable("registries"))?;
    match registries.get_mut(host) {
        Some(existing) => {
            let table = existing
                .as_table_like_mut()
                .ok_or(EditError::NotTable("registries.HOST"))?;
            if table.get("insecure-http").and_then(Item::as_bool) == Some(true) {
                return Ok(None);
            }
            table.insert("insecure-http", value(true));
        }
        None => {
            let mut table = Table::new();
            table.insert("insecure-http", value(true));
            let place = place_in(&doc, "registries", &["trust", "images"]);
            insert_table(&mut doc, "registries", host, table, place);
        }
    }
    Ok(Some(doc.to_string()))
}

/// Adds `key_file` to `[trust."PREFIX"] keys`, creating the table (before the
/// images, after any other trust table) when needed. Returns `None` when the
/// file is listed already.
pub fn add_trust_key(
    text: &str,
    prefix: &str,
    key_file: &str,
) -> Result<Option<String>, EditError> {
    add_to_trust_array(text, prefix, "keys", key_file.into())
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

/// Adds `key_file` to `[trust."PREFIX"] sigstore-keys` (see [`add_trust_key`]).
pub fn add_sigstore_key(
    text: &str,
    prefix: &str,
    key_file: &str,
) -> Result<Option<String>, EditError> {
    add_to_trust_array(text, prefix, "sigstore-keys", key_file.into())
}

/// Adds `{ issuer = "…", subject = "…" }` (or `subject-regexp`) to
/// `[trust."PREFIX"] sigstore-identities`; `None` when an equal identity is listed.
pub fn add_sigstore_identity(
    text: &str,
    prefix: &str,
    identity: &SigstoreIdentity,
) -> Result<Option<String>, EditError> {
    add_to_trust_array(
        text,
        prefix,
        "sigstore-identities",
        identity_value(identity),
    )
}

/// `{ issuer = "…", subject = "…" }` (or `subject-regexp`), as images.toml writes an identity.
fn identity_value(identity: &SigstoreIdentity) -> toml_edit::Value {
    let mut table = toml_edit::InlineTable::new();
    table.insert("issuer", identity.issuer.as_str().into());
    if let Some(subject) = &identity.subject {
        table.insert("subject", subject.as_str().into());
    }
    if let Some(pattern) = &identity.subject_regexp {
        table.insert("subject-regexp", pattern.as_str().into());
    }
    table.into()
}

/// Sets `[trust."PREFIX"] trusted-root = "FILE"`, creating the table when needed.
/// Returns `None` when it is set to `file` already, else the new text and the file
/// it replaced, if any.
pub fn set_trusted_root(
    text: &str,
    prefix: &str,
    file: &str,
) -> Result<Option<(String, Option<String>)>, EditError> {
    set_trust_string(text, prefix, "trusted-root", file)
}

/// Sets `[trust."PREFIX"] lookaside = "URL"`, creating the table when needed; like
/// [`set_trusted_root`], `None` when it is set to `url` already, else the new text and
/// the URL it replaced, if any.
pub fn set_lookaside(
    text: &str,
    prefix: &str,
    url: &str,
) -> Result<Option<(String, Option<String>)>, EditError> {
    set_trust_string(text, prefix, "lookaside", url)
}

/// Sets the string `key` of `[trust."PREFIX"]` (see [`set_trusted_root`]), keeping the
/// comment after an old value.
fn set_trust_string(
    text: &str,
    prefix: &str,
    key: &str,
    new: &str,
) -> Result<Option<(String, Option<String>)>, EditError> {
    let mut doc = parse(text)?;
    let table = trust_table(&mut doc, prefix)?;
    let old = table.get(key).and_then(Item::as_str).map(str::to_owned);
    if old.as_deref() == Some(new) {
        return Ok(None);
    }
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(existing) => {
            let decor = existing.decor().clone();
            *existing = new.into();
            *existing.decor_mut() = decor;
        }
        None => {
            table.insert(key, value(new));
        }
    }
    Ok(Some((doc.to_string(), old)))
}

/// Adds `item` to the array `key` of `[trust."PREFIX"]` (creating both when needed),
/// formatted like the elements already there; `None` when an equal element is listed.
fn add_to_trust_array(
    text: &str,
    prefix: &str,
    key: &'static str,
    item: toml_edit::Value,
) -> Result<Option<String>, EditError> {
    let mut doc = parse(text)?;
    let table = trust_table(&mut doc, prefix)?;
    let array = table
        .entry(key)
        .or_insert(value(toml_edit::Array::new()))
        .as_array_mut()
        .ok_or_else(|| EditError::NotArray {
            prefix: prefix.to_owned(),
            key,
        })?;
    if array.iter().any(|v| same_value(v, &item)) {
        return Ok(None);
    }
    // Identities are long: a new list of them is written one per line.
    if array.is_empty() && item.is_inline_table() {
        let mut item = item;
        item.decor_mut().set_prefix("\n    ");
        array.push_formatted(item);
        array.set_trailing_comma(true);
        array.set_trailing("\n");
        return Ok(Some(doc.to_string()));
    }
    // A new element takes the last one's leading space: `, "b"` on one line, a new
    // indented line in an array written one element per line.
    let lead = array
        .iter()
        .last()
        .and_then(|v| v.decor().prefix())
        .and_then(|r| r.as_str())
        .filter(|lead| array.len() > 1 || lead.contains('\n'))
        .map(str::to_owned);
    array.push(item);
    if let (Some(lead), Some(pushed)) = (lead, array.iter_mut().last()) {
        pushed.decor_mut().set_prefix(lead);
    }
    Ok(Some(doc.to_string()))
}

/// Whether two TOML values mean the same (formatting and key order aside).
fn same_value(a: &toml_edit::Value, b: &toml_edit::Value) -> bool {
    match (a, b) {
        (toml_edit::Value::InlineTable(x), toml_edit::Value::InlineTable(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a.as_str().is_some() && a.as_str() == b.as_str(),
    }
}

/// `[trust."PREFIX"]`, created empty (below the other trust tables, else above the
/// images, else at the end) when missing.
fn trust_table<'d>(
    doc: &'d mut DocumentMut,
    prefix: &str,
) -> Result<&'d mut dyn toml_edit::TableLike, EditError> {
    implicit_table(doc, "trust").ok_or(EditError::NotTable("trust"))?;
    let exists = doc["trust"]
        .as_table()
        .is_some_and(|t| t.contains_key(prefix));
    if !exists {
        let place = place_in(doc, "trust", &["images"]);
        insert_table(doc, "trust", prefix, Table::new(), place);
    }
    doc["trust"]
        .as_table_mut()
        .expect("trust was just checked to be a table")
        .get_mut(prefix)
        .and_then(Item::as_table_like_mut)
        .ok_or(EditError::NotTable("trust.PREFIX"))
}

/// Removes `[images.ID]` with the comments attached above it; a file header above it
/// is kept (see `keep_header`).
pub fn remove_image(text: &str, id: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let images = doc
        .get_mut("images")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::Unknown(id.to_owned()))?;
    let removed = images
        .remove(id)
        .ok_or_else(|| EditError::Unknown(id.to_owned()))?;
    keep_header(&mut doc, &removed);
    Ok(doc.to_string())
}

/// Removes `[trust."PREFIX"]` with the comments attached above it; a file header above
/// it is kept (see `keep_header`).
pub fn remove_trust(text: &str, prefix: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let unknown = || EditError::UnknownTrust(prefix.to_owned());
    let trust = doc
        .get_mut("trust")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(unknown)?;
    let removed = trust.remove(prefix).ok_or_else(unknown)?;
    keep_header(&mut doc, &removed);
    Ok(doc.to_string())
}

/// After `removed` left `doc`: the file header above it (the comments before their last
/// blank line, e.g. `init`'s template above the first table added) moves to whatever
/// followed it, so removing what was added gives the file back as it was.
fn keep_header(doc: &mut DocumentMut, removed: &Item) {
    let Some(table) = removed.as_table() else {
        return;
    };
    let above = table
        .decor()
        .prefix()
        .and_then(|r| r.as_str())
        .unwrap_or_default();
    let Some(split) = above.rfind("\n\n") else {
        return;
    };
    let header = above[..split + 1].to_owned();
    let removed_at = table.position();
    // The next table in file order inherits the header; at the end of the file, the trailer.
    let next = header_positions(doc)
        .into_iter()
        .filter(|p| Some(*p) > removed_at)
        .min();
    let moved = next.is_some_and(|next| {
        with_table_at(doc, next, |t| {
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
    remove_files(text, prefix, "keys", files)
}

/// Removes `files` from `[trust."PREFIX"] sigstore-keys` (see [`remove_trust_keys`]).
pub fn remove_sigstore_keys(
    text: &str,
    prefix: &str,
    files: &[String],
) -> Result<String, EditError> {
    remove_files(text, prefix, "sigstore-keys", files)
}

/// Removes `files` from the array `key` of `[trust."PREFIX"]`.
fn remove_files(
    text: &str,
    prefix: &str,
    key: &'static str,
    files: &[String],
) -> Result<String, EditError> {
    remove_from_trust_array(text, prefix, key, |v| {
        v.as_str().is_some_and(|f| files.iter().any(|r| r == f))
    })
}

/// Removes the identities equal to `identity` from `[trust."PREFIX"] sigstore-identities`.
pub fn remove_sigstore_identity(
    text: &str,
    prefix: &str,
    identity: &SigstoreIdentity,
) -> Result<String, EditError> {
    let wanted = identity_value(identity);
    remove_from_trust_array(text, prefix, "sigstore-identities", |v| {
        same_value(v, &wanted)
    })
}

/// Removes `trusted-root` from `[trust."PREFIX"]` (back to the built-in root).
pub fn remove_trusted_root(text: &str, prefix: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    existing_trust_table(&mut doc, prefix)?.remove("trusted-root");
    Ok(doc.to_string())
}

/// The space before the element that follows a dropped one: the dropped element's own
/// line (`lead` up to its first newline, the end of the line before it) with the rest of
/// the follower's (`after` past its first newline). Without newlines, the follower keeps
/// its space, unless it becomes the first element (`[ "b"]` → `["b"]`).
fn splice_lead(lead: &str, after: &str, becomes_first: bool) -> String {
    match (lead.find('\n'), after.find('\n')) {
        (Some(l), Some(a)) => format!("{}{}", &lead[..=l], &after[a + 1..]),
        _ if becomes_first => lead.to_owned(),
        _ => after.to_owned(),
    }
}

/// `[trust."PREFIX"]` of a document, which must have it.
fn existing_trust_table<'d>(
    doc: &'d mut DocumentMut,
    prefix: &str,
) -> Result<&'d mut dyn toml_edit::TableLike, EditError> {
    doc.get_mut("trust")
        .and_then(Item::as_table_like_mut)
        .and_then(|t| t.get_mut(prefix))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::UnknownTrust(prefix.to_owned()))
}

/// Removes the elements `drop` picks from the array `key` of `[trust."PREFIX"]`,
/// keeping the array's layout (and its comments) for the elements that stay.
fn remove_from_trust_array(
    text: &str,
    prefix: &str,
    key: &'static str,
    drop: impl Fn(&toml_edit::Value) -> bool,
) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let table = existing_trust_table(&mut doc, prefix)?;
    let array = table
        .get_mut(key)
        .and_then(Item::as_array_mut)
        .ok_or_else(|| EditError::NotArray {
            prefix: prefix.to_owned(),
            key,
        })?;
    // Whitespace and comments between elements belong to the element after them, but a
    // comment after an element's comma reads as that element's: when an element goes, the
    // one after it (or the array's trailing space) takes the dropped one's leading line.
    let decor_of = |v: &toml_edit::Value| {
        v.decor()
            .prefix()
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    loop {
        let Some(i) = array.iter().position(&drop) else {
            break;
        };
        let dropped = array.remove(i);
        let lead = decor_of(&dropped);
        match array.get_mut(i) {
            Some(next) => {
                let spliced = splice_lead(&lead, &decor_of(next), i == 0);
                next.decor_mut().set_prefix(spliced);
            }
            None => {
                let trailing = array.trailing().as_str().unwrap_or_default().to_owned();
                array.set_trailing(splice_lead(&lead, &trailing, false));
            }
        }
    }
    if array.is_empty() {
        array.set_trailing("");
        array.set_trailing_comma(false);
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

    fn identity(issuer: &str, subject: Option<&str>, pattern: Option<&str>) -> SigstoreIdentity {
        SigstoreIdentity {
            issuer: issuer.to_owned(),
            subject: subject.map(str::to_owned),
            subject_regexp: pattern.map(str::to_owned),
        }
    }

    #[test]
    fn sigstore_trust_is_added_in_place_once() {
        let file =
            "# header\n\n[trust.\"a/\"]  # a\nkeys = [\"a.asc\"]\n\n[images.x]\npath = \"x\"\n";
        let gha = identity(
            "https://token.actions.githubusercontent.com",
            Some("https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"),
            None,
        );
        let google = identity(
            "https://accounts.google.com",
            None,
            Some("^[a-z]+@acme\\.com$"),
        );

        let out = add_sigstore_key(file, "a/", "keys/cosign.pub")
            .expect("edits")
            .expect("changes");
        assert_eq!(
            out,
            file.replace(
                "keys = [\"a.asc\"]\n",
                "keys = [\"a.asc\"]\nsigstore-keys = [\"keys/cosign.pub\"]\n"
            )
        );
        assert_eq!(
            add_sigstore_key(&out, "a/", "keys/cosign.pub").expect("edits"),
            None
        );

        let out = add_sigstore_identity(&out, "a/", &gha)
            .expect("edits")
            .expect("changes");
        let out = add_sigstore_identity(&out, "a/", &google)
            .expect("edits")
            .expect("changes");
        assert!(
            out.contains("sigstore-identities = [\n    { issuer = \"https://token.actions.githubusercontent.com\", subject = \"https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main\" },\n    { issuer = \"https://accounts.google.com\", subject-regexp = '^[a-z]+@acme\\.com$' },\n]\n"),
            "{out}"
        );
        assert_eq!(
            add_sigstore_identity(&out, "a/", &gha).expect("edits"),
            None
        );
        // The same identity written by hand, keys in another order, is the same identity.
        let by_hand = "[trust.\"b/\"]\nsigstore-identities = [{ subject-regexp = '^[a-z]+@acme\\.com$', issuer = \"https://accounts.google.com\" }]\n";
        assert_eq!(
            add_sigstore_identity(by_hand, "b/", &google).expect("edits"),
            None
        );
        let exact_too = add_sigstore_identity(by_hand, "b/", &gha)
            .expect("edits")
            .expect("changes");
        assert!(
            exact_too.contains("\" }, { issuer = \"https://token"),
            "{exact_too}"
        );

        let (rooted, old) = set_trusted_root(&out, "a/", "keys/root.json")
            .expect("edits")
            .expect("changes");
        assert_eq!(old, None);
        assert!(
            rooted.contains("trusted-root = \"keys/root.json\"\n\n[images.x]"),
            "{rooted}"
        );
        assert_eq!(
            set_trusted_root(&rooted, "a/", "keys/root.json").expect("edits"),
            None
        );
        let (replaced, old) = set_trusted_root(&rooted, "a/", "keys/other.json")
            .expect("edits")
            .expect("changes");
        assert_eq!(old.as_deref(), Some("keys/root.json"));
        assert_eq!(
            replaced,
            rooted.replace("keys/root.json", "keys/other.json")
        );

        // A new prefix gets a table of its own, in the usual place, holding only what was added.
        let new = add_sigstore_key(file, "ghcr.io/acme/", "k.pub")
            .expect("edits")
            .expect("changes");
        assert!(
            new.contains("keys = [\"a.asc\"]\n\n[trust.\"ghcr.io/acme/\"]\nsigstore-keys = [\"k.pub\"]\n\n[images.x]"),
            "{new}"
        );
        let (new, _) = set_trusted_root("", "p/", "r.json")
            .expect("edits")
            .expect("changes");
        assert_eq!(new, "[trust.\"p/\"]\ntrusted-root = \"r.json\"\n");
        crate::project::manifest::Manifest::parse(std::path::Path::new("images.toml"), &replaced)
            .expect("the edited manifest is valid");
    }

    #[test]
    fn sigstore_trust_is_removed_in_place() {
        let gha = identity(
            "https://token.actions.githubusercontent.com",
            Some("wf"),
            None,
        );
        let google = identity("https://accounts.google.com", None, Some("^a$"));
        let file = "[trust.\"a/\"]\nsigstore-keys = [\"one.pub\", \"two.pub\"]  # keep\nsigstore-identities = [\n    { issuer = \"https://token.actions.githubusercontent.com\", subject = \"wf\" },  # gha\n    { issuer = \"https://accounts.google.com\", subject-regexp = \"^a$\" },\n]\ntrusted-root = \"root.json\"  # pinned\n";
        let out = remove_sigstore_keys(file, "a/", &["one.pub".into()]).expect("edit");
        assert_eq!(
            out,
            file.replace("[\"one.pub\", \"two.pub\"]", "[\"two.pub\"]")
        );
        let out = remove_sigstore_identity(file, "a/", &gha).expect("edit");
        assert_eq!(out, file.replace("    { issuer = \"https://token.actions.githubusercontent.com\", subject = \"wf\" },  # gha\n", ""));
        let out = remove_sigstore_identity(file, "a/", &google).expect("edit");
        assert_eq!(
            out,
            file.replace(
                "    { issuer = \"https://accounts.google.com\", subject-regexp = \"^a$\" },\n",
                ""
            )
        );
        // A subject is not a pattern: nothing matches, nothing goes.
        let not_listed = identity("https://accounts.google.com", Some("^a$"), None);
        assert_eq!(
            remove_sigstore_identity(file, "a/", &not_listed).expect("edit"),
            file
        );
        let out = remove_trusted_root(file, "a/").expect("edit");
        assert_eq!(
            out,
            file.replace("trusted-root = \"root.json\"  # pinned\n", "")
        );
        assert!(matches!(
            remove_trusted_root(file, "b/"),
            Err(EditError::UnknownTrust(_))
        ));
        assert!(matches!(
            remove_trust_keys(file, "a/", &[]),
            Err(EditError::NotArray { key: "keys", .. })
        ));
    }

    /// `init`, then `add` / `trust add` / `add --insecure-http`: the template stays on top,
    /// `#:schema` on line 1, and the tables follow in the template's order.
    #[test]
    fn edits_after_init_keep_the_template_on_top() {
        let image = docker("127.0.0.1:5000/a:1");
        let added = add_image(INIT_TEMPLATE, "a", &image).expect("add");
        assert_eq!(
            added,
            format!(
                "{INIT_TEMPLATE}\n[images.a]\ndocker = \"127.0.0.1:5000/a:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
            )
        );
        let trusted = add_trust_key(INIT_TEMPLATE, "a/", "k.asc")
            .expect("edits")
            .expect("changes");
        assert_eq!(
            trusted,
            format!("{INIT_TEMPLATE}\n[trust.\"a/\"]\nkeys = [\"k.asc\"]\n")
        );

        // Every kind, in any order, lands in the template's order below it.
        let all = |steps: &[&str]| {
            let mut text = INIT_TEMPLATE.to_owned();
            for step in steps {
                text = match *step {
                    "image" => add_image(&text, "a", &image).expect("add"),
                    "image2" => add_image(&text, "b", &docker("b:1")).expect("add"),
                    "trust" => add_trust_key(&text, "a/", "k.asc")
                        .expect("edits")
                        .expect("changes"),
                    "http" => allow_plain_http(&text, "127.0.0.1:5000")
                        .expect("edits")
                        .expect("changes"),
                    other => unreachable!("{other}"),
                };
            }
            text
        };
        let expected = format!(
            "{INIT_TEMPLATE}\n[registries.\"127.0.0.1:5000\"]\ninsecure-http = true\n\n[trust.\"a/\"]\nkeys = [\"k.asc\"]\n\n[images.a]\ndocker = \"127.0.0.1:5000/a:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n\n[images.b]\ndocker = \"b:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
        );
        for steps in [
            ["http", "trust", "image", "image2"],
            ["image", "trust", "http", "image2"],
            ["image", "image2", "http", "trust"],
            ["trust", "image", "image2", "http"],
        ] {
            let text = all(&steps);
            assert_eq!(text, expected, "after {steps:?}");
            assert!(text.starts_with("#:schema "), "{steps:?}");
        }
        crate::project::manifest::Manifest::parse(std::path::Path::new("images.toml"), &expected)
            .expect("the edited manifest is valid");
    }

    #[test]
    fn removing_what_was_added_after_init_gives_the_template_back() {
        let added = add_image(INIT_TEMPLATE, "a", &docker("a:1")).expect("add");
        assert_eq!(remove_image(&added, "a").expect("remove"), INIT_TEMPLATE);
        let trusted = add_trust_key(&added, "p/", "k.asc")
            .expect("edits")
            .expect("changes");
        let out = remove_trust(&trusted, "p/").expect("remove");
        assert_eq!(out, added);
        assert_eq!(remove_image(&out, "a").expect("remove"), INIT_TEMPLATE);
    }

    #[test]
    fn a_new_image_goes_below_the_last_image() {
        // Tables after the images stay after them, with their comments.
        let file =
            "[images.a]\npath = \"a\"\n\n# mirrors\n[registries.\"h\"]\ninsecure-http = true\n";
        let out = add_image(file, "b", &docker("b:1")).expect("add");
        assert_eq!(
            out,
            "[images.a]\npath = \"a\"\n\n[images.b]\ndocker = \"b:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n\n# mirrors\n[registries.\"h\"]\ninsecure-http = true\n"
        );
        // Comments that end the file stay above the new table.
        let file = "[images.a]\npath = \"a\"\n\n# [images.later]\n# path = \"x\"\n";
        let out = add_image(file, "b", &docker("b:1")).expect("add");
        assert_eq!(
            out,
            format!(
                "{file}\n[images.b]\ndocker = \"b:1\"\nplatforms = [\"linux/amd64\"]\ninsecure = true\n"
            )
        );
    }

    #[test]
    fn plain_http_and_lookaside_are_set_in_place() {
        let file =
            "[registries.\"h\"]  # ours\ninsecure-http = false\n\n[images.a]\npath = \"a\"\n";
        let out = allow_plain_http(file, "h")
            .expect("edits")
            .expect("changes");
        assert_eq!(out, file.replace("false", "true"));
        assert_eq!(allow_plain_http(&out, "h").expect("edits"), None);
        let out = allow_plain_http(file, "g:5000")
            .expect("edits")
            .expect("changes");
        assert_eq!(
            out,
            file.replace(
                "false\n\n",
                "false\n\n[registries.\"g:5000\"]\ninsecure-http = true\n\n"
            )
        );

        let file = "[trust.\"a/\"]\nkeys = [\"k.asc\"]\nlookaside = \"https://old\"  # keep\n";
        let (out, old) = set_lookaside(file, "a/", "https://new")
            .expect("edits")
            .expect("changes");
        assert_eq!(old.as_deref(), Some("https://old"));
        assert_eq!(out, file.replace("https://old", "https://new"));
        assert_eq!(
            set_lookaside(&out, "a/", "https://new").expect("edits"),
            None
        );
        let (out, old) = set_lookaside("", "b/", "https://s")
            .expect("edits")
            .expect("changes");
        assert_eq!(old, None);
        assert_eq!(out, "[trust.\"b/\"]\nlookaside = \"https://s\"\n");
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
