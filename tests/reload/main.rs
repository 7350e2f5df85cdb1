//! Hot reload end to end: flux-recv on 127.0.0.1:0 with its reload task,
//! config and keys in Kubernetes-style Secret volumes (written exactly as the
//! kubelet writes them) or in plain files, changed while it serves.
//!
//! Tests wait for a reload by polling the server (up to 10 s), never by
//! sleeping a fixed time.

//! - `tables`: what a reload changes in the served table, what it keeps
//!   when the new files are broken, and that serving never notices a swap;
//! - `triggers`: what starts a reload: file events where the config's
//!   files really are, editors' ways of saving, the periodic resync, and
//!   SIGHUP;
//! - `hostile`: keys replaced by files that are not what they claim (a
//!   FIFO nothing writes, a symlink to `/dev/zero`).

#[path = "../common/mod.rs"]
mod common;
mod hostile;
mod tables;
mod tls;
mod triggers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::kubelet::SecretVolume;
use common::*;
use flux_recv::options::Options;
use flux_recv::reload::Reloader;

const KEY_A: &[u8] = b"0123456789abcdef-key-a-0123456789";
const KEY_B: &[u8] = b"0123456789abcdef-key-b-0123456789";
const KEY_C: &[u8] = b"0123456789abcdef-key-c-0123456789";
const KEY_D: &[u8] = b"0123456789abcdef-key-d-0123456789";

/// Long enough that only file events (or an explicit request) can explain
/// a reload within a test.
const NO_RESYNC: Duration = Duration::from_secs(3600);

use common::{hook_path as hook, signed_github_push as push};

/// The status a push signed with `key` gets from `key`'s hook URL.
async fn status(recv: &Recv, key: &[u8]) -> u16 {
    let (headers, body) = push(key);
    post(recv.url(&hook(key)), headers, body).await.status
}

/// How long a reload may take to show.
const WITHIN: Duration = Duration::from_secs(10);

async fn until_status(recv: &Recv, key: &[u8], want: u16, what: &str) {
    eventually_async(what, WITHIN, || async { status(recv, key).await == want }).await;
}

async fn until_logged(recv: &Recv, needles: &[&str]) {
    eventually_async(&format!("a log line with {needles:?}"), WITHIN, || async {
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

/// Serve `config` with its reload task re-reading every
/// `resync_interval`; returns once the task watches, with a handle on it.
async fn start(config: &Path, resync_interval: Duration) -> (Recv, Reloader) {
    let options = Options {
        resync_interval,
        ..Options::default()
    };
    start_with(config, options).await
}

/// [`start`] with `options`.
async fn start_with(config: &Path, options: Options) -> (Recv, Reloader) {
    let recv = Recv::start(config, options).await;
    until_logged(&recv, &["watching for changes"]).await;
    let reloader = recv.service.reloader().clone();
    (recv, reloader)
}

/// The value of the metric sample `series` (`name{labels}`), as scraped.
fn metric(recv: &Recv, series: &str) -> f64 {
    let text = recv
        .service
        .metrics()
        .encode(flux_recv::metrics::Format::OpenMetrics);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
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
