//! `init`, `add`, `remove`: edits of images.toml. `add` and `remove` then lock, as
//! `uv add` does; when locking fails the edit stays and the error says so.

use anyhow::Context as _;

use crate::cli::Settings;
use crate::errors::{hinted, with_hint};
use crate::project::edit::{self, NewImage};
use crate::project::manifest::Manifest;

/// `imagelock init`.
pub fn init(settings: &Settings, force: bool) -> anyhow::Result<()> {
    let path = &settings.manifest;
    if path.exists() && !force {
        return Err(hinted(
            format!("{} already exists", path.display()),
            "edit it, or pass `--force` to replace it with the template",
        ));
    }
    crate::fsutil::write_atomic(path, edit::INIT_TEMPLATE.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let dir = path.parent().unwrap_or(std::path::Path::new(""));
    let schema = dir.join(crate::project::schema::MANIFEST_SCHEMA_FILE);
    crate::project::schema::write_beside(path)
        .with_context(|| format!("cannot write {}", schema.display()))?;
    settings.printer.status(format!(
        "Created {} (its JSON Schema, for editors: {})",
        path.display(),
        schema.display()
    ));
    Ok(())
}

/// What `add` was asked to add.
pub struct AddRequest {
    /// The new ID.
    pub id: String,
    /// The new entry.
    pub image: NewImage,
    /// Also write `[registries."HOST"] insecure-http = true` for the source's host.
    pub insecure_http: bool,
    /// Lock after the edit.
    pub lock: bool,
}

/// `imagelock add`.
pub async fn add(settings: &Settings, request: AddRequest) -> anyhow::Result<()> {
    let path = &settings.manifest;
    let text = std::fs::read_to_string(path).map_err(|e| {
        with_hint(
            anyhow::anyhow!("cannot read {}: {e}", path.display()),
            "create it with `imagelock init`",
        )
    })?;
    check_id(&request.id)?;
    let (text, plain_http_host) = if request.insecure_http {
        let host = plain_http_host(&request.image.source)?;
        let text = edit::allow_plain_http(&text, &host)?.unwrap_or(text);
        (text, Some(host))
    } else {
        (text, None)
    };
    let updated = edit::add_image(&text, &request.id, &request.image).map_err(|e| match e {
        edit::EditError::Exists(_) => with_hint(
            e,
            format!("remove it first with `imagelock remove {}`", request.id),
        ),
        e => e.into(),
    })?;
    // Validate the result before writing, so a bad reference never lands in the file.
    Manifest::parse(path, &updated).context("the new entry is not valid")?;
    crate::fsutil::write_atomic(path, updated.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let (kind, value) = &request.image.source;
    let plain = plain_http_host
        .map(|host| format!(", with [registries.\"{host}\"] insecure-http = true"))
        .unwrap_or_default();
    settings.printer.status(format!(
        "Added `{}` ({kind} {value}) to {}{plain}",
        request.id,
        path.display()
    ));
    let edit = format!("{} keeps the new entry `{}`", path.display(), request.id);
    let undo = format!(
        "`imagelock remove {} --no-lock` undoes the edit",
        request.id
    );
    lock_after_edit(settings, request.lock, "to pin it", &edit, &undo).await
}

/// The `host[:port]` `--insecure-http` allows plain HTTP for: the registry's (as the
/// lock reaches it: `registry-1.docker.io` for `docker.io`), the discovery host of an appc
/// name, or the host of an ACI URL.
fn plain_http_host((kind, value): &(&'static str, String)) -> anyhow::Result<String> {
    let host = match *kind {
        "docker" => crate::oci::reference::Reference::parse(value)
            .ok()
            .map(|r| r.api_host().to_owned()),
        "name" => value
            .split('/')
            .next()
            .filter(|h| !h.is_empty())
            .map(str::to_owned),
        // The host and port `insecure_http` compares with.
        "url" => reqwest::Url::parse(value)
            .ok()
            .filter(|url| url.host_str().is_some())
            .map(|url| crate::oci::registry::host_port(&url)),
        _ => None,
    };
    host.ok_or_else(|| {
        crate::errors::usage(
            format!("--insecure-http: `{value}` names no host to reach over plain HTTP"),
            "give the image's registry in the reference, e.g. `--docker 127.0.0.1:5000/acme/app:1.0 --insecure-http`",
        )
    })
}

/// After an edit of images.toml: locks (unless `lock` is false, then says what to run
/// `why`). A failure to lock keeps the edit (`edit` says what it was) and says what to
/// run once the cause is fixed, or how to undo the edit (`undo`).
async fn lock_after_edit(
    settings: &Settings,
    lock: bool,
    why: &str,
    edit: &str,
    undo: &str,
) -> anyhow::Result<()> {
    if !lock {
        settings
            .printer
            .status(format!("Run `imagelock lock` {why}."));
        return Ok(());
    }
    super::lock(settings, false).await.map_err(|e| {
        let first = crate::report::printer::hint_for(&e).map_or_else(
            || "once the cause above is fixed, ".to_owned(),
            |hint| format!("{hint}; then "),
        );
        let lock_path = crate::project::lockfile::lock_path_for(&settings.manifest);
        with_hint(
            e.context(format!(
                "{edit}, but {} was not updated",
                lock_path.display()
            )),
            format!("{first}run `imagelock lock` ({undo})"),
        )
    })
}

/// Refuses an image ID images.toml cannot have, suggesting one it can.
fn check_id(id: &str) -> anyhow::Result<()> {
    if crate::project::manifest::is_valid_id(id) {
        return Ok(());
    }
    let suggestion: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    Err(crate::errors::usage(
        format!("`{id}` is not a valid image ID: use ASCII letters, digits, '-', '_' and '.'"),
        format!("e.g. `imagelock add {suggestion} ...`"),
    ))
}

/// The IDs of the `[images.ID]` tables of the manifest `text` (none if it is not TOML).
fn image_ids(text: &str) -> Vec<String> {
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|doc| Some(doc.get("images")?.as_table()?.keys().cloned().collect()))
        .unwrap_or_default()
}

/// `imagelock remove`; then locks, unless `lock` is false.
pub async fn remove(settings: &Settings, ids: &[String], lock: bool) -> anyhow::Result<()> {
    let path = &settings.manifest;
    let mut text = std::fs::read_to_string(path).map_err(|e| {
        with_hint(
            anyhow::anyhow!("cannot read {}: {e}", path.display()),
            "run it where images.toml is, point at it with `--manifest PATH`, or create one with `imagelock init`",
        )
    })?;
    for id in ids {
        text = edit::remove_image(&text, id).map_err(|e| match e {
            edit::EditError::Unknown(_) => crate::errors::unknown_image(
                id,
                path.display(),
                image_ids(&text).iter().map(String::as_str),
                None,
            ),
            e => e.into(),
        })?;
    }
    crate::fsutil::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    settings.printer.status(format!(
        "Removed {} from {}",
        ids.join(", "),
        path.display()
    ));
    let edit = format!("{} no longer lists {}", path.display(), ids.join(", "));
    lock_after_edit(
        settings,
        lock,
        "to update images.lock",
        &edit,
        "the images stay pinned in it until then",
    )
    .await
}

/// `imagelock schema`: the JSON Schema of images.toml or images.lock on stdout.
pub fn schema(settings: &Settings, file: crate::cli::SchemaKind) {
    let text = match file {
        crate::cli::SchemaKind::Manifest => crate::project::schema::manifest_schema(),
        crate::cli::SchemaKind::Lock => crate::project::schema::lock_schema(),
    };
    settings.printer.out(text.trim_end());
}
