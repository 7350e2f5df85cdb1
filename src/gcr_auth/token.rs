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
//! 2. the RS256 signature over `header.payload` verifies with that key
//!    (checked by the `jsonwebtoken` crate, which also re-checks that the
//!    algorithm is RS256 and the key an RSA key);
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
//! reading it is given; reading, fetching and caching the keys is the job
//! of [`KeySet`] and [`super::Jwks`]. Claims are only read after the
//! signature verified.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::KeySet;
use super::{GcrAuth, ALGORITHM};

/// The issuers Google signs ID tokens as.
pub const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// Seconds of clock difference tolerated between Google and us, on `exp`
/// and on `iat`.
pub const SKEW: u64 = 60;

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

/// A token split into its parts, its header checked, its signature not yet.
pub struct Token {
    kid: String,
    /// The whole compact JWS, for `jsonwebtoken` to verify.
    compact: String,
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
        // Decoded by `jsonwebtoken` in `verify`; refused here already, so
        // that junk never makes us look for keys.
        if !is_base64url(payload) {
            return Err(TokenError::Malformed("the payload is not base64url"));
        }
        if !is_base64url(signature) {
            return Err(TokenError::Malformed("the signature is not base64url"));
        }
        Ok(Token {
            kid,
            compact: compact.to_string(),
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
            .get(&self.kid)
            .ok_or_else(|| TokenError::UnknownKey(crate::printable(&self.kid)))?;
        // jsonwebtoken checks the JWS: RS256 only, and only with an RSA key
        // (no HMAC with a public key as the secret), and the signature. Its
        // claim checks are off: ours below use the clock we are given, and
        // are stricter (jsonwebtoken 10 takes an `iss` list, a fractional
        // `exp`, and no `iat`, `email` or `email_verified`).
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(&self.compact, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::Base64(_) => {
                    TokenError::Malformed("a part does not decode")
                }
                _ => TokenError::BadSignature,
            })?
            .claims;

        // Signed by Google from here on; still checked field by field.
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

/// Whether a JWS part is base64url without padding: its alphabet, and a
/// length that is not one more than a multiple of four.
fn is_base64url(part: &str) -> bool {
    part.len() % 4 != 1
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
