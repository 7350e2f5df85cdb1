//! The server as a process: the Go original's invocation still serves, and
//! under an open-file limit too low for `--max-connections` it serves fewer
//! connections and says so.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::process::Running;
use crate::common::{client, testdata};
use crate::{flux_recv, path_str, run, scrubbed, stderr, stdout};

#[test]
fn the_go_originals_invocation_still_serves() {
    // `--listen :PORT`, as the Go original took it (port 0: the one it
    // says it listens on).
    let demo = testdata().join("demo").join("fluxrecv.yaml");
    let mut server = Running::start(flux_recv(&[
        "--config",
        path_str(&demo),
        "--listen",
        ":0",
        "--dry-run",
    ]));
    let port = server.address().port();
    let base = format!("http://127.0.0.1:{port}");
    let o = run(&[
        "send",
        "--config",
        path_str(&demo),
        "--endpoint",
        "1",
        "--url",
        &base,
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o),
        "HTTP 200 OK\nok: dry run, fluxd would be notified of 1 change(s)\n"
    );
}

#[test]
fn a_low_open_file_limit_lowers_the_connection_cap_says_so_once_and_serves() {
    // `ulimit -n` in sh sets the soft and the hard limit, so flux-recv
    // cannot raise it: 1024 connections (the default) do not fit in 300.
    const LIMIT: usize = 300;
    let demo = testdata().join("demo").join("fluxrecv.yaml");
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        &format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_flux-recv"),
        "--config",
        path_str(&demo),
        "--listen",
        "127.0.0.1:0",
        "--dry-run",
        // Connections held for this test stay open while it counts them.
        "--header-timeout",
        "60s",
    ])
    .stdout(Stdio::null());
    let mut server = Running::start(scrubbed(sh));

    let addr = server.address();
    let lowered = server.wait_for("does not fit in the open-file limit");
    assert!(
        lowered.contains(" WARN --max-connections 1024 does not fit"),
        "{lowered}"
    );
    assert!(lowered.contains("(300 soft, 300 hard)"), "{lowered}");
    let cap: usize = lowered
        .split("serving at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cap in {lowered}"));
    // Room is left for the descriptors the process needs besides
    // connections (a few dozen), and no more than that is taken from them.
    assert!((LIMIT / 2..LIMIT - 32).contains(&cap), "{cap}");

    let mut health = client(Some(Duration::from_secs(10)))
        .get(&format!("http://{addr}/health"))
        .call()
        .expect("GET /health");
    assert_eq!(health.status(), 200);
    assert_eq!(health.body_mut().read_to_string().unwrap(), "OK\n");

    // The cap is applied: `cap` connections, each taken (a request answered
    // on it) and then in the middle of another, hold every slot; one more
    // is not served until one of them closes.
    let mut held: Vec<TcpStream> = (0..cap).map(|_| holding(addr)).collect();
    let mut probe = TcpStream::connect(addr).unwrap();
    probe
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 256];
    match probe.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!(
            "a connection beyond the cap of {cap} was served: {other:?} {:?}",
            String::from_utf8_lossy(&buf)
        ),
    }
    drop(held.pop());
    probe
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    probe.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    drop(held);

    server.signal("TERM");
    let exit = server
        .exited(Duration::from_secs(10))
        .expect("SIGTERM stops it within 10 s");
    assert!(exit.success(), "{exit}");
    let all = server.all_lines();
    let said = all
        .iter()
        .filter(|l| l.contains("does not fit in the open-file limit"))
        .count();
    assert_eq!(said, 1, "{all:#?}");
    // The process never ran out of descriptors at the cap.
    assert!(!all.iter().any(|l| l.contains("accept failed")), "{all:#?}");
    assert!(all.last().unwrap().contains("stopped"), "{all:#?}");
}

/// A connection the server has taken (a request answered on it), then
/// left in the middle of another request.
fn holding(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\nOK\n") {
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    s
}
