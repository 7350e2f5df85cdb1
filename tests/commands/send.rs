//! `flux-recv send`: a signed sample delivery for every source, checked
//! against a real flux-recv in front of a stand-in fluxd.

use std::path::{Path, PathBuf};
use std::process::Output;

use flux_recv::options::Options;
use flux_recv::source::Source;
use serde_json::Value;

use crate::common::{self, git_change, image_change, write_config, FakeFluxd, Recv};
use crate::{path_str, run, stderr, stdout};

/// One endpoint per source, in the order the providers are listed, with
/// good keys (Nexus with a registryHost, Generic and GenericHMAC with a
/// `notify:` block each); and what fluxd should be told for each sample
/// push, in config order. A source with no expectation here fails the test:
/// every source must be covered.
fn every_source(dir: &Path, api: &str) -> (PathBuf, Vec<Vec<Value>>) {
    let git = |url: &str| git_change(url, "main");
    let mut yaml = String::new();
    let mut expected = Vec::new();
    for source in Source::all() {
        let name = source.name();
        let key = format!("{}.key", name.to_lowercase());
        let secret = match source.needs_signing_secret() {
            // A Standard Webhooks signing secret: `whsec_` and base64.
            true => "whsec_MDEyMzQ1Njc4OWFiY2RlZi1zaWduaW5nLXNlY3JldA==".to_string(),
            false => format!("0123456789abcdef-{name}"),
        };
        std::fs::write(dir.join(&key), secret).unwrap();
        yaml.push_str(&format!("- source: {name}\n  keyPath: {key}\n"));
        match name {
            "Nexus" => yaml.push_str("  registryHost: registry.example.com\n"),
            "Generic" => yaml.push_str("  notify: {image: registry.example.com/team/generic}\n"),
            "GenericHMAC" => yaml.push_str(
                "  notify: {git: {url: \"git@github.com:org/hmac.git\", branch: main}}\n",
            ),
            "StandardWebhooks" => yaml.push_str(
                "  notify: {git: {url: \"git@github.com:org/stamped.git\", branch: main}}\n",
            ),
            _ => {}
        }
        expected.push(match name {
            "GitHub" => vec![git("git@github.com:example/app.git")],
            "GitLab" => vec![git("git@gitlab.com:example/app.git")],
            "BitbucketCloud" => vec![git("git@bitbucket.org:example/app.git")],
            "BitbucketServer" => vec![git("ssh://git@bitbucket.example.com:7999/ex/app.git")],
            "Gitea" => vec![git("git@gitea.example.com:example/app.git")],
            "Forgejo" => vec![git("git@forgejo.example.com:example/app.git")],
            "Gogs" => vec![git("git@gogs.example.com:example/app.git")],
            "AzureDevOps" => vec![
                git("git@ssh.dev.azure.com:v3/example/platform/app"),
                git("https://dev.azure.com/example/platform/_git/app"),
            ],
            "DockerHub" => vec![image_change("", "example/app")],
            "Quay" => vec![image_change("quay.io", "example/app")],
            "Harbor" => vec![image_change("harbor.example.com", "library/app")],
            "Nexus" => vec![image_change("registry.example.com", "example/app")],
            "GoogleContainerRegistry" => vec![image_change("gcr.io", "example-project/app")],
            "AzureContainerRegistry" => vec![image_change("example.azurecr.io", "example/app")],
            "Distribution" => vec![image_change("registry.example.com:5000", "example/app")],
            "Generic" => vec![image_change("registry.example.com", "team/generic")],
            "GenericHMAC" => vec![git_change("git@github.com:org/hmac.git", "main")],
            "StandardWebhooks" => vec![git_change("git@github.com:org/stamped.git", "main")],
            other => panic!("no expectation for {other}: add what its sample push notifies"),
        });
    }
    (write_config(dir, api, &yaml), expected)
}

async fn send(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await
    .unwrap()
}

