//! What never reaches fluxd: refused hooks, paths other than a hook URL,
//! bodies over the size limit or the shared body budget, and dry runs.

use std::time::Duration;

use flux_recv::options::Options;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_hooks_send_nothing() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");

    // Bad signature.
    let mut headers = github_push(&body);
    headers[3].1 = flux_recv::source::verify::sign(
        flux_recv::source::verify::Algorithm::Sha256,
        b"wrong key",
        &body,
    );
    let reply = post(recv.url(&hook), headers, body.clone()).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, "X-Hub-Signature-256 does not match\n");

    // A valid HMAC-SHA1 in the header that names SHA-256.
    let mut headers = github_push(&body);
    headers[3].1 = flux_recv::source::verify::sign(
        flux_recv::source::verify::Algorithm::Sha1,
        GITHUB_KEY,
        &body,
    );
    let reply = post(recv.url(&hook), headers, body.clone()).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.body,
        "X-Hub-Signature-256 must be sha256=<hex>, an HMAC-SHA256 of the body\n"
    );

    // Signed, but not JSON.
    let junk = b"not json".to_vec();
    let reply = post(recv.url(&hook), github_push(&junk), junk).await;
    assert_eq!(reply.status, 400);

    // Unknown fingerprint: 404, before reading anything.
    let reply = post(
        recv.url(&format!("/hook/{}", "0".repeat(64))),
        github_push(&body),
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 404);

    assert!(fluxd.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let recv = Recv::start(&config, Options::default()).await;
    let health = get(recv.url("/health")).await;
    assert_eq!((health.status, health.body.as_str()), (200, "OK\n"));
    for path in ["/", "/hook", "/hook/", "/healthz"] {
        assert_eq!(get(recv.url(path)).await.status, 404, "GET {path}");
    }
    // A hook URL exists for POST only.
    assert_eq!(get(recv.url(&hook)).await.status, 405, "GET {hook}");
    let reply = post(recv.url("/health"), vec![], vec![]).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413_declared_or_chunked() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let opts = Options {
        max_body: 1024,
        ..Options::default()
    };
    let recv = Recv::start(&config, opts).await;

    // Declared length over the limit: refused without reading the body.
    let big = vec![b'x'; 4096];
    let reply = post(recv.url(&hook), github_push(&big), big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.body, "payload too large: the limit is 1024 bytes\n");

    // Chunked, no length: refused once the chunks pass the limit.
    let mut req = format!(
        "POST {hook} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-GitHub-Event: push\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..8 {
        req.extend_from_slice(format!("200\r\n{}\r\n", "y".repeat(512)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let response = raw(recv.addr, req).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // At the limit is fine (and then fails on its merits: not signed).
    let exact = vec![b'{'; 1024];
    let reply = post(recv.url(&hook), vec![], exact).await;
    assert_eq!(reply.status, 401);
    assert!(fluxd.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_together_cannot_pass_the_body_budget() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let opts = Options {
        body_budget: 64 * 1024,
        body_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let recv = Recv::start(&config, opts).await;

    // A slow client has declared 48 KiB and sent a little of it: the
    // declared length is held against the budget.
    use tokio::io::AsyncWriteExt;
    let mut slow = tokio::net::TcpStream::connect(recv.addr).await.unwrap();
    slow.write_all(
        format!(
            "POST {hook} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{",
            48 * 1024
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Another 32 KiB does not fit beside it: 503, come back later.
    let big = vec![b' '; 32 * 1024];
    let reply = post(recv.url(&hook), github_push(&big), big).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.retry_after.as_deref(), Some("5"));
    // A small one still does.
    let body = github_body("org/app", "main");
    assert_eq!(
        post(recv.url(&hook), github_push(&body), body).await.status,
        200
    );

    // Once the slow one is gone, its bytes are back.
    drop(slow);
    let big = vec![b' '; 32 * 1024];
    eventually_async(
        "the slow one's bytes back",
        Duration::from_secs(5),
        || async {
            let status = post(recv.url(&hook), github_push(&big), big.clone())
                .await
                .status;
            // Signed, within the budget, and not a push: read, then refused for
            // what it is.
            if status != 503 {
                assert_eq!(status, 400);
            }
            status != 503
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_verifies_but_sends_nothing() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let opts = Options {
        dry_run: true,
        ..Options::default()
    };
    let recv = Recv::start(&config, opts).await;
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body.clone()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        "ok: dry run, fluxd would be notified of 1 change(s)\n"
    );
    let bad = post(recv.url(&hook), github_push(b"other"), body).await;
    assert_eq!(bad.status, 401);
    assert!(fluxd.take().is_empty());
    let logs = recv.logs.text();
    assert!(
        logs.contains(r#"notification: {"Kind":"git","Source":{"URL":"git@github.com:org/app.git","Branch":"main"}}"#),
        "{logs}"
    );
}
