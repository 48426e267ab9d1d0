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

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, RANGE,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::digest::{Digest, Hasher};
use crate::oci;
use crate::oci::credentials::{self, Credential};
use crate::text::escape;

/// Connection timeout: long enough for a slow TLS handshake, short enough to fail fast offline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Read timeout between bytes: a registry silent this long is treated as gone
/// (the connection is then retried, resuming where it stopped);
/// `IMAGELOCK_HTTP_READ_TIMEOUT_MS` overrides it.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Tokens are refreshed this long before they expire, so a request never races expiry.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Token servers may omit `expires_in`; the token spec says to assume 60 seconds.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;
/// Token responses are small JSON; cap them so a hostile server can't exhaust memory.
const MAX_TOKEN_BYTES: u64 = 1024 * 1024;
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
}

/// The read timeout: [`READ_TIMEOUT`] unless `IMAGELOCK_HTTP_READ_TIMEOUT_MS` says otherwise.
fn read_timeout() -> Duration {
    std::env::var("IMAGELOCK_HTTP_READ_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(READ_TIMEOUT, Duration::from_millis)
}

/// Retries of transient failures: connection errors, timeouts, 5xx, 408 and
/// 429 (honouring `Retry-After`), with capped exponential backoff and jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first backoff delay; doubled per retry up to [`MAX_RETRY_DELAY`].
    pub delay: Duration,
}

/// Retries by default: enough to ride out a registry restart or a CDN blip,
/// few enough that a dead host fails within seconds (`IMAGELOCK_HTTP_RETRIES`).
pub const DEFAULT_RETRIES: u32 = 4;
/// First backoff delay by default (`IMAGELOCK_HTTP_RETRY_DELAY_MS`; tests use 0).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between attempts, including a server's `Retry-After`.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            retries: DEFAULT_RETRIES,
            delay: DEFAULT_RETRY_DELAY,
        }
    }
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

impl RetryPolicy {
    /// The defaults, overridden by `IMAGELOCK_HTTP_RETRIES` and `IMAGELOCK_HTTP_RETRY_DELAY_MS`.
    pub fn from_env() -> Result<RetryPolicy, String> {
        let mut policy = RetryPolicy::default();
        if let Some(n) = env_number("IMAGELOCK_HTTP_RETRIES")? {
            policy.retries =
                u32::try_from(n).map_err(|_| "IMAGELOCK_HTTP_RETRIES is too large".to_owned())?;
        }
        if let Some(ms) = env_number("IMAGELOCK_HTTP_RETRY_DELAY_MS")? {
            policy.delay = Duration::from_millis(ms);
        }
        Ok(policy)
    }

    /// The wait before retry number `retry` (1-based): exponential, capped, with
    /// up to 50% random jitter so a fleet of clients does not retry in step.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(MAX_RETRY_DELAY);
        let jitter = exponential.mul_f64(jitter_fraction() * 0.5);
        retry_after
            .map_or(exponential + jitter, |after| after.max(exponential))
            .min(MAX_RETRY_DELAY)
    }
}

/// A pseudo-random fraction in [0, 1) for jitter; quality does not matter.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// How long a document request (a manifest, discovery page, signature, key or
/// token) may take from connecting to its last byte, and how long any request
/// may wait for its response headers. The largest document accepted (a 4 MiB
/// manifest) still arrives at 14 KiB/s, slower than any real link; a server
/// that trickles is cut off after minutes instead of holding a run forever.
/// `IMAGELOCK_HTTP_DEADLINE_MS` overrides it.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(300);
/// The slowest a blob body may arrive, in bytes per second averaged over
/// [`DEFAULT_MIN_RATE_WINDOW`]. Blobs can be gigabytes, so they get a rate
/// rather than a deadline: at 1 KiB/s one gigabyte takes twelve days, so a
/// server this slow is stalling, not serving (cargo's low-speed check, 10 B/s,
/// is for small crates). The download then resumes like any interrupted one.
/// `IMAGELOCK_HTTP_MIN_RATE` overrides it.
pub const DEFAULT_MIN_RATE: u64 = 1024;
/// The window the minimum rate is averaged over: long enough to ride out a
/// congested moment or a slow disk on the server (cargo waits 30 s too).
/// `IMAGELOCK_HTTP_MIN_RATE_WINDOW_MS` overrides it.
pub const DEFAULT_MIN_RATE_WINDOW: Duration = Duration::from_secs(30);

