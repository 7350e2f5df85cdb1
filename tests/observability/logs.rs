//! Log lines a remote client can cause: values escaped and bounded, every
//! source of lines within a budget, and lines that say what happened; and
//! the start-up lines operators tail for, never dropped.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use flux_recv::options::Options;

const DOCKERHUB_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";

/// An unsigned Docker Hub endpoint (anyone with the URL can post) and a
/// GitHub one; returns the config and the Docker Hub hook path.
fn dockerhub_config(dir: &Path, api: &str) -> (PathBuf, String) {
    let _ = github_config(dir, api);
    std::fs::write(dir.join("dockerhub.key"), DOCKERHUB_KEY).unwrap();
    let config = write_config(
        dir,
        api,
        "- source: GitHub\n  keyPath: github.key\n- source: DockerHub\n  keyPath: dockerhub.key\n",
    );
    (config, hook_path(DOCKERHUB_KEY))
}

fn dockerhub_push(repo_name: &str) -> Vec<u8> {
    serde_json::json!({"repository": {"repo_name": repo_name}})
        .to_string()
        .into_bytes()
}

/// Characters that reorder or split what a reader sees: a line separator,
/// a paragraph separator, right-to-left override, right-to-left mark, a
/// byte-order mark, a first-strong isolate.
const SNEAKY: [char; 6] = [
    '\u{2028}', '\u{2029}', '\u{202e}', '\u{200f}', '\u{feff}', '\u{2068}',
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_a_payload_are_escaped_and_bounded_in_every_line() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = dockerhub_config(dir.path(), &fluxd.api());
    for dry_run in [true, false] {
        let recv = Recv::start(
            &config,
            Options {
                dry_run,
                reply_budget: Duration::ZERO,
                ..Options::default()
            },
        )
        .await;
        // An image name as long as a relayed field may be, with every
        // sneaky character in it.
        let sneaky: String = SNEAKY.iter().collect();
        let name = format!("org/{sneaky}{}", "a".repeat(1000 - 4 - sneaky.len()));
        assert!(name.len() <= 1024);
        let reply = post(recv.url(&hook), vec![], dockerhub_push(&name)).await;
        assert!(reply.status == 200 || reply.status == 202, "{reply:?}");
        if !dry_run {
            eventually("delivered", Duration::from_secs(10), || {
                fluxd.received.lock().unwrap().len() == 1
            })
            .await;
            // The relayed name is whole: only the log is bounded.
            let received = fluxd.take();
            assert_eq!(received[0]["Source"]["Name"]["Image"], name.as_str());
            // The relay logs the delivery once fluxd's answer is read,
            // after fluxd has the notification.
            eventually("the delivered line", Duration::from_secs(10), || {
                recv.logs.text().contains("DEBG delivered")
            })
            .await;
        }
        // Every line naming the change: the dry-run line; or at debug the
        // hook's change line and the delivery's, which the relay writes
        // once fluxd has answered, a moment after fluxd has the change.
        let naming = |logs: &str| logs.lines().filter(|l| l.contains("aaaa")).count();
        let expected = if dry_run { 1 } else { 2 };
        eventually(
            "every line naming the change",
            Duration::from_secs(10),
            || naming(&recv.logs.text()) >= expected,
        )
        .await;
        let logs = recv.logs.text();
        let about: Vec<&str> = logs.lines().filter(|l| l.contains("aaaa")).collect();
        assert_eq!(about.len(), expected, "{logs}");
        for line in about {
            for c in SNEAKY {
                assert!(!line.contains(c), "{c:?} raw in {line}");
            }
            // The name is cut, and says so.
            assert!(line.len() < 700, "{} bytes: {line}", line.len());
            assert!(line.contains('…'), "{line}");
        }
    }
}

/// A stderr that takes its time over every write, as a slow pipe.
#[derive(Clone)]
struct Slow(flux_recv::logging::Captured);

impl std::io::Write for Slow {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(2));
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_endpoint_line_at_start_up_is_written_however_slow_stderr_is() {
    use flux_recv::logging::{nonblocking_as, Captured, Format};
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let mut endpoints = String::new();
    for i in 0..n {
        std::fs::write(dir.path().join(format!("{i}.key")), format!("{i:032}")).unwrap();
        endpoints.push_str(&format!("- source: GitHub\n  keyPath: {i}.key\n"));
    }
    let config = write_config(dir.path(), "http://127.0.0.1:3030/api/flux", &endpoints);
    let table = flux_recv::table::Table::load(&config, None).table.unwrap();
    for format in [Format::Text, Format::Json] {
        let out = Captured::default();
        // A queue far smaller than the endpoints, and a stderr slower than
        // the logging: lines that may be dropped would be.
        let (log, queue) =
            nonblocking_as(format, slog::Level::Info, Slow(out.clone()), 16).unwrap();
        flux_recv::logging::log_endpoints(&log, &table);
        queue.flush(Duration::from_secs(30));
        drop(log);
        let text = out.text();
        let lines = text.lines().filter(|l| l.contains("/hook/")).count();
        assert_eq!(lines, n, "{format:?}: {} dropped", queue.dropped());
        assert_eq!(queue.dropped(), 0);
    }
}

/// Lines of `logs` holding `what`.
fn count(logs: &str, what: &str) -> usize {
    logs.lines().filter(|l| l.contains(what)).count()
}

