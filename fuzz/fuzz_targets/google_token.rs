#![no_main]
//! The Pub/Sub push token parser and the JWKS parser on arbitrary input:
//! untrusted bytes from the network, so they must never panic. Signatures
//! cannot be forged by a fuzzer, so verification must always fail.
use flux_recv::gcr_auth::{GcrAuth, KeySet, Token};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = KeySet::from_jwks(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(token) = Token::parse(text) {
            let keys = KeySet::from_jwks(br#"{"keys":[]}"#);
            if let Ok(keys) = keys {
                let expect = GcrAuth {
                    audience: "a".into(),
                    email: "e@example.com".into(),
                };
                assert!(token.verify(&keys, &expect, 1_700_000_000).is_err());
            }
        }
    }
});
