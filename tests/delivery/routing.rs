//! Routing end to end: per-endpoint APIs, fan-out, filters, `--api`, and
//! their reload, through a running flux-recv in front of stand-in fluxds.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::*;
use flux_recv::options::Options;
use flux_recv::source::{SampleRequest, Source};

const GITHUB: &[u8] = b"0123456789abcdef-routing-github";
const DOCKERHUB: &[u8] = b"0123456789abcdef-routing-docker";

/// A config with a GitHub and a Docker Hub endpoint, each with `extra`
/// lines; the top-level api is `api`.
fn config(dir: &Path, api: &str, github: &str, dockerhub: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("github.key"), GITHUB).unwrap();
    std::fs::write(dir.join("dockerhub.key"), DOCKERHUB).unwrap();
    write_config(
        dir,
        api,
        &format!(
            "- source: GitHub\n  keyPath: github.key\n{github}- source: DockerHub\n  keyPath: dockerhub.key\n{dockerhub}"
        ),
    )
}

/// POST a GitHub push of `branch`.
async fn push(recv: &Recv, branch: &str) -> Reply {
    let body = github_body("org/app", branch);
    let hook = hook_path(GITHUB);
    let mut headers = github_push(&body);
    let sig = flux_recv::source::verify::sign(
        flux_recv::source::verify::Algorithm::Sha256,
        GITHUB,
        &body,
    );
    headers.retain(|(k, _)| k != "X-Hub-Signature-256");
    headers.push(("X-Hub-Signature-256".into(), sig));
    post(recv.url(&hook), headers, body).await
}

