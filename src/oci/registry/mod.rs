//! A client for OCI distribution registries: manifests and blobs by digest or
//! tag, with anonymous, Bearer-token and Basic authentication.
//!
//! Invariants: nothing from the network is trusted. Manifest bodies are capped
//! and hashed over the exact bytes received, and must match both the digest that
//! was asked for and any `Docker-Content-Digest` the registry sent. Blob bodies
//! are handed out as streams; their callers hash and size-check them (see
//! `store`). Tokens are cached per (registry, scope) and never sent to another
//! host (reqwest strips `Authorization` on cross-host redirects, and upload
//! locations on another host get none). Credentials and tokens travel only over
//! HTTPS, or plain HTTP to a host images.toml lists as `insecure-http` (not one
//! only the lock names, as under `sync --frozen`): a token server (realm) or a
//! registry on any other plain-HTTP address is refused before anything is sent.
//!
//! Every request is bounded in time ([`TransferLimits`]): a document (manifest,
//! page, signature, key, token) must arrive whole within a deadline; a blob,
//! which may be gigabytes, must keep up a minimum rate; either way a server
//! that trickles bytes fails the request with [`RegistryError::TooSlow`].
//!
//! The client is split by concern. This file holds the client itself, its
//! errors, the plain-HTTP rule and the reads: manifests, blobs, discovery
//! pages and plain URLs. `tags` lists a repository's tags, page by page; `retry` is which failures are retried and the send
//! loop every request goes through; `limits` the deadlines and minimum rates
//! response bodies are held to; `auth` the answer to a 401 (Basic
//! credentials, Bearer tokens) and the caches of both; `upload` the push
//! protocol (existence checks, mounts, blob upload sessions, manifests).
//! Everything callers name is re-exported here, so `crate::oci::registry::X`
//! is the one path to it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, RANGE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::digest::{Digest, Hasher};
use crate::oci;
use crate::oci::credentials;
use crate::text::escape;

mod auth;
mod limits;
mod retry;
mod tags;
mod upload;

pub use auth::AuthFix;
pub use limits::{
    DEFAULT_MIN_RATE, DEFAULT_MIN_RATE_WINDOW, DEFAULT_REQUEST_DEADLINE, TransferLimits,
};
pub(crate) use retry::is_transient;
pub use retry::{DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, MAX_RETRY_DELAY, RetryPolicy};
pub use tags::{MAX_TAG_LIST_BYTES, MAX_TAG_PAGES, TAGS_PAGE_SIZE};

use auth::Token;
use limits::{Slow, Transfer};

/// Connection timeout: long enough for a slow TLS handshake, short enough to fail fast offline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Read timeout between bytes: a registry silent this long is treated as gone
/// (the connection is then retried, resuming where it stopped);
/// `IMAGELOCK_HTTP_READ_TIMEOUT_MS` overrides it.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Error bodies are only shown to users; a few KiB is plenty.
const MAX_ERROR_BODY_BYTES: u64 = 16 * 1024;

/// Options for building the HTTP client.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Extra CA certificates (PEM) to trust besides the system roots and `SSL_CERT_FILE`.
    pub ca_files: Vec<PathBuf>,
    /// Host → socket address overrides (`--resolve`); TLS still verifies the host name.
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    /// `host[:port]`s images.toml allows plain HTTP for (`[registries]`), never
    /// hosts the lock records: a redirect to `http://` elsewhere is refused, and
    /// credentials and tokens reach no other host over plain HTTP.
    pub insecure_http: Vec<String>,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// How long a request may take and how slow a body may arrive.
    pub limits: TransferLimits,
    /// Told before each wait for a retry, so the user sees what is retried and when.
    pub on_retry: Option<RetryNotice>,
}

/// A retry about to happen: what failed, and when the next attempt comes.
#[derive(Debug, Clone)]
pub struct Retrying {
    /// The URL being fetched.
    pub url: String,
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// How many attempts there will be at most.
    pub attempts: u32,
    /// The wait before the next one.
    pub wait: Duration,
    /// What went wrong.
    pub reason: String,
}

