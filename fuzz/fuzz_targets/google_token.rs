#![no_main]
//! The Pub/Sub push token parser and the JWKS parser on arbitrary input:
//! untrusted bytes from the network, so they must never panic. Tokens are
//! verified against the test key published as `kid-one`
//! (testdata/gcr/jwks.json), so a header naming it reaches the signature
//! check; a fuzzer cannot forge a signature, so verification must fail.
use std::sync::LazyLock;

use flux_recv::gcr_auth::{GcrAuth, KeySet, Token};

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    KeySet::from_jwks(include_bytes!("../../testdata/gcr/jwks.json")).expect("test JWKS")
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = KeySet::from_jwks(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(token) = Token::parse(text) {
            let expect = GcrAuth {
                audience: "a".into(),
                email: "e@example.com".into(),
            };
            assert!(token.verify(&KEYS, &expect, 1_700_000_000).is_err());
        }
    }
});
