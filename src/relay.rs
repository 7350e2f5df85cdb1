//! Relaying notifications to fluxd's `POST {api}/v11/notify`.
//!
//! fluxd restarts (a rollout, an OOM kill), and providers mostly do not
//! redeliver a failed webhook, so a hook that arrives while fluxd is away
//! is held on to: connection failures and 502/503/504 are retried with
//! exponential backoff and jitter until the hook's deadline. Other answers
//! are final.
//!
//! ureq is a blocking client, so each attempt runs on tokio's blocking pool
//! (`spawn_blocking`), with ureq's own timeout set to what is left of the
//! deadline so a thread is never held past it. At most `max_relays`
//! attempts run at once: a hanging fluxd can tie up that many blocking
//! threads and no more, and requests that need no relay never wait for one.
//! Backoff sleeps are async and hold no thread and no slot.
//!
//! Identical notifications in flight at the same moment are sent once and
//! share the result: a storm of pushes to one image repository becomes one
//! call to fluxd. fluxd treats a notification as a trigger to look, so one
//! look covers them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;

use crate::notification::Change;

/// How a relay failed; each maps to the status the provider sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// fluxd could not be reached (connection refused, reset, DNS), up to
    /// the deadline.
    #[error("the Flux API is unreachable")]
    Unreachable,
    /// fluxd answered, but not with a 2xx.
    #[error("the Flux API answered {0}")]
    Rejected(u16),
    /// No answer before the hook's deadline.
    #[error("the Flux API did not answer in time")]
    TimedOut,
    /// Every relay slot stayed busy until the deadline.
    #[error("too many hooks are being relayed; retry later")]
    Busy,
}

impl RelayError {
    /// Worth another attempt: fluxd is restarting or behind a proxy that
    /// says it is unavailable.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            RelayError::Unreachable | RelayError::Rejected(502..=504)
        )
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// POSTs made to fluxd.
    pub attempts: AtomicU64,
    /// Of those, attempts after a transient failure.
    pub retries: AtomicU64,
    /// Notifications that joined an identical one already in flight.
    pub coalesced: AtomicU64,
}

/// Backoff between attempts: exponential from `first`, capped at `max`,
/// each wait drawn uniformly from its upper half so that hooks that failed
/// together do not retry together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Wait after the first failure.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failed attempts (1 or more).
    pub fn wait(&self, failures: u32) -> Duration {
        let exp = self
            .first
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

type SharedSend = Shared<BoxFuture<'static, Result<(), RelayError>>>;

/// Sends notifications to fluxd. Cheap to clone; clones share slots,
/// connections and the in-flight set.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    agent: ureq::Agent,
    deadline: Duration,
    backoff: Backoff,
    slots: Semaphore,
    /// Sends in progress, by (URL, body). A std Mutex: it is never held
    /// across an `.await`.
    in_flight: Mutex<HashMap<(String, Vec<u8>), SharedSend>>,
    stats: RelayStats,
}