/// Who hears of retries (see [`HttpOptions::on_retry`]).
#[derive(Clone)]
pub struct RetryNotice(pub Arc<dyn Fn(&Retrying) + Send + Sync>);

impl std::fmt::Debug for RetryNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryNotice")
    }
}

/// The read timeout: [`READ_TIMEOUT`] unless `IMAGELOCK_HTTP_READ_TIMEOUT_MS` says otherwise.
fn read_timeout() -> Duration {
    std::env::var("IMAGELOCK_HTTP_READ_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(READ_TIMEOUT, Duration::from_millis)
}

/// A whole number from environment variable `name`, if it is set and not empty.
fn env_number(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}=`{}` is not a whole number", escape(&v))),
        _ => Ok(None),
    }
}

/// Extra headers of a plain GET: a byte range to resume from, revalidation.
#[derive(Debug, Default, Clone)]
pub struct Conditions {
    /// Ask for the bytes from this offset on (`Range: bytes=N-`).
    pub from: Option<u64>,
    /// `If-None-Match`.
    pub etag: Option<String>,
    /// `If-Modified-Since`.
    pub last_modified: Option<String>,
}

/// Redirects followed per request, as browsers and Go's client do; a loop fails fast.
pub const MAX_REDIRECTS: usize = 10;
/// Discovery pages are small HTML documents; cap them so a hostile server can't exhaust memory.
pub const MAX_PAGE_BYTES: u64 = 1024 * 1024;

/// A registry failure, with the URL and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The client could not be built (bad CA file).
    #[error("could not set up HTTPS: {0}")]
    Setup(String),
    /// Connecting or reading failed.
    #[error("request to {url} failed: {message}")]
    Network {
        /// The URL.
        url: String,
        /// reqwest's description, with its causes.
        message: String,
    },
    /// A non-success status.
    #[error("{url} answered {status}{detail}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The registry's error message, prefixed with ": ", or empty.
        detail: String,
    },
    /// 401 with no usable credentials, or credentials refused.
    #[error("{host} requires authentication and {problem}")]
    Unauthorized {
        /// The registry.
        host: String,
        /// What went wrong with credentials.
        problem: String,
        /// What the user can do about it.
        fix: AuthFix,
    },
    /// The body's digest is not the one asked for or announced.
    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The URL.
        url: String,
        /// The digest we required.
        expected: String,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A paginated list (a repository's tags) longer than the pages allowed.
    #[error(
        "{url}: more than {pages} pages of tags (the limit); pin a tag instead of a version policy"
    )]
    TooManyPages {
        /// The last page's URL.
        url: String,
        /// The cap.
        pages: usize,
    },
    /// A body larger than allowed.
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// A manifest we cannot use.
    #[error("manifest at {url}: {source}")]
    Manifest {
        /// The URL.
        url: String,
        /// What is wrong.
        source: oci::ManifestError,
    },
    /// Reading credentials failed.
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
    /// A transient failure that persisted through every retry.
    #[error("{last} (gave up after {attempts} attempts)")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<RegistryError>,
    },
    /// The server answered too slowly: past the deadline, or under the minimum rate.
    #[error("{url} is too slow: {what}")]
    TooSlow {
        /// The URL.
        url: String,
        /// Which limit it broke, with the limit's value.
        what: String,
    },
    /// A token server (the realm of a Bearer challenge) that credentials or a
    /// token would reach over plain HTTP; nothing was sent to it.
    #[error(
        "{host} sends clients for a token to {realm}, which is plain HTTP: credentials and tokens are sent only over HTTPS, or over HTTP to a host listed in images.toml as `[registries.\"{realm_host}\"] insecure-http = true` (nothing was sent)"
    )]
    PlainHttpRealm {
        /// The registry that challenged.
        host: String,
        /// The token server's URL.
        realm: String,
        /// Its `host[:port]`.
        realm_host: String,
    },
    /// A registry asking for credentials over plain HTTP on a host images.toml
    /// does not list (its `http://` came from images.lock); nothing was sent.
    #[error(
        "{host} asks for credentials at {url}, which is plain HTTP, and images.toml does not list it as `[registries.\"{host}\"] insecure-http = true` (the plain HTTP comes from images.lock); credentials and tokens go only over HTTPS or to hosts images.toml lists (nothing was sent)"
    )]
    PlainHttpCredentials {
        /// The registry.
        host: String,
        /// The URL that was challenged.
        url: String,
    },
    /// An `https://` URL answered in plain HTTP: the registry does not speak TLS there.
    #[error(
        "{host} answered {url} in plain HTTP, not TLS: it is a plain-HTTP registry, which imagelock uses only when images.toml lists it as `[registries.\"{host}\"] insecure-http = true`"
    )]
    PlainHttpServer {
        /// The URL.
        url: String,
        /// Its `host[:port]`.
        host: String,
    },
    /// A plain-HTTP URL for a host the user did not allow plain HTTP for.
    #[error(
        "{url} is plain HTTP, which is used only for hosts listed in images.toml as `[registries.\"{host}\"] insecure-http = true`"
    )]
    PlainHttp {
        /// The URL.
        url: String,
        /// Its `host[:port]`.
        host: String,
    },
}