/// Lines left out of `logs`, as the summary lines starting `summary`
/// count them.
fn suppressed(logs: &str, summary: &str) -> usize {
    logs.lines()
        .filter(|l| l.contains(summary))
        .map(|l| {
            l.split("suppressed: ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no count in {l}"))
        })
        .sum()
}

/// At most `per_second` for each second of the budget that `took` may
/// have touched.
fn within(lines: usize, per_second: usize, took: Duration) -> bool {
    lines <= per_second * (took.as_secs() as usize + 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_through_an_unsigned_endpoint_is_counted_in_full_but_logged_within_budget() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = dockerhub_config(dir.path(), &fluxd.api());
    let recv = Recv::start(
        &config,
        Options {
            hook_logs_per_second: 5,
            ..Options::default()
        },
    )
    .await;
    let started = Instant::now();
    for i in 0..40 {
        let reply = post(
            recv.url(&hook),
            vec![],
            dockerhub_push(&format!("org/app{i}")),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let took = started.elapsed();
    // The hook lines, and at debug each hook's change line, share the
    // budget.
    let logs = recv.logs.text();
    let lines = count(&logs, "INFO hook,") + count(&logs, "DEBG change");
    assert!(within(lines, 5, took), "{lines} lines in {took:?}\n{logs}");
    assert!(lines >= 5, "{logs}");
    let metrics = recv
        .service
        .metrics()
        .encode(flux_recv::metrics::Format::Prometheus);
    assert!(
        metrics.contains(r#"fluxrecv_hooks_total{source="DockerHub",outcome="relayed"} 40"#),
        "{metrics}"
    );

    // The next second: the next hook is logged, after a line saying how
    // many were left out; none is lost without being counted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = post(recv.url(&hook), vec![], dockerhub_push("org/last")).await;
    assert_eq!(reply.status, 200);
    let logs = recv.logs.text();
    let lines = count(&logs, "INFO hook,") + count(&logs, "DEBG change");
    assert_eq!(
        lines + suppressed(&logs, "hook lines not logged: over the log budget"),
        82,
        "{logs}"
    );
    assert!(logs.contains("org/last"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_lines_are_logged_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bb.key"), GITHUB_KEY).unwrap();
    let config = write_config(
        dir.path(),
        "http://127.0.0.1:9/api/flux",
        "- source: BitbucketCloud\n  keyPath: bb.key\n",
    );
    let recv = Recv::start(
        &config,
        Options {
            dry_run: true,
            hook_logs_per_second: 5,
            ..Options::default()
        },
    )
    .await;
    // One unsigned delivery naming 200 branches.
    let body = bitbucket_push((0..200).map(|i| format!("b{i}")));
    let started = Instant::now();
    let reply = post(
        recv.url(&hook_path(GITHUB_KEY)),
        vec![("X-Event-Key".into(), "repo:push".into())],
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let took = started.elapsed();
    let logs = recv.logs.text();
    let lines = count(&logs, "dry run: not sent to fluxd");
    assert!(within(lines, 5, took), "{lines} lines in {took:?}\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_unknown_hook_urls_are_logged_within_the_refusal_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let recv = Recv::start(
        &config,
        Options {
            refusal_logs_per_second: 5,
            ..Options::default()
        },
    )
    .await;
    let started = Instant::now();
    for i in 0..40 {
        let reply = post(recv.url(&format!("/hook/{i:064}")), vec![], vec![]).await;
        assert_eq!(reply.status, 404);
    }
    let took = started.elapsed();
    let logs = recv.logs.text();
    let lines = count(&logs, "no endpoint for this hook URL");
    assert!(within(lines, 5, took), "{lines} lines in {took:?}\n{logs}");
    assert!(lines >= 5, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_line_names_the_changes_the_apis_and_who_refused() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The stand-in serves /api/flux/v11/notify only: this path gets 404.
    let api = format!("http://{}/flux", fluxd.addr);
    let (config, hook) = github_config(dir.path(), &api);
    let recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    let logs = recv.logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains("status: 502"))
        .unwrap_or_else(|| panic!("no 502 line in\n{logs}"));
    assert!(line.contains(&format!("changes: 1, api: {api},")), "{line}");
    assert!(
        line.contains(&format!("refused_by: {api}/v11/notify")),
        "{line}"
    );
    assert!(line.contains("fluxd answered 404 Not Found"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxds_refusals_are_logged_within_the_hook_budget() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = dockerhub_config(dir.path(), &format!("http://{}/flux", fluxd.addr));
    let recv = Recv::start(
        &config,
        Options {
            hook_logs_per_second: 5,
            ..Options::default()
        },
    )
    .await;
    let started = Instant::now();
    for i in 0..30 {
        let reply = post(
            recv.url(&hook),
            vec![],
            dockerhub_push(&format!("org/app{i}")),
        )
        .await;
        assert_eq!(reply.status, 502, "{}", reply.body);
    }
    let took = started.elapsed();
    let logs = recv.logs.text();
    // At debug each hook's change line shares the budget with its 502
    // line.
    let lines = count(&logs, "outcome: upstream_error") + count(&logs, "DEBG change");
    assert!(within(lines, 5, took), "{lines} lines in {took:?}\n{logs}");
    assert!(lines >= 5, "{logs}");
}
