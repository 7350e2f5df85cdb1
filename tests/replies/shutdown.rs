//! Shutdown: requests in flight finish, pending deliveries go on until the
//! drain timeout and what is left is named, and a connection opened just
//! before the stop is still answered.

use std::time::{Duration, Instant};

use flux_recv::options::Options;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Delay(700));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let mut recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    let in_flight = tokio::spawn(post(recv.url(&hook), github_push(&body), body));
    // In flight: its notification is being sent to fluxd, which takes its
    // time over the answer.
    let queue = recv.service.queue();
    eventually("the hook in flight", Duration::from_secs(10), || {
        queue.snapshot().sending == 1
    })
    .await;
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
    let addr = dead_addr();
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
async fn a_connection_opened_just_before_shutdown_is_still_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let mut recv = Recv::start(&config, Options::default()).await;

    // Accepted before the signal, but the request comes just after it (a
    // provider connecting as the pod is told to stop). Nothing tells a
    // client that the server has accepted: half a second is ample for an
    // accept loop with nothing else to do, and the "shutting down" line
    // confirms it.
    let mut s = tokio::net::TcpStream::connect(recv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    recv.shutdown();
    eventually("the shutdown begun", Duration::from_secs(5), || {
        recv.logs.text().contains("shutting down")
    })
    .await;
    let logs = recv.logs.text();
    assert!(
        logs.contains("shutting down, in_flight_connections: 1"),
        "the connection was not accepted before the signal: {logs}"
    );
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
