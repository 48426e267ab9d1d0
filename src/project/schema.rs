//! JSON Schemas for `images.toml` and `images.lock`, generated from the Rust
//! types so they cannot drift; `schema/*.json` holds the checked-in copies and a
//! test fails when they are out of date (`IMAGELOCK_BLESS=1` rewrites them).

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

fn render(schema: schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