/// Time limits on every request (0 in an override turns that limit off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLimits {
    /// A document's whole exchange, and any request's wait for headers.
    pub deadline: Duration,
    /// Bytes per second a blob body must average over `rate_window`.
    pub min_rate: u64,
    /// The window `min_rate` is measured over.
    pub rate_window: Duration,
}

impl Default for TransferLimits {
    fn default() -> TransferLimits {
        TransferLimits {
            deadline: DEFAULT_REQUEST_DEADLINE,
            min_rate: DEFAULT_MIN_RATE,
            rate_window: DEFAULT_MIN_RATE_WINDOW,
        }
    }
}

impl TransferLimits {
    /// The defaults, overridden by `IMAGELOCK_HTTP_DEADLINE_MS`,
    /// `IMAGELOCK_HTTP_MIN_RATE` and `IMAGELOCK_HTTP_MIN_RATE_WINDOW_MS`.
    pub fn from_env() -> Result<TransferLimits, String> {
        let mut limits = TransferLimits::default();
        if let Some(ms) = env_number("IMAGELOCK_HTTP_DEADLINE_MS")? {
            limits.deadline = Duration::from_millis(ms);
        }
        if let Some(rate) = env_number("IMAGELOCK_HTTP_MIN_RATE")? {
            limits.min_rate = rate;
        }
        if let Some(ms) = env_number("IMAGELOCK_HTTP_MIN_RATE_WINDOW_MS")? {
            limits.rate_window = Duration::from_millis(ms);
        }
        Ok(limits)
    }

    /// Bytes that must arrive in each rate window, or `None` when there is no rate limit.
    fn bytes_per_window(&self) -> Option<u64> {
        let bytes = u128::from(self.min_rate) * self.rate_window.as_millis() / 1000;
        (bytes > 0).then(|| u64::try_from(bytes).unwrap_or(u64::MAX))
    }
}

/// How a request's response is bounded in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    /// A document: headers and the whole body within the deadline.
    Document,
    /// A blob: headers within the deadline, then the body at the minimum rate.
    Stream,
    /// A request carrying a blob (up to a push chunk): no deadline, since
    /// sending it is part of the request; the response body as for [`Transfer::Stream`].
    Upload,
}

/// A body that broke a [`TransferLimits`] limit; found in a reqwest error's
/// causes by [`network`], which turns it into [`RegistryError::TooSlow`].
#[derive(Debug)]
struct Slow(String);

impl std::fmt::Display for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Slow {}

/// What a deadline of `deadline` means, for messages.
fn deadline_broken(deadline: Duration) -> String {
    format!(
        "no complete answer within {} (the deadline for one request)",
        crate::text::human_duration(deadline)
    )
}

/// What falling under the minimum rate means, for messages.
fn rate_broken(limits: &TransferLimits, got: u64) -> String {
    format!(
        "{got} bytes in {}, under the minimum rate of {} bytes/s",
        crate::text::human_duration(limits.rate_window),
        limits.min_rate
    )
}

/// A response body held to a time limit: a deadline for its last byte, or a
/// minimum rate per window. Its size hint is the inner body's, so the
/// response's `content_length()` is unchanged.
struct LimitedBody {
    inner: reqwest::Body,
    limit: BodyLimit,
    /// Fires at the deadline, or when the current rate window would end.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Bytes received in the current rate window.
    window_bytes: u64,
    /// Time spent waiting for the server in the current rate window. Only
    /// that counts: a reader that stops polling (a full channel to a slow
    /// disk) must not make the server look slow.
    waited: Duration,
    /// Since when the body has been waiting for the server, if it is.
    pending_since: Option<tokio::time::Instant>,
}

enum BodyLimit {
    /// The last byte must arrive before the timer fires.
    Deadline(Duration),
    /// Each window of waiting on the server must bring this many bytes.
    Rate(TransferLimits, u64),
}

impl LimitedBody {
    fn new(inner: reqwest::Body, limit: BodyLimit, timer: tokio::time::Sleep) -> LimitedBody {
        LimitedBody {
            inner,
            limit,
            timer: Box::pin(timer),
            window_bytes: 0,
            waited: Duration::ZERO,
            pending_since: None,
        }
    }
}

