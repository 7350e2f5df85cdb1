//! Hot reload end to end: flux-recv on 127.0.0.1:0 with its reload task,
//! config and keys in Kubernetes-style Secret volumes (written exactly as the
//! kubelet writes them) or in plain files, changed while it serves.
//!
//! Tests wait for a reload by polling the server (up to 10 s), never by
//! sleeping a fixed time.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kubelet::SecretVolume;
use common::*;
use flux_recv::endpoint::fingerprint;
use flux_recv::options::Options;
use flux_recv::reload::{self, ReloadResult, Reloader, Trigger};
use flux_recv::source::verify::{sign, Algorithm};

const KEY_A: &[u8] = b"0123456789abcdef-key-a-0123456789";
const KEY_B: &[u8] = b"0123456789abcdef-key-b-0123456789";
const KEY_C: &[u8] = b"0123456789abcdef-key-c-0123456789";
const KEY_D: &[u8] = b"0123456789abcdef-key-d-0123456789";

/// Long enough that only file events (or an explicit request) can explain
/// a reload within a test.
const NO_RESYNC: Duration = Duration::from_secs(3600);

fn hook(key: &[u8]) -> String {
    format!("/hook/{}", fingerprint(key, None))
}

/// A GitHub push signed with `key`.
fn push(key: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let body = github_body("org/app", "main");
    let headers = vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-GitHub-Event".into(), "push".into()),
        (
            "X-Hub-Signature-256".into(),
            sign(Algorithm::Sha256, key, &body),
        ),
    ];
    (headers, body)
}

/// The status a push signed with `key` gets from `key`'s hook URL.
async fn status(recv: &Recv, key: &[u8]) -> u16 {
    let (headers, body) = push(key);
    post(recv.url(&hook(key)), headers, body).await.status
}

/// Poll `check` every 10 ms until it holds; fail after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn until_status(recv: &Recv, key: &[u8], want: u16, what: &str) {
    eventually(what, || async { status(recv, key).await == want }).await;
}

async fn until_logged(recv: &Recv, needles: &[&str]) {
    eventually(&format!("a log line with {needles:?}"), || async {
        log_line(recv, needles).is_some()
    })
    .await;
}

/// The first log line containing every needle.
fn log_line(recv: &Recv, needles: &[&str]) -> Option<String> {
    recv.logs
        .text()
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
}

/// `fluxRecvVersion: 1` with `api` and GitHub endpoints keyed by these paths.
fn config(api: &str, key_paths: &[&str]) -> Vec<u8> {
    let mut text = format!("fluxRecvVersion: 1\napi: {api}\nendpoints:\n");
    for path in key_paths {
        text.push_str(&format!("- source: GitHub\n  keyPath: {path}\n"));
    }
    text.into_bytes()
}

/// Serve `config` and start its reload task; returns once the task watches.
async fn start(config: &Path, resync_interval: Duration) -> (Recv, Reloader) {
    let recv = Recv::start(config, Options::default()).await;
    let reloader = reload::spawn(
        recv.state.table().clone(),
        recv.state.metrics.clone(),
        reload::Options {
            resync_interval,
            ..reload::Options::default()
        },
        recv.state.log.clone(),
    );
    until_logged(&recv, &["watching for changes"]).await;
    (recv, reloader)
}

/// The layout the README recommends: the config in one Secret, the keys in
/// another, named once by absolute path and once by `../` relative path.
struct Pod {
    root: tempfile::TempDir,
    config: SecretVolume,
    keys: SecretVolume,
}

impl Pod {
    fn new(api: &str) -> Pod {
        let root = tempfile::tempdir().unwrap();
        let keys = SecretVolume::mount(
            &root.path().join("fluxrecv-keys"),
            &[("a.key", KEY_A), ("b.key", KEY_B)],
        );
        let a = keys.path("a.key");
        let config = SecretVolume::mount(
            &root.path().join("fluxrecv"),
            &[(
                "fluxrecv.yaml",
                &config(api, &[a.to_str().unwrap(), "../fluxrecv-keys/b.key"]),
            )],
        );
        Pod { root, config, keys }
    }

    fn config_path(&self) -> PathBuf {
        self.config.path("fluxrecv.yaml")
    }

    fn key_a(&self) -> String {
        self.keys.path("a.key").to_str().unwrap().to_string()
    }

