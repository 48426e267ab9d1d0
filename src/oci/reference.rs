//! Docker/OCI image references: parsing, normalisation and the canonical string form.
//!
//! Parsing follows distribution/reference `ParseNormalizedNamed` followed by `TagNameOnly`
//! (specs/oci.md §1). The grammar is checked by small hand-written functions, one per
//! grammar production, so every rejection can say exactly what is wrong.
//!
//! Invariants of every [`Reference`]:
//! - `domain` is a valid `host[:port]` and is never `index.docker.io` (canonicalised to
//!   `docker.io`);
//! - `path` is a valid lowercase remote name of at most 255 bytes; on `docker.io` a
//!   single-component path carries the `library/` prefix;
//! - a tag or a digest is always present: `latest` is added only when neither was written, and
//!   a reference written with both keeps both (the digest is what gets fetched);
//! - `digest`, when present, is `sha256:` + 64 or `sha512:` + 128 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use crate::text::escape;

/// Registry assumed when a reference names none (Docker Hub, as users see it).
const DEFAULT_DOMAIN: &str = "docker.io";
/// Legacy spelling of Docker Hub, canonicalised to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Host that actually serves Docker Hub's registry API (c/image `dockerRegistry`).
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Namespace Docker Hub keeps single-component ("official") repositories in.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Tag implied by a reference that has neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// distribution/reference `RepositoryNameTotalLengthMax`, applied to the normalised path.
const MAX_PATH_LEN: usize = 255;
/// The tag grammar `[\w][\w.-]{0,127}` allows at most 128 characters.
const MAX_TAG_LEN: usize = 128;

/// A fully normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why an image reference was rejected; every variant names the offending input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The input was empty.
    #[error(
        "invalid image reference: it is empty; write e.g. `alpine:3.20` or `registry.example.com/team/app@sha256:<hex>`"
    )]
    Empty,
    /// The input is a bare 64-hex image ID, which names no repository.
    #[error(
        "invalid image reference `{0}`: a 64-character hex string is an image ID, not a repository name; to pin by digest write NAME@sha256:{0}"
    )]
    ImageId(String),
    /// The repository path contains uppercase letters (only tags and registry hosts may).
    #[error(
        "invalid image reference `{}`: repository name `{}` must be lowercase (only the tag and the registry host may contain uppercase letters)",
        escape(.input), escape(.path)
    )]
    Uppercase {
        /// The reference as written.
        input: String,
        /// The repository path as written.
        path: String,
    },
    /// The input does not follow `[registry[:port]/]path[:tag][@digest]`.
    #[error("invalid image reference `{}`: {}", escape(.input), escape(.reason))]
    InvalidFormat {
        /// The reference as written.
        input: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The normalised repository path is longer than 255 characters.
    #[error(
        "invalid image reference `{}`: repository path is {length} characters long, the limit is {MAX_PATH_LEN}",
        escape(.input)
    )]
    NameTooLong {
        /// The reference as written.
        input: String,
        /// Length of the normalised path.
        length: usize,
    },
    /// The tag is empty, too long, or uses characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid tag in image reference `{}`: {}", escape(.input), escape(.reason))]
    InvalidTag {
        /// The reference as written.
        input: String,
        /// The tag as written.
        tag: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The digest is malformed, uses uppercase hex, or uses an algorithm other than sha256/sha512.
    #[error("invalid digest in image reference `{}`: {}", escape(.input), escape(.reason))]
    InvalidDigest {
        /// The reference (or bare digest) as written.
        input: String,
        /// The digest as written.
        digest: String,
        /// What is wrong, in words.
        reason: String,
    },
}

