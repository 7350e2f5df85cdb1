//! The server as a process: the Go original's invocation still serves, and
//! under an open-file limit too low for `--max-connections` it serves fewer
//! connections and says so.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flux_recv::fd_limit::{self, Limits};
use flux_recv::options::Options;

use crate::common::process::Running;
use crate::common::testdata;
use crate::{flux_recv, path_str, run, scrubbed, stderr, stdout};

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

#[test]
fn a_low_open_file_limit_lowers_the_connection_cap_says_so_once_and_serves() {
    // `ulimit -n` in sh sets the soft and the hard limit, so flux-recv
    // cannot raise it: 1024 connections (the default) do not fit in 300.
    const LIMIT: u64 = 300;
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
    ])
    .stdout(Stdio::null());
    let mut server = Running::start(scrubbed(sh));

    let addr = server.address();
    let lowered = server.wait_for("does not fit in the open-file limit");
    let defaults = Options::default();
    assert_eq!(defaults.max_connections, 1024);
    let served =
        fd_limit::effective_connections(1024, LIMIT, fd_limit::margin(defaults.max_relays));
    assert!(served < 1024, "{served}");
    let limits = Limits {
        soft: LIMIT,
        hard: LIMIT,
    };
    let expected = fd_limit::lowered_message(1024, served, limits).unwrap();
    assert!(
        lowered.contains(" WARN --max-connections 1024 does not fit"),
        "{lowered}"
    );
    assert!(lowered.contains("(300 soft, 300 hard)"), "{lowered}");
    assert!(lowered.contains(&expected), "{lowered}");

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut health = agent
        .get(&format!("http://{addr}/health"))
        .call()
        .expect("GET /health");
    assert_eq!(health.status(), 200);
    assert_eq!(health.body_mut().read_to_string().unwrap(), "OK\n");

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
    assert!(all.last().unwrap().contains("stopped"), "{all:#?}");
}