    fn set_config(&mut self, text: &[u8]) {
        self.config.update(&[("fluxrecv.yaml", text)]);
    }
}

#[test]
fn the_kubelet_helper_lays_out_a_secret_volume_as_the_kubelet_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = SecretVolume::mount(dir.path(), &[("a", b"1"), ("b", b"2")]);
    let data = std::fs::read_link(dir.path().join("..data")).unwrap();
    assert!(
        data.to_str().unwrap().starts_with(".."),
        "{data:?} is relative"
    );
    assert_eq!(
        std::fs::read_link(dir.path().join("a")).unwrap(),
        Path::new("..data/a")
    );
    let first = v.data_dir();

    v.update(&[("a", b"3"), ("c", b"4")]);
    // The user-visible link is untouched; only ..data moved.
    assert_eq!(
        std::fs::read_link(dir.path().join("a")).unwrap(),
        Path::new("..data/a")
    );
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"3");
    assert_eq!(std::fs::read(dir.path().join("c")).unwrap(), b"4");
    assert!(std::fs::symlink_metadata(dir.path().join("b")).is_err());
    assert!(!first.exists(), "the previous generation is deleted");
    assert!(!dir.path().join("..data_tmp").exists());
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("..2"))
        .collect();
    names.sort();
    assert_eq!(names, ["..data", "a", "c"]);
}