impl Reference {
    /// Parses and normalises like distribution/reference `ParseNormalizedNamed` + `TagNameOnly`.
    ///
    /// `docker.io` is the default domain, single-component Docker Hub paths get `library/`,
    /// `index.docker.io` becomes `docker.io`, and `latest` is added only when there is neither
    /// tag nor digest. A tag together with a digest is kept; the digest is what gets fetched.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_image_id(input) {
            return Err(ReferenceError::ImageId(input.to_owned()));
        }
        let invalid_format = |reason: String| ReferenceError::InvalidFormat {
            input: input.to_owned(),
            reason,
        };

        let (domain, remainder) = split_domain(input);
        // Neither the path nor the tag may contain '@' or ':', so the first of each separates.
        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
            None => (remainder, None),
        };
        let (written_path, tag) = match name_and_tag.split_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (name_and_tag, None),
        };

        // Checked before the grammar, as upstream does, to give the more useful message.
        if written_path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: input.to_owned(),
                path: written_path.to_owned(),
            });
        }
        check_domain(domain).map_err(invalid_format)?;
        check_remote_name(written_path).map_err(invalid_format)?;

        let domain = if domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN
        } else {
            domain
        };
        let path = if domain == DEFAULT_DOMAIN && !written_path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{written_path}")
        } else {
            written_path.to_owned()
        };
        if path.len() > MAX_PATH_LEN {
            return Err(ReferenceError::NameTooLong {
                input: input.to_owned(),
                length: path.len(),
            });
        }
        if let Some(tag) = tag {
            check_tag(tag).map_err(|reason| ReferenceError::InvalidTag {
                input: input.to_owned(),
                tag: tag.to_owned(),
                reason,
            })?;
        }
        if let Some(digest) = digest {
            check_digest(digest).map_err(|reason| ReferenceError::InvalidDigest {
                input: input.to_owned(),
                digest: digest.to_owned(),
                reason,
            })?;
        }

        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG),
            (tag, _) => tag,
        };
        Ok(Reference {
            domain: domain.to_owned(),
            path,
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// Registry `host[:port]` as users write it, e.g. `docker.io`, `127.0.0.1:5000`, `localhost`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path without the domain, e.g. `library/alpine`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if one was written or defaulted to `latest`.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest as written, e.g. `sha256:<64 hex>`.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `domain/path`, e.g. `docker.io/library/alpine`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The `host[:port]` that serves the registry API: `registry-1.docker.io` for `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.domain == DEFAULT_DOMAIN {
            DOCKER_HUB_API_HOST
        } else {
            &self.domain
        }
    }

    /// What goes in `/v2/<path>/manifests/<this>`: the digest if present, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .expect("a parsed Reference always has a tag or a digest")
    }

    /// The same repository and tag pinned to `digest`, which must already be valid.
    ///
    /// Not re-validated (debug builds assert it); check untrusted input with [`validate_digest`].
    pub fn with_digest(&self, digest: &str) -> Reference {
        debug_assert!(
            check_digest(digest).is_ok(),
            "with_digest called with invalid digest {digest:?}"
        );
        Reference {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// The same repository with tag `tag` and no digest; a tag outside the grammar
    /// (one a registry listed, say) is refused.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(tag).map_err(|reason| ReferenceError::InvalidTag {
            input: format!("{}:{tag}", self.repository()),
            tag: tag.to_owned(),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// Docker-style short form: drops `docker.io/`, and `library/` when no further `/` follows.
    pub fn familiar(&self) -> String {
        let mut out = if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        };
        push_tag_and_digest(&mut out, self.tag(), self.digest());
        out
    }
}

/// Checks a bare digest (`sha256:` + 64 or `sha512:` + 128 lowercase hex) as used in references.
pub fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    check_digest(digest).map_err(|reason| ReferenceError::InvalidDigest {
        input: digest.to_owned(),
        digest: digest.to_owned(),
        reason,
    })
}

/// Whether `tag` is a tag a reference may carry (what [`Reference::with_tag`] accepts).
pub fn is_valid_tag(tag: &str) -> bool {
    check_tag(tag).is_ok()
}

