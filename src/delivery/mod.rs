//! The delivery queue: the requests a hook makes for its targets wait here
//! until each target accepts its own, so a provider's reply no longer
//! depends on a target's health.
//!
//! A hook [`Queue::submit`]s one [`Item`] per request its targets make (for
//! fluxd, one per change; see [`crate::targets`]) and gets a [`Ticket`];
//! the reply waits on it for at most the reply budget. A fixed pool of
//! relay workers (`relay.rs`) sends what is pending, taking turns between
//! targets and between endpoints (`schedule.rs`), and retries what a target
//! could not take (down, or answering that it cannot now: fluxd's 408, 429,
//! 5xx) after a backoff that is the target's (and no sooner than its
//! `Retry-After`) until it accepts it or even the newest change that joined
//! it is older than `max_age`; then it is dropped with a warning, since
//! fluxd's own polling catches up by then. Answers that can never succeed
//! (fluxd's other 4xx, a redirect) end it at once. `entries.rs` owns an
//! entry's whole life; the queue knows a target only through its key, its
//! label and the interface in [`crate::targets`], so a new kind of target
//! changes nothing here.
//!
//! **One entry per distinct (target, body).** A request is a trigger to
//! look, so identical ones need one look:
//! - one whose entry is *waiting* (queued or backing off) joins it, and
//!   its ticket is settled by that entry's send;
//! - one whose entry is *being sent* does not simply join: the target may
//!   already have looked before the new push was visible. The entry is
//!   marked to be sent once more after the current attempt, and the newcomer
//!   waits for that send (whatever the current attempt's outcome: a failed
//!   attempt is retried for both, a permanent refusal ends both).
//!
//! Either way the newcomer is retried for its own `max_age`, however old
//! the entry it joined: an entry expires once its newest change is
//! `max_age` old. Its age in the metrics and the logs is its oldest's.
//!
//! **Several targets.** With fan-out each target gets its own entries,
//! retries and counters, and one that is down does not hold up the others.
//! Workers are shared in turn, and a target may hold at most half of them
//! (rounded down, at least one) at once, so with two workers or more a
//! slow or hanging fluxd never ties up the whole pool; one whose last
//! answer was a failure is probed by one attempt at a time. Each attempt
//! is made with the newest value of its target that a submit brought (the
//! newest table's).
//!
//! **Room.** The queue holds at most `max_pending` entries whose bodies
//! add up to at most `max_pending_bytes`, and each endpoint (an item's
//! [`Item::endpoint`]) at most half of the room the other endpoints leave,
//! in each (`room.rs`). A submit whose new entries do not all fit is
//! refused whole ([`Full::NoRoom`], [`Full::NoBytes`]): nothing of it is queued,
//! so the provider's retry starts clean. One that could not fit even in an
//! empty queue (more than [`Queue::most_per_endpoint`] items for one
//! endpoint) is [`Full::NeverFits`]: retrying cannot help.
//!
//! **Waiting.** Workers are std threads; replies are tokio tasks. Each
//! ticket has a `tokio::sync::watch` channel that workers update (a watch
//! sender needs no runtime) as its entries are settled. [`Ticket::wait`]
//! returns [`Acceptance::Accepted`] when the targets took every entry,
//! [`Acceptance::Refused`] as soon as one was refused for good (or
//! expired), and [`Acceptance::Pending`] when the budget runs out first.
//! A budget of zero never waits: it reports what is already settled, which
//! in practice is `Pending`. An entry accepted after a reply stopped waiting
//! for it is logged once, at info, as a late delivery (a reply with a zero
//! budget never waited, so it makes nothing late). An entry keeps no hold
//! on a reply that has been sent: only whether one gave up on it.
//!
//! **Shutdown.** [`Queue::close`] refuses new work; [`Queue::drain`] waits
//! until nothing is pending or a deadline, then stops the workers and
//! returns what is left. Workers also stop when the last [`Queue`] clone is
//! dropped. All state is under one std Mutex that is never held across an
//! `.await` nor during a POST, and nothing is logged while it is held.

mod entries;
mod metrics;
mod notes;
mod readout;
mod relay;
mod resolver;
mod room;
mod rounds;
mod schedule;
mod wire;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use slog::Logger;

use crate::targets::{Outgoing, Target};
use entries::Shared;
pub use readout::{Deliveries, Leftover, Snapshot, TargetSnapshot};
use relay::{Jobs, Relay};
use rounds::Waiter;

