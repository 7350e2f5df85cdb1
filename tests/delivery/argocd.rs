//! Argo CD as a target, end to end: each git provider's real payload
//! (the fixtures under `testdata/`) posted to a running flux-recv whose
//! endpoint names an Argo CD webhook, and read by the stand-in Argo CD
//! (`tests/common/argocd.rs`) as Argo CD's code reads it; and what each of
//! Argo CD's answers leads to, and a rotated secret.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::argocd::FakeArgoCd;
use common::*;
use flux_recv::options::Options;
use flux_recv::source::{SampleRequest, Source};

const SECRET: &[u8] = b"argocd-webhook-secret-0123456789";

/// Each git source, its fixture, an Application's https `repoURL` that
/// must be matched, the revision and the files Argo CD must read.
const CASES: [(&str, &str, &str, &str, &[&str]); 8] = [
    (
        "GitHub",
        "github_payload",
        "https://github.com/Codertocat/Hello-World.git",
        "simple-tag",
        &[],
    ),
    (
        "GitLab",
        "gitlab_payload",
        "https://example.com/mike/diaspora.git",
        "master",
        &[],
    ),
    (
        "BitbucketCloud",
        "bitbucket_cloud_payload",
        "https://bitbucket.org/mbridgen/dummy.git",
        "master",
        &[],
    ),
    (
        "BitbucketServer",
        "bitbucket_server_payload",
        "https://bitbucket.redacted.com/scm/~abursavich/hook-test.git",
        "master",
        &[],
    ),
    (
        "Gitea",
        "gitea/push.json",
        "https://git.example.org/platform/deploy-config.git",
        "develop",
        &["api/deployment.yaml"],
    ),
    (
        "Forgejo",
        "forgejo/push.json",
        "https://forge.example.net/infra/cluster.git",
        "main",
        &["api/deployment.yaml"],
    ),
    (
        "Gogs",
        "gogs/push.json",
        "http://gogs.example.com:3000/ops/flux-config.git",
        "production",
        &["workers/deployment.yaml"],
    ),
    (
        "AzureDevOps",
        "azure_devops/git.push.visualstudio.json",
        "https://fabrikam-legacy.visualstudio.com/DefaultCollection/Shop%20Front/_git/web",
        "release",
        &[],
    ),
];

fn key(source: &str) -> Vec<u8> {
    format!("{source}-key-0123456789abcdef").into_bytes()
}

/// A config whose endpoints (one per source) each send to Argo CD at
/// `url` only, signing with the secret in `argocd.secret`.
fn config(dir: &Path, url: &str, sources: &[&str], extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("argocd.secret"), SECRET).unwrap();
    let mut endpoints = String::new();
    for source in sources {
        std::fs::write(dir.join(format!("{source}.key")), key(source)).unwrap();
        endpoints.push_str(&format!(
            "- source: {source}\n  keyPath: {source}.key\n{extra}  argocd:\n  - url: {url}\n    secretPath: argocd.secret\n"
        ));
    }
    write_config(dir, "http://127.0.0.1:9/api/flux", &endpoints)
}

/// POST `fixture` as `source` delivers it, signed with its endpoint's key.
async fn deliver(recv: &Recv, source: &str, fixture: &str) -> Reply {
    let payload = std::fs::read(testdata().join(fixture)).unwrap();
    let key = key(source);
    let request = SampleRequest {
        body: Some(&payload),
        ..SampleRequest::push(&key)
    };
    let delivery = Source::named(source).sample(&request).unwrap();
    let url = recv.url(&hook_path(&key));
    post(url, headers_of(&delivery), delivery.body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_git_providers_push_is_matched_with_its_revision_and_files() {
    let argocd = FakeArgoCd::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let sources: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    let cfg = config(dir.path(), &argocd.url(), &sources, "");
    let recv = Recv::start(&cfg, Options::default()).await;
    for (source, fixture, https, revision, files) in CASES {
        let reply = deliver(&recv, source, fixture).await;
        assert_eq!(reply.status, 200, "{source}: {reply:?}");
        let pushes = argocd.take();
        let [push] = &pushes[..] else {
            panic!("{source}: one push, not {pushes:?}")
        };
        assert!(
            push.uses(https),
            "{source}: {https} not matched by {push:?}"
        );
        assert_eq!(push.revision, revision, "{source}");
        assert_eq!(push.files, files, "{source}");
        assert!(push.refreshes(revision), "{source}");
    }
    assert!(argocd.answered().iter().all(|s| *s == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_block_is_sent_as_a_push_of_its_repository() {
    let argocd = FakeArgoCd::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = "  notify: {git: {url: \"git@github.com:org/app.git\", branch: main}}\n";
    let cfg = config(dir.path(), &argocd.url(), &["Generic"], notify);
    let recv = Recv::start(&cfg, Options::default()).await;
    let reply = post(recv.url(&hook_path(&key("Generic"))), vec![], vec![]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let [push] = &argocd.take()[..] else {
        panic!("one push")
    };
    assert!(push.uses("https://github.com/org/app.git") && push.uses("git@github.com:org/app.git"));
    assert_eq!(push.revision, "main");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_ends_the_push_and_a_rotated_secret_is_used_at_once() {
    // Argo CD knows another secret than flux-recv's file holds.
    let argocd = FakeArgoCd::start(b"the secret Argo CD has").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &argocd.url(), &["Gitea"], "");
    let recv = Recv::start(&cfg, Options::default()).await;
    let reply = deliver(&recv, "Gitea", "gitea/push.json").await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.body.contains("webhook.github.secret"), "{reply:?}");
    assert_eq!(argocd.answered(), [400], "refused, not retried");
    assert!(!recv.logs.text().contains("argocd-webhook-secret"));

    // The secret file is rotated to Argo CD's: the next hook is signed
    // with it.
    std::fs::write(dir.path().join("argocd.secret"), b"the secret Argo CD has").unwrap();
    eventually_async(
        "the rotated secret signs",
        Duration::from_secs(20),
        || async { deliver(&recv, "Gitea", "gitea/push.json").await.status == 200 },
    )
    .await;
    assert_eq!(argocd.take().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_argo_cd_queue_is_retried() {
    let argocd = FakeArgoCd::start(SECRET).await;
    argocd.answer(503);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &argocd.url(), &["GitLab"], "");
    let options = Options {
        reply_budget: Duration::from_millis(300),
        ..Options::default()
    };
    let recv = Recv::start(&cfg, options).await;
    let reply = deliver(&recv, "GitLab", "gitlab_payload").await;
    assert_eq!(reply.status, 202, "{reply:?}");
    eventually("Argo CD was asked", Duration::from_secs(10), || {
        !argocd.answered().is_empty()
    })
    .await;
    argocd.answer(200);
    eventually(
        "the push is retried and read",
        Duration::from_secs(30),
        || !argocd.pushes.lock().unwrap().is_empty(),
    )
    .await;
    let answered = argocd.answered();
    assert_eq!(answered.last(), Some(&200), "{answered:?}");
    assert!(answered.contains(&503), "{answered:?}");
}
