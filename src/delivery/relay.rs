//! The relay: a fixed pool of blocking worker threads that POST queued
//! requests to their targets.
//!
//! ureq is a blocking client, so each worker is a long-lived std thread (the
//! design's blocking pool, made explicit) that takes the next due job from
//! the queue, makes one POST and reports the [`Answer`]. A fixed number of
//! threads means a hanging target ties up that many and no more, and a
//! flood of pushes costs no thread hand-offs: one worker sends one
//! notification after another over its own keep-alive connection.
//!
//! This module knows HTTP: it POSTs a job's body to its target's URL with
//! the headers the target makes for it, and hands the answer to the target
//! to read ([`crate::targets`]); what it cannot get an answer from at all
//! (unreachable, too slow, a URL it cannot use) it decides itself. It knows
//! nothing of what is queued or who waits for it: the queue hands it
//! [`Job`]s through the [`Jobs`] trait.

use std::collections::HashMap;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::unversioned::transport::{Connector, DefaultConnector};

use super::resolver::CachingResolver;
use super::wire::OneWrite;
use crate::targets::{Answer, Body, Target};

/// The most of an answer's body that is read: enough for any error page,
/// read only so the connection can carry the next POST.
const BODY_LIMIT: u64 = 64 * 1024;

/// One POST to make.
#[derive(Debug)]
pub(crate) struct Job {
    /// The queue's name for what is being sent; handed back with the answer.
    pub(crate) id: u64,
    /// Where it goes: the target's newest value.
    pub(crate) target: Target,
    /// What is sent.
    pub(crate) body: Body,
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
        let answer = catch_unwind(AssertUnwindSafe(|| relay.send(&job.target, &job.body)))
            .unwrap_or_else(|_| Answer::retry("the relay failed unexpectedly".into()));
        jobs.finish(job.id, answer);
    }
}

/// Most agents kept for targets that name their own CA (`caPath:`): one
/// per distinct CA a config names; past this many (configs rotating CAs
/// for ever) they are all dropped and made again as needed.
const MOST_CA_AGENTS: usize = 64;

/// Agents that trust one private CA each, by its certificates.
type CaAgents = HashMap<Arc<[Vec<u8>]>, ureq::Agent>;

/// The HTTP client the workers share: one ureq agent, so one pool of
/// keep-alive connections and one resolver cache; and one agent more per
/// private CA a target names, which trusts that CA only.
#[derive(Clone)]
pub(crate) struct Relay {
    agent: ureq::Agent,
    /// Agents for targets with a `caPath:`, by the CA's certificates.
    private: Arc<Mutex<CaAgents>>,
    workers: usize,
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
        Relay {
            agent: agent(workers, timeout, &resolver, system_roots().clone()),
            private: Arc::default(),
            workers,
            resolver,
            timeout,
        }
    }

    /// The agent for `target`: the shared one, or the one that trusts only
    /// the CA it names.
    fn agent_for(&self, target: &Target) -> ureq::Agent {
        let Some(ca) = target.ca() else {
            return self.agent.clone();
        };
        // No I/O under the lock: std's Mutex is right.
        let mut private = self.private.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(agent) = private.get(&ca.certs) {
            return agent.clone();
        }
        if private.len() >= MOST_CA_AGENTS {
            private.clear();
        }
        let certs = ca
            .certs
            .iter()
            .map(|der| Certificate::from_der(der).to_owned());
        let agent = agent(self.workers, self.timeout, &self.resolver, certs.into());
        private.insert(ca.certs.clone(), agent.clone());
        agent
    }

    /// One POST of `body` to `target`, with the headers it makes for it;
    /// the answer as the target reads it. Blocking: only the workers call
    /// it.
    pub(crate) fn send(&self, target: &Target, body: &Body) -> Answer {
        let url = &**target.url();
        let mut request = self.agent_for(target).post(url);
        for (name, value) in target.headers(body) {
            request = request.header(name, value);
        }
        match request.send(&body.bytes[..]) {
            Ok(mut response) => {
                let answer = target.read(response.status(), response.headers());
                // Read to the end so the connection goes back to the pool;
                // what the target says is not needed.
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(BODY_LIMIT)
                    .read_to_vec();
                answer
            }
            Err(e) => {
                // The target may have moved: look its host up again (at
                // most once a second).
                self.resolver.forget(url);
                self.failure(target, e)
            }
        }
    }

    /// What a request that got no answer means.
    fn failure(&self, target: &Target, e: ureq::Error) -> Answer {
        let name = target.name();
        match e {
            ureq::Error::BadUri(_)
            | ureq::Error::RequireHttpsOnly(_)
            | ureq::Error::TlsRequired
            | ureq::Error::InvalidProxyUrl => Answer::Refused(format!(
                "{} is not a URL flux-recv can post to: {e}",
                crate::printable(target.url())
            )),
            ureq::Error::Timeout(_) => {
                Answer::retry(format!("{name} did not answer within {:?}", self.timeout))
            }
            other => Answer::retry(format!("{name} is unreachable: {other}")),
        }
    }
}

/// An agent for `workers` threads, each POST bounded by `timeout`, that
/// checks an `https://` target's certificate against `roots`.
fn agent(
    workers: usize,
    timeout: Duration,
    resolver: &CachingResolver,
    roots: RootCerts,
) -> ureq::Agent {
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
        // some 200 KiB of RSS for nothing. A larger body is sent in
        // pieces of this size.
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .max_response_header_size(16 * 1024)
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build();
    // Each POST in one write; see wire.rs.
    let connector = DefaultConnector::new().chain(OneWrite);
    ureq::Agent::with_parts(config, connector, resolver.clone())
}

/// The system's CA certificates (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the
/// distribution's bundle), read once; Mozilla's, compiled in, if it has
/// none (a container without a bundle).
fn system_roots() -> &'static RootCerts {
    static ROOTS: OnceLock<RootCerts> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return RootCerts::WebPki;
        }
        let certs = found.certs.iter();
        certs.map(|c| Certificate::from_der(c).to_owned()).into()
    })
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
    use crate::notification::Change;
    use crate::targets::fluxd::{self, Fluxd};

    /// A relay whose lookups are counted, and that looks a host up again
    /// after every failure.
    fn counting_relay() -> (Relay, Counting) {
        let counting = Counting::default();
        let resolver = CachingResolver::over(counting.clone(), TTL, Duration::ZERO);
        let relay = Relay::with_resolver(1, Duration::from_secs(5), resolver);
        (relay, counting)
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
        let target = Target::from(Fluxd::new(&format!(
            "http://localhost:{}/api/flux",
            addr.port()
        )));
        let body = fluxd::notification(&Change::git("u", "main")).body;
        for _ in 0..20 {
            assert_eq!(relay.send(&target, &body), Answer::Accepted);
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
        let target = Target::from(Fluxd::new(&format!("http://127.0.0.1:{}", dead.port())));
        let body = fluxd::notification(&Change::git("u", "main")).body;
        for _ in 0..2 {
            let answer = relay.send(&target, &body);
            assert!(matches!(answer, Answer::Retry { .. }), "{answer:?}");
        }
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 2);
    }
}