#[test]
fn resync_interval_defaults_to_a_minute() {
    use clap::Parser;
    let cli = flux_recv::cli::Cli::try_parse_from(["flux-recv"]).unwrap();
    assert_eq!(cli.serve.resync_interval.0, Duration::from_secs(60));
    let cli =
        flux_recv::cli::Cli::try_parse_from(["flux-recv", "--resync-interval", "500ms"]).unwrap();
    assert_eq!(cli.serve.resync_interval.0, Duration::from_millis(500));
    assert!(flux_recv::cli::Cli::try_parse_from(["flux-recv", "--resync-interval", "0s"]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_added_to_two_volumes_is_served_and_logged() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    assert_eq!(status(&recv, KEY_A).await, 200);
    assert_eq!(status(&recv, KEY_B).await, 200);
    assert_eq!(status(&recv, KEY_C).await, 404);

    // The key Secret first, then the config Secret, as `kubectl apply -k`
    // may well deliver them.
    pod.keys
        .update(&[("a.key", KEY_A), ("b.key", KEY_B), ("c.key", KEY_C)]);
    let a = pod.key_a();
    pod.set_config(&config(
        &fluxd.api(),
        &[&a, "../fluxrecv-keys/b.key", "../fluxrecv-keys/c.key"],
    ));
    until_status(&recv, KEY_C, 200, "the new endpoint answers").await;
    assert_eq!(status(&recv, KEY_A).await, 200);
    assert_eq!(status(&recv, KEY_B).await, 200);

    // How an operator learns the new URL: one line with all of it.
    let line = log_line(&recv, &["endpoint added"]).expect("endpoint added line");
    for want in [
        "INFO".to_string(),
        "source: GitHub".to_string(),
        format!(
            "key: {}",
            pod.config.dir().join("../fluxrecv-keys/c.key").display()
        ),
        format!("fingerprint: {}", fingerprint(KEY_C, None)),
        format!("url: {}", hook(KEY_C)),
    ] {
        assert!(line.contains(&want), "{want} not in {line}");
    }
    assert!(!recv
        .logs
        .text()
        .contains(std::str::from_utf8(KEY_C).unwrap()));
    let summary = log_line(&recv, &["reloaded"]).expect("summary line");
    for want in [
        "endpoints_before: 2",
        "endpoints_after: 3",
        "added: 1",
        "removed: 0",
        "duration_ms: ",
    ] {
        assert!(summary.contains(want), "{want} not in {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoint_answers_404_and_is_logged() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;

    pod.set_config(&config(&fluxd.api(), &[&pod.key_a()]));
    until_status(&recv, KEY_B, 404, "the removed endpoint is gone").await;
    assert_eq!(status(&recv, KEY_A).await, 200);
    let line = log_line(&recv, &["endpoint removed"]).expect("endpoint removed line");
    assert!(line.contains(&format!("url: {}", hook(KEY_B))), "{line}");
    let summary = log_line(&recv, &["reloaded"]).unwrap();
    assert!(summary.contains("endpoints_after: 1"), "{summary}");
    assert!(summary.contains("removed: 1"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_moves_the_hook_url() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;

    // Only the keys Secret changes; the config names the same files.
    pod.keys.update(&[("a.key", KEY_A), ("b.key", KEY_D)]);
    until_status(&recv, KEY_D, 200, "the rotated key's URL answers").await;
    assert_eq!(status(&recv, KEY_B).await, 404, "the old URL is gone");
    assert_eq!(status(&recv, KEY_A).await, 200);
    assert!(log_line(&recv, &["endpoint removed", &hook(KEY_B)]).is_some());
    assert!(log_line(&recv, &["endpoint added", &hook(KEY_D)]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_api_sends_notifications_to_the_new_fluxd() {
    let old = FakeFluxd::start().await;
    let new = FakeFluxd::start().await;
    let mut pod = Pod::new(&old.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    assert_eq!(status(&recv, KEY_A).await, 200);
    assert_eq!(old.take().len(), 1);

    pod.set_config(&config(
        &new.api(),
        &[&pod.key_a(), "../fluxrecv-keys/b.key"],
    ));
    eventually("a notification reaches the new fluxd", || async {
        status(&recv, KEY_A).await == 200 && !new.take().is_empty()
    })
    .await;
    old.take();
    assert_eq!(status(&recv, KEY_B).await, 200);
    assert_eq!(new.take(), vec![git_notification("org/app", "main")]);
    assert!(
        old.take().is_empty(),
        "nothing goes to the old fluxd any more"
    );
    let summary = log_line(&recv, &["reloaded"]).unwrap();
    assert!(
        summary.contains(&format!("api: {}", new.api())),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_yaml_keeps_the_last_good_table_until_it_is_fixed() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;

    pod.set_config(b"fluxRecvVersion: 1\nendpoints: [\n");
    let file = format!("file: {}", pod.config_path().display());
    until_logged(&recv, &["ERRO", "not a valid flux-recv config", &file]).await;
    until_logged(
        &recv,
        &["WARN", "reload failed; still serving the previous table"],
    )
    .await;
    assert_eq!(status(&recv, KEY_A).await, 200);
    assert_eq!(status(&recv, KEY_B).await, 200);

    // The next good write is taken up.
    let a = pod.key_a();
    pod.set_config(&config(&fluxd.api(), &[&a, "../fluxrecv-keys/a.key"]));
    // (a duplicate fingerprint: still broken, and said so with the field)
    until_logged(&recv, &["ERRO", "field: endpoints[1]", "same key"]).await;
    assert_eq!(status(&recv, KEY_B).await, 200);
    pod.set_config(&config(&fluxd.api(), &[&a]));
    until_status(&recv, KEY_B, 404, "the fixed config is taken up").await;
    assert_eq!(status(&recv, KEY_A).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_file_keeps_the_last_good_table() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;

    pod.keys.update(&[("a.key", KEY_A)]);
    until_logged(
        &recv,
        &[
            "ERRO",
            "cannot read key file",
            "field: endpoints[1].keyPath",
        ],
    )
    .await;
    let line = log_line(&recv, &["cannot read key file"]).unwrap();
    assert!(line.contains("b.key"), "{line}");
    assert_eq!(
        status(&recv, KEY_B).await,
        200,
        "the old table still serves"
    );
    assert_eq!(status(&recv, KEY_A).await, 200);

    // Putting a key back is taken up.
    pod.keys.update(&[("a.key", KEY_A), ("b.key", KEY_C)]);
    until_status(&recv, KEY_C, 200, "the restored key is taken up").await;
    assert_eq!(status(&recv, KEY_B).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follows_the_directories_the_config_names() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    // A third Secret, mounted but not yet named by the config.
    let mut more = SecretVolume::mount(&pod.root.path().join("more-keys"), &[("README", b"x")]);
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    let d = more.path("d.key");

    // The config Secret arrives before the key Secret: the build fails...
    pod.set_config(&config(&fluxd.api(), &[&pod.key_a(), d.to_str().unwrap()]));
    until_logged(
        &recv,
        &[
            "ERRO",
            "cannot read key file",
            "field: endpoints[1].keyPath",
        ],
    )
    .await;
    assert_eq!(status(&recv, KEY_B).await, 200);
    // ...but the directory it names is watched from then on, so the key's
    // arrival is what fixes it (no resync within this test).
    more.update(&[("README", b"x"), ("d.key", KEY_D)]);
    until_status(&recv, KEY_D, 200, "the key in the newly named directory").await;
    assert_eq!(status(&recv, KEY_B).await, 404);

    // Rotating it is seen too.
    more.update(&[("README", b"x"), ("d.key", KEY_C)]);
    until_status(&recv, KEY_C, 200, "a rotation in the third volume").await;

    // Once no longer named, it is no longer watched.
    pod.set_config(&config(&fluxd.api(), &[&pod.key_a()]));
    until_status(&recv, KEY_C, 404, "the endpoint is removed").await;
    let canonical = std::fs::canonicalize(more.dir()).unwrap();
    until_logged(
        &recv,
        &[
            "no longer watching directory",
            &canonical.display().to_string(),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_a_subdirectory_of_a_secret_is_followed_across_updates() {
    // `items: [{key: b, path: github/b.key}]`: the kubelet links
    // `github -> ..data/github`, so the key's directory is itself inside
    // the timestamped directory and goes away with it on every update.
    let fluxd = FakeFluxd::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut keys = SecretVolume::mount(&root.path().join("keys"), &[("github/b.key", KEY_B)]);
    let config = SecretVolume::mount(
        &root.path().join("fluxrecv"),
        &[(
            "fluxrecv.yaml",
            &config(&fluxd.api(), &["../keys/github/b.key"]),
        )],
    );
    let (recv, _reloader) = start(&config.path("fluxrecv.yaml"), NO_RESYNC).await;

    for key in [KEY_C, KEY_D, KEY_A] {
        keys.update(&[("github/b.key", key)]);
        until_status(&recv, key, 200, "the rotated key in the subdirectory").await;
    }
    assert_eq!(status(&recv, KEY_B).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_saves_and_in_place_writes_of_a_plain_config_are_taken_up() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, key) in [
        ("a.key", KEY_A),
        ("b.key", KEY_B),
        ("c.key", KEY_C),
        ("d.key", KEY_D),
    ] {
        std::fs::write(dir.path().join(name), key).unwrap();
    }
    let path = dir.path().join("fluxrecv.yaml");
    std::fs::write(&path, config(&fluxd.api(), &["a.key"])).unwrap();
    let (recv, _reloader) = start(&path, NO_RESYNC).await;

    // Write a temporary file, rename it over the config (most editors, `mv`).
    let tmp = dir.path().join(".fluxrecv.yaml.tmp");
    std::fs::write(&tmp, config(&fluxd.api(), &["a.key", "b.key"])).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    until_status(&recv, KEY_B, 200, "rename over the config").await;

    // Move the original aside, write a new one, delete the backup (vim).
    let backup = dir.path().join("fluxrecv.yaml~");
    std::fs::rename(&path, &backup).unwrap();
    std::fs::write(&path, config(&fluxd.api(), &["a.key", "c.key"])).unwrap();
    std::fs::remove_file(&backup).unwrap();
    until_status(&recv, KEY_C, 200, "backup-and-write").await;
    assert_eq!(status(&recv, KEY_B).await, 404);

    // Truncate and write the same file in place.
    std::fs::write(&path, config(&fluxd.api(), &["a.key", "d.key"])).unwrap();
    until_status(&recv, KEY_D, 200, "in-place write").await;
    assert_eq!(status(&recv, KEY_C).await, 404);
    assert_eq!(status(&recv, KEY_A).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_an_unchanged_endpoint_never_fails_across_100_swaps() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (recv.url(&hook(KEY_A)), stop.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                let (headers, body) = push(KEY_A);
                let (mut ok, mut failures) = (0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let mut req = agent.post(&url);
                    for (k, v) in &headers {
                        req = req.header(k, v);
                    }
                    match req.send(&body[..]) {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (ok, failures)
            })
        })
        .collect();

    for i in 0..100 {
        let rotated = format!("0123456789abcdef-rotation-{i:04}");
        pod.keys
            .update(&[("a.key", KEY_A), ("b.key", rotated.as_bytes())]);
        // Each swap is taken up before the next, so all 100 are reloads.
        until_status(&recv, rotated.as_bytes(), 200, "the rotated endpoint").await;
    }

    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (ok, failures) = client.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        total += ok;
    }
    assert!(total >= 100, "only {total} requests made during 100 swaps");
    let reloads = recv
        .logs
        .text()
        .lines()
        .filter(|l| l.contains(" reloaded"))
        .count();
    assert!(reloads >= 100, "{reloads} reloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_resync_takes_up_a_change_no_event_announced() {
    let fluxd = FakeFluxd::start().await;
    let pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), Duration::from_millis(300)).await;

    // Written inside the timestamped directory: no event in any watched
    // directory, as when the kernel drops events.
    std::fs::write(pod.keys.data_dir().join("b.key"), KEY_D).unwrap();
    until_status(&recv, KEY_D, 200, "the resync takes it up").await;
    assert_eq!(status(&recv, KEY_B).await, 404);
    let summary = log_line(&recv, &["reloaded"]).unwrap();
    assert!(summary.contains("trigger: resync"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_at_once_through_the_same_path() {
    let fluxd = FakeFluxd::start().await;
    let pod = Pod::new(&fluxd.api());
    let (recv, reloader) = start(&pod.config_path(), NO_RESYNC).await;

    std::fs::write(pod.keys.data_dir().join("b.key"), KEY_D).unwrap();
    // What the SIGHUP handler does.
    reloader.request(Trigger::Hangup);
    until_status(&recv, KEY_D, 200, "the requested reload").await;
    assert_eq!(status(&recv, KEY_B).await, 404);
    let summary = log_line(&recv, &["reloaded"]).unwrap();
    assert!(summary.contains("trigger: sighup"), "{summary}");
    assert!(log_line(&recv, &["endpoint added", "trigger: sighup", &hook(KEY_D)]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_nothing_logs_nothing_above_debug() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A short key: a warning when the table is built, which an unchanged
    // re-read must not repeat.
    std::fs::write(dir.path().join("short.key"), b"short").unwrap();
    let path = dir.path().join("fluxrecv.yaml");
    std::fs::write(&path, config(&fluxd.api(), &["short.key"])).unwrap();
    let (recv, reloader) = start(&path, Duration::from_millis(50)).await;
    let from = recv.logs.text().len();

    // The function every trigger calls, directly...
    let result = reload::reload(recv.state.table(), &recv.state.metrics, &recv.state.log);
    assert_eq!(result, ReloadResult::Unchanged);
    // ...and through the task: resyncs and a SIGHUP request.
    reloader.request(Trigger::Hangup);
    eventually("three resyncs and a SIGHUP", || async {
        let text = recv.logs.text();
        text[from..].matches("trigger: resync").count() >= 3
            && text[from..].contains("trigger: sighup")
    })
    .await;
    let text = recv.logs.text();
    let lines: Vec<&str> = text[from..].lines().collect();
    assert!(lines
        .iter()
        .any(|l| l.contains("DEBG reload: nothing changed")));
    for line in lines {
        assert!(line.contains(" DEBG "), "above debug: {line}");
    }
}

/// The binary: `kill -HUP` makes it re-read at once.
#[test]
fn the_binary_reloads_on_sighup() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let pod = Pod::new("http://127.0.0.1:9/api/flux");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flux-recv"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--dry-run",
            "--resync-interval",
            "60m",
        ])
        .arg("--config")
        .arg(pod.config_path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| -> String {
        loop {
            match lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no {needle:?} in the logs: {e}"),
            }
        }
    };
    let listening = wait_for("listening");
    let addr = listening
        .split("address: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("address in the listening line")
        .to_string();
    // The SIGHUP handler is in place before the task says it watches.
    wait_for("watching for changes");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = |key: &[u8]| {
        let (headers, body) = push(key);
        rt.block_on(post(format!("http://{addr}{}", hook(key)), headers, body))
            .status
    };
    assert_eq!(status(KEY_B), 200);
    std::fs::write(pod.keys.data_dir().join("b.key"), KEY_D).unwrap();
    let killed = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let line = wait_for("endpoint added");
    assert!(line.contains("trigger: sighup"), "{line}");
    assert!(line.contains(&hook(KEY_D)), "{line}");
    assert_eq!(status(KEY_D), 200);
    assert_eq!(status(KEY_B), 404);
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP did not stop it"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
