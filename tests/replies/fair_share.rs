//! The queue shared between endpoints, end to end: an unsigned endpoint's
//! flood cannot refuse another endpoint's pushes, and a delivery that can
//! never fit is told so once, not "retry later" for ever.

use std::time::Duration;

use flux_recv::options::Options;

use crate::common::*;

const DOCKER_HUB_KEY: &[u8] = b"dockerhub-0123456789abcdef0123456789";

fn docker_hub_push(image: &str) -> Vec<u8> {
    format!(r#"{{"repository":{{"repo_name":"{image}"}}}}"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_flood_cannot_refuse_a_signed_push_to_another_endpoint() {
    let down = format!("http://{}/api/flux", dead_addr());
    let up = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dockerhub.key"), DOCKER_HUB_KEY).unwrap();
    std::fs::write(dir.path().join("github.key"), GITHUB_KEY).unwrap();
    let config = write_config(
        dir.path(),
        &up.api(),
        &format!(
            "- source: DockerHub\n  keyPath: dockerhub.key\n  api: {down}\n\
             - source: GitHub\n  keyPath: github.key\n"
        ),
    );
    let recv = Recv::start(
        &config,
        Options {
            max_pending: 16,
            reply_budget: Duration::from_millis(500),
            ..Options::default()
        },
    )
    .await;

    // Distinct images to a fluxd that is down, until the endpoint is
    // refused: it gets half of the queue.
    let flood = recv.url(&hook_path(DOCKER_HUB_KEY));
    let mut queued = 0;
    for i in 0..16 {
        let reply = post(flood.clone(), vec![], docker_hub_push(&format!("org/i{i}"))).await;
        match reply.status {
            202 => queued += 1,
            503 => break,
            s => panic!("{s}: {}", reply.body),
        }
    }
    assert_eq!(queued, 8);

    // The signed push to the other endpoint still gets in, and through.
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook_path(GITHUB_KEY)), github_push(&body), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(up.take(), vec![git_notification("org/app", "main")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_can_never_fit_is_refused_for_good() {
    let apis: Vec<String> = (0..3)
        .map(|_| format!("http://{}/api/flux", dead_addr()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bb.key"), GITHUB_KEY).unwrap();
    let config = write_config(
        dir.path(),
        &apis[0],
        &format!(
            "- source: BitbucketCloud\n  keyPath: bb.key\n  api: [{}]\n",
            apis.join(", ")
        ),
    );
    let recv = Recv::start(
        &config,
        Options {
            max_pending: 8,
            reply_budget: Duration::ZERO,
            ..Options::default()
        },
    )
    .await;
    let hook = recv.url(&hook_path(GITHUB_KEY));
    let headers = || vec![("X-Event-Key".to_string(), "repo:push".to_string())];

    // Three branches for three APIs: nine notifications, more than any
    // endpoint may have waiting (four of eight). Retrying cannot help.
    let reply = post(hook.clone(), headers(), bitbucket_push(["a", "b", "c"])).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.retry_after, None);
    for want in [
        "3 change(s)",
        "3 API(s)",
        "9 notifications",
        "at most 4",
        "nothing was sent",
    ] {
        assert!(reply.body.contains(want), "{want} not in {}", reply.body);
    }
    assert_eq!(recv.service.queue().snapshot().pending, 0);

    // One branch makes three: queued.
    let reply = post(hook, headers(), bitbucket_push(["a"])).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(recv.service.queue().snapshot().pending, 3);
}
