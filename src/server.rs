//! The accept loop: connections in, each served by hyper with the routes
//! it is given (those of [`crate::routes`]), within the connection limits,
//! until shutdown; then the drain of the connections. What a request means
//! is the routes' business; what is left to deliver after the drain, the
//! service's ([`crate::service`]). With TLS ([`crate::tls`]), each
//! connection's handshake runs in its task, holding its slot, before hyper
//! reads a request.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use slog::{info, o, warn, Logger};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::logging::KEEP;
use crate::slots::{Slot, Slots, Tracked};

/// How long connections open at shutdown get to send their request before
/// they are asked to finish.
const SETTLE: Duration = Duration::from_millis(500);

/// How connections are served.
#[derive(Clone)]
pub struct Settings {
    /// How many connections, for how long, for how many requests.
    pub slots: crate::slots::Limits,
    /// A client must send a request's headers within this time, and take
    /// a reply's bytes (`--header-timeout`).
    pub header_timeout: Duration,
    /// How long shutdown waits for requests in flight (`--drain-timeout`).
    pub drain_timeout: Duration,
    /// TLS on every connection, if served.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// Serve `routes` until `shutdown` resolves, then drain: give requests in
/// flight up to the drain timeout to finish, and return the drain's
/// deadline (for what else drains by then: the delivery queue).
///
/// While draining (the routes' `/ready` answers 503 from when `shutdown`
/// resolves, so that load balancers stop sending new requests), until the
/// connections open at the signal have finished, new connections are still
/// answered, one request each: a load balancer that has not yet seen
/// `/ready` fail gets a reply rather than a refused connection. Then the
/// listener closes.
pub async fn run<F>(
    listener: TcpListener,
    routes: F,
    settings: Settings,
    log: &Logger,
    shutdown: impl Future<Output = ()>,
) -> tokio::time::Instant
where
    F: warp::Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    F::Future: Send,
{
    let log = log.new(o!());
    let drain_timeout = settings.drain_timeout;
    // Each request runs to its end in a task of its own. hyper drops a
    // request's future when its client hangs up, before it is even polled
    // when the request and the hang-up arrive together; a hook's changes
    // may be relayed all the same, so it must still be logged, counted and
    // reported late. The task holds the connection's slot (an extension of
    // the request, see crate::slots) until it ends.
    let service = TowerToHyperService::new(warp::service(routes));
    let service = hyper::service::service_fn(move |request| {
        let reply = tokio::spawn(hyper::service::Service::call(&service, request));
        async move {
            let reply = reply.await.unwrap_or_else(|_| {
                Ok(crate::routes::text(
                    warp::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: the request could not be handled",
                ))
            });
            Ok::<_, Infallible>(reply.unwrap_or_else(|never| match never {}))
        }
    });
    let mut shutdown = std::pin::pin!(shutdown);
    // At most this many connections, and none holds its slot for ever (see
    // crate::slots); the header and body timeouts make slow clients let go.
    let slots = Slots::new(settings.slots);
    let max_age = slots.limits().max_connection_age;
    // Every connection must make progress, with bounded buffers (see
    // crate::conn).
    let limits = crate::conn::Limits::new(settings.header_timeout);
    // Serve one client in its slot (its TLS handshake first, if TLS is
    // served); without keep-alive, one request and then close.
    let tls = settings.tls.clone();
    let serve = |stream: TcpStream, slot: Slot, keep_alive: bool| {
        let stream = crate::conn::guard(stream, &limits, slot.reads());
        let service = Tracked::new(service.clone(), slot.clone());
        let tls = tls.clone();
        async move {
            let _open = slot.open();
            let http = Http {
                builder: crate::conn::http1_builder(&limits),
                keep_alive,
                slot: &slot,
                max_age,
            };
            let Some(tls) = tls else {
                return http.serve(stream, service).await;
            };
            // A connection asked to close for a new client while its
            // handshake is unfinished closes at once.
            let stream = tokio::select! {
                stream = tls.handshake(stream) => stream,
                () = slot.close_requested() => None,
            };
            if let Some(stream) = stream {
                http.serve(stream, service).await;
            }
        }
    };

    loop {
        let (stream, slot) = tokio::select! {
            accepted = accept(&listener, &slots, &log) => accepted,
            () = &mut shutdown => break,
        };
        tokio::spawn(serve(stream, slot, true));
    }

    info!(log, #KEEP, "shutting down"; "in_flight_connections" => slots.held());
    let deadline = tokio::time::Instant::now() + drain_timeout;
    let serve_late = |(stream, slot): (TcpStream, Slot)| {
        tokio::spawn(serve(stream, slot, false));
    };
    // hyper closes at once a connection that has not sent its request yet,
    // so one accepted just before the signal would be reset. Give open
    // connections a moment to send theirs before telling them to finish.
    if slots.held() > 0 {
        let settle = tokio::time::Instant::now() + SETTLE.min(drain_timeout);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(settle) => break,
                accepted = accept(&listener, &slots, &log) => serve_late(accepted),
            }
        }
    }
    let open_finished = {
        // Open connections finish the request they are on, then close.
        let open = slots.close_all();
        let mut open = std::pin::pin!(tokio::time::timeout_at(
            deadline,
            slots.released_before(open)
        ));
        loop {
            tokio::select! {
                finished = &mut open => break finished.is_ok(),
                accepted = accept(&listener, &slots, &log) => serve_late(accepted),
            }
        }
    };
    drop(listener);
    let late_finished = tokio::time::timeout_at(deadline, slots.released_before(Slots::ALL))
        .await
        .is_ok();
    if !(open_finished && late_finished) {
        warn!(log, #KEEP, "requests still in flight at shutdown were cut off";
              "drain_timeout_s" => drain_timeout.as_secs());
    }
    deadline
}

/// How one connection is served by hyper, in its slot.
struct Http<'a> {
    builder: hyper::server::conn::http1::Builder,
    keep_alive: bool,
    slot: &'a Slot,
    max_age: Duration,
}

impl Http<'_> {
    /// Serve `io` (TCP, or TLS over it) with `service` until the client
    /// goes, or the slot asks it to close (for a new client, at shutdown,
    /// or past the maximum age).
    async fn serve<I, S, B>(mut self, io: I, service: S)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B, Error = Infallible>,
        B: hyper::body::Body + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let conn = self
            .builder
            .keep_alive(self.keep_alive)
            .serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        // Errors are clients going away mid-request; nothing to do.
        let asked = tokio::select! {
            _ = conn.as_mut() => false,
            () = self.slot.close_requested() => true,
            () = tokio::time::sleep(self.max_age) => {
                self.slot.close();
                true
            }
        };
        if asked {
            // Closes an idle connection at once; one with a request in
            // progress after its reply.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The next connection, with a slot: taken at once if one is free, else
/// made by closing the connection idle longest, or waited for (see
/// [`crate::slots`]). Meanwhile other clients wait in the kernel's accept
/// queue.
async fn accept(listener: &TcpListener, slots: &Slots, log: &Logger) -> (TcpStream, Slot) {
    let stream = loop {
        match listener.accept().await {
            Ok((stream, _peer)) => break stream,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                warn!(log, "accept failed"; "error" => %e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    (stream, slots.take().await)
}
