//! Authentication: the answer to a registry's 401 challenge, with Basic
//! credentials or a Bearer token fetched from the token server the challenge
//! names (its realm), and the caches that spare the next request the 401.
//!
//! Invariants: credentials come from [`credentials::lookup`] and go, as a
//! Basic header or the token they buy, only to the registry's own host and
//! port (an upload location on another host gets none; reqwest strips
//! `Authorization` on cross-host redirects) and only over HTTPS or plain HTTP
//! to a host images.toml lists as `insecure-http`; a token server on any
//! other plain-HTTP address is refused before anything is sent. Tokens are
//! cached per (registry, scope) and dropped [`TOKEN_EXPIRY_MARGIN`] before
//! they expire; Basic headers are cached per registry. Token responses are
//! capped at [`MAX_TOKEN_BYTES`]. A challenge is answered once per request: a
//! second 401 is a refusal, with a [`AuthFix`] saying what the user can do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::limits::Transfer;
use super::{RegistryClient, RegistryError, Repository, read_capped, scheme_allowed, status_error};
use crate::oci::credentials::{self, Credential};

/// Tokens are refreshed this long before they expire, so a request never races expiry.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Token servers may omit `expires_in`; the token spec says to assume 60 seconds.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;
/// Token responses are small JSON; cap them so a hostile server can't exhaust memory.
const MAX_TOKEN_BYTES: u64 = 1024 * 1024;

/// What a user can do about an authentication failure (the `hint:` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFix {
    /// No credentials were found: log in.
    LogIn,
    /// The credentials found were refused: log in again.
    LogInAgain,
    /// The registry or its token server misbehaves: nothing to do on this side.
    None,
}

/// A cached Bearer token: the `Authorization` value and when to stop sending it.
#[derive(Debug, Clone)]
pub(super) struct Token {
    header: String,
    expires: Instant,
}

impl RegistryClient {
    /// Whether credentials or a token may be sent to `url`: HTTPS, or plain
    /// HTTP to a host images.toml lists.
    pub(super) fn may_carry_credentials(&self, url: &str) -> bool {
        scheme_allowed(url, &self.insecure_http).is_ok()
    }

    /// Sends `method url` with `decorate`'s headers and body, with the
    /// credentials `scope` needs (answering a 401 challenge once), retrying
    /// transient failures; returns whatever the registry answered then.
    pub(super) async fn authorized(
        &self,
        repo: &Repository,
        scope: &str,
        method: Method,
        url: &str,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        self.authorized_as(repo, scope, method, Transfer::Document, url, decorate)
            .await
    }

    /// [`RegistryClient::authorized`] with the response body bounded as `transfer` says.
    /// A URL on another host than the registry (an upload location it named)
    /// gets no credentials at all.
    pub(super) async fn authorized_as(
        &self,
        repo: &Repository,
        scope: &str,
        method: Method,
        transfer: Transfer,
        url: &str,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        self.check_scheme(url)?;
        let own_host = same_host(url, &repo.base);
        let credentials_allowed = own_host && self.may_carry_credentials(url);
        let mut authorization = self
            .cached_auth(repo.host(), scope)
            .filter(|_| credentials_allowed);
        for attempt in 0..2 {
            let response = self
                .with_retries(url, transfer, || {
                    let mut request = decorate(self.http.request(method.clone(), url));
                    if let Some(value) = &authorization {
                        request = request.header(AUTHORIZATION, value);
                    }
                    request
                })
                .await?;
            if response.status() == StatusCode::UNAUTHORIZED && attempt == 0 && own_host {
                if !credentials_allowed {
                    return Err(RegistryError::PlainHttpCredentials {
                        host: repo.host().to_owned(),
                        url: url.to_owned(),
                    });
                }
                authorization = Some(self.authenticate(repo, scope, response.headers()).await?);
                continue;
            }
            if response.status() == StatusCode::UNAUTHORIZED {
                // Some registries hand anonymous clients a token and refuse it
                // only at the request (a private or misspelled repository).
                let anonymous = matches!(credentials::lookup(repo.host()), Ok(None));
                let (what, fix) = if anonymous {
                    ("refused anonymous access", AuthFix::LogIn)
                } else {
                    ("refused the credentials found", AuthFix::LogInAgain)
                };
                return Err(RegistryError::Unauthorized {
                    host: repo.host().to_owned(),
                    problem: format!("{what} ({})", describe_search_path()),
                    fix,
                });
            }
            return Ok(response);
        }
        unreachable!("the loop returns on its second attempt")
    }

