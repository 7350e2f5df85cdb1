//! One hook (a provider's request to `/hook/<fingerprint>`), as typed
//! values: find the endpoint, check the credentials that sit in headers
//! (and, where the signature covers a time, that it is near now), read the
//! body under its limits and the global body budget, let the source verify
//! and parse it, filter the changes, and hand them to the delivery queue
//! (once per signed delivery id, [`crate::replay`]), waiting for fluxd's
//! answer at most the reply budget. The result is a [`HookReport`]; what it
//! means for the reply, the metrics and the log is decided in one place,
//! [`crate::reply`].
//!
//! Nothing here knows about HTTP replies, metrics or logs.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::delivery::{self, Full, Item, Queue};
use crate::endpoint::Endpoint;
use crate::gcr_auth::Jwks;
use crate::notification::Change;
use crate::replay::Replays;
use crate::source::stamped::unix_now;
use crate::source::{header, HookError, Outcome};
use crate::table::TableHandle;
use crate::targets::{Body, Target, VerifiedHook};

/// The request path's limits, and its one switch (the dry run); each field
/// is named after the flag that sets it.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Largest body accepted, in bytes.
    pub max_body: u64,
    /// A client must send a request's body within this time.
    pub body_timeout: Duration,
    /// Most distinct changes one hook may ask for; more is refused
    /// whole, so one request cannot turn into thousands of calls to fluxd.
    pub max_changes: usize,
    /// Verify and parse as usual, send nothing.
    pub dry_run: bool,
    /// How long a reply waits for fluxd to accept its changes; zero never
    /// waits.
    pub reply_budget: Duration,
    /// Most body bytes held by all requests together; past it, 503.
    pub body_budget: u64,
    /// How far from now the time a signature covers may be (Standard
    /// Webhooks), and how long an accepted delivery id is remembered.
    pub signature_tolerance: Duration,
}

/// What one hook needs: the endpoint table, Google's keys for `gcr:`
/// endpoints, the body budget, the delivery ids accepted, and the delivery
/// queue.
pub struct Hooks {
    table: TableHandle,
    google_keys: Jwks,
    queue: Queue,
    /// The delivery ids accepted within the signature tolerance. Locked
    /// before the queue when both are (the queue never takes it).
    replays: Replays,
    /// One permit per body byte held: bodies of unsigned or slow requests
    /// cannot add up past it, whatever the number of connections.
    body_budget: Arc<Semaphore>,
    limits: RequestLimits,
}

/// What happened to one hook: which endpoint it was for, what the provider
/// said it was, and how it ended.
#[derive(Debug)]
pub struct HookReport {
    /// The endpoint the URL names.
    pub endpoint: Arc<Endpoint>,
    /// The event the provider named, printable; empty if none.
    pub event: String,
    /// The id the provider gave this hook (GitHub's `X-GitHub-Delivery`,
    /// Standard Webhooks' `webhook-id`, …), printable; empty if none.
    /// Logged as `delivery`.
    pub delivery_id: String,
    /// The outcome.
    pub handled: Handled,
}

/// How a hook ended.
#[derive(Debug)]
pub enum Handled {
    /// Verified, parsed, and handed to the delivery queue: fluxd was told
    /// of these changes (or, in a dry run, would have been), and answered
    /// what `answer` says.
    Delivered {
        /// The changes, in order.
        changes: Vec<Change>,
        /// How many others the endpoint's filter left out.
        filtered: usize,
        /// Where they went: the endpoint's targets.
        targets: Arc<[Target]>,
        /// What the targets answered within the reply budget.
        answer: DeliveryState,
    },
    /// Verified, and nothing to do; the text says why.
    Ignored(String),
    /// Verified, and the endpoint accepted a hook with this id (its
    /// signature's `webhook-id`) within the signature tolerance: nothing is
    /// sent again.
    Replayed {
        /// The tolerance.
        within: Duration,
    },
    /// Verified, and the endpoint's filter left out every change.
    Filtered {
        /// How many changes it left out.
        changes: usize,
    },
    /// Refused: nothing was sent to fluxd.
    Refused(Refusal),
}

