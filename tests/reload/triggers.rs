//! What starts a reload: file events in the directories the config's
//! files really live in, editors' ways of saving, the periodic resync when
//! no event came, and SIGHUP (to the task and to the binary).

use std::time::Duration;

use flux_recv::reload::Trigger;

use crate::common::kubelet::SecretVolume;
use crate::common::process::Running;
use crate::common::{get, post, write_config, FakeFluxd};
use crate::{
    config, hook, log_line, push, start, status, until_logged, until_status, Pod, KEY_A, KEY_B,
    KEY_C, KEY_D, NO_RESYNC,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follows_the_directories_the_config_names() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    // A third Secret, mounted but not yet named by the config.
    let mut more = SecretVolume::mount(&pod.root.path().join("more-keys"), &[("README", b"x")]);
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    let d = more.path("d.key");

    // The config Secret arrives before the key Secret: the build waits...
    pod.set_config(&config(&fluxd.api(), &[&pod.key_a(), d.to_str().unwrap()]));
    until_logged(
        &recv,
        &[
            "INFO",
            "waiting for a file the config names",
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

/// The binary: `kill -HUP` makes it re-read at once.
#[test]
fn the_binary_reloads_on_sighup() {
    let pod = Pod::new("http://127.0.0.1:9/api/flux");
    let mut running = Running::serving(&pod.config_path());
    let addr = running.address();
    // The SIGHUP handler is in place before the task says it watches.
    running.wait_for("watching for changes");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = |key: &[u8]| {
        let (headers, body) = push(key);
        rt.block_on(post(format!("http://{addr}{}", hook(key)), headers, body))
            .status
    };
    assert_eq!(status(KEY_B), 200);
    std::fs::write(pod.keys.data_dir().join("b.key"), KEY_D).unwrap();
    running.signal("HUP");
    let line = running.wait_for("endpoint added");
    assert!(line.contains("trigger: sighup"), "{line}");
    assert!(line.contains(&hook(KEY_D)), "{line}");
    assert_eq!(status(KEY_D), 200);
    assert_eq!(status(KEY_B), 404);
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "SIGHUP did not stop it"
    );
}

/// A SIGHUP while the binary is still starting (a large table read, its
/// endpoints logged) does not end it: the handler is installed first, and
/// the signal becomes one reload once it serves.
///
/// The signal must land in that window, after the handler is in place (it
/// is by the first line logged) and before the binary listens. So the
/// binary is stopped (SIGSTOP) when its first line is read, and given the
/// signal only if it does not listen yet; after a start too quick to catch,
/// it is tried again.
#[test]
fn a_sighup_during_start_up_does_not_end_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let mut endpoints = String::new();
    for i in 0..2000 {
        let key = format!("0123456789abcdef-{i}");
        std::fs::write(dir.path().join(format!("{i}.key")), key).unwrap();
        endpoints.push_str(&format!("- source: GitHub\n  keyPath: {i}.key\n"));
    }
    let config = write_config(dir.path(), "http://127.0.0.1:9/api/flux", &endpoints);
    let mut attempts = 0;
    let mut running = loop {
        attempts += 1;
        assert!(
            attempts <= 10,
            "the binary listened before it could be stopped, 10 times"
        );
        let mut running = Running::serving(&config);
        // The first line: the table is read, and still being logged.
        running.wait_for("");
        running.signal("STOP");
        let pid = running.child.id();
        wait_until_stopped(pid);
        if listens(pid) {
            continue;
        }
        running.signal("HUP");
        running.signal("CONT");
        break running;
    };
    let addr = running.address();
    if let Some(exit) = running.exited(Duration::from_millis(500)) {
        panic!("a SIGHUP at start-up ended the process: {exit}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = b"0123456789abcdef-1999";
    let (headers, body) = push(key);
    let status = rt
        .block_on(post(format!("http://{addr}{}", hook(key)), headers, body))
        .status;
    assert_eq!(status, 200);
    // The signal became one reload besides the one every start makes
    // (nothing changed; no file event, and the periodic re-read is an hour
    // away).
    let unchanged = r#"fluxrecv_reloads_total{result="unchanged"} "#;
    let reloads = |text: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(unchanged).map(str::to_string))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = rt.block_on(get(format!("http://{addr}/metrics"))).body;
        match reloads(&text).as_deref() {
            Some("2") => break,
            Some("0" | "1") | None => {
                assert!(std::time::Instant::now() < deadline, "no reload: {text}")
            }
            Some(n) => panic!("{n} reloads for a start and one SIGHUP"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until process `pid` is stopped (state `T` in /proc/PID/stat).
fn wait_until_stopped(pid: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("T") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "not stopped: {stat}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether process `pid` has a listening TCP socket: one of its
/// descriptors is a socket that /proc/net/tcp{,6} lists in state 0A
/// (LISTEN).
fn listens(pid: u32) -> bool {
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    ["tcp", "tcp6"].iter().any(|table| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 9 && fields[3] == "0A" && sockets.iter().any(|s| s == fields[9])
        })
    })
}

/// A config that names a key in a subdirectory a mounted Secret does not
/// have yet: the Secret's mount point is watched in its place, so the
/// update that brings it is taken up at once, not at the resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_directory_that_appears_later_is_taken_up_without_the_resync() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let mut more = SecretVolume::mount(&pod.root.path().join("more"), &[("README", b"x")]);
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    let a = pod.key_a();
    pod.set_config(&config(&fluxd.api(), &[&a, "../more/github/c.key"]));
    until_logged(&recv, &["cannot watch directory", "watching the nearest"]).await;
    more.update(&[("README", b"x"), ("github/c.key", KEY_C)]);
    until_status(&recv, KEY_C, 200, "the key in the new subdirectory").await;
}

/// The key directory removed and, a moment later, made again with a new
/// key (a deploy tool replacing it): its parent is watched while it is
/// gone, and the directory itself once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_directory_that_vanishes_and_reappears_is_watched_again() {
    let fluxd = FakeFluxd::start().await;
    let root = tempfile::tempdir().unwrap();
    let (cfg, keys) = (root.path().join("cfg"), root.path().join("keys"));
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("a.key"), KEY_A).unwrap();
    let path = cfg.join("fluxrecv.yaml");
    std::fs::write(&path, config(&fluxd.api(), &["../keys/a.key"])).unwrap();
    let (recv, _reloader) = start(&path, NO_RESYNC).await;
    std::fs::remove_dir_all(&keys).unwrap();
    until_logged(&recv, &["reload failed"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("a.key"), KEY_B).unwrap();
    until_status(&recv, KEY_B, 200, "the key in the directory that came back").await;
    // Watched itself again: a later change in it is an event too.
    std::fs::write(keys.join("a.key"), KEY_C).unwrap();
    until_status(&recv, KEY_C, 200, "a new key in the directory").await;
}

/// A debug log written into the config's directory (an operator's
/// `--log-file` there, a sidecar's output) is no reason to reload: only
/// the files the table reads and the kubelet's `..data` swap are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_beside_the_config_reloads_nothing() {
    use std::io::Write;
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    let from = recv.logs.text().len();
    let path = pod.config.dir().join("debug.log");
    let mut log = std::fs::File::create(&path).unwrap();
    for i in 0..200 {
        writeln!(log, "a line of a busy log, {i}").unwrap();
        log.sync_data().unwrap();
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    // Longer than the debounce's longest wait (250 ms): a burst the log
    // started would be logged by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let text = recv.logs.text();
    assert!(!text[from..].contains("files changed"), "{}", &text[from..]);

    // The Secret's update is still one.
    let a = pod.key_a();
    pod.set_config(&config(&fluxd.api(), &[&a]));
    until_status(&recv, KEY_B, 404, "the config update").await;
    assert_eq!(status(&recv, KEY_A).await, 200);
}
