//! Downloads into the store: a blob streamed from a registry or a URL and
//! resumed where an interrupted download stopped, or a local file copied in.
//! Sync fetches its blobs through here (a manifest, small and capped, comes
//! whole from the registry client instead), and appc its ACIs.
//!
//! Invariants: bytes are hashed and written on blocking threads, never on the
//! async reactor, into a [`BlobWriter`], whose commit checks digest and size
//! before the blob gets its name; [`stream_into`] and [`copy_into`] leave the
//! commit to their caller, so it can look at the content first. A download
//! resumes from what an earlier attempt left (`Range: bytes=N-`) only when the
//! server answers 206 at exactly that offset; any other answer starts over
//! from zero; a connection that breaks mid-body is picked up again, with
//! backoff, as often as the client's retry policy allows. A body whose
//! announced length disagrees with the expected size is refused before a
//! byte is written. Bytes kept from an earlier attempt that fail the digest
//! check cost one fresh download, never a wrong blob.
//!
//! Progress: bytes an earlier run left are reported as resumed
//! ([`Reporter::resumed`]), never as bytes transferred now.
//!
//! On disk: a partial download stays in the store's `ingest/` area (see
//! [`Store::ingest_resumable`]), so a later run resumes it too.

use std::path::Path;

use anyhow::Context as _;

use crate::concurrency;
use crate::oci::registry::{Conditions, RegistryClient, RegistryError, Repository, network};
use crate::progress::Reporter;
use crate::project::lockfile::Blob;
use crate::store::{BlobWriter, Store, StoreError};

/// Copies the local file at `path` into the store as `blob` and commits it,
/// which checks it against `blob`; returns the bytes copied.
pub fn copy_file(path: &Path, blob: &Blob, store: &Store) -> anyhow::Result<u64> {
    let writer = copy_into(path, store.ingest(blob)?)?;
    let written = writer.written();
    writer
        .commit()
        .with_context(|| format!("{} does not match the lock", path.display()))?;
    Ok(written)
}

/// Copies a local file into `writer` (hashing it); the caller commits.
pub fn copy_into(path: &Path, mut writer: BlobWriter) -> anyhow::Result<BlobWriter> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buffer = vec![0u8; concurrency::COPY_BUFFER_BYTES];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        writer.write(&buffer[..n])?;
    }
    Ok(writer)
}

