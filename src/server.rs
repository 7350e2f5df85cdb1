//! The HTTP side: routes, the shared state, and the accept loop.
//!
//! Routes: `POST /hook/<fingerprint>` (see [`crate::hook`]), `GET /health`
//! (liveness: 200 while the process serves), `GET /ready` (readiness: 200
//! while an endpoint table is served and shutdown has not begun),
//! `GET /metrics` (see [`crate::metrics`]), and 404 for everything else.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use slog::{info, o, warn, Logger};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::table::Table;

/// Settings that come from flags and stay fixed while the process runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest body accepted, in bytes.
    pub max_body: u64,
    /// Relay deadline for one hook.
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
    /// Most calls to fluxd at once.
    pub max_relays: usize,
    /// Most connections open at once; past it, new ones wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// A client must send a request's headers within this time (also
    /// closes idle keep-alive connections), and take a reply's bytes: a
    /// write that makes no progress for this long closes the connection.
    pub header_timeout: Duration,
    /// A client must send a request's body within this time.
    pub body_timeout: Duration,
    /// Most refused hooks (401, 400, 413, 408) logged a second; the rest are
    /// counted in `/metrics` and summed up in one line.
    pub refusal_logs_per_second: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_body: 3 * 1024 * 1024,
            relay_timeout: Duration::from_secs(8),
            drain_timeout: Duration::from_secs(10),
            dry_run: false,
            google_jwks_url: crate::jwks::GOOGLE_JWKS_URL.to_string(),
            google_jwks_min_refresh: crate::jwks::MIN_REFRESH,
            max_relays: 64,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            refusal_logs_per_second: 20,
        }
    }
}

/// What every request shares.
pub struct State {
    /// The current endpoint table. A request loads it once and keeps that
    /// snapshot to the end; reload swaps in a whole new table.
    pub table: ArcSwap<Table>,
    /// Sends notifications to fluxd.
    pub relay: Relay,
    /// Google's token signing keys, for endpoints with a `gcr:` block.
    pub google_keys: Jwks,
    /// Fixed settings.
    pub options: Options,
    /// Where request logs go.
    pub log: Logger,
    /// What `/metrics` reports.
    pub metrics: Metrics,
    /// Budget for logging refused hooks.
    pub refusal_logs: crate::logging::Throttle,
    /// Set by [`run`] when shutdown begins, so `/ready` answers 503 and
    /// load balancers stop sending new requests while those in flight
    /// finish.
    stopping: AtomicBool,
}

impl State {
    /// Shared state serving `table`.
    pub fn new(table: Table, options: Options, log: Logger) -> Arc<State> {
        let relay = Relay::new(options.relay_timeout, options.max_relays);
        Arc::new(State {
            metrics: Metrics::new(&relay, &table),
            refusal_logs: crate::logging::Throttle::new(options.refusal_logs_per_second),
            stopping: AtomicBool::new(false),
            table: ArcSwap::from_pointee(table),
            google_keys: Jwks::new(
                options.google_jwks_url.clone(),
                options.google_jwks_min_refresh,
                log.new(o!()),
            ),
            relay,
            options,
            log,
        })
    }

    /// Ready for traffic: a table is served (a State never exists without
    /// one) and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed)
    }
}

/// A plain-text reply: one line saying what happened.
pub fn text(status: StatusCode, body: impl Into<String>) -> warp::reply::Response {
    let mut line = body.into();
    line.push('\n');
    warp::reply::with_status(line, status).into_response()
}

