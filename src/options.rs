//! The server's settings that come from flags and stay fixed while the
//! process runs, with their defaults: the one place the defaults are
//! stated, or named where the module they tune states them (the delivery
//! queue's, Google's keys, the signature tolerance, the file events'
//! debounce). [`crate::cli`] shows them in `--help` and fills these in from
//! the command line and the environment; the tests start from
//! [`Options::default`]. Each field is named after its flag, and so is the
//! field of each part it is handed to ([`Options::request_limits`],
//! [`Options::slots`], [`Options::reload_timing`], …).

use std::time::Duration;

/// The config file read when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "fluxrecv.yaml";

/// Where the server listens when `--listen` is not given.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Most connections the admin address (`--metrics-listen`) serves at once:
/// probes and scrapers, a handful at a time; its own cap, so a flood on the
/// public port cannot starve them.
pub const ADMIN_CONNECTIONS: usize = 64;

/// Most connections served at once when `--max-connections` is not given,
/// in plain HTTP.
pub const MAX_CONNECTIONS: usize = 1024;

/// Most connections served at once when `--max-connections` is not given
/// and the public port serves TLS. A TLS client picks its record size, up
/// to 16 KiB: rustls holds a record whole (~18 KiB) and its decrypted copy
/// (16 KiB) while hyper has stopped reading (its write queue full), beside
/// hyper's buffers (~25 KiB) and rustls' state; no buffer setting removes
/// it. Measured worst case (`scripts/attack --tls --kinds pipeline`): 93
/// MiB RSS at 1024 connections, 40.9 MiB at 384 from 7.2 MiB idle, ~90 KiB
/// a connection: 384 × 90 KiB ≈ 34 MiB + 7 MiB idle ≈ 41 MiB, under the
/// 48 MiB the process keeps to under attack with room for noise (464
/// would reach it). An explicit `--max-connections` wins.
pub const TLS_MAX_CONNECTIONS: usize = 384;

/// Everything the server is started with besides the config file and the
/// listen addresses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest body accepted, in bytes.
    pub max_body: u64,
    /// Most body bytes held by all requests at once; past it, 503 with
    /// `Retry-After`. Sized so that, with every connection's own buffers,
    /// the process stays inside the shipped 64 MiB container limit.
    pub body_budget: u64,
    /// Most distinct changes one hook may ask for.
    pub max_changes: usize,
    /// How long a reply waits for fluxd to accept a hook's changes before
    /// answering 202 (zero: never wait). Under Harbor's 3 s timeout.
    pub reply_budget: Duration,
    /// How long a change is retried before it is dropped (fluxd's own
    /// polling has caught up by then), counted from its last push.
    pub delivery_max_age: Duration,
    /// Most distinct notifications pending at once.
    pub max_pending: usize,
    /// Most bytes of request bodies pending at once.
    pub max_pending_bytes: u64,
    /// Longest one POST to fluxd may take, connecting included.
    pub relay_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Verify and parse as usual, log the notifications, send nothing.
    pub dry_run: bool,
    /// Where Google publishes the keys that sign Pub/Sub push tokens
    /// (endpoints with a `gcr:` block).
    pub google_jwks_url: String,
    /// Fetch those keys at most once per this long, however many unknown
    /// key ids tokens name.
    pub google_jwks_min_refresh: Duration,
    /// Relay worker threads: most POSTs to fluxd at once.
    pub max_relays: usize,
    /// Most connections open at once. Past it, a new client takes the slot
    /// of the connection idle longest (closed for it), or waits in the
    /// kernel's accept queue while none is idle (see [`crate::slots`]).
    /// `None`: the default for how the public port serves
    /// ([`Options::max_connections`]).
    pub max_connections: Option<usize>,
    /// A connection closes this long after it was accepted, once the reply
    /// in progress is sent.
    pub max_connection_age: Duration,
    /// A connection closes after the reply to this many requests.
    pub max_connection_requests: u64,
    /// A client must send a request's headers within this time (also
    /// closes idle keep-alive connections), and take a reply's bytes: a
    /// write that makes no progress for this long closes the connection.
    pub header_timeout: Duration,
    /// A client must send a request's body within this time.
    pub body_timeout: Duration,
    /// Most refused hooks (401, 400, 413, 408, and 503 when busy), and
    /// requests to unknown hook URLs at debug, logged a second, and apart
    /// the delivery queue's lines about single notifications (refused by
    /// fluxd, dropped, delivered late); the rest
    /// are counted in `/metrics` and summed up in one line.
    pub refusal_logs_per_second: u64,
    /// Signatures that cover a time (Standard Webhooks): how far from now
    /// that time may be, either way, and how long an accepted delivery id
    /// is remembered, so that a repeat is acknowledged and not sent again.
    pub signature_tolerance: Duration,
    /// Most lines a second about hooks an endpoint took: the `hook` line,
    /// fluxd's 502s, and the lines per change (in a dry run, and at
    /// debug). A budget apart from refusals', so junk cannot crowd them
    /// out; and an unsigned endpoint's URL is all a flood of them takes.
    pub hook_logs_per_second: u64,
    /// Re-read the config and keys this often even when no file event
    /// arrives (a backstop for lost events); the timer restarts after
    /// every reload.
    pub resync_interval: Duration,
    /// How long a file a new config names may be missing before the reload
    /// counts as failed: the kubelet updates two Secrets independently, up
    /// to a minute or so apart.
    pub reload_grace: Duration,
    /// How file events are settled into one reload (not a flag).
    pub reload_debounce: crate::watch::Debounce,
    /// Serve TLS on the public port with this certificate chain and key
    /// (`--tls-cert`, `--tls-key`); `None`: plain HTTP.
    pub tls: Option<crate::tls::PairFiles>,
    /// A TLS handshake must finish within this time; the connection holds
    /// its slot meanwhile.
    pub tls_handshake_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_body: 3 * 1024 * 1024,
            body_budget: 16 * 1024 * 1024,
            max_changes: 256,
            reply_budget: Duration::from_secs(2),
            delivery_max_age: crate::delivery::DEFAULT_MAX_AGE,
            max_pending: crate::delivery::DEFAULT_MAX_PENDING,
            max_pending_bytes: crate::delivery::DEFAULT_MAX_PENDING_BYTES as u64,
            relay_timeout: crate::delivery::DEFAULT_ATTEMPT_TIMEOUT,
            drain_timeout: Duration::from_secs(10),
            dry_run: false,
            google_jwks_url: crate::gcr_auth::GOOGLE_JWKS_URL.to_string(),
            google_jwks_min_refresh: crate::gcr_auth::MIN_REFRESH,
            max_relays: crate::delivery::DEFAULT_WORKERS,
            max_connections: None,
            // nginx's keepalive_time and keepalive_requests: a client
            // (an ingress, say) reconnects now and then, unnoticed.
            max_connection_age: Duration::from_secs(3600),
            max_connection_requests: 1000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            refusal_logs_per_second: 20,
            signature_tolerance: crate::replay::DEFAULT_TOLERANCE,
            hook_logs_per_second: 100,
            resync_interval: Duration::from_secs(60),
            // Two of the kubelet's one-minute syncs.
            reload_grace: Duration::from_secs(120),
            reload_debounce: crate::watch::Debounce::default(),
            tls: None,
            // A handshake is two round trips and a signature: well under a
            // second on any link a provider uses.
            tls_handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Where the connection cap came from, as the start-up line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSource {
    /// `--max-connections` (or its variable).
    Flag,
    /// [`MAX_CONNECTIONS`]: plain HTTP.
    Default,
    /// [`TLS_MAX_CONNECTIONS`]: TLS served.
    TlsDefault,
}

