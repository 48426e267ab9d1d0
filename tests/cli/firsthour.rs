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
