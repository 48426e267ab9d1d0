//! Command-line arguments (clap) and their resolution into settings.
//!
//! Commands receive resolved settings, never clap types; destructuring here
//! means a new flag that is not handled fails to compile.
//!
//! The doc comments here are clap's help texts, written for the terminal: their
//! `[store]` and `HOST[:PORT][/PATH]` are not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::printer::{Printer, ProgressMode, Verbosity};

/// Pin container images in a lockfile; sync exactly those blobs into an OCI store.
#[derive(Debug, Parser)]
#[command(name = "imagelock", version, about, propagate_version = true)]
#[command(
    after_help = "Examples:\n  imagelock init\n  imagelock add alpine --docker docker.io/library/alpine:3.20 --platform linux/amd64 --insecure\n  imagelock sync --locked\n  imagelock sync --frozen --offline"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The manifest to use [default: images.toml here, else in the nearest parent directory
    /// that has one]; the lock is images.lock beside it.
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// The store directory (overrides [store] path in the manifest).
    #[arg(long, global = true, env = "IMAGELOCK_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Extra CA certificate bundle (PEM) to trust for HTTPS, besides the system roots and SSL_CERT_FILE.
    #[arg(long, global = true, env = "IMAGELOCK_CA_FILE", value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
    /// Send requests for HOST to ADDR:PORT instead of what DNS says (repeatable), keeping HOST for TLS
    /// verification; e.g. an internal discovery server. Also `IMAGELOCK_RESOLVE=HOST=ADDR:PORT,...`.
    #[arg(
        long,
        global = true,
        value_name = "HOST=ADDR:PORT",
        env = "IMAGELOCK_RESOLVE",
        value_delimiter = ','
    )]
    pub resolve: Vec<String>,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print per-image detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// How to show progress on stderr: a bar on a terminal (auto), a line per step (plain,
    /// for logs), or none.
    #[arg(
        long,
        global = true,
        env = "IMAGELOCK_PROGRESS",
        value_name = "WHEN",
        default_value = "auto"
    )]
    pub progress: ProgressArg,
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
// Plain comments, not doc comments, on the values: documented values would turn every
// command's --help (the flag is global) into clap's long, spread-out format.
pub enum ProgressArg {
    // A bar when stderr is a terminal and IMAGELOCK_NO_PROGRESS is unset.
    Auto,
    // A line per item done, terminal or not.
    Plain,
    // No progress.
    None,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented images.toml in the current directory, and its JSON Schema for editors.
    #[command(
        after_help = "The first line, `#:schema ./.imagelock/images.schema.json`, lets editors that read taplo's\ndirective (taplo, Even Better TOML) complete and check the file; init writes that schema\n(`imagelock lock` writes it again when it is missing or from another version).\n\nExamples:\n  imagelock init\n  imagelock init --force"
    )]
    Init {
        /// Overwrite an existing manifest.
        #[arg(long)]
        force: bool,
    },
    /// Add an image to the manifest, keeping its comments and order, and lock it.
    #[command(
        after_help = "The new [images.ID] table goes below the last image. Then images.lock is updated as\n`imagelock lock` would (--no-lock leaves it for later); when that fails, the edit is kept\nand the error says so.\n\nExamples:\n  imagelock add alpine --docker alpine:3.20 --platform linux/amd64 --platform linux/arm64 --insecure\n  imagelock add app --docker 127.0.0.1:5000/acme/app:1.0 --insecure-http --insecure\n  imagelock add etcd --name example.com/etcd --label version=3.1.0\n  imagelock add hello --path examples/hello:1.0 --insecure --no-lock"
    )]
    Add(AddArgs),
    /// Remove images from the manifest, and from the lock.
    #[command(
        after_help = "Then images.lock is updated as `imagelock lock` would (--no-lock leaves it for later);\n`imagelock gc` then frees what no lock needs any more.\n\nExamples:\n  imagelock remove alpine\n  imagelock remove alpine etcd --no-lock"
    )]
    Remove {
        /// The image IDs to remove.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Edit images.toml only; leave images.lock for a later `imagelock lock`.
        #[arg(long)]
        no_lock: bool,
        /// Lock after the edit (the default; kept for scripts written before it was).
        #[arg(long, hide = true, conflicts_with = "no_lock")]
        lock: bool,
    },
    /// Resolve new or changed manifest entries and write images.lock.
    #[command(
        after_help = "Entries that did not change keep their pins (`imagelock update` re-resolves them).\nA lock with git merge conflict markers is re-locked from images.toml, keeping the pins\nboth sides agree on. --check exits 3 naming the stale entries and the keys that changed.\n\nExamples:\n  imagelock lock\n  imagelock lock --check\n  imagelock lock --json"
    )]
    Lock {
        /// Do not write; exit 3 if the lock is stale (for CI).
        #[arg(long)]
        check: bool,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Fetch exactly the locked blobs into the store.
    #[command(
        after_help = "--locked exits 3 if images.lock does not match images.toml; --frozen uses the lock\nas it is (still applying the [trust] policy of images.toml); --offline uses only the store and local sources.\n\nExamples:\n  imagelock sync\n  imagelock sync --locked\n  imagelock sync --frozen --offline\n  imagelock sync --dry-run --json"
    )]
    Sync(SyncArgs),
    /// Re-check the locked blobs in the store and their signatures, with no network.
    #[command(
        after_help = "Re-hashes every blob images.lock pins, recomputes ACI image IDs and re-verifies\nevery pinned signature against the keys listed in images.toml. Exits 1 on any mismatch.\n\nExamples:\n  imagelock verify\n  imagelock verify --json"
    )]
    Verify {
        /// Print the per-image report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the keys and signers trusted for name prefixes and what each covers; add or remove them.
    #[command(
        after_help = "Without a subcommand, lists every [trust.\"PREFIX\"] table: its OpenPGP keys (fingerprint,\nuser IDs, expiry), Sigstore keys, keyless signers and trusted root, and the locked images it\ncovers (the most specific prefix decides).\n\nExamples:\n  imagelock trust\n  imagelock trust --json\n  imagelock trust add example.com/ --key release.asc\n  imagelock trust add ghcr.io/acme/ --sigstore-key cosign.pub\n  imagelock trust remove example.com/ --key 8836CD40C8B00F2B3BBE84E537F3026F530A8073"
    )]
    Trust(TrustArgs),
    /// Unpack a locked image's root filesystem from the store (no network), cached for next time.
    #[command(
        after_help = "OCI layers are applied with whiteouts; an ACI is rendered with its dependencies,\nhonouring pathWhitelist. Entries that would escape DIR (absolute paths, `..`, writes\nthrough symlinks, hard links outside the image) refuse the image. The tree is cached in\nthe store (STORE/rendered/) and hard-linked into DIR; --copy copies instead.\n\nExamples:\n  imagelock render big ./rootfs\n  imagelock render big ./rootfs --platform linux/arm64\n  imagelock render hello ./rootfs --copy\n  imagelock render big --format ext4 --output big.ext4"
    )]
    Render(RenderArgs),
    /// Remove store blobs that no registered lockfile needs.
    #[command(
        after_help = "Every `sync` registers its lockfile in the store (STORE/roots/); a root whose\nlockfile was deleted is dead. gc keeps what the live roots' lockfiles pin now (so after\n`imagelock remove` it frees the removed images) and removes the rest.\n\nExamples:\n  imagelock gc --dry-run\n  imagelock gc"
    )]
    Gc {
        /// Show what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write an airgap bundle: the lock, every blob it pins, signatures and trusted keys.
    #[command(
        after_help = "The bundle is a zstd-compressed tar laid out as an OCI image layout plus\nimages.lock and keys/. Carry it across, then `imagelock sync --offline --from FILE`.\n\nWith --since, a delta: the new lock and only the blobs the older lock did not pin (the\nother side holds those, from the bundles it imported before). Import deltas in order;\none whose base the store lacks is refused, naming the blobs and the base lock.\n\nExamples:\n  imagelock export bundle.tar.zst\n  imagelock export --image alpine --platform linux/amd64 alpine.tar.zst\n  imagelock export --since HEAD~1 delta.tar.zst"
    )]
    Export {
        /// The bundle to write.
        file: PathBuf,
        /// Only this image (repeatable; with its dependencies).
        #[arg(long = "image", value_name = "ID")]
        images: Vec<String>,
        /// Only this platform of multi-platform images (repeatable).
        #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
        platforms: Vec<String>,
        /// Write a delta: leave out the blobs the lock in this git revision (or lock file) pins,
        /// which the other side holds.
        #[arg(long, value_name = "REV|LOCKFILE")]
        since: Option<String>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Copy every locked image to a mirror registry (a CI fleet's shared cache).
    #[command(
        after_help = "An image from ORIGIN[:PORT]/REPO goes to PREFIX/ORIGIN[_PORT]/REPO (manifests as their exact bytes,\nchildren before indexes, blobs the mirror has are skipped); ACIs go to PREFIX/appc as OCI\nartifacts. Runners then `imagelock sync --mirror PREFIX`.\n\nExamples:\n  imagelock push registry.internal:5000/mirror\n  imagelock push registry.internal:5000/mirror --lookaside-staging /srv/sigstore"
    )]
    Push {
        /// The mirror location, HOST[:PORT][/PATH].
        prefix: String,
        /// Write the images' simple signatures here, laid out as a lookaside store.
        #[arg(long, value_name = "DIR")]
        lookaside_staging: Option<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Read an airgap bundle into the store, verifying every blob before it gets its name.
    #[command(
        after_help = "Import stores blobs only and names no image: the bundle's own lock is not\ntrusted for names. `imagelock sync --offline` then checks the project's lock\nagainst the store and names its images.\n\nExamples:\n  imagelock import bundle.tar.zst && imagelock sync --offline\n  imagelock sync --offline --from bundle.tar.zst   # import, then sync, in one step"
    )]
    Import {
        /// The bundle to read.
        file: PathBuf,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check the whole store: re-hash every blob, walk index.json, find what is missing.
    #[command(
        after_help = "Exits 1 when a blob is corrupt or missing. --repair moves corrupt blobs to\nSTORE/quarantine/ and fetches again what images.lock needs.\n\nExamples:\n  imagelock fsck\n  imagelock fsck --repair"
    )]
    Fsck {
        /// Quarantine corrupt blobs and re-fetch what the lock needs.
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Re-resolve images even when their entries did not change: a moved tag gets its new digest.
    #[command(
        after_help = "Re-resolves the named entries (every entry without IDs), and also what `lock` would:\nnew entries, changed ones, removed ones. Prints per image what changed: old → new\ndigest, platforms added or removed, signer. An appc entry without a `version` label gets\nwhat the server publishes as latest; appc discovery cannot list versions, so a\n`version` label must be exact.\n\nExamples:\n  imagelock update\n  imagelock update alpine etcd\n  imagelock update --dry-run --json"
    )]
    Update {
        /// The image IDs to re-resolve [default: all].
        ids: Vec<String>,
        /// Show what would change without writing images.lock.
        #[arg(long)]
        dry_run: bool,
        /// Print the changes as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show, per image, the pinned tag, the newest its version policy allows and the newest overall.
    #[command(
        after_help = "Reads the registries' tag lists and changes nothing: for an entry with `semver` or\n`tag-pattern`, the tag `imagelock update` would move it to; for a fixed tag, whether its\ndigest moved on the registry. LATEST is the newest release (not a pre-release) of the\nrepository. Exit code 0 whether or not anything is outdated.\n\nExamples:\n  imagelock outdated\n  imagelock outdated --json"
    )]
    Outdated {
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show what a change of images.lock means per image (for code review).
    #[command(
        after_help = "Compares images.lock in the working tree with REV's (`git show REV:images.lock`), or\nwith another lock FILE. Per image: added, removed, or what changed (digest, platforms,\nsigner, version). Exit code 0 whether or not anything changed.\n\nExamples:\n  imagelock diff\n  imagelock diff main\n  imagelock diff HEAD~3 --json\n  imagelock diff /tmp/images.lock.orig"
    )]
    Diff {
        /// A git revision, or a lock file to compare with (a path that exists wins) [default: HEAD].
        #[arg(value_name = "REV|FILE")]
        against: Option<String>,
        /// Print the changes as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the locked images: source, version, digest, platforms, size, signer.
    #[command(after_help = "Examples:\n  imagelock list\n  imagelock list --json")]
    List {
        /// Print the images as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show everything the lock knows about one image, and whether the store has it.
    #[command(
        after_help = "Lists every pinned blob (index, manifests, configs, layers, ACI, signatures) with its\nsize and media type and whether the store holds it, the labels, dependencies and\nsignatures with the signing key's fingerprint, user IDs and expiry.\n\nExamples:\n  imagelock inspect hello\n  imagelock inspect hello --json"
    )]
    Inspect {
        /// The image's ID in images.lock.
        id: String,
        /// Print the details as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  imagelock completions bash > ~/.local/share/bash-completion/completions/imagelock\n  imagelock completions zsh > \"${fpath[1]}/_imagelock\"\n  imagelock completions fish > ~/.config/fish/completions/imagelock.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of images.toml or images.lock.
    #[command(
        after_help = "The schema of images.toml is what `init` writes to .imagelock/images.schema.json for\neditors (taplo, Even Better TOML) to complete and check the manifest offline.\n\nExamples:\n  imagelock schema > .imagelock/images.schema.json\n  imagelock schema lock"
    )]
    Schema {
        /// Which file's schema: `manifest` (images.toml) or `lock` (images.lock).
        #[arg(value_enum, default_value_t = SchemaKind::Manifest, hide_possible_values = true)]
        file: SchemaKind,
    },
    /// Print the man page (roff), generated from these --help texts.
    #[command(
        after_help = "Examples:\n  imagelock man | man -l -\n  imagelock man > ~/.local/share/man/man1/imagelock.1\n  imagelock man sync > ~/.local/share/man/man1/imagelock-sync.1"
    )]
    Man {
        /// A command whose page to print (`imagelock-COMMAND(1)`) [default: imagelock(1)].
        command: Option<String>,
    },
}

