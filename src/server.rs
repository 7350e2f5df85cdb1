//! The HTTP side: routes, the shared state, and the accept loop.
//!
//! Routes: `POST /hook/<fingerprint>` (see [`crate::hook`]), `GET /health`,
//! and 404 for everything else.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use slog::{info, o, warn, Logger};
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::{Filter, Reply};

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
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_body: 3 * 1024 * 1024,
            relay_timeout: Duration::from_secs(8),
            drain_timeout: Duration::from_secs(10),
            dry_run: false,
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
    /// Fixed settings.
    pub options: Options,
    /// Where request logs go.
    pub log: Logger,
}

impl State {
    /// Shared state serving `table`.
    pub fn new(table: Table, options: Options, log: Logger) -> Arc<State> {
        Arc::new(State {
            table: ArcSwap::from_pointee(table),
            relay: Relay::new(options.relay_timeout),
            options,
            log,
        })
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
        .and(with_state)
        .then(|fingerprint: String, headers, body, state| {
            crate::hook::handle(state, fingerprint, headers, body)
        });

    let health = warp::path!("health")
        .and(warp::get())
        .map(|| text(StatusCode::OK, "OK"));

    let not_found = warp::any().map(|| text(StatusCode::NOT_FOUND, "not found"));

    hook.or(health).unify().or(not_found).unify()
}

/// Serve until `shutdown` resolves, then stop accepting, give requests in
/// flight up to `drain_timeout` to finish, and return.
pub async fn run(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let log = state.log.new(o!());
    let drain_timeout = state.options.drain_timeout;
    let service = warp::service(routes(state));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    warn!(log, "accept failed"; "error" => %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are clients going away mid-request; nothing to do.
            let _ = conn.await;
        });
    }

    drop(listener);
    info!(log, "shutting down"; "in_flight_connections" => graceful.count());
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(log, "requests still in flight at shutdown were cut off";
              "drain_timeout_s" => drain_timeout.as_secs());
    }
}
