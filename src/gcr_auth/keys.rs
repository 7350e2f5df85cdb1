//! Google's token-signing keys: reading the JWKS document Google publishes,
//! fetching it, and keeping it current.
//!
//! The keys are fetched on first use, not at start-up, so a flux-recv with
//! no `gcr:` block never calls Google. After that they are fetched again
//! when a token names a key we do not have (Google rotates its keys and
//! publishes the new one before signing with it) and when the set is older
//! than [`MAX_AGE`] (so a key Google withdrew is dropped). Fetches are rate
//! limited to one per `min_refresh` ([`MIN_REFRESH`] by default), whatever
//! their outcome: anyone can send tokens with made-up `kid`s, and that must
//! not turn into a stream of requests to Google. A fetch that fails, or
//! returns something that is not a usable key set, keeps the keys we had.
//!
//! ureq is a blocking client, so the fetch runs on tokio's blocking pool
//! with a short timeout, one at a time: requests that need a refresh wait
//! for the one in progress and then use its result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use slog::{info, warn, Logger};

use super::ALGORITHM;

/// Smallest RSA modulus accepted in a published key, in bits. Google's are
/// 2048 bits.
pub const MIN_KEY_BITS: usize = 2048;

/// Where Google publishes the keys it signs ID tokens with.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// At most one fetch per this long.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);

/// Keys older than this are fetched again on next use.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// How long one fetch may take: well inside Pub/Sub's push deadline.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Google's document is a few KiB; anything much bigger is not it.
const MAX_JWKS_BYTES: u64 = 256 * 1024;

/// Why a fetch did not produce a key set.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one [`check_url`] accepts; nothing was fetched.
    #[error("{0}")]
    Url(String),
    /// No answer: DNS, connection, TLS, timeout.
    #[error("cannot fetch the keys: {0}")]
    Unreachable(String),
    /// A redirect: not followed, since the place it points to has not
    /// been checked like the URL we were given.
    #[error("the key server answered {status}, a redirect to {location:?}, which is not followed; give --google-jwks-url the final URL")]
    Redirect {
        /// The 3xx status.
        status: u16,
        /// Where it pointed (made printable), empty when it did not say.
        location: String,
    },
    /// An answer other than 200.
    #[error("the key server answered {0}")]
    Status(u16),
    /// A 200 whose body is not a usable JWKS.
    #[error("the key server's answer is not usable: {0}")]
    Invalid(#[from] KeySetError),
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
    keys: HashMap<String, DecodingKey>,
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

/// A JWKS document: `{"keys": [...]}`.
#[derive(Deserialize)]
struct JwksDocument {
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
        let jwks: JwksDocument = serde_json::from_slice(json)
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
            // Checked here (exponent, at most 4096 bits) so that a bad key
            // refuses the document, not every token signed with it.
            let key = RsaPublicKey::new(n, e).map_err(|e| bad(&e.to_string()))?;
            if key.n().bits() < MIN_KEY_BITS {
                return Err(bad("the modulus is shorter than 2048 bits"));
            }
            let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
            keys.insert(kid, DecodingKey::from_rsa_raw_components(&n, &e));
        }
        if keys.is_empty() {
            return Err(KeySetError::Empty);
        }
        Ok(KeySet { keys })
    }

    /// The key with this id.
    pub(super) fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
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

/// The current key set and when it was fetched.
#[derive(Default)]
pub(super) struct Cached {
    pub(super) keys: KeySet,
    fetched: Option<Instant>,
}

/// Google's signing keys, cached; [`Jwks::authenticate`] checks a push's
/// token with them.
pub struct Jwks {
    /// The URL as [`check_url`] read it, or why it refused it (then every
    /// fetch fails with that, and nothing is fetched).
    url: Result<String, String>,
    min_refresh: Duration,
    /// Read by every push without locking; replaced whole by a fetch.
    current: ArcSwap<Cached>,
    /// When the last fetch started. An async mutex because it is held
    /// across the fetch: pushes that need a refresh queue behind the one in
    /// progress instead of starting their own.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    log: Logger,
}

