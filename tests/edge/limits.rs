//! Server limits: slow or idle clients cannot hold connections forever, and
//! while they try, a real hook still gets through.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use flux_recv::options::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client that holds a connection slot: it proves the server took its
/// connection (one `GET /health` answered on it), counts itself in
/// `holding`, then sends a request line and one header every 200 ms,
/// never finishing. Returns how long the server kept it connected after
/// that, and when the trickler saw that it had been let go.
async fn trickle(addr: SocketAddr, hook: String, holding: Arc<AtomicUsize>) -> (Duration, Instant) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\nOK\n") {
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "{:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let started = Instant::now();
    s.write_all(format!("POST {hook} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .unwrap();
    holding.fetch_add(1, Ordering::SeqCst);
    let mut buf = [0u8; 256];
    while started.elapsed() < Duration::from_secs(20) {
        tokio::select! {
            n = s.read(&mut buf) => {
                // Closed (0) or a 408: either way the server let go.
                if matches!(n, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408") {
                    break;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if s.write_all(b"X-Trickle: 1\r\n").await.is_err() {
                    break;
                }
            }
        }
    }
    (started.elapsed(), Instant::now())
}

fn options(header_timeout: Duration, max_connections: usize) -> Options {
    Options {
        header_timeout,
        body_timeout: Duration::from_secs(1),
        max_connections: Some(max_connections),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tricklers_do_not_stop_a_real_hook() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let header_timeout = Duration::from_secs(3);
    let recv = Recv::start(&config, options(header_timeout, 1024)).await;

    let holding = Arc::new(AtomicUsize::new(0));
    let tricklers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(trickle(recv.addr, hook.clone(), holding.clone())))
        .collect();
    eventually("200 tricklers holding", Duration::from_secs(30), || {
        holding.load(Ordering::SeqCst) == 200
    })
    .await;

    // The hook is answered while every trickler is still held: not after
    // the header timeout let them go (an event, not a clock, so that a
    // slow machine cannot fail it).
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let let_go = tricklers.iter().filter(|t| t.is_finished()).count();
    assert_eq!(let_go, 0, "the hook was answered after tricklers were cut");
    assert_eq!(fluxd.take().len(), 1);

    // Every trickler is cut off at the header timeout.
    for t in tricklers {
        let (held, _) = t.await.unwrap();
        assert!(held >= header_timeout / 2, "let go early: {held:?}");
        assert!(held < header_timeout * 5, "held for {held:?}");
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
    let header_timeout = Duration::from_secs(3);
    let recv = Recv::start(&config, options(header_timeout, 4)).await;

    let holding = Arc::new(AtomicUsize::new(0));
    let tricklers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(trickle(recv.addr, hook.clone(), holding.clone())))
        .collect();
    eventually("4 tricklers holding", Duration::from_secs(10), || {
        holding.load(Ordering::SeqCst) == 4
    })
    .await;

    // All four slots are taken: the hook waits until the tricklers are cut
    // off, then goes through. Without the cap it would be answered at once,
    // a header timeout (3 s) before the first trickler is let go; with it,
    // just after, give or take the time a trickler takes to notice (1 s
    // allowed, for a loaded machine).
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    let answered = Instant::now();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut first_let_go = None::<Instant>;
    for t in tricklers {
        let (_, let_go) = t.await.unwrap();
        first_let_go = Some(first_let_go.map_or(let_go, |f| f.min(let_go)));
    }
    let first_let_go = first_let_go.unwrap();
    assert!(
        answered + Duration::from_secs(1) >= first_let_go,
        "cap not applied: answered {:?} before a trickler was let go",
        first_let_go - answered
    );
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
    let logs = recv.logs.text();
    // At most the budget for each of the log budget's seconds the burst
    // touched: a burst shorter than a second may straddle two.
    let budget = 5 * (burst.as_secs() as usize + 2);
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
    assert_eq!(refused_lines(&logs) + suppressed(&logs), 51, "{logs}");

    // A relayed hook is always logged.
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 200);
    assert!(recv.logs.text().contains("outcome: relayed"));
}

/// `hook refused` lines in `logs`.
fn refused_lines(logs: &str) -> usize {
    logs.lines().filter(|l| l.contains("hook refused")).count()
}

/// Refusals left out of `logs`, as its summary lines count them; fails
/// when there is none.
fn suppressed(logs: &str) -> usize {
    let counts: Vec<usize> = logs
        .lines()
        .filter(|l| l.contains("refused hooks not logged"))
        .map(|l| {
            l.split("suppressed: ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {l}"))
        })
        .collect();
    assert!(!counts.is_empty(), "no summary line in\n{logs}");
    counts.iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_refusals_are_counted_in_full_but_logged_within_budget() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let opts = Options {
        refusal_logs_per_second: 5,
        max_body: 8000,
        body_budget: 10_000,
        body_timeout: Duration::from_secs(20),
        ..Options::default()
    };
    // The log budget counts whole seconds from when the server's state is
    // made, somewhere in between these two.
    let before = Instant::now();
    let recv = Recv::start(&config, opts).await;
    let after = Instant::now();

    // A client declares 8000 bytes and sends none: the budget has 2000
    // left, too few for any of the requests below.
    let mut held = TcpStream::connect(recv.addr).await.unwrap();
    held.write_all(
        format!("POST {hook} HTTP/1.1\r\nHost: x\r\nContent-Length: 8000\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    // Start the flood just past a second of the log budget, so that a
    // short one falls within one.
    tokio::time::sleep_until((after + Duration::from_secs(1)).into()).await;

    let started = Instant::now();
    for _ in 0..40 {
        let reply = post(recv.url(&hook), vec![], vec![b' '; 5000]).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
    }
    let ended = Instant::now();
    let logs = recv.logs.text();
    // At most the budget for each second of the budget the flood touched:
    // 5 per elapsed second, rounded up.
    let seconds = (ended - before).as_secs() - (started - after).as_secs() + 1;
    assert!(
        refused_lines(&logs) as u64 <= 5 * seconds,
        "{} lines for a {:?} flood\n{logs}",
        refused_lines(&logs),
        ended - started
    );
    assert!(refused_lines(&logs) >= 5, "{logs}");

    // The next second: the first refusal is logged, after a line saying
    // how many were left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = post(recv.url(&hook), vec![], vec![b' '; 5000]).await;
    assert_eq!(reply.status, 503);
    let logs = recv.logs.text();
    assert_eq!(refused_lines(&logs) + suppressed(&logs), 41, "{logs}");
    let metrics = recv
        .service
        .metrics()
        .encode(flux_recv::metrics::Format::Prometheus);
    assert!(
        metrics.contains(r#"fluxrecv_hooks_total{source="GitHub",outcome="busy"} 41"#),
        "{metrics}"
    );
    drop(held);
}
