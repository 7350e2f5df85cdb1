//! The routes, replies and limits that need no socket, through
//! `warp::test`. Delivery to fluxd needs one: see `tests/`.

use crate::options::Options;
use crate::service::{Config, Service};
use crate::source::{SampleRequest, Source};
use crate::table::Table;
use slog::{o, Logger};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A dry-run service with one GitHub and one GitLab endpoint, and the
/// GitHub hook's path.
async fn serve(options: Options) -> (Service, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gh.key"), KEY).unwrap();
    std::fs::write(dir.path().join("gl.key"), b"fedcba9876543210").unwrap();
    let config = dir.path().join("fluxrecv.yaml");
    std::fs::write(
        &config,
        "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n\
         - source: GitLab\n  keyPath: gl.key\n",
    )
    .unwrap();
    let table = Table::load(&config, None).table.unwrap();
    let path = table.endpoints()[0].url_path();
    let options = Options {
        dry_run: true,
        ..options
    };
    let log = Logger::root(slog::Discard, o!());
    let service = Service::start(Config::new(config, options), log)
        .await
        .unwrap();
    (service, path, dir)
}

fn github_push() -> crate::source::SampleHook {
    Source::named("GitHub")
        .sample(&SampleRequest::push(KEY))
        .unwrap()
}

fn post(path: &str, delivery: &crate::source::SampleHook) -> warp::test::RequestBuilder {
    let mut request = warp::test::request()
        .method("POST")
        .path(path)
        .body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(*name, value);
    }
    request
}

fn body(response: &warp::http::Response<bytes::Bytes>) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

#[tokio::test]
async fn a_signed_push_is_accepted_and_counted() {
    let (service, path, _dir) = serve(Options::default()).await;
    let reply = post(&path, &github_push()).reply(&service.routes()).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        body(&reply),
        "ok: dry run, fluxd would be notified of 1 change(s)\n"
    );
    let metrics = service
        .metrics()
        .encode(crate::metrics::Format::OpenMetrics);
    assert!(
        metrics.contains(r#"fluxrecv_hooks_total{source="GitHub",outcome="relayed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn refusals_get_their_status_and_say_why() {
    let (service, path, _dir) = serve(Options {
        max_body: 4096,
        ..Options::default()
    })
    .await;
    let routes = service.routes();
    let mut forged = github_push();
    forged.body.push(b' ');
    let too_big = crate::source::SampleHook {
        body: vec![b' '; 5000],
        ..github_push()
    };
    let cases = [
        (
            post(&path, &forged),
            401,
            "X-Hub-Signature-256 does not match",
        ),
        (
            post(&path, &too_big),
            413,
            "payload too large: the limit is 4096 bytes",
        ),
        (
            post(&format!("/hook/{}", "0".repeat(64)), &github_push()),
            404,
            "not found",
        ),
    ];
    for (request, status, text) in cases {
        let reply = request.reply(&routes).await;
        assert_eq!(reply.status(), status, "{}", body(&reply));
        assert_eq!(body(&reply), format!("{text}\n"));
    }
    let metrics = service
        .metrics()
        .encode(crate::metrics::Format::OpenMetrics);
    for line in [
        r#"fluxrecv_hooks_total{source="GitHub",outcome="unauthorized"} 1"#,
        r#"fluxrecv_hooks_total{source="GitHub",outcome="too_large"} 1"#,
        "fluxrecv_unknown_hook_requests_total 1",
    ] {
        assert!(metrics.contains(line), "no {line} in {metrics}");
    }
}

#[tokio::test]
async fn a_header_token_is_checked_before_the_body_is_read() {
    let (service, _, _dir) = serve(Options::default()).await;
    let gitlab = service.table().load().endpoints()[1].url_path();
    // A declared body far over the limit: refused for the token, not
    // for the size, so nothing was read.
    let reply = warp::test::request()
        .method("POST")
        .path(&gitlab)
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "wrong")
        .header("Content-Length", "999999999")
        .reply(&service.routes())
        .await;
    assert_eq!(reply.status(), 401);
    assert_eq!(body(&reply), "X-Gitlab-Token does not match\n");
}

