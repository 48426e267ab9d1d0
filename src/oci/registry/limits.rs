//! Time limits on requests ([`TransferLimits`]): a document (manifest,
//! discovery page, signature, key, token) must arrive whole within a
//! deadline; a blob, which may be gigabytes, must keep up a minimum rate
//! instead. [`LimitedBody`] wraps a response body to hold it to either limit;
//! a broken limit is a [`Slow`] error inside the body's error, which
//! [`super::network`] turns into
//! [`RegistryError::TooSlow`](super::RegistryError::TooSlow).
//!
//! Invariants: only time spent waiting on the server counts against the rate,
//! so a reader that stops polling (a full channel to a slow disk) never makes
//! the server look slow; a limit of 0 turns that limit off; a wrapped body
//! keeps the inner body's size hint, so `content_length()` is unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{RegistryClient, env_number};

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
pub(super) enum Transfer {
    /// A document: headers and the whole body within the deadline.
    Document,
    /// A blob: headers within the deadline, then the body at the minimum rate.
    Stream,
    /// A request carrying a blob (up to a push chunk): no deadline, since
    /// sending it is part of the request; the response body as for [`Transfer::Stream`].
    Upload,
}

/// A body that broke a [`TransferLimits`] limit; found in a reqwest error's
/// causes by [`super::network`], which turns it into
/// [`RegistryError::TooSlow`](super::RegistryError::TooSlow).
#[derive(Debug)]
pub(super) struct Slow(pub(super) String);

impl std::fmt::Display for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Slow {}

/// What a deadline of `deadline` means, for messages.
pub(super) fn deadline_broken(deadline: Duration) -> String {
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

impl RegistryClient {
    /// `response` with its body held to the limits of `transfer`, for a request sent at `started`.
    pub(super) fn bounded(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
}
