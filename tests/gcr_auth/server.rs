//! Google Container Registry pushes with a `gcr:` block: the Google-signed
//! OIDC token on each Pub/Sub push is verified against a JWKS served on
//! loopback, before anything reaches the stand-in fluxd.

use std::time::Duration;

use clap::Parser;
use flux_recv::gcr_auth::MIN_REFRESH;
use flux_recv::options::Options;
use serde_json::{json, Value};

use crate::common::gcr_token::*;
use crate::common::*;
use crate::FakeJwks;

const GCR_KEY: &[u8] = b"0123456789abcdef-gcr-endpoint-key";
const REFUSED: &str = "the Pub/Sub push token is not valid\n";

/// Claims as Google puts them in a Pub/Sub push token for this endpoint.
fn claims() -> Value {
    claims_at(now())
}

/// flux-recv with one GCR endpoint (with `gcr_block` under it, if any) in
/// front of a stand-in fluxd, with `options`.
async fn start(
    dir: &std::path::Path,
    fluxd: &FakeFluxd,
    gcr_block: bool,
    options: Options,
) -> (Recv, String) {
    std::fs::write(dir.join("gcr.key"), GCR_KEY).unwrap();
    let mut endpoint = "- source: GoogleContainerRegistry\n  keyPath: gcr.key\n".to_string();
    if gcr_block {
        endpoint.push_str(&format!(
            "  gcr:\n    audience: {AUDIENCE}\n    email: {EMAIL}\n"
        ));
    }
    let config = write_config(dir, &fluxd.api(), &endpoint);
    let recv = Recv::start(&config, options).await;
    let hook = recv.url(&hook_path(GCR_KEY));
    (recv, hook)
}

/// [`start`] with a stand-in Google publishing the first test key, from
/// which keys are fetched at most once per `min_refresh`.
struct WithGoogle {
    fluxd: FakeFluxd,
    jwks: FakeJwks,
    recv: Recv,
    hook: String,
    /// The config's directory, kept for the test's duration.
    _dir: tempfile::TempDir,
}

impl WithGoogle {
    async fn start(gcr_block: bool, min_refresh: Duration) -> WithGoogle {
        let options = Options {
            google_jwks_min_refresh: min_refresh,
            ..Options::default()
        };
        WithGoogle::start_with(gcr_block, options).await
    }

    /// With `options`, their `google_jwks_url` pointing at the stand-in.
    async fn start_with(gcr_block: bool, options: Options) -> WithGoogle {
        let fluxd = FakeFluxd::start().await;
        let jwks = FakeJwks::google().await;
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            google_jwks_url: jwks.url(),
            ..options
        };
        let (recv, hook) = start(dir.path(), &fluxd, gcr_block, options).await;
        WithGoogle {
            fluxd,
            jwks,
            recv,
            hook,
            _dir: dir,
        }
    }
}

/// The Go original's GCR fixture: an INSERT of us.gcr.io/am/am.kebab.api.
fn push_with(authorization: Option<&str>) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(a) = authorization {
        headers.push(("Authorization".into(), a.into()));
    }
    (
        headers,
        std::fs::read(testdata().join("gcr_payload")).unwrap(),
    )
}