/// Relay workers when `--max-relays` is not given. One target may hold
/// half of them at once, so that a slow or failing fluxd never ties up the
/// workers another one needs; eight give one fluxd the four POSTs at once
/// it had before that share existed. Measured on a 2-core machine against
/// a stand-in fluxd on loopback: alone (`cargo bench --bench delivery`),
/// distinct notifications a second level off from 4 workers (37k/s; 8:
/// 40k/s, 64: 49k/s, 1: 22k/s); in the whole server under `scripts/bench`'s
/// flood of distinct pushes, where the workers share the cores with the
/// requests, 4 at once did best (29k hooks/s; 2: 26k, 8: 27.5k). With fluxd
/// taking 1–2 ms a worker carries ~400/s, so 4 carry over 1,500/s, far
/// beyond what providers send one fluxd. Each worker that has sent costs
/// about 90 KiB of RSS.
pub const DEFAULT_WORKERS: usize = 8;

/// Most distinct notifications pending when `--max-pending` is not given.
/// A push makes one entry per target of its endpoint, and one endpoint may
/// hold half of the queue: 4,096 give an endpoint with a fluxd and a Flux
/// v2 Receiver 1,024 pushes of room (a minute of outage at 17 pushes a
/// second). Bodies are bounded in bytes apart (`--max-pending-bytes`), so
/// an entry beyond its body costs only its bookkeeping (a few small
/// allocations: its index, round and turn).
pub const DEFAULT_MAX_PENDING: usize = 4096;

/// Most bytes of request bodies pending when `--max-pending-bytes` is not
/// given. A Receiver's request carries the provider's whole body (up to
/// `--max-body`, 3 MiB). As much as `--body-budget` (16 MiB): bodies being
/// read and bodies queued together hold at most 32 MiB, which leaves the
/// rest of the shipped 64 MiB container limit to the process and its
/// connections. One endpoint alone may hold half, 8 MiB: two bodies of the
/// largest size a sender may choose, or hundreds of real pushes (GitHub's
/// are typically a few KiB to a few tens of KiB), while as much again
/// stays free for the other endpoints.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

/// How long a notification is retried when `--delivery-max-age` is not
/// given.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Longest one POST may take when `--relay-timeout` is not given.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines a second about single notifications when not given.
pub const DEFAULT_LOGS_PER_SECOND: u64 = 20;

/// How the queue and its relay workers run; each field is named after the
/// flag that sets it.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Relay worker threads (`--max-relays`): at most this many requests
    /// in flight at once.
    pub max_relays: usize,
    /// Most distinct notifications pending at once (`--max-pending`); one
    /// endpoint may hold half of the room the others leave.
    pub max_pending: usize,
    /// Most bytes of request bodies pending at once
    /// (`--max-pending-bytes`), shared between endpoints as entries are.
    pub max_pending_bytes: usize,
    /// How long a notification is retried before it is dropped
    /// (`--delivery-max-age`), counted from when it was last queued: an
    /// identical change that joins it starts the count again.
    pub delivery_max_age: Duration,
    /// Longest one request may take, connecting included
    /// (`--relay-timeout`).
    pub relay_timeout: Duration,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Most lines a second about single notifications (refused by their
    /// target, dropped, delivered late); the rest are counted and summed
    /// up (`--refusal-logs-per-second`).
    pub refusal_logs_per_second: u64,
}

impl Default for QueueSettings {
    fn default() -> QueueSettings {
        QueueSettings {
            max_relays: DEFAULT_WORKERS,
            max_pending: DEFAULT_MAX_PENDING,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            delivery_max_age: DEFAULT_MAX_AGE,
            relay_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            backoff: Backoff::default(),
            refusal_logs_per_second: DEFAULT_LOGS_PER_SECOND,
        }
    }
}

