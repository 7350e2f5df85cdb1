//! Google-signed OIDC tokens, as a Cloud Pub/Sub push subscription sends
//! them, checked offline.
//!
//! A push subscription with authentication enabled sends
//! `Authorization: Bearer <JWT>`: a compact JWS (`header.payload.signature`,
//! each part base64url without padding) that Google signed with RS256 using
//! one of the keys it publishes as a JWKS. The token is genuine for an
//! endpoint when, in this order:
//!
//! 1. the header says `alg: RS256` (never `none`, never an HMAC) and names a
//!    `kid` that is among Google's published keys;
//! 2. the RS256 signature over `header.payload` verifies with that key;
//! 3. `iss` is `accounts.google.com` or `https://accounts.google.com`;
//! 4. `aud` equals the endpoint's configured audience;
//! 5. `exp` has not passed and `iat` is not in the future, each give or take
//!    [`SKEW`] seconds of clock difference;
//! 6. `email` equals the endpoint's configured service account and
//!    `email_verified` is true.
//!
//! Checking `email` matters: any Google service account can mint a token
//! for any audience, so without it anyone with a Google Cloud project could
//! sign pushes.
//!
//! Everything here is a pure function of the token, the keys and the clock
//! reading it is given; fetching and caching the keys is [`crate::jwks`]'s
//! job. Claims are only read after the signature verified.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use crate::config::GcrAuth;

/// The issuers Google signs ID tokens as.
pub const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// Seconds of clock difference tolerated between Google and us, on `exp`
/// and on `iat`.
pub const SKEW: u64 = 60;

/// The only signature algorithm Google uses for these tokens, and the only
/// one accepted: anything else (`none`, `HS256` signed with a public key as
/// the HMAC secret, …) is a classic way to forge a JWT.
pub const ALGORITHM: &str = "RS256";

/// Smallest RSA modulus accepted in a published key, in bits. Google's are
/// 2048 bits.
pub const MIN_KEY_BITS: usize = 2048;

/// Why a push's token was refused. Every one of these is a 401.
///
/// Values taken from the token are made printable first. The token itself
/// never appears in an error, so errors can be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("missing Authorization header")]
    MissingAuthorization,
    /// The header is not one `Bearer <token>`.
    #[error("the Authorization header is not a single Bearer token")]
    NotBearer,
    /// The token is not a compact JWS: the part named is missing or does
    /// not decode.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than RS256.
    #[error("the token's algorithm is {0:?}, not RS256")]
    Algorithm(String),
    /// The header names no key.
    #[error("the token's header has no kid")]
    MissingKid,
    /// The key the token names is not among Google's published keys.
    #[error("the token names key {0:?}, which Google does not publish")]
    UnknownKey(String),
    /// The signature does not verify with the key the token names.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `iss` is missing or not Google.
    #[error("the token's issuer is {0:?}, not accounts.google.com")]
    Issuer(String),
    /// `aud` is missing or not the configured audience.
    #[error("the token's audience is {0:?}, not the configured gcr.audience")]
    Audience(String),
    /// `exp` is missing, not a time, or passed.
    #[error("the token expired (exp {exp}, now {now})")]
    Expired {
        /// The token's `exp`, 0 when it had none.
        exp: u64,
        /// Our clock.
        now: u64,
    },
    /// `iat` is missing, not a time, or in the future.
    #[error("the token is not valid yet (iat {iat}, now {now})")]
    NotYetValid {
        /// The token's `iat`, 0 when it had none.
        iat: u64,
        /// Our clock.
        now: u64,
    },
    /// `email` is missing or not the configured service account.
    #[error("the token's email is {0:?}, not the configured gcr.email")]
    Email(String),
    /// `email_verified` is missing or not true.
    #[error("the token's email is not verified")]
    EmailNotVerified,
}

impl TokenError {
    /// The check that failed, as a short label for logs.
    pub fn check(&self) -> &'static str {
        match self {
            TokenError::MissingAuthorization | TokenError::NotBearer => "authorization",
            TokenError::Malformed(_) => "format",
            TokenError::Algorithm(_) => "alg",
            TokenError::MissingKid | TokenError::UnknownKey(_) => "kid",
            TokenError::BadSignature => "signature",
            TokenError::Issuer(_) => "iss",
            TokenError::Audience(_) => "aud",
            TokenError::Expired { .. } => "exp",
            TokenError::NotYetValid { .. } => "iat",
            TokenError::Email(_) => "email",
            TokenError::EmailNotVerified => "email_verified",
        }
    }
}

