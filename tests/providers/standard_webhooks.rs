//! Signatures that cover a delivery's id and time (Standard Webhooks), end
//! to end through the real server to a stand-in fluxd: a GitLab endpoint
//! keyed with a signing token, a StandardWebhooks endpoint, and a GitLab
//! endpoint keyed with a plain secret token beside them. Signed deliveries
//! are relayed; tampered, stale and future ones, and a GitLab delivery with
//! only its secret token, are refused 401 with nothing sent; a repeated id
//! is acknowledged and not sent again (once, even when the copies arrive
//! together), unless the first was refused for want of room; the plain
//! token works as it always did.

use crate::common;

use std::time::Duration;

use common::*;
use flux_recv::options::Options;
use flux_recv::source::stamped::{self, unix_now, Stamp};
use flux_recv::source::{SampleRequest, Source};
use serde_json::Value;

/// GitLab's signing token (`whsec_` and 32 bytes, as GitLab makes them).
const GITLAB_SIGNING: &[u8] = b"whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=";
/// A plain GitLab secret token.
const GITLAB_TOKEN: &[u8] = b"0123456789abcdef-gitlab-token";
/// The StandardWebhooks endpoint's secret: the Rust library's test secret
/// (standard-webhooks/standard-webhooks, `libraries/rust/src/lib.rs`).
const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

const STALE: &str = "the signature is stale: webhook-timestamp is outside the accepted window";

fn config(dir: &std::path::Path, api: &str) -> std::path::PathBuf {
    for (file, key) in [
        ("gitlab-signing.key", GITLAB_SIGNING),
        ("gitlab-token.key", GITLAB_TOKEN),
        ("swh.key", SECRET),
    ] {
        std::fs::write(dir.join(file), key).unwrap();
    }
    write_config(
        dir,
        api,
        "- source: GitLab\n  keyPath: gitlab-signing.key\n\
         - source: GitLab\n  keyPath: gitlab-token.key\n\
         - source: StandardWebhooks\n  keyPath: swh.key\n  \
           notify: {git: {url: 'git@example.com:org/config.git', branch: main}}\n",
    )
}

async fn start(options: Options) -> (FakeFluxd, tempfile::TempDir, Recv) {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, options).await;
    (fluxd, dir, recv)
}

fn gitlab_change() -> Value {
    git_change("git@gitlab.com:example/app.git", "main")
}

fn swh_change() -> Value {
    git_change("git@example.com:org/config.git", "main")
}

/// A push sample for `source` signed with `key`, with this id and time.
fn sample(source: &str, key: &[u8], id: &str, sent_at: u64) -> (Vec<(String, String)>, Vec<u8>) {
    let d = Source::named(source)
        .sample(&SampleRequest {
            delivery_id: id,
            sent_at,
            ..SampleRequest::push(key)
        })
        .unwrap();
    (headers_of(&d), d.body)
}

/// `headers` with `name`'s value replaced (or added).
fn with(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    h.push((name.to_string(), value.to_string()));
    h
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name}"))
}

