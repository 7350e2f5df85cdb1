//! Resolving the Flux API's host once, not on every POST.
//!
//! ureq 3.5 asks its resolver for the host's addresses before every call,
//! even when a pooled keep-alive connection to that host is then reused, and
//! with a timeout set its default resolver runs each lookup on a new thread.
//! At thousands of notifications a second that is a thread and a
//! `getaddrinfo` per POST for an address that does not change. So the
//! addresses are kept for a short time (`ttl`), and forgotten when a POST
//! to that host fails, so that a fluxd that moved (a new pod IP behind a
//! DNS name) is found again on the next attempt. While fluxd is down every
//! attempt fails, so a failure forgets addresses only once they are a
//! second old: a thousand pending notifications retrying make one lookup a
//! second, not a thousand.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long resolved addresses are used before the host is looked up again.
pub(crate) const TTL: Duration = Duration::from_secs(30);

/// How old addresses must be for a failure to have them looked up again.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// A [`Resolver`] that remembers what another one answered. Clones share
/// the cache, so the relay can [`forget`](CachingResolver::forget) a host
/// the agent's copy resolved.
#[derive(Clone)]
pub(crate) struct CachingResolver {
    inner: Arc<Inner>,
}

struct Inner {
    lookup: Box<dyn Resolver>,
    ttl: Duration,
    refresh: Duration,
    /// By `host:port`. A std Mutex: held for a map operation, never during a
    /// lookup, so workers resolving different hosts do not wait on each other.
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl CachingResolver {
    /// ureq's own resolver behind a cache.
    pub(crate) fn new() -> CachingResolver {
        CachingResolver::over(DefaultResolver::default(), TTL, REFRESH)
    }

    /// `lookup` behind a cache keeping its answers for `ttl`, or until a
    /// failure once they are `refresh` old.
    pub(crate) fn over(lookup: impl Resolver, ttl: Duration, refresh: Duration) -> CachingResolver {
        CachingResolver {
            inner: Arc::new(Inner {
                lookup: Box::new(lookup),
                ttl,
                refresh,
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A POST to `url` failed: look its host up again next time, unless
    /// that was done less than `refresh` ago.
    pub(crate) fn forget(&self, url: &str) {
        let Some(key) = url.parse::<Uri>().ok().as_ref().and_then(key) else {
            return;
        };
        let mut cache = self.cache();
        if cache
            .get(&key)
            .is_some_and(|(at, _)| at.elapsed() >= self.inner.refresh)
        {
            cache.remove(&key);
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, ResolvedSocketAddrs)>> {
        self.inner.cache.lock().expect("resolver cache")
    }
}

/// `host:port`, with the scheme's default port filled in.
fn key(uri: &Uri) -> Option<String> {
    DefaultResolver::host_and_port(uri.scheme()?, uri.authority()?)
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = key(uri);
        if let Some(k) = &key {
            if let Some((at, addrs)) = self.cache().get(k) {
                if at.elapsed() < self.inner.ttl {
                    return Ok(addrs.clone());
                }
            }
        }
        // Failures are not kept: the next attempt asks again.
        let addrs = self.inner.lookup.resolve(uri, config, timeout)?;
        if let Some(k) = key {
            let ttl = self.inner.ttl;
            let mut cache = self.cache();
            // Hosts a reload dropped age out here instead of piling up.
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            cache.insert(k, (Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

impl fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingResolver")
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// Counts the lookups that reach the resolver behind the cache (tests), and
/// fails them on demand.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub(crate) struct Counting {
    pub(crate) lookups: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) fail: Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(test)]
impl Resolver for Counting {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ureq::Error::HostNotFound);
        }
        DefaultResolver::default().resolve(uri, config, timeout)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn resolve(r: &CachingResolver, url: &str) -> ResolvedSocketAddrs {
        r.resolve(
            &url.parse().unwrap(),
            &Config::default(),
            NextTimeout::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_host_is_looked_up_once_until_forgotten() {
        let counting = Counting::default();
        let r = CachingResolver::over(counting.clone(), Duration::from_secs(3600), Duration::ZERO);
        let first = resolve(&r, "http://127.0.0.1:3030/api/flux/v11/notify");
        for _ in 0..10 {
            assert_eq!(resolve(&r, "http://127.0.0.1:3030/other"), first);
        }
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 1);

        // Another port is another entry.
        resolve(&r, "http://127.0.0.1:3031/");
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 2);

        r.forget("http://127.0.0.1:3030/api/flux/v11/notify");
        resolve(&r, "http://127.0.0.1:3030/");
        resolve(&r, "http://127.0.0.1:3031/");
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn addresses_expire_after_the_ttl() {
        let counting = Counting::default();
        let r = CachingResolver::over(counting.clone(), Duration::ZERO, Duration::ZERO);
        for _ in 0..3 {
            resolve(&r, "http://127.0.0.1:3030/");
        }
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn failures_forget_fresh_addresses_at_most_once_per_refresh() {
        let counting = Counting::default();
        let r = CachingResolver::over(
            counting.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        for _ in 0..5 {
            resolve(&r, "http://127.0.0.1:3030/");
            r.forget("http://127.0.0.1:3030/");
        }
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failures_are_not_cached() {
        let counting = Counting::default();
        let r = CachingResolver::over(counting.clone(), Duration::from_secs(3600), Duration::ZERO);
        counting.fail.store(true, Ordering::SeqCst);
        let uri: Uri = "http://127.0.0.1:3030/".parse().unwrap();
        for _ in 0..2 {
            assert!(r
                .resolve(&uri, &Config::default(), NextTimeout::default())
                .is_err());
        }
        counting.fail.store(false, Ordering::SeqCst);
        resolve(&r, "http://127.0.0.1:3030/");
        resolve(&r, "http://127.0.0.1:3030/");
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 3);
    }
}
