//! Handling one delivery to `/hook/<fingerprint>`: find the endpoint, read
//! the body under the size cap, let the source verify and parse it, relay
//! the changes, reply, and log one line about it.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use slog::{debug, info, warn};
use warp::http::{HeaderMap, StatusCode};

use crate::logging::Admit;
use crate::server::{text, State};
use crate::source::{header, Outcome};
use crate::table::Endpoint;

/// Headers providers put the event name in, for the log line.
const EVENT_HEADERS: [&str; 4] = [
    "X-GitHub-Event",
    "X-Gitlab-Event",
    "X-Event-Key",
    "X-Nexus-Webhook-Id",
];

/// Headers providers put a delivery id in, so an operator can match our
/// log line with the provider's delivery log.
const DELIVERY_HEADERS: [&str; 4] = [
    "X-GitHub-Delivery",
    "X-Gitlab-Event-UUID",
    "X-Request-UUID",
    "X-Nexus-Webhook-Delivery",
];

/// How a hook ended, for logs (and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every change was accepted by fluxd.
    Relayed,
    /// Verified, nothing to send.
    Ignored,
    /// Signature or token missing or wrong.
    Unauthorized,
    /// Wrong event or payload.
    BadRequest,
    /// fluxd down, refusing, or too slow.
    UpstreamError,
    /// Body over `--max-body`.
    TooLarge,
}

impl Verdict {
    /// Label used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Relayed => "relayed",
            Verdict::Ignored => "ignored",
            Verdict::Unauthorized => "unauthorized",
            Verdict::BadRequest => "bad_request",
            Verdict::UpstreamError => "upstream_error",
            Verdict::TooLarge => "too_large",
        }
    }
}

/// Why the body could not be read.
enum BodyError {
    TooLarge,
    Broken,
    TimedOut,
}

