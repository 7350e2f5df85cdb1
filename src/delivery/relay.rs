//! The relay: a fixed pool of blocking worker threads that POST queued
//! notifications to fluxd, and how fluxd's answers are read.
//!
//! ureq is a blocking client, so each worker is a long-lived std thread (the
//! design's blocking pool, made explicit) that takes the next due job from
//! the queue, makes one POST and reports the [`Answer`]. A fixed number of
//! threads means a hanging fluxd ties up that many and no more, and a flood
//! of pushes costs no thread hand-offs: one worker sends one notification
//! after another over its own keep-alive connection.
//!
//! This module knows HTTP and fluxd's answers; it knows nothing of what is
//! queued or who waits for it. The queue hands it [`Job`]s through the
//! [`Jobs`] trait.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ureq::http::{header, StatusCode};
use ureq::unversioned::transport::{Connector, DefaultConnector};

use super::resolver::CachingResolver;
use super::wire::OneWrite;

/// The most of an answer's body that is read: enough for any error page,
/// read only so the connection can carry the next POST.
const BODY_LIMIT: u64 = 64 * 1024;

/// One POST to make.
#[derive(Debug)]
pub(crate) struct Job {
    /// The queue's name for what is being sent; handed back with the answer.
    pub(crate) id: u64,
    /// The full notify URL.
    pub(crate) url: Arc<str>,
    /// The JSON notification.
    pub(crate) body: Arc<[u8]>,
}

/// What came of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// fluxd took it (2xx).
    Accepted,
    /// Worth another attempt later: fluxd unreachable, too slow, or
    /// answering 408, 429 or 5xx.
    Retry {
        /// Which, for the logs.
        reason: String,
        /// How long fluxd asked to be left alone (`Retry-After`), if it did.
        after: Option<Duration>,
    },
    /// Will never succeed as sent: another 4xx, a redirect, or a URL ureq
    /// cannot use. The text is the reason a waiting provider is given.
    Refused(String),
}

/// Where the workers get their jobs and report the answers.
pub(crate) trait Jobs: Send + Sync + 'static {
    /// Block until a job is due; `None` tells the worker to stop.
    fn next(&self) -> Option<Job>;
    /// The answer to job `id`.
    fn finish(&self, id: u64, answer: Answer);
}

/// Start `workers` threads (one or more), each relaying jobs from `jobs`
/// until it says stop.
pub(crate) fn spawn(
    workers: usize,
    relay: Relay,
    jobs: Arc<dyn Jobs>,
) -> io::Result<Vec<JoinHandle<()>>> {
    (0..workers)
        .map(|i| {
            let (relay, jobs) = (relay.clone(), jobs.clone());
            std::thread::Builder::new()
                .name(format!("flux-recv-relay-{i}"))
                .spawn(move || work(&relay, &*jobs))
        })
        .collect()
}

/// One worker's life.
fn work(relay: &Relay, jobs: &dyn Jobs) {
    while let Some(job) = jobs.next() {
        // A panic in the client must not take the worker and its job with
        // it: the job would stay "being sent" for ever.
        let answer = catch_unwind(AssertUnwindSafe(|| relay.post(&job.url, &job.body)))
            .unwrap_or_else(|_| Answer::retry("the relay failed unexpectedly".into()));
        jobs.finish(job.id, answer);
    }
}

/// The HTTP client the workers share: one ureq agent, so one pool of
/// keep-alive connections and one resolver cache.
#[derive(Clone)]
pub(crate) struct Relay {
    agent: ureq::Agent,
    resolver: CachingResolver,
    timeout: Duration,
}

impl Relay {
    /// A client for `workers` threads (one or more), each POST bounded by
    /// `timeout` (connecting and reading the answer included).
    pub(crate) fn new(workers: usize, timeout: Duration) -> Relay {
        Relay::with_resolver(workers, timeout, CachingResolver::new())
    }

    fn with_resolver(workers: usize, timeout: Duration, resolver: CachingResolver) -> Relay {
        let config = ureq::Agent::config_builder()
            // Non-2xx statuses are answers to classify, not transport errors.
            .http_status_as_error(false)
            // Never follow a redirect: ureq would re-send a 301/302/303 as a
            // bodiless GET to wherever Location points, and a 2xx there
            // would look like fluxd's acceptance. A 3xx comes back as a
            // response instead (checked in the tests).
            .max_redirects(0)
            .timeout_global(Some(timeout))
            // One idle connection per worker: each keeps its own alive.
            .max_idle_connections(workers)
            .max_idle_connections_per_host(workers)
            .user_agent(concat!("flux-recv/", env!("CARGO_PKG_VERSION")))
            // fluxd's answers and our notifications are a few hundred
            // bytes: ureq's 128 KiB buffers per connection cost each worker
            // some 200 KiB of RSS for nothing.
            .input_buffer_size(16 * 1024)
            .output_buffer_size(16 * 1024)
            .max_response_header_size(16 * 1024)
            .build();
        // Each POST in one write; see wire.rs.
        let connector = DefaultConnector::new().chain(OneWrite);
        let agent = ureq::Agent::with_parts(config, connector, resolver.clone());
        Relay {
            agent,
            resolver,
            timeout,
        }
    }