/// `imagelock schema FILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    // images.toml.
    Manifest,
    // images.lock.
    Lock,
}

/// `imagelock trust [--json]` and its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TrustArgs {
    /// What to do [default: list].
    #[command(subcommand)]
    pub command: Option<TrustCommand>,
    /// Print the list as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `imagelock render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The image's ID in images.lock.
    pub id: String,
    /// The directory to render into (created if missing; must be empty unless --force).
    pub dir: Option<PathBuf>,
    /// For an image pinned for several platforms: which one [default: this machine's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Render over a non-empty DIR (or replace --output): entries in the image's way are replaced.
    #[arg(long)]
    pub force: bool,
    /// Copy files out of the render cache instead of hard-linking them.
    #[arg(long, conflicts_with = "output")]
    pub copy: bool,
    /// What to produce: a directory tree, or an ext4 image (with mkfs.ext4 -d, from e2fsprogs).
    #[arg(long, value_enum, default_value_t = RenderFormat::Dir)]
    pub format: RenderFormat,
    /// The file to write with `--format ext4`.
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    pub output: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `imagelock render --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
// Plain comments on the values, for the short --help format (see `ProgressArg`).
pub enum RenderFormat {
    // A directory tree.
    Dir,
    // An ext4 file-system image.
    Ext4,
}

impl RenderArgs {
    /// The render request these flags ask for; a usage error (exit 2) when DIR, `--format`
    /// and `--output` do not fit together.
    pub fn request(self) -> Result<crate::render::RenderRequest, clap::Error> {
        let RenderArgs {
            id,
            dir,
            platform,
            force,
            copy,
            format,
            output,
            json: _,
        } = self;
        let usage = |message: &str| {
            use clap::CommandFactory as _;
            Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, message)
        };
        let output = match (format, dir, output) {
            (RenderFormat::Dir, Some(path), None) => crate::render::Output::Dir {
                path,
                method: if copy {
                    crate::render::Method::Copy
                } else {
                    crate::render::Method::Link
                },
            },
            (RenderFormat::Ext4, None, Some(path)) => crate::render::Output::Ext4 { path },
            (RenderFormat::Dir, _, _) => {
                return Err(usage(
                    "give the directory to render into: `imagelock render ID DIR` (or `--format ext4 --output FILE`)",
                ));
            }
            (RenderFormat::Ext4, _, _) => {
                return Err(usage(
                    "`--format ext4` needs `--output FILE` and takes no DIR",
                ));
            }
        };
        Ok(crate::render::RenderRequest {
            id,
            platform,
            output,
            force,
        })
    }
}

/// `imagelock trust ...`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust signers for a name prefix: an OpenPGP key (from a file, or discovered from the
    /// prefix's `ac-discovery-pubkeys`), a Sigstore / cosign key, a keyless Sigstore identity,
    /// or the Sigstore trusted root that checks keyless signatures.
    #[command(
        after_help = "Key and root files are kept in the repository: listed where they are when already\nbeside images.toml, else copied to keys/<FINGERPRINT>.asc (OpenPGP),\nkeys/sigstore-<SHA256>.pub (Sigstore keys) or keys/trusted_root-<SHA256>.json, and listed under\n[trust.\"PREFIX\"] keys, sigstore-keys, sigstore-identities or trusted-root. Adding what is\nalready trusted changes nothing.\n\nKeyless identities are cosign's --certificate-oidc-issuer with --certificate-identity\n(--identity ISSUER SUBJECT) or --certificate-identity-regexp (--identity-regexp ISSUER REGEXP;\nthe pattern is searched in the subject: anchor it with ^...$).\n\nExamples:\n  imagelock trust add example.com/ --key release.asc\n  imagelock trust add example.com/ --discover\n  imagelock trust add example.com/ --discover --fingerprint 8B86DE38890DDB7291867B025210BD8888182190\n  imagelock trust add ghcr.io/acme/ --sigstore-key cosign.pub\n  imagelock trust add ghcr.io/acme/ --identity https://token.actions.githubusercontent.com \\\n      https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main\n  imagelock trust add ghcr.io/acme/ --identity-regexp \\\n      https://accounts.google.com '^[a-z]+@acme\\.com$'\n  imagelock trust add ghcr.io/acme/ --trusted-root trusted_root.json"
    )]
    Add(TrustAddArgs),
    /// List the trusted prefixes, their keys and the locked images each covers.
    #[command(after_help = "Examples:\n  imagelock trust list\n  imagelock trust list --json")]
    List {
        /// Print the list as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a prefix's keys, or one of them; edits images.toml in place.
    #[command(
        after_help = "Removes the whole [trust.\"PREFIX\"] table, or with --key only the key file holding\nthat key (the file itself stays in the repository); likewise --sigstore-key, --identity,\n--identity-regexp and --trusted-root (which goes back to the built-in public-good root).\nLocked images signed by a removed key are named: they fail `imagelock verify` until a key\nthat signed them is trusted again.\n\nExamples:\n  imagelock trust remove example.com/\n  imagelock trust remove example.com/ --key 8836CD40C8B00F2B3BBE84E537F3026F530A8073\n  imagelock trust remove example.com/ --key 37F3026F530A8073\n  imagelock trust remove ghcr.io/acme/ --sigstore-key sha256:4f2a9c01d3b7\n  imagelock trust remove ghcr.io/acme/ --identity https://accounts.google.com dev@acme.com\n  imagelock trust remove ghcr.io/acme/ --trusted-root"
    )]
    Remove(TrustRemoveArgs),
}

/// `imagelock trust add`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("from")
        .required(true)
        .multiple(true)
        .args(["key", "discover", "sigstore_keys", "identities", "identity_regexps", "trusted_root", "lookaside"])
))]
pub struct TrustAddArgs {
    /// The name prefix, e.g. `example.com/` or `registry.example.com/team/`.
    pub prefix: String,
    /// An OpenPGP public key file (armored or binary).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Fetch the prefix's keys by appc discovery (`ac-discovery-pubkeys`).
    #[arg(long, conflicts_with = "key")]
    pub discover: bool,
    /// With --discover: the fingerprint you verified out of band; only that key is written.
    #[arg(long, value_name = "FPR", requires = "discover")]
    pub fingerprint: Option<String>,
    /// A Sigstore / cosign public key (PEM: ECDSA P-256/P-384, RSA or Ed25519), as
    /// `cosign verify --key` takes it. Repeatable.
    #[arg(long = "sigstore-key", value_name = "FILE")]
    pub sigstore_keys: Vec<PathBuf>,
    /// A keyless signer: the certificate's OIDC issuer and its exact subject (cosign's
    /// `--certificate-oidc-issuer` and `--certificate-identity`). Repeatable.
    #[arg(long = "identity", num_args = 2, value_names = ["ISSUER", "SUBJECT"])]
    pub identities: Vec<String>,
    /// A keyless signer: the OIDC issuer and a regular expression searched in the subject
    /// (cosign's `--certificate-identity-regexp`; anchor it with `^…$`). Repeatable.
    #[arg(long = "identity-regexp", num_args = 2, value_names = ["ISSUER", "REGEXP"])]
    pub identity_regexps: Vec<String>,
    /// The Sigstore `trusted_root.json` that checks the prefix's keyless certificates, log
    /// entries and timestamps [default: the public-good root built into imagelock].
    #[arg(long = "trusted-root", value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// Where the prefix's simple signatures (`skopeo copy --sign-by`) are published: sets
    /// `lookaside = "URL"` of the table.
    #[arg(long, value_name = "URL")]
    pub lookaside: Option<String>,
}

/// `imagelock trust remove`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("what")
        .args(["key", "sigstore_key", "identity", "identity_regexp", "trusted_root"])
))]
pub struct TrustRemoveArgs {
    /// The prefix, exactly as written in images.toml.
    pub prefix: String,
    /// Remove only this OpenPGP key: its fingerprint (40 hex digits) or long key ID (the last 16).
    #[arg(long, value_name = "FPR")]
    pub key: Option<String>,
    /// Remove only this Sigstore key: its fingerprint (`sha256:` and 64 hex digits, or the first 12 or more).
    #[arg(long = "sigstore-key", value_name = "FPR")]
    pub sigstore_key: Option<String>,
    /// Remove only this keyless signer (issuer and exact subject, as listed).
    #[arg(long, num_args = 2, value_names = ["ISSUER", "SUBJECT"], action = clap::ArgAction::Set)]
    pub identity: Vec<String>,
    /// Remove only this keyless signer (issuer and subject pattern, as listed).
    #[arg(long = "identity-regexp", num_args = 2, value_names = ["ISSUER", "REGEXP"], action = clap::ArgAction::Set)]
    pub identity_regexp: Vec<String>,
    /// Remove only `trusted-root`: the built-in public-good root applies again.
    #[arg(long = "trusted-root")]
    pub trusted_root: bool,
}

/// `imagelock add`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["docker", "name", "url", "path"])))]
pub struct AddArgs {
    /// The ID to give the image in images.toml.
    pub id: String,
    /// An OCI registry reference, e.g. docker.io/library/alpine:3.20.
    #[arg(long, value_name = "REF")]
    pub docker: Option<String>,
    /// An appc image name (resolved by name discovery).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// A direct ACI URL.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A local OCI layout (DIR or DIR:REF) or ACI file.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// An appc label (repeatable), e.g. version=1.2.
    #[arg(long = "label", value_name = "KEY=VALUE", requires = "name")]
    pub labels: Vec<String>,
    /// A platform to pin (repeatable), e.g. linux/arm64.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<String>,
    /// Accept the image without a signature (recorded as unverified in the lock).
    #[arg(long)]
    pub insecure: bool,
    /// The registry (or discovery / download host) speaks plain HTTP: also writes
    /// `[registries."HOST"] insecure-http = true`.
    #[arg(long, conflicts_with = "path")]
    pub insecure_http: bool,
    /// Pin the newest tag this semver requirement matches (--docker names a repository without a tag).
    #[arg(
        long,
        value_name = "REQ",
        requires = "docker",
        conflicts_with = "tag_pattern"
    )]
    pub semver: Option<String>,
    /// Pin the newest tag this regular expression matches, searched as written (use ^…$).
    #[arg(long, value_name = "RE", requires = "docker")]
    pub tag_pattern: Option<String>,
    /// Edit images.toml only; leave images.lock for a later `imagelock lock`.
    #[arg(long)]
    pub no_lock: bool,
    /// Lock the new entry right away (the default; kept for scripts written before it was).
    #[arg(long, hide = true, conflicts_with = "no_lock")]
    pub lock: bool,
}

/// `imagelock sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Fail if images.lock does not match images.toml (instead of re-locking).
    #[arg(long)]
    pub locked: bool,
    /// Use images.lock as it is, without checking it against images.toml's entries (its [trust] still applies); implies --locked.
    #[arg(long)]
    pub frozen: bool,
    /// Use no network: the store and local sources only.
    #[arg(long)]
    pub offline: bool,
    /// Show what would be fetched without fetching it.
    #[arg(long)]
    pub dry_run: bool,
    /// Afterwards, remove every store blob this lock does not need (other projects' too).
    #[arg(long, conflicts_with = "dry_run")]
    pub prune: bool,
    /// First import this airgap bundle (see `imagelock export`).
    #[arg(long, value_name = "BUNDLE")]
    pub from: Option<PathBuf>,
    /// Read from this mirror (HOST[:PORT][/PATH], see `imagelock push`) before the origin; repeatable.
    #[arg(long = "mirror", value_name = "PREFIX")]
    pub mirrors: Vec<String>,
    /// Never fall back to the origin registry.
    #[arg(long)]
    pub mirror_only: bool,
    /// Read simple signatures from this lookaside store of the mirrors (where
    /// `push --lookaside-staging` output is served) before each image's own.
    #[arg(long, value_name = "URL")]
    pub mirror_lookaside: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How `sync` treats the lock, as uv's `LockMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Re-lock stale entries, then sync.
    Write,
    /// Fail when the lock is stale.
    Locked,
    /// Use the lock without reading the manifest.
    Frozen,
}

