//! Observability end to end: real hooks through a running flux-recv, then
//! `/metrics` scraped over HTTP; `/ready` through a graceful shutdown; JSON
//! log lines from a running server.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use flux_recv::logging::{Captured, Format};
use flux_recv::options::Options;
use flux_recv::service::{Config, Service};
use slog::{o, Logger};

const DOCKERHUB_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";

/// One scrape: each sample line, `name{labels}` → value.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// The value of `series`, which must be there.
    fn get(&self, series: &str) -> f64 {
        match self.samples.get(series) {
            Some(v) => *v,
            None => panic!("no {series} in\n{}", self.text),
        }
    }

    fn hooks(&self, source: &str, outcome: &str) -> f64 {
        self.get(&format!(
            r#"fluxrecv_hooks_total{{source="{source}",outcome="{outcome}"}}"#
        ))
    }
}

/// GET /metrics over HTTP, checking the content type.
async fn scrape(recv: &Recv) -> Scrape {
    let url = recv.url("/metrics");
    let (status, content_type, text) = tokio::task::spawn_blocking(move || {
        let mut resp = client(None)
            .get(&url)
            .header("Accept", "application/openmetrics-text; version=1.0.0")
            .call()
            .expect("scrape");
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.body_mut().read_to_string().unwrap();
        (resp.status().as_u16(), content_type, text)
    })
    .await
    .unwrap();
    Scrape::read(status, &content_type, text)
}

/// GET /metrics through the service's routes, with no socket: for a
/// service that is not serving (so that its reload task has not started).
async fn scrape_routes(service: &Service) -> Scrape {
    let resp = warp::test::request()
        .path("/metrics")
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .reply(&service.routes())
        .await;
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    let text = String::from_utf8(resp.body().to_vec()).unwrap();
    Scrape::read(resp.status().as_u16(), &content_type, text)
}

impl Scrape {
    /// A scrape answered `status` with `content_type`: checked, and read.
    fn read(status: u16, content_type: &str, text: String) -> Scrape {
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("series value");
                (series.to_string(), value.parse().expect("a number"))
            })
            .collect();
        Scrape { text, samples }
    }
}

const OUTCOMES: [&str; 10] = [
    "relayed",
    "queued",
    "ignored",
    "filtered",
    "replayed",
    "unauthorized",
    "bad_request",
    "upstream_error",
    "too_large",
    "busy",
];

fn dockerhub_hook() -> String {
    hook_path(DOCKERHUB_KEY)
}