    pub(super) fn cached_auth(&self, host: &str, scope: &str) -> Option<String> {
        if let Some(basic) = self
            .basic
            .lock()
            .expect("basic-auth cache poisoned")
            .get(host)
        {
            return Some(basic.clone());
        }
        let tokens = self.tokens.lock().expect("token cache poisoned");
        tokens
            .get(&(host.to_owned(), scope.to_owned()))
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.header.clone())
    }

    /// Answers a 401 challenge; returns the Authorization header to retry with.
    async fn authenticate(
        &self,
        repo: &Repository,
        scope: &str,
        headers: &HeaderMap,
    ) -> Result<String, RegistryError> {
        let host = repo.host();
        let challenges: Vec<Challenge> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        let credential = credentials::lookup(host)?;
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer
                .params
                .get("realm")
                .ok_or_else(|| RegistryError::Unauthorized {
                    host: host.to_owned(),
                    problem: "its Bearer challenge names no realm".into(),
                    fix: AuthFix::None,
                })?;
            // Ask for what the challenge names and what this client will do
            // next in the repository (a HEAD is challenged for pull only, the
            // upload after it needs push), and cache the token under the
            // client's scope, which is what later requests look it up by.
            // The client's scopes first: some token servers read only the first.
            let mut scopes: Vec<&str> = scope.split_whitespace().collect();
            for named in bearer
                .params
                .get("scope")
                .map(|s| s.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if !scopes.contains(&named) {
                    scopes.push(named);
                }
            }
            let token = self
                .fetch_token(
                    host,
                    realm,
                    bearer.params.get("service"),
                    &scopes,
                    credential.as_ref(),
                )
                .await?;
            let scope = scope.to_owned();
            let header = format!("Bearer {}", token.0);
            let expires =
                Instant::now() + Duration::from_secs(token.1).saturating_sub(TOKEN_EXPIRY_MARGIN);
            self.tokens.lock().expect("token cache poisoned").insert(
                (host.to_owned(), scope),
                Token {
                    header: header.clone(),
                    expires,
                },
            );
            return Ok(header);
        }
        if challenges.iter().any(|c| c.scheme == "basic") || challenges.is_empty() {
            let credential = credential.ok_or_else(|| RegistryError::Unauthorized {
                host: host.to_owned(),
                problem: format!(
                    "no credentials were found for it ({})",
                    describe_search_path()
                ),
                fix: AuthFix::LogIn,
            })?;
            let header = credential.basic_header();
            self.basic
                .lock()
                .expect("basic-auth cache poisoned")
                .insert(host.to_owned(), header.clone());
            return Ok(header);
        }
        Err(RegistryError::Unauthorized {
            host: host.to_owned(),
            problem: "asks for an authentication scheme imagelock does not support".into(),
            fix: AuthFix::None,
        })
    }

    /// GETs a token from `realm`; returns (token, lifetime in seconds).
    async fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&String>,
        scopes: &[&str],
        credential: Option<&Credential>,
    ) -> Result<(String, u64), RegistryError> {
        // Credentials and the token they buy go over HTTPS, or over plain HTTP
        // only to a host images.toml lists: refuse before sending anything.
        if let Err(refused) = scheme_allowed(realm, &self.insecure_http) {
            return Err(match refused {
                RegistryError::PlainHttp {
                    host: realm_host, ..
                } => RegistryError::PlainHttpRealm {
                    host: host.to_owned(),
                    realm: realm.to_owned(),
                    realm_host,
                },
                other => other,
            });
        }
        let mut query: Vec<(&str, &str)> = scopes.iter().map(|s| ("scope", *s)).collect();
        if let Some(service) = service {
            query.push(("service", service));
        }
        if let Some(c) = credential {
            query.push(("account", &c.username));
        }
        let response = self
            .with_retries(realm, Transfer::Document, || {
                let mut request = self.http.get(realm).query(&query);
                if let Some(c) = credential {
                    request = request.header(AUTHORIZATION, c.basic_header());
                }
                request
            })
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED
            || response.status() == StatusCode::FORBIDDEN
        {
            let (problem, fix) = match credential {
                Some(_) => (
                    format!(
                        "its token server {realm} refused the credentials found ({})",
                        describe_search_path()
                    ),
                    AuthFix::LogInAgain,
                ),
                None => (
                    format!(
                        "its token server {realm} refused anonymous access ({})",
                        describe_search_path()
                    ),
                    AuthFix::LogIn,
                ),
            };
            return Err(RegistryError::Unauthorized {
                host: host.to_owned(),
                problem,
                fix,
            });
        }
        if !response.status().is_success() {
            return Err(status_error(realm, response).await);
        }
        let body = read_capped(response, realm, MAX_TOKEN_BYTES).await?;
        #[derive(Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Unauthorized {
                host: host.to_owned(),
                problem: format!("its token server {realm} sent invalid JSON: {e}"),
                fix: AuthFix::None,
            })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Unauthorized {
                host: host.to_owned(),
                problem: format!("its token server {realm} sent no token"),
                fix: AuthFix::None,
            })?;
        Ok((
            token,
            parsed
                .expires_in
                .unwrap_or(DEFAULT_TOKEN_LIFETIME)
                .max(DEFAULT_TOKEN_LIFETIME),
        ))
    }
}

