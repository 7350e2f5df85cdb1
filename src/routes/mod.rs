//! The HTTP side of flux-recv: the routes, the state they share, and the one
//! place where what happened to a hook becomes a status, a reply, a metric
//! and a log line.
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
use slog::{debug, info, o, warn, Drain as _, Logger};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Reply};

use crate::delivery::Queue;
use crate::gcr_auth::Jwks;
use crate::hook::{Answer, Handled, HookReport, Hooks, Refusal};
use crate::logging::Budget;
use crate::metrics::{HookOutcome, Metrics};
use crate::options::Options;
use crate::replay::Replays;
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
    /// Budget for logging refused hooks, busy refusals included (see
    /// [`Level::Busy`]), and requests to unknown hook URLs.
    refusal_logs: Budget,
    /// Budget for logging hooks an endpoint took: their line, the 502s, and
    /// the lines per change (see [`Level::Info`]).
    hook_logs: Budget,
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
        Ok(Arc::new(State {
            hooks: Hooks::new(table, google_keys, replays, queue, options.request_limits()),
            metrics: Arc::new(metrics),
            refusal_logs: Budget::new(options.refusal_logs_per_second, "refused hooks"),
            hook_logs: Budget::new(options.hook_logs_per_second, "hook lines"),
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
                    Some(report) => reply(&state, report, started),
                    None => unknown_hook(&state, &fingerprint),
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

/// `15 min`, `40 s`: how long delivery goes on, for a reply.
fn for_people(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s >= 120 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `; 2 filtered out`, or nothing.
fn and_filtered(filtered: usize) -> String {
    match filtered {
        0 => String::new(),
        n => format!("; {n} left out by the endpoint's filter"),
    }
}

/// A hook URL no endpoint has (probes, stale URLs): 404, counted apart with
/// no source, and logged at debug only, within the refusal budget.
fn unknown_hook(state: &State, fingerprint: &str) -> warp::reply::Response {
    state.metrics.unknown_hook();
    if state.log.is_debug_enabled() && state.refusal_logs.admit(&state.log) {
        debug!(state.log, "no endpoint for this hook URL";
               "fingerprint" => crate::printable(fingerprint));
    }
    text(StatusCode::NOT_FOUND, "not found")
}

/// How loudly a hook is logged, and within which budget: every hook is
/// counted, but what a remote client can make flux-recv log is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Info, within the hooks' budget (`--hook-logs-per-second`): the hook
    /// did what it should. An unsigned endpoint's URL is all it takes to
    /// send these, so a flood of them cannot be logged line for line
    /// either; they get a budget apart from refusals so that junk cannot
    /// crowd them out.
    Info,
    /// Info, within the refusal-log budget: a signed delivery whose id was
    /// accepted before. A sender's retry is rare, but anyone holding a
    /// recorded delivery can repeat it as fast as they like within the
    /// signature tolerance.
    Repeat,
    /// Warning, within the refusal-log budget: the client sent something
    /// we refuse.
    Refused,
    /// Warning, within the same budget: flux-recv could not take the
    /// delivery now (503). Anyone can cause these, signed or not, by
    /// holding the body budget with a few stalled uploads, so they cannot be
    /// logged every time. They share the refusal budget rather than get one
    /// of their own because `--refusal-logs-per-second` bounds the lines a
    /// flood can write, whatever it is made of; a second budget would let
    /// an attacker double that by mixing kinds. Every one is still counted
    /// (`outcome="busy"`), and the summary line counts those left out.
    Busy,
    /// Warning, within the hooks' budget: fluxd refused the delivery for
    /// good (502), which an operator must see. Only a hook that passed its
    /// endpoint's checks gets this far, but an unsigned endpoint's checks
    /// are its URL.
    Failed,
}

/// Turn a report into the reply, count it and log it: the one place where
/// each outcome gets its status, reply text, metric label and log level.
fn reply(state: &State, report: HookReport, started: Instant) -> warp::reply::Response {
    use StatusCode as S;
    let answer = |status, text: String, outcome, level| (status, text, outcome, level, None);
    // 503s say when to come back: a provider that honours it returns once
    // the burst has drained (the queue's backoff tops out at 3 s).
    let busy = |text: String, retry_after: &'static str| {
        (
            S::SERVICE_UNAVAILABLE,
            text,
            HookOutcome::Busy,
            Level::Busy,
            Some(retry_after),
        )
    };
    let (status, text, outcome, level, retry_after) = match &report.handled {
        Handled::Delivered {
            changes,
            filtered,
            answer: Answer::Accepted,
            ..
        } => {
            let n = changes.len();
            let text = format!(
                "ok: notified fluxd of {n} change(s){}",
                and_filtered(*filtered)
            );
            answer(S::OK, text, HookOutcome::Relayed, Level::Info)
        }
        Handled::Delivered {
            changes,
            filtered,
            answer: Answer::Pending { retry_for },
            ..
        } => {
            let n = changes.len();
            let text = format!(
                "accepted: fluxd has not confirmed {n} change(s) yet; flux-recv keeps \
                 delivering them for up to {}{}",
                for_people(*retry_for),
                and_filtered(*filtered)
            );
            answer(S::ACCEPTED, text, HookOutcome::Queued, Level::Info)
        }
        Handled::Delivered {
            changes,
            filtered,
            answer: Answer::DryRun,
            ..
        } => {
            let n = changes.len();
            let text = format!(
                "ok: dry run, fluxd would be notified of {n} change(s){}",
                and_filtered(*filtered)
            );
            answer(S::OK, text, HookOutcome::Relayed, Level::Info)
        }
        Handled::Delivered {
            answer: Answer::Refused { reason, .. },
            ..
        } => {
            let text = format!("fluxd refused the notification: {reason}");
            answer(
                S::BAD_GATEWAY,
                text,
                HookOutcome::UpstreamError,
                Level::Failed,
            )
        }
        Handled::Ignored(why) => {
            let text = format!("ok: nothing to do ({why})");
            answer(S::OK, text, HookOutcome::Ignored, Level::Info)
        }
        Handled::Filtered { changes } => {
            let text = format!(
                "ok: nothing to do (the endpoint's filter left out all {changes} change(s))"
            );
            answer(S::OK, text, HookOutcome::Filtered, Level::Info)
        }
        Handled::Replayed { within } => {
            let text = format!(
                "ok: nothing to do (a delivery with this webhook-id was accepted within the \
                 last {}; nothing was sent again)",
                for_people(*within)
            );
            answer(S::OK, text, HookOutcome::Replayed, Level::Repeat)
        }
        Handled::Refused(refusal) => match refusal {
            Refusal::Unauthorized(e) => answer(
                S::UNAUTHORIZED,
                e.to_string(),
                HookOutcome::Unauthorized,
                Level::Refused,
            ),
            Refusal::PubSubToken(e) => {
                state.metrics.gcr_token_refused(e.check());
                // The reply does not tell a forger which check failed; the
                // log line does (never the token).
                let text = "the Pub/Sub push token is not valid".to_string();
                answer(
                    S::UNAUTHORIZED,
                    text,
                    HookOutcome::Unauthorized,
                    Level::Refused,
                )
            }
            Refusal::BadRequest(e) => answer(
                S::BAD_REQUEST,
                e.to_string(),
                HookOutcome::BadRequest,
                Level::Refused,
            ),
            Refusal::TooManyChanges { count, max } => {
                let text = format!(
                    "too many changes: the delivery names {count} distinct changes, \
                     the limit is {max}; nothing was sent"
                );
                answer(
                    S::BAD_REQUEST,
                    text,
                    HookOutcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::TooLarge { limit } => {
                let text = format!("payload too large: the limit is {limit} bytes");
                answer(
                    S::PAYLOAD_TOO_LARGE,
                    text,
                    HookOutcome::TooLarge,
                    Level::Refused,
                )
            }
            Refusal::BodyTimeout => {
                let text = "the request body was not received in time".to_string();
                answer(
                    S::REQUEST_TIMEOUT,
                    text,
                    HookOutcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::BodyBroken => {
                let text = "the request body could not be read".to_string();
                answer(
                    S::BAD_REQUEST,
                    text,
                    HookOutcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::OverBodyBudget => busy(
                "too many request bodies are being read at once; retry later".into(),
                "5",
            ),
            Refusal::QueueFull { held, pending, max } => busy(
                format!(
                    "too many notifications are waiting for fluxd ({pending} of at most {max}, \
                     {held} of them from this endpoint); nothing of this delivery was queued, \
                     retry later"
                ),
                "5",
            ),
            // Retrying cannot help, so not a 503: the endpoint's APIs times
            // the delivery's changes exceed what one endpoint may queue.
            Refusal::TooManyNotifications {
                changes,
                apis,
                most,
            } => {
                let text = format!(
                    "too many notifications: {changes} change(s) for {apis} API(s) make {} \
                     notifications, and one endpoint may have at most {most} waiting \
                     (half of --max-pending); nothing was sent",
                    changes.saturating_mul(*apis)
                );
                answer(
                    S::BAD_REQUEST,
                    text,
                    HookOutcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::ShuttingDown => busy("flux-recv is shutting down; retry later".into(), "30"),
        },
    };

    // The reply is made last, so its text is lent to the log line first.
    let response = move |text: String| {
        let mut response = self::text(status, text);
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                warp::http::header::RETRY_AFTER,
                HeaderValue::from_static(seconds),
            );
        }
        response
    };

    let endpoint = &report.endpoint;
    state.metrics.hook(endpoint.source.name(), outcome);
    state.metrics.replied(started.elapsed());
    // Lines after the hook's own, one per change: what a dry run would
    // have sent, and at debug each change. Within the hooks' budget too.
    let per_change = match &report.handled {
        Handled::Delivered {
            changes, answer, ..
        } if matches!(answer, Answer::DryRun) || state.log.is_debug_enabled() => changes.as_slice(),
        _ => &[],
    };
    let budget = match level {
        Level::Refused | Level::Busy | Level::Repeat => &state.refusal_logs,
        Level::Info | Level::Failed => &state.hook_logs,
    };
    if !budget.admit(&state.log) {
        state.hook_logs.left_out(per_change.len() as u64);
        return response(text);
    }
    let (changes, apis) = match &report.handled {
        Handled::Delivered { changes, apis, .. } => (changes.len(), crate::routing::bases(apis)),
        Handled::Ignored(_)
        | Handled::Filtered { .. }
        | Handled::Replayed { .. }
        | Handled::Refused(_) => (0, String::new()),
    };
    let log = state.log.new(o!(
        "source" => endpoint.source.name(),
        "fingerprint" => endpoint.fingerprint[..12].to_string(),
        "event" => report.event,
        "delivery" => report.delivery_id,
        "outcome" => outcome.label(),
        "status" => status.as_u16(),
        "changes" => changes,
        "api" => apis.clone(),
        "duration_ms" => crate::logging::elapsed_ms(started),
    ));
    match (level, &report.handled) {
        (Level::Info | Level::Repeat, _) => info!(log, "hook"),
        (_, Handled::Refused(Refusal::PubSubToken(e))) => {
            warn!(log, "hook refused"; "check" => e.check(), "reason" => %e)
        }
        (
            _,
            Handled::Delivered {
                answer: Answer::Refused { api, .. },
                ..
            },
        ) => {
            warn!(log, "hook refused"; "reason" => &text, "refused_by" => &**api)
        }
        (Level::Refused | Level::Busy | Level::Failed, _) => {
            warn!(log, "hook refused"; "reason" => &text)
        }
    }
    let dry_run = matches!(
        report.handled,
        Handled::Delivered {
            answer: Answer::DryRun,
            ..
        }
    );
    for c in per_change {
        if !state.hook_logs.admit(&state.log) {
            continue;
        }
        if dry_run {
            // Values escaped and cut, as in every line (notification.rs).
            let json = c.for_log().to_json();
            info!(state.log, "dry run: not sent to fluxd";
                  "notification" => String::from_utf8_lossy(&json).into_owned(),
                  "api" => &apis);
        } else {
            debug!(state.log, "change"; "change" => %c);
        }
    }
    response(text)
}

#[cfg(test)]
mod tests;
