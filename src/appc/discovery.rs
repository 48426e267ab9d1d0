//! appc name discovery: from an image name and labels to the URLs of its ACI, its signature
//! and its signing keys (specs/appc.md §1, following appc/spec `discovery` exactly).
//!
//! Rules:
//! - **Levels.** The name is tried first, then each parent path, longest first (`a/b/c`, `a/b`,
//!   `a`), at `https://LEVEL?ac-discovery=1`. Plain HTTP is tried for a level only after its
//!   HTTPS request missed (transport error or any status but 200), and only when the caller
//!   allows HTTP for that host; a 200 page is never retried over HTTP.
//! - **Tags.** Every `<meta name="ac-discovery" | "ac-discovery-pubkeys" content="PREFIX URL">`
//!   anywhere in the document counts, in document order. A tag applies to a name when PREFIX is
//!   a plain string prefix of it (`example.com/foo` also covers `example.com/foobar`).
//! - **Rendering.** In an `ac-discovery` template, `{name}` becomes the image name, `{LABEL}` the
//!   label's value (with `version=latest` when no version is given) and `{ext}` becomes `aci`
//!   or `aci.asc`, verbatim and without URL escaping. A template that still contains `{…}`
//!   afterwards is skipped; labels a template does not mention are ignored.
//!   `ac-discovery-pubkeys` URLs are literal.
//! - **Hits.** The endpoint walk stops at the first level whose page renders at least one
//!   template, the key walk at the first level with at least one matching key URL. Parent levels
//!   are never merged in, and the two walks are independent, so they may stop at different levels.
//! - **Choosing.** Every rendered endpoint is kept, in document order, whatever its scheme
//!   (`hdfs://` included, as the spec allows). [`first_fetchable`] picks the first one that is
//!   HTTPS, or HTTP where the caller allows it for that host: the first renderable template in
//!   document order wins, among those we can download.
//!
//! Parsing and rendering are pure functions over bytes and strings. The walks do no I/O of their
//! own: the caller passes a `fetch` function that performs the request (redirects, timeouts,
//! per-host headers, body limits) and reports a [`Page`].

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context as _;
use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
use html5gum::{Span, Tokenizer};

use crate::oci::registry::{RegistryClient, RegistryError};

/// The `name` of a meta tag carrying an ACI URL template.
const DISCOVERY_META: &str = "ac-discovery";
/// The `name` of a meta tag carrying a public-key URL.
const PUBKEYS_META: &str = "ac-discovery-pubkeys";
/// The version templates are rendered with when none is asked for (appc `defaultVersion`).
const DEFAULT_VERSION: &str = "latest";
/// `{ext}` for the image itself.
const ACI_EXT: &str = "aci";
/// `{ext}` for the detached signature.
const ASC_EXT: &str = "aci.asc";

/// Which kind of discovery meta tag a [`Meta`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// `ac-discovery`: the URL is a template for the ACI and its signature.
    Discovery,
    /// `ac-discovery-pubkeys`: the URL is a literal public-key URL.
    Pubkeys,
}

/// A discovery meta tag found on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Which tag it is.
    pub kind: MetaKind,
    /// The names it applies to: those that start with this string.
    pub prefix: String,
    /// The URL template (`Discovery`) or the literal key URL (`Pubkeys`), entity-decoded.
    pub url: String,
}

/// Every discovery meta tag in an HTML document, in document order.
///
/// As appc's `extractACMeta` (spec §1.3): any `<meta>` start or self-closing tag counts, wherever
/// it is (not only in `<head>`); `name` must be exactly `ac-discovery` or `ac-discovery-pubkeys`
/// (case-sensitive); `content` is trimmed and split at the first space, and the URL part trimmed
/// again, so a tab separator drops the tag and several spaces are fine; a tag with an empty
/// prefix or URL is dropped; when an attribute repeats, the last one wins. Attribute names are
/// lowercased and values entity-decoded by the tokenizer. Text inside `<script>`, `<style>`,
/// `<title>`, `<textarea>` and comments is not markup, as for Go's tokenizer.
pub fn parse_meta(html: &[u8]) -> Vec<Meta> {
    let mut tag = MetaTagState::default();
    let mut emitter =
        CallbackEmitter::new(move |event: CallbackEvent<'_>, _: Span<()>| tag.handle(event));
    // Switch to raw-text states after <script>, <title>, ... so their contents are not parsed
    // as tags.
    emitter.naively_switch_states(true);
    // Reading a byte slice cannot fail: the reader's error type is `Infallible`.
    let Ok(metas) = Tokenizer::new_with_emitter(html, emitter).collect::<Result<Vec<Meta>, _>>();
    metas
}

/// Which attribute of the open tag the next attribute-value event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaAttr {
    Name,
    Content,
    Other,
}

/// Tokenizer events of the start tag being read, reduced to what a discovery tag needs.
#[derive(Debug, Default)]
struct MetaTagState {
    /// Inside a `<meta` start tag, before its `>`.
    in_meta: bool,
    current: Option<MetaAttr>,
    name: Vec<u8>,
    content: Option<Vec<u8>>,
}

impl MetaTagState {
    fn handle(&mut self, event: CallbackEvent<'_>) -> Option<Meta> {
        match event {
            CallbackEvent::OpenStartTag { name } => {
                *self = MetaTagState {
                    in_meta: name == b"meta",
                    ..MetaTagState::default()
                };
                None
            }
            // End tags may carry (invalid) attributes; `in_meta` is false then, so they are
            // ignored.
            CallbackEvent::AttributeName { name } if self.in_meta => {
                // A repeated attribute starts over: the last one wins.
                let attr = match name {
                    b"name" => {
                        self.name.clear();
                        MetaAttr::Name
                    }
                    b"content" => {
                        self.content = Some(Vec::new());
                        MetaAttr::Content
                    }
                    _ => MetaAttr::Other,
                };
                self.current = Some(attr);
                None
            }
            CallbackEvent::AttributeValue { value } if self.in_meta => {
                match self.current {
                    Some(MetaAttr::Name) => self.name.extend_from_slice(value),
                    Some(MetaAttr::Content) => {
                        self.content
                            .get_or_insert_default()
                            .extend_from_slice(value);
                    }
                    Some(MetaAttr::Other) | None => {}
                }
                None
            }
            CallbackEvent::CloseStartTag { .. } if self.in_meta => {
                let state = std::mem::take(self);
                state.into_meta()
            }
            CallbackEvent::CloseStartTag { .. } | CallbackEvent::EndTag { .. } => {
                *self = MetaTagState::default();
                None
            }
            _ => None,
        }
    }

    fn into_meta(self) -> Option<Meta> {
        let kind = if self.name == DISCOVERY_META.as_bytes() {
            MetaKind::Discovery
        } else if self.name == PUBKEYS_META.as_bytes() {
            MetaKind::Pubkeys
        } else {
            return None;
        };
        let content = String::from_utf8_lossy(&self.content?).into_owned();
        let (prefix, url) = content.trim().split_once(' ')?;
        let url = url.trim();
        if prefix.is_empty() || url.is_empty() {
            return None;
        }
        Some(Meta {
            kind,
            prefix: prefix.to_owned(),
            url: url.to_owned(),
        })
    }
}

/// Where an image and its signature can be downloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The ACI URL (the template with `{ext}` = `aci`).
    pub aci: String,
    /// The detached signature URL (`{ext}` = `aci.asc`).
    pub asc: String,
}

/// A template that applied to the name but could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SkippedTemplate {
    template: String,
    /// The `{…}` left after substitution, in order.
    unfilled: Vec<String>,
}

/// Renders every `ac-discovery` template whose prefix is a string prefix of `name`, in document
/// order, skipping those that leave a `{…}` (see the module doc for the substitution rules).
pub fn render_endpoints(
    name: &str,
    labels: &BTreeMap<String, String>,
    metas: &[Meta],
) -> Vec<Endpoint> {
    render_all(name, labels, metas).0
}

