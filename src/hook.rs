//! One delivery to `/hook/<fingerprint>`, as typed values: find the
//! endpoint, check the credentials that sit in headers, read the body under
//! its limits, let the source verify and parse it, and hand the changes to
//! the relay. The result is a [`Report`]; what it means for the reply, the
//! metrics and the log is decided in one place, [`crate::routes`].
//!
//! Nothing here knows about HTTP replies, metrics or logs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;

use crate::endpoint::Endpoint;
use crate::gcr_auth::Jwks;
use crate::notification::Change;
use crate::relay::{Relay, RelayError};
use crate::routing::notify_url;
use crate::source::{header, HookError, Outcome};
use crate::table::TableHandle;

/// Limits and switches of the request path.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest body accepted, in bytes.
    pub max_body: u64,
    /// A client must send a request's body within this time.
    pub body_timeout: Duration,
    /// Most distinct changes one delivery may ask for; more is refused
    /// whole, so one request cannot turn into thousands of calls to fluxd.
    pub max_changes: usize,
    /// Verify and parse as usual, send nothing.
    pub dry_run: bool,
    /// `--api`: where changes go for endpoints without their own `api`,
    /// instead of the config's top-level one.
    pub api: Option<String>,
}

/// What one delivery needs: the endpoint table, Google's keys for `gcr:`
/// endpoints, and the relay.
pub struct Hooks {
    table: TableHandle,
    google_keys: Jwks,
    relay: Relay,
    options: Options,
}

/// What happened to one request to a hook URL.
#[derive(Debug)]
pub struct Report {
    /// The endpoint the URL names; `None` when no endpoint has it.
    pub endpoint: Option<Arc<Endpoint>>,
    /// The event the provider named, printable; empty if none.
    pub event: String,
    /// The provider's delivery id, printable; empty if none.
    pub delivery: String,
    /// The outcome.
    pub handled: Handled,
}

/// How a delivery ended.
#[derive(Debug)]
pub enum Handled {
    /// Verified, parsed, and handed on: fluxd was told of these changes
    /// (or, in a dry run, would have been).
    Delivered {
        /// The changes, in order.
        changes: Vec<Change>,
        /// How many others the endpoint's filter left out.
        filtered: usize,
        /// The fluxd APIs told (base URLs).
        apis: Vec<String>,
        /// What fluxd said.
        confirmation: Confirmation,
    },
    /// Verified, and nothing to do; the text says why.
    Ignored(String),
    /// Verified, and the endpoint's filter left out every change.
    Filtered {
        /// How many changes it left out.
        changes: usize,
    },
    /// Refused: nothing was sent to fluxd.
    Refused(Refusal),
}

