//! Known answers: each HMAC-signed source checked against signatures that
//! someone other than this project computed, so that a wrong header, a
//! wrong algorithm or a wrong encoding, used the same way by a source's
//! `handle` and its `sample` (and so by every other test), fails here.
//! Each vector names where it was published. The signatures are written
//! out as published, never computed with this project's `sign` helpers.

use flux_recv::notification::Change;
use flux_recv::source::{HookError, HookResult, Outcome, Secret, Settings, Source};
use http::HeaderMap;

/// GitHub's documented example ("Validating webhook deliveries",
/// docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries,
/// "Testing the webhook payload validation"): this secret and payload give
/// this HMAC-SHA256, sent as `X-Hub-Signature-256: sha256=<hex>`.
const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
const GITHUB_PAYLOAD: &[u8] = b"Hello, World!";
const GITHUB_DIGEST: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

/// The same digest with its last hex digit changed.
fn tampered(digest: &str) -> String {
    let last = if digest.ends_with('0') { "1" } else { "0" };
    format!("{}{last}", &digest[..digest.len() - 1])
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    h
}

fn keyed(key: &[u8]) -> Settings {
    Settings {
        key: Secret::new(key.to_vec()),
        ..Settings::default()
    }
}

fn handle(source: &str, pairs: &[(&str, &str)], body: &[u8], key: &[u8]) -> HookResult {
    Source::named(source).handle(&headers(pairs), body, &keyed(key))
}

#[test]
fn github_documented_example() {
    let signed = format!("sha256={GITHUB_DIGEST}");
    let ping = |signature: &str, key: &[u8]| {
        handle(
            "GitHub",
            &[
                ("X-GitHub-Event", "ping"),
                ("X-Hub-Signature-256", signature),
            ],
            GITHUB_PAYLOAD,
            key,
        )
    };
    assert_eq!(
        ping(&signed, GITHUB_SECRET),
        Ok(Outcome::Ignore("ping".into()))
    );
    let bad = Err(HookError::BadSignature("X-Hub-Signature-256"));
    assert_eq!(
        ping(
            &format!("sha256={}", tampered(GITHUB_DIGEST)),
            GITHUB_SECRET
        ),
        bad
    );
    assert_eq!(ping(&signed, b"It's a secret to everybody"), bad);
    assert_eq!(ping(GITHUB_DIGEST, GITHUB_SECRET), bad);
}

