//! Signatures that cover a delivery's id and time, as the Standard Webhooks
//! specification defines them (`spec/standard-webhooks.md` in
//! standard-webhooks/standard-webhooks): what the `StandardWebhooks` source
//! checks, and GitLab when its endpoint's key is a signing token.
//!
//! - The key is a signing secret: `whsec_` and the base64 of random bytes
//!   (the spec asks for 24 to 64; GitLab makes 32). The HMAC is keyed with
//!   the decoded bytes, not with the text.
//! - A delivery carries `webhook-id` (the same on every retry of one
//!   message), `webhook-timestamp` (Unix seconds, when this attempt was
//!   signed) and `webhook-signature`: space-separated `<version>,<base64>`
//!   entries, several while the sender rotates its secret. A `v1` entry is
//!   the HMAC-SHA256 of `{id}.{timestamp}.{body}`. One matching `v1` entry is
//!   enough; other versions (`v1a`, an asymmetric signature) are skipped.
//!   Every entry is compared in constant time.
//!
//! A source checks what needs no clock: the headers' form ([`read`]) and the
//! signature ([`verify`]). Whether the timestamp lies near now, and whether
//! the id was accepted before, is the request path's to check
//! ([`crate::replay`]): sources are pure functions of the request.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};

use super::{header, HookError};

/// The header naming the message; retries of one message repeat it.
pub const ID: &str = "webhook-id";
/// The header with the Unix time the attempt was signed at.
pub const TIMESTAMP: &str = "webhook-timestamp";
/// The header with the signatures.
pub const SIGNATURE: &str = "webhook-signature";

/// What a signing secret starts with.
const PREFIX: &[u8] = b"whsec_";

/// Fewest bytes the spec has a signing secret made of; `check` warns below.
pub const MIN_SECRET_BYTES: usize = 24;

/// Secrets are decoded as the spec's own libraries decode them: with or
/// without `=` padding (Python's adds what is missing), and ignoring the
/// unused low bits of the last character.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// What a signature covers besides the body: which message this is and when
/// it was sent. Read from the headers before the body, so that a stale
/// delivery is refused before anything is buffered; the signature, checked
/// once the body is read, proves both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`, in Unix seconds.
    pub timestamp: u64,
}

/// Why a key that starts with `whsec_` is no signing secret. The messages
/// never repeat any of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// What follows the prefix is not base64.
    #[error("what follows whsec_ is not base64 (standard alphabet)")]
    NotBase64,
    /// Nothing follows the prefix.
    #[error("nothing follows whsec_")]
    Empty,
}

/// Whether `key` is a signing secret (starts with `whsec_`), valid or not.
pub fn is_signing_secret(key: &[u8]) -> bool {
    key.starts_with(PREFIX)
}

/// The time now, in Unix seconds, as `webhook-timestamp` counts it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The bytes a signing secret stands for: the base64 after `whsec_`, which
/// cannot hold whitespace, so whitespace around it (a newline an editor
/// added) is no part of it. `None` when `key` is not a signing secret.
pub fn secret_bytes(key: &[u8]) -> Option<Result<Vec<u8>, SecretError>> {
    let encoded = key.strip_prefix(PREFIX)?.trim_ascii();
    Some(match SECRET_BASE64.decode(encoded) {
        Ok(bytes) if bytes.is_empty() => Err(SecretError::Empty),
        Ok(bytes) => Ok(bytes),
        Err(_) => Err(SecretError::NotBase64),
    })
}

/// The stamp a delivery's headers claim, checked for form only: the three
/// headers are present (the signature's first, so that a GitLab delivery
/// with only its secret token is told what it lacks), the id is not empty
/// and holds no `.` (which would let `{id}.{timestamp}` be split another
/// way, as the spec warns), and the timestamp is decimal digits.
pub fn read(headers: &HeaderMap) -> Result<Stamp, HookError> {
    header(headers, SIGNATURE).ok_or(HookError::Unsigned(SIGNATURE))?;
    let id = header(headers, ID).ok_or(HookError::Unsigned(ID))?;
    let timestamp = header(headers, TIMESTAMP).ok_or(HookError::Unsigned(TIMESTAMP))?;
    if id.is_empty() || id.contains('.') {
        return Err(HookError::Malformed(ID));
    }
    let all_digits = !timestamp.is_empty() && timestamp.bytes().all(|b| b.is_ascii_digit());
    let timestamp = all_digits
        .then(|| timestamp.parse::<u64>().ok())
        .flatten()
        .ok_or(HookError::Malformed(TIMESTAMP))?;
    Ok(Stamp {
        id: id.to_string(),
        timestamp,
    })
}

