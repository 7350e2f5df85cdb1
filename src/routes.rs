//! The HTTP side of flux-recv: the routes, the state they share, and the one
//! place where what happened to a hook becomes a status, a reply, a metric
//! and a log line.
//!
//! Routes: `POST /hook/<fingerprint>` (see [`crate::hook`]), `GET /health`
//! (liveness: 200 while the process serves), `GET /ready` (readiness: 200
//! while an endpoint table is served and shutdown has not begun),
//! `GET /metrics` (see [`crate::metrics`]), and 404 for everything else.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use slog::{debug, info, o, warn, Logger};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Reply};

use crate::hook::{Confirmation, Handled, Hooks, Refusal, Report};
use crate::jwks::Jwks;
use crate::logging::{Admit, Throttle};
use crate::metrics::{Metrics, Outcome};
use crate::options::Options;
use crate::relay::{Relay, RelayError};
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
    /// Budget for logging refused hooks.
    refusal_logs: Throttle,
    /// Set when shutdown begins, so `/ready` answers 503 and load balancers
    /// stop sending new requests while those in flight finish.
    stopping: AtomicBool,
}

impl State {
    /// Shared state serving `table`.
    pub fn new(table: Table, options: Options, log: Logger) -> Arc<State> {
        let relay = Relay::new(options.relay_timeout, options.max_relays);
        let metrics = Metrics::new(&table, vec![relay.collector()]);
        let google_keys = Jwks::new(
            options.google_jwks_url.clone(),
            options.google_jwks_min_refresh,
            log.new(o!()),
        );
        let table: TableHandle = Arc::new(ArcSwap::from_pointee(table));
        Arc::new(State {
            hooks: Hooks::new(table, google_keys, relay, options.hooks()),
            metrics: Arc::new(metrics),
            refusal_logs: Throttle::new(options.refusal_logs_per_second),
            stopping: AtomicBool::new(false),
            options,
            log,
        })
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
                let report = state.hooks.handle(&fingerprint, &headers, body).await;
                reply(&state, report, &fingerprint, started)
            },
        );

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

/// How loudly a hook is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Not at all above debug: URLs nobody configured (probes, stale URLs).
    Quiet,
    /// Info: the hook did what it should.
    Info,
    /// Warning, within the refusal-log budget: the client sent something
    /// we refuse.
    Refused,
    /// Warning, always: fluxd could not be told, which an operator must see.
    Failed,
}

