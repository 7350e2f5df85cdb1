//! Google's keys: reading a JWKS document strictly, the `--google-jwks-url`
//! rules, and when a fetch happens.

use flux_recv::gcr_auth::{check_url, Jwks, KeySet, TokenError, GOOGLE_JWKS_URL, MIN_REFRESH};
use flux_recv::logging::Captured;
use http::{HeaderMap, HeaderValue};
use rsa::traits::PublicKeyParts;
use serde_json::json;
use slog::Logger;

use crate::common::gcr_token::*;
use crate::{Answer, FakeJwks};

#[test]
fn jwks_documents_are_read_strictly() {
    let one = signing_key(KEY_ONE);
    let two = signing_key(KEY_TWO);
    // Google's shape, plus entries that are not RS256 signing keys.
    let doc = json!({"keys": [
        jwk("one", &one),
        jwk("two", &two),
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AA", "e": "AQAB"},
        {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AA", "e": "AQAB"},
    ]});
    let set = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.contains("one") && set.contains("two") && !set.contains("ec"));
    assert_eq!(format!("{set:?}"), r#"KeySet { kids: ["one", "two"] }"#);

    let mut no_kid = jwk("", &one);
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut small = jwk("small", &one);
    small["n"] = json!(b64(&one.n().to_bytes_be()[..128]));
    for (doc, want) in [
        (json!({"keys": []}), "no RS256"),
        (json!({"keys": [{"kty": "EC", "kid": "ec"}]}), "no RS256"),
        (json!({"nokeys": []}), "not a JWKS"),
        (json!([]), "not a JWKS"),
        (json!({"keys": [no_kid]}), "no kid"),
        (
            json!({"keys": [{"kty": "RSA", "kid": "k", "e": "AQAB"}]}),
            "n is missing",
        ),
        (
            json!({"keys": [{"kty": "RSA", "kid": "k", "n": "!!", "e": "AQAB"}]}),
            "n is missing",
        ),
        (
            json!({"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB"}]}),
            "e is missing",
        ),
        (json!({"keys": [small]}), "2048"),
    ] {
        let err = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains(want), "{doc}: {err}");
    }
    assert!(KeySet::from_jwks(b"<html>").is_err());
}

#[test]
fn the_jwks_fixture_publishes_the_first_test_key() {
    // testdata/gcr/jwks.json also seeds the fuzz target; it must not rot.
    let doc = json!({"keys": [jwk(KID, &signing_key(KEY_ONE))]});
    assert_eq!(google_jwks(), doc);
}

#[test]
fn jwks_url_must_be_https_except_on_loopback() {
    for good in [
        GOOGLE_JWKS_URL,
        "https://keys.example.com",
        "http://127.0.0.1:4000/certs",
        "http://localhost/certs",
        "http://[::1]:8080/",
    ] {
        assert!(check_url(good).is_ok(), "{good}");
    }
    for bad in [
        "http://www.googleapis.com/oauth2/v3/certs",
        "http://localhost.evil.example/",
        "http://[::2]/",
        "http://127.evil.example/",
        "https:///certs",
        "ftp://127.0.0.1/",
        "www.googleapis.com/oauth2/v3/certs",
        "",
    ] {
        assert!(check_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn jwks_url_with_userinfo_or_no_host_is_refused() {
    for bad in [
        // userinfo: everything before the `@` is not the host.
        "http://localhost:1@evil.example/certs",
        "http://localhost@evil.example",
        "http://127.0.0.1:80@evil.example/certs",
        "http://[::1]@evil.example/certs",
        "https://user:secret@www.googleapis.com/oauth2/v3/certs",
        // No host, or not written `scheme://host`.
        "https://",
        "http://",
        "https:///certs",
        "http:///localhost/certs",
        "http:\\\\localhost/certs",
        "https://:443/certs",
    ] {
        let err = check_url(bad).expect_err(bad);
        // The URL is repeated, unless it has userinfo (maybe a password).
        if bad.contains('@') {
            assert!(
                err.contains("userinfo") && !err.contains(bad),
                "{bad}: {err}"
            );
        } else {
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }
}

#[test]
fn the_checked_url_is_the_one_fetched() {
    // The fetch uses the URI as the parser read it, so a client that would
    // read the text otherwise never sees it: case folded where it does not
    // matter, and nothing a lenient parser would guess at.
    for (given, fetched) in [
        (
            "HTTP://LOCALHOST:8080/certs",
            Ok("http://localhost:8080/certs"),
        ),
        ("http://[::1]:8080", Ok("http://[::1]:8080/")),
        (GOOGLE_JWKS_URL, Ok(GOOGLE_JWKS_URL)),
        // A backslash is no URI character, and `127.1` no address.
        ("http://localhost\\@evil.example/certs", Err(())),
        ("http://127.1/certs", Err(())),
    ] {
        let url = check_url(given).map_err(|_| ());
        assert_eq!(url, fetched.map(String::from), "{given}");
    }
}

/// A push's headers with a genuine token for `endpoint_auth()`.
fn genuine() -> HeaderMap {
    let token = signed(KID, &claims_at(now()));
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    headers.insert("authorization", value);
    headers
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let google = FakeJwks::google().await;
    let redirector = FakeJwks::start(Answer::Redirect(google.url())).await;
    let logs = Captured::default();
    let log = logs.logger(slog::Level::Info);
    let jwks = Jwks::new(redirector.url(), MIN_REFRESH, log);
    // The keys behind the redirect would verify this token: not taken.
    let err = jwks
        .authenticate(&genuine(), &endpoint_auth())
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::UnknownKey(KID.into()));
    assert_eq!((redirector.fetches(), google.fetches()), (1, 0));
    let logged = logs.text();
    assert!(logged.contains("cannot refresh"), "{logged}");
    assert!(logged.contains("302"), "{logged}");
    assert!(logged.contains(&google.url()), "{logged}");
}

#[tokio::test]
async fn the_fetch_checks_the_url_it_is_given() {
    let google = FakeJwks::google().await;
    // Built without the flag's check: the fetch checks it again.
    let url = google.url().replace("http://", "http://user:pw@");
    let logs = Captured::default();
    let log = logs.logger(slog::Level::Info);
    let jwks = Jwks::new(url, MIN_REFRESH, log);
    let err = jwks
        .authenticate(&genuine(), &endpoint_auth())
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::UnknownKey(KID.into()));
    assert_eq!(google.fetches(), 0);
    let logged = logs.text();
    assert!(logged.contains("userinfo"), "{logged}");
    assert!(!logged.contains("pw@"), "{logged}");
}

fn quiet() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

#[tokio::test]
async fn a_token_is_checked_before_any_fetch() {
    let google = FakeJwks::google().await;
    let jwks = Jwks::new(google.url(), MIN_REFRESH, quiet());
    let err = jwks
        .authenticate(&HeaderMap::new(), &endpoint_auth())
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::MissingAuthorization);
    // A token whose header is not RS256 with a kid never makes us fetch.
    let mut headers = HeaderMap::new();
    let none = format!("{}.e30.", b64(br#"{"alg":"none","kid":"k"}"#));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {none}")).unwrap(),
    );
    let err = jwks
        .authenticate(&headers, &endpoint_auth())
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::Algorithm("none".into()));
    assert_eq!(google.fetches(), 0);
}