/// POST a Docker Hub push of image `name` (`owner/repo`).
async fn image_push(recv: &Recv, name: &str) -> Reply {
    let (owner, repo) = name.split_once('/').unwrap();
    let body = format!(r#"{{"repository":{{"repo_name":"{owner}/{repo}"}}}}"#);
    let hook = hook_path(DOCKERHUB);
    post(recv.url(&hook), vec![], body.into_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_own_api_wins_over_the_top_level_one() {
    let (top, own) = (FakeFluxd::start().await, FakeFluxd::start().await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &top.api(),
        &format!("  api: {}\n", own.api()),
        "",
    );
    let recv = Recv::start(&cfg, Options::default()).await;
    assert_eq!(push(&recv, "main").await.status, 200);
    assert_eq!(own.take(), [git_notification("org/app", "main")]);
    assert!(top.take().is_empty());
    assert_eq!(image_push(&recv, "org/app").await.status, 200);
    assert_eq!(top.take(), [image_change("", "org/app")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_flag_overrides_the_config_but_not_an_endpoints_own() {
    let (config_api, flag, own) = (
        FakeFluxd::start().await,
        FakeFluxd::start().await,
        FakeFluxd::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &config_api.api(),
        "",
        &format!("  api: {}\n", own.api()),
    );
    let recv = Recv::start_with_api(&cfg, Some(&flag.api()), Options::default()).await;
    assert_eq!(push(&recv, "main").await.status, 200);
    assert_eq!(image_push(&recv, "org/app").await.status, 200);
    assert_eq!(flag.take(), [git_notification("org/app", "main")]);
    assert_eq!(own.take(), [image_change("", "org/app")]);
    assert!(config_api.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_apis_fans_out_to_each() {
    let (a, b) = (FakeFluxd::start().await, FakeFluxd::start().await);
    let dir = tempfile::tempdir().unwrap();
    let github = format!("  api:\n  - {}\n  - {}\n", a.api(), b.api());
    let cfg = config(dir.path(), "http://127.0.0.1:9/api/flux", &github, "");
    let recv = Recv::start(&cfg, Options::default()).await;
    let reply = push(&recv, "main").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(a.take(), [git_notification("org/app", "main")]);
    assert_eq!(b.take(), [git_notification("org/app", "main")]);
    // The hook's log line names both.
    let logs = recv.logs.text();
    assert!(
        logs.contains(&format!("api: {} {}", a.api(), b.api())),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_filters_send_matching_changes_only() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let github = "  filter:\n    branches: [\"main\", \"release/*\"]\n";
    let cfg = config(dir.path(), &fluxd.api(), github, "");
    let recv = Recv::start(&cfg, Options::default()).await;

    for (branch, sent) in [
        ("main", true),
        ("release/1.0", true),
        ("release/1.0/fix", false),
        ("feature/x", false),
    ] {
        let reply = push(&recv, branch).await;
        assert_eq!(reply.status, 200, "{branch}: {}", reply.body);
        if sent {
            assert_eq!(
                fluxd.take(),
                [git_notification("org/app", branch)],
                "{branch}"
            );
        } else {
            assert!(fluxd.take().is_empty(), "{branch}");
            assert_eq!(
                reply.body,
                "ok: nothing to do (the endpoint's filter left out all 1 change(s))\n"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_with_some_changes_filtered_sends_the_rest() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bb.key"), GITHUB).unwrap();
    let cfg = write_config(
        dir.path(),
        &fluxd.api(),
        "- source: BitbucketCloud\n  keyPath: bb.key\n  filter:\n    branches: [main]\n",
    );
    let recv = Recv::start(&cfg, Options::default()).await;
    let body = br#"{"repository":{"full_name":"org/app"},"push":{"changes":[
        {"new":{"name":"main"}},{"new":{"name":"dev"}},{"new":{"name":"other"}}]}}"#;
    let hook = hook_path(GITHUB);
    let headers = vec![("X-Event-Key".to_string(), "repo:push".to_string())];
    let reply = post(recv.url(&hook), headers, body.to_vec()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        "ok: notified fluxd of 1 change(s); 2 left out by the endpoint's filter\n"
    );
    assert_eq!(
        fluxd.take(),
        [git_change("git@bitbucket.org:org/app.git", "main")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_filters_match_short_and_qualified_names() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dockerhub = "  filter:\n    images: [\"docker.io/org/*\", \"alpine\"]\n";
    let cfg = config(dir.path(), &fluxd.api(), "", dockerhub);
    let recv = Recv::start(&cfg, Options::default()).await;
    for (name, sent) in [
        ("org/app", true),
        ("library/alpine", true),
        ("other/app", false),
    ] {
        assert_eq!(image_push(&recv, name).await.status, 200, "{name}");
        let got = fluxd.take();
        assert_eq!(got.len(), usize::from(sent), "{name}: {got:?}");
    }
    let metrics = get(recv.url("/metrics")).await.body;
    assert!(
        metrics.contains(r#"fluxrecv_hooks_total{source="DockerHub",outcome="filtered"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_an_api_or_a_filter_reloads_as_a_settings_change() {
    let (one, two) = (FakeFluxd::start().await, FakeFluxd::start().await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &one.api(), "", "");
    let opts = Options {
        resync_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let recv = Recv::start(&cfg, opts).await;
    assert_eq!(push(&recv, "dev").await.status, 200);
    assert_eq!(one.take().len(), 1);

    // The endpoint's api, then its filter; each is taken up by the next hook.
    let steps = [
        format!("  api: {}\n", two.api()),
        format!("  api: {}\n  filter:\n    branches: [main]\n", two.api()),
    ];
    for (i, github) in steps.iter().enumerate() {
        config(dir.path(), &one.api(), github, "");
        eventually_async(
            &format!("step {i} taken up"),
            Duration::from_secs(10),
            || async {
                let reply = push(&recv, "dev").await;
                let (to_one, to_two) = (one.take().len(), two.take().len());
                let taken_up = match i {
                    0 => to_two == 1,
                    _ => reply.body.contains("filter left out"),
                };
                if taken_up {
                    assert_eq!(to_one, 0);
                }
                taken_up
            },
        )
        .await;
    }
    let logs = recv.logs.text();
    let changes: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("endpoint settings changed"))
        .collect();
    assert_eq!(changes.len(), 2, "{logs}");
    assert!(
        changes[0].contains(&format!("api: {}", two.api())),
        "{}",
        changes[0]
    );
    assert!(
        changes[1].contains("filter: branches main"),
        "{}",
        changes[1]
    );
}

#[test]
fn routing_mistakes_are_config_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (github, dockerhub, field, says) in [
        (
            "  api: https://fluxd/api/flux\n",
            "",
            "endpoints[0].api",
            "not an http:// URL",
        ),
        ("  api: []\n", "", "endpoints[0].api", "empty list"),
        (
            "  api: [http://a/api/flux, http://user:pw@b/api/flux]\n",
            "",
            "endpoints[0].api[1]",
            "user name or password",
        ),
        (
            "",
            "  filter:\n    branches: [main]\n",
            "endpoints[1].filter.branches",
            "sends no git changes",
        ),
        (
            "  filter:\n    branches: [\"[\"]\n",
            "",
            "endpoints[0].filter.branches",
            "is not a glob",
        ),
        (
            "  filter:\n    tags: [v1]\n",
            "",
            "endpoints[0]",
            "unknown field, expected `branches` or `images`",
        ),
    ] {
        let cfg = config(
            dir.path(),
            "http://localhost:3030/api/flux",
            github,
            dockerhub,
        );
        let loaded = flux_recv::table::Table::load(&cfg, None);
        assert!(loaded.table.is_none(), "{github}{dockerhub}");
        let problem = loaded.errors().next().unwrap();
        assert!(problem.field.starts_with(field), "{problem}");
        assert!(problem.message.contains(says), "{problem}");
        assert!(!problem.to_string().contains(":pw@"), "{problem}");
    }

    // GitHub sends images too (containers published to ghcr.io), so its
    // endpoints may filter them; GitLab's may not.
    let cfg = config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "  filter:\n    images: [\"ghcr.io/org/*\"]\n",
        "",
    );
    let loaded = flux_recv::table::Table::load(&cfg, None);
    let table = loaded
        .table
        .unwrap_or_else(|| panic!("{:#?}", loaded.problems));
    let filter = &table.endpoints()[0].filter;
    let ghcr =
        |name: &str| flux_recv::notification::Change::image(flux_recv::image::parse(name).unwrap());
    assert!(filter.admits(&ghcr("ghcr.io/org/app")));
    assert!(!filter.admits(&ghcr("ghcr.io/other/app")));
    assert!(!filter.admits(&ghcr("ghcr.io/org/app/sub")));
    // Its pushes are not filtered by it.
    let push = flux_recv::notification::Change::git("git@github.com:org/app.git", "dev");
    assert!(filter.admits(&push));
    std::fs::write(dir.path().join("gitlab.key"), b"0123456789abcdef-gitlab").unwrap();
    let cfg = write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: GitLab\n  keyPath: gitlab.key\n  filter:\n    images: [a]\n",
    );
    let loaded = flux_recv::table::Table::load(&cfg, None);
    let problem = loaded.errors().next().unwrap();
    assert!(
        problem.field.starts_with("endpoints[0].filter.images"),
        "{problem}"
    );
    assert!(
        problem.message.contains("sends no image changes"),
        "{problem}"
    );
}

#[test]
fn samples_name_the_sources_they_test() {
    // The routing tests lean on these two sources; a rename should fail here
    // first, with a clear message.
    for name in ["GitHub", "DockerHub"] {
        assert!(Source::from_name(name).is_some(), "{name}");
        Source::named(name)
            .sample(&SampleRequest::push(GITHUB))
            .unwrap();
    }
}