/// Whether `input` (a reference [`Reference::parse`] accepts) writes neither tag nor digest, so `latest` gets defaulted.
///
/// containers/image `reference.IsNameOnly` on the un-defaulted parse: a signed identity must
/// not rely on the default tag.
pub fn is_name_only(input: &str) -> bool {
    // The domain may contain ':' (a port); the path never contains ':' or '@'.
    let (_, remainder) = split_domain(input);
    !remainder.contains([':', '@'])
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.repository();
        push_tag_and_digest(&mut out, self.tag(), self.digest());
        f.write_str(&out)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(input)
    }
}

/// Appends `:tag` and `@digest` when present.
fn push_tag_and_digest(out: &mut String, tag: Option<&str>, digest: Option<&str>) {
    if let Some(tag) = tag {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
}

/// `identifier := /[a-f0-9]{64}/`: a bare image ID, which upstream refuses as a name.
fn is_image_id(input: &str) -> bool {
    input.len() == 64
        && input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `splitDockerDomain`: the text before the first `/` is a registry when it is `localhost` or
/// contains `.`, `:` or an uppercase letter; otherwise the registry is Docker Hub and the whole
/// input is the remainder. Returns (domain as written or `docker.io`, remainder).
fn split_domain(input: &str) -> (&str, &str) {
    match input.split_once('/') {
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, input),
    }
}

/// `domain := host [':' port-number]` with `host := domain-name | '[' IPv6address ']'`.
pub(crate) fn check_domain(domain: &str) -> Result<(), String> {
    let port = if let Some(bracketed) = domain.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("registry host `{domain}` opens '[' without a closing ']'"))?;
        check_ipv6_address(address, domain)?;
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                format!(
                    "registry host `{domain}` has `{after}` after ']'; expected `:PORT` or nothing"
                )
            })?),
        }
    } else {
        let (host, port) = match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        };
        check_domain_name(host, domain)?;
        port
    };
    match port {
        Some(port) => check_port_number(port, domain),
        None => Ok(()),
    }
}

/// `domain-name := domain-component ['.' domain-component]*`.
fn check_domain_name(host: &str, domain: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("registry host `{domain}` has an empty host name"));
    }
    host.split('.')
        .try_for_each(|component| check_domain_component(component, domain))
}

/// `domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn check_domain_component(component: &str, domain: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err(format!(
            "registry host `{domain}` has an empty label (check for '..' or a leading/trailing '.')"
        ));
    };
    if let Some(bad) = component
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(format!(
            "registry host `{domain}` contains `{bad}`; host names may only use letters, digits, '-' and '.'"
        ));
    }
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!(
            "registry host `{domain}` has the label `{component}`, which must start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// `'[' IPv6address ']'`, checked as upstream does: `[a-fA-F0-9:]+` between the brackets.
fn check_ipv6_address(address: &str, domain: &str) -> Result<(), String> {
    if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
        return Err(format!(
            "registry host `{domain}` is not a valid bracketed IPv6 address such as `[::1]`"
        ));
    }
    Ok(())
}

/// `port-number := /[0-9]+/`.
fn check_port_number(port: &str, domain: &str) -> Result<(), String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "registry `{domain}` has the port `{port}`; a port must be digits, as in `localhost:5000`"
        ));
    }
    Ok(())
}

/// `remote-name := path-component ['/' path-component]*`.
fn check_remote_name(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the repository path is empty".to_owned());
    }
    path.split('/')
        .try_for_each(|component| check_path_component(component, path))
}

