//! JSON Schemas for `images.toml` and `images.lock`, generated from the Rust
//! types so they cannot drift; `schema/*.json` holds the checked-in copies and a
//! test fails when they are out of date (`IMAGELOCK_BLESS=1` rewrites them).
//!
//! For editors, `init` writes the manifest's schema to [`MANIFEST_SCHEMA_FILE`] beside
//! images.toml and names it on the manifest's first line ([`SCHEMA_DIRECTIVE`], taplo's
//! `#:schema`, a path relative to the file): it works offline and for every checkout,
//! since `lock` writes the file again when the directive names it and it is missing
//! (e.g. `.imagelock/` is not committed) or was written by another version.

use std::path::Path;

/// Where `init` writes the manifest's schema, relative to images.toml.
pub const MANIFEST_SCHEMA_FILE: &str = ".imagelock/images.schema.json";

/// The first line `init` writes: taplo's schema directive naming [`MANIFEST_SCHEMA_FILE`].
pub const SCHEMA_DIRECTIVE: &str = "#:schema ./.imagelock/images.schema.json";

/// The manifest's schema, pretty-printed with a trailing newline.
pub fn manifest_schema() -> String {
    render(schemars::schema_for!(
        crate::project::manifest::ManifestFile
    ))
}

/// The lock's schema, pretty-printed with a trailing newline.
pub fn lock_schema() -> String {
    render(schemars::schema_for!(crate::project::lockfile::LockFile))
}

/// Whether manifest `text` names the schema file `init` writes (its first line is
/// [`SCHEMA_DIRECTIVE`]).
pub fn names_schema_file(text: &str) -> bool {
    text.lines()
        .next()
        .is_some_and(|line| line.trim_end() == SCHEMA_DIRECTIVE)
}

/// Writes the manifest's schema to [`MANIFEST_SCHEMA_FILE`] beside the manifest at
/// `manifest_path` (creating its directory) unless it holds exactly that already;
/// whether it wrote.
pub fn write_beside(manifest_path: &Path) -> std::io::Result<bool> {
    let dir = manifest_path.parent().unwrap_or(Path::new(""));
    let path = dir.join(MANIFEST_SCHEMA_FILE);
    let schema = manifest_schema();
    if std::fs::read(&path).is_ok_and(|current| current == schema.as_bytes()) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::fsutil::write_atomic(&path, schema.as_bytes())?;
    Ok(true)
}

fn render(schema: schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_names_the_schema_file_it_writes() {
        let template = crate::project::edit::INIT_TEMPLATE;
        assert!(names_schema_file(template));
        assert_eq!(
            SCHEMA_DIRECTIVE,
            format!("#:schema ./{MANIFEST_SCHEMA_FILE}")
        );
        assert!(!names_schema_file(
            "[images.a]\n#:schema ./.imagelock/images.schema.json\n"
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("images.toml");
        assert!(write_beside(&manifest).expect("write"));
        assert!(!write_beside(&manifest).expect("unchanged"), "written once");
        let written = std::fs::read_to_string(dir.path().join(MANIFEST_SCHEMA_FILE)).expect("read");
        assert_eq!(written, manifest_schema());
    }

    #[test]
    fn checked_in_schemas_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let bless = std::env::var_os("IMAGELOCK_BLESS").is_some();
        for (file, generated) in [
            ("images.schema.json", manifest_schema()),
            ("images.lock.schema.json", lock_schema()),
        ] {
            let path = dir.join(file);
            if bless {
                std::fs::create_dir_all(&dir).expect("create schema/");
                std::fs::write(&path, &generated).expect("write schema");
                continue;
            }
            let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                checked_in == generated,
                "{} is out of date; regenerate with `IMAGELOCK_BLESS=1 cargo test --lib schema`",
                path.display()
            );
        }
    }
}