async fn push(hook: &str, authorization: Option<&str>) -> Reply {
    let (headers, body) = push_with(authorization);
    post(hook.to_string(), headers, body).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token as Google makes it for this endpoint, now.
fn genuine() -> String {
    signed(KID, &claims())
}

/// The status of a push carrying `token`.
async fn status(hook: &str, token: &str) -> u16 {
    push(hook, Some(&bearer(token))).await.status
}

fn gcr_notification() -> Value {
    image_change("us.gcr.io", "am/am.kebab.api")
}

#[tokio::test]
async fn a_google_signed_push_reaches_fluxd() {
    let gcr = WithGoogle::start(true, MIN_REFRESH).await;

    let reply = push(&gcr.hook, Some(&bearer(&genuine()))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(gcr.fluxd.take(), vec![gcr_notification()]);
    assert_eq!(gcr.jwks.fetches(), 1);

    // The keys are cached: the next push does not fetch them again.
    let reply = push(&gcr.hook, Some(&bearer(&genuine()))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(gcr.fluxd.take().len(), 1);
    assert_eq!(gcr.jwks.fetches(), 1);
    assert!(gcr
        .recv
        .logs
        .text()
        .contains("fetched Google's token signing keys"));
}

#[tokio::test]
async fn every_failed_check_is_401_and_nothing_reaches_fluxd() {
    let gcr = WithGoogle::start(true, MIN_REFRESH).await;
    let now = now();
    let other_key = signing_key(KEY_TWO);
    let one = signing_key(KEY_ONE);
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": KID}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no Authorization", None, "authorization"),
        (
            "not Bearer",
            Some(format!("Basic {}", signed(KID, &claims()))),
            "authorization",
        ),
        ("not a JWT", Some(bearer("not.a.jwt")), "format"),
        (
            "signed with another key",
            Some(bearer(&sign(
                &json!({"alg": "RS256", "kid": KID}),
                &claims(),
                &other_key,
            ))),
            "signature",
        ),
        ("alg none", Some(bearer(&unsigned)), "alg"),
        (
            "alg HS256",
            Some(bearer(&sign(
                &json!({"alg": "HS256", "kid": KID}),
                &claims(),
                &one,
            ))),
            "alg",
        ),
        (
            "unknown kid",
            Some(bearer(&signed("not-published", &claims()))),
            "kid",
        ),
        (
            "expired",
            Some(bearer(&signed(
                KID,
                &with(claims(), "exp", json!(now - 3600)),
            ))),
            "exp",
        ),
        (
            "issued in the future",
            Some(bearer(&signed(
                KID,
                &with(claims(), "iat", json!(now + 600)),
            ))),
            "iat",
        ),
        (
            "wrong issuer",
            Some(bearer(&signed(
                KID,
                &with(claims(), "iss", json!("https://evil.example.com")),
            ))),
            "iss",
        ),
        (
            "wrong audience",
            Some(bearer(&signed(
                KID,
                &with(claims(), "aud", json!("https://other.example.com/hook")),
            ))),
            "aud",
        ),
        (
            "another service account",
            Some(bearer(&signed(
                KID,
                &with(
                    claims(),
                    "email",
                    json!("attacker@other.iam.gserviceaccount.com"),
                ),
            ))),
            "email",
        ),
        (
            "email not verified",
            Some(bearer(&signed(
                KID,
                &with(claims(), "email_verified", json!(false)),
            ))),
            "email_verified",
        ),
        (
            "email_verified missing",
            Some(bearer(&signed(KID, &without(claims(), "email_verified")))),
            "email_verified",
        ),
    ];

    for (name, authorization, check) in &cases {
        let before = gcr.recv.logs.text().len();
        let reply = push(&gcr.hook, authorization.as_deref()).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.body);
        assert_eq!(reply.body, REFUSED, "{name}");
        let logged = gcr.recv.logs.text()[before..].to_string();
        assert!(
            logged.contains(&format!("check: {check},")),
            "{name}: {logged}"
        );
        // The log says which check failed, and never shows the token.
        if let Some(a) = authorization {
            let token = a.rsplit(' ').next().unwrap();
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!logged.contains(part), "{name}: token in the log");
            }
        }
    }
    assert!(gcr.fluxd.take().is_empty());
    // One fetch on first use; the unknown kid came within the rate limit.
    assert_eq!(gcr.jwks.fetches(), 1);
}

