//! The first hour of a new user (issue 16): what a plain-HTTP registry, a registry that
//! is down and a flaky one look like from the command line.

use std::collections::BTreeMap;

use crate::harness::{Canned, HostileServer, Project, Registry, RegistryOptions, free_port, peer};

/// A plain-HTTP registry not listed with `insecure-http = true`: the TLS hello is
/// answered in plain HTTP (the distribution registry answers `400 Bad Request`),
/// recognised at once (no retries), and the error says what to add.
#[test]
fn a_plain_http_registry_is_recognised_at_once_and_the_fix_named() {
    if !peer("docker-registry") {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let project = Project::new();
    project.write(
        "images.toml",
        &format!(
            "[images.app]\ndocker = \"{}/acme/app:v1\"\ninsecure = true\n",
            registry.host()
        ),
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains(&format!(
            "{} answered https://{}/v2/acme/app/manifests/v1 in plain HTTP, not TLS",
            registry.host(),
            registry.host()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "`[registries.\"{}\"] insecure-http = true`",
            registry.host()
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("gave up after"), "{}", run.stderr);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
}

/// Nothing listening on a loopback port: refused at once, not five times.
#[test]
fn a_connection_refused_on_loopback_is_not_retried() {
    let port = free_port();
    let project = Project::new();
    project.write(
        "images.toml",
        &format!(
            "[registries.\"127.0.0.1:{port}\"]\ninsecure-http = true\n\n[images.app]\ndocker = \"127.0.0.1:{port}/acme/app:v1\"\ninsecure = true\n"
        ),
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains("Connection refused") || run.stderr.contains("connection refused"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("gave up after"), "{}", run.stderr);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
}

/// A flaky server: each retry is announced with the URL, the wait and the failure.
#[test]
fn retries_are_announced_with_what_failed_and_the_wait() {
    let server = HostileServer::start(BTreeMap::new());
    server.set_sequence(
        "/v2/acme/app/manifests/v1",
        vec![Canned::status(503, &[]), Canned::status(404, &[])],
    );
    let project = Project::new();
    project.write(
        "images.toml",
        &format!(
            "[registries.\"{host}\"]\ninsecure-http = true\n\n[images.app]\ndocker = \"{host}/acme/app:v1\"\ninsecure = true\n",
            host = server.host()
        ),
    );
    let run = project.run(&["lock"]).failure(1);
    assert!(
        run.stderr.contains(&format!(
            "retrying http://{}/v2/acme/app/manifests/v1 in ",
            server.host()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(attempt 1 of 5 failed: ")
            && run.stderr.contains("503 Service Unavailable"),
        "{}",
        run.stderr
    );
    // -q keeps it quiet.
    server.set_sequence(
        "/v2/acme/app/manifests/v1",
        vec![Canned::status(503, &[]), Canned::status(404, &[])],
    );
    let run = project.run(&["-q", "lock"]).failure(1);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
}

/// README's command table against the CLI: every command has a row, no row is there
/// twice, and every flag a row shows is one the command's `--help` lists.
#[test]
fn the_readme_command_table_matches_the_cli() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
    let table = readme
        .split("## Commands\n")
        .nth(1)
        .and_then(|rest| rest.split("\nGlobal options:").next())
        .expect("the Commands table");
    let usages: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cell = &l[3..];
            &cell[..cell.find("` |").expect("a usage cell")]
        })
        .collect();
    let project = Project::new();
    let help = project.run(&["--help"]).success().stdout;
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .lines()
        .take_while(|l| l.starts_with("  "))
        // A description's continuation lines are indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    for command in &commands {
        assert!(
            usages
                .iter()
                .any(|u| u.split_whitespace().next() == Some(command)),
            "README's Commands table has no row for `{command}`"
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for usage in &usages {
        assert!(seen.insert(*usage), "README lists `{usage}` twice");
        let words: Vec<&str> = usage.split_whitespace().collect();
        let sub = ["add", "list", "remove"];
        let path: Vec<&str> = match words.as_slice() {
            ["trust", next, ..] if sub.contains(&next.trim_matches(['[', ']'])) => {
                vec!["trust", next.trim_matches(['[', ']'])]
            }
            [first, ..] => vec![*first],
            [] => unreachable!("a usage has words"),
        };
        assert!(
            commands.contains(&path[0]),
            "README's `{usage}`: no such command"
        );
        let mut args = path.clone();
        args.push("--help");
        let help = project.run(&args).success().stdout;
        for flag in usage
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
        {
            assert!(
                help.contains(&format!("{flag} "))
                    || help.contains(&format!("{flag}\n"))
                    || help.contains(&format!("{flag},")),
                "README's `{usage}` shows {flag}, which `imagelock {}` does not have",
                path.join(" ")
            );
        }
    }
}