/// Backoff between attempts to a target that failed: exponential in its
/// failures in a row from `first`, capped at `max`, each wait drawn
/// uniformly from its upper half so that targets that failed together do
/// not retry together. The cap is a few seconds so that when fluxd comes
/// back, the next probe finds it and everything pending reaches it within
/// seconds. A `Retry-After` is waited out as well, up to the
/// notifications' max age.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Wait after the first failure.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(3),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failed attempts (1 or more).
    pub fn wait(&self, failures: u32) -> Duration {
        let exp = self
            .first
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// One request for one target, as a hook submits it.
#[derive(Debug, Clone)]
pub struct Item {
    /// Where it goes (the table's value, which the next attempt to it
    /// uses).
    pub target: Target,
    /// What is sent, made by the target from the hook.
    pub outgoing: Outgoing,
    /// The provider's delivery id, for the logs; may be empty. Logged as
    /// it is, so it must already be printable ([`crate::printable`]).
    pub delivery: Arc<str>,
    /// The endpoint (hook URL) it came from, by its fingerprint: room in
    /// the queue and turns at the workers are shared per endpoint.
    pub endpoint: Arc<str>,
}

/// A submit that was not queued; nothing of it was. [`Full::NoRoom`],
/// [`Full::NoBytes`] and [`Full::Closed`] mean "retry later"; [`Full::NeverFits`] means retrying
/// cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// Its new notifications do not fit its endpoint's share now.
    #[error(
        "{needed} more notification(s) do not fit: {pending} of at most {max} are pending, \
         {held} of them from this endpoint"
    )]
    NoRoom {
        /// Distinct notifications the submit would have added.
        needed: usize,
        /// Notifications pending from the endpoint that was refused.
        held: usize,
        /// Notifications pending.
        pending: usize,
        /// `max_pending`.
        max: usize,
    },
    /// Its new requests' bodies do not fit its endpoint's share of
    /// `max_pending_bytes` now.
    #[error(
        "{needed} more bytes of requests do not fit: {pending} of at most {max} are pending, \
         {held} of them from this endpoint"
    )]
    NoBytes {
        /// Bytes of the bodies the submit would have added.
        needed: usize,
        /// Bytes pending from the endpoint that was refused.
        held: usize,
        /// Bytes pending.
        pending: usize,
        /// `max_pending_bytes`.
        max: usize,
    },
    /// More notifications for one endpoint than fit its share even of an
    /// empty queue.
    #[error("{needed} notifications, and one endpoint may have at most {most} pending")]
    NeverFits {
        /// Distinct notifications of the submit, for its endpoint.
        needed: usize,
        /// [`Queue::most_per_endpoint`].
        most: usize,
    },
    /// The queue was closed (shutting down).
    #[error("flux-recv is shutting down")]
    Closed,
}

/// What the targets said of a ticket's requests, as far as the reply
/// waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// Every target accepted its own.
    Accepted,
    /// Not yet confirmed; delivery is retried for at least `retry_for`.
    Pending {
        /// Until the first of them would expire.
        retry_for: Duration,
    },
    /// One will never be delivered: its target refused it for good, or it
    /// expired while the reply still waited.
    Refused {
        /// The label of the target that refused it (fluxd's: its notify
        /// URL).
        target: Arc<str>,
        /// Why, for the provider and the log: e.g. "fluxd answered 404 Not
        /// Found", or a redirect and its Location.
        reason: String,
    },
}

/// The delivery queue and its workers. Cheap to clone; the workers stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Queue {
    workers: Arc<Workers>,
}

/// Owned by the [`Queue`] clones only (workers and tickets hold `Shared`),
/// so dropping the last clone is what stops the workers.
struct Workers {
    shared: Arc<Shared>,
    /// Not joined on drop: a worker may be inside a POST for up to the
    /// attempt timeout, and dropping must not block an async task. Each
    /// thread ends by itself after its current attempt.
    _threads: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// A submitted set of requests; wait on it for the reply.
#[must_use = "a ticket says whether the targets took the changes"]
pub struct Ticket {
    shared: Arc<Shared>,
    waiter: Arc<Waiter>,
    /// Its entries, for how long they will be retried.
    entries: Vec<u64>,
}

impl Queue {
    /// Start the workers. Fails only when a thread cannot be started.
    /// Zero workers are taken as one: the queue needs one to deliver.
    pub fn start(settings: QueueSettings, log: Logger) -> std::io::Result<Queue> {
        let workers = settings.max_relays.max(1);
        let relay = Relay::new(workers, settings.relay_timeout);
        let shared = Arc::new(Shared::new(settings, log));
        let jobs: Arc<dyn Jobs> = shared.clone();
        let threads = relay::spawn(workers, relay, jobs).inspect_err(|_| shared.stop())?;
        Ok(Queue {
            workers: Arc::new(Workers {
                shared,
                _threads: threads,
            }),
        })
    }

    /// Queue `items`, all or nothing. Items identical to a pending one (the
    /// same target and body) join it (see the module doc); only new
    /// distinct ones need room, in the share of the endpoint each came
    /// from.
    pub fn submit(&self, items: Vec<Item>) -> Result<Ticket, Full> {
        let shared = &self.workers.shared;
        let (waiter, entries) = shared.submit(items)?;
        Ok(Ticket {
            shared: shared.clone(),
            waiter,
            entries,
        })
    }

