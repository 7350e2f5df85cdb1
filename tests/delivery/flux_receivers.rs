//! Flux v2 Receivers as targets, through a running flux-recv in front of a
//! stand-in notification-controller (`common::controller`) and a stand-in
//! fluxd: what reaches the Receiver (path, body, signature), what does
//! not (a ping, a filtered-out push, a body over 3 MiB), and each of the
//! controller's answers, its absence, its slowness, a rotated token and
//! https.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::controller::{signature, Controller, Receiver};
use common::*;
use flux_recv::options::Options;
use flux_recv::reload::Trigger;

const KEY: &[u8] = b"0123456789abcdef-flux-receivers";
const TOKEN: &[u8] = b"receiver-token-0123456789";
const DIGEST: &str = "/hook/a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// A config whose GitHub endpoint goes to `fluxd` and to the Receivers
/// `receivers` (YAML list items, indented for the endpoint).
fn config(dir: &Path, fluxd: &str, receivers: &str) -> PathBuf {
    std::fs::write(dir.join("github.key"), KEY).unwrap();
    std::fs::write(dir.join("receiver.token"), TOKEN).unwrap();
    write_config(
        dir,
        fluxd,
        &format!(
            "- source: GitHub\n  keyPath: github.key\n  api: {fluxd}\n  fluxReceivers:\n{receivers}"
        ),
    )
}

fn signed(url: &str) -> String {
    format!("  - url: {url}\n    tokenPath: receiver.token\n")
}

/// POST a push of `branch` (padded with `pad` bytes of a field GitHub
/// does not have) and its body.
async fn push(recv: &Recv, branch: &str, pad: usize) -> (Reply, Vec<u8>) {
    let mut body = github_body("org/app", branch);
    if pad > 0 {
        body.pop();
        body.extend_from_slice(format!(",\"pad\":\"{}\"}}", "x".repeat(pad)).as_bytes());
    }
    let headers = {
        let mut h = github_push(&body);
        h.retain(|(k, _)| k != "X-Hub-Signature-256");
        let sig = flux_recv::source::verify::sign(
            flux_recv::source::verify::Algorithm::Sha256,
            KEY,
            &body,
        );
        h.push(("X-Hub-Signature-256".into(), sig));
        h
    };
    (
        post(recv.url(&hook_path(KEY)), headers, body.clone()).await,
        body,
    )
}

/// A Receiver that checks `X-Signature` with [`TOKEN`], as a
/// `generic-hmac` Receiver whose Secret holds it.
fn signed_receiver() -> Receiver {
    Receiver {
        token: Some(TOKEN.into()),
        ..Receiver::default()
    }
}