/// Gitea signs the payload with HMAC-SHA256 and sends the bare hex digest
/// in `X-Gitea-Signature`, the same digest GitHub-style in
/// `X-Hub-Signature-256` (go-gitea/gitea, services/webhook/deliver.go,
/// `Deliver`). So GitHub's documented example is a Gitea one too. For a
/// form-encoded hook, Gitea signs the JSON payload, not the form it sends
/// (the same function: `t.PayloadContent` is signed, `payload=<it>` sent).
#[test]
fn gitea_signs_as_its_delivery_code_does() {
    let event = ("X-Gitea-Event", "create");
    let ignored = Ok(Outcome::Ignore("create event".into()));
    let signed = [event, ("X-Gitea-Signature", GITHUB_DIGEST)];
    assert_eq!(
        handle("Gitea", &signed, GITHUB_PAYLOAD, GITHUB_SECRET),
        ignored
    );
    let form = [
        event,
        ("X-Gitea-Signature", GITHUB_DIGEST),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    assert_eq!(
        handle("Gitea", &form, b"payload=Hello%2C+World%21", GITHUB_SECRET),
        ignored
    );
    let bad = Err(HookError::BadSignature("X-Gitea-Signature"));
    for wrong in [tampered(GITHUB_DIGEST), format!("sha256={GITHUB_DIGEST}")] {
        let h = [event, ("X-Gitea-Signature", wrong.as_str())];
        assert_eq!(handle("Gitea", &h, GITHUB_PAYLOAD, GITHUB_SECRET), bad);
    }
}

/// Forgejo (a fork of Gitea) sends the same digest in its own
/// `X-Forgejo-Signature` and in Gitea's header, with its own and Gitea's
/// event headers (forgejo.org/docs/latest/user/webhooks, "Event
/// information"; the signing is Gitea's `Deliver`).
#[test]
fn forgejo_signs_as_gitea_does_under_its_own_header() {
    for pairs in [
        [
            ("X-Forgejo-Event", "create"),
            ("X-Forgejo-Signature", GITHUB_DIGEST),
        ],
        [
            ("X-Gitea-Event", "create"),
            ("X-Gitea-Signature", GITHUB_DIGEST),
        ],
    ] {
        assert_eq!(
            handle("Forgejo", &pairs, GITHUB_PAYLOAD, GITHUB_SECRET),
            Ok(Outcome::Ignore("create event".into())),
            "{pairs:?}"
        );
    }
    let wrong = tampered(GITHUB_DIGEST);
    let h = [
        ("X-Forgejo-Event", "create"),
        ("X-Forgejo-Signature", wrong.as_str()),
    ];
    assert_eq!(
        handle("Forgejo", &h, GITHUB_PAYLOAD, GITHUB_SECRET),
        Err(HookError::BadSignature("X-Forgejo-Signature"))
    );
}

/// Gogs: `X-Gogs-Signature` is "the HMAC-SHA256 hex digest of the payload,
/// computed using the webhook secret" (gogs.io/advancing/webhooks, "Event
/// headers"); Gitea sends the same header and digest for Gogs receivers.
/// A whole push as well: go-playground/webhooks (MIT), gogs/gogs_test.go
/// `TestWebhooks` "PushEvent": secret `sampleToken!`, its
/// testdata/gogs/push-event.json (copied unchanged as
/// testdata/gogs/go-playground-push.json) and this signature.
#[test]
fn gogs_documented_digest_and_a_librarys_push() {
    let pairs = [
        ("X-Gogs-Event", "create"),
        ("X-Gogs-Signature", GITHUB_DIGEST),
    ];
    assert_eq!(
        handle("Gogs", &pairs, GITHUB_PAYLOAD, GITHUB_SECRET),
        Ok(Outcome::Ignore("create event".into()))
    );

    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/gogs/go-playground-push.json"),
    )
    .unwrap();
    let signature = "83d4163fb936904aeb9ffd6ce22cf86e4b36273b2e1c63a57f5a6ddc371ce3ba";
    let push = |signature: &str| {
        handle(
            "Gogs",
            &[
                ("Content-Type", "application/json"),
                ("X-Gogs-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
                ("X-Gogs-Event", "push"),
                ("X-Gogs-Signature", signature),
            ],
            &body,
            b"sampleToken!",
        )
    };
    assert_eq!(
        push(signature),
        Ok(Outcome::Notify(vec![
            Change::git(
                "ssh://unknwon@localhost:2222/unknwon/webhooks.git",
                "develop"
            ),
            Change::git("http://localhost:3000/unknwon/webhooks.git", "develop"),
        ]))
    );
    assert_eq!(
        push(&tampered(signature)),
        Err(HookError::BadSignature("X-Gogs-Signature"))
    );
}

/// Bitbucket Cloud signs the body with HMAC-SHA256 keyed with the
/// webhook's secret and sends `X-Hub-Signature: sha256=<hex>`
/// (support.atlassian.com/bitbucket-cloud/docs/manage-webhooks, "Secure
/// webhooks"; bitbucket.org/blog/enhanced-webhook-security): for GitHub's
/// example, GitHub's digest. The payload is no push, so a delivery that
/// passes the signature is refused for its content, not its signature.
#[test]
fn bitbucket_cloud_signs_the_body_as_documented() {
    let push = |signature: &str| {
        handle(
            "BitbucketCloud",
            &[("X-Event-Key", "repo:push"), ("X-Hub-Signature", signature)],
            GITHUB_PAYLOAD,
            GITHUB_SECRET,
        )
    };
    let e = push(&format!("sha256={GITHUB_DIGEST}")).unwrap_err();
    assert!(matches!(e, HookError::BadPayload(_)), "{e:?}");
    let bad = Err(HookError::BadSignature("X-Hub-Signature"));
    assert_eq!(push(&format!("sha256={}", tampered(GITHUB_DIGEST))), bad);
    assert_eq!(push(GITHUB_DIGEST), bad);
}

/// GenericHMAC: `X-Signature: <algorithm>=<hex>`, an HMAC of the raw body
/// (docs/providers.md, "GenericHMAC"). The HMACs are the standards' own
/// test vectors: RFC 4231 test case 2 (HMAC-SHA256, HMAC-SHA512) and
/// RFC 2202 test case 2 (HMAC-SHA1), key "Jefe", data "what do ya want for
/// nothing?"; and GitHub's example.
#[test]
fn generic_hmac_takes_the_rfc_test_vectors() {
    let notify = vec![Change::git("git@github.com:org/app.git", "main")];
    let settings = |key: &[u8]| Settings {
        notify: notify.clone(),
        ..keyed(key)
    };
    let hmac = Source::named("GenericHMAC");
    let jefe = b"what do ya want for nothing?";
    for (key, body, signature) in [
        (
            &b"Jefe"[..],
            &jefe[..],
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            b"Jefe",
            jefe,
            "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
        (
            b"Jefe",
            jefe,
            "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        ),
        (
            GITHUB_SECRET,
            GITHUB_PAYLOAD,
            &format!("sha256={GITHUB_DIGEST}"),
        ),
    ] {
        let h = headers(&[("X-Signature", signature)]);
        assert_eq!(
            hmac.handle(&h, body, &settings(key)),
            Ok(Outcome::Notify(notify.clone())),
            "{signature}"
        );
        let h = headers(&[("X-Signature", &tampered(signature))]);
        assert_eq!(
            hmac.handle(&h, body, &settings(key)),
            Err(HookError::BadSignature("X-Signature")),
            "{signature}"
        );
    }
}