    /// Most notifications one endpoint may have pending: half of
    /// `max_pending`, rounded up, when no other endpoint has any. A
    /// delivery that makes more can never be queued.
    pub fn most_per_endpoint(&self) -> usize {
        self.workers.shared.most_per_endpoint()
    }

    /// Figures for `/metrics`, read under the lock in one go.
    pub fn snapshot(&self) -> Snapshot {
        self.workers.shared.snapshot()
    }

    /// Every pending request for one of `targets` (by [`Target::key`]) is
    /// sent with that value from its next attempt on: the service calls it
    /// with every target of a table reload swaps in, so that a rotated
    /// token signs the retries of what was queued before.
    pub fn retarget<'a>(&self, targets: impl Iterator<Item = &'a Target>) {
        self.workers.shared.retarget(targets);
    }

    /// Stop accepting: every later submit is [`Full::Closed`]. Pending
    /// notifications are still delivered.
    pub fn close(&self) {
        self.workers.shared.close();
    }

    /// Close the queue, wait until nothing is pending or `deadline`, then
    /// stop the workers (no new attempt starts) and return what is left.
    pub async fn drain(&self, deadline: tokio::time::Instant) -> Vec<Leftover> {
        let shared = &self.workers.shared;
        self.close();
        let mut empty = shared.emptiness();
        let _ = tokio::time::timeout_at(deadline, empty.wait_for(|e| *e)).await;
        shared.stop_and_list_left()
    }
}

impl Ticket {
    /// Wait at most `budget` for the targets to accept the requests (see
    /// the module doc for what each answer means).
    pub async fn wait(self, budget: Duration) -> Acceptance {
        let waited = !budget.is_zero();
        if waited {
            let _ = tokio::time::timeout(budget, self.waiter.settled()).await;
        }
        self.shared.acceptance(&self.waiter, &self.entries, waited)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use std::time::Instant;

    use super::*;
    use crate::logging::Captured;
    use crate::notification::{Change, ImageName};
    use crate::targets::fluxd::{self, Fluxd};

    /// Quick retries, so that no test runs longer than a second or two.
    fn options() -> QueueSettings {
        QueueSettings {
            max_relays: 2,
            max_pending: 64,
            max_pending_bytes: 1 << 20,
            delivery_max_age: Duration::from_secs(60),
            relay_timeout: Duration::from_secs(5),
            backoff: Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_millis(20),
            },
            refusal_logs_per_second: 100,
        }
    }

    /// A queue whose log the test can read.
    pub(super) fn start(options: QueueSettings) -> (Queue, Captured) {
        let logs = Captured::default();
        (
            Queue::start(options, logs.logger(slog::Level::Debug)).unwrap(),
            logs,
        )
    }