    /// One POST of `body` to `url`. Blocking: only the workers call it.
    pub(crate) fn post(&self, url: &str, body: &[u8]) -> Answer {
        let sent = self
            .agent
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .send(body);
        match sent {
            Ok(mut response) => {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .map(|v| crate::printable(&String::from_utf8_lossy(v.as_bytes())));
                let retry_after = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, SystemTime::now()));
                // Read to the end so the connection goes back to the pool;
                // what fluxd says is not needed.
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(BODY_LIMIT)
                    .read_to_vec();
                match classify(response.status(), location.as_deref()) {
                    Answer::Retry { reason, .. } => Answer::Retry {
                        reason,
                        after: retry_after,
                    },
                    answer => answer,
                }
            }
            Err(e) => {
                // fluxd may have moved: look its host up again (at most
                // once a second).
                self.resolver.forget(url);
                self.failure(url, e)
            }
        }
    }

    fn failure(&self, url: &str, e: ureq::Error) -> Answer {
        match e {
            ureq::Error::BadUri(_)
            | ureq::Error::RequireHttpsOnly(_)
            | ureq::Error::TlsRequired
            | ureq::Error::InvalidProxyUrl => Answer::Refused(format!(
                "{} is not a URL flux-recv can post to: {e}",
                crate::printable(url)
            )),
            ureq::Error::Timeout(_) => {
                Answer::retry(format!("fluxd did not answer within {:?}", self.timeout))
            }
            other => Answer::retry(format!("fluxd is unreachable: {other}")),
        }
    }
}

/// What fluxd's status means for the notification.
fn classify(status: StatusCode, location: Option<&str>) -> Answer {
    let said = || format!("fluxd answered {status}");
    match status.as_u16() {
        200..=299 => Answer::Accepted,
        300..=399 => Answer::Refused(format!(
            "{}, a redirect to {}, which flux-recv does not follow; check the api URL",
            said(),
            location.unwrap_or("nowhere (no Location)")
        )),
        408 | 429 | 500..=599 => Answer::retry(said()),
        _ => Answer::Refused(said()),
    }
}

impl Answer {
    /// Retry later, when the worker sees fit.
    fn retry(reason: String) -> Answer {
        Answer::Retry {
            reason,
            after: None,
        }
    }
}

/// How long a `Retry-After` value asks to wait at `now`: a number of
/// seconds, or an HTTP-date (in any of the three formats RFC 9110 names);
/// zero for a date that has passed. `None` for anything else, which is
/// ignored.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: too many for a u64 is "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or_default())
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::delivery::resolver::{Counting, TTL};

    /// A relay whose lookups are counted, and that looks a host up again
    /// after every failure.
    fn counting_relay() -> (Relay, Counting) {
        let counting = Counting::default();
        let resolver = CachingResolver::over(counting.clone(), TTL, Duration::ZERO);
        let relay = Relay::with_resolver(1, Duration::from_secs(5), resolver);
        (relay, counting)
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(retry_after("60", now), secs(60));
        assert_eq!(retry_after(" 0 ", now), secs(0));
        assert_eq!(retry_after("99999999999999999999999", now), secs(u64::MAX));
        // 2023-11-14T22:13:20Z is `now`; each format RFC 9110 names.
        for date in [
            "Tue, 14 Nov 2023 22:14:20 GMT",
            "Tuesday, 14-Nov-23 22:14:20 GMT",
            "Tue Nov 14 22:14:20 2023",
        ] {
            assert_eq!(retry_after(date, now), secs(60), "{date}");
        }
        assert_eq!(retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), secs(0));
        for junk in ["", "-1", "1.5", "soon", "60 s"] {
            assert_eq!(retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        let s = |n| StatusCode::from_u16(n).unwrap();
        for n in [200, 202, 204] {
            assert_eq!(classify(s(n), None), Answer::Accepted);
        }
        for n in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(s(n), None), Answer::Retry { .. }), "{n}");
        }
        for n in [400, 401, 403, 404, 405, 410, 413] {
            assert!(matches!(classify(s(n), None), Answer::Refused(_)), "{n}");
        }
        assert_eq!(
            classify(s(404), None),
            Answer::Refused("fluxd answered 404 Not Found".into())
        );
        let Answer::Refused(why) = classify(s(301), Some("http://elsewhere/x")) else {
            panic!("a redirect is refused");
        };
        assert!(why.contains("301 Moved Permanently"), "{why}");
        assert!(why.contains("http://elsewhere/x"), "{why}");
    }

    /// An HTTP/1.1 server on 127.0.0.1 answering every request 202 over
    /// keep-alive; counts the connections it accepts.
    fn keep_alive_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(stream));
            }
        });
        (addr, connections)
    }

    fn serve(stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end().to_ascii_lowercase();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let reply = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
            if writer.write_all(reply).is_err() {
                return;
            }
        }
    }

    #[test]
    fn one_connection_and_one_lookup_serve_many_posts() {
        let (addr, connections) = keep_alive_server();
        let (relay, counting) = counting_relay();
        // A name, not an address, so that a lookup is a real one.
        let url = format!("http://localhost:{}/api/flux/v11/notify", addr.port());
        for _ in 0..20 {
            assert_eq!(relay.post(&url, b"{}"), Answer::Accepted);
        }
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 1);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_post_looks_the_host_up_again() {
        let (relay, counting) = counting_relay();
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let url = format!("http://127.0.0.1:{}/", dead.port());
        for _ in 0..2 {
            let answer = relay.post(&url, b"{}");
            assert!(matches!(answer, Answer::Retry { .. }), "{answer:?}");
        }
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 2);
    }
}