/// GitHub and Docker Hub endpoints in `dir`; returns the config path and
/// the GitHub hook path.
fn two_sources(dir: &Path, api: &str) -> (std::path::PathBuf, String) {
    let (_, github) = github_config(dir, api);
    std::fs::write(dir.join("dockerhub.key"), DOCKERHUB_KEY).unwrap();
    let config = write_config(
        dir,
        api,
        "- source: GitHub\n  keyPath: github.key\n- source: DockerHub\n  keyPath: dockerhub.key\n",
    );
    (config, github)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hook_is_counted_once_by_source_and_outcome() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, github) = two_sources(dir.path(), &fluxd.api());
    // The queued hook waits out a budget past the 2.5 s bucket; every
    // other reply comes at once, which on a loaded machine is still well
    // within 2.5 s.
    let opts = Options {
        max_body: 4096,
        reply_budget: Duration::from_millis(2600),
        ..Options::default()
    };
    let recv = Recv::start(&config, opts).await;

    // Before any hook: every series of each served source is there, at 0.
    let before = scrape(&recv).await;
    for source in ["GitHub", "DockerHub"] {
        for outcome in OUTCOMES {
            assert_eq!(before.hooks(source, outcome), 0.0, "{source} {outcome}");
        }
    }
    assert!(
        !before.text.contains(r#"source="GitLab""#),
        "{}",
        before.text
    );
    assert_eq!(before.get("fluxrecv_endpoints"), 2.0);
    assert_eq!(before.get("fluxrecv_reply_duration_seconds_count"), 0.0);
    assert_eq!(
        before.get(&format!(
            r#"fluxrecv_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );

    let push = github_body("org/app", "main");
    let send = |path: &str, headers: Vec<(String, String)>, body: Vec<u8>| {
        post(recv.url(path), headers, body)
    };

    // relayed, twice (one per source)
    assert_eq!(
        send(&github, github_push(&push), push.clone()).await.status,
        200
    );
    let docker = std::fs::read(testdata().join("dockerhub_payload")).unwrap();
    assert_eq!(send(&dockerhub_hook(), vec![], docker).await.status, 200);
    // ignored
    let ping = br#"{"zen":"Keep it logically awesome."}"#.to_vec();
    let mut headers = github_push(&ping);
    headers[1].1 = "ping".into();
    assert_eq!(send(&github, headers, ping).await.status, 200);
    // unauthorized: signed for another body
    let reply = send(&github, github_push(b"other"), push.clone()).await;
    assert_eq!(reply.status, 401);
    // bad request: signed, but not JSON
    let broken = b"{not json".to_vec();
    let reply = send(&github, github_push(&broken), broken).await;
    assert_eq!(reply.status, 400);
    // too large
    let huge = vec![b' '; 5000];
    let reply = send(&github, github_push(&huge), huge).await;
    assert_eq!(reply.status, 413);
    // queued: fluxd failing for now, so not confirmed within the budget
    fluxd.set(Behaviour::Status(503));
    let reply = send(&github, github_push(&push), push.clone()).await;
    assert_eq!(reply.status, 202);
    // upstream error: fluxd refusing for good (once the failing fluxd's
    // next probe has ended the queued change, so that this one is sent at
    // once)
    fluxd.set(Behaviour::Status(404));
    let queue = recv.service.queue().clone();
    eventually("the probe", Duration::from_secs(10), || {
        queue.snapshot().pending == 0
    })
    .await;
    let other = github_body("org/other", "main");
    let reply = send(&github, github_push(&other), other).await;
    assert_eq!(reply.status, 502);
    fluxd.set(Behaviour::Accept);
    // unknown hook URLs: no source, counted apart
    assert_eq!(send("/hook/nothing", vec![], vec![]).await.status, 404);
    let stale = format!("/hook/{}", "0".repeat(64));
    assert_eq!(send(&stale, vec![], vec![]).await.status, 404);

    let after = scrape(&recv).await;
    let expect = [
        ("GitHub", "relayed", 1.0),
        ("GitHub", "queued", 1.0),
        ("GitHub", "ignored", 1.0),
        ("GitHub", "unauthorized", 1.0),
        ("GitHub", "bad_request", 1.0),
        ("GitHub", "too_large", 1.0),
        ("GitHub", "upstream_error", 1.0),
        ("DockerHub", "relayed", 1.0),
    ];
    for source in ["GitHub", "DockerHub"] {
        for outcome in OUTCOMES {
            let want = expect
                .iter()
                .find(|(s, o, _)| *s == source && *o == outcome)
                .map_or(0.0, |e| e.2);
            assert_eq!(after.hooks(source, outcome), want, "{source} {outcome}");
        }
    }
    assert_eq!(after.get("fluxrecv_unknown_hook_requests_total"), 2.0);

    // Every reply to a known endpoint is timed: eight hooks, the 202 after
    // the 2.6 s budget.
    assert_eq!(after.get("fluxrecv_reply_duration_seconds_count"), 8.0);
    assert_eq!(
        after.get(r#"fluxrecv_reply_duration_seconds_bucket{le="2.5"}"#),
        7.0
    );
    assert_eq!(
        after.get(r#"fluxrecv_reply_duration_seconds_bucket{le="5.0"}"#),
        8.0
    );
    assert_eq!(after.get("fluxrecv_endpoints"), 2.0);

    // The delivery queue, per API: the relayed hooks (GitHub's and Docker
    // Hub's), and the two fluxd refused: the 503'd one, retried until the
    // 404, and the other.
    let api = format!("{}/v11/notify", fluxd.api());
    let per_api = |name: &str| after.get(&format!(r#"{name}{{api="{api}"}}"#));
    assert_eq!(per_api("fluxrecv_delivered_total"), 2.0);
    assert_eq!(per_api("fluxrecv_delivery_refused_total"), 2.0);
    assert_eq!(per_api("fluxrecv_delivery_pending"), 0.0);
    assert!(per_api("fluxrecv_relay_retries_total") >= 1.0);
    assert_eq!(after.get("fluxrecv_delivery_oldest_age_seconds"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pubsub_tokens_are_counted_by_check() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = b"0123456789abcdef-gcr";
    std::fs::write(dir.path().join("gcr.key"), key).unwrap();
    let config = write_config(
        dir.path(),
        &fluxd.api(),
        "- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: https://hooks.example.com\n    email: pusher@example.iam.gserviceaccount.com\n",
    );
    // Both tokens fail before any key is needed; nothing listens here.
    let opts = Options {
        google_jwks_url: format!("http://{}/certs", dead_addr()),
        ..Options::default()
    };
    let recv = Recv::start(&config, opts).await;
    let hook = hook_path(key);
    let body = b"{}".to_vec();
    let reply = post(recv.url(&hook), vec![], body.clone()).await;
    assert_eq!(reply.status, 401);
    let bearer = vec![("Authorization".into(), "Bearer not-a-token".into())];
    let reply = post(recv.url(&hook), bearer, body).await;
    assert_eq!(reply.status, 401);

    let s = scrape(&recv).await;
    assert_eq!(
        s.get(r#"fluxrecv_gcr_token_refusals_total{check="authorization"}"#),
        1.0
    );
    assert_eq!(
        s.get(r#"fluxrecv_gcr_token_refusals_total{check="format"}"#),
        1.0
    );
    assert_eq!(s.hooks("GoogleContainerRegistry", "unauthorized"), 2.0);
    assert!(fluxd.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_by_result() {
    let dir = tempfile::tempdir().unwrap();
    let api = "http://127.0.0.1:1/api/flux";
    let started = unix_now();
    let (config, _) = github_config(dir.path(), api);
    // The service as it starts, not serving: its reload task (which
    // reloads on file events and once when it starts) has not started, so
    // the reloads counted are this test's.
    let log = Logger::root(slog::Discard, o!());
    let service = Service::start(Config::new(&config, Options::default()), log.clone())
        .await
        .unwrap();
    let reload = || flux_recv::reload::reload(service.table(), service.metrics(), &log);
    let reloads = |s: &Scrape, result: &str| {
        s.get(&format!(r#"fluxrecv_reloads_total{{result="{result}"}}"#))
    };

    let s = scrape_routes(&service).await;
    for result in ["changed", "unchanged", "failed"] {
        assert_eq!(reloads(&s, result), 0.0, "{result}");
    }
    assert_eq!(s.get("fluxrecv_endpoints"), 1.0);
    // The first load counts as a successful one.
    let at_start = s.get("fluxrecv_last_reload_success_timestamp_seconds");
    assert!(at_start >= started, "{at_start} < {started}");

    // A new endpoint: changed.
    std::fs::write(dir.path().join("quay.key"), b"0123456789abcdef-quay").unwrap();
    write_config(
        dir.path(),
        api,
        "- source: GitHub\n  keyPath: github.key\n- source: Quay\n  keyPath: quay.key\n",
    );
    let before_reload = unix_now();
    assert!(matches!(
        reload(),
        flux_recv::reload::ReloadResult::Swapped { added: 1, .. }
    ));
    let s = scrape_routes(&service).await;
    assert_eq!(reloads(&s, "changed"), 1.0);
    assert_eq!(s.get("fluxrecv_endpoints"), 2.0);
    assert_eq!(s.hooks("Quay", "relayed"), 0.0);
    let after_swap = s.get("fluxrecv_last_reload_success_timestamp_seconds");
    assert!(
        after_swap >= before_reload,
        "{after_swap} < {before_reload}"
    );

    // Nothing changed: unchanged, still a success.
    assert_eq!(reload(), flux_recv::reload::ReloadResult::Unchanged);
    let s = scrape_routes(&service).await;
    assert_eq!(reloads(&s, "unchanged"), 1.0);
    let after_unchanged = s.get("fluxrecv_last_reload_success_timestamp_seconds");
    assert!(after_unchanged >= after_swap);

    // A broken config: failed; the table and the success time stay.
    std::fs::write(&config, "fluxRecvVersion: 1\nendpoints: [\n").unwrap();
    assert!(matches!(
        reload(),
        flux_recv::reload::ReloadResult::Failed { .. }
    ));
    let s = scrape_routes(&service).await;
    assert_eq!(reloads(&s, "failed"), 1.0);
    assert_eq!(reloads(&s, "changed"), 1.0);
    assert_eq!(reloads(&s, "unchanged"), 1.0);
    assert_eq!(s.get("fluxrecv_endpoints"), 2.0);
    assert_eq!(
        s.get("fluxrecv_last_reload_success_timestamp_seconds"),
        after_unchanged
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_when_shutdown_begins_while_health_stays_200() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Delay(1500));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let mut recv = Recv::start(&config, Options::default()).await;

    let ready = get(recv.url("/ready")).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(get(recv.url("/health")).await.status, 200);

    // A hook is held by a slow fluxd when shutdown begins.
    let body = github_body("org/app", "main");
    let in_flight = tokio::spawn(post(recv.url(&hook), github_push(&body), body));
    eventually("a relay", Duration::from_secs(5), || {
        recv.service.queue().snapshot().sending > 0
    })
    .await;
    recv.shutdown();

    // The signal reaches the accept loop at once; poll rather than guess.
    eventually_async("/ready to change", Duration::from_secs(5), || async {
        let ready = get(recv.url("/ready")).await;
        if ready.status != 200 {
            assert_eq!(
                (ready.status, ready.body.as_str()),
                (503, "shutting down\n")
            );
        }
        ready.status != 200
    })
    .await;
    let health = get(recv.url("/health")).await;
    assert_eq!((health.status, health.body.as_str()), (200, "OK\n"));

    // The hook in flight still completes, then the server stops listening.
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fluxd.take().len(), 1);
    recv.wait_stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_one_object_per_line_with_every_field() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let logs = Captured::default();
    let log = flux_recv::logging::to_writer_as(Format::Json, slog::Level::Debug, logs.clone());
    let service = Service::start(Config::new(&config, Options::default()), log)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        service
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
    });

    let body = github_body("org/app", "main");
    let url = format!("http://{addr}{hook}");
    assert_eq!(
        post(url.clone(), github_push(&body), body).await.status,
        200
    );
    let reply = post(url, github_push(b"other"), b"{}".to_vec()).await;
    assert_eq!(reply.status, 401);
    let _ = stop.send(());
    server.await.unwrap();

    let text = logs.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    for line in &lines {
        for key in ["time", "level", "msg"] {
            assert!(line[key].is_string(), "no {key} in {line}");
        }
    }
    let hooks: Vec<_> = lines
        .iter()
        .filter(|l| l["msg"] == "hook" || l["msg"] == "hook refused")
        .collect();
    assert_eq!(hooks.len(), 2, "{text}");
    let ok = hooks[0];
    assert_eq!(ok["level"], "info");
    assert_eq!(ok["source"], "GitHub");
    assert_eq!(ok["outcome"], "relayed");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["changes"], 1);
    assert_eq!(ok["event"], "push");
    assert_eq!(ok["delivery"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(ok["fingerprint"].as_str().unwrap().len(), 12);
    assert!(ok["duration_ms"].is_f64());
    let refused = hooks[1];
    assert_eq!(refused["level"], "warn");
    assert_eq!(refused["outcome"], "unauthorized");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["reason"], "X-Hub-Signature-256 does not match");
    // The key never reaches a log line.
    assert!(!text.contains(std::str::from_utf8(GITHUB_KEY).unwrap()));
}

/// `promtool check metrics` (a linter of the classic text format) on what a
/// scraper that does not ask for OpenMetrics gets, where Debian's
/// `prometheus` package is installed. CI installs it, so under `.ci/run`
/// (`FLUXRECV_CI` set) its absence fails the test rather than skipping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_prometheus_text_format() {
    let Ok(version) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("FLUXRECV_CI").is_none(),
            "promtool is not installed, and FLUXRECV_CI is set (.ci/run): CI installs \
             Debian's prometheus package for this test"
        );
        eprintln!("SKIPPED promtool_accepts_the_prometheus_text_format: promtool is not installed (apt-get install prometheus)");
        return;
    };
    assert!(version.status.success());
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = two_sources(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    assert_eq!(
        post(recv.url(&hook), github_push(&body), body).await.status,
        200
    );

    for accept in [None, Some("text/plain"), Some("*/*")] {
        let url = recv.url("/metrics");
        let text = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
            let mut request = agent.get(&url);
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            request.call().unwrap().body_mut().read_to_string().unwrap()
        })
        .await
        .unwrap();
        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = promtool.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{accept:?}: {said}\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_accept_header_gets_the_default_format() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = github_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let recv = Recv::start(&config, Options::default()).await;
    // Not visible ASCII: as if there were no Accept header.
    let request =
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: text/plain; q=\xe9\r\n\r\n";
    let reply = raw(recv.addr, request.to_vec()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_whose_client_hangs_up_is_still_logged_counted_and_reported_late() {
    let fluxd = FakeFluxd::start().await;
    // fluxd takes the change after the reply budget: a late delivery.
    fluxd.set(Behaviour::Delay(1000));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let opts = Options {
        reply_budget: Duration::from_millis(300),
        ..Options::default()
    };
    let recv = Recv::start(&config, opts).await;

    // A signed push, then the client hangs up without waiting for the
    // reply (as a provider whose own timeout is shorter would): at once,
    // and once the hook waits for fluxd.
    let body = github_body("org/app", "main");
    let mut request = format!(
        "POST {hook} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in github_push(&body) {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut request = format!("{request}\r\n").into_bytes();
    request.extend_from_slice(&body);
    for (n, wait) in [(1, false), (2, true)] {
        let mut s = tokio::net::TcpStream::connect(recv.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, &request)
            .await
            .unwrap();
        if wait {
            let queue = recv.service.queue();
            eventually("the change is queued", Duration::from_secs(5), || {
                queue.snapshot().pending == 1
            })
            .await;
        }
        drop(s);

        // The changes are relayed; the hook is logged and counted as the
        // reply it would have had (202 at the budget), and the delivery is
        // late.
        eventually("the late delivery", Duration::from_secs(10), || {
            recv.logs.text().matches("INFO delivered late").count() == n
        })
        .await;
        assert_eq!(fluxd.take(), vec![git_notification("org/app", "main")]);
        let logs = recv.logs.text();
        let hook_lines: Vec<&str> = logs.lines().filter(|l| l.contains("INFO hook,")).collect();
        assert_eq!(hook_lines.len(), n, "{logs}");
        assert!(
            hook_lines[n - 1].contains("outcome: queued, status: 202, changes: 1"),
            "{logs}"
        );
        assert_eq!(scrape(&recv).await.hooks("GitHub", "queued"), n as f64);
    }
}
