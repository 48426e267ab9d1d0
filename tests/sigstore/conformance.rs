//! `sigstore-conformance`: the client side of the Sigstore conformance suite's CLI
//! protocol (`docs/cli_protocol.md` in `../shared/sigstore-conformance`), verification
//! only, over imagelock's own `signing::sigstore` module. Built as a Cargo example so
//! that `cargo test` builds it and `cargo install` does not ship it; `run.sh` beside it
//! runs the suite with it, offline.
//!
//! ```text
//! sigstore-conformance verify-bundle [--staging] --bundle FILE
//!     (--certificate-identity IDENTITY --certificate-oidc-issuer URL | --key PEM)
//!     [--trusted-root FILE] FILE_OR_DIGEST
//! ```
//!
//! Exit status 0 when the bundle verifies, 1 when it is refused (the reason on stderr),
//! 2 for a usage error (clap's), including `sign-bundle`, which imagelock does not do.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imagelock::digest::{Algorithm, Digest};
use imagelock::signing::sigstore::{self, Content, Identity, Policy, Subject, TrustRoot};

#[derive(Parser)]
#[command(name = "sigstore-conformance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a bundle over a file or a `sha256:` digest.
    VerifyBundle(VerifyBundle),
}

#[derive(clap::Args)]
struct VerifyBundle {
    /// Use the Sigstore staging instance (not supported offline: pass --trusted-root).
    #[arg(long)]
    staging: bool,
    /// The Sigstore bundle.
    #[arg(long)]
    bundle: PathBuf,
    /// The certificate's expected subject (SAN).
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with = "key")]
    certificate_identity: Option<String>,
    /// The certificate's expected OIDC issuer.
    #[arg(long, requires = "certificate_identity")]
    certificate_oidc_issuer: Option<String>,
    /// A PEM public key, for keyed bundles.
    #[arg(long, required_unless_present = "certificate_identity")]
    key: Option<PathBuf>,
    /// A trusted_root.json; default: the public-good root built into imagelock.
    #[arg(long)]
    trusted_root: Option<PathBuf>,
    /// The signed file, or its `sha256:` digest.
    file_or_digest: String,
}

fn main() -> ExitCode {
    let Cli {
        command: Command::VerifyBundle(args),
    } = Cli::parse();
    match verify_bundle(args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn verify_bundle(args: VerifyBundle) -> anyhow::Result<String> {
    let VerifyBundle {
        staging,
        bundle,
        certificate_identity,
        certificate_oidc_issuer,
        key,
        trusted_root,
        file_or_digest,
    } = args;
    let root = match (&trusted_root, staging) {
        (Some(path), _) => TrustRoot::from_json(&fs_err::read(path)?)?,
        (None, true) => anyhow::bail!(
            "--staging: imagelock builds in only the public-good production root; pass the \
             staging trusted_root.json with --trusted-root"
        ),
        (None, false) => TrustRoot::public_good()?,
    };
    let mut policy = Policy::default();
    if let Some(key) = &key {
        policy.keys.push(sigstore::read_key_file(key)?);
    }
    if let (Some(subject), Some(issuer)) = (certificate_identity, certificate_oidc_issuer) {
        policy.identities.push(Identity {
            issuer,
            subject: Subject::Exact(subject),
        });
    }
    let bundle_json = fs_err::read(&bundle)?;
    // The protocol: a digest is `sha256:` and 64 hex digits and not a path on disk.
    let digest = file_or_digest
        .parse::<Digest>()
        .ok()
        .filter(|d| d.algorithm() == Algorithm::Sha256 && !Path::new(&file_or_digest).exists());
    let file;
    let content = match &digest {
        Some(digest) => Content::Digest(digest),
        None => {
            file = fs_err::read(&file_or_digest)?;
            Content::Bytes(&file)
        }
    };
    let verified = sigstore::verify(&bundle_json, content, &policy, &root)?;
    Ok(format!(
        "OK: signed by {}, log index {}, trusted root {}",
        verified.signer,
        verified
            .log_index
            .map_or_else(|| "none".to_owned(), |i| i.to_string()),
        verified.trusted_root
    ))
}
