//! What a reload changes in the served table (endpoints added, removed,
//! rotated, a new API), what it keeps when the new files are broken, and
//! that hooks to an unchanged endpoint never fail across swaps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flux_recv::endpoint::fingerprint;
use flux_recv::options::Options;
use flux_recv::reload::{self, ReloadResult, Trigger};

use crate::common::{client, eventually_async, git_notification, FakeFluxd};
use crate::{
    config, hook, log_line, metric, push, start, start_with, status, until_logged, until_status,
    Pod, KEY_A, KEY_B, KEY_C, KEY_D, NO_RESYNC, WITHIN,
};

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
    eventually_async("a notification reaches the new fluxd", WITHIN, || async {
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
async fn under_load_an_unchanged_endpoint_never_fails_across_100_swaps() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (recv.url(&hook(KEY_A)), stop.clone());
            std::thread::spawn(move || {
                let agent = client(Some(Duration::from_secs(10)));
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
    let result = reload::reload(
        recv.service.table(),
        recv.service.metrics(),
        recv.service.log(),
    );
    assert_eq!(result, ReloadResult::Unchanged);
    // ...and through the task: resyncs and a SIGHUP request.
    reloader.request(Trigger::Hangup);
    eventually_async("three resyncs and a SIGHUP", WITHIN, || async {
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

/// A config Secret whose `fluxrecv.yaml` holds a key by mistake
/// (`--from-file=fluxrecv.yaml=github.key`): the reload says the config is
/// not one, and never repeats the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_is_a_key_is_refused_without_logging_the_key() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    let key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    pod.set_config(key.as_bytes());
    until_logged(&recv, &["WARN", "reload failed"]).await;
    let line = log_line(&recv, &["ERRO", "not a valid flux-recv config"]).expect("an error line");
    assert!(
        line.contains("is a key file mounted as the config?"),
        "{line}"
    );
    let text = recv.logs.text();
    assert!(!text.contains(key), "the key in the log:\n{text}");
    assert_eq!(status(&recv, KEY_A).await, 200);
}

/// A broken config, and an unrelated file rewritten 20 times in a watched
/// directory: the failure is logged in full once, not on every event, and
/// its end is said in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_failure_is_logged_once_not_on_every_event() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.key"), KEY_A).unwrap();
    let path = dir.path().join("fluxrecv.yaml");
    std::fs::write(&path, config(&fluxd.api(), &["a.key"])).unwrap();
    // No grace: the missing key is a failure at once.
    let (recv, _reloader) = start_with(&path, failing_at_once()).await;
    let broken = config(&fluxd.api(), &["a.key", "b.key"]);
    std::fs::write(&path, &broken).unwrap();
    until_logged(&recv, &["reload failed"]).await;
    // The same broken config written again and again: an event each time.
    for _ in 0..20 {
        std::fs::write(&path, &broken).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_logged(&recv, &["DEBG", "reload failed as before"]).await;
    let text = recv.logs.text();
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    // (A reload that read the config half written may fail another way.)
    let (failed, errors) = (count("WARN reload failed"), count("cannot read key file"));
    assert!(
        failed <= 2 && errors == 1,
        "{failed} warnings and {errors} errors:\n{text}"
    );
    assert_eq!(status(&recv, KEY_A).await, 200);

    std::fs::write(dir.path().join("b.key"), KEY_B).unwrap();
    until_status(&recv, KEY_B, 200, "the fixed config is taken up").await;
    until_logged(&recv, &["INFO", "the config loads again"]).await;
    let text = recv.logs.text();
    assert_eq!(text.matches("the config loads again").count(), 1, "{text}");
}

/// A broken config that names a key in a directory not watched yet: the
/// reload watches it and reads once more, finding the same failure, which
/// is logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_naming_a_new_directory_is_logged_once() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    std::fs::create_dir(pod.root.path().join("other")).unwrap();
    let (recv, _reloader) = start_with(&pod.config_path(), failing_at_once()).await;
    let a = pod.key_a();
    pod.set_config(&config(&fluxd.api(), &[&a, "../other/c.key"]));
    until_logged(&recv, &["reload failed"]).await;
    until_logged(&recv, &["DEBG", "reload failed as before"]).await;
    let text = recv.logs.text();
    let errors = text
        .lines()
        .filter(|l| l.contains("cannot read key file"))
        .count();
    assert_eq!(errors, 1, "{text}");
}

/// A Nexus endpoint without `registryHost` loads, as in the Go original,
/// but the server says at load and at reload what it will relay and how
/// to fix it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nexus_endpoint_without_registry_host_is_warned_about_at_load_and_reload() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.key"), KEY_A).unwrap();
    std::fs::write(dir.path().join("b.key"), KEY_B).unwrap();
    let path = dir.path().join("fluxrecv.yaml");
    let nexus = "- source: Nexus\n  keyPath: b.key\n";
    let with_nexus = format!(
        "{}{nexus}",
        String::from_utf8(config(&fluxd.api(), &["a.key"])).unwrap()
    );
    let warning = "is not set, so every push is relayed as a Docker Hub image";

    // At load: what the service logs when it starts, before it listens.
    std::fs::write(&path, &with_nexus).unwrap();
    let logs = flux_recv::logging::Captured::default();
    let log = logs.logger(slog::Level::Info);
    let table = flux_recv::service::load_table(&path, None, &log).expect("it loads");
    assert_eq!(table.endpoints().len(), 2);
    drop(log);
    let text = logs.text();
    let line = text.lines().find(|l| l.contains(warning)).expect(&text);
    assert!(
        line.contains(" WARN ") && line.contains("field: endpoints[1].registryHost"),
        "{line}"
    );

    // At reload: the table that brings the endpoint brings the warning.
    std::fs::write(&path, config(&fluxd.api(), &["a.key"])).unwrap();
    let (recv, _reloader) = start(&path, NO_RESYNC).await;
    assert!(log_line(&recv, &[warning]).is_none());
    std::fs::write(&path, &with_nexus).unwrap();
    until_logged(
        &recv,
        &["WARN", warning, "field: endpoints[1].registryHost"],
    )
    .await;
}

/// The documented two-Secret update: the config Secret first, naming a key
/// the keys Secret brings a couple of seconds later. The wait is said at
/// info; nothing is an error, no reload counts as failed (the documented
/// alert watches those), and the endpoint serves once the key is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_comes_after_its_config_is_waited_for() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    let from = recv.logs.text().len();

    let a = pod.key_a();
    let c = "../fluxrecv-keys/c.key";
    pod.set_config(&config(&fluxd.api(), &[&a, "../fluxrecv-keys/b.key", c]));
    until_logged(
        &recv,
        &[
            "INFO waiting for a file the config names",
            "c.key",
            "field: endpoints[2].keyPath",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pod.keys
        .update(&[("a.key", KEY_A), ("b.key", KEY_B), ("c.key", KEY_C)]);
    until_status(&recv, KEY_C, 200, "the key that came second").await;

    let text = recv.logs.text();
    for line in text[from..].lines() {
        assert!(
            !line.contains(" ERRO ") && !line.contains("reload failed"),
            "{line}"
        );
    }
    assert_eq!(
        metric(&recv, r#"fluxrecv_reloads_total{result="failed"}"#),
        0.0
    );
    assert!(metric(&recv, r#"fluxrecv_reloads_total{result="waiting"}"#) >= 1.0);
    assert_eq!(metric(&recv, "fluxrecv_reload_failing"), 0.0);
}

/// A key that never comes: once the grace is over (no file event needed),
/// the failure is an error like any other and counts; its arrival ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_come_within_the_grace_is_a_failure() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let options = Options {
        resync_interval: NO_RESYNC,
        reload_grace: Duration::from_millis(700),
        ..Options::default()
    };
    let (recv, _reloader) = start_with(&pod.config_path(), options).await;
    let a = pod.key_a();
    pod.set_config(&config(&fluxd.api(), &[&a, "../fluxrecv-keys/d.key"]));
    until_logged(&recv, &["waiting for a file the config names", "d.key"]).await;
    until_logged(&recv, &["ERRO", "cannot read key file", "trigger: grace"]).await;
    until_logged(&recv, &["WARN reload failed", "trigger: grace"]).await;
    assert_eq!(
        metric(&recv, r#"fluxrecv_reloads_total{result="failed"}"#),
        1.0
    );
    assert_eq!(metric(&recv, "fluxrecv_reload_failing"), 1.0);

    pod.keys.update(&[("a.key", KEY_A), ("d.key", KEY_D)]);
    until_status(&recv, KEY_D, 200, "the late key").await;
    until_logged(&recv, &["the config loads again"]).await;
    assert_eq!(metric(&recv, "fluxrecv_reload_failing"), 0.0);
}

/// A key the served table reads that disappears is not "not there yet":
/// it is an error at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_use_that_disappears_is_an_error_at_once() {
    let fluxd = FakeFluxd::start().await;
    let mut pod = Pod::new(&fluxd.api());
    let (recv, _reloader) = start(&pod.config_path(), NO_RESYNC).await;
    pod.keys.update(&[("a.key", KEY_A)]);
    until_logged(&recv, &["ERRO", "cannot read key file", "b.key"]).await;
    assert!(log_line(&recv, &["waiting for a file"]).is_none());
    assert_eq!(metric(&recv, "fluxrecv_reload_failing"), 1.0);
}

/// Reload options under which a missing key fails a reload at once.
fn failing_at_once() -> Options {
    Options {
        resync_interval: NO_RESYNC,
        reload_grace: Duration::ZERO,
        ..Options::default()
    }
}
