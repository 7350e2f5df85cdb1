//! Server limits: slow or idle clients cannot hold connections forever, and
//! while they try, a real hook still gets through.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use flux_recv::options::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client that sends a request line and then one header every 200 ms,
/// never finishing. Returns how long the server kept it connected.
async fn trickle(addr: SocketAddr, hook: String) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("POST {hook} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    while started.elapsed() < Duration::from_secs(20) {
        tokio::select! {
            n = s.read(&mut buf) => {
                // Closed (0) or a 408: either way the server let go.
                if matches!(n, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408") {
                    return started.elapsed();
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if s.write_all(b"X-Trickle: 1\r\n").await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
    started.elapsed()
}

fn options(header_timeout: Duration, max_connections: usize) -> Options {
    Options {
        header_timeout,
        body_timeout: Duration::from_secs(1),
        max_connections,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tricklers_do_not_stop_a_real_hook() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, options(Duration::from_secs(2), 1024)).await;

    let tricklers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(trickle(recv.addr, hook.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let body = github_body("org/app", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fluxd.take().len(), 1);

    // Every trickler is cut off at the header timeout.
    for t in tricklers {
        let held = t.await.unwrap();
        assert!(
            held >= Duration::from_millis(1500),
            "let go early: {held:?}"
        );
        assert!(held < Duration::from_secs(10), "held for {held:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let recv = Recv::start(&config, options(Duration::from_secs(1), 1024)).await;

    let mut s = TcpStream::connect(recv.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Now idle: the server closes the connection after the header timeout.
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("idle connection closed")
        .unwrap_or(0);
    assert!(
        n == 0 || buf.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_frees_up() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, options(Duration::from_secs(1), 4)).await;

    let tricklers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(trickle(recv.addr, hook.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // All four slots are taken: the hook waits until the tricklers are cut
    // off, then goes through.
    let body = github_body("org/app", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "cap not applied: {:?}",
        started.elapsed()
    );
    for t in tricklers {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_nothing_is_sent() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, options(Duration::from_secs(5), 1024)).await;

    let mut s = TcpStream::connect(recv.addr).await.unwrap();
    s.write_all(
        format!("POST {hook} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-GitHub-Event: push\r\n\r\n{{\"ref\"")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answered")
        .ok();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(
        out.ends_with("the request body was not received in time\n"),
        "{out}"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(fluxd.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refusals_is_counted_in_full_but_logged_within_budget() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let opts = Options {
        refusal_logs_per_second: 5,
        ..Options::default()
    };
    let recv = Recv::start(&config, opts).await;
    let body = github_body("org/app", "main");
    let started = Instant::now();
    for _ in 0..50 {
        let reply = post(recv.url(&hook), github_push(b"other"), body.clone()).await;
        assert_eq!(reply.status, 401);
    }
    let burst = started.elapsed();
    let refused_lines = |logs: &str| logs.lines().filter(|l| l.contains("hook refused")).count();
    let logs = recv.logs.text();
    // At most the budget per second the burst spanned.
    let budget = 5 * (burst.as_secs() as usize + 1);
    assert!(
        refused_lines(&logs) <= budget,
        "{} lines for a {burst:?} burst",
        refused_lines(&logs)
    );
    assert!(refused_lines(&logs) >= 5);

    // The next second: the first refusal is logged, with a line saying how
    // many were left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = post(recv.url(&hook), github_push(b"other"), body.clone()).await;
    assert_eq!(reply.status, 401);
    let logs = recv.logs.text();
    let summary = logs
        .lines()
        .find(|l| l.contains("refused hooks not logged"))
        .expect("a summary line");
    let suppressed: usize = summary
        .split("suppressed: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(refused_lines(&logs) + suppressed, 51, "{summary}");

    // A relayed hook is always logged.
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 200);
    assert!(recv.logs.text().contains("outcome: relayed"));
}