/// Resolved settings shared by every command.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The manifest path.
    pub manifest: PathBuf,
    /// `--store` / `IMAGELOCK_STORE`, if given.
    pub store_override: Option<PathBuf>,
    /// Extra CA files.
    pub ca_files: Vec<PathBuf>,
    /// Host → address overrides.
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    /// Retries of transient HTTP failures (`IMAGELOCK_HTTP_RETRIES`, `IMAGELOCK_HTTP_RETRY_DELAY_MS`).
    pub retry: crate::oci::registry::RetryPolicy,
    /// Request deadline and minimum transfer rate (`IMAGELOCK_HTTP_DEADLINE_MS`,
    /// `IMAGELOCK_HTTP_MIN_RATE`, `IMAGELOCK_HTTP_MIN_RATE_WINDOW_MS`).
    pub limits: crate::oci::registry::TransferLimits,
    /// Output routing.
    pub printer: Printer,
}

impl Settings {
    /// Resolves global flags; `json` is the command's `--json`. Without `--manifest`, the
    /// manifest is images.toml in the current directory or the nearest parent that has one.
    pub fn resolve(global: GlobalArgs, json: bool) -> anyhow::Result<Settings> {
        Settings::resolve_with(global, json, true)
    }

    /// [`Settings::resolve`] for `init`, which writes images.toml in the current directory
    /// (without `--manifest`) whatever the parent directories hold.
    pub fn resolve_here(global: GlobalArgs) -> anyhow::Result<Settings> {
        Settings::resolve_with(global, false, false)
    }

