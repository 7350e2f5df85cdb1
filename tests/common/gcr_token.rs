//! Google-style Pub/Sub push tokens for tests and benches: RS256 signed with
//! the test-only keys in `testdata/gcr/`, and the JWKS entries that publish
//! their public halves. Headers and claims are plain JSON, so a test can
//! sign whatever a forger would send (`alg: none`, a `crit` header, …).
#![allow(dead_code)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;

/// The push subscription's audience in the endpoint's `gcr:` block.
pub const AUDIENCE: &str = "https://hooks.example.com/hook/gcr";
/// The push subscription's service account.
pub const EMAIL: &str = "gcr-push@my-project.iam.gserviceaccount.com";
/// The id the first test key is published under.
pub const KID: &str = "kid-one";
/// The id the second test key is published under once "rotated in".
pub const NEW_KID: &str = "kid-two";
/// The first test key: the one Google signs with.
pub const KEY_ONE: &str = "test-signing-key.pem";
/// The second test key: a forger's, or a key Google rotates in.
pub const KEY_TWO: &str = "test-signing-key-2.pem";

/// A test-only private key from `testdata/gcr/`.
pub fn signing_key(file: &str) -> RsaPrivateKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/gcr")
        .join(file);
    RsaPrivateKey::read_pkcs8_pem_file(path).expect("test key")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWKS entry for a private key's public half, as Google writes it.
pub fn jwk(kid: &str, key: &RsaPrivateKey) -> Value {
    json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
           "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
}

/// `testdata/gcr/jwks.json`: the first test key published as [`KID`].
pub fn google_jwks() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/gcr/jwks.json");
    serde_json::from_slice(&std::fs::read(path).expect("jwks.json")).expect("JSON")
}

/// The endpoint's `gcr:` block: [`AUDIENCE`] and [`EMAIL`].
pub fn endpoint_auth() -> flux_recv::gcr_auth::GcrAuth {
    flux_recv::gcr_auth::GcrAuth {
        audience: AUDIENCE.into(),
        email: EMAIL.into(),
    }
}

/// [`google_jwks`] as flux-recv holds it: the first test key, as [`KID`].
pub fn google_keys() -> flux_recv::gcr_auth::KeySet {
    flux_recv::gcr_auth::KeySet::from_jwks(google_jwks().to_string().as_bytes()).expect("keys")
}

/// Our clock, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Claims as Google puts them in a Pub/Sub push token for [`AUDIENCE`] and
/// [`EMAIL`], issued at `now` and valid for an hour.
pub fn claims_at(now: u64) -> Value {
    json!({"aud": AUDIENCE, "azp": "103416794574132452123", "email": EMAIL,
           "email_verified": true, "exp": now + 3600, "iat": now,
           "iss": "https://accounts.google.com", "sub": "103243794525501032581"})
}

/// `claims` with `field` set to `value`.
pub fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

/// `claims` without `field`.
pub fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().expect("an object").remove(field);
    claims
}

/// A compact JWS of `header` and `claims`, RS256-signed with `key` whatever
/// the header says.
pub fn sign(header: &Value, claims: &Value, key: &RsaPrivateKey) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(signed.as_bytes());
    format!("{signed}.{}", b64(&signature.to_bytes()))
}

/// A token as Google makes it: signed with the first test key, naming `kid`.
pub fn signed(kid: &str, claims: &Value) -> String {
    sign(
        &json!({"alg": "RS256", "kid": kid, "typ": "JWT"}),
        claims,
        &signing_key(KEY_ONE),
    )
}