/// Why a JWKS document was not accepted as a key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// Not JSON with a `keys` array of objects.
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    /// An RSA signing key that cannot be used.
    #[error("key {kid:?}: {reason}")]
    BadKey {
        /// The key's id.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No RS256 key at all: taking it would refuse every token.
    #[error("the JWKS has no RS256 signing keys")]
    Empty,
}

/// Google's published signing keys, by key id (`kid`).
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey<Sha256>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

/// One entry of a JWKS `keys` array; only the fields RS256 needs.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// Read a JWKS document (`{"keys": [{"kty": "RSA", "kid", "n", "e",
    /// "alg": "RS256", "use": "sig"}, …]}`), as Google serves it.
    ///
    /// Keys for other algorithms or uses are skipped. A malformed RSA
    /// signing key, or a document with none, is an error, so a broken
    /// download never replaces good keys.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, KeySetError> {
        let jwks: Jwks = serde_json::from_slice(json)
            .map_err(|e| KeySetError::NotJwks(crate::printable(&e.to_string())))?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let rs256 = jwk.kty.as_deref() == Some("RSA")
                && jwk.alg.as_deref().is_none_or(|a| a == ALGORITHM)
                && jwk.use_.as_deref().is_none_or(|u| u == "sig");
            if !rs256 {
                continue;
            }
            let kid = jwk.kid.unwrap_or_default();
            let bad = |reason: &str| KeySetError::BadKey {
                kid: crate::printable(&kid),
                reason: reason.to_string(),
            };
            if kid.is_empty() {
                return Err(bad("no kid"));
            }
            let number = |field: Option<&String>| {
                field
                    .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                    .filter(|bytes| !bytes.is_empty())
                    .map(|bytes| BigUint::from_bytes_be(&bytes))
            };
            let n = number(jwk.n.as_ref()).ok_or_else(|| bad("n is missing or not base64url"))?;
            let e = number(jwk.e.as_ref()).ok_or_else(|| bad("e is missing or not base64url"))?;
            let key = RsaPublicKey::new(n, e).map_err(|e| bad(&e.to_string()))?;
            if key.n().bits() < MIN_KEY_BITS {
                return Err(bad("the modulus is shorter than 2048 bits"));
            }
            keys.insert(kid, VerifyingKey::new(key));
        }
        if keys.is_empty() {
            return Err(KeySetError::Empty);
        }
        Ok(KeySet { keys })
    }

    /// Whether a key with this id is in the set.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (before the first fetch).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A token split into its parts, its header checked, its signature not yet.
pub struct Token {
    kid: String,
    /// `header.payload`, the bytes the signature covers.
    signed: String,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

/// The claims of a token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The service account that signed the push.
    pub email: String,
    /// When the token expires, in Unix seconds.
    pub exp: u64,
}

/// The parts of a JWT header we look at.
#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