fn quick() -> Options {
    Options {
        reply_budget: Duration::from_millis(500),
        resync_interval: Duration::from_secs(3600),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_as_received_is_signed_and_posted_to_the_exact_path_beside_fluxd() {
    let (fluxd, controller) = (FakeFluxd::start().await, Controller::start());
    controller.add(DIGEST, signed_receiver());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fluxd.api(), &signed(&controller.url(DIGEST)));
    let recv = Recv::start(&cfg, quick()).await;
    let (reply, body) = push(&recv, "main", 0).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = controller.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uri, DIGEST);
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(got[0].signature, Some(signature(TOKEN, &body)));
    assert_eq!(fluxd.take(), [git_notification("org/app", "main")]);
    // The metric label tells the kinds apart, without the digest whole.
    let metrics = get(recv.url("/metrics")).await.body;
    assert!(metrics.contains("flux-receiver http://"), "{metrics}");
    assert!(metrics.contains("/hook/a1b2c3d4…"), "{metrics}");
    assert!(!metrics.contains(&DIGEST[6..20]), "{metrics}");
    assert!(metrics.contains(&format!("{}/v11/notify", fluxd.api())));
    assert!(!recv.logs.text().contains(&DIGEST[6..20]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_receiver_gets_no_signature_and_nothing_goes_for_a_ping_or_a_filtered_push() {
    let (fluxd, controller) = (FakeFluxd::start().await, Controller::start());
    controller.add(DIGEST, Receiver::default());
    let dir = tempfile::tempdir().unwrap();
    let generic = format!(
        "  - url: {}\n  filter: {{branches: [main]}}\n",
        controller.url(DIGEST)
    );
    let cfg = config(dir.path(), &fluxd.api(), &generic);
    let recv = Recv::start(&cfg, quick()).await;
    assert_eq!(push(&recv, "main", 0).await.0.status, 200);
    let got = controller.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].signature, None);
    // Filtered out: nothing.
    assert_eq!(push(&recv, "dev", 0).await.0.status, 200);
    // A ping: nothing.
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let mut headers = github_push(&ping);
    headers.retain(|(k, _)| k != "X-GitHub-Event" && k != "X-Hub-Signature-256");
    headers.push(("X-GitHub-Event".into(), "ping".into()));
    headers.push((
        "X-Hub-Signature-256".into(),
        flux_recv::source::verify::sign(flux_recv::source::verify::Algorithm::Sha256, KEY, &ping),
    ));
    assert_eq!(
        post(recv.url(&hook_path(KEY)), headers, ping).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(controller.take().is_empty());
    assert_eq!(controller.answered(), [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_no_such_receiver_and_413_end_the_entry_with_502_naming_it() {
    let (fluxd, controller) = (FakeFluxd::start().await, Controller::start());
    controller.add(
        DIGEST,
        Receiver {
            token: Some(b"another".to_vec()),
            ..Receiver::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = "/hook/ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    for (url, says) in [
        (
            controller.url(DIGEST),
            "answered 400 Bad Request: its token is not tokenPath's",
        ),
        (
            controller.url(missing),
            "answered 404 Not Found: no Receiver has this webhook path",
        ),
    ] {
        let cfg = config(dir.path(), &fluxd.api(), &signed(&url));
        let recv = Recv::start(&cfg, quick()).await;
        let (reply, _) = push(&recv, "main", 0).await;
        assert_eq!(reply.status, 502, "{}", reply.body);
        assert!(
            reply.body.starts_with("flux-receiver http://127.0.0.1:"),
            "{}",
            reply.body
        );
        assert!(
            reply.body.contains("refused the notification"),
            "{}",
            reply.body
        );
        assert!(reply.body.contains(says), "{}", reply.body);
        assert!(!reply.body.contains(&DIGEST[6..20]), "{}", reply.body);
        // Ended: not retried.
        let before = controller.answered().len();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(controller.answered().len(), before);
    }
    controller.change(DIGEST, |r| r.token = Some(TOKEN.into()));
    controller.answer(Some(413));
    let cfg = config(dir.path(), &fluxd.api(), &signed(&controller.url(DIGEST)));
    let recv = Recv::start(&cfg, quick()).await;
    let (reply, _) = push(&recv, "main", 0).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.body.contains("413"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_3_mib_is_not_sent_to_the_receiver_and_fluxd_still_gets_its_change() {
    let (fluxd, controller) = (FakeFluxd::start().await, Controller::start());
    controller.add(DIGEST, signed_receiver());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fluxd.api(), &signed(&controller.url(DIGEST)));
    let options = Options {
        max_body: 4 * 1024 * 1024,
        ..quick()
    };
    let recv = Recv::start(&cfg, options).await;
    let (reply, body) = push(&recv, "main", 3 * 1024 * 1024).await;
    assert!(body.len() > 3 * 1024 * 1024);
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("over the 3145728 bytes flux-receiver takes; it was not sent"),
        "{}",
        reply.body
    );
    eventually("fluxd notified", Duration::from_secs(5), || {
        !fluxd.received.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(controller.answered().is_empty());
    // Exactly at the limit: sent.
    let (reply, body) = push(&recv, "dev", 0).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(controller.take()[0].body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_receiver_or_a_down_controller_is_retried_until_it_takes_it() {
    let fluxd = FakeFluxd::start().await;
    let port = dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{port}{DIGEST}");
    let cfg = config(dir.path(), &fluxd.api(), &signed(&url));
    let recv = Recv::start(&cfg, quick()).await;
    // Down: the provider is answered 202, the push kept.
    let (reply, body) = push(&recv, "main", 0).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    // An identical push while pending joins it: one POST when it is back.
    assert_eq!(push(&recv, "main", 0).await.0.status, 202);
    // Up, but the Receiver suspended (503): still kept.
    let controller = Controller::on(std::net::TcpListener::bind(port).unwrap(), false);
    controller.add(
        DIGEST,
        Receiver {
            token: Some(TOKEN.into()),
            suspended: true,
        },
    );
    eventually("a 503", Duration::from_secs(10), || {
        controller.answered().contains(&503)
    })
    .await;
    controller.change(DIGEST, |r| r.suspended = false);
    eventually("delivered", Duration::from_secs(10), || {
        controller.answered().contains(&200)
    })
    .await;
    let got = controller.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_controller_gets_202_then_the_push_and_a_500_is_retried() {
    let (fluxd, controller) = (FakeFluxd::start().await, Controller::start());
    controller.add(DIGEST, signed_receiver());
    controller.delay(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fluxd.api(), &signed(&controller.url(DIGEST)));
    let recv = Recv::start(&cfg, quick()).await;
    let (reply, _) = push(&recv, "main", 0).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    eventually("delivered", Duration::from_secs(10), || {
        controller.answered() == [200]
    })
    .await;
    controller.delay(Duration::ZERO);
    controller.answer(Some(500));
    let (reply, _) = push(&recv, "dev", 0).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    eventually("retried", Duration::from_secs(10), || {
        controller.answered().len() >= 3
    })
    .await;
    controller.answer(None);
    eventually("taken", Duration::from_secs(10), || {
        controller.answered().ends_with(&[200])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_signs_the_next_attempt_of_what_was_pending() {
    let (fluxd, controller) = (FakeFluxd::start().await, Controller::start());
    controller.add(
        DIGEST,
        Receiver {
            token: Some(TOKEN.into()),
            suspended: true,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fluxd.api(), &signed(&controller.url(DIGEST)));
    let recv = Recv::start(&cfg, quick()).await;
    let (reply, body) = push(&recv, "main", 0).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    // The Secret is rotated: the controller and the token file change.
    let rotated = b"rotated-token-9876543210".to_vec();
    std::fs::write(dir.path().join("receiver.token"), &rotated).unwrap();
    recv.service.reloader().request(Trigger::Hangup);
    eventually("reloaded", Duration::from_secs(5), || {
        recv.logs.text().contains("\"msg\":\"reloaded\"") || recv.logs.text().contains("reloaded")
    })
    .await;
    controller.change(DIGEST, |r| {
        r.token = Some(rotated.clone());
        r.suspended = false;
    });
    eventually("delivered", Duration::from_secs(10), || {
        controller.answered().contains(&200)
    })
    .await;
    let got = controller.take();
    assert_eq!(got[0].signature, Some(signature(&rotated, &body)));
    assert!(
        !controller.answered().contains(&400),
        "{:?}",
        controller.answered()
    );
    assert!(!recv.logs.text().contains("rotated-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_checked_against_the_ca_a_receiver_names() {
    let (fluxd, controller) = (FakeFluxd::start().await, Controller::start_tls());
    controller.add(DIGEST, signed_receiver());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(testdata().join("tls/ca.pem"), dir.path().join("ca.pem")).unwrap();
    let url = controller.url(DIGEST);
    // Not signed by a root the system knows: never delivered.
    let cfg = config(dir.path(), &fluxd.api(), &signed(&url));
    let recv = Recv::start(&cfg, quick()).await;
    assert_eq!(push(&recv, "main", 0).await.0.status, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(controller.answered().is_empty());
    drop(recv);
    // With its CA: delivered.
    let with_ca = format!("{}    caPath: ca.pem\n", signed(&url));
    let cfg = config(dir.path(), &fluxd.api(), &with_ca);
    let recv = Recv::start(&cfg, quick()).await;
    let (reply, body) = push(&recv, "dev", 0).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = controller.take();
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].signature, Some(signature(TOKEN, &body)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_says_what_would_go_to_each_target() {
    let (fluxd, controller) = (FakeFluxd::start().await, Controller::start());
    controller.add(DIGEST, signed_receiver());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fluxd.api(), &signed(&controller.url(DIGEST)));
    let options = Options {
        dry_run: true,
        ..quick()
    };
    let recv = Recv::start(&cfg, options).await;
    let (reply, _) = push(&recv, "main", 0).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        "ok: dry run, fluxd and flux-receiver would be notified of 1 change(s)\n"
    );
    let logs = recv.logs.text();
    assert!(logs.contains("dry run: not sent to fluxd"), "{logs}");
    assert!(logs.contains("dry run: not sent"), "{logs}");
    assert!(
        logs.contains("X-Signature (HMAC-SHA256 with tokenPath's token)"),
        "{logs}"
    );
    assert!(controller.answered().is_empty());
    assert!(fluxd.take().is_empty());
}
