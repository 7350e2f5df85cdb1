//! End to end: flux-recv on 127.0.0.1:0 in front of a stand-in fluxd, over
//! real sockets. What the provider sees when fluxd is fine, down, failing or
//! hanging, and what never reaches fluxd.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flux_recv::options::Options;

fn options(relay_timeout: Duration) -> Options {
    Options {
        relay_timeout,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_reaches_fluxd() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;

    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "ok: notified fluxd of 1 change(s)\n");
    assert_eq!(fluxd.take(), vec![git_notification("org/app", "main")]);

    // One log line for the hook, with the delivery id, never the key.
    let logs = recv.logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains(" hook,"))
        .expect("hook log line");
    for want in [
        "source: GitHub",
        "event: push",
        "delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "outcome: relayed",
        "status: 200",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    assert!(!logs.contains(std::str::from_utf8(GITHUB_KEY).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxd_down_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &format!("http://{}/api/flux", dead_addr()));
    let recv = Recv::start(&config, options(Duration::from_secs(2))).await;
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.body, "the Flux API is unreachable\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxd_answering_500_is_502() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Status(500));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.body, "the Flux API answered 500\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxd_hanging_is_504_at_the_deadline() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Hang);
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, options(Duration::from_millis(800))).await;
    let body = github_body("org/app", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.body, "the Flux API did not answer in time\n");
    // Answered at the deadline, not at some later timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

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
async fn shutdown_lets_requests_in_flight_finish() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Delay(700));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let mut recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    let in_flight = tokio::spawn(post(recv.url(&hook), github_push(&body), body));
    tokio::time::sleep(Duration::from_millis(200)).await;
    recv.shutdown();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fluxd.take().len(), 1);
    // The server task ends, and new connections are refused.
    recv.wait_stopped().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_survives_a_fluxd_restart() {
    // fluxd is down when the hook arrives and comes back 1.5 s later, on the
    // same port: the hook is held, retried, and answered 200.
    let port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port_holder.local_addr().unwrap();
    drop(port_holder);
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &format!("http://{addr}/api/flux"));
    let recv = Recv::start(&config, Options::default()).await;

    let body = github_body("org/app", "main");
    let started = Instant::now();
    let pending = tokio::spawn(post(recv.url(&hook), github_push(&body), body));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let fluxd = FakeFluxd::on(listener).await;

    let reply = pending.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(fluxd.take(), vec![git_notification("org/app", "main")]);
    let stats = recv.state.hooks.relay().stats();
    assert!(stats.retries.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxd_unavailable_is_retried_but_a_client_error_is_not() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, options(Duration::from_secs(1))).await;
    let attempts = || {
        recv.state
            .hooks
            .relay()
            .stats()
            .attempts
            .load(std::sync::atomic::Ordering::Relaxed)
    };

    fluxd.set(Behaviour::Status(503));
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body.clone()).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.body, "the Flux API answered 503\n");
    let retried = attempts();
    assert!(retried >= 3, "only {retried} attempts in 1 s of 503s");
    assert_eq!(fluxd.take().len() as u64, retried);

    fluxd.set(Behaviour::Status(400));
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 502);
    assert_eq!(attempts(), retried + 1, "a 400 is final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_fluxd_cannot_hold_more_than_max_relays_and_refusals_stay_fast() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Hang);
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let opts = Options {
        relay_timeout: Duration::from_secs(1),
        max_relays: 2,
        ..Options::default()
    };
    let recv = Recv::start(&config, opts).await;

    // Two relays to the hanging fluxd hold both slots for 3 s (different
    // repositories: identical ones would share one call).
    let mut hanging = Vec::new();
    for repo in ["org/a", "org/b"] {
        let relay = recv.state.hooks.relay().clone();
        let url = format!("{}/v11/notify", fluxd.api());
        let change =
            flux_recv::notification::Change::git(format!("git@github.com:{repo}.git"), "main");
        let until = Instant::now() + Duration::from_secs(3);
        hanging.push(tokio::spawn(async move {
            relay.notify_by(url, vec![change], until).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A bad signature needs no relay: refused at once.
    let body = github_body("org/c", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(b"other"), body.clone()).await;
    assert_eq!(reply.status, 401);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // A valid hook finds no slot before its 1 s deadline: 503, Retry-After.
    let started = Instant::now();
    let reply = tokio::task::spawn_blocking({
        let url = recv.url(&hook);
        let headers = github_push(&body);
        move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut req = agent.post(&url);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let resp = req.send(&body[..]).unwrap();
            (
                resp.status().as_u16(),
                resp.headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(reply, (503, Some("10".to_string())));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    for h in hanging {
        assert_eq!(
            h.await.unwrap(),
            Err(flux_recv::relay::RelayError::TimedOut)
        );
    }
    assert!(fluxd.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_notifications_in_flight_are_sent_once() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Delay(500));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;

    let mut storm = Vec::new();
    for _ in 0..10 {
        let body = github_body("org/app", "main");
        storm.push(tokio::spawn(post(
            recv.url(&hook),
            github_push(&body),
            body,
        )));
    }
    let other = github_body("org/other", "main");
    storm.push(tokio::spawn(post(
        recv.url(&hook),
        github_push(&other),
        other,
    )));
    for h in storm {
        assert_eq!(h.await.unwrap().status, 200);
    }
    let mut received = fluxd.take();
    received.sort_by_key(|v| v.to_string());
    assert_eq!(
        received,
        vec![
            git_notification("org/app", "main"),
            git_notification("org/other", "main")
        ]
    );

    // Once answered, the same notification is sent again: a later push
    // needs a later look.
    let body = github_body("org/app", "main");
    assert_eq!(
        post(recv.url(&hook), github_push(&body), body).await.status,
        200
    );
    assert_eq!(fluxd.take().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_just_before_shutdown_is_still_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let mut recv = Recv::start(&config, Options::default()).await;

    // Accepted before the signal, but the request comes just after it (a
    // provider connecting as the pod is told to stop).
    let mut s = tokio::net::TcpStream::connect(recv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    recv.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("answered")
        .ok();
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    recv.wait_stopped().await;
}
