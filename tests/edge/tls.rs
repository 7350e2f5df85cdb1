//! TLS on the public port: hooks served over it (TLS 1.3 and 1.2, ALPN
//! `http/1.1`); plaintext, TLS 1.1 and handshakes that never finish
//! refused, closed, counted and logged; and the admin address, which takes
//! `/metrics`, `/health` and `/ready` off the public port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_recv::options::Options;
use flux_recv::service::Config;
use flux_recv::tls::PairFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::tls::{self, Authority};
use crate::common::*;

/// flux-recv serving TLS with a fresh certificate, and a client trusting it.
struct Served {
    _dir: tempfile::TempDir,
    recv: Recv,
    client: Arc<rustls::ClientConfig>,
    ca: Authority,
    fluxd: FakeFluxd,
}

async fn serve_tls(options: Options, admin: bool) -> Served {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("github.key"), GITHUB_KEY).unwrap();
    let config = write_config(
        dir.path(),
        &fluxd.api(),
        "- source: GitHub\n  keyPath: github.key\n",
    );
    let ca = Authority::new();
    let leaf = ca.leaf(tls::now() + 30 * 86_400);
    std::fs::write(dir.path().join("tls.crt"), &leaf.chain_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).unwrap();
    let options = Options {
        tls: Some(PairFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        }),
        ..options
    };
    let config = Config::new(config, options);
    let recv = match admin {
        true => Recv::start_with_admin(config).await,
        false => Recv::start_config(config).await,
    };
    Served {
        _dir: dir,
        client: tls::client(ca.root(), &[]),
        recv,
        ca,
        fluxd,
    }
}

fn metric(recv: &Recv, series: &str) -> f64 {
    let text = recv
        .service
        .metrics()
        .encode(flux_recv::metrics::Format::Prometheus);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn refused(recv: &Recv, reason: &str) -> f64 {
    metric(
        recv,
        &format!("fluxrecv_tls_handshakes_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// Everything the server sends on a connection until it closes it (or 5 s).
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the server closes the connection");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_is_relayed_over_tls_1_3_and_1_2() {
    let s = serve_tls(Options::default(), false).await;
    let (headers, body) = signed_github_push(GITHUB_KEY);
    let path = hook_path(GITHUB_KEY);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = tls::client(s.ca.root(), &[version]);
        let mut stream = tls::connect(s.recv.addr, &client).await.unwrap();
        let conn = stream.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(version.version));
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (status, text) = tls::request(&mut stream, "POST", &path, &headers, &body).await;
        assert_eq!(status, 200, "{text}");
        // Kept alive: a second request on the same session.
        assert_eq!(
            tls::request(&mut stream, "GET", "/health", &[], b"")
                .await
                .0,
            200
        );
    }
    assert_eq!(s.fluxd.take().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_1_1_are_refused_and_counted() {
    let s = serve_tls(Options::default(), false).await;
    let mut plain = TcpStream::connect(s.recv.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = until_closed(&mut plain).await;
    assert!(!got.starts_with(b"HTTP/"), "no HTTP reply: {got:?}");
    eventually("plaintext counted", Duration::from_secs(5), || {
        refused(&s.recv, "plaintext") == 1.0
    })
    .await;

    let mut old = TcpStream::connect(s.recv.addr).await.unwrap();
    old.write_all(&tls_1_1_client_hello()).await.unwrap();
    let got = until_closed(&mut old).await;
    // At most an alert record (content type 21), never a ServerHello.
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
    eventually("TLS 1.1 counted", Duration::from_secs(5), || {
        refused(&s.recv, "protocol") == 1.0
    })
    .await;
    let logs = s.recv.logs.text();
    for reason in ["reason: plaintext", "reason: protocol"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("TLS handshake refused") && l.contains(reason)),
            "{reason}\n{logs}"
        );
    }
    // Serving goes on.
    assert_eq!(tls::get(s.recv.addr, &s.client, "/health").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_handshake_is_closed_at_the_timeout() {
    let options = Options {
        tls_handshake_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let s = serve_tls(options, false).await;
    let mut slow = TcpStream::connect(s.recv.addr).await.unwrap();
    // The first bytes of a ClientHello, then nothing.
    slow.write_all(&tls_1_1_client_hello()[..20]).await.unwrap();
    let started = Instant::now();
    until_closed(&mut slow).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    eventually("timeout counted", Duration::from_secs(5), || {
        refused(&s.recv, "timeout") == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_handshakes_hold_connection_slots() {
    // One slot: a client stuck in its handshake holds it, and a second
    // client's handshake waits until the first is closed (here at the
    // handshake timeout: it sent a byte, so it is not idle).
    let options = Options {
        max_connections: Some(1),
        tls_handshake_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let s = serve_tls(options, false).await;
    let mut stuck = TcpStream::connect(s.recv.addr).await.unwrap();
    stuck
        .write_all(&tls_1_1_client_hello()[..20])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, _) = tls::get(s.recv.addr, &s.client, "/health").await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the second client got a slot while the first held it: {:?}",
        started.elapsed()
    );
    assert_eq!(refused(&s.recv, "timeout"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_address_takes_metrics_health_and_ready_off_the_public_port() {
    let s = serve_tls(Options::default(), true).await;
    let admin = s.recv.admin.unwrap();
    for path in ["/metrics", "/health", "/ready"] {
        assert_eq!(
            tls::get(s.recv.addr, &s.client, path).await.0,
            404,
            "{path}"
        );
        let reply = get(format!("http://{admin}{path}")).await;
        assert_eq!(reply.status, 200, "{path}");
    }
    let metrics = get(format!("http://{admin}/metrics")).await.body;
    assert!(metrics.contains("fluxrecv_tls_certificate_expiry_timestamp_seconds"));
    // Hooks only on the public port.
    let (headers, body) = signed_github_push(GITHUB_KEY);
    let path = hook_path(GITHUB_KEY);
    let mut stream = tls::connect(s.recv.addr, &s.client).await.unwrap();
    assert_eq!(
        tls::request(&mut stream, "POST", &path, &headers, &body)
            .await
            .0,
        200
    );
    let reply = post(format!("http://{admin}{path}"), headers, body).await;
    assert_eq!(reply.status, 404);
}

/// A ClientHello offering TLS 1.1 only (no supported_versions extension),
/// with two TLS 1.0-era suites.
fn tls_1_1_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version: TLS 1.1
    hello.extend_from_slice(&[7u8; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_tls_caps_connections_at_the_tls_default_unless_the_flag_is_given() {
    // A TLS connection under attack holds several times what a plain one
    // does, so without --max-connections the cap is the TLS default.
    let s = serve_tls(Options::default(), false).await;
    assert_eq!(
        s.recv.service.max_connections(),
        flux_recv::options::TLS_MAX_CONNECTIONS
    );
    // The operator's figure wins.
    let options = Options {
        max_connections: Some(700),
        ..Options::default()
    };
    let s = serve_tls(options, false).await;
    assert_eq!(s.recv.service.max_connections(), 700);
}
