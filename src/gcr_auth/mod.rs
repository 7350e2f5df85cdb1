//! Google Container Registry authentication: the Google-signed OIDC token a
//! Cloud Pub/Sub push subscription puts on each push, checked against an
//! endpoint's `gcr:` block before the push's body is read.
//!
//! - [`token`](Token): parsing the token and every check on it, a pure
//!   function of the token, the keys and the clock;
//! - [`keys`](Jwks): Google's signing keys, read from the JWKS document it
//!   publishes, fetched lazily and rate limited, and cached;
//! - [`Jwks::authenticate`]: the per-push check that puts the two together.
//!
//! Nothing here logs a refused token: every refusal is a [`TokenError`] for
//! the caller to count and log within its own budget. Only key fetches are
//! logged, and they are rate limited.

mod keys;
mod token;

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde::Deserialize;

pub use keys::{
    check_url, FetchError, Jwks, KeySet, KeySetError, GOOGLE_JWKS_URL, MAX_AGE, MIN_KEY_BITS,
    MIN_REFRESH,
};
pub use token::{Claims, Token, TokenError, ISSUERS, SKEW};

/// The only signature algorithm Google uses for these tokens, and the only
/// one accepted: anything else (`none`, `HS256` signed with a public key as
/// the HMAC secret, …) is a classic way to forge a JWT. Stated here, above
/// both: `token` refuses a token of any other algorithm, `keys` any key
/// published for another.
pub const ALGORITHM: &str = "RS256";

/// An endpoint's `gcr:` block: who must have signed a Pub/Sub push.
///
/// ```yaml
/// gcr:
///   audience: https://hooks.example.com/hook/…   # the push subscription's audience
///   email: gcr-push@my-project.iam.gserviceaccount.com   # its service account
/// ```
///
/// Both are required: a token Google signed for some other audience or
/// service account proves nothing about this subscription.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcrAuth {
    /// The token's `aud` must equal this.
    pub audience: String,
    /// The token's `email` must equal this, and be verified.
    pub email: String,
}

impl Jwks {
    /// Check the Google-signed token on a Pub/Sub push against an
    /// endpoint's `gcr:` block (see [`Token::verify`] for the checks),
    /// fetching the keys first if the token names one we do not have.
    ///
    /// The token's header is checked before any fetch, so a push without a
    /// well-formed RS256 token never makes us call Google.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        expect: &GcrAuth,
    ) -> Result<Claims, TokenError> {
        let token = Token::from_headers(headers)?;
        let keys = self.keys_for(token.kid()).await;
        token.verify(&keys.keys, expect, unix_now())
    }
}

/// Our clock, in Unix seconds, for `exp` and `iat`.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