#[tokio::test]
async fn other_methods_on_a_hook_url_get_405_naming_post() {
    let (service, path, _dir) = serve(Options::default()).await;
    let routes = service.routes();
    for (method, target) in [("GET", path.as_str()), ("PUT", "/hook/anything")] {
        let reply = warp::test::request()
            .method(method)
            .path(target)
            .reply(&routes)
            .await;
        assert_eq!(reply.status(), 405, "{method} {target}");
        assert_eq!(reply.headers()["allow"], "POST");
    }
}

#[tokio::test]
async fn health_ready_metrics_and_everything_else() {
    let (service, _, _dir) = serve(Options::default()).await;
    let routes = service.routes();
    let get = |path: &'static str| warp::test::request().path(path).reply(&routes);
    assert_eq!(get("/health").await.status(), 200);
    assert_eq!(get("/ready").await.status(), 200);
    let metrics = get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let open_metrics = warp::test::request()
        .path("/metrics")
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .reply(&routes)
        .await;
    assert_eq!(
        open_metrics.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body(&open_metrics).ends_with("# EOF\n"));
    assert!(!body(&metrics).contains("# EOF"));
    assert_eq!(get("/elsewhere").await.status(), 404);
    service.begin_shutdown();
    let ready = get("/ready").await;
    assert_eq!(
        (ready.status().as_u16(), body(&ready).as_str()),
        (503, "shutting down\n")
    );
    assert_eq!(get("/health").await.status(), 200);
}

/// A StandardWebhooks endpoint in a dry run: what would have been sent
/// counts as accepted, so a repeat gets what it would get for real; a
/// stale signature is a 401 that says only that.
#[tokio::test]
async fn a_repeated_id_is_acknowledged_in_a_dry_run_too() {
    const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("swh.key"), SECRET).unwrap();
    let config = dir.path().join("fluxrecv.yaml");
    std::fs::write(
        &config,
        "fluxRecvVersion: 1\nendpoints:\n- source: StandardWebhooks\n  keyPath: swh.key\n  \
         notify: {image: example/app}\n",
    )
    .unwrap();
    let table = Table::load(&config, None).table.unwrap();
    let path = table.endpoints()[0].url_path();
    let options = Options {
        dry_run: true,
        ..Options::default()
    };
    let log = Logger::root(slog::Discard, o!());
    let service = Service::start(Config::new(config, options), log)
        .await
        .unwrap();
    let routes = service.routes();
    let source = Source::named("StandardWebhooks");
    let delivery = source.sample(&SampleRequest::push(SECRET)).unwrap();

    let first = post(&path, &delivery).reply(&routes).await;
    assert_eq!(
        (first.status().as_u16(), body(&first).as_str()),
        (200, "ok: dry run, fluxd would be notified of 1 change(s)\n")
    );
    let again = post(&path, &delivery).reply(&routes).await;
    assert_eq!(
        (again.status().as_u16(), body(&again).as_str()),
        (
            200,
            "ok: nothing to do (a delivery with this webhook-id was accepted within the last \
             5 min; nothing was sent again)\n"
        )
    );
    let stale = source
        .sample(&SampleRequest {
            sent_at: crate::source::stamped::unix_now() - 3600,
            delivery_id: "another",
            ..SampleRequest::push(SECRET)
        })
        .unwrap();
    let refused = post(&path, &stale).reply(&routes).await;
    assert_eq!(
        (refused.status().as_u16(), body(&refused).as_str()),
        (
            401,
            "the signature is stale: webhook-timestamp is outside the accepted window\n"
        )
    );
    let metrics = service
        .metrics()
        .encode(crate::metrics::Format::OpenMetrics);
    for (outcome, n) in [("relayed", 1), ("replayed", 1), ("unauthorized", 1)] {
        let line =
            format!(r#"fluxrecv_hooks_total{{source="StandardWebhooks",outcome="{outcome}"}} {n}"#);
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}