impl Token {
    /// The token in a request's `Authorization: Bearer …` header (the scheme
    /// in any case, as HTTP allows). Exactly one such header is accepted.
    pub fn from_headers(headers: &HeaderMap) -> Result<Token, TokenError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let value = values.next().ok_or(TokenError::MissingAuthorization)?;
        if values.next().is_some() {
            return Err(TokenError::NotBearer);
        }
        let value = value.to_str().map_err(|_| TokenError::NotBearer)?;
        let (scheme, token) = value.split_once(' ').ok_or(TokenError::NotBearer)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(TokenError::NotBearer);
        }
        Token::parse(token)
    }

    /// Split a compact JWS and check its header: RS256, with a `kid`.
    pub fn parse(compact: &str) -> Result<Token, TokenError> {
        let mut parts = compact.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed("the header is not base64url"))?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|_| TokenError::Malformed("the header is not a JSON object"))?;
        let alg = header.alg.unwrap_or_default();
        if alg != ALGORITHM {
            return Err(TokenError::Algorithm(crate::printable(&alg)));
        }
        // RFC 7515: extensions marked critical must be understood; we
        // understand none.
        if header.crit.is_some() {
            return Err(TokenError::Malformed("the header has crit extensions"));
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(TokenError::MissingKid)?;
        let signed = compact[..compact.len() - signature.len() - 1].to_string();
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed("the payload is not base64url"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
        Ok(Token {
            kid,
            signed,
            signature,
            payload,
        })
    }

    /// The id of the key the token says it is signed with.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Verify the signature with `keys`, then the claims against the
    /// endpoint's `gcr:` block at Unix time `now`.
    pub fn verify(&self, keys: &KeySet, expect: &GcrAuth, now: u64) -> Result<Claims, TokenError> {
        let key = keys
            .keys
            .get(&self.kid)
            .ok_or_else(|| TokenError::UnknownKey(crate::printable(&self.kid)))?;
        let signature =
            Signature::try_from(self.signature.as_slice()).map_err(|_| TokenError::BadSignature)?;
        key.verify(self.signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;

        // Signed by Google from here on; still checked field by field.
        let claims: serde_json::Map<String, Value> = serde_json::from_slice(&self.payload)
            .map_err(|_| TokenError::Malformed("the payload is not a JSON object"))?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");

        let iss = text("iss");
        if !ISSUERS.contains(&iss) {
            return Err(TokenError::Issuer(crate::printable(iss)));
        }

        let audience_matches = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == expect.audience,
            // RFC 7519 allows a list; Google sends one string.
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&expect.audience)),
            _ => false,
        };
        if !audience_matches {
            let shown = match claims.get("aud") {
                Some(Value::String(aud)) => aud.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            return Err(TokenError::Audience(crate::printable(&shown)));
        }

        let exp = claims.get("exp").and_then(numeric_date);
        match exp {
            Some(exp) if now < exp.saturating_add(SKEW) => {}
            _ => {
                return Err(TokenError::Expired {
                    exp: exp.unwrap_or(0),
                    now,
                })
            }
        }
        let iat = claims.get("iat").and_then(numeric_date);
        match iat {
            Some(iat) if iat <= now.saturating_add(SKEW) => {}
            _ => {
                return Err(TokenError::NotYetValid {
                    iat: iat.unwrap_or(0),
                    now,
                })
            }
        }

        let email = text("email");
        if email != expect.email {
            return Err(TokenError::Email(crate::printable(email)));
        }
        // A JSON true in real tokens; the string "true" in what Google's
        // tokeninfo endpoint shows (testdata/gcr_auth_result).
        let verified = match claims.get("email_verified") {
            Some(Value::Bool(verified)) => *verified,
            Some(Value::String(verified)) => verified == "true",
            _ => false,
        };
        if !verified {
            return Err(TokenError::EmailNotVerified);
        }

        Ok(Claims {
            email: email.to_string(),
            exp: exp.unwrap_or(0),
        })
    }
}

