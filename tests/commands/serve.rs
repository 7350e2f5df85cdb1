//! The server as a process: the Go original's invocation still serves.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::testdata;
use crate::{flux_recv, path_str, run, stderr, stdout};

/// Kills the child server when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_go_originals_invocation_still_serves() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let demo = testdata().join("demo").join("fluxrecv.yaml");
    let _server = Child(
        flux_recv(&[
            "--config",
            path_str(&demo),
            "--listen",
            &format!(":{port}"),
            "--dry-run",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let started = Instant::now();
    loop {
        if let Ok(r) = agent.get(&format!("{base}/health")).call() {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "flux-recv did not come up on :{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