/// Every route flux-recv serves.
pub fn routes(
    state: Arc<State>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let with_state = warp::any().map(move || state.clone());

    let hook = warp::path!("hook" / String)
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_state.clone())
        .then(|fingerprint: String, headers, body, state| {
            crate::hook::handle(state, fingerprint, headers, body)
        });

    let health = warp::path!("health")
        .and(warp::get())
        .map(|| text(StatusCode::OK, "OK"));

    let ready = warp::path!("ready")
        .and(warp::get())
        .and(with_state.clone())
        .map(|state: Arc<State>| {
            if state.is_ready() {
                text(StatusCode::OK, "ready")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            }
        });

    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state.clone())
        .map(|state: Arc<State>| {
            warp::reply::with_header(
                state.metrics.encode(),
                warp::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )
            .into_response()
        });

    let not_found = warp::any().map(|| text(StatusCode::NOT_FOUND, "not found"));

    hook.or(health)
        .unify()
        .or(ready)
        .unify()
        .or(metrics)
        .unify()
        .or(not_found)
        .unify()
}

/// How long connections open at shutdown get to send their request before
/// they are asked to finish.
const SETTLE: Duration = Duration::from_millis(500);

/// Serve until `shutdown` resolves, then drain: give requests in flight up
/// to `drain_timeout` to finish, and return.
///
/// While draining, `/ready` answers 503 so that load balancers stop
/// sending new requests. Until the connections open at the signal have
/// finished, new connections are still answered, one request each: a load
/// balancer that has not yet seen `/ready` fail gets a reply rather than a
/// refused connection. Then the listener closes.
pub async fn run(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let log = state.log.new(o!());
    let options = state.options.clone();
    let drain_timeout = options.drain_timeout;
    let service = warp::service(routes(state.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Slow or idle clients cannot hold more than this many connections; the
    // header and body timeouts make sure they let go.
    let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
    // Every connection must make progress, with bounded buffers (see
    // crate::conn).
    let limits = crate::conn::Limits::new(options.header_timeout);
    // Serve one client; without keep-alive, one request and then close.
    let connection = |stream: TcpStream, keep_alive: bool| {
        crate::conn::http1_builder(&limits)
            .keep_alive(keep_alive)
            .serve_connection(
                TokioIo::new(crate::conn::guard(stream, &limits)),
                TowerToHyperService::new(service.clone()),
            )
    };

    loop {
        let (stream, permit) = tokio::select! {
            accepted = accept(&listener, &connections, &log) => accepted,
            () = &mut shutdown => break,
        };
        let conn = graceful.watch(connection(stream, true));
        tokio::spawn(async move {
            // Errors here are clients going away mid-request; nothing to do.
            let _ = conn.await;
            drop(permit);
        });
    }

    state.stopping.store(true, Ordering::Relaxed);
    info!(log, "shutting down"; "in_flight_connections" => graceful.count());
    let deadline = tokio::time::Instant::now() + drain_timeout;
    let mut late = tokio::task::JoinSet::new();
    let mut serve_late = |(stream, permit): (TcpStream, OwnedSemaphorePermit)| {
        let conn = connection(stream, false);
        late.spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    };
    // hyper closes at once a connection that has not sent its request yet,
    // so one accepted just before the signal would be reset. Give open
    // connections a moment to send theirs before telling them to finish.
    if graceful.count() > 0 {
        let settle = tokio::time::Instant::now() + SETTLE.min(drain_timeout);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(settle) => break,
                accepted = accept(&listener, &connections, &log) => serve_late(accepted),
            }
        }
    }
    let open_finished = {
        // Open connections finish the request they are on, then close.
        let mut open = std::pin::pin!(tokio::time::timeout_at(deadline, graceful.shutdown()));
        loop {
            tokio::select! {
                finished = &mut open => break finished.is_ok(),
                accepted = accept(&listener, &connections, &log) => serve_late(accepted),
            }
        }
    };
    drop(listener);
    let late_finished = tokio::time::timeout_at(deadline, async {
        while late.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !(open_finished && late_finished) {
        warn!(log, "requests still in flight at shutdown were cut off";
              "drain_timeout_s" => drain_timeout.as_secs());
    }
}

/// The next connection, once fewer than `max_connections` are open. The
/// permit is held for as long as the connection is.
async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
    log: &Logger,
) -> (TcpStream, OwnedSemaphorePermit) {
    let permit = connections
        .clone()
        .acquire_owned()
        .await
        .expect("never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => return (stream, permit),
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                warn!(log, "accept failed"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
