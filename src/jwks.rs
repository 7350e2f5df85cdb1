//! Google's token-signing keys (a JWKS document), fetched and kept current,
//! and the check a GoogleContainerRegistry endpoint with a `gcr:` block runs
//! on each Pub/Sub push before its source sees it.
//!
//! The keys are fetched on first use, not at start-up, so a flux-recv with
//! no `gcr:` block never calls Google. After that they are fetched again
//! when a token names a key we do not have (Google rotates its keys and
//! publishes the new one before signing with it) and when the set is older
//! than [`MAX_AGE`] (so a key Google withdrew is dropped). Fetches are rate
//! limited to one per `min_refresh` (30 s by default), whatever their
//! outcome: anyone can send tokens with made-up `kid`s, and that must not
//! turn into a stream of requests to Google. A fetch that fails, or returns
//! something that is not a usable key set, keeps the keys we had.
//!
//! ureq is a blocking client, so the fetch runs on tokio's blocking pool
//! with a short timeout, one at a time: requests that need a refresh wait
//! for the one in progress and then use its result.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::HeaderMap;
use slog::{info, warn, Logger};

use crate::config::GcrAuth;
use crate::google_token::{Claims, KeySet, KeySetError, Token, TokenError};

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
    /// No answer: DNS, connection, TLS, timeout.
    #[error("cannot fetch the keys: {0}")]
    Unreachable(String),
    /// An answer other than 200.
    #[error("the key server answered {0}")]
    Status(u16),
    /// A 200 whose body is not a usable JWKS.
    #[error("the key server's answer is not usable: {0}")]
    Invalid(#[from] KeySetError),
}

/// The current key set and when it was fetched.
#[derive(Default)]
struct Cached {
    keys: KeySet,
    fetched: Option<Instant>,
}

/// Google's signing keys, cached, and the token check that uses them.
pub struct Jwks {
    url: String,
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
    /// `min_refresh`.
    pub fn new(url: impl Into<String>, min_refresh: Duration, log: Logger) -> Jwks {
        Jwks {
            url: url.into(),
            min_refresh,
            current: ArcSwap::from_pointee(Cached::default()),
            last_attempt: tokio::sync::Mutex::new(None),
            log,
        }
    }

    /// Check the Google-signed token on a Pub/Sub push against an
    /// endpoint's `gcr:` block (see [`crate::google_token`] for the checks),
    /// fetching the keys first if the token names one we do not have.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        expect: &GcrAuth,
    ) -> Result<Claims, TokenError> {
        let token = Token::from_headers(headers)?;
        let cached = self.current.load_full();
        let stale = cached.fetched.is_none_or(|at| at.elapsed() >= MAX_AGE);
        let cached = if stale || !cached.keys.contains(token.kid()) {
            self.refresh().await;
            self.current.load_full()
        } else {
            cached
        };
        token.verify(&cached.keys, expect, unix_now())
    }

    /// Fetch the keys again, unless a fetch started less than
    /// `min_refresh` ago.
    async fn refresh(&self) {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                info!(self.log, "fetched Google's token signing keys";
                      "url" => &self.url, "keys" => keys.len());
                self.current.store(Arc::new(Cached {
                    keys,
                    fetched: Some(Instant::now()),
                }));
            }
            Err(e) => {
                warn!(self.log, "cannot refresh Google's token signing keys; keeping the ones we have";
                      "url" => &self.url, "error" => %e,
                      "retry_after_s" => self.min_refresh.as_secs());
            }
        }
    }

    /// One GET of the JWKS, on the blocking pool.
    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || fetch_blocking(&url))
            .await
            .map_err(|e| FetchError::Unreachable(e.to_string()))?
    }
}

fn fetch_blocking(url: &str) -> Result<KeySet, FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| FetchError::Unreachable(e.to_string()))?;
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

/// Our clock, in Unix seconds, for `exp` and `iat`.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Check a `--google-jwks-url`: https, or plain http to this machine only
/// (a stand-in for tests). Keys fetched over plain http from elsewhere could
/// be swapped on the way, and with them who may push.
pub fn check_url(url: &str) -> Result<(), String> {
    if let Some(rest) = url.strip_prefix("https://") {
        if rest.split('/').next().is_some_and(|host| !host.is_empty()) {
            return Ok(());
        }
        return Err(format!("{url:?} has no host"));
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.split('/').next().unwrap_or("");
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.split(':').next().unwrap_or(""),
        };
        let loopback = host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        if loopback || host == "localhost" {
            return Ok(());
        }
    }
    Err(format!(
        "{url:?} must be an https:// URL (plain http:// only to localhost), e.g. {GOOGLE_JWKS_URL}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_url_must_be_https_except_on_loopback() {
        for good in [
            GOOGLE_JWKS_URL,
            "https://keys.example.com",
            "http://127.0.0.1:4000/certs",
            "http://localhost/certs",
            "http://[::1]:8080/",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://www.googleapis.com/oauth2/v3/certs",
            "http://localhost.evil.example/",
            "http://[::2]/",
            "http://127.evil.example/",
            "https:///certs",
            "ftp://127.0.0.1/",
            "www.googleapis.com/oauth2/v3/certs",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_clock_is_unix_seconds() {
        // 2020-01-01; a clock before that would fail every token.
        assert!(unix_now() > 1_577_836_800);
    }

    #[tokio::test]
    async fn a_token_is_checked_before_any_fetch() {
        // No server at this address: a request without a token must be
        // refused without trying to fetch keys.
        let jwks = Jwks::new(
            "http://127.0.0.1:1/certs",
            MIN_REFRESH,
            Logger::root(slog::Discard, slog::o!()),
        );
        let expect = GcrAuth {
            audience: "a".into(),
            email: "e".into(),
        };
        let err = jwks
            .authenticate(&HeaderMap::new(), &expect)
            .await
            .unwrap_err();
        assert_eq!(err, TokenError::MissingAuthorization);
        assert!(jwks.last_attempt.lock().await.is_none());
    }
}
