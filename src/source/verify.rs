//! Signature and token checks shared by the sources. Every comparison of
//! secret material here is constant-time.

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use super::HookError;

/// Hash functions providers sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1 (GitHub's legacy `X-Hub-Signature`, Nexus).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// Which `<algo>=` prefixes a signature header may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefixes {
    /// `sha1=`, `sha256=` or `sha512=`: headers whose senders sign with
    /// any of them (GitHub's legacy `X-Hub-Signature`, as the Go original
    /// read it; `X-Signature` of GenericHMAC).
    Any,
    /// `sha256=` only: a header that names SHA-256 (`X-Hub-Signature-256`)
    /// or whose only sender signs with it (Bitbucket's `X-Hub-Signature`).
    /// Another prefix is refused even with a matching MAC.
    Sha256,
}

/// Check a `<algo>=<hex>` signature header (`sha1=`, `sha256=`, `sha512=`)
/// against an HMAC of `body` keyed with `key`. `header` names the header in
/// the error.
pub fn prefixed_hmac(
    header: &'static str,
    value: &str,
    key: &[u8],
    body: &[u8],
) -> Result<(), HookError> {
    prefixed_hmac_as(header, Prefixes::Any, value, key, body)
}

/// [`prefixed_hmac`] for a header that may carry only `prefixes`.
pub fn prefixed_hmac_as(
    header: &'static str,
    prefixes: Prefixes,
    value: &str,
    key: &[u8],
    body: &[u8],
) -> Result<(), HookError> {
    let (algo, hex_mac) = value
        .split_once('=')
        .ok_or(HookError::BadSignature(header))?;
    let algo = match (prefixes, algo) {
        (_, "sha256") => Algorithm::Sha256,
        (Prefixes::Any, "sha1") => Algorithm::Sha1,
        (Prefixes::Any, "sha512") => Algorithm::Sha512,
        (Prefixes::Any, _) => return Err(HookError::BadSignature(header)),
        (Prefixes::Sha256, _) => {
            return Err(HookError::WrongAlgorithm {
                header,
                expected: "sha256=<hex>, an HMAC-SHA256 of the body",
            })
        }
    };
    hex_hmac(header, algo, hex_mac, key, body)
}

/// Check a bare hex HMAC against `body`.
pub fn hex_hmac(
    header: &'static str,
    algo: Algorithm,
    hex_mac: &str,
    key: &[u8],
    body: &[u8],
) -> Result<(), HookError> {
    let given = hex::decode(hex_mac.trim()).map_err(|_| HookError::BadSignature(header))?;
    let ok = match algo {
        Algorithm::Sha1 => check::<Hmac<sha1::Sha1>>(key, body, &given),
        Algorithm::Sha256 => check::<Hmac<sha2::Sha256>>(key, body, &given),
        Algorithm::Sha512 => check::<Hmac<sha2::Sha512>>(key, body, &given),
    };
    if ok {
        Ok(())
    } else {
        Err(HookError::BadSignature(header))
    }
}

/// A `<algo>=<hex>` signature (see [`prefixed_hmac`]) in header `name`:
/// missing is unsigned, anything else a mismatch.
pub fn prefixed_hmac_in_header(
    headers: &http::HeaderMap,
    name: &'static str,
    key: &[u8],
    body: &[u8],
) -> Result<(), HookError> {
    let value = super::header(headers, name).ok_or(HookError::Unsigned(name))?;
    prefixed_hmac(name, value, key, body)
}

/// [`prefixed_hmac_as`] in header `name`: missing is unsigned, anything
/// else a mismatch.
pub fn prefixed_hmac_in_header_as(
    headers: &http::HeaderMap,
    name: &'static str,
    prefixes: Prefixes,
    key: &[u8],
    body: &[u8],
) -> Result<(), HookError> {
    let value = super::header(headers, name).ok_or(HookError::Unsigned(name))?;
    prefixed_hmac_as(name, prefixes, value, key, body)
}

/// A bare hex HMAC (see [`hex_hmac`]) in header `name`: missing is
/// unsigned, anything else a mismatch.
pub fn hex_hmac_in_header(
    headers: &http::HeaderMap,
    name: &'static str,
    algo: Algorithm,
    key: &[u8],
    body: &[u8],
) -> Result<(), HookError> {
    let value = super::header(headers, name).ok_or(HookError::Unsigned(name))?;
    hex_hmac(name, algo, value, key, body)
}

fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8], given: &[u8]) -> bool {
    let mut mac =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(given).is_ok()
}

/// The key itself, verbatim, in header `name` (GitLab's secret token,
/// Harbor's auth header): missing is unsigned, anything else a mismatch.
pub fn key_in_header(
    headers: &http::HeaderMap,
    name: &'static str,
    key: &[u8],
) -> Result<(), HookError> {
    let given = super::header(headers, name).ok_or(HookError::Unsigned(name))?;
    token(name, given, key)
}

/// The key as a bearer token or bare in header `name` (see
/// [`bearer_or_bare`]): missing is unsigned, anything else a mismatch.
pub fn bearer_key_in_header(
    headers: &http::HeaderMap,
    name: &'static str,
    key: &[u8],
) -> Result<(), HookError> {
    let value = super::header(headers, name).ok_or(HookError::Unsigned(name))?;
    bearer_or_bare(name, value, key)
}

/// Compare a token the provider sent with the key, in constant time.
pub fn token(header: &'static str, given: &str, key: &[u8]) -> Result<(), HookError> {
    if bool::from(given.as_bytes().ct_eq(key)) {
        Ok(())
    } else {
        Err(HookError::BadSignature(header))
    }
}

