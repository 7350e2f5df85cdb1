//! TLS served directly on the public port (`--tls-cert`, `--tls-key`), its
//! certificate taken up anew without a restart.
//!
//! [`Tls`] holds the pair being served behind an `ArcSwap`, which every
//! new handshake reads once (rustls asks a resolver for it): a reload
//! swaps the whole pair, handshakes after it get the new one, and
//! connections already open keep the session they made. The reload task
//! ([`crate::reload`]) watches the two files with the config's (the same
//! directory watch, so the kubelet's `..data` swap of a
//! `kubernetes.io/tls` Secret is one event) and calls [`Tls`]'s
//! [`Companion::reload`] on every trigger, SIGHUP included. A pair that
//! fails its checks ([`pair`]) leaves the last good one served; the failure
//! is logged once with the file and the reason (again when it changes, or
//! when SIGHUP asks) and counted.
//!
//! rustls speaks TLS 1.2 and 1.3 only, with ring's suites: ECDHE key
//! exchange and AEAD ciphers (AES-GCM, ChaCha20-Poly1305), nothing else;
//! ALPN offers `http/1.1`. [`Tls::handshake`] gives a handshake
//! `--tls-handshake-timeout` to finish; the server runs it inside the
//! connection's slot, so unfinished handshakes count against
//! `--max-connections` like any other connection ([`crate::slots`]).
//! Failed handshakes (plaintext, an old protocol, a client that gives up)
//! are counted by reason and logged within the refusal log budget.

pub mod pair;

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use slog::{debug, info, warn, Logger};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::logging::Budget;
use crate::metrics::{HandshakeRefusal, Metrics, Reload};
use crate::reload::{Companion, Trigger};
pub use pair::{Pair, PairError, PairFiles};

/// The only application protocol offered: hyper serves HTTP/1.1.
const ALPN: &[u8] = b"http/1.1";

/// TLS on the public port: the pair served, and how it is reloaded.
pub struct Tls {
    files: PairFiles,
    /// The pair served now; each new handshake loads it once.
    served: Arc<ArcSwap<Pair>>,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
    /// The failure logged last, while the files still make no good pair.
    failure: Mutex<Option<PairError>>,
    /// The refusal log budget, shared with refused hooks.
    refusal_logs: Arc<Budget>,
    log: Logger,
}

/// Hands rustls the pair served now.
#[derive(Debug)]
struct Resolver(Arc<ArcSwap<Pair>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().certified.clone())
    }
}

/// Why TLS cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The pair on disk cannot be served.
    #[error("{0}")]
    Pair(#[from] PairError),
    /// rustls refused the configuration (it should not).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

impl Tls {
    /// TLS for the pair in `files`, which must pass every check ([`pair`]);
    /// [`Loaded::serve`] then makes it serve.
    pub fn load(files: PairFiles, handshake_timeout: Duration) -> Result<Loaded, TlsError> {
        let pair = pair::load(&files, SystemTime::now())?;
        let served = Arc::new(ArcSwap::from_pointee(pair));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(served.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Loaded {
            files,
            served,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout,
        })
    }

    /// The served leaf's notAfter, in Unix seconds.
    pub fn not_after(&self) -> u64 {
        pair::unix_seconds(self.served.load().not_after)
    }

    /// The handshake on an accepted connection, within the handshake
    /// timeout; a failure is counted, logged within the refusal budget,
    /// and returned as `None` (the connection is then dropped: closed).
    pub async fn handshake<IO>(&self, io: IO) -> Option<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let reason =
            match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io)).await {
                Ok(Ok(mut stream)) => {
                    // rustls queues up to 64 KiB of encrypted replies per
                    // connection by default; as the kernel's send buffer, a
                    // client that does not read stalls after 16 KiB.
                    stream
                        .get_mut()
                        .1
                        .set_buffer_limit(Some(crate::conn::SEND_BUFFER));
                    return Some(stream);
                }
                Ok(Err(e)) => (refusal(&e), Some(e)),
                Err(_) => (HandshakeRefusal::Timeout, None),
            };
        self.refused(reason);
        None
    }

    fn refused(&self, (reason, error): (HandshakeRefusal, Option<io::Error>)) {
        self.metrics.tls_refused(reason);
        let error = error.map_or_else(|| "-".to_string(), |e| e.to_string());
        // A connection closed before its first byte is a TCP health check
        // (a load balancer's) as often as not: not worth a warning.
        if reason == HandshakeRefusal::Closed {
            debug!(self.log, "TLS handshake not finished: the client closed the connection";
                   "error" => error);
        } else if self.refusal_logs.admit(&self.log) {
            warn!(self.log, "TLS handshake refused"; "reason" => reason.label(), "error" => error,
                  "handshake_timeout_s" => self.handshake_timeout.as_secs_f64());
        }
    }
}

