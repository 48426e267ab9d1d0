//! The `imagelock` binary: parse arguments, resolve settings, run a command,
//! and turn errors into `error:` / `Caused by:` / `hint:` and an exit code
//! (0 ok, 1 failure, 2 usage — clap exits 2 on its own —, 3 stale lock; see
//! [`imagelock::errors::exit_code`]).

use std::process::ExitCode;

use clap::Parser;
use imagelock::cli::{Cli, Command, Settings, SyncSettings, TrustArgs, TrustCommand};
use imagelock::commands::{self, AddRequest};
use imagelock::project::edit::NewImage;

fn main() -> ExitCode {
    let Cli { command, global } = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command, global)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(imagelock::errors::exit_code(&e))
        }
    }
}

async fn run(command: Command, global: imagelock::cli::GlobalArgs) -> anyhow::Result<()> {
    match command {
        Command::Init { force } => commands::init(&Settings::resolve(global, false)?, force),
        Command::Add(args) => {
            let settings = Settings::resolve(global, false)?;
            commands::add(&settings, add_request(args)?).await
        }
        Command::Remove { ids } => commands::remove(&Settings::resolve(global, false)?, &ids),
        Command::Lock { check, json } => {
            commands::lock(&Settings::resolve(global, json)?, check).await
        }
        Command::Sync(args) => {
            let options = SyncSettings::resolve(&args);
            commands::sync(&Settings::resolve(global, args.json)?, options).await
        }
        Command::Verify { json } => commands::verify(&Settings::resolve(global, json)?).await,
        Command::Render(args) => {
            let settings = Settings::resolve(global, args.json)?;
            let request = args.request().unwrap_or_else(|usage| usage.exit());
            commands::render(&settings, request).await
        }
        Command::Export {
            file,
            images,
            platforms,
            json,
        } => commands::export(
            &Settings::resolve(global, json)?,
            &file,
            &images,
            &platforms,
        ),
        Command::Push {
            prefix,
            lookaside_staging,
            json,
        } => {
            commands::push(
                &Settings::resolve(global, json)?,
                &prefix,
                lookaside_staging.as_deref(),
            )
            .await
        }
        Command::Import { file, json } => {
            commands::import(&Settings::resolve(global, json)?, &file).await
        }
        Command::Gc { dry_run, json } => commands::gc(&Settings::resolve(global, json)?, dry_run),
        Command::Fsck { repair, json } => {
            commands::fsck(&Settings::resolve(global, json)?, repair).await
        }
        Command::Trust(args) => run_trust(args, global).await,
        Command::Update { ids, dry_run, json } => {
            commands::update(&Settings::resolve(global, json)?, &ids, dry_run).await
        }
        Command::Outdated { json } => commands::outdated(&Settings::resolve(global, json)?).await,
        Command::Diff { against, json } => {
            commands::diff(&Settings::resolve(global, json)?, against.as_deref())
        }
        Command::List { json } => commands::list(&Settings::resolve(global, json)?),
        Command::Inspect { id, json } => commands::inspect(&Settings::resolve(global, json)?, &id),
        Command::Completions { shell } => {
            imagelock::cli::write_completions(shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Man { command } => {
            imagelock::cli::write_man_page(command.as_deref(), &mut std::io::stdout())
        }
    }
}

/// `imagelock trust ...`.
async fn run_trust(args: TrustArgs, global: imagelock::cli::GlobalArgs) -> anyhow::Result<()> {
    match args {
        TrustArgs {
            command: Some(TrustCommand::Add(args)),
            ..
        } => commands::trust_add(&Settings::resolve(global, false)?, args.request()).await,
        TrustArgs {
            command: None,
            json,
        }
        | TrustArgs {
            command: Some(TrustCommand::List { json }),
            ..
        } => commands::trust_list(&Settings::resolve(global, json)?),
        TrustArgs {
            command: Some(TrustCommand::Remove(args)),
            ..
        } => {
            let (prefix, what) = args.request();
            commands::trust_remove(&Settings::resolve(global, false)?, &prefix, what)
        }
    }
}

fn add_request(args: imagelock::cli::AddArgs) -> anyhow::Result<AddRequest> {
    let imagelock::cli::AddArgs {
        id,
        docker,
        name,
        url,
        path,
        labels,
        platforms,
        insecure,
        semver,
        tag_pattern,
        lock,
    } = args;
    let source = match (docker, name, url, path) {
        (Some(v), None, None, None) => ("docker", v),
        (None, Some(v), None, None) => ("name", v),
        (None, None, Some(v), None) => ("url", v),
        (None, None, None, Some(v)) => ("path", v),
        _ => {
            return Err(imagelock::errors::usage(
                "give exactly one of --docker, --name, --url, --path",
                "e.g. `imagelock add alpine --docker docker.io/library/alpine:3.20`",
            ));
        }
    };
    let labels = labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    imagelock::errors::usage(
                        format!("--label `{l}` is not KEY=VALUE"),
                        "write each label as KEY=VALUE, e.g. `--label version=3.1.0 --label arch=amd64`",
                    )
                })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(AddRequest {
        id,
        image: NewImage {
            source,
            labels,
            platforms,
            insecure,
            policy: semver
                .map(|req| ("semver", req))
                .or(tag_pattern.map(|re| ("tag-pattern", re))),
        },
        lock,
    })
}

/// Prints `error`, its causes and its hint on stderr. Messages carry names,
/// paths and server text: controls and bidirectional overrides in them are
/// escaped here as well as where they were put in, whatever the source.
fn report(error: &anyhow::Error) {
    use imagelock::text::escape_lines;
    eprintln!("error: {}", escape_lines(&error.to_string()));
    let hint = imagelock::report::printer::hint_for(error);
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !error.to_string().contains(&text) {
            eprintln!("  Caused by: {}", escape_lines(&text));
        }
    }
    if let Some(hint) = hint {
        eprintln!("hint: {}", escape_lines(&hint));
    }
}
