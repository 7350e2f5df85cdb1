//! The git providers of issue 12 end to end, through the real HTTP server
//! to a stand-in fluxd: Gitea, Forgejo, Gogs and Azure DevOps, GitHub's
//! container packages and Bitbucket Cloud's signatures. Each source's
//! sample (what `flux-recv send` posts) reaches fluxd as the expected
//! notifications; an event needing no action is answered 200 with nothing
//! sent; a wrong signature or password is answered 401 with nothing sent;
//! and each source has its metric series.

use crate::common;

use std::path::{Path, PathBuf};

use common::{
    get, git_change, headers_of, hook_path, image_change, post, sorted, write_config, FakeFluxd,
    Recv, Reply,
};
use flux_recv::options::Options;
use flux_recv::source::{SampleHook, SampleRequest, Source};
use serde_json::{json, Value};

/// The endpoints, one per source (Bitbucket Cloud requiring signatures),
/// each with its own key.
const SOURCES: [&str; 6] = [
    "Gitea",
    "Forgejo",
    "Gogs",
    "AzureDevOps",
    "GitHub",
    "BitbucketCloud",
];

fn key(source: &str) -> Vec<u8> {
    format!("0123456789abcdef-{source}").into_bytes()
}

fn config(dir: &Path, api: &str) -> PathBuf {
    let mut yaml = String::new();
    for source in SOURCES {
        let file = format!("{}.key", source.to_lowercase());
        std::fs::write(dir.join(&file), key(source)).unwrap();
        yaml.push_str(&format!("- source: {source}\n  keyPath: {file}\n"));
        if source == "BitbucketCloud" {
            yaml.push_str("  requireSignature: true\n");
        }
    }
    write_config(dir, api, &yaml)
}

/// The sample of `event` for `source`, signed with `key`, and with `body`
/// in place of the sample's own if given.
fn sample(source: &str, event: &str, key: &[u8], body: Option<&[u8]>) -> SampleHook {
    let request = SampleRequest {
        event,
        body,
        ..SampleRequest::push(key)
    };
    Source::named(source).sample(&request).unwrap()
}

/// Post `delivery` to `source`'s hook URL.
async fn deliver(recv: &Recv, source: &str, delivery: &SampleHook) -> Reply {
    let url = recv.url(&hook_path(&key(source)));
    post(url, headers_of(delivery), delivery.body.clone()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sample_reaches_fluxd_and_is_counted() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let recv = Recv::start(&config(dir.path(), &fluxd.api()), Options::default()).await;

    let cases = [
        (
            "Gitea",
            "push",
            vec![git_change("git@gitea.example.com:example/app.git", "main")],
        ),
        (
            "Forgejo",
            "push",
            vec![git_change(
                "git@forgejo.example.com:example/app.git",
                "main",
            )],
        ),
        (
            "Gogs",
            "push",
            vec![git_change("git@gogs.example.com:example/app.git", "main")],
        ),
        (
            "AzureDevOps",
            "push",
            vec![
                git_change("https://dev.azure.com/example/platform/_git/app", "main"),
                git_change("git@ssh.dev.azure.com:v3/example/platform/app", "main"),
            ],
        ),
        (
            "GitHub",
            "package",
            vec![image_change("ghcr.io", "example/app")],
        ),
        (
            "BitbucketCloud",
            "push",
            vec![git_change("git@bitbucket.org:example/app.git", "main")],
        ),
    ];
    for (source, event, want) in cases {
        let reply = deliver(&recv, source, &sample(source, event, &key(source), None)).await;
        assert_eq!(reply.status, 200, "{source}: {}", reply.body);
        assert_eq!(fluxd.take(), sorted(want), "{source}");
    }

    // A Gitea whose SSH server has its own port: fluxd hears of both URLs.
    let body = json!({
        "ref": "refs/heads/release",
        "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        "repository": {
            "ssh_url": "ssh://git@git.example.org:2222/team/app.git",
            "clone_url": "https://git.example.org/team/app.git",
        },
    })
    .to_string();
    let delivery = sample("Gitea", "push", &key("Gitea"), Some(body.as_bytes()));
    assert_eq!(deliver(&recv, "Gitea", &delivery).await.status, 200);
    assert_eq!(
        fluxd.take(),
        sorted(vec![
            git_change("ssh://git@git.example.org:2222/team/app.git", "release"),
            git_change("https://git.example.org/team/app.git", "release"),
        ])
    );

    let metrics = get(recv.url("/metrics")).await.body;
    for (source, relayed) in [
        ("Gitea", 2),
        ("Forgejo", 1),
        ("Gogs", 1),
        ("AzureDevOps", 1),
        ("GitHub", 1),
        ("BitbucketCloud", 1),
    ] {
        let series =
            format!(r#"fluxrecv_hooks_total{{source="{source}",outcome="relayed"}} {relayed}"#);
        assert!(metrics.contains(&series), "{series}\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_needing_no_action_are_acknowledged_and_send_nothing() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let recv = Recv::start(&config(dir.path(), &fluxd.api()), Options::default()).await;

    let pull_request = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/azure_devops/git.pullrequest.created.json"),
    )
    .unwrap();
    let tag_push = br#"{"ref":"refs/tags/v2.0.0","repository":{"ssh_url":"git@h:a/b.git"}}"#;
    let cases: [(&str, &str, Option<&[u8]>, &str); 6] = [
        ("Gitea", "create", None, "create event"),
        ("Forgejo", "create", None, "create event"),
        ("Gogs", "create", None, "create event"),
        (
            "Gitea",
            "push",
            Some(tag_push),
            "push to refs/tags/v2.0.0, not a branch",
        ),
        (
            "AzureDevOps",
            "push",
            Some(&pull_request),
            "git.pullrequest.created event",
        ),
        ("GitHub", "ping", None, "ping"),
    ];
    for (source, event, body, why) in cases {
        let reply = deliver(&recv, source, &sample(source, event, &key(source), body)).await;
        assert_eq!(reply.status, 200, "{source} {event}");
        assert_eq!(
            reply.body,
            format!("ok: nothing to do ({why})\n"),
            "{source} {event}"
        );
    }
    assert_eq!(fluxd.take(), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_signatures_and_passwords_are_refused_and_send_nothing() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let recv = Recv::start(&config(dir.path(), &fluxd.api()), Options::default()).await;

    for source in SOURCES {
        let forged = sample(source, "push", b"not-the-endpoint-key-0123", None);
        let reply = deliver(&recv, source, &forged).await;
        assert_eq!(reply.status, 401, "{source}: {}", reply.body);
        assert!(
            !reply.body.contains("not-the-endpoint-key"),
            "{}",
            reply.body
        );
    }
    // The endpoint requires Bitbucket Cloud's signature: none is a 401 too.
    let mut unsigned = sample("BitbucketCloud", "push", &key("BitbucketCloud"), None);
    unsigned
        .headers
        .retain(|(name, _)| *name != "X-Hub-Signature");
    let reply = deliver(&recv, "BitbucketCloud", &unsigned).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    // So is Azure DevOps without its basic authentication.
    let mut anonymous = sample("AzureDevOps", "push", &key("AzureDevOps"), None);
    anonymous
        .headers
        .retain(|(name, _)| *name != "Authorization");
    assert_eq!(deliver(&recv, "AzureDevOps", &anonymous).await.status, 401);

    assert_eq!(fluxd.take(), Vec::<Value>::new());
    let logs = recv.logs.text();
    assert_eq!(
        logs.matches("outcome: unauthorized").count(),
        SOURCES.len() + 2,
        "{logs}"
    );
}