/// `path-component := alpha-numeric [separator alpha-numeric]*` with `alpha-numeric := [a-z0-9]+`.
fn check_path_component(component: &str, path: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err(format!(
            "repository path `{path}` has an empty component (check for '//' or a leading/trailing '/')"
        ));
    };
    if let Some(bad) = component
        .chars()
        .find(|&c| !(is_path_alphanumeric(c) || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "repository path `{path}` contains `{bad}`; repository names may only use a-z, 0-9, '.', '_', '-' and '/'"
        ));
    }
    if !is_path_alphanumeric(char::from(first)) || !is_path_alphanumeric(char::from(last)) {
        return Err(format!(
            "repository path `{path}` has the component `{component}`, which must start and end with a-z or 0-9"
        ));
    }
    // Every maximal run of non-alphanumerics sits between alphanumerics, so it is one separator.
    component
        .split(is_path_alphanumeric)
        .filter(|run| !run.is_empty())
        .try_for_each(|run| check_separator(run, path))
}

/// `alpha-numeric` characters of a path component: `[a-z0-9]`.
fn is_path_alphanumeric(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `separator := [_.] | __ | [-]+`.
fn check_separator(run: &str, path: &str) -> Result<(), String> {
    let valid = matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "repository path `{path}` has the separator `{run}`; between letters/digits only '.', '_', '__' or a run of '-' is allowed"
        ))
    }
}

/// `tag := [\w][\w.-]{0,127}` where `\w` is `[A-Za-z0-9_]`.
fn check_tag(tag: &str) -> Result<(), String> {
    let Some(first) = tag.chars().next() else {
        return Err("the tag after ':' is empty; remove the ':' or write a tag".to_owned());
    };
    if let Some(bad) = tag
        .chars()
        .find(|&c| !(is_word_char(c) || matches!(c, '.' | '-')))
    {
        return Err(format!(
            "tag `{tag}` contains `{bad}`; tags may only use letters, digits, '_', '.' and '-'"
        ));
    }
    if !is_word_char(first) {
        return Err(format!(
            "tag `{tag}` must start with a letter, digit or '_'"
        ));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag `{tag}` is {} characters long, the limit is {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    Ok(())
}

/// `\w` in the tag grammar: `[A-Za-z0-9_]`.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `digest := algorithm ':' encoded`, restricted to sha256 (64 hex) and sha512 (128 hex),
/// lowercase only, because those are the only digests registries and this tool can verify.
fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(format!(
            "`{digest}` is not ALGORITHM:HEX; expected e.g. `sha256:` followed by 64 hex digits"
        ));
    };
    check_digest_algorithm(algorithm, digest)?;
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        other => {
            return Err(format!(
                "`{digest}` uses the algorithm `{other}`; only sha256 and sha512 are supported"
            ));
        }
    };
    check_digest_hex(encoded, expected_len, digest)
}