impl CapSource {
    /// As the start-up line says it.
    pub fn as_str(self) -> &'static str {
        match self {
            CapSource::Flag => "--max-connections",
            CapSource::Default => "default",
            CapSource::TlsDefault => "TLS default",
        }
    }
}

impl Options {
    /// Most connections to serve at once, as asked (before the open-file
    /// limit is applied), and where that figure came from: the flag if
    /// given, else [`TLS_MAX_CONNECTIONS`] when TLS is served, else
    /// [`MAX_CONNECTIONS`].
    pub fn max_connections(&self) -> (usize, CapSource) {
        match (self.max_connections, &self.tls) {
            (Some(n), _) => (n, CapSource::Flag),
            (None, Some(_)) => (TLS_MAX_CONNECTIONS, CapSource::TlsDefault),
            (None, None) => (MAX_CONNECTIONS, CapSource::Default),
        }
    }

    /// The request path's part.
    pub fn request_limits(&self) -> crate::hook::RequestLimits {
        crate::hook::RequestLimits {
            max_body: self.max_body,
            body_timeout: self.body_timeout,
            max_changes: self.max_changes,
            dry_run: self.dry_run,
            reply_budget: self.reply_budget,
            body_budget: self.body_budget,
            signature_tolerance: self.signature_tolerance,
        }
    }

    /// The connection slots' part, as the flags ask for it (the service
    /// may serve fewer connections: see [`crate::fd_limit`]).
    pub fn slots(&self) -> crate::slots::Limits {
        crate::slots::Limits {
            max_connections: self.max_connections().0,
            max_connection_age: self.max_connection_age,
            max_connection_requests: self.max_connection_requests,
        }
    }

    /// The delivery queue's part.
    pub fn delivery(&self) -> crate::delivery::QueueSettings {
        crate::delivery::QueueSettings {
            max_relays: self.max_relays,
            max_pending: self.max_pending,
            max_pending_bytes: usize::try_from(self.max_pending_bytes).unwrap_or(usize::MAX),
            delivery_max_age: self.delivery_max_age,
            relay_timeout: self.relay_timeout,
            backoff: crate::delivery::Backoff::default(),
            refusal_logs_per_second: self.refusal_logs_per_second,
        }
    }

    /// The reload task's part.
    pub fn reload_timing(&self) -> crate::reload::Timing {
        crate::reload::Timing {
            resync_interval: self.resync_interval,
            reload_grace: self.reload_grace,
            debounce: self.reload_debounce,
        }
    }
}