impl Relay {
    /// A relay giving each hook `deadline` for all its changes, with at
    /// most `max_relays` calls to fluxd at once.
    pub fn new(deadline: Duration, max_relays: usize) -> Relay {
        let agent = ureq::Agent::config_builder()
            // Non-2xx statuses are answers, not transport errors.
            .http_status_as_error(false)
            .timeout_global(Some(deadline))
            // One idle connection per slot, so a burst of relays reuses
            // connections instead of leaving hundreds in TIME-WAIT.
            .max_idle_connections(max_relays.max(1))
            .max_idle_connections_per_host(max_relays.max(1))
            .user_agent(concat!("flux-recv/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Relay {
            inner: Arc::new(Inner {
                agent,
                deadline,
                backoff: Backoff::default(),
                slots: Semaphore::new(max_relays.max(1)),
                in_flight: Mutex::new(HashMap::new()),
                stats: RelayStats::default(),
            }),
        }
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &RelayStats {
        &self.inner.stats
    }

    /// The relay's counters for `/metrics`, read at each scrape.
    pub fn collector(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(Counters(self.clone()))
    }

    /// POST each change, in order, to `notify_url`; succeed only when fluxd
    /// accepted every one before the deadline.
    pub async fn notify(&self, notify_url: String, changes: Vec<Change>) -> Result<(), RelayError> {
        self.notify_by(notify_url, changes, Instant::now() + self.inner.deadline)
            .await
    }

    /// As [`Relay::notify`], with an explicit deadline.
    pub async fn notify_by(
        &self,
        notify_url: String,
        changes: Vec<Change>,
        until: Instant,
    ) -> Result<(), RelayError> {
        for change in changes {
            self.send_once_in_flight(notify_url.clone(), change.to_json(), until)
                .await?;
        }
        Ok(())
    }

    /// Join an identical send already in flight, or start one. The send runs
    /// as its own task, so it completes (and fluxd hears of the change) even
    /// if the provider hangs up.
    async fn send_once_in_flight(
        &self,
        url: String,
        body: Vec<u8>,
        until: Instant,
    ) -> Result<(), RelayError> {
        let key = (url, body);
        let send = {
            let mut in_flight = self.inner.in_flight.lock().expect("in-flight map");
            if let Some(send) = in_flight.get(&key) {
                self.inner.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                send.clone()
            } else {
                let relay = self.clone();
                let k = key.clone();
                let send = async move {
                    let result = relay.send_with_retries(&k.0, &k.1, until).await;
                    relay
                        .inner
                        .in_flight
                        .lock()
                        .expect("in-flight map")
                        .remove(&k);
                    result
                }
                .boxed()
                .shared();
                in_flight.insert(key, send.clone());
                tokio::spawn(send.clone());
                send
            }
        };
        send.await
    }

    async fn send_with_retries(
        &self,
        url: &str,
        body: &[u8],
        until: Instant,
    ) -> Result<(), RelayError> {
        let inner = &self.inner;
        let mut failures = 0;
        loop {
            let permit = tokio::time::timeout_at(until.into(), inner.slots.acquire())
                .await
                .map_err(|_| RelayError::Busy)?
                .expect("the semaphore is never closed");
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RelayError::TimedOut);
            }
            inner.stats.attempts.fetch_add(1, Ordering::Relaxed);
            if failures > 0 {
                inner.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let relay = self.clone();
            let (url_owned, body_owned) = (url.to_string(), body.to_vec());
            // Blocking I/O: on the blocking pool, bounded by `left`.
            let attempt =
                tokio::task::spawn_blocking(move || relay.post(&url_owned, &body_owned, left));
            let result = match tokio::time::timeout(left + Duration::from_secs(1), attempt).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
                Err(_) => Err(RelayError::TimedOut),
            };
            drop(permit);

            match result {
                Err(e) if e.is_transient() => {
                    failures += 1;
                    let wait = inner.backoff.wait(failures);
                    if Instant::now() + wait >= until {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// One POST. Blocking.
    fn post(&self, url: &str, body: &[u8], timeout: Duration) -> Result<(), RelayError> {
        let reply = self
            .inner
            .agent
            .post(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json")
            .send(body);
        match reply {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(RelayError::Rejected(r.status().as_u16())),
            Err(ureq::Error::Timeout(_)) => Err(RelayError::TimedOut),
            Err(_) => Err(RelayError::Unreachable),
        }
    }
}

/// The relay's counters, read at scrape time.
struct Counters(Relay);

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counters").field(self.0.stats()).finish()
    }
}

impl prometheus_client::collector::Collector for Counters {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let stats = self.0.stats();
        let counters = [
            (
                "relay_attempts",
                "POSTs made to fluxd, retries included.",
                &stats.attempts,
            ),
            (
                "relay_retries",
                "POSTs made to fluxd after a transient failure (unreachable, 502, 503, 504).",
                &stats.retries,
            ),
            (
                "relay_coalesced",
                "Notifications that joined an identical one already on its way to fluxd.",
                &stats.coalesced,
            ),
        ];
        for (name, help, value) in counters {
            let counter = prometheus_client::metrics::counter::ConstCounter::new(
                value.load(Ordering::Relaxed),
            );
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(800),
        };
        for _ in 0..100 {
            let w1 = b.wait(1);
            assert!(
                w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100),
                "{w1:?}"
            );
            let w3 = b.wait(3);
            assert!(
                w3 >= Duration::from_millis(200) && w3 <= Duration::from_millis(400),
                "{w3:?}"
            );
            let w10 = b.wait(10);
            assert!(
                w10 >= Duration::from_millis(400) && w10 <= Duration::from_millis(800),
                "{w10:?}"
            );
        }
        assert!(b.wait(u32::MAX) <= Duration::from_millis(800));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(RelayError::Unreachable.is_transient());
        for s in [502, 503, 504] {
            assert!(RelayError::Rejected(s).is_transient());
        }
        for s in [400, 401, 404, 500] {
            assert!(!RelayError::Rejected(s).is_transient());
        }
        assert!(!RelayError::TimedOut.is_transient());
        assert!(!RelayError::Busy.is_transient());
    }
}