fn send_args(config: &Path, endpoint: &str, url: &str) -> Vec<String> {
    [
        "send",
        "--config",
        path_str(config),
        "--endpoint",
        endpoint,
        "--url",
        url,
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_a_signed_push_for_every_source() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, expected) = every_source(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let base = recv.url("");

    for (i, want) in expected.iter().enumerate() {
        let position = (i + 1).to_string();
        let o = send(send_args(&config, &position, &base)).await;
        assert!(
            o.status.success(),
            "endpoint {position}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(stdout(&o).starts_with("HTTP 200 OK\n"), "{}", stdout(&o));
        assert_eq!(
            fluxd.take(),
            common::sorted(want.clone()),
            "endpoint {position}"
        );
    }
    // Every source verified its delivery: nothing was refused.
    let logs = recv.logs.text();
    assert!(!logs.contains("outcome: unauthorized"), "{logs}");
    assert_eq!(
        logs.matches("outcome: relayed").count(),
        Source::all().count(),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pings_by_fingerprint_and_full_url() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = every_source(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let table = recv.service.table().load_full();

    for position in [1, 4] {
        let endpoint = &table.endpoints()[position - 1];
        let mut args = send_args(
            &config,
            &endpoint.fingerprint[..12],
            &recv.url(&endpoint.url_path()),
        );
        args.extend(["--event".to_string(), "ping".to_string()]);
        let o = send(args).await;
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        assert_eq!(stdout(&o), "HTTP 200 OK\nok: nothing to do (ping)\n");
    }
    assert_eq!(fluxd.take(), Vec::<Value>::new());

    // An event the source has no sample of: nothing is sent.
    let mut args = send_args(&config, "2", &recv.url(""));
    args.extend(["--event".to_string(), "ping".to_string()]);
    let o = send(args).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no \"ping\" sample for GitLab; choose one of: push"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());

    // No such endpoint.
    let o = send(send_args(&config, "zz", &recv.url(""))).await;
    assert_eq!(o.status.code(), Some(1));
    let positions = format!("neither a position (1 to {})", Source::all().count());
    assert!(stderr(&o).contains(&positions), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_1_on_a_refusal() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gcr.key"), "0123456789abcdef-gcr").unwrap();
    std::fs::write(dir.path().join("github.key"), "0123456789abcdef-gh").unwrap();
    let config = write_config(
        dir.path(),
        &fluxd.api(),
        "- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: https://hooks.example.com/hook/x\n    email: push@p.iam.gserviceaccount.com\n\
         - source: GitHub\n  keyPath: github.key\n",
    );
    let options = Options {
        google_jwks_url: format!("http://{}/certs", common::dead_addr()),
        ..Options::default()
    };
    let recv = Recv::start(&config, options).await;

    // send cannot mint Google's token: it says so, and the server's 401 is
    // the reply.
    let o = send(send_args(&config, "1", &recv.url(""))).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("only Google can make one"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).starts_with("HTTP 401 Unauthorized\n"),
        "{}",
        stdout(&o)
    );

    // A hook URL that is not this endpoint's: the server's 404.
    let o = send(send_args(&config, "2", &recv.url("/hook/0000"))).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("HTTP 404"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("is not endpoint 2's hook URL"),
        "{}",
        stderr(&o)
    );

    // fluxd refusing for good (a wrong api path): the server's 502.
    fluxd.set(common::Behaviour::Status(404));
    let o = send(send_args(&config, "2", &recv.url(""))).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("HTTP 502 Bad Gateway\n"),
        "{}",
        stdout(&o)
    );

    // fluxd failing for now: queued, 202, and send says fluxd has not
    // confirmed it.
    fluxd.set(common::Behaviour::Status(503));
    let o = send(send_args(&config, "2", &recv.url(""))).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).starts_with("HTTP 202 Accepted\n"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("fluxd has not confirmed"),
        "{}",
        stderr(&o)
    );

    // Nobody listening.
    let o = send(send_args(
        &config,
        "2",
        &format!("http://{}", common::dead_addr()),
    ))
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot POST to"), "{}", stderr(&o));
}

/// Endpoints whose key is a signing secret: `send` signs the Standard
/// Webhooks way, at the time it sends and with a new id each time, so two
/// sends are two deliveries, each relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_signs_with_a_time_and_an_id_for_signing_secrets() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gitlab.key"),
        "whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("swh.key"),
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &fluxd.api(),
        "- source: GitLab\n  keyPath: gitlab.key\n\
         - source: StandardWebhooks\n  keyPath: swh.key\n  notify: {image: example/app}\n",
    );
    let recv = Recv::start(&config, Options::default()).await;
    let expected = [
        git_change("git@gitlab.com:example/app.git", "main"),
        image_change("", "example/app"),
    ];
    for _ in 0..2 {
        for (i, want) in expected.iter().enumerate() {
            let position = (i + 1).to_string();
            let o = send(send_args(&config, &position, &recv.url(""))).await;
            assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
            assert!(stdout(&o).starts_with("HTTP 200 OK\n"), "{}", stdout(&o));
            assert_eq!(fluxd.take(), vec![want.clone()], "endpoint {position}");
        }
    }
    let logs = recv.logs.text();
    assert_eq!(logs.matches("outcome: relayed").count(), 4, "{logs}");
}
