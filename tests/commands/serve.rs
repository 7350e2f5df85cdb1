//! The server as a process: the Go original's invocation still serves, and
//! under an open-file limit too low for `--max-connections` it serves fewer
//! connections and says so.

use std::process::{Command, Stdio};
use std::time::Duration;

use flux_recv::fd_limit::{self, Limits};
use flux_recv::options::Options;

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

    let mut health = client(Some(Duration::from_secs(10)))
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