/// How far the delivery of a hook's changes got within the reply budget.
#[derive(Debug)]
pub enum DeliveryState {
    /// Every target accepted every change.
    Accepted,
    /// Not confirmed yet: queued, and retried for at least this long.
    Pending {
        /// Until the first of them would expire.
        retry_for: Duration,
    },
    /// A dry run: nothing was sent.
    DryRun,
    /// A target refused a request for good (fluxd: a wrong `api:` path, a
    /// redirect); the others may have been accepted or be pending.
    Refused {
        /// The target that refused it, as its logs and metrics name it.
        target: Arc<str>,
        /// Its answer.
        reason: String,
    },
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Refusal {
    /// The request does not prove it comes from the provider.
    Unauthorized(HookError),
    /// A `gcr:` endpoint's Pub/Sub push token failed a check.
    PubSubToken(crate::gcr_auth::TokenError),
    /// A genuine request we cannot use: wrong event, bad payload.
    BadRequest(HookError),
    /// More distinct changes than `max_changes`.
    TooManyChanges {
        /// How many the hook asked for.
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
    /// Reading the body would take the bytes held by all requests past the
    /// body budget.
    OverBodyBudget,
    /// The delivery queue has no room for these changes in the endpoint's
    /// share now; none was queued.
    QueueFull {
        /// Notifications pending from this endpoint.
        held: usize,
        /// Notifications pending.
        pending: usize,
        /// The most that may be.
        max: usize,
    },
    /// The bodies of the requests these changes make do not fit the
    /// endpoint's share of the queue's bytes now; none was queued.
    QueueBytesFull {
        /// Bytes pending from this endpoint.
        held: usize,
        /// Bytes pending.
        pending: usize,
        /// The most that may be.
        max: usize,
    },
    /// More notifications (changes times APIs) than one endpoint may ever
    /// have pending: retrying cannot help. Nothing was built or queued.
    TooManyNotifications {
        /// Distinct changes of the hook.
        changes: usize,
        /// The endpoint's APIs.
        apis: usize,
        /// The most one endpoint may have pending.
        most: usize,
    },
    /// Shutting down: no new changes are taken.
    ShuttingDown,
}

/// Why the body could not be read.
enum BodyError {
    TooLarge,
    Broken,
    OverBudget,
}

impl Hooks {
    /// The request path over `table`, checking Pub/Sub push tokens with
    /// `google_keys`, remembering signed delivery ids in `replays`, and
    /// delivering through `queue`.
    pub fn new(
        table: TableHandle,
        google_keys: Jwks,
        replays: Replays,
        queue: Queue,
        limits: RequestLimits,
    ) -> Hooks {
        let permits = usize::try_from(limits.body_budget)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Hooks {
            table,
            google_keys,
            queue,
            replays,
            body_budget: Arc::new(Semaphore::new(permits)),
            limits,
        }
    }

    /// The table being served; reload swaps what it holds.
    pub fn table(&self) -> &TableHandle {
        &self.table
    }

    /// The delivery queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The delivery ids accepted within the signature tolerance.
    pub fn replays(&self) -> &Replays {
        &self.replays
    }

    /// Handle one POST to `/hook/<fingerprint>`; `None` when no endpoint
    /// has this URL (nothing else is looked at then).
    pub async fn handle<S, B, E>(
        &self,
        fingerprint: &str,
        headers: &HeaderMap,
        body: S,
    ) -> Option<HookReport>
    where
        S: Stream<Item = Result<B, E>>,
        B: Buf,
    {
        // One load: this request sees this table, whatever reloads happen.
        let table = self.table.load_full();
        let endpoint = table.get(fingerprint).cloned()?;
        let delivery_id = endpoint.source.delivery_of(headers);
        let handled = self
            .deliver(&table, &endpoint, headers, body, &delivery_id)
            .await;
        Some(HookReport {
            event: endpoint.source.event_of(headers),
            delivery_id,
            endpoint,
            handled,
        })
    }

    async fn deliver<S, B, E>(
        &self,
        table: &crate::table::Table,
        endpoint: &Endpoint,
        headers: &HeaderMap,
        body: S,
        delivery: &str,
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
        let stamp = match endpoint.source.check_headers(headers, &endpoint.settings) {
            Ok(stamp) => stamp,
            Err(e) => return Handled::Refused(Refusal::Unauthorized(e)),
        };
        // A signature over a time too far from now is refused before the
        // body is read, whether or not it would match.
        if let Some(stamp) = &stamp {
            if let Err(e) = self.replays.fresh(stamp, unix_now()) {
                return Handled::Refused(Refusal::Unauthorized(e));
            }
        }

        // The body's bytes count against the budget until it is parsed.
        let (body, _held) = match self.read_body(headers, body).await {
            Ok(read) => read,
            Err(refusal) => return Handled::Refused(refusal),
        };
        let parsed = endpoint.source.handle(headers, &body, &endpoint.settings);
        let targets = table.targets_of(endpoint).clone();
        // Kept, shared, only for a target that sends it on as received.
        let kept = targets.iter().any(Target::needs_body).then(|| Body {
            bytes: body.clone(),
            content_type: headers.get(http::header::CONTENT_TYPE).cloned(),
        });
        drop((body, _held));
        let mut changes = match parsed {
            Err(e) if e.is_unauthorized() => return Handled::Refused(Refusal::Unauthorized(e)),
            Err(e) => return Handled::Refused(Refusal::BadRequest(e)),
            Ok(Outcome::Ignore(why)) => return Handled::Ignored(why),
            Ok(Outcome::Notify(changes)) => changes,
        };
        if changes.len() > self.limits.max_changes {
            return Handled::Refused(Refusal::TooManyChanges {
                count: changes.len(),
                max: self.limits.max_changes,
            });
        }
        let parsed = changes.len();
        changes.retain(|c| endpoint.filter.admits(c));
        let filtered = parsed - changes.len();
        if changes.is_empty() {
            return Handled::Filtered { changes: filtered };
        }

        // One item per request each target makes (fluxd: one per change),
        // counted as they are made: a delivery that can never be queued
        // stops at the first target past the most one endpoint may have.
        let most = self.queue.most_per_endpoint();
        let never_fits = Handled::Refused(Refusal::TooManyNotifications {
            changes: changes.len(),
            apis: targets.len(),
            most,
        });
        let hook = VerifiedHook {
            changes: &changes,
            body: kept.as_ref(),
        };
        let mut outgoing = Vec::new();
        // A request over its target's body limit is never queued; the
        // others are, and the reply says it was not sent.
        let mut too_large = None;
        for target in targets.iter() {
            let mut made = target.items(&hook);
            made.retain(|o| match target.too_large(&o.body) {
                Some(reason) => {
                    too_large.get_or_insert((target.label().clone(), reason));
                    false
                }
                None => true,
            });
            if outgoing.len() + made.len() > most {
                return never_fits;
            }
            outgoing.extend(made.into_iter().map(|o| (target.clone(), o)));
        }
        drop(kept);
        let refused = |(target, reason)| DeliveryState::Refused { target, reason };
        let replayed = Handled::Replayed {
            within: self.limits.signature_tolerance,
        };
        if self.limits.dry_run {
            // What would have been sent counts as accepted, so that a dry
            // run shows what replays would get.
            if let Some(stamp) = &stamp {
                let fingerprint = &endpoint.fingerprint;
                let accept = || Ok::<(), ()>(());
                if self
                    .replays
                    .first(fingerprint, stamp, unix_now(), accept)
                    .is_none()
                {
                    return replayed;
                }
            }
            return Handled::Delivered {
                changes,
                filtered,
                targets,
                answer: too_large.map_or(DeliveryState::DryRun, refused),
            };
        }
        if let (true, Some(too_large)) = (outgoing.is_empty(), too_large.clone()) {
            let answer = refused(too_large);
            return Handled::Delivered {
                changes,
                filtered,
                targets,
                answer,
            };
        }
        // Each target is delivered to on its own.
        let delivery: Arc<str> = Arc::from(delivery);
        let from: Arc<str> = Arc::from(endpoint.fingerprint.as_str());
        let items = outgoing
            .into_iter()
            .map(|(target, outgoing)| Item {
                target,
                outgoing,
                delivery: delivery.clone(),
                endpoint: from.clone(),
            })
            .collect();
        // A delivery id is used up only once its changes are queued: one
        // refused for want of room can be retried.
        let submitted = match &stamp {
            None => self.queue.submit(items),
            Some(stamp) => {
                let submit = || self.queue.submit(items);
                match self
                    .replays
                    .first(&endpoint.fingerprint, stamp, unix_now(), submit)
                {
                    Some(submitted) => submitted,
                    None => return replayed,
                }
            }
        };
        let ticket = match submitted {
            Ok(ticket) => ticket,
            Err(Full::NoRoom {
                held, pending, max, ..
            }) => return Handled::Refused(Refusal::QueueFull { held, pending, max }),
            Err(Full::NoBytes {
                held, pending, max, ..
            }) => return Handled::Refused(Refusal::QueueBytesFull { held, pending, max }),
            Err(Full::NeverFits { most, .. }) => {
                return Handled::Refused(Refusal::TooManyNotifications {
                    changes: changes.len(),
                    apis: targets.len(),
                    most,
                })
            }
            Err(Full::Closed) => return Handled::Refused(Refusal::ShuttingDown),
        };
        // The reply is a refusal anyway when a request was too large: the
        // others are not waited for.
        let budget = match too_large {
            Some(_) => Duration::ZERO,
            None => self.limits.reply_budget,
        };
        let answer = match (too_large, ticket.wait(budget).await) {
            (Some(too_large), _) => refused(too_large),
            (None, delivery::Acceptance::Accepted) => DeliveryState::Accepted,
            (None, delivery::Acceptance::Pending { retry_for }) => {
                DeliveryState::Pending { retry_for }
            }
            (None, delivery::Acceptance::Refused { target, reason }) => {
                DeliveryState::Refused { target, reason }
            }
        };
        Handled::Delivered {
            changes,
            filtered,
            targets,
            answer,
        }
    }

    /// The body, under the size cap, the body timeout and the body
    /// budget; with the budget it holds, to be dropped once it is parsed.
    async fn read_body<S, B, E>(
        &self,
        headers: &HeaderMap,
        body: S,
    ) -> Result<(bytes::Bytes, BodyPermit), Refusal>
    where
        S: Stream<Item = Result<B, E>>,
        B: Buf,
    {
        let limit = self.limits.max_body;
        let declared = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Refusal::TooLarge { limit });
        }
        let mut held = BodyPermit::new(self.body_budget.clone());
        // A declared length is taken from the budget at once: a request the
        // budget cannot hold is refused before a byte of it is read.
        if let Some(n) = declared {
            if !held.take(n as usize) {
                return Err(Refusal::OverBodyBudget);
            }
        }
        let reading = read_body(body, limit, declared, &mut held);
        match tokio::time::timeout(self.limits.body_timeout, reading).await {
            Ok(Ok(body)) => Ok((body, held)),
            Ok(Err(BodyError::TooLarge)) => Err(Refusal::TooLarge { limit }),
            Ok(Err(BodyError::Broken)) => Err(Refusal::BodyBroken),
            Ok(Err(BodyError::OverBudget)) => Err(Refusal::OverBodyBudget),
            Err(_) => Err(Refusal::BodyTimeout),
        }
    }
}