/// A manifest fetched from a registry, with its digest verified.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes received.
    pub bytes: Vec<u8>,
    /// Its media type (from Content-Type, checked against the body).
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
}

/// Where a repository lives: the endpoint base URL and the repository path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `https://host[:port]` or `http://host[:port]`.
    pub base: String,
    /// The repository path, e.g. `library/alpine`.
    pub path: String,
}

impl Repository {
    /// The `host[:port]` part of the base URL.
    pub fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, h)| h)
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.path)
    }
}

/// A registry client built on first use, so runs that need no network never
/// pay for TLS setup.
#[derive(Clone)]
pub struct LazyClient {
    options: HttpOptions,
    cell: Arc<Mutex<Option<Arc<RegistryClient>>>>,
}

impl LazyClient {
    /// A client with these options, not built yet.
    pub fn new(options: HttpOptions) -> LazyClient {
        LazyClient {
            options,
            cell: Arc::new(Mutex::new(None)),
        }
    }

    /// The client, built now if needed.
    pub fn get(&self) -> anyhow::Result<Arc<RegistryClient>> {
        let mut cell = self.cell.lock().expect("client cell poisoned");
        if let Some(client) = cell.as_ref() {
            return Ok(client.clone());
        }
        let client = Arc::new(RegistryClient::new(&self.options)?);
        *cell = Some(client.clone());
        Ok(client)
    }
}

/// The registry client; cheap to share behind an `Arc`.
pub struct RegistryClient {
    http: reqwest::Client,
    retry: RetryPolicy,
    on_retry: Option<RetryNotice>,
    limits: TransferLimits,
    /// `host[:port]`s plain HTTP is allowed for, credentials and tokens included.
    insecure_http: Vec<String>,
    /// Bearer tokens by (host, scope).
    tokens: Mutex<HashMap<(String, String), Token>>,
    /// Hosts that asked for Basic auth, with the header to send.
    basic: Mutex<HashMap<String, String>>,
}