impl Jwks {
    /// Keys to be fetched from `url` when first needed, at most once per
    /// `min_refresh`. The URL is checked here too, whoever built it.
    pub fn new(url: impl AsRef<str>, min_refresh: Duration, log: Logger) -> Jwks {
        Jwks {
            url: check_url(url.as_ref()),
            min_refresh,
            current: ArcSwap::from_pointee(Cached::default()),
            last_attempt: tokio::sync::Mutex::new(None),
            log,
        }
    }

    /// The current keys, fetched first if they are older than [`MAX_AGE`]
    /// or lack `kid` (and no fetch started within `min_refresh`).
    pub(super) async fn keys_for(&self, kid: &str) -> Arc<Cached> {
        let cached = self.current.load_full();
        let stale = cached.fetched.is_none_or(|at| at.elapsed() >= MAX_AGE);
        if stale || !cached.keys.contains(kid) {
            self.refresh().await;
            return self.current.load_full();
        }
        cached
    }

    /// Fetch the keys again, unless a fetch started less than
    /// `min_refresh` ago.
    async fn refresh(&self) {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        // Never the URL as given: it may hold userinfo, which is refused.
        let shown = self.url.as_deref().unwrap_or("(refused)");
        match self.fetch().await {
            Ok(keys) => {
                info!(self.log, "fetched Google's token signing keys";
                      "url" => shown, "keys" => keys.len());
                self.current.store(Arc::new(Cached {
                    keys,
                    fetched: Some(Instant::now()),
                }));
            }
            Err(e) => {
                warn!(self.log, "cannot refresh Google's token signing keys; keeping the ones we have";
                      "url" => shown, "error" => %e,
                      "retry_after_s" => self.min_refresh.as_secs());
            }
        }
    }

    /// One GET of the JWKS, on the blocking pool.
    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let url = self.url.clone().map_err(FetchError::Url)?;
        tokio::task::spawn_blocking(move || fetch_blocking(&url))
            .await
            .map_err(|e| FetchError::Unreachable(e.to_string()))?
    }
}

fn fetch_blocking(url: &str) -> Result<KeySet, FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A redirect could lead anywhere, plain http included: it comes
        // back as the 3xx itself, and is refused below.
        .max_redirects(0)
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| FetchError::Unreachable(e.to_string()))?;
    if response.status().is_redirection() {
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .map(|v| crate::printable(&String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_default();
        return Err(FetchError::Redirect {
            status: response.status().as_u16(),
            location,
        });
    }
    if response.status() != 200 {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_vec()
        .map_err(|e| FetchError::Unreachable(e.to_string()))?;
    Ok(KeySet::from_jwks(&body)?)
}

/// Check a `--google-jwks-url` and return it as the URI parser read it,
/// which is what gets fetched: https, or plain http to this machine only
/// (a stand-in for tests). Keys fetched over plain http from elsewhere could
/// be swapped on the way, and with them who may push.
///
/// Userinfo (`user:password@` before the host) is refused: in
/// `http://localhost:1@evil.example/` the host is `evil.example`. So is a
/// URL not written `scheme://host`, which parsers read in different ways.
/// Error messages never repeat a URL with userinfo, which may hold a
/// password.
pub fn check_url(given: &str) -> Result<String, String> {
    let refused = || {
        format!(
            "{given:?} must be an https:// URL (plain http:// only to localhost), e.g. {GOOGLE_JWKS_URL}"
        )
    };
    let uri: http::Uri = given
        .parse()
        .map_err(|e| format!("{given:?} is not a URL: {e}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(refused());
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "a --google-jwks-url with userinfo (`user@` or `user:password@` before the host) \
             is refused: the host is what follows the `@`; e.g. {GOOGLE_JWKS_URL}"
        ));
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() || host == "[]" {
        return Err(format!("{given:?} has no host"));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(refused()),
    }
    // What is fetched is this reading of the URL, nothing a client might
    // read otherwise.
    let port = authority.port().map_or(String::new(), |p| format!(":{p}"));
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(format!("{scheme}://{host}{port}{path}"))
}
