//! The accept loop: connections in, each served by hyper with the routes
//! of [`crate::routes`], within the connection limits, until shutdown; then
//! the drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use slog::{info, o, warn, Logger};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::routes::{routes, State};

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

    state.stop();
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
    deliver_pending(&state, deadline, &log).await;
}

/// Take no more changes, and go on delivering those pending until they are
/// delivered or the drain deadline; then say what was left undelivered, and
/// which, so an operator can push or sync them by hand.
async fn deliver_pending(state: &State, deadline: tokio::time::Instant, log: &Logger) {
    let queue = state.hooks.queue();
    queue.close();
    let pending = queue.snapshot().pending;
    if pending > 0 {
        info!(log, "delivering pending notifications before exiting"; "pending" => pending);
    }
    let left = queue.drain(deadline).await;
    if left.is_empty() {
        return;
    }
    warn!(log, "notifications left undelivered at shutdown"; "undelivered" => left.len());
    for l in &left {
        warn!(log, "undelivered";
              "api" => &*l.api,
              "change" => %l.change,
              "delivery" => %l.deliveries,
              "attempts" => l.attempts,
              "age_s" => l.age.as_secs(),
              "last_error" => l.last_error.as_deref().unwrap_or("-"),
              "still_sending" => l.sending);
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