/// TLS loaded, not yet counted or logging: [`Loaded::serve`] makes it
/// [`Tls`].
pub struct Loaded {
    files: PairFiles,
    served: Arc<ArcSwap<Pair>>,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl Loaded {
    /// The served leaf's notAfter, in Unix seconds (for
    /// [`Metrics::serve_tls`]).
    pub fn not_after(&self) -> u64 {
        pair::unix_seconds(self.served.load().not_after)
    }

    /// Serve it, counting in `metrics` and logging refused handshakes
    /// within `refusal_logs`.
    pub fn serve(self, metrics: Arc<Metrics>, refusal_logs: Arc<Budget>, log: Logger) -> Tls {
        info!(log, #crate::logging::KEEP, "serving TLS";
              "cert" => %self.files.cert.display(), "key" => %self.files.key.display(),
              "chain" => self.served.load().certified.cert.len(),
              "not_after" => self.not_after());
        Tls {
            files: self.files,
            served: self.served,
            acceptor: self.acceptor,
            handshake_timeout: self.handshake_timeout,
            metrics,
            failure: Mutex::new(None),
            refusal_logs,
            log,
        }
    }
}

/// The `reason` of a failed handshake.
fn refusal(e: &io::Error) -> HandshakeRefusal {
    use rustls::{Error, InvalidMessage};
    if let Some(e) = e.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        return match e {
            Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
                HandshakeRefusal::Plaintext
            }
            Error::PeerIncompatible(_) => HandshakeRefusal::Protocol,
            Error::AlertReceived(_) => HandshakeRefusal::ClientAlert,
            _ => HandshakeRefusal::Malformed,
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => HandshakeRefusal::Closed,
        // The write-progress timeout (crate::conn) and the like.
        io::ErrorKind::TimedOut => HandshakeRefusal::Timeout,
        _ => HandshakeRefusal::Malformed,
    }
}

impl Companion for Tls {
    fn files(&self) -> BTreeSet<PathBuf> {
        [self.files.cert.clone(), self.files.key.clone()].into()
    }

    fn reload(&self, trigger: Trigger, asked: bool) {
        let loaded = pair::load(&self.files, SystemTime::now());
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let result = match loaded {
            Err(e) => {
                if asked || failure.as_ref() != Some(&e) {
                    warn!(self.log, "TLS reload failed; still serving the previous certificate";
                          "trigger" => trigger.as_str(), "error" => %e,
                          "not_after" => self.not_after());
                }
                *failure = Some(e);
                Reload::Failed
            }
            Ok(pair) => {
                if failure.take().is_some() {
                    info!(self.log, "the TLS certificate and key load again";
                          "trigger" => trigger.as_str());
                }
                if pair.digest == self.served.load().digest {
                    Reload::Unchanged
                } else {
                    let chain = pair.certified.cert.len();
                    self.served.store(Arc::new(pair));
                    info!(self.log, "TLS certificate reloaded";
                          "trigger" => trigger.as_str(), "cert" => %self.files.cert.display(),
                          "chain" => chain, "not_after" => self.not_after());
                    Reload::Changed
                }
            }
        };
        drop(failure);
        self.metrics.tls_reloaded(result, self.not_after());
    }
}