/// The rendered endpoints, and the matching templates that could not be rendered.
fn render_all(
    name: &str,
    labels: &BTreeMap<String, String>,
    metas: &[Meta],
) -> (Vec<Endpoint>, Vec<SkippedTemplate>) {
    let vars = template_vars(name, labels);
    let mut endpoints = Vec::new();
    let mut skipped = Vec::new();
    for meta in matching(name, metas, MetaKind::Discovery) {
        let aci = fill(&meta.url, &vars, ACI_EXT);
        let unfilled = leftover_placeholders(&aci);
        if unfilled.is_empty() {
            let asc = fill(&meta.url, &vars, ASC_EXT);
            endpoints.push(Endpoint { aci, asc });
        } else {
            skipped.push(SkippedTemplate {
                template: meta.url.clone(),
                unfilled: unfilled.into_iter().map(str::to_owned).collect(),
            });
        }
    }
    (endpoints, skipped)
}

/// The tags of one kind that apply to `name` (plain string prefix, as `strings.HasPrefix`).
fn matching<'a>(
    name: &'a str,
    metas: &'a [Meta],
    kind: MetaKind,
) -> impl Iterator<Item = &'a Meta> + 'a {
    metas
        .iter()
        .filter(move |meta| meta.kind == kind && name.starts_with(&meta.prefix))
}

/// The `{var}` tokens a template may use, except `{ext}`, with their values.
///
/// `{name}` is always the image name: a label called `name` would never take effect in the
/// reference either (it substitutes `{name}` first). A label called `ext` is left out so it
/// cannot make the ACI and signature URLs the same; [`check_labels`] refuses both.
fn template_vars<'a>(
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> Vec<(String, &'a str)> {
    let mut vars = vec![("{name}".to_owned(), name)];
    for (label, value) in labels {
        if label == "name" || label == "ext" || (label == "version" && value.is_empty()) {
            continue;
        }
        vars.push((format!("{{{label}}}"), value.as_str()));
    }
    if labels.get("version").is_none_or(|v| v.is_empty()) {
        vars.push(("{version}".to_owned(), DEFAULT_VERSION));
    }
    vars
}

/// Replaces each `{var}` of `template` once, scanning left to right, so inserted values are
/// never scanned again. For values without braces this equals the reference's sequential
/// `strings.Replace` per variable, and unlike it does not depend on map order.
fn fill(template: &str, vars: &[(String, &str)], ext: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("{ext}") {
            out.push_str(ext);
            rest = after;
        } else if let Some((token, value)) = vars.iter().find(|(t, _)| rest.starts_with(t.as_str()))
        {
            out.push_str(value);
            rest = &rest[token.len()..];
        } else {
            out.push('{');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The `{…}` left in a rendered URL, as the reference's regex `{.*?}` finds them (`.` does not
/// match a newline).
fn leftover_placeholders(url: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut start = 0;
    while let Some(open) = url[start..].find('{').map(|i| start + i) {
        let inner = &url[open + 1..];
        match inner.find(['}', '\n']) {
            Some(end) if inner[end..].starts_with('}') => {
                let close = open + 1 + end;
                found.push(&url[open..=close]);
                start = close + 1;
            }
            _ => start = open + 1,
        }
    }
    found
}

/// The `ac-discovery-pubkeys` URLs whose prefix is a string prefix of `name`, verbatim, in
/// document order.
pub fn pubkey_urls(name: &str, metas: &[Meta]) -> Vec<String> {
    matching(name, metas, MetaKind::Pubkeys)
        .map(|meta| meta.url.clone())
        .collect()
}

/// The levels discovery tries for `name`, longest first: `a/b/c`, `a/b`, `a`.
pub fn levels(name: &str) -> Vec<&str> {
    std::iter::once(name)
        .chain(name.rmatch_indices('/').map(|(slash, _)| &name[..slash]))
        .collect()
}

/// The scheme a discovery page is requested with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Always tried first.
    Https,
    /// Tried after an HTTPS miss, only for hosts the caller allows.
    Http,
}

impl Scheme {
    /// `https` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// The discovery URL of one level: `SCHEME://LEVEL?ac-discovery=1`.
///
/// A bare host gives `https://host?ac-discovery=1`, as in the reference; URL parsers read its
/// path as `/`.
pub fn discovery_url(level: &str, scheme: Scheme) -> String {
    format!("{}://{level}?ac-discovery=1", scheme.as_str())
}

pub use crate::appc::aci::is_ac_identifier;

/// Checks labels before discovery: names are AC Identifiers other than `name` and `ext`, values
/// are non-empty and brace-free.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), DiscoveryError> {
    for (label, value) in labels {
        let reason = if !is_ac_identifier(label) {
            "a label name must be an AC Identifier: lowercase letters and digits separated by \
             single `-`, `.`, `_`, `~` or `/`, e.g. `version`, `os`, `arch`"
                .to_owned()
        } else if label == "name" {
            "`name` cannot be a label: `{name}` in a discovery template is always the image name, \
             and ACI manifests forbid a label called `name`; remove it"
                .to_owned()
        } else if label == "ext" {
            "`ext` cannot be a label: `{ext}` in a discovery template is the file extension \
             (`aci` or `aci.asc`), and a label would make the image and signature URLs the same; \
             remove it"
                .to_owned()
        } else if value.is_empty() {
            "the value is empty; give a value, or remove the label to accept any".to_owned()
        } else if value.contains(['{', '}']) {
            format!(
                "the value `{value}` contains a brace, which would leave a `{{…}}` in every URL \
                 it fills in, and discovery skips such URLs"
            )
        } else {
            continue;
        };
        return Err(DiscoveryError::BadLabel {
            label: label.clone(),
            reason,
        });
    }
    Ok(())
}

/// Whether an ACI URL can be downloaded: HTTPS always, HTTP when `allow_http` allows its host.
fn is_fetchable(url: &str, allow_http: &impl Fn(&str) -> bool) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        allow_http(url_host(rest))
    } else {
        false
    }
}

/// The `host[:port]` of the part of a URL after `scheme://`, without any `user@`.
fn url_host(after_scheme: &str) -> &str {
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or(after_scheme);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// The endpoint to download: the first with an `https` ACI URL, or an `http` one whose
/// `host[:port]` `allow_http` accepts. Other schemes (`hdfs://`) are passed over.
pub fn first_fetchable(
    endpoints: &[Endpoint],
    allow_http: impl Fn(&str) -> bool,
) -> Option<&Endpoint> {
    endpoints
        .iter()
        .find(|endpoint| is_fetchable(&endpoint.aci, &allow_http))
}

/// The outcome of fetching one discovery page, as reported by the caller's `fetch`.
///
/// `Ok` means status 200 after following redirects; any other status and any transport error is
/// a `Miss`. The caller bounds the body size and the redirect count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// The page, with the URL it was finally served from.
    Ok {
        /// The final URL, after redirects.
        url: String,
        /// The response body.
        body: Vec<u8>,
    },
    /// Nothing usable at this URL.
    Miss {
        /// The URL that missed (the final one, if redirected).
        url: String,
        /// Why, for the user: `404 Not Found`, `connection refused`, `too many redirects`, ...
        reason: String,
    },
}

/// What a discovery walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered<T> {
    /// The level whose page answered, e.g. `example.com/app` or `example.com`.
    pub level: String,
    /// The URL of that page, after redirects.
    pub url: String,
    /// The endpoints or key URLs from that page only, in document order; never empty.
    pub found: Vec<T>,
}

/// One discovery request that did not give what was wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The URL requested.
    pub url: String,
    /// Why it missed.
    pub reason: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The reason quotes the page (its tags' prefixes and templates) and the server.
        write!(
            f,
            "{}: {}",
            crate::text::escape(&self.url),
            crate::text::escape(&self.reason)
        )
    }
}

/// What a discovery walk looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// ACI and signature URLs, from `ac-discovery` templates.
    Endpoints,
    /// Public-key URLs, from `ac-discovery-pubkeys`.
    Pubkeys,
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wanted::Endpoints => "ACI download URLs",
            Wanted::Pubkeys => "public key URLs",
        })
    }
}

