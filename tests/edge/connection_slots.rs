//! Connection slots: keep-alive clients cannot hold `--max-connections`
//! for ever. At the cap, the connection idle longest is closed for a new
//! client; a connection in the middle of a request never is; and every
//! connection closes after `--max-connection-age` or
//! `--max-connection-requests`, once the reply in progress is sent.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use flux_recv::options::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough that no connection here is closed for being idle: what
/// closes them is the cap, their age or their request count.
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);

fn options(max_connections: usize) -> Options {
    Options {
        header_timeout: HEADER_TIMEOUT,
        max_connections: Some(max_connections),
        ..Options::default()
    }
}

/// One reply read off a keep-alive connection: its head and body, or
/// `None` when the server closed the connection before a byte of it.
async fn read_reply(s: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return Some((head, body));
            }
        }
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            assert!(
                buf.is_empty(),
                "a reply was cut off: {:?}",
                String::from_utf8_lossy(&buf)
            );
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server has closed `s` (EOF within `within`).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, s.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A keep-alive client that asks for `/health` every `every`, reading each
/// reply, until the server closes its connection. Counts the replies it
/// got in `replies`; returns once it is closed.
async fn holder(addr: SocketAddr, every: Duration, replies: Arc<AtomicUsize>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    loop {
        if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        match read_reply(&mut s).await {
            Some((head, _)) => {
                assert!(head.starts_with("http/1.1 200"), "{head}");
                replies.fetch_add(1, Ordering::Relaxed);
            }
            None => return,
        }
        tokio::time::sleep(every).await;
    }
}

/// A signed GitHub push on a new connection, given at most `within`.
async fn genuine_hook(recv: &Recv, hook: &str, within: Duration) -> Result<u16, String> {
    let url = recv.url(hook);
    let body = github_body("org/app", "main");
    let headers = github_push(&body);
    tokio::task::spawn_blocking(move || {
        let mut req = client(Some(within)).post(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        req.send(&body[..])
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_clients_in_every_slot_do_not_keep_a_hook_out() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let cap = 8;
    let recv = Recv::start(&config, options(cap)).await;

    // Every slot held by a client that asks for /health every 200 ms, well
    // within the header timeout, so that it is never closed for idling.
    let replies = Arc::new(AtomicUsize::new(0));
    let holders: Vec<_> = (0..cap)
        .map(|_| {
            tokio::spawn(holder(
                recv.addr,
                Duration::from_millis(200),
                replies.clone(),
            ))
        })
        .collect();
    eventually("every holder served", Duration::from_secs(10), || {
        replies.load(Ordering::Relaxed) >= 2 * cap
    })
    .await;

    // A new client gets in: the holder idle longest is closed for it.
    let started = Instant::now();
    assert_eq!(
        genuine_hook(&recv, &hook, Duration::from_secs(5)).await,
        Ok(200)
    );
    let waited = started.elapsed();
    assert_eq!(fluxd.take().len(), 1);
    // Measured on a quiet machine in milliseconds; the bound is loose
    // because the test machine is shared.
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");

    // One holder made room; the others are still served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let closed = holders.iter().filter(|h| h.is_finished()).count();
    assert_eq!(closed, 1, "{closed} holders closed for one new client");
    for h in holders {
        h.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_the_middle_of_a_request_is_not_the_one_closed() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Hang);
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(
        &config,
        Options {
            reply_budget: Duration::from_secs(3),
            ..options(2)
        },
    )
    .await;

    // Slot one: a hook waiting for fluxd (the whole reply budget).
    let mut busy = TcpStream::connect(recv.addr).await.unwrap();
    busy.write_all(&raw_push(&hook)).await.unwrap();
    // Slot two: an idle keep-alive connection, older than none but idle.
    let mut idle = TcpStream::connect(recv.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_reply(&mut idle).await.is_some());
    let queue = recv.service.queue();
    eventually(
        "the hook is waiting for fluxd",
        Duration::from_secs(5),
        || queue.snapshot().pending == 1,
    )
    .await;

    // A new client: the idle connection is closed for it, at once; the
    // busy one goes on to its reply.
    let mut newcomer = TcpStream::connect(recv.addr).await.unwrap();
    newcomer
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = tokio::time::timeout(Duration::from_secs(2), read_reply(&mut newcomer))
        .await
        .expect("the newcomer was served while the hook still waited")
        .expect("a reply");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(closed_within(&mut idle, Duration::from_secs(2)).await);
    let (head, body) = tokio::time::timeout(Duration::from_secs(10), read_reply(&mut busy))
        .await
        .expect("the hook's reply")
        .expect("the hook's connection was not cut");
    assert!(head.starts_with("http/1.1 202"), "{head}\n{body}");
}

/// A signed GitHub push, as raw bytes for a keep-alive connection.
fn raw_push(hook: &str) -> Vec<u8> {
    let body = github_body("org/app", "main");
    let mut request = format!(
        "POST {hook} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in github_push(&body) {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut request = format!("{request}\r\n").into_bytes();
    request.extend_from_slice(&body);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closes_after_its_last_request_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let recv = Recv::start(
        &config,
        Options {
            max_connection_requests: 3,
            ..options(16)
        },
    )
    .await;
    let mut s = TcpStream::connect(recv.addr).await.unwrap();
    for n in 1..=3 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = read_reply(&mut s).await.expect("a reply");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, "OK\n");
        assert_eq!(head.contains("connection: close"), n == 3, "{n}: {head}");
    }
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_connection_closes_when_idle_and_after_the_reply_in_progress() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(
        &config,
        Options {
            max_connection_age: Duration::from_secs(1),
            reply_budget: Duration::from_secs(5),
            ..options(16)
        },
    )
    .await;

    // Idle at its age: closed then, though far from the idle timeout.
    let opened = Instant::now();
    let mut idle = TcpStream::connect(recv.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_reply(&mut idle).await.is_some());
    assert!(closed_within(&mut idle, Duration::from_secs(10)).await);
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "{:?}",
        opened.elapsed()
    );
    assert!(opened.elapsed() < HEADER_TIMEOUT, "{:?}", opened.elapsed());

    // In the middle of a request at its age: the reply comes whole, says
    // the connection closes, and it does.
    fluxd.set(Behaviour::Delay(2000));
    let mut busy = TcpStream::connect(recv.addr).await.unwrap();
    busy.write_all(&raw_push(&hook)).await.unwrap();
    let (head, body) = tokio::time::timeout(Duration::from_secs(10), read_reply(&mut busy))
        .await
        .expect("the hook's reply")
        .expect("not cut off");
    assert!(head.starts_with("http/1.1 200"), "{head}\n{body}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_within(&mut busy, Duration::from_secs(5)).await);
    assert_eq!(fluxd.take().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_whose_clients_hang_up_at_the_cap_are_all_recorded() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Delay(300));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, options(4)).await;
    // Twenty clients send a hook and hang up at once, five times the cap:
    // each hook holds its slot until it is recorded, and a connection
    // whose request is not read yet is never closed for a new client.
    let request = raw_push(&hook);
    for _ in 0..20 {
        let mut s = TcpStream::connect(recv.addr).await.unwrap();
        s.write_all(&request).await.unwrap();
    }
    let counted = || {
        let metrics = recv
            .service
            .metrics()
            .encode(flux_recv::metrics::Format::Prometheus);
        metrics
            .lines()
            .filter(|l| l.starts_with(r#"fluxrecv_hooks_total{source="GitHub""#))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    eventually("every hook recorded", Duration::from_secs(30), || {
        counted() == 20.0
    })
    .await;
    assert!(!fluxd.take().is_empty());
}
