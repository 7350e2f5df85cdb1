//! One delivery cannot fan out into many calls to fluxd: identical changes
//! are sent once, and a delivery naming more distinct changes than
//! `--max-changes` is refused whole.

use crate::common;

use common::*;
use flux_recv::options::Options;

const KEY: &[u8] = b"0123456789abcdef-amplification";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_collapsed_and_capped() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bb.key"), KEY).unwrap();
    let config = write_config(
        dir.path(),
        &fluxd.api(),
        "- source: BitbucketCloud\n  keyPath: bb.key\n",
    );
    let options = Options {
        max_changes: 100,
        ..Options::default()
    };
    let recv = Recv::start(&config, options).await;
    let hook = recv.url(&hook_path(KEY));
    let headers = || vec![("X-Event-Key".to_string(), "repo:push".to_string())];

    // 20,000 changes of two branches: two notifications.
    let body = bitbucket_push((0..20_000).map(|i| ["main", "dev"][i % 2].to_string()));
    let reply = post(hook.clone(), headers(), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fluxd.take().len(), 2);

    // Exactly the cap: sent.
    let body = bitbucket_push((0..100).map(|i| format!("b{i}")));
    assert_eq!(post(hook.clone(), headers(), body).await.status, 200);
    assert_eq!(fluxd.take().len(), 100);

    // One over: refused, nothing sent.
    let body = bitbucket_push((0..101).map(|i| format!("b{i}")));
    let reply = post(hook, headers(), body).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        reply.body,
        "too many changes: the delivery names 101 distinct changes, the limit is 100; \
         nothing was sent\n"
    );
    assert!(fluxd.take().is_empty());
}
