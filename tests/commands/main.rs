//! The binary's commands, run as an operator runs them: `keygen`,
//! `endpoints`, `check`, `send`, and the Go original's serve invocation.
//!
//! `send` is checked against a real flux-recv in front of a stand-in fluxd:
//! a notification arriving for each of the nine sources proves the samples
//! are signed exactly as the server verifies.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{testdata, write_config, FakeFluxd, Recv};
use flux_recv::options::Options;
use serde_json::{json, Value};

/// The flux-recv binary, with no FLUXRECV_* variables from the test's
/// environment.
fn flux_recv(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flux-recv"));
    cmd.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("FLUXRECV_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn run(args: &[&str]) -> Output {
    flux_recv(args).output().expect("run flux-recv")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------- keygen

#[test]
fn keygen_writes_a_private_key_without_a_newline_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("github.key");
    let o = run(&["keygen", "--out", path_str(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "the key goes to the file only");

    let first = std::fs::read(&key).unwrap();
    assert_eq!(first.len(), 64, "32 random bytes, hex");
    assert!(first.iter().all(u8::is_ascii_hexdigit), "{first:?}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let o = run(&["keygen", "--out", path_str(&key)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&key).unwrap(), first, "left as it was");

    let o = run(&["keygen", "--out", path_str(&key), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let second = std::fs::read(&key).unwrap();
    assert_eq!(second.len(), 64);
    assert_ne!(second, first);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn keygen_to_a_pipe_prints_only_the_key() {
    let a = run(&["keygen"]);
    let b = run(&["keygen"]);
    assert!(a.status.success());
    assert_eq!(a.stdout.len(), 64, "{:?}", stdout(&a));
    assert!(a.stdout.iter().all(u8::is_ascii_hexdigit));
    assert_ne!(a.stdout, b.stdout);
    // Not a terminal: no advice either.
    assert!(a.stderr.is_empty(), "{}", stderr(&a));
}

// ---------------------------------------------------------------- endpoints

/// A config with one endpoint per fingerprint of the Go original's test
/// cases, keys referenced in testdata/. Returns the config and the
/// (fingerprint → source) the cases expect.
fn conformance_config(dir: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let cases: Value =
        serde_json::from_slice(&std::fs::read(testdata().join("cases.json")).unwrap()).unwrap();
    let mut expected = BTreeMap::new();
    let mut yaml = String::new();
    for case in cases["cases"].as_array().unwrap() {
        let fp = case["fingerprint"].as_str().unwrap().to_string();
        let ep = &case["endpoint"];
        let source = ep["source"].as_str().unwrap().to_string();
        if expected.insert(fp, source.clone()).is_some() {
            continue;
        }
        let key = testdata().join(ep["keyPath"].as_str().unwrap());
        yaml.push_str(&format!(
            "- source: {source}\n  keyPath: {}\n",
            key.display()
        ));
        if let Some(host) = ep["registryHost"].as_str() {
            yaml.push_str(&format!("  registryHost: {host}\n"));
        }
    }
    let config = write_config(dir, "http://localhost:3030/api/flux", &yaml);
    (config, expected)
}

#[test]
fn endpoints_as_json_match_the_conformance_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let (config, expected) = conformance_config(dir.path());
    let o = run(&[
        "endpoints",
        "--config",
        path_str(&config),
        "--output",
        "json",
        "--base-url",
        "https://hooks.example.com/",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("stdout is only JSON");
    assert_eq!(rows.len(), expected.len());
    assert_eq!(rows.len(), 10, "nine sources, Harbor twice");
    let mut got = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let fp = row["fingerprint"].as_str().unwrap();
        assert_eq!(row["position"], json!(i + 1));
        assert_eq!(row["path"], json!(format!("/hook/{fp}")));
        assert_eq!(
            row["url"],
            json!(format!("https://hooks.example.com/hook/{fp}"))
        );
        assert!(row["keyPath"]
            .as_str()
            .unwrap()
            .starts_with(path_str(&testdata())));
        got.insert(fp.to_string(), row["source"].as_str().unwrap().to_string());
    }
    assert_eq!(got, expected);
    let nexus = rows.iter().find(|r| r["source"] == "Nexus").unwrap();
    assert_eq!(nexus["registryHost"], "container.example.com");
    assert_eq!(
        nexus["fingerprint"],
        "37aea278ec43e68f76dba33f66f39761190f8f3d6e86306c864868dc6063283a"
    );
    let docker = rows.iter().find(|r| r["source"] == "DockerHub").unwrap();
    assert_eq!(docker["verifiesSender"], false);
    // Warnings (the fixtures' keys end in newlines, or are short) go to
    // stderr, keeping stdout parseable.
    assert!(stderr(&o).contains("warning: "), "{}", stderr(&o));
}

#[test]
fn endpoints_as_text_one_row_each() {
    let dir = tempfile::tempdir().unwrap();
    let (config, expected) = conformance_config(dir.path());
    let o = run(&["endpoints", "--config", path_str(&config)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + expected.len(), "{text}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["#", "SOURCE", "KEY", "FINGERPRINT", "URL", "API", "FILTER"]
    );
    for (fp, source) in &expected {
        let line = lines
            .iter()
            .find(|l| l.contains(fp.as_str()))
            .unwrap_or_else(|| panic!("{fp} not listed:\n{text}"));
        assert!(line.contains(source.as_str()), "{line}");
        // Without --base-url, the path alone; then where changes go.
        assert!(line.contains(&format!("  /hook/{fp}  ")), "{line}");
        assert!(
            line.ends_with("  http://localhost:3030/api/flux  everything"),
            "{line}"
        );
    }
}

#[test]
fn endpoints_refuses_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: GitHub\n  keyPath: missing.key\n",
    );
    let o = run(&["endpoints", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert!(
        err.contains("error: ") && err.contains("endpoints[0].keyPath"),
        "{err}"
    );
}

// ---------------------------------------------------------------- check

#[test]
fn check_exits_1_on_errors_and_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.key"), "0123456789abcdef0123").unwrap();
    std::fs::write(dir.path().join("empty.key"), "").unwrap();
    std::fs::write(dir.path().join("newline.key"), "0123456789abcdef-nl\n").unwrap();
    let config = write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: Github\n  keyPath: good.key\n\
         - source: GitLab\n  keyPath: missing.key\n\
         - source: Harbor\n  keyPath: empty.key\n\
         - source: GitHub\n  keyPath: newline.key\n\
         - source: Quay\n  keyPath: good.key\n",
    );
    let o = run(&["check", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let config_file = path_str(&config);
    let expect = [
        format!("error: {config_file}: endpoints[0].source: unknown source \"Github\""),
        format!("error: {config_file}: endpoints[1].keyPath: cannot read key file"),
        format!(
            "error: {}: endpoints[2].keyPath: the key file is empty",
            dir.path().join("empty.key").display()
        ),
        format!(
            "warning: {}: endpoints[3].keyPath: the key ends in whitespace",
            dir.path().join("newline.key").display()
        ),
        format!("warning: {config_file}: endpoints[4].source: Quay requests carry no signature"),
    ];
    assert_eq!(lines.len(), expect.len() + 1, "{out}");
    for (line, want) in lines.iter().zip(&expect) {
        assert!(
            line.starts_with(want.as_str()),
            "{line}\n  should start with\n{want}"
        );
    }
    assert_eq!(lines[5], "5 endpoints, 3 errors, 2 warnings");
}

#[test]
fn check_exits_0_with_warnings_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.key"), "short").unwrap();
    std::fs::write(dir.path().join("hub.key"), "0123456789abcdef-hub").unwrap();
    std::fs::write(dir.path().join("good.key"), "0123456789abcdef-good").unwrap();
    let config = write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: GitHub\n  keyPath: short.key\n\
         - source: DockerHub\n  keyPath: hub.key\n\
         - source: GitLab\n  keyPath: good.key\n",
    );
    let o = run(&["check", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("endpoints[0].keyPath: the key is only 5 bytes"),
        "{out}"
    );
    assert!(
        out.contains("the unguessable URL is its only protection"),
        "{out}"
    );
    assert_eq!(
        out.lines().last(),
        Some("3 endpoints, 0 errors, 2 warnings")
    );

    // The config can come from the environment, as for serving; other
    // serve variables set for the container do not get in the way.
    let o = flux_recv(&["check"])
        .env("FLUXRECV_CONFIG", &config)
        .env("FLUXRECV_LISTEN", ":9999")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().last(),
        Some("3 endpoints, 0 errors, 2 warnings")
    );
}

#[test]
fn check_passes_the_demo_config() {
    let demo = testdata().join("demo").join("fluxrecv.yaml");
    let o = run(&["check", "--config", path_str(&demo)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(
        stdout(&o).lines().last(),
        Some("2 endpoints, 0 errors, 1 warning")
    );
}

// ---------------------------------------------------------------- send

/// One endpoint per source (Nexus with a registryHost), with good keys;
/// and what fluxd should be told for each sample push, in config order.
fn every_source(dir: &Path, api: &str) -> (PathBuf, Vec<Value>) {
    let sources = [
        "GitHub",
        "GitLab",
        "BitbucketCloud",
        "BitbucketServer",
        "DockerHub",
        "Quay",
        "Harbor",
        "Nexus",
        "GoogleContainerRegistry",
    ];
    let mut yaml = String::new();
    for source in sources {
        let key = format!("{}.key", source.to_lowercase());
        std::fs::write(dir.join(&key), format!("0123456789abcdef-{source}")).unwrap();
        yaml.push_str(&format!("- source: {source}\n  keyPath: {key}\n"));
        if source == "Nexus" {
            yaml.push_str("  registryHost: registry.example.com\n");
        }
    }
    let git = |url: &str| json!({"Kind": "git", "Source": {"URL": url, "Branch": "main"}});
    let image = |domain: &str, image: &str| json!({"Kind": "image", "Source": {"Name": {"Domain": domain, "Image": image}}});
    let expected = vec![
        git("git@github.com:example/app.git"),
        git("git@gitlab.com:example/app.git"),
        git("git@bitbucket.org:example/app.git"),
        git("ssh://git@bitbucket.example.com:7999/ex/app.git"),
        image("", "example/app"),
        image("quay.io", "example/app"),
        image("harbor.example.com", "library/app"),
        image("registry.example.com", "example/app"),
        image("gcr.io", "example-project/app"),
    ];
    (write_config(dir, api, &yaml), expected)
}

async fn send(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await
    .unwrap()
}

fn send_args(config: &Path, endpoint: &str, url: &str) -> Vec<String> {
    [
        "send",
        "--config",
        path_str(config),
        "--endpoint",
        endpoint,
        "--url",
        url,
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_a_signed_push_for_every_source() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, expected) = every_source(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let base = recv.url("");

    for (i, want) in expected.iter().enumerate() {
        let position = (i + 1).to_string();
        let o = send(send_args(&config, &position, &base)).await;
        assert!(
            o.status.success(),
            "endpoint {position}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(stdout(&o).starts_with("HTTP 200 OK\n"), "{}", stdout(&o));
        assert_eq!(fluxd.take(), vec![want.clone()], "endpoint {position}");
    }
    // Every source verified its delivery: nothing was refused.
    let logs = recv.logs.text();
    assert!(!logs.contains("outcome: unauthorized"), "{logs}");
    assert_eq!(logs.matches("outcome: relayed").count(), 9, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pings_by_fingerprint_and_full_url() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = every_source(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let table = recv.state.table().load_full();

    for position in [1, 4] {
        let endpoint = &table.endpoints()[position - 1];
        let mut args = send_args(
            &config,
            &endpoint.fingerprint[..12],
            &recv.url(&endpoint.url_path()),
        );
        args.extend(["--event".to_string(), "ping".to_string()]);
        let o = send(args).await;
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        assert_eq!(stdout(&o), "HTTP 200 OK\nok: nothing to do (ping)\n");
    }
    assert_eq!(fluxd.take(), Vec::<Value>::new());

    // An event the source has no sample of: nothing is sent.
    let mut args = send_args(&config, "2", &recv.url(""));
    args.extend(["--event".to_string(), "ping".to_string()]);
    let o = send(args).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no \"ping\" sample for GitLab; choose one of: push"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());

    // No such endpoint.
    let o = send(send_args(&config, "zz", &recv.url(""))).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("neither a position (1 to 9)"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_1_on_a_refusal() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gcr.key"), "0123456789abcdef-gcr").unwrap();
    std::fs::write(dir.path().join("github.key"), "0123456789abcdef-gh").unwrap();
    let config = write_config(
        dir.path(),
        &fluxd.api(),
        "- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: https://hooks.example.com/hook/x\n    email: push@p.iam.gserviceaccount.com\n\
         - source: GitHub\n  keyPath: github.key\n",
    );
    let options = Options {
        google_jwks_url: format!("http://{}/certs", common::dead_addr()),
        ..Options::default()
    };
    let recv = Recv::start(&config, options).await;

    // send cannot mint Google's token: it says so, and the server's 401 is
    // the reply.
    let o = send(send_args(&config, "1", &recv.url(""))).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("only Google can make one"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).starts_with("HTTP 401 Unauthorized\n"),
        "{}",
        stdout(&o)
    );

    // A hook URL that is not this endpoint's: the server's 404.
    let o = send(send_args(&config, "2", &recv.url("/hook/0000"))).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("HTTP 404"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("is not endpoint 2's hook URL"),
        "{}",
        stderr(&o)
    );

    // fluxd refusing for good (a wrong api path): the server's 502.
    fluxd.set(common::Behaviour::Status(404));
    let o = send(send_args(&config, "2", &recv.url(""))).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("HTTP 502 Bad Gateway\n"),
        "{}",
        stdout(&o)
    );

    // fluxd failing for now: queued, 202, and send says fluxd has not
    // confirmed it.
    fluxd.set(common::Behaviour::Status(503));
    let o = send(send_args(&config, "2", &recv.url(""))).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).starts_with("HTTP 202 Accepted\n"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("fluxd has not confirmed"),
        "{}",
        stderr(&o)
    );

    // Nobody listening.
    let o = send(send_args(
        &config,
        "2",
        &format!("http://{}", common::dead_addr()),
    ))
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot POST to"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- serve

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