    fn resolve_with(global: GlobalArgs, json: bool, discover: bool) -> anyhow::Result<Settings> {
        let GlobalArgs {
            manifest,
            store,
            ca_file,
            resolve,
            quiet,
            verbose,
            progress,
        } = global;
        let resolve = resolve
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| parse_resolve(r))
            .collect::<anyhow::Result<_>>()?;
        let verbosity = match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        };
        let printer = Printer {
            verbosity,
            json,
            progress: match progress {
                ProgressArg::Auto => ProgressMode::Auto,
                ProgressArg::Plain => ProgressMode::Plain,
                ProgressArg::None => ProgressMode::Off,
            },
        };
        let manifest = match manifest {
            Some(path) => path,
            None if discover => find_manifest(printer),
            None => PathBuf::from(crate::project::manifest::MANIFEST_FILE),
        };
        Ok(Settings {
            manifest,
            store_override: store.filter(|s| !s.as_os_str().is_empty()),
            ca_files: ca_file,
            resolve,
            retry: crate::oci::registry::RetryPolicy::from_env().map_err(anyhow::Error::msg)?,
            limits: crate::oci::registry::TransferLimits::from_env().map_err(anyhow::Error::msg)?,
            printer,
        })
    }
}

/// images.toml in the current directory or, as cargo finds Cargo.toml, in the nearest
/// parent directory that has one (as a relative path, `../images.toml`, so messages stay
/// short; said with `-v`). `images.toml` when none has one: the errors then name it.
fn find_manifest(printer: Printer) -> PathBuf {
    let name = crate::project::manifest::MANIFEST_FILE;
    let here = PathBuf::from(name);
    if here.exists() {
        return here;
    }
    let Ok(cwd) = std::env::current_dir() else {
        return here;
    };
    for (up, dir) in cwd.ancestors().enumerate().skip(1) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            let relative: PathBuf = std::iter::repeat_n("..", up)
                .collect::<PathBuf>()
                .join(name);
            printer.detail(format!(
                "Using {} (the nearest images.toml above {})",
                candidate.display(),
                cwd.display()
            ));
            return relative;
        }
    }
    here
}