/// Why discovery failed; every variant names the image, label or URLs involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The name is not an AC Identifier; nothing was requested.
    #[error(
        "`{}` is not a valid appc image name: use lowercase letters and digits separated by single `-`, `.`, `_`, `~` or `/`, e.g. `example.com/app`",
        crate::text::escape(.name)
    )]
    BadName {
        /// The name as given.
        name: String,
    },
    /// A label cannot be used for discovery; nothing was requested.
    #[error("label `{}`: {reason}", crate::text::escape(.label))]
    BadLabel {
        /// The label's name.
        label: String,
        /// What is wrong and what to do, in words.
        reason: String,
    },
    /// No level gave what was wanted.
    #[error("appc discovery found no {wanted} for `{name}`; tried:{}", list_attempts(.attempts))]
    NotFound {
        /// The image name.
        name: String,
        /// What the walk looked for.
        wanted: Wanted,
        /// Every request made, in order, with why it missed.
        attempts: Vec<Attempt>,
    },
}

fn list_attempts(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|attempt| format!("\n    {attempt}"))
        .collect()
}

/// Finds where to download `name`: walks up its levels calling `fetch(url)` (HTTPS first, HTTP
/// after an HTTPS miss where `allow_http(host)` says so) and stops at the first page that renders
/// at least one endpoint.
pub async fn discover_endpoints<F, Fut>(
    name: &str,
    labels: &BTreeMap<String, String>,
    allow_http: impl Fn(&str) -> bool,
    fetch: F,
) -> Result<Discovered<Endpoint>, DiscoveryError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Page>,
{
    check_name(name)?;
    check_labels(labels)?;
    walk(name, Wanted::Endpoints, allow_http, fetch, |metas| {
        let (endpoints, skipped) = render_all(name, labels, metas);
        if endpoints.is_empty() {
            Err(endpoints_miss_reason(name, metas, &skipped))
        } else {
            Ok(endpoints)
        }
    })
    .await
}

/// Finds the key URLs for `name`: the same walk as [`discover_endpoints`], stopping at the first
/// page with at least one matching `ac-discovery-pubkeys` tag.
pub async fn discover_pubkeys<F, Fut>(
    name: &str,
    allow_http: impl Fn(&str) -> bool,
    fetch: F,
) -> Result<Discovered<String>, DiscoveryError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Page>,
{
    check_name(name)?;
    walk(name, Wanted::Pubkeys, allow_http, fetch, |metas| {
        let urls = pubkey_urls(name, metas);
        if urls.is_empty() {
            Err(no_matching_tag_reason(name, metas, MetaKind::Pubkeys))
        } else {
            Ok(urls)
        }
    })
    .await
}

fn check_name(name: &str) -> Result<(), DiscoveryError> {
    if is_ac_identifier(name) {
        Ok(())
    } else {
        Err(DiscoveryError::BadName {
            name: name.to_owned(),
        })
    }
}

/// The walk both discoveries share; `extract` turns a page's tags into the wanted items, or
/// says why there are none.
async fn walk<T, F, Fut>(
    name: &str,
    wanted: Wanted,
    allow_http: impl Fn(&str) -> bool,
    fetch: F,
    extract: impl Fn(&[Meta]) -> Result<Vec<T>, String>,
) -> Result<Discovered<T>, DiscoveryError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Page>,
{
    let mut attempts = Vec::new();
    for level in levels(name) {
        let host = level.split('/').next().unwrap_or(level);
        for scheme in [Scheme::Https, Scheme::Http] {
            if scheme == Scheme::Http && !allow_http(host) {
                break;
            }
            let url = discovery_url(level, scheme);
            match fetch(url.clone()).await {
                Page::Miss {
                    url: missed,
                    reason,
                } => {
                    let reason = if missed == url {
                        reason
                    } else {
                        format!("redirected to {missed}: {reason}")
                    };
                    attempts.push(Attempt { url, reason });
                }
                Page::Ok { url: served, body } => {
                    match extract(&parse_meta(&body)) {
                        Ok(found) => {
                            return Ok(Discovered {
                                level: level.to_owned(),
                                url: served,
                                found,
                            });
                        }
                        Err(reason) => {
                            let reason = if served == url {
                                reason
                            } else {
                                format!("redirected to {served}: {reason}")
                            };
                            attempts.push(Attempt { url, reason });
                        }
                    }
                    // The server answered: the reference does not retry a 200 page over HTTP.
                    break;
                }
            }
        }
    }
    Err(DiscoveryError::NotFound {
        name: name.to_owned(),
        wanted,
        attempts,
    })
}

/// Why a 200 page gave no endpoint: no tag, no tag for this name, or no template filled in.
fn endpoints_miss_reason(name: &str, metas: &[Meta], skipped: &[SkippedTemplate]) -> String {
    if skipped.is_empty() {
        return no_matching_tag_reason(name, metas, MetaKind::Discovery);
    }
    let templates: Vec<String> = skipped
        .iter()
        .map(|skip| format!("`{}` needs {}", skip.template, skip.unfilled.join(", ")))
        .collect();
    format!(
        "no {DISCOVERY_META} template could be filled in ({}); a `{{label}}` is filled from the \
         label of that name, so add the missing labels",
        templates.join("; ")
    )
}

/// Why a 200 page had no tag of `kind` for `name`.
fn no_matching_tag_reason(name: &str, metas: &[Meta], kind: MetaKind) -> String {
    let tag = match kind {
        MetaKind::Discovery => DISCOVERY_META,
        MetaKind::Pubkeys => PUBKEYS_META,
    };
    let prefixes: Vec<String> = metas
        .iter()
        .filter(|meta| meta.kind == kind)
        .map(|meta| format!("`{}`", meta.prefix))
        .collect();
    if prefixes.is_empty() {
        format!("no {tag} meta tag on the page")
    } else {
        format!(
            "no {tag} meta tag for `{name}` (the page's tags are for {})",
            prefixes.join(", ")
        )
    }
}

/// Finds the keys a prefix publishes through appc discovery (`ac-discovery-pubkeys`)
/// and downloads them. Plain HTTP only for hosts the manifest allows.
pub async fn discover_keys(
    manifest: &crate::project::manifest::Manifest,
    prefix: &str,
    client: &std::sync::Arc<RegistryClient>,
) -> anyhow::Result<Vec<(String, crate::signing::openpgp::PublicKey)>> {
    let name = prefix.trim_end_matches('/');
    let allow_http = |host: &str| manifest.insecure_http(host);
    let fetch = page_fetcher(client.clone());
    let found = discover_pubkeys(name, allow_http, fetch).await?;
    let mut keys = Vec::new();
    for url in &found.found {
        // The client refuses plain HTTP to hosts the manifest does not name.
        let bytes = client
            .get_url_capped(url, crate::signing::trust::MAX_KEY_BYTES)
            .await
            .with_context(|| format!("cannot fetch the keys `{name}` publishes at {url}"))
            .map_err(|e| {
                crate::errors::with_hint(
                    e,
                    "or download the key yourself, check its fingerprint with the publisher, and use `--key FILE`",
                )
            })?;
        let parsed = crate::signing::openpgp::parse_public_keys(&bytes)
            .with_context(|| format!("{url} does not hold OpenPGP public keys"))?;
        keys.extend(parsed.into_iter().map(|k| (url.clone(), k)));
    }
    if keys.is_empty() {
        anyhow::bail!("discovery of `{name}` found key URLs but no keys in them");
    }
    Ok(keys)
}

/// Fetches discovery pages with `client` for this module's walks (appc
/// names, and `trust add --discover`).
pub fn page_fetcher(
    client: std::sync::Arc<RegistryClient>,
) -> impl Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Page> + Send>> + Clone {
    move |url: String| {
        let client = client.clone();
        Box::pin(async move {
            match client.get_page(&url).await {
                Ok((url, body)) => Page::Ok { url, body },
                Err(e) => Page::Miss {
                    url,
                    reason: miss_reason(&e),
                },
            }
        })
    }
}