impl RegistryClient {
    /// Builds a client trusting the system roots, `SSL_CERT_FILE` and `options.ca_files`.
    pub fn new(options: &HttpOptions) -> Result<RegistryClient, RegistryError> {
        let insecure_http = options.insecure_http.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let url = attempt.url();
            if url.scheme() == "http" && !insecure_http.iter().any(|h| *h == host_port(url)) {
                let to = url.to_string();
                return attempt.error(format!(
                    "redirected to plain HTTP ({to}), which is allowed only for hosts listed with `insecure-http = true`"
                ));
            }
            attempt.follow()
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("imagelock/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(read_timeout())
            .redirect(redirects);
        for (host, addr) in &options.resolve {
            builder = builder.resolve(host, *addr);
        }
        let mut ca_files = options.ca_files.clone();
        if let Some(f) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
            ca_files.push(PathBuf::from(f));
        }
        for file in &ca_files {
            let pem = std::fs::read(file).map_err(|e| {
                RegistryError::Setup(format!("cannot read CA file {}: {e}", file.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Setup(format!("CA file {} is not PEM: {e}", file.display()))
            })?;
            if certs.is_empty() {
                return Err(RegistryError::Setup(format!(
                    "CA file {} holds no certificate",
                    file.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Setup(error_chain(&e)))?;
        Ok(RegistryClient {
            http,
            retry: options.retry,
            on_retry: options.on_retry.clone(),
            limits: options.limits,
            insecure_http: options.insecure_http.clone(),
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(HashMap::new()),
        })
    }

    /// Fetches a manifest by tag or digest and verifies its digest.
    pub async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = repo.url("manifests", reference);
        let response = self
            .send(
                repo,
                Transfer::Document,
                &url,
                Some(oci::MANIFEST_ACCEPT),
                None,
            )
            .await?;
        let headers = response.headers().clone();
        let bytes = read_capped(response, &url, oci::MAX_MANIFEST_BYTES).await?;
        let digest = Digest::sha256_of(&bytes);
        let wanted: Option<Digest> = reference.parse().ok();
        check_digest(&url, &bytes, &digest, wanted.as_ref(), &headers)?;
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let media_type = oci::detect_media_type(content_type, &bytes).map_err(|source| {
            RegistryError::Manifest {
                url: url.clone(),
                source,
            }
        })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Fetches a manifest by tag or digest like [`Self::get_manifest`]; `None` when the
    /// registry answers 404 (no such tag).
    pub async fn get_manifest_if_exists(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        match self.get_manifest(repo, reference).await {
            Ok(fetched) => Ok(Some(fetched)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The OCI 1.1 referrers API: the image index listing the manifests whose `subject` is
    /// `digest`. `None` when the registry has no such API (it answers 404, as distribution
    /// 2.8 does); callers then read the referrers tag schema.
    pub async fn get_referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Option<oci::ImageIndex>, RegistryError> {
        let url = repo.url("referrers", &digest.to_string());
        let response = match self
            .send(repo, Transfer::Document, &url, Some(oci::OCI_INDEX), None)
            .await
        {
            Ok(response) => response,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = read_capped(response, &url, oci::MAX_MANIFEST_BYTES).await?;
        oci::parse_index(&bytes)
            .map(Some)
            .map_err(|source| RegistryError::Manifest { url, source })
    }

    /// Reads a small blob whole (at most `limit` bytes) and checks its digest.
    pub async fn get_blob_bytes(
        &self,
        repo: &Repository,
        digest: &Digest,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let url = repo.url("blobs", &digest.to_string());
        let response = self.get_blob(repo, digest, None).await?;
        let bytes = read_capped(response, &url, limit).await?;
        let mut hasher = crate::digest::Hasher::new(digest.algorithm());
        hasher.update(&bytes);
        let actual = hasher.finish();
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                url,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Starts a blob download, from byte `from` when given (a 206 answers;
    /// a registry that ignores ranges answers 200 with the whole blob). The caller must
    /// hash and size-check the body; `Docker-Content-Digest`, when sent, is
    /// checked against `digest` here.
    pub async fn get_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        from: Option<u64>,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = repo.url("blobs", &digest.to_string());
        let response = self.send(repo, Transfer::Stream, &url, None, from).await?;
        // A registry may announce its canonical (sha256) digest of a blob
        // asked for by sha512; only a digest of the same algorithm can contradict.
        if let Some(announced) = header_str(response.headers(), "docker-content-digest")
            && announced.starts_with(&format!("{}:", digest.algorithm().as_str()))
            && announced != digest.to_string()
        {
            return Err(RegistryError::DigestMismatch {
                url,
                expected: format!("{digest} (the registry announced {announced})"),
                actual: announced.parse().unwrap_or_else(|_| digest.clone()),
            });
        }
        Ok(response)
    }

    /// How this client retries transient failures.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// GETs a small document at a plain URL (signatures, keys), without
    /// registry credentials, bounded by the deadline; a non-success status is an error.
    pub async fn get_url(&self, url: &str) -> Result<reqwest::Response, RegistryError> {
        let response = self
            .get_url_with(url, &Conditions::default(), Transfer::Document)
            .await?;
        if !response.status().is_success() {
            return Err(status_error(url, response).await);
        }
        Ok(response)
    }

    /// GETs content at a plain URL (an ACI, a blob) with a range or
    /// revalidation headers; its body must keep up the minimum rate. Returns
    /// 200, 206 and 304 responses; other statuses are errors.
    pub async fn get_url_if(
        &self,
        url: &str,
        conditions: &Conditions,
    ) -> Result<reqwest::Response, RegistryError> {
        self.get_url_with(url, conditions, Transfer::Stream).await
    }

    async fn get_url_with(
        &self,
        url: &str,
        conditions: &Conditions,
        transfer: Transfer,
    ) -> Result<reqwest::Response, RegistryError> {
        self.check_scheme(url)?;
        let response = self
            .with_retries(url, transfer, || {
                let mut request = self.http.get(url);
                if let Some(from) = conditions.from.filter(|n| *n > 0) {
                    request = request.header(RANGE, format!("bytes={from}-"));
                }
                if let Some(etag) = &conditions.etag {
                    request = request.header(IF_NONE_MATCH, etag);
                }
                if let Some(date) = &conditions.last_modified {
                    request = request.header(IF_MODIFIED_SINCE, date);
                }
                request
            })
            .await?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            Ok(response)
        } else {
            Err(status_error(url, response).await)
        }
    }

    /// GETs a small document that may not exist (a signature): `None` on 404,
    /// the body otherwise, refusing more than `limit` bytes.
    pub async fn get_url_if_exists(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        match self.get_url_capped(url, limit).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(RegistryError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// GETs a plain URL and reads the whole body, refusing more than `limit` bytes.
    pub async fn get_url_capped(&self, url: &str, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let response = self.get_url(url).await?;
        read_capped(response, url, limit).await
    }

    /// GETs a discovery page: only an exact 200 counts (appc treats every other
    /// status as a miss); returns the final URL after redirects and the body.
    pub async fn get_page(&self, url: &str) -> Result<(String, Vec<u8>), RegistryError> {
        self.check_scheme(url)?;
        let response = self
            .with_retries(url, Transfer::Document, || self.http.get(url))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(RegistryError::Status {
                url: url.to_owned(),
                status: response.status(),
                detail: String::new(),
            });
        }
        let final_url = response.url().to_string();
        let body = read_capped(response, url, MAX_PAGE_BYTES).await?;
        Ok((final_url, body))
    }

    /// Refuses plain-HTTP URLs except for the hosts the user allowed (the
    /// redirect policy applies the same rule to every hop).
    fn check_scheme(&self, url: &str) -> Result<(), RegistryError> {
        scheme_allowed(url, &self.insecure_http)
    }

    /// Sends a request, authenticating on a 401 challenge and retrying once.
    async fn send(
        &self,
        repo: &Repository,
        transfer: Transfer,
        url: &str,
        accept: Option<&str>,
        from: Option<u64>,
    ) -> Result<reqwest::Response, RegistryError> {
        let scope = format!("repository:{}:pull", repo.path);
        let response = self
            .authorized_as(repo, &scope, Method::GET, transfer, url, |mut request| {
                if let Some(accept) = accept {
                    request = request.header(ACCEPT, accept);
                }
                if let Some(from) = from.filter(|n| *n > 0) {
                    request = request.header(RANGE, format!("bytes={from}-"));
                }
                request
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(url, response).await);
        }
        Ok(response)
    }
}

/// Checks manifest bytes against the digest asked for and the one the registry announced.
fn check_digest(
    url: &str,
    bytes: &[u8],
    digest: &Digest,
    wanted: Option<&Digest>,
    headers: &HeaderMap,
) -> Result<(), RegistryError> {
    if let Some(wanted) = wanted {
        let actual = if wanted.algorithm() == digest.algorithm() {
            digest.clone()
        } else {
            let mut h = Hasher::new(wanted.algorithm());
            h.update(bytes);
            h.finish()
        };
        if &actual != wanted {
            return Err(RegistryError::DigestMismatch {
                url: url.to_owned(),
                expected: wanted.to_string(),
                actual,
            });
        }
    }
    if let Some(announced) = header_str(headers, "docker-content-digest") {
        let announced_digest: Digest =
            announced
                .parse()
                .map_err(|_| RegistryError::DigestMismatch {
                    url: url.to_owned(),
                    expected: format!("{announced} (Docker-Content-Digest, unparseable)"),
                    actual: digest.clone(),
                })?;
        let mut h = Hasher::new(announced_digest.algorithm());
        h.update(bytes);
        let actual = h.finish();
        if actual != announced_digest {
            return Err(RegistryError::DigestMismatch {
                url: url.to_owned(),
                expected: format!("{announced} (Docker-Content-Digest)"),
                actual,
            });
        }
    }
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        url: url.to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network(url, &e))? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn status_error(url: &str, response: reqwest::Response) -> RegistryError {
    let status = response.status();
    let body = read_capped(response, url, MAX_ERROR_BODY_BYTES)
        .await
        .unwrap_or_default();
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    let detail = match serde_json::from_slice::<Errors>(&body) {
        Ok(errors) => errors
            .errors
            .iter()
            .map(|e| {
                // The server's words, shown as text: never terminal controls or bidi overrides.
                let code = escape(e.code.as_deref().unwrap_or("ERROR"));
                match &e.message {
                    Some(m) => format!("{code} ({})", escape(m)),
                    None => code.into_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => String::new(),
    };
    RegistryError::Status {
        url: url.to_owned(),
        status,
        detail: if detail.is_empty() {
            detail
        } else {
            format!(": {detail}")
        },
    }
}

/// HTTPS, or plain HTTP to one of `hosts`; any other URL is refused.
fn scheme_allowed(url: &str, hosts: &[String]) -> Result<(), RegistryError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| RegistryError::Network {
        url: url.to_owned(),
        message: format!("not a valid URL: {e}"),
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if hosts.contains(&host_port(&parsed)) => Ok(()),
        "http" => Err(RegistryError::PlainHttp {
            url: url.to_owned(),
            host: host_port(&parsed),
        }),
        other => Err(RegistryError::Network {
            url: url.to_owned(),
            message: format!("the `{other}` scheme is not supported (use https://)"),
        }),
    }
}

/// `host[:port]` of a URL as users write it in `[registries]` (the port only when explicit).
/// Whether a failure is the registry saying "no such thing" (404).
pub fn is_not_found(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
}

pub fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Describes a reqwest error with its causes (reqwest's Display alone hides them).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A network error for `url`; a body that broke a time limit is [`RegistryError::TooSlow`].
pub fn network(url: &str, e: &reqwest::Error) -> RegistryError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(slow) = c.downcast_ref::<Slow>() {
            return RegistryError::TooSlow {
                url: url.to_owned(),
                what: slow.0.clone(),
            };
        }
        cause = c.source();
    }
    // rustls reading an HTTP response where a TLS record belongs: the server speaks
    // plain HTTP on this port. No retry changes that.
    if url.starts_with("https://") && error_chain(e).contains("InvalidContentType") {
        let host = reqwest::Url::parse(url)
            .map(|u| host_port(&u))
            .unwrap_or_default();
        return RegistryError::PlainHttpServer {
            url: url.to_owned(),
            host,
        };
    }
    RegistryError::Network {
        url: url.to_owned(),
        message: error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_digests_are_checked() {
        let bytes = b"{}";
        let digest = Digest::sha256_of(bytes);
        let mut headers = HeaderMap::new();
        assert!(check_digest("u", bytes, &digest, Some(&digest), &headers).is_ok());
        let other = Digest::sha256_of(b"x");
        assert!(check_digest("u", bytes, &digest, Some(&other), &headers).is_err());
        headers.insert(
            "docker-content-digest",
            other.to_string().parse().expect("header"),
        );
        assert!(check_digest("u", bytes, &digest, None, &headers).is_err());
        headers.insert(
            "docker-content-digest",
            digest.to_string().parse().expect("header"),
        );
        assert!(check_digest("u", bytes, &digest, None, &headers).is_ok());
    }
}