/// Check a delivery's signature against `key`, a signing secret, and
/// return the stamp it proves. A key that is no valid signing secret
/// verifies nothing (endpoints refuse such keys when they are loaded).
pub fn verify(headers: &HeaderMap, body: &[u8], key: &[u8]) -> Result<Stamp, HookError> {
    let stamp = read(headers)?;
    let signatures = header(headers, SIGNATURE).unwrap_or_default();
    let Some(Ok(secret)) = secret_bytes(key) else {
        return Err(HookError::BadSignature(SIGNATURE));
    };
    let expected = STANDARD.encode(mac(&secret, &stamp, body));
    // Every entry is compared, and the results combined without branching
    // on any of them.
    let mut found = Choice::from(0);
    for entry in signatures.split(' ') {
        if let Some(("v1", given)) = entry.split_once(',') {
            found |= given.as_bytes().ct_eq(expected.as_bytes());
        }
    }
    if bool::from(found) {
        Ok(stamp)
    } else {
        Err(HookError::BadSignature(SIGNATURE))
    }
}

/// The HMAC-SHA256 of `{id}.{timestamp}.{body}` with `secret`, fed in
/// parts so that the body is not copied.
fn mac(secret: &[u8], stamp: &Stamp, body: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(stamp.id.as_bytes());
    mac.update(b".");
    mac.update(stamp.timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// `v1,<base64>`: the signature a sender holding `key` makes for `stamp`
/// and `body`. A key that is no valid signing secret signs with its own
/// bytes, which no endpoint accepts: samples signed with the wrong kind of
/// key are refused, as they should be.
pub fn sign(key: &[u8], stamp: &Stamp, body: &[u8]) -> String {
    let secret = match secret_bytes(key) {
        Some(Ok(secret)) => secret,
        _ => key.to_vec(),
    };
    format!("v1,{}", STANDARD.encode(mac(&secret, stamp, body)))
}

/// The three headers a sender holding `key` sends with `body`.
pub fn headers(key: &[u8], stamp: &Stamp, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        (ID, stamp.id.clone()),
        (TIMESTAMP, stamp.timestamp.to_string()),
        (SIGNATURE, sign(key, stamp, body)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing;

    /// The test vectors of the spec's own libraries, in
    /// standard-webhooks/standard-webhooks (commit b2fa7b8):
    /// `libraries/rust/src/lib.rs` (`test_sign`) and
    /// `libraries/python/tests/test_webhooks.py` (`test_sign_function`;
    /// the JavaScript, Go and Java tests use the same one).
    const VECTORS: [(&str, &str, u64, &str, &str); 2] = [
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];

    fn stamp(id: &str, timestamp: u64) -> Stamp {
        Stamp {
            id: id.to_string(),
            timestamp,
        }
    }

    fn signed(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        testing::headers(&[(ID, id), (TIMESTAMP, timestamp), (SIGNATURE, signature)])
    }

    #[test]
    fn the_spec_libraries_vectors_sign_and_verify() {
        for (secret, id, timestamp, body, want) in VECTORS {
            let s = stamp(id, timestamp);
            assert_eq!(sign(secret.as_bytes(), &s, body.as_bytes()), want, "{id}");
            let h = signed(id, &timestamp.to_string(), want);
            assert_eq!(verify(&h, body.as_bytes(), secret.as_bytes()), Ok(s));
        }
    }

    /// The libraries' `test_invalid_signature`, `test_no_verify` and
    /// partial-signature cases: the first vector's signature with its last
    /// character changed, another message's signature, `v1,`, and the
    /// first bytes of a signature.
    #[test]
    fn the_spec_libraries_bad_signatures_are_refused() {
        let (secret, id, timestamp, body, good) = VECTORS[1];
        let ts = timestamp.to_string();
        for bad in [
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=",
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v1,",
            &good[..8],
            "v1,dawfeoifkpqwoekfpqoekf",
            // The right MAC under another version, or none.
            &good.replacen("v1,", "v2,", 1),
            &good[3..],
            "",
        ] {
            let h = signed(id, &ts, bad);
            assert_eq!(
                verify(&h, body.as_bytes(), secret.as_bytes()),
                Err(HookError::BadSignature(SIGNATURE)),
                "{bad:?}"
            );
        }
        // The right signature for another body, id, time or key.
        let h = signed(id, &ts, good);
        assert!(verify(&h, b"{\"test\": 2432232315}", secret.as_bytes()).is_err());
        let other_id = signed("msg_p5jXN8AQM9LWM0D4loKWxJel", &ts, good);
        assert!(verify(&other_id, body.as_bytes(), secret.as_bytes()).is_err());
        let other_time = signed(id, &(timestamp + 1).to_string(), good);
        assert!(verify(&other_time, body.as_bytes(), secret.as_bytes()).is_err());
        assert!(verify(&h, body.as_bytes(), VECTORS[0].0.as_bytes()).is_err());
    }

    /// The libraries' `test_verify_with_multiple_signatures` and
    /// `test_multi_sig_payload_is_valid`: one valid `v1` among others and a
    /// `v2` is enough; without it, none is.
    #[test]
    fn one_valid_v1_among_several_is_enough() {
        let (secret, id, timestamp, body, good) = VECTORS[1];
        let ts = timestamp.to_string();
        let others = [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
            "garbage",
        ];
        for at in 0..=others.len() {
            let mut all: Vec<&str> = others.to_vec();
            all.insert(at, good);
            let h = signed(id, &ts, &all.join(" "));
            assert!(
                verify(&h, body.as_bytes(), secret.as_bytes()).is_ok(),
                "{all:?}"
            );
        }
        let h = signed(id, &ts, &others.join(" "));
        assert_eq!(
            verify(&h, body.as_bytes(), secret.as_bytes()),
            Err(HookError::BadSignature(SIGNATURE))
        );
    }

    /// The libraries' `test_missing_headers` and invalid-timestamp cases.
    #[test]
    fn missing_or_malformed_headers_are_refused() {
        let (secret, id, timestamp, body, good) = VECTORS[1];
        let ts = timestamp.to_string();
        let all = [(ID, id), (TIMESTAMP, ts.as_str()), (SIGNATURE, good)];
        for missing in [ID, TIMESTAMP, SIGNATURE] {
            let kept: Vec<(&str, &str)> = all.iter().copied().filter(|h| h.0 != missing).collect();
            let h = testing::headers(&kept);
            assert_eq!(
                verify(&h, body.as_bytes(), secret.as_bytes()),
                Err(HookError::Unsigned(missing))
            );
        }
        for bad in [
            "hello",
            "",
            "-1614265330",
            "+1614265330",
            "1614265330.5",
            " 1",
            "99999999999999999999",
        ] {
            let h = signed(id, bad, good);
            assert_eq!(read(&h), Err(HookError::Malformed(TIMESTAMP)), "{bad:?}");
        }
        for bad in ["", "msg.1614265330", "."] {
            let h = signed(bad, &ts, good);
            assert_eq!(read(&h), Err(HookError::Malformed(ID)), "{bad:?}");
        }
        assert!(HookError::Malformed(ID).is_unauthorized());
    }

    /// The libraries' `test_signature_verification_with_unpadded_secret`:
    /// secrets needing no padding, one `=` and two, given without it.
    #[test]
    fn secrets_decode_with_or_without_padding() {
        let (_, id, timestamp, body, _) = VECTORS[1];
        for padded in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS=",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr==",
        ] {
            let bare = padded.trim_end_matches('=');
            let with = format!("whsec_{padded}");
            let without = format!("whsec_{bare}");
            let a = secret_bytes(with.as_bytes()).unwrap().unwrap();
            assert_eq!(secret_bytes(without.as_bytes()), Some(Ok(a)));
            let s = stamp(id, timestamp);
            let h = signed(
                id,
                &timestamp.to_string(),
                &sign(with.as_bytes(), &s, body.as_bytes()),
            );
            assert!(
                verify(&h, body.as_bytes(), without.as_bytes()).is_ok(),
                "{padded}"
            );
        }
    }

    #[test]
    fn signing_secrets_are_told_apart_and_checked() {
        assert_eq!(secret_bytes(b"0123456789abcdef"), None);
        assert_eq!(secret_bytes(b"WHSEC_AAAA"), None);
        assert!(!is_signing_secret(b" whsec_AAAA"));
        assert_eq!(secret_bytes(b"whsec_"), Some(Err(SecretError::Empty)));
        assert_eq!(secret_bytes(b"whsec_ \n"), Some(Err(SecretError::Empty)));
        for bad in [&b"whsec_not base64"[..], b"whsec_a-b_", b"whsec_AAAA\xff"] {
            assert_eq!(
                secret_bytes(bad),
                Some(Err(SecretError::NotBase64)),
                "{bad:?}"
            );
        }
        // A newline after the secret is no part of it.
        let plain = secret_bytes(VECTORS[0].0.as_bytes()).unwrap().unwrap();
        let newline = format!("{}\n", VECTORS[0].0);
        assert_eq!(secret_bytes(newline.as_bytes()), Some(Ok(plain.clone())));
        assert_eq!(plain.len(), 24);
        // A key that is no signing secret verifies nothing, even what it
        // signed itself.
        let (_, id, timestamp, body, _) = VECTORS[1];
        let s = stamp(id, timestamp);
        for key in [&b"0123456789abcdef"[..], b"whsec_!!"] {
            let h = signed(id, &timestamp.to_string(), &sign(key, &s, body.as_bytes()));
            assert_eq!(
                verify(&h, body.as_bytes(), key),
                Err(HookError::BadSignature(SIGNATURE))
            );
        }
    }

    #[test]
    fn the_body_is_signed_as_bytes() {
        let key = VECTORS[0].0.as_bytes();
        let s = stamp("msg_1", 1_700_000_000);
        for body in [&b""[..], b"\xff\xfe\x00", b"1614265330.x"] {
            let h = testing::headers(
                &headers(key, &s, body)
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>(),
            );
            assert_eq!(verify(&h, body, key), Ok(s.clone()), "{body:?}");
        }
    }
}