/// A short reason for a discovery miss.
fn miss_reason(e: &RegistryError) -> String {
    match e {
        RegistryError::Status { status, .. } => status.to_string(),
        RegistryError::Network { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    use MetaKind::{Discovery, Pubkeys};

    /// A page's discovery tags, as (kind, prefix, URL) in document order.
    type Tags = &'static [(MetaKind, &'static str, &'static str)];
    /// Label pairs, or (URL, reason) pairs.
    type Pairs = &'static [(&'static str, &'static str)];
    /// Expected ACI URLs.
    type Acis = &'static [&'static str];

    // The appc/spec discovery/testdata pages (specs/appc.md §1.6, §6).
    const META01: Tags = &[
        (
            Discovery,
            "example.com",
            "https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}",
        ),
        (Pubkeys, "example.com", "https://example.com/pubkeys.gpg"),
    ];
    const META02: Tags = &[(
        Discovery,
        "example.com",
        "https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}",
    )];
    const META03: Tags = &[(Pubkeys, "example.com", "https://example.com/pubkeys.gpg")];
    const META04: Tags = &[
        (
            Discovery,
            "example.com",
            "https://another.storage.example.com/{name}-{version}-{os}-{arch}.{ext}",
        ),
        (Pubkeys, "example.com", "https://example.com/pubkeys.gpg"),
    ];
    const META05: Tags = &[
        (
            Discovery,
            "example.com",
            "https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}",
        ),
        (
            Discovery,
            "example.com",
            "https://storage.example.com/{name}-{version}.{ext}",
        ),
        (Pubkeys, "example.com", "https://example.com/pubkeys.gpg"),
    ];
    const META06: Tags = &[
        (
            Discovery,
            "example.com",
            "https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}",
        ),
        (
            Discovery,
            "example.com",
            "https://storage.example.com/{name}-{version}.{ext}",
        ),
        (
            Discovery,
            "example.com",
            "hdfs://storage.example.com/{name}-{version}-{os}-{arch}.{ext}",
        ),
        (Pubkeys, "example.com", "https://example.com/pubkeys.gpg"),
    ];

    /// A whole HTML document carrying `tags` in its head, as the testdata pages are.
    fn html(tags: Tags) -> String {
        let metas: String = tags
            .iter()
            .map(|(kind, prefix, url)| {
                let name = match kind {
                    Discovery => "ac-discovery",
                    Pubkeys => "ac-discovery-pubkeys",
                };
                format!("\t<meta name=\"{name}\" content=\"{prefix} {url}\">\n")
            })
            .collect();
        format!(
            "<!DOCTYPE html>\n<html>\n<head>\n\t<title>My app</title>\n{metas}</head>\n\
             <body>\n\t<h1>My App</h1>\n</body>\n</html>\n"
        )
    }

    fn metas(tags: Tags) -> Vec<Meta> {
        tags.iter()
            .map(|&(kind, prefix, url)| Meta {
                kind,
                prefix: prefix.to_owned(),
                url: url.to_owned(),
            })
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// An endpoint whose signature URL is the ACI URL plus `.asc`, as `{ext}` makes it.
    fn endpoint(aci: &str) -> Endpoint {
        Endpoint {
            aci: aci.to_owned(),
            asc: format!("{aci}.asc"),
        }
    }

    const FULL_LABELS: Pairs = &[("version", "1.0.0"), ("os", "linux"), ("arch", "amd64")];

    #[test]
    fn the_spec_pages_parse_to_their_tags() {
        for (page, tags) in [
            ("meta01", META01),
            ("meta02", META02),
            ("meta03", META03),
            ("meta04", META04),
            ("meta05", META05),
            ("meta06", META06),
        ] {
            assert_eq!(parse_meta(html(tags).as_bytes()), metas(tags), "{page}");
        }
    }

    #[test]
    fn parse_meta_follows_the_reference_tokenizer_rules() {
        let cases: &[(&str, &str, Tags)] = &[
            (
                "entities in content are decoded",
                r#"<meta name="ac-discovery" content="example.com https://s.example.com/{name}.{ext}?a=1&amp;b=&#x32;">"#,
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{name}.{ext}?a=1&b=2",
                )],
            ),
            (
                "a tag in the body counts",
                "<html><head></head><body><p>hi</p><meta name=\"ac-discovery-pubkeys\" content=\"a.com https://a.com/k.gpg\"></body></html>",
                &[(Pubkeys, "a.com", "https://a.com/k.gpg")],
            ),
            (
                "a tag outside any html counts",
                "<meta name=\"ac-discovery-pubkeys\" content=\"a.com https://a.com/k.gpg\">",
                &[(Pubkeys, "a.com", "https://a.com/k.gpg")],
            ),
            (
                "self-closing tag",
                "<meta name=\"ac-discovery\" content=\"a.com https://a.com/{name}.{ext}\" />",
                &[(Discovery, "a.com", "https://a.com/{name}.{ext}")],
            ),
            (
                "uppercase tag and attribute names",
                "<META NAME=\"ac-discovery\" Content=\"a.com https://a.com/{name}.{ext}\">",
                &[(Discovery, "a.com", "https://a.com/{name}.{ext}")],
            ),
            (
                "unquoted and single-quoted values",
                "<meta name=ac-discovery content='a.com https://a.com/{name}.{ext}'>",
                &[(Discovery, "a.com", "https://a.com/{name}.{ext}")],
            ),
            (
                "a tab separator drops the tag",
                "<meta name=\"ac-discovery\" content=\"a.com\thttps://a.com/{name}.{ext}\">",
                &[],
            ),
            (
                "several spaces and surrounding whitespace are fine",
                "<meta name=\"ac-discovery\" content=\"  a.com    https://a.com/{name}.{ext} \n\">",
                &[(Discovery, "a.com", "https://a.com/{name}.{ext}")],
            ),
            (
                "the name is compared case-sensitively",
                "<meta name=\"AC-discovery\" content=\"a.com https://a.com/{name}.{ext}\">\
                 <meta name=\"ac-Discovery-pubkeys\" content=\"a.com https://a.com/k.gpg\">",
                &[],
            ),
            (
                "other ac- names are ignored",
                "<meta name=\"ac-discovery-foo\" content=\"a.com https://a.com/{name}.{ext}\">\
                 <meta name=\"description\" content=\"a.com https://a.com/{name}.{ext}\">",
                &[],
            ),
            (
                "a missing content or name is ignored",
                "<meta name=\"ac-discovery\"><meta content=\"a.com https://a.com/{name}.{ext}\">",
                &[],
            ),
            (
                "content with a prefix only is ignored",
                "<meta name=\"ac-discovery\" content=\"a.com\">\
                 <meta name=\"ac-discovery\" content=\"a.com    \">\
                 <meta name=\"ac-discovery\" content=\"\">",
                &[],
            ),
            (
                "a repeated attribute: the last one wins",
                "<meta name=\"ac-discovery\" content=\"a.com https://a.com/{ext}\" content=\"b.com https://b.com/{ext}\">\
                 <meta name=\"description\" name=\"ac-discovery-pubkeys\" content=\"c.com https://c.com/k\">\
                 <meta name=\"ac-discovery-pubkeys\" name=\"description\" content=\"d.com https://d.com/k\">",
                &[
                    (Discovery, "b.com", "https://b.com/{ext}"),
                    (Pubkeys, "c.com", "https://c.com/k"),
                ],
            ),
            (
                "tags in comments, scripts, styles and titles are not markup",
                "<!-- <meta name=\"ac-discovery\" content=\"a.com https://a.com/{ext}\"> -->\
                 <script>document.write('<meta name=\"ac-discovery\" content=\"b.com https://b.com/{ext}\">')</script>\
                 <style><meta name=\"ac-discovery\" content=\"c.com https://c.com/{ext}\"></style>\
                 <title><meta name=\"ac-discovery\" content=\"d.com https://d.com/{ext}\"></title>\
                 <meta name=\"ac-discovery\" content=\"e.com https://e.com/{ext}\">",
                &[(Discovery, "e.com", "https://e.com/{ext}")],
            ),
            (
                "attributes on an end tag are not a meta tag",
                "<p></meta name=\"ac-discovery\" content=\"a.com https://a.com/{ext}\">",
                &[],
            ),
            (
                "document order is kept across kinds",
                "<meta name=\"ac-discovery-pubkeys\" content=\"a.com https://a.com/k\">\
                 <meta name=\"ac-discovery\" content=\"a.com https://a.com/2.{ext}\">\
                 <meta name=\"ac-discovery\" content=\"a.com https://a.com/1.{ext}\">",
                &[
                    (Pubkeys, "a.com", "https://a.com/k"),
                    (Discovery, "a.com", "https://a.com/2.{ext}"),
                    (Discovery, "a.com", "https://a.com/1.{ext}"),
                ],
            ),
            ("an empty body", "", &[]),
            ("not HTML at all", "\u{0}\u{1}{\"json\": true}", &[]),
        ];
        for (what, page, expected) in cases {
            assert_eq!(parse_meta(page.as_bytes()), metas(expected), "{what}");
        }
    }

    #[test]
    fn parse_meta_survives_invalid_utf8() {
        let mut page =
            b"<meta name=\"ac-discovery\" content=\"a.com https://a.com/\xff{ext}\">".to_vec();
        page.extend_from_slice(b"<p>\xfe\xff</p>");
        let found = parse_meta(&page);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].url, "https://a.com/\u{fffd}{ext}");
    }

    #[test]
    fn render_endpoints_follows_the_reference_rules() {
        const EXAMPLE_A: Tags = &[
            (
                Discovery,
                "example.com",
                "https://storage.example.com/{os}/{arch}/{name}-{version}.{ext}",
            ),
            (
                Discovery,
                "example.com",
                "hdfs://storage.example.com/{name}-{version}-{os}-{arch}.{ext}",
            ),
            (Pubkeys, "example.com", "https://example.com/pubkeys.gpg"),
        ];
        const ETCD: Tags = &[(
            Discovery,
            "coreos.com/etcd",
            "https://github.com/coreos/etcd/releases/download/{version}/etcd-{version}-{os}-{arch}.{ext}",
        )];
        let cases: &[(&str, &str, Pairs, Tags, Acis)] = &[
            (
                "spec example A: two templates, document order, hdfs kept",
                "example.com/reduce-worker",
                FULL_LABELS,
                EXAMPLE_A,
                &[
                    "https://storage.example.com/linux/amd64/example.com/reduce-worker-1.0.0.aci",
                    "hdfs://storage.example.com/example.com/reduce-worker-1.0.0-linux-amd64.aci",
                ],
            ),
            (
                "meta05, version only: the os/arch template is skipped",
                "example.com/myapp",
                &[("version", "1.0.0")],
                META05,
                &["https://storage.example.com/example.com/myapp-1.0.0.aci"],
            ),
            (
                "meta05, no labels: version defaults to latest",
                "example.com/myapp",
                &[],
                META05,
                &["https://storage.example.com/example.com/myapp-latest.aci"],
            ),
            (
                "meta05, an empty version counts as none",
                "example.com/myapp",
                &[("version", "")],
                META05,
                &["https://storage.example.com/example.com/myapp-latest.aci"],
            ),
            (
                "meta05, a label called name is ignored",
                "example.com/myapp",
                &[("name", "labelcalledname"), ("version", "1.0.0")],
                META05,
                &["https://storage.example.com/example.com/myapp-1.0.0.aci"],
            ),
            (
                "meta05, os and arch given: both render, os/arch first",
                "example.com/myapp",
                &[("arch", "amd64"), ("os", "linux")],
                META05,
                &[
                    "https://storage.example.com/example.com/myapp-latest-linux-amd64.aci",
                    "https://storage.example.com/example.com/myapp-latest.aci",
                ],
            ),
            (
                "meta06, full labels: three endpoints in document order",
                "example.com/myapp",
                FULL_LABELS,
                META06,
                &[
                    "https://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci",
                    "https://storage.example.com/example.com/myapp-1.0.0.aci",
                    "hdfs://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci",
                ],
            ),
            (
                "the prefix is a plain string prefix",
                "coreos.com/etcdctl",
                &[("version", "v2.0.10"), ("os", "linux"), ("arch", "amd64")],
                ETCD,
                &[
                    "https://github.com/coreos/etcd/releases/download/v2.0.10/etcd-v2.0.10-linux-amd64.aci",
                ],
            ),
            (
                "a prefix longer than the name does not match",
                "coreos.com",
                FULL_LABELS,
                ETCD,
                &[],
            ),
            (
                "a prefix for another host does not match",
                "example.org/myapp",
                FULL_LABELS,
                META01,
                &[],
            ),
            (
                "a variable no label fills skips the template",
                "example.com/app",
                FULL_LABELS,
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{channel}/{name}.{ext}",
                )],
                &[],
            ),
            (
                "any label fills its variable",
                "example.com/app",
                &[("channel", "beta")],
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{channel}/{name}.{ext}",
                )],
                &["https://s.example.com/beta/example.com/app.aci"],
            ),
            (
                "labels a template does not use are ignored",
                "example.com/app",
                &[("version", "9.9"), ("channel", "beta")],
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{name}.{ext}",
                )],
                &["https://s.example.com/example.com/app.aci"],
            ),
            (
                "nothing is URL-escaped",
                "example.com/team/app",
                &[("version", "1.0 beta+git/x?y&z=%41")],
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{name}/{version}.{ext}",
                )],
                &["https://s.example.com/example.com/team/app/1.0 beta+git/x?y&z=%41.aci"],
            ),
            (
                "a variable used twice is filled twice",
                "example.com/app",
                &[],
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{name}/{version}/{name}.{ext}",
                )],
                &["https://s.example.com/example.com/app/latest/example.com/app.aci"],
            ),
            (
                "literal braces skip the template",
                "example.com/app",
                &[],
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{}/{name}.{ext}",
                )],
                &[],
            ),
            (
                "a lone brace is no placeholder",
                "example.com/app",
                &[],
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{/{name}.{ext}",
                )],
                &["https://s.example.com/{/example.com/app.aci"],
            ),
            (
                "a placeholder does not span a newline",
                "example.com/app",
                &[],
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{\n}/{name}.{ext}",
                )],
                &["https://s.example.com/{\n}/example.com/app.aci"],
            ),
            (
                "a value is not scanned again",
                "example.com/app",
                &[("version", "{os}"), ("os", "linux")],
                &[(
                    Discovery,
                    "example.com",
                    "https://s.example.com/{name}-{version}.{ext}",
                )],
                &[],
            ),
            (
                "pubkeys tags are no templates",
                "example.com/app",
                &[],
                META03,
                &[],
            ),
        ];
        for (what, name, pairs, tags, expected) in cases {
            let expected: Vec<Endpoint> = expected.iter().map(|aci| endpoint(aci)).collect();
            assert_eq!(
                render_endpoints(name, &labels(pairs), &metas(tags)),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn render_endpoints_keeps_ext_for_the_file_type() {
        let tags: Tags = &[(
            Discovery,
            "example.com",
            "https://s.example.com/{name}.{ext}",
        )];
        // check_labels refuses `ext`; rendering still never lets it make ACI and ASC the same.
        let found = render_endpoints("example.com/app", &labels(&[("ext", "tar")]), &metas(tags));
        assert_eq!(
            found,
            vec![endpoint("https://s.example.com/example.com/app.aci")]
        );

        // A template without {ext} renders to the same URL twice, as in the reference.
        let tags: Tags = &[(Discovery, "example.com", "https://s.example.com/{name}")];
        let found = render_endpoints("example.com/app", &BTreeMap::new(), &metas(tags));
        let same = "https://s.example.com/example.com/app".to_owned();
        assert_eq!(
            found,
            vec![Endpoint {
                aci: same.clone(),
                asc: same
            }]
        );
    }

    #[test]
    fn pubkey_urls_are_verbatim_and_prefix_matched() {
        let tags: Tags = &[
            (
                Pubkeys,
                "coreos.com/etcd",
                "https://coreos.com/dist/pubkeys/aci-pubkeys.gpg",
            ),
            (
                Discovery,
                "coreos.com/etcd",
                "https://c.example/{name}.{ext}",
            ),
            (
                Pubkeys,
                "coreos.com/etcd",
                "https://coreos.com/dist/pubkeys/{name}.gpg",
            ),
            (
                Pubkeys,
                "coreos.com/rkt",
                "https://coreos.com/dist/pubkeys/rkt.gpg",
            ),
        ];
        let expected = vec![
            "https://coreos.com/dist/pubkeys/aci-pubkeys.gpg".to_owned(),
            "https://coreos.com/dist/pubkeys/{name}.gpg".to_owned(),
        ];
        assert_eq!(pubkey_urls("coreos.com/etcd", &metas(tags)), expected);
        assert_eq!(pubkey_urls("coreos.com/etcdctl", &metas(tags)), expected);
        assert!(pubkey_urls("coreos.com", &metas(tags)).is_empty());
    }

    #[test]
    fn levels_go_from_the_name_up_to_the_host() {
        let cases: &[(&str, &[&str])] = &[
            ("example.com", &["example.com"]),
            ("example.com/app", &["example.com/app", "example.com"]),
            (
                "example.com/a/b/c",
                &[
                    "example.com/a/b/c",
                    "example.com/a/b",
                    "example.com/a",
                    "example.com",
                ],
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(levels(name), *expected, "{name}");
        }
    }

    #[test]
    fn discovery_urls_parse_with_exactly_the_discovery_query() {
        let cases = [
            (
                "example.com",
                Scheme::Https,
                "https://example.com?ac-discovery=1",
                "/",
            ),
            (
                "example.com/a/b~c_d",
                Scheme::Http,
                "http://example.com/a/b~c_d?ac-discovery=1",
                "/a/b~c_d",
            ),
        ];
        for (level, scheme, expected, path) in cases {
            let url = discovery_url(level, scheme);
            assert_eq!(url, expected);
            let parsed = reqwest::Url::parse(&url).expect("a discovery URL parses");
            assert_eq!(parsed.scheme(), scheme.as_str());
            assert_eq!(parsed.host_str(), Some("example.com"));
            assert_eq!(parsed.path(), path);
            assert_eq!(parsed.query(), Some("ac-discovery=1"));
        }
    }

    #[test]
    fn check_labels_refuses_what_discovery_cannot_use() {
        let cases: &[(Pairs, Option<(&str, &str)>)] = &[
            (&[], None),
            (FULL_LABELS, None),
            (&[("channel", "beta"), ("example.com/tier", "gold")], None),
            (&[("version", "1.0 beta+x/y")], None),
            (&[("OS", "linux")], Some(("OS", "AC Identifier"))),
            (&[("", "x")], Some(("", "AC Identifier"))),
            (&[("a..b", "x")], Some(("a..b", "AC Identifier"))),
            (&[("name", "x")], Some(("name", "always the image name"))),
            (&[("ext", "tar")], Some(("ext", "signature URLs the same"))),
            (&[("version", "")], Some(("version", "the value is empty"))),
            (&[("os", "{arch}")], Some(("os", "contains a brace"))),
            (&[("os", "lin}ux")], Some(("os", "contains a brace"))),
        ];
        for (pairs, expected) in cases {
            match (check_labels(&labels(pairs)), expected) {
                (Ok(()), None) => {}
                (Err(DiscoveryError::BadLabel { label, reason }), Some((bad, why))) => {
                    assert_eq!(label, *bad, "{pairs:?}");
                    assert!(reason.contains(why), "{pairs:?}: {reason}");
                }
                (got, _) => panic!("{pairs:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn first_fetchable_skips_what_cannot_be_downloaded() {
        let only_local = |host: &str| host == "localhost:8080";
        let cases: &[(&[&str], Option<usize>)] = &[
            (
                &["hdfs://s.example.com/a.aci", "https://s.example.com/a.aci"],
                Some(1),
            ),
            (
                &["http://localhost:8080/a.aci", "https://s.example.com/a.aci"],
                Some(0),
            ),
            (&["http://user:pw@localhost:8080/a.aci"], Some(0)),
            (
                &["http://localhost/a.aci", "https://s.example.com/a.aci"],
                Some(1),
            ),
            (
                &["http://s.example.com/a.aci", "hdfs://s.example.com/a.aci"],
                None,
            ),
            (&["HTTPS://s.example.com/a.aci"], Some(0)),
            (&["s.example.com/a.aci", "ftp://s.example.com/a.aci"], None),
            (&[], None),
        ];
        for (acis, expected) in cases {
            let endpoints: Vec<Endpoint> = acis.iter().map(|aci| endpoint(aci)).collect();
            assert_eq!(
                first_fetchable(&endpoints, only_local),
                expected.map(|i| &endpoints[i]),
                "{acis:?}"
            );
        }
        let http = [endpoint("http://localhost:8080/a.aci")];
        assert_eq!(first_fetchable(&http, |_| false), None);
    }

    /// A fake web: fixed answers per URL, `404 Not Found` for everything else, and a log of the
    /// URLs asked for.
    #[derive(Default)]
    struct FakeWeb {
        pages: BTreeMap<String, Page>,
        requests: Mutex<Vec<String>>,
    }

    impl FakeWeb {
        /// Serves `tags` with status 200 at `url`.
        fn serve(mut self, url: &str, tags: Tags) -> Self {
            let page = Page::Ok {
                url: url.to_owned(),
                body: html(tags).into_bytes(),
            };
            self.pages.insert(url.to_owned(), page);
            self
        }

        /// Answers `url` with `page`.
        fn answer(mut self, url: &str, page: Page) -> Self {
            self.pages.insert(url.to_owned(), page);
            self
        }

        fn fetch(&self, url: String) -> std::future::Ready<Page> {
            self.requests
                .lock()
                .expect("no test thread panicked holding the log")
                .push(url.clone());
            let page = self.pages.get(&url).cloned().unwrap_or(Page::Miss {
                url,
                reason: "404 Not Found".to_owned(),
            });
            std::future::ready(page)
        }

        fn requests(&self) -> Vec<String> {
            std::mem::take(
                &mut *self
                    .requests
                    .lock()
                    .expect("no test thread panicked holding the log"),
            )
        }
    }

    fn miss(url: &str, reason: &str) -> Page {
        Page::Miss {
            url: url.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn not_found_attempts<T: fmt::Debug>(
        got: Result<Discovered<T>, DiscoveryError>,
    ) -> Vec<Attempt> {
        match got {
            Err(DiscoveryError::NotFound { attempts, .. }) => attempts,
            got => panic!("expected NotFound, got {got:?}"),
        }
    }

    fn attempt(url: &str, reason: &str) -> Attempt {
        Attempt {
            url: url.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// One appc discovery_test.go case: pages by path under example.com (`""` is the root),
    /// and what each walk should find: (level, items) or nothing.
    struct WalkCase {
        what: &'static str,
        name: &'static str,
        labels: Pairs,
        pages: &'static [(&'static str, Tags)],
        endpoints: Option<(&'static str, Acis)>,
        pubkeys: Option<(&'static str, Acis)>,
    }

    const KEYS: Acis = &["https://example.com/pubkeys.gpg"];
    const MYAPP_FULL: Acis =
        &["https://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci"];

    #[tokio::test]
    async fn discovery_walks_find_what_the_reference_finds() {
        let cases = [
            WalkCase {
                what: "1: direct hit",
                name: "example.com/myapp",
                labels: FULL_LABELS,
                pages: &[("/myapp", META01)],
                endpoints: Some(("example.com/myapp", MYAPP_FULL)),
                pubkeys: Some(("example.com/myapp", KEYS)),
            },
            WalkCase {
                what: "2: walk up to the root",
                name: "example.com/myapp/foobar",
                labels: FULL_LABELS,
                pages: &[("", META01)],
                endpoints: Some((
                    "example.com",
                    &["https://storage.example.com/example.com/myapp/foobar-1.0.0-linux-amd64.aci"],
                )),
                pubkeys: Some(("example.com", KEYS)),
            },
            WalkCase {
                what: "3: tags only off the walked path",
                name: "example.com/myapp/foobar/bazzer",
                labels: FULL_LABELS,
                pages: &[("/path/out/of/myapp", META01)],
                endpoints: None,
                pubkeys: None,
            },
            WalkCase {
                what: "4: templates at the root, keys at /myapp",
                name: "example.com/myapp",
                labels: FULL_LABELS,
                pages: &[("", META02), ("/myapp", META03)],
                endpoints: Some(("example.com", MYAPP_FULL)),
                pubkeys: Some(("example.com/myapp", KEYS)),
            },
            WalkCase {
                what: "5: keys at the root, templates at /myapp",
                name: "example.com/myapp",
                labels: FULL_LABELS,
                pages: &[("", META03), ("/myapp", META02)],
                endpoints: Some(("example.com/myapp", MYAPP_FULL)),
                pubkeys: Some(("example.com", KEYS)),
            },
            WalkCase {
                what: "6: templates only",
                name: "example.com/myapp",
                labels: FULL_LABELS,
                pages: &[("", META02)],
                endpoints: Some(("example.com", MYAPP_FULL)),
                pubkeys: None,
            },
            WalkCase {
                what: "7: keys only",
                name: "example.com/myapp",
                labels: FULL_LABELS,
                pages: &[("", META03)],
                endpoints: None,
                pubkeys: Some(("example.com", KEYS)),
            },
            WalkCase {
                what: "8: the deeper level wins, parents are not merged",
                name: "example.com/myapp",
                labels: FULL_LABELS,
                pages: &[("", META04), ("/myapp", META02)],
                endpoints: Some(("example.com/myapp", MYAPP_FULL)),
                pubkeys: Some(("example.com", KEYS)),
            },
            WalkCase {
                what: "9: meta05, version only",
                name: "example.com/myapp",
                labels: &[("version", "1.0.0")],
                pages: &[("/myapp", META05)],
                endpoints: Some((
                    "example.com/myapp",
                    &["https://storage.example.com/example.com/myapp-1.0.0.aci"],
                )),
                pubkeys: Some(("example.com/myapp", KEYS)),
            },
            WalkCase {
                what: "10: meta05, no labels",
                name: "example.com/myapp",
                labels: &[],
                pages: &[("/myapp", META05)],
                endpoints: Some((
                    "example.com/myapp",
                    &["https://storage.example.com/example.com/myapp-latest.aci"],
                )),
                pubkeys: Some(("example.com/myapp", KEYS)),
            },
            // 11 (a label called `name`) is refused by check_labels here: see
            // a_label_called_name_is_refused_before_any_request; rendering still ignores it.
            WalkCase {
                what: "12: meta06, full labels",
                name: "example.com/myapp",
                labels: FULL_LABELS,
                pages: &[("/myapp", META06)],
                endpoints: Some((
                    "example.com/myapp",
                    &[
                        "https://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci",
                        "https://storage.example.com/example.com/myapp-1.0.0.aci",
                        "hdfs://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci",
                    ],
                )),
                pubkeys: Some(("example.com/myapp", KEYS)),
            },
        ];
        // 13 (per-host auth headers) is the fetcher's job: see
        // the_fetcher_is_asked_for_exactly_the_walked_urls.
        for case in &cases {
            // appc runs every case under each insecure option; only the HTTP one matters here
            // (TLS verification is the fetcher's business).
            for http_allowed in [false, true] {
                let what = format!("{} (http allowed: {http_allowed})", case.what);
                // Like appc's fake server, pages are served by path whatever the scheme.
                let mut web = FakeWeb::default();
                for (path, tags) in case.pages {
                    for scheme in ["https", "http"] {
                        web = web.serve(
                            &format!("{scheme}://example.com{path}?ac-discovery=1"),
                            tags,
                        );
                    }
                }
                let allow_http = |host: &str| http_allowed && host == "example.com";

                let got = discover_endpoints(case.name, &labels(case.labels), allow_http, |url| {
                    web.fetch(url)
                })
                .await;
                match (got, case.endpoints) {
                    (Ok(found), Some((level, acis))) => {
                        let expected = Discovered {
                            level: level.to_owned(),
                            url: discovery_url(level, Scheme::Https),
                            found: acis.iter().map(|aci| endpoint(aci)).collect(),
                        };
                        assert_eq!(found, expected, "{what}: endpoints");
                    }
                    (Err(DiscoveryError::NotFound { wanted, .. }), None) => {
                        assert_eq!(wanted, Wanted::Endpoints, "{what}");
                    }
                    (got, _) => panic!("{what}: endpoints: got {got:?}"),
                }

                let got = discover_pubkeys(case.name, allow_http, |url| web.fetch(url)).await;
                match (got, case.pubkeys) {
                    (Ok(found), Some((level, keys))) => {
                        let expected = Discovered {
                            level: level.to_owned(),
                            url: discovery_url(level, Scheme::Https),
                            found: keys.iter().map(|key| (*key).to_owned()).collect(),
                        };
                        assert_eq!(found, expected, "{what}: pubkeys");
                    }
                    (Err(DiscoveryError::NotFound { wanted, .. }), None) => {
                        assert_eq!(wanted, Wanted::Pubkeys, "{what}");
                    }
                    (got, _) => panic!("{what}: pubkeys: got {got:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_label_called_name_is_refused_before_any_request() {
        // appc case 11 renders with `name` ignored; imagelock refuses the label instead.
        let web = FakeWeb::default().serve("https://example.com/myapp?ac-discovery=1", META05);
        let labels = labels(&[("name", "labelcalledname"), ("version", "1.0.0")]);
        let got =
            discover_endpoints("example.com/myapp", &labels, |_| true, |url| web.fetch(url)).await;
        assert!(
            matches!(&got, Err(DiscoveryError::BadLabel { label, .. }) if label == "name"),
            "{got:?}"
        );
        assert_eq!(web.requests(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn the_fetcher_is_asked_for_exactly_the_walked_urls() {
        // appc case 13 checks per-host auth headers; here the caller's fetcher attaches them, so
        // what matters is which URLs (and hosts) it is asked for, in order.
        let web = FakeWeb::default().serve("https://example.com?ac-discovery=1", META01);
        let asked_hosts = Mutex::new(Vec::new());
        let allow_http = |host: &str| {
            asked_hosts
                .lock()
                .expect("not poisoned")
                .push(host.to_owned());
            true
        };
        let name = "example.com/myapp/foobar";
        let labels = labels(FULL_LABELS);

        let found = discover_endpoints(name, &labels, allow_http, |url| web.fetch(url))
            .await
            .expect("found at the root");
        assert_eq!(found.level, "example.com");
        assert_eq!(
            web.requests(),
            [
                "https://example.com/myapp/foobar?ac-discovery=1",
                "http://example.com/myapp/foobar?ac-discovery=1",
                "https://example.com/myapp?ac-discovery=1",
                "http://example.com/myapp?ac-discovery=1",
                "https://example.com?ac-discovery=1",
            ]
        );
        assert_eq!(
            *asked_hosts.lock().expect("not poisoned"),
            ["example.com", "example.com"]
        );

        discover_pubkeys(name, |_| false, |url| web.fetch(url))
            .await
            .expect("found at the root");
        assert_eq!(
            web.requests(),
            [
                "https://example.com/myapp/foobar?ac-discovery=1",
                "https://example.com/myapp?ac-discovery=1",
                "https://example.com?ac-discovery=1",
            ]
        );

        let web = FakeWeb::default().serve("https://example.com/myapp?ac-discovery=1", META01);
        discover_endpoints("example.com/myapp", &labels, |_| true, |url| web.fetch(url))
            .await
            .expect("a direct hit");
        assert_eq!(web.requests(), ["https://example.com/myapp?ac-discovery=1"]);
    }

    #[tokio::test]
    async fn https_first_and_http_only_where_allowed() {
        // appc discovery/http_test.go, on a one-level name so the walk is a single request pair.
        #[derive(Clone, Copy)]
        enum Server {
            Good,
            NotFound,
            Down,
        }
        use Server::{Down, Good, NotFound};

        // Ok(URL the page came from) or Err((URL, reason) of every attempt).
        type Outcome = Result<&'static str, Pairs>;
        let cases: &[(&str, Server, Server, bool, Outcome)] = &[
            (
                "good-server",
                Good,
                Good,
                false,
                Ok("https://good-server?ac-discovery=1"),
            ),
            (
                "good-server",
                Good,
                Good,
                true,
                Ok("https://good-server?ac-discovery=1"),
            ),
            (
                "file-not-found",
                NotFound,
                NotFound,
                false,
                Err(&[("https://file-not-found?ac-discovery=1", "404 Not Found")]),
            ),
            (
                "file-not-found",
                NotFound,
                NotFound,
                true,
                Err(&[
                    ("https://file-not-found?ac-discovery=1", "404 Not Found"),
                    ("http://file-not-found?ac-discovery=1", "404 Not Found"),
                ]),
            ),
            (
                "completely-broken-server",
                Down,
                Down,
                false,
                Err(&[(
                    "https://completely-broken-server?ac-discovery=1",
                    "connection refused",
                )]),
            ),
            (
                "completely-broken-server",
                Down,
                Down,
                true,
                Err(&[
                    (
                        "https://completely-broken-server?ac-discovery=1",
                        "connection refused",
                    ),
                    (
                        "http://completely-broken-server?ac-discovery=1",
                        "connection refused",
                    ),
                ]),
            ),
            (
                "file-only-on-http",
                NotFound,
                Good,
                false,
                Err(&[("https://file-only-on-http?ac-discovery=1", "404 Not Found")]),
            ),
            (
                "file-only-on-http",
                NotFound,
                Good,
                true,
                Ok("http://file-only-on-http?ac-discovery=1"),
            ),
            (
                "https-server-is-down",
                Down,
                Good,
                true,
                Ok("http://https-server-is-down?ac-discovery=1"),
            ),
        ];
        for &(host, https, http, http_allowed, expected) in cases {
            let mut web = FakeWeb::default();
            for (scheme, server) in [(Scheme::Https, https), (Scheme::Http, http)] {
                let url = discovery_url(host, scheme);
                web = match server {
                    Good => web.answer(
                        &url,
                        Page::Ok {
                            url: url.clone(),
                            body: format!(
                                "<meta name=\"ac-discovery-pubkeys\" content=\"{host} https://{host}/keys.gpg\">"
                            )
                            .into_bytes(),
                        },
                    ),
                    NotFound => web.answer(&url, miss(&url, "404 Not Found")),
                    Down => web.answer(&url, miss(&url, "connection refused")),
                };
            }
            let got = discover_pubkeys(host, |_| http_allowed, |url| web.fetch(url)).await;
            let what = format!("{host}, http allowed: {http_allowed}");
            match (got, expected) {
                (Ok(found), Ok(url)) => {
                    assert_eq!(found.url, url, "{what}");
                    assert_eq!(found.found, [format!("https://{host}/keys.gpg")], "{what}");
                }
                (Err(DiscoveryError::NotFound { attempts, .. }), Err(tried)) => {
                    let tried: Vec<Attempt> =
                        tried.iter().map(|(url, why)| attempt(url, why)).collect();
                    assert_eq!(attempts, tried, "{what}");
                }
                (got, _) => panic!("{what}: got {got:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_page_served_over_https_is_not_retried_over_http() {
        let web = FakeWeb::default()
            .serve("https://example.com?ac-discovery=1", &[])
            .serve("http://example.com?ac-discovery=1", META01);
        let got = discover_pubkeys("example.com", |_| true, |url| web.fetch(url)).await;
        let expected = DiscoveryError::NotFound {
            name: "example.com".to_owned(),
            wanted: Wanted::Pubkeys,
            attempts: vec![attempt(
                "https://example.com?ac-discovery=1",
                "no ac-discovery-pubkeys meta tag on the page",
            )],
        };
        assert_eq!(got, Err(expected));
        assert_eq!(web.requests(), ["https://example.com?ac-discovery=1"]);
    }

    #[tokio::test]
    async fn not_found_lists_every_attempt_and_why() {
        let web = FakeWeb::default()
            .answer(
                "http://example.com/myapp?ac-discovery=1",
                miss(
                    "http://example.com/myapp?ac-discovery=1",
                    "connection refused",
                ),
            )
            .serve("https://example.com?ac-discovery=1", META02);
        let err = discover_endpoints(
            "example.com/myapp",
            &labels(&[("version", "1.0.0")]),
            |host| host == "example.com",
            |url| web.fetch(url),
        )
        .await
        .expect_err("meta02 needs os and arch");
        assert_eq!(
            err.to_string(),
            "appc discovery found no ACI download URLs for `example.com/myapp`; tried:\n    \
             https://example.com/myapp?ac-discovery=1: 404 Not Found\n    \
             http://example.com/myapp?ac-discovery=1: connection refused\n    \
             https://example.com?ac-discovery=1: no ac-discovery template could be filled in \
             (`https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}` needs {os}, {arch}); \
             a `{label}` is filled from the label of that name, so add the missing labels"
        );
    }

    #[tokio::test]
    async fn misses_say_why_a_page_did_not_count() {
        let other_prefixes: Tags = &[
            (
                Discovery,
                "example.org",
                "https://s.example.org/{name}.{ext}",
            ),
            (
                Pubkeys,
                "example.com/other",
                "https://example.com/other.gpg",
            ),
        ];
        let web = FakeWeb::default()
            .serve("https://example.com/myapp?ac-discovery=1", other_prefixes)
            .serve("https://example.com?ac-discovery=1", &[]);

        let got = discover_endpoints(
            "example.com/myapp",
            &BTreeMap::new(),
            |_| false,
            |url| web.fetch(url),
        )
        .await;
        assert_eq!(
            not_found_attempts(got),
            [
                attempt(
                    "https://example.com/myapp?ac-discovery=1",
                    "no ac-discovery meta tag for `example.com/myapp` (the page's tags are for \
                     `example.org`)",
                ),
                attempt(
                    "https://example.com?ac-discovery=1",
                    "no ac-discovery meta tag on the page"
                ),
            ]
        );

        let got = discover_pubkeys("example.com/myapp", |_| false, |url| web.fetch(url)).await;
        assert_eq!(
            not_found_attempts(got),
            [
                attempt(
                    "https://example.com/myapp?ac-discovery=1",
                    "no ac-discovery-pubkeys meta tag for `example.com/myapp` (the page's tags \
                     are for `example.com/other`)",
                ),
                attempt(
                    "https://example.com?ac-discovery=1",
                    "no ac-discovery-pubkeys meta tag on the page",
                ),
            ]
        );
    }

    #[tokio::test]
    async fn redirects_are_reported_with_their_final_url() {
        let web = FakeWeb::default()
            .answer(
                "https://example.com/myapp?ac-discovery=1",
                miss("https://example.com/gone", "404 Not Found"),
            )
            .answer(
                "https://example.com?ac-discovery=1",
                Page::Ok {
                    url: "https://www.example.com/".to_owned(),
                    body: html(META01).into_bytes(),
                },
            );
        let found = discover_pubkeys("example.com/myapp", |_| false, |url| web.fetch(url))
            .await
            .expect("keys at the root");
        assert_eq!(found.level, "example.com");
        assert_eq!(found.url, "https://www.example.com/");

        let got = discover_endpoints(
            "example.com/myapp",
            &BTreeMap::new(),
            |_| false,
            |url| web.fetch(url),
        )
        .await;
        let Err(DiscoveryError::NotFound { attempts, .. }) = got else {
            panic!("meta01 needs os and arch: {got:?}");
        };
        assert_eq!(
            attempts[0],
            attempt(
                "https://example.com/myapp?ac-discovery=1",
                "redirected to https://example.com/gone: 404 Not Found",
            )
        );
        assert!(
            attempts[1]
                .reason
                .starts_with("redirected to https://www.example.com/: no ac-discovery template"),
            "{:?}",
            attempts[1]
        );
    }

    #[tokio::test]
    async fn a_bad_name_is_refused_before_any_request() {
        let web = FakeWeb::default();
        for name in [
            "Example.com/app",
            "example.com/app/",
            "example.com//app",
            "",
            "a/../b",
        ] {
            let got =
                discover_endpoints(name, &BTreeMap::new(), |_| true, |url| web.fetch(url)).await;
            assert_eq!(
                got,
                Err(DiscoveryError::BadName {
                    name: name.to_owned()
                })
            );
            let got = discover_pubkeys(name, |_| true, |url| web.fetch(url)).await;
            assert_eq!(
                got,
                Err(DiscoveryError::BadName {
                    name: name.to_owned()
                })
            );
        }
        let got = discover_endpoints(
            "example.com/app",
            &labels(&[("os", "")]),
            |_| true,
            |url| web.fetch(url),
        )
        .await;
        assert!(
            matches!(got, Err(DiscoveryError::BadLabel { .. })),
            "{got:?}"
        );
        assert_eq!(web.requests(), Vec::<String>::new());
    }
}
