//! Registry credentials from the files users already have: containers
//! `auth.json` and Docker's `config.json`, plus credential helpers.
//!
//! Search order (containers-auth.json(5), then Docker): `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. The first file with an
//! entry for the registry wins. Secrets never appear in `Debug` output, nor in
//! errors: a broken auth file is described by where and how it is broken, not quoted.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

/// A username and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub username: String,
    /// The password or token; redacted in `Debug`.
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// An auth file exists but is not valid.
    #[error("invalid credentials file {}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {host}: {message}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry host.
        host: String,
        /// Its complaint.
        message: String,
    },
}

/// The auth files searched, in order (existing or not), for messages and lookup.
pub fn search_path() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME");
    let mut files = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        files.push(d.join("containers/auth.json"));
    }
    if let Some(d) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        files.push(d.join("containers/auth.json"));
    }
    if let Some(d) = env("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
        files.push(d.join("config.json"));
    }
    files
}

/// Maps a config key or host to the form keys are compared in: no scheme, no
/// path, Docker Hub's aliases folded to `index.docker.io`.
fn normalize_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io",
        other => other,
    }
}

/// Finds credentials for `host` (`host[:port]`, as the user names the registry).
pub fn lookup(host: &str) -> Result<Option<Credential>, CredentialError> {
    let wanted = normalize_host(host);
    for path in search_path() {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) => continue,
        };
        let file: AuthFile = serde_json::from_str(&text).map_err(|e| CredentialError::BadFile {
            path: path.clone(),
            message: describe_json_error(&e),
        })?;
        if let Some(helper) = file
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_host(k) == wanted)
            .map(|(_, v)| v)
        {
            return run_helper(helper, host);
        }
        let entry = file.auths.get(host).or_else(|| {
            file.auths
                .iter()
                .find(|(k, _)| normalize_host(k) == wanted)
                .map(|(_, v)| v)
        });
        let decoded =
            entry
                .map(decode_entry)
                .transpose()
                .map_err(|message| CredentialError::BadFile {
                    path: path.clone(),
                    message: format!("entry for {host}: {message}"),
                })?;
        if let Some(cred) = decoded.flatten() {
            return Ok(Some(cred));
        }
        if let Some(store) = &file.creds_store
            && let Some(cred) = run_helper(store, host)?
        {
            return Ok(Some(cred));
        }
    }
    Ok(None)
}

/// Where and how an auth file is broken, without serde's own text: that quotes
/// the value it found (`invalid type: string "dXNlcjpwYXNz"`), which can be a secret.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "is not valid JSON",
        Category::Eof => "ends early",
        Category::Data => {
            "does not have the shape of an auth file (`auths` maps registries to `auth` or `username`/`password`; `credHelpers`, `credsStore` name helpers)"
        }
        Category::Io => "cannot be read",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

fn decode_entry(entry: &AuthEntry) -> Result<Option<Credential>, String> {
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("`auth` is not base64: {e}"))?;
        let raw = String::from_utf8(raw).map_err(|_| "`auth` is not UTF-8".to_owned())?;
        let (user, pass) = raw
            .split_once(':')
            .ok_or("`auth` is not base64(user:password)")?;
        return Ok(Some(Credential {
            username: user.to_owned(),
            password: pass.trim_end_matches('\0').to_owned(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credential {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

fn run_helper(helper: &str, host: &str) -> Result<Option<Credential>, CredentialError> {
    let fail = |message: String| CredentialError::Helper {
        helper: helper.to_owned(),
        host: host.to_owned(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(host.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(said.trim().to_owned()));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct HelperAnswer {
        username: String,
        secret: String,
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))?;
    Ok(Some(Credential {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise() {
        assert_eq!(
            normalize_host("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(normalize_host("docker.io"), "index.docker.io");
        assert_eq!(normalize_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }

    #[test]
    fn broken_auth_files_are_described_not_quoted() {
        for text in [
            r#"{"auths": {"r.test": "dXNlcjpzM2NyM3Q="}}"#,
            r#"{"auths": "dXNlcjpzM2NyM3Q="}"#,
        ] {
            let e = serde_json::from_str::<AuthFile>(text).expect_err("invalid");
            assert!(
                e.to_string().contains("dXNlcjpzM2NyM3Q"),
                "serde quotes it: {e}"
            );
            let described = describe_json_error(&e);
            assert!(!described.contains("dXNlcjpzM2NyM3Q"), "{described}");
            assert!(described.contains("(line 1, column "), "{described}");
        }
    }

    #[test]
    fn entries_decode_and_debug_redacts() {
        let entry = AuthEntry {
            auth: Some("YWxpY2U6czNjcmV0".into()),
            ..AuthEntry::default()
        };
        let cred = decode_entry(&entry).expect("decodes").expect("present");
        assert_eq!(
            (cred.username.as_str(), cred.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(!format!("{cred:?}").contains("s3cret"));
        let bad = AuthEntry {
            auth: Some("!!!".into()),
            ..AuthEntry::default()
        };
        assert!(decode_entry(&bad).is_err());
    }
}