impl http_body::Body for LimitedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = &mut *self;
        let now = tokio::time::Instant::now();
        match &this.limit {
            // Checked on every poll, also while bytes trickle in.
            BodyLimit::Deadline(deadline) => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Box::new(Slow(deadline_broken(*deadline))))));
                }
            }
            BodyLimit::Rate(limits, needed) => {
                if let Some(since) = this.pending_since.take() {
                    this.waited += now - since;
                }
                if this.waited >= limits.rate_window {
                    if this.window_bytes < *needed {
                        let slow = Slow(rate_broken(limits, this.window_bytes));
                        return Poll::Ready(Some(Err(Box::new(slow))));
                    }
                    this.waited = Duration::ZERO;
                    this.window_bytes = 0;
                }
            }
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.window_bytes = this.window_bytes.saturating_add(data.len() as u64);
                }
            }
            Poll::Pending => {
                if let BodyLimit::Rate(limits, _) = &this.limit {
                    // Wake up when this window's waiting would be used up.
                    this.pending_since = Some(now);
                    let end = now + limits.rate_window.saturating_sub(this.waited);
                    this.timer.as_mut().reset(end);
                    let _ = this.timer.as_mut().poll(cx);
                }
            }
            Poll::Ready(_) => {}
        }
        polled.map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a status is worth retrying: the server is overloaded or failing.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_str(headers, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
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

#[derive(Debug, Clone)]
struct Token {
    header: String,
    expires: Instant,
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

    /// Sends the request `build` makes, again after transient failures
    /// (connection errors, timeouts, 5xx, 408, 429) with backoff; returns the
    /// first other response, whatever its status. Every response's body is
    /// bounded as `transfer` says; a request whose headers miss the deadline
    /// (uploads excepted) fails at once: a server that slow is no blip.
    async fn with_retries(
        &self,
        url: &str,
        transfer: Transfer,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = tokio::time::Instant::now();
            let sent = if self.limits.deadline.is_zero() || transfer == Transfer::Upload {
                build().send().await
            } else {
                tokio::time::timeout(self.limits.deadline, build().send())
                    .await
                    .map_err(|_| RegistryError::TooSlow {
                        url: url.to_owned(),
                        what: deadline_broken(self.limits.deadline),
                    })?
            };
            let sent = sent.map(|response| self.bounded(response, transfer, started));
            let (last, after) = match sent {
                Ok(response) if !is_transient(response.status()) => return Ok(response),
                Ok(response) => {
                    let after = retry_after(response.headers());
                    (status_error(url, response).await, after)
                }
                Err(e) if e.is_builder() || e.is_redirect() => return Err(network(url, &e)),
                Err(e) => (network(url, &e), None),
            };
            if attempt > self.retry.retries {
                return Err(if attempt > 1 {
                    RegistryError::Exhausted {
                        attempts: attempt,
                        last: Box::new(last),
                    }
                } else {
                    last
                });
            }
            tokio::time::sleep(self.retry.backoff(attempt, after)).await;
        }
    }

    /// `response` with its body held to the limits of `transfer`, for a request sent at `started`.
    fn bounded(
        &self,
        response: reqwest::Response,
        transfer: Transfer,
        started: tokio::time::Instant,
    ) -> reqwest::Response {
        let limits = self.limits;
        let (limit, timer) = match transfer {
            Transfer::Document if !limits.deadline.is_zero() => (
                BodyLimit::Deadline(limits.deadline),
                tokio::time::sleep_until(started + limits.deadline),
            ),
            Transfer::Stream | Transfer::Upload => match limits.bytes_per_window() {
                Some(needed) if !limits.rate_window.is_zero() => (
                    BodyLimit::Rate(limits, needed),
                    tokio::time::sleep(limits.rate_window),
                ),
                _ => return response,
            },
            Transfer::Document => return response,
        };
        use reqwest::ResponseBuilderExt as _;
        let url = response.url().clone();
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let mut builder = http::Response::builder()
            .status(parts.status)
            .version(parts.version)
            .url(url);
        if let Some(headers) = builder.headers_mut() {
            *headers = parts.headers;
        }
        let body = reqwest::Body::wrap(LimitedBody::new(body, limit, timer));
        builder
            .body(body)
            .map(reqwest::Response::from)
            .expect("a status, version and headers taken from a response make a response")
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

    /// Whether credentials or a token may be sent to `url`: HTTPS, or plain
    /// HTTP to a host images.toml lists.
    fn may_carry_credentials(&self, url: &str) -> bool {
        scheme_allowed(url, &self.insecure_http).is_ok()
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

    /// Sends `method url` with `decorate`'s headers and body, with the
    /// credentials `scope` needs (answering a 401 challenge once), retrying
    /// transient failures; returns whatever the registry answered then.
    async fn authorized(
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
    async fn authorized_as(
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

    /// The digest `repo` has under manifest `reference` (`HEAD`), if any.
    pub async fn manifest_digest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = repo.url("manifests", reference);
        let response = self
            .authorized(repo, &push_scope(repo), Method::HEAD, &url, |r| {
                r.header(ACCEPT, oci::MANIFEST_ACCEPT)
            })
            .await?;
        match response.status() {
            s if s.is_success() => Ok(header_str(response.headers(), "docker-content-digest")
                .and_then(|d| d.parse().ok())
                .or_else(|| reference.parse().ok())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(&url, response).await),
        }
    }

    /// Whether `repo` has the blob (`HEAD`).
    pub async fn has_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = repo.url("blobs", &digest.to_string());
        let scope = push_scope(repo);
        let response = self
            .authorized(repo, &scope, Method::HEAD, &url, |r| r)
            .await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&url, response).await),
        }
    }

    /// Asks the registry to mount `digest` from repository `from` on the same
    /// registry (no bytes move). `Ok(None)` when mounted; otherwise the upload
    /// session URL the registry opened instead.
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        from: &str,
    ) -> Result<Option<String>, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            repo.base, repo.path
        );
        let scope = format!("{} repository:{from}:pull", push_scope(repo));
        let response = self
            .authorized(repo, &scope, Method::POST, &url, |r| {
                r.header(reqwest::header::CONTENT_LENGTH, "0")
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(upload_location(repo, &url, &response)?)),
            _ => Err(status_error(&url, response).await),
        }
    }

    /// Opens an upload session; returns its URL.
    pub async fn start_upload(&self, repo: &Repository) -> Result<String, RegistryError> {
        let url = format!("{}/v2/{}/blobs/uploads/", repo.base, repo.path);
        let response = self
            .authorized(repo, &push_scope(repo), Method::POST, &url, |r| {
                r.header(reqwest::header::CONTENT_LENGTH, "0")
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&url, response).await);
        }
        upload_location(repo, &url, &response)
    }

    /// Sends bytes `start..start+length` of an upload as one streamed `PATCH`
    /// (bounded memory for any size). Not retried here: the body is a stream;
    /// the caller resumes from [`RegistryClient::upload_status`].
    pub async fn upload_stream(
        &self,
        repo: &Repository,
        location: &str,
        start: u64,
        length: u64,
        body: reqwest::Body,
    ) -> Result<String, RegistryError> {
        self.check_scheme(location)?;
        let mut request = self
            .http
            .patch(location)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .header("Content-Range", format!("{start}-{}", start + length - 1))
            .body(body);
        if let Some(value) = self
            .cached_auth(repo.host(), &push_scope(repo))
            .filter(|_| same_host(location, &repo.base) && self.may_carry_credentials(location))
        {
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| network(location, &e))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(location, response).await);
        }
        upload_location(repo, location, &response)
    }

    /// Where an upload session stands (`GET` on the session): how many bytes
    /// it holds and the URL to continue it at.
    pub async fn upload_status(
        &self,
        repo: &Repository,
        location: &str,
    ) -> Result<(u64, String), RegistryError> {
        let response = self
            .authorized(repo, &push_scope(repo), Method::GET, location, |r| r)
            .await?;
        if response.status() != StatusCode::NO_CONTENT {
            return Err(status_error(location, response).await);
        }
        // distribution answers `0-0` for an empty session as well as for one
        // byte: read it as empty (resending a byte costs nothing; a resume
        // that skips one corrupts the upload).
        let held = header_str(response.headers(), "range")
            .and_then(|r| r.rsplit('-').next())
            .and_then(|last| last.parse::<u64>().ok())
            .map_or(0, |last| if last == 0 { 0 } else { last + 1 });
        let next =
            upload_location(repo, location, &response).unwrap_or_else(|_| location.to_owned());
        Ok((held, next))
    }

    /// Completes an upload session (`PUT ?digest=`); the registry checks the digest.
    pub async fn finish_upload(
        &self,
        repo: &Repository,
        location: &str,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let response = self
            .authorized(repo, &push_scope(repo), Method::PUT, &url, |r| {
                r.header(reqwest::header::CONTENT_LENGTH, "0")
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&url, response).await);
        }
        Ok(())
    }

    /// Completes an upload session with the whole blob in this one request
    /// (`PUT ?digest=` with a body): one round trip for small blobs.
    pub async fn finish_upload_with(
        &self,
        repo: &Repository,
        location: &str,
        digest: &Digest,
        body: bytes::Bytes,
    ) -> Result<(), RegistryError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let response = self
            .authorized_as(
                repo,
                &push_scope(repo),
                Method::PUT,
                Transfer::Upload,
                &url,
                |r| {
                    r.header(CONTENT_TYPE, "application/octet-stream")
                        .body(body.clone())
                },
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&url, response).await);
        }
        Ok(())
    }

    /// Uploads a manifest's exact bytes under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: bytes::Bytes,
    ) -> Result<(), RegistryError> {
        let url = repo.url("manifests", reference);
        let response = self
            .authorized(repo, &push_scope(repo), Method::PUT, &url, |r| {
                r.header(CONTENT_TYPE, media_type).body(bytes.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&url, response).await);
        }
        Ok(())
    }

    fn cached_auth(&self, host: &str, scope: &str) -> Option<String> {
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

/// The token scope for pushing to `repo`.
fn push_scope(repo: &Repository) -> String {
    format!("repository:{}:pull,push", repo.path)
}

/// The absolute URL of an upload session from a response's `Location`
/// (registries may answer with a path).
fn upload_location(
    repo: &Repository,
    url: &str,
    response: &reqwest::Response,
) -> Result<String, RegistryError> {
    let location =
        header_str(response.headers(), "location").ok_or_else(|| RegistryError::Network {
            url: url.to_owned(),
            message: "the registry opened an upload session without a Location".into(),
        })?;
    if location.starts_with("http://") || location.starts_with("https://") {
        Ok(location.to_owned())
    } else {
        Ok(format!("{}{location}", repo.base))
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
    RegistryError::Network {
        url: url.to_owned(),
        message: error_chain(e),
    }
}

/// Whether `url` is on the host (and port) of the endpoint `base`, the rule
/// reqwest applies before carrying `Authorization` across a redirect.
fn same_host(url: &str, base: &str) -> bool {
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

    #[test]
    fn rate_limits_count_bytes_per_window() {
        let limits = TransferLimits::default();
        assert_eq!(limits.bytes_per_window(), Some(30 * 1024));
        let off = TransferLimits {
            min_rate: 0,
            ..limits
        };
        assert_eq!(off.bytes_per_window(), None);
        let fast = TransferLimits {
            min_rate: 1000,
            rate_window: Duration::from_millis(500),
            ..limits
        };
        assert_eq!(fast.bytes_per_window(), Some(500));
    }

    /// A body stream: `chunks` chunks ready at once, then the end; or, with
    /// `chunks` = `None`, a server that never sends anything.
    struct Chunks(Option<usize>);

    impl futures_core::Stream for Chunks {
        type Item = Result<bytes::Bytes, std::io::Error>;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match &mut self.0 {
                None => Poll::Pending,
                Some(0) => Poll::Ready(None),
                Some(n) => {
                    *n -= 1;
                    Poll::Ready(Some(Ok(bytes::Bytes::from_static(b"0123456789"))))
                }
            }
        }
    }

    async fn next_frame(body: &mut LimitedBody) -> Option<Result<bytes::Bytes, String>> {
        use http_body::Body as _;
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
            .await
            .map(|frame| {
                frame
                    .map(|f| f.into_data().unwrap_or_default())
                    .map_err(|e| e.to_string())
            })
    }

    #[tokio::test]
    async fn only_time_waiting_on_the_server_counts_against_the_rate() {
        let limits = TransferLimits {
            min_rate: 1_000_000,
            rate_window: Duration::from_millis(50),
            ..TransferLimits::default()
        };
        let rate = || BodyLimit::Rate(limits, limits.bytes_per_window().expect("a rate"));
        // The reader is the slow one: 10 bytes per 100 ms, but every byte was
        // ready when asked for.
        let mut body = LimitedBody::new(
            reqwest::Body::wrap_stream(Chunks(Some(3))),
            rate(),
            tokio::time::sleep(limits.rate_window),
        );
        for _ in 0..3 {
            assert!(matches!(next_frame(&mut body).await, Some(Ok(_))));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(next_frame(&mut body).await.is_none());
        // A server that sends nothing fails after one window.
        let mut silent = LimitedBody::new(
            reqwest::Body::wrap_stream(Chunks(None)),
            rate(),
            tokio::time::sleep(limits.rate_window),
        );
        let started = Instant::now();
        let error = next_frame(&mut silent)
            .await
            .expect("an error")
            .expect_err("too slow");
        assert!(
            error.contains("0 bytes in 50ms, under the minimum rate"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

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