/// Turn a report into the reply, count it and log it: the one place where
/// each outcome gets its status, reply text, metric label and log level.
fn reply(
    state: &State,
    report: Report,
    fingerprint: &str,
    started: Instant,
) -> warp::reply::Response {
    let (status, text, outcome, level) = match &report.handled {
        Handled::Delivered {
            changes,
            confirmation: Confirmation::Accepted { took },
        } => {
            state.metrics.relay_finished(*took);
            let n = changes.len();
            let reply = format!("ok: notified fluxd of {n} change(s)");
            (StatusCode::OK, reply, Outcome::Relayed, Level::Info)
        }
        Handled::Delivered {
            changes,
            confirmation: Confirmation::DryRun,
        } => {
            for c in changes {
                info!(state.log, "dry run: not sent to fluxd";
                      "notification" => String::from_utf8_lossy(&c.to_json()).into_owned());
            }
            let n = changes.len();
            let reply = format!("ok: dry run, fluxd would be notified of {n} change(s)");
            (StatusCode::OK, reply, Outcome::Relayed, Level::Info)
        }
        Handled::Ignored(why) => {
            let reply = format!("ok: nothing to do ({why})");
            (StatusCode::OK, reply, Outcome::Ignored, Level::Info)
        }
        Handled::Refused(refusal) => match refusal {
            Refusal::UnknownHook => {
                let reply = "not found".to_string();
                (
                    StatusCode::NOT_FOUND,
                    reply,
                    Outcome::UnknownHook,
                    Level::Quiet,
                )
            }
            Refusal::Unauthorized(e) => {
                let reply = e.to_string();
                (
                    StatusCode::UNAUTHORIZED,
                    reply,
                    Outcome::Unauthorized,
                    Level::Refused,
                )
            }
            Refusal::PubSubToken(e) => {
                state.metrics.gcr_token_refused(e.check());
                // The reply does not tell a forger which check failed; the
                // log line does (never the token).
                let reply = "the Pub/Sub push token is not valid".to_string();
                (
                    StatusCode::UNAUTHORIZED,
                    reply,
                    Outcome::Unauthorized,
                    Level::Refused,
                )
            }
            Refusal::BadRequest(e) => {
                let reply = e.to_string();
                (
                    StatusCode::BAD_REQUEST,
                    reply,
                    Outcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::TooManyChanges { count, max } => {
                let reply = format!(
                    "too many changes: the delivery names {count} distinct changes, \
                     the limit is {max}; nothing was sent"
                );
                (
                    StatusCode::BAD_REQUEST,
                    reply,
                    Outcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::TooLarge { limit } => {
                let reply = format!("payload too large: the limit is {limit} bytes");
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    reply,
                    Outcome::TooLarge,
                    Level::Refused,
                )
            }
            Refusal::BodyTimeout => {
                let reply = "the request body was not received in time".to_string();
                (
                    StatusCode::REQUEST_TIMEOUT,
                    reply,
                    Outcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::BodyBroken => {
                let reply = "the request body could not be read".to_string();
                (
                    StatusCode::BAD_REQUEST,
                    reply,
                    Outcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::Relay { error, took } => {
                state.metrics.relay_finished(*took);
                let status = match error {
                    RelayError::Unreachable | RelayError::Rejected(_) => StatusCode::BAD_GATEWAY,
                    RelayError::TimedOut => StatusCode::GATEWAY_TIMEOUT,
                    RelayError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                };
                (
                    status,
                    error.to_string(),
                    Outcome::UpstreamError,
                    Level::Failed,
                )
            }
        },
    };

    let mut response = self::text(status, text.clone());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // A provider that honours this comes back once the burst drained.
        response.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            HeaderValue::from_static("10"),
        );
    }

    let Some(endpoint) = &report.endpoint else {
        state.metrics.unknown_hook();
        debug!(state.log, "no endpoint for this hook URL";
               "fingerprint" => crate::printable(fingerprint));
        return response;
    };
    state.metrics.hook(endpoint.source.name(), outcome);
    if let Handled::Delivered { changes, .. } = &report.handled {
        for c in changes {
            debug!(state.log, "change"; "change" => %c);
        }
    }
    // Junk from the internet is counted in full but logged within a budget.
    if level == Level::Refused {
        match state.refusal_logs.admit() {
            Admit::Skip => return response,
            Admit::Log { suppressed: 0 } => {}
            Admit::Log { suppressed } => {
                warn!(state.log, "refused hooks not logged: over the log budget";
                      "suppressed" => suppressed,
                      "budget_per_second" => state.options.refusal_logs_per_second);
            }
        }
    }
    let changes = match &report.handled {
        Handled::Delivered { changes, .. } => changes.len(),
        Handled::Ignored(_) | Handled::Refused(_) => 0,
    };
    let log = state.log.new(o!(
        "source" => endpoint.source.name(),
        "fingerprint" => endpoint.fingerprint[..12].to_string(),
        "event" => report.event,
        "delivery" => report.delivery,
        "outcome" => outcome.label(),
        "status" => status.as_u16(),
        "changes" => changes,
        "duration_ms" => crate::logging::elapsed_ms(started),
    ));
    match (level, &report.handled) {
        (Level::Info, _) | (Level::Quiet, _) => info!(log, "hook"),
        (_, Handled::Refused(Refusal::PubSubToken(e))) => {
            warn!(log, "hook refused"; "check" => e.check(), "reason" => %e)
        }
        (Level::Refused | Level::Failed, _) => warn!(log, "hook refused"; "reason" => &text),
    }
    response
}