/// Parses `HOST=ADDR:PORT`.
fn parse_resolve(spec: &str) -> anyhow::Result<(String, std::net::SocketAddr)> {
    const EXAMPLE: &str = "write it as HOST=ADDR:PORT, e.g. `--resolve example.com=10.0.0.5:8443` (or IMAGELOCK_RESOLVE=example.com=10.0.0.5:8443)";
    let (host, addr) = spec.split_once('=').ok_or_else(|| {
        crate::errors::usage(format!("--resolve `{spec}` is not HOST=ADDR:PORT"), EXAMPLE)
    })?;
    let addr = addr.parse().map_err(|_| {
        crate::errors::usage(
            format!(
                "--resolve `{spec}`: `{addr}` is not an IP address with a port, e.g. 127.0.0.1:8443"
            ),
            EXAMPLE,
        )
    })?;
    if host.is_empty() || host.contains(['/', ':']) {
        return Err(crate::errors::usage(
            format!("--resolve `{spec}`: `{host}` is not a host name"),
            EXAMPLE,
        ));
    }
    Ok((host.to_ascii_lowercase(), addr))
}

/// Resolved `sync` settings.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Lock handling.
    pub mode: LockMode,
    /// No network.
    pub offline: bool,
    /// Plan only.
    pub dry_run: bool,
    /// Remove what this lock does not need afterwards.
    pub prune: bool,
    /// A bundle to import first.
    pub from: Option<PathBuf>,
    /// Mirrors given on the command line.
    pub mirrors: Vec<String>,
    /// Mirrors only.
    pub mirror_only: bool,
    /// The mirrors' lookaside store given on the command line.
    pub mirror_lookaside: Option<String>,
}