/// `algorithm := component ([-_+.] component)*` with `component := [A-Za-z][A-Za-z0-9]*`.
fn check_digest_algorithm(algorithm: &str, digest: &str) -> Result<(), String> {
    let valid = algorithm.split(['-', '_', '+', '.']).all(|component| {
        let mut chars = component.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric())
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{digest}` has the malformed algorithm `{algorithm}`; expected e.g. `sha256`"
        ))
    }
}

/// The encoded part: exactly `expected_len` lowercase hex digits.
fn check_digest_hex(encoded: &str, expected_len: usize, digest: &str) -> Result<(), String> {
    if let Some(bad) = encoded
        .chars()
        .find(|&c| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        let hint = if is_uppercase_hex(bad) {
            "hex digits must be lowercase"
        } else {
            "only hex digits 0-9 and a-f may follow the algorithm"
        };
        return Err(format!("`{digest}` contains `{bad}`; {hint}"));
    }
    if encoded.len() != expected_len {
        return Err(format!(
            "`{digest}` has {} hex digits, expected {expected_len}",
            encoded.len()
        ));
    }
    Ok(())
}

/// True for `A`-`F`, which upstream's `[[:xdigit:]]` accepts but canonical digests never use.
fn is_uppercase_hex(c: char) -> bool {
    matches!(c, 'A'..='F')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 lowercase hex digits, usable inside `concat!`.
    macro_rules! hex64 {
        () => {
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        };
    }

    const HEX64: &str = hex64!();
    const SHA256: &str = concat!("sha256:", hex64!());
    const SHA512: &str = concat!("sha512:", hex64!(), hex64!());

    /// (input, canonical, domain, path, tag, digest, familiar)
    type Accepted = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );

    const ACCEPTED: &[Accepted] = &[
        (
            "busybox",
            "docker.io/library/busybox:latest",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
            "busybox:latest",
        ),
        (
            "test.com:tag",
            "docker.io/library/test.com:tag",
            "docker.io",
            "library/test.com",
            Some("tag"),
            None,
            "test.com:tag",
        ),
        // host:port without a path is a Docker Hub repository with a numeric tag.
        (
            "test.com:5000",
            "docker.io/library/test.com:5000",
            "docker.io",
            "library/test.com",
            Some("5000"),
            None,
            "test.com:5000",
        ),
        (
            "test:5000/repo",
            "test:5000/repo:latest",
            "test:5000",
            "repo",
            Some("latest"),
            None,
            "test:5000/repo:latest",
        ),
        (
            "localhost/foo",
            "localhost/foo:latest",
            "localhost",
            "foo",
            Some("latest"),
            None,
            "localhost/foo:latest",
        ),
        // A bare `localhost` is a repository, not a registry.
        (
            "localhost",
            "docker.io/library/localhost:latest",
            "docker.io",
            "library/localhost",
            Some("latest"),
            None,
            "localhost:latest",
        ),
        (
            "lowercase:Uppercase",
            "docker.io/library/lowercase:Uppercase",
            "docker.io",
            "library/lowercase",
            Some("Uppercase"),
            None,
            "lowercase:Uppercase",
        ),
        (
            "foo/foo_bar.com:8080",
            "docker.io/foo/foo_bar.com:8080",
            "docker.io",
            "foo/foo_bar.com",
            Some("8080"),
            None,
            "foo/foo_bar.com:8080",
        ),
        (
            "index.docker.io/user/x",
            "docker.io/user/x:latest",
            "docker.io",
            "user/x",
            Some("latest"),
            None,
            "user/x:latest",
        ),
        (
            "index.docker.io/busybox",
            "docker.io/library/busybox:latest",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
            "busybox:latest",
        ),
        (
            "docker.io/busybox:1.36",
            "docker.io/library/busybox:1.36",
            "docker.io",
            "library/busybox",
            Some("1.36"),
            None,
            "busybox:1.36",
        ),
        // `library/` is only dropped from the familiar form when nothing follows it.
        (
            "docker.io/library/foo/bar",
            "docker.io/library/foo/bar:latest",
            "docker.io",
            "library/foo/bar",
            Some("latest"),
            None,
            "library/foo/bar:latest",
        ),
        (
            "user/repo",
            "docker.io/user/repo:latest",
            "docker.io",
            "user/repo",
            Some("latest"),
            None,
            "user/repo:latest",
        ),
        (
            "[::1]:5000/x",
            "[::1]:5000/x:latest",
            "[::1]:5000",
            "x",
            Some("latest"),
            None,
            "[::1]:5000/x:latest",
        ),
        (
            "[2001:DB8::1]/x/y",
            "[2001:DB8::1]/x/y:latest",
            "[2001:DB8::1]",
            "x/y",
            Some("latest"),
            None,
            "[2001:DB8::1]/x/y:latest",
        ),
        (
            "127.0.0.1:5000/test/big:v1",
            "127.0.0.1:5000/test/big:v1",
            "127.0.0.1:5000",
            "test/big",
            Some("v1"),
            None,
            "127.0.0.1:5000/test/big:v1",
        ),
        // An uppercase first component is a registry host (new distribution/reference).
        (
            "Registry/app",
            "Registry/app:latest",
            "Registry",
            "app",
            Some("latest"),
            None,
            "Registry/app:latest",
        ),
        (
            "my-reg.example.com/a__b/c--d/e.f_g-h",
            "my-reg.example.com/a__b/c--d/e.f_g-h:latest",
            "my-reg.example.com",
            "a__b/c--d/e.f_g-h",
            Some("latest"),
            None,
            "my-reg.example.com/a__b/c--d/e.f_g-h:latest",
        ),
        (
            "busybox:_x.Y-z",
            "docker.io/library/busybox:_x.Y-z",
            "docker.io",
            "library/busybox",
            Some("_x.Y-z"),
            None,
            "busybox:_x.Y-z",
        ),
        // A digest alone gets no default tag.
        (
            concat!("busybox@sha256:", hex64!()),
            concat!("docker.io/library/busybox@sha256:", hex64!()),
            "docker.io",
            "library/busybox",
            None,
            Some(SHA256),
            concat!("busybox@sha256:", hex64!()),
        ),
        // Tag and digest are both kept.
        (
            concat!("busybox:1.36@sha256:", hex64!()),
            concat!("docker.io/library/busybox:1.36@sha256:", hex64!()),
            "docker.io",
            "library/busybox",
            Some("1.36"),
            Some(SHA256),
            concat!("busybox:1.36@sha256:", hex64!()),
        ),
        (
            concat!("reg.example.com/a/b@sha512:", hex64!(), hex64!()),
            concat!("reg.example.com/a/b@sha512:", hex64!(), hex64!()),
            "reg.example.com",
            "a/b",
            None,
            Some(SHA512),
            concat!("reg.example.com/a/b@sha512:", hex64!(), hex64!()),
        ),
    ];

    #[test]
    fn accepted_references_normalise_as_upstream() {
        for &(input, canonical, domain, path, tag, digest, familiar) in ACCEPTED {
            let reference = Reference::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse, got: {e}"));
            assert_eq!(reference.to_string(), canonical, "canonical of {input:?}");
            assert_eq!(reference.domain(), domain, "domain of {input:?}");
            assert_eq!(reference.path(), path, "path of {input:?}");
            assert_eq!(reference.tag(), tag, "tag of {input:?}");
            assert_eq!(reference.digest(), digest, "digest of {input:?}");
            assert_eq!(reference.familiar(), familiar, "familiar of {input:?}");
            assert_eq!(reference.repository(), format!("{domain}/{path}"));
            // Both printed forms parse back to the same reference.
            assert_eq!(Reference::parse(canonical), Ok(reference.clone()));
            assert_eq!(familiar.parse::<Reference>(), Ok(reference));
        }
    }

    /// Which [`ReferenceError`] variant a rejection produced.
    #[derive(Debug, PartialEq)]
    enum Kind {
        Empty,
        ImageId,
        Uppercase,
        Format,
        TooLong,
        Tag,
        Digest,
    }

    fn kind(error: &ReferenceError) -> Kind {
        match error {
            ReferenceError::Empty => Kind::Empty,
            ReferenceError::ImageId(_) => Kind::ImageId,
            ReferenceError::Uppercase { .. } => Kind::Uppercase,
            ReferenceError::InvalidFormat { .. } => Kind::Format,
            ReferenceError::NameTooLong { .. } => Kind::TooLong,
            ReferenceError::InvalidTag { .. } => Kind::Tag,
            ReferenceError::InvalidDigest { .. } => Kind::Digest,
        }
    }

    #[test]
    fn rejected_references_name_the_problem() {
        let cases: Vec<(String, Kind)> = vec![
            (String::new(), Kind::Empty),
            (HEX64.to_owned(), Kind::ImageId),
            ("UPPERCASE".to_owned(), Kind::Uppercase),
            ("user/Repo".to_owned(), Kind::Uppercase),
            ("docker.io/Library/alpine".to_owned(), Kind::Uppercase),
            ("busybox:".to_owned(), Kind::Tag),
            ("busybox:ta!g".to_owned(), Kind::Tag),
            ("busybox:.tag".to_owned(), Kind::Tag),
            ("busybox:-tag".to_owned(), Kind::Tag),
            (
                format!("busybox:{}", "t".repeat(MAX_TAG_LEN + 1)),
                Kind::Tag,
            ),
            ("foo//bar".to_owned(), Kind::Format),
            ("/foo".to_owned(), Kind::Format),
            ("foo/".to_owned(), Kind::Format),
            ("reg.io/".to_owned(), Kind::Format),
            ("reg.io/:tag".to_owned(), Kind::Format),
            ("-foo".to_owned(), Kind::Format),
            ("foo-".to_owned(), Kind::Format),
            ("a___b".to_owned(), Kind::Format),
            ("a._b".to_owned(), Kind::Format),
            ("a-_b".to_owned(), Kind::Format),
            ("a..b".to_owned(), Kind::Format),
            ("foo bar".to_owned(), Kind::Format),
            ("héllo".to_owned(), Kind::Format),
            ("a_b.com/x".to_owned(), Kind::Format),
            ("-reg.com/x".to_owned(), Kind::Format),
            ("reg..com/x".to_owned(), Kind::Format),
            ("localhost:/x".to_owned(), Kind::Format),
            ("host:port/x".to_owned(), Kind::Format),
            ("host:50:00/x".to_owned(), Kind::Format),
            ("[::1/x".to_owned(), Kind::Format),
            ("[]:5000/x".to_owned(), Kind::Format),
            ("[::g]/x".to_owned(), Kind::Format),
            ("[::1]5000/x".to_owned(), Kind::Format),
            (
                format!("r.io/team/{}", "a".repeat(MAX_PATH_LEN - 4)),
                Kind::TooLong,
            ),
            ("busybox@".to_owned(), Kind::Digest),
            ("busybox@sha256".to_owned(), Kind::Digest),
            ("busybox@sha256:abc".to_owned(), Kind::Digest),
            (
                format!("busybox@sha256:{}", HEX64.to_uppercase()),
                Kind::Digest,
            ),
            (format!("busybox@SHA256:{HEX64}"), Kind::Digest),
            (format!("busybox@md5:{HEX64}"), Kind::Digest),
            (format!("busybox@sha512:{HEX64}"), Kind::Digest),
            (format!("busybox@{SHA256}0"), Kind::Digest),
            (format!("busybox@{SHA256}@x"), Kind::Digest),
            (format!("busybox@1sha:{HEX64}"), Kind::Digest),
        ];
        for (input, expected) in cases {
            let error = Reference::parse(&input).expect_err(&format!("{input:?} must be rejected"));
            assert_eq!(kind(&error), expected, "{input:?}: {error}");
            if !input.is_empty() {
                assert!(
                    error.to_string().contains(&input),
                    "{error} should name {input:?}"
                );
            }
        }
    }

    #[test]
    fn length_limits_are_inclusive() {
        let max_path = format!("r.io/team/{}", "a".repeat(MAX_PATH_LEN - 5));
        assert!(Reference::parse(&max_path).is_ok());
        // Docker Hub's implied library/ prefix counts towards the path limit.
        let unprefixed_max = "a".repeat(MAX_PATH_LEN - OFFICIAL_REPO_PREFIX.len());
        assert!(Reference::parse(&unprefixed_max).is_ok());
        let too_long = format!("{unprefixed_max}a");
        assert_eq!(
            Reference::parse(&too_long),
            Err(ReferenceError::NameTooLong {
                input: too_long.clone(),
                length: MAX_PATH_LEN + 1,
            })
        );
        let max_tag = "t".repeat(MAX_TAG_LEN);
        let reference = Reference::parse(&format!("busybox:{max_tag}")).expect("128-char tag");
        assert_eq!(reference.tag(), Some(max_tag.as_str()));
    }

    #[test]
    fn error_messages_are_specific() {
        let error = Reference::parse("foo//bar").expect_err("empty component");
        assert_eq!(
            error.to_string(),
            "invalid image reference `foo//bar`: repository path `foo//bar` has an empty component (check for '//' or a leading/trailing '/')"
        );
        assert_eq!(
            Reference::parse("busybox:"),
            Err(ReferenceError::InvalidTag {
                input: "busybox:".to_owned(),
                tag: String::new(),
                reason: "the tag after ':' is empty; remove the ':' or write a tag".to_owned(),
            })
        );
        let upper = format!("busybox@sha256:{}", HEX64.to_uppercase());
        let error = Reference::parse(&upper).expect_err("uppercase hex");
        assert!(
            error.to_string().contains("hex digits must be lowercase"),
            "{error}"
        );
        let error = Reference::parse(HEX64).expect_err("image id");
        assert!(error.to_string().contains("NAME@sha256:"), "{error}");
    }

    #[test]
    fn api_host_maps_docker_hub_only() {
        let cases = [
            ("busybox", "registry-1.docker.io"),
            ("index.docker.io/user/x", "registry-1.docker.io"),
            ("127.0.0.1:5000/test/big:v1", "127.0.0.1:5000"),
            ("localhost/foo", "localhost"),
            ("[::1]:5000/x", "[::1]:5000"),
        ];
        for (input, host) in cases {
            let reference = Reference::parse(input).expect("valid test reference");
            assert_eq!(reference.api_host(), host, "{input}");
        }
    }

    #[test]
    fn tag_or_digest_prefers_the_digest() {
        let cases = [
            ("busybox".to_owned(), "latest"),
            ("busybox:1.36".to_owned(), "1.36"),
            (format!("busybox@{SHA256}"), SHA256),
            (format!("busybox:1.36@{SHA256}"), SHA256),
        ];
        for (input, expected) in cases {
            let reference = Reference::parse(&input).expect("valid test reference");
            assert_eq!(reference.tag_or_digest(), expected, "{input}");
        }
    }

    #[test]
    fn with_digest_keeps_repository_and_tag() {
        let reference = Reference::parse("busybox:1.36").expect("valid test reference");
        let pinned = reference.with_digest(SHA256);
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/busybox:1.36@{SHA256}")
        );
        assert_eq!(pinned.tag(), Some("1.36"));
        assert_eq!(pinned.tag_or_digest(), SHA256);
        let repinned = pinned.with_digest(SHA512);
        assert_eq!(repinned.digest(), Some(SHA512));
        assert_eq!(repinned.repository(), reference.repository());
        assert_eq!(repinned.tag(), Some("1.36"));
    }

    #[test]
    fn is_name_only_ignores_the_port() {
        let cases = [
            ("busybox", true),
            ("docker.io/library/busybox", true),
            ("127.0.0.1:5000/test/img", true),
            ("localhost:5000/x", true),
            ("[::1]:5000/x", true),
            ("busybox:latest", false),
            ("test.com:5000", false),
            ("127.0.0.1:5000/test/img:v1", false),
            ("[::1]:5000/x:v1", false),
            (concat!("busybox@sha256:", hex64!()), false),
            (concat!("localhost:5000/x@sha256:", hex64!()), false),
        ];
        for (input, expected) in cases {
            assert!(
                Reference::parse(input).is_ok(),
                "{input} is a valid test input"
            );
            assert_eq!(is_name_only(input), expected, "{input}");
        }
    }

    #[test]
    fn validate_digest_accepts_only_canonical_digests() {
        assert_eq!(validate_digest(SHA256), Ok(()));
        assert_eq!(validate_digest(SHA512), Ok(()));
        for bad in ["", "sha256:", "sha384:abc", HEX64, "sha256:zz"] {
            assert!(validate_digest(bad).is_err(), "{bad:?}");
        }
    }
}
