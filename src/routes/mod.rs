//! The HTTP side of flux-recv: the routes, and turning a hook's
//! [`Verdict`] into a reply. What a reply says is decided in
//! [`crate::reply`]; what serves the routes is [`crate::service`].
//!
//! Routes: `POST /hook/<fingerprint>` (see [`crate::hook`]; other methods
//! get 405), `GET /health`
//! (liveness: 200 while the process serves), `GET /ready` (readiness: 200
//! while an endpoint table is served and shutdown has not begun),
//! `GET /metrics` (see [`crate::metrics`]), and 404 for everything else.
//! With an admin address (`--metrics-listen`), [`Serve::HooksOnly`] on the
//! public port and [`admin`] on the admin one split them: `/hook/` on one,
//! `/health`, `/ready` and `/metrics` on the other.
//!
//! [`crate::server`] runs each request to its end in a task of its own, so
//! a hook is recorded (log line, metric, late-delivery line) even when its
//! client hangs up before the reply.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Reply};

use crate::hook::Hooks;
use crate::metrics::Metrics;
use crate::reply::{verdict, Recorder, Verdict};

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

/// Which routes the public port serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Every route (no admin address).
    All,
    /// `/hook/` only: the others are on the admin address (404 here).
    HooksOnly,
}

/// The routes of the public port, as `serve` says.
///
/// A hook is handled by `hooks`, and recorded by `recorder` before its
/// reply is made; `/metrics` shows `metrics`; `/ready` answers 503 once
/// `stopping` is set.
pub fn routes(
    hooks: Arc<Hooks>,
    recorder: Arc<Recorder>,
    (metrics, stopping): (Arc<Metrics>, Arc<AtomicBool>),
    serve: Serve,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let with_hooks = warp::any().map(move || (hooks.clone(), recorder.clone()));

    let hook = warp::path!("hook" / String)
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_hooks)
        .then(
            |fingerprint: String,
             headers: HeaderMap,
             body,
             (hooks, recorder): (Arc<Hooks>, Arc<Recorder>)| async move {
                let started = Instant::now();
                match hooks.handle(&fingerprint, &headers, body).await {
                    Some(report) => {
                        let verdict = verdict(&report.handled);
                        recorder.record(report, &verdict, started);
                        reply(verdict)
                    }
                    None => {
                        recorder.unknown_hook(&fingerprint);
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

    let admin_here = warp::any()
        .and_then(move || async move {
            match serve {
                Serve::All => Ok(()),
                Serve::HooksOnly => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(admin_routes(metrics, stopping));

    hook.or(hook_other_method)
        .unify()
        .or(admin_here)
        .unify()
        .or(not_found())
        .unify()
}

/// The routes of the admin address: `/health`, `/ready`, `/metrics`, and
/// 404 for everything else.
pub fn admin(
    metrics: Arc<Metrics>,
    stopping: Arc<AtomicBool>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
    admin_routes(metrics, stopping).or(not_found()).unify()
}

/// 404, for what no route serves.
fn not_found() -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    warp::any().map(|| text(StatusCode::NOT_FOUND, "not found"))
}

/// `/health`, `/ready` and `/metrics`.
fn admin_routes(
    metrics: Arc<Metrics>,
    stopping: Arc<AtomicBool>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let health = warp::path!("health")
        .and(warp::get())
        .map(|| text(StatusCode::OK, "OK"));

    let ready = warp::path!("ready").and(warp::get()).map(move || {
        if stopping.load(Ordering::Relaxed) {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        } else {
            text(StatusCode::OK, "ready")
        }
    });

    // Accept is read by hand: warp's typed header filters reject a value
    // that is not visible ASCII, and the request would fall through to 404.
    // An unreadable one is taken as absent: the default format.
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .map(move |headers: HeaderMap| {
            let accept = headers
                .get(warp::http::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = crate::metrics::Format::for_accept(accept);
            warp::reply::with_header(
                metrics.encode(format),
                warp::http::header::CONTENT_TYPE,
                format.content_type(),
            )
            .into_response()
        });

    health.or(ready).unify().or(metrics).unify()
}

#[cfg(test)]
mod tests;