/// What fluxd said about a delivery's changes.
#[derive(Debug)]
pub enum Confirmation {
    /// fluxd accepted every change.
    Accepted {
        /// How long relaying took, retries included.
        took: Duration,
    },
    /// A dry run: nothing was sent.
    DryRun,
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Refusal {
    /// No endpoint has this hook URL.
    UnknownHook,
    /// The request does not prove it comes from the provider.
    Unauthorized(HookError),
    /// A `gcr:` endpoint's Pub/Sub push token failed a check.
    PubSubToken(crate::gcr_auth::TokenError),
    /// A genuine request we cannot use: wrong event, bad payload.
    BadRequest(HookError),
    /// More distinct changes than `max_changes`.
    TooManyChanges {
        /// How many the delivery asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The body is over `max_body`.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The body did not arrive within `body_timeout`.
    BodyTimeout,
    /// The body could not be read (the client broke the connection or the
    /// framing).
    BodyBroken,
    /// fluxd could not be told.
    Relay {
        /// What went wrong.
        error: RelayError,
        /// How long the relay tried, retries included.
        took: Duration,
    },
}

/// Why the body could not be read.
enum BodyError {
    TooLarge,
    Broken,
}

impl Hooks {
    /// The request path over `table`, relaying through `relay`.
    pub fn new(table: TableHandle, google_keys: Jwks, relay: Relay, options: Options) -> Hooks {
        Hooks {
            table,
            google_keys,
            relay,
            options,
        }
    }

    /// The table being served; reload swaps what it holds.
    pub fn table(&self) -> &TableHandle {
        &self.table
    }

    /// The relay, for its counters.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The request path's options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Handle one POST to `/hook/<fingerprint>`.
    pub async fn handle<S, B, E>(&self, fingerprint: &str, headers: &HeaderMap, body: S) -> Report
    where
        S: Stream<Item = Result<B, E>>,
        B: Buf,
    {
        // One load: this request sees this table, whatever reloads happen.
        let table = self.table.load_full();
        let Some(endpoint) = table.get(fingerprint).cloned() else {
            return Report {
                endpoint: None,
                event: String::new(),
                delivery: String::new(),
                handled: Handled::Refused(Refusal::UnknownHook),
            };
        };
        let handled = self.deliver(&table, &endpoint, headers, body).await;
        Report {
            event: endpoint.source.event_of(headers),
            delivery: endpoint.source.delivery_of(headers),
            endpoint: Some(endpoint),
            handled,
        }
    }

    async fn deliver<S, B, E>(
        &self,
        table: &crate::table::Table,
        endpoint: &Endpoint,
        headers: &HeaderMap,
        body: S,
    ) -> Handled
    where
        S: Stream<Item = Result<B, E>>,
        B: Buf,
    {
        // Credentials that sit in headers are checked before the body is
        // read, so a forged request costs no buffering.
        if let Some(expect) = &endpoint.gcr {
            if let Err(e) = self.google_keys.authenticate(headers, expect).await {
                return Handled::Refused(Refusal::PubSubToken(e));
            }
        }
        if let Err(e) = endpoint.source.check_headers(headers, &endpoint.settings) {
            return Handled::Refused(Refusal::Unauthorized(e));
        }

        let body = match self.read_body(headers, body).await {
            Ok(body) => body,
            Err(refusal) => return Handled::Refused(refusal),
        };
        let mut changes = match endpoint.source.handle(headers, &body, &endpoint.settings) {
            Err(e) if e.is_unauthorized() => return Handled::Refused(Refusal::Unauthorized(e)),
            Err(e) => return Handled::Refused(Refusal::BadRequest(e)),
            Ok(Outcome::Ignore(why)) => return Handled::Ignored(why),
            Ok(Outcome::Notify(changes)) => changes,
        };
        if changes.len() > self.options.max_changes {
            return Handled::Refused(Refusal::TooManyChanges {
                count: changes.len(),
                max: self.options.max_changes,
            });
        }
        let parsed = changes.len();
        changes.retain(|c| endpoint.filter.admits(c));
        let filtered = parsed - changes.len();
        if changes.is_empty() {
            return Handled::Filtered { changes: filtered };
        }

        let apis: Vec<String> = table
            .apis_of(endpoint, self.options.api.as_deref())
            .into_iter()
            .map(str::to_string)
            .collect();
        if self.options.dry_run {
            return Handled::Delivered {
                changes,
                filtered,
                apis,
                confirmation: Confirmation::DryRun,
            };
        }
        let started = Instant::now();
        // Each API independently: one that is down does not hold the others.
        let sends = apis
            .iter()
            .map(|api| self.relay.notify(notify_url(api), changes.clone()));
        let results = futures_util::future::join_all(sends).await;
        match results.into_iter().find_map(Result::err) {
            None => Handled::Delivered {
                changes,
                filtered,
                apis,
                confirmation: Confirmation::Accepted {
                    took: started.elapsed(),
                },
            },
            Some(error) => Handled::Refused(Refusal::Relay {
                error,
                took: started.elapsed(),
            }),
        }
    }

    /// The body, under the size cap and the body timeout.
    async fn read_body<S, B, E>(
        &self,
        headers: &HeaderMap,
        body: S,
    ) -> Result<bytes::Bytes, Refusal>
    where
        S: Stream<Item = Result<B, E>>,
        B: Buf,
    {
        let limit = self.options.max_body;
        let declared = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Refusal::TooLarge { limit });
        }
        match tokio::time::timeout(self.options.body_timeout, read_body(body, limit)).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(BodyError::TooLarge)) => Err(Refusal::TooLarge { limit }),
            Ok(Err(BodyError::Broken)) => Err(Refusal::BodyBroken),
            Err(_) => Err(Refusal::BodyTimeout),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_endless_body_is_refused_once_it_passes_the_limit() {
        let chunk = || Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[b'x'; 1000]));
        let endless = futures_util::stream::repeat_with(chunk);
        assert!(matches!(
            read_body(endless, 10_000).await,
            Err(BodyError::TooLarge)
        ));
        let exact = futures_util::stream::iter((0..10).map(|_| chunk()));
        assert_eq!(
            read_body(exact, 10_000).await.ok().map(|b| b.len()),
            Some(10_000)
        );
    }

    #[tokio::test]
    async fn a_broken_body_is_not_taken_for_a_short_one() {
        let parts = vec![
            Ok(bytes::Bytes::from_static(b"{\"ref\":")),
            Err(std::io::Error::other("connection reset")),
        ];
        assert!(matches!(
            read_body(futures_util::stream::iter(parts), 10_000).await,
            Err(BodyError::Broken)
        ));
    }
}