/// The `fluxrecv_gcr_token_refusals_total` sample for `check`, from
/// `/metrics`.
async fn refusals_counted(recv: &Recv, check: &str) -> String {
    let metrics = get(recv.url("/metrics")).await.body;
    let prefix = format!("fluxrecv_gcr_token_refusals_total{{check=\"{check}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
        .to_string()
}

#[tokio::test]
async fn refused_tokens_are_logged_within_the_budget_and_all_counted() {
    const BUDGET: u64 = 2;
    let options = Options {
        refusal_logs_per_second: BUDGET,
        ..Options::default()
    };
    let gcr = WithGoogle::start_with(true, options).await;
    let forged = sign(
        &json!({"alg": "RS256", "kid": KID}),
        &claims(),
        &signing_key(KEY_TWO),
    );
    let logged = |text: &str| text.lines().filter(|l| l.contains("hook refused")).count() as u64;

    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(status(&gcr.hook, &forged).await, 401);
    }
    // The budget holds in each second the flood touched (however slow the
    // machine), far below one line a refusal.
    let seconds = started.elapsed().as_secs() + 2;
    let flood = logged(&gcr.recv.logs.text());
    assert!(
        flood >= 1 && flood <= BUDGET * seconds,
        "{flood} lines over {seconds} s:\n{}",
        gcr.recv.logs.text()
    );
    assert_eq!(refusals_counted(&gcr.recv, "signature").await, "20");

    // A second later the next refusal is logged, after a line saying how
    // many since the last logged one were not: every refusal is either
    // logged or counted in such a line.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&gcr.hook, &forged).await, 401);
    let text = gcr.recv.logs.text();
    let summaries: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("refused hooks not logged: over the log budget"))
        .collect();
    let suppressed: u64 = summaries
        .iter()
        .map(|l| {
            assert!(l.contains("budget_per_second: 2"), "{l}");
            let n = l.split("suppressed: ").nth(1).expect("a count");
            n.split(',').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(logged(&text), flood + 1, "{text}");
    assert_eq!(logged(&text) + suppressed, 21, "{text}");
    assert_eq!(refusals_counted(&gcr.recv, "signature").await, "21");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_accepted() {
    let min_refresh = Duration::from_millis(300);
    let gcr = WithGoogle::start(true, min_refresh).await;
    let new_key = signing_key(KEY_TWO);
    let rotated = || {
        sign(
            &json!({"alg": "RS256", "kid": NEW_KID, "typ": "JWT"}),
            &claims(),
            &new_key,
        )
    };

    assert_eq!(status(&gcr.hook, &genuine()).await, 200);
    assert_eq!(gcr.jwks.fetches(), 1);

    // Google publishes a new key, then signs with it.
    gcr.jwks.publish(json!({"keys": [
        jwk(KID, &signing_key(KEY_ONE)),
        jwk(NEW_KID, &new_key),
    ]}));
    tokio::time::sleep(min_refresh + Duration::from_millis(100)).await;
    let reply = push(&gcr.hook, Some(&bearer(&rotated()))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(gcr.jwks.fetches(), 2);

    // Both keys are now known; neither makes us fetch again.
    tokio::time::sleep(min_refresh + Duration::from_millis(100)).await;
    assert_eq!(status(&gcr.hook, &rotated()).await, 200);
    assert_eq!(status(&gcr.hook, &genuine()).await, 200);
    assert_eq!(gcr.jwks.fetches(), 2);
    assert_eq!(gcr.fluxd.take().len(), 4);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_keys_once() {
    let gcr = WithGoogle::start(true, MIN_REFRESH).await;

    // 60 pushes naming made-up keys, 20 at a time, on a fresh server: the
    // first fetch is shared by those waiting for it, and the rest fall
    // inside the 30 s rate limit.
    for round in 0..3 {
        let pushes = (0..20).map(|i| {
            let hook = gcr.hook.clone();
            let token = signed(&format!("random-{round}-{i}"), &claims());
            tokio::spawn(async move { push(&hook, Some(&bearer(&token))).await })
        });
        for reply in futures_util::future::join_all(pushes).await {
            assert_eq!(reply.unwrap().status, 401);
        }
    }
    assert_eq!(gcr.jwks.fetches(), 1);
    // A genuine push still gets through, on the keys fetched then.
    assert_eq!(status(&gcr.hook, &genuine()).await, 200);
    assert_eq!(gcr.jwks.fetches(), 1);
    assert_eq!(gcr.fluxd.take(), vec![gcr_notification()]);
}

#[tokio::test]
async fn unreachable_keys_refuse_every_push() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        google_jwks_url: format!("http://{}/oauth2/v3/certs", dead_addr()),
        ..Options::default()
    };
    let (recv, hook) = start(dir.path(), &fluxd, true, options).await;
    let reply = push(&hook, Some(&bearer(&genuine()))).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(fluxd.take().is_empty());
    let logs = recv.logs.text();
    assert!(
        logs.contains("cannot refresh Google's token signing keys"),
        "{logs}"
    );
    assert!(logs.contains("check: kid,"), "{logs}");
}

#[tokio::test]
async fn a_key_server_error_keeps_the_keys_we_have() {
    let min_refresh = Duration::from_millis(100);
    let gcr = WithGoogle::start(true, min_refresh).await;
    assert_eq!(status(&gcr.hook, &genuine()).await, 200);
    // The key server starts serving garbage; an unknown kid makes us fetch it.
    gcr.jwks.publish(json!({"keys": []}));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&gcr.hook, &signed("new", &claims())).await, 401);
    assert_eq!(gcr.jwks.fetches(), 2);
    // The good key is still there.
    assert_eq!(status(&gcr.hook, &genuine()).await, 200);
    assert_eq!(gcr.fluxd.take().len(), 2);
}

#[tokio::test]
async fn without_a_gcr_block_pushes_are_unverified_and_google_is_never_asked() {
    let gcr = WithGoogle::start(false, MIN_REFRESH).await;
    let reply = push(&gcr.hook, None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = push(&gcr.hook, Some("Bearer not.even.a-token")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(gcr.fluxd.take().len(), 2);
    assert_eq!(gcr.jwks.fetches(), 0);
    let table = gcr.recv.service.table().load_full();
    assert!(!table.endpoints()[0].verifies_sender());
}

#[test]
fn the_jwks_url_flag_defaults_to_google_and_must_be_https() {
    let cli = flux_recv::cli::Cli::try_parse_from(["flux-recv"]).unwrap();
    assert_eq!(
        cli.serve.google_jwks_url,
        "https://www.googleapis.com/oauth2/v3/certs"
    );
    let cli = flux_recv::cli::Cli::try_parse_from([
        "flux-recv",
        "--google-jwks-url",
        "http://127.0.0.1:9999/certs",
    ])
    .unwrap();
    assert_eq!(cli.serve.google_jwks_url, "http://127.0.0.1:9999/certs");
    let err = flux_recv::cli::Cli::try_parse_from([
        "flux-recv",
        "--google-jwks-url",
        "http://www.googleapis.com/oauth2/v3/certs",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("must be an https:// URL"), "{err}");
}
