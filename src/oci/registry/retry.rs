//! Retries of transient failures: which failures earn another attempt
//! ([`is_transient`]: connection errors, timeouts, 5xx, 408, 429), how long
//! to wait before it ([`RetryPolicy::backoff`]: capped exponential backoff
//! with jitter, honouring `Retry-After`), and the send loop every request of
//! the client goes through ([`RegistryClient::with_retries`]).
//!
//! Invariants: a request is re-sent whole, so only requests whose body can be
//! rebuilt come through here (a streamed upload chunk does not; its caller
//! resumes the session instead). A request that could not be built, a refused
//! redirect and a request whose headers miss the deadline fail at once: none
//! of them is a blip. No wait is longer than [`MAX_RETRY_DELAY`], a server's
//! `Retry-After` included. Every response leaves the loop with its body held
//! to the limits of its kind of transfer (see `limits`).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::limits::{Transfer, deadline_broken};
use super::{RegistryClient, RegistryError, env_number, header_str, network, status_error};

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

/// Whether a status is worth retrying: the server is overloaded or failing.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// A connection refused by this very machine: nothing listens on the port, and
/// nothing will within a retry's wait (a registry on loopback is started by hand).
fn refused_on_loopback(url: &str, e: &reqwest::Error) -> bool {
    let loopback = reqwest::Url::parse(url).is_ok_and(|u| {
        let host = u.host_str().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut refused = false;
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            refused = true;
        }
        cause = c.source();
    }
    loopback && e.is_connect() && refused
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_str(headers, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl RegistryClient {
    /// Sends the request `build` makes, again after transient failures
    /// (connection errors, timeouts, 5xx, 408, 429) with backoff; returns the
    /// first other response, whatever its status. Every response's body is
    /// bounded as `transfer` says; a request whose headers miss the deadline
    /// (uploads excepted) fails at once: a server that slow is no blip.
    pub(super) async fn with_retries(
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
                Err(e) if refused_on_loopback(url, &e) => return Err(network(url, &e)),
                Err(e) => match network(url, &e) {
                    plain @ RegistryError::PlainHttpServer { .. } => return Err(plain),
                    other => (other, None),
                },
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
            let wait = self.retry.backoff(attempt, after);
            if let Some(notice) = &self.on_retry {
                (notice.0)(&super::Retrying {
                    url: url.to_owned(),
                    attempt,
                    attempts: self.retry.retries + 1,
                    wait,
                    reason: last.to_string(),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }
}
