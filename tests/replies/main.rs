//! End to end: flux-recv on 127.0.0.1:0 in front of a stand-in fluxd, over
//! real sockets. What the provider sees when fluxd is fine, down, slow,
//! flapping or wrong (the delivery contract), and what never reaches fluxd.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flux_recv::options::Options;

/// A reply budget short enough for tests that wait it out.
fn budget(ms: u64) -> Options {
    Options {
        reply_budget: Duration::from_millis(ms),
        ..Options::default()
    }
}

/// Poll `check` every 20 ms until it holds; fail after `within`.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An address to bring a stand-in fluxd up on later.
fn free_addr() -> std::net::SocketAddr {
    dead_addr()
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
        &format!("api: {}", fluxd.api()),
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    assert!(!logs.contains(std::str::from_utf8(GITHUB_KEY).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxd_down_is_202_within_the_budget_and_delivered_when_it_is_back() {
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &format!("http://{addr}/api/flux"));
    let recv = Recv::start(&config, budget(300)).await;

    let body = github_body("org/app", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(
        reply.body,
        "accepted: fluxd has not confirmed 1 change(s) yet; flux-recv keeps delivering \
         them for up to 14 min\n"
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // flux-recv can still take hooks: it stays ready.
    assert_eq!(get(recv.url("/ready")).await.status, 200);

    // fluxd comes back on its address: the notification reaches it within
    // seconds, and the late delivery is logged with its delivery id.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let fluxd = FakeFluxd::on(listener).await;
    let mut got = Vec::new();
    eventually(
        "delivered after fluxd's return",
        Duration::from_secs(5),
        || {
            got.extend(fluxd.take());
            !got.is_empty()
        },
    )
    .await;
    assert_eq!(got, vec![git_notification("org/app", "main")]);
    let logs = recv.logs.text();
    let late = logs
        .lines()
        .find(|l| l.contains("delivered late"))
        .unwrap_or_else(|| panic!("no late delivery line in\n{logs}"));
    assert!(
        late.contains("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        "{late}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_fluxd_is_retried_until_it_accepts() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, budget(400)).await;
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    // 500, 429 and 408 are retried too.
    for status in [500, 429, 408] {
        fluxd.set(Behaviour::Status(status));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    fluxd.set(Behaviour::Accept);
    let queue = recv.state.hooks.queue();
    eventually("accepted once fluxd does", Duration::from_secs(5), || {
        queue.snapshot().apis.iter().any(|a| a.delivered == 1)
    })
    .await;
    // Retried through every failure; every attempt carried the same
    // notification.
    let received = fluxd.take();
    assert!(received.len() >= 4, "{} attempts", received.len());
    assert!(received
        .iter()
        .all(|n| *n == git_notification("org/app", "main")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_path_is_502_naming_fluxds_answer() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The stand-in serves /api/flux/v11/notify only: this path gets 404.
    let (config, hook) = github_config(dir.path(), &format!("http://{}/flux", fluxd.addr));
    let recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(
        reply.body,
        "fluxd refused the notification: fluxd answered 404 Not Found\n"
    );
    // At once, not after the budget: a 404 is final.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let logs = recv.logs.text();
    assert!(
        logs.contains(&format!(
            "refused_by: http://{}/flux/v11/notify",
            fluxd.addr
        )),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_fluxd_is_refused_not_followed() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Status(302));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("302"), "{}", reply.body);
    // One POST, and no GET anywhere after it.
    assert_eq!(fluxd.take().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_fluxd_gets_202_at_the_budget_and_refusals_stay_fast() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Hang);
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let options = Options {
        reply_budget: Duration::from_millis(500),
        relay_timeout: Duration::from_secs(1),
        max_relays: 2,
        ..Options::default()
    };
    let recv = Recv::start(&config, options).await;

    // Distinct pushes: more than there are workers, each answered at the
    // budget.
    let mut waiting = Vec::new();
    for repo in ["org/a", "org/b", "org/c"] {
        let body = github_body(repo, "main");
        waiting.push(tokio::spawn(post(
            recv.url(&hook),
            github_push(&body),
            body,
        )));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A bad signature needs no relay: refused at once.
    let started = Instant::now();
    let body = github_body("org/d", "main");
    let reply = post(recv.url(&hook), github_push(b"other"), body).await;
    assert_eq!(reply.status, 401);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    for w in waiting {
        let reply = w.await.unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_survives_a_fluxd_restart_within_the_budget() {
    // fluxd is down when the hook arrives and comes back 1 s later, on the
    // same address: the reply waits, and says 200.
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &format!("http://{addr}/api/flux"));
    let recv = Recv::start(&config, budget(4000)).await;

    let body = github_body("org/app", "main");
    let started = Instant::now();
    let pending = tokio::spawn(post(recv.url(&hook), github_push(&body), body));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let fluxd = FakeFluxd::on(listener).await;

    let reply = pending.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(fluxd.take(), vec![git_notification("org/app", "main")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_does_not_fit_the_queue_is_503_and_nothing_of_it_is_queued() {
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bb.key"), GITHUB_KEY).unwrap();
    let config = write_config(
        dir.path(),
        &format!("http://{addr}/api/flux"),
        "- source: BitbucketCloud\n  keyPath: bb.key\n",
    );
    let options = Options {
        max_pending: 2,
        reply_budget: Duration::ZERO,
        ..Options::default()
    };
    let recv = Recv::start(&config, options).await;
    let hook = recv.url(&format!(
        "/hook/{}",
        flux_recv::endpoint::fingerprint(GITHUB_KEY, None)
    ));
    let push = |branches: &[&str]| {
        let changes: Vec<String> = branches
            .iter()
            .map(|b| format!(r#"{{"new":{{"name":"{b}"}}}}"#))
            .collect();
        format!(
            r#"{{"repository":{{"full_name":"org/app"}},"push":{{"changes":[{}]}}}}"#,
            changes.join(",")
        )
        .into_bytes()
    };
    let headers = || vec![("X-Event-Key".to_string(), "repo:push".to_string())];

    let reply = raw_reply(&hook, headers(), push(&["a", "b", "c"])).await;
    assert_eq!(reply.0, 503, "{}", reply.2);
    assert_eq!(reply.1.as_deref(), Some("5"));
    assert!(
        reply.2.contains("nothing of this delivery was queued"),
        "{}",
        reply.2
    );
    assert_eq!(recv.state.hooks.queue().snapshot().pending, 0);

    // What fits is taken: 202 at once (a zero budget never waits).
    let reply = post(hook.clone(), headers(), push(&["a", "b"])).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(recv.state.hooks.queue().snapshot().pending, 2);
    // Joining what is pending takes no room.
    let reply = post(hook, headers(), push(&["b"])).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
}

/// POST and return (status, Retry-After, body).
async fn raw_reply(
    url: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> (u16, Option<String>, String) {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.post(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let mut resp = req.send(&body[..]).unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (
            resp.status().as_u16(),
            retry,
            resp.body_mut().read_to_string().unwrap_or_default(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_with_one_api_down_delivers_to_the_other() {
    let up = FakeFluxd::start().await;
    let down = format!("http://{}/api/flux", dead_addr());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("github.key"), GITHUB_KEY).unwrap();
    let config = write_config(
        dir.path(),
        &up.api(),
        &format!(
            "- source: GitHub\n  keyPath: github.key\n  api:\n  - {down}\n  - {}\n",
            up.api()
        ),
    );
    let recv = Recv::start(&config, budget(300)).await;
    let hook = format!(
        "/hook/{}",
        flux_recv::endpoint::fingerprint(GITHUB_KEY, None)
    );
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    // Not every API confirmed: 202.
    assert_eq!(reply.status, 202, "{}", reply.body);
    // The one that is up got it at once, however long the other is away.
    assert_eq!(up.take(), vec![git_notification("org/app", "main")]);
    let snapshot = recv.state.hooks.queue().snapshot();
    let down_url = format!("{down}/v11/notify");
    let down_api = snapshot
        .apis
        .iter()
        .find(|a| *a.api == *down_url)
        .expect("the down API has its own entry");
    assert_eq!(down_api.pending, 1);
    let up_url = format!("{}/v11/notify", up.api());
    let up_api = snapshot.apis.iter().find(|a| *a.api == *up_url).unwrap();
    assert_eq!((up_api.pending, up_api.delivered), (0, 1));
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
    let reply = raw_reply(&recv.url(&hook), github_push(&big), big).await;
    assert_eq!(reply.0, 503, "{}", reply.2);
    assert_eq!(reply.1.as_deref(), Some("5"));
    // A small one still does.
    let body = github_body("org/app", "main");
    assert_eq!(
        post(recv.url(&hook), github_push(&body), body).await.status,
        200
    );

    // Once the slow one is gone, its bytes are back.
    drop(slow);
    let big = vec![b' '; 32 * 1024];
    let mut status = 0;
    for _ in 0..50 {
        status = post(recv.url(&hook), github_push(&big), big.clone())
            .await
            .status;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Signed, within the budget, and not a push: read, then refused for
    // what it is.
    assert_eq!(status, 400);
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
async fn shutdown_goes_on_delivering_until_the_drain_timeout() {
    // fluxd is away when the hook comes and the pod is told to stop; it
    // comes back during the drain: the notification still reaches it.
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &format!("http://{addr}/api/flux"));
    let options = Options {
        reply_budget: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(4),
        ..Options::default()
    };
    let mut recv = Recv::start(&config, options).await;
    let body = github_body("org/app", "main");
    assert_eq!(
        post(recv.url(&hook), github_push(&body), body).await.status,
        202
    );
    recv.shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let fluxd = FakeFluxd::on(listener).await;
    recv.wait_stopped().await;
    assert_eq!(fluxd.take(), vec![git_notification("org/app", "main")]);
    assert!(!recv.logs.text().contains("left undelivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_names_what_it_could_not_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &format!("http://{}/api/flux", dead_addr()));
    let options = Options {
        reply_budget: Duration::ZERO,
        drain_timeout: Duration::from_millis(800),
        ..Options::default()
    };
    let mut recv = Recv::start(&config, options).await;
    let body = github_body("org/app", "main");
    assert_eq!(
        post(recv.url(&hook), github_push(&body), body).await.status,
        202
    );
    let started = Instant::now();
    recv.shutdown();
    recv.wait_stopped().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let logs = recv.logs.text();
    assert!(
        logs.contains("notifications left undelivered at shutdown, undelivered: 1"),
        "{logs}"
    );
    let line = logs
        .lines()
        .find(|l| l.contains("WARN undelivered"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        line.contains("change: git git@github.com:org/app.git main"),
        "{line}"
    );
    assert!(
        line.contains("delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        "{line}"
    );
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
async fn identical_pushes_together_reach_fluxd_at_most_twice() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Delay(300));
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
    let received = fluxd.take();
    let app = received
        .iter()
        .filter(|n| **n == git_notification("org/app", "main"))
        .count();
    // Those that came while one was queued joined it; those that came while
    // it was being sent got exactly one more send.
    assert!(
        (1..=2).contains(&app),
        "{app} sends of ten identical pushes"
    );
    assert_eq!(received.len(), app + 1);
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