/// A JWT NumericDate in whole seconds: a JSON number, or a string of digits
/// as Google's tokeninfo shows it.
fn numeric_date(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::RsaPrivateKey;
    use serde_json::json;

    const KID: &str = "b2ed0db1f661d8546769bab78d2fae7564fdc3a9";
    const AUDIENCE: &str = "https://hooks.example.com/hook/abc";
    const EMAIL: &str = "gcr-push@my-project.iam.gserviceaccount.com";
    const NOW: u64 = 1_700_000_000;

    fn private_key(file: &str) -> RsaPrivateKey {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/gcr")
            .join(file);
        RsaPrivateKey::read_pkcs8_pem_file(&path).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The JWKS entry for a private key's public half.
    fn jwk(kid: &str, key: &RsaPrivateKey) -> Value {
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
               "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
    }

    fn keys() -> KeySet {
        let jwks = json!({"keys": [jwk(KID, &private_key("test-signing-key.pem"))]});
        KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap()
    }

    fn expect() -> GcrAuth {
        GcrAuth {
            audience: AUDIENCE.into(),
            email: EMAIL.into(),
        }
    }

    /// Claims as Google puts them in a Pub/Sub push token.
    fn claims() -> Value {
        json!({"aud": AUDIENCE, "azp": "103416794574132452123", "email": EMAIL,
               "email_verified": true, "exp": NOW + 3600, "iat": NOW,
               "iss": "https://accounts.google.com", "sub": "103243794525501032581"})
    }

    fn sign_with(header: &Value, claims: &Value, key: &RsaPrivateKey) -> String {
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = SigningKey::<Sha256>::new(key.clone()).sign(signed.as_bytes());
        format!("{signed}.{}", b64(&signature.to_bytes()))
    }

    fn sign(claims: &Value) -> String {
        let header = json!({"alg": "RS256", "kid": KID, "typ": "JWT"});
        sign_with(&header, claims, &private_key("test-signing-key.pem"))
    }

    fn check(token: &str) -> Result<Claims, TokenError> {
        check_at(token, NOW)
    }

    fn check_at(token: &str, now: u64) -> Result<Claims, TokenError> {
        Token::parse(token)?.verify(&keys(), &expect(), now)
    }

    fn with(field: &str, value: Value) -> Value {
        let mut c = claims();
        c[field] = value;
        c
    }

    fn without(field: &str) -> Value {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(field);
        c
    }

    #[test]
    fn a_google_token_for_this_endpoint_passes() {
        assert_eq!(
            check(&sign(&claims())),
            Ok(Claims {
                email: EMAIL.into(),
                exp: NOW + 3600
            })
        );
    }

    #[test]
    fn both_issuer_spellings_pass() {
        for iss in ISSUERS {
            assert!(check(&sign(&with("iss", json!(iss)))).is_ok(), "{iss}");
        }
    }

    /// The claims Google's tokeninfo showed for a real GCR push (kept from
    /// the Go original's tests): strings for times and `email_verified`.
    #[test]
    fn the_tokeninfo_fixture_passes_with_its_own_audience_and_email() {
        let fixture: Value =
            serde_json::from_slice(&crate::source::testing::fixture("gcr_auth_result")).unwrap();
        let token = sign(&fixture);
        let expect = GcrAuth {
            audience: "gcr-update".into(),
            email: "gcr-publisher@iam.gserviceaccount.com".into(),
        };
        let verified = Token::parse(&token)
            .unwrap()
            .verify(&keys(), &expect, 1_580_356_546 + 600)
            .unwrap();
        assert_eq!(verified.exp, 1_580_360_146);
        // And an hour and more later it has expired.
        let err = Token::parse(&token)
            .unwrap()
            .verify(&keys(), &expect, 1_580_360_146 + SKEW)
            .unwrap_err();
        assert_eq!(err.check(), "exp");
    }

    #[test]
    fn a_signature_that_does_not_verify_is_refused() {
        let token = sign(&claims());
        // Another key, same kid.
        let forged = sign_with(
            &json!({"alg": "RS256", "kid": KID}),
            &claims(),
            &private_key("test-signing-key-2.pem"),
        );
        assert_eq!(check(&forged), Err(TokenError::BadSignature));
        // The payload swapped for another one: the signature no longer covers it.
        let (header, rest) = token.split_once('.').unwrap();
        let signature = rest.split_once('.').unwrap().1;
        let other = b64(
            with("email", json!("attacker@evil.iam.gserviceaccount.com"))
                .to_string()
                .as_bytes(),
        );
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
        let key = private_key("test-signing-key.pem");
        for alg in ["none", "HS256", "RS512", "PS256", "ES256", "rs256", ""] {
            let token = sign_with(&json!({"alg": alg, "kid": KID}), &claims(), &key);
            assert_eq!(
                check(&token),
                Err(TokenError::Algorithm(alg.into())),
                "{alg}"
            );
        }
        let token = sign_with(&json!({"kid": KID}), &claims(), &key);
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
        let key = private_key("test-signing-key.pem");
        let token = sign_with(&json!({"alg": "RS256"}), &claims(), &key);
        assert_eq!(check(&token).err(), Some(TokenError::MissingKid));
        let token = sign_with(&json!({"alg": "RS256", "kid": ""}), &claims(), &key);
        assert_eq!(check(&token).err(), Some(TokenError::MissingKid));
        let token = sign_with(&json!({"alg": "RS256", "kid": "rotated"}), &claims(), &key);
        let parsed = Token::parse(&token).unwrap();
        assert_eq!(parsed.kid(), "rotated");
        assert_eq!(
            parsed.verify(&keys(), &expect(), NOW),
            Err(TokenError::UnknownKey("rotated".into()))
        );
        assert!(matches!(
            parsed.verify(&KeySet::default(), &expect(), NOW),
            Err(TokenError::UnknownKey(_))
        ));
    }

    #[test]
    fn critical_header_extensions_are_refused() {
        let token = sign_with(
            &json!({"alg": "RS256", "kid": KID, "crit": ["b64"], "b64": false}),
            &claims(),
            &private_key("test-signing-key.pem"),
        );
        assert_eq!(check(&token).unwrap_err().check(), "format");
    }

    #[test]
    fn expiry_allows_the_skew_and_no_more() {
        let exp = NOW + 3600;
        let token = sign(&claims());
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
            let err = check(&sign(&with("exp", bad.clone()))).unwrap_err();
            assert_eq!(err, TokenError::Expired { exp: 0, now: NOW }, "{bad}");
        }
        assert_eq!(check(&sign(&without("exp"))).unwrap_err().check(), "exp");
    }

    #[test]
    fn a_token_from_the_future_is_refused() {
        let token = sign(&with("iat", json!(NOW + SKEW)));
        assert!(check(&token).is_ok());
        let token = sign(&with("iat", json!(NOW + SKEW + 1)));
        assert_eq!(
            check(&token),
            Err(TokenError::NotYetValid {
                iat: NOW + SKEW + 1,
                now: NOW
            })
        );
        assert_eq!(check(&sign(&without("iat"))).unwrap_err().check(), "iat");
        assert_eq!(
            check(&sign(&with("iat", json!("x")))).unwrap_err().check(),
            "iat"
        );
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
            let err = check(&sign(&with("iss", iss.clone()))).unwrap_err();
            assert_eq!(err.check(), "iss", "{iss}");
        }
        assert_eq!(
            check(&sign(&without("iss"))),
            Err(TokenError::Issuer(String::new()))
        );
    }

    #[test]
    fn the_audience_must_be_the_configured_one() {
        assert_eq!(
            check(&sign(&with("aud", json!("https://other.example.com/")))),
            Err(TokenError::Audience("https://other.example.com/".into()))
        );
        for aud in [
            json!(format!("{AUDIENCE}/")),
            json!(AUDIENCE.to_uppercase()),
            json!(["https://other.example.com/"]),
            json!(null),
            json!(7),
        ] {
            let err = check(&sign(&with("aud", aud.clone()))).unwrap_err();
            assert_eq!(err.check(), "aud", "{aud}");
        }
        assert_eq!(check(&sign(&without("aud"))).unwrap_err().check(), "aud");
        // A list that includes ours is fine (RFC 7519).
        assert!(check(&sign(&with("aud", json!(["x", AUDIENCE])))).is_ok());
    }

    #[test]
    fn the_email_must_be_the_configured_service_account() {
        let other = "someone-else@other-project.iam.gserviceaccount.com";
        assert_eq!(
            check(&sign(&with("email", json!(other)))),
            Err(TokenError::Email(other.into()))
        );
        for email in [json!(EMAIL.to_uppercase()), json!(null), json!([EMAIL])] {
            let err = check(&sign(&with("email", email.clone()))).unwrap_err();
            assert_eq!(err.check(), "email", "{email}");
        }
        assert_eq!(
            check(&sign(&without("email"))),
            Err(TokenError::Email(String::new()))
        );
    }

    #[test]
    fn the_email_must_be_verified() {
        assert!(check(&sign(&with("email_verified", json!("true")))).is_ok());
        for v in [
            json!(false),
            json!("false"),
            json!("True"),
            json!(1),
            json!(null),
            json!(""),
        ] {
            assert_eq!(
                check(&sign(&with("email_verified", v.clone()))),
                Err(TokenError::EmailNotVerified),
                "{v}"
            );
        }
        assert_eq!(
            check(&sign(&without("email_verified"))),
            Err(TokenError::EmailNotVerified)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let token = sign(&claims());
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
        ] {
            let err = Token::parse(&bad).err().unwrap_or_else(|| panic!("{bad}"));
            assert!(
                matches!(err, TokenError::Malformed(_) | TokenError::Algorithm(_)),
                "{bad}: {err:?}"
            );
        }
        // A signed payload that is not a JSON object.
        let key = private_key("test-signing-key.pem");
        for payload in [json!("claims"), json!([1, 2])] {
            let token = sign_with(&json!({"alg": "RS256", "kid": KID}), &payload, &key);
            assert!(matches!(check(&token), Err(TokenError::Malformed(_))));
        }
    }

    #[test]
    fn the_token_comes_from_one_bearer_authorization_header() {
        use crate::source::testing::headers;
        let token = sign(&claims());
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
        let token = sign(&with("aud", json!("x".repeat(5000))));
        let err = check(&token).unwrap_err();
        let shown = err.to_string();
        assert!(shown.len() < 300, "{shown}");
        assert!(!shown.contains(token.split('.').nth(2).unwrap()));
    }

    #[test]
    fn jwks_documents_are_read_strictly() {
        let one = private_key("test-signing-key.pem");
        let two = private_key("test-signing-key-2.pem");
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
}