/// Check an `Authorization` value that carries the key either as a bearer
/// token (`Bearer <key>`, the scheme in any case) or bare (`<key>`), as
/// registries send whatever header value they were configured with. Both
/// forms are compared in constant time.
pub fn bearer_or_bare(header: &'static str, value: &str, key: &[u8]) -> Result<(), HookError> {
    let bare = value.as_bytes().ct_eq(key);
    let bearer = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("Bearer") => {
            token.trim_start_matches(' ').as_bytes().ct_eq(key)
        }
        _ => subtle::Choice::from(0),
    };
    if bool::from(bare | bearer) {
        Ok(())
    } else {
        Err(HookError::BadSignature(header))
    }
}

/// Compute `<algo>=<hex>` for `body`: what a provider that prefixes its
/// signatures would send. Used by tests and by `flux-recv send`.
pub fn sign(algo: Algorithm, key: &[u8], body: &[u8]) -> String {
    let prefix = match algo {
        Algorithm::Sha1 => "sha1",
        Algorithm::Sha256 => "sha256",
        Algorithm::Sha512 => "sha512",
    };
    format!("{prefix}={}", sign_hex(algo, key, body))
}

/// Compute the bare hex HMAC of `body`: what a provider that sends no
/// prefix would send (Gitea, Nexus). Used by tests and by `flux-recv send`.
pub fn sign_hex(algo: Algorithm, key: &[u8], body: &[u8]) -> String {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8]) -> String {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
        m.update(body);
        hex::encode(m.finalize().into_bytes())
    }
    match algo {
        Algorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(key, body),
        Algorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(key, body),
        Algorithm::Sha512 => mac::<Hmac<sha2::Sha512>>(key, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_prefix_verifies() {
        for algo in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            let sig = sign(algo, b"k", b"body");
            assert_eq!(prefixed_hmac("X-Sig", &sig, b"k", b"body"), Ok(()));
            assert_eq!(
                prefixed_hmac("X-Sig", &sig, b"k", b"other"),
                Err(HookError::BadSignature("X-Sig"))
            );
            assert_eq!(
                prefixed_hmac("X-Sig", &sig, b"other key", b"body"),
                Err(HookError::BadSignature("X-Sig"))
            );
        }
    }

    #[test]
    fn wrong_prefix_or_shape_is_refused() {
        let hex = sign_hex(Algorithm::Sha256, b"k", b"body");
        for bad in [
            format!("sha512={hex}"),
            format!("md5={hex}"),
            hex.clone(),
            "sha256=zz".to_string(),
            String::new(),
        ] {
            assert_eq!(
                prefixed_hmac("X-Sig", &bad, b"k", b"body"),
                Err(HookError::BadSignature("X-Sig")),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_sha256_header_refuses_every_other_prefix_even_when_it_matches() {
        let body = b"body";
        let good = sign(Algorithm::Sha256, b"k", body);
        assert_eq!(
            prefixed_hmac_as("X-Sig-256", Prefixes::Sha256, &good, b"k", body),
            Ok(())
        );
        let refusal = HookError::WrongAlgorithm {
            header: "X-Sig-256",
            expected: "sha256=<hex>, an HMAC-SHA256 of the body",
        };
        let wrong = Err(refusal.clone());
        for algo in [Algorithm::Sha1, Algorithm::Sha512] {
            let matching = sign(algo, b"k", body);
            assert_eq!(prefixed_hmac("X-Sig", &matching, b"k", body), Ok(()));
            assert_eq!(
                prefixed_hmac_as("X-Sig-256", Prefixes::Sha256, &matching, b"k", body),
                wrong
            );
        }
        let md5 = format!("md5={}", sign_hex(Algorithm::Sha256, b"k", body));
        assert_eq!(
            prefixed_hmac_as("X-Sig-256", Prefixes::Sha256, &md5, b"k", body),
            wrong
        );
        let message = refusal.to_string();
        assert_eq!(
            message,
            "X-Sig-256 must be sha256=<hex>, an HMAC-SHA256 of the body"
        );
    }

    #[test]
    fn bearer_or_bare_key_is_accepted() {
        for good in [
            "secret",
            "Bearer secret",
            "bearer secret",
            "BEARER secret",
            "Bearer   secret",
        ] {
            assert_eq!(bearer_or_bare("A", good, b"secret"), Ok(()), "{good}");
        }
        // A key with inner blanks, or one that itself starts with the scheme.
        assert_eq!(bearer_or_bare("A", "Bearer a b", b"a b"), Ok(()));
        assert_eq!(bearer_or_bare("A", "a b", b"a b"), Ok(()));
        assert_eq!(bearer_or_bare("A", "Bearer x", b"Bearer x"), Ok(()));
    }

    #[test]
    fn bearer_or_bare_refuses_anything_else() {
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer secre",
            "Bearer secret ",
            "Bearer secrets",
            "Basic secret",
            "Token secret",
            "Bearersecret",
            "secret\t",
            "SECRET",
            "Bearer Bearer secret",
        ] {
            assert_eq!(
                bearer_or_bare("A", bad, b"secret"),
                Err(HookError::BadSignature("A")),
                "{bad:?}"
            );
        }
        assert!(bearer_or_bare("A", "Bearer secret", b"secret\n").is_err());
    }

    #[test]
    fn tokens_must_match_exactly() {
        assert_eq!(token("T", "secret", b"secret"), Ok(()));
        assert!(token("T", "secret", b"secret\n").is_err());
        assert!(token("T", "secre", b"secret").is_err());
        assert!(token("T", "", b"secret").is_err());
    }
}
