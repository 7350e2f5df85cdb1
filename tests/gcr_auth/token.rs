//! Every check on a Pub/Sub push token, at a fixed clock, each refused
//! with its own error; and where the token comes from.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flux_recv::gcr_auth::{Claims, GcrAuth, KeySet, Token, TokenError, ISSUERS, SKEW};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use crate::common::gcr_token::*;
use crate::common::testdata;

const NOW: u64 = 1_700_000_000;

/// Google's claims for this endpoint, issued at `NOW`.
fn claims() -> Value {
    claims_at(NOW)
}

fn check(token: &str) -> Result<Claims, TokenError> {
    check_at(token, NOW)
}

fn check_at(token: &str, now: u64) -> Result<Claims, TokenError> {
    Token::parse(token)?.verify(&google_keys(), &endpoint_auth(), now)
}

/// Check Google's token with `field` of its claims set to `value`.
fn check_with(field: &str, value: Value) -> Result<Claims, TokenError> {
    check(&signed(KID, &with(claims(), field, value)))
}

/// Check Google's token without `field` in its claims.
fn check_without(field: &str) -> Result<Claims, TokenError> {
    check(&signed(KID, &without(claims(), field)))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn a_google_token_for_this_endpoint_passes() {
    assert_eq!(
        check(&signed(KID, &claims())),
        Ok(Claims {
            email: EMAIL.into(),
            exp: NOW + 3600
        })
    );
}

#[test]
fn both_issuer_spellings_pass() {
    for iss in ISSUERS {
        assert!(check_with("iss", json!(iss)).is_ok(), "{iss}");
    }
}

/// The claims Google's tokeninfo showed for a real GCR push (kept from
/// the Go original's tests): strings for times and `email_verified`.
#[test]
fn the_tokeninfo_fixture_passes_with_its_own_audience_and_email() {
    let fixture: Value =
        serde_json::from_slice(&std::fs::read(testdata().join("gcr_auth_result")).unwrap())
            .unwrap();
    let token = signed(KID, &fixture);
    let expect = GcrAuth {
        audience: "gcr-update".into(),
        email: "gcr-publisher@iam.gserviceaccount.com".into(),
    };
    let verified = Token::parse(&token)
        .unwrap()
        .verify(&google_keys(), &expect, 1_580_356_546 + 600)
        .unwrap();
    assert_eq!(verified.exp, 1_580_360_146);
    // And an hour and more later it has expired.
    let err = Token::parse(&token)
        .unwrap()
        .verify(&google_keys(), &expect, 1_580_360_146 + SKEW)
        .unwrap_err();
    assert_eq!(err.check(), "exp");
}

#[test]
fn a_signature_that_does_not_verify_is_refused() {
    let token = signed(KID, &claims());
    // Another key, same kid.
    let forged = sign(
        &json!({"alg": "RS256", "kid": KID}),
        &claims(),
        &signing_key(KEY_TWO),
    );
    assert_eq!(check(&forged), Err(TokenError::BadSignature));
    // The payload swapped for another one: the signature no longer covers it.
    let (header, rest) = token.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let other = b64(with(
        claims(),
        "email",
        json!("attacker@evil.iam.gserviceaccount.com"),
    )
    .to_string()
    .as_bytes());
    assert_eq!(
        check(&format!("{header}.{other}.{signature}")),
        Err(TokenError::BadSignature)
    );
    // A flipped signature bit, a truncated signature, an empty one.
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    sig[10] ^= 1;
    let signed = &token[..token.len() - signature.len() - 1];
    for bad in [b64(&sig), b64(&sig[..128]), String::new()] {
        assert_eq!(
            check(&format!("{signed}.{bad}")),
            Err(TokenError::BadSignature)
        );
    }
}

#[test]
fn only_rs256_is_accepted() {
    let key = signing_key(KEY_ONE);
    for alg in ["none", "HS256", "RS512", "PS256", "ES256", "rs256", ""] {
        let token = sign(&json!({"alg": alg, "kid": KID}), &claims(), &key);
        assert_eq!(
            check(&token),
            Err(TokenError::Algorithm(alg.into())),
            "{alg}"
        );
    }
    let token = sign(&json!({"kid": KID}), &claims(), &key);
    assert_eq!(check(&token).unwrap_err().check(), "alg");
    // `alg: none` with no signature at all, the classic forgery.
    let header = b64(json!({"alg": "none", "kid": KID}).to_string().as_bytes());
    let payload = b64(claims().to_string().as_bytes());
    assert_eq!(
        check(&format!("{header}.{payload}.")),
        Err(TokenError::Algorithm("none".into()))
    );
    // HS256, whatever its signature: never checked as an HMAC.
    let header = b64(json!({"alg": "HS256", "kid": KID}).to_string().as_bytes());
    assert_eq!(
        check(&format!("{header}.{payload}.c2ln"))
            .unwrap_err()
            .check(),
        "alg"
    );
}

#[test]
fn the_key_must_be_named_and_published() {
    let key = signing_key(KEY_ONE);
    let token = sign(&json!({"alg": "RS256"}), &claims(), &key);
    assert_eq!(check(&token).err(), Some(TokenError::MissingKid));
    let token = sign(&json!({"alg": "RS256", "kid": ""}), &claims(), &key);
    assert_eq!(check(&token).err(), Some(TokenError::MissingKid));
    let token = sign(&json!({"alg": "RS256", "kid": "rotated"}), &claims(), &key);
    let parsed = Token::parse(&token).unwrap();
    assert_eq!(parsed.kid(), "rotated");
    assert_eq!(
        parsed.verify(&google_keys(), &endpoint_auth(), NOW),
        Err(TokenError::UnknownKey("rotated".into()))
    );
    assert!(matches!(
        parsed.verify(&KeySet::default(), &endpoint_auth(), NOW),
        Err(TokenError::UnknownKey(_))
    ));
}

#[test]
fn critical_header_extensions_are_refused() {
    let token = sign(
        &json!({"alg": "RS256", "kid": KID, "crit": ["b64"], "b64": false}),
        &claims(),
        &signing_key(KEY_ONE),
    );
    assert_eq!(check(&token).unwrap_err().check(), "format");
}

#[test]
fn expiry_allows_the_skew_and_no_more() {
    let exp = NOW + 3600;
    let token = signed(KID, &claims());
    assert!(check_at(&token, exp - 1).is_ok());
    assert!(check_at(&token, exp + SKEW - 1).is_ok());
    assert_eq!(
        check_at(&token, exp + SKEW),
        Err(TokenError::Expired {
            exp,
            now: exp + SKEW
        })
    );
    for bad in [
        json!(null),
        json!("soon"),
        json!(-1),
        json!(1.5e9),
        json!(""),
    ] {
        let err = check_with("exp", bad.clone()).unwrap_err();
        assert_eq!(err, TokenError::Expired { exp: 0, now: NOW }, "{bad}");
    }
    assert_eq!(check_without("exp").unwrap_err().check(), "exp");
}

#[test]
fn a_token_from_the_future_is_refused() {
    let token = signed(KID, &with(claims(), "iat", json!(NOW + SKEW)));
    assert!(check(&token).is_ok());
    let token = signed(KID, &with(claims(), "iat", json!(NOW + SKEW + 1)));
    assert_eq!(
        check(&token),
        Err(TokenError::NotYetValid {
            iat: NOW + SKEW + 1,
            now: NOW
        })
    );
    assert_eq!(check_without("iat").unwrap_err().check(), "iat");
    assert_eq!(check_with("iat", json!("x")).unwrap_err().check(), "iat");
}

#[test]
fn the_issuer_must_be_google() {
    for iss in [
        json!("https://accounts.google.com.evil.example"),
        json!("http://accounts.google.com"),
        json!("https://securetoken.google.com/p"),
        json!(""),
        json!(["accounts.google.com"]),
    ] {
        let err = check_with("iss", iss.clone()).unwrap_err();
        assert_eq!(err.check(), "iss", "{iss}");
    }
    assert_eq!(check_without("iss"), Err(TokenError::Issuer(String::new())));
}

#[test]
fn the_audience_must_be_the_configured_one() {
    assert_eq!(
        check_with("aud", json!("https://other.example.com/")),
        Err(TokenError::Audience("https://other.example.com/".into()))
    );
    for aud in [
        json!(format!("{AUDIENCE}/")),
        json!(AUDIENCE.to_uppercase()),
        json!(["https://other.example.com/"]),
        json!(null),
        json!(7),
    ] {
        let err = check_with("aud", aud.clone()).unwrap_err();
        assert_eq!(err.check(), "aud", "{aud}");
    }
    assert_eq!(check_without("aud").unwrap_err().check(), "aud");
    // A list that includes ours is fine (RFC 7519).
    assert!(check_with("aud", json!(["x", AUDIENCE])).is_ok());
}

#[test]
fn the_email_must_be_the_configured_service_account() {
    let other = "someone-else@other-project.iam.gserviceaccount.com";
    assert_eq!(
        check_with("email", json!(other)),
        Err(TokenError::Email(other.into()))
    );
    for email in [json!(EMAIL.to_uppercase()), json!(null), json!([EMAIL])] {
        let err = check_with("email", email.clone()).unwrap_err();
        assert_eq!(err.check(), "email", "{email}");
    }
    assert_eq!(
        check_without("email"),
        Err(TokenError::Email(String::new()))
    );
}

#[test]
fn the_email_must_be_verified() {
    assert!(check_with("email_verified", json!("true")).is_ok());
    for v in [
        json!(false),
        json!("false"),
        json!("True"),
        json!(1),
        json!(null),
        json!(""),
    ] {
        assert_eq!(
            check_with("email_verified", v.clone()),
            Err(TokenError::EmailNotVerified),
            "{v}"
        );
    }
    assert_eq!(
        check_without("email_verified"),
        Err(TokenError::EmailNotVerified)
    );
}

#[test]
fn malformed_tokens_are_refused() {
    let token = signed(KID, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64(br#"{"alg":"RS256","kid":"x"}"#);
    for bad in [
        String::new(),
        "abc".to_string(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.x"),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("+{}.{}.{}", &parts[0][1..], parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[1]"), parts[1], parts[2]),
        format!("{header}.{}!.{}", parts[1], parts[2]),
        format!("{header}.{}.{}==", parts[1], parts[2]),
        format!("{header}.{}.{}\u{e9}", parts[1], parts[2]),
        // Two `alg`s: no parser may pick one and another parser the other.
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","alg":"none","kid":"kid-one"}"#),
            parts[1],
            parts[2]
        ),
    ] {
        let err = Token::parse(&bad).err().unwrap_or_else(|| panic!("{bad}"));
        assert!(
            matches!(err, TokenError::Malformed(_) | TokenError::Algorithm(_)),
            "{bad}: {err:?}"
        );
    }
    // A signed payload that is not a JSON object.
    let key = signing_key(KEY_ONE);
    for payload in [json!("claims"), json!([1, 2])] {
        let token = sign(&json!({"alg": "RS256", "kid": KID}), &payload, &key);
        assert!(matches!(check(&token), Err(TokenError::Malformed(_))));
    }
    // A signed header whose registered fields have the wrong types.
    for header in [
        json!({"alg": "RS256", "kid": KID, "typ": 7}),
        json!({"alg": "RS256", "kid": KID, "x5c": "not a list"}),
    ] {
        let token = sign(&header, &claims(), &key);
        assert!(
            matches!(check(&token), Err(TokenError::Malformed(_))),
            "{header}"
        );
    }
}

#[test]
fn the_token_comes_from_one_bearer_authorization_header() {
    let token = signed(KID, &claims());
    for good in [format!("Bearer {token}"), format!("bearer  {token}")] {
        let h = headers(&[("Authorization", &good)]);
        assert!(Token::from_headers(&h).is_ok(), "{good}");
    }
    assert_eq!(
        Token::from_headers(&headers(&[])).err(),
        Some(TokenError::MissingAuthorization)
    );
    for bad in [
        token.clone(),
        format!("Basic {token}"),
        format!("Bearer{token}"),
        "Bearer ".to_string(),
        "Bearer".to_string(),
    ] {
        let h = headers(&[("Authorization", &bad)]);
        assert_eq!(
            Token::from_headers(&h).err(),
            Some(TokenError::NotBearer),
            "{bad}"
        );
    }
    let h = headers(&[
        ("Authorization", &format!("Bearer {token}")),
        ("Authorization", &format!("Bearer {token}")),
    ]);
    assert_eq!(Token::from_headers(&h).err(), Some(TokenError::NotBearer));
}

#[test]
fn errors_never_contain_the_token() {
    let token = signed(KID, &with(claims(), "aud", json!("x".repeat(5000))));
    let err = check(&token).unwrap_err();
    let shown = err.to_string();
    assert!(shown.len() < 300, "{shown}");
    assert!(!shown.contains(token.split('.').nth(2).unwrap()));
}
