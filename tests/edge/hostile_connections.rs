//! Connections that never read their replies, and header blocks larger
//! than the read buffer: each connection must make progress or be closed,
//! and its buffers stay small (see `flux_recv::conn`).

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use flux_recv::options::Options;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The write timeout in these tests: the header timeout, which
/// `conn::Limits::new` uses for both.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

fn options(max_connections: usize) -> Options {
    Options {
        header_timeout: WRITE_TIMEOUT,
        max_connections: Some(max_connections),
        ..Options::default()
    }
}

/// Connect and pipeline ~100 KiB of `GET /metrics` requests, never reading
/// a reply. The stream is returned so the caller decides how long to hold
/// it.
async fn pipeline_without_reading(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let requests = request.repeat(100 * 1024 / request.len());
    s.write_all(&requests).await.unwrap();
    s
}

/// Wait until the server resets the connection, without reading or writing
/// (which would change what the client looks like): the socket's pending
/// error (`SO_ERROR`) turns to "connection reset" when the server closes a
/// connection it has not read to the end. How long that took, or `None`
/// after `limit`.
async fn until_reset(s: &TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(_)) | Err(_) = socket2::SockRef::from(s).take_error() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_and_never_reads_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let recv = Recv::start(&config, options(1024)).await;

    let s = pipeline_without_reading(recv.addr).await;
    // Without a write timeout the server waits for the client for ever.
    let held = until_reset(&s, Duration::from_secs(15))
        .await
        .expect("cut off within 15 s");
    assert!(
        held < WRITE_TIMEOUT + Duration::from_secs(4),
        "held {held:?}"
    );
    assert_eq!(get(recv.url("/health")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_readers_in_every_slot_are_cut_and_a_real_hook_gets_in() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, options(4)).await;

    // Every slot taken by a client that never reads; they stay open (on
    // the client's side) until the end of the test.
    let mut hostile = Vec::new();
    for _ in 0..4 {
        hostile.push(pipeline_without_reading(recv.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let body = github_body("org/app", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fluxd.take().len(), 1);
    // It waited for a slot (the cap holds), and got one once the
    // non-readers were cut at the write timeout.
    assert!(
        waited < WRITE_TIMEOUT + Duration::from_secs(4),
        "waited {waited:?}"
    );
    for s in &hostile {
        assert!(
            until_reset(s, Duration::from_secs(5)).await.is_some(),
            "a non-reader still connected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_over_the_buffer_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let recv = Recv::start(&config, options(1024)).await;
    let request = |pad: usize| {
        format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(pad)
        )
        .into_bytes()
    };

    // Well under the cap: served.
    let reply = raw(recv.addr, request(8 * 1024)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:.100}");

    // Over it: 431, or, if the client is still sending when the server
    // closes, a reset that discards the 431; never served, and never left
    // hanging (the client would wait for ever: here, its 10 s timeout).
    let cap = flux_recv::conn::MAX_BUF_SIZE;
    // What hyper allowed by default (~400 KiB) is refused the same way.
    for pad in [cap + 1024, 64 * 1024] {
        let (reply, ending) = refused(recv.addr, request(pad)).await;
        match ending {
            Ending::Closed | Ending::Reset => assert!(
                reply.starts_with("HTTP/1.1 431") || (reply.is_empty() && ending == Ending::Reset),
                "{pad} bytes of header, {ending:?}: {reply:.100}"
            ),
            Ending::Hung => panic!("{pad} bytes of header: no answer and not closed"),
        }
    }
}

/// How the server ended a connection it refused.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// It closed the connection (end of stream) after its reply.
    Closed,
    /// It reset the connection (the client was still sending, or had
    /// unread data in flight).
    Reset,
    /// Neither, within 10 s.
    Hung,
}

/// Send `request` and read whatever comes back until the server ends the
/// connection or 10 s pass: the reply, and how it ended.
async fn refused(addr: SocketAddr, request: Vec<u8>) -> (String, Ending) {
    tokio::task::spawn_blocking(move || {
        use std::io::{ErrorKind, Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut ending = None;
        if let Err(e) = s.write_all(&request) {
            // The server closed while the request was still going out.
            assert!(
                matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                "{e}"
            );
            ending = Some(Ending::Reset);
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let ending = loop {
            match s.read(&mut buf) {
                Ok(0) => break ending.unwrap_or(Ending::Closed),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break Ending::Hung
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
                    break Ending::Reset;
                }
            }
        };
        (String::from_utf8_lossy(&out).into_owned(), ending)
    })
    .await
    .unwrap()
}
