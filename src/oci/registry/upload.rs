//! Pushing to a registry: what a repository already holds (`HEAD` on a
//! manifest or blob), cross-repository mounts, the blob upload protocol (open
//! a session, send chunks with `PATCH`, ask where it stands, finish with
//! `PUT ?digest=`) and manifest uploads.
//!
//! Invariants: every request carries the repository's push scope (and a
//! mount also pull on its source). The registry checks the digest of every
//! blob it completes, and a manifest goes up as its exact bytes, so what the
//! registry stores is what was pinned. A streamed `PATCH` is not retried
//! here, since its body cannot be read twice: the caller asks
//! [`RegistryClient::upload_status`] where the session stands and resumes
//! from there. An upload location on another host gets no credentials.

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::auth::same_host;
use super::limits::Transfer;
use super::{RegistryClient, RegistryError, Repository, header_str, network, status_error};
use crate::digest::Digest;
use crate::oci;

impl RegistryClient {
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
