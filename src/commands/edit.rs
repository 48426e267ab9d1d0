//! `init`, `add`, `remove`: edits of images.toml.

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
    settings
        .printer
        .status(format!("Created {}", path.display()));
    Ok(())
}

/// What `add` was asked to add.
pub struct AddRequest {
    /// The new ID.
    pub id: String,
    /// The new entry.
    pub image: NewImage,
    /// Lock right away.
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
    settings.printer.status(format!(
        "Added `{}` ({kind} {value}) to {}",
        request.id,
        path.display()
    ));
    if request.lock {
        super::lock(settings, false).await
    } else {
        settings.printer.status("Run `imagelock lock` to pin it.");
        Ok(())
    }
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

/// `imagelock remove`.
pub fn remove(settings: &Settings, ids: &[String]) -> anyhow::Result<()> {
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
    settings
        .printer
        .status("Run `imagelock lock` to update images.lock.");
    Ok(())
}