    /// A notify URL on 127.0.0.1 where nothing listens: fluxd is down.
    pub(super) fn dead_url() -> Arc<str> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        notify_url(&listener)
    }

    /// A fluxd stand-in that takes connections but never answers: the
    /// kernel completes them, nobody reads them. Silent until the test
    /// [`answer`]s on it.
    fn silent_fluxd() -> (TcpListener, Arc<str>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = notify_url(&listener);
        (listener, url)
    }

    fn notify_url(listener: &TcpListener) -> Arc<str> {
        let addr = listener.local_addr().unwrap();
        format!("http://{addr}/api/flux/v11/notify").into()
    }

    /// Answer the next request on `fluxd` with 202, waiting at most a few
    /// seconds for it.
    fn answer(fluxd: &TcpListener) {
        fluxd.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match fluxd.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < until, "no request came");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        reader.read_exact(&mut vec![0; length]).unwrap();
        let mut writer = stream;
        writer
            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
    }

    /// An image change for the fluxd whose notify URL is `url`.
    pub(super) fn item(url: &Arc<str>, image: &str, delivery: &str) -> Item {
        let base = url.strip_suffix("/v11/notify").expect("a notify URL");
        let change = Change::image(ImageName {
            domain: String::new(),
            image: image.into(),
        });
        Item {
            target: Target::from(Fluxd::new(base)),
            outgoing: fluxd::notification(&change),
            delivery: delivery.into(),
            endpoint: "endpoint".into(),
        }
    }

    /// Wait at most a few seconds for `done` to hold.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < until, "still waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn figures(queue: &Queue, url: &Arc<str>) -> TargetSnapshot {
        let s = queue.snapshot();
        s.targets
            .into_iter()
            .find(|a| a.target == *url)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_change_that_joins_an_old_entry_is_retried_for_its_own_max_age() {
        // Margins of 600 ms and more on each side, for a loaded machine:
        // joined 1.2 s into a 2 s max age and waited on for 300 ms, it has
        // 1.7 s left counted from the join, 0.5 s counted from the entry.
        let (queue, _) = start(QueueSettings {
            delivery_max_age: Duration::from_secs(2),
            ..options()
        });
        let url = dead_url();
        let first = queue.submit(vec![item(&url, "app", "d-1")]).unwrap();
        let reply = first.wait(Duration::ZERO).await;
        assert!(matches!(reply, Acceptance::Pending { .. }), "{reply:?}");
        tokio::time::sleep(Duration::from_millis(1200)).await;

        // The same change again, before the entry it joins is 2 s old: it
        // is retried for 2 s from now, not for what is left of the entry's.
        let again = queue.submit(vec![item(&url, "app", "d-2")]).unwrap();
        let reply = again.wait(Duration::from_millis(300)).await;
        let Acceptance::Pending { retry_for } = reply else {
            panic!("fluxd is only down: pending, not {reply:?}");
        };
        assert!(
            retry_for > Duration::from_millis(1100) && retry_for <= Duration::from_millis(1700),
            "{retry_for:?}"
        );
        let s = queue.snapshot();
        assert_eq!(s.pending, 1);
        assert_eq!(figures(&queue, &url).expired, 0);
        // Its age is still its oldest change's.
        assert!(s.oldest_age >= Duration::from_millis(1500), "{s:?}");
    }

    #[test]
    fn a_silent_api_holds_at_most_one_of_three_workers() {
        let (_fluxd, url) = silent_fluxd();
        let (queue, _) = start(QueueSettings {
            max_relays: 3,
            relay_timeout: Duration::from_millis(200),
            ..options()
        });
        let _tickets: Vec<Ticket> = (0..6)
            .map(|i| {
                queue
                    .submit(vec![item(&url, &format!("i{i}"), "")])
                    .unwrap()
            })
            .collect();
        // Half of three workers, rounded down: one attempt at a time, from
        // the first (before anything says it hangs) to the probes after.
        let mut most = 0;
        eventually("attempts on the silent API", || {
            most = most.max(queue.snapshot().sending);
            figures(&queue, &url).attempts >= 4
        });
        assert_eq!(most, 1);
    }

    #[tokio::test]
    async fn a_delivery_after_its_reply_gave_up_is_logged_once_as_late() {
        let (fluxd, url) = silent_fluxd();
        let (queue, logs) = start(options());
        let ticket = queue.submit(vec![item(&url, "app", "d-late")]).unwrap();
        let reply = ticket.wait(Duration::from_millis(100)).await;
        assert!(matches!(reply, Acceptance::Pending { .. }), "{reply:?}");
        // The reply is gone; fluxd answers now.
        answer(&fluxd);
        eventually("the delivery", || figures(&queue, &url).delivered == 1);
        assert_eq!(figures(&queue, &url).late, 1);
        eventually("the late line", || logs.text().contains("delivered late"));
        let text = logs.text();
        let late: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("delivered late"))
            .collect();
        assert_eq!(late.len(), 1, "{text}");
        assert!(late[0].contains("d-late"), "{}", late[0]);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(800),
        };
        for _ in 0..100 {
            let w1 = b.wait(1);
            assert!(
                w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100),
                "{w1:?}"
            );
            let w3 = b.wait(3);
            assert!(
                w3 >= Duration::from_millis(200) && w3 <= Duration::from_millis(400),
                "{w3:?}"
            );
            let w10 = b.wait(10);
            assert!(
                w10 >= Duration::from_millis(400) && w10 <= Duration::from_millis(800),
                "{w10:?}"
            );
        }
        assert!(b.wait(u32::MAX) <= Duration::from_millis(800));
    }

    #[test]
    fn workers_stop_when_the_last_clone_is_dropped() {
        let log = Logger::root(slog::Discard, slog::o!());
        let mut queue = Queue::start(
            QueueSettings {
                max_relays: 3,
                ..QueueSettings::default()
            },
            log,
        )
        .unwrap();
        let threads = std::mem::take(
            &mut Arc::get_mut(&mut queue.workers)
                .expect("one clone")
                ._threads,
        );
        assert_eq!(threads.len(), 3);
        let clone = queue.clone();
        drop(queue);
        std::thread::sleep(Duration::from_millis(50));
        assert!(threads.iter().all(|t| !t.is_finished()), "a clone is left");
        drop(clone);
        let until = Instant::now() + Duration::from_secs(5);
        while !threads.iter().all(|t| t.is_finished()) {
            assert!(Instant::now() < until, "workers still running");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