/// Read the body, refusing it as soon as it grows past `limit` (so a huge or
/// endless chunked body is never buffered whole).
async fn read_body<S, B, E>(body: S, limit: u64) -> Result<bytes::Bytes, BodyError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Broken)?;
        if (buf.len() + chunk.remaining()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let bytes = chunk.chunk();
            buf.extend_from_slice(bytes);
            let n = bytes.len();
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

fn first_header(headers: &HeaderMap, names: &[&str]) -> String {
    names
        .iter()
        .find_map(|n| header(headers, n))
        .map(crate::printable)
        .unwrap_or_default()
}

/// Handle one POST to `/hook/<fingerprint>`.
pub async fn handle<S, B, E>(
    state: Arc<State>,
    fingerprint: String,
    headers: HeaderMap,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    let started = Instant::now();
    // One load: this request sees this table, whatever reloads happen.
    let table = state.table.load_full();
    let Some(endpoint) = table.get(&fingerprint).cloned() else {
        debug!(state.log, "no endpoint for this hook URL";
               "fingerprint" => crate::printable(&fingerprint));
        state.metrics.unknown_hook();
        return text(StatusCode::NOT_FOUND, "not found");
    };

    if let Err(reply) = check_google_token(&state, &endpoint, &headers).await {
        return finish(
            &state,
            &endpoint,
            &headers,
            started,
            Verdict::Unauthorized,
            StatusCode::UNAUTHORIZED,
            reply,
            0,
        );
    }

    let limit = state.options.max_body;
    let declared = header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let body = match declared {
        Some(n) if n > limit => Err(BodyError::TooLarge),
        _ => tokio::time::timeout(state.options.body_timeout, read_body(body, limit))
            .await
            .unwrap_or(Err(BodyError::TimedOut)),
    };

    let (verdict, status, reply, changes) = match body {
        Err(BodyError::TooLarge) => (
            Verdict::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("payload too large: the limit is {limit} bytes"),
            0,
        ),
        Err(BodyError::TimedOut) => (
            Verdict::BadRequest,
            StatusCode::REQUEST_TIMEOUT,
            "the request body was not received in time".to_string(),
            0,
        ),
        Err(BodyError::Broken) => (
            Verdict::BadRequest,
            StatusCode::BAD_REQUEST,
            "the request body could not be read".to_string(),
            0,
        ),
        Ok(body) => match endpoint.source.handle(&headers, &body, &endpoint.settings) {
            Err(e) => {
                let verdict = if e.status() == 401 {
                    Verdict::Unauthorized
                } else {
                    Verdict::BadRequest
                };
                let status = StatusCode::from_u16(e.status()).expect("4xx");
                (verdict, status, e.to_string(), 0)
            }
            Ok(Outcome::Ignore(why)) => (
                Verdict::Ignored,
                StatusCode::OK,
                format!("ok: nothing to do ({why})"),
                0,
            ),
            Ok(Outcome::Notify(changes)) => {
                let n = changes.len();
                if state.options.dry_run {
                    for c in &changes {
                        info!(state.log, "dry run: not sent to fluxd";
                              "notification" => String::from_utf8_lossy(&c.to_json()).into_owned());
                    }
                    let reply = format!("ok: dry run, fluxd would be notified of {n} change(s)");
                    return finish(
                        &state,
                        &endpoint,
                        &headers,
                        started,
                        Verdict::Relayed,
                        StatusCode::OK,
                        reply,
                        n,
                    );
                }
                for c in &changes {
                    debug!(state.log, "change"; "change" => %c);
                }
                let relay_started = Instant::now();
                let relayed = state.relay.notify(table.notify_url(), changes).await;
                state.metrics.relay_finished(relay_started.elapsed());
                match relayed {
                    Ok(()) => (
                        Verdict::Relayed,
                        StatusCode::OK,
                        format!("ok: notified fluxd of {n} change(s)"),
                        n,
                    ),
                    Err(e) => (
                        Verdict::UpstreamError,
                        StatusCode::from_u16(e.status()).expect("5xx"),
                        e.to_string(),
                        n,
                    ),
                }
            }
        },
    };

    finish(
        &state, &endpoint, &headers, started, verdict, status, reply, changes,
    )
}

/// For a GoogleContainerRegistry endpoint with a `gcr:` block: the Pub/Sub
/// push must carry a Google-signed token for the configured audience and
/// service account (see [`crate::gcr_auth`]). Checked before the body is read,
/// so a push without one costs nothing more. The reply does not tell a
/// forger which check failed; the log line does (never the token).
async fn check_google_token(
    state: &State,
    endpoint: &Endpoint,
    headers: &HeaderMap,
) -> Result<(), String> {
    let Some(expect) = &endpoint.settings.gcr else {
        return Ok(());
    };
    match state.google_keys.authenticate(headers, expect).await {
        Ok(claims) => {
            debug!(state.log, "Pub/Sub push token verified";
                   "fingerprint" => endpoint.fingerprint[..12].to_string(),
                   "email" => claims.email, "exp" => claims.exp);
            Ok(())
        }
        Err(e) => {
            warn!(state.log, "Pub/Sub push token refused";
                  "fingerprint" => endpoint.fingerprint[..12].to_string(),
                  "check" => e.check(), "reason" => %e);
            state.metrics.gcr_token_refused(e.check());
            Err("the Pub/Sub push token is not valid".to_string())
        }
    }
}

/// Log the one line about this hook, count it, and reply.
#[allow(clippy::too_many_arguments)]
fn finish(
    state: &State,
    endpoint: &Endpoint,
    headers: &HeaderMap,
    started: Instant,
    verdict: Verdict,
    status: StatusCode,
    reply: String,
    changes: usize,
) -> warp::reply::Response {
    state.metrics.hook(endpoint.source, verdict);
    let refused_by_client = matches!(
        verdict,
        Verdict::Unauthorized | Verdict::BadRequest | Verdict::TooLarge
    );
    // Junk from the internet is counted in full but logged within a budget.
    let suppressed = match refused_by_client.then(|| state.refusal_logs.admit()) {
        Some(Admit::Skip) => return reply_with(status, reply),
        Some(Admit::Log { suppressed }) => suppressed,
        None => 0,
    };
    if suppressed > 0 {
        warn!(state.log, "refused hooks not logged: over the log budget";
              "suppressed" => suppressed,
              "budget_per_second" => state.options.refusal_logs_per_second);
    }
    let kv = slog::o!(
        "source" => endpoint.source.name(),
        "fingerprint" => endpoint.fingerprint[..12].to_string(),
        "event" => first_header(headers, &EVENT_HEADERS),
        "delivery" => first_header(headers, &DELIVERY_HEADERS),
        "outcome" => verdict.as_str(),
        "status" => status.as_u16(),
        "changes" => changes,
        "duration_ms" => crate::logging::elapsed_ms(started),
    );
    let log = state.log.new(kv);
    match verdict {
        Verdict::Relayed | Verdict::Ignored => info!(log, "hook"),
        _ => warn!(log, "hook refused"; "reason" => &reply),
    }
    reply_with(status, reply)
}

/// The reply, with `Retry-After` when every relay slot was busy.
fn reply_with(status: StatusCode, reply: String) -> warp::reply::Response {
    let mut response = text(status, reply);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // Every relay slot was busy: a provider that honours this header
        // comes back once the burst has drained.
        response.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from_static("10"),
        );
    }
    response
}