impl SyncSettings {
    /// Resolves `sync` flags (`--frozen` = `--locked` without the staleness check).
    pub fn resolve(args: &SyncArgs) -> SyncSettings {
        let SyncArgs {
            locked,
            frozen,
            offline,
            dry_run,
            prune,
            ref from,
            ref mirrors,
            mirror_only,
            ref mirror_lookaside,
            json: _,
        } = *args;
        let mode = match (frozen, locked) {
            (true, _) => LockMode::Frozen,
            (false, true) => LockMode::Locked,
            (false, false) => LockMode::Write,
        };
        SyncSettings {
            mode,
            offline,
            dry_run,
            prune,
            from: from.clone(),
            mirrors: mirrors.clone(),
            mirror_only,
            mirror_lookaside: mirror_lookaside.clone(),
        }
    }
}

/// The per-user default store: `$XDG_DATA_HOME/imagelock/store`, else `~/.local/share/imagelock/store`.
pub fn default_store() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_DATA_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from(".imagelock"))
        .join("imagelock/store")
}

/// Writes the completion script for `shell` (generated from the clap definitions).
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "imagelock", out);
}

/// Writes the man page of imagelock, or of one of its commands
/// (`imagelock-COMMAND(1)`), as roff.
pub fn write_man_page(command: Option<&str>, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let mut top = <Cli as clap::CommandFactory>::command();
    // Propagates the global options into each command's page.
    top.build();
    let page = match command {
        None => top,
        Some(name) => {
            let names: Vec<String> = top
                .get_subcommands()
                .filter(|c| !c.is_hide_set() && c.get_name() != "help")
                .map(|c| c.get_name().to_owned())
                .collect();
            let sub = top.find_subcommand(name).cloned().ok_or_else(|| {
                crate::errors::usage(
                    format!("imagelock has no command `{name}`"),
                    format!("the commands are: {}", names.join(", ")),
                )
            })?;
            let full = format!("imagelock-{}", sub.get_name());
            sub.name(full.clone()).bin_name(full)
        }
    };
    clap_mangen::Man::new(page).render(out)?;
    Ok(())
}