/// Where a blob is downloaded from.
pub enum Remote<'a> {
    /// A registry repository, which has it under its digest.
    Registry(&'a Repository),
    /// A plain http(s) URL.
    Url(&'a str),
}

/// Downloads `blob` into the store, resuming what an interrupted download left
/// in `ingest/` (`Range: bytes=N-`) and continuing after a broken connection
/// with backoff; a server that answers a range request with the whole body
/// (200) restarts it from zero. The digest is checked over the whole
/// reassembled blob before it gets its name.
pub async fn download_resumable(
    client: &RegistryClient,
    remote: &Remote<'_>,
    blob: &Blob,
    store: &Store,
    reporter: &dyn Reporter,
) -> anyhow::Result<Blob> {
    let url = match remote {
        Remote::Registry(repo) => format!("{}/v2/{}/blobs/{}", repo.base, repo.path, blob.digest),
        Remote::Url(url) => (*url).to_owned(),
    };
    let opened = {
        let store = store.clone();
        let blob = blob.clone();
        tokio::task::spawn_blocking(move || store.ingest_resumable(&blob))
            .await
            .context("a blob writer panicked")??
    };
    let mut writer = opened;
    let mut resumed = writer.written() > 0;
    // What an earlier run left: reported as resumed once the server continues at
    // its end (a server that sends the whole blob again makes it count for nothing).
    let mut kept = writer.written();
    let policy = client.retry_policy();
    let mut interruptions = 0;
    loop {
        let from = writer.written();
        if from == blob.size {
            if kept > 0 {
                reporter.resumed(kept);
            }
            break; // an earlier attempt got every byte; the digest check decides
        }
        resumed |= from > 0;
        let response = match remote {
            Remote::Registry(repo) => client.get_blob(repo, &blob.digest, Some(from)).await?,
            Remote::Url(url) => {
                let conditions = Conditions {
                    from: Some(from),
                    ..Default::default()
                };
                client.get_url_if(url, &conditions).await?
            }
        };
        if from > 0 && !resumes_at(&response, from) {
            // The server sent the whole blob (or another range): start over.
            writer.reset()?;
        } else if kept > 0 {
            reporter.resumed(kept);
        }
        kept = 0;
        match stream_body(response, &url, writer, reporter).await? {
            Streamed::Complete(done) => {
                writer = done;
                break;
            }
            Streamed::Interrupted(partial, error) => {
                interruptions += 1;
                if interruptions > policy.retries {
                    return Err(RegistryError::Exhausted {
                        attempts: interruptions,
                        last: Box::new(error),
                    }
                    .into());
                }
                writer = partial;
                tokio::time::sleep(policy.backoff(interruptions, None)).await;
            }
        }
    }
    let committed = tokio::task::spawn_blocking(move || writer.commit())
        .await
        .context("a blob writer panicked")?;
    match committed {
        // Bytes kept from an earlier, interrupted attempt were wrong (the
        // commit deleted them): one fresh download decides.
        Err(StoreError::DigestMismatch { .. }) if resumed => {
            Box::pin(download_resumable(client, remote, blob, store, reporter)).await
        }
        other => Ok(other?),
    }
}

/// Whether a response to `Range: bytes=FROM-` continues at `from`.
fn resumes_at(response: &reqwest::Response, from: u64) -> bool {
    response.status() == reqwest::StatusCode::PARTIAL_CONTENT
        && response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|start| start.parse::<u64>().ok())
            == Some(from)
}

/// How a body stream ended.
enum Streamed {
    /// Every byte arrived.
    Complete(BlobWriter),
    /// The connection broke; what arrived is in the writer.
    Interrupted(BlobWriter, RegistryError),
}

/// Streams a response body into `writer` (hashing and writing on a blocking
/// thread) without committing it. A broken connection hands the writer back
/// with what arrived; content that cannot be right (too many bytes, a size
/// other than the one announced) is an error.
async fn stream_body(
    mut response: reqwest::Response,
    url: &str,
    mut writer: BlobWriter,
    reporter: &dyn Reporter,
) -> anyhow::Result<Streamed> {
    if let Some(limit) = writer.expected_size()
        && let Some(length) = response.content_length()
        && writer.written() + length != limit
    {
        anyhow::bail!(
            "{url} announced {} bytes, the lock says {limit}",
            writer.written() + length
        );
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(concurrency::CHUNKS_IN_FLIGHT);
    let sink = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            writer.write(&chunk)?;
        }
        Ok::<_, StoreError>(writer)
    });
    let mut network_error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                reporter.bytes(chunk.len() as u64);
                if tx.send(chunk).await.is_err() {
                    break; // the writer stopped early; its error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                network_error = Some(network(url, &e));
                break;
            }
        }
    }
    drop(tx);
    let writer = sink.await.context("a blob writer panicked")??;
    Ok(match network_error {
        Some(e) => Streamed::Interrupted(writer, e),
        None => Streamed::Complete(writer),
    })
}

/// Streams a whole response body into `writer` without committing it, so the
/// caller can check the content first; a broken connection is an error.
pub async fn stream_into(
    response: reqwest::Response,
    url: &str,
    writer: BlobWriter,
    reporter: &dyn Reporter,
) -> anyhow::Result<BlobWriter> {
    match stream_body(response, url, writer, reporter).await? {
        Streamed::Complete(writer) => Ok(writer),
        Streamed::Interrupted(_, e) => Err(e.into()),
    }
}
