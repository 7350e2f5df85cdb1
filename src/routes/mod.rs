//! The HTTP side of flux-recv: the routes, the state they share, and
//! turning a hook's [`Verdict`] into a reply. What a reply says, and what is
//! recorded about it, is decided in [`crate::reply`].
//!
//! Routes: `POST /hook/<fingerprint>` (see [`crate::hook`]; other methods
//! get 405), `GET /health`
//! (liveness: 200 while the process serves), `GET /ready` (readiness: 200
//! while an endpoint table is served and shutdown has not begun),
//! `GET /metrics` (see [`crate::metrics`]), and 404 for everything else.
//!
//! [`crate::server`] runs each request to its end in a task of its own, so
//! a hook is recorded (log line, metric, late-delivery line) even when its
//! client hangs up before the reply.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use slog::{o, Logger};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Reply};

use crate::delivery::Queue;
use crate::gcr_auth::Jwks;
use crate::hook::Hooks;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::replay::Replays;
use crate::reply::{verdict, Recorder, Verdict};
use crate::table::{Table, TableHandle};

/// What every request shares.
pub struct State {
    /// The request path: the endpoint table, Google's keys, the relay.
    pub hooks: Hooks,
    /// Fixed settings.
    pub options: Options,
    /// Where request logs go.
    pub log: Logger,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Where each hook is counted and logged.
    recorder: Recorder,
    /// Set when shutdown begins, so `/ready` answers 503 and load balancers
    /// stop sending new requests while those in flight finish.
    stopping: AtomicBool,
}

impl State {
    /// Shared state serving `table`.
    /// Fails only when the relay's worker threads cannot be started.
    pub fn new(table: Table, options: Options, log: Logger) -> std::io::Result<Arc<State>> {
        let queue = Queue::start(options.delivery(), log.new(o!()))?;
        let metrics = Metrics::new(&table, vec![queue.collector()]);
        let google_keys = Jwks::new(
            options.google_jwks_url.clone(),
            options.google_jwks_min_refresh,
            log.new(o!()),
        );
        let replays = Replays::new(options.signature_tolerance, crate::replay::MAX_IDS);
        let table: TableHandle = Arc::new(ArcSwap::from_pointee(table));
        let metrics = Arc::new(metrics);
        let recorder = Recorder::new(
            metrics.clone(),
            log.clone(),
            options.refusal_logs_per_second,
            options.hook_logs_per_second,
        );
        Ok(Arc::new(State {
            hooks: Hooks::new(table, google_keys, replays, queue, options.request_limits()),
            metrics,
            recorder,
            stopping: AtomicBool::new(false),
            options,
            log,
        }))
    }

    /// The endpoint table being served; reload swaps what it holds.
    pub fn table(&self) -> &TableHandle {
        self.hooks.table()
    }

    /// Ready for traffic: a table is served (a State never exists without
    /// one) and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed)
    }

    /// Shutdown has begun: `/ready` answers 503 from now on.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

/// A plain-text reply: one line saying what happened.
pub fn text(status: StatusCode, body: impl Into<String>) -> warp::reply::Response {
    let mut line = body.into();
    line.push('\n');
    warp::reply::with_status(line, status).into_response()
}

/// The reply a hook's verdict makes: its status and text, and
/// `Retry-After` when it has one.
pub fn reply(verdict: Verdict) -> warp::reply::Response {
    let mut response = text(verdict.status, verdict.text);
    if let Some(seconds) = verdict.retry_after {
        response
            .headers_mut()
            .insert(warp::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
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
        .then(
            |fingerprint: String, headers: HeaderMap, body, state: Arc<State>| async move {
                let started = Instant::now();
                match state.hooks.handle(&fingerprint, &headers, body).await {
                    Some(report) => {
                        let verdict = verdict(&report.handled);
                        state.recorder.record(report, &verdict, started);
                        reply(verdict)
                    }
                    None => {
                        state.recorder.unknown_hook(&fingerprint);
                        text(StatusCode::NOT_FOUND, "not found")
                    }
                }
            },
        );

    // The path exists for every fingerprint (which ones are served is
    // nobody's business): other methods get 405, naming the one allowed.
    let hook_other_method = warp::path!("hook" / String).map(|_| {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: providers POST to hook URLs",
        );
        response
            .headers_mut()
            .insert(warp::http::header::ALLOW, HeaderValue::from_static("POST"));
        response
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

    // Accept is read by hand: warp's typed header filters reject a value
    // that is not visible ASCII, and the request would fall through to 404.
    // An unreadable one is taken as absent: the default format.
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(with_state.clone())
        .map(|headers: HeaderMap, state: Arc<State>| {
            let accept = headers
                .get(warp::http::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = crate::metrics::Format::for_accept(accept);
            warp::reply::with_header(
                state.metrics.encode(format),
                warp::http::header::CONTENT_TYPE,
                format.content_type(),
            )
            .into_response()
        });

    let not_found = warp::any().map(|| text(StatusCode::NOT_FOUND, "not found"));

    hook.or(hook_other_method)
        .unify()
        .or(health)
        .unify()
        .or(ready)
        .unify()
        .or(metrics)
        .unify()
        .or(not_found)
        .unify()
}

#[cfg(test)]
mod tests;