/// A request's permit on the global body budget: the body bytes it holds,
/// given back when dropped.
struct BodyPermit {
    budget: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl BodyPermit {
    fn new(budget: Arc<Semaphore>) -> BodyPermit {
        BodyPermit {
            budget,
            permit: None,
        }
    }

    fn count(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Hold at least `total` bytes; false when the budget has not got them.
    fn take(&mut self, total: usize) -> bool {
        let more = total.saturating_sub(self.count());
        if more == 0 {
            return true;
        }
        let Ok(more) = u32::try_from(more) else {
            return false;
        };
        match self.budget.clone().try_acquire_many_owned(more) {
            Ok(permit) => {
                match &mut self.permit {
                    Some(held) => held.merge(permit),
                    None => self.permit = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// Read the body, refusing it as soon as it grows past `limit` (so a huge or
/// endless chunked body is never buffered whole) or past what the budget
/// lets `held` take.
async fn read_body<S, B, E>(
    body: S,
    limit: u64,
    declared: Option<u64>,
    held: &mut BodyPermit,
) -> Result<bytes::Bytes, BodyError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    // A declared length is allocated once, so what is held is what the
    // budget counts.
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Broken)?;
        let total = buf.len() + chunk.remaining();
        if total as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        if !held.take(total) {
            return Err(BodyError::OverBudget);
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

    fn budget(bytes: usize) -> BodyPermit {
        BodyPermit::new(Arc::new(Semaphore::new(bytes)))
    }

    fn chunk() -> Result<bytes::Bytes, std::io::Error> {
        Ok(bytes::Bytes::from_static(&[b'x'; 1000]))
    }

    #[tokio::test]
    async fn an_endless_body_is_refused_once_it_passes_the_limit() {
        let endless = futures_util::stream::repeat_with(chunk);
        let mut held = budget(1 << 20);
        assert!(matches!(
            read_body(endless, 10_000, None, &mut held).await,
            Err(BodyError::TooLarge)
        ));
        let exact = futures_util::stream::iter((0..10).map(|_| chunk()));
        let mut held = budget(1 << 20);
        let body = read_body(exact, 10_000, None, &mut held).await;
        assert_eq!(body.ok().map(|b| b.len()), Some(10_000));
        assert_eq!(held.count(), 10_000);
    }

    #[tokio::test]
    async fn bodies_together_cannot_pass_the_budget() {
        let shared = Arc::new(Semaphore::new(15_000));
        let mut first = BodyPermit::new(shared.clone());
        let ten = || futures_util::stream::iter((0..10).map(|_| chunk()));
        assert!(read_body(ten(), 1 << 20, None, &mut first).await.is_ok());
        // The first still holds 10,000 of 15,000 bytes.
        let mut second = BodyPermit::new(shared.clone());
        assert!(matches!(
            read_body(ten(), 1 << 20, None, &mut second).await,
            Err(BodyError::OverBudget)
        ));
        drop((first, second));
        let mut third = BodyPermit::new(shared);
        assert!(read_body(ten(), 1 << 20, None, &mut third).await.is_ok());
    }

    #[tokio::test]
    async fn a_broken_body_is_not_taken_for_a_short_one() {
        let parts = vec![
            Ok(bytes::Bytes::from_static(b"{\"ref\":")),
            Err(std::io::Error::other("connection reset")),
        ];
        let mut held = budget(1 << 20);
        assert!(matches!(
            read_body(futures_util::stream::iter(parts), 10_000, None, &mut held).await,
            Err(BodyError::Broken)
        ));
    }
}
