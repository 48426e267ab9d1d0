//! The `imagelock` binary: parse arguments, resolve settings, run a command,
//! and turn errors into `error:` / `Caused by:` / `hint:` and an exit code
//! (0 ok, 1 failure, 2 usage — clap exits 2 on its own —, 3 stale lock, 130
//! Ctrl-C; see [`imagelock::errors::exit_code`]). Ctrl-C stops the command and
//! says what was kept ([`imagelock::interrupt`]); a reader closing stdout early
//! ends the run quietly with 0.

use std::process::ExitCode;

use clap::Parser;
use imagelock::cli::{Cli, Command, Settings, SyncSettings, TrustArgs, TrustCommand};
use imagelock::commands::{self, AddRequest};
use imagelock::errors::EXIT_INTERRUPTED;
use imagelock::project::edit::NewImage;
use imagelock::report::printer::{stdout_closed, write_stdout};

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
    let result = runtime.block_on(async {
        imagelock::interrupt::watch(|| {
            eprintln!("interrupted");
            std::process::exit(EXIT_INTERRUPTED.into());
        });
        let command = run(command, global);
        tokio::pin!(command);
        tokio::select! {
            biased;
            result = &mut command => result,
            // Ctrl-C may come between the command's look and this one: the command
            // gets one more look, so one that stops by itself says what it kept.
            () = imagelock::interrupt::interrupted() => tokio::select! {
                biased;
                result = &mut command => result,
                () = std::future::ready(()) => {
                    Err(imagelock::errors::interrupted(anyhow::anyhow!("interrupted")))
                }
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            let code = imagelock::errors::exit_code(&e);
            if code == EXIT_INTERRUPTED {
                // Blocking work the command left behind is not waited for.
                runtime.shutdown_background();
            }
            ExitCode::from(code)
        }
    }
}

async fn run(command: Command, global: imagelock::cli::GlobalArgs) -> anyhow::Result<()> {
    match command {
        Command::Init { force } => commands::init(&Settings::resolve_here(global)?, force),
        Command::Add(args) => {
            let settings = Settings::resolve(global, false)?;
            commands::add(&settings, add_request(args)?).await
        }
        Command::Remove {
            ids,
            no_lock,
            lock: _,
        } => commands::remove(&Settings::resolve(global, false)?, &ids, !no_lock).await,
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
            since,
            json,
        } => commands::export(
            &Settings::resolve(global, json)?,
            &file,
            &images,
            &platforms,
            since.as_deref(),
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
        // Written whole into memory first: a closed stdout is then one error, not a panic.
        Command::Completions { shell } => {
            let mut script = Vec::new();
            imagelock::cli::write_completions(shell, &mut script);
            write_stdout(&script)
        }
        Command::Schema { file } => {
            commands::schema(&Settings::resolve_here(global)?, file);
            Ok(())
        }
        Command::Man { command } => {
            let mut page = Vec::new();
            imagelock::cli::write_man_page(command.as_deref(), &mut page)?;
            write_stdout(&page)
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
        insecure_http,
        semver,
        tag_pattern,
        no_lock,
        lock: _,
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
        insecure_http,
        lock: !no_lock,
    })
}

/// Prints `error`, its causes and its hint on stderr. Messages carry names,
/// paths and server text: controls and bidirectional overrides in them are
/// escaped here as well as where they were put in, whatever the source.
fn report(error: &anyhow::Error) {
    use imagelock::text::escape_lines;
    // An interruption is no failure: its message starts with `interrupted`.
    let label = if imagelock::errors::exit_code(error) == EXIT_INTERRUPTED {
        ""
    } else {
        "error: "
    };
    eprintln!("{label}{}", escape_lines(&error.to_string()));
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