fn describe_search_path() -> String {
    let files: Vec<String> = credentials::search_path()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    format!("searched {}", files.join(", "))
}

/// Whether `url` is on the host (and port) of the endpoint `base`, the rule
/// reqwest applies before carrying `Authorization` across a redirect.
pub(super) fn same_host(url: &str, base: &str) -> bool {
    match (reqwest::Url::parse(url), reqwest::Url::parse(base)) {
        (Ok(a), Ok(b)) => {
            a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: HashMap<String, String>,
}

/// Parses `Scheme k=v, k="quoted, with commas"`; scheme and keys lowercased.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        params.insert(key, value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(r#"Bearer realm="http://127.0.0.1:5126/token",service="test-registry",scope="repository:test/img:pull,push""#)
            .expect("parses");
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "http://127.0.0.1:5126/token");
        assert_eq!(c.params["service"], "test-registry");
        assert_eq!(c.params["scope"], "repository:test/img:pull,push");
        let c = parse_challenge(r#"Basic realm="test realm""#).expect("parses");
        assert_eq!(
            (c.scheme.as_str(), c.params["realm"].as_str()),
            ("basic", "test realm")
        );
        let c = parse_challenge("Bearer realm=https://auth.example/token, service=reg")
            .expect("parses");
        assert_eq!(c.params["service"], "reg");
    }

    #[test]
    fn credentials_stay_on_the_registry_host() {
        let base = "https://registry.test";
        for (url, same) in [
            ("https://registry.test/v2/x/blobs/uploads/1", true),
            ("https://registry.test:443/v2/x/blobs/uploads/1", true),
            ("https://registry.test:5000/v2/x/blobs/uploads/1", false),
            ("http://registry.test/v2/x/blobs/uploads/1", false),
            ("https://storage.test/upload/1", false),
            ("https://registry.test.evil/upload", false),
            ("not a url", false),
        ] {
            assert_eq!(same_host(url, base), same, "{url}");
        }
    }
}