async fn deliver(
    recv: &Recv,
    key: &[u8],
    (headers, body): (Vec<(String, String)>, Vec<u8>),
) -> Reply {
    post(recv.url(&hook_path(key)), headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_are_relayed_and_tampered_ones_refused() {
    let (fluxd, _dir, recv) = start(Options::default()).await;
    let now = unix_now();
    for (source, key, change) in [
        ("GitLab", GITLAB_SIGNING, gitlab_change()),
        ("StandardWebhooks", SECRET, swh_change()),
    ] {
        let (headers, body) = sample(source, key, &format!("{source}-signed"), now);
        let reply = deliver(&recv, key, (headers.clone(), body.clone())).await;
        assert_eq!(reply.status, 200, "{source}: {}", reply.body);
        assert_eq!(fluxd.take(), vec![change], "{source}");

        // The body changed after signing, another id or time under the
        // same signature, a signature made with another secret.
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        let (other_key, _) = sample(source, b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "x", now);
        let signature = value(&other_key, stamped::SIGNATURE);
        for (what, case) in [
            ("tampered body", (headers.clone(), tampered)),
            (
                "other id",
                (with(&headers, stamped::ID, "another-id"), body.clone()),
            ),
            (
                "other time",
                (
                    with(&headers, stamped::TIMESTAMP, &(now + 1).to_string()),
                    body.clone(),
                ),
            ),
            (
                "other secret",
                (with(&headers, stamped::SIGNATURE, signature), body.clone()),
            ),
        ] {
            let reply = deliver(&recv, key, case).await;
            assert_eq!(reply.status, 401, "{source} {what}: {}", reply.body);
            assert_eq!(
                reply.body, "webhook-signature does not match\n",
                "{source} {what}"
            );
            assert_eq!(fluxd.take(), Vec::<Value>::new(), "{source} {what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_valid_signature_among_several_is_enough() {
    let (fluxd, _dir, recv) = start(Options::default()).await;
    let now = unix_now();
    let (headers, body) = sample("StandardWebhooks", SECRET, "rotating", now);
    let good = value(&headers, stamped::SIGNATURE).to_string();
    let old = stamped::sign(
        b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &Stamp {
            id: "rotating".into(),
            timestamp: now,
        },
        &body,
    );
    // The sender rotating its secret signs with both, and may add an
    // asymmetric (v1a) signature flux-recv skips.
    let v1a = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==";
    let several = format!("{old} {v1a} {good}");
    let reply = deliver(
        &recv,
        SECRET,
        (with(&headers, stamped::SIGNATURE, &several), body.clone()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fluxd.take(), vec![swh_change()]);

    let (headers, body) = sample("StandardWebhooks", SECRET, "rotating-2", now);
    let none_valid = format!("{old} {v1a} {}", good.replacen("v1,", "v2,", 1));
    let reply = deliver(
        &recv,
        SECRET,
        (with(&headers, stamped::SIGNATURE, &none_valid), body),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(fluxd.take(), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_future_signatures_are_refused_saying_only_that() {
    let (fluxd, _dir, recv) = start(Options::default()).await;
    let now = unix_now();
    for (source, key) in [("GitLab", GITLAB_SIGNING), ("StandardWebhooks", SECRET)] {
        // Five minutes either way pass (a clock that is off); past them,
        // the same reply whether the signature matches or not, and whether
        // the time is past or future.
        for (offset, ok) in [
            (-290i64, true),
            (290, true),
            (-400, false),
            (400, false),
            (-86_400, false),
        ] {
            let at = now.checked_add_signed(offset).unwrap();
            let id = format!("{source}{offset}");
            let (headers, body) = sample(source, key, &id, at);
            let forged = with(
                &headers,
                stamped::SIGNATURE,
                "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            );
            if ok {
                let reply = deliver(&recv, key, (headers, body)).await;
                assert_eq!(reply.status, 200, "{source} {offset}: {}", reply.body);
                assert_eq!(fluxd.take().len(), 1);
            } else {
                for case in [(headers, body.clone()), (forged, body)] {
                    let reply = deliver(&recv, key, case).await;
                    assert_eq!(reply.status, 401, "{source} {offset}");
                    assert_eq!(reply.body, format!("{STALE}\n"), "{source} {offset}");
                    assert_eq!(fluxd.take(), Vec::<Value>::new());
                }
            }
        }
    }
    // Refused before the body is read: a body over --max-body would get 413.
    let (headers, _) = sample("StandardWebhooks", SECRET, "huge", now - 3600);
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000000000\r\n",
        hook_path(SECRET)
    );
    for (k, v) in &headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let reply = raw(recv.addr, request.into_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(reply.contains(STALE), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tolerance_is_the_flags() {
    let options = Options {
        signature_tolerance: Duration::from_secs(60),
        ..Options::default()
    };
    let (fluxd, _dir, recv) = start(options).await;
    let now = unix_now();
    let reply = deliver(
        &recv,
        SECRET,
        sample("StandardWebhooks", SECRET, "a", now - 50),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fluxd.take().len(), 1);
    let reply = deliver(
        &recv,
        SECRET,
        sample("StandardWebhooks", SECRET, "b", now - 90),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, format!("{STALE}\n").as_str())
    );
    // The window a repeat is acknowledged in is the same.
    let reply = deliver(
        &recv,
        SECRET,
        sample("StandardWebhooks", SECRET, "a", now - 50),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("within the last 60 s"),
        "{}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_is_acknowledged_and_nothing_is_sent_again() {
    let (fluxd, _dir, recv) = start(Options::default()).await;
    let now = unix_now();
    for (source, key, change) in [
        ("GitLab", GITLAB_SIGNING, gitlab_change()),
        ("StandardWebhooks", SECRET, swh_change()),
    ] {
        let first = sample(source, key, "msg_1", now);
        let reply = deliver(&recv, key, first.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(fluxd.take(), vec![change.clone()]);

        // The same delivery again (a replay, or a lost reply retried), and
        // the sender's retry signed anew a little later: both acknowledged,
        // nothing sent.
        for again in [first.clone(), sample(source, key, "msg_1", now + 30)] {
            let reply = deliver(&recv, key, again).await;
            assert_eq!(reply.status, 200, "{source}: {}", reply.body);
            assert_eq!(
                reply.body,
                "ok: nothing to do (a delivery with this webhook-id was accepted within the \
                 last 5 min; nothing was sent again)\n"
            );
            assert_eq!(fluxd.take(), Vec::<Value>::new(), "{source}");
        }
        // Another id is another delivery.
        let reply = deliver(&recv, key, sample(source, key, "msg_2", now)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(fluxd.take(), vec![change]);
    }
    let logs = recv.logs.text();
    assert_eq!(logs.matches("outcome: replayed").count(), 4, "{logs}");
    assert!(logs.contains("delivery: msg_1"), "{logs}");
    let metrics = get(recv.url("/metrics")).await.body;
    for source in ["GitLab", "StandardWebhooks"] {
        let line = format!("fluxrecv_hooks_total{{source=\"{source}\",outcome=\"replayed\"}} 2");
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_deliveries_at_once_are_accepted_once() {
    let (fluxd, _dir, recv) = start(Options::default()).await;
    fluxd.set(Behaviour::Delay(200));
    let delivery = sample("StandardWebhooks", SECRET, "at-once", unix_now());
    let replies =
        futures_util::future::join_all((0..8).map(|_| deliver(&recv, SECRET, delivery.clone())))
            .await;
    let relayed = replies
        .iter()
        .filter(|r| r.body.starts_with("ok: notified"))
        .count();
    let repeats = replies
        .iter()
        .filter(|r| r.body.contains("was accepted within"))
        .count();
    assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
    assert_eq!((relayed, repeats), (1, 7), "{replies:?}");
    assert_eq!(fluxd.take(), vec![swh_change()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_refused_for_want_of_room_keeps_its_id() {
    // Room for one notification; fluxd takes its time with it.
    let options = Options {
        max_pending: 1,
        reply_budget: Duration::from_millis(50),
        ..Options::default()
    };
    let (fluxd, _dir, recv) = start(options).await;
    fluxd.set(Behaviour::Delay(1000));
    let now = unix_now();
    let (headers, body) = sample("GitLab", GITLAB_TOKEN, "x", now);
    let reply = deliver(&recv, GITLAB_TOKEN, (headers, body)).await;
    assert_eq!(reply.status, 202, "{}", reply.body);

    let delivery = sample("StandardWebhooks", SECRET, "full", now);
    let reply = deliver(&recv, SECRET, delivery.clone()).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    // Once there is room, the sender's retry with the same id is relayed,
    // and only then is the id used up.
    eventually_async("the retry is taken", Duration::from_secs(10), || {
        let delivery = delivery.clone();
        let recv = &recv;
        async move {
            let reply = deliver(recv, SECRET, delivery).await;
            assert!(
                !reply.body.contains("was accepted within"),
                "{}",
                reply.body
            );
            reply.status != 503
        }
    })
    .await;
    let reply = deliver(&recv, SECRET, delivery).await;
    assert!(reply.body.contains("was accepted within"), "{}", reply.body);
    eventually("both notifications arrive", Duration::from_secs(10), || {
        fluxd.received.lock().unwrap().len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_with_a_signing_token_refuses_the_secret_token_alone() {
    let (fluxd, _dir, recv) = start(Options::default()).await;
    let (headers, body) = sample("GitLab", GITLAB_TOKEN, "t", unix_now());
    for token in [GITLAB_SIGNING, GITLAB_TOKEN, b"anything"] {
        let h = with(
            &headers,
            "X-Gitlab-Token",
            std::str::from_utf8(token).unwrap(),
        );
        let reply = deliver(&recv, GITLAB_SIGNING, (h, body.clone())).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.body, "missing webhook-signature header\n");
    }
    assert_eq!(fluxd.take(), Vec::<Value>::new());
    let logs = recv.logs.text();
    let signing = std::str::from_utf8(GITLAB_SIGNING).unwrap();
    assert!(
        !logs.contains(&signing[6..]),
        "the signing token reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_gitlab_token_works_as_before() {
    let (fluxd, _dir, recv) = start(Options::default()).await;
    let (headers, body) = sample("GitLab", GITLAB_TOKEN, "same-id", unix_now());
    assert_eq!(value(&headers, "X-Gitlab-Token").as_bytes(), GITLAB_TOKEN);
    // A static token proves nothing about when: the same delivery again is
    // sent again, as it always was.
    for _ in 0..2 {
        let reply = deliver(&recv, GITLAB_TOKEN, (headers.clone(), body.clone())).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(fluxd.take(), vec![gitlab_change()]);
    }
    // A wrong token, and a signed delivery without the token.
    let reply = deliver(
        &recv,
        GITLAB_TOKEN,
        (with(&headers, "X-Gitlab-Token", "nope"), body.clone()),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, "X-Gitlab-Token does not match\n")
    );
    let signed = sample("GitLab", GITLAB_SIGNING, "s", unix_now());
    let reply = deliver(&recv, GITLAB_TOKEN, signed).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, "missing X-Gitlab-Token header\n")
    );
    assert_eq!(fluxd.take(), Vec::<Value>::new());
}
